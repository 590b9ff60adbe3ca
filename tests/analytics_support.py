"""Stored bars for the indicator and risk API tests (tests/test_api_indicators_more.py,
tests/test_api_risk.py); no tests here.

Seeded random walks written by the pipeline's own PostgreSQL sink: one symbol of 1-minute bars
long enough for every warm-up, and daily bars of a benchmark, a stock that follows it (with
days missing, so alignment matters) and a 24/7 crypto pair.
"""
from __future__ import annotations

import datetime as dt
from typing import Iterator

import numpy as np
import pytest
from fastapi.testclient import TestClient

from alphastream.records import Bar, PaneTiming
from serving.main import create_app
from tests.test_api_support import api_settings, write_bars

MINUTE_SYMBOL = "IND"
MINUTE_BARS = 1_500
MINUTE_START = dt.datetime(2024, 3, 4, 9, 0, tzinfo=dt.timezone.utc)
BENCHMARK, STOCK, CRYPTO = "SPY", "AAA", "BTC-USD"
DAILY_START = dt.datetime(2023, 1, 2, tzinfo=dt.timezone.utc)  # a Monday
STOCK_BETA = 1.3
STOCK_MISSING_DAYS = (17, 18, 100)  # weekday indices without a stock bar


def _us(when: dt.datetime) -> int:
    return int(when.timestamp()) * 1_000_000


def bars_from_closes(symbol: str, interval: str, times: list[dt.datetime], closes: np.ndarray,
                     rng: np.random.Generator) -> list[Bar]:
    """Bars around each close: open at the previous close, high and low beyond both."""
    bars, previous = [], closes[0]
    for when, close in zip(times, closes):
        wiggle = abs(rng.normal(0, 0.002)) * close
        high, low = max(previous, close) + wiggle, min(previous, close) - wiggle
        bars.append(Bar(symbol, interval, _us(when), float(previous), float(high), float(low), float(close),
                        100.0, float((high + low) / 2), 1, PaneTiming.ON_TIME.value, 0))
        previous = close
    return bars


def walk(rng: np.random.Generator, returns: np.ndarray, start: float = 100.0) -> np.ndarray:
    return start * np.cumprod(1.0 + returns)


def minute_bars() -> list[Bar]:
    rng = np.random.default_rng(11)
    returns = rng.normal(0.0, 0.001, MINUTE_BARS)
    returns[400:440] = 0.0  # a flat stretch: gains and losses both decay
    returns[600:630] = 0.002  # a steady climb: RSI near 100
    times = [MINUTE_START + dt.timedelta(minutes=i) for i in range(MINUTE_BARS)]
    return bars_from_closes(MINUTE_SYMBOL, "1m", times, walk(rng, returns), rng)


def weekdays(count: int) -> list[dt.datetime]:
    days, day = [], DAILY_START
    while len(days) < count:
        if day.weekday() < 5:
            days.append(day)
        day += dt.timedelta(days=1)
    return days


def daily_bars() -> list[Bar]:
    rng = np.random.default_rng(5)
    days = weekdays(260)
    market = rng.normal(0.0004, 0.01, len(days))
    stock = STOCK_BETA * market + rng.normal(0.0, 0.008, len(days))
    keep = [i for i in range(len(days)) if i not in STOCK_MISSING_DAYS]
    stock_closes = walk(rng, stock, 50.0)
    crypto_days = [DAILY_START + dt.timedelta(days=i) for i in range(365)]
    return (bars_from_closes(BENCHMARK, "1d", days, walk(rng, market, 400.0), rng)
            + bars_from_closes(STOCK, "1d", [days[i] for i in keep], stock_closes[keep], rng)
            + bars_from_closes(CRYPTO, "1d", crypto_days, walk(rng, rng.normal(0.001, 0.03, 365), 20_000.0), rng))


@pytest.fixture(scope="module")
def analytics_db(pg_cluster) -> str:
    db_url = pg_cluster.new_database()
    write_bars(db_url, minute_bars() + daily_bars(), final=True)
    return db_url


@pytest.fixture(scope="module")
def analytics_client(analytics_db) -> Iterator[TestClient]:
    with TestClient(create_app(api_settings(), dsn=analytics_db)) as test_client:
        yield test_client
