"""``filled`` and ``session=`` of /v1/bars against a real PostgreSQL holding real and
carry-forward bars around real US market dates.

Expected session hours are written here from the exchange's published schedule (NYSE: 09:30-16:00
New York time, 13:00 on the day after Thanksgiving, closed on Thanksgiving; New York is UTC-4
until the first Sunday of November, then UTC-5), not computed by the code under test.
"""
from __future__ import annotations

import io
import json
from typing import Iterator

import pandas as pd
import pydantic
import pytest
import requests
from fastapi.testclient import TestClient

from alphastream.records import Bar, PaneTiming
from serving.main import create_app
from serving.settings import ApiSettings
from tests.fixtures.api import api_settings, serve, write_bars

EQUITY, CRYPTO = "AAPL", "BTC-USD"
INTERVAL = "30m"
STEP = pd.Timedelta(minutes=30)
# Two stretches of 30-minute bars: Thanksgiving week, and the end of daylight saving time.
THANKSGIVING = (pd.Timestamp("2026-11-25T00:00Z"), pd.Timestamp("2026-11-28T00:00Z"))
DST_END = (pd.Timestamp("2026-10-30T00:00Z"), pd.Timestamp("2026-11-03T00:00Z"))
STREAM_TIMEOUT_SECONDS = 20.0


def _is_filled(start: pd.Timestamp) -> bool:
    """Every third bar is a carry-forward bar (a quiet bucket the pipeline filled)."""
    return (start.value // STEP.value) % 3 == 0


def _bar(symbol: str, start: pd.Timestamp, close: float) -> Bar:
    filled = _is_filled(start)
    price = close if filled else close + 1.0
    return Bar(symbol=symbol, interval=INTERVAL, bucket_start_us=start.value // 1_000, open=close,
               high=max(close, price), low=min(close, price), close=price, volume=0.0 if filled else 50.0,
               vwap=price, trades=0 if filled else 3, timing=PaneTiming.ON_TIME.value, pane_index=0)


def _stretch(symbol: str, first: pd.Timestamp, end: pd.Timestamp) -> list[Bar]:
    return [_bar(symbol, start, 100.0 + i) for i, start in enumerate(pd.date_range(first, end - STEP, freq=STEP))]


@pytest.fixture(scope="module")
def store(pg_cluster) -> str:
    db_url = pg_cluster.new_database()
    write_bars(db_url, [bar for symbol in (EQUITY, CRYPTO) for span in (THANKSGIVING, DST_END)
                        for bar in _stretch(symbol, *span)], final=True)
    return db_url


@pytest.fixture(scope="module")
def client(store) -> Iterator[TestClient]:
    with TestClient(create_app(api_settings(api_bars_cache_mb=0), dsn=store)) as test_client:
        yield test_client


def pages(client: TestClient, **params) -> list[list[dict]]:
    """Every page of a /v1/bars query, following next_cursor."""
    out, cursor = [], None
    while True:
        response = client.get("/v1/bars", params={**params, **({"cursor": cursor} if cursor else {})})
        assert response.status_code == 200, response.text
        page = response.json()
        out.append(page["items"])
        cursor = page["next_cursor"]
        if cursor is None:
            return out


def starts(client: TestClient, symbol: str, span: tuple[pd.Timestamp, pd.Timestamp], session: str,
           interval: str = INTERVAL, **params) -> list[pd.Timestamp]:
    items = [bar for page in pages(client, symbol=symbol, interval=interval, start=span[0].isoformat(),
                                   end=span[1].isoformat(), session=session, **params) for bar in page]
    return [pd.Timestamp(bar["bucket_start"]) for bar in items]


def half_hours(first: str, end: str) -> list[pd.Timestamp]:
    """Bar starts in [first, end), UTC."""
    return list(pd.date_range(pd.Timestamp(first, tz="UTC"), pd.Timestamp(end, tz="UTC") - STEP, freq=STEP))


# -- filled -------------------------------------------------------------------------------------

def test_filled_marks_the_bars_without_a_trade(client):
    items = [bar for page in pages(client, symbol=EQUITY, interval=INTERVAL) for bar in page]
    assert len(items) == len(_stretch(EQUITY, *THANKSGIVING)) + len(_stretch(EQUITY, *DST_END))
    assert [bar["filled"] for bar in items] == [_is_filled(pd.Timestamp(bar["bucket_start"])) for bar in items]
    assert {bar["filled"] for bar in items} == {True, False}
    assert all((bar["trades"] == 0) == bar["filled"] for bar in items)


def test_filled_in_csv(client):
    response = client.get("/v1/bars", params={"symbol": EQUITY, "interval": INTERVAL, "limit": 20},
                          headers={"Accept": "text/csv"})
    frame = pd.read_csv(io.StringIO(response.text))
    assert frame["filled"].tolist() == (frame["trades"] == 0).tolist() and frame["filled"].any()


def test_a_rolled_up_bar_is_filled_when_all_of_its_bars_are(client):
    # 90m = three 30m bars, one of them filled: never all filled. 30m buckets 0, 3, 6... are filled,
    # so a 1h bar holds one filled bar and one real one: never filled either.
    for interval in ("1h", "90m"):
        items = [bar for page in pages(client, symbol=EQUITY, interval=interval) for bar in page]
        assert items and not any(bar["filled"] for bar in items)


def test_filled_is_documented_in_the_schema(client):
    bar = client.get("/openapi.json").json()["components"]["schemas"]["BarOut"]
    assert "filled" in bar["required"] and bar["properties"]["filled"]["type"] == "boolean"
    assert "carry-forward" in bar["properties"]["filled"]["description"]


def test_the_stream_says_filled(pg_cluster):
    store = pg_cluster.new_database()
    start = THANKSGIVING[0]
    write_bars(store, [_bar(EQUITY, start - STEP, 1.0)])  # the stream serves symbols the store knows
    with serve(create_app(api_settings(), dsn=store)) as url, requests.get(
            f"{url}/v1/stream/bars", params={"symbols": EQUITY, "interval": INTERVAL, "max_events": 2,
                                             "timeout_seconds": STREAM_TIMEOUT_SECONDS},
            stream=True, timeout=STREAM_TIMEOUT_SECONDS + 5) as response:
        lines = response.iter_lines(decode_unicode=True)
        assert next(lines).startswith("retry:")
        write_bars(store, [_bar(EQUITY, start, 1.0), _bar(EQUITY, start + STEP, 1.0)])
        events = [json.loads(line[len("data: "):]) for line in lines if line.startswith("data: ")]
    assert [(e["filled"], e["trades"]) for e in sorted(events, key=lambda e: e["bucket_start"])] == [
        (True, 0), (False, 3)]


# -- session= ---------------------------------------------------------------------------------

def test_regular_hours_around_thanksgiving(client):
    expected = (half_hours("2026-11-25T14:30", "2026-11-25T21:00")  # Wednesday, a full day (EST)
                # Thursday 26th: Thanksgiving, closed
                + half_hours("2026-11-27T14:30", "2026-11-27T18:00"))  # Friday: closes 13:00 New York
    assert starts(client, EQUITY, THANKSGIVING, "regular") == expected


def test_extended_hours_around_thanksgiving(client):
    # 04:00 New York to 4 hours after the regular close (20:00, 17:00 on the half-day).
    expected = (half_hours("2026-11-25T00:00", "2026-11-25T01:00")  # Tuesday's post-market
                + half_hours("2026-11-25T09:00", "2026-11-26T01:00")
                + half_hours("2026-11-27T09:00", "2026-11-27T22:00"))
    assert starts(client, EQUITY, THANKSGIVING, "extended") == expected


def test_regular_hours_follow_daylight_saving_time(client):
    expected = (half_hours("2026-10-30T13:30", "2026-10-30T20:00")  # Friday, still EDT (UTC-4)
                + half_hours("2026-11-02T14:30", "2026-11-02T21:00"))  # Monday after the change: EST
    assert starts(client, EQUITY, DST_END, "regular") == expected


def test_a_bar_overlapping_the_open_or_close_is_kept(client):
    # 1h bars: 13:00-14:00 does not reach the 14:30 open, 14:00-15:00 does; the half-day's last is 17:00.
    got = starts(client, EQUITY, (pd.Timestamp("2026-11-27T00:00Z"), THANKSGIVING[1]), "regular", "1h")
    assert got == list(pd.date_range("2026-11-27T14:00Z", "2026-11-27T17:00Z", freq="1h"))


@pytest.mark.parametrize("session", ["regular", "extended", "all"])
def test_crypto_trades_around_the_clock(client, session):
    assert starts(client, CRYPTO, THANKSGIVING, session) == half_hours("2026-11-25", "2026-11-28")


def test_all_is_the_default(client):
    assert starts(client, EQUITY, THANKSGIVING, "all") == half_hours("2026-11-25", "2026-11-28")
    default = client.get("/v1/bars", params={"symbol": EQUITY, "interval": INTERVAL, "end": THANKSGIVING[1].isoformat(),
                                             "start": THANKSGIVING[0].isoformat()}).json()
    assert [pd.Timestamp(bar["bucket_start"]) for bar in default["items"]] == half_hours("2026-11-25", "2026-11-28")


@pytest.mark.parametrize("limit", [1, 5, 13])
def test_pages_are_full_until_the_last(client, limit):
    whole = starts(client, EQUITY, DST_END, "regular")
    paged = pages(client, symbol=EQUITY, interval=INTERVAL, start=DST_END[0].isoformat(),
                  end=DST_END[1].isoformat(), session="regular", limit=limit)
    assert [len(page) for page in paged[:-1]] == [limit] * (len(paged) - 1) and 0 < len(paged[-1]) <= limit
    assert [pd.Timestamp(bar["bucket_start"]) for page in paged for bar in page] == whole


def test_a_scan_bound_shortens_pages_without_losing_bars(store):
    settings = api_settings(api_bars_cache_mb=0, api_max_scan_rows=12)
    with TestClient(create_app(settings, dsn=store)) as small:
        paged = pages(small, symbol=EQUITY, interval=INTERVAL, session="regular", limit=10)
        assert any(len(page) < 10 for page in paged[:-1])  # a closed night is crossed page by page
        with TestClient(create_app(api_settings(api_bars_cache_mb=0), dsn=store)) as full:
            whole = [bar for page in pages(full, symbol=EQUITY, interval=INTERVAL, session="regular")
                     for bar in page]
    assert [bar for page in paged for bar in page] == whole


def test_the_exchange_map_setting_picks_the_calendar(store):
    settings = api_settings(api_bars_cache_mb=0, api_exchange_map=f"{CRYPTO}=XNYS, {EQUITY}=24/7")
    with TestClient(create_app(settings, dsn=store)) as mapped:
        assert starts(mapped, EQUITY, THANKSGIVING, "regular") == half_hours("2026-11-25", "2026-11-28")
        assert starts(mapped, CRYPTO, THANKSGIVING, "regular")[0] == pd.Timestamp("2026-11-25T14:30Z")


@pytest.mark.parametrize("text", ["AAPL=NOPE", "AAPL", "=XNYS"])
def test_a_bad_exchange_map_fails_at_start(text):
    with pytest.raises(pydantic.ValidationError, match="AAPL|XNYS|NOPE"):
        ApiSettings(_env_file=None, api_exchange_map=text)


def test_an_unknown_session_is_refused(client):
    response = client.get("/v1/bars", params={"symbol": EQUITY, "interval": INTERVAL, "session": "overnight"})
    assert response.status_code == 422
