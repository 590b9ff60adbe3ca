"""Kafka streaming benchmark beside the Pub/Sub emulator's, in the same run on the same machine:
ticks/s the pipeline sustains and how soon a closed window's bar is in PostgreSQL, with Kafka
read on Prism, on Flink, or both.

Each repeat runs bench/bench_streaming.py's Pub/Sub measurement (``run_once``: emulator, 1,000
ticks per message, the BundleBasedDirectRunner) and then the same feed over Kafka once per
runner ``--kafka_runners`` names: a local KRaft broker (a new 2-partition topic each run),
``python -m ingestion --sink kafka`` (up to 1,000 ticks per record, keyed by symbol) and
``python -m pipeline --streaming --source kafka`` on

- ``prism``: Beam's Prism runner (the local runner ``pipeline.runners`` picks for a Kafka
  stream); KafkaIO's splittable reader runs in the Java worker pool, the Python steps in
  LOOPBACK;
- ``flink``: ``--runner FlinkRunner``, an embedded Flink 1.19 in the assembled job server;
  KafkaIO's legacy reader runs in the job server's JVM, so this runner gets an expansion service
  of its own started with ``use_deprecated_read`` (alphastream.flink_kafka), the rest of the Kafka
  transform in the Java worker pool, the Python steps in LOOPBACK.

The broker and the Java worker pool are shared. Every contender is measured from the database
the same way (BarWatch: window end -> row first visible, and -> row complete). The feed's Kafka
sink sends heartbeats when idle (ingestion.sinks.kafka); the pipeline reads them as no ticks.

    .venv/bin/python bench/bench_kafka.py --rate 10000 --seconds 30 --repeats 3
    .venv/bin/python bench/bench_kafka.py --rate 10000 --seconds 30 --repeats 3 --kafka_runners prism flink
    .venv/bin/python bench/bench_kafka.py --rate 2000 --seconds 10 --kafka_runners flink --skip_pubsub  # a quick look

Targets (issue 13): Kafka >= 10,000 ticks/s with p99 <= 2 s on 2 cores; the exit status is 0
when every Kafka runner measured meets both (medians over the repeats).
"""
from __future__ import annotations

import argparse
import os
import signal
import sys
import uuid
from dataclasses import dataclass
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from alphastream.flink_kafka import LEGACY_READ_EXPERIMENT  # noqa: E402
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


@dataclass(frozen=True)
class KafkaRunner:
    """A runner the Kafka feed is measured on: its pipeline flags, and the Beam experiments its
    expansion service needs."""

    flags: tuple[str, ...]
    experiments: tuple[str, ...] = ()


KAFKA_RUNNERS = {
    "prism": KafkaRunner(()),  # pipeline.runners' choice for a Kafka stream
    "flink": KafkaRunner(("--runner", "FlinkRunner"), (LEGACY_READ_EXPERIMENT,)),
}


def start_services(work: Path, runners: list[str]) -> tuple[KafkaServices, dict[str, str]]:
    """One broker and one Java worker pool, and an expansion service per set of experiments the
    ``runners`` need: (the services, to stop; runner -> its expansion service address)."""
    experiment_sets = list(dict.fromkeys(KAFKA_RUNNERS[runner].experiments for runner in runners))
    services = start_kafka_services(work, experiments=experiment_sets[0])
    by_experiments = {experiment_sets[0]: services.expansion_service}
    try:
        for index, experiments in enumerate(experiment_sets[1:], start=1):
            folder = work / f"expansion-{index}"  # each service logs into its own folder
            folder.mkdir()
            by_experiments[experiments] = services.add_expansion_service(folder, experiments)
    except BaseException:
        services.stop()
        raise
    return services, {runner: by_experiments[KAFKA_RUNNERS[runner].experiments] for runner in runners}


def create_topic(bootstrap: str) -> str:
    from confluent_kafka.admin import AdminClient, NewTopic

    name = f"bench-{uuid.uuid4().hex[:8]}"
    admin = AdminClient({"bootstrap.servers": bootstrap})
    admin.create_topics([NewTopic(name, num_partitions=PARTITIONS, replication_factor=1)])[name].result(
        timeout=ADMIN_TIMEOUT_SECONDS)
    return name


def run_kafka_once(args: argparse.Namespace, db_url: str, bootstrap: str, expansion_service: str,
                   runner: KafkaRunner) -> RunResult:
    """One run over a new topic of the local broker, the pipeline on ``runner``."""
    topic = create_topic(bootstrap)
    return measure_run(args, db_url, dict(os.environ, PYTHONUNBUFFERED="1"),
                       source=["--source", "kafka", "--kafka_bootstrap_servers", bootstrap, "--kafka_topic", topic,
                               "--expansion_service", expansion_service, *runner.flags],
                       sink=["--sink", "kafka", "--bootstrap", bootstrap, "--topic", topic])


def _medians(results: list[RunResult]) -> str:
    medians = Medians.of(results)
    return (f"consumed {medians.consumed_rate:,.0f} ticks/s ({medians.ratio:.2f}x the publisher), window end -> "
            f"PostgreSQL p50 {medians.p50:.2f} s, p99 {medians.p99:.2f} s (complete p99 {medians.p99_final:.2f} s)")


def _meets_targets(results: list[RunResult]) -> bool:
    medians = Medians.of(results)
    return medians.consumed_rate >= TARGET_TICKS_PER_SECOND and medians.p99 <= TARGET_P99_SECONDS


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    add_run_arguments(parser, default_rate=10_000.0)
    parser.add_argument("--skip_pubsub", action="store_true", help="Measure Kafka only.")
    parser.add_argument("--kafka_runners", nargs="+", choices=sorted(KAFKA_RUNNERS), default=["prism"],
                        help="The runners the Kafka feed is measured on, each in every repeat (default: prism).")
    args = parser.parse_args(argv)
    runners = list(dict.fromkeys(args.kafka_runners))  # each once, in the order given

    work = work_dir("bench-kafka-")
    args.output = str(work / "lake")
    emulator = None
    if not args.skip_pubsub:
        emulator, host = start_emulator(work)
        os.environ["PUBSUB_EMULATOR_HOST"] = host
    results: dict[str, list[RunResult]] = {}
    try:
        services, expansion_services = start_services(work, runners)
        try:
            with database(work) as db_url:
                for run in range(args.repeats):
                    if not args.skip_pubsub:
                        results.setdefault("pubsub emulator", []).append(
                            run_once(args, db_url, dict(os.environ, PYTHONUNBUFFERED="1")))
                        print(f"run {run + 1} pubsub emulator: {results['pubsub emulator'][-1].line()}", flush=True)
                    for runner in runners:
                        label = f"kafka on {runner}"
                        results.setdefault(label, []).append(run_kafka_once(
                            args, db_url, services.bootstrap, expansion_services[runner], KAFKA_RUNNERS[runner]))
                        print(f"run {run + 1} {label}: {results[label][-1].line()}", flush=True)
        finally:
            services.stop()
    finally:
        if emulator is not None:
            stop_process(emulator, "pubsub emulator", signal.SIGTERM)
    print(f"\nmedian of {args.repeats} at {args.rate:,.0f} ticks/s for {args.seconds:.0f} s "
          f"(targets >= {TARGET_TICKS_PER_SECOND:,}/s, p99 <= {TARGET_P99_SECONDS} s):")
    width = max(map(len, results)) + 1
    for label, runs in results.items():
        print(f"  {label + ':':<{width}} {_medians(runs)}")
    met = all(_meets_targets(runs) for label, runs in results.items() if label.startswith("kafka"))
    return 0 if met else 1


if __name__ == "__main__":
    sys.exit(main())
