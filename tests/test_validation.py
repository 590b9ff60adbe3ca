"""Every dead-letter reason, through the per-record parser and the columnar validator."""
import json
import math

import apache_beam as beam
import pyarrow as pa
import pytest
from apache_beam.testing.test_pipeline import TestPipeline
from apache_beam.testing.util import assert_that, equal_to
from hypothesis import given, settings
from hypothesis import strategies as st

from alphastream.records import DeadLetterReason, Tick
from transforms.parse import DEAD_LETTERS, TICKS, ParseTicks
from transforms.tick_tables import split_valid
from transforms.validation import ValidationPolicy, TickRejected, tick_from_json

NOW_US = 1_704_205_800_000_000  # 2024-01-02 14:30 UTC
GOOD = {"symbol": "AAPL", "ts_us": NOW_US - 1_000, "price": 185.5, "size": 100, "trade_id": "t1", "source": "test"}


def reject(payload) -> DeadLetterReason:
    text = payload if isinstance(payload, str) else json.dumps(payload)
    with pytest.raises(TickRejected) as caught:
        tick_from_json(text, now_us=NOW_US, default_source="file")
    return caught.value.reason


def test_good_tick_parses_with_iso_or_micros_timestamps():
    tick = tick_from_json(json.dumps(GOOD), now_us=NOW_US, default_source="file")
    assert tick == Tick("AAPL", NOW_US - 1_000, 185.5, 100.0, "t1", "test")
    iso = dict(GOOD, ts_us=None, ts="2024-01-02T14:29:59.999Z", symbol=" msft ", trade_id=7)
    del iso["source"]
    tick = tick_from_json(json.dumps(iso), now_us=NOW_US, default_source="file")
    assert (tick.symbol, tick.ts_us, tick.trade_id, tick.source) == ("MSFT", NOW_US - 1_000, "7", "file")


@pytest.mark.parametrize("payload, reason", [
    ("{not json", DeadLetterReason.BAD_JSON),
    ("[1, 2]", DeadLetterReason.BAD_JSON),
    ({k: v for k, v in GOOD.items() if k != "price"}, DeadLetterReason.MISSING_FIELD),
    ({k: v for k, v in GOOD.items() if k != "trade_id"}, DeadLetterReason.MISSING_FIELD),
    ({k: v for k, v in GOOD.items() if k != "ts_us"}, DeadLetterReason.MISSING_FIELD),
    (dict(GOOD, symbol=""), DeadLetterReason.MISSING_FIELD),
    (dict(GOOD, price=0), DeadLetterReason.BAD_PRICE),
    (dict(GOOD, price=-3.5), DeadLetterReason.BAD_PRICE),
    (dict(GOOD, price="abc"), DeadLetterReason.BAD_PRICE),
    ('{"symbol":"AAPL","ts_us":1704205799999000,"price":NaN,"size":1,"trade_id":"x"}', DeadLetterReason.BAD_PRICE),
    ('{"symbol":"AAPL","ts_us":1704205799999000,"price":Infinity,"size":1,"trade_id":"x"}', DeadLetterReason.BAD_PRICE),
    (dict(GOOD, size=-1), DeadLetterReason.BAD_SIZE),
    (dict(GOOD, size=True), DeadLetterReason.BAD_SIZE),
    (dict(GOOD, ts_us="yesterday"), DeadLetterReason.BAD_TIMESTAMP),
    (dict(GOOD, ts_us=1.5), DeadLetterReason.BAD_TIMESTAMP),
    (dict(GOOD, ts_us=None, ts="2024-13-45T00:00:00Z"), DeadLetterReason.BAD_TIMESTAMP),
    (dict(GOOD, ts_us=12345), DeadLetterReason.BAD_TIMESTAMP),
    (dict(GOOD, ts_us=NOW_US + 61_000_000), DeadLetterReason.FUTURE_TIMESTAMP),
    (dict(GOOD, symbol="AAPL; DROP TABLE bars"), DeadLetterReason.BAD_SYMBOL),
    (dict(GOOD, symbol="-AAPL"), DeadLetterReason.BAD_SYMBOL),
])
def test_each_reason(payload, reason):
    assert reject(payload) == reason


def test_future_limit_is_configurable():
    payload = json.dumps(dict(GOOD, ts_us=NOW_US + 61_000_000))
    policy = ValidationPolicy(max_future_us=120_000_000)
    assert tick_from_json(payload, now_us=NOW_US, default_source="f", policy=policy).ts_us == NOW_US + 61_000_000


def test_parse_ticks_tags_dead_letters_with_reason_raw_and_origin():
    good = json.dumps(GOOD)
    bad = [("sub:1", "{oops"), ("sub:2", json.dumps(dict(GOOD, price=-1))), ("sub:3", json.dumps(dict(GOOD, symbol="a b")))]
    with TestPipeline() as p:
        out = p | beam.Create([("sub:0", good)] + bad) | ParseTicks(lambda: NOW_US, "pubsub")
        assert_that(out[TICKS], equal_to([Tick("AAPL", NOW_US - 1_000, 185.5, 100.0, "t1", "test")]), label="ticks")
        summary = out[DEAD_LETTERS] | beam.Map(lambda d: (d.reason, d.raw, d.origin, d.seen_at_us))
        assert_that(summary, equal_to([
            ("bad_json", "{oops", "sub:1", NOW_US),
            ("bad_price", bad[1][1], "sub:2", NOW_US),
            ("bad_symbol", bad[2][1], "sub:3", NOW_US),
        ]), label="dead letters")


def _table(rows):
    return pa.Table.from_pylist(rows)


def test_columnar_validation_matches_per_record_reasons():
    rows = [GOOD, dict(GOOD, price=-1.0, trade_id="t2"), dict(GOOD, size=float("nan"), trade_id="t3"),
            dict(GOOD, symbol="bad symbol", trade_id="t4"), dict(GOOD, ts_us=NOW_US + 10**9, trade_id="t5"),
            dict(GOOD, trade_id="", price=1.0)]
    valid, dead = split_valid(_table(rows), "file.parquet", now_us=NOW_US, default_source="file", policy=ValidationPolicy())
    assert valid.column("trade_id").to_pylist() == ["t1"]
    assert [d.reason for d in dead] == ["bad_price", "bad_size", "bad_symbol", "future_timestamp", "missing_field"]
    assert all(d.origin == "file.parquet" for d in dead)


def test_columnar_validation_without_a_source_column_uses_the_default_source():
    rows = [{k: v for k, v in dict(GOOD, trade_id=f"t{i}").items() if k != "source"} for i in range(3)]
    valid, dead = split_valid(_table(rows), "f.parquet", now_us=NOW_US, default_source="file", policy=ValidationPolicy())
    assert dead == [] and valid.column("source").to_pylist() == ["file"] * 3


def test_columnar_falls_back_per_row_for_string_timestamps():
    rows = [dict(GOOD, ts_us=None, ts="2024-01-02T14:29:00Z"), dict(GOOD, ts_us=None, ts="garbage", trade_id="t2")]
    valid, dead = split_valid(_table(rows), "f.parquet", now_us=NOW_US, default_source="file", policy=ValidationPolicy())
    assert valid.column("ts_us").to_pylist() == [NOW_US - 60_000_000]
    assert [d.reason for d in dead] == ["bad_timestamp"]


prices = st.one_of(st.floats(allow_nan=True, allow_infinity=True), st.just(0.0), st.floats(0.01, 1e4))
row_strategy = st.fixed_dictionaries({
    "symbol": st.sampled_from(["AAPL", "BRK.B", "btc-usd", " msft ", "", "a b", "^GSPC", "X" * 40, None]),
    "ts_us": st.integers(0, NOW_US + 10**9),
    "price": prices,
    "size": st.one_of(st.floats(allow_nan=True, allow_infinity=True), st.floats(0, 1e6)),
    "trade_id": st.sampled_from(["a", "b", "", " ", "42"]),
    "source": st.sampled_from(["x", "y"]),
})


@settings(max_examples=60, deadline=None)
@given(st.lists(row_strategy, min_size=1, max_size=30), st.booleans())
def test_columnar_and_per_record_agree(rows, without_source):
    """The vectorised pre-filter accepts exactly the rows the per-record validator accepts
    (and a table without a source column gets the default source, as a record does)."""
    if without_source:
        rows = [{k: v for k, v in row.items() if k != "source"} for row in rows]
    valid, dead = split_valid(_table(rows), "f", now_us=NOW_US, default_source="file", policy=ValidationPolicy())
    expected_valid, expected_reasons = [], []
    for row in rows:
        try:
            expected_valid.append(tick_from_json(json.dumps(row), now_us=NOW_US, default_source="file"))
        except TickRejected as err:
            expected_reasons.append(err.reason.value)
    got = sorted(zip(*(valid.column(n).to_pylist() for n in Tick._fields)), key=repr)
    assert got == sorted(expected_valid, key=repr)
    assert sorted(d.reason for d in dead) == sorted(expected_reasons)
    assert valid.num_rows + len(dead) == len(rows)
    assert all(math.isfinite(p) and p > 0 for p in valid.column("price").to_pylist())
