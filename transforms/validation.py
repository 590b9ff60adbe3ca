"""Turning untrusted input into Ticks, or into a rejection with a machine-readable reason.

Plain functions (no Beam) so every rule is unit-testable and shared by the per-record path
(Pub/Sub messages, JSON lines, CSV rows) and the columnar path (Parquet, synthetic batches),
which pre-filters with vectorised masks and asks these functions about every row it rejects.

The tick format accepted (also documented in the README):
    symbol    string, upper-cased; must match alphastream.records.SYMBOL_PATTERN
    ts_us     integer epoch microseconds UTC   -- or --   ts: ISO-8601 string (UTC if no offset)
    price     number (or numeric string), finite and > 0
    size      number (or numeric string), finite and >= 0
    trade_id  string or integer, non-empty
    source    string; optional, defaults to the reader's source name
"""
from __future__ import annotations

import datetime as dt
import json
import math
import re
from dataclasses import dataclass
from typing import Any, Mapping

from alphastream.records import SYMBOL_PATTERN, DeadLetterReason, Tick

_SYMBOL_RE = re.compile(SYMBOL_PATTERN)
_EPOCH = dt.datetime(1970, 1, 1, tzinfo=dt.timezone.utc)
MIN_TS_US = int((dt.datetime(1990, 1, 1, tzinfo=dt.timezone.utc) - _EPOCH).total_seconds()) * 1_000_000
DEFAULT_MAX_FUTURE_SECONDS = 60


class TickRejected(ValueError):
    """A record that is not a valid tick, with the reason code and a readable detail."""

    def __init__(self, reason: DeadLetterReason, detail: str):
        super().__init__(f"{reason.value}: {detail}")
        self.reason = reason
        self.detail = detail


@dataclass(frozen=True)
class ValidationPolicy:
    """Limits a tick must respect. ``now_us`` is supplied by the caller (transforms keep no clock)."""

    max_future_us: int = DEFAULT_MAX_FUTURE_SECONDS * 1_000_000
    min_ts_us: int = MIN_TS_US


def _number(fields: Mapping[str, Any], name: str) -> float:
    value = fields.get(name)
    if value is None or value == "":
        raise TickRejected(DeadLetterReason.MISSING_FIELD, f"field {name!r} is missing")
    reason = DeadLetterReason.BAD_PRICE if name == "price" else DeadLetterReason.BAD_SIZE
    if isinstance(value, bool) or not isinstance(value, (int, float, str)):
        raise TickRejected(reason, f"{name}={value!r} is not a number")
    try:
        number = float(value)
    except ValueError:
        raise TickRejected(reason, f"{name}={value!r} is not a number") from None
    if not math.isfinite(number):
        raise TickRejected(reason, f"{name}={value!r} is not finite")
    return number


def _text(fields: Mapping[str, Any], name: str, default: str | None = None) -> str:
    value = fields.get(name)
    if value is None or (isinstance(value, str) and not value.strip()):
        if default is not None:
            return default
        raise TickRejected(DeadLetterReason.MISSING_FIELD, f"field {name!r} is missing")
    if isinstance(value, bool) or not isinstance(value, (str, int)):
        raise TickRejected(DeadLetterReason.MISSING_FIELD, f"field {name!r}={value!r} is not text")
    return str(value).strip()


def parse_timestamp_us(fields: Mapping[str, Any]) -> int:
    """Event time in epoch microseconds from ``ts_us`` (integer) or ``ts`` (ISO-8601 string)."""
    if fields.get("ts_us") not in (None, ""):
        raw = fields["ts_us"]
        try:
            if isinstance(raw, bool):
                raise ValueError
            as_float = float(raw)
            if not as_float.is_integer():
                raise ValueError
            return int(raw) if isinstance(raw, int) else int(as_float)
        except (TypeError, ValueError, OverflowError):
            raise TickRejected(
                DeadLetterReason.BAD_TIMESTAMP, f"ts_us={raw!r} is not integer epoch microseconds"
            ) from None
    if fields.get("ts") not in (None, ""):
        raw = fields["ts"]
        try:
            moment = dt.datetime.fromisoformat(str(raw).strip())
        except ValueError:
            raise TickRejected(
                DeadLetterReason.BAD_TIMESTAMP, f"ts={raw!r} is not an ISO-8601 timestamp"
            ) from None
        if moment.tzinfo is None:
            moment = moment.replace(tzinfo=dt.timezone.utc)
        delta = moment - _EPOCH
        return (delta.days * 86_400 + delta.seconds) * 1_000_000 + delta.microseconds
    raise TickRejected(DeadLetterReason.MISSING_FIELD, "field 'ts_us' (or 'ts') is missing")


def tick_from_fields(
    fields: Mapping[str, Any], *, now_us: int, default_source: str, policy: ValidationPolicy = ValidationPolicy()
) -> Tick:
    """Validate one decoded record and build a Tick, or raise TickRejected."""
    if not isinstance(fields, Mapping):
        raise TickRejected(DeadLetterReason.BAD_JSON, f"expected a JSON object, got {type(fields).__name__}")
    symbol = _text(fields, "symbol").upper()
    if not _SYMBOL_RE.match(symbol):
        raise TickRejected(DeadLetterReason.BAD_SYMBOL, f"symbol {symbol!r} does not match {SYMBOL_PATTERN}")
    ts_us = parse_timestamp_us(fields)
    if ts_us < policy.min_ts_us:
        raise TickRejected(DeadLetterReason.BAD_TIMESTAMP, f"timestamp {ts_us} us is before 1990")
    if ts_us > now_us + policy.max_future_us:
        ahead_s = (ts_us - now_us) / 1e6
        raise TickRejected(
            DeadLetterReason.FUTURE_TIMESTAMP,
            f"timestamp is {ahead_s:.1f} s in the future (limit {policy.max_future_us / 1e6:.0f} s)",
        )
    price = _number(fields, "price")
    if price <= 0:
        raise TickRejected(DeadLetterReason.BAD_PRICE, f"price={price!r} must be > 0")
    size = _number(fields, "size")
    if size < 0:
        raise TickRejected(DeadLetterReason.BAD_SIZE, f"size={size!r} must be >= 0")
    trade_id = _text(fields, "trade_id")
    source = _text(fields, "source", default=default_source)
    return Tick(symbol=symbol, ts_us=ts_us, price=price, size=size, trade_id=trade_id, source=source)


def tick_from_json(
    payload: str | bytes, *, now_us: int, default_source: str, policy: ValidationPolicy = ValidationPolicy()
) -> Tick:
    """Parse one JSON object (a Pub/Sub body or a JSON line) into a Tick, or raise TickRejected."""
    try:
        fields = json.loads(payload)
    except (ValueError, UnicodeDecodeError) as err:
        raise TickRejected(DeadLetterReason.BAD_JSON, f"not valid JSON: {err}") from None
    return tick_from_fields(fields, now_us=now_us, default_source=default_source, policy=policy)
