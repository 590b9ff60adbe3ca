"""What each callback puts on the page, as plain functions of the inputs and an API client.

``callbacks`` only wires these to Dash; they run (and are tested) without a browser or a Dash
server. Each returns a small dataclass; a field left as ``NO_UPDATE`` keeps what the page shows.
"""
from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any, Collection, Sequence

import pandas as pd
from dash import html, no_update

from dash_app import indicators, panels, views
from dash_app.api_client import ApiClient, ApiError, ApiUnavailable
from dash_app.figures import Figure, Overlays, candles_figure, dead_letters_figure, message_figure, throughput_figure
from dash_app.layout import DEFAULT_WINDOWS

log = logging.getLogger("dash_app")

NO_UPDATE = no_update
LIVE_TRIGGER = "live-poll"
DEAD_LETTER_LOOKBACK = pd.Timedelta(days=1)  # the health panel covers the day up to the newest bar


def status(text: str, kind: str = "info") -> tuple[str, str]:
    """Children and class of a status line: kind is info, ok, warn or error."""
    return text, f"status status-{kind}"


def error_kind(err: ApiError) -> str:
    """'error' when the API is down or broken (5xx), 'warn' when it refused the request (4xx)."""
    return "error" if isinstance(err, ApiUnavailable) or (err.status or 500) >= 500 else "warn"


# -- price chart ---------------------------------------------------------------------------------


def overlays_from_inputs(selected: list[str] | None, sma_window: Any, ema_window: Any,
                         bb_window: Any, vol_window: Any, interval: str, title: str) -> Overlays:
    """The Overlays the controls ask for; empty or invalid windows fall back to the defaults."""
    def window(value: Any, name: str) -> int:
        try:
            number = int(value)
        except (TypeError, ValueError):
            return DEFAULT_WINDOWS[name]
        return number if number >= 2 else DEFAULT_WINDOWS[name]

    chosen = set(selected or [])
    return Overlays(
        sma=(window(sma_window, "sma-window"),) if "sma" in chosen else (),
        ema=(window(ema_window, "ema-window"),) if "ema" in chosen else (),
        vwap="vwap" in chosen,
        bollinger=window(bb_window, "bb-window") if "bollinger" in chosen else None,
        volatility=window(vol_window, "vol-window"),
        interval=interval,
        title=title,
    )


def chart_status(symbol: str, interval: str, bars: list[dict], live: bool, now: pd.Timestamp) -> tuple[str, str]:
    """One line above the chart saying what it shows and how fresh it is."""
    first = views.parse_time(bars[0]["bucket_start"])
    last = views.parse_time(bars[-1]["bucket_start"])
    age = (now - last).total_seconds()
    text = (f"{symbol} · {interval} · {len(bars)} bars · {first:%Y-%m-%d %H:%M} → {last:%Y-%m-%d %H:%M} UTC"
            f" · newest bar {views.format_age(age)} old")
    if live:
        text += " · live"
    return status(text, "ok")


def fetch_chart_bars(client: ApiClient, key: list, stored: dict | None, symbols: list[dict],
                     live_tick: bool, now: pd.Timestamp) -> tuple[dict, bool]:
    """The bars to draw and whether they changed since ``stored``.

    A live tick for the same view fetches only from the newest bar held (the still-open bar
    comes back updated, new bars are appended); anything else fetches the whole window.
    """
    symbol, interval, range_key, custom_start, custom_end = key
    if live_tick and stored and stored.get("key") == key:
        window = views.Window(**stored["window"])
        end = window.end if range_key == "custom" else None
        fresh = client.bars(symbol, interval, start=views.live_fetch_start(stored["bars"], window), end=end)
        merged = views.merge_bars(stored["bars"], fresh)
        merged = views.trim_to_span(merged, views.RANGE_SPANS.get(range_key), interval)
        return {"key": key, "window": stored["window"], "bars": merged}, merged != stored["bars"]
    newest = next((s["last_bar"] for s in symbols if s["symbol"] == symbol), None)
    if newest is None:
        newest = next((s.last_bar for s in client.symbols() if s.symbol == symbol), None)
    window = views.resolve_window(range_key, interval, newest, now, custom_start, custom_end)
    bars = client.bars(symbol, interval, start=window.start, end=window.end)
    return {"key": key, "window": window.__dict__, "bars": bars}, True


@dataclass(frozen=True)
class ChartUpdate:
    figure: Figure | Any
    store: dict | None | Any
    status_text: str | Any
    status_class: str | Any


def overlay_style(overlays: Overlays) -> list:
    """What the overlays draw, JSON-able: kept with the bars to know if the chart needs a redraw."""
    return [list(overlays.sma), list(overlays.ema), overlays.vwap, overlays.bollinger, overlays.volatility]


def chart_update(client: ApiClient, *, key: list, overlays: Overlays, live: bool, triggers: Collection[str],
                 stored: dict | None, symbols: list[dict] | None, now: pd.Timestamp) -> ChartUpdate:
    """The price chart, its bars store and its status line after inputs changed.

    ``key`` is [symbol, interval, range, custom start, custom end]; ``triggers`` the ids of the
    inputs that fired. Decided by state, not by which input fired (Dash can fold an overlay
    click into a live tick in flight and report only the tick): a view other than the one held
    fetches its whole window; overlays other than those drawn redraw the bars held; a live tick
    fetches only what is new. With nothing new, or the API briefly failing during a live tick,
    the chart stays as it is.
    """
    symbol, interval = key[0], key[1]
    if not symbol:
        return no_symbol_update(client)
    style = overlay_style(overlays)
    same_view = bool(stored) and stored.get("key") == key
    live_tick = same_view and LIVE_TRIGGER in set(triggers)
    restyle = same_view and stored.get("style") != style
    overlays = Overlays(**{**overlays.__dict__, "extra": {"uirevision": "|".join(map(str, key))}})
    try:
        if not same_view or live_tick:
            data, changed = fetch_chart_bars(client, key, stored, symbols or [], live_tick, now)
        else:
            data, changed = stored, restyle
    except ValueError as err:  # an incomplete custom range
        return ChartUpdate(message_figure(str(err)), None, *status(str(err), "warn"))
    except ApiError as err:
        log.warning("chart: %s", err)
        if live_tick:  # keep the chart drawn: its lines need the API too
            return ChartUpdate(NO_UPDATE, NO_UPDATE, *status(f"{err} (showing the last bars received)", "error"))
        return ChartUpdate(message_figure(str(err)), None, *status(str(err), error_kind(err)))
    if not (changed or restyle):
        return ChartUpdate(NO_UPDATE, NO_UPDATE, NO_UPDATE, NO_UPDATE)
    data = {**data, "style": style}
    bars = data["bars"]
    if not bars:
        window = data["window"]
        text = (f"No {interval} bars for {symbol} between {window['start'][:16]} and "
                f"{window['end'][:16]} UTC")
        return ChartUpdate(message_figure(text), data, *status(text, "warn"))
    try:  # the indicator lines and the anomalies come from the API: one definition of each
        lines = indicators.overlay_lines(client, symbol, interval, bars, overlays)
        anomalies = chart_anomalies(client, data)
    except ApiError as err:
        log.warning("chart lines: %s", err)
        if live_tick:
            return ChartUpdate(NO_UPDATE, NO_UPDATE, *status(f"{err} (showing the last chart drawn)", "error"))
        return ChartUpdate(message_figure(str(err)), None, *status(str(err), error_kind(err)))
    data = {**data, "anomalies": anomalies}  # listed by the analytics panel (panels.anomaly_table)
    return ChartUpdate(candles_figure(bars, overlays, lines, anomalies), data,
                       *chart_status(symbol, interval, bars, live, now))


def chart_anomalies(client: ApiClient, data: dict) -> list[dict]:
    """The anomalies detected on the bars the chart holds (``GET /v1/anomalies``)."""
    span = panels.chart_span(data)
    if span is None:
        return []
    symbol, _, start, end = span
    return client.anomalies(symbol, start=start, end=end)


NO_DATA_HINT = ("The store has no bars yet: run the pipeline (python -m pipeline) "
                "or the live feed, and they appear here")


def no_symbol_update(client: ApiClient) -> ChartUpdate:
    """The chart when no symbol is picked: say why (API down, empty store, or just pick one)."""
    try:
        listed = client.symbols()
    except ApiError as err:
        return ChartUpdate(message_figure(str(err)), None, *status(str(err), error_kind(err)))
    if not listed:
        return ChartUpdate(message_figure(NO_DATA_HINT), None, *status(NO_DATA_HINT, "warn"))
    return ChartUpdate(message_figure("Pick a symbol to draw its bars"), None,
                       *status("No symbol selected", "info"))


# -- watchlist -----------------------------------------------------------------------------------


@dataclass(frozen=True)
class OverviewUpdate:
    watchlist: Any
    api_text: str
    api_class: str
    page_error: str | None
    page_error_style: dict
    symbols: list[dict] | Any


def overview_update(client: ApiClient, *, selected: str | None, size: int, stale_seconds: float,
                    now: pd.Timestamp) -> OverviewUpdate:
    """The watchlist, the API status pill and the page-wide error banner."""
    try:
        symbols = client.symbols()
        shown = symbols[:size]
        quotes = client.latest_quotes(s.symbol for s in shown)
        readiness = _readiness(client)
    except ApiError as err:
        log.warning("overview: %s", err)
        pill = "API unreachable" if isinstance(err, ApiUnavailable) else "API error"
        return OverviewUpdate(watchlist_message(str(err)), pill, "pill pill-down", str(err), {}, NO_UPDATE)
    rows = panels.watchlist_rows(shown, quotes, now, stale_seconds)
    pill = ("API ok", "pill pill-ok") if readiness is None else (f"API up · {readiness}", "pill pill-warn")
    return OverviewUpdate(watchlist_table(rows, selected), *pill, None, {"display": "none"},
                          [s.__dict__ for s in symbols])


def _readiness(client: ApiClient) -> str | None:
    """None when the API is ready, else what it says is wrong."""
    try:
        client.ready()
        return None
    except ApiUnavailable:
        raise
    except ApiError as err:
        return f"not ready ({err.status})"


def watchlist_message(text: str) -> html.Div:
    return html.Div(text, className="empty")


def watchlist_table(rows: list[panels.WatchRow], selected: str | None = None) -> html.Table | html.Div:
    """The watchlist as an HTML table; stale symbols carry a visible marker."""
    if not rows:
        return watchlist_message("No symbols yet: the store has no bars.")
    head = html.Thead(html.Tr([html.Th("Symbol"), html.Th("Last", className="num"),
                               html.Th("Chg %", className="num"), html.Th("Volume", className="num"),
                               html.Th("Fresh", className="num")]))
    body = []
    for row in rows:
        change = "—" if row.change_pct is None else f"{row.change_pct:+.2f}%"
        direction = "" if row.change_pct is None else ("up" if row.change_pct >= 0 else "down")
        fresh = [views.format_age(row.age_seconds)]
        if row.stale:
            fresh.append(html.Span("stale", className="badge badge-stale",
                                   title="No new bar within the staleness limit"))
        body.append(html.Tr([
            html.Td(row.symbol, className="sym"),
            html.Td("—" if row.last_price is None else f"{row.last_price:,.2f}", className="num"),
            html.Td(change, className=f"num {direction}"),
            html.Td(panels.format_volume(row.volume), className="num"),
            html.Td(fresh, className="num fresh"),
        ], className=" ".join(c for c in ("selected" if row.symbol == selected else "",
                                          "is-stale" if row.stale else "") if c)))
    return html.Table([head, html.Tbody(body)], className="watch-table")


# -- pipeline health -----------------------------------------------------------------------------


@dataclass(frozen=True)
class HealthUpdate:
    dead_letters: Figure
    throughput: Figure
    summary: Any


def health_update(client: ApiClient, *, size: int) -> HealthUpdate:
    """Dead letters by reason over time and the ticks/bars that landed per minute."""
    try:
        symbols = client.symbols()[:size]
        newest = max((views.parse_time(s.last_bar) for s in symbols if s.last_bar), default=None)
        since = views.iso(newest - DEAD_LETTER_LOOKBACK) if newest is not None else None
        dead = client.dead_letters(since=since)
        window = panels.throughput_window(symbols)
        recent = ({} if window is None else
                  {s.symbol: client.bars(s.symbol, panels.THROUGHPUT_INTERVAL, start=window[0], end=window[1])
                   for s in symbols if s.last_bar})
    except ApiError as err:
        log.warning("health: %s", err)
        figure = message_figure("Pipeline health unavailable")
        return HealthUpdate(figure, figure, str(err))
    counts = panels.dead_letter_counts(dead, panels.health_bucket(dead))
    return HealthUpdate(dead_letters_figure(counts),
                        throughput_figure(panels.throughput_per_minute(recent)),
                        health_summary(dead, len(symbols)))


def health_summary(dead_letters: Sequence[dict], symbol_count: int) -> list:
    """A one-line summary of the dead letters: total and the top reasons."""
    scope = f" · {symbol_count} symbols"
    if not dead_letters:
        return [html.Span("0", className="big"), " dead letters", scope]
    counts = pd.Series([d.get("reason") for d in dead_letters]).value_counts()
    top = ", ".join(f"{reason} {count}" for reason, count in counts.head(3).items())
    return [html.Span(f"{len(dead_letters):,}", className="big"), f" dead letters · {top}", scope]

