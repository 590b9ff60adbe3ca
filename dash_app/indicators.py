"""Technical indicators over the bars the API returns: plain pandas, no I/O.

Each function takes a bars DataFrame (``views.bars_frame``: oldest first, one row per bar)
and returns a Series aligned with it, NaN where the window is not yet full, so a chart never
draws a value computed from fewer bars than its label claims.
"""
from __future__ import annotations

import numpy as np
import pandas as pd

BOLLINGER_STDEVS = 2.0  # Bollinger's own choice: bands two standard deviations from the mean


def sma(bars: pd.DataFrame, window: int) -> pd.Series:
    """Simple moving average of the close over ``window`` bars."""
    return bars["close"].rolling(window, min_periods=window).mean()


def ema(bars: pd.DataFrame, window: int) -> pd.Series:
    """Exponential moving average of the close, span ``window`` (alpha = 2 / (window + 1)).

    Seeded with the first close (pandas ``adjust=False``), as trading platforms do; the
    first ``window - 1`` values are hidden because the seed still dominates them.
    """
    values = bars["close"].ewm(span=window, adjust=False).mean()
    return values.where(np.arange(len(values)) >= window - 1)


def bollinger(bars: pd.DataFrame, window: int, stdevs: float = BOLLINGER_STDEVS
              ) -> tuple[pd.Series, pd.Series, pd.Series]:
    """Bollinger bands: (middle, upper, lower) = SMA +- ``stdevs`` population deviations."""
    rolling = bars["close"].rolling(window, min_periods=window)
    middle = rolling.mean()
    spread = stdevs * rolling.std(ddof=0)
    return middle, middle + spread, middle - spread


def log_returns(bars: pd.DataFrame) -> pd.Series:
    """Close-to-close log returns; the first bar has none."""
    return np.log(bars["close"]).diff()


def volatility(bars: pd.DataFrame, window: int) -> pd.Series:
    """Rolling volatility: sample standard deviation of log returns over ``window`` bars, in %.

    Per bar, not annualised: the dashboard shows every interval, and a 1-minute and a 1-day
    figure are only comparable after choosing a trading calendar, which is not ours to pick.
    """
    return log_returns(bars).rolling(window, min_periods=window).std(ddof=1) * 100.0


def session_vwap(bars: pd.DataFrame) -> pd.Series:
    """Volume-weighted average price since the start of each UTC day (the classic intraday VWAP).

    Built from each bar's own VWAP and volume, so it equals the VWAP of all the day's trades.
    Bars without volume carry the running value forward.
    """
    day = bars["bucket_start"].dt.floor("D")
    notional = (bars["vwap"] * bars["volume"]).groupby(day).cumsum()
    volume = bars["volume"].groupby(day).cumsum()
    running = notional / volume.where(volume > 0)
    return running.fillna(bars["vwap"].where(volume == 0)).ffill()
