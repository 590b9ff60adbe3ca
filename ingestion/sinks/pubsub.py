"""PubSubSink: ticks -> a Pub/Sub topic in the wire format, batched, with ordered shutdown.

The client library honours PUBSUB_EMULATOR_HOST on its own (insecure channel to the
emulator, no credentials), so the same code publishes to the emulator and to GCP.
Publisher flow control blocks ``publish`` when too many messages are outstanding, bounding
memory if Pub/Sub slows down; batching trades a few ms of latency for throughput.

Two levels of batching: ``ticks_per_message`` ticks share one message (a JSON array, see
``ingestion.wire``), and the client library packs messages into publish requests. A tick
batch is sent when full or ``batch_max_latency`` after its first tick, by a small flusher
thread, which also sends a heartbeat (an empty batch) after ``heartbeat_seconds`` without a
message so that readers' watermarks keep moving while the feed is quiet.
"""
from __future__ import annotations

import concurrent.futures
import logging
import threading
import time
from dataclasses import dataclass
from typing import Sequence

from google.api_core import exceptions as gexc
from google.cloud import pubsub_v1
from google.cloud.pubsub_v1.types import BatchSettings, LimitExceededBehavior, PublisherOptions, PublishFlowControl

from alphastream.records import Tick
from ingestion.sinks.base import Sink
from ingestion.wire import encode_batch, encode_heartbeat, encode_tick

log = logging.getLogger(__name__)

# Pub/Sub rejects a publish request with more messages ("400 Too many messages to publish").
MAX_MESSAGES_PER_PUBLISH = 1000
# ~110 bytes of JSON per tick: 1000 ticks is ~110 kB, far below Pub/Sub's 10 MB message limit.
MAX_TICKS_PER_MESSAGE = 10_000
DEFAULT_TICKS_PER_MESSAGE = 1000
DEFAULT_HEARTBEAT_SECONDS = 1.0


@dataclass(frozen=True)
class PublishSettings:
    """Batching and flow-control knobs (the CLI exposes the batching ones)."""

    batch_max_messages: int = 1000  # a batch is sent when it holds this many messages (<= 1000)...
    batch_max_bytes: int = 1_000_000  # ...or this many bytes (Pub/Sub's request limit is 10 MB)
    batch_max_latency: float = 0.05  # ...or its first message is this old (seconds)
    max_outstanding_messages: int = 50_000  # flow control: publish() blocks beyond this
    max_outstanding_bytes: int = 50_000_000
    ticks_per_message: int = DEFAULT_TICKS_PER_MESSAGE  # 1: one tick object per message
    heartbeat_seconds: float | None = DEFAULT_HEARTBEAT_SECONDS  # None: no heartbeats

    def __post_init__(self) -> None:
        if not 1 <= self.batch_max_messages <= MAX_MESSAGES_PER_PUBLISH:
            raise ValueError(f"batch_max_messages must be within 1..{MAX_MESSAGES_PER_PUBLISH} "
                             f"(Pub/Sub's per-request limit), got {self.batch_max_messages}")
        if not 1 <= self.ticks_per_message <= MAX_TICKS_PER_MESSAGE:
            raise ValueError(f"ticks_per_message must be within 1..{MAX_TICKS_PER_MESSAGE}, "
                             f"got {self.ticks_per_message}")


def topic_project(topic: str) -> str:
    """The project of ``projects/P/topics/T`` (ValueError naming the expected form otherwise)."""
    parts = topic.split("/")
    if len(parts) != 4 or parts[0] != "projects" or parts[2] != "topics" or not parts[1] or not parts[3]:
        raise ValueError(f"bad topic {topic!r}: expected projects/PROJECT/topics/TOPIC")
    return parts[1]


class PubSubSink(Sink):
    def __init__(self, topic: str, settings: PublishSettings = PublishSettings(), create_topic: bool = False,
                 clock=time.time):
        super().__init__()
        topic_project(topic)
        self.topic = topic
        self._settings = settings
        self._clock = clock
        self._publisher = pubsub_v1.PublisherClient(
            batch_settings=BatchSettings(max_messages=settings.batch_max_messages,
                                         max_bytes=settings.batch_max_bytes,
                                         max_latency=settings.batch_max_latency),
            publisher_options=PublisherOptions(flow_control=PublishFlowControl(
                message_limit=settings.max_outstanding_messages, byte_limit=settings.max_outstanding_bytes,
                limit_exceeded_behavior=LimitExceededBehavior.BLOCK)),
        )
        if create_topic:
            try:
                self._publisher.create_topic(name=topic)
                log.info("created topic %s", topic)
            except gexc.AlreadyExists:
                pass
        self._futures: set[concurrent.futures.Future] = set()
        self._futures_lock = threading.Lock()
        self._first_error_logged = False
        self.heartbeats = 0
        # The tick batch being filled, guarded by _batch_lock (publish() and the flusher share it).
        self._batch_lock = threading.Lock()
        self._batch: list[Tick] = []
        self._batch_started = 0.0
        self._last_sent = clock()
        self._stop_flusher = threading.Event()
        self._flusher = threading.Thread(target=self._flush_loop, name="pubsub-batch-flusher", daemon=True)
        self._flusher.start()

    def publish(self, tick: Tick) -> None:
        if self._settings.ticks_per_message == 1:
            self._send([tick])
            return
        with self._batch_lock:
            if not self._batch:
                self._batch_started = self._clock()
            self._batch.append(tick)
            full = len(self._batch) >= self._settings.ticks_per_message
            batch = self._take_batch() if full else None
        if batch:
            self._send(batch)

    def _take_batch(self) -> list[Tick]:
        batch, self._batch = self._batch, []
        return batch

    def _send(self, ticks: Sequence[Tick]) -> None:
        body, attributes = encode_tick(ticks[0]) if len(ticks) == 1 else encode_batch(ticks)
        future = self._publisher.publish(self.topic, body, **attributes)
        with self._lock:
            self.submitted += len(ticks)
        with self._futures_lock:
            self._futures.add(future)
            self._last_sent = self._clock()
        future.add_done_callback(lambda done, count=len(ticks): self._on_done(done, count))

    def _flush_loop(self) -> None:
        """Send tick batches older than batch_max_latency; heartbeat when nothing was sent lately."""
        while not self._stop_flusher.wait(self._settings.batch_max_latency):
            self.flush_due()

    def flush_due(self) -> None:
        now = self._clock()
        with self._batch_lock:
            due = bool(self._batch) and now - self._batch_started >= self._settings.batch_max_latency
            batch = self._take_batch() if due else None
        if batch:
            self._send(batch)
            return
        heartbeat = self._settings.heartbeat_seconds
        if heartbeat is not None and now - self._last_sent >= heartbeat:
            body, attributes = encode_heartbeat(int(now * 1_000_000))
            self._publisher.publish(self.topic, body, **attributes)
            self._last_sent = now
            self.heartbeats += 1

    def _on_done(self, future: concurrent.futures.Future, count: int) -> None:
        with self._futures_lock:
            self._futures.discard(future)
        error = future.exception()
        with self._lock:
            if error is None:
                self.published += count
            else:
                self.failed += count
        if error is not None and not self._first_error_logged:
            self._first_error_logged = True  # one line, not one per message of a failed batch
            log.error("publish to %s failed: %s: %s (counting further failures silently)",
                      self.topic, type(error).__name__, error)

    def close(self, timeout: float) -> None:
        """Send the open tick batch, wait for every outstanding future, then stop the client."""
        self._stop_flusher.set()
        self._flusher.join()
        with self._batch_lock:
            batch = self._take_batch()
        if batch:
            self._send(batch)
        with self._futures_lock:
            outstanding = list(self._futures)
        self._publisher.stop()  # commits open batches; further publish() calls are refused
        done, not_done = concurrent.futures.wait(outstanding, timeout=timeout)
        if not_done:
            log.error("%d publishes still unconfirmed after %.0f s at shutdown", len(not_done), timeout)
