"""A lake re-run replaces only what it recomputes: a back-fill of one symbol leaves the other
symbols' bars of that day in place, a re-read input replaces only its own dead letters, locally
and on gs://; the lake still reads as one Hive-partitioned dataset (pyarrow and polars)."""
from __future__ import annotations

import json
from pathlib import Path

import apache_beam as beam
import polars as pl
import pyarrow.dataset as ds
import pyarrow.parquet as pq
from apache_beam.io.filesystems import FileSystems
from apache_beam.testing.test_pipeline import TestPipeline

from alphastream.records import Bar, PaneTiming
from pipeline.__main__ import main
from pipeline.lake import WriteBarsToLake

T0 = 1_704_205_800_000_000  # 2024-01-02 14:30:00 UTC
MINUTE = 60_000_000
DAY = "2024-01-02"
SYMBOLS = ("AAPL", "MSFT", "XBT/USD")


def ticks(symbol: str, price: float) -> list[dict]:
    return [{"symbol": symbol, "ts_us": T0 + k * MINUTE + 1, "price": price + k, "size": 1.0,
             "trade_id": f"{symbol}-{k}", "source": "x"} for k in range(3)]


def write_jsonl(path: Path, rows: list[dict], extra_lines: tuple[str, ...] = ()) -> str:
    path.write_text("\n".join([json.dumps(r) for r in rows] + list(extra_lines)) + "\n")
    return str(path)


def run_files(input_glob: str, lake: Path) -> None:
    assert main(["--source", "files", "--input", input_glob, "--no_db", "--output", str(lake),
                 "--intervals", "1m,5m", "--max_future_seconds", str(10**10)]) == 0


def lake_bars(lake: Path) -> pl.DataFrame:
    frame = pl.scan_parquet(str(lake / "bars" / "**" / "*.parquet"), hive_partitioning=True).collect()
    return frame.sort("interval", "symbol", "bucket_start")


def test_a_one_symbol_backfill_replaces_only_that_symbol(tmp_path):
    lake = tmp_path / "lake"
    run_files(write_jsonl(tmp_path / "day.jsonl", [t for s in SYMBOLS for t in ticks(s, 100.0)]), lake)
    first = lake_bars(lake)
    assert sorted(set(first["symbol"])) == sorted(SYMBOLS)

    (tmp_path / "day.jsonl").unlink()
    run_files(write_jsonl(tmp_path / "aapl.jsonl", ticks("AAPL", 200.0)), lake)  # corrected AAPL prints
    second = lake_bars(lake)

    assert second.filter(pl.col("symbol") != "AAPL").equals(first.filter(pl.col("symbol") != "AAPL"))
    aapl = second.filter(pl.col("symbol") == "AAPL")
    assert aapl.filter(pl.col("interval") == "1m")["open"].to_list() == [200.0, 201.0, 202.0]
    assert aapl.filter(pl.col("interval") == "5m")["close"].to_list() == [202.0]
    # nothing doubled: one row per bar key, as many as the first run wrote
    assert second.select("symbol", "interval", "bucket_start").n_unique() == len(second) == len(first)
    # pyarrow's Hive discovery reads the same lake, the symbol read from the file itself
    arrow = ds.dataset(str(lake / "bars"), format="parquet", partitioning="hive").to_table()
    assert arrow.num_rows == len(second)
    assert sorted(set(arrow.column("symbol").to_pylist())) == sorted(SYMBOLS)
    assert (lake / "bars" / "interval=1m" / f"date={DAY}" / "bars-XBT~USD.parquet").is_file()


def test_a_rerun_of_one_input_replaces_only_its_dead_letters(tmp_path):
    lake = tmp_path / "lake"
    a = write_jsonl(tmp_path / "a.jsonl", ticks("AAPL", 100.0), ("{broken a",))
    b = write_jsonl(tmp_path / "b.jsonl", ticks("MSFT", 100.0), ("{broken b", "{broken b again"))
    run_files(str(tmp_path / "*.jsonl"), lake)
    run_files(a, lake)  # a again: its dead letter replaced, b's kept
    run_files(a, lake)

    letters = ds.dataset(str(lake / "dead_letters"), format="parquet", partitioning="hive").to_table().to_pylist()
    assert sorted(r["raw"] for r in letters) == ["{broken a", "{broken b", "{broken b again"]
    assert {r["origin"].rsplit(":", 1)[0] for r in letters} == {a, b}


def bar(symbol: str, close: float, minute: int = 0) -> Bar:
    return Bar(symbol, "1m", T0 + minute * MINUTE, close, close, close, close, 1.0, close, 1,
               PaneTiming.ON_TIME.value, 0)


def test_a_one_symbol_rewrite_on_gcs_keeps_the_other_symbols(gcs_emulator):
    root = f"gs://{gcs_emulator.new_bucket('lake')}/alphastream"
    for bars in ([bar(s, 1.0, m) for s in SYMBOLS for m in range(2)], [bar("MSFT", 2.0, 0)]):
        with TestPipeline() as p:
            _ = p | beam.Create(bars) | WriteBarsToLake(root)

    files = sorted(m.path for m in FileSystems.match([f"{root}/**"])[0].metadata_list)
    folder = f"{root}/bars/interval=1m/date={DAY}"
    assert files == [f"{folder}/bars-{s}.parquet" for s in ("AAPL", "MSFT", "XBT~USD")], \
        "one file per symbol, no temporary file left behind"
    rows = []
    for path in files:
        with FileSystems.open(path) as handle:
            rows += pq.read_table(handle).to_pylist()
    assert sorted((r["symbol"], r["bucket_start"].minute, r["close"]) for r in rows) == [
        ("AAPL", 30, 1.0), ("AAPL", 31, 1.0), ("MSFT", 30, 2.0), ("XBT/USD", 30, 1.0), ("XBT/USD", 31, 1.0)]
