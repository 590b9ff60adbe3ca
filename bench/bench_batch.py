"""Batch bars benchmark: the pipeline's batch path against pandas and polars, same ticks, same run.

    .venv/bin/python bench/bench_batch.py                # 2,000,000 ticks, 50 symbols, 1m bars, 5 repeats
    .venv/bin/python bench/bench_batch.py --ticks 200000 --repeats 1   # a quick look

Each contender runs in its own child process (so peak RSS is its own), reads the same Parquet
file, deduplicates and computes 1-minute OHLCV/VWAP/trade-count bars, and writes them to
Parquet. The parent checks all three agree, then prints medians, ticks/s and peak memory, and
the ratios the targets are stated in (pipeline >= 0.5x polars throughput, peak memory <= pandas).

Two times per contender: "process" is the child's whole wall time (interpreter start and
imports included: ~1.8 s of it is importing Beam), "work" is the time after the imports, from
reading the file to the bars written (for the pipeline: building the graph and running it on
the DirectRunner). Ratios are printed for both. "CPU" is the child's user + system time over
all its threads: on a machine shared with other work it moves less than wall time does.
Contenders run round-robin, so a burst of outside load does not fall on one of them only.
"""
from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import NamedTuple

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

BAR_KEYS = ["symbol", "bucket_start_us"]


def child_pipeline(input_path: str, out_dir: str, extra: list[str]) -> None:
    from pipeline.__main__ import main

    code = main(["--source", "files", "--input", input_path, "--intervals", "1m", "--no_db", "--output", out_dir,
                 "--max_future_seconds", str(10**9), *extra])
    if code != 0:
        raise SystemExit(code)


def child_pandas(input_path: str, out_dir: str) -> None:
    import pandas as pd

    from tests.fixtures.reference import pandas_bars

    ticks = pd.read_parquet(input_path)
    pandas_bars(ticks, ("1m",)).to_parquet(Path(out_dir) / "bars.parquet")


def child_polars(input_path: str, out_dir: str) -> None:
    import polars as pl

    width = 60_000_000
    bars = (
        pl.scan_parquet(input_path)
        # The pipeline's trade rule: one delivery per (source, symbol, trade_id), the smallest
        # (ts, price, size); then trade order for open and close.
        .sort(["ts_us", "price", "size"])
        .unique(subset=["source", "symbol", "trade_id"], keep="first", maintain_order=True)
        .sort(["ts_us", "trade_id", "source"])
        .with_columns((pl.col("ts_us") - pl.col("ts_us") % width).alias("bucket_start_us"),
                      (pl.col("price") * pl.col("size")).alias("notional"))
        .group_by(["symbol", "bucket_start_us"], maintain_order=True)
        .agg(open=pl.col("price").first(), high=pl.col("price").max(), low=pl.col("price").min(),
             close=pl.col("price").last(), volume=pl.col("size").sum(), notional=pl.col("notional").sum(),
             price_sum=pl.col("price").sum(), trades=pl.len())
        .with_columns(vwap=pl.when(pl.col("volume") > 0).then(pl.col("notional") / pl.col("volume"))
                      .otherwise(pl.col("price_sum") / pl.col("trades")).clip(pl.col("low"), pl.col("high")))
        .collect()
    )
    bars.write_parquet(Path(out_dir) / "bars.parquet")


WORK_SECONDS_FILE = "work_seconds.txt"
CONTENDERS = ("polars", "pandas", "pipeline", "pipeline-2proc")
# What a contender imports before its work is timed. Beam loads its runner modules lazily on a
# pipeline's first run; that is import time, not work, so they are imported here, as polars and
# pandas import theirs.
BEAM_RUNNER_MODULES = ("apache_beam", "pipeline.__main__", "apache_beam.runners.portability.fn_api_runner")
CHILD_IMPORTS = {
    "pipeline": BEAM_RUNNER_MODULES,
    "pipeline-2proc": BEAM_RUNNER_MODULES,
    "pandas": ("pandas", "pyarrow.parquet", "tests.fixtures.reference"),
    "polars": ("polars",),
}


class ChildRun(NamedTuple):
    process_seconds: float  # the child's wall time, interpreter start included
    peak_mib: float
    out_dir: str
    work_seconds: float  # wall time after the imports
    cpu_seconds: float  # user + system CPU of the child, all its threads


def run_child(kind: str, input_path: str, extra: list[str]) -> ChildRun:
    """Run one contender in its own process and measure it."""
    out_dir = tempfile.mkdtemp(prefix=f"bench-{kind}-")
    cmd = [sys.executable, __file__, "--child", kind, "--input", input_path, "--out", out_dir, "--", *extra]
    started = time.perf_counter()
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    _, status, usage = os.wait4(proc.pid, 0)
    seconds = time.perf_counter() - started
    if os.waitstatus_to_exitcode(status) != 0:
        raise RuntimeError(f"{kind} failed:\n{proc.stderr.read().decode()[-3000:]}")
    work = float((Path(out_dir) / WORK_SECONDS_FILE).read_text())
    return ChildRun(seconds, usage.ru_maxrss / 1024, out_dir, work, usage.ru_utime + usage.ru_stime)


def load_bars(kind: str, out_dir: str):
    import pandas as pd

    if kind.startswith("pipeline"):
        df = pd.concat([pd.read_parquet(f) for f in sorted(Path(out_dir).glob("bars/**/*.parquet"))])
        df["bucket_start_us"] = df["bucket_start"].astype("int64")
        if str(df["bucket_start"].dtype).startswith("datetime64[ns"):
            df["bucket_start_us"] //= 1000
    else:
        df = pd.read_parquet(Path(out_dir) / "bars.parquet")
    cols = ["symbol", "bucket_start_us", "open", "high", "low", "close", "volume", "vwap", "trades"]
    return df[cols].sort_values(BAR_KEYS).reset_index(drop=True)


def make_input(ticks: int, symbols: int, path: Path) -> int:
    import pyarrow.parquet as pq

    from alphastream.synthetic import MarketSpec, market_ticks

    table = market_ticks(MarketSpec(day=dt.date(2024, 1, 2), symbols=symbols, ticks_per_symbol=ticks // symbols))
    pq.write_table(table, path, row_group_size=250_000)
    return table.num_rows


def run_as_child(args: argparse.Namespace) -> None:
    """One contender in this (child) process; its work time goes to WORK_SECONDS_FILE in its output."""
    import importlib
    import logging

    logging.disable(logging.INFO)
    for module in CHILD_IMPORTS[args.child]:
        importlib.import_module(module)
    started = time.perf_counter()
    if args.child == "pipeline":
        child_pipeline(args.input, args.out, args.extra)
    elif args.child == "pipeline-2proc":
        child_pipeline(args.input, args.out, ["--direct_num_workers", "2", "--direct_running_mode", "multi_processing"])
    elif args.child == "pandas":
        child_pandas(args.input, args.out)
    else:
        child_polars(args.input, args.out)
    (Path(args.out) / WORK_SECONDS_FILE).write_text(str(time.perf_counter() - started))


def report(runs: dict[str, list[ChildRun]], rows: int) -> None:
    """Medians per contender, that every contender's bars equal pandas', and the ratios to the targets."""
    import pandas as pd

    results, outputs = {}, {}
    for kind in CONTENDERS:
        seconds = statistics.median(r.process_seconds for r in runs[kind])
        peak = statistics.median(r.peak_mib for r in runs[kind])
        work = statistics.median(r.work_seconds for r in runs[kind])
        cpu = statistics.median(r.cpu_seconds for r in runs[kind])
        results[kind] = (seconds, peak, work, cpu)
        outputs[kind] = runs[kind][-1].out_dir
        print(f"{kind:15s} process {seconds:6.2f} s ({rows / seconds:>10,.0f} ticks/s)   "
              f"work {work:6.2f} s ({rows / work:>10,.0f} ticks/s)   CPU {cpu:6.2f} s   peak RSS {peak:6.0f} MiB")

    reference = load_bars("pandas", outputs["pandas"])
    for kind in ("polars", "pipeline", "pipeline-2proc"):
        got = load_bars(kind, outputs[kind])
        pd.testing.assert_frame_equal(got, reference, check_dtype=False, rtol=1e-9)
    print(f"\nall agree: {len(reference):,} one-minute bars (load average now {os.getloadavg()[0]:.1f})")

    polars_s, _, polars_work, _ = results["polars"]
    pandas_mem = results["pandas"][1]
    for kind in ("pipeline", "pipeline-2proc"):
        seconds, peak, work, _ = results[kind]
        print(f"{kind}: throughput {polars_s / seconds:.2f}x polars by process time, "
              f"{polars_work / work:.2f}x by work time (target >= 0.5x); "
              f"peak memory {peak / pandas_mem:.2f}x pandas (target <= 1.0x)")
    print(json.dumps({k: {"process_seconds": v[0], "peak_mib": v[1], "work_seconds": v[2], "cpu_seconds": v[3]}
                      for k, v in results.items()}))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--ticks", type=int, default=2_000_000)
    parser.add_argument("--symbols", type=int, default=50)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--child", choices=["pipeline", "pipeline-2proc", "pandas", "polars"], help=argparse.SUPPRESS)
    parser.add_argument("--input", help=argparse.SUPPRESS)
    parser.add_argument("--out", help=argparse.SUPPRESS)
    parser.add_argument("extra", nargs="*", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        run_as_child(args)
        return

    scratch = Path(tempfile.mkdtemp(prefix="bench-batch-"))
    input_path = scratch / "ticks.parquet"
    rows = make_input(args.ticks, args.symbols, input_path)
    print(f"input: {rows:,} ticks ({args.symbols} symbols, duplicates included) in {input_path}")
    # Other work on the machine skews the ratios (polars uses every core, the pipeline mostly
    # one), so the load is printed with the figures.
    print(f"machine: {os.cpu_count()} cores, load average {os.getloadavg()[0]:.1f}; "
          f"{args.repeats} repeats each, medians\n")

    # Round-robin, not one contender after another: load from other work on the machine then
    # falls on every contender alike instead of skewing one of them.
    runs: dict[str, list[ChildRun]] = {kind: [] for kind in CONTENDERS}
    for _ in range(args.repeats):
        for kind in CONTENDERS:
            runs[kind].append(run_child(kind, str(input_path), []))
    report(runs, rows)
    # The input and every child's output are scratch: a large run leaves a lot of disk otherwise.
    for path in [scratch, *(r.out_dir for kind_runs in runs.values() for r in kind_runs)]:
        shutil.rmtree(path, ignore_errors=True)


if __name__ == "__main__":
    main()
