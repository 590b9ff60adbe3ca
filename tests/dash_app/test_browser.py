"""The dashboard end to end in a real headless Chromium.

Real everything: PostgreSQL filled by the pipeline (``python -m pipeline``), the REST API
(uvicorn, its own process) on a loopback port, the Dash server on another, Chromium driven by
Selenium. The candles on screen are counted (SVG paths and plotly's trace) and compared with
the database and the API. Live mode is checked by writing a bar with the pipeline's own sink
and watching it appear, then updating it with a later pane and watching it change in place.
Saves ``dashboard.png`` (1280x800) and ``dashboard-narrow.png`` (390 px) into ``screenshot_dir``:
a temporary folder, or ``docs/img`` through ``scripts/refresh_screenshots.sh``.
"""
from __future__ import annotations

import datetime as dt
from pathlib import Path
from typing import Callable

import apache_beam as beam
import pandas as pd
import psycopg
import pytest
from PIL import Image
from selenium.webdriver.common.by import By
from selenium.webdriver.common.keys import Keys

from alphastream.local_services import free_port
from alphastream.records import Bar, PaneTiming
from dash_app import views
from dash_app.api_client import ApiClient
from dash_app.app import create_app
from dash_app.settings import DashSettings
from tests.fixtures.browser import (
    WINDOW_SIZE,
    candles_drawn,
    expected_bars,
    install_draw_probe,
    serve_wsgi,
    set_viewport,
    wait_for,
)

pytestmark = pytest.mark.timeout(180)

LIVE_POLL_SECONDS = 0.5
NARROW = (390, 844)  # a phone held upright




def dashboard(api_url: str):
    return create_app(DashSettings(api_url=api_url, dash_poll_seconds=LIVE_POLL_SECONDS,
                                   dash_health_poll_seconds=2.0))


@pytest.fixture(scope="module")
def dash_url(api_url):
    with serve_wsgi(dashboard(api_url).server) as url:
        yield url


@pytest.fixture(scope="module")
def client(api_url) -> ApiClient:
    return ApiClient(api_url)


@pytest.fixture
def page(browser, dash_url):
    """The browser at 1280x800 on a freshly loaded dashboard."""
    set_viewport(browser, *WINDOW_SIZE)
    install_draw_probe(browser)
    browser.get(dash_url)
    yield browser
    browser.execute_cdp_cmd("Emulation.clearDeviceMetricsOverride", {})




def stored_count(db_url: str, symbol: str, interval: str, bars: list[dict]) -> int:
    """The database's own count of ``symbol``'s bars over the time span of ``bars``."""
    with psycopg.connect(db_url) as conn:
        return conn.execute(
            "SELECT count(*) FROM bars WHERE symbol = %s AND interval = %s"
            " AND bucket_start BETWEEN %s AND %s",
            (symbol, interval, bars[0]["bucket_start"], bars[-1]["bucket_start"])).fetchone()[0]


def chart_showing(driver, symbol: str, interval: str, count: int) -> Callable[[], dict | None]:
    """A probe: the chart's state once it shows ``count`` candles of ``symbol`` at ``interval``."""
    def probe():
        state = candles_drawn(driver)
        if state and state["title"] == f"{symbol} · {interval}" and state["data"] == count == state["drawn"]:
            return state
        return None
    return probe


def pick_symbol(driver, symbol: str) -> None:
    """Choose ``symbol`` the way a person does: open the picker, type part of it, click it."""
    driver.find_element(By.ID, "symbol").click()
    search = wait_for(lambda: driver.find_elements(By.CSS_SELECTOR, ".dash-dropdown-content input"),
                      "the symbol picker's search box")[0]
    search.send_keys(symbol[:-1])
    options = wait_for(lambda: driver.find_elements(By.CSS_SELECTOR, ".dash-dropdown-content [role=option]"),
                       f"options matching {symbol[:-1]!r}")
    assert all(symbol[:-1] in option.text for option in options), "search did not filter the symbols"
    next(option for option in options if option.text.startswith(symbol)).click()


def pick_radio(driver, group_id: str, label: str) -> None:
    driver.find_element(By.XPATH, f"//*[@id='{group_id}']//label[normalize-space()='{label}']").click()


def side_panels_loaded(driver) -> bool:
    return bool(driver.find_elements(By.CSS_SELECTOR, "#watchlist table")) and driver.execute_script(
        "var g = document.querySelector('#throughput-chart .js-plotly-plot');"
        "return !!(g && g._fullData && g._fullData.length);")


def save_screenshot(page, folder: Path, name: str) -> Path:
    """Save what the page shows as folder/name and check it is a PNG of the viewport's size."""
    path = folder / name
    assert page.save_screenshot(str(path)), f"Chromium did not save {path}"
    with Image.open(path) as image:
        assert image.format == "PNG"
        assert image.size == tuple(page.execute_script("return [window.innerWidth, window.innerHeight]"))
    return path


def test_chart_draws_every_bar_of_the_day(dashboard_anomalies, page, client, dashboard_db, screenshot_dir):
    symbols = [s.symbol for s in client.symbols()]
    assert len(symbols) == 3, symbols
    symbol = "AAPL" if "AAPL" in symbols else symbols[0]
    bars = expected_bars(client, symbol, "1m")
    assert len(bars) == stored_count(dashboard_db, symbol, "1m", bars) > 300  # a whole session

    state = wait_for(chart_showing(page, symbol, "1m", len(bars)), f"{len(bars)} candles of {symbol}")
    assert pd.Timestamp(state["first"]) == views.parse_time(bars[0]["bucket_start"]).tz_localize(None)
    assert pd.Timestamp(state["last"]) == views.parse_time(bars[-1]["bucket_start"]).tz_localize(None)
    assert state["last_close"] == pytest.approx(bars[-1]["close"])
    status = page.find_element(By.ID, "chart-status").text
    assert f"{symbol} · 1m · {len(bars)} bars" in status
    scripts = page.execute_script("return performance.getEntriesByType('resource').map(e => e.name)")
    assert any("plotly-finance.min.js" in name for name in scripts)  # the vendored partial bundle...
    assert not any("plotly.min.js" in name for name in scripts)  # ...instead of the 4.8 MB full one

    wait_for(lambda: side_panels_loaded(page), "the watchlist and the health panel")
    # Read in one script: the watchlist re-renders every health poll, which would leave rows
    # found by one WebDriver call stale for the next.
    shown = page.execute_script(
        "return Array.from(document.querySelectorAll('#watchlist tbody tr .sym'), cell => cell.textContent)")
    assert sorted(shown) == sorted(symbols)
    assert "API ok" in page.find_element(By.ID, "api-status").text
    markers = page.execute_script("var g = document.querySelector('#price-chart .js-plotly-plot');"
                                  "return g._fullData.filter(t => t.mode === 'markers').map(t => t.x.length);")
    assert sum(markers) == sum(a.symbol == symbol for a in dashboard_anomalies) == 4  # one of each kind
    save_screenshot(page, screenshot_dir, "dashboard.png")


def test_switching_symbol_and_interval_redraws_the_chart(page, client, dashboard_db):
    symbols = [s.symbol for s in client.symbols()]
    first = wait_for(lambda: candles_drawn(page), "the first chart")
    other = next(s for s in symbols if f"{s} · " not in first["title"])

    pick_symbol(page, other)
    bars = expected_bars(client, other, "1m")
    wait_for(chart_showing(page, other, "1m", len(bars)), f"{len(bars)} 1m candles of {other}")

    pick_radio(page, "interval", "5m")
    five = expected_bars(client, other, "5m")
    assert len(five) == stored_count(dashboard_db, other, "5m", five)
    assert len(bars) / 5 <= len(five) < len(bars)
    wait_for(chart_showing(page, other, "5m", len(five)), f"{len(five)} 5m candles of {other}")
    assert f"{other} · 5m · {len(five)} bars" in page.find_element(By.ID, "chart-status").text


def price_trace_names(driver) -> list[str]:
    return driver.execute_script("var g = document.querySelector('#price-chart .js-plotly-plot');"
                                 "return g && g._fullData ? g._fullData.map(t => t.name) : [];")


def test_custom_range_and_overlay_controls(page, client):
    state = wait_for(lambda: candles_drawn(page), "the first chart")
    symbol = state["title"].split(" · ")[0]
    day = views.parse_time(next(s.last_bar for s in client.symbols() if s.symbol == symbol)).date()
    pick_radio(page, "range", "Custom")
    wait_for(lambda: "pick both a start and an end date" in page.find_element(By.ID, "chart-status").text,
             "the custom range asking for its dates")
    start = page.find_element(By.ID, "custom-range")
    start.click()
    start.send_keys(day.isoformat(), Keys.TAB)
    end = page.find_element(By.ID, "custom-range-end-date")
    end.click()
    end.send_keys(day.isoformat(), Keys.ENTER, Keys.ESCAPE)  # Escape closes the calendar
    wait_for(lambda: page.find_element(By.ID, "custom-range-wrapper").get_attribute("data-state") == "closed",
             "the calendar to close")  # an open one takes the next click and gives focus back to it
    midnight = pd.Timestamp(day, tz="UTC")
    whole_day = client.bars(symbol, "1m", start=views.iso(midnight), end=views.iso(midnight + dt.timedelta(days=1)))
    wait_for(chart_showing(page, symbol, "1m", len(whole_day)), f"the {len(whole_day)} bars of {day}")

    pick_radio(page, "overlays", "Bollinger")
    window = page.find_element(By.ID, "sma-window")
    window.clear()
    window.send_keys("50", Keys.ENTER)
    names = wait_for(lambda: "SMA 50" in (n := price_trace_names(page)) and n, "SMA 50 on the chart")
    assert names.count("BB(20, 2σ)") == 3 and "VWAP (session)" in names and "SMA 20" not in names
    pick_radio(page, "overlays", "VWAP")
    wait_for(lambda: "VWAP (session)" not in price_trace_names(page), "VWAP removed from the chart")
    assert candles_drawn(page)["data"] == len(whole_day)  # overlays redraw the same bars


def test_narrow_screen_stacks_the_panels_without_sideways_scrolling(page, client, screenshot_dir):
    set_viewport(page, *NARROW, mobile=True)
    page.refresh()
    symbol = wait_for(lambda: candles_drawn(page), "candles on a narrow screen")["title"].split(" · ")[0]
    assert wait_for(lambda: candles_drawn(page)["drawn"] == len(expected_bars(client, symbol, "1m")),
                    "every candle drawn on a narrow screen")
    assert page.execute_script("return document.documentElement.scrollWidth") <= NARROW[0]
    chart = page.find_element(By.CSS_SELECTOR, ".chart-card").rect
    watchlist = page.find_element(By.CSS_SELECTOR, ".watchlist-card").rect
    assert watchlist["y"] >= chart["y"] + chart["height"]  # one column: the chart first
    assert chart["width"] <= NARROW[0]
    wait_for(lambda: side_panels_loaded(page), "the side panels on a narrow screen")
    save_screenshot(page, screenshot_dir, "dashboard-narrow.png")


def write_bars(db_url: str, bars: list[Bar]) -> None:
    """Write bars the way the pipeline does: a Beam pipeline ending in the project's sink."""
    from pipeline.postgres_sink import WriteBarsToPostgres

    with beam.Pipeline() as pipeline:
        _ = pipeline | beam.Create(bars) | WriteBarsToPostgres(db_url)


def test_live_mode_shows_a_new_bar_then_updates_it_in_place(page, client, dashboard_db):
    state = wait_for(lambda: candles_drawn(page), "the first chart")
    symbol = state["title"].split(" · ")[0]
    bars = expected_bars(client, symbol, "1m")
    last = bars[-1]
    start = views.parse_time(last["bucket_start"]) + pd.Timedelta(minutes=1)
    start_us = int(start.value // 1000)
    price = float(last["close"])
    early = Bar(symbol=symbol, interval="1m", bucket_start_us=start_us, open=price, high=price * 1.01,
                low=price, close=price * 1.01, volume=10.0, vwap=price * 1.005, trades=2,
                timing=PaneTiming.EARLY.value, pane_index=0)

    write_bars(dashboard_db, [early])
    new_last = start.tz_localize(None)
    grown = wait_for(lambda: (s := candles_drawn(page)) and pd.Timestamp(s["last"]) == new_last and s,
                     f"the new {start:%H:%M} bar on the live chart")
    assert grown["data"] == state["data"] + 1 == grown["drawn"]
    assert grown["last_close"] == pytest.approx(early.close)

    later = early._replace(close=price * 0.98, low=price * 0.98, volume=25.0, trades=5, pane_index=1)
    write_bars(dashboard_db, [later])
    updated = wait_for(lambda: (s := candles_drawn(page)) and s["last_close"] == pytest.approx(later.close)
                       and s, "the open bar updated by a later pane")
    assert updated["data"] == grown["data"] and pd.Timestamp(updated["last"]) == new_last


def test_api_down_says_so_on_the_page(browser):
    dead_api = f"http://127.0.0.1:{free_port()}"
    with serve_wsgi(dashboard(dead_api).server) as url:
        browser.get(url)
        banner = wait_for(lambda: (e := browser.find_element(By.ID, "page-error")).is_displayed() and e.text,
                          "the API-down banner")
        assert f"REST API unreachable at {dead_api}" in banner
        status = browser.find_element(By.ID, "chart-status")
        wait_for(lambda: "status-error" in status.get_attribute("class"), "the chart's error status")
        assert "unreachable" in status.text
        assert wait_for(lambda: browser.find_element(By.ID, "api-status").text, "the API pill") == "API unreachable"
        assert candles_drawn(browser) is None
