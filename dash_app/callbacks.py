"""Dash callbacks: the wiring between the page's components and the plain functions of
``updates`` (which do the work and are tested without a browser)."""
from __future__ import annotations

from typing import Any, Callable

import pandas as pd
from dash import Dash, Input, Output, State, ctx, no_update

from dash_app import alerts as alert_panel
from dash_app import panels, updates
from dash_app.api_client import ApiClient, ApiError
from dash_app.layout import default_symbol, symbol_options
from dash_app.settings import DashSettings

Clock = Callable[[], pd.Timestamp]
HIDDEN = {"display": "none"}


def utc_now() -> pd.Timestamp:
    return pd.Timestamp.now(tz="UTC")


def register_callbacks(app: Dash, client: ApiClient, settings: DashSettings, clock: Clock = utc_now) -> None:
    """Wire every callback of the page to ``client``."""
    register_controls(app)
    register_price_chart(app, client, clock)
    register_analytics(app, client)
    register_overview(app, client, settings, clock)
    register_symbol_picker(app, client)
    register_health(app, client, settings)


def register_controls(app: Dash) -> None:
    """Controls that only show or hide others: no API call."""

    @app.callback(Output("custom-range-box", "style"), Input("range", "value"))
    def show_custom_range(range_key: str) -> dict:
        return {} if range_key == "custom" else HIDDEN

    @app.callback(Output("live-poll", "disabled"), Input("live", "value"))
    def toggle_live(live: list[str] | None) -> bool:
        return "on" not in (live or [])


def register_price_chart(app: Dash, client: ApiClient, clock: Clock) -> None:
    """The price chart, its bars store and status line (``updates.chart_update``)."""

    @app.callback(
        Output("price-chart", "figure"), Output("bars-store", "data"),
        Output("chart-status", "children"), Output("chart-status", "className"),
        Input("symbol", "value"), Input("interval", "value"), Input("range", "value"),
        Input("custom-range", "start_date"), Input("custom-range", "end_date"),
        Input("overlays", "value"), Input("sma-window", "value"), Input("ema-window", "value"),
        Input("bb-window", "value"), Input("vol-window", "value"), Input("live-poll", "n_intervals"),
        State("live", "value"), State("bars-store", "data"), State("symbols-store", "data"),
    )
    def update_chart(symbol: str | None, interval: str, range_key: str, custom_start: str | None,
                     custom_end: str | None, selected: list[str] | None, sma_window: Any, ema_window: Any,
                     bb_window: Any, vol_window: Any, _tick: int | None, live: list[str] | None,
                     stored: dict | None, symbols: list[dict] | None) -> tuple[Any, ...]:
        overlays = updates.overlays_from_inputs(selected, sma_window, ema_window, bb_window, vol_window,
                                                interval, f"{symbol} · {interval}")
        result = updates.chart_update(
            client, key=[symbol, interval, range_key, custom_start, custom_end], overlays=overlays,
            live="on" in (live or []), triggers=set(ctx.triggered_prop_ids.values()), stored=stored,
            symbols=symbols, now=clock())
        return result.figure, result.store, result.status_text, result.status_class


def register_analytics(app: Dash, client: ApiClient) -> None:
    """The RSI, MACD, risk and anomaly panels (``panels.analytics_update``).

    From the bars store, not the controls: the panels cover exactly the bars drawn, and follow
    them when a live tick brings new ones.
    """

    @app.callback(
        Output("rsi-chart", "figure"), Output("macd-chart", "figure"), Output("risk-summary", "children"),
        Output("anomaly-list", "children"), Input("bars-store", "data"),
    )
    def update_analytics(stored: dict | None) -> tuple[Any, ...]:
        result = panels.analytics_update(client, stored)
        return result.rsi, result.macd, result.risk, result.anomalies


def register_overview(app: Dash, client: ApiClient, settings: DashSettings, clock: Clock) -> None:
    """The watchlist (with alert badges), the API status pill, the page error and the alerts banner."""

    @app.callback(
        Output("watchlist", "children"), Output("api-status", "children"),
        Output("api-status", "className"), Output("page-error", "children"),
        Output("page-error", "style"), Output("symbols-store", "data"),
        Output("alerts-banner", "children"), Output("alerts-banner", "style"),
        Input("side-panels-start", "n_intervals"), Input("slow-poll", "n_intervals"),
        State("symbol", "value"), prevent_initial_call=True,
    )
    def refresh_overview(_start: int | None, _tick: int | None, symbol: str | None) -> tuple[Any, ...]:
        result = updates.overview_update(client, selected=symbol, size=settings.dash_watchlist_size,
                                         stale_seconds=settings.dash_stale_seconds, now=clock())
        firing = alert_panel.alerts_view(client)
        return (alert_panel.with_badges(result.watchlist, firing.by_symbol), result.api_text, result.api_class,
                result.page_error, result.page_error_style, result.symbols, firing.banner, firing.banner_style)


def register_symbol_picker(app: Dash, client: ApiClient) -> None:
    """The symbol picker's options, refreshed by the slow timer.

    Not on page load: the layout already filled the picker, and the first chart must not wait
    for this callback (Dash holds a callback until every callback feeding its inputs has run,
    so this one is fed by the timer alone, not by the symbols store).
    """

    @app.callback(
        Output("symbol", "options"), Output("symbol", "value"),
        Input("slow-poll", "n_intervals"), State("symbol", "value"), State("symbol", "options"),
        prevent_initial_call=True,
    )
    def refresh_symbol_picker(_tick: int | None, symbol: str | None, options: list[dict] | None) -> tuple[Any, Any]:
        try:
            infos = client.symbols()
        except ApiError as err:  # refresh_overview reports it on the page
            updates.log.warning("symbol picker: %s", err)
            return no_update, no_update
        if not infos:
            return no_update, no_update
        fresh = symbol_options(infos)
        # Setting a prop, even to the same value, re-runs the callbacks that read it.
        return (fresh if fresh != options else no_update,
                no_update if symbol else default_symbol(infos))


def register_health(app: Dash, client: ApiClient, settings: DashSettings) -> None:
    """The pipeline health panel: dead letters, throughput and their summary (``updates.health_update``)."""

    @app.callback(
        Output("dead-letters-chart", "figure"), Output("throughput-chart", "figure"),
        Output("health-summary", "children"),
        Input("side-panels-start", "n_intervals"), Input("slow-poll", "n_intervals"),
        prevent_initial_call=True,
    )
    def refresh_health(_start: int | None, _tick: int | None) -> tuple[Any, ...]:
        result = updates.health_update(client, size=settings.dash_watchlist_size)
        return result.dead_letters, result.throughput, result.summary
