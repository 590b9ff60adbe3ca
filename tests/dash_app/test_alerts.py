"""The dashboard's alerts banner and watchlist badges: the plain functions without a browser,
then the real thing (PostgreSQL written by the pipeline's sink, the API under uvicorn, the Dash
server, headless Chromium): a stale symbol's badge and the banner appear, a fresh symbol has
none, and a feed that stops gets its badge within one poll of going stale."""
from __future__ import annotations

import datetime as dt
import time

import pandas as pd
import pytest
from dash import html
from selenium.webdriver.common.by import By

from alphastream.local_services import free_port
from alphastream.records import Bar, PaneTiming
from dash_app import alerts, panels, updates
from dash_app.api_client import ApiClient, SymbolInfo
from dash_app.app import create_app as create_dashboard
from dash_app.settings import DashSettings
from serving.main import create_app as create_api
from tests.fixtures.api import api_settings, serve, write_bars
from tests.fixtures.browser import WINDOW_SIZE, serve_wsgi, set_viewport, wait_for

STALE_SECONDS = 20.0
POLL_SECONDS = 1.0


def alert(name: str, symbol: str | None = None, severity: str = "warning") -> dict:
    return {"alert": name, "severity": severity, "symbol": symbol, "summary": f"{name} of {symbol}",
            "runbook_url": f"docs/alerts.md#{name.lower()}"}


def texts(component) -> str:
    """Every string in a component tree, joined (what a person reads)."""
    if isinstance(component, str):
        return component
    if isinstance(component, (list, tuple)):
        return " ".join(texts(c) for c in component)
    children = getattr(component, "children", None)
    return "" if children is None else texts(children)


def test_banner_hidden_when_quiet_and_listing_every_alert_when_not():
    assert alerts.banner([]) == (None, alerts.HIDDEN)
    children, style = alerts.banner([alert("SymbolDataStale", "MSFT"), alert("DatabaseUnreachable", None, "critical")])
    shown = texts(children)
    assert style != alerts.HIDDEN and "2 alerts firing" in shown
    assert "SymbolDataStale of MSFT" in shown and "DatabaseUnreachable" in shown
    many = [alert("SymbolDataStale", f"S{n}") for n in range(alerts.BANNER_MAX_LINES + 3)]
    assert "+3 more" in texts(alerts.banner(many)[0]) and "S7" not in texts(alerts.banner(many)[0])


def test_badges_go_to_the_alerted_symbols_only():
    now = pd.Timestamp("2024-03-05T15:00:00Z")
    symbols = [SymbolInfo(s, None, "2024-03-05T14:59:00Z", 1.0) for s in ("AAPL", "MSFT")]
    quotes = [{"symbol": s, "price": 1.0, "updated_at": "2024-03-05T14:59:30Z"} for s in ("AAPL", "MSFT")]
    table = updates.watchlist_table(panels.watchlist_rows(symbols, quotes, now, 120.0))
    by_symbol = alerts.alerts_by_symbol([alert("SymbolDataStale", "MSFT"), alert("DeadLetterRate")])
    assert list(by_symbol) == ["MSFT"]

    rows = {row.children[0].children: row for row in alerts.with_badges(table, by_symbol).children[1].children}
    badges = {symbol: [c for c in row.children[-1].children if isinstance(c, html.Span)]
              for symbol, row in rows.items()}
    assert badges["AAPL"] == []
    [badge] = badges["MSFT"]
    assert badge.className == "badge badge-alert" and "SymbolDataStale of MSFT" in badge.title
    message = updates.watchlist_message("No symbols yet")
    assert alerts.with_badges(message, by_symbol) is message


def test_unreachable_api_shows_no_alerts_banner():
    view = alerts.alerts_view(ApiClient(f"http://127.0.0.1:{free_port()}", timeout=1))
    assert view == alerts.AlertsView(None, alerts.HIDDEN)


def one_second_bar(symbol: str, start: dt.datetime) -> Bar:
    return Bar(symbol, "1s", int(start.timestamp()) * 1_000_000, 10.0, 11.0, 9.0, 10.5, 5.0, 10.2, 5,
               PaneTiming.EARLY.value, 0)


def badge_alerts(driver, symbol: str) -> list[str]:
    """The data-alerts of the badges on ``symbol``'s watchlist row."""
    for row in driver.find_elements(By.CSS_SELECTOR, "#watchlist tbody tr"):
        if row.find_element(By.CSS_SELECTOR, ".sym").text == symbol:
            return [b.get_attribute("data-alerts") for b in row.find_elements(By.CSS_SELECTOR, ".badge-alert")]
    return []


@pytest.mark.timeout(180)
def test_stale_symbol_badge_and_banner_in_the_browser(browser, db_url):
    now = dt.datetime.now(dt.timezone.utc).replace(microsecond=0)
    write_bars(db_url, [one_second_bar("MSFT", now - dt.timedelta(hours=1)), one_second_bar("AAPL", now)])
    aapl_stale_at = time.monotonic() + STALE_SECONDS + 1 - (dt.datetime.now(dt.timezone.utc) - now).total_seconds()
    with serve(create_api(api_settings(api_alert_stale_seconds=STALE_SECONDS), dsn=db_url)) as api_url, \
            serve_wsgi(create_dashboard(DashSettings(_env_file=None, api_url=api_url,
                                                     dash_health_poll_seconds=POLL_SECONDS)).server) as dash_url:
        set_viewport(browser, *WINDOW_SIZE)
        browser.get(dash_url)
        wait_for(lambda: badge_alerts(browser, "MSFT") == ["SymbolDataStale"], "MSFT's alert badge")
        banner = browser.find_element(By.ID, "alerts-banner")
        assert banner.is_displayed() and "1 alert firing" in banner.text and "MSFT" in banner.text
        assert time.monotonic() < aapl_stale_at, "the page took longer to load than AAPL stays fresh"
        assert badge_alerts(browser, "AAPL") == [], "a fresh symbol has no badge"

        # AAPL's feed stops: its badge appears at the first poll after it goes stale.
        time.sleep(max(0.0, aapl_stale_at - time.monotonic()))
        wait_for(lambda: badge_alerts(browser, "AAPL") == ["SymbolDataStale"], "AAPL's alert badge",
                 timeout=POLL_SECONDS + 2)
        assert "2 alerts firing" in browser.find_element(By.ID, "alerts-banner").text
