"""Gap filling: a carry-forward bar for every empty bucket of a symbol, batch and streaming alike.

A quiet symbol leaves holes (a minute without a trade has no bar), which breaks indicators
and charts. ``FillGaps`` adds, per (symbol, interval), a *filled* bar for every empty bucket
that:

* comes after the symbol's first bar (nothing is invented before the first trade),
* starts at most ``max_gap_seconds`` after the start of the last bucket that traded (a symbol
  that stops trading, or a feed that dies, stops being filled),
* overlaps the symbol's trading session (``alphastream.sessions``; 24/7 when no calendar is given).

A filled bar has OHLC = VWAP = the previous bar's close, volume 0 and trades 0: that is how a
stored bar says it was filled (``is_filled``). Batch additionally stops at the end of the batch
group (the UTC day, see ``transforms.batch_bars``) holding the symbol's last bar, so a batch
run never writes a bar for a day it did not read.

Streaming decides each bucket when the watermark passes its end, with a looping event-time
timer per (symbol, interval), as Google's Dataflow time-series sample does: the bars of a
bucket, early or on time, have arrived by then; if none did, the bucket is filled. A late tick
in a bucket already filled arrives as a real bar and replaces the fill in the sinks; the fills
after it keep the older close until the finaliser recomputes them (``pipeline.repair``).
"""
# Beam's functions carry no annotations; calling them is the point of this module.
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Iterable, Iterator, Protocol, Sequence

import apache_beam as beam
import numpy as np
from apache_beam.coders.coders import FastPrimitivesCoder
from apache_beam.metrics.metric import Metrics
from apache_beam.transforms.userstate import BagStateSpec, ReadModifyWriteStateSpec, on_timer

from alphastream.intervals import interval_micros
from alphastream.records import METRICS_NAMESPACE, MICROS_PER_SECOND, Bar, PaneTiming
from transforms.beam_types import PColl, Transform
from transforms.looping_timer import BoundLoop, LoopingTimer, bucket_due_us
from transforms.session_days import DAILY

DEFAULT_MAX_GAP_SECONDS = 86_400


class SessionMask(Protocol):
    """Which buckets of a symbol overlap its trading session (``alphastream.sessions.SessionMap``)."""

    def open_mask(self, symbol: str, bucket_starts: np.ndarray, width_us: int) -> np.ndarray: ...


@dataclass(frozen=True)
class FillPolicy:
    """What gets filled: see the module docstring. ``sessions`` None means always open."""

    max_gap_seconds: int = DEFAULT_MAX_GAP_SECONDS
    sessions: SessionMask | None = None

    def __post_init__(self) -> None:
        if self.max_gap_seconds <= 0:
            raise ValueError(f"gap filling's max gap must be > 0 seconds, got {self.max_gap_seconds}")

    def in_session(self, symbol: str, bucket_starts: np.ndarray, width_us: int) -> np.ndarray:
        if self.sessions is None:
            return np.ones(len(bucket_starts), dtype=bool)
        return self.sessions.open_mask(symbol, bucket_starts, width_us)


def is_filled(bar: Bar) -> bool:
    """A carry-forward bar: no trade made it (the stored flag; the API serves it as ``filled``)."""
    return bar.trades == 0


def carry_forward_bar(symbol: str, interval: str, bucket_start_us: int, close: float) -> Bar:
    return Bar(symbol=symbol, interval=interval, bucket_start_us=bucket_start_us, open=close, high=close, low=close,
               close=close, volume=0.0, vwap=close, trades=0, timing=PaneTiming.ON_TIME.value, pane_index=0)


def fill_series(bars: Sequence[Bar], policy: FillPolicy, until_us: int | None = None) -> list[Bar]:
    """The filled bars between one symbol's bars of one interval (any order, one per bucket),
    before ``until_us`` (exclusive) when given. Returns the fills only."""
    if not bars:
        return []
    ordered = sorted(bars, key=lambda b: b.bucket_start_us)
    symbol, interval = ordered[0].symbol, ordered[0].interval
    width = interval_micros(interval)
    max_gap = policy.max_gap_seconds * MICROS_PER_SECOND
    fills: list[Bar] = []
    for bar, following in zip(ordered, [*ordered[1:], None], strict=True):
        end = bar.bucket_start_us + max_gap + 1  # buckets starting at most max_gap after this bar
        if following is not None:
            end = min(end, following.bucket_start_us)
        if until_us is not None:
            end = min(end, until_us)
        starts = np.arange(bar.bucket_start_us + width, end, width, dtype=np.int64)
        starts = starts[policy.in_session(symbol, starts, width)]
        fills.extend(carry_forward_bar(symbol, interval, start, bar.close) for start in starts.tolist())
    return fills


class _FillSeriesDoFn(beam.DoFn):
    """Batch: ((symbol, interval), its bars) -> the fills, up to the end of its last bar's group."""

    def __init__(self, policy: FillPolicy, group_us: int):
        self._policy, self._group_us = policy, group_us
        self._filled = Metrics.counter(METRICS_NAMESPACE, "bars_filled")

    def process(self, element: tuple[tuple[str, str], Iterable[Bar]]) -> Iterable[Bar]:
        bars = list(element[1])
        last = max(b.bucket_start_us for b in bars)
        fills = fill_series(bars, self._policy, until_us=last - last % self._group_us + self._group_us)
        self._filled.inc(len(fills))
        return fills


class _LoopingFillDoFn(beam.DoFn):
    """Streaming: ((symbol, interval), Bar) -> fills, one bucket decided per timer firing."""

    # CURSOR: (next bucket to decide, close to carry forward, last bucket that traded).
    CURSOR = ReadModifyWriteStateSpec("cursor", FastPrimitivesCoder())
    # Buckets (with their close) whose bars arrived before the watermark reached them.
    AHEAD = BagStateSpec("ahead", FastPrimitivesCoder())
    DECIDE = LoopingTimer("decide")
    # Beam finds a DoFn's state through these parameter defaults.
    CURSOR_STATE, AHEAD_STATE = beam.DoFn.StateParam(CURSOR), beam.DoFn.StateParam(AHEAD)

    def __init__(self, policy: FillPolicy):
        self._policy = policy
        self._max_gap = policy.max_gap_seconds * MICROS_PER_SECOND
        self._filled = Metrics.counter(METRICS_NAMESPACE, "bars_filled")

    def process(self, element: tuple[tuple[str, str], Bar], cursor_state: Any = CURSOR_STATE,
                ahead: Any = AHEAD_STATE, due: Any = DECIDE.due_param, decide: Any = DECIDE.timer_param) -> None:
        (_, interval), bar = element
        loop = BoundLoop(decide, due)
        cursor = cursor_state.read()
        armed = loop.armed
        if cursor is None or (not armed and bar.bucket_start_us > cursor[0]):
            # The first bar, or one after a silence longer than the max gap: nothing to fill before it.
            cursor = (bar.bucket_start_us, bar.close, bar.bucket_start_us)
        if bar.bucket_start_us < cursor[0]:
            # A late bar for a decided bucket: later fills carry its close if it is the latest.
            if bar.bucket_start_us >= cursor[2]:
                cursor = (cursor[0], bar.close, bar.bucket_start_us)
            cursor_state.write(cursor)
            return
        ahead.add((bar.bucket_start_us, bar.pane_index, bar.close))
        cursor_state.write(cursor)
        if not armed:
            loop.arm(bucket_due_us(cursor[0], interval_micros(interval)))

    @on_timer(DECIDE.spec)
    def _decide(self, key: Any = beam.DoFn.KeyParam, cursor_state: Any = CURSOR_STATE, ahead: Any = AHEAD_STATE,
                due: Any = DECIDE.due_param, decide: Any = DECIDE.timer_param) -> Iterator[Bar]:
        loop = BoundLoop(decide, due)
        if loop.firing_us() is None:
            return
        symbol, interval = key
        width = interval_micros(interval)
        bucket, close, last_traded = cursor_state.read()
        pending = list(ahead.read())
        here = [p for p in pending if p[0] == bucket]
        later = [p for p in pending if p[0] > bucket]
        if here:
            close, last_traded = max(here, key=lambda p: p[1])[2], bucket  # the highest pane is the whole bar
        elif bucket - last_traded <= self._max_gap and self._policy.in_session(
                symbol, np.array([bucket], dtype=np.int64), width)[0]:
            self._filled.inc()
            yield carry_forward_bar(symbol, interval, bucket, close)
        ahead.clear()
        for item in later:
            ahead.add(item)
        bucket += width
        cursor_state.write((bucket, close, last_traded))
        if later or bucket - last_traded <= self._max_gap:
            loop.arm(bucket_due_us(bucket, width))
        else:
            loop.stop()  # silent past the max gap: the next bar restarts the loop


class FillGaps(Transform):
    """Bars (any panes) -> the same bars plus a carry-forward bar for every empty bucket.

    Batch groups each (symbol, interval) series and fills it at once (``group_us``: the batch
    group width, where fills stop after a series' last bar); streaming decides each bucket
    as the watermark passes it.
    """

    def __init__(self, policy: FillPolicy, *, streaming: bool, group_us: int | None = None):
        super().__init__()
        fill: beam.DoFn
        if streaming:
            fill = _LoopingFillDoFn(policy)
        elif group_us is None:
            raise ValueError("batch gap filling needs group_us (transforms.batch_bars.coarse_bucket_micros)")
        else:
            fill = _FillSeriesDoFn(policy, group_us)
        self._streaming, self._fill = streaming, fill

    def expand(self, bars: PColl) -> PColl:
        # A 1d bar spans a whole trading session (transforms.session_days): there is no fixed-width
        # bucket to carry it forward into, so daily series are never filled.
        intraday = bars | "SkipSessionDays" >> beam.Filter(lambda b: b.interval != DAILY)
        keyed = intraday | "KeyBySeries" >> beam.Map(lambda b: ((b.symbol, b.interval), b)).with_output_types(
            tuple[tuple[str, str], Bar])
        fill = beam.ParDo(self._fill).with_output_types(Bar)
        if self._streaming:
            fills = keyed | "LoopingFill" >> fill
        else:
            fills = keyed | "GroupBySeries" >> beam.GroupByKey() | "FillSeries" >> fill
        with_fills: PColl = (bars, fills) | "WithFills" >> beam.Flatten().with_output_types(Bar)
        return with_fills
