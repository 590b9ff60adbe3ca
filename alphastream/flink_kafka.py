"""What Beam's Kafka reader needs to run on the Flink runner here.

On Flink's portable runner KafkaIO's splittable reader runs in the Java worker pool, polls the
topic to its end, and nothing it reads reaches the next stage (docs/kafka-flink.md). KafkaIO's
legacy reader does: an expansion service started with ``--experiments=use_deprecated_read``
expands ``ReadFromKafka`` into a primitive unbounded read, which Flink runs itself, in the job
server's JVM. So that JVM needs KafkaIO and the Kafka client on its classpath: the job server
launcher made here names the Flink job server's jars plus those, taken from the cached Kafka
expansion service bundle. The rest of the expanded transform still runs in the Java worker pool.
"""
from __future__ import annotations

import zipfile
from pathlib import Path

from alphastream.java_jars import (
    FLINK_JOB_SERVER,
    FLINK_JOB_SERVER_MAIN,
    KAFKA_EXPANSION_SERVICE,
    _manifest,
)
from alphastream.local_services import (
    EXPANSION_SERVICE_LOG,
    EXPANSION_SERVICE_START_TIMEOUT_SECONDS,
    Process,
    accepts_connections,
    free_port,
    start_and_wait,
)

# The expansion service option that makes KafkaIO expand into its legacy UnboundedSource read.
LEGACY_READ_EXPERIMENT = "use_deprecated_read"
KAFKA_LAUNCHER_JAR = "launcher-kafka.jar"
# Jars of the expansion service bundle the job server lacks, by artifact name: KafkaIO and the
# Kafka client; Beam's Avro extension and Avro, which deserialising KafkaIO's source loads; and
# the zstd codec, for topics written with zstd (the job server has lz4 and snappy).
KAFKA_READER_ARTIFACTS = ("beam-sdks-java-io-kafka", "kafka-clients", "beam-sdks-java-extensions-avro", "avro",
                          "zstd-jni")
_JVM_FLAGS = ("-Xms128m", "-Xmx512m", "-XX:+UseSerialGC", "-XX:TieredStopAtLevel=1")


def _artifact_jar(lib: Path, artifact: str) -> Path:
    """The one jar of ``artifact`` in ``lib`` (its name is ``<artifact>-<version>.jar``)."""
    jars = [jar for jar in lib.glob(f"{artifact}-*.jar") if jar.name[len(artifact) + 1].isdigit()]
    if len(jars) != 1:
        raise FileNotFoundError(f"expected one {artifact} jar in {lib}, found {[jar.name for jar in jars]}")
    return jars[0]


def flink_kafka_job_server_jar() -> Path:
    """A launcher (manifest only, beside the job server's own) of the cached Flink job server with
    KafkaIO's legacy reader on its classpath, for ``--flink_job_server_jar``. Raises
    JarsMissingError (naming the fetch command) if either bundle is not fetched."""
    FLINK_JOB_SERVER.classpath()  # each raises if its bundle is not fetched
    KAFKA_EXPANSION_SERVICE.classpath()
    relative_kafka_lib = Path("..") / KAFKA_EXPANSION_SERVICE.directory.name / "lib"
    jars = [f"lib/{jar.name}" for jar in sorted(FLINK_JOB_SERVER.lib.glob("*.jar"))]
    jars += [str(relative_kafka_lib / _artifact_jar(KAFKA_EXPANSION_SERVICE.lib, artifact).name)
             for artifact in KAFKA_READER_ARTIFACTS]
    manifest = _manifest(FLINK_JOB_SERVER_MAIN, jars)
    launcher = FLINK_JOB_SERVER.directory / KAFKA_LAUNCHER_JAR
    if launcher.exists():
        try:
            with zipfile.ZipFile(launcher) as archive:
                if archive.read("META-INF/MANIFEST.MF").decode() == manifest:
                    return launcher
        except (zipfile.BadZipFile, KeyError):  # not a launcher we wrote: write it anew
            pass
    partial = launcher.with_suffix(".partial")  # written aside: never a half-written launcher under its name
    with zipfile.ZipFile(partial, "w") as archive:
        archive.writestr("META-INF/MANIFEST.MF", manifest)
    partial.replace(launcher)
    return launcher


def start_legacy_read_expansion_service(work_dir: Path, worker_pool: str,
                                        timeout: float = EXPANSION_SERVICE_START_TIMEOUT_SECONDS,
                                        new_session: bool = False) -> tuple[Process, str]:
    """Beam's Kafka expansion service expanding ``ReadFromKafka`` into KafkaIO's legacy read (for
    Flink), its other Java stages in the worker pool at ``worker_pool`` (host:port). Returns
    (process, "localhost:port") for ``--expansion_service``."""
    classpath = KAFKA_EXPANSION_SERVICE.classpath()
    port = free_port()
    process = start_and_wait(
        ["java", *_JVM_FLAGS, "-cp", classpath, "org.apache.beam.sdk.expansion.service.ExpansionService",
         str(port), "--javaClassLookupAllowlistFile=*", "--defaultEnvironmentType=EXTERNAL",
         f"--defaultEnvironmentConfig={worker_pool}", f"--experiments={LEGACY_READ_EXPERIMENT}"],
        "the Kafka expansion service (legacy read)", work_dir / EXPANSION_SERVICE_LOG,
        lambda: accepts_connections(port), timeout, new_session=new_session)
    return process, f"localhost:{port}"
