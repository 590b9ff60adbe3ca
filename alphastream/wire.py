"""The wire format between the ingestion service and the streaming pipeline.

A single-tick message (``--ticks_per_message 1``):

* body: one JSON object with exactly the fields of ``alphastream.records.Tick`` (built from
  ``Tick._asdict()``, so the names live in one place);
* attribute ``ts`` (:data:`TIMESTAMP_ATTRIBUTE`): the trade's event time as RFC 3339 with
  milliseconds and ``Z``, e.g. ``2024-05-01T14:30:00.123Z``. Pass it to Beam's
  ``ReadFromPubSub(timestamp_attribute=TIMESTAMP_ATTRIBUTE)`` so elements carry event time
  (Pub/Sub timestamps have millisecond precision; the body keeps the exact ``ts_us``);
* attribute ``id`` (:data:`ID_ATTRIBUTE`): ``"{source}:{trade_id}"``, the dedup id, for
  ``ReadFromPubSub(id_label=ID_ATTRIBUTE)`` on runners that support it (Dataflow).

Batched messages (what ``PubSubSink`` sends by default): the body is a JSON *array* of such
tick objects, ``ts`` is the earliest tick's event time and ``id`` is ``"batch:<sha1 of the
ticks' dedup ids>"``. Batching is what makes the DirectRunner fast enough: its ReadFromPubSub
pulls 10 messages per read, so throughput is 10 x the ticks per message per read. The pipeline
(``pipeline.streaming_sources``) explodes a batch into ticks, each stamped with its own time;
duplicates are dropped per tick by (source, trade_id) inside the pipeline.

An empty array ``[]`` is a heartbeat: zero ticks, ``ts`` = when it was sent. The publisher sends
one when idle, so a reader's pull returns and its watermark advances (the DirectRunner's pull
otherwise blocks up to 30 s on an empty subscription, holding every window open).

Kafka records (``ingestion.sinks.kafka``) carry the same bodies, batched per symbol (the record key)
like Pub/Sub messages, with the attributes as headers and the earliest tick's time as the record's
timestamp.
"""
from __future__ import annotations

import datetime as dt
import hashlib
import json
from typing import Sequence

from alphastream.records import TICK_FIELDS, Tick

TIMESTAMP_ATTRIBUTE = "ts"
ID_ATTRIBUTE = "id"
BATCH_ID_PREFIX = "batch:"
HEARTBEAT_ID_PREFIX = "heartbeat:"

_EPOCH = dt.datetime(1970, 1, 1, tzinfo=dt.timezone.utc)
_MICROS_PER_MILLI = 1_000


class WireFormatError(ValueError):
    """A message body that is not a tick in the wire format."""


def rfc3339_millis(ts_us: int) -> str:
    """Epoch microseconds -> RFC 3339 UTC with millisecond precision (truncated), e.g.
    ``2024-05-01T14:30:00.123Z``. Truncation (not rounding) keeps the attribute inside the
    same window as ``ts_us`` for any window aligned to a whole millisecond."""
    millis = ts_us // _MICROS_PER_MILLI
    moment = _EPOCH + dt.timedelta(milliseconds=millis)
    return moment.strftime("%Y-%m-%dT%H:%M:%S.") + f"{millis % 1000:03d}Z"


def dedup_id(tick: Tick) -> str:
    """The message id attribute: ``"{source}:{trade_id}"``."""
    return f"{tick.source}:{tick.trade_id}"


def encode_tick(tick: Tick) -> tuple[bytes, dict[str, str]]:
    """A Tick -> (message body, message attributes)."""
    body = json.dumps(tick._asdict(), separators=(",", ":"), allow_nan=False).encode("utf-8")
    attributes = {TIMESTAMP_ATTRIBUTE: rfc3339_millis(tick.ts_us), ID_ATTRIBUTE: dedup_id(tick)}
    return body, attributes


def encode_batch(ticks: Sequence[Tick]) -> tuple[bytes, dict[str, str]]:
    """Several ticks -> one message: (JSON array body, attributes ts = earliest time, id)."""
    if not ticks:
        raise ValueError("a batch needs at least one tick (an empty batch is a heartbeat: encode_heartbeat)")
    body = json.dumps([t._asdict() for t in ticks], separators=(",", ":"), allow_nan=False).encode("utf-8")
    digest = hashlib.sha1("\n".join(dedup_id(t) for t in ticks).encode("utf-8")).hexdigest()
    attributes = {TIMESTAMP_ATTRIBUTE: rfc3339_millis(min(t.ts_us for t in ticks)),
                  ID_ATTRIBUTE: BATCH_ID_PREFIX + digest}
    return body, attributes


def encode_heartbeat(now_us: int) -> tuple[bytes, dict[str, str]]:
    """An empty batch stamped ``now_us``: moves a reader's watermark without carrying ticks."""
    return b"[]", {TIMESTAMP_ATTRIBUTE: rfc3339_millis(now_us), ID_ATTRIBUTE: f"{HEARTBEAT_ID_PREFIX}{now_us}"}


def decode_ticks(body: bytes | str) -> list[Tick]:
    """A message body (one tick object, or a batch array) -> its Ticks, strictly (for tests/tools)."""
    try:
        parsed = json.loads(body)
    except ValueError as err:
        raise WireFormatError(f"message body is not JSON: {err}") from None
    items = parsed if isinstance(parsed, list) else [parsed]
    return [decode_tick(json.dumps(item)) for item in items]


def decode_tick(body: bytes | str) -> Tick:
    """A message body -> Tick, strictly: exactly the Tick fields, with their types.

    For tests and tools; the pipeline validates untrusted payloads with its own parser
    (``transforms.parse``), which dead-letters instead of raising.
    """
    try:
        fields = json.loads(body)
    except ValueError as err:
        raise WireFormatError(f"message body is not JSON: {err}") from None
    if not isinstance(fields, dict) or set(fields) != set(TICK_FIELDS):
        got = sorted(fields) if isinstance(fields, dict) else type(fields).__name__
        raise WireFormatError(f"expected a JSON object with fields {list(TICK_FIELDS)}, got {got}")
    try:
        return Tick(
            symbol=str(fields["symbol"]),
            ts_us=int(fields["ts_us"]),
            price=float(fields["price"]),
            size=float(fields["size"]),
            trade_id=str(fields["trade_id"]),
            source=str(fields["source"]),
        )
    except (TypeError, ValueError) as err:
        raise WireFormatError(f"bad field value in {fields!r}: {err}") from None

