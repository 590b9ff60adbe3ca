"""`python -m pipeline` in batch, end to end into the Parquet lake (no database here: the
database path is tested in tests/test_db_*)."""
import datetime as dt
import json
import subprocess
import sys

import apache_beam as beam
import pyarrow as pa
import pyarrow.dataset as ds
import pyarrow.parquet as pq
import pytest
from apache_beam.options.pipeline_options import PipelineOptions
from apache_beam.pipeline import PipelineVisitor
from apache_beam.testing.test_pipeline import TestPipeline

from alphastream.errors import UserFacingError
from alphastream.records import BAR_FIELDS, Bar, storage_columns
from alphastream.synthetic import MarketSpec, market_ticks
from pipeline.__main__ import main
from pipeline.graph import build_graph
from pipeline.lake import WriteBarsToLake, utc_date
from pipeline.options import AlphastreamOptions
from tests.fixtures.lake import lake_bars
from tests.fixtures.reference import assert_same_bars, pandas_bars

DAY = dt.date(2024, 1, 2)
INTERVALS = ("1m", "5m", "1h")




def run(argv, capsys) -> tuple[int, str]:
    code = main(argv)
    return code, capsys.readouterr().out


def test_synthetic_run_writes_lake_equal_to_pandas_and_rerun_replaces(tmp_path, capsys):
    argv = ["--no_db", "--output", str(tmp_path), "--symbols", "3", "--ticks_per_symbol", "2000",
            "--date", DAY.isoformat(), "--intervals", ",".join(INTERVALS)]
    code, out = run(argv, capsys)
    assert code == 0, out
    assert "accounting      OK" in out
    spec = MarketSpec(day=DAY, symbols=3, ticks_per_symbol=2000)
    ticks = market_ticks(spec).to_pandas()
    expected = pandas_bars(ticks, INTERVALS)
    assert_same_bars(lake_bars(tmp_path), expected)
    assert f"ticks read        {len(ticks):>12,}" in out
    assert f"duplicates      {len(ticks) - len(ticks.drop_duplicates(['source', 'trade_id'])):>12,}" in out

    files_before = sorted(p.relative_to(tmp_path) for p in tmp_path.rglob("*.parquet"))
    assert [str(f) for f in files_before] == [  # one file per (interval, date, symbol)
        f"bars/interval={i}/date={DAY}/bars-{s}.parquet"
        for i in ("1h", "1m", "5m") for s in sorted(ticks["symbol"].unique())]
    code, _ = run(argv, capsys)  # a re-run replaces each partition instead of adding to it
    assert code == 0
    assert sorted(p.relative_to(tmp_path) for p in tmp_path.rglob("*.parquet")) == files_before
    assert_same_bars(lake_bars(tmp_path), expected)


def test_lake_columns_follow_the_records(tmp_path, capsys):
    code, _ = run(["--no_db", "--output", str(tmp_path), "--symbols", "1", "--ticks_per_symbol", "50",
                   "--date", DAY.isoformat()], capsys)
    assert code == 0
    schema = pq.read_schema(next(tmp_path.rglob("bars-*.parquet")))
    assert tuple(schema.names) == storage_columns(BAR_FIELDS)
    assert schema.field("bucket_start").type == pa.timestamp("us", tz="UTC")


GOOD_ROWS = [
    {"symbol": "AAPL", "ts_us": 1704205805000000, "price": 100.0, "size": 10, "trade_id": "a1", "source": "x"},
    {"symbol": "AAPL", "ts_us": 1704205865000000, "price": 101.0, "size": 5, "trade_id": "a2", "source": "x"},
    {"symbol": "MSFT", "ts_us": 1704205810000000, "price": 370.0, "size": 1, "trade_id": "m1", "source": "x"},
]


def test_files_source_csv_jsonl_parquet_with_bad_records(tmp_path, capsys):
    data = tmp_path / "in"
    data.mkdir()
    pq.write_table(pa.Table.from_pylist(GOOD_ROWS[:2] + [dict(GOOD_ROWS[0], trade_id="p-bad", price=-5.0)]),
                   data / "a.parquet")
    lines = [json.dumps(GOOD_ROWS[2]), json.dumps(GOOD_ROWS[2]), "{broken", "",
             json.dumps(dict(GOOD_ROWS[2], trade_id="m9", symbol="not a symbol"))]
    (data / "b.jsonl").write_text("\n".join(lines) + "\n")
    (data / "c.csv").write_text(
        "symbol,ts,price,size,trade_id,source\n"
        "AAPL,2024-01-02T14:30:30Z,102.5,2,c1,x\n"
        "AAPL,2024-01-02T14:30:31Z,,2,c2,x\n"
        "AAPL,too,many,columns,here,x,y\n"
        "AAPL,2024-01-02T14:30:32Z,99,-1,c3,x\n")
    out_dir = tmp_path / "lake"
    code, out = run(["--source", "files", "--input", str(data / "*"), "--no_db", "--output", str(out_dir),
                     "--intervals", "1m"], capsys)
    assert code == 0, out
    assert "ticks read                  11" in out  # blank lines are not records
    assert "duplicates                 1" in out
    assert "dead-lettered              6" in out

    dead = ds.dataset(str(out_dir / "dead_letters"), format="parquet", partitioning="hive").to_table().to_pandas()
    assert sorted(dead["reason"]) == ["bad_json", "bad_json", "bad_price", "bad_size", "bad_symbol", "missing_field"]
    origins = set(dead["origin"])
    assert any(o.endswith("a.parquet") for o in origins)
    assert any(o.endswith("c.csv:3") for o in origins)  # line numbers for CSV rows
    assert "{broken" in set(dead["raw"])

    bars = lake_bars(out_dir)
    got = {(r.symbol, r.bucket_start_us): (r.open, r.close, r.trades) for r in bars.itertuples()}
    assert got == {("AAPL", 1704205800000000): (100.0, 102.5, 2), ("AAPL", 1704205860000000): (101.0, 101.0, 1),
                   ("MSFT", 1704205800000000): (370.0, 370.0, 1)}


def test_files_source_without_input_is_a_clear_error(tmp_path, capsys):
    assert main(["--source", "files", "--no_db", "--output", str(tmp_path)]) == 2
    assert "--input" in capsys.readouterr().err


def test_missing_input_files_is_a_clear_error(tmp_path):
    with pytest.raises(UserFacingError, match="matches no file"):
        _graph_labels(tmp_path, str(tmp_path / "nothing*.csv"))


def test_help_documents_every_flag():
    out = subprocess.run([sys.executable, "-m", "pipeline", "--help"],
                         capture_output=True, text=True, check=True).stdout
    for flag in ("--source", "--input", "--symbols", "--intervals", "--allowed_lateness", "--output", "--db_url",
                 "--no_db", "--runner", "--streaming", "--setup_file"):
        assert flag in out


def _labels(pipeline) -> set[str]:
    labels = set()

    class Visitor(PipelineVisitor):
        def enter_composite_transform(self, node):
            labels.add(node.full_label)

        def visit_transform(self, node):
            labels.add(node.full_label)

    pipeline.visit(Visitor())
    return labels


def _graph_labels(tmp_path, input_glob: str) -> tuple[set[str], object]:
    options = PipelineOptions(["--source", "files", "--input", input_glob, "--no_db", "--output", str(tmp_path)])
    pipeline = beam.Pipeline(options=options)
    build_graph(pipeline, options.view_as(AlphastreamOptions), streaming=False, now_us=lambda: 0, day=DAY,
                db_url=None)
    return _labels(pipeline), pipeline


def test_parquet_only_input_builds_no_record_branch_and_keeps_tables_typed(tmp_path):
    pq.write_table(pa.Table.from_pylist(GOOD_ROWS), tmp_path / "a.parquet")
    labels, _ = _graph_labels(tmp_path, str(tmp_path / "*.parquet"))
    # A multi-input Flatten would materialise every tick table between stages.
    assert "FlattenTickTables" not in labels and "ParseTicks" not in labels, labels
    assert "ValidateTickTables" in labels and "Bars" in labels


def test_mixed_input_flattens_tables_and_records(tmp_path):
    pq.write_table(pa.Table.from_pylist(GOOD_ROWS), tmp_path / "a.parquet")
    (tmp_path / "b.jsonl").write_text(json.dumps(GOOD_ROWS[0]) + "\n")
    labels, _ = _graph_labels(tmp_path, str(tmp_path / "*"))
    assert {"FlattenTickTables", "ParseTicks", "ValidateTickTables"} <= labels
    assert "ReadTickFiles/ReadCsvRows" not in labels  # no CSV file matched: no CSV branch


def test_lake_packs_bars_from_several_bundles_into_one_file_per_symbol_and_partition(tmp_path):
    day2 = int(dt.datetime(2024, 1, 3, tzinfo=dt.timezone.utc).timestamp()) * 1_000_000
    bars = [Bar(symbol=s, interval=i, bucket_start_us=start + k * 60_000_000, open=1.0, high=2.0, low=0.5,
                close=1.5, volume=10.0, vwap=1.2, trades=3, timing="ON_TIME", pane_index=0)
            for s in ("MSFT", "AAPL") for i in ("1m", "5m") for start in (day2 - 86_400_000_000, day2)
            for k in range(5)]
    with TestPipeline() as p:
        _ = p | beam.Create(bars, reshuffle=True) | WriteBarsToLake(str(tmp_path))
    files = sorted(str(f.relative_to(tmp_path)) for f in tmp_path.rglob("*.parquet"))
    assert files == [f"bars/interval={i}/date={d}/bars-{s}.parquet" for i in ("1m", "5m")
                     for d in ("2024-01-02", "2024-01-03") for s in ("AAPL", "MSFT")]
    for path in tmp_path.rglob("bars-*.parquet"):
        got = pq.read_table(path).to_pandas()
        assert len(got) == 5
        assert set(got["symbol"]) == {path.stem.removeprefix("bars-")}
        assert got.equals(got.sort_values("bucket_start").reset_index(drop=True))  # in time order


@pytest.mark.parametrize("micros", [0, -1, 1_704_153_599_999_999, 1_704_153_600_000_000, 4_102_444_799_999_999,
                                    -86_400_000_001, 253_402_300_799_999_999])
def test_partition_date_is_exact_at_day_edges(micros):
    """The last microsecond of a day stays in that day, before 1970 and up to year 9999."""
    expected = (dt.datetime(1970, 1, 1) + dt.timedelta(microseconds=micros)).date().isoformat()
    assert utc_date(micros) == expected


def test_a_redelivery_across_midnight_counts_once_through_the_cli(tmp_path, capsys):
    """Two files deliver one trade on both sides of midnight with different prices: the run keeps
    the delivery with the smallest (ts, price, size), whichever file holds it."""
    midnight = int(dt.datetime(2024, 5, 2, tzinfo=dt.timezone.utc).timestamp()) * 1_000_000
    first = {"symbol": "AAPL", "ts_us": midnight - 200_000, "price": 100.0, "size": 1.0, "trade_id": "t1",
             "source": "coinbase"}
    again = {**first, "ts_us": midnight + 200_000, "price": 101.0}  # the feed's correction, after midnight
    other = {**first, "ts_us": midnight + 30_000_000, "price": 102.0, "trade_id": "t2"}
    (tmp_path / "b.jsonl").write_text(json.dumps(again) + "\n" + json.dumps(other) + "\n")
    (tmp_path / "a.jsonl").write_text(json.dumps(first) + "\n")
    code, out = run(["--source", "files", "--input", str(tmp_path / "*.jsonl"), "--intervals", "1m", "--no_db",
                     "--output", str(tmp_path / "lake")], capsys)
    assert code == 0, out
    bars = lake_bars(tmp_path / "lake")
    by_start = {row.bucket_start_us: (row.open, row.trades) for row in bars.itertuples()}
    assert by_start == {midnight - 60_000_000: (100.0, 1), midnight: (102.0, 1)}


def test_daily_bars_follow_the_session_on_the_half_day_after_thanksgiving(tmp_path, capsys):
    """The synthetic market trades 6.5 hours from 14:30 UTC; on 28 November 2025 the New York
    session closes at 18:00 UTC, so the 1d bar holds only the ticks before it (2025: a run
    rejects ticks from the future)."""
    day = dt.date(2025, 11, 28)
    code, out = run(["--no_db", "--output", str(tmp_path), "--symbols", "2", "--ticks_per_symbol", "500",
                     "--date", day.isoformat(), "--intervals", "1h,1d"], capsys)
    assert code == 0, out
    ticks = market_ticks(MarketSpec(day=day, symbols=2, ticks_per_symbol=500)).to_pandas()
    assert not ticks["symbol"].str.contains("[-/]").any()  # equities: XNYS by default
    expected = pandas_bars(ticks, ("1h", "1d"), {s: "XNYS" for s in ticks["symbol"].unique()})
    assert_same_bars(lake_bars(tmp_path), expected)
    daily = expected[expected["interval"] == "1d"]
    half_day_open = int(dt.datetime(2025, 11, 28, 14, 30, tzinfo=dt.timezone.utc).timestamp()) * 1_000_000
    assert (daily["bucket_start_us"] == half_day_open).all()
    assert daily["trades"].sum() < len(ticks.drop_duplicates(["source", "symbol", "trade_id"]))
