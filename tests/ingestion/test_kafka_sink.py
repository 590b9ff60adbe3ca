"""KafkaSink on a real single-node Kafka broker: the wire format keyed by symbol, event time as
the record timestamp, delivery reports counted (including failures)."""
from __future__ import annotations

import logging

import pytest

from alphastream.local_services import free_port
from alphastream.records import Tick
from alphastream.wire import ID_ATTRIBUTE, TIMESTAMP_ATTRIBUTE, decode_ticks
from ingestion.sinks.kafka import KafkaSink, kafka_config

T0_US = 1_700_000_000_000_000
SYMBOLS = ("AAPL", "MSFT", "BTC-USD", "ETH-USD")


def ticks(n: int) -> list[Tick]:
    return [Tick(SYMBOLS[i % len(SYMBOLS)], T0_US + i * 1_001, 100.0 + i, 1.0 + i % 3, f"t{i}", "test")
            for i in range(n)]


@pytest.mark.parametrize("ticks_per_record", [1, 7])
def test_ticks_arrive_keyed_by_symbol_in_order_per_symbol_with_event_time(kafka_broker, ticks_per_record):
    topic = kafka_broker.create_topic("sink", partitions=3)
    sent = ticks(400)
    # A long max_latency: records are cut only when full (and the rest at close), so their number is known.
    sink = KafkaSink(topic, kafka_config(kafka_broker.bootstrap, linger_ms=5), ticks_per_record=ticks_per_record,
                     max_latency=60)
    latencies: list[float] = []
    sink.latency_observer = latencies.append
    for tick in sent:
        sink.publish(tick)
    sink.close(timeout=30)
    assert (sink.submitted, sink.published, sink.failed) == (400, 400, 0)
    records_expected = sum(-(-400 // len(SYMBOLS) // ticks_per_record) for _ in SYMBOLS)  # full records + a rest
    assert len(latencies) == records_expected and all(0 < seconds < 30 for seconds in latencies)

    # Heartbeats (empty batches, tests/ingestion/test_kafka_heartbeats.py) would come only after a
    # second without a record; should one come anyway, it is not a tick record.
    records = [record for record in kafka_broker.consume(topic, expected=records_expected + sink.heartbeats)
               if record.value() != b"[]"]
    assert len(records) == records_expected
    received = [decode_ticks(record.value()) for record in records]
    assert sorted(t for batch in received for t in batch) == sorted(sent)
    partitions_of: dict[bytes, set[int]] = {}
    for record, batch in zip(records, received, strict=True):
        assert {t.symbol.encode() for t in batch} == {record.key()}  # one symbol per record
        assert record.timestamp()[1] == min(t.ts_us for t in batch) // 1000  # CreateTime = earliest event time
        assert {name for name, _ in record.headers()} == {TIMESTAMP_ATTRIBUTE, ID_ATTRIBUTE}
        partitions_of.setdefault(record.key(), set()).add(record.partition())
    assert all(len(partitions) == 1 for partitions in partitions_of.values())  # per-symbol ordering
    for symbol in SYMBOLS:
        per_symbol = [t.ts_us for batch in received for t in batch if t.symbol == symbol]
        assert per_symbol == sorted(per_symbol)


def test_a_partial_record_is_sent_after_max_latency_without_waiting_for_close(kafka_broker):
    topic = kafka_broker.create_topic("latency")
    sink = KafkaSink(topic, kafka_config(kafka_broker.bootstrap, linger_ms=5), ticks_per_record=1000,
                     max_latency=0.05)
    try:
        sink.publish(ticks(1)[0])
        records = kafka_broker.consume(topic, expected=1, timeout=10)
        assert len(records) == 1 and decode_ticks(records[0].value()) == ticks(1)
    finally:
        sink.close(timeout=10)


def test_a_broker_that_never_answers_counts_and_logs_every_tick_as_failed(caplog):
    config = dict(kafka_config(f"127.0.0.1:{free_port()}"), **{"message.timeout.ms": 1000})
    sink = KafkaSink("nowhere", config, ticks_per_record=1)
    latencies: list[float] = []
    sink.latency_observer = latencies.append
    with caplog.at_level(logging.ERROR, logger="ingestion.sinks.kafka"):
        for tick in ticks(5):
            sink.publish(tick)
        sink.close(timeout=10)
    assert (sink.submitted, sink.published, sink.failed) == (5, 0, 5)
    assert latencies == []  # only confirmed publishes have a latency
    failures = [r.getMessage() for r in caplog.records if "delivery to nowhere failed" in r.getMessage()]
    assert len(failures) == 5, caplog.text
    assert {SYMBOLS[i % len(SYMBOLS)] for i in range(5)} == {
        symbol for symbol in SYMBOLS if any(f"b'{symbol}'" in message for message in failures)}


def test_the_producer_is_idempotent_and_waits_for_all_replicas():
    config = kafka_config("b1:9092,b2:9092")
    assert config["enable.idempotence"] is True and config["acks"] == "all"
    with pytest.raises(ValueError, match="expected host:port"):
        kafka_config("b1")
