"""Hostile input and odd stored data never make the API answer 5xx or break its schema.

Over a real uvicorn and PostgreSQL: times at the calendar's edges with offsets, cursors and
Last-Event-IDs no server issued are 422s on one keep-alive connection that stays open; a NaN or
an infinity in a numeric column is served as the null the schema announces, never a 500.
"""
from __future__ import annotations

import base64
import datetime as dt
import http.client
import json
import math
from typing import Iterator
from urllib.parse import urlencode, urlsplit

import psycopg
import pytest
import requests
import schemathesis
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from psycopg import sql

from alphastream.records import Bar, PaneTiming
from serving.main import create_app
from serving.paging import from_us
from tests.fixtures.api import BAR_COLUMNS, api_settings, serve, write_bars

SYMBOL = "AAPL"
ODD_SYMBOL = "ODD"  # bars with NaN and infinities, written behind the pipeline's back
DAY_START_US = 1_709_647_200_000_000  # 2024-03-05T14:00:00Z
MINUTE_US = 60_000_000
FAR_PAST = "0001-01-01T00:00:00+14:00"  # 0000-12-31 in UTC: before the calendar
FAR_FUTURE = "9999-12-31T23:59:59-14:00"  # 10000-01-01 in UTC: after it


def _bar(minute: int, **fields) -> Bar:
    values = dict(symbol=SYMBOL, interval="1m", bucket_start_us=DAY_START_US + minute * MINUTE_US, open=10.0,
                  high=11.0, low=9.0, close=10.5, volume=100.0, vwap=10.2, trades=4,
                  timing=PaneTiming.ON_TIME.value, pane_index=0)
    return Bar(**{**values, **fields})


def _insert_raw(db_url: str, bars: list[Bar]) -> None:
    """Rows the pipeline would refuse (NaN, infinities), inserted directly as another writer could."""
    query = sql.SQL("INSERT INTO bars ({}) VALUES ({})").format(
        sql.SQL(", ").join(map(sql.Identifier, BAR_COLUMNS)), sql.SQL(", ").join(sql.Placeholder() * len(BAR_COLUMNS)))
    with psycopg.connect(db_url) as conn:
        for bar in bars:
            conn.execute(query, (*bar[:2], from_us(bar.bucket_start_us), *bar[3:]))


@pytest.fixture(scope="module")
def store(pg_cluster) -> str:
    db_url = pg_cluster.new_database()
    write_bars(db_url, [_bar(minute) for minute in range(30)])
    nan, inf = math.nan, math.inf
    _insert_raw(db_url, [
        _bar(0, symbol=ODD_SYMBOL, open=nan, vwap=nan),
        _bar(1, symbol=ODD_SYMBOL, high=inf, close=inf, volume=inf),
        _bar(2, symbol=ODD_SYMBOL, low=-inf),  # a finite close after an infinite one: a zero ratio
        _bar(3, symbol=ODD_SYMBOL, close=nan),
        _bar(4, symbol=ODD_SYMBOL),
    ])
    return db_url


@pytest.fixture(scope="module")
def api_url(store) -> Iterator[str]:
    with serve(create_app(api_settings(), dsn=store)) as url:
        yield url


def _cursor(scope: list, position) -> str:
    raw = json.dumps([scope, position]).encode()
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


BARS = {"symbol": SYMBOL, "interval": "1m"}
INDICATORS = {**BARS, "kind": "sma", "window": 3}
HOSTILE = [
    ("/v1/bars", {**BARS, "start": FAR_PAST}, {}),
    ("/v1/bars", {**BARS, "end": FAR_FUTURE}, {}),
    ("/v1/bars", {**BARS, "start": FAR_PAST, "end": FAR_FUTURE}, {}),
    ("/v1/indicators", {**INDICATORS, "start": FAR_PAST}, {}),
    ("/v1/indicators", {**INDICATORS, "end": FAR_FUTURE}, {}),
    ("/v1/dead-letters", {"since": FAR_PAST}, {}),
    ("/v1/dead-letters", {"since": FAR_FUTURE}, {}),
    ("/v1/stream/bars", {"symbols": SYMBOL}, {"Last-Event-ID": "9" * 32}),
    ("/v1/stream/bars", {"symbols": SYMBOL}, {"Last-Event-ID": "9" * 19}),
    ("/v1/stream/bars", {"symbols": SYMBOL}, {"Last-Event-ID": "\u00b2".encode()}),  # superscript two
    ("/v1/stream/bars", {"symbols": SYMBOL}, {"Last-Event-ID": "\u0661\u0662\u0663".encode()}),  # Arabic-Indic
    # Cursors no server issued: a position past the calendar, a NUL that PostgreSQL text refuses.
    ("/v1/bars", {**BARS, "cursor": _cursor(["bars", SYMBOL, "1m"], 10**30)}, {}),
    ("/v1/indicators", {**INDICATORS, "cursor": _cursor(["indicators", SYMBOL, "1m", "sma", 3], -(10**20))}, {}),
    ("/v1/dead-letters", {"cursor": _cursor(["dead-letters", None, None], [10**30, "o", "bad_json", "x"])}, {}),
    ("/v1/dead-letters", {"cursor": _cursor(["dead-letters", None, None], [0, "o\x00", "bad_json", "x"])}, {}),
]


def on_one_connection(url: str, requests_to_send: list[tuple[str, dict, dict]]) -> Iterator[tuple[int, dict]]:
    """Status and JSON body of each request, all sent on one HTTP/1.1 connection; after each, a
    /healthz on the same socket must be answered (uvicorn closes the connection after an
    exception escapes the app)."""
    parts = urlsplit(url)
    conn = http.client.HTTPConnection(parts.hostname, parts.port, timeout=10)
    conn.connect()
    socket_name = conn.sock.getsockname()
    try:
        for path, params, headers in requests_to_send:
            conn.request("GET", f"{path}?{urlencode(params)}", headers=headers)
            response = conn.getresponse()
            answer = response.status, json.loads(response.read())
            case = f"{path} {params} {headers}"
            assert response.getheader("connection") != "close", case
            conn.request("GET", "/healthz")
            follow_up = conn.getresponse()
            assert follow_up.status == 200 and follow_up.read(), case
            assert conn.sock is not None and conn.sock.getsockname() == socket_name, f"{case}: connection dropped"
            yield answer
    finally:
        conn.close()


def test_hostile_input_is_a_422_and_the_connection_stays_open(api_url):
    for (path, params, headers), (status, body) in zip(HOSTILE, on_one_connection(api_url, HOSTILE), strict=True):
        assert status == 422 and isinstance(body["detail"], str) and body["detail"], f"{path} {params} {headers}"


def test_an_unexpected_error_is_a_500_and_the_connection_stays_open(store):
    app = create_app(api_settings(), dsn=store)

    @app.get("/v1/failing")
    async def failing() -> None:
        raise RuntimeError("a defect: the route fails whatever it is sent")

    with serve(app) as url:
        answers = list(on_one_connection(url, [("/v1/failing", {}, {})] * 2))
        metrics = requests.get(f"{url}/metrics", timeout=10).text
    assert answers == [(500, {"detail": "internal error: the API logged it; retry or report it"})] * 2
    assert 'alphastream_api_requests_total{method="GET",route="/v1/failing",status="500"} 2.0' in metrics


def test_refusals_say_which_parameter_and_what_to_send(api_url):
    time = requests.get(f"{api_url}/v1/bars", params={**BARS, "start": FAR_PAST}, timeout=10).json()
    event_id = requests.get(f"{api_url}/v1/stream/bars", params={"symbols": SYMBOL},
                            headers={"Last-Event-ID": "9" * 32}, timeout=10).json()
    assert time["detail"] == (f"start: {FAR_PAST} is outside the calendar in UTC: give a time between "
                              "0001-01-01T00:00:00Z and 9999-12-31T23:59:59Z")
    assert time["errors"] == [{"loc": ["query", "start"], "msg": time["detail"][len("start: "):],
                               "type": "value_error"}]
    assert event_id["detail"].startswith("last-event-id: 999")
    assert event_id["detail"].endswith("is not an event id this stream sent: reconnect without Last-Event-ID")


def test_times_at_the_calendar_edges_in_utc_are_served(api_url):
    """Times that fit the calendar in UTC stay valid queries, however far out (nothing stored there)."""
    edges = [
        ("/v1/bars", {**BARS, "end": "9999-12-31T23:59:59Z", "interval": "1h"}),
        ("/v1/bars", {**BARS, "start": "0001-01-01T00:00:00Z"}),
        ("/v1/bars", {**BARS, "start": "9999-12-31T00:00:00Z", "end": "9999-12-31T23:59:59.999999Z"}),
        ("/v1/indicators", {**INDICATORS, "start": "9999-12-30T00:00:00Z", "end": "9999-12-31T00:00:00Z"}),
        ("/v1/bars", {**BARS, "start": "9999-12-30T00:00:00Z", "interval": "1d"}),  # after the stored span
        ("/v1/bars", {**BARS, "end": "1800-01-01T00:00:00Z"}),  # before it
        ("/v1/dead-letters", {"since": "0001-01-01T00:00:00Z"}),
        ("/v1/dead-letters", {"since": "9999-12-31T23:59:59Z"}),
    ]
    with requests.Session() as session:
        answers = [session.get(f"{api_url}{path}", params=params, timeout=10) for path, params in edges]
    assert [a.status_code for a in answers] == [200] * len(edges), [a.text for a in answers]
    assert len(answers[0].json()["items"]) == 1  # the stored day's 1-hour bar
    assert answers[4].json()["items"] == answers[5].json()["items"] == []


# Every UTC offset ISO-8601 allows, to the minute.
OFFSETS = st.integers(-14 * 60, 14 * 60).map(lambda minutes: dt.timezone(dt.timedelta(minutes=minutes)))
# Any time, and times within a day of either end of the calendar, where an offset can push UTC out.
TIMES = st.one_of(st.datetimes(timezones=OFFSETS), st.datetimes(max_value=dt.datetime(1, 1, 2), timezones=OFFSETS),
                  st.datetimes(min_value=dt.datetime(9999, 12, 30), timezones=OFFSETS))
TIME_PARAMETERS = [("/v1/bars", BARS, "start"), ("/v1/bars", BARS, "end"), ("/v1/indicators", INDICATORS, "start"),
                   ("/v1/indicators", INDICATORS, "end"), ("/v1/dead-letters", {}, "since")]


@pytest.fixture(scope="module")
def session() -> Iterator[requests.Session]:
    with requests.Session() as keep_alive:
        yield keep_alive


@settings(max_examples=150, deadline=None, derandomize=True, database=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(when=TIMES, where=st.sampled_from(TIME_PARAMETERS))
def test_no_time_with_any_offset_is_a_server_error(api_url, session, when, where):
    path, params, name = where
    response = session.get(f"{api_url}{path}", params={**params, name: when.isoformat()}, timeout=10)
    assert response.status_code in (200, 422), f"{name}={when.isoformat()}: {response.status_code} {response.text}"


schema = schemathesis.openapi.from_dict(create_app(api_settings()).openapi())


@pytest.mark.parametrize("path,params", [
    ("/v1/bars", {"symbol": ODD_SYMBOL, "interval": "1m"}),
    ("/v1/bars", {"symbol": ODD_SYMBOL, "interval": "5m"}),
    ("/v1/symbols", {}),
    ("/v1/quotes/latest", {"symbols": ODD_SYMBOL}),
    *[("/v1/indicators", {"symbol": ODD_SYMBOL, "interval": "1m", "kind": kind, "window": 2})
      for kind in ("sma", "ema", "volatility", "vwap")],
])
def test_non_finite_numbers_in_the_store_are_served_as_the_schema_says(api_url, path, params):
    response = requests.get(f"{api_url}{path}", params=params, timeout=10)
    assert response.status_code == 200, response.text
    schema[path]["GET"].validate_response(response)


def test_non_finite_bar_fields_are_null(api_url):
    params = {"symbol": ODD_SYMBOL, "interval": "1m"}
    items = requests.get(f"{api_url}/v1/bars", params=params, timeout=10).json()["items"]
    assert [(b["open"], b["vwap"]) for b in items[:1]] == [(None, None)]
    assert (items[1]["high"], items[1]["close"], items[1]["volume"]) == (None, None, None)
    assert (items[2]["low"], items[3]["close"]) == (None, None)
    assert items[4]["close"] == 10.5
