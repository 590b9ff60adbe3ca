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
import contextlib
import os
import signal
import statistics
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from alphastream.local_services import stop_process  # noqa: E402
from bench.streaming_harness import (  # noqa: E402
    TARGET_P99_SECONDS,
    TARGET_TICKS_PER_SECOND,
    Medians,
    RunResult,
    add_run_arguments,
    database,
    measure_run,
    work_dir,
)
from live_demo.demo import EMULATOR_PROJECT, create_topic_and_subscription, start_emulator  # noqa: E402

HEARTBEAT_SECONDS = 0.2
HEARTBEAT_CLOSE_TIMEOUT_SECONDS = 10
TARGET_RATIO = 0.7
ARCHIVE_COST_TARGET = 0.10  # issue 19: the tick archive costs at most 10% of the ticks/s
REPAIR_TIMEOUT_SECONDS = 600


@contextlib.contextmanager
def heartbeats(topic: str) -> Iterator[None]:
    """Heartbeats on the topic while the feed runs and after it ended: the last windows must close."""
    from ingestion.sinks.pubsub import PublishSettings, PubSubSink

    sink = PubSubSink(topic, PublishSettings(heartbeat_seconds=HEARTBEAT_SECONDS))
    try:
        yield
    finally:
        sink.close(timeout=HEARTBEAT_CLOSE_TIMEOUT_SECONDS)


def run_once(args: argparse.Namespace, db_url: str, env: dict[str, str], archive: str | None = None) -> RunResult:
    """One run over a new topic and subscription of the emulator (env names it)."""
    topic, subscription = create_topic_and_subscription(EMULATOR_PROJECT)
    return measure_run(args, db_url, env, source=["--source", "pubsub", "--subscription", subscription],
                       sink=["--topic", topic, "--ticks_per_message", str(args.ticks_per_message),
                             *(["--archive", archive] if archive else [])],
                       beside_feed=lambda: heartbeats(topic))


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
                   cwd=REPO, check=True, capture_output=True, timeout=REPAIR_TIMEOUT_SECONDS)
    return result.ticks_read, repair_seconds, time.perf_counter() - started


def compare_archive(args: argparse.Namespace, db_url: str, env: dict[str, str], work: Path) -> int:
    """Alternate runs without and with the feed's tick archive; report both medians, their
    ratio, and the repair's speed over the last archive (vs the batch path on the same ticks)."""
    plain, archived = [], []
    for run in range(args.repeats):
        for results, archive in ((plain, None), (archived, str(work / f"archive-{run}"))):
            result = run_once(args, db_url, env, archive)
            results.append(result)
            print(f"run {run + 1} {'with' if archive else 'without'} --archive: {result.line()}", flush=True)
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


def _report(results: list[RunResult]) -> int:
    medians = Medians.of(results)
    print(f"\nmedian of {len(results)}: publish {medians.publish_rate:,.0f} ticks/s, consumed "
          f"{medians.consumed_rate:,.0f} ticks/s ({medians.ratio:.2f}x; target >= {TARGET_TICKS_PER_SECOND:,}/s and "
          f">= {TARGET_RATIO}x), window end -> PostgreSQL p50 {medians.p50:.2f} s, p99 {medians.p99:.2f} s "
          f"(target <= {TARGET_P99_SECONDS} s; bar complete incl. LATE corrections: p99 {medians.p99_final:.2f} s)")
    met = (medians.consumed_rate >= TARGET_TICKS_PER_SECOND and medians.ratio >= TARGET_RATIO
           and medians.p99 <= TARGET_P99_SECONDS)
    print("targets met" if met else "targets MISSED")
    return 0 if met else 1


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    add_run_arguments(parser, default_rate=12_000.0)
    parser.add_argument("--db_url", default=None, help="PostgreSQL DSN (default: a throwaway local cluster).")
    parser.add_argument("--compare_archive", action="store_true",
                        help="Alternate runs without and with the feed's tick archive (--archive); report the "
                             "archive's cost on throughput and the repair's speed over the archived ticks.")
    args = parser.parse_args(argv)

    work = work_dir("bench-streaming-")
    args.output = str(work / "lake")
    emulator, host = start_emulator(work)
    env = dict(os.environ, PUBSUB_EMULATOR_HOST=host, PYTHONUNBUFFERED="1")
    os.environ["PUBSUB_EMULATOR_HOST"] = host
    try:
        with database(work, args.db_url) as db_url:
            if args.compare_archive:
                return compare_archive(args, db_url, env, work)
            results = []
            for run in range(args.repeats):
                result = run_once(args, db_url, env)
                results.append(result)
                print(f"run {run + 1}: {result.line()}", flush=True)
    finally:
        stop_process(emulator, "pubsub emulator", signal.SIGTERM)
    return _report(results)


if __name__ == "__main__":
    sys.exit(main())
