"""Plotly figures of the dashboard, built by small plain functions (no Dash, no I/O).

``candles_figure(bars, overlays)`` is the main chart: candlesticks with the chosen overlays,
volume beneath and a volatility panel at the bottom, all sharing one time axis.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Sequence

import pandas as pd
import plotly.graph_objects as go
from plotly.subplots import make_subplots

from alphastream.intervals import interval_seconds
from dash_app import indicators
from dash_app.views import bars_frame

UP_COLOR = "#16a34a"
DOWN_COLOR = "#dc2626"
GRID_COLOR = "#e5e7eb"
TEXT_COLOR = "#1f2937"
FONT = "Inter, system-ui, -apple-system, Segoe UI, Roboto, sans-serif"
# Overlay line colours, in the order windows are added.
LINE_COLORS = ("#2563eb", "#f59e0b", "#7c3aed", "#0891b2", "#db2777", "#65a30d")
VWAP_COLOR = "#0f766e"
BAND_COLOR = "rgba(100, 116, 139, 0.9)"
BAND_FILL = "rgba(148, 163, 184, 0.15)"
REASON_COLORS = {
    "bad_json": "#ef4444", "missing_field": "#f97316", "bad_price": "#eab308",
    "bad_size": "#84cc16", "bad_timestamp": "#06b6d4", "future_timestamp": "#3b82f6",
    "bad_symbol": "#8b5cf6", "sink_failed": "#111827",
}
ROW_HEIGHTS = (0.62, 0.18, 0.20)  # price, volume, volatility
# A quiet stretch longer than this many bars (and than MIN_GAP) is cut out of the time axis:
# nights and weekends would otherwise flatten an intraday chart into a few thin slivers.
GAP_BARS = 5
MIN_GAP = pd.Timedelta(minutes=30)
MAX_BREAKS = 60


@dataclass(frozen=True)
class Overlays:
    """What to draw over and under the candles."""

    sma: tuple[int, ...] = ()
    ema: tuple[int, ...] = ()
    vwap: bool = False
    bollinger: int | None = None  # window, or None for no bands
    volatility: int = 20  # window of the volatility panel
    interval: str = "1m"  # used to find gaps in the time axis
    title: str = ""
    extra: dict = field(default_factory=dict)  # layout overrides (e.g. uirevision)


def _base_layout(fig: go.Figure) -> None:
    fig.update_layout(
        template="plotly_white",
        font=dict(family=FONT, size=12, color=TEXT_COLOR),
        margin=dict(l=56, r=16, t=36, b=28),
        paper_bgcolor="rgba(0,0,0,0)",
        plot_bgcolor="#ffffff",
        hovermode="x unified",
        legend=dict(orientation="h", yanchor="bottom", y=1.0, xanchor="left", x=0,
                    bgcolor="rgba(0,0,0,0)"),
    )


def message_figure(message: str) -> go.Figure:
    """An empty chart that says why it is empty (no data, API down...)."""
    fig = go.Figure()
    _base_layout(fig)
    fig.update_layout(xaxis=dict(visible=False), yaxis=dict(visible=False), margin=dict(t=8, b=8))
    fig.add_annotation(text=message, showarrow=False, xref="paper", yref="paper", x=0.5, y=0.5,
                       font=dict(size=14, color="#6b7280"))
    return fig


def gap_breaks(times: pd.Series, interval: str) -> list[dict]:
    """Plotly rangebreaks cutting the long quiet stretches (nights, weekends) out of the axis."""
    if len(times) < 2:
        return []
    step = pd.Timedelta(seconds=interval_seconds(interval))
    threshold = max(step * GAP_BARS, MIN_GAP)
    starts = times.iloc[:-1].reset_index(drop=True) + step
    gaps = times.iloc[1:].reset_index(drop=True) - starts
    big = gaps[gaps > threshold].index[:MAX_BREAKS]
    return [dict(values=[starts[i]], dvalue=gaps[i].total_seconds() * 1000) for i in big]


def candles_figure(bars: Sequence[dict] | pd.DataFrame, overlays: Overlays = Overlays()) -> go.Figure:
    """Candlesticks with overlays, volume beneath and a volatility panel, one time axis."""
    frame = bars_frame(bars)
    if frame.empty:
        return message_figure("No bars in this time range")
    # plotly.js has no time zones: hand it naive UTC times and say so on the axis.
    x = frame["bucket_start"].dt.tz_convert("UTC").dt.tz_localize(None)
    fig = make_subplots(rows=3, cols=1, shared_xaxes=True, vertical_spacing=0.025,
                        row_heights=list(ROW_HEIGHTS))
    fig.add_trace(go.Candlestick(
        x=x, open=frame["open"], high=frame["high"], low=frame["low"], close=frame["close"],
        name=overlays.title or "price",
        increasing=dict(line=dict(color=UP_COLOR, width=1), fillcolor=UP_COLOR),
        decreasing=dict(line=dict(color=DOWN_COLOR, width=1), fillcolor=DOWN_COLOR),
        showlegend=False,
    ), row=1, col=1)
    _add_price_overlays(fig, frame, x, overlays)

    up = frame["close"] >= frame["open"]
    fig.add_trace(go.Bar(
        x=x, y=frame["volume"], name="volume", showlegend=False,
        marker=dict(color=up.map({True: UP_COLOR, False: DOWN_COLOR}).tolist(), opacity=0.55,
                    line=dict(width=0)),
        hovertemplate="%{y:,.0f}<extra>volume</extra>",
    ), row=2, col=1)
    vol = indicators.volatility(frame, overlays.volatility)
    fig.add_trace(go.Scatter(
        x=x, y=vol, name=f"volatility ({overlays.volatility})", mode="lines", showlegend=False,
        line=dict(color="#9333ea", width=1.4), fill="tozeroy", fillcolor="rgba(147, 51, 234, 0.08)",
        hovertemplate="%{y:.3f}%<extra>volatility</extra>",
    ), row=3, col=1)

    _base_layout(fig)
    fig.update_layout(bargap=0.15, **overlays.extra)
    fig.update_xaxes(showgrid=True, gridcolor=GRID_COLOR, rangeslider_visible=False,
                     rangebreaks=gap_breaks(frame["bucket_start"], overlays.interval),
                     showspikes=True, spikemode="across", spikethickness=1, spikecolor="#9ca3af")
    fig.update_xaxes(title_text="time (UTC)", row=3, col=1)
    fig.update_yaxes(showgrid=True, gridcolor=GRID_COLOR, zeroline=False)
    fig.update_yaxes(title_text="price", row=1, col=1)
    fig.update_yaxes(title_text="volume", row=2, col=1)
    fig.update_yaxes(title_text=f"σ % ({overlays.volatility})", row=3, col=1, rangemode="tozero")
    if overlays.title:
        fig.update_layout(title=dict(text=overlays.title, x=0.0, xanchor="left", y=0.99,
                                     font=dict(size=14)))
    return fig


def _add_price_overlays(fig: go.Figure, frame: pd.DataFrame, x: pd.Series, overlays: Overlays) -> None:
    colors = iter(LINE_COLORS * 4)
    if overlays.bollinger:
        middle, upper, lower = indicators.bollinger(frame, overlays.bollinger)
        label = f"BB({overlays.bollinger}, 2σ)"
        fig.add_trace(go.Scatter(x=x, y=upper, name=label, legendgroup="bb", mode="lines",
                                 line=dict(color=BAND_COLOR, width=1, dash="dot")), row=1, col=1)
        fig.add_trace(go.Scatter(x=x, y=lower, name=label, legendgroup="bb", showlegend=False,
                                 mode="lines", line=dict(color=BAND_COLOR, width=1, dash="dot"),
                                 fill="tonexty", fillcolor=BAND_FILL), row=1, col=1)
        fig.add_trace(go.Scatter(x=x, y=middle, name=label, legendgroup="bb", showlegend=False,
                                 mode="lines", line=dict(color=BAND_COLOR, width=1)), row=1, col=1)
    for window in overlays.sma:
        fig.add_trace(go.Scatter(x=x, y=indicators.sma(frame, window), name=f"SMA {window}",
                                 mode="lines", line=dict(color=next(colors), width=1.5)), row=1, col=1)
    for window in overlays.ema:
        fig.add_trace(go.Scatter(x=x, y=indicators.ema(frame, window), name=f"EMA {window}",
                                 mode="lines", line=dict(color=next(colors), width=1.5, dash="dash")),
                      row=1, col=1)
    if overlays.vwap:
        fig.add_trace(go.Scatter(x=x, y=indicators.session_vwap(frame), name="VWAP (session)",
                                 mode="lines", line=dict(color=VWAP_COLOR, width=1.8)), row=1, col=1)


def dead_letters_figure(counts: pd.DataFrame) -> go.Figure:
    """Dead letters per time bucket, stacked by reason (``views.dead_letter_counts``)."""
    if counts.empty:
        return message_figure("No dead letters: every record was usable")
    fig = go.Figure()
    x = counts.index.tz_convert("UTC").tz_localize(None)
    for reason in counts.columns:
        fig.add_trace(go.Bar(x=x, y=counts[reason], name=str(reason),
                             marker_color=REASON_COLORS.get(str(reason), "#64748b")))
    _base_layout(fig)
    fig.update_layout(barmode="stack", margin=dict(l=40, r=8, t=28, b=24), height=230,
                      legend=dict(font=dict(size=10)))
    fig.update_yaxes(title_text="records", gridcolor=GRID_COLOR)
    return fig


def throughput_figure(rates: pd.DataFrame) -> go.Figure:
    """Ticks and bars per minute over time (columns ``ticks`` and ``bars``, time index)."""
    if rates.empty:
        return message_figure("No throughput figures yet")
    fig = make_subplots(specs=[[{"secondary_y": True}]])
    x = rates.index.tz_convert("UTC").tz_localize(None)
    fig.add_trace(go.Scatter(x=x, y=rates["ticks"], name="ticks/min", mode="lines",
                             line=dict(color="#2563eb", width=1.6)), secondary_y=False)
    fig.add_trace(go.Scatter(x=x, y=rates["bars"], name="bars/min", mode="lines",
                             line=dict(color="#f59e0b", width=1.6)), secondary_y=True)
    _base_layout(fig)
    fig.update_layout(margin=dict(l=48, r=40, t=28, b=24), height=230, legend=dict(font=dict(size=10)))
    fig.update_yaxes(title_text="ticks/min", gridcolor=GRID_COLOR, secondary_y=False, rangemode="tozero")
    fig.update_yaxes(title_text="bars/min", showgrid=False, secondary_y=True, rangemode="tozero")
    return fig
