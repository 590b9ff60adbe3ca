"""--source kafka: Beam's real cross-language ReadFromKafka, expanded by the real Java expansion
service (the cached 2.73.0 classpath, python -m alphastream.java_jars) against a real broker;
and the one-line errors for what a user can get wrong: no bootstrap servers, no broker, no
topic, no expansion service."""
from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import apache_beam as beam
import pytest
from apache_beam.coders.row_coder import RowCoder
from apache_beam.options.pipeline_options import PipelineOptions
from apache_beam.portability.api import beam_runner_api_pb2, external_transforms_pb2

from alphastream.errors import UserFacingError
from alphastream.local_services import free_port
from pipeline.options import AlphastreamOptions
from pipeline.streaming_sources import (
    KAFKA_ORIGIN_PREFIX,
    KAFKA_POLLING_TIMEOUT_SECONDS,
    ReadTicksFromKafka,
    default_consumer_group,
    kafka_expansion_help,
)

REPO = Path(__file__).resolve().parents[2]
KAFKA_IO_NAME = "KafkaIO.Read"


def run_pipeline_cli(*flags: str, cwd: Path) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "pipeline", "--streaming", "--source", "kafka", "--no_db", *flags],
                          cwd=cwd, capture_output=True, text=True, timeout=120)


def test_flags_configure_the_reader():
    flags = ["--source", "kafka", "--kafka_bootstrap_servers", "b1:9092,b2:9092",
             "--kafka_topic", "ticks", "--expansion_service", "localhost:8097"]
    opts = PipelineOptions(flags).view_as(AlphastreamOptions)
    reader = ReadTicksFromKafka.from_options(opts)
    assert reader.consumer_config["bootstrap.servers"] == "b1:9092,b2:9092"
    # A stable group per topic: a restart resumes from its committed offsets, a first run from the start.
    assert reader.consumer_config["group.id"] == default_consumer_group("ticks") == "alphastream-ticks"
    assert reader.consumer_config["auto.offset.reset"] == "earliest"
    assert reader.consumer_config["enable.auto.commit"] == "true"
    assert (reader.topic, reader.expansion_service) == ("ticks", "localhost:8097")
    assert KAFKA_ORIGIN_PREFIX == "kafka:"


def test_the_reader_ends_its_bundles_after_the_shortest_polling_timeout():
    """What the expansion service is asked for: KafkaIO's reader ends a bundle (and Prism passes its
    records on) once its polls have waited this long; 1 s is the least KafkaIO accepts (whole
    seconds, > 0), Beam's default is 2 s."""
    read = ReadTicksFromKafka(bootstrap_servers="b:9092", topic="ticks").kafka_read()
    payload = external_transforms_pb2.ExternalConfigurationPayload.FromString(read._payload)
    config = RowCoder(payload.schema).decode(payload.payload)
    assert config.consumer_polling_timeout == KAFKA_POLLING_TIMEOUT_SECONDS == 1
    assert config.timestamp_policy == "CreateTime"


@pytest.mark.parametrize("servers, topic", [(None, "ticks"), ("b:9092", None)])
def test_missing_flags_are_named(servers, topic):
    with pytest.raises(UserFacingError, match="--kafka_bootstrap_servers host:port and --kafka_topic"):
        ReadTicksFromKafka(bootstrap_servers=servers, topic=topic)


def test_an_unreachable_broker_is_one_line_from_the_cli(tmp_path):
    servers = f"127.0.0.1:{free_port()}"
    run = run_pipeline_cli("--kafka_bootstrap_servers", servers, "--kafka_topic", "ticks",
                           "--output", str(tmp_path / "lake"), cwd=REPO)
    assert run.returncode == 2, run.stderr[-3000:]
    assert f"error: no Kafka broker answered at --kafka_bootstrap_servers {servers}" in run.stderr
    assert "Traceback" not in run.stderr


def test_a_missing_topic_is_named(kafka_broker):
    reader = ReadTicksFromKafka(bootstrap_servers=kafka_broker.bootstrap, topic="no-such-topic")
    with pytest.raises(UserFacingError, match="Kafka topic 'no-such-topic' .* does not exist"):
        reader.check_broker()


def test_without_a_reachable_expansion_service_the_cli_says_what_to_do(kafka_broker, tmp_path):
    topic = kafka_broker.create_topic("noexp")
    port = free_port()
    run = run_pipeline_cli("--kafka_bootstrap_servers", kafka_broker.bootstrap, "--kafka_topic", topic,
                           "--expansion_service", f"localhost:{port}", "--output", str(tmp_path / "lake"), cwd=REPO)
    assert run.returncode == 2, run.stderr[-3000:]
    assert f"the expansion service at --expansion_service localhost:{port} did not answer" in run.stderr
    assert "python -m alphastream.java_jars" in run.stderr
    assert "Traceback" not in run.stderr


def test_the_real_expansion_service_expands_read_from_kafka(kafka_broker, kafka_expansion_service, java_worker_pool):
    """Java 2.73.0 expansion for the pinned Python SDK (2.77.0): the graph gains KafkaIO's
    Java transforms, configured with our topic and broker, to run in the local Java worker pool."""
    topic = kafka_broker.create_topic("expand")
    pipeline = beam.Pipeline()
    _ = pipeline | ReadTicksFromKafka(bootstrap_servers=kafka_broker.bootstrap, topic=topic,
                                      expansion_service=kafka_expansion_service)
    proto = pipeline.to_runner_api()
    names = [t.unique_name for t in proto.components.transforms.values()]
    assert any(KAFKA_IO_NAME in name for name in names), names
    environments = {env.urn: env.payload for env in proto.components.environments.values()}
    assert "beam:env:docker:v1" not in environments  # no Docker here: Beam's Java image cannot run
    external = beam_runner_api_pb2.ExternalPayload.FromString(environments["beam:env:external:v1"])
    assert external.endpoint.url == java_worker_pool
    payloads = b"".join(t.spec.payload for t in proto.components.transforms.values())
    assert topic.encode() in payloads and kafka_broker.bootstrap.encode() in payloads


def test_the_default_expansion_service_message_explains_the_jar_download():
    message = kafka_expansion_help(None, RuntimeError("Unable to fetch remote job server jar"))
    assert "Maven Central" in message and "--expansion_service localhost:8097" in message
    assert "python -m alphastream.java_jars" in message


KAFKA_STREAM_FLAGS = ["--streaming", "--source", "kafka", "--kafka_bootstrap_servers", "b:9092", "--kafka_topic", "t"]


def test_a_kafka_stream_runs_on_prism_built_by_the_fetch_command():
    from apache_beam.options.pipeline_options import PrismRunnerOptions
    from apache_beam.runners.portability.prism_runner import PrismRunner

    from alphastream.java_jars import prism_path
    from pipeline.runners import local_runner

    options = PipelineOptions(KAFKA_STREAM_FLAGS)
    assert isinstance(local_runner(options), PrismRunner)
    assert options.view_as(PrismRunnerOptions).prism_location == str(prism_path())
    given = PipelineOptions([*KAFKA_STREAM_FLAGS, "--prism_location", "/opt/prism"])
    local_runner(given)
    assert given.view_as(PrismRunnerOptions).prism_location == "/opt/prism"  # a user's binary is kept


def test_without_prism_the_kafka_stream_names_the_fetch_command(monkeypatch, tmp_path):
    import alphastream.java_jars
    from pipeline.runners import local_runner

    monkeypatch.setattr(alphastream.java_jars, "prism_path", lambda: tmp_path / "prism")  # an empty cache
    with pytest.raises(UserFacingError, match="Prism.*python -m alphastream.java_jars"):
        local_runner(PipelineOptions(KAFKA_STREAM_FLAGS))


def test_the_consumer_group_flag_reaches_the_source():
    flags = ["--kafka_bootstrap_servers", "127.0.0.1:1", "--kafka_topic", "ticks"]
    named = ReadTicksFromKafka.from_options(PipelineOptions(flags + ["--kafka_consumer_group", "desk-7"])
                                            .view_as(AlphastreamOptions))
    default = ReadTicksFromKafka.from_options(PipelineOptions(flags).view_as(AlphastreamOptions))
    assert (named.consumer_group, named.consumer_config["group.id"]) == ("desk-7", "desk-7")
    assert default.consumer_group == default_consumer_group("ticks")


def test_kafka_cluster_ids_never_look_like_an_option():
    """The storage tool parses `-t ID`; an id starting with '-' failed the broker's start (seen in CI)."""
    from alphastream.local_services import _kafka_cluster_id

    ids = [_kafka_cluster_id() for _ in range(5_000)]  # ~1 in 64 random ids starts with '-'
    assert not [i for i in ids if i.startswith("-")] and {len(i) for i in ids} == {22}
