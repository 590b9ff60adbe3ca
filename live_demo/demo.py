"""``python -m live_demo``: the live path in one command.

Starts, in order: the bus (``--bus pubsub``: Google's Pub/Sub emulator on loopback unless
``--project`` names a real GCP project, a topic and a subscription; ``--bus kafka``: a local
Kafka broker, Beam's Java worker pool and expansion service, a topic), the streaming pipeline
(``python -m pipeline --streaming``, bars into the embedded local database or ``--db_url``,
finalised from the tick archive in the lake) and the ingestion service (``python -m
ingestion``, synthetic market by default, archiving every tick). Bars appear in the database
every interval. Ctrl-C (or ``--max_duration``) stops them in the reverse order: the feed first
(it flushes), then the pipeline (while its reader still sees heartbeats), then the bus.

Each part is its own process running its own public CLI, so the demo is exactly what a user
would run by hand; nothing here is imported by the pipeline.
"""
from __future__ import annotations

import argparse
import logging
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

from alphastream.java_jars import JarsMissingError
from alphastream.local_services import EmulatorError, start_kafka_services, start_pubsub_emulator, stop_process
from alphastream.synthetic import LIVE_TICKS_PER_SECOND
from ingestion.cli import SOURCES as INGESTION_SOURCES
from pipeline.options import DEFAULT_OUTPUT

log = logging.getLogger("live_demo")

Child = subprocess.Popen[str]  # a part of the demo, its log read as text

EMULATOR_PROJECT = "alphastream-demo"  # Beam checks project ids against GCP's pattern
PIPELINE_START_TIMEOUT_SECONDS = 120.0
PIPELINE_READY_LINE = "streaming; stop with Ctrl-C"
KAFKA_PARTITIONS = 2
KAFKA_ADMIN_TIMEOUT_SECONDS = 30.0
# The demo's own event-time settings (not the pipeline's defaults): short bars, little lateness
# and no partial bars, so final bars show up within seconds of starting.
DEMO_INTERVALS = "5s,1m"
DEMO_ALLOWED_LATENESS_SECONDS = 10
DEMO_EARLY_FIRING_SECONDS = 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m live_demo",
        description="Live demo: message bus (Pub/Sub emulator or Kafka) + ingestion service + streaming pipeline, "
                    "bars into PostgreSQL every interval. Ctrl-C stops everything cleanly.",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    parser.add_argument("--bus", choices=("pubsub", "kafka"), default="pubsub",
                        help="Message bus between ingestion and the pipeline: the Pub/Sub emulator (or --project), "
                             "or a local single-node Kafka broker (Beam's Java Kafka reader, run on Prism; needs "
                             "`python -m alphastream.java_jars` once).")
    parser.add_argument("--source", default="synthetic", choices=INGESTION_SOURCES,
                        help="Ingestion source (python -m ingestion --help describes them; keyed feeds read "
                             "their API key from the environment or .env).")
    parser.add_argument("--rate", type=float, default=LIVE_TICKS_PER_SECOND,
                        help="Synthetic source: ticks per second.")
    parser.add_argument("--intervals", default=DEMO_INTERVALS, help="Bar intervals for the pipeline.")
    parser.add_argument("--allowed_lateness", type=int, default=DEMO_ALLOWED_LATENESS_SECONDS,
                        help="Seconds late ticks still update a bar.")
    parser.add_argument("--early_firing_seconds", type=int, default=DEMO_EARLY_FIRING_SECONDS,
                        help="Seconds between live partial bars (0: bars only when their window closes).")
    parser.add_argument("--db_url", default=None,
                        help="PostgreSQL DSN (default: $ALPHASTREAM_DB_URL, else the embedded local database).")
    parser.add_argument("--output", default=DEFAULT_OUTPUT,
                        help="Parquet lake root for the pipeline, local or gs:// (files per 60 s window); the tick "
                             "archive goes there too (ingestion writes it, the pipeline's finaliser makes closed "
                             "bars final from it).")
    parser.add_argument("--project", default=None,
                        help="A real GCP project to use instead of the emulator (topic and subscription "
                             "are created there and deleted at the end; needs Application Default Credentials).")
    parser.add_argument("--max_duration", type=float, default=None,
                        help="Stop after this many seconds (default: until Ctrl-C).")
    parser.add_argument("--ingestion_args", default="",
                        help="Extra flags for python -m ingestion, e.g. \"--symbols BTC-USD --ticks_per_message 50\".")
    return parser


def start_emulator(work_dir: Path) -> tuple[subprocess.Popen[bytes], str]:
    """The Pub/Sub emulator on a free loopback port; returns (process, host:port)."""
    try:
        return start_pubsub_emulator(work_dir, new_session=True)
    except EmulatorError as err:
        raise SystemExit(f"error: {err}\n(or pass --project to use a real project)") from None


def create_topic_and_subscription(project: str) -> tuple[str, str]:
    from google.cloud import pubsub_v1

    name = f"alphastream-live-{uuid.uuid4().hex[:8]}"
    publisher = pubsub_v1.PublisherClient()
    try:
        topic = publisher.create_topic(name=f"projects/{project}/topics/{name}").name
    finally:
        publisher.stop()
    with pubsub_v1.SubscriberClient() as subscriber:
        subscription = subscriber.create_subscription(
            name=f"projects/{project}/subscriptions/{name}", topic=topic).name
    return topic, subscription


def delete_topic_and_subscription(topic: str, subscription: str) -> None:
    from google.cloud import pubsub_v1

    with pubsub_v1.SubscriberClient() as subscriber:
        subscriber.delete_subscription(subscription=subscription)
    publisher = pubsub_v1.PublisherClient()
    try:
        publisher.delete_topic(topic=topic)
    finally:
        publisher.stop()


@dataclass
class Bus:
    """Where the demo's ticks travel: the flags that point each CLI at it, and how to tear it down."""

    description: str
    pipeline_flags: list[str]
    ingestion_flags: list[str]
    env: dict[str, str] = field(default_factory=dict)
    close: Callable[[], None] = lambda: None


def pubsub_bus(args: argparse.Namespace, work_dir: Path) -> Bus:
    """The emulator (unless --project), a topic and a subscription."""
    env: dict[str, str] = {}
    emulator = None
    if args.project:
        project = args.project
    else:
        emulator, host = start_emulator(work_dir)
        project = EMULATOR_PROJECT
        os.environ["PUBSUB_EMULATOR_HOST"] = host  # for our own client calls below
        env["PUBSUB_EMULATOR_HOST"] = host
        log.info("Pub/Sub emulator on %s", host)
    try:
        topic, subscription = create_topic_and_subscription(project)
    except BaseException:
        if emulator is not None:
            stop_process(emulator, "pubsub emulator", signal.SIGTERM)
        raise

    def close() -> None:
        if args.project:
            delete_topic_and_subscription(topic, subscription)
        if emulator is not None:
            stop_process(emulator, "pubsub emulator", signal.SIGTERM)

    return Bus(topic, ["--source", "pubsub", "--subscription", subscription], ["--topic", topic], env, close)


def kafka_bus(work_dir: Path) -> Bus:
    """A local broker, the Java worker pool and the expansion service, and a topic."""
    from confluent_kafka.admin import AdminClient, NewTopic

    try:
        services = start_kafka_services(work_dir, new_session=True)
    except (EmulatorError, JarsMissingError) as err:
        raise SystemExit(f"error: {err}") from None
    topic = f"alphastream-live-{uuid.uuid4().hex[:8]}"
    try:
        admin = AdminClient({"bootstrap.servers": services.bootstrap})
        admin.create_topics([NewTopic(topic, num_partitions=KAFKA_PARTITIONS, replication_factor=1)]
                            )[topic].result(timeout=KAFKA_ADMIN_TIMEOUT_SECONDS)
    except BaseException:
        services.stop()
        raise
    log.info("Kafka broker on %s, expansion service on %s", services.bootstrap, services.expansion_service)
    return Bus(f"kafka topic {topic}",
               ["--source", "kafka", "--kafka_bootstrap_servers", services.bootstrap, "--kafka_topic", topic,
                "--expansion_service", services.expansion_service],
               ["--sink", "kafka", "--bootstrap", services.bootstrap, "--topic", topic], close=services.stop)


def run_demo(args: argparse.Namespace) -> int:
    """Start the bus, the pipeline and the feed; run until Ctrl-C, --max_duration or a part's
    early exit; stop them feed first. Returns 0 when every part exited cleanly."""
    stop = threading.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, lambda *_: stop.set())
    work_dir = Path(tempfile.mkdtemp(prefix="alphastream-live-"))
    bus = None
    children: list[tuple[Child, str]] = []
    try:
        bus = kafka_bus(work_dir) if args.bus == "kafka" else pubsub_bus(args, work_dir)
        env = dict(os.environ, PYTHONUNBUFFERED="1", **bus.env)
        log.info("bus: %s", bus.description)
        ready = threading.Event()
        pipeline = _start_child(pipeline_command(args, bus), "pipeline", env, ready)
        children.append((pipeline, "pipeline"))
        _wait_until_ready(pipeline, ready, stop)
        children.append((_start_child(ingestion_command(args, bus), "ingestion", env), "ingestion"))
        log.info("live: %s -> %s -> pipeline -> database; Ctrl-C to stop", args.source, bus.description)
        _run_until_stopped(children, stop, args.max_duration)
        codes = {name: stop_process(child, name) for child, name in reversed(children)}
        children.clear()
        log.info("stopped: %s", ", ".join(f"{name} exit {code}" for name, code in codes.items()))
        return 0 if all(code == 0 for code in codes.values()) else 1
    finally:
        for child, name in reversed(children):
            stop_process(child, name)
        if bus is not None:
            bus.close()
        shutil.rmtree(work_dir, ignore_errors=True)


def pipeline_command(args: argparse.Namespace, bus: Bus) -> list[str]:
    """``python -m pipeline --streaming`` reading the bus, writing and finalising bars from the lake."""
    command = [sys.executable, "-m", "pipeline", "--streaming", *bus.pipeline_flags,
               "--intervals", args.intervals, "--allowed_lateness", str(args.allowed_lateness),
               "--early_firing_seconds", str(args.early_firing_seconds), "--output", args.output,
               "--archive", args.output]
    if args.db_url:
        command += ["--db_url", args.db_url]
    return command


def ingestion_command(args: argparse.Namespace, bus: Bus) -> list[str]:
    """``python -m ingestion`` publishing to the bus and archiving every tick in the lake."""
    command = [sys.executable, "-m", "ingestion", "--source", args.source, *bus.ingestion_flags,
               "--archive", args.output, *args.ingestion_args.split()]
    if args.source == "synthetic":
        command += ["--rate", str(args.rate)]
    return command


def _start_child(command: list[str], name: str, env: dict[str, str], ready: threading.Event | None = None) -> Child:
    """Start one part with its log lines relayed to ours (``ready`` is set on the pipeline's
    ready line). In its own session: our Ctrl-C must not reach it, the parts stop in order."""
    child = subprocess.Popen(command, env=env, stderr=subprocess.PIPE, text=True, start_new_session=True)
    threading.Thread(target=_relay, args=(child, name, ready), daemon=True).start()
    return child


def _relay(process: Child, name: str, ready: threading.Event | None) -> None:
    """Copy a child's log lines to ours, prefixed with its name; set ``ready`` on the ready line."""
    assert process.stderr is not None  # started with stderr=PIPE
    for line in process.stderr:
        sys.stderr.write(f"[{name}] {line}")
        if ready is not None and PIPELINE_READY_LINE in line:
            ready.set()


def _wait_until_ready(pipeline: Child, ready: threading.Event, stop: threading.Event) -> None:
    """Wait for the pipeline's ready line, so the feed starts only once something reads the bus."""
    deadline = time.monotonic() + PIPELINE_START_TIMEOUT_SECONDS
    while not ready.wait(0.2):
        if pipeline.poll() is not None or stop.is_set() or time.monotonic() > deadline:
            raise SystemExit("error: the streaming pipeline did not start (see its log above)")


def _run_until_stopped(children: list[tuple[Child, str]], stop: threading.Event, max_duration: float | None) -> None:
    """Return on Ctrl-C/SIGTERM, after ``max_duration`` seconds, or when a part exits early."""
    deadline = time.monotonic() + max_duration if max_duration else None
    while not stop.wait(0.5):
        if any(child.poll() is not None for child, _ in children):
            log.error("a component exited early; stopping the others")
            return
        if deadline is not None and time.monotonic() > deadline:
            return


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.bus == "kafka" and args.project:
        parser.error("--project names a GCP project for Pub/Sub; --bus kafka runs a local broker")
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    return run_demo(args)

