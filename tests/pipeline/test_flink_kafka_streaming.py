"""Kafka on Flink end to end, with real processes: ``python -m ingestion --sink kafka`` (synthetic
feed, tick archive) -> a real KRaft broker -> ``python -m pipeline --runner FlinkRunner --streaming
--source kafka`` (an embedded Flink 1.19 in the assembled job server; KafkaIO's legacy reader in
that JVM, the rest of the Kafka transform in the Java worker pool, the Python steps in LOOPBACK)
-> PostgreSQL.

The ground truth is the feed's tick archive: the streaming bars must equal the batch bars of the
same ticks (``pipeline.repair.recompute``). Why the legacy reader: ``alphastream.flink_kafka``.
"""
from __future__ import annotations

import signal
import time
from dataclasses import dataclass

import pandas as pd
import pytest

from alphastream.records import BAR_FIELDS
from pipeline.repair import recompute
from tests.fixtures.live_stack import (
    INTERVALS,
    Child,
    LiveStack,
    feed_outcome,
    stored_bars,
    summary_of_difference,
    wait_for_signal_exit,
)
from tests.fixtures.reference import assert_same_bars

pytestmark = pytest.mark.slow

RATE = 500
TICKS = 2_500  # 5 s of feed
PARTITIONS = 2  # fewer than the feed's symbols: a partition may sit idle while the other moves on
# After the feed ends: the last 15 s window closes, plus the 5 s lateness, plus slack for Flink,
# three JVMs and a loaded 2-core machine.
SETTLE_SECONDS = 60
FEED_TIMEOUT_SECONDS = 60
STOP_TIMEOUT_SECONDS = 20.0


@dataclass
class FlinkKafkaStack(LiveStack):
    """LiveStack on a Kafka topic, the pipeline on the FlinkRunner."""

    broker: object = None  # tests.fixtures.kafka.KafkaBroker
    expansion_service: str = ""

    def __post_init__(self) -> None:
        self.topic = self.broker.create_topic("flink", partitions=PARTITIONS)
        self.subscription = None
        self.db_url = self.pg_cluster.new_database()
        self.archive = self.work_dir / "archive"
        self.lake = self.work_dir / "lake"
        self.started_us = time.time_ns() // 1_000

    def pipeline_argv(self) -> list[str]:
        argv = super().pipeline_argv()
        source = argv.index("--source")
        argv[source + 1:source + 4] = ["kafka", "--kafka_bootstrap_servers", self.broker.bootstrap,
                                       "--kafka_topic", self.topic, "--expansion_service", self.expansion_service]
        archive = argv.index("--archive")  # no finaliser: the table holds the streaming panes alone
        del argv[archive:archive + 2]
        return [*argv, "--runner", "FlinkRunner"]  # the job server with KafkaIO's legacy reader: pipeline.runners

    def start_feed(self, rate: int, ticks: int) -> Child:
        child = Child.start("ingestion", [
            "-m", "ingestion", "--source", "synthetic", "--rate", str(rate), "--num_symbols", "5",
            "--max_ticks", str(ticks), "--sink", "kafka", "--bootstrap", self.broker.bootstrap,
            "--topic", self.topic, "--archive", str(self.archive)])
        self.children.append(child)
        return child

    def batch_bars(self) -> pd.DataFrame:
        """The batch bars of every archived tick (what ``python -m pipeline repair`` would write)."""
        end_us = time.time_ns() // 1_000
        result = recompute(str(self.archive), self.started_us - 3_600_000_000, end_us, INTERVALS, now_us=end_us)
        assert result.ticks_read == TICKS, result.line()  # the archive holds every tick the feed published
        frame = pd.DataFrame(result.bars, columns=list(BAR_FIELDS))
        return frame.sort_values(["interval", "symbol", "bucket_start_us"]).reset_index(drop=True)


@pytest.fixture
def flink_kafka_stack(kafka_broker, legacy_read_expansion_service, pg_cluster, tmp_path):
    stack = FlinkKafkaStack(None, pg_cluster, tmp_path, broker=kafka_broker,
                            expansion_service=legacy_read_expansion_service)
    yield stack
    for child in stack.children:  # stopped, not killed: the pipeline's exit stops the Flink job server Beam started
        if child.name == "pipeline" and child.process.poll() is None:
            wait_for_signal_exit(child, signal.SIGINT, timeout=STOP_TIMEOUT_SECONDS)
    stack.close()


def test_streaming_bars_from_kafka_on_flink_equal_the_batch_bars_of_the_same_ticks(flink_kafka_stack):
    stack = flink_kafka_stack
    pipeline = stack.start_pipeline()
    feed = stack.start_feed(RATE, TICKS)
    assert feed.wait(FEED_TIMEOUT_SECONDS) == 0, feed.log
    outcome = feed_outcome(feed)
    assert outcome["published"] == TICKS and outcome["failed"] == 0, outcome
    expected = stack.batch_bars()
    deadline = time.monotonic() + SETTLE_SECONDS
    while True:
        assert pipeline.process.poll() is None, pipeline.log[-4000:]  # a failed job writes no more bars
        stored = stored_bars(stack.db_url)
        try:
            assert_same_bars(stored, expected)
            break
        except AssertionError as err:
            if time.monotonic() > deadline:
                raise AssertionError(f"{err}\n{summary_of_difference(stored, expected)}\n"
                                     f"{pipeline.log[-4000:]}") from None
        time.sleep(1)
