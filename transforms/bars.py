"""OHLCV bars in event time: the bar arithmetic, and the windowed chain that makes streaming bars.

An ``OhlcvAccumulator`` is a partial bar. open/close are the earliest and latest trade by the
total order (ts_us, trade_id, source), never by arrival order, so merging partial bars gives the
same bar whatever order ticks arrive in and however bundles are split and merged.

``WindowedBars`` windows partial bars per interval with a watermark trigger, early firings (live
partial bars) and late firings within the allowed lateness, accumulating panes: every pane of
a bar carries the whole bar so far, and the sink upserts by (symbol, interval, bucket) keeping
the highest pane index.
"""
# Beam's functions carry no annotations; calling them is the point of this module.
from __future__ import annotations

from typing import Any, Callable, Iterable, Iterator, NamedTuple

import apache_beam as beam
from apache_beam.metrics.metric import Metrics
from apache_beam.transforms import trigger, window
from apache_beam.utils.timestamp import Duration

from alphastream.intervals import interval_seconds
from alphastream.records import METRICS_NAMESPACE, Bar, PaneTiming, Tick
from alphastream.sessions import SessionMap
from transforms.beam_types import PColl, Transform
from transforms.session_days import SessionDayWindows, follows_sessions

TradeOrder = tuple[int, str, str]  # (ts_us, trade_id, source): the deterministic order of trades


class OhlcvAccumulator(NamedTuple):
    first: TradeOrder
    open: float
    last: TradeOrder
    close: float
    high: float
    low: float
    volume: float
    notional: float  # sum(price * size), for VWAP
    price_sum: float  # for the VWAP fallback when every trade has size 0
    trades: int


def tick_accumulator(tick: Tick) -> OhlcvAccumulator:
    order = (tick.ts_us, tick.trade_id, tick.source)
    return OhlcvAccumulator(
        order, tick.price, order, tick.price, tick.price, tick.price,
        tick.size, tick.price * tick.size, tick.price, 1,
    )


def merge_two(a: OhlcvAccumulator | None, b: OhlcvAccumulator | None) -> OhlcvAccumulator | None:
    if a is None:
        return b
    if b is None:
        return a
    first, open_ = (a.first, a.open) if a.first <= b.first else (b.first, b.open)
    last, close = (a.last, a.close) if a.last >= b.last else (b.last, b.close)
    return OhlcvAccumulator(
        first, open_, last, close, max(a.high, b.high), min(a.low, b.low),
        a.volume + b.volume, a.notional + b.notional, a.price_sum + b.price_sum, a.trades + b.trades,
    )


def merge_all(accumulators: Iterable[OhlcvAccumulator | None]) -> OhlcvAccumulator | None:
    merged = None
    for acc in accumulators:
        merged = merge_two(merged, acc)
    return merged


def vwap(volume: float, notional: float, price_sum: float, trades: int, low: float, high: float) -> float:
    """Volume-weighted average price; the plain mean price when no volume traded. Rounding of
    the sums can put the quotient just outside the bar's prices, so it is clamped to them."""
    average = notional / volume if volume > 0 else price_sum / trades
    return min(max(average, low), high)


class OhlcvCombineFn(beam.CombineFn):
    """Partial bars -> one partial bar. Associative and commutative (tested directly)."""

    def __init__(self) -> None:  # typed, so typed code may construct it
        super().__init__()  # type: ignore[no-untyped-call]  # Beam's CombineFn has no annotations

    def create_accumulator(self) -> OhlcvAccumulator | None:
        return None

    def add_input(self, accumulator: OhlcvAccumulator | None, partial: OhlcvAccumulator) -> OhlcvAccumulator | None:
        return merge_two(accumulator, partial)

    def merge_accumulators(self, accumulators: Iterable[OhlcvAccumulator | None]) -> OhlcvAccumulator | None:
        return merge_all(accumulators)

    def extract_output(self, accumulator: OhlcvAccumulator | None) -> OhlcvAccumulator | None:
        return accumulator


class DistinctPartialsCombineFn(beam.CombineFn):
    """Partial bars -> one partial bar, each distinct partial counted once: a partial bar that a
    runner hands to the window twice does not count twice (seen on Prism under load,
    docs/kafka-flink.md). Distinct partials are never equal: dedup puts each trade in one partial
    bar per bucket, and a partial carries its first and last trade and its sums. The accumulator
    holds the window's partials until the window expires: the local runners keep them for its
    panes anyway, and where a runner lifts the combine its state holds them."""

    def __init__(self) -> None:  # typed, so typed code may construct it
        super().__init__()  # type: ignore[no-untyped-call]  # Beam's CombineFn has no annotations

    def create_accumulator(self) -> set[OhlcvAccumulator]:
        return set()

    def add_input(self, partials: set[OhlcvAccumulator], partial: OhlcvAccumulator) -> set[OhlcvAccumulator]:
        partials.add(partial)
        return partials

    def merge_accumulators(self, accumulators: Iterable[set[OhlcvAccumulator]]) -> set[OhlcvAccumulator]:
        merged: set[OhlcvAccumulator] = set()
        for partials in accumulators:
            merged |= partials
        return merged

    def extract_output(self, partials: set[OhlcvAccumulator]) -> OhlcvAccumulator | None:
        return merge_all(sorted(partials))  # sorted: the float sums do not depend on set order


def bar_from_accumulator(
    symbol: str, interval: str, bucket_start_us: int, acc: OhlcvAccumulator, timing: PaneTiming, pane_index: int
) -> Bar:
    return Bar(
        symbol=symbol, interval=interval, bucket_start_us=bucket_start_us,
        open=acc.open, high=acc.high, low=acc.low, close=acc.close,
        volume=acc.volume, vwap=vwap(acc.volume, acc.notional, acc.price_sum, acc.trades, acc.low, acc.high),
        trades=acc.trades, timing=timing.value, pane_index=pane_index,
    )


# Beam's PaneInfoTiming is an int enum: EARLY=0, ON_TIME=1, LATE=2, UNKNOWN=3.
_BEAM_TIMING = {0: PaneTiming.EARLY, 1: PaneTiming.ON_TIME, 2: PaneTiming.LATE}


class _WindowedBarDoFn(beam.DoFn):
    """(symbol, accumulator) in a window -> Bar stamped with the window start and pane."""

    def __init__(self, interval: str):
        self._interval = interval
        self._panes = Metrics.counter(METRICS_NAMESPACE, f"bars_{interval}")

    def process(self, element: Any, win: Any = beam.DoFn.WindowParam,
                pane: Any = beam.DoFn.PaneInfoParam) -> Iterator[Any]:
        symbol, acc = element
        if acc is None:  # an empty pane: Beam fires the on-time and closing panes of a window even with nothing new
            return
        timing = _BEAM_TIMING.get(pane.timing, PaneTiming.ON_TIME)
        self._panes.inc()
        yield bar_from_accumulator(symbol, self._interval, win.start.micros, acc, timing, pane.index)


class WindowedBars(Transform):
    """Timestamped elements -> Bars for every interval, flattened.

    Per interval, ``partial_bars(interval)`` (a DoFn) turns each element into timestamped
    (symbol, OhlcvAccumulator) partial bars of that interval's buckets; they are windowed,
    combined per symbol, stamped with their window and pane, and moved to one common windowing.

    early_firing_seconds: processing-time delay between live partial bars (0 disables them).
    Whole seconds: Beam's portable trigger proto holds the delay in milliseconds but reads it
    back in whole seconds, and a fractional delay fails to translate for Dataflow.
    allowed_lateness_seconds: how long after the watermark passes a window a late tick still
    updates its bar (one LATE pane per late tick batch); later ticks are dropped by Beam and
    counted by the runner, so keep it above the feed's worst delay.
    sessions: with a SessionMap, ``1d`` windows are the symbol's sessions (transforms.session_days);
    ``partial_bars("1d")`` must then put each session's ticks in partial bars of their own.
    """

    def __init__(self, intervals: tuple[str, ...], allowed_lateness_seconds: int, early_firing_seconds: int,
                 partial_bars: Callable[[str], beam.DoFn], sessions: SessionMap | None = None):
        super().__init__()
        if early_firing_seconds < 0 or early_firing_seconds != int(early_firing_seconds):
            raise ValueError(f"early firing delay must be a whole number of seconds >= 0, got {early_firing_seconds}")
        self._intervals = intervals
        self._lateness = allowed_lateness_seconds
        self._early = int(early_firing_seconds)
        self._partial_bars = partial_bars
        self._sessions = sessions

    def _windows(self, interval: str) -> window.WindowFn:
        if self._sessions is not None and follows_sessions(interval, self._sessions):
            return SessionDayWindows(self._sessions)
        return window.FixedWindows(interval_seconds(interval))

    def _trigger(self) -> trigger.AfterWatermark:
        early = trigger.AfterProcessingTime(self._early) if self._early > 0 else None
        return trigger.AfterWatermark(early=early, late=trigger.AfterCount(1))

    def expand(self, elements: PColl) -> PColl:
        per_interval = [
            elements
            | f"PreAggregate{interval}" >> beam.ParDo(self._partial_bars(interval))
            | f"Window{interval}" >> beam.WindowInto(
                self._windows(interval),
                trigger=self._trigger(),
                accumulation_mode=trigger.AccumulationMode.ACCUMULATING,
                allowed_lateness=Duration(seconds=self._lateness))
            | f"Combine{interval}" >> beam.CombinePerKey(DistinctPartialsCombineFn())
            | f"ToBar{interval}" >> beam.ParDo(_WindowedBarDoFn(interval)).with_output_types(Bar)
            # Each bar carries its bucket and pane now; one common windowing lets the
            # intervals be flattened, and every pane passes straight on to the sinks.
            | f"Rewindow{interval}" >> beam.WindowInto(
                window.GlobalWindows(),
                trigger=trigger.Repeatedly(trigger.AfterCount(1)),
                accumulation_mode=trigger.AccumulationMode.DISCARDING)
            for interval in self._intervals
        ]
        bars: PColl = per_interval | "FlattenIntervals" >> beam.Flatten().with_output_types(Bar)
        return bars
