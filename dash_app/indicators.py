"""The indicator lines of the price chart, as the API computes them (``GET /v1/indicators``).

``overlay_lines`` asks the API for the SMA, EMA, Bollinger bands and volatility the chart
shows, over exactly the bars it holds, and lines each up with those bars (null where the API
has none). The API seeds each one with the bars before the range, so a line is complete from
the first bar on screen.

The session VWAP is the dashboard's own: a running day aggregate, not a windowed indicator.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Sequence

import pandas as pd

from alphastream.intervals import interval_seconds
from dash_app.api_client import ApiClient
from dash_app.views import iso, parse_time

if TYPE_CHECKING:
    from dash_app.figures import Overlays

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
