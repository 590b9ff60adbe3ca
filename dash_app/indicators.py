"""The indicator lines of the price chart, as the API computes them (``GET /v1/indicators``).

``overlay_lines`` asks the API for the SMA, EMA, Bollinger bands and volatility the chart
shows, over exactly the bars it holds, and lines each up with those bars (null where the API
has none). The API seeds each one with the bars before the range, so a line is complete from
the first bar on screen.

``local_lines`` computes the same lines from the bars with pandas. It is the chart's fallback
while its callback does not pass the API's lines yet (``figures.candles_figure(lines=None)``);
the session VWAP is the dashboard's own: a running day aggregate, not a windowed indicator.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Sequence

import numpy as np
import pandas as pd

from alphastream.intervals import interval_seconds
from dash_app.api_client import ApiClient
from dash_app.views import iso, parse_time

if TYPE_CHECKING:
    from dash_app.figures import Overlays

BOLLINGER_STDEVS = 2.0  # Bollinger's own choice: bands two standard deviations from the mean
Line = list  # one value (float or None) per bar of the chart, oldest first


@dataclass(frozen=True)
class OverlayLines:
    """The chart's indicator lines, one value per bar."""

    sma: dict[int, Line] = field(default_factory=dict)  # window -> line
    ema: dict[int, Line] = field(default_factory=dict)
    bollinger: tuple[Line, Line, Line] | None = None  # middle, upper, lower
    volatility: Line = field(default_factory=list)  # % per bar


def aligned(points: Sequence[dict], bars: Sequence[dict], name: str = "value") -> Line:
    """``name`` of each API point, at the bars' times (None where the API has no point)."""
    by_time = {parse_time(point["bucket_start"]): point.get(name) for point in points}
    return [by_time.get(parse_time(bar["bucket_start"])) for bar in bars]


def overlay_lines(client: ApiClient, symbol: str, interval: str, bars: Sequence[dict],
                  overlays: "Overlays") -> OverlayLines:
    """The lines ``overlays`` asks for, from ``GET /v1/indicators`` over the span of ``bars``."""
    if not bars:
        return OverlayLines()
    start = iso(parse_time(bars[0]["bucket_start"]))
    end = iso(parse_time(bars[-1]["bucket_start"]) + pd.Timedelta(seconds=interval_seconds(interval)))

    def points(kind: str, window: int) -> list[dict]:
        return client.indicator(symbol, interval, kind, window=window, start=start, end=end)

    band = points("bollinger", overlays.bollinger) if overlays.bollinger else None
    return OverlayLines(
        sma={w: aligned(points("sma", w), bars) for w in overlays.sma},
        ema={w: aligned(points("ema", w), bars) for w in overlays.ema},
        bollinger=band and tuple(aligned(band, bars, name) for name in ("value", "upper", "lower")),
        volatility=aligned(points("volatility", overlays.volatility), bars),
    )


def sma(bars: pd.DataFrame, window: int) -> pd.Series:
    """Simple moving average of the close over ``window`` bars."""
    return bars["close"].rolling(window, min_periods=window).mean()


def ema(bars: pd.DataFrame, window: int) -> pd.Series:
    """Exponential moving average of the close, span ``window`` (alpha = 2 / (window + 1)),
    seeded with the first close (pandas ``adjust=False``); the first ``window - 1`` values are
    hidden because the seed still dominates them."""
    values = bars["close"].ewm(span=window, adjust=False).mean()
    return values.where(np.arange(len(values)) >= window - 1)


def bollinger(bars: pd.DataFrame, window: int, stdevs: float = BOLLINGER_STDEVS
              ) -> tuple[pd.Series, pd.Series, pd.Series]:
    """Bollinger bands: (middle, upper, lower) = SMA +- ``stdevs`` population deviations."""
    rolling = bars["close"].rolling(window, min_periods=window)
    middle = rolling.mean()
    spread = stdevs * rolling.std(ddof=0)
    return middle, middle + spread, middle - spread


def volatility(bars: pd.DataFrame, window: int) -> pd.Series:
    """Sample standard deviation of close-to-close log returns over ``window`` returns, in %."""
    return np.log(bars["close"]).diff().rolling(window, min_periods=window).std(ddof=1) * 100.0


def _line(series: pd.Series) -> Line:
    return series.astype(object).where(series.notna(), None).tolist()


def local_lines(bars: pd.DataFrame, overlays: "Overlays") -> OverlayLines:
    """The same lines computed here with pandas (the fallback described above)."""
    return OverlayLines(
        sma={w: _line(sma(bars, w)) for w in overlays.sma},
        ema={w: _line(ema(bars, w)) for w in overlays.ema},
        bollinger=tuple(_line(s) for s in bollinger(bars, overlays.bollinger)) if overlays.bollinger else None,
        volatility=_line(volatility(bars, overlays.volatility)),
    )


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
