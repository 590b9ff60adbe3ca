"""Dash callbacks: read the inputs, ask the API (through ``api_client``), call the plain view
and figure functions, and hand the results back to the page.

Callbacks stay thin on purpose; the logic they call lives in ``views`` and ``figures``, where
it is unit-tested without a browser.
"""
from __future__ import annotations

import logging
from typing import Any, Callable

import pandas as pd
from dash import Dash, Input, Output, State, ctx, html, no_update

from dash_app import views
from dash_app.api_client import ApiClient, ApiError, ApiUnavailable, SymbolInfo
from dash_app.figures import Overlays, candles_figure, dead_letters_figure, message_figure, throughput_figure
from dash_app.layout import DEFAULT_WINDOWS, default_symbol, symbol_options
from dash_app.settings import DashSettings

log = logging.getLogger("dash_app")

Clock = Callable[[], pd.Timestamp]
FETCH_INPUTS = ("symbol", "interval", "range", "custom-range")
HIDDEN = {"display": "none"}


def utc_now() -> pd.Timestamp:
    return pd.Timestamp.now(tz="UTC")


def status(text: str, kind: str = "info") -> tuple[str, str]:
    """Children and class of a status line: kind is info, ok, warn or error."""
    return text, f"status status-{kind}"


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
    """One line under the controls saying what the chart shows and how fresh it is."""
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


def register_callbacks(app: Dash, client: ApiClient, settings: DashSettings, clock: Clock = utc_now) -> None:
    """Wire every callback of the page to ``client``."""

    @app.callback(Output("custom-range-box", "style"), Input("range", "value"))
    def show_custom_range(range_key: str) -> dict:
        return {} if range_key == "custom" else HIDDEN

    @app.callback(Output("live-poll", "disabled"), Input("live", "value"))
    def toggle_live(live: list[str] | None) -> bool:
        return "on" not in (live or [])

    @app.callback(
        Output("price-chart", "figure"), Output("bars-store", "data"),
        Output("chart-status", "children"), Output("chart-status", "className"),
        Input("symbol", "value"), Input("interval", "value"), Input("range", "value"),
        Input("custom-range", "start_date"), Input("custom-range", "end_date"),
        Input("overlays", "value"), Input("sma-window", "value"), Input("ema-window", "value"),
        Input("bb-window", "value"), Input("vol-window", "value"), Input("live-poll", "n_intervals"),
        State("live", "value"), State("bars-store", "data"), State("symbols-store", "data"),
    )
    def update_chart(symbol, interval, range_key, custom_start, custom_end, selected, sma_window,
                     ema_window, bb_window, vol_window, _tick, live, stored, symbols):
        if not symbol:
            return (message_figure("Pick a symbol to draw its bars"), None,
                    *status("No symbol selected (the API listed none yet)", "warn"))
        key = [symbol, interval, range_key, custom_start, custom_end]
        trigger = ctx.triggered_id
        live_tick = trigger == "live-poll"
        now = clock()
        overlays = overlays_from_inputs(selected, sma_window, ema_window, bb_window, vol_window,
                                        interval, f"{symbol} · {interval}")
        overlays = Overlays(**{**overlays.__dict__, "extra": {"uirevision": "|".join(map(str, key))}})
        redraw_only = stored and stored.get("key") == key and trigger not in FETCH_INPUTS and not live_tick
        try:
            if redraw_only:
                data, changed = stored, True
            else:
                data, changed = fetch_chart_bars(client, key, stored, symbols or [], live_tick, now)
        except ValueError as err:  # an incomplete custom range
            return message_figure(str(err)), None, *status(str(err), "warn")
        except ApiError as err:
            log.warning("chart: %s", err)
            if live_tick and stored and stored.get("key") == key:
                return no_update, no_update, *status(f"{err} — showing the last bars received", "error")
            kind = "error" if isinstance(err, ApiUnavailable) or (err.status or 500) >= 500 else "warn"
            return message_figure(str(err)), None, *status(str(err), kind)
        if not changed:
            return no_update, no_update, no_update, no_update
        bars = data["bars"]
        if not bars:
            window = data["window"]
            text = (f"No {interval} bars for {symbol} between {window['start'][:16]} and "
                    f"{window['end'][:16]} UTC")
            return message_figure(text), data, *status(text, "warn")
        return (candles_figure(bars, overlays), data,
                *chart_status(symbol, interval, bars, "on" in (live or []), now))

    @app.callback(
        Output("watchlist", "children"), Output("api-status", "children"),
        Output("api-status", "className"), Output("page-error", "children"),
        Output("page-error", "style"), Output("symbols-store", "data"),
        Input("side-panels-start", "n_intervals"), Input("slow-poll", "n_intervals"),
        State("symbol", "value"), prevent_initial_call=True,
    )
    def refresh_overview(_start, _tick, symbol):
        try:
            symbols = client.symbols()
            shown = symbols[: settings.dash_watchlist_size]
            quotes = client.latest_quotes(s.symbol for s in shown)
            ready = _readiness(client)
        except ApiError as err:
            log.warning("overview: %s", err)
            return (watchlist_message(str(err)),
                    "API unreachable" if isinstance(err, ApiUnavailable) else "API error",
                    "pill pill-down", str(err), {}, no_update)
        rows = views.watchlist_rows(shown, quotes, clock(), settings.dash_stale_seconds)
        pill = ("API ok", "pill pill-ok") if ready is None else (f"API up · {ready}", "pill pill-warn")
        return (watchlist_table(rows, selected=symbol), *pill, None, HIDDEN,
                [s.__dict__ for s in symbols])

    # Not on page load: the layout already filled the picker, and the first chart must not wait
    # for this callback (Dash holds a callback until every callback feeding its inputs has run,
    # so this one is fed by the timer alone, not by the symbols store).
    @app.callback(
        Output("symbol", "options"), Output("symbol", "value"),
        Input("slow-poll", "n_intervals"), State("symbol", "value"), State("symbol", "options"),
        prevent_initial_call=True,
    )
    def refresh_symbol_picker(_tick, symbol, options):
        try:
            infos = client.symbols()
        except ApiError as err:  # refresh_overview reports it on the page
            log.warning("symbol picker: %s", err)
            return no_update, no_update
        if not infos:
            return no_update, no_update
        fresh = symbol_options(infos)
        # Setting a prop, even to the same value, re-runs the callbacks that read it.
        return (fresh if fresh != options else no_update,
                no_update if symbol else default_symbol(infos))

    @app.callback(
        Output("dead-letters-chart", "figure"), Output("throughput-chart", "figure"),
        Output("health-summary", "children"), Output("metrics-store", "data"),
        Input("side-panels-start", "n_intervals"), Input("slow-poll", "n_intervals"),
        State("metrics-store", "data"), prevent_initial_call=True,
    )
    def refresh_health(_start, _tick, samples):
        try:
            dead = client.dead_letters()
            counters = client.counters()
        except ApiError as err:
            log.warning("health: %s", err)
            figure = message_figure("Pipeline health unavailable")
            return figure, figure, str(err), no_update
        samples = views.add_metric_sample(samples or [], counters, clock())
        counts = views.dead_letter_counts(dead, views.health_bucket(dead))
        rates = views.throughput_rates(samples)
        has_counters = samples[-1]["ticks"] is not None or samples[-1]["bars"] is not None
        throughput = (throughput_figure(rates) if has_counters else
                      message_figure("The API's /metrics has no tick or bar counters"))
        return dead_letters_figure(counts), throughput, health_summary(dead), samples


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


def watchlist_table(rows: list[views.WatchRow], selected: str | None = None) -> html.Table | html.Div:
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
            html.Td("—" if row.volume is None else f"{row.volume:,.0f}", className="num"),
            html.Td(fresh, className="num fresh"),
        ], className=" ".join(c for c in ("selected" if row.symbol == selected else "",
                                          "is-stale" if row.stale else "") if c)))
    return html.Table([head, html.Tbody(body)], className="watch-table")


def health_summary(dead_letters: list[dict]) -> list:
    """A one-line summary of the dead letters: total and the top reasons."""
    if not dead_letters:
        return [html.Span("0", className="big"), " dead letters"]
    counts = pd.Series([d.get("reason") for d in dead_letters]).value_counts()
    top = ", ".join(f"{reason} {count}" for reason, count in counts.head(3).items())
    return [html.Span(f"{len(dead_letters):,}", className="big"), f" dead letters · {top}"]
