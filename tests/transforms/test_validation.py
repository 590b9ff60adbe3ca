"""Every dead-letter reason, through the per-record parser and the columnar validator."""
import codecs
import json

import apache_beam as beam
import pyarrow as pa
import pyarrow.compute as pc
import pytest
from apache_beam.testing.test_pipeline import TestPipeline
from apache_beam.testing.util import assert_that, equal_to
from hypothesis import given, settings
from hypothesis import strategies as st

from alphastream.records import DeadLetterReason, Tick
from transforms.parse import DEAD_LETTERS, TICKS, ParseTicks
from transforms.tick_tables import DATETIME_MAX_US, DATETIME_MIN_US, split_valid, timestamps_to_micros
from transforms.validation import (
    MAX_PRICE,
    MAX_SIZE,
    MIN_PRICE,
    MIN_SIZE,
    CsvRow,
    TickRejected,
    ValidationPolicy,
    tick_from_fields,
    tick_from_json,
)

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
    bad = [("sub:1", "{oops"), ("sub:2", json.dumps(dict(GOOD, price=-1))),
           ("sub:3", json.dumps(dict(GOOD, symbol="a b")))]
    with TestPipeline() as p:
        out = p | beam.Create([("sub:0", good)] + bad) | ParseTicks(lambda: NOW_US, "pubsub")
        assert_that(out[TICKS], equal_to([Tick("AAPL", NOW_US - 1_000, 185.5, 100.0, "t1", "test")]), label="ticks")
        summary = out[DEAD_LETTERS] | beam.Map(lambda d: (d.reason, d.raw, d.origin, d.seen_at_us))
        assert_that(summary, equal_to([
            ("bad_json", "{oops", "sub:1", NOW_US),  # no event time: dated by the read
            ("bad_price", bad[1][1], "sub:2", NOW_US - 1_000),  # dated by the trade's own time
            ("bad_symbol", bad[2][1], "sub:3", NOW_US - 1_000),
        ]), label="dead letters")


def _table(rows):
    return pa.Table.from_pylist(rows)


def test_columnar_validation_matches_per_record_reasons():
    rows = [GOOD, dict(GOOD, price=-1.0, trade_id="t2"), dict(GOOD, size=float("nan"), trade_id="t3"),
            dict(GOOD, symbol="bad symbol", trade_id="t4"), dict(GOOD, ts_us=NOW_US + 10**9, trade_id="t5"),
            dict(GOOD, trade_id="", price=1.0)]
    valid, dead = split_valid(_table(rows), "file.parquet", now_us=NOW_US, default_source="file",
                              policy=ValidationPolicy())
    assert valid.column("trade_id").to_pylist() == ["t1"]
    assert [d.reason for d in dead] == ["bad_price", "bad_size", "bad_symbol", "future_timestamp", "missing_field"]
    assert all(d.origin == "file.parquet" for d in dead)


def test_columnar_validation_without_a_source_column_uses_the_default_source():
    rows = [{k: v for k, v in dict(GOOD, trade_id=f"t{i}").items() if k != "source"} for i in range(3)]
    valid, dead = split_valid(_table(rows), "f.parquet", now_us=NOW_US, default_source="file",
                              policy=ValidationPolicy())
    assert dead == [] and valid.column("source").to_pylist() == ["file"] * 3


def test_columnar_falls_back_per_row_for_string_timestamps():
    rows = [dict(GOOD, ts_us=None, ts="2024-01-02T14:29:00Z"), dict(GOOD, ts_us=None, ts="garbage", trade_id="t2")]
    valid, dead = split_valid(_table(rows), "f.parquet", now_us=NOW_US, default_source="file",
                              policy=ValidationPolicy())
    assert valid.column("ts_us").to_pylist() == [NOW_US - 60_000_000]
    assert [d.reason for d in dead] == ["bad_timestamp"]


EDGES = [MIN_PRICE, MIN_PRICE * 0.999, MAX_PRICE, MAX_PRICE * 1.001, MIN_SIZE, MIN_SIZE * 0.999, MAX_SIZE,
         MAX_SIZE * 1.001, 1e308, 5e-324, -0.0]
prices = st.one_of(st.floats(allow_nan=True, allow_infinity=True), st.just(0.0), st.floats(0.01, 1e4),
                   st.sampled_from(EDGES))
row_strategy = st.fixed_dictionaries({
    "symbol": st.sampled_from(["AAPL", "BRK.B", "btc-usd", " msft ", "\tAapl\n", "", "a b", "^GSPC", "X" * 40, None,
                               "\xa0AAPL", "stra\u00dfe"]),
    "ts_us": st.integers(0, NOW_US + 10**9),
    "price": prices,
    "size": st.one_of(st.floats(allow_nan=True, allow_infinity=True), st.floats(0, 1e6), st.just(0.0),
                      st.sampled_from(EDGES)),
    "trade_id": st.sampled_from(["a", "b", "", " ", "42", " A1 ", "a1\t"]),
    "int_trade_id": st.integers(-3, 3),
    "source": st.sampled_from(["x", "y", " X ", "Feed", "feed\n", "", " ", None, "\u00c4rX"]),
})


@settings(max_examples=100, deadline=None)
@given(st.lists(row_strategy, min_size=1, max_size=30), st.booleans(), st.booleans(),
       st.sampled_from(["file", " File "]))
def test_columnar_and_per_record_agree(rows, without_source, int_trade_ids, default_source):
    """The vectorised pre-filter accepts exactly the rows the per-record validator accepts, with
    the same identity (symbol upper, source lower, trade_id trimmed, an int id as its text) and
    the same price/size ranges; a table without a source column gets the default source."""
    rows = [{k: v for k, v in row.items() if k != "int_trade_id"} | (
        {"trade_id": row["int_trade_id"]} if int_trade_ids else {}) for row in rows]
    if without_source:
        rows = [{k: v for k, v in row.items() if k != "source"} for row in rows]
    valid, dead = split_valid(_table(rows), "f", now_us=NOW_US, default_source=default_source,
                              policy=ValidationPolicy())
    expected_valid, expected_reasons = [], []
    for row in rows:
        try:
            expected_valid.append(tick_from_json(json.dumps(row), now_us=NOW_US, default_source=default_source))
        except TickRejected as err:
            expected_reasons.append(err.reason.value)
    got = sorted(zip(*(valid.column(n).to_pylist() for n in Tick._fields), strict=True), key=repr)
    assert got == sorted(expected_valid, key=repr)
    assert sorted(d.reason for d in dead) == sorted(expected_reasons)
    assert valid.num_rows + len(dead) == len(rows)
    assert all(MIN_PRICE <= p <= MAX_PRICE for p in valid.column("price").to_pylist())
    assert all(s == 0 or MIN_SIZE <= s <= MAX_SIZE for s in valid.column("size").to_pylist())
    assert all(s == s.strip().lower() and s for s in valid.column("source").to_pylist() if s.isascii())


# --- hostile payloads, identity normalisation and numeric ranges -------------------------------

def _parse_all(elements):
    """Run ParseTicks over (origin, payload) elements; returns (ticks, dead letters)."""
    from tests.fixtures.beam import Collected

    with TestPipeline() as p:
        out = p | beam.Create(elements, reshuffle=False) | ParseTicks(lambda: NOW_US, "file")
        ticks, dead = Collected(out[TICKS], "Ticks"), Collected(out[DEAD_LETTERS], "Dead")
    return ticks.items, dead.items


GOOD_LINE = json.dumps(GOOD).encode()
HEADER = ("symbol", "ts_us", "price", "size", "trade_id", "source")
GOOD_CELLS = ("AAPL", str(NOW_US - 1_000), "185.5", "100", "t1", "test")


@pytest.mark.parametrize("payload, reason, raw, detail", [
    (b"\xff\xfe" + GOOD_LINE, "bad_json", "\\xff\\xfe" + GOOD_LINE.decode(), "not valid UTF-8"),
    (GOOD_LINE.replace(b'"t1"', b'"p\\ud800"'), "bad_json", GOOD_LINE.decode().replace('"t1"', '"p\\ud800"'),
     "'trade_id'"),
    (GOOD_LINE.replace(b'"test"', b'"\\udcff"'), "bad_json", GOOD_LINE.decode().replace('"test"', '"\\udcff"'),
     "'source'"),
    (b"[" * 100_000, "bad_json", "[" * 100_000, "not valid JSON"),  # nesting deeper than Python's stack
    (GOOD_LINE.replace(b"185.5", b"1" + b"0" * 400), "bad_price", None, "beyond"),  # float() overflows
    (CsvRow(HEADER, GOOD_CELLS[:5]), "bad_json", "AAPL,1704205799999000,185.5,100,t1", "5 cells"),
    (CsvRow((json.dumps(GOOD),), (json.dumps(GOOD),)), "missing_field", None, "'symbol'"),  # a JSON header
    (CsvRow(HEADER, ("AAPL\udcff",) + GOOD_CELLS[1:]), "bad_json", "AAPL\\xff,1704205799999000,185.5,100,t1,test",
     "not valid UTF-8"),
    (CsvRow(("symbol\udcff",) + HEADER[1:], GOOD_CELLS), "bad_json", None, "header is not valid UTF-8"),
    (CsvRow(HEADER, (), error="field larger than field limit (131072)"), "bad_json", "", "field limit"),
])
def test_hostile_payloads_become_dead_letters_with_escaped_raw_text(payload, reason, raw, detail):
    ticks, dead = _parse_all([("f:2", payload)])
    assert ticks == []
    assert [d.reason for d in dead] == [reason]
    assert detail in dead[0].detail
    if raw is not None:
        assert dead[0].raw == raw
    dead[0].raw.encode("utf-8"), dead[0].detail.encode("utf-8")  # storable by any sink


def test_bom_bytes_and_csv_rows_parse_like_json_text():
    ticks, dead = _parse_all([("a", codecs.BOM_UTF8 + GOOD_LINE), ("b", GOOD_LINE.decode()),
                              ("c", CsvRow(HEADER, GOOD_CELLS))])
    assert dead == []
    assert ticks == [Tick("AAPL", NOW_US - 1_000, 185.5, 100.0, "t1", "test")] * 3


def test_a_json_object_or_array_is_never_a_field_value():
    for name in ("symbol", "trade_id", "source", "price", "size", "ts_us"):
        for value in ({"nested": GOOD}, [1]):
            assert reject(dict(GOOD, **{name: value})) in (DeadLetterReason.MISSING_FIELD, DeadLetterReason.BAD_SYMBOL,
                                                          DeadLetterReason.BAD_PRICE, DeadLetterReason.BAD_SIZE,
                                                          DeadLetterReason.BAD_TIMESTAMP), (name, value)


@pytest.mark.parametrize("ts", ["2024-01-02T14:29:59.999999999Z", "2024-01-02T14:29:59,9999999+00:00"])
def test_nanosecond_iso_timestamps_are_floored_to_the_microsecond(ts):
    tick = tick_from_json(json.dumps(dict(GOOD, ts_us=None, ts=ts)), now_us=NOW_US, default_source="file")
    assert tick.ts_us == NOW_US - 1


def test_identity_is_normalised_source_lower_trade_id_trimmed_symbol_upper():
    row = dict(GOOD, symbol="\t brk.b ", source=" CoinBase\n", trade_id="  Ab-1 ")
    tick = tick_from_json(json.dumps(row), now_us=NOW_US, default_source="file")
    assert (tick.symbol, tick.trade_id, tick.source) == ("BRK.B", "Ab-1", "coinbase")
    no_source = {k: v for k, v in dict(GOOD, trade_id=42).items() if k != "source"}
    tick = tick_from_json(json.dumps(no_source), now_us=NOW_US, default_source=" File ")
    assert (tick.trade_id, tick.source) == ("42", "file")
    # Only ASCII letters change case: the same rule in Python, Arrow and any other reader.
    assert tick_from_json(json.dumps(dict(GOOD, source="ÄrX")), now_us=NOW_US, default_source="f").source == "Ärx"


@pytest.mark.parametrize("field, value, accepted", [
    ("price", MIN_PRICE, True), ("price", MAX_PRICE, True), ("price", MIN_PRICE / 2, False),
    ("price", MAX_PRICE * 2, False), ("price", 1e308, False), ("price", 5e-324, False),
    ("size", 0.0, True), ("size", MIN_SIZE, True), ("size", MAX_SIZE, True), ("size", MIN_SIZE / 2, False),
    ("size", MAX_SIZE * 2, False), ("size", 5e-324, False),
])
def test_price_and_size_ranges_in_both_paths(field, value, accepted):
    row = dict(GOOD, **{field: value})
    valid, dead = split_valid(_table([row]), "f", now_us=NOW_US, default_source="file", policy=ValidationPolicy())
    if accepted:
        assert tick_from_json(json.dumps(row), now_us=NOW_US, default_source="file") is not None
        assert (valid.num_rows, dead) == (1, [])
    else:
        assert reject(row).value == f"bad_{field}"
        assert [d.reason for d in dead] == [f"bad_{field}"] and valid.num_rows == 0
        assert f"{MAX_PRICE if field == 'price' else MAX_SIZE:g}" in dead[0].detail  # the range is named


def test_parquet_nanosecond_timestamps_are_floored_not_a_crash():
    nanos = [(NOW_US - 2_000) * 1000 + 999, (NOW_US - 3_000) * 1000 + 1, 4_000_000_000_000_000_000]
    table = pa.table({"symbol": ["AAPL"] * 3, "ts": pa.array(nanos, pa.timestamp("ns")), "price": [1.0] * 3,
                      "size": [1.0] * 3, "trade_id": ["a", "b", "c"]})
    valid, dead = split_valid(table, "f", now_us=NOW_US, default_source="file", policy=ValidationPolicy())
    assert valid.column("ts_us").to_pylist() == [NOW_US - 2_000, NOW_US - 3_000]
    assert [d.reason for d in dead] == ["future_timestamp"]


@settings(max_examples=200, deadline=None)
@given(st.lists(st.integers(-2**63, 2**63 - 1), min_size=1, max_size=20), st.sampled_from(["s", "ms", "us", "ns"]))
def test_timestamps_to_micros_floors_and_clips_to_the_datetime_range(values, unit):
    per_us = {"s": 1_000_000, "ms": 1_000, "us": 1}
    expected = [v // 1000 if unit == "ns" else v * per_us[unit] for v in values]
    expected = [min(max(v, DATETIME_MIN_US), DATETIME_MAX_US) for v in expected]
    got = timestamps_to_micros(pa.chunked_array([pa.array(values, pa.timestamp(unit))]))
    assert pc.cast(got, pa.int64()).to_pylist() == expected
    assert len(got.to_pylist()) == len(values)  # every value converts to a datetime


def test_a_rejected_record_keeps_its_valid_event_time_for_its_dead_letter():
    from transforms.parse import dead_letter

    now = 1_714_608_000_000_000  # 2024-05-02
    ts = now - 86_400_000_000
    cases = {  # rejected fields -> the event time its dead letter is dated by
        (("price", -1.0),): ts,  # bad price, good time: the trade's day
        (("symbol", "bad symbol!"),): ts,  # bad symbol, checked before the time: still the trade's day
        (("ts_us", "yesterday"),): None,  # no readable time: the read time
        (("ts_us", now + 10**12),): None,  # a time refused as future is not trusted either
    }
    base = {"symbol": "AAPL", "ts_us": ts, "price": 1.0, "size": 1.0, "trade_id": "1"}
    for change, expected in cases.items():
        with pytest.raises(TickRejected) as caught:
            tick_from_fields({**base, **dict(change)}, now_us=now, default_source="file")
        assert caught.value.event_us == expected, change
        letter = dead_letter(caught.value, "raw", "f.jsonl", now)
        assert letter.seen_at_us == (now if expected is None else expected)


def test_dead_letters_are_counted_by_reason():
    from apache_beam.metrics.metric import MetricsFilter

    p = beam.Pipeline()
    bad = [("f:1", "{oops"), ("f:2", json.dumps(dict(GOOD, price=-1))), ("f:3", json.dumps(dict(GOOD, price=-2)))]
    _ = p | beam.Create(bad) | ParseTicks(lambda: NOW_US, "file")
    result = p.run()
    result.wait_until_finish()
    counters = {c.key.metric.name: c.committed
                for c in result.metrics().query(MetricsFilter().with_namespace("alphastream"))["counters"]}
    assert (counters["dead_letters_bad_json"], counters["dead_letters_bad_price"]) == (1, 2)
