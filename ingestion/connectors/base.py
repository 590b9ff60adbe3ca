"""What every connector is: an async stream of Ticks plus counters the service logs.

A connector owns its feed's protocol (connect, subscribe, poll, parse) and recovers from its
own failures (reconnect with backoff); it never sees the sink. Frames it cannot read are
counted and logged, never raised: one bad frame must not stop a live feed.
"""
from __future__ import annotations

import abc
import logging
from dataclasses import dataclass
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
class ConnectorStats:
    frames: int = 0  # frames / responses received
    ticks: int = 0  # ticks produced
    malformed: int = 0  # frames (or trades in a frame) that could not be read
    connects: int = 0  # successful connects (first one included)
    reconnects: int = 0  # reconnect attempts after a drop or failure


class Connector(abc.ABC):
    """An async iterator of Ticks from one feed. ``source`` names it in every Tick."""

    source: str = ""

    def __init__(self) -> None:
        self.stats = ConnectorStats()

    @abc.abstractmethod
    def stream(self) -> AsyncIterator[Tick]:
        """Yield ticks until cancelled (live feeds) or the input ends (replay, bounded runs)."""

    async def aclose(self) -> None:
        """Release network clients; called once by the service at shutdown."""

    def count_malformed(self, frame: object, err: Exception) -> None:
        """Count an unreadable frame and log it (sampled), with the reason."""
        self.stats.malformed += 1
        n = self.stats.malformed
        if n <= _MALFORMED_LOGGED_IN_FULL or n % _MALFORMED_LOG_EVERY == 0:
            preview = str(frame)[:_FRAME_PREVIEW_CHARS]
            log.warning("%s: malformed frame #%d skipped (%s): %s", self.source, n, err, preview)
