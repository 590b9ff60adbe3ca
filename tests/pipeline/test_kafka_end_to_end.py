"""Kafka end to end, with real processes: ``python -m ingestion --sink kafka`` (synthetic feed,
tick archive) -> a real KRaft broker -> ``python -m pipeline --streaming --source kafka`` (Beam's
Java ReadFromKafka on Prism, its Java stage in the local worker pool) -> PostgreSQL.

The ground truth is the feed's tick archive: the streaming bars must equal the batch bars of the
same ticks (``pipeline.repair.recompute``), and after a kill and a restart with the same consumer
group the table must equal them again, every bar final (tests/fixtures/live_stack.py).
"""
from __future__ import annotations

import time

import pytest

from pipeline.streaming_sources import default_consumer_group
from tests.fixtures.kafka_stack import PARTITIONS, KafkaLiveStack
from tests.fixtures.live_stack import Child, feed_outcome, stored_bars
from tests.fixtures.reference import assert_same_bars

pytestmark = pytest.mark.slow

RATE = 500
TICKS = 5_000  # 10 s of feed
KILL_AFTER_SECONDS = 5
DOWN_SECONDS = 3
# After the feed ends: the last 15 s window closes, plus the 5 s lateness, plus a finaliser pass,
# plus slack for Prism, two JVMs and a loaded 2-core machine.
SETTLE_SECONDS = 90
FEED_TIMEOUT_SECONDS = 90


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
    stack.wait_for_streaming_bars(pipeline, TICKS, SETTLE_SECONDS)


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
    assert_same_bars(stored_bars(stack.db_url), stack.batch_bars(TICKS))  # batch bars == the pandas reference's
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
