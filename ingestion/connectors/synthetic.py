"""A live synthetic market: seeded geometric random walks, timestamped now, at --rate ticks/s.

The batch generator (``alphastream.synthetic``) builds a whole past session at once; this one
paces ticks in real time. It reuses that module's symbol list, source name and volatility
range, so a live run and a batch run of the same market look alike. Prices, sizes and the
symbol sequence depend only on the seed; trade ids also carry the run's start time so two
runs never share an id (the pipeline would drop the second run's ticks as duplicates).
"""
from __future__ import annotations

import asyncio
import math
import time
from typing import AsyncIterator

import numpy as np

from alphastream.records import MICROS_PER_SECOND, Tick
from alphastream.synthetic import ANNUAL_VOLATILITY_RANGE, SYNTHETIC_SOURCE, TRADING_SECONDS_PER_YEAR, symbol_names
from ingestion.backoff import Clock, Sleep
from ingestion.connectors.base import Connector

START_PRICE_RANGE = (20.0, 500.0)
# Pace in slices: wake up at most this often and emit what is due (1 ms at 100k ticks/s).
PACING_SLICE_SECONDS = 0.005
PRICE_DECIMALS = 4


class SyntheticMarket(Connector):
    """``rate`` ticks/s spread over ``symbols`` random walks; event time = wall clock."""

    source = SYNTHETIC_SOURCE

    def __init__(self, rate: float, symbols: int = 20, seed: int = 42, *, clock: Clock = time.time,
                 sleep: Sleep = asyncio.sleep):
        super().__init__()
        if not (rate > 0 and math.isfinite(rate)):
            raise ValueError(f"rate must be a positive number of ticks per second, got {rate}")
        self.rate = rate
        self._names = symbol_names(symbols)
        self._rng = np.random.default_rng(seed)
        self._prices = self._rng.uniform(*START_PRICE_RANGE, len(self._names))
        self._sigmas = self._rng.uniform(*ANNUAL_VOLATILITY_RANGE, len(self._names))
        self._last_us = np.zeros(len(self._names), dtype=np.int64)
        self._clock, self._sleep = clock, sleep
        self._sequence = 0
        self._run_id = ""

    def next_tick(self, now_us: int) -> Tick:
        """One trade at ``now_us``: a random symbol takes a GBM step since its last trade."""
        i = int(self._rng.integers(len(self._names)))
        elapsed_s = (now_us - self._last_us[i]) / MICROS_PER_SECOND if self._last_us[i] else 1.0
        step = self._sigmas[i] * math.sqrt(max(elapsed_s, 1e-6) / TRADING_SECONDS_PER_YEAR)
        self._prices[i] *= math.exp(step * float(self._rng.standard_normal()))
        self._last_us[i] = now_us
        size = float(max(1, round(self._rng.lognormal(mean=4.0, sigma=1.0))))
        self._sequence += 1
        self.stats.ticks += 1
        return Tick(self._names[i], now_us, round(float(self._prices[i]), PRICE_DECIMALS), size,
                    f"{self._run_id}-{self._sequence}", self.source)

    async def stream(self) -> AsyncIterator[Tick]:
        start = self._clock()
        self._run_id = f"live{int(start * 1000)}"
        self.stats.connects += 1
        emitted = 0
        while True:
            now = self._clock()
            now_us = int(now * MICROS_PER_SECOND)
            # Tick n+1 is due at start + n / rate. The same expression decides both what to emit
            # and how long to sleep: computing "how many are due" as int((now - start) * rate)
            # instead can disagree with it by one float ulp at a boundary (0.002 * 1000 ->
            # 1.9999999), which asked for sleep(0) forever on a clock that only moves when slept.
            while self._due_at(start, emitted) <= now:
                emitted += 1
                yield self.next_tick(now_us)
            wait = self._due_at(start, emitted) - self._clock()
            if wait > 0:
                await self._sleep(min(PACING_SLICE_SECONDS, wait))

    def _due_at(self, start: float, emitted: int) -> float:
        """Wall-clock time the tick after ``emitted`` ticks is due."""
        return start + emitted / self.rate
