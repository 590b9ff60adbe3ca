"""Streaming benchmark on the Pub/Sub emulator: ticks/s the pipeline sustains, and how soon a
closed window's bar is in PostgreSQL.

One run: start the emulator, a topic and subscription, ``python -m pipeline --streaming --source
pubsub`` (DirectRunner, bars into PostgreSQL), then ``python -m ingestion --source synthetic`` at
``--rate`` for ``--seconds``, all as separate processes (as deployed). When the feed ends,
heartbeats keep the reader's watermark moving until the last window closed. Then, from the
database:

* consumed ticks/s = ticks in bars / the span the publisher ran, and its ratio to the
  publisher's own measured rate (a pipeline that falls behind drops late ticks, or bars arrive
  later and later: both show);
* delay = when a bar row first became visible in PostgreSQL (polled every
  ``POLL_SECONDS``) - its window's end, p50/p99 over every bar; and the same for when the row
  got its final trade count (ticks that waited in a pull while the watermark passed the window
  end arrive as a LATE pane that completes the bar). (``bars.updated_at`` would
  not do: a LATE pane rewrites it.) On the DirectRunner the watermark passes a window's end
  at the first read after the wall clock does (reads come at least every heartbeat), so this
  is the delay after the watermark passes the window end plus at most one heartbeat and one
  poll.

    .venv/bin/python bench/bench_streaming.py --rate 10000 --seconds 30
    .venv/bin/python bench/bench_streaming.py --rate 20000 --seconds 30 --repeats 3

    .venv/bin/python bench/bench_streaming.py --rate 10000 --seconds 30 --repeats 3 --compare_archive

Targets (issue 4): >= 10,000 ticks/s sustained and >= 0.7x the publish rate; p99 <= 2 s.
Issue 19 (--compare_archive): the feed's tick archive costs <= 10% of the consumed ticks/s;
the repair's ticks/s over the archived ticks, next to the batch path's over the same files.
"""
from __future__ import annotations

import argparse
import os
import re
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass
from pathlib import Path

import psycopg

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from alphastream.local_services import stop_process  # noqa: E402
from live_demo.demo import EMULATOR_PROJECT, PIPELINE_READY_LINE, create_topic_and_subscription, start_emulator  # noqa: E402

DEFAULT_INTERVAL = "5s"
ALLOWED_LATENESS_SECONDS = 5
HEARTBEAT_SECONDS = 0.2
POLL_SECONDS = 0.1
DRAIN_TIMEOUT_SECONDS = 60
STARTUP_TIMEOUT_SECONDS = 120
TARGET_TICKS_PER_SECOND = 10_000
TARGET_RATIO = 0.7
TARGET_P99_SECONDS = 2.0
ARCHIVE_COST_TARGET = 0.10  # issue 19: the tick archive costs at most 10% of the ticks/s
_FINAL_LINE = re.compile(r"stopped \((?P<reason>[^)]*)\) after (?P<seconds>[\d.]+) s: submitted=(?P<submitted>\d+) "
                         r"published=(?P<published>\d+) failed=(?P<failed>\d+)")


@dataclass
class RunResult:
    published: int
    publish_seconds: float
    ticks_in_bars: int
    timings: dict[str, int]
    delays: list[float]  # window end -> bar row first visible
    final_delays: list[float]  # window end -> bar row complete (its last trade count)

    @property
    def publish_rate(self) -> float:
        return self.published / self.publish_seconds

    @property
    def consumed_rate(self) -> float:
        return self.ticks_in_bars / self.publish_seconds

    def percentile(self, q: float, final: bool = False) -> float:
        ordered = sorted(self.final_delays if final else self.delays)
        return ordered[min(len(ordered) - 1, int(q * len(ordered)))] if ordered else float("nan")


def _collect(process: subprocess.Popen, lines: list[str], ready: threading.Event | None = None) -> None:
    for line in process.stderr:
        lines.append(line)
        if ready is not None and PIPELINE_READY_LINE in line:
            ready.set()


class BarWatch:
    """Polls ``bars``; per (symbol, window) remembers when its row first appeared and when its
    trade count last changed (a LATE pane completing it), both measured from the window end."""

    def __init__(self, db_url: str, interval: str):
        self._db_url, self._interval = db_url, interval
        self.first_seen: dict[tuple[str, float], float] = {}  # (symbol, window end epoch s) -> time
        self.completed: dict[tuple[str, float], tuple[int, float]] = {}  # -> (trades, time of that count)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        from alphastream.intervals import interval_seconds

        width = interval_seconds(self._interval)
        with psycopg.connect(self._db_url, autocommit=True) as conn:
            while not self._stop.wait(POLL_SECONDS):
                now = time.time()
                for symbol, start, trades in conn.execute(
                        "SELECT symbol, extract(epoch FROM bucket_start)::float8, trades FROM bars "
                        "WHERE interval = %s", (self._interval,)):
                    key = (symbol, start + width)
                    self.first_seen.setdefault(key, now)
                    if self.completed.get(key, (None,))[0] != trades:
                        self.completed[key] = (trades, now)

    def __enter__(self):
        self._thread.start()
        return self

    def __exit__(self, *exc):
        self._stop.set()
        self._thread.join()

    def first_delays(self) -> list[float]:
        return [seen - window_end for (_, window_end), seen in self.first_seen.items()]

    def final_delays(self) -> list[float]:
        return [seen - window_end for (_, window_end), (_, seen) in self.completed.items()]


def _bar_stats(db_url: str, interval: str) -> tuple[int, dict[str, int]]:
    """(ticks in bars, bar count per pane timing of the last write)."""
    with psycopg.connect(db_url) as conn:
        ticks = conn.execute("SELECT coalesce(sum(trades), 0) FROM bars WHERE interval = %s", (interval,)).fetchone()[0]
        timings = dict(conn.execute("SELECT timing, count(*) FROM bars WHERE interval = %s GROUP BY timing",
                                    (interval,)).fetchall())
    return int(ticks), timings


def run_once(args: argparse.Namespace, db_url: str, env: dict[str, str], archive: str | None = None) -> RunResult:
    from ingestion.sinks.pubsub import PublishSettings, PubSubSink

    with psycopg.connect(db_url) as conn:
        conn.execute("TRUNCATE bars, dead_letters")
    topic, subscription = create_topic_and_subscription(EMULATOR_PROJECT)
    pipeline_log: list[str] = []
    pipeline = subprocess.Popen(
        [sys.executable, "-m", "pipeline", "--streaming", "--source", "pubsub", "--subscription", subscription,
         "--db_url", db_url, "--intervals", args.interval, "--allowed_lateness", str(ALLOWED_LATENESS_SECONDS),
         "--early_firing_seconds", "0", "--output", args.output], cwd=REPO, env=env, stderr=subprocess.PIPE, stdout=subprocess.DEVNULL,
        text=True)
    ready = threading.Event()
    threading.Thread(target=_collect, args=(pipeline, pipeline_log, ready), daemon=True).start()
    heartbeats = None
    try:
        if not ready.wait(STARTUP_TIMEOUT_SECONDS):
            raise RuntimeError("pipeline did not start:\n" + "".join(pipeline_log[-30:]))
        # Heartbeats all along (the feed's own stop when it exits): the last windows must close.
        heartbeats = PubSubSink(topic, PublishSettings(heartbeat_seconds=HEARTBEAT_SECONDS))
        watch = BarWatch(db_url, args.interval).__enter__()
        feed = subprocess.run(
            [sys.executable, "-m", "ingestion", "--source", "synthetic", "--topic", topic, "--rate", str(args.rate),
             "--max_ticks", str(int(args.rate * args.seconds)), "--ticks_per_message", str(args.ticks_per_message),
             "--num_symbols", str(args.symbols), "--log_interval", "5", *(["--archive", archive] if archive else [])],
            cwd=REPO, env=env, capture_output=True, text=True, timeout=args.seconds * 10 + 60)
        match = _FINAL_LINE.search(feed.stderr)
        if feed.returncode != 0 or not match:
            raise RuntimeError(f"ingestion failed ({feed.returncode}):\n{feed.stderr[-3000:]}")
        published, publish_seconds = int(match["published"]), float(match["seconds"])
        # Drain: wait until no more ticks arrive in bars for a few seconds (or all arrived).
        deadline = time.monotonic() + DRAIN_TIMEOUT_SECONDS
        last, still_since = -1, time.monotonic()
        while time.monotonic() < deadline:
            ticks, _ = _bar_stats(db_url, args.interval)
            if ticks != last:
                last, still_since = ticks, time.monotonic()
            if ticks >= published or time.monotonic() - still_since > ALLOWED_LATENESS_SECONDS + 2:
                break
            time.sleep(0.5)
    finally:
        stop_process(pipeline, "pipeline")
        if heartbeats is not None:
            watch.__exit__(None, None, None)
            heartbeats.close(timeout=10)
    return RunResult(published, publish_seconds, *_bar_stats(db_url, args.interval), watch.first_delays(),
                     watch.final_delays())


def measure_repair(archive: str, interval: str, output: str) -> tuple[int, float, float]:
    """(ticks, seconds of pipeline.repair.recompute over the whole archive, seconds of the batch
    path, ``python -m pipeline --source files``, over the same archived files)."""
    from alphastream.tick_archive import read_archive
    from pipeline.repair import recompute

    now_us = time.time_ns() // 1_000
    hour = 3_600_000_000
    started = time.perf_counter()
    result = recompute(archive, now_us - 2 * hour, now_us + hour, (interval,), now_us=now_us)
    repair_seconds = time.perf_counter() - started
    assert result.ticks_read == sum(1 for _ in read_archive(archive, now_us - 2 * hour, now_us + hour))
    started = time.perf_counter()
    subprocess.run([sys.executable, "-m", "pipeline", "--source", "files", "--input", f"{archive}/ticks/*/*/*.jsonl",
                    "--input_format", "jsonl", "--intervals", interval, "--no_db", "--output", output],
                   cwd=REPO, check=True, capture_output=True, timeout=600)
    return result.ticks_read, repair_seconds, time.perf_counter() - started


def _line(result: RunResult) -> str:
    return (f"published {result.published:,} ticks in {result.publish_seconds:.1f} s "
            f"({result.publish_rate:,.0f}/s); in bars {result.ticks_in_bars:,} ({result.consumed_rate:,.0f}/s, "
            f"{result.consumed_rate / result.publish_rate:.2f}x); window end -> row p50 "
            f"{result.percentile(0.5):.2f} s, p99 {result.percentile(0.99):.2f} s over {len(result.delays)} bars "
            f"(complete: p50 {result.percentile(0.5, True):.2f} s, p99 {result.percentile(0.99, True):.2f} s); "
            f"bars by last pane timing {result.timings}")


def compare_archive(args: argparse.Namespace, db_url: str, env: dict[str, str], work: Path) -> int:
    """Alternate runs without and with the feed's tick archive; report both medians, their
    ratio, and the repair's speed over the last archive (vs the batch path on the same ticks)."""
    plain, archived = [], []
    for run in range(args.repeats):
        for results, archive in ((plain, None), (archived, str(work / f"archive-{run}"))):
            result = run_once(args, db_url, env, archive)
            results.append(result)
            print(f"run {run + 1} {'with' if archive else 'without'} --archive: {_line(result)}", flush=True)
    without = statistics.median(r.consumed_rate for r in plain)
    with_archive = statistics.median(r.consumed_rate for r in archived)
    publish_without = statistics.median(r.publish_rate for r in plain)
    publish_with = statistics.median(r.publish_rate for r in archived)
    cost = 1 - with_archive / without
    print(f"\nmedian of {args.repeats}: consumed {without:,.0f} ticks/s without the archive, {with_archive:,.0f} with "
          f"({cost:+.1%} fewer; target <= {ARCHIVE_COST_TARGET:.0%}); publisher {publish_without:,.0f} vs "
          f"{publish_with:,.0f} ticks/s")
    ticks, repair_seconds, batch_seconds = measure_repair(str(work / f"archive-{args.repeats - 1}"), args.interval,
                                                          str(work / "batch-lake"))
    print(f"repair: {ticks:,} archived ticks in {repair_seconds:.2f} s ({ticks / repair_seconds:,.0f} ticks/s); "
          f"batch path (python -m pipeline --source files, process included) {batch_seconds:.2f} s "
          f"({ticks / batch_seconds:,.0f} ticks/s); repair/batch speed {batch_seconds / repair_seconds:.1f}x")
    return 0 if cost <= ARCHIVE_COST_TARGET else 1


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rate", type=float, default=12_000.0, help="Publisher target ticks per second.")
    parser.add_argument("--seconds", type=float, default=30.0, help="How long the publisher runs.")
    parser.add_argument("--ticks_per_message", type=int, default=1000, help="Ticks per Pub/Sub message.")
    parser.add_argument("--interval", default=DEFAULT_INTERVAL, help="Bar interval of the pipeline.")
    parser.add_argument("--symbols", type=int, default=20, help="Synthetic symbols.")
    parser.add_argument("--repeats", type=int, default=1, help="Runs; medians are reported.")
    parser.add_argument("--db_url", default=None, help="PostgreSQL DSN (default: a throwaway local cluster).")
    parser.add_argument("--compare_archive", action="store_true",
                        help="Alternate runs without and with the feed's tick archive (--archive); report the "
                             "archive's cost on throughput and the repair's speed over the archived ticks.")
    args = parser.parse_args(argv)

    work = Path(tempfile.mkdtemp(prefix="bench-streaming-"))
    args.output = str(work / "lake")
    work.chmod(0o755)  # as root, the postgres account must enter it
    emulator, host = start_emulator(work)
    local = None
    env = dict(os.environ, PUBSUB_EMULATOR_HOST=host, PYTHONUNBUFFERED="1")
    os.environ["PUBSUB_EMULATOR_HOST"] = host
    try:
        db_url = args.db_url
        if db_url is None:
            from store import migrate
            from store.localdb import LocalDatabase

            local = LocalDatabase(work / "pg", durable=False)
            db_url = local.ensure_running()
            migrate.migrate(db_url)
        if args.compare_archive:
            return compare_archive(args, db_url, env, work)
        results = []
        for run in range(args.repeats):
            result = run_once(args, db_url, env)
            results.append(result)
            print(f"run {run + 1}: {_line(result)}", flush=True)
    finally:
        if local is not None:
            local.stop()
        stop_process(emulator, "pubsub emulator", signal.SIGTERM)

    publish = statistics.median(r.publish_rate for r in results)
    consumed = statistics.median(r.consumed_rate for r in results)
    ratio = statistics.median(r.consumed_rate / r.publish_rate for r in results)
    p50 = statistics.median(r.percentile(0.5) for r in results)
    p99 = statistics.median(r.percentile(0.99) for r in results)
    p99_final = statistics.median(r.percentile(0.99, True) for r in results)
    print(f"\nmedian of {len(results)}: publish {publish:,.0f} ticks/s, consumed {consumed:,.0f} ticks/s "
          f"({ratio:.2f}x; target >= {TARGET_TICKS_PER_SECOND:,}/s and >= {TARGET_RATIO}x), "
          f"window end -> PostgreSQL p50 {p50:.2f} s, p99 {p99:.2f} s (target <= {TARGET_P99_SECONDS} s; "
          f"bar complete incl. LATE corrections: p99 {p99_final:.2f} s)")
    met = consumed >= TARGET_TICKS_PER_SECOND and ratio >= TARGET_RATIO and p99 <= TARGET_P99_SECONDS
    print("targets met" if met else "targets MISSED")
    return 0 if met else 1


if __name__ == "__main__":
    sys.exit(main())
