"""BatchBars (the columnar batch path) against an independent pandas computation, and
against both streaming paths on the same ticks (StreamingBars per tick, and the batched
message path the streaming graph runs): batch and streaming must give identical bars."""
import datetime as dt
import json

import apache_beam as beam
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
import pytest
from apache_beam.options.pipeline_options import StandardOptions
from apache_beam.testing.test_pipeline import TestPipeline
from apache_beam.testing.test_stream import TestStream
from apache_beam.transforms.window import TimestampedValue
from apache_beam.utils.timestamp import Timestamp
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from alphastream.records import Tick
from alphastream.synthetic import MarketSpec, market_ticks
from transforms.bars import StreamingBars
from transforms.batch_bars import (BatchBars, check_intervals_nest, split_by_symbol_bucket, unique_in_trade_order,
                                   trade_order)
from transforms.dedup import DedupTrades
from transforms.parse import DEAD_LETTERS, TICKS
from transforms.tick_batches import DEDUP_BUCKET_US, BarsFromTickBatches, DedupTickBatches, ParseTickBatches
from transforms.validation import ValidationPolicy
from transforms.tick_tables import ArrowTableCoder, ipc_to_table, table_to_ipc, table_to_ticks, ticks_to_table
from tests.beam_helpers import Collected
from tests.reference import assert_same_bars, bars_frame, pandas_bars

T0 = 1_704_205_800_000_000
INTERVALS = ("1m", "5m", "1h")


def run_batch(tables: list[pa.Table], intervals=INTERVALS, min_group_seconds: int = 86_400) -> list:
    with TestPipeline() as p:
        got = Collected(p | beam.Create(tables, reshuffle=False) | BatchBars(intervals, min_group_seconds))
    return got.items


def run_streaming(ticks: list[Tick], intervals=INTERVALS) -> list:
    """Final (last) pane of every bar from the streaming path, all ticks on time."""
    first_us = min(t.ts_us for t in ticks)
    # TestStream watermarks must be whole milliseconds.
    stream = TestStream().advance_watermark_to(Timestamp(micros=first_us - first_us % 1000))
    stream = stream.add_elements([TimestampedValue(t, Timestamp(micros=t.ts_us)) for t in ticks])
    stream = stream.advance_watermark_to_infinity()
    options = TestPipeline().options
    options.view_as(StandardOptions).streaming = True
    with TestPipeline(options=options) as p:
        got = Collected(p | stream | DedupTrades(horizon_seconds=10**6) | StreamingBars(intervals, 0, 0))
    return got.items


def run_streaming_messages(ticks: list[Tick], per_message: int, intervals=INTERVALS) -> tuple[list, list]:
    """(bars, dead letters) from the graph's streaming path: ticks published as JSON-array
    messages of ``per_message`` ticks in arrival order, each stamped with its earliest tick
    (the wire format), through ParseTickBatches | DedupTickBatches | BarsFromTickBatches."""
    messages = []
    for i in range(0, len(ticks), per_message):
        chunk = ticks[i:i + per_message]
        body = json.dumps([t._asdict() for t in chunk]).encode()
        messages.append(TimestampedValue(("test", body), Timestamp(micros=min(t.ts_us for t in chunk))))
    first_us = min(t.ts_us for t in ticks)
    stream = (TestStream().advance_watermark_to(Timestamp(micros=first_us - first_us % 1000))
              .add_elements(messages).advance_watermark_to_infinity())
    options = TestPipeline().options
    options.view_as(StandardOptions).streaming = True
    with TestPipeline(options=options) as p:
        parsed = p | stream | ParseTickBatches(lambda: T0 + 10**12, "test", ValidationPolicy(), DEDUP_BUCKET_US)
        bars = (parsed[TICKS] | DedupTickBatches(DEDUP_BUCKET_US, horizon_seconds=10**6)
                | BarsFromTickBatches(intervals, 0, 0))
        got, dead = Collected(bars), Collected(parsed[DEAD_LETTERS], label="CollectDead")
    return got.items, dead.items


def ticks_frame(ticks: list[Tick]) -> pd.DataFrame:
    return pd.DataFrame(ticks, columns=Tick._fields)


tick_rows = st.lists(
    st.tuples(
        st.sampled_from(["AAPL", "MSFT", "BTC-USD"]),
        st.integers(0, 3 * 3600 * 1_000_000),          # within three hours
        st.sampled_from([1.0, 99.5, 100.0, 100.25, 101.0, 250.0]),  # repeated prices: ties in high/low
        st.sampled_from([0.0, 1.0, 5.0, 100.0]),         # zero sizes: the VWAP fallback
        st.integers(0, 40),                              # small id space: duplicates happen
        st.sampled_from(["feedA", "feedB"]),
    ),
    min_size=1, max_size=80,
)


def to_ticks(rows) -> list[Tick]:
    # A repeated (source, trade_id) is a redelivery: same trade, identical fields.
    first = {}
    for symbol, offset, price, size, trade, source in rows:
        first.setdefault((source, trade), Tick(symbol, T0 + offset, price, size, f"t{trade}", source))
    return [first[(source, trade)] for *_, trade, source in rows]


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(tick_rows, st.integers(1, 4), st.sampled_from([3600, 86_400]))
def test_batch_bars_equal_pandas(rows, splits, min_group_seconds):
    # Hour groups put group boundaries inside the ticks' three hours; day groups (the default) do not.
    ticks = to_ticks(rows)
    chunk = max(1, len(ticks) // splits)
    tables = [ticks_to_table(ticks[i:i + chunk]) for i in range(0, len(ticks), chunk)]
    assert_same_bars(bars_frame(run_batch(tables, min_group_seconds=min_group_seconds)),
                     pandas_bars(ticks_frame(ticks), INTERVALS))


@settings(max_examples=10, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(tick_rows)
def test_batch_and_streaming_give_identical_bars(rows):
    ticks = to_ticks(rows)
    batch = bars_frame(run_batch([ticks_to_table(ticks)]))
    streaming = bars_frame(run_streaming(ticks))
    assert_same_bars(streaming, batch)


@settings(max_examples=10, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(tick_rows, st.integers(1, 30))
def test_batch_and_message_streaming_give_identical_bars(rows, per_message):
    ticks = to_ticks(rows)
    bars, dead = run_streaming_messages(ticks, per_message)
    assert dead == []
    assert_same_bars(bars_frame(bars), bars_frame(run_batch([ticks_to_table(ticks)])))


def test_batch_and_streaming_identical_on_synthetic_market():
    spec = MarketSpec(day=dt.date(2024, 1, 2), symbols=3, ticks_per_symbol=400, seed=7)
    table = market_ticks(spec)
    ticks = table_to_ticks(table)
    batch = bars_frame(run_batch([table]))
    assert_same_bars(batch, pandas_bars(ticks_frame(ticks), INTERVALS))
    assert_same_bars(bars_frame(run_streaming(ticks)), batch)
    # The graph's path, in arrival order: duplicates and out-of-order ticks span messages.
    message_bars, dead = run_streaming_messages(ticks, 100)
    assert dead == []
    assert_same_bars(bars_frame(message_bars), batch)
    assert len(ticks) > batch.query("interval == '1h'")["trades"].sum()  # duplicates were dropped


def test_split_covers_every_row_once():
    spec = MarketSpec(day=dt.date(2024, 1, 2), symbols=4, ticks_per_symbol=300)
    table = market_ticks(spec)
    parts = list(split_by_symbol_bucket(table, 3600 * 1_000_000))
    assert sum(t.num_rows for _, t in parts) == table.num_rows
    for (symbol, bucket), part in parts:
        assert "symbol" not in part.column_names  # the key carries it
        rows = set(zip(part.column("ts_us").to_pylist(), part.column("trade_id").to_pylist()))
        symbol_rows = table.filter(pc.equal(table.column("symbol"), symbol))
        assert rows <= set(zip(symbol_rows.column("ts_us").to_pylist(), symbol_rows.column("trade_id").to_pylist()))
        ts = part.column("ts_us").to_numpy()
        assert ((ts - ts % 3_600_000_000) == bucket).all()


def as_shuffled(table: pa.Table) -> pa.Table:
    """``table`` (one symbol-day) as the dedup step receives it: split in two, each half through
    the split and Arrow IPC, concatenated (two chunks, same row order)."""
    half = table.num_rows // 2
    parts = [ipc_to_table(table_to_ipc(group)) for piece in (table.slice(0, half), table.slice(half))
             if piece.num_rows for _, group in split_by_symbol_bucket(piece, 86_400_000_000)]
    return pa.concat_tables(parts)


def test_dedup_keeps_one_per_source_and_trade_id():
    ticks = [Tick("A", T0 + 5, 1.0, 1.0, "x", "s1"), Tick("A", T0 + 5, 1.0, 1.0, "x", "s1"),
             Tick("A", T0 + 5, 2.0, 1.0, "x", "s2"), Tick("A", T0 + 1, 3.0, 1.0, "y", "s1")]
    unique = ticks_to_table(ticks).take(pa.array(unique_in_trade_order(ticks_to_table(ticks))))
    assert unique.column("trade_id").to_pylist() == ["y", "x", "x"]
    assert unique.column("source").to_pylist() == ["s1", "s1", "s2"]


@settings(max_examples=80, deadline=None)
@given(st.lists(st.tuples(st.integers(0, 50), st.sampled_from(["a", "b", "c", "é", "10", "9"]),
                          st.sampled_from(["s1", "s2"])), min_size=1, max_size=60))
def test_dedup_matches_pandas_sort_then_drop_duplicates(rows):
    """Repeats with other timestamps, other sources and none at all: the rows kept and their
    order equal pandas' stable sort by trade order, then first of each (source, trade_id)."""
    ticks = [Tick("A", T0 + ts, float(i + 1), 1.0, trade, source) for i, (ts, trade, source) in enumerate(rows)]
    frame = pd.DataFrame(ticks, columns=Tick._fields).reset_index()
    expected = (frame.sort_values(["ts_us", "trade_id", "source"], kind="stable")
                .drop_duplicates(["source", "trade_id"], keep="first")["index"].tolist())
    assert unique_in_trade_order(ticks_to_table(ticks)).tolist() == expected
    assert unique_in_trade_order(as_shuffled(ticks_to_table(ticks))).tolist() == expected


@settings(max_examples=60, deadline=None)
@given(st.lists(st.tuples(st.integers(0, 5), st.sampled_from(["a", "b", "B", "é", "10", "9"]),
                          st.sampled_from(["s1", "s2"])), min_size=1, max_size=40))
def test_trade_order_is_arrows_stable_multi_key_sort(rows):
    """Timestamps from a tiny range, so most rows tie: both tie-breaks (Python, Arrow) are checked."""
    ticks = [Tick("A", T0 + ts, 1.0, 1.0, trade, source) for ts, trade, source in rows]
    table = ticks_to_table(ticks)
    expected = pc.sort_indices(table, sort_keys=[("ts_us", "ascending"), ("trade_id", "ascending"),
                                                 ("source", "ascending")])  # stable
    assert trade_order(table).tolist() == expected.to_pylist()
    assert trade_order(table, max_python_ties=1.0).tolist() == expected.to_pylist()  # ties sorted in Python
    shuffled = as_shuffled(table)
    assert shuffled.column("source").num_chunks == min(2, len(rows))
    assert trade_order(shuffled).tolist() == expected.to_pylist()
    assert trade_order(shuffled, max_python_ties=1.0).tolist() == expected.to_pylist()


def test_intervals_must_nest():
    check_intervals_nest(("1m", "5m", "1h", "1d"))
    with pytest.raises(ValueError, match="7m"):
        check_intervals_nest(("1m", "7m", "1h"))


def test_arrow_table_coder_round_trips_and_estimates_without_encoding():
    table = market_ticks(MarketSpec(day=dt.date(2024, 1, 2), symbols=2, ticks_per_symbol=500))
    coder = beam.coders.registry.get_coder(pa.Table)
    assert isinstance(coder, ArrowTableCoder)  # tick tables are never pickled
    assert coder.decode(coder.encode(table)).equals(table)
    sliced = table.slice(100, 50)
    assert coder.decode(coder.encode(sliced)).equals(sliced)
    # Beam samples sizes on every PCollection; the estimate must not pay for an encode.
    assert coder.estimate_size(table) == table.nbytes
    assert coder.get_impl().estimate_size(table) >= table.nbytes
