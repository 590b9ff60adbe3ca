"""What every connector is: an async stream of Ticks plus counters the service logs.

A connector owns its feed's protocol (connect, subscribe, poll, parse) and recovers from its
own failures (reconnect with backoff); it never sees the sink. Frames it cannot read are
counted and logged, never raised: one bad frame must not stop a live feed.
"""
from __future__ import annotations

import abc
import collections
import logging
import time
from dataclasses import dataclass, field
from typing import AsyncIterator

from alphastream.records import Tick

log = logging.getLogger(__name__)

# Log the first few malformed frames in full, then one in every N: a feed that changed its
# format would otherwise flood the log.
_MALFORMED_LOGGED_IN_FULL = 10
_MALFORMED_LOG_EVERY = 1000
_FRAME_PREVIEW_CHARS = 300


class MalformedFrame(ValueError):
    """A frame (or one trade inside it) that does not match the feed's documented format."""


class FeedFatalError(RuntimeError):
    """An error retrying cannot fix (rejected API key, unknown symbol): the connector stops."""


@dataclass
class SequenceGaps:
    """Gaps in a feed's per-symbol trade numbering (Coinbase, Binance and Kraken number each
    product's trades 1, 2, 3, ...): a jump from n to n + k + 1 is one gap of k missing trades.

    A number at or below the highest seen is a repeat (a reconnect snapshot, a redelivery) and
    neither a gap nor a new high. The first number seen for a symbol only sets the start.
    """

    highest: dict[str, int] = field(default_factory=dict)
    gaps: collections.Counter = field(default_factory=collections.Counter)  # symbol -> gaps seen
    missing: collections.Counter = field(default_factory=collections.Counter)  # symbol -> trades missed

    def observe(self, symbol: str, number: int) -> int:
        """Record trade ``number`` of ``symbol``; returns how many trades were skipped before it."""
        previous = self.highest.get(symbol)
        if previous is not None and number <= previous:
            return 0
        self.highest[symbol] = number
        skipped = 0 if previous is None else number - previous - 1
        if skipped:
            self.gaps[symbol] += 1
            self.missing[symbol] += skipped
        return skipped


@dataclass
class ConnectorStats:
    """What a connector counts; ``ingestion.metrics`` exports it to Prometheus at scrape time."""

    frames: int = 0  # frames / responses received
    ticks: int = 0  # ticks produced
    malformed: int = 0  # frames (or trades in a frame) that could not be read
    connects: int = 0  # successful connects (first one included)
    reconnects: int = 0  # reconnect attempts after a drop or failure
    rate_limit_waits: int = 0  # times a request waited for a quota (ours or the provider's)
    rate_limit_wait_seconds: float = 0.0
    last_message_at: float | None = None  # wall clock of the last frame, response or tick
    ticks_by_symbol: collections.Counter = field(default_factory=collections.Counter)
    last_tick_at: dict[str, float] = field(default_factory=dict)  # symbol -> wall clock
    sequence: SequenceGaps = field(default_factory=SequenceGaps)

    def record_message(self, at: float | None = None) -> None:
        """A frame or response arrived (heartbeats included: they prove the feed is alive)."""
        self.last_message_at = time.time() if at is None else at

    def record_tick(self, symbol: str, at: float) -> None:
        """A tick of ``symbol`` was handed on at wall-clock time ``at``."""
        self.ticks_by_symbol[symbol] += 1
        self.last_tick_at[symbol] = at
        self.last_message_at = at

    def record_rate_limit_wait(self, seconds: float) -> None:
        self.rate_limit_waits += 1
        self.rate_limit_wait_seconds += seconds


class Connector(abc.ABC):
    """An async iterator of Ticks from one feed. ``source`` names it in every Tick."""

    source: str = ""

    def __init__(self) -> None:
        self.stats = ConnectorStats()

    @abc.abstractmethod
    def stream(self) -> AsyncIterator[Tick]:
        """Yield ticks until cancelled (live feeds) or the input ends (replay, bounded runs)."""

    async def aclose(self) -> None:  # noqa: B027 -- a hook: a connector without clients has nothing to release
        """Release network clients; called once by the service at shutdown."""

    def count_malformed(self, frame: object, err: Exception) -> None:
        """Count an unreadable frame and log it (sampled), with the reason."""
        self.stats.malformed += 1
        n = self.stats.malformed
        if n <= _MALFORMED_LOGGED_IN_FULL or n % _MALFORMED_LOG_EVERY == 0:
            preview = str(frame)[:_FRAME_PREVIEW_CHARS]
            log.warning("%s: malformed frame #%d skipped (%s): %s", self.source, n, err, preview)
