"""The callbacks' plain functions (``dash_app.updates``) against the real REST API.

No browser and no Dash server: each function is called as a callback would call it, with an
``ApiClient`` of the real API (uvicorn) over a PostgreSQL filled by the pipeline, and its
result is checked against the API's and the database's own answers.
"""
from __future__ import annotations

import pandas as pd
import plotly.graph_objects as go
import psycopg
import pytest

from alphastream.local_services import free_port
from dash_app import panels, updates, views
from dash_app.api_client import ApiClient
from dash_app.figures import Overlays
from tests.fixtures.browser import serve_api

pytestmark = pytest.mark.timeout(120)

NOW = views.parse_time("2030-01-01T00:00:00Z")  # any clock: relative ranges follow the newest bar
PLAIN = Overlays(interval="1m", title="chart")


@pytest.fixture(scope="module")
def client(api_url) -> ApiClient:
    return ApiClient(api_url)


@pytest.fixture(scope="module")
def symbol(client) -> str:
    return client.symbols()[0].symbol


def known(client: ApiClient) -> list[dict]:
    return [s.__dict__ for s in client.symbols()]


def first_load(client: ApiClient, key: list, overlays: Overlays = PLAIN) -> updates.ChartUpdate:
    return updates.chart_update(client, key=key, overlays=overlays, live=True, triggers=(), stored=None,
                                symbols=known(client), now=NOW)


def test_first_load_draws_the_last_day_of_bars(client, symbol):
    result = first_load(client, [symbol, "1m", "1d", None, None])
    window = result.store["window"]
    expected = client.bars(symbol, "1m", start=window["start"], end=window["end"])
    candles = go.Figure(result.figure).data[0]
    assert candles.type == "candlestick" and len(candles.x) == len(expected) > 300
    assert result.store["bars"] == expected
    assert result.status_class == "status status-ok"
    assert f"{symbol} · 1m · {len(expected)} bars" in result.status_text and result.status_text.endswith("live")


@pytest.mark.parametrize("interval", ["1m", "5m"])
def test_the_chart_marks_the_anomalies_of_the_bars_it_shows(client, symbol, dashboard_anomalies, interval):
    result = first_load(client, [symbol, interval, "1d", None, None], Overlays(interval=interval, title="chart"))
    figure = go.Figure(result.figure)
    markers = [t for t in figure.data if t.type == "scatter" and t.mode == "markers"]
    step = pd.Timedelta(interval)
    expected = sorted((a.kind, pd.Timestamp(a.bucket_start_us, unit="us").floor(step)) for a in dashboard_anomalies
                      if a.symbol == symbol)
    drawn = sorted((row[0], pd.Timestamp(x)) for t in markers for x, row in zip(t.x, t.customdata, strict=True))
    assert drawn == expected and len(drawn) == 4
    highs = {views.parse_time(b["bucket_start"]).tz_localize(None): b["high"] for b in result.store["bars"]}
    assert all(y > highs[pd.Timestamp(x)] for t in markers for x, y in zip(t.x, t.y, strict=True))
    served = client.anomalies(symbol, start=result.store["window"]["start"], end=result.store["window"]["end"])
    assert sorted((a["kind"], a["score"], a["threshold"]) for a in served) == sorted(
        (a.kind, a.score, a.threshold) for a in dashboard_anomalies if a.symbol == symbol)
    # The analytics panel lists them from the chart's store, newest first.
    listed = panels.analytics_update(client, result.store).anomalies.to_plotly_json()["props"]["children"]
    cells = [[cell.children for cell in row.children] for row in listed.children[1:]]
    assert cells == [list(row) for row in panels.anomaly_rows(served)] and len(cells) == 4
    assert [kind for _, kind, _ in cells] == [a["kind"].replace("_", " ") for a in reversed(served)]


def test_client_follows_the_cursor_across_pages(client, api_url, symbol):
    whole = client.bars(symbol, "1m")
    paged = ApiClient(api_url, page_size=50).bars(symbol, "1m")
    assert len(whole) > 50 * 6 and paged == whole
    assert ApiClient(api_url, page_size=50).bars(symbol, "1m", limit=120) == whole[:120]


def test_overlay_change_redraws_the_bars_held(client, symbol):
    key = [symbol, "1m", "1d", None, None]
    held = first_load(client, key).store
    with_bands = Overlays(bollinger=20, sma=(10,), interval="1m", title="chart")
    result = updates.chart_update(client, key=key, overlays=with_bands, live=True, triggers={"overlays"},
                                  stored=held, symbols=[], now=NOW)
    names = {t.name for t in go.Figure(result.figure).data}
    assert {"BB(20, 2σ)", "SMA 10"} <= names  # the lines come from the API's /v1/indicators
    assert result.store["bars"] is held["bars"] and result.store["style"] == updates.overlay_style(with_bands)
    # the same inputs again (e.g. a picker refreshed to the value it had): nothing to do, nothing asked
    offline = ApiClient(f"http://127.0.0.1:{free_port()}", timeout=1)
    again = updates.chart_update(offline, key=key, overlays=with_bands, live=True, triggers={"overlays"},
                                 stored=result.store, symbols=[], now=NOW)
    assert again == updates.ChartUpdate(*[updates.NO_UPDATE] * 4)


def test_live_tick_without_news_leaves_the_page_alone(client, symbol):
    key = [symbol, "1m", "1d", None, None]
    held = first_load(client, key).store
    result = updates.chart_update(client, key=key, overlays=PLAIN, live=True, triggers={updates.LIVE_TRIGGER},
                                  stored=held, symbols=known(client), now=NOW)
    assert result == updates.ChartUpdate(*[updates.NO_UPDATE] * 4)


def test_overlay_change_folded_into_a_live_tick_still_redraws(client, symbol):
    """Dash may report an overlay click that lands while a live tick is in flight as the tick alone."""
    key = [symbol, "1m", "1d", None, None]
    held = first_load(client, key).store
    with_ema = Overlays(ema=(9,), interval="1m", title="chart")
    result = updates.chart_update(client, key=key, overlays=with_ema, live=True,
                                  triggers={updates.LIVE_TRIGGER}, stored=held, symbols=known(client), now=NOW)
    assert "EMA 9" in {t.name for t in go.Figure(result.figure).data}
    assert result.store["bars"] == held["bars"]
    # the same tick with the API down: the chart drawn stays (its lines need the API), the error said
    offline = ApiClient(f"http://127.0.0.1:{free_port()}", timeout=1)
    down = updates.chart_update(offline, key=key, overlays=with_ema, live=True,
                                triggers={updates.LIVE_TRIGGER, "overlays"}, stored=held, symbols=[], now=NOW)
    assert down.figure is updates.NO_UPDATE and down.store is updates.NO_UPDATE
    assert down.status_class == "status status-error"


def test_live_tick_with_the_api_down_keeps_the_chart_and_says_why(client, symbol):
    key = [symbol, "1m", "1d", None, None]
    held = first_load(client, key).store
    offline = ApiClient(f"http://127.0.0.1:{free_port()}", timeout=1)
    result = updates.chart_update(offline, key=key, overlays=PLAIN, live=True, triggers={updates.LIVE_TRIGGER},
                                  stored=held, symbols=[], now=NOW)
    assert result.figure is updates.NO_UPDATE and result.store is updates.NO_UPDATE
    assert "unreachable" in result.status_text and "showing the last bars received" in result.status_text
    assert result.status_class == "status status-error"


def test_custom_range_without_bars_says_there_are_none(client, symbol):
    result = first_load(client, [symbol, "1h", "custom", "2001-09-10", "2001-09-11"])
    assert result.status_text == f"No 1h bars for {symbol} between 2001-09-10T00:00 and 2001-09-12T00:00 UTC"
    assert result.status_class == "status status-warn"
    assert go.Figure(result.figure).layout.annotations[0].text == result.status_text


def test_custom_range_needs_both_dates(client, symbol):
    result = first_load(client, [symbol, "1h", "custom", "2001-09-10", None])
    assert "pick both a start and an end date" in result.status_text


def test_unknown_symbol_reports_the_apis_answer(client):
    result = first_load(client, ["NOPE", "1m", "1d", None, None])
    assert "/v1/bars answered HTTP 404" in result.status_text
    assert result.status_class == "status status-warn"


def test_overview_lists_every_symbol_with_its_quote(client):
    result = updates.overview_update(client, selected=None, size=20, stale_seconds=120, now=NOW)
    assert result.api_text == "API ok" and result.page_error is None
    names = [s["symbol"] for s in result.symbols]
    text = str(result.watchlist)
    assert names and all(f"'{name}'" in text for name in names)
    assert text.count("badge-stale") == len(names)  # 2030: the demo's bars are long stale


def test_health_panel_counts_the_ticks_in_the_stored_bars(client, dashboard_db):
    result = updates.health_update(client, size=20)
    figure = go.Figure(result.throughput)
    ticks = next(t for t in figure.data if t.name == "ticks/min")
    window = updates.panels.throughput_window(client.symbols())
    with psycopg.connect(dashboard_db) as conn:
        stored = conn.execute("SELECT sum(trades) FROM bars WHERE interval = '1m' AND bucket_start >= %s"
                              " AND bucket_start < %s", window).fetchone()[0]
    assert sum(ticks.y) == stored > 0
    assert "dead letters" in str(result.summary)


def test_empty_store_and_api_down_say_what_is_wrong(pg_cluster):
    with serve_api(pg_cluster.new_database()) as empty_api:
        result = updates.no_symbol_update(ApiClient(empty_api))
        assert result.status_text == updates.NO_DATA_HINT
        overview = updates.overview_update(ApiClient(empty_api), selected=None, size=20, stale_seconds=120, now=NOW)
        assert "the store has no bars" in str(overview.watchlist)
    dead = f"http://127.0.0.1:{free_port()}"
    result = updates.no_symbol_update(ApiClient(dead, timeout=1))
    assert result.status_text.startswith(f"REST API unreachable at {dead}")
    assert result.status_class == "status status-error"
    overview = updates.overview_update(ApiClient(dead, timeout=1), selected=None, size=20, stale_seconds=120, now=NOW)
    assert overview.api_text == "API unreachable" and overview.page_error_style == {}
