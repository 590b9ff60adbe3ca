"""KafkaSink: the same wire format on a Kafka topic, via confluent-kafka (librdkafka).

Record value = the JSON body of ``ingestion.wire``; headers ``ts`` and ``id`` = the Pub/Sub
attributes; key = the symbol, so each symbol's ticks stay in order on one partition; record
timestamp (CreateTime) = the tick's event time in milliseconds, which is what the pipeline's
ReadFromKafka stamps elements with. The producer is idempotent with acks=all (no duplicates
from its own retries) and batches with linger.ms; every delivery report is counted,
its latency observed and each failure logged.
"""
from __future__ import annotations

import logging

from alphastream.records import Tick
from ingestion.sinks.base import Sink
from ingestion.wire import encode_tick

log = logging.getLogger(__name__)

POLL_EVERY = 1000  # serve delivery callbacks every N produce() calls
_LOGGED_VALUE_BYTES = 200  # enough of a failed record's value to find the tick


def kafka_config(bootstrap: str, client_id: str = "alphastream-ingestion", linger_ms: int = 50,
                 batch_max_messages: int = 10_000) -> dict:
    """Producer configuration (librdkafka property names)."""
    if not bootstrap or any(":" not in server for server in bootstrap.split(",")):
        raise ValueError(f"bad --bootstrap {bootstrap!r}: expected host:port[,host:port]")
    return {
        "bootstrap.servers": bootstrap,
        "client.id": client_id,
        "enable.idempotence": True,
        "acks": "all",
        "linger.ms": linger_ms,
        "batch.num.messages": batch_max_messages,
        "compression.type": "lz4",
    }


def kafka_record(tick: Tick) -> tuple[bytes, bytes, list[tuple[str, bytes]], int]:
    """(key, value, headers, timestamp in epoch ms) of one tick."""
    body, attributes = encode_tick(tick)
    headers = [(name, value.encode("utf-8")) for name, value in attributes.items()]
    return tick.symbol.encode("utf-8"), body, headers, tick.ts_us // 1000


class KafkaSink(Sink):
    def __init__(self, topic: str, config: dict):
        super().__init__()
        from confluent_kafka import Producer  # optional dependency: the [kafka] extra

        if not topic:
            raise ValueError("--topic is required: the Kafka topic name")
        self.topic = topic
        self._producer = Producer(config)

    def _on_delivery(self, error, message) -> None:
        self._confirmed(error is None)
        if error is None:
            latency = message.latency()  # produce() -> broker acknowledgement, measured by librdkafka
            if latency is not None:
                self._observe_latency(latency)
            return
        log.error("kafka delivery to %s failed for the tick keyed %r (value %r): %s", self.topic, message.key(),
                  (message.value() or b"")[:_LOGGED_VALUE_BYTES], error)

    def publish(self, tick: Tick) -> None:
        key, value, headers, timestamp_ms = kafka_record(tick)
        while True:
            try:
                self._producer.produce(self.topic, value=value, key=key, headers=headers, timestamp=timestamp_ms,
                                       on_delivery=self._on_delivery)
                break
            except BufferError:  # local queue full: serve callbacks until there is room
                self._producer.poll(0.1)
        self.submitted += 1
        if self.submitted % POLL_EVERY == 0:
            self._producer.poll(0)

    def close(self, timeout: float) -> None:
        remaining = self._producer.flush(timeout)
        if remaining:
            log.error("%d kafka messages still undelivered after %.0f s at shutdown", remaining, timeout)
