"""Turning untrusted input into Ticks, or into a rejection with a machine-readable reason.

Plain functions (no Beam) so every rule is unit-testable and shared by the per-record path
(Pub/Sub messages, JSON lines, CSV rows) and the columnar path (Parquet, synthetic batches),
which pre-filters with vectorised masks and asks these functions about every row it rejects.

The tick format accepted (also documented in the README):
    symbol    string; trimmed and upper-cased, then must match alphastream.records.SYMBOL_PATTERN
    ts_us     integer epoch microseconds UTC   -- or --   ts: ISO-8601 string (UTC if no offset)
              or a timestamp value (Parquet); finer than a microsecond is floored to the
              microsecond (toward the past), never rounded and never an error
    price     number (or numeric string), within [MIN_PRICE, MAX_PRICE]
    size      number (or numeric string), 0 or within [MIN_SIZE, MAX_SIZE]
    trade_id  string (trimmed, case kept) or integer (its decimal text), non-empty
    source    string, trimmed and lower-cased; optional, defaults to the reader's source name
              (normalised the same way)

A trade is (source, symbol, trade_id) after that normalisation, in every format and path.
Trimming removes ASCII whitespace and only ASCII letters change case, so Python and Arrow (the
columnar path) apply exactly the same rule. Text that UTF-8 cannot encode (a lone surrogate,
which json.loads accepts from "\\ud800") is rejected: no sink could store it.

Price and size ranges keep bar arithmetic finite and exact enough: price * size stays within
[1e-21, 1e27], so sums over billions of trades neither overflow nor fall into subnormals, and
VWAP = sum(price * size) / sum(size) stays finite and within the bar's [low, high].
"""
from __future__ import annotations

import csv
import datetime as dt
import io
import json
import math
import re
from dataclasses import dataclass
from typing import Any, Mapping, NamedTuple

from alphastream.records import MICROS_PER_SECOND, SYMBOL_PATTERN, DeadLetterReason, Tick

_SYMBOL_RE = re.compile(SYMBOL_PATTERN)
_EPOCH = dt.datetime(1970, 1, 1, tzinfo=dt.timezone.utc)
MIN_TS_US = int((dt.datetime(1990, 1, 1, tzinfo=dt.timezone.utc) - _EPOCH).total_seconds()) * MICROS_PER_SECOND
DEFAULT_MAX_FUTURE_SECONDS = 60
MIN_PRICE, MAX_PRICE = 1e-9, 1e12
MIN_SIZE, MAX_SIZE = 1e-12, 1e15  # a size of exactly 0 is accepted too
ASCII_WHITESPACE = " \t\n\r\f\v"
_ASCII_UPPER = str.maketrans("abcdefghijklmnopqrstuvwxyz", "ABCDEFGHIJKLMNOPQRSTUVWXYZ")
_ASCII_LOWER = str.maketrans("ABCDEFGHIJKLMNOPQRSTUVWXYZ", "abcdefghijklmnopqrstuvwxyz")
# Digits past the sixth of an ISO fraction: dropping them floors to the microsecond.
_SUB_MICRO_DIGITS = re.compile(r"([.,]\d{6})\d+")


class TickRejected(ValueError):
    """A record that is not a valid tick, with the reason code and a readable detail."""

    def __init__(self, reason: DeadLetterReason, detail: str, event_us: int | None = None):
        super().__init__(f"{reason.value}: {detail}")
        self.reason = reason
        self.detail = detail
        self.event_us = event_us  # the record's own valid event time, when it has one


class CsvRow(NamedTuple):
    """One CSV record as read: the file's header and the row's cells, decoded with
    ``surrogateescape`` so undecodable bytes reach the parser (and its dead letter) instead of
    ending the file. ``error`` is the csv module's complaint when the row could not be split."""

    header: tuple[str, ...]
    cells: tuple[str, ...]
    error: str | None = None
    raw: str | None = None  # the lines as read, kept when the row could not be split into cells


def canonical_symbol(text: str) -> str:
    text = text.strip(ASCII_WHITESPACE)
    return text.upper() if text.isascii() else text.translate(_ASCII_UPPER)


def canonical_source(text: str) -> str:
    text = text.strip(ASCII_WHITESPACE)
    return text.lower() if text.isascii() else text.translate(_ASCII_LOWER)


def canonical_trade_id(value: str | int) -> str:
    return str(value).strip(ASCII_WHITESPACE)


def _utf8_encodable(text: str) -> bool:
    if text.isascii():
        return True
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


def fields_from_json(payload: str | bytes) -> Any:
    """Decode one JSON record; bytes must be UTF-8 (a leading byte-order mark is dropped)."""
    if isinstance(payload, bytes):
        try:
            payload = payload.decode("utf-8-sig")
        except UnicodeDecodeError as err:
            raise TickRejected(DeadLetterReason.BAD_JSON,
                               f"not valid UTF-8: byte {err.object[err.start]:#04x} at offset {err.start}") from None
    try:
        return json.loads(payload.removeprefix("\ufeff"))
    except (ValueError, RecursionError) as err:  # RecursionError: nesting deeper than the stack
        raise TickRejected(DeadLetterReason.BAD_JSON, f"not valid JSON: {err}") from None


def fields_from_csv(row: CsvRow) -> dict[str, str]:
    """A CSV row as {header name: cell}; a row that cannot be mapped that way is no tick."""
    if row.error:
        raise TickRejected(DeadLetterReason.BAD_JSON, f"unreadable CSV row: {row.error}")
    if not all(_utf8_encodable(name) for name in row.header):
        raise TickRejected(DeadLetterReason.BAD_JSON, "the CSV header is not valid UTF-8")
    if not all(_utf8_encodable(cell) for cell in row.cells):
        raise TickRejected(DeadLetterReason.BAD_JSON, "CSV row is not valid UTF-8")
    if len(row.cells) != len(row.header):
        raise TickRejected(DeadLetterReason.BAD_JSON, f"CSV row has {len(row.cells)} cells but the header names "
                                                      f"{len(row.header)} columns ({','.join(row.header)})")
    return dict(zip(row.header, row.cells, strict=True))


def raw_text(payload: str | bytes | CsvRow) -> str:
    """A payload as text any sink can store: undecodable bytes as ``\\xff``, lone surrogates
    as ``\\ud800``; a CSV row as its CSV line."""
    if isinstance(payload, CsvRow) and payload.raw is not None:
        payload = payload.raw
    elif isinstance(payload, CsvRow):
        line = io.StringIO()
        csv.writer(line, lineterminator="").writerow(payload.cells)
        payload = line.getvalue()
    if isinstance(payload, str):
        if _utf8_encodable(payload):
            return payload
        try:  # CSV cells carry undecodable bytes as surrogateescape: give the bytes back
            undecodable = payload.encode("utf-8", "surrogateescape")
        except UnicodeEncodeError:
            return payload.encode("utf-8", "backslashreplace").decode("utf-8")
        return undecodable.decode("utf-8", "backslashreplace")
    return payload.decode("utf-8", "backslashreplace")


@dataclass(frozen=True)
class ValidationPolicy:
    """Limits a tick must respect. ``now_us`` is supplied by the caller (transforms keep no clock)."""

    max_future_us: int = DEFAULT_MAX_FUTURE_SECONDS * MICROS_PER_SECOND
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
    except OverflowError:
        raise TickRejected(reason, f"{name} is an integer beyond a float's range") from None
    except ValueError:
        raise TickRejected(reason, f"{name}={value!r} is not a number") from None
    if not math.isfinite(number):
        raise TickRejected(reason, f"{name}={value!r} is not finite")
    return number


def _text(fields: Mapping[str, Any], name: str, default: str | None = None) -> str:
    value = fields.get(name)
    if isinstance(value, str):
        value = value.strip(ASCII_WHITESPACE)
    if value is None or value == "":
        if default is not None:
            return default
        raise TickRejected(DeadLetterReason.MISSING_FIELD, f"field {name!r} is missing")
    if isinstance(value, bool) or not isinstance(value, (str, int)):
        raise TickRejected(DeadLetterReason.MISSING_FIELD, f"field {name!r}={value!r} is not text")
    text = str(value)
    if not _utf8_encodable(text):
        raise TickRejected(DeadLetterReason.BAD_JSON,
                           f"field {name!r}={value!r} holds a lone surrogate, which UTF-8 cannot encode")
    return text


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
            moment = raw if isinstance(raw, dt.datetime) else dt.datetime.fromisoformat(
                _SUB_MICRO_DIGITS.sub(r"\1", str(raw).strip()))
        except ValueError:
            raise TickRejected(
                DeadLetterReason.BAD_TIMESTAMP, f"ts={raw!r} is not an ISO-8601 timestamp"
            ) from None
        if moment.tzinfo is None:
            moment = moment.replace(tzinfo=dt.timezone.utc)
        delta = moment - _EPOCH
        return (delta.days * 86_400 + delta.seconds) * MICROS_PER_SECOND + delta.microseconds
    raise TickRejected(DeadLetterReason.MISSING_FIELD, "field 'ts_us' (or 'ts') is missing")


def tick_from_fields(
    fields: Mapping[str, Any], *, now_us: int, default_source: str, policy: ValidationPolicy = ValidationPolicy()
) -> Tick:
    """Validate one decoded record and build a Tick, or raise TickRejected (carrying the
    record's event time when it has a valid one, so its dead letter is dated by it)."""
    try:
        return _checked_tick(fields, now_us=now_us, default_source=default_source, policy=policy)
    except TickRejected as rejection:
        if rejection.event_us is None and isinstance(fields, Mapping):
            rejection.event_us = _valid_event_time(fields, now_us, policy)
        raise


def _valid_event_time(fields: Mapping[str, Any], now_us: int, policy: ValidationPolicy) -> int | None:
    try:
        ts_us = parse_timestamp_us(fields)
    except TickRejected:
        return None
    return ts_us if policy.min_ts_us <= ts_us <= now_us + policy.max_future_us else None


def _checked_tick(fields: Mapping[str, Any], *, now_us: int, default_source: str, policy: ValidationPolicy) -> Tick:
    if not isinstance(fields, Mapping):
        raise TickRejected(DeadLetterReason.BAD_JSON, f"expected a JSON object, got {type(fields).__name__}")
    symbol = canonical_symbol(_text(fields, "symbol"))
    if not _SYMBOL_RE.match(symbol):
        raise TickRejected(DeadLetterReason.BAD_SYMBOL, f"symbol {symbol!r} does not match {SYMBOL_PATTERN}")
    ts_us = parse_timestamp_us(fields)
    if ts_us < policy.min_ts_us:
        raise TickRejected(DeadLetterReason.BAD_TIMESTAMP, f"timestamp {ts_us} us is before 1990")
    if ts_us > now_us + policy.max_future_us:
        ahead_s = (ts_us - now_us) / MICROS_PER_SECOND
        raise TickRejected(
            DeadLetterReason.FUTURE_TIMESTAMP,
            f"timestamp is {ahead_s:.1f} s in the future (limit {policy.max_future_us / MICROS_PER_SECOND:.0f} s)",
        )
    price = _number(fields, "price")
    if not MIN_PRICE <= price <= MAX_PRICE:
        raise TickRejected(DeadLetterReason.BAD_PRICE,
                           f"price={price!r} is outside [{MIN_PRICE:g}, {MAX_PRICE:g}]")
    size = _number(fields, "size")
    if size != 0 and not MIN_SIZE <= size <= MAX_SIZE:
        raise TickRejected(DeadLetterReason.BAD_SIZE,
                           f"size={size!r} is outside [{MIN_SIZE:g}, {MAX_SIZE:g}] (and not 0)")
    trade_id = canonical_trade_id(_text(fields, "trade_id"))
    source = canonical_source(_text(fields, "source", default=default_source))
    return Tick(symbol=symbol, ts_us=ts_us, price=price, size=size, trade_id=trade_id, source=source)


def tick_from_json(
    payload: str | bytes, *, now_us: int, default_source: str, policy: ValidationPolicy = ValidationPolicy()
) -> Tick:
    """Parse one JSON object (a Pub/Sub body or a JSON line) into a Tick, or raise TickRejected."""
    return tick_from_fields(fields_from_json(payload), now_us=now_us, default_source=default_source, policy=policy)


def tick_from_payload(
    payload: str | bytes | CsvRow, *, now_us: int, default_source: str, policy: ValidationPolicy = ValidationPolicy()
) -> Tick:
    """A JSON record or a CSV row -> Tick, or raise TickRejected."""
    fields = fields_from_csv(payload) if isinstance(payload, CsvRow) else fields_from_json(payload)
    return tick_from_fields(fields, now_us=now_us, default_source=default_source, policy=policy)
