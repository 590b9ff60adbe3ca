"""OHLCV bars from a stream of Ticks: event-time fixed windows, early/on-time/late panes.

``OhlcvCombineFn`` is the bar arithmetic for per-element data. open/close are the earliest and
latest trade by the total order (ts_us, trade_id, source), never by arrival order, so the
result is the same whatever order ticks arrive in and however bundles are split and merged.

``StreamingBars`` windows ticks per interval with a watermark trigger, early firings (live
partial bars) and late firings within the allowed lateness, accumulating panes: every pane of
a bar carries the whole bar so far, and the sink upserts by (symbol, interval, bucket) keeping
the highest pane index.
"""
from __future__ import annotations

from typing import Iterable, NamedTuple, Optional

import apache_beam as beam
from apache_beam.metrics import Metrics
from apache_beam.transforms import trigger, window
from apache_beam.utils.timestamp import Duration

from alphastream.intervals import interval_seconds
from alphastream.records import METRICS_NAMESPACE, Bar, PaneTiming, Tick

TradeOrder = tuple  # (ts_us, trade_id, source): the deterministic order of trades


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


def merge_two(a: Optional[OhlcvAccumulator], b: Optional[OhlcvAccumulator]) -> Optional[OhlcvAccumulator]:
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


def vwap(volume: float, notional: float, price_sum: float, trades: int, low: float, high: float) -> float:
    """Volume-weighted average price; the plain mean price when no volume traded. Rounding of
    the sums can put the quotient just outside the bar's prices, so it is clamped to them."""
    average = notional / volume if volume > 0 else price_sum / trades
    return min(max(average, low), high)


class OhlcvCombineFn(beam.CombineFn):
    """Ticks -> OhlcvAccumulator. Associative and commutative (tested directly)."""

    def create_accumulator(self) -> Optional[OhlcvAccumulator]:
        return None

    def add_input(self, accumulator, tick: Tick):
        return merge_two(accumulator, tick_accumulator(tick))

    def merge_accumulators(self, accumulators: Iterable):
        merged = None
        for acc in accumulators:
            merged = merge_two(merged, acc)
        return merged

    def extract_output(self, accumulator):
        return accumulator


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

    def process(self, element, win=beam.DoFn.WindowParam, pane=beam.DoFn.PaneInfoParam):
        symbol, acc = element
        timing = _BEAM_TIMING.get(pane.timing, PaneTiming.ON_TIME)
        self._panes.inc()
        yield bar_from_accumulator(symbol, self._interval, win.start.micros, acc, timing, pane.index)


class StreamingBars(beam.PTransform):
    """Timestamped Ticks (deduplicated) -> Bars for every interval, flattened.

    early_firing_seconds: processing-time delay between live partial bars (0 disables them).
    Whole seconds: Beam's portable trigger proto holds the delay in milliseconds but reads it
    back in whole seconds, and a fractional delay fails to translate for Dataflow.
    allowed_lateness_seconds: how long after the watermark passes a window a late tick still
    updates its bar (one LATE pane per late tick batch); later ticks are dropped by Beam and
    counted by the runner, so keep it above the feed's worst delay.
    """

    def __init__(self, intervals: tuple[str, ...], allowed_lateness_seconds: int, early_firing_seconds: int):
        super().__init__()
        if early_firing_seconds < 0 or early_firing_seconds != int(early_firing_seconds):
            raise ValueError(f"early firing delay must be a whole number of seconds >= 0, got {early_firing_seconds}")
        self._intervals = intervals
        self._lateness = allowed_lateness_seconds
        self._early = int(early_firing_seconds)

    def _trigger(self):
        early = trigger.AfterProcessingTime(self._early) if self._early > 0 else None
        return trigger.AfterWatermark(early=early, late=trigger.AfterCount(1))

    def expand(self, ticks):
        keyed = ticks | "KeyBySymbol" >> beam.Map(lambda t: (t.symbol, t)).with_output_types(tuple[str, Tick])
        per_interval = []
        for interval in self._intervals:
            bars = (
                keyed
                | f"Window{interval}" >> beam.WindowInto(
                    window.FixedWindows(interval_seconds(interval)),
                    trigger=self._trigger(),
                    accumulation_mode=trigger.AccumulationMode.ACCUMULATING,
                    allowed_lateness=Duration(seconds=self._lateness),
                )
                | f"Combine{interval}" >> beam.CombinePerKey(OhlcvCombineFn())
                | f"ToBar{interval}" >> beam.ParDo(_WindowedBarDoFn(interval)).with_output_types(Bar)
                # Each bar carries its bucket and pane now; one common windowing lets the
                # intervals be flattened, and every pane passes straight on to the sinks.
                | f"Rewindow{interval}" >> beam.WindowInto(
                    window.GlobalWindows(),
                    trigger=trigger.Repeatedly(trigger.AfterCount(1)),
                    accumulation_mode=trigger.AccumulationMode.DISCARDING,
                )
            )
            per_interval.append(bars)
        return per_interval | "FlattenIntervals" >> beam.Flatten().with_output_types(Bar)
