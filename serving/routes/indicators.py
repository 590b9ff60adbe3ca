"""``GET /v1/indicators``: SMA, EMA, volatility, VWAP, RSI, MACD, Bollinger bands and ATR over
stored or rolled-up bars."""
from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Query

from serving import queries
from serving.catalog import resolve_series
from serving.deps import Pool, Settings, StoreCatalog
from serving.errors import invalid
from serving.indicators import (
    COMPONENTS,
    IN_PYTHON,
    KIND_DESCRIPTION,
    IndicatorKind,
    compute,
    default_window,
    warmup_bars,
)
from serving.models import ERROR_RESPONSES, NOT_FOUND, IndicatorPoint, IndicatorsPage
from serving.paging import CursorParam, LimitParam, encode_cursor, from_us
from serving.routes.bars import (
    EndParam,
    IntervalParam,
    StartParam,
    SymbolParam,
    page_bounds,
    range_params,
)

router = APIRouter(tags=["bars"])


def _number(value: float) -> float | None:
    return None if value != value else float(value)  # NaN: not yet defined


@router.get("/indicators", response_model=IndicatorsPage, responses={**ERROR_RESPONSES, **NOT_FOUND},
            summary="Technical indicators over bars", response_model_exclude_unset=True)
async def get_indicators(
    pool: Pool, catalog: StoreCatalog, settings: Settings, symbol: SymbolParam, interval: IntervalParam,
    kind: Annotated[IndicatorKind, Query(description=KIND_DESCRIPTION)],
    window: Annotated[int | None, Query(ge=1, description="Window length in bars (default 14 for rsi and atr, "
                                                          "20 otherwise; macd takes none).")] = None,
    start: StartParam = None, end: EndParam = None, limit: LimitParam = None, cursor: CursorParam = None,
) -> IndicatorsPage:
    """One value per bar in [start, end) (null while the window is not full), computed over
    the same bars ``/v1/bars`` returns, with the bars before ``start`` as warm-up."""
    if kind is IndicatorKind.MACD and window is not None:
        raise invalid("macd is the 12/26/9 MACD: omit window")
    window = window or default_window(kind)
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
        if kind in IN_PYTHON:
            inputs = await (await conn.execute(queries.indicator_inputs(series.rolled), params)).fetchall()
        else:
            found = await (await conn.execute(queries.indicator_page(series.rolled, kind.value), params)).fetchall()
    if kind in IN_PYTHON:
        _, _, high, low, close, _, _ = zip(*inputs, strict=True) if inputs else ((),) * 7
        values = compute(kind, window, high, low, close)
        names = ("value", *COMPONENTS.get(kind, ()))
        found = [(us, *(_number(values[name][i]) for name in names))
                 for i, (us, page_row, *_) in enumerate(inputs) if page_row]
    else:
        names = ("value",)
    next_cursor = encode_cursor(scope, found[rows][0]) if len(found) > rows else None
    return IndicatorsPage(symbol=series.info.symbol, interval=series.interval, kind=kind.value, window=window,
                          next_cursor=next_cursor,
                          items=[IndicatorPoint(bucket_start=from_us(us), **dict(zip(names, row, strict=True)))
                                 for us, *row in found[:rows]])
