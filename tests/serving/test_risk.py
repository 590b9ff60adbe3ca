"""``GET /v1/risk`` and ``POST /v1/risk/portfolio`` on real PostgreSQL, against an independent
pandas computation from the stored bars (read with psycopg) and the definitions: pct_change
returns, log-difference volatility, a running-peak loop for the drawdown, the type-7 quantile
by hand for VaR, pandas' cov/corr on an inner join for beta and correlation."""
from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest
from fastapi.testclient import TestClient

from alphastream.intervals import interval_seconds
from serving.main import create_app
from serving.risk import Calendar, bars_per_year
from tests.fixtures.analytics import BENCHMARK, CRYPTO, MINUTE_SYMBOL, STOCK
from tests.fixtures.api import api_settings, stored_bars

RTOL = 1e-9


def closes(db_url: str, symbol: str, interval: str, start: str | None = None, end: str | None = None) -> pd.Series:
    frame = stored_bars(db_url, symbol, interval).set_index("bucket_start")["close"]
    if start:
        frame = frame[frame.index >= pd.Timestamp(start)]
    if end:
        frame = frame[frame.index < pd.Timestamp(end)]
    return frame


def quantile_type7(values: np.ndarray, p: float) -> float:
    ordered = np.sort(values)
    h = (len(ordered) - 1) * p
    lo = math.floor(h)
    return ordered[lo] + (h - lo) * (ordered[min(lo + 1, len(ordered) - 1)] - ordered[lo])


def drawdown(values: pd.Series) -> tuple[float, pd.Timestamp | None, pd.Timestamp | None]:
    worst, peak_time, found = 0.0, values.index[0], (None, None)
    peak = values.iloc[0]
    for when, value in values.items():
        if value > peak:
            peak, peak_time = value, when
        if 1 - value / peak > worst:
            worst, found = 1 - value / peak, (peak_time, when)
    return worst, *found


def reference(values: pd.Series, per_year: float, benchmark: pd.Series | None = None) -> dict:
    returns = values.pct_change().dropna()
    out = {
        "bars": len(values),
        "volatility": np.log(values).diff().std(ddof=1),
        "sharpe": returns.mean() / returns.std(ddof=1) * math.sqrt(per_year),
        "drawdown": drawdown(values),
        "tails": {},
    }
    out["volatility_annualized"] = out["volatility"] * math.sqrt(per_year)
    for confidence in (0.95, 0.99):
        q = quantile_type7(returns.to_numpy(), 1 - confidence)
        out["tails"][confidence] = (-q, -returns[returns <= q].mean())
    if benchmark is not None:
        joined = pd.concat([values.rename("a"), benchmark.rename("b")], axis=1, join="inner").pct_change().dropna()
        out["beta"] = joined["a"].cov(joined["b"]) / joined["b"].var()
        out["correlation"] = joined["a"].corr(joined["b"])
        out["benchmark_returns"] = len(joined)
    return out


def assert_matches(body: dict, expected: dict) -> None:
    assert body["bars"] == expected["bars"]
    compared = ("volatility", "volatility_annualized", "sharpe",
                *(("beta", "correlation") if "beta" in expected else ()))
    for name in compared:
        assert body[name] == pytest.approx(expected[name], rel=RTOL), name
    fraction, peak, trough = expected["drawdown"]
    assert body["max_drawdown"]["fraction"] == pytest.approx(fraction, rel=RTOL)
    assert pd.Timestamp(body["max_drawdown"]["peak_at"]) == peak
    assert pd.Timestamp(body["max_drawdown"]["trough_at"]) == trough
    for tail in body["tails"]:
        var, shortfall = expected["tails"][tail["confidence"]]
        assert tail["var"] == pytest.approx(var, rel=RTOL)
        assert tail["expected_shortfall"] == pytest.approx(shortfall, rel=RTOL)
    if "benchmark_returns" in expected:
        assert body["benchmark_returns"] == expected["benchmark_returns"]


def get_risk(client, **params) -> dict:
    response = client.get("/v1/risk", params=params)
    assert response.status_code == 200, response.text
    return response.json()


def test_daily_equity_against_its_benchmark(analytics_client, analytics_db):
    body = get_risk(analytics_client, symbol=STOCK, interval="1d", benchmark=BENCHMARK)
    expected = reference(closes(analytics_db, STOCK, "1d"), 252, closes(analytics_db, BENCHMARK, "1d"))
    assert body["calendar"] == "equity" and body["bars_per_year"] == 252
    assert_matches(body, expected)
    # The stock was generated with beta 1.3 and misses three days its benchmark has.
    assert 1.1 < body["beta"] < 1.5 and expected["benchmark_returns"] == body["bars"] - 1
    assert body["tails"][1]["var"] > body["tails"][0]["var"] > 0


def test_a_range_counts_only_its_bars(analytics_client, analytics_db):
    start, end = "2023-03-01T00:00:00Z", "2023-07-01T00:00:00Z"
    body = get_risk(analytics_client, symbol=BENCHMARK, interval="1d", start=start, end=end)
    assert_matches(body, reference(closes(analytics_db, BENCHMARK, "1d", start, end), 252))
    assert pd.Timestamp(body["first_bar"]) >= pd.Timestamp(start) and pd.Timestamp(body["last_bar"]) < pd.Timestamp(end)


def test_crypto_trades_all_year_unless_told_otherwise(analytics_client, analytics_db):
    crypto = closes(analytics_db, CRYPTO, "1d")
    body = get_risk(analytics_client, symbol=CRYPTO, interval="1d")
    assert body["calendar"] == "24/7" and body["bars_per_year"] == 365
    assert_matches(body, reference(crypto, 365))
    as_equity = get_risk(analytics_client, symbol=CRYPTO, interval="1d", calendar="equity")
    assert as_equity["bars_per_year"] == 252
    assert as_equity["sharpe"] == pytest.approx(body["sharpe"] * math.sqrt(252 / 365), rel=RTOL)


@pytest.mark.parametrize("interval,per_year", [("1m", 252 * 390), ("5m", 252 * 78), ("1h", 252 * 6.5)])
def test_intraday_bars_annualize_by_session(analytics_client, analytics_db, interval, per_year):
    minute = closes(analytics_db, MINUTE_SYMBOL, "1m")
    # Rolled-up closes: the last 1-minute close of each bucket.
    values = minute.groupby(minute.index.floor(interval.replace("m", "min"))).last()
    body = get_risk(analytics_client, symbol=MINUTE_SYMBOL, interval=interval)
    assert body["bars_per_year"] == pytest.approx(per_year)
    assert_matches(body, reference(values, per_year))


def test_portfolio_against_pandas(analytics_client, analytics_db):
    weights = {STOCK: 0.6, BENCHMARK: 0.4}
    response = analytics_client.post("/v1/risk/portfolio", json={"weights": weights, "interval": "1d",
                                                                  "benchmark": BENCHMARK})
    assert response.status_code == 200, response.text
    body = response.json()
    frame = pd.concat({name: closes(analytics_db, name, "1d") for name in weights}, axis=1, join="inner")
    returns = (frame.pct_change().dropna() * pd.Series(weights)).sum(axis=1)
    value = pd.concat([pd.Series([1.0], index=frame.index[:1]), (1 + returns).cumprod()])
    assert body["symbol"] == "portfolio" and body["weights"] == weights and body["calendar"] == "equity"
    assert_matches(body, reference(value, 252, closes(analytics_db, BENCHMARK, "1d")))


def test_a_whole_portfolio_in_one_symbol_is_that_symbol(analytics_client):
    alone = analytics_client.post("/v1/risk/portfolio", json={"weights": {CRYPTO: 1.0}, "interval": "1d"}).json()
    single = get_risk(analytics_client, symbol=CRYPTO, interval="1d")
    assert alone["calendar"] == "24/7" and alone["bars"] == single["bars"]
    for name in ("volatility", "volatility_annualized", "sharpe"):
        assert alone[name] == pytest.approx(single[name], rel=1e-9), name
    assert alone["max_drawdown"]["fraction"] == pytest.approx(single["max_drawdown"]["fraction"], rel=1e-9)
    assert alone["max_drawdown"]["trough_at"] == single["max_drawdown"]["trough_at"]
    for mine, theirs in zip(alone["tails"], single["tails"], strict=True):
        assert mine["var"] == pytest.approx(theirs["var"], rel=1e-9)


def test_an_empty_range_has_no_metrics(analytics_client):
    body = get_risk(analytics_client, symbol=STOCK, interval="1d", start="2030-01-01T00:00:00Z")
    assert body["bars"] == 0 and body["volatility"] is None and body["sharpe"] is None
    assert body["max_drawdown"] == {"fraction": 0.0, "peak_at": None, "trough_at": None}
    assert all(t["var"] is None for t in body["tails"])


@pytest.mark.parametrize("method,path,payload,status", [
    ("get", "/v1/risk", {"symbol": "NOPE", "interval": "1d"}, 404),
    ("get", "/v1/risk", {"symbol": STOCK, "interval": "1d", "benchmark": "NOPE"}, 404),
    ("get", "/v1/risk", {"symbol": STOCK, "interval": "1d", "calendar": "lunar"}, 422),
    ("get", "/v1/risk", {"symbol": STOCK, "interval": "7m"}, 422),
    ("post", "/v1/risk/portfolio", {"weights": {}, "interval": "1d"}, 422),
    ("post", "/v1/risk/portfolio", {"weights": {STOCK: 1, "NOPE": 1}, "interval": "1d"}, 404),
    ("post", "/v1/risk/portfolio", {"weights": {STOCK: 1}, "interval": "1d", "extra": 1}, 422),
])
def test_refusals(analytics_client, method, path, payload, status):
    response = (analytics_client.get(path, params=payload) if method == "get"
                else analytics_client.post(path, json=payload))
    assert response.status_code == status, response.text
    assert response.json()["detail"]


def test_too_many_bars_is_refused_with_advice(analytics_db):
    with TestClient(create_app(api_settings(api_max_scan_rows=1_000), dsn=analytics_db)) as client:
        response = client.get("/v1/risk", params={"symbol": MINUTE_SYMBOL, "interval": "1m"})
    assert response.status_code == 422 and "larger interval" in response.json()["detail"]


@pytest.mark.parametrize("interval,calendar,per_year", [
    ("12h", "equity", 252),  # longer than a session: still one bar per session
    ("2d", "equity", 182.5),  # two-day buckets tile the calendar: fewer than the sessions
    ("7d", "equity", 365 / 7),
    ("12h", "24/7", 730),
])
def test_bars_per_year_beyond_a_session(interval, calendar, per_year):
    assert bars_per_year(interval_seconds(interval), Calendar(calendar)) == pytest.approx(per_year)
