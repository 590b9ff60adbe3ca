"""``GET /v1/bars``: OHLCV bars of one symbol, stored or rolled up, in pages, as JSON or CSV."""
from __future__ import annotations

import csv
import datetime as dt
import enum
import io
from typing import Annotated, Any

import numpy as np
from fastapi import APIRouter, Query, Request
from fastapi.responses import Response
from psycopg import AsyncConnection

from alphastream.intervals import interval_micros
from alphastream.records import SYMBOL_PATTERN
from alphastream.sessions import SessionMap
from serving import encoding, queries
from serving.catalog import ResolvedSeries, resolve_series
from serving.deps import Pool, Settings, StoreCatalog
from serving.errors import invalid
from serving.models import ERROR_RESPONSES, NOT_FOUND, BarsPage
from serving.page_cache import PageCache
from serving.paging import (
    CursorParam,
    IsoDateTime,
    LimitParam,
    ceil_to,
    checked_limit,
    checked_range,
    decode_cursor,
    encode_cursor,
    time_position,
    to_us,
)
from serving.settings import ApiSettings
from store import versions

router = APIRouter(tags=["bars"])

CSV_MEDIA_TYPE = "text/csv"
NEXT_CURSOR_HEADER = "X-Next-Cursor"
INTERVAL_DESCRIPTION = ("Bar interval, e.g. 1m, 5m, 15m, 1h, 1d: a stored interval or a multiple of "
                        "one (rolled up from the largest stored interval that divides it).")

SymbolParam = Annotated[str, Query(pattern=SYMBOL_PATTERN, description="Ticker or pair, e.g. AAPL, BTC-USD.")]
IntervalParam = Annotated[str, Query(max_length=8, description=INTERVAL_DESCRIPTION)]
StartParam = Annotated[IsoDateTime | None, Query(description="Bars starting at or after this time (UTC if no offset).")]
EndParam = Annotated[IsoDateTime | None, Query(description="Bars starting before this time.")]


class Session(str, enum.Enum):
    """Which of a symbol's trading hours ``/v1/bars`` keeps (``alphastream.sessions``)."""

    REGULAR = "regular"
    EXTENDED = "extended"
    ALL = "all"


SESSION_DESCRIPTION = (
    "Keep only bars overlapping the symbol's trading sessions: `regular` (the exchange calendar's "
    "sessions, e.g. XNYS 09:30-16:00 New York time, 13:00 on half-days, none on holidays), `extended` "
    "(04:00 to 4 hours after the regular close, on the same trading days) or `all` (no filter). "
    "Calendars per symbol as ALPHASTREAM_API_EXCHANGE_MAP says (default: pairs such as BTC-USD trade "
    "24/7, other symbols on XNYS). `limit` counts the bars kept: a page is shorter only at the end, or "
    "when it has read api_max_scan_rows stored bars (next_cursor then continues the scan)."
)
SessionParam = Annotated[Session, Query(description=SESSION_DESCRIPTION)]
# Stored rows read per query while filtering by session: whole nights and weekends in few reads.
SESSION_SCAN_ROWS = 2_000


def page_bounds(series: ResolvedSeries, start: dt.datetime | None, end: dt.datetime | None,
                limit: int | None, cursor: str | None, scope: list[Any], settings: ApiSettings
                ) -> tuple[dt.datetime, dt.datetime, int]:
    """[lo, hi) of the stored bars to read and the number of rows of this page.

    lo and hi are aligned up to the served interval: a bar is returned when its start is in
    [start, end), and a rolled-up bar always has all of its stored bars. A roll-up page is
    shortened if it would read more than ``api_max_scan_rows`` stored bars.
    """
    lo, hi = checked_range(start, end, settings)
    rows = checked_limit(limit, settings)
    if cursor is not None:
        # Not past hi: a page past the end is empty, and hi leaves room to align up.
        lo = min(max(lo, time_position(decode_cursor(cursor, scope))), hi)
    step_us = interval_micros(series.interval)
    if series.rolled:
        most = settings.api_max_scan_rows // series.ratio - 1
        if most < 1:
            raise invalid(f"interval {series.interval} is too large to roll up from {series.source} "
                          f"bars ({series.ratio} per bar; at most {settings.api_max_scan_rows // 2})")
        rows = min(rows, most)
    return ceil_to(lo, step_us), ceil_to(hi, step_us), rows


def range_params(series: ResolvedSeries, lo: dt.datetime, hi: dt.datetime, rows: int) -> dict[str, Any]:
    """Bound parameters of ``queries.bar_range``; one extra row tells whether a next page exists."""
    return {
        "symbol": series.info.symbol, "source": series.source, "interval": series.interval,
        "lo": lo, "hi": hi, "rows": rows + 1, "scan_rows": (rows + 1) * series.ratio,
        "stride": dt.timedelta(microseconds=interval_micros(series.interval)), "epoch": queries.EPOCH,
    }


def fingerprint_params(series: ResolvedSeries, lo: dt.datetime, hi: dt.datetime) -> dict[str, Any]:
    """``versions.FINGERPRINT_SQL`` parameters: the stored series' UTC days that [lo, hi) touches."""
    return {"symbol": series.info.symbol, "source": series.source, "first_day": lo.date(),
            "last_day": (hi - dt.timedelta(microseconds=1)).date()}


def wants_csv(request: Request) -> bool:
    return CSV_MEDIA_TYPE in request.headers.get("accept", "")


@router.get(
    "/bars", response_model=BarsPage, summary="OHLCV bars of one symbol",
    responses={**ERROR_RESPONSES, **NOT_FOUND,
               200: {"content": {CSV_MEDIA_TYPE: {"schema": {"type": "string"}}},
                     "description": f"Bars, oldest first: JSON, or CSV when Accept: {CSV_MEDIA_TYPE} "
                                    f"(next cursor in the {NEXT_CURSOR_HEADER} header)."}},
)
async def get_bars(request: Request, pool: Pool, catalog: StoreCatalog, settings: Settings,
                   symbol: SymbolParam, interval: IntervalParam, start: StartParam = None,
                   end: EndParam = None, limit: LimitParam = None, cursor: CursorParam = None,
                   session: SessionParam = Session.ALL) -> Response:
    """Bars whose start is in [start, end), oldest first, ``limit`` per page; follow
    ``next_cursor`` for the rest. Any multiple of a stored interval is rolled up in SQL.
    ``filled`` marks carry-forward bars (no trade in the bucket)."""
    series = await resolve_series(catalog, pool, symbol, interval)
    scope = ["bars", series.info.symbol, series.interval]
    lo, hi, rows = page_bounds(series, start, end, limit, cursor, scope, settings)
    as_csv = wants_csv(request)
    cache: PageCache = request.app.state.page_cache
    page_key = (series.info.symbol, series.interval, series.source, lo, hi, rows, as_csv, session.value)
    fingerprint = None
    async with pool.connection() as conn:
        if cache.enabled:
            # Read before the page: a write committing in between makes the next request miss,
            # never serves stale bytes (serving/page_cache.py).
            fingerprint = await queries.fetch_one(conn, versions.FINGERPRINT_SQL, fingerprint_params(series, lo, hi),
                                                  binary=True)
            cached = cache.get(page_key, fingerprint)
            if cached is not None:
                return Response(cached.body, media_type=cached.media_type, headers=cached.headers)
        if session is Session.ALL:
            found = await fetch_page(conn, series, lo, hi, rows)
            # The extra row, if any, starts the next page: its bucket start is the cursor position.
            next_at = found[rows][queries.PAGE_START_INDEX] if len(found) > rows else None
        else:
            found, next_at = await fetch_session_page(conn, series, lo, hi, rows, settings.sessions(session.value),
                                                      settings.api_max_scan_rows)
    next_cursor = encode_cursor(scope, to_us(next_at)) if next_at is not None else None
    del found[rows:]
    key = (series.info.symbol, series.interval)  # every row's SERIES_KEY_COLUMNS
    headers = None
    if as_csv:
        body, media_type = bars_csv([key + row for row in found]).encode(), CSV_MEDIA_TYPE
        headers = {NEXT_CURSOR_HEADER: next_cursor} if next_cursor else None
    else:
        body, media_type = encoding.dumps({"symbol": series.info.symbol, "interval": series.interval,
                                           "source_interval": series.source, "next_cursor": next_cursor,
                                           "items": encoding.keyed_row_dicts(queries.BAR_API_COLUMNS, key, found)}
                                          ), "application/json"
    if fingerprint is not None:
        cache.put(page_key, fingerprint, body, media_type, headers)
    return Response(body, media_type=media_type, headers=headers)


Row = tuple[Any, ...]


async def fetch_page(conn: AsyncConnection[Row], series: ResolvedSeries, lo: dt.datetime, hi: dt.datetime,
                     rows: int) -> list[Row]:
    """Up to ``rows`` + 1 bars starting in [lo, hi), oldest first (``queries.PAGE_COLUMNS``)."""
    return await (await conn.execute(queries.bars_page(series.rolled), range_params(series, lo, hi, rows),
                                     binary=True)).fetchall()


async def fetch_session_page(conn: AsyncConnection[Row], series: ResolvedSeries, lo: dt.datetime,
                             hi: dt.datetime, rows: int, sessions: SessionMap, max_scan_rows: int
                             ) -> tuple[list[Row], dt.datetime | None]:
    """Up to ``rows`` bars in [lo, hi) that overlap a session, and where the next page starts.

    Reads in key order, in chunks, until ``rows`` + 1 bars are kept (the extra one starts the
    next page), the range ends, or ``max_scan_rows`` stored bars were read (the next page then
    starts after the last bar read, so a long closed stretch is crossed page by page).
    """
    step = dt.timedelta(microseconds=interval_micros(series.interval))
    chunk = max(rows, min(SESSION_SCAN_ROWS, max_scan_rows // series.ratio - 1))
    kept: list[Row] = []
    scanned = 0
    while True:
        found = await fetch_page(conn, series, lo, hi, chunk)
        more = len(found) > chunk
        del found[chunk:]  # the probe row is read again as the next chunk's first
        starts = np.fromiter((to_us(row[queries.PAGE_START_INDEX]) for row in found), dtype=np.int64,
                             count=len(found))
        inside = sessions.open_mask(series.info.symbol, starts, interval_micros(series.interval))
        kept += [row for row, keep in zip(found, inside, strict=True) if keep]
        if len(kept) > rows:
            return kept, kept[rows][queries.PAGE_START_INDEX]
        if not more:
            return kept, None
        lo = found[-1][queries.PAGE_START_INDEX] + step
        scanned += len(found) * series.ratio
        if scanned >= max_scan_rows:
            return kept, lo


def bars_csv(rows: list[tuple[Any, ...]]) -> str:
    """CSV with a header of the bar columns; times as ISO-8601 UTC."""
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(queries.BAR_API_COLUMNS)
    for row in rows:
        writer.writerow(v.isoformat() if isinstance(v, dt.datetime) else v for v in row)
    return out.getvalue()
