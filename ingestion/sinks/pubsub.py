"""PubSubSink: ticks -> a Pub/Sub topic in the wire format, batched, with ordered shutdown.

The client library honours PUBSUB_EMULATOR_HOST on its own (insecure channel to the
emulator, no credentials), so the same code publishes to the emulator and to GCP.
Publisher flow control blocks ``publish`` when too many messages are outstanding, bounding
memory if Pub/Sub slows down; batching trades a few ms of latency for throughput.
"""
from __future__ import annotations

import concurrent.futures
import logging
import threading
from dataclasses import dataclass

from google.api_core import exceptions as gexc
from google.cloud import pubsub_v1
from google.cloud.pubsub_v1.types import BatchSettings, LimitExceededBehavior, PublisherOptions, PublishFlowControl

from alphastream.records import Tick
from ingestion.sinks.base import Sink
from ingestion.wire import encode_tick

log = logging.getLogger(__name__)

# Pub/Sub rejects a publish request with more messages ("400 Too many messages to publish").
MAX_MESSAGES_PER_PUBLISH = 1000


@dataclass(frozen=True)
class PublishSettings:
    """Batching and flow-control knobs (the CLI exposes the batching ones)."""

    batch_max_messages: int = 1000  # a batch is sent when it holds this many messages (<= 1000)...
    batch_max_bytes: int = 1_000_000  # ...or this many bytes (Pub/Sub's request limit is 10 MB)
    batch_max_latency: float = 0.05  # ...or its first message is this old (seconds)
    max_outstanding_messages: int = 50_000  # flow control: publish() blocks beyond this
    max_outstanding_bytes: int = 50_000_000

    def __post_init__(self) -> None:
        if not 1 <= self.batch_max_messages <= MAX_MESSAGES_PER_PUBLISH:
            raise ValueError(f"batch_max_messages must be within 1..{MAX_MESSAGES_PER_PUBLISH} "
                             f"(Pub/Sub's per-request limit), got {self.batch_max_messages}")


def topic_project(topic: str) -> str:
    """The project of ``projects/P/topics/T`` (ValueError naming the expected form otherwise)."""
    parts = topic.split("/")
    if len(parts) != 4 or parts[0] != "projects" or parts[2] != "topics" or not parts[1] or not parts[3]:
        raise ValueError(f"bad topic {topic!r}: expected projects/PROJECT/topics/TOPIC")
    return parts[1]


class PubSubSink(Sink):
    def __init__(self, topic: str, settings: PublishSettings = PublishSettings(), create_topic: bool = False):
        super().__init__()
        topic_project(topic)
        self.topic = topic
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

    def publish(self, tick: Tick) -> None:
        body, attributes = encode_tick(tick)
        future = self._publisher.publish(self.topic, body, **attributes)
        with self._futures_lock:
            self.submitted += 1
            self._futures.add(future)
        future.add_done_callback(self._on_done)

    def _on_done(self, future: concurrent.futures.Future) -> None:
        with self._futures_lock:
            self._futures.discard(future)
        error = future.exception()
        self._confirmed(error is None)
        if error is not None and not self._first_error_logged:
            self._first_error_logged = True  # one line, not one per message of a failed batch
            log.error("publish to %s failed: %s: %s (counting further failures silently)",
                      self.topic, type(error).__name__, error)

    def close(self, timeout: float) -> None:
        """Send what is batched, wait for every outstanding future, then stop the client."""
        with self._futures_lock:
            outstanding = list(self._futures)
        self._publisher.stop()  # commits open batches; further publish() calls are refused
        done, not_done = concurrent.futures.wait(outstanding, timeout=timeout)
        if not_done:
            log.error("%d publishes still unconfirmed after %.0f s at shutdown", len(not_done), timeout)
