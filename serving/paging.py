"""Query-parameter helpers shared by the routes: time ranges, limits, opaque cursors and the
keyset paging of the newest-first tables.

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
from dataclasses import dataclass
from typing import Annotated, Any

from fastapi import Query
from fastapi.responses import Response
from psycopg import sql
from psycopg_pool import AsyncConnectionPool
from pydantic import AfterValidator, BeforeValidator

from alphastream.records import MICROS_PER_SECOND
from serving import encoding
from serving.errors import invalid
from serving.queries import EPOCH
from serving.settings import ApiSettings

# Far past and far future bounds of every bar range the API reads. The store holds no bar
# outside them (the pipeline dead-letters ticks before 1990 and from the future), so a range is
# clipped to them; that leaves room to align up to any interval without leaving the calendar.
MIN_TIME = dt.datetime(1900, 1, 1, tzinfo=dt.timezone.utc)
MAX_TIME = dt.datetime(9000, 1, 1, tzinfo=dt.timezone.utc)
SECONDS_PER_DAY = 86_400


NOT_ISSUED = "cursor is not one this API issued: pass next_cursor back unchanged"
MAX_CURSOR_LENGTH = 512

LimitParam = Annotated[int | None, Query(ge=1, description="Rows per page (default and maximum: see settings).")]
CursorParam = Annotated[str | None, Query(max_length=MAX_CURSOR_LENGTH,
                                          description="next_cursor of the previous page.")]

_NUMBER = re.compile(r"^\s*[-+]?[0-9.eE+-]+\s*$")


def _iso_text_only(value: Any) -> Any:
    """Refuse numbers: pydantic would read "0.5" as a Unix time, which the schema does not offer."""
    if isinstance(value, (int, float)) or (isinstance(value, str) and _NUMBER.match(value)):
        raise ValueError("expected an ISO-8601 time such as 2024-03-05T14:30:00Z")
    return value


def utc(value: dt.datetime) -> dt.datetime:
    """The time in UTC; a time without an offset is taken to be UTC already.

    Raises ValueError (a 422 for a parameter) when the time in UTC falls outside the calendar,
    as ``0001-01-01T00:00:00+14:00`` does.
    """
    if value.tzinfo is None:
        return value.replace(tzinfo=dt.timezone.utc)
    try:
        return value.astimezone(dt.timezone.utc)
    except OverflowError as err:
        raise ValueError(f"{value.isoformat()} is outside the calendar in UTC: give a time between "
                         "0001-01-01T00:00:00Z and 9999-12-31T23:59:59Z") from err


IsoDateTime = Annotated[dt.datetime, BeforeValidator(_iso_text_only), AfterValidator(utc)]
"""A time parameter: ISO-8601 text only (no offset means UTC), converted to UTC."""


def from_us(us: int) -> dt.datetime:
    return EPOCH + dt.timedelta(microseconds=us)


def to_us(value: dt.datetime) -> int:
    delta = value - EPOCH
    return (delta.days * SECONDS_PER_DAY + delta.seconds) * MICROS_PER_SECOND + delta.microseconds


_CALENDAR_US = range(to_us(dt.datetime.min.replace(tzinfo=dt.timezone.utc)),
                     to_us(dt.datetime.max.replace(tzinfo=dt.timezone.utc)) + 1)


def in_calendar(us: Any) -> bool:
    """Whether ``us`` is an integer of epoch microseconds that ``from_us`` can represent."""
    return type(us) is int and us in _CALENDAR_US


def time_position(position: Any) -> dt.datetime:
    """The time a cursor position holds (epoch microseconds); 422 unless it is an integer in
    the calendar, as every position the API issues is."""
    if not in_calendar(position):
        raise invalid(NOT_ISSUED)
    return from_us(position)


def ceil_to(value: dt.datetime, step_us: int) -> dt.datetime:
    """The first epoch-aligned bucket start at or after ``value``."""
    return from_us(-(-to_us(value) // step_us) * step_us)


def checked_range(start: dt.datetime | None, end: dt.datetime | None, settings: ApiSettings
                  ) -> tuple[dt.datetime, dt.datetime]:
    """[start, end) in UTC, an open end being the end of the stored span, clipped to
    [MIN_TIME, MAX_TIME] (a range wholly outside is empty); 422 if reversed or longer than allowed."""
    lo, hi = (start and utc(start)) or MIN_TIME, (end and utc(end)) or MAX_TIME
    if start is not None and end is not None:
        if lo >= hi:
            raise invalid(f"start ({lo.isoformat()}) must be before end ({hi.isoformat()})")
        days = (hi - lo).total_seconds() / SECONDS_PER_DAY
        if days > settings.api_max_range_days:
            raise invalid(f"range of {days:.1f} days is too large: at most {settings.api_max_range_days:g} "
                          "days per request (page through a long history with several requests)")
    return min(max(lo, MIN_TIME), MAX_TIME), min(max(hi, MIN_TIME), MAX_TIME)


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


def _holds_nul(value: Any) -> bool:
    if isinstance(value, str):
        return "\x00" in value
    if isinstance(value, list):
        return any(_holds_nul(item) for item in value)
    return isinstance(value, dict) and _holds_nul(list(value.items()))


def decode_cursor(cursor: str, scope: list[Any]) -> Any:
    """The position stored in a cursor made for this scope (422 otherwise).

    A position never holds a NUL character (PostgreSQL text cannot), so a cursor with one is
    refused here rather than failing in the database.
    """
    try:
        padded = cursor + "=" * (-len(cursor) % 4)
        text = base64.urlsafe_b64decode(padded.encode()).decode()
        stored_scope, position = json.loads(text)
    except (binascii.Error, ValueError, TypeError, UnicodeError) as err:
        raise invalid(NOT_ISSUED) from err
    if _holds_nul(position):
        raise invalid(NOT_ISSUED)
    if stored_scope != scope:
        raise invalid("cursor belongs to a different query: keep the other parameters unchanged "
                      "while following next_cursor")
    return position


@dataclass(frozen=True)
class Keyset:
    """A table paged newest first by its key: ``query`` selects each row's key (a time in epoch
    microseconds, then texts), then its ``columns``, after the key bound to ``after`` (all null
    for the first page), at most %(rows)s rows."""

    query: sql.Composed
    after: tuple[str, ...]  # the bound parameters of the key to resume after, in key order
    columns: tuple[str, ...]


def keyset_position(cursor: str | None, scope: list[Any], length: int) -> list[Any]:
    """The key a cursor resumes after (``length`` nulls without one), its time as a datetime;
    422 unless it is a key this API issued for ``scope``."""
    if cursor is None:
        return [None] * length
    position = decode_cursor(cursor, scope)
    if not (isinstance(position, list) and len(position) == length
            and isinstance(position[0], int) and all(isinstance(v, str) for v in position[1:])):
        raise invalid(NOT_ISSUED)
    return [time_position(position[0]), *position[1:]]


async def keyset_page(pool: AsyncConnectionPool, keyset: Keyset, *, scope: list[Any], filters: dict[str, Any],
                      limit: int | None, cursor: str | None, settings: ApiSettings) -> Response:
    """One page as ``{"next_cursor": ..., "items": [...]}``; ``filters`` bind the query's other
    parameters, and ``scope`` names them for the cursor."""
    rows = checked_limit(limit, settings)
    after = keyset_position(cursor, scope, len(keyset.after))
    # One extra row tells whether a next page exists.
    params = {**filters, **dict(zip(keyset.after, after, strict=True)), "rows": rows + 1}
    async with pool.connection() as conn:
        found = await (await conn.execute(keyset.query, params)).fetchall()
    key_length = len(keyset.after)
    next_cursor = encode_cursor(scope, list(found[rows - 1][:key_length])) if len(found) > rows else None
    items = encoding.row_dicts(keyset.columns, (row[key_length:] for row in found[:rows]))
    return Response(encoding.dumps({"next_cursor": next_cursor, "items": items}), media_type="application/json")
