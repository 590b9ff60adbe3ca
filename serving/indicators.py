"""Indicator definitions of ``GET /v1/indicators`` (the one definition: the dashboard reads them).

``sma``, ``vwap`` and ``volatility`` are SQL window functions (see ``queries.indicator_page``).
The recursive ones (EMA, RSI, MACD, ATR) depend on every earlier value, which no SQL window
function expresses; a recursive CTE over the bars is quadratic in PostgreSQL, so the API reads
the bars in SQL and computes them here with pandas' ``ewm``. Bollinger bands are computed here
too, being three values per bar.

Each indicator needs some bars before the page (its warm-up). A recursive one has infinite
memory: it is seeded far enough back that the seed's weight is below 1e-8, so a value does not
depend on where a page starts. Values are null while the window is not yet full.
"""
from __future__ import annotations

import enum
from typing import Sequence

import numpy as np
import pandas as pd


class IndicatorKind(str, enum.Enum):
    SMA = "sma"
    EMA = "ema"
    VOLATILITY = "volatility"
    VWAP = "vwap"
    RSI = "rsi"
    MACD = "macd"
    BOLLINGER = "bollinger"
    ATR = "atr"


DEFINITIONS: dict[IndicatorKind, str] = {
    IndicatorKind.SMA: "simple moving average of the close over `window` bars",
    IndicatorKind.EMA: "exponential moving average of the close, span `window` (alpha = 2 / (window + 1)), "
                       "seeded with a close",
    IndicatorKind.VOLATILITY: "sample standard deviation of close-to-close log returns over `window` returns, "
                              "in % per bar",
    IndicatorKind.VWAP: "volume-weighted average price over `window` bars",
    IndicatorKind.RSI: "Wilder's relative strength index: 100 - 100 / (1 + G / L), G and L Wilder averages "
                       "(alpha = 1 / window, default 14) of close-to-close gains and losses; 100 when L = 0 "
                       "< G, 50 when both are 0; in [0, 100]",
    IndicatorKind.MACD: "moving average convergence/divergence 12/26/9: `value` is the line EMA12 - EMA26 of "
                        "the close, `signal` its EMA9, `histogram` = value - signal; `window` does not apply",
    IndicatorKind.BOLLINGER: "Bollinger bands: `value` is the middle band, the SMA of the close over `window` "
                             "bars; `upper` and `lower` = middle +- 2 population standard deviations",
    IndicatorKind.ATR: "Wilder's average true range: Wilder average (alpha = 1 / window, default 14) of "
                       "max(high - low, |high - previous close|, |low - previous close|)",
}
KIND_DESCRIPTION = "; ".join(f"`{kind.value}`: {text}" for kind, text in DEFINITIONS.items()) + (
    ". Recursive indicators (ema, rsi, macd, atr) are seeded far enough before the page that the seed "
    "weighs less than 1e-8; every value is null while its window is not yet full.")

DEFAULT_WINDOWS: dict[IndicatorKind, int] = {IndicatorKind.RSI: 14, IndicatorKind.ATR: 14}
DEFAULT_WINDOW = 20
MACD_FAST, MACD_SLOW, MACD_SIGNAL = 12, 26, 9
BOLLINGER_STDEVS = 2.0  # Bollinger's own choice: bands two standard deviations from the middle
# Seed weight after N bars: (1 - alpha) ** N. EMA: (1 - 2 / (w + 1)) ** (10 w) < e ** -19;
# Wilder (alpha = 1 / w): (1 - 1 / w) ** (19 w) < e ** -19 < 1e-8, for every window w >= 1.
EMA_WARMUP_SPANS = 10
WILDER_WARMUP_SPANS = 19
# Computed here from the bars (the others are SQL window functions).
IN_PYTHON = {IndicatorKind.EMA, IndicatorKind.RSI, IndicatorKind.MACD, IndicatorKind.BOLLINGER, IndicatorKind.ATR}
# Components beyond `value`, per kind.
COMPONENTS: dict[IndicatorKind, tuple[str, ...]] = {
    IndicatorKind.MACD: ("signal", "histogram"), IndicatorKind.BOLLINGER: ("upper", "lower")}


def default_window(kind: IndicatorKind) -> int:
    return MACD_SLOW if kind is IndicatorKind.MACD else DEFAULT_WINDOWS.get(kind, DEFAULT_WINDOW)


def warmup_bars(kind: IndicatorKind, window: int) -> int:
    """Bars needed before the first bar of a page for its value to be complete."""
    if kind is IndicatorKind.EMA:
        return EMA_WARMUP_SPANS * window
    if kind in (IndicatorKind.RSI, IndicatorKind.ATR):
        return WILDER_WARMUP_SPANS * window
    if kind is IndicatorKind.MACD:
        return EMA_WARMUP_SPANS * (MACD_SLOW + MACD_SIGNAL)
    if kind is IndicatorKind.VOLATILITY:
        return window  # `window` returns need `window + 1` closes
    return window - 1


def _ema(values: pd.Series, span: int) -> pd.Series:
    return values.ewm(span=span, adjust=False).mean()


def _wilder(values: pd.Series, window: int) -> pd.Series:
    return values.ewm(alpha=1.0 / window, adjust=False).mean()


def _hide_first(values: pd.Series, count: int) -> np.ndarray:
    out: np.ndarray = values.to_numpy(dtype=float, copy=True)
    out[:count] = np.nan
    return out


def rsi(close: pd.Series, window: int) -> np.ndarray:
    change = close.diff()
    gain, loss = _wilder(change.clip(lower=0), window), _wilder(-change.clip(upper=0), window)
    with np.errstate(divide="ignore", invalid="ignore"):
        value = 100.0 - 100.0 / (1.0 + gain / loss)
    value = value.where(loss > 0, np.where(gain > 0, 100.0, 50.0))
    return _hide_first(value, window)  # `window` changes need `window + 1` closes


def macd(close: pd.Series) -> dict[str, np.ndarray]:
    line = _ema(close, MACD_FAST) - _ema(close, MACD_SLOW)
    signal = _ema(line, MACD_SIGNAL)
    full = MACD_SLOW - 1 + MACD_SIGNAL - 1
    return {"value": _hide_first(line, MACD_SLOW - 1), "signal": _hide_first(signal, full),
            "histogram": _hide_first(line - signal, full)}


def bollinger(close: pd.Series, window: int) -> dict[str, np.ndarray]:
    rolling = close.rolling(window, min_periods=window)
    middle = rolling.mean()
    spread = BOLLINGER_STDEVS * rolling.std(ddof=0)
    return {"value": middle.to_numpy(), "upper": (middle + spread).to_numpy(),
            "lower": (middle - spread).to_numpy()}


def atr(high: pd.Series, low: pd.Series, close: pd.Series, window: int) -> np.ndarray:
    previous = close.shift()
    true_range = pd.concat([high - low, (high - previous).abs(), (low - previous).abs()], axis=1).max(axis=1)
    return _hide_first(_wilder(true_range, window), window - 1)


def compute(kind: IndicatorKind, window: int, high: Sequence[float], low: Sequence[float], close: Sequence[float]
            ) -> dict[str, np.ndarray]:
    """The components (``value`` and ``COMPONENTS[kind]``) of a recursive or banded indicator,
    one per bar, NaN where null. Bars are oldest first."""
    closes = pd.Series(close, dtype=float)
    if kind is IndicatorKind.EMA:
        return {"value": _hide_first(_ema(closes, window), window - 1)}
    if kind is IndicatorKind.RSI:
        return {"value": rsi(closes, window)}
    if kind is IndicatorKind.MACD:
        return macd(closes)
    if kind is IndicatorKind.BOLLINGER:
        return bollinger(closes, window)
    if kind is IndicatorKind.ATR:
        return {"value": atr(pd.Series(high, dtype=float), pd.Series(low, dtype=float), closes, window)}
    raise ValueError(f"indicator {kind.value} is computed in SQL (queries.indicator_page), not here")
