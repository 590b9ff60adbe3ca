"""PubSubSink: ticks -> a Pub/Sub topic in the wire format, batched, with ordered shutdown.

The client library honours PUBSUB_EMULATOR_HOST on its own (insecure channel to the
emulator, no credentials), so the same code publishes to the emulator and to GCP.
Publisher flow control blocks ``publish`` when too many messages are outstanding, bounding
memory if Pub/Sub slows down; batching trades a few ms of latency for throughput.

Two levels of batching: ``ticks_per_message`` ticks share one message (a JSON array, see
``alphastream.wire``), and the client library packs messages into publish requests. A tick
batch is sent when full or ``batch_max_latency`` after its first tick, by a small flusher
thread, which also sends a heartbeat (an empty batch) after ``heartbeat_seconds`` without a
message so that readers' watermarks keep moving while the feed is quiet.

Failures: the client library retries transient errors (unavailable, deadline exceeded, ...)
with exponential backoff for up to ``retry_seconds``. A topic that disappeared (``NotFound``:
deleted, or an emulator restarted empty) is re-created and the message re-sent, with backoff,
when the sink was built with ``create_topic``. Every message that still fails is counted in
``failed`` (ticks) and logged with its tick count, symbols and time range and what to do:
nothing is dropped after a single log line. ``close`` waits for retries in flight too.
"""
from __future__ import annotations

import logging
import threading
import time
from dataclasses import dataclass
from typing import Sequence

from google.api_core import exceptions as gexc
from google.api_core.retry import Retry, if_exception_type
from google.cloud import pubsub_v1
from google.cloud.pubsub_v1.types import BatchSettings, LimitExceededBehavior, PublisherOptions, PublishFlowControl

from alphastream.records import Tick
from alphastream.wire import encode_batch, encode_heartbeat, encode_tick
from ingestion.backoff import Backoff
from ingestion.sinks.base import DEFAULT_HEARTBEAT_SECONDS, Sink

log = logging.getLogger(__name__)

# Pub/Sub rejects a publish request with more messages ("400 Too many messages to publish").
MAX_MESSAGES_PER_PUBLISH = 1000
# A tick is about 110 bytes of JSON: even this many stay far below Pub/Sub's 10 MB message limit.
MAX_TICKS_PER_MESSAGE = 10_000
DEFAULT_TICKS_PER_MESSAGE = 1000
# Errors worth retrying: the server or the network, not the request.
TRANSIENT_ERRORS = (gexc.ServiceUnavailable, gexc.DeadlineExceeded, gexc.InternalServerError, gexc.Aborted,
                    gexc.TooManyRequests, gexc.Unknown, gexc.Cancelled)


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
    retry_seconds: float = 60.0  # the client retries transient errors this long per message
    max_topic_recreations: int = 5  # with create_topic: re-create a vanished topic this often per message

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
                 clock=time.time, backoff: Backoff | None = None):
        super().__init__()
        topic_project(topic)
        self.topic = topic
        self._settings = settings
        self._clock = clock
        self._create_topic = create_topic
        self._backoff = backoff or Backoff(base=0.2, cap=10.0)
        self._retry = Retry(predicate=if_exception_type(*TRANSIENT_ERRORS), initial=0.1, maximum=5.0,
                            multiplier=2.0, timeout=settings.retry_seconds)
        self._publisher = pubsub_v1.PublisherClient(
            batch_settings=BatchSettings(max_messages=settings.batch_max_messages,
                                         max_bytes=settings.batch_max_bytes,
                                         max_latency=settings.batch_max_latency),
            publisher_options=PublisherOptions(flow_control=PublishFlowControl(
                message_limit=settings.max_outstanding_messages, byte_limit=settings.max_outstanding_bytes,
                limit_exceeded_behavior=LimitExceededBehavior.BLOCK)),
        )
        if create_topic:
            self._ensure_topic()
        self._settled = threading.Condition(self._lock)  # notified whenever ticks are confirmed or failed
        self._closing = False
        self.topic_recreations = 0
        self.heartbeats = 0
        # The tick batch being filled, guarded by _batch_lock (publish() and the flusher share it).
        self._batch_lock = threading.Lock()
        self._batch: list[Tick] = []
        self._batch_started = 0.0
        self._last_sent = clock()
        self._stop_flusher = threading.Event()
        self._flusher = threading.Thread(target=self._flush_loop, name="pubsub-batch-flusher", daemon=True)
        self._flusher.start()

    def _ensure_topic(self) -> None:
        try:
            self._publisher.create_topic(name=self.topic)
            log.info("created topic %s", self.topic)
        except gexc.AlreadyExists:
            pass

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

    def _send(self, ticks: Sequence[Tick], recreations: int = 0) -> None:
        """Publish one message; the first attempt counts its ticks as submitted."""
        if recreations == 0:
            with self._lock:
                self.submitted += len(ticks)
            self._last_sent = self._clock()
        body, attributes = encode_tick(ticks[0]) if len(ticks) == 1 else encode_batch(ticks)
        started = time.monotonic()
        try:
            future = self._publisher.publish(self.topic, body, retry=self._retry, **attributes)
        except RuntimeError as err:  # the client was stopped (shutdown raced a retry)
            self._lost(ticks, err, recreations)
            return
        future.add_done_callback(lambda done: self._on_done(done, ticks, recreations, started))

    def _on_done(self, future, ticks: Sequence[Tick], recreations: int, started: float) -> None:
        error = future.exception()
        if error is None:
            self._observe_latency(time.monotonic() - started)
            with self._settled:
                if not self._closing:  # at close, unconfirmed ticks were already counted as failed
                    self.published += len(ticks)
                    self._settled.notify_all()
            return
        if (isinstance(error, gexc.NotFound) and self._create_topic and not self._closing
                and recreations < self._settings.max_topic_recreations):
            delay = self._backoff.next_delay()
            log.warning("topic %s is gone (%s): re-creating it and re-sending %d ticks in %.2f s",
                        self.topic, error, len(ticks), delay)
            timer = threading.Timer(delay, self._recreate_and_resend, (ticks, recreations + 1))
            timer.daemon = True
            timer.start()
            return
        self._lost(ticks, error, recreations)

    def _recreate_and_resend(self, ticks: Sequence[Tick], recreations: int) -> None:
        try:
            self._ensure_topic()
            self.topic_recreations += 1
        except gexc.GoogleAPICallError as err:
            log.warning("re-creating topic %s failed: %s; re-sending anyway", self.topic, err)
        self._send(ticks, recreations)

    def _lost(self, ticks: Sequence[Tick], error: BaseException, recreations: int) -> None:
        """Count ticks that will not be published, and say which and what to do, every time."""
        with self._settled:
            if self._closing:
                return
            self.failed += len(ticks)
            failed_total = self.failed
            self._settled.notify_all()
        hint = ("create the topic, or run with --create_topic" if isinstance(error, gexc.NotFound)
                else "check the Pub/Sub endpoint and credentials")
        symbols = sorted({t.symbol for t in ticks})
        log.error("LOST %d ticks (%s, event time %s..%s us, first trade id %s) publishing to %s after %d topic "
                  "re-creations: %s: %s; %s. %d ticks lost so far.", len(ticks), ",".join(symbols[:5])
                  + ("..." if len(symbols) > 5 else ""), min(t.ts_us for t in ticks), max(t.ts_us for t in ticks),
                  ticks[0].trade_id, self.topic, recreations, type(error).__name__, error, hint, failed_total)
        self._backoff.reset()

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
            # A lost heartbeat carries no ticks: the next one (or the next batch) does its job.
            self._publisher.publish(self.topic, body, **attributes)
            self._last_sent = now
            self.heartbeats += 1

    def close(self, timeout: float) -> None:
        """Send the open tick batch, wait until every tick is confirmed or failed (retries
        included), then stop the client; ticks still unconfirmed at the timeout count as failed."""
        self._stop_flusher.set()
        self._flusher.join()
        with self._batch_lock:
            batch = self._take_batch()
        if batch:
            self._send(batch)
        with self._settled:
            self._settled.wait_for(lambda: self.submitted == self.published + self.failed, timeout=timeout)
            self._closing = True
            unconfirmed = self.submitted - self.published - self.failed
            if unconfirmed:
                self.failed += unconfirmed
        if unconfirmed:
            log.error("LOST %d ticks: still unconfirmed by %s after %.0f s at shutdown (counted as failed)",
                      unconfirmed, self.topic, timeout)
        self._publisher.stop()
