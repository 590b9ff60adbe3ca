"""REST API data endpoints against a real PostgreSQL filled by the real pipeline.

Bars, roll-ups (vs an independent pandas roll-up of the stored 1-minute bars), cursor paging,
CSV, symbols, quotes, indicators (vs pandas computations written here), dead letters, and
every refusal (422 / 404) including SQL-injection-shaped input.
"""
from __future__ import annotations

import datetime as dt
import io

import apache_beam as beam
import numpy as np
import pandas as pd
import psycopg
import pytest

from alphastream.intervals import interval_seconds
from alphastream.records import DeadLetter, DeadLetterReason
from pipeline.postgres_sink import WriteDeadLettersToPostgres
from tests.fixtures.api import BAR_COLUMNS, api_frame, stored_bars

SYMBOL = "AAPL"
PRICE_COLUMNS = ["open", "high", "low", "close", "volume", "vwap"]
RTOL = 1e-9  # roll-ups re-add floats in another order: equal to ~1e-12, far tighter than any bug


def all_bars(client, symbol: str, interval: str, **params) -> list[dict]:
    """Every bar of a query, following next_cursor."""
    items, cursor = [], None
    while True:
        response = client.get("/v1/bars", params={"symbol": symbol, "interval": interval, **params,
                                                  **({"cursor": cursor} if cursor else {})})
        assert response.status_code == 200, response.text
        page = response.json()
        items.extend(page["items"])
        cursor = page["next_cursor"]
        if cursor is None:
            return items


def pandas_rollup(minute_bars: pd.DataFrame, interval: str) -> pd.DataFrame:
    """Bars of ``interval`` from 1-minute bars, computed independently of the API's SQL."""
    key = minute_bars["bucket_start"].dt.floor(pd.Timedelta(seconds=interval_seconds(interval)))
    grouped = minute_bars.groupby(key)
    notional = (minute_bars["vwap"] * minute_bars["volume"]).groupby(key).sum()
    by_trades = (minute_bars["vwap"] * minute_bars["trades"]).groupby(key).sum()
    out = pd.DataFrame({
        "open": grouped["open"].first(), "high": grouped["high"].max(), "low": grouped["low"].min(),
        "close": grouped["close"].last(), "volume": grouped["volume"].sum(), "trades": grouped["trades"].sum(),
    })
    out["vwap"] = np.where(out["volume"] > 0, notional / out["volume"].where(out["volume"] > 0),
                           by_trades / out["trades"])
    return out.rename_axis("bucket_start").reset_index()


def test_symbols_lists_what_the_pipeline_stored(client, market_db):
    items = client.get("/v1/symbols").json()["items"]
    with psycopg.connect(market_db) as conn:
        expected = {s for (s,) in conn.execute("SELECT DISTINCT symbol FROM bars")}
        last = conn.execute("SELECT bucket_start, close FROM bars WHERE symbol = %s AND interval = '1m' "
                            "ORDER BY bucket_start DESC LIMIT 1", (SYMBOL,)).fetchone()
    assert {i["symbol"] for i in items} == expected and len(expected) == 3
    aapl = next(i for i in items if i["symbol"] == SYMBOL)
    assert aapl["intervals"] == ["1m", "5m", "1h"]
    assert pd.Timestamp(aapl["last_bar"]) == pd.Timestamp(last[0]) and aapl["last_price"] == last[1]


@pytest.mark.parametrize("interval", ["1m", "5m", "1h"])
def test_stored_bars_equal_the_table(client, market_db, interval):
    api = api_frame(all_bars(client, SYMBOL, interval, limit=100))
    table = stored_bars(market_db, SYMBOL, interval)
    assert len(api) == len(table) > 0
    pd.testing.assert_frame_equal(api[list(BAR_COLUMNS)], table, check_dtype=False)


@pytest.mark.parametrize("interval", ["2m", "10m", "15m", "30m", "2h", "1d"])
def test_rollups_match_pandas_over_stored_minute_bars(client, market_db, interval):
    payload = client.get("/v1/bars", params={"symbol": SYMBOL, "interval": interval}).json()
    source = "1h" if interval in ("2h", "1d") else "5m" if interval in ("10m", "15m", "30m") else "1m"
    assert payload["source_interval"] == source
    api = api_frame(payload["items"])
    expected = pandas_rollup(stored_bars(market_db, SYMBOL, "1m"), interval)
    assert list(api["bucket_start"]) == list(expected["bucket_start"])
    assert (api["interval"] == interval).all()
    for column in PRICE_COLUMNS:
        np.testing.assert_allclose(api[column], expected[column], rtol=RTOL, err_msg=column)
    assert list(api["trades"]) == list(expected["trades"])


def test_rollup_pages_join_up_to_the_whole(client):
    whole = client.get("/v1/bars", params={"symbol": SYMBOL, "interval": "15m"}).json()["items"]
    paged = all_bars(client, SYMBOL, "15m", limit=7)
    assert paged == whole and len(whole) > 7


def test_range_is_start_inclusive_end_exclusive(client):
    start, end = "2024-03-05T15:00:00Z", "2024-03-05T15:30:00Z"
    params = {"symbol": SYMBOL, "interval": "1m", "start": start, "end": end}
    items = client.get("/v1/bars", params=params).json()["items"]
    starts = [pd.Timestamp(i["bucket_start"]) for i in items]
    assert starts and min(starts) >= pd.Timestamp(start) and max(starts) < pd.Timestamp(end)
    rolled = client.get("/v1/bars", params={"symbol": SYMBOL, "interval": "15m", "start": "2024-03-05T15:01:00Z",
                                            "end": end}).json()["items"]
    # The 15:00 bucket starts before `start`: only 15:15 is in range, and it is complete.
    assert [pd.Timestamp(i["bucket_start"]) for i in rolled] == [pd.Timestamp("2024-03-05T15:15:00Z")]


def test_csv_has_the_same_bars_as_json(client):
    params = {"symbol": SYMBOL, "interval": "5m", "limit": 20}
    as_json = api_frame(client.get("/v1/bars", params=params).json()["items"])
    response = client.get("/v1/bars", params=params, headers={"Accept": "text/csv"})
    assert response.headers["content-type"].startswith("text/csv")
    assert response.headers["x-next-cursor"]
    as_csv = pd.read_csv(io.StringIO(response.text))
    assert list(as_csv.columns)[: len(BAR_COLUMNS)] == list(BAR_COLUMNS)
    as_csv["bucket_start"] = pd.to_datetime(as_csv["bucket_start"], utc=True)
    pd.testing.assert_frame_equal(as_csv[list(BAR_COLUMNS)], as_json[list(BAR_COLUMNS)], check_dtype=False)


def test_quotes_are_the_newest_bar_with_its_day(client, market_db):
    quotes = client.get("/v1/quotes/latest", params={"symbols": f"{SYMBOL},MSFT"}).json()["items"]
    assert [q["symbol"] for q in quotes] == [SYMBOL, "MSFT"]
    minute = stored_bars(market_db, SYMBOL, "1m")
    aapl = quotes[0]
    assert aapl["price"] == minute["close"].iloc[-1] and aapl["day_open"] == minute["open"].iloc[0]
    assert aapl["day_volume"] == pytest.approx(minute["volume"].sum(), rel=RTOL)
    assert aapl["change_pct"] == pytest.approx((aapl["price"] / aapl["day_open"] - 1) * 100)


def pandas_indicator(bars: pd.DataFrame, kind: str, window: int) -> pd.Series:
    """The indicator over all of ``bars`` (null until its window is full), from its definition."""
    close = bars["close"]
    if kind == "sma":
        return close.rolling(window, min_periods=window).mean()
    if kind == "ema":  # seeded with the first close; hidden while the seed still dominates
        return close.ewm(span=window, adjust=False).mean().where(np.arange(len(close)) >= window - 1)
    if kind == "volatility":  # sample std of close-to-close log returns, in %
        return np.log(close).diff().rolling(window, min_periods=window).std(ddof=1) * 100.0
    return ((bars["vwap"] * bars["volume"]).rolling(window, min_periods=window).sum()
            / bars["volume"].rolling(window, min_periods=window).sum())


@pytest.mark.parametrize("interval", ["1m", "15m"])
@pytest.mark.parametrize("kind,window", [("sma", 10), ("ema", 10), ("volatility", 10), ("vwap", 5)])
def test_indicators_match_pandas(client, kind, window, interval):
    bars = api_frame(all_bars(client, SYMBOL, interval))
    reference = pandas_indicator(bars, kind, window)
    # Paged in small pages: each page's warm-up comes from the bars before it.
    items, cursor = [], None
    while True:
        page = client.get("/v1/indicators", params={"symbol": SYMBOL, "interval": interval, "kind": kind,
                                                    "window": window, "limit": 13,
                                                    **({"cursor": cursor} if cursor else {})}).json()
        items.extend(page["items"])
        if not (cursor := page["next_cursor"]):
            break
    assert [pd.Timestamp(i["bucket_start"]) for i in items] == list(bars["bucket_start"])
    values = np.array([np.nan if i["value"] is None else i["value"] for i in items])
    np.testing.assert_allclose(values, reference.to_numpy(), rtol=1e-7, equal_nan=True)
    assert np.isfinite(values).sum() > 0


def test_dead_letters_page_and_filter(client, market_db):
    seen = dt.datetime(2024, 3, 5, 14, 30, tzinfo=dt.timezone.utc)
    letters = [DeadLetter(reason=(DeadLetterReason.BAD_PRICE if i % 3 else DeadLetterReason.BAD_JSON).value,
                          detail=f"row {i}", raw=f'{{"n": {i}}}', origin="test.csv",
                          seen_at_us=int((seen + dt.timedelta(seconds=i // 2)).timestamp() * 1_000_000))
               for i in range(25)]
    with beam.Pipeline() as p:
        _ = p | beam.Create(letters) | WriteDeadLettersToPostgres(market_db)
    every, cursor = [], None
    while True:
        page = client.get("/v1/dead-letters", params={"limit": 4, **({"cursor": cursor} if cursor else {})}).json()
        every.extend(page["items"])
        if not (cursor := page["next_cursor"]):
            break
    assert sorted(d["raw"] for d in every) == sorted(d.raw for d in letters)
    times = [pd.Timestamp(d["seen_at"]) for d in every]
    assert times == sorted(times, reverse=True)
    bad_json = client.get("/v1/dead-letters", params={"reason": "bad_json"}).json()["items"]
    assert {d["reason"] for d in bad_json} == {"bad_json"} and len(bad_json) == 9
    recent = client.get("/v1/dead-letters", params={"since": "2024-03-05T14:30:10Z"}).json()["items"]
    assert len(recent) == 5 and all(pd.Timestamp(d["seen_at"]) >= pd.Timestamp("2024-03-05T14:30:10Z") for d in recent)


@pytest.mark.parametrize("params,status,fragment", [
    ({"symbol": SYMBOL, "interval": "7x"}, 422, "bad interval"),
    ({"symbol": SYMBOL, "interval": "30s"}, 422, "not a multiple of a stored interval"),
    ({"symbol": SYMBOL, "interval": "7m"}, 200, ""),
    ({"symbol": SYMBOL, "interval": "1m", "start": "2024-03-06T00:00:00Z", "end": "2024-03-05T00:00:00Z"}, 422,
     "must be before end"),
    ({"symbol": SYMBOL, "interval": "1m", "start": "2000-01-01T00:00:00Z", "end": "2024-03-05T00:00:00Z"}, 422,
     "range of"),
    ({"symbol": SYMBOL, "interval": "1m", "limit": 1_000_000}, 422, "limit 1000000 is too large"),
    ({"symbol": SYMBOL, "interval": "1m", "limit": 0}, 422, "limit"),
    ({"symbol": "NOPE", "interval": "1m"}, 404, "unknown symbol"),
    ({"symbol": SYMBOL, "interval": "1m", "cursor": "not-a-cursor"}, 422, "cursor"),
    ({"symbol": SYMBOL, "interval": "1m", "start": "yesterday"}, 422, "start"),
    ({"symbol": SYMBOL}, 422, "interval"),
])
def test_bars_refusals_say_what_is_wrong(client, params, status, fragment):
    response = client.get("/v1/bars", params=params)
    assert response.status_code == status, response.text
    if status != 200:
        assert fragment in response.json()["detail"]
        assert "Traceback" not in response.text


def test_a_cursor_only_fits_its_own_query(client):
    cursor = client.get("/v1/bars", params={"symbol": SYMBOL, "interval": "1m", "limit": 5}).json()["next_cursor"]
    other = client.get("/v1/bars", params={"symbol": "MSFT", "interval": "1m", "cursor": cursor})
    assert other.status_code == 422 and "different query" in other.json()["detail"]


@pytest.mark.parametrize("path,params,status", [
    ("/v1/quotes/latest", {"symbols": "AAPL,NOPE"}, 404),
    ("/v1/quotes/latest", {"symbols": ","}, 422),
    ("/v1/quotes/latest", {"symbols": ",".join(f"S{i}" for i in range(101))}, 422),
    ("/v1/indicators", {"symbol": SYMBOL, "interval": "1m", "kind": "stochastic"}, 422),
    ("/v1/indicators", {"symbol": SYMBOL, "interval": "1m", "kind": "sma", "window": 100_000}, 422),
    ("/v1/indicators", {"symbol": "NOPE", "interval": "1m", "kind": "sma"}, 404),
    ("/v1/dead-letters", {"reason": "nonsense"}, 422),
    ("/v1/dead-letters", {"cursor": "W10"}, 422),
])
def test_other_refusals(client, path, params, status):
    response = client.get(path, params=params)
    assert response.status_code == status, response.text
    assert isinstance(response.json()["detail"], str)


INJECTIONS = ["AAPL'; DROP TABLE bars; --", "AAPL' OR '1'='1", "1m'; DELETE FROM bars; --",
              "AAPL\"; SELECT pg_sleep(5); --", "%27%20OR%201=1", "AAPL/**/UNION/**/SELECT"]


@pytest.mark.parametrize("text", INJECTIONS)
def test_injection_shaped_input_is_refused_or_harmless(client, market_db, text):
    with psycopg.connect(market_db) as conn:
        before = conn.execute("SELECT count(*) FROM bars").fetchone()[0]
    answers = [
        client.get("/v1/bars", params={"symbol": text, "interval": "1m"}),
        client.get("/v1/bars", params={"symbol": SYMBOL, "interval": text}),
        client.get("/v1/quotes/latest", params={"symbols": text}),
        client.get("/v1/dead-letters", params={"reason": text}),
        client.get("/v1/indicators", params={"symbol": SYMBOL, "interval": "1m", "kind": "sma", "window": text}),
    ]
    assert all(a.status_code in (404, 422) for a in answers), [a.text for a in answers]
    with psycopg.connect(market_db) as conn:
        assert conn.execute("SELECT count(*) FROM bars").fetchone()[0] == before
