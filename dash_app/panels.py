"""View logic of the panels as plain functions: the watchlist, the pipeline health, and the
indicator (RSI, MACD), risk and anomaly panels under the chart.

The indicator and risk panels show what the API computes (``/v1/indicators``, ``/v1/risk``) for
exactly the bars the chart holds: one definition, the API's. The side panels are computed
from what the REST API stores and serves (symbols, bars, dead
letters), not from process counters: the pipeline's counters live in its runner, and the
API's ``/metrics`` counts requests, not ticks. Bars carry their trade count, so the ticks
and bars that landed per minute are read straight from the stored 1-minute bars.
"""
from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any, Mapping, Sequence

import pandas as pd
from dash import html

from alphastream.intervals import interval_seconds
from dash_app.api_client import ApiClient, ApiError, SymbolInfo
from dash_app.figures import Figure, macd_figure, message_figure, rsi_figure
from dash_app.views import bars_frame, iso, parse_time

log = logging.getLogger("dash_app")

THROUGHPUT_INTERVAL = "1m"
THROUGHPUT_SPAN = pd.Timedelta(hours=1)  # the throughput chart shows the last hour of data


# -- watchlist -----------------------------------------------------------------------------------


@dataclass(frozen=True)
class WatchRow:
    """One line of the watchlist."""

    symbol: str
    last_price: float | None
    change_pct: float | None  # since the open of the newest bar's UTC day
    volume: float | None  # traded over that day so far
    age_seconds: float | None  # seconds since the store last wrote the symbol's newest bar
    stale: bool


def _number(value: object) -> float | None:
    return None if value is None else float(value)


def watchlist_rows(symbols: Sequence[SymbolInfo], quotes: Sequence[dict], now: pd.Timestamp,
                   stale_seconds: float) -> list[WatchRow]:
    """Watchlist lines from the symbol list and the latest quotes (``GET /v1/quotes/latest``).

    Freshness is measured from when the store last wrote the newest bar (an early pane of a
    live bar counts), falling back to the bar's own time. A symbol is stale when that is older
    than ``stale_seconds`` or unknown: for a live feed, the pipeline stopped delivering it.
    """
    by_symbol = {quote.get("symbol"): quote for quote in quotes}
    rows = []
    for info in symbols:
        quote = by_symbol.get(info.symbol, {})
        price = _number(quote.get("price"))
        stamp = quote.get("updated_at") or quote.get("bucket_start") or info.last_bar
        age = (parse_time(now) - parse_time(stamp)).total_seconds() if stamp else None
        rows.append(WatchRow(
            symbol=info.symbol,
            last_price=price if price is not None else info.last_price,
            change_pct=_number(quote.get("change_pct")),
            volume=_number(quote.get("day_volume")),
            age_seconds=max(age, 0.0) if age is not None else None,
            stale=age is None or age > stale_seconds,
        ))
    return rows


VOLUME_UNITS = ((1e9, 1e9, "B"), (1e6, 1e6, "M"), (1e4, 1e3, "k"))


def format_volume(volume: float | None) -> str:
    """Volume short enough for a narrow table column: 8,120 · 45.3k · 1.04M."""
    if volume is None:
        return "—"
    for threshold, divisor, unit in VOLUME_UNITS:
        if abs(volume) >= threshold:
            return f"{volume / divisor:.3g}{unit}"
    return f"{volume:,.0f}"


# -- pipeline health -----------------------------------------------------------------------------


def dead_letter_counts(dead_letters: Sequence[dict], bucket: str = "1h") -> pd.DataFrame:
    """Dead letters counted per time bucket (rows) and reason (columns)."""
    if not dead_letters:
        return pd.DataFrame()
    frame = pd.DataFrame(list(dead_letters))
    frame["seen_at"] = pd.to_datetime(frame["seen_at"], utc=True, format="ISO8601")
    frame["bucket"] = frame["seen_at"].dt.floor(pd.Timedelta(seconds=interval_seconds(bucket)))
    return frame.pivot_table(index="bucket", columns="reason", values="seen_at", aggfunc="count",
                             fill_value=0).sort_index()


HEALTH_MAX_BUCKETS = 60  # bars of the dead-letter chart: readable in a 380 px wide panel


def health_bucket(dead_letters: Sequence[dict]) -> str:
    """A bucket width giving a readable number of bars over the dead letters' time span."""
    if len(dead_letters) < 2:
        return "1h"
    times = [parse_time(d["seen_at"]) for d in dead_letters]
    span = (max(times) - min(times)).total_seconds()
    for name in ("1m", "5m", "15m", "1h"):
        if span / interval_seconds(name) <= HEALTH_MAX_BUCKETS:
            return name
    return "1d"


def throughput_window(symbols: Sequence[SymbolInfo]) -> tuple[str, str] | None:
    """[start, end) of the throughput chart: the hour up to the newest bar of any symbol."""
    newest = [parse_time(s.last_bar) for s in symbols if s.last_bar]
    if not newest:
        return None
    end = max(newest).floor("min") + pd.Timedelta(seconds=interval_seconds(THROUGHPUT_INTERVAL))
    return (end - THROUGHPUT_SPAN).isoformat(), end.isoformat()


def throughput_per_minute(bars_by_symbol: Mapping[str, Sequence[dict]]) -> pd.DataFrame:
    """Ticks and bars that landed per minute, over all symbols, from their 1-minute bars.

    ``ticks`` sums the bars' trade counts (each trade is one tick that passed validation and
    dedup); ``bars`` counts the 1-minute bars written. Minutes without any bar count zero.
    """
    frames = [bars_frame(bars) for bars in bars_by_symbol.values() if bars]
    if not frames:
        return pd.DataFrame(columns=["ticks", "bars"])
    frame = pd.concat(frames, ignore_index=True)
    per_minute = frame.groupby("bucket_start").agg(ticks=("trades", "sum"), bars=("symbol", "size"))
    minutes = pd.date_range(per_minute.index.min(), per_minute.index.max(), freq="min")
    return per_minute.reindex(minutes, fill_value=0).astype(float)


# -- indicator and risk panels -------------------------------------------------------------------

RSI_WINDOW = 14  # Wilder's own


ANOMALY_LIST_ROWS = 8  # newest first; the chart marks every one


@dataclass(frozen=True)
class AnalyticsUpdate:
    rsi: Figure
    macd: Figure
    risk: Any  # the risk summary's children
    anomalies: Any  # the anomaly list's children


def chart_span(stored: dict | None) -> tuple[str, str, str, str] | None:
    """(symbol, interval, start, end) covering exactly the bars the chart holds, or None."""
    if not stored or not stored.get("bars"):
        return None
    symbol, interval = stored["key"][:2]
    bars = stored["bars"]
    end = parse_time(bars[-1]["bucket_start"]) + pd.Timedelta(seconds=interval_seconds(interval))
    return symbol, interval, iso(parse_time(bars[0]["bucket_start"])), iso(end)


def _percent(value: float | None, digits: int = 2) -> str:
    return "—" if value is None else f"{value * 100:.{digits}f}%"


def risk_rows(risk: dict) -> list[tuple[str, str]]:
    """The risk summary as (label, text) lines, from ``GET /v1/risk``."""
    drawdown = risk["max_drawdown"]
    moves = ""
    if drawdown["peak_at"] and drawdown["trough_at"]:
        moves = (f" · {parse_time(drawdown['peak_at']):%m-%d %H:%M} → "
                 f"{parse_time(drawdown['trough_at']):%m-%d %H:%M}")
    tails = {tail["confidence"]: tail for tail in risk["tails"]}
    sharpe = risk["sharpe"]
    return [
        ("Volatility", f"{_percent(risk['volatility_annualized'], 1)} a year · "
                       f"{_percent(risk['volatility'], 3)} a bar"),
        ("Max drawdown", _percent(drawdown["fraction"]) + moves),
        ("VaR 95 / 99", " / ".join(_percent(tails[c]["var"], 3) for c in (0.95, 0.99)) + " a bar"),
        ("ES 95 / 99", " / ".join(_percent(tails[c]["expected_shortfall"], 3) for c in (0.95, 0.99)) + " a bar"),
        ("Sharpe", "—" if sharpe is None else f"{sharpe:.2f} (annualized, rf 0)"),
        ("Basis", f"{risk['bars']} bars · {risk['calendar']} calendar · {risk['bars_per_year']:,.0f} bars a year"),
    ]


# The watchlist's table style, but values may wrap: a phone-wide panel has no room for one line.
WRAP = {"whiteSpace": "normal"}


def risk_table(risk: dict) -> html.Table:
    return html.Table(html.Tbody([html.Tr([html.Th(label), html.Td(text, className="num", style=WRAP)])
                                  for label, text in risk_rows(risk)]), className="watch-table risk-table")


def anomaly_rows(anomalies: Sequence[dict]) -> list[tuple[str, str, str]]:
    """The anomaly list as (time, kind, score / threshold) lines, newest first."""
    newest = sorted(anomalies, key=lambda a: (a["bucket_start"], a["kind"]), reverse=True)
    return [(f"{parse_time(a['bucket_start']):%m-%d %H:%M}", a["kind"].replace("_", " "),
             f"{a['score']:.2f} / {a['threshold']:.2f}") for a in newest[:ANOMALY_LIST_ROWS]]


def anomaly_table(anomalies: Sequence[dict]) -> html.Table | str:
    """The anomalies the chart marks (``GET /v1/anomalies``), as a table, newest first."""
    if not anomalies:
        return "No anomalies detected in this range."
    rows = [html.Tr([html.Th("UTC"), html.Th("kind"), html.Th("score / limit", className="num")])]
    rows += [html.Tr([html.Td(at), html.Td(kind), html.Td(score, className="num")])
             for at, kind, score in anomaly_rows(anomalies)]
    more = len(anomalies) - ANOMALY_LIST_ROWS
    if more > 0:
        rows.append(html.Tr(html.Td(f"+{more} more, marked on the chart", colSpan=3)))
    return html.Table(html.Tbody(rows), className="watch-table anomaly-table")


def analytics_update(client: ApiClient, stored: dict | None) -> AnalyticsUpdate:
    """RSI and MACD charts and the risk summary for the bars the chart holds, from the API, and
    the list of the anomalies the chart marks (held with its bars)."""
    span = chart_span(stored)
    if span is None:
        empty = message_figure("No bars in this range")
        return AnalyticsUpdate(empty, empty, "No bars in this range.", "No bars in this range.")
    anomalies = anomaly_table((stored or {}).get("anomalies") or [])
    symbol, interval, start, end = span
    try:
        rsi = client.indicator(symbol, interval, "rsi", window=RSI_WINDOW, start=start, end=end)
        macd = client.indicator(symbol, interval, "macd", start=start, end=end)
        risk = client.risk(symbol, interval, start=start, end=end)
    except ApiError as err:
        log.warning("indicators and risk: %s", err)
        unavailable = message_figure("Indicators unavailable")
        return AnalyticsUpdate(unavailable, unavailable, str(err), anomalies)
    return AnalyticsUpdate(rsi_figure(rsi, interval, RSI_WINDOW), macd_figure(macd, interval), risk_table(risk),
                           anomalies)
