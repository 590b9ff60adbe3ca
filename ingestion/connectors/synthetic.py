"""A live synthetic market: seeded geometric random walks, timestamped now, at --rate ticks/s.

The batch generator (``alphastream.synthetic``) builds a whole past session at once; this one
paces ticks in real time. It reuses that module's symbol list, source name and volatility
range, so a live run and a batch run of the same market look alike. Prices, sizes and the
symbol sequence depend only on the seed; trade ids also carry the run's start time so two
runs never share an id (the pipeline would drop the second run's ticks as duplicates).

With an ``alphastream.synthetic.LiveAnomalyPlan`` it injects that plan's labelled anomalies
into the live feed, counting bars from the bucket of its first tick: a persistent price jump,
a volume spike, a gap (the symbol does not trade) ended by a jump, a frozen price.
"""
from __future__ import annotations

import asyncio
import math
import time
from typing import AsyncIterator

import numpy as np

from alphastream.records import MICROS_PER_SECOND, AnomalyKind, Tick
from alphastream.synthetic import (
    ANNUAL_VOLATILITY_RANGE,
    INJECTED_GAP_MINUTES,
    INJECTED_JUMP_SIGMAS,
    INJECTED_VOLUME_FACTOR,
    SYNTHETIC_SOURCE,
    TRADING_SECONDS_PER_YEAR,
    LiveAnomalyPlan,
    LiveInjection,
    symbol_names,
)
from ingestion.backoff import Clock, Sleep
from ingestion.connectors.base import Connector

START_PRICE_RANGE = (20.0, 500.0)
# Pace in slices: wake up at most this often and emit what is due (1 ms at 100k ticks/s).
PACING_SLICE_SECONDS = 0.005
PRICE_DECIMALS = 4


class SyntheticMarket(Connector):
    """``rate`` ticks/s spread over ``symbols`` random walks; event time = wall clock."""

    source = SYNTHETIC_SOURCE

    def __init__(self, rate: float, symbols: int = 20, seed: int = 42, *, anomalies: LiveAnomalyPlan | None = None,
                 clock: Clock = time.time, sleep: Sleep = asyncio.sleep):
        super().__init__()
        if not (rate > 0 and math.isfinite(rate)):
            raise ValueError(f"rate must be a positive number of ticks per second, got {rate}")
        if anomalies is not None and symbols < 2:
            raise ValueError("injected anomalies need at least 2 symbols: another trades while one has a gap")
        self.rate = rate
        self._names = symbol_names(symbols)
        self._rng = np.random.default_rng(seed)
        self._prices = self._rng.uniform(*START_PRICE_RANGE, len(self._names))
        self._sigmas = self._rng.uniform(*ANNUAL_VOLATILITY_RANGE, len(self._names))
        self._last_us = np.zeros(len(self._names), dtype=np.int64)
        self._clock, self._sleep = clock, sleep
        self._sequence = 0
        self._run_id = ""
        self._plan = anomalies
        self._first_bucket_us: int | None = None
        self._last_bar = np.full(len(self._names), -1, dtype=np.int64)  # bar of each symbol's last trade
        self._bar_injections: tuple[int, list[LiveInjection | None]] = (-1, [])  # the plan for the current bar

    def next_tick(self, now_us: int) -> Tick:
        """One trade at ``now_us``: a random symbol takes a GBM step since its last trade."""
        i = int(self._rng.integers(len(self._names)))
        injection: LiveInjection | None = None
        if self._plan is not None:
            i, injection = self._planned(i, now_us)
        elapsed_s = (now_us - self._last_us[i]) / MICROS_PER_SECOND if self._last_us[i] else 1.0
        step = self._sigmas[i] * math.sqrt(max(elapsed_s, 1e-6) / TRADING_SECONDS_PER_YEAR)
        log_return = step * float(self._rng.standard_normal())
        size = float(max(1, round(self._rng.lognormal(mean=4.0, sigma=1.0))))
        if injection is not None:
            log_return, size = self._inject(i, injection, log_return, size)
        self._prices[i] *= math.exp(log_return)
        self._last_us[i] = now_us
        self._sequence += 1
        self.stats.ticks += 1
        return Tick(self._names[i], now_us, round(float(self._prices[i]), PRICE_DECIMALS), size,
                    f"{self._run_id}-{self._sequence}", self.source)

    def _planned(self, drawn: int, now_us: int) -> tuple[int, LiveInjection | None]:
        """The symbol that trades at ``now_us`` (``drawn`` unless it is in a gap) and its injection."""
        assert self._plan is not None
        if self._first_bucket_us is None:
            self._first_bucket_us = now_us - now_us % self._plan.bar_us
        bar = (now_us - self._first_bucket_us) // self._plan.bar_us
        if self._bar_injections[0] != bar:
            self._bar_injections = (bar, [self._plan.injection(i, bar) for i in range(len(self._names))])
        injections = self._bar_injections[1]
        trading = [i for i, inj in enumerate(injections) if not _in_gap(inj)]
        i = drawn if drawn in trading else trading[int(self._rng.integers(len(trading)))]
        first_in_bar = self._last_bar[i] != bar
        self._last_bar[i] = bar
        injection = injections[i]
        if injection is not None and injection.kind in _JUMP_KINDS and not first_in_bar:
            return i, None  # a jump moves the bar's first trade; the walk carries it on
        return i, injection

    def _inject(self, i: int, injection: LiveInjection, log_return: float, size: float) -> tuple[float, float]:
        """(log return, size) of symbol ``i``'s trade under ``injection`` (not in a gap)."""
        assert self._plan is not None
        bar_sigma = self._sigmas[i] * math.sqrt(self._plan.bar_seconds / TRADING_SECONDS_PER_YEAR)
        if injection.kind is AnomalyKind.RETURN_OUTLIER:
            return log_return + injection.sign * INJECTED_JUMP_SIGMAS * bar_sigma, size
        if injection.kind is AnomalyKind.GAP_JUMP:
            jump = INJECTED_JUMP_SIGMAS * bar_sigma * math.sqrt(INJECTED_GAP_MINUTES + 1)
            return log_return + injection.sign * jump, size
        if injection.kind is AnomalyKind.VOLUME_SPIKE:
            return log_return, size * INJECTED_VOLUME_FACTOR
        return 0.0, size  # a frozen price: every trade at the last one

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


_JUMP_KINDS = (AnomalyKind.RETURN_OUTLIER, AnomalyKind.GAP_JUMP)


def _in_gap(injection: LiveInjection | None) -> bool:
    """A gap injection's bars before its jump: the symbol does not trade."""
    return (injection is not None and injection.kind is AnomalyKind.GAP_JUMP
            and injection.offset < INJECTED_GAP_MINUTES)
