"""The windowed bar chain (transforms.bars.WindowedBars, fed per tick) and per-tick dedup with
TestStream: on-time, early, late, too-late, out-of-order and duplicate ticks, and the algebra of
OhlcvCombineFn and DistinctPartialsCombineFn checked directly; partial bars a runner hands to a
window twice count once."""
import itertools
import math
import random

import apache_beam as beam
import pytest
from apache_beam.options.pipeline_options import StandardOptions
from apache_beam.testing.test_pipeline import TestPipeline
from apache_beam.testing.test_stream import TestStream
from apache_beam.testing.util import assert_that, equal_to
from apache_beam.transforms.window import TimestampedValue
from apache_beam.utils.timestamp import Timestamp
from hypothesis import example, given, settings
from hypothesis import strategies as st

from alphastream.records import PaneTiming, Tick
from tests.fixtures.per_tick import PerTickBars, PerTickDedup
from transforms.bars import (
    DistinctPartialsCombineFn,
    OhlcvCombineFn,
    bar_from_accumulator,
    merge_all,
    merge_two,
    tick_accumulator,
)
from transforms.tick_batches import BarsFromTickBatches

T0 = 1_704_205_800_000_000  # 2024-01-02 14:30:00 UTC, a minute boundary
SEC = 1_000_000


def tick(offset_s: float, price: float, size: float = 10, trade_id: str | None = None, symbol: str = "AAPL") -> Tick:
    ts = T0 + int(offset_s * SEC)
    return Tick(symbol, ts, price, size, trade_id or f"{symbol}-{ts}-{price}", "test")


def stamped(t: Tick) -> TimestampedValue:
    return TimestampedValue(t, Timestamp(micros=t.ts_us))


def streaming_pipeline() -> TestPipeline:
    p = TestPipeline()
    p.options.view_as(StandardOptions).streaming = True
    return p


def bar_view(bar):
    return (bar.symbol, bar.interval, bar.bucket_start_us, bar.open, bar.high, bar.low, bar.close,
            bar.volume, bar.trades, bar.timing, bar.pane_index)


# --- OhlcvCombineFn algebra ------------------------------------------------------------

def test_merge_is_associative_and_commutative():
    ticks = [tick(i * 0.5, 100 + (i * 7919 % 13), size=i % 4, trade_id=f"t{i}") for i in range(12)]
    accs = [tick_accumulator(t) for t in ticks]
    fn = OhlcvCombineFn()
    reference = fn.merge_accumulators(accs)
    rng = random.Random(3)
    for _ in range(20):
        shuffled = accs[:]
        rng.shuffle(shuffled)
        cut1, cut2 = sorted(rng.sample(range(1, len(shuffled)), 2))
        parts = [fn.merge_accumulators(shuffled[:cut1]), fn.merge_accumulators(shuffled[cut1:cut2]),
                 fn.merge_accumulators(shuffled[cut2:])]
        assert fn.merge_accumulators(parts) == reference
        assert fn.merge_accumulators(parts[::-1]) == reference
    assert fn.merge_accumulators([fn.create_accumulator(), reference, None]) == reference
    assert reference.open == ticks[0].price and reference.close == ticks[-1].price
    assert reference.trades == 12 and reference.volume == sum(t.size for t in ticks)


def test_open_close_ties_broken_by_trade_id_not_arrival():
    a, b = tick(1, 10.0, trade_id="b"), tick(1, 20.0, trade_id="a")  # same timestamp
    for order in itertools.permutations([a, b]):
        acc = None
        for t in order:
            acc = merge_two(acc, tick_accumulator(t))
        assert (acc.open, acc.close) == (20.0, 10.0)  # trade "a" sorts first


# The validated ranges (transforms.validation): price 1e-9..1e12, size 0 or 1e-12..1e15.
@settings(max_examples=300, deadline=None)
@given(st.lists(st.tuples(st.one_of(st.sampled_from([1e-9, 0.1, 0.3, 1e12]), st.floats(1e-9, 1e12)),
                          st.one_of(st.sampled_from([0.0, 1e-12, 0.7, 1e15]), st.floats(1e-12, 1e15))),
                min_size=1, max_size=30), st.randoms(use_true_random=False))
@example([(0.1, 0.0)] * 3, random.Random(0))  # the mean of equal prices rounds above them
@example([(0.3, 1e15), (0.3, 0.7), (0.3, 0.7)], random.Random(0))  # the weighted mean below
def test_vwap_is_finite_and_within_low_and_high_however_merged(trades, rng):
    accs = [tick_accumulator(tick(i, price, size, trade_id=f"t{i}")) for i, (price, size) in enumerate(trades)]
    rng.shuffle(accs)
    cut = rng.randint(0, len(accs))
    acc = OhlcvCombineFn().merge_accumulators([OhlcvCombineFn().merge_accumulators(accs[:cut]),
                                              OhlcvCombineFn().merge_accumulators(accs[cut:])])
    bar = bar_from_accumulator("AAPL", "1m", T0, acc, PaneTiming.ON_TIME, 0)
    assert math.isfinite(bar.vwap) and bar.low <= bar.vwap <= bar.high, bar


def test_distinct_partials_count_a_repeated_partial_once_however_merged():
    partials = [merge_all(tick_accumulator(tick(i + j * 0.1, 100 + j, trade_id=f"t{i}-{j}")) for j in range(3))
                for i in range(8)]
    fn = DistinctPartialsCombineFn()
    expected = OhlcvCombineFn().merge_accumulators(sorted(partials))
    rng = random.Random(5)
    for _ in range(20):
        delivered = partials + rng.sample(partials, 3)  # three handed over twice
        rng.shuffle(delivered)
        cut = rng.randint(1, len(delivered) - 1)
        halves = []
        for part in (delivered[:cut], delivered[cut:]):
            acc = fn.create_accumulator()
            for partial in part:
                acc = fn.add_input(acc, partial)
            halves.append(acc)
        merged = fn.extract_output(fn.merge_accumulators(halves))
        assert merged == expected and merged.trades == 24
    assert fn.extract_output(fn.create_accumulator()) is None


def test_a_partial_bar_handed_to_its_window_twice_counts_once_on_time_and_late():
    """As when a runner re-delivers an element after dedup: the same (symbol, [kept ticks])
    twice, in the on-time pane and again after it fired."""
    first = (tick(1, 100.0, size=2, trade_id="a"), tick(2, 101.0, size=3, trade_id="b"))
    late = (tick(3, 99.0, size=1, trade_id="c"),)
    stream = (TestStream().advance_watermark_to(Timestamp(micros=T0))
              .add_elements([TimestampedValue(("AAPL", list(first)), Timestamp(micros=T0 + SEC))] * 2)
              .advance_watermark_to(Timestamp(micros=T0 + 61 * SEC))
              .add_elements([TimestampedValue(("AAPL", list(first)), Timestamp(micros=T0 + SEC))])
              .add_elements([TimestampedValue(("AAPL", list(late)), Timestamp(micros=T0 + 3 * SEC))])
              .advance_watermark_to_infinity())
    with streaming_pipeline() as p:
        bars = p | stream | BarsFromTickBatches(("1m",), 120, 0)
        assert_that(bars | beam.Map(lambda b: (b.timing, b.trades, b.volume, b.open, b.close)), equal_to([
            (PaneTiming.ON_TIME.value, 2, 5.0, 100.0, 101.0),
            (PaneTiming.LATE.value, 2, 5.0, 100.0, 101.0),  # the repeat alone: nothing new
            (PaneTiming.LATE.value, 3, 6.0, 100.0, 99.0)]))


# --- PerTickBars with TestStream -----------------------------------------------------

def test_on_time_bar_from_out_of_order_ticks():
    ticks = [tick(30, 101), tick(5, 100), tick(50, 99), tick(20, 103)]  # arrive out of order
    stream = (TestStream().advance_watermark_to(Timestamp(micros=T0))
              .add_elements([stamped(t) for t in ticks])
              .advance_watermark_to(Timestamp(micros=T0 + 61 * SEC))
              .advance_watermark_to_infinity())
    with streaming_pipeline() as p:
        bars = p | stream | PerTickBars(("1m",), 120, 0) | beam.Map(bar_view)
        assert_that(bars, equal_to([("AAPL", "1m", T0, 100, 103, 99, 99, 40.0, 4, "ON_TIME", 0)]))


def test_early_on_time_and_late_panes_accumulate():
    stream = (TestStream().advance_watermark_to(Timestamp(micros=T0))
              .add_elements([stamped(tick(10, 100))])
              .advance_processing_time(6)                      # early firing: live partial bar
              .add_elements([stamped(tick(40, 105))])
              .advance_watermark_to(Timestamp(micros=T0 + 60 * SEC))  # window closes: on time
              .add_elements([stamped(tick(50, 90))])           # late but within lateness
              .advance_watermark_to(Timestamp(micros=T0 + 70 * SEC))
              .add_elements([stamped(tick(55, 80))])           # another late tick
              .advance_watermark_to_infinity())
    with streaming_pipeline() as p:
        bars = p | stream | PerTickBars(("1m",), 120, 5) | beam.Map(bar_view)
        assert_that(bars, equal_to([
            ("AAPL", "1m", T0, 100, 100, 100, 100, 10.0, 1, "EARLY", 0),
            ("AAPL", "1m", T0, 100, 105, 100, 105, 20.0, 2, "ON_TIME", 1),
            ("AAPL", "1m", T0, 100, 105, 90, 90, 30.0, 3, "LATE", 2),
            ("AAPL", "1m", T0, 100, 105, 80, 80, 40.0, 4, "LATE", 3),
        ]))


def test_ticks_later_than_allowed_lateness_do_not_change_bars():
    stream = (TestStream().advance_watermark_to(Timestamp(micros=T0))
              .add_elements([stamped(tick(10, 100))])
              .advance_watermark_to(Timestamp(micros=T0 + 60 * SEC + 31 * SEC))  # past end + 30 s lateness
              .add_elements([stamped(tick(20, 1.0))])
              .advance_watermark_to_infinity())
    with streaming_pipeline() as p:
        bars = p | stream | PerTickBars(("1m",), 30, 0) | beam.Map(bar_view)
        assert_that(bars, equal_to([("AAPL", "1m", T0, 100, 100, 100, 100, 10.0, 1, "ON_TIME", 0)]))


def test_several_intervals_and_symbols():
    ticks = [tick(10, 100), tick(70, 110), tick(290, 90), tick(15, 50, symbol="MSFT")]
    stream = (TestStream().advance_watermark_to(Timestamp(micros=T0))
              .add_elements([stamped(t) for t in ticks]).advance_watermark_to_infinity())
    with streaming_pipeline() as p:
        bars = p | stream | PerTickBars(("1m", "5m"), 60, 0) | beam.Map(lambda b: b[:3] + (b.open, b.close, b.trades))
        assert_that(bars, equal_to([
            ("AAPL", "1m", T0, 100, 100, 1), ("AAPL", "1m", T0 + 60 * SEC, 110, 110, 1),
            ("AAPL", "1m", T0 + 240 * SEC, 90, 90, 1), ("MSFT", "1m", T0, 50, 50, 1),
            ("AAPL", "5m", T0, 100, 90, 3), ("MSFT", "5m", T0, 50, 50, 1),
        ]))


def test_duplicates_dropped_before_bars_even_across_panes():
    first = tick(10, 100, trade_id="dup")
    stream = (TestStream().advance_watermark_to(Timestamp(micros=T0))
              .add_elements([stamped(first), stamped(tick(20, 101, trade_id="x"))])
              .add_elements([stamped(first)])                          # redelivered
              .advance_watermark_to(Timestamp(micros=T0 + 61 * SEC))
              .add_elements([stamped(first)])                          # redelivered late
              .advance_watermark_to_infinity())
    with streaming_pipeline() as p:
        bars = (p | stream | PerTickDedup(horizon_seconds=600)
                | PerTickBars(("1m",), 120, 0) | beam.Map(bar_view))
        assert_that(bars, equal_to([("AAPL", "1m", T0, 100, 101, 100, 101, 20.0, 2, "ON_TIME", 0)]))


def test_early_firing_delay_must_be_whole_seconds():
    # A fractional delay runs on the DirectRunner but cannot be translated for Dataflow.
    with pytest.raises(ValueError, match="whole number of seconds"):
        PerTickBars(("1m",), 60, 2.5)


def test_an_empty_pane_makes_no_bar():
    """Flink fires a window's closing pane even when nothing came since the last one: the combine
    then hands on no accumulator, and there is no bar to store (not a crash, not an empty bar)."""
    from apache_beam.transforms.window import IntervalWindow
    from apache_beam.utils.windowed_value import PaneInfo, PaneInfoTiming

    from transforms.bars import _WindowedBarDoFn

    closing = PaneInfo(is_first=False, is_last=True, timing=PaneInfoTiming.LATE, index=1, nonspeculative_index=1)
    window = IntervalWindow(0, 60)
    assert list(_WindowedBarDoFn("1m").process(("AAPL", None), window, closing)) == []
