"""Local stand-ins for cloud services: Google's Pub/Sub emulator and a single-node Kafka broker
(KRaft) on loopback ports, Beam's Kafka expansion service and the Java worker pool that runs
the Kafka reader, and stopping the child processes that run them.

Shared by the live demo (``live_demo.demo``), the benchmarks and the test fixtures, so
there is one way to start each server and wait until it answers, and one way to stop a child.
"""
from __future__ import annotations

import base64
import json
import logging
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
import uuid
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from alphastream.java_jars import KAFKA_BROKER, KAFKA_EXPANSION_SERVICE, flink_job_server_jar

PUBSUB_EMULATOR = Path("/usr/lib/google-cloud-sdk/platform/pubsub-emulator/bin/cloud-pubsub-emulator")
PUBSUB_EMULATOR_LOG = "pubsub-emulator.log"
EMULATOR_START_TIMEOUT_SECONDS = 60.0
STOP_TIMEOUT_SECONDS = 30.0
_POLL_SECONDS = 0.1
_LOG_TAIL_CHARS = 3000


log = logging.getLogger(__name__)

Process = subprocess.Popen[bytes]


class EmulatorError(RuntimeError):
    """The emulator (or local server) is not installed, or did not start."""


def _parent_pid(proc_dir: Path) -> int | None:
    try:
        stat = (proc_dir / "stat").read_text()
    except OSError:  # the process is gone
        return None
    return int(stat.rsplit(")", 1)[1].split()[1])  # the field after the (command name) and state


def child_pids(pid: int) -> list[int]:
    """The processes whose parent is ``pid``, running or not yet reaped (from /proc)."""
    return [int(d.name) for d in Path("/proc").iterdir() if d.name.isdigit() and _parent_pid(d) == pid]


def free_port() -> int:
    """A TCP port free on 127.0.0.1 right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def accepts_connections(port: int) -> bool:
    """Whether something listens on 127.0.0.1:``port``."""
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=1):
            return True
    except OSError:
        return False


def answers(url: str, body: bytes | None = None) -> bool:
    """Whether ``GET url`` succeeds (and, given ``body``, answers exactly that, blanks stripped)."""
    try:
        with urllib.request.urlopen(url, timeout=1) as response:
            return body is None or bytes(response.read()).strip() == body
    except (urllib.error.URLError, OSError):
        return False


def log_contains(log_path: Path, line: str) -> Callable[[], bool]:
    """A readiness check: the server has written ``line`` to its log."""
    return lambda: line in log_path.read_text(errors="replace")


def start_and_wait(command: Sequence[str], name: str, log_path: Path, ready: Callable[[], bool], timeout: float,
                   *, new_session: bool = False, env: Mapping[str, str] | None = None) -> Process:
    """Start ``command`` (stdout and stderr to ``log_path``, working directory its folder) and poll
    ``ready()`` until true. If the process exits or ``timeout`` seconds pass first, stop it and
    raise EmulatorError naming ``name`` with the tail of its log. ``new_session`` keeps a
    terminal's Ctrl-C from reaching the child, so its owner stops it in order."""
    with log_path.open("wb") as log_file:
        process = subprocess.Popen(list(command), stdout=log_file, stderr=subprocess.STDOUT, cwd=log_path.parent,
                                   start_new_session=new_session, env=None if env is None else dict(env))
    deadline = time.monotonic() + timeout
    while not ready():
        if process.poll() is not None or time.monotonic() > deadline:
            if process.poll() is None:
                process.kill()
                process.wait()
            raise EmulatorError(f"{name} did not become ready within {timeout:.0f} s (exit code "
                                f"{process.returncode}); log {log_path}:\n"
                                f"{log_path.read_text(errors='replace')[-_LOG_TAIL_CHARS:]}")
        time.sleep(_POLL_SECONDS)
    return process


def stop_process(process: subprocess.Popen[Any], name: str, sig: int = signal.SIGINT,
                 timeout: float = STOP_TIMEOUT_SECONDS) -> int:
    """Signal one child we started and wait for it (kill it if it ignores the signal)."""
    if process.poll() is None:
        log.info("stopping %s (pid %d)...", name, process.pid)
        process.send_signal(sig)
        try:
            process.wait(timeout)
        except subprocess.TimeoutExpired:
            log.warning("%s did not stop within %.0f s: killing it", name, timeout)
            process.kill()
            process.wait()
    return process.returncode


def pubsub_emulator_installed() -> bool:
    return PUBSUB_EMULATOR.exists() and shutil.which("java") is not None


def start_pubsub_emulator(work_dir: Path, timeout: float = EMULATOR_START_TIMEOUT_SECONDS,
                          new_session: bool = False) -> tuple[Process, str]:
    """Start the emulator on a free loopback port, logging to ``work_dir``; wait until
    ``GET /`` answers ``Ok``. Returns (process, "127.0.0.1:port"). The launcher script execs
    java, so the process's pid is the server's: terminating it stops the emulator."""
    if not pubsub_emulator_installed():
        raise EmulatorError(f"the Pub/Sub emulator needs {PUBSUB_EMULATOR} and java "
                            "(Debian: apt-get install google-cloud-cli-pubsub-emulator)")
    port = free_port()
    process = start_and_wait([str(PUBSUB_EMULATOR), "--host=127.0.0.1", f"--port={port}"],
                             f"the Pub/Sub emulator on port {port}", work_dir / PUBSUB_EMULATOR_LOG,
                             lambda: answers(f"http://127.0.0.1:{port}/", b"Ok"), timeout, new_session=new_session)
    return process, f"127.0.0.1:{port}"


KAFKA_START_TIMEOUT_SECONDS = 90.0
KAFKA_LOG = "kafka.log"
KAFKA_READY_LINE = "Kafka Server started"
# One node, one replica: the internal topics' defaults (3 replicas) cannot be met by one broker.
_KAFKA_SERVER_PROPERTIES = """\
process.roles=broker,controller
node.id=1
controller.quorum.voters=1@127.0.0.1:{controller_port}
listeners=PLAINTEXT://127.0.0.1:{port},CONTROLLER://127.0.0.1:{controller_port}
advertised.listeners=PLAINTEXT://127.0.0.1:{port}
controller.listener.names=CONTROLLER
inter.broker.listener.name=PLAINTEXT
listener.security.protocol.map=PLAINTEXT:PLAINTEXT,CONTROLLER:PLAINTEXT
log.dirs={data_dir}
num.partitions=1
offsets.topic.replication.factor=1
offsets.topic.num.partitions=1
transaction.state.log.replication.factor=1
transaction.state.log.min.isr=1
share.coordinator.state.topic.replication.factor=1
group.initial.rebalance.delay.ms=0
"""
_LOG4J2_PROPERTIES = """\
rootLogger.level = INFO
rootLogger.appenderRef.stdout.ref = STDOUT
appender.stdout.type = Console
appender.stdout.name = STDOUT
appender.stdout.layout.type = PatternLayout
appender.stdout.layout.pattern = [%d] %p %m (%c)%n
logger.kafka.name = kafka
logger.kafka.level = INFO
logger.apache.name = org.apache.kafka
logger.apache.level = WARN
"""
_JVM_FLAGS = ("-Xms128m", "-Xmx512m", "-XX:+UseSerialGC", "-XX:TieredStopAtLevel=1")
# The worker pool runs the Kafka reader itself: full JIT, and room for its read buffers.
_WORKER_JVM_FLAGS = ("-Xms256m", "-Xmx1g", "-XX:+UseSerialGC")


def _kafka_cluster_id() -> str:
    """A random id in Kafka's Uuid format. Like Kafka's own Uuid.randomUuid, never one starting
    with '-': the storage tool's argument parser would take it for an option."""
    while True:
        cluster_id = base64.urlsafe_b64encode(uuid.uuid4().bytes).rstrip(b"=").decode()
        if not cluster_id.startswith("-"):
            return cluster_id


def start_kafka_broker(work_dir: Path, timeout: float = KAFKA_START_TIMEOUT_SECONDS,
                       new_session: bool = False) -> tuple[Process, str]:
    """A single-node KRaft Kafka broker (broker and controller in one JVM) on a free loopback
    port, data and log under ``work_dir``; waits until it logs that it started. Returns
    (process, "127.0.0.1:port"). Raises JarsMissingError (naming the fetch command) if the
    broker's jars are not cached."""
    classpath = KAFKA_BROKER.classpath()
    if shutil.which("java") is None:
        raise EmulatorError("the Kafka broker needs java (Debian: apt-get install openjdk-17-jre-headless)")
    port, controller_port = free_port(), free_port()
    config = work_dir / "kafka-server.properties"
    config.write_text(_KAFKA_SERVER_PROPERTIES.format(port=port, controller_port=controller_port,
                                                      data_dir=work_dir / "kafka-data"))
    log4j = work_dir / "kafka-log4j2.properties"
    log4j.write_text(_LOG4J2_PROPERTIES)
    java = ["java", *_JVM_FLAGS, f"-Dlog4j2.configurationFile={log4j}", "-cp", classpath]
    formatted = subprocess.run([*java, "kafka.tools.StorageTool", "format", "-t", _kafka_cluster_id(),
                                "-c", str(config)], capture_output=True, text=True, timeout=timeout)
    if formatted.returncode != 0:
        raise EmulatorError(f"formatting the Kafka storage in {work_dir} failed:\n"
                            f"{(formatted.stdout + formatted.stderr)[-_LOG_TAIL_CHARS:]}")
    log_path = work_dir / KAFKA_LOG
    process = start_and_wait([*java, "kafka.Kafka", str(config)], "the Kafka broker", log_path,
                             log_contains(log_path, KAFKA_READY_LINE), timeout, new_session=new_session)
    return process, f"127.0.0.1:{port}"


EXPANSION_SERVICE_START_TIMEOUT_SECONDS = 60.0
EXPANSION_SERVICE_LOG = "expansion-service.log"
JAVA_WORKER_POOL_LOG = "java-worker-pool.log"
PYTHON_WORKER_POOL_START_TIMEOUT_SECONDS = 60.0
PYTHON_WORKER_POOL_LOG = "python-worker-pool.log"
PYTHON_WORKER_STARTED = "Starting worker with command"  # what the pool logs for each SDK worker it starts
_REPO = Path(__file__).resolve().parents[1]


def start_python_worker_pool(work_dir: Path, timeout: float = PYTHON_WORKER_POOL_START_TIMEOUT_SECONDS,
                             new_session: bool = False) -> tuple[Process, int]:
    """Beam's Python SDK worker pool on a free loopback port, for ``--environment_type EXTERNAL
    --environment_config localhost:PORT``: it starts one SDK worker process per request (per
    Flink task slot), where LOOPBACK keeps every Python step in the launching process. Logs to
    ``work_dir/PYTHON_WORKER_POOL_LOG``. Stop it with SIGTERM: after SIGINT it can hang on its
    gRPC threads. Returns (process, port)."""
    port = free_port()
    # The pool starts each worker as `python -c ...` from PATH: it must be this interpreter, with
    # the pipeline's modules importable.
    env = {**os.environ, "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}",
           "PYTHONPATH": str(_REPO)}
    process = start_and_wait(
        [sys.executable, "-m", "apache_beam.runners.worker.worker_pool_main", "--service_port", str(port)],
        "the Python worker pool", work_dir / PYTHON_WORKER_POOL_LOG, lambda: accepts_connections(port), timeout,
        new_session=new_session, env=env)
    return process, port


FLINK_JOB_SERVER_LOG = "flink-job-server.log"
FLINK_JOB_SERVER_START_TIMEOUT_SECONDS = 90.0


def start_flink_job_server(work_dir: Path, flink_master: str = "[local]",
                           timeout: float = FLINK_JOB_SERVER_START_TIMEOUT_SECONDS,
                           new_session: bool = False, jvm_flags: Sequence[str] = ()) -> tuple[Process, str]:
    """The Flink job server ``python -m alphastream.java_jars`` assembles, started once and kept
    running, for ``--runner FlinkRunner --job_endpoint localhost:PORT``: each job then skips the
    job server's JVM start (with ``[local]``, the server still starts an embedded Flink per job).
    Beam's FlinkRunner otherwise starts one per pipeline run. ``jvm_flags`` go before ``-jar``
    (e.g. pipeline.runners.EMBEDDED_BATCH_JVM_FLAGS for a server that runs batch jobs). Logs to
    ``work_dir/FLINK_JOB_SERVER_LOG``; returns (process, "localhost:port")."""
    port = free_port()
    command = ["java", *jvm_flags, "-jar", str(flink_job_server_jar()), "--flink-master", flink_master,
               "--job-port", str(port), "--artifact-port", "0", "--expansion-port", "0",
               "--artifacts-dir", str(work_dir / "artifacts")]
    process = start_and_wait(command, "the Flink job server", work_dir / FLINK_JOB_SERVER_LOG,
                             lambda: accepts_connections(port), timeout, new_session=new_session)
    return process, f"localhost:{port}"


def start_java_worker_pool(work_dir: Path, timeout: float = EXPANSION_SERVICE_START_TIMEOUT_SECONDS,
                           new_session: bool = False) -> tuple[Process, str]:
    """Beam's Java SDK worker pool (``ExternalWorkerService``) on the expansion service's
    classpath, on a free loopback port: the runner asks it to start a Java SDK harness for the
    Kafka reader's stage, in place of Beam's Java container (no Docker here). Returns
    (process, "localhost:port")."""
    classpath = KAFKA_EXPANSION_SERVICE.classpath()
    port = free_port()
    # The pool reads its own options (where to listen) from this variable, as Beam's container boot does.
    options = json.dumps({"options": {"environmentOptions": [f"external_service_address=localhost:{port}"]}})
    process = start_and_wait(
        ["java", *_WORKER_JVM_FLAGS, "-cp", classpath, "org.apache.beam.fn.harness.ExternalWorkerService"],
        "the Java SDK worker pool", work_dir / JAVA_WORKER_POOL_LOG, lambda: accepts_connections(port), timeout,
        new_session=new_session, env={**os.environ, "PIPELINE_OPTIONS": options})
    return process, f"localhost:{port}"


def start_kafka_expansion_service(work_dir: Path, timeout: float = EXPANSION_SERVICE_START_TIMEOUT_SECONDS,
                                  new_session: bool = False, worker_pool: str | None = None,
                                  experiments: Sequence[str] = ()) -> tuple[Process, str]:
    """Beam's Java expansion service with KafkaIO on its classpath, on a free loopback port.
    With ``worker_pool`` (host:port of ``start_java_worker_pool``) the transforms it expands
    run their Java stages there (an EXTERNAL environment); without it, in Beam's Java Docker
    image. ``experiments`` are Beam experiments for the expansion (``use_deprecated_read`` for
    Flink: alphastream.flink_kafka). Returns (process, "localhost:port") for ``--expansion_service``."""
    classpath = KAFKA_EXPANSION_SERVICE.classpath()
    port = free_port()
    environment = ([] if worker_pool is None else
                   ["--defaultEnvironmentType=EXTERNAL", f"--defaultEnvironmentConfig={worker_pool}"])
    process = start_and_wait(
        ["java", *_JVM_FLAGS, "-cp", classpath, "org.apache.beam.sdk.expansion.service.ExpansionService",
         str(port), "--javaClassLookupAllowlistFile=*", *environment,
         *(f"--experiments={experiment}" for experiment in experiments)],
        "the Kafka expansion service", work_dir / EXPANSION_SERVICE_LOG, lambda: accepts_connections(port), timeout,
        new_session=new_session)
    return process, f"localhost:{port}"


@dataclass
class KafkaServices:
    """A broker, a Java worker pool and an expansion service whose Kafka reads run in that pool:
    everything ``python -m pipeline --source kafka`` needs on one machine."""

    bootstrap: str
    expansion_service: str
    processes: list[tuple[Process, str]]
    worker_pool: str = ""  # host:port of the Java worker pool

    def add_expansion_service(self, work_dir: Path, experiments: Sequence[str]) -> str:
        """Another expansion service on the same worker pool, with other ``experiments`` (Flink's
        legacy Kafka read beside Prism's splittable one), stopped with the rest; its address.
        ``work_dir`` must be another folder than the first one's (each logs to EXPANSION_SERVICE_LOG)."""
        process, address = start_kafka_expansion_service(work_dir, worker_pool=self.worker_pool,
                                                         experiments=experiments)
        self.processes.append((process, f"the Kafka expansion service {' '.join(experiments)}".rstrip()))
        return address

    def stop(self) -> None:
        for process, name in reversed(self.processes):
            stop_process(process, name, signal.SIGTERM)


def start_kafka_services(work_dir: Path, new_session: bool = False, experiments: Sequence[str] = ()) -> KafkaServices:
    """Start the broker, the worker pool and the expansion service (stopping what started if one
    fails); ``experiments``: see start_kafka_expansion_service."""
    processes: list[tuple[Process, str]] = []
    try:
        broker, bootstrap = start_kafka_broker(work_dir, new_session=new_session)
        processes.append((broker, "the Kafka broker"))
        pool, pool_address = start_java_worker_pool(work_dir, new_session=new_session)
        processes.append((pool, "the Java SDK worker pool"))
        expansion, expansion_address = start_kafka_expansion_service(work_dir, new_session=new_session,
                                                                     worker_pool=pool_address,
                                                                     experiments=experiments)
        processes.append((expansion, "the Kafka expansion service"))
    except BaseException:
        KafkaServices("", "", processes).stop()
        raise
    return KafkaServices(bootstrap, expansion_address, processes, pool_address)
