"""Flink batch benchmark: the pipeline's batch path on Beam's FlinkRunner against the local runner.

    .venv/bin/python bench/bench_flink.py --ticks 2000000 --repeats 3
    .venv/bin/python bench/bench_flink.py --ticks 10000000 --repeats 1
    .venv/bin/python bench/bench_flink.py --ticks 200000 --repeats 1 --contenders local flink-p1   # a quick look

Every contender is ``python -m pipeline --source files --input_format parquet --no_db`` on the
same Parquet file, in its own child process (bench_batch's children, so the times, CPU and peak
RSS mean what they mean there):

- ``local``: the default runner (the FnApiRunner alphastream picks for ``DirectRunner``);
- ``flink-p1``: ``--runner FlinkRunner --parallelism 1`` (embedded Flink, LOOPBACK: the Python
  steps run in the launching process);
- ``flink-p2``: ``--parallelism 2`` with an EXTERNAL environment, a Python worker pool started
  here before the run, and ``--sdk_worker_parallelism 2``: two SDK worker processes, one per task
  slot. This is the headline parallelism-2 figure;
- ``flink-p2-loopback``: ``--parallelism 2`` on LOOPBACK: two Flink task slots, but every Python
  step still in one process.

The target (issue 13): Flink batch at least as fast as the local runner at 10M ticks with
parallelism 2, i.e. ``flink-p2`` speed >= 1.0x ``local``. The parent checks every contender
wrote the same bars as ``local`` before it prints anything.

"process" is the child's wall time from start to exit (imports, the Flink job server's start
and the job), "work" the time after the imports. Peak RSS is the largest process among the
child and the processes it reaped (the Flink job server's JVM included); the worker pool's SDK
workers are separate processes, and their peak is printed beside flink-p2's. Contenders run
round-robin, so a burst of outside load does not fall on one of them only; the load average is
printed before and after, as the 2-core machine may be doing other work.
"""
from __future__ import annotations

import argparse
import os
import shutil
import signal
import statistics
import sys
import tempfile
from pathlib import Path
from typing import NamedTuple

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from alphastream.local_services import accepts_connections, free_port, start_and_wait  # noqa: E402
from bench.bench_batch import ChildRun, load_bars, make_input, run_child  # noqa: E402

FLINK = ["--runner", "FlinkRunner"]
# Beam's worker pool starts each SDK worker as `python -c ...` from PATH: it must be this venv's
# Python, and the pipeline's modules must be importable in it.
WORKER_ENV = {**os.environ, "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}",
              "PYTHONPATH": str(REPO)}
WORKER_POOL_START_SECONDS = 60.0
WORKER_POOL_LOG = "python-worker-pool.log"
# The line the pool logs for each SDK worker process it starts.
WORKER_STARTED = "Starting worker with command"


class Contender(NamedTuple):
    flags: list[str]
    worker_pool: bool  # runs its Python steps in SDK workers of a pool started for the run


CONTENDERS = {
    "local": Contender([], False),
    "flink-p1": Contender([*FLINK, "--parallelism", "1"], False),
    "flink-p2": Contender([*FLINK, "--parallelism", "2", "--sdk_worker_parallelism", "2"], True),
    "flink-p2-loopback": Contender([*FLINK, "--parallelism", "2"], False),
}
BASELINE = "local"


class FlinkRun(NamedTuple):
    child: ChildRun
    workers_started: int  # SDK worker processes the pool started (0 without a pool)
    workers_peak_mib: float  # the largest of the pool and its workers
    workers_cpu_seconds: float  # user + system CPU of the pool and its workers


def run_with_worker_pool(kind: str, input_path: str, flags: list[str]) -> FlinkRun:
    """Start a Python worker pool, run the contender against it, then stop the pool and measure it."""
    log_dir = Path(tempfile.mkdtemp(prefix="bench-flink-pool-"))
    port = free_port()
    pool = start_and_wait([sys.executable, "-m", "apache_beam.runners.worker.worker_pool_main", "--service_port",
                           str(port)], "the Python worker pool", log_dir / WORKER_POOL_LOG,
                          lambda: accepts_connections(port), WORKER_POOL_START_SECONDS, env=WORKER_ENV)
    try:
        child = run_child("pipeline", input_path, [*flags, "--environment_type", "EXTERNAL",
                                                   "--environment_config", f"localhost:{port}"])
    finally:
        # The pool stops on Ctrl-C; wait4 (not Popen.wait) gives its peak RSS, which counts the
        # SDK workers it reaped.
        pool.send_signal(signal.SIGINT)
        _, status, usage = os.wait4(pool.pid, 0)
        pool.returncode = os.waitstatus_to_exitcode(status)
    workers = (log_dir / WORKER_POOL_LOG).read_text(errors="replace").count(WORKER_STARTED)
    shutil.rmtree(log_dir, ignore_errors=True)
    return FlinkRun(child, workers, usage.ru_maxrss / 1024, usage.ru_utime + usage.ru_stime)


def run_contender(kind: str, input_path: str) -> FlinkRun:
    contender = CONTENDERS[kind]
    flags = ["--input_format", "parquet", *contender.flags]
    if contender.worker_pool:
        return run_with_worker_pool(kind, input_path, flags)
    return FlinkRun(run_child("pipeline", input_path, flags), 0, 0.0, 0.0)


def report(runs: dict[str, list[FlinkRun]], rows: int) -> None:
    """Check every contender's bars equal the baseline's, then print medians and speed ratios."""
    import pandas as pd

    reference = load_bars("pipeline", runs[BASELINE][-1].child.out_dir)
    for kind, kind_runs in runs.items():
        for run in kind_runs:
            got = load_bars("pipeline", run.child.out_dir)
            pd.testing.assert_frame_equal(got, reference, check_dtype=False, rtol=1e-9, obj=f"{kind} bars")
    print(f"all agree: {len(reference):,} one-minute bars, every run of every contender\n")

    base_process = statistics.median(r.child.process_seconds for r in runs[BASELINE])
    base_work = statistics.median(r.child.work_seconds for r in runs[BASELINE])
    for kind, kind_runs in runs.items():
        process = statistics.median(r.child.process_seconds for r in kind_runs)
        work = statistics.median(r.child.work_seconds for r in kind_runs)
        cpu = statistics.median(r.child.cpu_seconds for r in kind_runs)
        peak = statistics.median(r.child.peak_mib for r in kind_runs)
        line = (f"{kind:18s} process {process:7.2f} s ({rows / process:>9,.0f} ticks/s, "
                f"{base_process / process:4.2f}x {BASELINE})   work {work:7.2f} s ({rows / work:>9,.0f} ticks/s, "
                f"{base_work / work:4.2f}x)   CPU {cpu:7.2f} s   peak RSS {peak:5.0f} MiB")
        if CONTENDERS[kind].worker_pool:
            workers = statistics.median(r.workers_started for r in kind_runs)
            pool_peak = statistics.median(r.workers_peak_mib for r in kind_runs)
            pool_cpu = statistics.median(r.workers_cpu_seconds for r in kind_runs)
            line += f"   + {workers:.0f} SDK workers: CPU {pool_cpu:.2f} s, largest {pool_peak:.0f} MiB"
        print(line)
    print(f"\n(x {BASELINE} is speed: above 1.00 the contender is faster; target flink-p2 >= 1.00x at 10M ticks)")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--ticks", type=int, default=10_000_000)
    parser.add_argument("--symbols", type=int, default=50)
    parser.add_argument("--repeats", type=int, default=1)
    parser.add_argument("--contenders", nargs="+", choices=list(CONTENDERS), default=list(CONTENDERS),
                        help=f"which to run ({BASELINE} always runs: it is the baseline)")
    args = parser.parse_args()
    kinds = [BASELINE, *(k for k in args.contenders if k != BASELINE)]

    scratch = Path(tempfile.mkdtemp(prefix="bench-flink-"))
    input_path = scratch / "ticks.parquet"
    rows = make_input(args.ticks, args.symbols, input_path)
    print(f"input: {rows:,} ticks ({args.symbols} symbols, duplicates included) in {input_path}")
    print(f"machine: {os.cpu_count()} cores, load average before {os.getloadavg()}; "
          f"{args.repeats} repeats each, medians\n", flush=True)

    runs: dict[str, list[FlinkRun]] = {kind: [] for kind in kinds}
    try:
        for _ in range(args.repeats):
            for kind in kinds:
                runs[kind].append(run_contender(kind, str(input_path)))
                print(f"  {kind}: {runs[kind][-1].child.process_seconds:.1f} s", flush=True)
        print(f"load average after {os.getloadavg()}\n")
        report(runs, rows)
    finally:
        # The input and every child's lake are scratch: a 10M-tick run leaves a lot of disk otherwise.
        for path in [str(scratch), *(r.child.out_dir for kind_runs in runs.values() for r in kind_runs)]:
            shutil.rmtree(path, ignore_errors=True)


if __name__ == "__main__":
    main()
