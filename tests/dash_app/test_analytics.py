"""The dashboard's RSI, MACD and risk panels without a browser: the figure builders on their own,
and ``panels.analytics_update`` through the real API (uvicorn over real PostgreSQL), which must
draw the API's values for exactly the bars the chart holds."""
from __future__ import annotations

import datetime as dt

import numpy as np
import pandas as pd
import plotly.graph_objects as go
import pytest

from dash_app import figures, indicators, panels
from dash_app.api_client import ApiClient
from dash_app.views import iso
from serving.main import create_app
from tests.fixtures.analytics import MINUTE_START, MINUTE_SYMBOL
from tests.fixtures.api import api_settings, serve

START = pd.Timestamp("2024-03-05T14:30:00Z")


def points(values: list[float | None], **components: list[float | None]) -> list[dict]:
    return [{"bucket_start": iso(START + pd.Timedelta(minutes=i)), "value": v,
             **{name: series[i] for name, series in components.items()}} for i, v in enumerate(values)]


def test_rsi_figure_draws_the_values_on_a_fixed_scale():
    values = [None, None, 55.5, 71.25, 12.0]
    figure = go.Figure(figures.rsi_figure(points(values), "1m", 14))
    (trace,) = figure.data
    np.testing.assert_array_equal(np.array(trace.y, dtype=float), np.array(values, dtype=float))
    assert pd.Timestamp(trace.x[0]) == START.tz_localize(None)  # naive UTC, as the price chart
    assert list(figure.layout.yaxis.range) == [0, 100]
    assert sorted(shape.y0 for shape in figure.layout.shapes) == [30, 70]


def test_macd_figure_has_line_signal_and_signed_histogram():
    figure = go.Figure(figures.macd_figure(points([None, 0.5, -0.2], signal=[None, 0.1, 0.3],
                                                  histogram=[None, 0.4, -0.5]), "1m"))
    histogram, line, signal = figure.data
    assert [t.name for t in figure.data] == ["histogram", "MACD", "signal"]
    assert list(histogram.marker.color)[1:] == [figures.UP_COLOR, figures.DOWN_COLOR]
    assert line.y[1] == 0.5 and signal.y[2] == 0.3


@pytest.mark.parametrize("builder", [lambda p: figures.rsi_figure(p, "1m", 14),
                                     lambda p: figures.macd_figure(p, "1m")])
def test_a_range_too_short_for_the_window_says_so(builder):
    figure = builder(points([None, None], signal=[None, None], histogram=[None, None]))
    assert figure["data"] == [] and "not enough bars" in figure["layout"]["annotations"][0]["text"]


RISK = {
    "bars": 390, "calendar": "equity", "bars_per_year": 98_280.0, "volatility": 0.0012,
    "volatility_annualized": 0.376, "sharpe": -1.234,
    "max_drawdown": {"fraction": 0.0456, "peak_at": "2024-03-05T15:02:00Z", "trough_at": "2024-03-05T19:45:00Z"},
    "tails": [{"confidence": 0.95, "var": 0.0019, "expected_shortfall": 0.0026},
              {"confidence": 0.99, "var": 0.0031, "expected_shortfall": None}],
}


def test_risk_rows_say_each_metric_with_its_unit():
    rows = dict(panels.risk_rows(RISK))
    assert rows["Volatility"] == "37.6% a year · 0.120% a bar"
    assert rows["Max drawdown"] == "4.56% · 03-05 15:02 → 03-05 19:45"
    assert rows["VaR 95 / 99"] == "0.190% / 0.310% a bar"
    assert rows["ES 95 / 99"] == "0.260% / — a bar"
    assert rows["Sharpe"] == "-1.23 (annualized, rf 0)"
    assert rows["Basis"] == "390 bars · equity calendar · 98,280 bars a year"


def test_chart_span_covers_exactly_the_bars_held():
    stored = {"key": ["AAPL", "5m", "1d", None, None], "bars": [
        {"bucket_start": "2024-03-05T14:30:00Z"}, {"bucket_start": "2024-03-05T14:35:00Z"}]}
    symbol, interval, start, end = panels.chart_span(stored)
    assert (symbol, interval) == ("AAPL", "5m")
    assert (pd.Timestamp(start), pd.Timestamp(end)) == (START, START + pd.Timedelta(minutes=10))
    assert panels.chart_span({"key": ["AAPL", "5m"], "bars": []}) is None and panels.chart_span(None) is None


@pytest.fixture(scope="module")
def api_client(analytics_db):
    with serve(create_app(api_settings(), dsn=analytics_db)) as url:
        yield ApiClient(url)


def test_panels_show_the_apis_values_for_the_charts_bars(api_client):
    start = MINUTE_START + dt.timedelta(minutes=600)
    bars = api_client.bars(MINUTE_SYMBOL, "1m", start=iso(start), end=iso(start + dt.timedelta(hours=2)))
    stored = {"key": [MINUTE_SYMBOL, "1m", "custom", None, None], "bars": bars}
    update = panels.analytics_update(api_client, stored)

    expected_rsi = api_client.indicator(MINUTE_SYMBOL, "1m", "rsi", window=14, start=iso(start),
                                        end=iso(start + dt.timedelta(hours=2)))
    rsi = go.Figure(update.rsi).data[0]
    assert len(rsi.x) == len(bars) == 120
    np.testing.assert_allclose(np.array(rsi.y, dtype=float), [p["value"] for p in expected_rsi])
    assert np.isfinite(np.array(rsi.y, dtype=float)).all()  # warm from the bars before the range
    macd_line = go.Figure(update.macd).data[1]
    assert np.isfinite(np.array(macd_line.y, dtype=float)).all()

    risk = api_client.risk(MINUTE_SYMBOL, "1m", start=iso(start), end=iso(start + dt.timedelta(hours=2)))
    assert risk["bars"] == 120
    table = update.risk.to_plotly_json()
    texts = [row.children[1].children for row in table["props"]["children"].children]
    assert texts == [text for _, text in panels.risk_rows(risk)]


def test_panels_say_when_the_api_is_down():
    update = panels.analytics_update(ApiClient("http://127.0.0.1:9", timeout=1), {
        "key": ["AAPL", "1m"], "bars": [{"bucket_start": "2024-03-05T14:30:00Z"}]})
    assert "unreachable" in update.risk
    assert update.rsi["layout"]["annotations"][0]["text"] == "Indicators unavailable"


def test_chart_lines_come_from_the_api_for_the_bars_held(api_client):
    start = MINUTE_START + dt.timedelta(minutes=300)
    bars = api_client.bars(MINUTE_SYMBOL, "1m", start=iso(start), end=iso(start + dt.timedelta(hours=1)))
    overlays = figures.Overlays(sma=(10,), ema=(30,), bollinger=20, volatility=15, interval="1m")
    lines = indicators.overlay_lines(api_client, MINUTE_SYMBOL, "1m", bars, overlays)

    def api(kind: str, window: int, name: str = "value") -> list:
        return [p[name] for p in api_client.indicator(MINUTE_SYMBOL, "1m", kind, window=window, start=iso(start),
                                                      end=iso(start + dt.timedelta(hours=1)))]

    assert lines.sma[10] == api("sma", 10) and lines.ema[30] == api("ema", 30)
    assert lines.bollinger == (api("bollinger", 20), api("bollinger", 20, "upper"), api("bollinger", 20, "lower"))
    assert lines.volatility == api("volatility", 15) and len(lines.volatility) == len(bars) == 60
    assert None not in lines.ema[30]  # seeded before the range, unlike a computation over the bars alone
    # The SMA over the bars held, computed here: the API's line agrees once its window is inside them.
    own_sma = pd.Series([bar["close"] for bar in bars]).rolling(10).mean().to_numpy()
    np.testing.assert_allclose(own_sma[9:], np.array(lines.sma[10][9:], dtype=float), rtol=1e-9)

    figure = go.Figure(figures.candles_figure(bars, overlays, lines))
    drawn = {trace.name: trace.y for trace in figure.data if trace.type == "scatter"}
    np.testing.assert_array_equal(np.array(drawn["SMA 10"], dtype=float), np.array(lines.sma[10], dtype=float))
    np.testing.assert_array_equal(np.array(drawn["EMA 30"], dtype=float), np.array(lines.ema[30], dtype=float))
    np.testing.assert_array_equal(np.array(drawn["volatility (15)"], dtype=float),
                                  np.array(lines.volatility, dtype=float))


def test_points_line_up_with_bars_by_time():
    bars = [{"bucket_start": "2024-03-05T14:30:00Z"}, {"bucket_start": "2024-03-05T14:31:00Z"},
            {"bucket_start": "2024-03-05T14:32:00Z"}]
    found = [{"bucket_start": "2024-03-05T14:32:00+00:00", "value": 3.0, "upper": 4.0},
             {"bucket_start": "2024-03-05T14:30:00.000000Z", "value": None, "upper": None}]
    assert indicators.aligned(found, bars) == [None, None, 3.0]
    assert indicators.aligned(found, bars, "upper") == [None, None, 4.0]
