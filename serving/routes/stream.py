"""``GET /v1/stream/bars``: server-sent events with bars as the store writes them.

The server polls ``bars.updated_at`` every ``api_stream_poll_seconds`` and pushes each new or
updated bar as ``event: bar`` with the bar's JSON (the shape of ``/v1/bars`` items) and its
``updated_at`` in epoch microseconds as the event id, so a reconnecting client (``Last-Event-ID``)
resumes where it stopped. A stream is bounded: it closes after ``max_events`` events or
``timeout_seconds``, whichever comes first, and clients reconnect.
"""
from __future__ import annotations

import datetime as dt
import time
from typing import Annotated, Any, AsyncIterator

import anyio
from fastapi import APIRouter, Header, Query, Request
from fastapi.responses import StreamingResponse
from psycopg_pool import AsyncConnectionPool
from pydantic import AfterValidator

from alphastream.intervals import IntervalError, canonical_interval
from serving import encoding, queries
from serving.catalog import SymbolInfo
from serving.deps import Pool, Settings, StoreCatalog
from serving.errors import invalid
from serving.models import ERROR_RESPONSES, NOT_FOUND
from serving.paging import from_us, in_calendar, to_us
from serving.routes.symbols import SymbolsParam, known_symbols, symbol_list
from serving.settings import ApiSettings

router = APIRouter(tags=["bars"])

EVENT_STREAM = "text/event-stream"
# A transaction that began before a poll may commit a bar stamped (by now()) before it: each
# poll looks this far behind the newest updated_at it has seen, and skips what it already sent.
COMMIT_SLACK = dt.timedelta(seconds=2)
HEARTBEAT_SECONDS = 15.0  # an SSE comment keeps proxies from closing a quiet stream
RECONNECT_MILLISECONDS = 2_000
BarKey = tuple[str, str, int]  # symbol, interval, bucket start in epoch us


def stream_series(infos: list[SymbolInfo], interval: str | None) -> list[str]:
    """The stored interval streamed for each symbol: the one asked for, else its shortest."""
    if interval is None:
        return [info.finest.interval for info in infos]
    try:
        canonical = canonical_interval(interval)
    except IntervalError as err:
        raise invalid(str(err)) from err
    missing = [info.symbol for info in infos if canonical not in info.intervals]
    if missing:
        raise invalid(f"interval {canonical} is not stored for {', '.join(missing)}: the stream pushes "
                      "stored bars only (poll /v1/bars for roll-ups)")
    return [canonical] * len(infos)


def _sent_event_id(value: str | None) -> str | None:
    """Refuse an id no stream sends: all digits, but past the calendar (``from_us`` overflows)."""
    if value is not None and not in_calendar(int(value)):
        raise ValueError(f"{value} is not an event id this stream sent: reconnect without Last-Event-ID")
    return value


LastEventIdHeader = Annotated[str | None, Header(
    pattern=r"^[0-9]{1,32}$", description="Resume after this event id (the id of the last event received)."),
    AfterValidator(_sent_event_id)]
StoredIntervalParam = Annotated[str | None, Query(max_length=8,
                                                  description="Stored interval (default: each symbol's shortest).")]
MaxEventsParam = Annotated[int | None, Query(ge=1, description="Close after this many events.")]
TimeoutParam = Annotated[float | None, Query(gt=0, description="Close after this many seconds.")]


def bounded(value: float | None, most: float, name: str) -> float:
    if value is None:
        return most
    if value > most:
        raise invalid(f"{name} {value:g} is too large: at most {most:g}")
    return value


def sse_event(event_id: int, data: str) -> str:
    return f"event: bar\nid: {event_id}\ndata: {data}\n\n"


@router.get("/stream/bars", response_class=StreamingResponse, summary="Live bars (server-sent events)",
            responses={**ERROR_RESPONSES, **NOT_FOUND,
                       200: {"content": {EVENT_STREAM: {"schema": {"type": "string"}}},
                             "description": "`event: bar` messages; data is a bar as in /v1/bars."}})
async def stream_bars(
    request: Request, pool: Pool, catalog: StoreCatalog, settings: Settings, symbols: SymbolsParam,
    interval: StoredIntervalParam = None, max_events: MaxEventsParam = None, timeout_seconds: TimeoutParam = None,
    last_event_id: LastEventIdHeader = None,
) -> StreamingResponse:
    """Bars of the symbols written after the stream opened (or after ``Last-Event-ID``)."""
    infos = await known_symbols(catalog, pool, symbol_list(symbols, settings.api_max_symbols))
    intervals = stream_series(infos, interval)
    events = int(bounded(max_events, settings.api_stream_max_events, "max_events"))
    seconds = bounded(timeout_seconds, settings.api_stream_max_seconds, "timeout_seconds")
    horizon = dt.timedelta(seconds=settings.api_stream_late_horizon_seconds)
    params = {"symbols": [info.symbol for info in infos], "intervals": intervals,
              "lo": min(info.finest.last_bar for info in infos) - horizon}
    already_sent: dict[BarKey, dt.datetime] = {}
    if last_event_id is not None:
        # Resuming may repeat bars written in the COMMIT_SLACK before that id: repeating an
        # upsert is harmless, losing a bar is not.
        since = from_us(int(last_event_id))
    else:
        async with pool.connection() as conn:
            (since,) = await queries.fetch_one(conn, queries.DATABASE_NOW)
            # Bars written just before opening are not news: remember them as sent, so only
            # bars written (or committed) after this point are pushed.
            poll = {**params, "since": since - COMMIT_SLACK, "rows": settings.api_stream_max_events}
            for updated_at, symbol, interval_name, start_us, *_ in await (
                    await conn.execute(queries.STREAM_STORED, poll)).fetchall():
                already_sent[(symbol, interval_name, start_us)] = updated_at
    return StreamingResponse(bar_events(request, pool, settings, params, since, already_sent, events, seconds),
                             media_type=EVENT_STREAM, headers={"Cache-Control": "no-cache"})


async def bar_events(request: Request, pool: AsyncConnectionPool, settings: ApiSettings, params: dict[str, Any],
                     since: dt.datetime, sent: dict[BarKey, dt.datetime], max_events: int, seconds: float
                     ) -> AsyncIterator[str]:
    """Poll and yield SSE messages until the bounds are reached or the client leaves.

    ``sent`` maps (symbol, interval, start us) to the updated_at already pushed (or not news).
    """
    deadline = time.monotonic() + seconds
    heartbeat_at = time.monotonic() + HEARTBEAT_SECONDS
    sent_count = 0
    yield f"retry: {RECONNECT_MILLISECONDS}\n\n"
    while sent_count < max_events and time.monotonic() < deadline:
        if await request.is_disconnected():
            return
        poll = {**params, "since": since - COMMIT_SLACK, "rows": max_events - sent_count + len(sent)}
        async with pool.connection() as conn:
            rows = await (await conn.execute(queries.STREAM_STORED, poll)).fetchall()
        for updated_at, symbol, interval, start_us, *bar in rows:
            key = (symbol, interval, start_us)
            if sent.get(key) == updated_at:
                continue
            sent[key] = updated_at
            since = max(since, updated_at)
            data = encoding.dumps(dict(zip(queries.BAR_API_COLUMNS, bar, strict=True))).decode()
            yield sse_event(to_us(updated_at), data)
            sent_count += 1
            if sent_count >= max_events:
                return
        # Forget what fell behind the slack window: it cannot come back in a poll.
        sent = {key: at for key, at in sent.items() if at > since - COMMIT_SLACK}
        if time.monotonic() >= heartbeat_at:
            heartbeat_at = time.monotonic() + HEARTBEAT_SECONDS
            yield ": keep-alive\n\n"
        await anyio.sleep(max(0.0, min(settings.api_stream_poll_seconds, deadline - time.monotonic())))
