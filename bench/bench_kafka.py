"""Kafka streaming benchmark beside the Pub/Sub emulator's, in the same run on the same machine:
ticks/s the pipeline sustains and how soon a closed window's bar is in PostgreSQL.

Each repeat runs bench/bench_streaming.py's Pub/Sub measurement (``run_once``: emulator, 1,000
ticks per message, the BundleBasedDirectRunner) and then the same feed over Kafka: a local KRaft
broker, ``python -m ingestion --sink kafka`` (one record per tick, keyed by symbol) and
``python -m pipeline --streaming --source kafka`` (Beam's Java ReadFromKafka on Prism, its Java
stage in the local worker pool). Both are measured from the database the same way (BarWatch:
window end -> row first visible, and -> row complete). Kafka needs no heartbeats: an idle
partition's watermark follows the wall clock.

    .venv/bin/python bench/bench_kafka.py --rate 10000 --seconds 30
    .venv/bin/python bench/bench_kafka.py --rate 10000 --seconds 30 --repeats 3

Targets (issue 13): Kafka >= 10,000 ticks/s with p99 <= 2 s on 2 cores.
"""
from __future__ import annotations

import argparse
import os
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from pathlib import Path

import psycopg

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from alphastream.local_services import KafkaServices, start_kafka_services, stop_process  # noqa: E402
from bench.bench_streaming import (  # noqa: E402
    _FINAL_LINE,
    ALLOWED_LATENESS_SECONDS,
    DEFAULT_INTERVAL,
    DRAIN_TIMEOUT_SECONDS,
    STARTUP_TIMEOUT_SECONDS,
    TARGET_P99_SECONDS,
    TARGET_TICKS_PER_SECOND,
    BarWatch,
    RunResult,
    _bar_stats,
    _collect,
    _line,
    run_once,
)
from live_demo.demo import start_emulator  # noqa: E402

PARTITIONS = 2  # one per core: the reader's parallelism on this machine
ADMIN_TIMEOUT_SECONDS = 30


def create_topic(bootstrap: str) -> str:
    from confluent_kafka.admin import AdminClient, NewTopic

    name = f"bench-{uuid.uuid4().hex[:8]}"
    admin = AdminClient({"bootstrap.servers": bootstrap})
    admin.create_topics([NewTopic(name, num_partitions=PARTITIONS, replication_factor=1)])[name].result(
        timeout=ADMIN_TIMEOUT_SECONDS)
    return name


def wait_for_drain(db_url: str, interval: str, published: int) -> None:
    """Until every tick is in a bar, or none arrived for longer than the allowed lateness."""
    deadline = time.monotonic() + DRAIN_TIMEOUT_SECONDS
    last, still_since = -1, time.monotonic()
    while time.monotonic() < deadline:
        ticks, _ = _bar_stats(db_url, interval)
        if ticks != last:
            last, still_since = ticks, time.monotonic()
        if ticks >= published or time.monotonic() - still_since > ALLOWED_LATENESS_SECONDS + 2:
            return
        time.sleep(0.5)


def run_kafka_once(args: argparse.Namespace, db_url: str, services: KafkaServices) -> RunResult:
    with psycopg.connect(db_url) as conn:
        conn.execute("TRUNCATE bars, dead_letters")
    topic = create_topic(services.bootstrap)
    env = dict(os.environ, PYTHONUNBUFFERED="1")
    pipeline_log: list[str] = []
    pipeline = subprocess.Popen(
        [sys.executable, "-m", "pipeline", "--streaming", "--source", "kafka",
         "--kafka_bootstrap_servers", services.bootstrap, "--kafka_topic", topic,
         "--expansion_service", services.expansion_service, "--db_url", db_url, "--intervals", args.interval,
         "--allowed_lateness", str(ALLOWED_LATENESS_SECONDS), "--early_firing_seconds", "0",
         "--output", args.output], cwd=REPO, env=env, stderr=subprocess.PIPE, stdout=subprocess.DEVNULL, text=True)
    ready = threading.Event()
    threading.Thread(target=_collect, args=(pipeline, pipeline_log, ready), daemon=True).start()
    watch = None
    try:
        if not ready.wait(STARTUP_TIMEOUT_SECONDS):
            raise RuntimeError("pipeline did not start:\n" + "".join(pipeline_log[-30:]))
        watch = BarWatch(db_url, args.interval).__enter__()
        feed = subprocess.run(
            [sys.executable, "-m", "ingestion", "--source", "synthetic", "--sink", "kafka",
             "--bootstrap", services.bootstrap, "--topic", topic, "--rate", str(args.rate),
             "--max_ticks", str(int(args.rate * args.seconds)), "--num_symbols", str(args.symbols),
             "--log_interval", "5"], cwd=REPO, env=env, capture_output=True, text=True,
            timeout=args.seconds * 10 + 60)
        match = _FINAL_LINE.search(feed.stderr)
        if feed.returncode != 0 or not match:
            raise RuntimeError(f"ingestion failed ({feed.returncode}):\n{feed.stderr[-3000:]}")
        published, publish_seconds = int(match["published"]), float(match["seconds"])
        wait_for_drain(db_url, args.interval, published)
    finally:
        stop_process(pipeline, "pipeline")
        if watch is not None:
            watch.__exit__(None, None, None)
    return RunResult(published, publish_seconds, *_bar_stats(db_url, args.interval), watch.first_delays(),
                     watch.final_delays())


def _medians(results: list[RunResult]) -> str:
    consumed = statistics.median(r.consumed_rate for r in results)
    ratio = statistics.median(r.consumed_rate / r.publish_rate for r in results)
    p50 = statistics.median(r.percentile(0.5) for r in results)
    p99 = statistics.median(r.percentile(0.99) for r in results)
    p99_final = statistics.median(r.percentile(0.99, True) for r in results)
    return (f"consumed {consumed:,.0f} ticks/s ({ratio:.2f}x the publisher), window end -> PostgreSQL "
            f"p50 {p50:.2f} s, p99 {p99:.2f} s (complete p99 {p99_final:.2f} s)")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rate", type=float, default=10_000.0, help="Publisher target ticks per second.")
    parser.add_argument("--seconds", type=float, default=30.0, help="How long the publisher runs.")
    parser.add_argument("--ticks_per_message", type=int, default=1000, help="Pub/Sub: ticks per message.")
    parser.add_argument("--interval", default=DEFAULT_INTERVAL, help="Bar interval of the pipeline.")
    parser.add_argument("--symbols", type=int, default=20, help="Synthetic symbols.")
    parser.add_argument("--repeats", type=int, default=1, help="Runs of each bus; medians are reported.")
    parser.add_argument("--skip_pubsub", action="store_true", help="Measure Kafka only.")
    args = parser.parse_args(argv)

    from store import migrate
    from store.localdb import LocalDatabase

    work = Path(tempfile.mkdtemp(prefix="bench-kafka-"))
    args.output = str(work / "lake")
    work.chmod(0o755)  # as root, the postgres account must enter it
    emulator, host = start_emulator(work)
    os.environ["PUBSUB_EMULATOR_HOST"] = host
    services = start_kafka_services(work)
    local = LocalDatabase(work / "pg", durable=False)
    try:
        db_url = local.ensure_running()
        migrate.migrate(db_url)
        pubsub, kafka = [], []
        for run in range(args.repeats):
            if not args.skip_pubsub:
                pubsub.append(run_once(args, db_url, dict(os.environ, PUBSUB_EMULATOR_HOST=host,
                                                          PYTHONUNBUFFERED="1")))
                print(f"run {run + 1} pubsub: {_line(pubsub[-1])}", flush=True)
            kafka.append(run_kafka_once(args, db_url, services))
            print(f"run {run + 1} kafka:  {_line(kafka[-1])}", flush=True)
    finally:
        local.stop()
        services.stop()
        stop_process(emulator, "pubsub emulator", signal.SIGTERM)
    print(f"\nmedian of {args.repeats} at {args.rate:,.0f} ticks/s for {args.seconds:.0f} s "
          f"(targets >= {TARGET_TICKS_PER_SECOND:,}/s, p99 <= {TARGET_P99_SECONDS} s):")
    if pubsub:
        print(f"  pubsub emulator: {_medians(pubsub)}")
    print(f"  kafka:           {_medians(kafka)}")
    consumed = statistics.median(r.consumed_rate for r in kafka)
    p99 = statistics.median(r.percentile(0.99) for r in kafka)
    return 0 if consumed >= TARGET_TICKS_PER_SECOND and p99 <= TARGET_P99_SECONDS else 1


if __name__ == "__main__":
    sys.exit(main())
