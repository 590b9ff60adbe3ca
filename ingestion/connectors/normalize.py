"""Helpers that turn feed values into Tick fields: epoch microseconds, upper-case symbols,
finite positive prices. Each raises MalformedFrame with the offending value."""
from __future__ import annotations

import datetime as dt
import math
import re
from typing import Any, Mapping

from alphastream.records import MICROS_PER_SECOND, SYMBOL_PATTERN, Tick
from ingestion.connectors.base import MalformedFrame

_SYMBOL_RE = re.compile(SYMBOL_PATTERN)
_EPOCH = dt.datetime(1970, 1, 1, tzinfo=dt.timezone.utc)
# RFC 3339 with an optional fraction of any length; Python parses at most 6 digits.
_RFC3339_RE = re.compile(r"^(\d{4}-\d{2}-\d{2}[T ]\d{2}:\d{2}:\d{2})(?:\.(\d+))?(Z|[+-]\d{2}:?\d{2})?$")
MICROS_PER_MILLI = 1_000


def field(frame: Mapping[str, Any], name: str) -> Any:
    """``frame[name]``, or MalformedFrame naming the missing field."""
    if not isinstance(frame, Mapping):
        raise MalformedFrame(f"expected a JSON object, got {type(frame).__name__}")
    value = frame.get(name)
    if value is None or value == "":
        raise MalformedFrame(f"field {name!r} is missing")
    return value


def number(value: Any, what: str) -> float:
    """A JSON number or numeric string -> finite float."""
    if isinstance(value, bool) or not isinstance(value, (int, float, str)):
        raise MalformedFrame(f"{what}={value!r} is not a number")
    try:
        result = float(value)
    except ValueError:
        raise MalformedFrame(f"{what}={value!r} is not a number") from None
    if not math.isfinite(result):
        raise MalformedFrame(f"{what}={value!r} is not finite")
    return result


def whole_number(value: Any, what: str) -> int:
    """A JSON integer or integer text (a trade number) -> int."""
    if isinstance(value, bool) or not isinstance(value, (int, str)):
        raise MalformedFrame(f"{what}={value!r} is not a whole number")
    try:
        return int(value)
    except ValueError:
        raise MalformedFrame(f"{what}={value!r} is not a whole number") from None


def epoch_ms_to_us(value: Any) -> int:
    """Epoch milliseconds (int or numeric string) -> epoch microseconds."""
    millis = number(value, "timestamp_ms")
    if not millis.is_integer():
        raise MalformedFrame(f"timestamp {value!r} is not whole milliseconds")
    return int(millis) * MICROS_PER_MILLI


def rfc3339_to_us(value: Any) -> int:
    """RFC 3339 text (any fraction length; nanoseconds are truncated) -> epoch microseconds."""
    match = _RFC3339_RE.match(value.strip()) if isinstance(value, str) else None
    if not match:
        raise MalformedFrame(f"timestamp {value!r} is not RFC 3339")
    whole, fraction, zone = match.groups()
    try:
        moment = dt.datetime.fromisoformat(whole)
    except ValueError:
        raise MalformedFrame(f"timestamp {value!r} is not a valid date and time") from None
    if zone and zone != "Z":
        sign = 1 if zone[0] == "+" else -1
        digits = zone[1:].replace(":", "")
        offset = dt.timedelta(hours=int(digits[:2]), minutes=int(digits[2:]))
        moment = moment.replace(tzinfo=dt.timezone(sign * offset))
    else:
        moment = moment.replace(tzinfo=dt.timezone.utc)
    micros = int((fraction or "0")[:6].ljust(6, "0"))
    delta = moment - _EPOCH
    return (delta.days * 86_400 + delta.seconds) * MICROS_PER_SECOND + micros


def canonical_symbol(value: Any) -> str:
    """The feed's own symbol, upper-cased and checked against SYMBOL_PATTERN.

    Feeds keep their canonical spelling (Coinbase BTC-USD, Kraken BTC/USD, Binance BTCUSDT);
    only characters the pattern forbids are mapped: ':' (Finnhub's EXCHANGE:PAIR) -> '_'.
    """
    if not isinstance(value, str):
        raise MalformedFrame(f"symbol {value!r} is not text")
    symbol = value.strip().upper().replace(":", "_")
    if not _SYMBOL_RE.match(symbol):
        raise MalformedFrame(f"symbol {value!r} does not match {SYMBOL_PATTERN}")
    return symbol


def make_tick(*, symbol: str, ts_us: int, price: Any, size: Any, trade_id: Any, source: str) -> Tick:
    """Build a Tick, checking price > 0 and size >= 0 (what the pipeline would reject anyway)."""
    price_value = number(price, "price")
    size_value = number(size, "size")
    if price_value <= 0:
        raise MalformedFrame(f"price={price!r} must be > 0")
    if size_value < 0:
        raise MalformedFrame(f"size={size!r} must be >= 0")
    if trade_id is None or str(trade_id).strip() == "":
        raise MalformedFrame("trade id is missing")
    return Tick(symbol=symbol, ts_us=int(ts_us), price=price_value, size=size_value,
                trade_id=str(trade_id).strip(), source=source)
