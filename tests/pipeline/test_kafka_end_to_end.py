"""Kafka end to end, with real processes: ``python -m ingestion --sink kafka`` (synthetic feed,
tick archive) -> a real KRaft broker -> ``python -m pipeline --streaming --source kafka`` (Beam's
Java ReadFromKafka on Prism, its Java stage in the local worker pool) -> PostgreSQL.

The ground truth is the feed's tick archive: the streaming bars must equal the batch bars of the
same ticks (``pipeline.repair.recompute``), and after a kill and a restart with the same consumer
group the table must equal them again, every bar final (tests/fixtures/live_stack.py).
"""
from __future__ import annotations

import time
from dataclasses import dataclass

import pandas as pd
import pytest

from alphastream.records import BAR_FIELDS
from pipeline.repair import recompute
from pipeline.streaming_sources import default_consumer_group
from tests.fixtures.live_stack import INTERVALS, Child, LiveStack, feed_outcome, stored_bars, summary_of_difference
from tests.fixtures.reference import assert_same_bars

pytestmark = pytest.mark.slow

RATE = 500
TICKS = 5_000  # 10 s of feed
PARTITIONS = 2  # fewer than the feed's symbols: a partition may sit idle while the other moves on
KILL_AFTER_SECONDS = 5
DOWN_SECONDS = 3
# After the feed ends: the last 15 s window closes, plus the 5 s lateness, plus a finaliser pass,
# plus slack for Prism, two JVMs and a loaded 2-core machine.
SETTLE_SECONDS = 90
FEED_TIMEOUT_SECONDS = 90


@dataclass
class KafkaLiveStack(LiveStack):
    """LiveStack on a Kafka topic instead of a Pub/Sub subscription."""

    broker: object = None  # tests.fixtures.kafka.KafkaBroker
    expansion_service: str = ""
    with_archive: bool = True

    def __post_init__(self) -> None:
        self.topic = self.broker.create_topic("e2e", partitions=PARTITIONS)
        self.subscription = None  # replaced by the Kafka flags in pipeline_argv
        self.db_url = self.pg_cluster.new_database()
        self.archive = self.work_dir / "archive"
        self.lake = self.work_dir / "lake"
        self.started_us = time.time_ns() // 1_000

    def pipeline_argv(self) -> list[str]:
        argv = super().pipeline_argv()
        source = argv.index("--source")
        argv[source + 1:source + 4] = ["kafka", "--kafka_bootstrap_servers", self.broker.bootstrap,
                                       "--kafka_topic", self.topic, "--expansion_service", self.expansion_service]
        if not self.with_archive:
            archive = argv.index("--archive")
            del argv[archive:archive + 2]
        return argv

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
def kafka_stack(kafka_broker, kafka_expansion_service, pg_cluster, tmp_path):
    stacks: list[KafkaLiveStack] = []

    def make(with_archive: bool) -> KafkaLiveStack:
        stack = KafkaLiveStack(None, pg_cluster, tmp_path, broker=kafka_broker,
                               expansion_service=kafka_expansion_service, with_archive=with_archive)
        stacks.append(stack)
        return stack

    yield make
    for stack in stacks:
        stack.close()


def finish_feed(feed: Child) -> None:
    assert feed.wait(FEED_TIMEOUT_SECONDS) == 0, feed.log
    outcome = feed_outcome(feed)
    assert outcome["published"] == TICKS and outcome["failed"] == 0, outcome


def test_streaming_bars_from_kafka_equal_the_batch_bars_of_the_same_ticks(kafka_stack):
    """No archive finaliser: the bars in the table are the streaming panes alone."""
    stack = kafka_stack(with_archive=False)
    pipeline = stack.start_pipeline()
    feed = stack.start_feed(RATE, TICKS)
    finish_feed(feed)
    expected = stack.batch_bars()
    deadline = time.monotonic() + SETTLE_SECONDS
    while True:
        stored = stored_bars(stack.db_url)
        try:
            assert_same_bars(stored, expected)
            break
        except AssertionError as err:
            if time.monotonic() > deadline:
                raise AssertionError(f"{err}\n{summary_of_difference(stored, expected)}\n"
                                     f"{pipeline.log[-4000:]}") from None
        time.sleep(1)
    assert pipeline.process.poll() is None, pipeline.log


def test_pipeline_killed_and_restarted_with_the_same_group_leaves_every_bar_exact(kafka_stack):
    stack = kafka_stack(with_archive=True)
    pipeline = stack.start_pipeline()
    feed = stack.start_feed(RATE, TICKS)
    time.sleep(KILL_AFTER_SECONDS)
    pipeline.kill()  # SIGKILL: open windows and polled-but-unwritten records are lost
    time.sleep(DOWN_SECONDS)
    restarted = stack.start_pipeline()  # same topic, same consumer group
    finish_feed(feed)
    stack.wait_for_exact_bars(SETTLE_SECONDS)
    assert restarted.process.poll() is None, restarted.log
    assert_same_bars(stored_bars(stack.db_url), stack.batch_bars())  # batch bars == the pandas reference's
    committed, ends = committed_and_end_offsets(stack.broker.bootstrap, stack.topic)
    assert committed == ends and sum(ends) > 0  # the group read, and committed, every record


def committed_and_end_offsets(bootstrap: str, topic: str) -> tuple[list[int], list[int]]:
    """Per partition: the offset the pipeline's consumer group committed, and the partition's end."""
    from confluent_kafka import Consumer, TopicPartition

    consumer = Consumer({"bootstrap.servers": bootstrap, "group.id": default_consumer_group(topic)})
    try:
        partitions = [TopicPartition(topic, p) for p in range(PARTITIONS)]
        committed = [tp.offset for tp in consumer.committed(partitions, timeout=10)]
        ends = [consumer.get_watermark_offsets(tp, timeout=10)[1] for tp in partitions]
    finally:
        consumer.close()
    return committed, ends
