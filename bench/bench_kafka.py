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
import sys
import uuid
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from alphastream.local_services import KafkaServices, start_kafka_services, stop_process  # noqa: E402
from bench.bench_streaming import run_once  # noqa: E402
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
from live_demo.demo import start_emulator  # noqa: E402

PARTITIONS = 2  # the reader's parallelism: one partition per core of the 2-core benchmark machine
ADMIN_TIMEOUT_SECONDS = 30


def create_topic(bootstrap: str) -> str:
    from confluent_kafka.admin import AdminClient, NewTopic

    name = f"bench-{uuid.uuid4().hex[:8]}"
    admin = AdminClient({"bootstrap.servers": bootstrap})
    admin.create_topics([NewTopic(name, num_partitions=PARTITIONS, replication_factor=1)])[name].result(
        timeout=ADMIN_TIMEOUT_SECONDS)
    return name


def run_kafka_once(args: argparse.Namespace, db_url: str, services: KafkaServices) -> RunResult:
    """One run over a new topic of the local broker."""
    topic = create_topic(services.bootstrap)
    return measure_run(args, db_url, dict(os.environ, PYTHONUNBUFFERED="1"),
                       source=["--source", "kafka", "--kafka_bootstrap_servers", services.bootstrap,
                               "--kafka_topic", topic, "--expansion_service", services.expansion_service],
                       sink=["--sink", "kafka", "--bootstrap", services.bootstrap, "--topic", topic])


def _medians(results: list[RunResult]) -> str:
    medians = Medians.of(results)
    return (f"consumed {medians.consumed_rate:,.0f} ticks/s ({medians.ratio:.2f}x the publisher), window end -> "
            f"PostgreSQL p50 {medians.p50:.2f} s, p99 {medians.p99:.2f} s (complete p99 {medians.p99_final:.2f} s)")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    add_run_arguments(parser, default_rate=10_000.0)
    parser.add_argument("--skip_pubsub", action="store_true", help="Measure Kafka only.")
    args = parser.parse_args(argv)

    work = work_dir("bench-kafka-")
    args.output = str(work / "lake")
    emulator, host = start_emulator(work)
    os.environ["PUBSUB_EMULATOR_HOST"] = host
    services = start_kafka_services(work)
    try:
        with database(work) as db_url:
            pubsub, kafka = [], []
            for run in range(args.repeats):
                if not args.skip_pubsub:
                    pubsub.append(run_once(args, db_url, dict(os.environ, PYTHONUNBUFFERED="1")))
                    print(f"run {run + 1} pubsub: {pubsub[-1].line()}", flush=True)
                kafka.append(run_kafka_once(args, db_url, services))
                print(f"run {run + 1} kafka:  {kafka[-1].line()}", flush=True)
    finally:
        services.stop()
        stop_process(emulator, "pubsub emulator", signal.SIGTERM)
    print(f"\nmedian of {args.repeats} at {args.rate:,.0f} ticks/s for {args.seconds:.0f} s "
          f"(targets >= {TARGET_TICKS_PER_SECOND:,}/s, p99 <= {TARGET_P99_SECONDS} s):")
    if pubsub:
        print(f"  pubsub emulator: {_medians(pubsub)}")
    print(f"  kafka:           {_medians(kafka)}")
    kafka_medians = Medians.of(kafka)
    met = kafka_medians.consumed_rate >= TARGET_TICKS_PER_SECOND and kafka_medians.p99 <= TARGET_P99_SECONDS
    return 0 if met else 1


if __name__ == "__main__":
    sys.exit(main())
