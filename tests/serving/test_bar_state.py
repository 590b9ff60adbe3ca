"""A served bar says whether it can still change: ``state`` and ``revision`` in JSON, CSV, roll-ups
and the stream, from the pane and the finality the pipeline's sink stored (real uvicorn, real
PostgreSQL), by the store's own rule (``store.revisions.bar_state``)."""
from __future__ import annotations

import io
import json
from typing import Iterator

import pandas as pd
import psycopg
import pytest
import requests

from alphastream.records import Bar, PaneTiming
from serving.main import create_app
from store.revisions import bar_state
from tests.fixtures.api import api_settings, serve, write_bars

SYMBOL = "STATE"
DAY_START_US = 1_709_647_200_000_000  # 2024-03-05T14:00:00Z, a 5-minute boundary
MINUTE_US = 60_000_000
STREAM_TIMEOUT_SECONDS = 20.0
# Streaming panes (minute: timing, pane index) and bars a batch run wrote (final).
PANES = {0: (PaneTiming.EARLY, 0), 1: (PaneTiming.ON_TIME, 0), 2: (PaneTiming.LATE, 2)}
BATCH = {5: (PaneTiming.ON_TIME, 0), 6: (PaneTiming.ON_TIME, 0)}
# (state, revision) served for minutes 0, 1, 2, 5, 6.
EXPECTED = [("provisional", 0), ("provisional", 0), ("revised", 2), ("final", 0), ("final", 0)]


def _bar(minute: int, timing: PaneTiming, pane_index: int) -> Bar:
    return Bar(symbol=SYMBOL, interval="1m", bucket_start_us=DAY_START_US + minute * MINUTE_US, open=10.0,
               high=11.0, low=9.0, close=10.5, volume=100.0, vwap=10.2, trades=4, timing=timing.value,
               pane_index=pane_index)


@pytest.fixture(scope="module")
def store(pg_cluster) -> str:
    db_url = pg_cluster.new_database()
    write_bars(db_url, [_bar(minute, *pane) for minute, pane in PANES.items()])
    write_bars(db_url, [_bar(minute, *pane) for minute, pane in BATCH.items()], final=True)
    return db_url


@pytest.fixture(scope="module")
def api_url(store) -> Iterator[str]:
    with serve(create_app(api_settings(), dsn=store)) as url:
        yield url


def _bars(api_url: str, interval: str, **headers) -> requests.Response:
    response = requests.get(f"{api_url}/v1/bars", params={"symbol": SYMBOL, "interval": interval},
                            headers=headers, timeout=10)
    assert response.status_code == 200, response.text
    return response


def test_json_bars_carry_state_and_revision(api_url):
    items = _bars(api_url, "1m").json()["items"]
    assert [(b["state"], b["revision"]) for b in items] == EXPECTED


def test_states_follow_the_stores_rule(store, api_url):
    with psycopg.connect(store) as conn:
        stored = conn.execute("SELECT timing, revision FROM bars WHERE symbol = %s ORDER BY bucket_start",
                              (SYMBOL,)).fetchall()
    assert [b["state"] for b in _bars(api_url, "1m").json()["items"]] == [bar_state(*row) for row in stored]


def test_csv_bars_carry_state_and_revision(api_url):
    frame = pd.read_csv(io.StringIO(_bars(api_url, "1m", Accept="text/csv").text))
    assert list(zip(frame["state"], frame["revision"], strict=True)) == EXPECTED


def test_rolled_up_bars_are_as_settled_as_their_least_settled_bar(api_url):
    items = _bars(api_url, "5m").json()["items"]
    # Minutes 0-4 hold an early pane; minutes 5-9 only final bars.
    assert [(b["state"], b["revision"]) for b in items] == [("provisional", 2), ("final", 0)]


def test_the_schema_documents_the_states(api_url):
    schema = requests.get(f"{api_url}/openapi.json", timeout=10).json()
    bar = schema["components"]["schemas"]["BarOut"]
    assert set(bar["required"]) >= {"state", "revision"}
    assert schema["components"]["schemas"]["BarState"]["enum"] == ["provisional", "final", "revised"]
    assert "late tick" in bar["properties"]["state"]["description"]


def test_the_stream_says_when_a_bar_is_revised_and_final(store, api_url):
    minute = 20
    with requests.get(f"{api_url}/v1/stream/bars", params={"symbols": SYMBOL, "max_events": 3,
                                                          "timeout_seconds": STREAM_TIMEOUT_SECONDS},
                      stream=True, timeout=STREAM_TIMEOUT_SECONDS + 5) as response:
        lines = response.iter_lines(decode_unicode=True)
        assert next(lines).startswith("retry:")  # the stream is open: what is written now is news
        write_bars(store, [_bar(minute, PaneTiming.EARLY, 0)])
        events = [_next_bar(lines)]
        write_bars(store, [_bar(minute, PaneTiming.LATE, 1)])
        events.append(_next_bar(lines))
        write_bars(store, [_bar(minute, PaneTiming.ON_TIME, 0)], final=True)  # the repair finalises it
        events.append(_next_bar(lines))
    assert [(e["state"], e["revision"], e["timing"]) for e in events] == [
        ("provisional", 0, "EARLY"), ("revised", 1, "LATE"), ("final", 0, "ON_TIME")]


def _next_bar(lines: Iterator[str]) -> dict:
    kind = None
    for line in lines:
        if line.startswith("event: "):
            kind = line[len("event: "):]
        elif line.startswith("data: ") and kind == "bar":
            return json.loads(line[len("data: "):])
    raise AssertionError("the stream ended before a bar event")
