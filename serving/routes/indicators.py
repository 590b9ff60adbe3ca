"""``GET /v1/indicators``: SMA, EMA, volatility and VWAP over stored or rolled-up bars."""
from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Query

from serving import queries
from serving.catalog import resolve_series
from serving.deps import Pool, Settings, StoreCatalog
from serving.errors import invalid
from serving.indicators import IndicatorKind, ema_values, warmup_bars
from serving.models import ERROR_RESPONSES, NOT_FOUND, IndicatorPoint, IndicatorsPage
from serving.paging import encode_cursor, from_us
from serving.routes.bars import (
    CursorParam, EndParam, IntervalParam, LimitParam, StartParam, SymbolParam, page_bounds, range_params,
)

router = APIRouter(tags=["bars"])

DEFAULT_WINDOW = 20


@router.get("/v1/indicators", response_model=IndicatorsPage, responses={**ERROR_RESPONSES, **NOT_FOUND},
            summary="Technical indicators over bars")
async def get_indicators(
    pool: Pool, catalog: StoreCatalog, settings: Settings, symbol: SymbolParam, interval: IntervalParam,
    kind: Annotated[IndicatorKind, Query(description="sma, ema, volatility (% per bar) or vwap.")],
    window: Annotated[int, Query(ge=1, description="Window length in bars.")] = DEFAULT_WINDOW,
    start: StartParam = None, end: EndParam = None, limit: LimitParam = None, cursor: CursorParam = None,
) -> IndicatorsPage:
    """One value per bar in [start, end) (null while the window is not full), computed over
    the same bars ``/v1/bars`` returns, with the bars before ``start`` as warm-up."""
    if window > settings.api_max_window:
        raise invalid(f"window {window} is too large: at most {settings.api_max_window} bars")
    series = await resolve_series(catalog, pool, symbol, interval)
    scope = ["indicators", series.info.symbol, series.interval, kind.value, window]
    lo, hi, rows = page_bounds(series, start, end, limit, cursor, scope, settings)
    lookback = warmup_bars(kind, window)
    if series.rolled and (lookback + rows + 1) * series.ratio > settings.api_max_scan_rows:
        rows = max(1, settings.api_max_scan_rows // series.ratio - lookback - 1)
    params = {**range_params(series, lo, hi, rows), "lookback": lookback,
              "lookback_scan_rows": lookback * series.ratio, "window": window, "preceding": window - 1}
    async with pool.connection() as conn:
        if kind is IndicatorKind.EMA:
            inputs = await (await conn.execute(queries.indicator_inputs(series.rolled), params)).fetchall()
            values = ema_values([close for _, _, close, _, _ in inputs], window)
            found = [(us, value) for (us, in_page, *_), value in zip(inputs, values) if in_page]
        else:
            found = await (await conn.execute(queries.indicator_page(series.rolled, kind.value), params)).fetchall()
    next_cursor = encode_cursor(scope, found[rows][0]) if len(found) > rows else None
    return IndicatorsPage(symbol=series.info.symbol, interval=series.interval, kind=kind.value, window=window,
                          next_cursor=next_cursor,
                          items=[IndicatorPoint(bucket_start=from_us(us), value=value) for us, value in found[:rows]])
