"""The API as a service: probes, metrics, auth, CORS, the SSE stream and the dashboard's client,
over a real uvicorn on loopback and a real PostgreSQL filled by the real pipeline."""
from __future__ import annotations

import json
import time
from typing import Iterator

import pandas as pd
import pytest
import requests
from fastapi.testclient import TestClient

from alphastream.records import Bar, PaneTiming
from dash_app.api_client import ApiClient, ApiError
from serving.main import create_app
from tests.fixtures.api import api_settings, serve, stored_bars, write_bars

SYMBOL = "MSFT"
API_KEY = "test-key-123"
STREAM_TIMEOUT_SECONDS = 20.0


def test_healthz_and_readyz(client):
    assert client.get("/healthz").json() == {"status": "ok"}
    ready = client.get("/readyz")
    assert ready.status_code == 200 and ready.json() == {"status": "ready", "database": "ok", "pending_migrations": []}


def test_readyz_reports_pending_migrations(pg_cluster):
    with TestClient(create_app(api_settings(), dsn=pg_cluster.new_database(migrated=False))) as bare:
        ready = bare.get("/readyz")
        assert bare.get("/healthz").status_code == 200
    assert ready.status_code == 503 and ready.json()["pending_migrations"]


def test_unreachable_database_is_a_503_without_internals():
    app = create_app(api_settings(api_pool_timeout_seconds=0.5),
                     dsn="postgresql://nobody@127.0.0.1:9/none?connect_timeout=1")
    with TestClient(app) as bare:
        assert bare.get("/healthz").status_code == 200
        bars = bare.get("/v1/bars", params={"symbol": "AAPL", "interval": "1m"})
        ready = bare.get("/readyz")
        metrics = bare.get("/metrics")
    assert bars.status_code == 503 and "database" in bars.json()["detail"] and "nobody" not in bars.text
    assert metrics.status_code == 200 and 'route="/v1/bars",status="503"' in metrics.text
    assert ready.status_code == 503 and ready.json()["status"] == "not ready"


def test_metrics_count_requests_by_route_and_report_the_store(client):
    for _ in range(3):
        client.get("/v1/bars", params={"symbol": SYMBOL, "interval": "5m", "limit": 2})
    client.get("/v1/bars", params={"symbol": "NOPE", "interval": "5m"})
    text = client.get("/metrics").text
    assert 'alphastream_api_requests_total{method="GET",route="/v1/bars",status="200"}' in text
    assert 'alphastream_api_requests_total{method="GET",route="/v1/bars",status="404"} 1.0' in text
    assert 'alphastream_api_request_duration_seconds_bucket{le="0.005",method="GET",route="/v1/bars"}' in text
    assert f'alphastream_bar_age_seconds{{interval="1m",symbol="{SYMBOL}"}}' in text
    assert 'alphastream_db_pool{stat="pool_max"} 8.0' in text
    rows = next(line for line in text.splitlines() if line.startswith("alphastream_bar_rows_written_total"))
    assert float(rows.split()[-1]) > 0


def test_api_key_is_required_when_set(market_db):
    with TestClient(create_app(api_settings(api_key=API_KEY), dsn=market_db)) as secured:
        missing = secured.get("/v1/symbols")
        wrong = secured.get("/v1/symbols", headers={"X-API-Key": "nope"})
        right = secured.get("/v1/symbols", headers={"X-API-Key": API_KEY})
        open_routes = [secured.get(p).status_code for p in ("/healthz", "/readyz", "/docs", "/openapi.json")]
        metrics = [secured.get("/metrics", headers=headers).status_code
                   for headers in ({}, {"X-API-Key": "nope"}, {"Authorization": "Bearer nope"},
                                   {"X-API-Key": API_KEY}, {"Authorization": f"Bearer {API_KEY}"})]
    assert missing.status_code == wrong.status_code == 401 and "X-API-Key" in missing.json()["detail"]
    assert right.status_code == 200 and right.json()["items"]
    assert open_routes == [200, 200, 200, 200]
    # The scrape shows request rates and store contents: it needs the key too, which Prometheus
    # sends as a bearer token (its `authorization` setting) or an X-API-Key header.
    assert metrics == [401, 401, 401, 200, 200]


def test_cors_allows_only_the_configured_origins(market_db):
    dashboard = "http://127.0.0.1:8050"
    with TestClient(create_app(api_settings(api_cors_origins=[dashboard]), dsn=market_db)) as api:
        allowed = api.get("/v1/symbols", headers={"Origin": dashboard})
        other = api.get("/v1/symbols", headers={"Origin": "http://evil.example"})
        preflight = api.options("/v1/bars", headers={"Origin": dashboard, "Access-Control-Request-Method": "GET",
                                                     "Access-Control-Request-Headers": "X-API-Key"})
    assert allowed.headers["access-control-allow-origin"] == dashboard
    assert "access-control-allow-origin" not in other.headers
    assert preflight.status_code == 200


def test_dashboard_client_reads_the_api(market_db):
    with serve(create_app(api_settings(api_key=API_KEY), dsn=market_db)) as url:
        api = ApiClient(url, api_key=API_KEY)
        symbols = api.symbols()
        bars = api.bars(SYMBOL, "15m", start="2024-03-05T14:00:00Z", end="2024-03-05T16:00:00Z")
        long_history = api.bars(SYMBOL, "1m", limit=7_000)  # more than one page of PAGE_LIMIT
        quotes = api.latest_quotes([SYMBOL])
        api.dead_letters()
        assert api.health()["status"] == "ok" and api.ready()["status"] == "ready"
        metrics = requests.get(f"{url}/metrics", headers={"X-API-Key": API_KEY}, timeout=5).text
        with pytest.raises(ApiError) as refused:
            ApiClient(url).symbols()
    assert {s.symbol for s in symbols} == {"AAPL", "MSFT", "NVDA"} and all(s.last_bar for s in symbols)
    # The synthetic session opens at 14:30 UTC (9:30 New York).
    assert [b["bucket_start"][11:16] for b in bars] == ["14:30", "14:45", "15:00", "15:15", "15:30", "15:45"]
    assert len(long_history) == len(stored_bars(market_db, SYMBOL, "1m"))
    assert quotes[0]["symbol"] == SYMBOL and quotes[0]["price"] == long_history[-1]["close"]
    assert 'alphastream_api_requests_total{method="GET",route="/v1/bars",status="200"}' in metrics
    assert refused.value.status == 401


def _events(lines: Iterator[str], count: int | None = None) -> list[dict]:
    """The `data` of the next ``count`` SSE `bar` events (default: all, until the stream ends)."""
    events, kind = [], None
    for line in lines:
        if line.startswith("event: "):
            kind = line[len("event: "):]
        elif line.startswith("data: ") and kind == "bar":
            events.append(json.loads(line[len("data: "):]))
            if len(events) == count:
                break
    return events


def test_stream_pushes_a_bar_written_after_it_opened(market_db):
    last = stored_bars(market_db, SYMBOL, "1m").iloc[-1]
    start = last["bucket_start"] + pd.Timedelta(minutes=1)
    new_bar = Bar(symbol=SYMBOL, interval="1m", bucket_start_us=int(start.value // 1_000), open=1.0, high=2.0,
                  low=0.5, close=1.5, volume=10.0, vwap=1.2, trades=3, timing=PaneTiming.EARLY.value, pane_index=0)
    with serve(create_app(api_settings(), dsn=market_db)) as url:
        with requests.get(f"{url}/v1/stream/bars", params={"symbols": f"{SYMBOL},AAPL", "max_events": 2,
                                                           "timeout_seconds": STREAM_TIMEOUT_SECONDS},
                          stream=True, timeout=STREAM_TIMEOUT_SECONDS + 5) as response:
            assert response.headers["content-type"].startswith("text/event-stream")
            # The first bytes (the retry hint) arrive once the stream is open: write only then.
            # One line iterator throughout: dropping a requests line iterator closes the stream.
            lines = response.iter_lines(decode_unicode=True)
            assert next(lines).startswith("retry:")
            write_bars(market_db, [new_bar])
            events = _events(lines, 1)
            # A later pane of the same bar is an update: pushed again.
            write_bars(market_db, [new_bar._replace(close=1.7, high=2.5, pane_index=1)])
            events += _events(lines, 1)
            closing = time.monotonic()
            events += _events(lines)  # max_events reached: the server ends the stream
    assert time.monotonic() - closing < STREAM_TIMEOUT_SECONDS / 2  # closed by max_events, not the timeout
    assert [(e["symbol"], e["close"], e["pane_index"]) for e in events] == [(SYMBOL, 1.5, 0), (SYMBOL, 1.7, 1)]
    assert pd.Timestamp(events[0]["bucket_start"]) == start and events[0]["timing"] == "EARLY"


def test_stream_is_bounded_by_its_timeout(client):
    started = time.monotonic()
    # NVDA: no test writes its bars, so nothing is new while the stream is open.
    with client.stream("GET", "/v1/stream/bars", params={"symbols": "NVDA", "timeout_seconds": 0.5}) as response:
        body = "".join(response.iter_text())
    assert response.status_code == 200 and "event: bar" not in body
    assert 0.4 < time.monotonic() - started < 5


@pytest.mark.parametrize("params,status", [
    ({"symbols": "NOPE"}, 404),
    ({"symbols": SYMBOL, "interval": "15m"}, 422),
    ({"symbols": SYMBOL, "timeout_seconds": 1e9}, 422),
    ({"symbols": SYMBOL, "max_events": 0}, 422),
])
def test_stream_refusals(client, params, status):
    response = client.get("/v1/stream/bars", params=params)
    assert response.status_code == status and isinstance(response.json()["detail"], str)


def test_response_models_follow_the_records():
    from alphastream.records import BAR_FIELDS, DEAD_LETTER_FIELDS, storage_columns
    from serving.models import BarOut, DeadLetterOut

    assert tuple(BarOut.model_fields) == storage_columns(BAR_FIELDS) + ("updated_at", "state", "revision", "filled")
    assert tuple(DeadLetterOut.model_fields) == storage_columns(DEAD_LETTER_FIELDS) + ("recorded_at",)


def test_settings_fields_are_documented():
    from serving.settings import ApiSettings

    undocumented = [name for name, field in ApiSettings.model_fields.items() if not field.description]
    assert not undocumented, undocumented
