"""KafkaSink on a real single-node Kafka broker: the wire format keyed by symbol, event time as
the record timestamp, delivery reports counted (including failures)."""
from __future__ import annotations

import logging

import pytest

from alphastream.local_services import free_port
from alphastream.records import Tick
from ingestion.sinks.kafka import KafkaSink, kafka_config
from ingestion.wire import ID_ATTRIBUTE, TIMESTAMP_ATTRIBUTE, decode_tick

T0_US = 1_700_000_000_000_000
SYMBOLS = ("AAPL", "MSFT", "BTC-USD", "ETH-USD")


def ticks(n: int) -> list[Tick]:
    return [Tick(SYMBOLS[i % len(SYMBOLS)], T0_US + i * 1_001, 100.0 + i, 1.0 + i % 3, f"t{i}", "test")
            for i in range(n)]


def test_ticks_arrive_keyed_by_symbol_in_order_per_symbol_with_event_time(kafka_broker):
    topic = kafka_broker.create_topic("sink", partitions=3)
    sent = ticks(400)
    sink = KafkaSink(topic, kafka_config(kafka_broker.bootstrap, linger_ms=5))
    latencies: list[float] = []
    sink.latency_observer = latencies.append
    for tick in sent:
        sink.publish(tick)
    sink.close(timeout=30)
    assert (sink.submitted, sink.published, sink.failed) == (400, 400, 0)
    assert len(latencies) == 400 and all(0 < seconds < 30 for seconds in latencies)  # one per delivery

    records = kafka_broker.consume(topic, expected=400)
    assert len(records) == 400
    received = [decode_tick(record.value()) for record in records]
    assert sorted(received) == sorted(sent)
    partitions_of: dict[bytes, set[int]] = {}
    for record, tick in zip(records, received):
        assert record.key() == tick.symbol.encode()
        assert record.timestamp()[1] == tick.ts_us // 1000  # CreateTime = event time
        assert {name for name, _ in record.headers()} == {TIMESTAMP_ATTRIBUTE, ID_ATTRIBUTE}
        partitions_of.setdefault(record.key(), set()).add(record.partition())
    assert all(len(partitions) == 1 for partitions in partitions_of.values())  # per-symbol ordering
    for symbol in SYMBOLS:
        per_symbol = [t.ts_us for t in received if t.symbol == symbol]
        assert per_symbol == sorted(per_symbol)


def test_a_broker_that_never_answers_counts_and_logs_every_tick_as_failed(caplog):
    config = dict(kafka_config(f"127.0.0.1:{free_port()}"), **{"message.timeout.ms": 1000})
    sink = KafkaSink("nowhere", config)
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
