"""Hostile input files through `python -m pipeline --source files`: every bad record becomes a
dead letter (raw bytes kept, escaped) while the good records of the same file make their bars,
and every record read is accounted for."""
import codecs
import csv
import datetime as dt
import json

import apache_beam as beam
import pandas as pd
import pyarrow as pa
import pyarrow.dataset as ds
import pyarrow.parquet as pq
import pytest
from apache_beam.options.pipeline_options import PipelineOptions

from alphastream.errors import UserFacingError
from pipeline.__main__ import main
from pipeline.graph import build_graph
from pipeline.options import AlphastreamOptions
from tests.fixtures.lake import lake_bars
from tests.fixtures.reference import assert_same_bars, pandas_bars

T0_US = 1_704_205_800_000_000  # 2024-01-02 14:30:00 UTC
BOM = codecs.BOM_UTF8


def _iso(us: int, nanos: int = 0) -> str:
    moment = dt.datetime(1970, 1, 1, tzinfo=dt.timezone.utc) + dt.timedelta(microseconds=us)
    return moment.strftime("%Y-%m-%dT%H:%M:%S.%f") + f"{nanos:03d}Z"


def _jsonl(**fields) -> bytes:
    return json.dumps(fields).encode()


def write_hostile_files(folder):
    """Hostile JSONL, CSV and Parquet files; returns (records counted as read, the good ticks as
    the pipeline must see them after normalisation, dead-letter reasons expected)."""
    good, reasons = [], []
    jsonl = [
        BOM + _jsonl(symbol="AAPL", ts_us=T0_US + 1_000_000, price=100.0, size=10, trade_id="j1", source="feed"),
        b"\xff\xfe{\"symbol\": \"AAPL\"}",  # not UTF-8
        b"   ",  # blank: skipped, not counted
        b"",
        # json.loads accepts a lone surrogate; UTF-8 (and so every sink) cannot hold it
        b'{"symbol": "AAPL", "ts_us": %d, "price": 1, "size": 1, "trade_id": "p\\ud800"}' % (T0_US + 2_000_000),
        # nanoseconds: floored to the microsecond
        _jsonl(symbol=" msft ", ts=_iso(T0_US + 3_000_000, nanos=999), price=370.0, size=2, trade_id=" j2 ",
               source=" FEED ") + b"\r",
        _jsonl(symbol="MSFT", ts_us=T0_US + 4_000_000, price=1e13, size=1, trade_id="j3", source="feed"),
        b"\t",
    ]
    (folder / "a.jsonl").write_bytes(b"\n".join(jsonl) + b"\n")
    good += [("AAPL", T0_US + 1_000_000, 100.0, 10.0, "j1", "feed"),
             ("MSFT", T0_US + 3_000_000, 370.0, 2.0, "j2", "feed")]
    reasons += ["bad_json", "bad_json", "bad_price"]

    csv_rows = [
        BOM + b"symbol,ts,price,size,trade_id,source",
        b"AAPL,%s,101.5,3,c1,Feed" % _iso(T0_US + 61_000_000).encode(),
        b"\xff\xfe,%s,101.5,3,c2,feed" % _iso(T0_US + 62_000_000).encode(),  # not UTF-8
        b"",
        b"  ",
        # a whole tick as JSON in one (quoted) cell, and unquoted across the cells
        b'"{""symbol"": ""AAPL"", ""ts_us"": %d, ""price"": 5, ""size"": 1, ""trade_id"": ""c3""}"'
        % (T0_US + 63_000_000),
        b'{"symbol": "AAPL", "ts_us": %d, "price": 5, "size": 1, "trade_id": "c4", "source": "x"}'
        % (T0_US + 63_000_000),
        b" aapl ,%s,102,0,c5, FEED " % _iso(T0_US + 64_000_000, nanos=500).encode(),
        b"AAPL,%s,102,1e-13,c6,feed" % _iso(T0_US + 65_000_000).encode(),
    ]
    (folder / "b.csv").write_bytes(b"\r\n".join(csv_rows) + b"\r\n")
    good += [("AAPL", T0_US + 61_000_000, 101.5, 3.0, "c1", "feed"),
             ("AAPL", T0_US + 64_000_000, 102.0, 0.0, "c5", "feed")]
    reasons += ["bad_json", "bad_json", "bad_symbol", "bad_size"]

    nanos = [(T0_US + 5_000_000) * 1000 + 789, (T0_US + 6_000_000) * 1000 + 1]
    pq.write_table(pa.table({
        "symbol": ["MSFT", "MSFT"], "ts": pa.array(nanos, pa.timestamp("ns")), "price": [371.0, 372.0],
        "size": [1.0, 1e16], "trade_id": ["q1", "q2"], "source": ["feed", "feed"]}), folder / "c.parquet")
    good += [("MSFT", T0_US + 5_000_000, 371.0, 1.0, "q1", "feed")]
    reasons += ["bad_size"]

    read = 5 + 6 + 2  # blank lines are not records
    return read, good, reasons


def _counter(out: str, label: str) -> int:
    line = next(line for line in out.splitlines() if line.strip().startswith(label))
    return int(line.split()[-1].replace(",", ""))


def test_hostile_files_dead_letter_each_bad_record_and_keep_the_good_ones(tmp_path, capsys):
    data = tmp_path / "in"
    data.mkdir()
    read, good, reasons = write_hostile_files(data)
    lake = tmp_path / "lake"
    code = main(["--source", "files", "--input", str(data / "*"), "--no_db", "--output", str(lake),
                 "--intervals", "1m,5m"])
    out = capsys.readouterr().out
    assert code == 0, out
    assert "accounting      OK" in out
    assert _counter(out, "ticks read") == read
    assert _counter(out, "dead-lettered") == len(reasons)
    assert _counter(out, "unique") == len(good)

    dead = ds.dataset(str(lake / "dead_letters"), format="parquet", partitioning="hive").to_table().to_pandas()
    assert sorted(dead["reason"]) == sorted(reasons)
    raws = list(dead["raw"])
    assert any(r.startswith("\\xff\\xfe{") for r in raws), raws  # undecodable bytes escaped, not lost
    assert any("\\xff\\xfe,2024-01-02" in r for r in raws), raws
    assert any("p\\ud800" in r for r in raws), raws
    assert all(r.encode("utf-8") for r in raws)
    surrogate = dead[dead["raw"].str.contains("ud800", regex=False)].iloc[0]
    assert "trade_id" in surrogate["detail"] and "UTF-8" in surrogate["detail"]

    ticks = pd.DataFrame(good, columns=["symbol", "ts_us", "price", "size", "trade_id", "source"])
    assert_same_bars(lake_bars(lake), pandas_bars(ticks, ("1m", "5m")))


def _build(tmp_path, pattern: str, input_format: str = "auto"):
    options = PipelineOptions(["--source", "files", "--input", pattern, "--input_format", input_format,
                               "--no_db", "--output", str(tmp_path / "lake")])
    build_graph(beam.Pipeline(options=options), options.view_as(AlphastreamOptions), streaming=False,
                now_us=lambda: T0_US, day=dt.date(2024, 1, 2), db_url=None)


def test_a_glob_matching_nothing_is_a_user_facing_error(tmp_path):
    with pytest.raises(UserFacingError, match="matches no file"):
        _build(tmp_path, str(tmp_path / "nothing*.csv"))


def test_an_input_that_cannot_be_listed_is_a_user_facing_error(tmp_path):
    with pytest.raises(UserFacingError, match="cannot be listed"):
        _build(tmp_path, "nosuchscheme://bucket/*.csv")


def test_a_file_of_unknown_format_is_a_user_facing_error_naming_it_and_the_flag(tmp_path):
    (tmp_path / "ticks.txt").write_text("{}\n")
    with pytest.raises(UserFacingError, match=r"ticks\.txt.*--input_format"):
        _build(tmp_path, str(tmp_path / "*"))


def test_a_csv_row_too_large_to_split_is_dead_lettered_with_its_own_text(tmp_path, capsys):
    huge = "x" * (csv.field_size_limit() + 10)  # one cell over the csv module's limit
    unsplittable = f'AAPL,{_iso(T0_US + 2_000_000)},101,1,"{huge}",feed'
    rows = ["symbol,ts,price,size,trade_id,source", f"AAPL,{_iso(T0_US + 1_000_000)},100,1,r1,feed",
            unsplittable, f"AAPL,{_iso(T0_US + 3_000_000)},102,1,r3,feed"]
    data = tmp_path / "in"
    data.mkdir()
    (data / "big.csv").write_text("\n".join(rows) + "\n")
    lake = tmp_path / "lake"
    code = main(["--source", "files", "--input", str(data / "*.csv"), "--no_db", "--output", str(lake),
                 "--intervals", "1m"])
    out = capsys.readouterr().out
    assert code == 0, out
    assert "accounting      OK" in out and _counter(out, "unique") == 2
    dead = ds.dataset(str(lake / "dead_letters"), format="parquet", partitioning="hive").to_table().to_pylist()
    assert [(d["reason"], d["raw"]) for d in dead] == [("bad_json", unsplittable)]  # the row, recoverable
    assert "unreadable CSV row" in dead[0]["detail"] and dead[0]["origin"].endswith("big.csv:3")
