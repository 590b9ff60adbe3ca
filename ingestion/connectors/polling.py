"""Polling connectors for bar (OHLCV) APIs, and how a bar becomes a tick.

Alpha Vantage and Yahoo Finance serve bars, not trades. Each bar becomes ONE synthetic tick:
price = the bar's close, size = the bar's volume, event time = the bar's end minus 1 us (the
close is the last trade in the bar; minus 1 us keeps the tick inside the bar's own bucket,
since buckets are [start, start + interval)), trade_id = "<symbol>:<interval>:<bar start us>".
Bars built downstream from these ticks therefore have open = high = low = close of the
provider's last bar in each bucket, and the right volume only when the pipeline's interval is
a multiple of the provider's: it is a price feed, not a trade feed.

Every poll returns the latest N bars; only bars newer than the newest already emitted are
emitted again (ids are deterministic, so a repeat after a restart is deduplicated downstream).
On the first poll only the newest bar is emitted unless ``backfill`` is set.
"""
from __future__ import annotations

import abc
import asyncio
import logging
import time
from typing import AsyncIterator

from alphastream.records import Tick
from ingestion.backoff import Backoff, Clock, Sleep
from ingestion.connectors.base import Connector, FeedFatalError, MalformedFrame
from ingestion.connectors.normalize import canonical_symbol, make_tick

log = logging.getLogger(__name__)


class Throttled(RuntimeError):
    """The provider refused a request because a quota is used up; retry later."""


def bar_close_tick(*, symbol: str, bar_start_us: int, interval_us: int, interval_name: str,
                   close: object, volume: object, source: str) -> Tick:
    """The one tick that stands for a bar (see the module docstring)."""
    return make_tick(symbol=canonical_symbol(symbol), ts_us=bar_start_us + interval_us - 1, price=close,
                     size=volume, trade_id=f"{symbol.upper()}:{interval_name}:{bar_start_us}", source=source)


class BarPoller(Connector):
    """Poll every symbol every ``poll_seconds``; emit ticks for bars not seen before."""

    def __init__(self, symbols: list[str], poll_seconds: float, backfill: bool = False, *,
                 backoff: Backoff | None = None, clock: Clock = time.monotonic, sleep: Sleep = asyncio.sleep):
        super().__init__()
        if not symbols:
            raise ValueError(f"{self.source}: give at least one symbol (--symbols)")
        self.symbols, self.poll_seconds, self.backfill = list(symbols), poll_seconds, backfill
        self._backoff = backoff or Backoff(base=5.0, cap=300.0)
        self._clock, self._sleep = clock, sleep
        self._newest: dict[str, int] = {}  # symbol -> ts_us of the newest tick emitted

    @abc.abstractmethod
    async def fetch_ticks(self, symbol: str) -> list[Tick]:
        """All bars of the latest response as ticks, oldest first. May raise Throttled,
        MalformedFrame (unreadable response), FeedFatalError, or a transport error."""

    def new_ticks(self, symbol: str, ticks: list[Tick]) -> list[Tick]:
        """The ticks newer than the newest emitted for ``symbol`` (first poll: see backfill)."""
        ticks = sorted(ticks, key=lambda t: t.ts_us)
        if symbol not in self._newest and not self.backfill:
            ticks = ticks[-1:]
        newest = self._newest.get(symbol)
        fresh = [t for t in ticks if newest is None or t.ts_us > newest]
        if fresh:
            self._newest[symbol] = fresh[-1].ts_us
        return fresh

    async def stream(self) -> AsyncIterator[Tick]:
        while True:
            started = self._clock()
            for symbol in self.symbols:
                try:
                    ticks = await self.fetch_ticks(symbol)
                except FeedFatalError:
                    raise
                except MalformedFrame as err:
                    self.count_malformed(symbol, err)
                    continue
                except Exception as err:  # transport errors and Throttled: back off, keep polling
                    delay = self._backoff.next_delay()
                    if isinstance(err, Throttled):
                        self.stats.record_rate_limit_wait(delay)
                    else:
                        self.stats.reconnects += 1
                    log.warning("%s: poll of %s failed (%s: %s); retrying in %.0f s",
                                self.source, symbol, type(err).__name__, err, delay)
                    await self._sleep(delay)
                    continue
                self._backoff.reset()
                self.stats.connects += 1
                self.stats.record_message()
                for tick in self.new_ticks(symbol, ticks):
                    self.stats.ticks += 1
                    yield tick
            await self._sleep(max(0.0, self.poll_seconds - (self._clock() - started)))
