"""The wire format the streaming pipeline parses: body = the Tick fields as JSON, attributes
ts (RFC 3339, ms, Z) and id (source:trade_id)."""
from __future__ import annotations

import json

import pytest

from alphastream.records import TICK_FIELDS, Tick
from alphastream.wire import (
    ID_ATTRIBUTE,
    TIMESTAMP_ATTRIBUTE,
    WireFormatError,
    decode_tick,
    dedup_id,
    encode_tick,
    rfc3339_millis,
)

TICK = Tick("BRK.B", 1714573800123999, 405.25, 3.0, "BRK.B-17", "synthetic")


def test_body_has_exactly_the_tick_fields_in_record_order():
    body, _ = encode_tick(TICK)
    assert tuple(json.loads(body)) == TICK_FIELDS
    assert json.loads(body) == TICK._asdict()


def test_attributes_are_event_time_in_rfc3339_millis_and_the_dedup_id():
    _, attributes = encode_tick(TICK)
    assert attributes == {TIMESTAMP_ATTRIBUTE: "2024-05-01T14:30:00.123Z", ID_ATTRIBUTE: "synthetic:BRK.B-17"}
    assert (TIMESTAMP_ATTRIBUTE, ID_ATTRIBUTE) == ("ts", "id")


@pytest.mark.parametrize("ts_us, text", [
    (0, "1970-01-01T00:00:00.000Z"),
    (1714573800000000, "2024-05-01T14:30:00.000Z"),
    (1714573800999999, "2024-05-01T14:30:00.999Z"),  # truncated, never rounded into the next second
    (1709164800001000, "2024-02-29T00:00:00.001Z"),
])
def test_rfc3339_millis(ts_us, text):
    assert rfc3339_millis(ts_us) == text


def test_beam_reads_the_timestamp_attribute_as_the_tick_millisecond():
    """What ReadFromPubSub(timestamp_attribute="ts") does with our attribute."""
    from apache_beam.utils.timestamp import Timestamp

    _, attributes = encode_tick(TICK)
    assert Timestamp.from_rfc3339(attributes[TIMESTAMP_ATTRIBUTE]).micros == TICK.ts_us // 1000 * 1000


def test_decode_round_trips_and_is_strict():
    body, _ = encode_tick(TICK)
    assert decode_tick(body) == TICK
    assert dedup_id(decode_tick(body)) == "synthetic:BRK.B-17"
    for bad in (b"not json", b"[1]", json.dumps({**TICK._asdict(), "extra": 1}).encode(),
                json.dumps({k: v for k, v in TICK._asdict().items() if k != "price"}).encode(),
                json.dumps({**TICK._asdict(), "ts_us": "soon"}).encode()):
        with pytest.raises(WireFormatError):
            decode_tick(bad)


def test_non_finite_numbers_are_refused_at_encoding():
    with pytest.raises(ValueError):
        encode_tick(TICK._replace(price=float("nan")))


def test_a_batch_is_a_json_array_stamped_with_its_earliest_tick():
    from alphastream.wire import BATCH_ID_PREFIX, decode_ticks, encode_batch

    ticks = [TICK, TICK._replace(ts_us=TICK.ts_us - 5_000, trade_id="BRK.B-16")]
    body, attributes = encode_batch(ticks)
    assert json.loads(body) == [t._asdict() for t in ticks]
    assert decode_ticks(body) == ticks
    assert attributes[TIMESTAMP_ATTRIBUTE] == rfc3339_millis(TICK.ts_us - 5_000)
    assert attributes[ID_ATTRIBUTE].startswith(BATCH_ID_PREFIX)
    assert encode_batch(ticks)[1] == attributes, "the batch id is deterministic"
    assert encode_batch(ticks[:1])[1][ID_ATTRIBUTE] != attributes[ID_ATTRIBUTE]
    with pytest.raises(ValueError, match="heartbeat"):
        encode_batch([])


def test_a_heartbeat_is_an_empty_batch_that_the_pipeline_splits_into_nothing():
    from alphastream.wire import decode_ticks, encode_heartbeat
    from transforms.tick_batches import decode_tick_batch

    body, attributes = encode_heartbeat(TICK.ts_us)
    assert body == b"[]" and decode_ticks(body) == []
    assert attributes[TIMESTAMP_ATTRIBUTE] == rfc3339_millis(TICK.ts_us)
    assert decode_tick_batch(body) == []
