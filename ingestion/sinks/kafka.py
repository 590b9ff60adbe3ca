"""KafkaSink: the same wire format on a Kafka topic, via confluent-kafka (librdkafka).

Record value = the JSON body of ``alphastream.wire`` (one tick, or a batch of one symbol's ticks);
headers ``ts`` and ``id`` = the Pub/Sub attributes; key = the symbol, so each symbol's ticks stay
in order on one partition; record timestamp (CreateTime) = the (earliest) tick's event time in
milliseconds, which is what the pipeline's ReadFromKafka stamps elements with. The producer is
idempotent with acks=all (no duplicates from its own retries) and batches with linger.ms; every
delivery report is counted, its latency observed and each failure logged.
"""
from __future__ import annotations

import functools
import logging
import threading
from typing import Sequence

from alphastream.records import Tick
from alphastream.wire import encode_batch, encode_tick
from ingestion.sinks.base import Sink

log = logging.getLogger(__name__)

# Per record: one symbol's ticks, as many as Pub/Sub's default message holds. Each record is an
# element the pipeline's reader hands across from Java, so per-tick records cap its throughput.
DEFAULT_TICKS_PER_RECORD = 1000
DEFAULT_MAX_LATENCY_SECONDS = 0.05
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


def kafka_record(ticks: Sequence[Tick]) -> tuple[bytes, bytes, list[tuple[str, bytes]], int]:
    """(key, value, headers, timestamp in epoch ms) of one symbol's ticks: one tick object, or a
    batch array stamped with its earliest tick (the wire format's rules)."""
    body, attributes = encode_tick(ticks[0]) if len(ticks) == 1 else encode_batch(ticks)
    headers = [(name, value.encode("utf-8")) for name, value in attributes.items()]
    return ticks[0].symbol.encode("utf-8"), body, headers, min(t.ts_us for t in ticks) // 1000


class KafkaSink(Sink):
    """Ticks -> Kafka records, up to ``ticks_per_record`` of one symbol per record, a record sent
    when full or at most ``max_latency`` seconds after its first tick."""

    def __init__(self, topic: str, config: dict, ticks_per_record: int = DEFAULT_TICKS_PER_RECORD,
                 max_latency: float = DEFAULT_MAX_LATENCY_SECONDS):
        super().__init__()
        from confluent_kafka import Producer  # optional dependency: the [kafka] extra

        if not topic:
            raise ValueError("--topic is required: the Kafka topic name")
        if ticks_per_record < 1 or max_latency <= 0:
            raise ValueError("ticks_per_record must be >= 1 and max_latency > 0 "
                             f"(got {ticks_per_record}, {max_latency})")
        self.topic = topic
        self.ticks_per_record, self.max_latency = ticks_per_record, max_latency
        self._producer = Producer(config)
        self._pending: dict[str, list[Tick]] = {}  # symbol -> ticks not yet in a record
        self._pending_lock = threading.Lock()
        self._stopping = threading.Event()
        self._flusher = threading.Thread(target=self._flush_periodically, name="kafka-sink-flusher", daemon=True)
        self._flusher.start()

    def _on_delivery(self, error, message, ticks: int) -> None:
        with self._lock:
            if error is None:
                self.published += ticks
            else:
                self.failed += ticks
        if error is None:
            latency = message.latency()  # produce() -> broker acknowledgement, measured by librdkafka
            if latency is not None:
                self._observe_latency(latency)
            return
        log.error("kafka delivery to %s failed for %d ticks keyed %r (value %r): %s", self.topic, ticks,
                  message.key(), (message.value() or b"")[:_LOGGED_VALUE_BYTES], error)

    def _produce(self, ticks: Sequence[Tick]) -> None:
        key, value, headers, timestamp_ms = kafka_record(ticks)
        while True:
            try:
                self._producer.produce(self.topic, value=value, key=key, headers=headers, timestamp=timestamp_ms,
                                       on_delivery=functools.partial(self._on_delivery, ticks=len(ticks)))
                return
            except BufferError:  # local queue full: serve callbacks until there is room
                self._producer.poll(0.1)

    def _flush_pending(self) -> None:
        with self._pending_lock:
            batches, self._pending = list(self._pending.values()), {}
        for ticks in batches:
            self._produce(ticks)
        self._producer.poll(0)

    def _flush_periodically(self) -> None:
        while not self._stopping.wait(self.max_latency):
            self._flush_pending()

    def publish(self, tick: Tick) -> None:
        with self._pending_lock:
            batch = self._pending.setdefault(tick.symbol, [])
            batch.append(tick)
            full = self._pending.pop(tick.symbol) if len(batch) >= self.ticks_per_record else None
        with self._lock:
            self.submitted += 1
        if full is not None:
            self._produce(full)
            self._producer.poll(0)

    def close(self, timeout: float) -> None:
        self._stopping.set()
        self._flusher.join()
        self._flush_pending()
        remaining = self._producer.flush(timeout)
        if remaining:
            log.error("%d kafka records still undelivered after %.0f s at shutdown", remaining, timeout)
