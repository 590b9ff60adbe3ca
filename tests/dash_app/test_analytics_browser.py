"""The RSI, MACD, risk and anomaly panels and the chart's anomaly markers in a real headless
Chromium, over the real API and PostgreSQL filled by the pipeline (the fixtures of
tests/fixtures/browser.py, anomalies from tests/fixtures/analytics.py): the panels draw the API's
values for the bars the chart shows. Saves ``dashboard-analytics.png`` (1280x800, scrolled down
to the panels, under the bottom of the chart) into ``screenshot_dir``."""
from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from PIL import Image
from selenium.webdriver.common.by import By

from dash_app import panels
from dash_app.api_client import ApiClient
from dash_app.app import create_app
from dash_app.settings import DashSettings
from dash_app.views import parse_time
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

# Each graph's drawn traces: {name, y (numbers or null)}.
TRACES_JS = """
var g = document.querySelector('#' + arguments[0] + ' .js-plotly-plot');
if (!g || !g._fullData || !g._fullData.length) return null;
return g._fullData.map(t => ({name: t.name, y: Array.from(t.y || [])}));
"""
# The price chart's marker traces: {x, kind per point}.
MARKERS_JS = """
var g = document.querySelector('#price-chart .js-plotly-plot');
if (!g || !g._fullData) return null;
return g._fullData.filter(t => t.mode === 'markers').map(
    t => ({x: Array.from(t.x), kinds: Array.from(t.customdata).map(row => row[0])}));
"""


@pytest.fixture(scope="module")
def analytics_dash_url(api_url):
    # Live polling off: the panels are compared with the API at one moment.
    app = create_app(DashSettings(api_url=api_url, dash_poll_seconds=3600, dash_health_poll_seconds=3600))
    with serve_wsgi(app.server) as url:
        yield url


def test_panels_draw_the_apis_indicators_risk_and_anomalies(browser, api_url, dashboard_anomalies, analytics_dash_url,
                                                            screenshot_dir):
    client = ApiClient(api_url)
    set_viewport(browser, *WINDOW_SIZE)
    install_draw_probe(browser)
    try:
        browser.get(analytics_dash_url)
        state = wait_for(lambda: candles_drawn(browser), "the first chart")
        symbol = state["title"].split(" · ")[0]
        bars = expected_bars(client, symbol, "1m")
        _, _, start, end = panels.chart_span({"key": [symbol, "1m"], "bars": bars})

        rsi = wait_for(lambda: browser.execute_script(TRACES_JS, "rsi-chart"), "the RSI panel")
        expected = [p["value"] for p in client.indicator(symbol, "1m", "rsi", window=14, start=start, end=end)]
        assert len(rsi[0]["y"]) == len(bars)
        np.testing.assert_allclose(np.array(rsi[0]["y"], dtype=float), np.array(expected, dtype=float),
                                   rtol=1e-12, equal_nan=True)
        macd = wait_for(lambda: browser.execute_script(TRACES_JS, "macd-chart"), "the MACD panel")
        assert [t["name"] for t in macd] == ["histogram", "MACD", "signal"]

        risk = client.risk(symbol, "1m", start=start, end=end)
        rows = wait_for(lambda: browser.find_elements(By.CSS_SELECTOR, "#risk-summary tr"), "the risk summary")
        shown = [(r.find_element(By.TAG_NAME, "th").text, r.find_element(By.TAG_NAME, "td").text) for r in rows]
        assert shown == panels.risk_rows(risk)
        assert risk["bars"] == len(bars)

        found = client.anomalies(symbol, start=start, end=end)
        assert len(found) == 4 and {a["symbol"] for a in found} == {symbol}
        markers = wait_for(lambda: browser.execute_script(MARKERS_JS), "the anomaly markers")
        drawn = sorted((kind, pd.Timestamp(x)) for trace in markers for x, kind in zip(trace["x"], trace["kinds"],
                                                                                       strict=True))
        assert drawn == sorted((a["kind"], parse_time(a["bucket_start"]).tz_localize(None)) for a in found)
        listed = wait_for(lambda: browser.find_elements(By.CSS_SELECTOR, "#anomaly-list tr"), "the anomaly list")
        assert [[cell.text for cell in row.find_elements(By.TAG_NAME, "td")] for row in listed[1:]] == [
            list(row) for row in panels.anomaly_rows(found)]

        browser.execute_script("document.getElementById('analytics').scrollIntoView({block: 'end'})")
        top, bottom = browser.execute_script(
            "var r = document.getElementById('analytics').getBoundingClientRect(); return [r.top, r.bottom];")
        assert 0 <= top and bottom <= WINDOW_SIZE[1] + 1  # all of the panel in the picture (to a subpixel)
        path = screenshot_dir / "dashboard-analytics.png"
        assert browser.save_screenshot(str(path)), f"Chromium did not save {path}"
        with Image.open(path) as image:
            assert image.size == WINDOW_SIZE
    finally:
        browser.execute_cdp_cmd("Emulation.clearDeviceMetricsOverride", {})
