"""Query-parameter helpers shared by the routes: time ranges, limits and opaque cursors.

A cursor is URL-safe base64 of JSON ``[scope, position]``: the scope repeats the query it
belongs to (symbol, interval, ...), so a cursor replayed against another query is refused
rather than silently returning the wrong rows.
"""
from __future__ import annotations

import base64
import binascii
import datetime as dt
import json
import re
from typing import Annotated, Any

from pydantic import BeforeValidator

from alphastream.records import MICROS_PER_SECOND
from serving.errors import invalid
from serving.queries import EPOCH
from serving.settings import ApiSettings

# Far past and far future bounds for open-ended ranges (PostgreSQL timestamptz handles both).
MIN_TIME = dt.datetime(1900, 1, 1, tzinfo=dt.timezone.utc)
MAX_TIME = dt.datetime(9000, 1, 1, tzinfo=dt.timezone.utc)  # leaves room to align up
SECONDS_PER_DAY = 86_400


_NUMBER = re.compile(r"^\s*[-+]?[0-9.eE+-]+\s*$")


def _iso_text_only(value: Any) -> Any:
    """Refuse numbers: pydantic would read "0.5" as a Unix time, which the schema does not offer."""
    if isinstance(value, (int, float)) or (isinstance(value, str) and _NUMBER.match(value)):
        raise ValueError("expected an ISO-8601 time such as 2024-03-05T14:30:00Z")
    return value


IsoDateTime = Annotated[dt.datetime, BeforeValidator(_iso_text_only)]
"""A time parameter: ISO-8601 text only (no offset means UTC)."""


def utc(value: dt.datetime | None) -> dt.datetime | None:
    """The time in UTC; a time without an offset is taken to be UTC already."""
    if value is None:
        return None
    return value.replace(tzinfo=dt.timezone.utc) if value.tzinfo is None else value.astimezone(dt.timezone.utc)


def from_us(us: int) -> dt.datetime:
    return EPOCH + dt.timedelta(microseconds=us)


def to_us(value: dt.datetime) -> int:
    delta = value - EPOCH
    return (delta.days * SECONDS_PER_DAY + delta.seconds) * MICROS_PER_SECOND + delta.microseconds


def ceil_to(value: dt.datetime, step_us: int) -> dt.datetime:
    """The first epoch-aligned bucket start at or after ``value``."""
    return from_us(-(-to_us(value) // step_us) * step_us)


def checked_range(start: dt.datetime | None, end: dt.datetime | None, settings: ApiSettings
                  ) -> tuple[dt.datetime, dt.datetime]:
    """[start, end) in UTC with open ends filled in; 422 if reversed or longer than allowed."""
    lo, hi = utc(start) or MIN_TIME, utc(end) or MAX_TIME
    if lo >= hi:
        raise invalid(f"start ({lo.isoformat()}) must be before end ({hi.isoformat()})")
    if start is not None and end is not None:
        days = (hi - lo).total_seconds() / SECONDS_PER_DAY
        if days > settings.api_max_range_days:
            raise invalid(f"range of {days:.1f} days is too large: at most {settings.api_max_range_days:g} "
                          "days per request (page through a long history with several requests)")
    return lo, hi


def checked_limit(limit: int | None, settings: ApiSettings) -> int:
    if limit is None:
        return settings.api_default_limit
    if limit > settings.api_max_limit:
        raise invalid(f"limit {limit} is too large: at most {settings.api_max_limit} rows per page "
                      "(follow next_cursor for more)")
    return limit


def encode_cursor(scope: list[Any], position: Any) -> str:
    raw = json.dumps([scope, position], separators=(",", ":")).encode()
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def decode_cursor(cursor: str, scope: list[Any]) -> Any:
    """The position stored in a cursor made for this scope (422 otherwise)."""
    try:
        padded = cursor + "=" * (-len(cursor) % 4)
        stored_scope, position = json.loads(base64.urlsafe_b64decode(padded.encode()))
    except (binascii.Error, ValueError, TypeError, UnicodeError) as err:
        raise invalid("cursor is not one this API issued: pass next_cursor back unchanged") from err
    if stored_scope != scope:
        raise invalid("cursor belongs to a different query: keep the other parameters unchanged "
                      "while following next_cursor")
    return position
