"""The dashboard page: controls, the price chart, the watchlist and the pipeline health panel.

``build_layout`` runs on every page load; it asks the API for the symbol list once so the
first chart can be drawn straight away (no round trip to fill the picker first). If the API
is down the page still renders and says so; the periodic refresh fills it in later.
"""
from __future__ import annotations

from dash import dcc, html

from dash_app.api_client import ApiClient, ApiError, SymbolInfo
from dash_app.settings import DashSettings
from dash_app.views import DEFAULT_INTERVAL, DEFAULT_RANGE, INTERVALS, RANGE_LABELS

OVERLAY_OPTIONS = (("sma", "SMA"), ("ema", "EMA"), ("vwap", "VWAP"), ("bollinger", "Bollinger"))
DEFAULT_OVERLAYS = ["sma", "vwap"]
DEFAULT_WINDOWS = {"sma-window": 20, "ema-window": 50, "bb-window": 20, "vol-window": 20}
WINDOW_LABELS = {"sma-window": "SMA", "ema-window": "EMA", "bb-window": "BB", "vol-window": "σ"}
MAX_WINDOW = 500
SPINNER_DELAY_MS = 400  # live refreshes are faster than this: no spinner flicker
# The watchlist and health panels first load this long after the page, so their requests do
# not compete with the first chart's.
SIDE_PANELS_DELAY_MS = 700
DEFAULT_SYMBOL = "AAPL"
# Three columns that wrap on narrow screens; kept here so the panel needs no stylesheet change.
ANALYTICS_GRID = {"display": "grid", "gap": "10px",
                  "gridTemplateColumns": "repeat(auto-fit, minmax(min(300px, 100%), 1fr))"}


def symbol_options(symbols: list[SymbolInfo]) -> list[dict]:
    """Dropdown options: the ticker, searchable, with its last price as a hint."""
    return [
        {"label": s.symbol if s.last_price is None else f"{s.symbol}  ·  {s.last_price:,.2f}",
         "value": s.symbol, "search": s.symbol}
        for s in symbols
    ]


def default_symbol(symbols: list[SymbolInfo]) -> str | None:
    names = [s.symbol for s in symbols]
    return DEFAULT_SYMBOL if DEFAULT_SYMBOL in names else (names[0] if names else None)


def _field(label: str, control, class_name: str = "") -> html.Div:
    return html.Div([html.Label(label, className="field-label"), control],
                    className=f"field {class_name}".strip())


def _controls(options: list[dict], symbol: str | None) -> html.Section:
    windows = [
        html.Div([
            html.Span(WINDOW_LABELS[name], className="window-label"),
            dcc.Input(id=name, type="number", min=2, max=MAX_WINDOW, step=1, value=value,
                      debounce=True, className="window-input"),
        ], className="window")
        for name, value in DEFAULT_WINDOWS.items()
    ]
    return html.Section([
        _field("Symbol", dcc.Dropdown(id="symbol", options=options, value=symbol, searchable=True,
                                      clearable=False, placeholder="Search a symbol…"),
               "field-symbol"),
        _field("Interval", dcc.RadioItems(
            id="interval", options=[{"label": i, "value": i} for i in INTERVALS],
            value=DEFAULT_INTERVAL, inline=True, className="segmented")),
        _field("Range", html.Div([
            dcc.RadioItems(id="range", options=[{"label": v, "value": k} for k, v in RANGE_LABELS.items()],
                           value=DEFAULT_RANGE, inline=True, className="segmented"),
            html.Div(dcc.DatePickerRange(id="custom-range", display_format="YYYY-MM-DD",
                                         minimum_nights=0, clearable=True),
                     id="custom-range-box", className="custom-range", style={"display": "none"}),
        ], className="range-row")),
        _field("Overlays", html.Div([
            dcc.Checklist(id="overlays", options=[{"label": label, "value": value}
                                                  for value, label in OVERLAY_OPTIONS],
                          value=DEFAULT_OVERLAYS, inline=True, className="chips"),
            html.Div(windows, className="windows"),
        ], className="overlay-row")),
        _field("Mode", dcc.Checklist(id="live", options=[{"label": "Live", "value": "on"}],
                                     value=["on"], inline=True, className="chips live-toggle")),
    ], className="controls card")


def _chart_card() -> html.Section:
    return html.Section([
        html.Div(id="chart-status", className="status status-info", role="status",
                 children="Loading bars…"),
        dcc.Loading(
            dcc.Graph(id="price-chart", className="price-chart",
                      responsive=True, config={"displaylogo": False, "scrollZoom": False,
                              "modeBarButtonsToRemove": ["select2d", "lasso2d"]}),
            delay_show=SPINNER_DELAY_MS, type="dot", color="#2563eb",
        ),
    ], className="card chart-card")


def _side_panels() -> html.Div:
    return html.Div([
        html.Section([
            html.H2("Watchlist"),
            html.Div(id="watchlist", className="watchlist", children="Loading…"),
        ], className="card watchlist-card"),
        html.Section([
            html.H2("Pipeline health"),
            html.Div(id="health-summary", className="health-summary"),
            html.H3("Dead letters by reason"),
            dcc.Graph(id="dead-letters-chart", responsive=True, config={"displayModeBar": False},
                      className="small-chart"),
            html.H3("Throughput"),
            dcc.Graph(id="throughput-chart", responsive=True, config={"displayModeBar": False},
                      className="small-chart"),
        ], className="card health-card"),
    ], className="side")


def _analytics_card() -> html.Section:
    """RSI, MACD, the risk summary and the anomalies of the bars the chart shows (dash_app/panels.py)."""
    def graph(graph_id: str, title: str) -> html.Div:
        return html.Div([html.H3(title), dcc.Graph(id=graph_id, responsive=True, className="small-chart",
                                                   config={"displayModeBar": False})])

    return html.Section([
        html.H2("Indicators, risk and anomalies · this range"),
        html.Div([graph("rsi-chart", "RSI (14)"), graph("macd-chart", "MACD (12, 26, 9)"),
                  html.Div([html.H3("Risk"), html.Div(id="risk-summary", children="Loading…")]),
                  html.Div([html.H3("Anomalies"), html.Div(id="anomaly-list", children="Loading…")])],
                 className="analytics-grid", style=ANALYTICS_GRID),
    ], className="card analytics-card", id="analytics", style={"marginTop": "10px"})


def build_layout(client: ApiClient, settings: DashSettings) -> html.Div:
    """The whole page; pre-fills the symbol picker when the API answers."""
    try:
        symbols = client.symbols()
        banner = None
    except ApiError as err:
        symbols, banner = [], str(err)
    symbol = default_symbol(symbols)
    return html.Div([
        html.Header([
            html.Div([html.H1("alphastream"),
                      html.Span("market bars · indicators · pipeline health", className="tagline")],
                     className="brand"),
            html.Div(id="api-status", className="pill pill-unknown",
                     children=banner and "API unreachable" or "connecting…"),
        ], className="topbar"),
        html.Div(banner, id="page-error", className="status status-error",
                 style={} if banner else {"display": "none"}),
        html.Div(id="alerts-banner", className="alerts-banner", role="alert", style={"display": "none"}),
        _controls(symbol_options(symbols), symbol),
        html.Main([_chart_card(), _side_panels()], className="grid"),
        _analytics_card(),
        html.Footer(f"Data: {client.base_url} · times in UTC", className="footer"),
        dcc.Interval(id="live-poll", interval=int(settings.dash_poll_seconds * 1000)),
        dcc.Interval(id="slow-poll", interval=int(settings.dash_health_poll_seconds * 1000)),
        dcc.Interval(id="side-panels-start", interval=SIDE_PANELS_DELAY_MS, max_intervals=1),
        dcc.Store(id="bars-store"),
        dcc.Store(id="symbols-store", data=[s.__dict__ for s in symbols]),
    ], className="app")
