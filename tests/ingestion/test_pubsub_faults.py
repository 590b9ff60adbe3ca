"""The Pub/Sub publisher when its topic disappears mid-publish (deleted, as an emulator restart
would leave it), against the real emulator: re-created and re-sent with --create_topic; without
it every lost tick is counted and logged, and the accounting still adds up."""
from __future__ import annotations

import logging
import time

from google.cloud import pubsub_v1

from alphastream.records import Tick
from ingestion.sinks.pubsub import PublishSettings, PubSubSink
from tests.fixtures.pubsub import ticks_in

TICKS_PER_MESSAGE = 10
FLUSH_TIMEOUT_SECONDS = 30.0


def _ticks(start: int, count: int) -> list[Tick]:
    return [Tick("AAPL", 1_714_573_800_000_000 + i, 100.0 + i % 7, 1.0, f"t{i}", "test")
            for i in range(start, start + count)]


def _delete_topic(topic: str) -> None:
    publisher = pubsub_v1.PublisherClient()
    try:
        publisher.delete_topic(topic=topic)
    finally:
        publisher.stop()


def _publish_confirmed(sink: PubSubSink, ticks: list[Tick], timeout: float = 20.0) -> None:
    """Publish and wait until the sink settled them (confirmed or failed)."""
    for tick in ticks:
        sink.publish(tick)
    deadline = time.monotonic() + timeout
    while sink.pending and time.monotonic() < deadline:
        time.sleep(0.05)


def _settings() -> PublishSettings:
    return PublishSettings(ticks_per_message=TICKS_PER_MESSAGE, heartbeat_seconds=None, batch_max_latency=0.02)


def test_deleted_topic_is_recreated_and_no_tick_is_lost(pubsub_emulator):
    topic = pubsub_emulator.topic_path(pubsub_emulator.unique_name("vanishing"))
    sink = PubSubSink(topic, _settings(), create_topic=True)
    _publish_confirmed(sink, _ticks(0, 200))
    assert sink.published == 200
    _delete_topic(topic)
    _publish_confirmed(sink, _ticks(200, 200))
    # The topic is back: a subscription made now receives what is published next.
    subscription = pubsub_emulator.create_subscription(topic)
    _publish_confirmed(sink, _ticks(400, 100))
    sink.close(FLUSH_TIMEOUT_SECONDS)
    assert sink.topic_recreations >= 1
    assert (sink.submitted, sink.published, sink.failed) == (500, 500, 0)
    received = pubsub_emulator.pull(subscription, expected=100, weight=ticks_in)
    assert sum(ticks_in(m) for m in received) == 100


def test_without_create_topic_every_lost_tick_is_counted_and_logged(pubsub_emulator, caplog):
    topic = pubsub_emulator.create_topic("vanishing")
    sink = PubSubSink(topic, _settings())
    _publish_confirmed(sink, _ticks(0, 100))
    _delete_topic(topic)
    with caplog.at_level(logging.ERROR, logger="ingestion.sinks.pubsub"):
        _publish_confirmed(sink, _ticks(100, 300))
        sink.close(FLUSH_TIMEOUT_SECONDS)
    assert (sink.submitted, sink.published, sink.failed) == (400, 100, 300)
    lost_lines = [r.getMessage() for r in caplog.records if r.getMessage().startswith("LOST")]
    # One line per lost message (10 ticks each), each naming the count, the topic and the fix.
    assert len(lost_lines) == 300 // TICKS_PER_MESSAGE
    assert all(f"LOST {TICKS_PER_MESSAGE} ticks" in line and topic in line and "--create_topic" in line
               for line in lost_lines)
    assert lost_lines[-1].endswith("300 ticks lost so far.")
