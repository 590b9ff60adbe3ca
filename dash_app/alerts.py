"""Firing alerts on the dashboard: a banner over the page and a badge per symbol in the
watchlist, both from ``GET /v1/alerts`` (the API decides what is firing, with the same names
and thresholds as the Prometheus rules). Plain functions, tested without a browser.
"""
from __future__ import annotations

import logging
from dataclasses import dataclass, field
from typing import Any

from dash import html

from dash_app.api_client import ApiClient, ApiError

log = logging.getLogger("dash_app")

HIDDEN = {"display": "none"}
SHOWN: dict = {}
BANNER_MAX_LINES = 5  # more alerts than this are summarised as "+N more"
SYMBOL_CELL_CLASS = "sym"
BADGE_CELL_CLASS = "fresh"  # the watchlist's freshness cell carries the badges


@dataclass(frozen=True)
class AlertsView:
    """What the page shows of the firing alerts."""

    banner: Any
    banner_style: dict
    by_symbol: dict[str, list[dict]] = field(default_factory=dict)


def alerts_by_symbol(alerts: list[dict]) -> dict[str, list[dict]]:
    """The alerts that name a symbol, grouped by it."""
    grouped: dict[str, list[dict]] = {}
    for alert in alerts:
        if alert.get("symbol"):
            grouped.setdefault(alert["symbol"], []).append(alert)
    return grouped


def banner(alerts: list[dict]) -> tuple[Any, dict]:
    """Children and style of the alerts banner: hidden when nothing fires."""
    if not alerts:
        return None, HIDDEN
    lines = [html.Li([html.Strong(a["alert"]), f" · {a['summary']}"], className=f"alert-{a.get('severity')}")
             for a in alerts[:BANNER_MAX_LINES]]
    if len(alerts) > BANNER_MAX_LINES:
        lines.append(html.Li(f"+{len(alerts) - BANNER_MAX_LINES} more (GET /v1/alerts)"))
    title = f"{len(alerts)} alert{'s' if len(alerts) != 1 else ''} firing"
    return [html.Span(title, className="alerts-title"), html.Ul(lines, className="alerts-list")], SHOWN


def alerts_view(client: ApiClient) -> AlertsView:
    """The banner and per-symbol alerts now; nothing when the API cannot tell (the page's own
    error banner says why)."""
    try:
        alerts = client.alerts()
    except ApiError as err:
        log.warning("alerts: %s", err)
        return AlertsView(None, HIDDEN)
    return AlertsView(*banner(alerts), alerts_by_symbol(alerts))


def badge(alerts: list[dict]) -> html.Span:
    names = sorted({a["alert"] for a in alerts})
    return html.Span("alert", className="badge badge-alert", title="; ".join(a["summary"] for a in alerts),
                     **{"data-alerts": " ".join(names)})


def with_badges(watchlist: Any, by_symbol: dict[str, list[dict]]) -> Any:
    """The watchlist table (``updates.watchlist_table``) with an alert badge in the freshness
    cell of each symbol that has alerts; anything else (a message) as it is."""
    if not by_symbol or not isinstance(watchlist, html.Table):
        return watchlist
    for section in watchlist.children:
        if not isinstance(section, html.Tbody):
            continue
        for row in section.children:
            symbol_cell, badge_cell = _cell(row, SYMBOL_CELL_CLASS), _cell(row, BADGE_CELL_CLASS)
            alerts = by_symbol.get(symbol_cell.children) if symbol_cell is not None else None
            if alerts and badge_cell is not None:
                badge_cell.children = [*_as_list(badge_cell.children), badge(alerts)]
    return watchlist


def _cell(row: html.Tr, class_name: str) -> html.Td | None:
    return next((cell for cell in row.children if class_name in (getattr(cell, "className", None) or "").split()),
                None)


def _as_list(children: Any) -> list:
    return list(children) if isinstance(children, (list, tuple)) else [children]
