"""KafkaSink: the same wire format on a Kafka topic, via confluent-kafka (librdkafka).

Record value = the JSON body of ``alphastream.wire`` (one tick, or a batch of one symbol's ticks);
headers ``ts`` and ``id`` = the Pub/Sub attributes; key = the symbol, so each symbol's ticks stay
in order on one partition; record timestamp (CreateTime) = the (earliest) tick's event time in
milliseconds, which is what the pipeline's ReadFromKafka stamps elements with. The producer is
idempotent with acks=all (no duplicates from its own retries) and batches with linger.ms; every
delivery report is counted, its latency observed and each failure logged.

Heartbeats: the pipeline reads with KafkaIO's create-time policy, under which a partition's
watermark follows its records; once the whole topic is idle (the feed stopped, a quiet market)
only KafkaIO's idle rule moves it, later and less steadily (docs/kafka-flink.md has the
measurements), and the windows after the last tick (gap-fill bars included) wait for it. So when nothing was produced
for ``heartbeat_seconds`` the sink produces a heartbeat, the wire format's empty batch ``[]``
stamped with the wall clock, to every partition of the topic (the partition count comes from the
broker's metadata, re-read now and then so that added partitions get heartbeats too). The
pipeline parses a heartbeat into no ticks. A lost heartbeat loses no tick: it is counted apart
(``heartbeats_failed``) and the next heartbeat does its job.
"""
from __future__ import annotations

import functools
import logging
import math
import threading
import time
from typing import Sequence

from alphastream.records import Tick
from alphastream.wire import encode_batch, encode_heartbeat, encode_tick
from ingestion.sinks.base import DEFAULT_HEARTBEAT_SECONDS, Sink

log = logging.getLogger(__name__)

# Per record: one symbol's ticks, as many as Pub/Sub's default message holds. Each record is an
# element the pipeline's reader hands across from Java, so per-tick records cap its throughput.
DEFAULT_TICKS_PER_RECORD = 1000
DEFAULT_MAX_LATENCY_SECONDS = 0.05
_LOGGED_VALUE_BYTES = 200  # enough of a failed record's value to find the tick
# How often an idle sink re-reads the topic's partition count (partitions can be added, never removed).
PARTITIONS_REFRESH_SECONDS = 30.0
# A metadata request blocks the flusher thread, which also sends pending ticks: keep it short.
METADATA_TIMEOUT_SECONDS = 2.0


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
    return ticks[0].symbol.encode("utf-8"), body, _headers(attributes), min(t.ts_us for t in ticks) // 1000


def heartbeat_record(now_us: int) -> tuple[bytes, list[tuple[str, bytes]], int]:
    """(value, headers, timestamp in epoch ms) of a heartbeat sent at ``now_us``: an empty batch."""
    body, attributes = encode_heartbeat(now_us)
    return body, _headers(attributes), now_us // 1000


def _headers(attributes: dict[str, str]) -> list[tuple[str, bytes]]:
    return [(name, value.encode("utf-8")) for name, value in attributes.items()]


class KafkaSink(Sink):
    """Ticks -> Kafka records, up to ``ticks_per_record`` of one symbol per record, a record sent
    when full or at most ``max_latency`` seconds after its first tick; a heartbeat to every
    partition after ``heartbeat_seconds`` without a record (None or 0: no heartbeats).

    ``heartbeats`` counts the heartbeat records the broker confirmed, ``heartbeats_failed`` those
    it did not; neither is a tick count (``submitted``, ``published``, ``failed``).
    """

    def __init__(self, topic: str, config: dict, ticks_per_record: int = DEFAULT_TICKS_PER_RECORD,
                 max_latency: float = DEFAULT_MAX_LATENCY_SECONDS,
                 heartbeat_seconds: float | None = DEFAULT_HEARTBEAT_SECONDS):
        super().__init__()
        from confluent_kafka import Producer  # optional dependency: the [kafka] extra

        if not topic:
            raise ValueError("--topic is required: the Kafka topic name")
        if ticks_per_record < 1 or max_latency <= 0:
            raise ValueError("ticks_per_record must be >= 1 and max_latency > 0 "
                             f"(got {ticks_per_record}, {max_latency})")
        if heartbeat_seconds is not None and (heartbeat_seconds < 0 or not math.isfinite(heartbeat_seconds)):
            raise ValueError(f"heartbeat_seconds must be > 0, or 0/None for no heartbeats (got {heartbeat_seconds})")
        self.topic = topic
        self.ticks_per_record, self.max_latency = ticks_per_record, max_latency
        self.heartbeat_seconds = heartbeat_seconds or None
        self.heartbeats = 0
        self.heartbeats_failed = 0
        self._producer = Producer(config)
        self._pending: dict[str, list[Tick]] = {}  # symbol -> ticks not yet in a record
        self._pending_lock = threading.Lock()
        self._last_produced = time.monotonic()  # a tick record or a round of heartbeats
        self._partitions = 0  # the topic's partition count, as last read from the broker
        self._partitions_read_at = -math.inf
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

    def _on_heartbeat_delivery(self, error, message) -> None:
        with self._lock:
            if error is None:
                self.heartbeats += 1
            else:
                self.heartbeats_failed += 1
        if error is not None:
            log.info("heartbeat to %s partition %s not delivered (no tick lost; the next heartbeat or tick "
                     "moves the pipeline's watermark on): %s", self.topic, message.partition(), error)

    def _produce(self, ticks: Sequence[Tick]) -> None:
        key, value, headers, timestamp_ms = kafka_record(ticks)
        self._last_produced = time.monotonic()
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

    def _partition_count(self) -> int:
        """The topic's partition count, re-read from the broker at most every PARTITIONS_REFRESH_SECONDS
        (the last count, possibly 0, if the broker does not answer)."""
        from confluent_kafka import KafkaException

        now = time.monotonic()
        if now - self._partitions_read_at < PARTITIONS_REFRESH_SECONDS:
            return self._partitions
        self._partitions_read_at = now
        try:
            topic = self._producer.list_topics(self.topic, timeout=METADATA_TIMEOUT_SECONDS).topics.get(self.topic)
        except KafkaException as err:
            log.info("no partition count for %s (%s): heartbeats go to the %d partitions known", self.topic,
                     err, self._partitions)
            return self._partitions
        if topic is None or topic.error is not None or not topic.partitions:
            log.info("no partitions for %s in the broker's metadata (%s): heartbeats go to the %d known",
                     self.topic, None if topic is None else topic.error, self._partitions)
            return self._partitions
        self._partitions = max(self._partitions, len(topic.partitions))
        return self._partitions

    def _send_heartbeats(self) -> None:
        """One heartbeat record to every partition, stamped now."""
        self._last_produced = time.monotonic()
        value, headers, timestamp_ms = heartbeat_record(time.time_ns() // 1000)
        for partition in range(self._partition_count()):
            try:
                self._producer.produce(self.topic, value=value, partition=partition, headers=headers,
                                       timestamp=timestamp_ms, on_delivery=self._on_heartbeat_delivery)
            except BufferError:  # the queue is full of records still to deliver: they move the watermark
                return
        self._producer.poll(0)

    def _flush_periodically(self) -> None:
        """Send pending ticks every max_latency; a round of heartbeats once nothing was produced
        for heartbeat_seconds."""
        next_flush = time.monotonic() + self.max_latency
        while True:
            heartbeat_due = (math.inf if self.heartbeat_seconds is None
                             else self._last_produced + self.heartbeat_seconds)
            if self._stopping.wait(max(0.0, min(next_flush, heartbeat_due) - time.monotonic())):
                return
            now = time.monotonic()
            idle = self._idle(now)
            if now >= next_flush or idle:  # pending ticks first: a heartbeat must not overtake them
                self._flush_pending()
                next_flush = now + self.max_latency
            if idle and self._idle(time.monotonic()):
                self._send_heartbeats()

    def _idle(self, now: float) -> bool:
        """Whether heartbeats are due: nothing produced for heartbeat_seconds."""
        return self.heartbeat_seconds is not None and now - self._last_produced >= self.heartbeat_seconds

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
