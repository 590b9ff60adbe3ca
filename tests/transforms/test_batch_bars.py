"""BatchBars (the columnar batch path) against an independent pandas computation, and
against both streaming paths on the same ticks (the per-tick reference, and the batched
message path the streaming graph runs): batch and streaming must give identical bars, also
with conflicting deliveries of a trade and deliveries across group edges and midnight."""
import datetime as dt
import json
import math

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
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from alphastream.records import Tick
from alphastream.synthetic import MarketSpec, market_ticks
from tests.fixtures.beam import Collected
from tests.fixtures.per_tick import PerTickBars, PerTickDedup
from tests.fixtures.reference import assert_same_bars, bars_frame, pandas_bars
from transforms.batch_bars import (
    BatchBars,
    bars_from_ordered_ticks,
    check_intervals_nest,
    context_for_next_group,
    split_by_symbol_bucket,
    trade_order,
    winning_deliveries,
)
from transforms.parse import DEAD_LETTERS, TICKS
from transforms.tick_batches import DEDUP_BUCKET_US, BarsFromTickBatches, DedupTickBatches, ParseTickBatches
from transforms.tick_tables import ArrowTableCoder, ipc_to_table, table_to_ipc, table_to_ticks, ticks_to_table
from transforms.validation import ValidationPolicy

T0 = 1_704_205_800_000_000
INTERVALS = ("1m", "5m", "1h")


def run_batch(tables: list[pa.Table], intervals=INTERVALS, min_group_seconds: int = 86_400,
              dedup_horizon_seconds: int = 0) -> list:
    with TestPipeline() as p:
        got = Collected(p | beam.Create(tables, reshuffle=False)
                        | BatchBars(intervals, dedup_horizon_seconds, min_group_seconds))
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
        got = Collected(p | stream | PerTickDedup(horizon_seconds=10**6) | PerTickBars(intervals, 0, 0))
    return got.items


def run_streaming_messages(ticks: list[Tick], per_message: int, intervals=INTERVALS) -> tuple[list, list]:
    """(bars, dead letters) from the graph's streaming path: ticks published as JSON-array
    messages of ``per_message`` ticks in arrival order, each stamped with its earliest tick
    (the wire format), through ParseTickBatches | DedupTickBatches | BarsFromTickBatches."""
    return run_streaming_batches([ticks[i:i + per_message] for i in range(0, len(ticks), per_message)], intervals)


def run_streaming_batches(batches: list[list[Tick]], intervals=INTERVALS) -> tuple[list, list]:
    """run_streaming_messages with the messages given: one message per list of ticks."""
    ticks = [t for chunk in batches for t in chunk]
    messages = []
    for chunk in batches:
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
        rows = set(zip(part.column("ts_us").to_pylist(), part.column("trade_id").to_pylist(), strict=True))
        symbol_rows = table.filter(pc.equal(table.column("symbol"), symbol))
        assert rows <= set(zip(symbol_rows.column("ts_us").to_pylist(), symbol_rows.column("trade_id").to_pylist(),
                           strict=True))
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
    winners, conflicting = winning_deliveries(ticks_to_table(ticks))
    unique = ticks_to_table(ticks).take(pa.array(winners))
    assert unique.column("trade_id").to_pylist() == ["y", "x", "x"]
    assert unique.column("source").to_pylist() == ["s1", "s1", "s2"]
    assert conflicting.tolist() == []  # the repeat is exact


def test_conflicting_deliveries_keep_the_smallest_time_price_size_whatever_the_order():
    deliveries = [Tick("A", T0 + 7, 5.0, 1.0, "x", "s1"), Tick("A", T0 + 7, 3.0, 2.0, "x", "s1"),
                  Tick("A", T0 + 7, 3.0, 1.0, "x", "s1"), Tick("A", T0 + 9, 1.0, 1.0, "x", "s1"),
                  Tick("A", T0 + 7, 3.0, 1.0, "x", "s1")]
    for shift in range(len(deliveries)):
        table = ticks_to_table(deliveries[shift:] + deliveries[:shift])
        winners, conflicting = winning_deliveries(table)
        assert table.take(pa.array(winners)).to_pylist() == [Tick("A", T0 + 7, 3.0, 1.0, "x", "s1")._asdict()]
        assert len(conflicting) == 3  # the exact repeat of the kept delivery is a plain duplicate


@settings(max_examples=80, deadline=None)
@given(st.lists(st.tuples(st.integers(0, 50), st.sampled_from(["a", "b", "c", "é", "10", "9"]),
                          st.sampled_from(["s1", "s2"]), st.sampled_from([1.0, 2.0, 0.5]), st.sampled_from([0.0, 1.0])),
                min_size=1, max_size=60))
def test_dedup_matches_pandas_sort_then_drop_duplicates(rows):
    """Repeats with other timestamps, prices, sizes, other sources and none at all: the rows
    kept equal pandas' first of each (source, trade_id) by (ts_us, price, size), then arrival,
    in trade order; the conflicting rows are those dropped that differ from the kept one."""
    ticks = [Tick("A", T0 + ts, price, size, trade, source) for ts, trade, source, price, size in rows]
    frame = pd.DataFrame(ticks, columns=Tick._fields).reset_index()
    by_delivery = frame.sort_values(["ts_us", "price", "size"], kind="stable")
    kept = by_delivery.drop_duplicates(["source", "trade_id"], keep="first")
    expected = kept.sort_values(["ts_us", "trade_id", "source"], kind="stable")["index"].tolist()
    dropped = frame.drop(kept["index"]).merge(kept, on=["source", "trade_id"], suffixes=("", "_kept"))
    differs = (dropped[["ts_us", "price", "size"]].to_numpy()
               != dropped[["ts_us_kept", "price_kept", "size_kept"]].to_numpy())
    expected_conflicting = sorted(dropped["index"][differs.any(axis=1)].tolist())
    for table in (ticks_to_table(ticks), as_shuffled(ticks_to_table(ticks))):
        winners, conflicting = winning_deliveries(table)
        assert winners.tolist() == expected
        assert sorted(conflicting.tolist()) == expected_conflicting


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


# --- one trade identity, conflicting deliveries, group edges -------------------------------

MIDNIGHT = 1_704_240_000_000_000  # 2024-01-03 00:00:00 UTC: a day group's edge
HORIZON_S = 600
SEC = 1_000_000


def test_redelivery_across_midnight_is_one_trade_within_the_horizon():
    kept = Tick("AAPL", MIDNIGHT - 2 * SEC, 100.0, 1.0, "t1", "feed")
    redelivered = kept._replace(ts_us=MIDNIGHT + 3 * SEC, price=101.0)  # another day, another price
    far = Tick("AAPL", MIDNIGHT - 2 * HORIZON_S * SEC, 99.0, 1.0, "t2", "feed")
    far_again = far._replace(ts_us=MIDNIGHT + 1)  # farther apart than the horizon: two trades
    other_symbol = redelivered._replace(symbol="MSFT")  # same feed and id, another symbol: its own trade
    ticks = [redelivered, far_again, other_symbol, kept, far]
    bars = bars_frame(run_batch([ticks_to_table(ticks[:2]), ticks_to_table(ticks[2:])], ("1h",),
                                dedup_horizon_seconds=HORIZON_S))
    assert bars[["symbol", "bucket_start_us", "trades", "low", "high"]].values.tolist() == [
        ["AAPL", MIDNIGHT - 3600 * SEC, 2, 99.0, 100.0], ["AAPL", MIDNIGHT, 1, 99.0, 99.0],
        ["MSFT", MIDNIGHT, 1, 101.0, 101.0]]
    # The next day holds nothing but the redelivery: no bar there at all.
    bars = run_batch([ticks_to_table([redelivered]), ticks_to_table([kept])], ("1h",), dedup_horizon_seconds=HORIZON_S)
    assert [(b.bucket_start_us, b.trades) for b in bars] == [(MIDNIGHT - 3600 * SEC, 1)]


def test_context_rows_are_those_within_the_horizon_of_their_groups_end():
    width = 3600 * SEC
    ticks = [Tick("A", MIDNIGHT - 601 * SEC, 1.0, 1.0, "early", "f"),
             Tick("A", MIDNIGHT - 600 * SEC, 1.0, 1.0, "edge", "f"),
             Tick("A", MIDNIGHT - 1, 1.0, 1.0, "last", "f"), Tick("B", MIDNIGHT + width - 5, 1.0, 1.0, "b", "f")]
    context = {key: rows.column("trade_id").to_pylist()
               for key, rows in context_for_next_group(ticks_to_table(ticks), width, HORIZON_S * SEC)}
    assert context == {("A", MIDNIGHT): ["edge", "last"], ("B", MIDNIGHT + width): ["b"]}
    assert list(context_for_next_group(ticks_to_table(ticks), width, 0)) == []


@st.composite
def deliveries_near_midnight(draw):
    """Trades around midnight, each delivered 1-4 times: exact repeats and conflicting ones
    (other time, price or size), all of a trade's deliveries within HORIZON_S of each other."""
    identities = draw(st.lists(st.tuples(st.sampled_from(["AAPL", "BTC-USD"]), st.integers(0, 30),
                                         st.sampled_from(["feeda", "feedb"])), min_size=1, max_size=25, unique=True))
    deliveries = []
    for symbol, trade, source in identities:
        base = MIDNIGHT + draw(st.integers(-1200 * SEC, 1200 * SEC))
        for _ in range(draw(st.integers(1, 4))):
            shift = draw(st.one_of(st.just(0), st.integers(-HORIZON_S // 2 * SEC, HORIZON_S // 2 * SEC)))
            deliveries.append(Tick(symbol, base + shift, draw(st.sampled_from([99.5, 100.0, 100.25])),
                                   draw(st.sampled_from([0.0, 1.0, 5.0])), f"t{trade}", source))
    return deliveries


@settings(max_examples=15, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(deliveries_near_midnight(), st.sampled_from([3600, 86_400]), st.randoms(use_true_random=False))
def test_batch_resolves_conflicts_across_groups_like_pandas_in_any_order(deliveries, min_group_seconds, rng):
    """Hour groups put edges every hour, day groups at midnight; the same deliveries shuffled
    and split into other files give exactly the same bars."""
    def bars(ticks, files):
        cut = max(1, len(ticks) // files)
        tables = [ticks_to_table(ticks[i:i + cut]) for i in range(0, len(ticks), cut)]
        return run_batch(tables, ("1m", "1h"), min_group_seconds, HORIZON_S)

    first = bars(deliveries, 1)
    assert_same_bars(bars_frame(first), pandas_bars(ticks_frame(deliveries), ("1m", "1h")))
    shuffled = rng.sample(deliveries, len(deliveries))
    assert sorted(bars(shuffled, rng.randint(2, 4))) == sorted(first)


@settings(max_examples=10, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(deliveries_near_midnight(), st.randoms(use_true_random=False))
def test_streaming_equals_batch_when_a_trades_deliveries_arrive_together(deliveries, rng):
    by_trade = {}
    for tick in deliveries:
        by_trade.setdefault((tick.source, tick.symbol, tick.trade_id), []).append(tick)
    messages = [[] for _ in range(rng.randint(1, 4))]
    for trade_deliveries in by_trade.values():
        rng.choice(messages).extend(trade_deliveries)
    messages = [rng.sample(m, len(m)) for m in messages if m]
    streamed, dead = run_streaming_batches(messages, ("1m", "1h"))
    assert dead == []
    assert_same_bars(bars_frame(streamed), bars_frame(run_batch([ticks_to_table(deliveries)], ("1m", "1h"),
                                                                dedup_horizon_seconds=HORIZON_S)))


# --- VWAP within [low, high] ---------------------------------------------------------------

# The validated ranges (transforms.validation): price 1e-9..1e12, size 0 or 1e-12..1e15.
extreme_prices = st.one_of(st.sampled_from([1e-9, 0.1, 0.3, 1e12]), st.floats(1e-9, 1e12))
extreme_sizes = st.one_of(st.sampled_from([0.0, 1e-12, 0.7, 1e15]), st.floats(1e-12, 1e15))
extreme_trades = st.lists(st.tuples(st.integers(0, 3 * 60 * SEC), extreme_prices, extreme_sizes),
                          min_size=1, max_size=30)


@settings(max_examples=300, deadline=None)
@given(extreme_trades)
@example([(0, 0.1, 0.0), (1, 0.1, 0.0), (2, 0.1, 0.0)])  # the mean of equal prices rounds up
@example([(0, 0.3, 1e15), (1, 0.3, 0.7), (2, 0.3, 0.7)])  # so does a volume-weighted one, down
def test_batch_vwap_is_finite_and_within_low_and_high(trades):
    ts, price, size = (pd.Series(column).to_numpy() for column in zip(*sorted(trades), strict=True))
    for bar in bars_from_ordered_ticks("A", T0 + ts, price, size, ("1m", "5m")):
        assert math.isfinite(bar.vwap) and bar.low <= bar.vwap <= bar.high, bar


@settings(max_examples=8, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(extreme_trades)
@example([(0, 0.1, 0.0), (1, 0.1, 0.0), (2, 0.1, 0.0)])
def test_batch_and_streaming_agree_on_extreme_prices_and_sizes(trades):
    ticks = [Tick("A", T0 + ts, price, size, f"t{i}", "feed") for i, (ts, price, size) in enumerate(trades)]
    batch = run_batch([ticks_to_table(ticks)], ("1m", "5m"))
    streamed, dead = run_streaming_messages(ticks, 7, ("1m", "5m"))
    assert dead == []
    assert all(math.isfinite(b.vwap) and b.low <= b.vwap <= b.high for b in batch + streamed)
    assert_same_bars(bars_frame(streamed), bars_frame(batch))
