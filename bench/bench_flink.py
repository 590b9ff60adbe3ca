"""Flink batch benchmark: the pipeline's batch path on Beam's FlinkRunner against the local runner.

    .venv/bin/python bench/bench_flink.py --ticks 2000000 --repeats 3
    .venv/bin/python bench/bench_flink.py --ticks 10000000 --repeats 1
    .venv/bin/python bench/bench_flink.py --ticks 200000 --repeats 1 --contenders local flink-p1   # a quick look
    .venv/bin/python bench/bench_flink.py --ticks 200000 --contenders flink-p1 -- \
        --job_server_jvm_properties=-XX:+UseSerialGC      # more flags for the Flink contenders

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
  step still in one process;
- ``flink-p1-started`` and ``flink-p2-started``: as ``flink-p1`` and ``flink-p2``, but through a
  job server started here once, before the first run, and kept running
  (``--job_endpoint``, ``alphastream.local_services.start_flink_job_server``), as a Flink user
  would keep one: no job server JVM start per run (the server still starts an embedded Flink per
  job). It runs with the JVM flags Beam's per-run job server gets for embedded batch. Its CPU
  is counted per run (the change of its CPU time over the run), its peak RSS is its peak since
  it started.

The target (issue 13): Flink batch at least as fast as the local runner at 10M ticks with
parallelism 2, i.e. ``flink-p2`` speed >= 1.0x ``local``. The parent checks every contender
wrote the same bars as ``local`` before it prints anything.

"process" is the child's wall time from start to exit (imports, the Flink job server's start
and stop, and the job), "work" the time after the imports. CPU is user + system time summed
over every process of the run: the child, the Flink job server's JVM and, for flink-p2, the
worker pool and its SDK workers; peak RSS is the largest single one of them. (Beam kills the job
server without always reaping it, so this process makes itself their subreaper and reaps what a
child leaves behind.) Contenders run round-robin, so a burst of outside load does not fall on
one of them only; the load average is printed before and after, as the 2-core machine may be
doing other work.
"""
from __future__ import annotations

import argparse
import ctypes
import os
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import NamedTuple

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from alphastream.local_services import (  # noqa: E402
    PYTHON_WORKER_POOL_LOG,
    PYTHON_WORKER_STARTED,
    child_pids,
    start_flink_job_server,
    start_python_worker_pool,
    stop_process,
)
from bench.bench_batch import ChildRun, load_bars, make_input, run_child  # noqa: E402
from pipeline.runners import EMBEDDED_BATCH_JVM_FLAGS  # noqa: E402

FLINK = ["--runner", "FlinkRunner"]


class Contender(NamedTuple):
    flags: list[str]
    worker_pool: bool  # runs its Python steps in SDK workers of a pool started for the run
    started_job_server: bool = False  # submits to the job server started before the runs


CONTENDERS = {
    "local": Contender([], False),
    "flink-p1": Contender([*FLINK, "--parallelism", "1"], False),
    "flink-p2": Contender([*FLINK, "--parallelism", "2", "--sdk_worker_parallelism", "2"], True),
    "flink-p2-loopback": Contender([*FLINK, "--parallelism", "2"], False),
    "flink-p1-started": Contender([*FLINK, "--parallelism", "1"], False, True),
    "flink-p2-started": Contender([*FLINK, "--parallelism", "2", "--sdk_worker_parallelism", "2"], True, True),
}
BASELINE = "local"


# prctl(2): orphaned descendants are re-parented to this process instead of init.
PR_SET_CHILD_SUBREAPER = 36


class Usage(NamedTuple):
    processes: int
    cpu_seconds: float  # user + system, summed
    peak_mib: float  # the largest process's peak RSS


NO_PROCESSES = Usage(0, 0.0, 0.0)


class FlinkRun(NamedTuple):
    child: ChildRun
    workers: Usage  # the worker pool's SDK workers (processes: how many it started)
    orphans: Usage  # what the child left running when it exited: the Flink job server
    job_server: Usage = NO_PROCESSES  # the started job server's share of the run

    @property
    def cpu_seconds(self) -> float:
        return sum(part.cpu_seconds for part in (self.child, self.workers, self.orphans, self.job_server))

    @property
    def peak_mib(self) -> float:
        return max(part.peak_mib for part in (self.child, self.workers, self.orphans, self.job_server))


class StartedJobServer(NamedTuple):
    process: subprocess.Popen[bytes]
    endpoint: str

    def usage_since(self, cpu_before: float) -> Usage:
        return Usage(1, process_cpu_seconds(self.process.pid) - cpu_before, process_peak_mib(self.process.pid))


def process_cpu_seconds(pid: int) -> float:
    """User + system CPU time of a running process, from /proc (fields 14 and 15 of its stat)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def process_peak_mib(pid: int) -> float:
    """A running process's peak RSS so far (VmHWM)."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return 0.0


def become_subreaper() -> None:
    """Descendants whose parent exits come to this process, which can then reap them and read
    their usage (Beam kills the Flink job server at exit without always waiting for it)."""
    libc = ctypes.CDLL(None, use_errno=True)
    if libc.prctl(PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0) != 0:
        raise OSError(ctypes.get_errno(), "prctl(PR_SET_CHILD_SUBREAPER) failed")


def reap_orphans(keep: int | None = None) -> Usage:
    """Wait for every process re-parented to this one (none of ours is running between runs, but
    ``keep``, the started job server) and sum their usage."""
    orphans = [pid for pid in child_pids(os.getpid()) if pid != keep]
    cpu, peak = 0.0, 0.0
    for pid in orphans:
        _, _, usage = os.wait4(pid, 0)
        cpu, peak = cpu + usage.ru_utime + usage.ru_stime, max(peak, usage.ru_maxrss / 1024)
    return Usage(len(orphans), cpu, peak)


def run_with_worker_pool(input_path: str, flags: list[str]) -> tuple[ChildRun, Usage]:
    """Start a Python worker pool, run the contender against it, then stop the pool and measure it."""
    log_dir = Path(tempfile.mkdtemp(prefix="bench-flink-pool-"))
    pool, port = start_python_worker_pool(log_dir)
    try:
        child = run_child("pipeline", input_path, [*flags, "--environment_type", "EXTERNAL",
                                                   "--environment_config", f"localhost:{port}"])
    finally:
        # SIGTERM (start_python_worker_pool). The job has ended, so the pool has stopped and
        # reaped its SDK workers; wait4 (not Popen.wait) gives its peak RSS, which counts theirs.
        pool.send_signal(signal.SIGTERM)
        _, status, usage = os.wait4(pool.pid, 0)
        pool.returncode = os.waitstatus_to_exitcode(status)
    workers = (log_dir / PYTHON_WORKER_POOL_LOG).read_text(errors="replace").count(PYTHON_WORKER_STARTED)
    shutil.rmtree(log_dir, ignore_errors=True)
    return child, Usage(workers, usage.ru_utime + usage.ru_stime, usage.ru_maxrss / 1024)


def run_contender(kind: str, input_path: str, flink_flags: list[str],
                  job_server: StartedJobServer | None = None) -> FlinkRun:
    contender = CONTENDERS[kind]
    flags = ["--input_format", "parquet", *contender.flags, *(flink_flags if kind != BASELINE else [])]
    if contender.started_job_server:
        assert job_server is not None
        flags += ["--job_endpoint", job_server.endpoint]
        cpu_before = process_cpu_seconds(job_server.process.pid)
    if contender.worker_pool:
        child, workers = run_with_worker_pool(input_path, flags)
    else:
        child, workers = run_child("pipeline", input_path, flags), NO_PROCESSES
    server = job_server.usage_since(cpu_before) if contender.started_job_server and job_server else NO_PROCESSES
    return FlinkRun(child, workers, reap_orphans(keep=job_server.process.pid if job_server else None), server)


WARM_UP_TICKS = 100_000


def start_job_server(scratch: Path, symbols: int) -> StartedJobServer:
    """The job server the ``-started`` contenders submit to, after one untimed job on a small
    input: a job server kept running has compiled its hot code before the runs that count."""
    # The flags Beam's own per-run job server gets for embedded batch (pipeline.runners): warm,
    # this server then spends ~3.8 s of CPU on a 10M-tick job, against ~7.7 s with the JVM's
    # defaults (G1, C2); docs/benchmarks.md, Flink batch.
    process, endpoint = start_flink_job_server(scratch, jvm_flags=EMBEDDED_BATCH_JVM_FLAGS)
    job_server = StartedJobServer(process, endpoint)
    warm_up_input = scratch / "warm-up.parquet"
    make_input(WARM_UP_TICKS, symbols, warm_up_input)
    warm_up = run_contender("flink-p1-started", str(warm_up_input), [], job_server)
    shutil.rmtree(warm_up.child.out_dir, ignore_errors=True)
    print(f"job server started at {endpoint}, warmed up with {WARM_UP_TICKS:,} ticks "
          f"({warm_up.child.process_seconds:.1f} s)", flush=True)
    return job_server


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
        cpu = statistics.median(r.cpu_seconds for r in kind_runs)
        peak = statistics.median(r.peak_mib for r in kind_runs)
        orphans = statistics.median(r.orphans.processes for r in kind_runs)
        line = (f"{kind:18s} process {process:7.2f} s ({rows / process:>9,.0f} ticks/s, "
                f"{base_process / process:4.2f}x {BASELINE})   work {work:7.2f} s ({rows / work:>9,.0f} ticks/s, "
                f"{base_work / work:4.2f}x)   CPU {cpu:7.2f} s   peak RSS {peak:5.0f} MiB   "
                f"(reaped after the child: {orphans:.0f}")
        if CONTENDERS[kind].worker_pool:
            line += f"; SDK workers: {statistics.median(r.workers.processes for r in kind_runs):.0f}"
        print(line + ")")
    print(f"\n(x {BASELINE} is speed: above 1.00 the contender is faster; target flink-p2 >= 1.00x at 10M ticks)")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--ticks", type=int, default=10_000_000)
    parser.add_argument("--symbols", type=int, default=50)
    parser.add_argument("--repeats", type=int, default=1)
    parser.add_argument("--contenders", nargs="+", choices=list(CONTENDERS), default=list(CONTENDERS),
                        help=f"which to run ({BASELINE} always runs: it is the baseline)")
    parser.add_argument("flink_flags", nargs="*", help="more pipeline flags for the Flink contenders, after --")
    args = parser.parse_args()
    kinds = [BASELINE, *(k for k in args.contenders if k != BASELINE)]
    become_subreaper()

    scratch = Path(tempfile.mkdtemp(prefix="bench-flink-"))
    input_path = scratch / "ticks.parquet"
    rows = make_input(args.ticks, args.symbols, input_path)
    print(f"input: {rows:,} ticks ({args.symbols} symbols, duplicates included) in {input_path}")
    print(f"machine: {os.cpu_count()} cores, load average before {os.getloadavg()}; "
          f"{args.repeats} repeats each, medians\n", flush=True)

    runs: dict[str, list[FlinkRun]] = {kind: [] for kind in kinds}
    job_server = None
    try:
        if any(CONTENDERS[kind].started_job_server for kind in kinds):
            job_server = start_job_server(scratch, args.symbols)
        for _ in range(args.repeats):
            for kind in kinds:
                runs[kind].append(run_contender(kind, str(input_path), args.flink_flags, job_server))
                print(f"  {kind}: {runs[kind][-1].child.process_seconds:.1f} s", flush=True)
        print(f"load average after {os.getloadavg()}\n")
        report(runs, rows)
    finally:
        if job_server is not None:
            stop_process(job_server.process, "the Flink job server", signal.SIGTERM)
        # The input and every child's lake are scratch: a 10M-tick run leaves a lot of disk otherwise.
        for path in [str(scratch), *(r.child.out_dir for kind_runs in runs.values() for r in kind_runs)]:
            shutil.rmtree(path, ignore_errors=True)


if __name__ == "__main__":
    main()
