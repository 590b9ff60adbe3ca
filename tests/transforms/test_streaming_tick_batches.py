"""transforms.tick_batches with TestStream: message batches -> parse -> dedup -> bars, equal to
the pandas oracle with duplicates across messages, out-of-order ticks, heartbeats, late data
and malformed items; the panes are on time, then late; conflicting deliveries of a trade
resolve within a message and are counted across messages. Dedup runs both ways of forgetting
(Forget.TIMER, and Forget.SLOTS as on Flink)."""
from __future__ import annotations

import json
import random

import pandas as pd
import pytest
from apache_beam.metrics.metric import MetricsFilter
from apache_beam.options.pipeline_options import StandardOptions
from apache_beam.testing.test_pipeline import TestPipeline
from apache_beam.testing.test_stream import TestStream
from apache_beam.transforms.window import TimestampedValue
from apache_beam.utils.timestamp import Timestamp

from alphastream.records import PaneTiming, Tick
from tests.fixtures.beam import Collected
from tests.fixtures.reference import assert_same_bars, bars_frame, pandas_bars
from transforms.parse import DEAD_LETTERS, TICKS
from transforms.tick_batches import (
    DEDUP_BUCKET_US,
    BarsFromTickBatches,
    DedupTickBatches,
    Forget,
    ParseTickBatches,
    slot_count,
)
from transforms.validation import ValidationPolicy

T0 = 1_704_205_800_000_000  # 2024-01-02 14:30:00 UTC
SEC = 1_000_000
NOW_US = T0 + 3600 * SEC  # the parser's clock: every test tick is in its past
INTERVALS = ("1s", "5s")
ORIGIN = "projects/p/subscriptions/s"


def message(ticks: list[Tick] | list[dict]) -> TimestampedValue:
    """A batched body stamped, as alphastream.wire does, with its earliest tick (ms precision)."""
    items = [t._asdict() if isinstance(t, Tick) else t for t in ticks]
    earliest = min(item["ts_us"] for item in items if isinstance(item.get("ts_us"), int))
    return TimestampedValue((ORIGIN, json.dumps(items).encode()), Timestamp(micros=earliest // 1000 * 1000))


HORIZON_S = 60


def run(events: TestStream, lateness: int = 10, counters: dict | None = None, forget: Forget = Forget.TIMER):
    """(bars, dead letters); ``counters``, if given, receives the run's counters by name."""
    p = TestPipeline()
    p.options.view_as(StandardOptions).streaming = True
    parsed = p | events | ParseTickBatches(lambda: NOW_US, "pubsub", ValidationPolicy(), DEDUP_BUCKET_US)
    bars = (parsed[TICKS] | DedupTickBatches(DEDUP_BUCKET_US, horizon_seconds=HORIZON_S, forget=forget)
            | BarsFromTickBatches(INTERVALS, lateness, 0))
    got_bars, got_letters = Collected(bars, "Bars"), Collected(parsed[DEAD_LETTERS], "Letters")
    result = p.run()
    result.wait_until_finish()
    if counters is not None:
        for counter in result.metrics().query(MetricsFilter())["counters"]:
            counters[counter.key.metric.name] = counters.get(counter.key.metric.name, 0) + counter.committed
    return got_bars.items, got_letters.items


def final_bars(bars) -> pd.DataFrame:
    """The row a sink keeps per bar: the highest pane."""
    best = {}
    for bar in bars:
        key = (bar.symbol, bar.interval, bar.bucket_start_us)
        if key not in best or bar.pane_index > best[key].pane_index:
            best[key] = bar
    return bars_frame(list(best.values()))


@pytest.mark.parametrize("forget", list(Forget))
def test_batches_with_duplicates_and_disorder_give_the_pandas_bars(forget):
    rng = random.Random(11)
    ticks = [Tick(rng.choice(["AAPL", "MSFT"]), T0 + rng.randrange(9 * SEC), round(rng.uniform(99, 101), 2),
                  float(rng.randint(0, 9)), f"t{i}", "feed") for i in range(300)]
    deliveries = ticks + rng.sample(ticks, 40)  # duplicates, some in other messages
    rng.shuffle(deliveries)
    events = TestStream()
    for start in range(0, len(deliveries), 34):
        events.add_elements([message(deliveries[start:start + 34])])
    events.add_elements([TimestampedValue((ORIGIN, b"[]"), Timestamp(micros=T0 + 9 * SEC))])  # heartbeat
    events.advance_watermark_to_infinity()

    bars, letters = run(events, forget=forget)

    assert letters == []
    assert {b.timing for b in bars} == {PaneTiming.ON_TIME.value}
    assert_same_bars(final_bars(bars), pandas_bars(pd.DataFrame([t._asdict() for t in ticks]), INTERVALS))


@pytest.mark.parametrize("forget", list(Forget))
def test_late_batches_update_bars_and_malformed_items_are_dead_lettered(forget):
    on_time = [Tick("AAPL", T0 + i * 100_000, 100.0 + i, 1.0, f"a{i}", "feed") for i in range(5)]
    late = [Tick("AAPL", T0 + 700_000, 90.0, 2.0, "late-1", "feed")]
    bad_items = [{"symbol": "AAPL", "ts_us": T0 + 1, "price": -5, "size": 1, "trade_id": "neg", "source": "feed"},
                 {"symbol": "AAPL", "ts_us": T0 + 2, "price": 5, "size": 1, "source": "feed"}]
    # A tick earlier than its message's timestamp cannot be placed in its window: dead-lettered.
    early_in_message = Tick("AAPL", T0 + 1_000, 50.0, 1.0, "before-message", "feed")
    events = (TestStream()
              .add_elements([message(on_time + bad_items)])
              .add_elements([TimestampedValue((ORIGIN, json.dumps([early_in_message._asdict()]).encode()),
                                              Timestamp(micros=T0 + 500_000))])
              .add_elements([TimestampedValue((ORIGIN, b"{broken"), Timestamp(micros=T0))])
              .advance_watermark_to(Timestamp(micros=T0 + 6 * SEC))
              .add_elements([message(late)])
              .advance_watermark_to_infinity())

    bars, letters = run(events, forget=forget)

    one_second = sorted((b for b in bars if b.interval == "1s"), key=lambda b: b.pane_index)
    assert [(b.timing, b.trades, b.low) for b in one_second] == [
        (PaneTiming.ON_TIME.value, 5, 100.0), (PaneTiming.LATE.value, 6, 90.0)]
    assert sorted(letter.reason for letter in letters) == ["bad_json", "bad_price", "bad_timestamp", "missing_field"]
    assert {letter.origin for letter in letters} == {ORIGIN}
    (before,) = [letter for letter in letters if letter.reason == "bad_timestamp"]
    assert "before its message's event time" in before.detail and json.loads(before.raw)["trade_id"] == "before-message"


@pytest.mark.parametrize("forget", list(Forget))
def test_conflicting_deliveries_resolve_in_a_message_and_later_ones_leave_the_bars_alone(forget):
    kept = Tick("AAPL", T0 + 900_000, 100.0, 2.0, "t1", "feed")
    next_bucket = kept._replace(ts_us=T0 + 1_200_000, price=99.0)  # later: in the next dedup bucket
    dearer = kept._replace(price=101.0)
    other_symbol = kept._replace(symbol="MSFT", price=7.0)  # same feed and id: another trade
    preferred_but_late = kept._replace(price=50.0)  # the rule would keep it, but bars are out already
    expected = [("AAPL", "1s", T0, 1, 100.0, 2.0), ("AAPL", "5s", T0, 1, 100.0, 2.0),
                ("MSFT", "1s", T0, 1, 7.0, 2.0), ("MSFT", "5s", T0, 1, 7.0, 2.0)]

    def bars_of(events, counters=None):
        bars, letters = run(events.advance_watermark_to_infinity(), counters=counters, forget=forget)
        assert letters == []
        return sorted((b.symbol, b.interval, b.bucket_start_us, b.trades, b.low, b.volume)
                      for b in final_bars(bars).itertuples())

    counters = {}
    in_one_message = TestStream().add_elements([message([next_bucket, dearer, kept, other_symbol])])
    assert bars_of(in_one_message, counters) == expected
    assert (counters["ticks_unique"], counters["ticks_duplicate"], counters["ticks_conflicting"]) == (2, 2, 2)
    # Across messages (the DirectRunner's result then reports the first bundle's counters only,
    # so the bars show it): the later delivery is dropped.
    later = (TestStream().add_elements([message([kept, other_symbol])])
             .add_elements([message([preferred_but_late, kept])]))
    assert bars_of(later) == expected


def test_hostile_message_bodies_become_dead_letters_with_their_bytes_kept():
    """A body nested beyond Python's recursion limit, or not UTF-8, is one bad_json dead letter
    (its invalid bytes kept as \\xNN escapes), and the run goes on."""
    import apache_beam as beam

    from transforms.tick_batches import UNREADABLE, decode_tick_batch

    assert decode_tick_batch(b"[" * 100_000) == [(UNREADABLE, b"[" * 100_000)]
    with TestPipeline() as p:
        parsed = (p | beam.Create([("sub", b"\xff\xfe" + json.dumps({"symbol": "AAPL"}).encode()),
                                   ("sub", b"[" * 100_000)])
                  | ParseTickBatches(lambda: 0, "pubsub", ValidationPolicy(), DEDUP_BUCKET_US))
        letters = Collected(parsed[DEAD_LETTERS])
    dead = letters.items
    assert sorted(letter.raw[:6] for letter in dead) == ["[[[[[[", "\\xff\\x"]
    assert {letter.reason for letter in dead} == {"bad_json"}


def test_slots_forget_a_bucket_only_once_a_bucket_a_ring_later_takes_its_slot():
    slots = slot_count(DEDUP_BUCKET_US, HORIZON_S)
    assert slots == 2 * (HORIZON_S + 1)  # twice the buckets ending within the horizon
    t1 = Tick("AAPL", T0 + 500_000, 100.0, 1.0, "t1", "feed")
    other_slot = t1._replace(ts_us=T0 + (slots - 1) * SEC + 500_000, trade_id="t-other-slot")
    same_slot = t1._replace(ts_us=T0 + slots * SEC + 500_000, trade_id="t-same-slot")
    # Each redelivery of t1 comes with a new trade of its bucket, so that a counted t1 makes a
    # partial bar of its own (the bars count a partial bar handed over twice once).
    t2, t3 = t1._replace(trade_id="t2"), t1._replace(trade_id="t3")
    events = TestStream()
    for ticks in ([t1], [other_slot], [t1, t2], [same_slot], [t1, t3], [same_slot]):
        events.add_elements([message(ticks)])

    bars, letters = run(events.advance_watermark_to_infinity(), forget=Forget.SLOTS)

    trades = {(b.bucket_start_us - T0) // SEC: b.trades for b in final_bars(bars).itertuples() if b.interval == "1s"}
    # t1's redelivery after a bucket of another slot is a duplicate (t1, t2); after the bucket a
    # ring later took t1's slot, t1 is forgotten and counts again with t3, as after the timer
    # fired; that later bucket's own redelivery is still a duplicate.
    assert letters == []
    assert trades == {0: 4, slots - 1: 1, slots: 1}


def test_the_timer_keeps_a_bucket_until_the_watermark_passes_it():
    slots = slot_count(DEDUP_BUCKET_US, HORIZON_S)
    t1 = Tick("AAPL", T0 + 500_000, 100.0, 1.0, "t1", "feed")
    same_slot = t1._replace(ts_us=T0 + slots * SEC + 500_000, trade_id="t-same-slot")
    events = TestStream()
    for ticks in ([t1], [same_slot], [t1, t1._replace(trade_id="t2")]):
        events.add_elements([message(ticks)])

    bars, _ = run(events.advance_watermark_to_infinity(), forget=Forget.TIMER)

    trades = {(b.bucket_start_us - T0) // SEC: b.trades for b in final_bars(bars).itertuples() if b.interval == "1s"}
    assert trades == {0: 2, slots: 1}  # t1 once: the watermark never passed its bucket + horizon
