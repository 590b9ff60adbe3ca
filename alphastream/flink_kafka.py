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

from pathlib import Path

from alphastream.java_jars import KAFKA_EXPANSION_SERVICE, flink_job_server_jar

# The expansion service option that makes KafkaIO expand into its legacy UnboundedSource read
# (alphastream.local_services.start_kafka_services(experiments=...)).
LEGACY_READ_EXPERIMENT = "use_deprecated_read"
KAFKA_LAUNCHER_JAR = "launcher-kafka.jar"
# Jars of the expansion service bundle the job server lacks, by artifact name: KafkaIO and the
# Kafka client; Beam's Avro extension and Avro, which deserialising KafkaIO's source loads; and
# the zstd codec, for topics written with zstd (the job server has lz4 and snappy).
KAFKA_READER_ARTIFACTS = ("beam-sdks-java-io-kafka", "kafka-clients", "beam-sdks-java-extensions-avro", "avro",
                          "zstd-jni")


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
    KAFKA_EXPANSION_SERVICE.classpath()  # raises if not fetched
    reader = [_artifact_jar(KAFKA_EXPANSION_SERVICE.lib, artifact) for artifact in KAFKA_READER_ARTIFACTS]
    return flink_job_server_jar(extra_jars=reader, name=KAFKA_LAUNCHER_JAR)
