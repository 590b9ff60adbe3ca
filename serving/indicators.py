"""Indicator definitions of ``GET /v1/indicators``, matching the dashboard's pandas versions.

``sma``, ``vwap`` and ``volatility`` are SQL window functions (see ``queries.indicator_page``).
``ema`` is recursive (each value depends on the previous one), which no SQL window function
expresses; a recursive CTE over the bars is quadratic in PostgreSQL (measured: 490 ms for one
day of 1-minute bars), so the API reads the closes in SQL and runs the recursion here, in one
pass. Each indicator needs some bars before the page (its warm-up); the EMA, whose memory is
infinite, is seeded ``EMA_WARMUP_SPANS`` windows back, where the seed's weight is below 1e-8.
"""
from __future__ import annotations

import enum


class IndicatorKind(str, enum.Enum):
    SMA = "sma"  # simple moving average of the close over `window` bars
    EMA = "ema"  # exponential moving average of the close, span `window` (alpha = 2 / (window + 1))
    VOLATILITY = "volatility"  # sample std of close-to-close log returns over `window` returns, in %
    VWAP = "vwap"  # volume-weighted average price over `window` bars


EMA_WARMUP_SPANS = 10  # (1 - 2 / (w + 1)) ** (10 * w) < e ** -19 for every window w >= 1


def warmup_bars(kind: IndicatorKind, window: int) -> int:
    """Bars needed before the first bar of a page for its value to be complete."""
    if kind is IndicatorKind.EMA:
        return EMA_WARMUP_SPANS * window
    if kind is IndicatorKind.VOLATILITY:
        return window  # `window` returns need `window + 1` closes
    return window - 1


def ema_values(closes: list[float], window: int) -> list[float | None]:
    """EMA seeded with the first close (pandas ``ewm(span=window, adjust=False)``); the first
    ``window - 1`` values are None because the seed still dominates them (as the dashboard)."""
    alpha = 2.0 / (window + 1)
    values: list[float | None] = []
    ema = None
    for index, close in enumerate(closes):
        ema = close if ema is None else alpha * close + (1.0 - alpha) * ema
        values.append(ema if index >= window - 1 else None)
    return values
