"""Plotly figures of the dashboard, built by small plain functions (no Dash, no I/O).

``candles_figure(bars, overlays)`` is the main chart: candlesticks with the chosen overlays and
the detected anomalies as markers, volume beneath and a volatility panel at the bottom, all
sharing one time axis.

Builders return the figure as a plotly JSON dict (``{"data": [...], "layout": {...}}``), which
``dcc.Graph`` takes as is and ``go.Figure(d)`` reads back. Traces are validated plotly objects;
each chart's layout (subplots, template, axes) is built and validated once and reused, because
validating the template is the slowest part of building a figure and a live chart is rebuilt often.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from functools import lru_cache
from typing import Sequence

import pandas as pd
import plotly.graph_objects as go
from plotly.subplots import make_subplots

from alphastream.intervals import interval_seconds
from alphastream.records import AnomalyKind, DeadLetterReason
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
REASON_COLORS: dict[str, str] = {
    DeadLetterReason.BAD_JSON: "#ef4444", DeadLetterReason.MISSING_FIELD: "#f97316",
    DeadLetterReason.BAD_PRICE: "#eab308", DeadLetterReason.BAD_SIZE: "#84cc16",
    DeadLetterReason.BAD_TIMESTAMP: "#06b6d4", DeadLetterReason.FUTURE_TIMESTAMP: "#3b82f6",
    DeadLetterReason.BAD_SYMBOL: "#8b5cf6", DeadLetterReason.SINK_FAILED: "#111827",
}
OTHER_REASON_COLOR = "#64748b"  # a reason this dashboard does not know yet
ANOMALY_COLORS: dict[str, str] = {
    AnomalyKind.RETURN_OUTLIER.value: "#e11d48", AnomalyKind.GAP_JUMP.value: "#ea580c",
    AnomalyKind.VOLUME_SPIKE.value: "#0284c7", AnomalyKind.STALE_PRICE.value: "#64748b",
}
OTHER_ANOMALY_COLOR = "#111827"  # a kind this dashboard does not know yet
ANOMALY_MARKER_SIZE = 11
# Markers sit this share of the shown price range above their bar's high, clear of the wick.
ANOMALY_MARKER_LIFT = 0.02
ROW_HEIGHTS = (0.62, 0.18, 0.20)  # price, volume, volatility
Figure = dict  # plotly figure JSON: {"data": [trace dicts], "layout": {...}}
# A quiet stretch longer than this many bars (and than MIN_GAP) is cut out of the time axis:
# nights and weekends would otherwise flatten an intraday chart into a few thin slivers.
GAP_BARS = 5
MIN_GAP = pd.Timedelta(minutes=30)
MAX_BREAKS = 60
SMALL_CHART_TICKS = 3  # per axis of the 150 px health charts


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
        modebar=dict(bgcolor="rgba(255,255,255,0.7)", color="#9ca3af", activecolor="#2563eb"),
    )


def _figure(traces: Sequence[go.BaseTraceType], layout: dict, **overrides) -> Figure:
    """Figure JSON from validated traces and a cached layout (shallow-copied, then overridden)."""
    return {"data": [t.to_plotly_json() for t in traces], "layout": {**layout, **overrides}}


@lru_cache(maxsize=1)
def _message_layout() -> dict:
    fig = go.Figure()
    _base_layout(fig)
    fig.update_layout(xaxis=dict(visible=False), yaxis=dict(visible=False), margin=dict(t=8, b=8))
    return fig.to_plotly_json()["layout"]


def message_figure(message: str) -> Figure:
    """An empty chart that says why it is empty (no data, API down...)."""
    return _figure([], _message_layout(), annotations=[dict(
        text=message, showarrow=False, xref="paper", yref="paper", x=0.5, y=0.5,
        font=dict(size=14, color="#6b7280"))])


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


@lru_cache(maxsize=1)
def _candles_layout() -> dict:
    """Three panels (price, volume, volatility) on one shared time axis, styled."""
    fig = make_subplots(rows=3, cols=1, shared_xaxes=True, vertical_spacing=0.025,
                        row_heights=list(ROW_HEIGHTS))
    _base_layout(fig)
    fig.update_layout(bargap=0.15)
    fig.update_xaxes(showgrid=True, gridcolor=GRID_COLOR, rangeslider_visible=False, showspikes=True,
                     spikemode="across", spikethickness=1, spikecolor="#9ca3af")
    fig.update_xaxes(title_text="time (UTC)", row=3, col=1)
    fig.update_yaxes(showgrid=True, gridcolor=GRID_COLOR, zeroline=False)
    fig.update_yaxes(title_text="price", row=1, col=1)
    fig.update_yaxes(title_text="volume", row=2, col=1)
    fig.update_yaxes(row=3, col=1, rangemode="tozero")
    return fig.to_plotly_json()["layout"]


NO_LINES = indicators.OverlayLines()


def candles_figure(bars: Sequence[dict] | pd.DataFrame, overlays: Overlays = Overlays(),
                   lines: indicators.OverlayLines = NO_LINES, anomalies: Sequence[dict] = ()) -> Figure:
    """Candlesticks with overlays, volume beneath and a volatility panel, one time axis.

    ``lines`` are the indicator lines from the API (``indicators.overlay_lines``), one value per
    bar: the figure draws the lines it is given. ``anomalies`` (``GET /v1/anomalies``) are drawn
    as markers over the bars they fired on (``anomaly_markers``).
    """
    frame = bars_frame(bars)
    if frame.empty:
        return message_figure("No bars in this time range")
    # plotly.js has no time zones: hand it naive UTC times and say so on the axis.
    x = frame["bucket_start"].dt.tz_convert("UTC").dt.tz_localize(None)
    traces: list[go.BaseTraceType] = [go.Candlestick(
        x=x, open=frame["open"], high=frame["high"], low=frame["low"], close=frame["close"],
        name=overlays.title or "price",
        increasing=dict(line=dict(color=UP_COLOR, width=1), fillcolor=UP_COLOR),
        decreasing=dict(line=dict(color=DOWN_COLOR, width=1), fillcolor=DOWN_COLOR),
        showlegend=False, xaxis="x", yaxis="y",
    )]
    traces += _price_overlays(frame, x, overlays, lines)
    traces += anomaly_markers(frame, anomalies, overlays.interval)
    up = frame["close"] >= frame["open"]
    traces.append(go.Bar(
        x=x, y=frame["volume"], name="volume", showlegend=False, xaxis="x2", yaxis="y2",
        marker=dict(color=up.map({True: UP_COLOR, False: DOWN_COLOR}).tolist(), opacity=0.55,
                    line=dict(width=0)),
        hovertemplate="%{y:,.0f}<extra>volume</extra>",
    ))
    traces.append(go.Scatter(
        x=x, y=lines.volatility, name=f"volatility ({overlays.volatility})",
        mode="lines", showlegend=False, xaxis="x3", yaxis="y3",
        line=dict(color="#9333ea", width=1.4), fill="tozeroy", fillcolor="rgba(147, 51, 234, 0.08)",
        hovertemplate="%{y:.3f}%<extra>volatility</extra>",
    ))

    layout = _candles_layout()
    breaks = gap_breaks(frame["bucket_start"], overlays.interval)
    axes = {name: {**layout[name], "rangebreaks": breaks} for name in ("xaxis", "xaxis2", "xaxis3")}
    axes["yaxis3"] = {**layout["yaxis3"], "title": {"text": f"σ % ({overlays.volatility})"}}
    title = ({"title": dict(text=overlays.title, x=0.0, xanchor="left", y=0.99, font=dict(size=14))}
             if overlays.title else {})
    return _figure(traces, layout, **axes, **title, **overlays.extra)


def _price_overlays(frame: pd.DataFrame, x: pd.Series, overlays: Overlays,
                    lines: indicators.OverlayLines) -> list[go.Scatter]:
    """Lines drawn over the candles: Bollinger bands, SMAs, EMAs, session VWAP."""
    traces = []
    colors = iter(LINE_COLORS * 4)
    line = dict(mode="lines", xaxis="x", yaxis="y")
    if overlays.bollinger and lines.bollinger:
        middle, upper, lower = lines.bollinger
        label = f"BB({overlays.bollinger}, 2σ)"
        band = dict(name=label, legendgroup="bb", **line)
        traces += [
            go.Scatter(x=x, y=upper, line=dict(color=BAND_COLOR, width=1, dash="dot"), **band),
            go.Scatter(x=x, y=lower, showlegend=False, line=dict(color=BAND_COLOR, width=1, dash="dot"),
                       fill="tonexty", fillcolor=BAND_FILL, **band),
            go.Scatter(x=x, y=middle, showlegend=False, line=dict(color=BAND_COLOR, width=1), **band),
        ]
    for window, values in lines.sma.items():
        traces.append(go.Scatter(x=x, y=values, name=f"SMA {window}",
                                 line=dict(color=next(colors), width=1.5), **line))
    for window, values in lines.ema.items():
        traces.append(go.Scatter(x=x, y=values, name=f"EMA {window}",
                                 line=dict(color=next(colors), width=1.5, dash="dash"), **line))
    if overlays.vwap:
        traces.append(go.Scatter(x=x, y=indicators.session_vwap(frame), name="VWAP (session)",
                                 line=dict(color=VWAP_COLOR, width=1.8), **line))
    return traces


def anomaly_markers(frame: pd.DataFrame, anomalies: Sequence[dict], interval: str) -> list[go.Scatter]:
    """One marker trace per anomaly kind on the price panel: each anomaly above the high of the
    chart's bar holding its bucket (a detection on 1m bars lands on the 5m bar that contains it);
    hover shows kind, score and threshold. Anomalies outside the bars drawn are left out."""
    if not len(anomalies) or frame.empty:
        return []
    found = pd.DataFrame(list(anomalies))
    step = pd.Timedelta(seconds=interval_seconds(interval))
    # Buckets are aligned to the Unix epoch, as the pipeline and the API's roll-ups align them.
    found["bar_start"] = pd.to_datetime(found["bucket_start"], utc=True, format="ISO8601").dt.floor(step)
    highs = frame.set_index("bucket_start")["high"]
    found = found[found["bar_start"].isin(highs.index)]
    if found.empty:
        return []
    lift = (frame["high"].max() - frame["low"].min()) * ANOMALY_MARKER_LIFT
    found["y"] = found["bar_start"].map(highs) + lift
    found["at"] = pd.to_datetime(found["bucket_start"], utc=True, format="ISO8601").dt.strftime("%Y-%m-%d %H:%M")
    traces = []
    for kind, group in found.groupby("kind", sort=True):
        traces.append(go.Scatter(
            x=group["bar_start"].dt.tz_localize(None), y=group["y"], name=str(kind).replace("_", " "),
            mode="markers", xaxis="x", yaxis="y",
            marker=dict(symbol="triangle-down", size=ANOMALY_MARKER_SIZE,
                        color=ANOMALY_COLORS.get(str(kind), OTHER_ANOMALY_COLOR), line=dict(color="#ffffff", width=1)),
            customdata=group[["kind", "score", "threshold", "at", "interval"]].to_numpy(dtype=object),
            hovertemplate=("%{customdata[0]}: score %{customdata[1]:.2f}, threshold %{customdata[2]:.2f}"
                           "<br>%{customdata[3]} UTC (%{customdata[4]} bar)<extra>anomaly</extra>"),
        ))
    return traces


@lru_cache(maxsize=1)
def _small_layout() -> dict:
    fig = go.Figure()
    _base_layout(fig)
    # No height: the chart fills its CSS box (dcc.Graph is responsive), narrow screens too.
    fig.update_layout(margin=dict(l=44, r=8, t=20, b=20), legend=dict(font=dict(size=10), itemwidth=30))
    fig.update_yaxes(gridcolor=GRID_COLOR, rangemode="tozero", nticks=SMALL_CHART_TICKS)
    # Level labels: a 380 px panel has no room for plotly's rotated ones.
    fig.update_xaxes(tickangle=0, nticks=SMALL_CHART_TICKS + 1)
    return fig.to_plotly_json()["layout"]


def dead_letters_figure(counts: pd.DataFrame) -> Figure:
    """Dead letters per time bucket, stacked by reason (``views.dead_letter_counts``)."""
    if counts.empty:
        return message_figure("No dead letters: every record was usable")
    x = counts.index.tz_convert("UTC").tz_localize(None)
    traces = [go.Bar(x=x, y=counts[reason], name=str(reason),
                     marker_color=REASON_COLORS.get(str(reason), OTHER_REASON_COLOR)) for reason in counts.columns]
    layout = _small_layout()
    return _figure(traces, layout, barmode="stack",
                   yaxis={**layout["yaxis"], "title": {"text": "records"}})


def throughput_figure(rates: pd.DataFrame) -> Figure:
    """Ticks and bars per minute over time (columns ``ticks`` and ``bars``, time index)."""
    if rates.empty:
        return message_figure("No throughput figures yet")
    x = rates.index.tz_convert("UTC").tz_localize(None)
    traces = [
        go.Scatter(x=x, y=rates["ticks"], name="ticks/min", mode="lines",
                   line=dict(color="#2563eb", width=1.6)),
        go.Scatter(x=x, y=rates["bars"], name="bars/min", mode="lines", yaxis="y2",
                   line=dict(color="#f59e0b", width=1.6)),
    ]
    layout = _small_layout()
    return _figure(traces, layout, margin={**layout["margin"], "r": 40},
                   yaxis={**layout["yaxis"], "title": {"text": "ticks/min"}},
                   yaxis2=dict(title=dict(text="bars/min"), overlaying="y", side="right",
                               showgrid=False, rangemode="tozero", nticks=SMALL_CHART_TICKS,
                               tickmode="auto"))  # own ticks, not ones synced to the left axis


RSI_COLOR = "#7c3aed"
RSI_BANDS = (30.0, 70.0)  # Wilder's oversold and overbought levels
MACD_COLOR, SIGNAL_COLOR = "#2563eb", "#f59e0b"


def _points_frame(points: Sequence[dict], columns: Sequence[str]) -> pd.DataFrame:
    """API indicator points as a frame: naive-UTC times (plotly.js has no time zones), floats."""
    frame = pd.DataFrame(list(points), columns=["bucket_start", *columns])
    frame["bucket_start"] = pd.to_datetime(frame["bucket_start"], utc=True, format="ISO8601")
    frame[list(columns)] = frame[list(columns)].astype(float)
    return frame


def _indicator_axes(layout: dict, frame: pd.DataFrame, interval: str, title: str, **yaxis) -> dict:
    breaks = gap_breaks(frame["bucket_start"], interval)
    return {"xaxis": {**layout["xaxis"], "rangebreaks": breaks},
            "yaxis": {**layout["yaxis"], "title": {"text": title}, "rangemode": "normal", **yaxis}}


def rsi_figure(points: Sequence[dict], interval: str, window: int) -> Figure:
    """RSI (``GET /v1/indicators?kind=rsi``) on a 0-100 scale with the 30 and 70 levels."""
    frame = _points_frame(points, ["value"])
    if frame["value"].notna().sum() == 0:
        return message_figure(f"RSI({window}): not enough bars in this range")
    x = frame["bucket_start"].dt.tz_localize(None)
    traces = [go.Scatter(x=x, y=frame["value"], name=f"RSI {window}", mode="lines",
                         line=dict(color=RSI_COLOR, width=1.4), hovertemplate="%{y:.1f}<extra>RSI</extra>")]
    layout = _small_layout()
    levels = [dict(type="line", xref="paper", x0=0, x1=1, y0=level, y1=level,
                   line=dict(color="#9ca3af", width=1, dash="dot")) for level in RSI_BANDS]
    return _figure(traces, layout, shapes=levels, showlegend=False,
                   **_indicator_axes(layout, frame, interval, f"RSI {window}", range=[0, 100],
                                     tickvals=[0, *RSI_BANDS, 100]))


def macd_figure(points: Sequence[dict], interval: str) -> Figure:
    """MACD 12/26/9 (``GET /v1/indicators?kind=macd``): line, signal and histogram bars."""
    frame = _points_frame(points, ["value", "signal", "histogram"])
    if frame["value"].notna().sum() == 0:
        return message_figure("MACD(12, 26, 9): not enough bars in this range")
    x = frame["bucket_start"].dt.tz_localize(None)
    up = frame["histogram"] >= 0
    traces = [
        go.Bar(x=x, y=frame["histogram"], name="histogram", showlegend=False,
               marker=dict(color=up.map({True: UP_COLOR, False: DOWN_COLOR}).tolist(), opacity=0.5,
                           line=dict(width=0))),
        go.Scatter(x=x, y=frame["value"], name="MACD", mode="lines", line=dict(color=MACD_COLOR, width=1.4)),
        go.Scatter(x=x, y=frame["signal"], name="signal", mode="lines", line=dict(color=SIGNAL_COLOR, width=1.2)),
    ]
    layout = _small_layout()
    return _figure(traces, layout, bargap=0.1, **_indicator_axes(layout, frame, interval, "MACD"))


def warm_up() -> None:
    """Build and cache the layouts and load plotly's validators before the first page load."""
    start = pd.Timestamp("2000-01-03T14:30:00Z")
    bars = [{"symbol": "WARM", "interval": "1m", "bucket_start": start + pd.Timedelta(minutes=i),
             "open": 1.0, "high": 1.0, "low": 1.0, "close": 1.0, "volume": 1.0, "vwap": 1.0,
             "trades": 1, "timing": "ON_TIME", "pane_index": 0} for i in range(3)]
    line = [1.0] * len(bars)
    lines = indicators.OverlayLines(sma={2: line}, ema={2: line}, bollinger=(line, line, line), volatility=line)
    anomaly = {"bucket_start": start.isoformat(), "interval": "1m", "kind": AnomalyKind.RETURN_OUTLIER.value,
               "score": 1.0, "threshold": 1.0}
    candles_figure(bars, Overlays(sma=(2,), ema=(2,), vwap=True, bollinger=2, volatility=2), lines, [anomaly])
    dead_letters_figure(pd.DataFrame({"bad_json": [1]}, index=pd.DatetimeIndex([start])))
    throughput_figure(pd.DataFrame({"ticks": [1.0], "bars": [1.0]}, index=pd.DatetimeIndex([start])))
    points = [{"bucket_start": bar["bucket_start"], "value": 1.0, "signal": 1.0, "histogram": 0.0} for bar in bars]
    rsi_figure(points, "1m", 14)
    macd_figure(points, "1m")
    message_figure("")
