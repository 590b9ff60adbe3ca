"""ReadTicksFromPubSub on the real Pub/Sub emulator: each message arrives whole, stamped with its
event-time attribute; how bodies split into ticks; configuration from the pipeline flags."""
from __future__ import annotations

import json
import threading
import time

import apache_beam as beam
import pytest
from apache_beam.options.pipeline_options import PipelineOptions

from alphastream.errors import UserFacingError
from alphastream.records import Tick
from alphastream.wire import ID_ATTRIBUTE, TIMESTAMP_ATTRIBUTE, encode_tick, rfc3339_millis
from pipeline.options import AlphastreamOptions
from pipeline.streaming_sources import ReadTicksFromPubSub, wake_pubsub_reader
from transforms.tick_batches import UNREADABLE, decode_tick_batch

SEC = 1_000_000
READ_TIMEOUT_SECONDS = 30


def tick(i: int, ts_us: int) -> Tick:
    return Tick("AAPL", ts_us, 100.0 + i, 10.0, f"t{i}", "test")


def body_of(t: Tick) -> bytes:
    return encode_tick(t)[0]


# --- decode_tick_batch ------------------------------------------------------------------

def test_a_single_tick_body_is_one_item_with_the_body_as_raw():
    t = tick(1, 1_700_000_000_000_123)
    assert decode_tick_batch(body_of(t)) == [(t._asdict(), body_of(t))]


def test_a_batch_is_one_item_per_tick_each_with_its_own_raw_json():
    ticks = [tick(1, 1_700_000_000_000_001), tick(2, 1_700_000_000_500_000)]
    got = decode_tick_batch(json.dumps([t._asdict() for t in ticks]).encode())
    assert [item for item, _ in got] == [t._asdict() for t in ticks]
    assert [json.loads(raw) for _, raw in got] == [t._asdict() for t in ticks]
    assert decode_tick_batch(b"[]") == []  # a heartbeat


def test_unreadable_bodies_and_odd_items_are_passed_on_for_the_parser_to_dead_letter():
    assert decode_tick_batch(b"[{not json") == [(UNREADABLE, b"[{not json")]
    got = decode_tick_batch(b' [{"symbol": "AAPL", "ts_us": "soon"}, 42]')
    assert got == [({"symbol": "AAPL", "ts_us": "soon"}, b'{"symbol":"AAPL","ts_us":"soon"}'), (42, b"42")]


# --- from_options ----------------------------------------------------------------------------

def options(*flags: str) -> AlphastreamOptions:
    return PipelineOptions(["--streaming", "--source", "pubsub", *flags]).view_as(AlphastreamOptions)


def test_from_options_reads_the_wire_timestamp_and_asks_for_id_dedup_only_on_dataflow():
    direct = ReadTicksFromPubSub.from_options(options("--subscription", "projects/p/subscriptions/s"))
    assert (direct.subscription, direct.topic) == ("projects/p/subscriptions/s", None)
    assert direct.timestamp_attribute == TIMESTAMP_ATTRIBUTE
    assert direct.id_label is None  # the DirectRunner refuses id_label
    dataflow = ReadTicksFromPubSub.from_options(options("--topic", "projects/p/topics/t", "--runner", "DataflowRunner"))
    assert (dataflow.topic, dataflow.id_label) == ("projects/p/topics/t", ID_ATTRIBUTE)


BOTH = ("--subscription", "projects/p/subscriptions/s", "--topic", "projects/p/topics/t")


@pytest.mark.parametrize("flags", [(), BOTH])
def test_from_options_needs_exactly_one_of_subscription_and_topic(flags):
    with pytest.raises(UserFacingError, match="exactly one of --subscription"):
        ReadTicksFromPubSub.from_options(options(*flags))


# --- the real emulator -------------------------------------------------------------------

_RECEIVED: dict[str, list] = {}
_RECEIVED_LOCK = threading.Lock()


class _Record(beam.DoFn):
    """Keeps (origin, payload, timestamp) in this process (the DirectRunner runs in it)."""

    def __init__(self, key: str):
        self._key = key

    def process(self, element, timestamp=beam.DoFn.TimestampParam):
        with _RECEIVED_LOCK:
            _RECEIVED.setdefault(self._key, []).append((element[0], element[1], timestamp.micros))


def read_until(subscription: str, expected: int) -> list:
    """Run ReadTicksFromPubSub on the DirectRunner until ``expected`` elements arrived."""
    key = f"read-{time.monotonic_ns()}"
    pipeline = beam.Pipeline(options=PipelineOptions(["--streaming"]))
    _ = (pipeline
         | ReadTicksFromPubSub(subscription=subscription, timestamp_attribute=TIMESTAMP_ATTRIBUTE)
         | beam.ParDo(_Record(key)))
    result = pipeline.run()
    try:
        deadline = time.monotonic() + READ_TIMEOUT_SECONDS
        while len(_RECEIVED.get(key, [])) < expected and time.monotonic() < deadline:
            time.sleep(0.2)
    finally:
        assert wake_pubsub_reader(subscription, None)  # or cancel() waits out a 30 s pull
        result.cancel()
    return _RECEIVED.pop(key, [])


def test_reads_single_and_batched_messages_as_timestamped_ticks(pubsub_emulator):
    from google.cloud import pubsub_v1

    topic, subscription = pubsub_emulator.create_topic_and_subscription("source")
    now = time.time_ns() // 1000
    single = tick(0, now)
    batch = [tick(1, now - 2 * SEC), tick(2, now - SEC), tick(3, now)]
    publisher = pubsub_v1.PublisherClient()
    body, attributes = encode_tick(single)
    publisher.publish(topic, body, **attributes).result()
    batch_body = json.dumps([t._asdict() for t in batch]).encode()
    publisher.publish(topic, batch_body, **{TIMESTAMP_ATTRIBUTE: rfc3339_millis(min(t.ts_us for t in batch))}).result()
    publisher.publish(topic, b"{broken", **{TIMESTAMP_ATTRIBUTE: rfc3339_millis(now)}).result()
    publisher.stop()

    got = read_until(subscription, expected=3)

    assert {origin for origin, _, _ in got} == {subscription}
    by_body = {bytes(body): ts for _, body, ts in got}
    assert len(got) == 3
    assert by_body[body] == single.ts_us // 1000 * 1000  # the attribute's millisecond precision
    assert by_body[batch_body] == min(t.ts_us for t in batch) // 1000 * 1000
    assert by_body[b"{broken"] == now // 1000 * 1000  # passed on, for the parser to dead-letter


def test_waking_the_reader_makes_cancel_quick(pubsub_emulator):
    """An idle subscription: the DirectRunner's pull would block 30 s; a heartbeat ends it."""
    _, subscription = pubsub_emulator.create_topic_and_subscription("wake")
    started = time.monotonic()
    assert read_until(subscription, expected=0) == []
    assert time.monotonic() - started < 10


@pytest.mark.parametrize("kind", ["subscription", "topic"])
def test_a_missing_subscription_or_topic_is_named_when_the_source_is_built(pubsub_emulator, kind):
    missing = getattr(pubsub_emulator, f"{kind}_path")(pubsub_emulator.unique_name("missing"))
    with pytest.raises(UserFacingError, match=rf"Pub/Sub {kind} {missing} \(--{kind}\) does not exist"):
        _ = beam.Pipeline() | ReadTicksFromPubSub(**{kind: missing}, timestamp_attribute=TIMESTAMP_ATTRIBUTE)


def test_an_existing_subscription_passes_the_check(pubsub_emulator):
    _, subscription = pubsub_emulator.create_topic_and_subscription("exists")
    ReadTicksFromPubSub(subscription=subscription, timestamp_attribute=TIMESTAMP_ATTRIBUTE).check_exists()
