"""KafkaSink heartbeats on a real broker: an idle sink sends the wire format's empty batch to every
partition, stamped with the wall clock (KafkaIO's create-time watermark of a partition moves only
with its records); a busy sink and a sink with heartbeats off send none; a lost heartbeat is not a
lost tick; and the pipeline's parser reads a heartbeat record as no ticks and no dead letter."""
from __future__ import annotations

import logging
import time

import apache_beam as beam
import pytest
from apache_beam.testing.test_pipeline import TestPipeline
from apache_beam.transforms.window import TimestampedValue

from alphastream.records import Tick
from alphastream.wire import HEARTBEAT_ID_PREFIX, ID_ATTRIBUTE, TIMESTAMP_ATTRIBUTE, rfc3339_millis
from ingestion.sinks import kafka as kafka_sink
from ingestion.sinks.base import DEFAULT_HEARTBEAT_SECONDS
from ingestion.sinks.kafka import KafkaSink, kafka_config
from pipeline.streaming_sources import KAFKA_ORIGIN_PREFIX
from tests.fixtures.beam import Collected
from tests.fixtures.live_stack import wait_until
from transforms.parse import DEAD_LETTERS, TICKS
from transforms.tick_batches import DEDUP_BUCKET_US, ParseTickBatches
from transforms.validation import ValidationPolicy

HEARTBEAT_SECONDS = 0.2
PARTITIONS = 3
IDLE_SECONDS = 1.0  # several heartbeat rounds
HEARTBEAT_VALUE = b"[]"
CREATE_TIME = 1  # confluent_kafka.TIMESTAMP_CREATE_TIME
WAIT_SECONDS = 15.0


def sink_for(broker, topic: str, heartbeat_seconds: float | None, **config) -> KafkaSink:
    return KafkaSink(topic, dict(kafka_config(broker.bootstrap, linger_ms=5), **config), ticks_per_record=100,
                     max_latency=0.05, heartbeat_seconds=heartbeat_seconds)


def all_records(broker, topic: str) -> list:
    """Every record of ``topic`` (the partitions' end offsets say how many)."""
    from confluent_kafka import Consumer, TopicPartition

    consumer = Consumer({"bootstrap.servers": broker.bootstrap, "group.id": f"count-{topic}"})
    try:
        metadata = consumer.list_topics(topic, timeout=10).topics[topic]
        total = sum(consumer.get_watermark_offsets(TopicPartition(topic, p), timeout=10)[1]
                    for p in metadata.partitions)
    finally:
        consumer.close()
    records = broker.consume(topic, expected=total)
    assert len(records) == total
    return records


def now_tick(number: int) -> Tick:
    return Tick("AAPL", time.time_ns() // 1_000, 100.0 + number, 1.0, f"t{number}", "test")


def test_an_idle_sink_sends_a_heartbeat_to_every_partition_stamped_with_the_wall_clock(kafka_broker):
    topic = kafka_broker.create_topic("heartbeats", partitions=PARTITIONS)
    started_ms = time.time_ns() // 1_000_000
    sink = sink_for(kafka_broker, topic, HEARTBEAT_SECONDS)
    time.sleep(IDLE_SECONDS)
    sink.close(timeout=10)
    ended_ms = time.time_ns() // 1_000_000

    assert (sink.submitted, sink.published, sink.failed) == (0, 0, 0)  # heartbeats are not ticks
    assert sink.heartbeats_failed == 0
    rounds = sink.heartbeats // PARTITIONS
    assert sink.heartbeats == rounds * PARTITIONS and rounds >= 2, sink.heartbeats
    records = all_records(kafka_broker, topic)
    assert len(records) == sink.heartbeats
    for partition in range(PARTITIONS):
        assert sum(record.partition() == partition for record in records) == rounds
    for record in records:
        assert record.value() == HEARTBEAT_VALUE and record.key() is None
        kind, timestamp_ms = record.timestamp()
        assert kind == CREATE_TIME and started_ms + HEARTBEAT_SECONDS * 1000 <= timestamp_ms <= ended_ms
        headers = dict(record.headers())
        assert headers[TIMESTAMP_ATTRIBUTE].decode() == rfc3339_millis(timestamp_ms * 1000)
        assert headers[ID_ATTRIBUTE].decode().startswith(HEARTBEAT_ID_PREFIX)


def test_a_busy_sink_sends_no_heartbeat(kafka_broker):
    topic = kafka_broker.create_topic("busy", partitions=PARTITIONS)
    heartbeat_seconds = 0.5
    sink = sink_for(kafka_broker, topic, heartbeat_seconds)
    for number in range(20):  # a tick every 0.1 s for 2 s: a record every 0.1 s, never 0.5 s apart
        sink.publish(now_tick(number))
        time.sleep(0.1)
    sink.close(timeout=10)

    assert (sink.published, sink.failed, sink.heartbeats) == (20, 0, 0)
    records = all_records(kafka_broker, topic)
    assert records and HEARTBEAT_VALUE not in {record.value() for record in records}


def test_ticks_then_quiet_gives_heartbeats_stamped_after_the_last_tick(kafka_broker):
    topic = kafka_broker.create_topic("quiet", partitions=PARTITIONS)
    sink = sink_for(kafka_broker, topic, HEARTBEAT_SECONDS)
    last = now_tick(0)
    sink.publish(last)
    time.sleep(IDLE_SECONDS)
    sink.close(timeout=10)

    assert (sink.published, sink.failed) == (1, 0) and sink.heartbeats >= PARTITIONS
    heartbeats = [record for record in all_records(kafka_broker, topic) if record.value() == HEARTBEAT_VALUE]
    assert len(heartbeats) == sink.heartbeats
    # The first round comes once the tick's record is heartbeat_seconds old, never before it.
    first_ms = min(record.timestamp()[1] for record in heartbeats)
    assert first_ms >= last.ts_us // 1000 + HEARTBEAT_SECONDS * 1000


@pytest.mark.parametrize("heartbeat_seconds", [None, 0])
def test_heartbeats_off_sends_nothing_while_idle(kafka_broker, heartbeat_seconds):
    topic = kafka_broker.create_topic("off", partitions=PARTITIONS)
    sink = sink_for(kafka_broker, topic, heartbeat_seconds)
    time.sleep(IDLE_SECONDS)
    sink.close(timeout=10)

    assert sink.heartbeats == 0
    assert all_records(kafka_broker, topic) == []


def test_an_added_partition_gets_heartbeats_too(kafka_broker, monkeypatch):
    from confluent_kafka.admin import AdminClient, NewPartitions

    monkeypatch.setattr(kafka_sink, "PARTITIONS_REFRESH_SECONDS", 0.3)  # the production value is minutes-scale
    topic = kafka_broker.create_topic("grows", partitions=1)
    sink = sink_for(kafka_broker, topic, HEARTBEAT_SECONDS)
    try:
        assert wait_until(lambda: sink.heartbeats >= 1, WAIT_SECONDS, 0.05), "no heartbeat to the first partition"
        admin = AdminClient({"bootstrap.servers": kafka_broker.bootstrap})
        admin.create_partitions([NewPartitions(topic, 2)])[topic].result(timeout=30)
        time.sleep(IDLE_SECONDS * 2)
    finally:
        sink.close(timeout=10)

    partitions = {record.partition() for record in all_records(kafka_broker, topic)}
    assert partitions == {0, 1}


def test_a_lost_heartbeat_is_logged_not_counted_as_a_lost_tick(kafka_broker, caplog):
    """Heartbeats to a partition that disappeared (the topic was deleted) time out."""
    from confluent_kafka.admin import AdminClient

    topic = kafka_broker.create_topic("deleted", partitions=2)
    sink = sink_for(kafka_broker, topic, HEARTBEAT_SECONDS, **{"message.timeout.ms": 1000})
    with caplog.at_level(logging.INFO, logger="ingestion.sinks.kafka"):
        try:
            assert wait_until(lambda: sink.heartbeats >= 2, WAIT_SECONDS, 0.05), "no heartbeat before the delete"
            admin = AdminClient({"bootstrap.servers": kafka_broker.bootstrap})
            admin.delete_topics([topic])[topic].result(timeout=30)
            wait_until(lambda: sink.heartbeats_failed > 0, WAIT_SECONDS, 0.05)
        finally:
            sink.close(timeout=10)

    assert sink.heartbeats_failed > 0
    assert (sink.submitted, sink.published, sink.failed) == (0, 0, 0)
    lost = [r for r in caplog.records if "heartbeat to" in r.getMessage()]
    assert lost and {r.levelno for r in lost} == {logging.INFO}
    assert not [r for r in caplog.records if r.levelno >= logging.ERROR and "heartbeat" in r.getMessage()]


def test_the_pipeline_reads_a_heartbeat_record_as_no_ticks_and_no_dead_letter(kafka_broker):
    """Real records (a tick, then heartbeats) through the pipeline's parser, as ReadTicksFromKafka
    hands them over: (kafka:<topic>, value), stamped with the record's CreateTime."""
    topic = kafka_broker.create_topic("parsed", partitions=2)
    sink = sink_for(kafka_broker, topic, HEARTBEAT_SECONDS)
    tick = now_tick(0)
    sink.publish(tick)
    time.sleep(IDLE_SECONDS)
    sink.close(timeout=10)
    records = all_records(kafka_broker, topic)
    assert sum(record.value() == HEARTBEAT_VALUE for record in records) == sink.heartbeats >= 2

    origin = KAFKA_ORIGIN_PREFIX + topic
    elements = [TimestampedValue((origin, record.value()), record.timestamp()[1] / 1000) for record in records]
    with TestPipeline() as p:
        parsed = (p | beam.Create(elements)
                  | ParseTickBatches(lambda: time.time_ns() // 1_000 + 10**9, "kafka", ValidationPolicy(),
                                     DEDUP_BUCKET_US))
        got_ticks = Collected(parsed[TICKS], "Ticks")
        got_letters = Collected(parsed[DEAD_LETTERS], "Letters")
    assert [t for _, ticks in got_ticks.items for t in ticks] == [tick]
    assert got_letters.items == []


@pytest.mark.parametrize(("flag", "expected"), [([], DEFAULT_HEARTBEAT_SECONDS), (["--heartbeat_seconds", "0.5"], 0.5),
                                                (["--heartbeat_seconds", "0"], None)])
def test_the_cli_flag_sets_the_kafka_sinks_heartbeats(kafka_broker, flag, expected):
    from ingestion.cli import build_parser, build_sink

    args = build_parser().parse_args(["--source", "synthetic", "--sink", "kafka", "--bootstrap",
                                      kafka_broker.bootstrap, "--topic", "cli-heartbeats", *flag])
    sink = build_sink(args)
    try:
        assert isinstance(sink, KafkaSink) and sink.heartbeat_seconds == expected
    finally:
        sink.close(timeout=10)
