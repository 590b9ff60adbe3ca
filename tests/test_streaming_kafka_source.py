"""--source kafka: Beam's real cross-language ReadFromKafka. No Kafka broker or Java expansion
service runs here, so what is tested is what a user without one sees: a clear error naming
--expansion_service and what to do, from the real expansion attempt (no fake broker)."""
from __future__ import annotations

import socket
import subprocess
import sys
from pathlib import Path

import pytest
from apache_beam.options.pipeline_options import PipelineOptions

from pipeline.options import AlphastreamOptions
from pipeline.streaming_sources import KAFKA_ORIGIN_PREFIX, ReadTicksFromKafka, kafka_expansion_help

REPO = Path(__file__).resolve().parents[1]


def closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]  # nothing listens once the socket is closed


def test_flags_configure_the_reader():
    opts = PipelineOptions(["--source", "kafka", "--kafka_bootstrap_servers", "b1:9092,b2:9092",
                            "--kafka_topic", "ticks", "--expansion_service", "localhost:8097"]).view_as(AlphastreamOptions)
    reader = ReadTicksFromKafka.from_options(opts)
    assert reader.consumer_config == {"bootstrap.servers": "b1:9092,b2:9092"}
    assert (reader.topic, reader.expansion_service) == ("ticks", "localhost:8097")
    assert KAFKA_ORIGIN_PREFIX == "kafka:"


@pytest.mark.parametrize("servers, topic", [(None, "ticks"), ("b:9092", None)])
def test_missing_flags_are_named(servers, topic):
    with pytest.raises(ValueError, match="--kafka_bootstrap_servers host:port and --kafka_topic"):
        ReadTicksFromKafka(bootstrap_servers=servers, topic=topic)


def test_without_a_reachable_expansion_service_the_cli_says_what_to_do(tmp_path):
    port = closed_port()
    run = subprocess.run(
        [sys.executable, "-m", "pipeline", "--streaming", "--source", "kafka", "--kafka_bootstrap_servers",
         "127.0.0.1:9092", "--kafka_topic", "ticks", "--expansion_service", f"localhost:{port}", "--no_db",
         "--output", str(tmp_path / "lake")],
        cwd=REPO, capture_output=True, text=True, timeout=120)
    assert run.returncode == 2, run.stderr[-3000:]
    assert f"the expansion service at --expansion_service localhost:{port} did not answer" in run.stderr
    assert "java -jar beam-sdks-java-io-expansion-service" in run.stderr
    assert "Traceback" not in run.stderr


def test_the_default_expansion_service_message_explains_the_jar_download():
    message = kafka_expansion_help(None, RuntimeError("Unable to fetch remote job server jar"))
    assert "Maven Central" in message and "--expansion_service localhost:8097" in message
    assert "~/.apache_beam/cache/jars/" in message
