"""transforms.gap_fill: carry-forward bars for empty buckets, checked against a pandas reindex and
forward fill (tests.fixtures.reference.pandas_filled_bars), and batch == streaming including the fills
(TestStream with the watermark advanced past the end)."""
from __future__ import annotations

import json

import apache_beam as beam
import numpy as np
import pandas as pd
import pyarrow as pa
import pytest
from apache_beam.options.pipeline_options import StandardOptions
from apache_beam.testing.test_pipeline import TestPipeline
from apache_beam.testing.test_stream import TestStream
from apache_beam.transforms.window import TimestampedValue
from apache_beam.utils.timestamp import Timestamp
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from alphastream.records import Bar, Tick
from alphastream.sessions import SessionMap
from alphastream.tick_archive import TickArchive
from pipeline.repair import recompute
from tests.fixtures.bars import bar
from tests.fixtures.beam import Collected
from tests.fixtures.reference import assert_same_bars, bars_frame, pandas_bars, pandas_filled_bars
from transforms.batch_bars import BatchBars
from transforms.gap_fill import FillGaps, FillPolicy, fill_series, is_filled
from transforms.parse import TICKS
from transforms.tick_batches import DEDUP_BUCKET_US, BarsFromTickBatches, DedupTickBatches, ParseTickBatches
from transforms.tick_tables import ticks_to_table
from transforms.validation import ValidationPolicy

T0 = 1_704_205_800_000_000  # 2024-01-02 14:30:00 UTC
MIN = 60_000_000
INTERVALS = ("1m", "5m")
DAY_US = 86_400_000_000




class EveryOtherBucketOpen:
    """A session mask for tests: open when the bucket index is even."""

    def open_mask(self, symbol, bucket_starts, width_us):
        return (np.asarray(bucket_starts) // width_us) % 2 == 0


def test_fill_series_carries_the_previous_close_forward_up_to_the_max_gap():
    bars = [bar(T0 + 3 * MIN, 11.0), bar(T0, 10.0)]  # any order
    fills = fill_series(bars, FillPolicy(max_gap_seconds=120))
    assert [(f.bucket_start_us - T0) // MIN for f in fills] == [1, 2, 4, 5]
    assert [f.close for f in fills] == [10.0, 10.0, 11.0, 11.0]
    first = fills[0]
    assert (first.open, first.high, first.low, first.vwap) == (10.0, 10.0, 10.0, 10.0)
    assert (first.volume, first.trades) == (0.0, 0)
    assert all(is_filled(f) for f in fills) and not any(is_filled(b) for b in bars)


def test_fill_series_stops_at_until_after_a_long_silence_and_outside_the_session():
    bars = [bar(T0, 10.0), bar(T0 + 30 * MIN, 12.0)]
    fills = fill_series(bars, FillPolicy(max_gap_seconds=3 * 60), until_us=T0 + 32 * MIN)
    assert [(f.bucket_start_us - T0) // MIN for f in fills] == [1, 2, 3, 31]
    gated = fill_series(bars[:1], FillPolicy(max_gap_seconds=5 * 60, sessions=EveryOtherBucketOpen()))
    assert all((f.bucket_start_us // MIN) % 2 == 0 for f in gated) and len(gated) == 2


def test_max_gap_must_be_positive():
    with pytest.raises(ValueError, match="max gap"):
        FillPolicy(max_gap_seconds=0)


tick_rows = st.lists(
    st.tuples(st.sampled_from(["AAPL", "BTC-USD"]), st.integers(0, 40 * MIN),
              st.sampled_from([99.5, 100.0, 101.0]), st.sampled_from([0.0, 1.0, 5.0]), st.integers(0, 10**6)),
    min_size=1, max_size=25)


def to_ticks(rows) -> list[Tick]:
    return [Tick(symbol, T0 + offset, price, size, f"t{trade}", "feed") for symbol, offset, price, size, trade in rows]


def one_delivery_per_trade(rows):
    """The rows without a trade's later deliveries. Delivered twice in different messages, a trade
    keeps its first delivery in streaming and its smallest in batch (transforms.batch_bars):
    equal only when deliveries come together. The fill tests compare fills, not that rule."""
    first = {}
    for row in rows:
        first.setdefault((row[0], row[4]), row)  # (symbol, trade number): the trade's identity here
    return list(first.values())


def run_batch(ticks: list[Tick], policy: FillPolicy, group_us: int = DAY_US) -> list[Bar]:
    with TestPipeline() as p:
        got = Collected(p | beam.Create([ticks_to_table(ticks)], reshuffle=False) | BatchBars(INTERVALS)
                        | FillGaps(policy, streaming=False, group_us=group_us))
    return got.items


def run_streaming(ticks: list[Tick], policy: FillPolicy, per_message: int = 3) -> list[Bar]:
    """Ticks in arrival order, as messages of ``per_message``, all on time; then the watermark
    goes past every fill (a day later), then to the end. Fills come from timers: those fired
    only by the final jump to infinity come after the global window's end, and the collector
    drops them as late, as any downstream GroupByKey would."""
    messages = [TimestampedValue(("test", json.dumps([t._asdict() for t in chunk]).encode()),
                                 Timestamp(micros=min(t.ts_us for t in chunk)))
                for chunk in (ticks[i:i + per_message] for i in range(0, len(ticks), per_message))]
    first_us = min(t.ts_us for t in ticks)
    stream = (TestStream().advance_watermark_to(Timestamp(micros=first_us - first_us % 1000))
              .add_elements(messages).advance_watermark_to(Timestamp(micros=first_us - first_us % 1000 + DAY_US))
              .advance_watermark_to_infinity())
    options = TestPipeline().options
    options.view_as(StandardOptions).streaming = True
    with TestPipeline(options=options) as p:
        parsed = p | stream | ParseTickBatches(lambda: T0 + 10**12, "test", ValidationPolicy(), DEDUP_BUCKET_US)
        bars = (parsed[TICKS] | DedupTickBatches(DEDUP_BUCKET_US, horizon_seconds=10**6)
                | BarsFromTickBatches(INTERVALS, 0, 0) | FillGaps(policy, streaming=True))
        got = Collected(bars)
    return got.items


def last_panes(bars: list[Bar]) -> list[Bar]:
    """What a sink keeps: per bar, the highest pane; a real bar over a fill of the same pane."""
    best: dict[tuple, Bar] = {}
    for b in bars:
        key = (b.symbol, b.interval, b.bucket_start_us)
        if key not in best or (b.pane_index, b.trades > 0) > (best[key].pane_index, best[key].trades > 0):
            best[key] = b
    return list(best.values())


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(tick_rows, st.sampled_from([60, 240, 1800]), st.sampled_from([3600, 86_400]))
def test_batch_fills_equal_a_pandas_reindex_and_forward_fill(rows, max_gap_seconds, group_seconds):
    ticks = to_ticks(rows)
    got = run_batch(ticks, FillPolicy(max_gap_seconds), group_us=group_seconds * 1_000_000)
    real = pandas_bars(pa.Table.from_pylist([t._asdict() for t in ticks]).to_pandas(), INTERVALS)
    expected = []
    for _, series in real.groupby(["symbol", "interval"]):
        last = series["bucket_start_us"].max()
        until = last - last % (group_seconds * 1_000_000) + group_seconds * 1_000_000
        expected.append(pandas_filled_bars(series, max_gap_seconds * 1_000_000, until))
    expected_frame = pd.concat(expected).sort_values(["interval", "symbol", "bucket_start_us"]).reset_index(drop=True)
    assert_same_bars(bars_frame(got), expected_frame)


@settings(max_examples=8, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(tick_rows, st.sampled_from([60, 600]))
def test_streaming_fills_equal_batch_fills(rows, max_gap_seconds):
    # Ticks end 40 minutes after T0 and fills at most 10 minutes later: all inside the batch day.
    ticks = to_ticks(one_delivery_per_trade(rows))
    policy = FillPolicy(max_gap_seconds)
    batch = run_batch(ticks, policy)
    streamed = last_panes(run_streaming(ticks, policy))
    assert_same_bars(bars_frame(streamed), bars_frame(batch))
    assert sum(is_filled(b) for b in streamed) == sum(is_filled(b) for b in batch)


def test_streaming_fills_follow_the_session_and_stop_after_the_max_gap():
    ticks = [Tick("AAPL", T0 + 10, 10.0, 1.0, "a", "feed"), Tick("AAPL", T0 + 9 * MIN, 12.0, 1.0, "b", "feed")]
    got = last_panes(run_streaming(ticks, FillPolicy(3 * 60, sessions=EveryOtherBucketOpen()), per_message=1))
    fills = sorted(((b.bucket_start_us - T0) // MIN, b.close) for b in got if b.interval == "1m" and is_filled(b))
    # T0 is an even minute; buckets 1 and 3 are closed; after 9 the max gap ends at 12.
    assert fills == [(2, 10.0), (10, 12.0), (12, 12.0)]


def test_repair_from_the_archive_fills_like_the_batch_path(tmp_path):
    ticks = [Tick("AAPL", T0 + 10, 10.0, 1.0, "a", "feed"), Tick("AAPL", T0 + 7 * MIN, 12.0, 2.0, "b", "feed"),
             Tick("BTC-USD", T0 + 3 * MIN, 50.0, 1.0, "c", "feed")]
    archive = TickArchive(str(tmp_path), "ingest")
    archive.append(ticks)
    archive.close()
    policy = FillPolicy(max_gap_seconds=600)
    repaired = recompute(str(tmp_path), T0, T0 + 30 * MIN, INTERVALS, now_us=T0 + DAY_US, fill=policy)
    assert sum(is_filled(b) for b in repaired.bars) > 0
    assert_same_bars(bars_frame(repaired.bars), bars_frame(run_batch(ticks, policy)))


def test_fill_gaps_is_on_for_live_runs_and_off_for_batch_unless_asked():
    from pipeline.options import AlphastreamOptions, fill_policy

    def policy(*flags, streaming):
        return fill_policy(AlphastreamOptions(list(flags)), streaming)

    for bus in ("pubsub", "kafka"):
        assert policy("--source", bus, streaming=True) == FillPolicy(sessions=SessionMap())
    assert policy(streaming=False) is None
    # the bounded local synthetic stream: its final watermark jump would fill a day of buckets
    assert policy("--source", "synthetic", streaming=True) is None
    assert policy("--fill_gaps", "--fill_gaps_max_seconds", "600", "--exchange_map", "ETH-USD=XNYS",
                  "--fill_session_hours", "extended", streaming=False) == FillPolicy(
        600, SessionMap((("ETH-USD", "XNYS"),), "extended"))
    assert policy("--source", "pubsub", "--no-fill_gaps", streaming=True) is None



@pytest.mark.parametrize("streaming", [False, True])
def test_daily_session_bars_are_never_filled(streaming):
    """A 1d bar spans a session, not a fixed bucket: two sessions days apart stay two bars, with no
    carry-forward bar between them, even when the gap is within the policy's max gap."""
    daily = [bar(T0, 10.0, interval="1d"), bar(T0 + 3 * DAY_US, 11.0, interval="1d")]
    elements = [TimestampedValue(b, Timestamp(micros=b.bucket_start_us)) for b in daily]
    options = TestPipeline().options
    options.view_as(StandardOptions).streaming = streaming
    with TestPipeline(options=options) as p:
        got = Collected(p | beam.Create(elements) | FillGaps(FillPolicy(max_gap_seconds=4 * 86_400),
                                                             streaming=streaming, group_us=DAY_US))
    assert sorted(got.items) == sorted(daily)
