"""Alpha Vantage TIME_SERIES_INTRADAY, polled, one tick per bar (see ``polling``).

Docs: https://www.alphavantage.co/documentation/#intraday
``GET https://www.alphavantage.co/query?function=TIME_SERIES_INTRADAY&symbol=IBM&interval=5min&apikey=KEY``
returns ``{"Meta Data": {..., "4. Interval": "5min", "6. Time Zone": "US/Eastern"},
"Time Series (5min)": {"2024-01-05 19:55:00": {"1. open": "159.1100", ..., "4. close":
"159.1600", "5. volume": "176"}, ...}}``. Keys are bar start times in the zone named by the
metadata. A used-up quota answers HTTP 200 with only an ``Information`` (or ``Note``) text;
a bad symbol or key answers ``Error Message``.

Free tier: 25 requests a day and 5 a minute. Every request goes through a RateLimiter with
both windows (shared by all symbols, kept in memory: a restart starts a fresh count, so
do not restart in a loop). At 25 a day, polling one symbol every hour is the sustainable
rate; --poll_seconds defaults to 3600 for this source.
"""
from __future__ import annotations

import datetime as dt
import logging
import zoneinfo
from typing import Any

import httpx

from alphastream.records import MICROS_PER_SECOND, Tick
from ingestion.backoff import RateLimiter
from ingestion.connectors.base import FeedFatalError, MalformedFrame
from ingestion.connectors.polling import BarPoller, Throttled, bar_close_tick

# httpx logs every request URL at INFO, and the URL carries the API key.
logging.getLogger("httpx").setLevel(logging.WARNING)

DEFAULT_URL = "https://www.alphavantage.co/query"
FREE_TIER_LIMITS = [(5, 60.0), (25, 86_400.0)]
INTERVALS = ("1min", "5min", "15min", "30min", "60min")
DEFAULT_POLL_SECONDS = 3600.0
REQUEST_TIMEOUT_SECONDS = 30.0
_CLOSE, _VOLUME = "4. close", "5. volume"


def intraday_ticks(payload: Any, source: str = "alphavantage") -> list[Tick]:
    """A TIME_SERIES_INTRADAY JSON response -> one tick per bar, oldest first."""
    if not isinstance(payload, dict):
        raise MalformedFrame(f"expected a JSON object, got {type(payload).__name__}")
    if "Error Message" in payload:
        raise FeedFatalError(f"alphavantage: {payload['Error Message']}")
    meta = payload.get("Meta Data")
    if meta is None:
        notice = payload.get("Information") or payload.get("Note")
        if notice:
            raise Throttled(f"alphavantage: {notice}")
        raise MalformedFrame(f"response has no 'Meta Data' (keys: {sorted(payload)})")
    try:
        symbol, interval = meta["2. Symbol"], meta["4. Interval"]
        zone = zoneinfo.ZoneInfo(meta.get("6. Time Zone", "US/Eastern"))
        series = payload[f"Time Series ({interval})"]
        interval_us = int(interval.removesuffix("min")) * 60 * MICROS_PER_SECOND
    except (KeyError, ValueError, zoneinfo.ZoneInfoNotFoundError) as err:
        raise MalformedFrame(f"unexpected intraday response layout: {err!r}") from None
    ticks = []
    for stamp, bar in series.items():
        try:
            start = dt.datetime.strptime(stamp, "%Y-%m-%d %H:%M:%S").replace(tzinfo=zone)
            start_us = int(start.timestamp()) * MICROS_PER_SECOND
            ticks.append(bar_close_tick(symbol=symbol, bar_start_us=start_us, interval_us=interval_us,
                                        interval_name=interval, close=bar[_CLOSE], volume=bar[_VOLUME],
                                        source=source))
        except (KeyError, TypeError, ValueError) as err:
            raise MalformedFrame(f"bar {stamp!r}: {err!r}") from None
    return sorted(ticks, key=lambda t: t.ts_us)


class AlphaVantagePoller(BarPoller):
    source = "alphavantage"

    def __init__(self, symbols: list[str], api_key: str, interval: str = "1min",
                 poll_seconds: float = DEFAULT_POLL_SECONDS, url: str | None = None,
                 limiter: RateLimiter | None = None, **kwargs):
        super().__init__(symbols, poll_seconds, **kwargs)
        if interval not in INTERVALS:
            raise ValueError(f"alphavantage interval must be one of {INTERVALS}, got {interval!r}")
        self.interval, self._api_key, self._url = interval, api_key, url or DEFAULT_URL
        self._limiter = limiter or RateLimiter(FREE_TIER_LIMITS)
        self._client: httpx.AsyncClient | None = None

    async def fetch_ticks(self, symbol: str) -> list[Tick]:
        await self._limiter.acquire(on_wait=self.stats.record_rate_limit_wait)
        if self._client is None:
            self._client = httpx.AsyncClient(timeout=REQUEST_TIMEOUT_SECONDS)
        params = {"function": "TIME_SERIES_INTRADAY", "symbol": symbol, "interval": self.interval,
                  "outputsize": "compact", "apikey": self._api_key}
        response = await self._client.get(self._url, params=params)
        self.stats.frames += 1
        if response.status_code != httpx.codes.OK:
            # str(response) would include the URL (and key): report the status only.
            raise ConnectionError(f"alphavantage answered HTTP {response.status_code}")
        try:
            payload = response.json()
        except ValueError as err:
            raise MalformedFrame(f"response is not JSON: {err}") from None
        return intraday_ticks(payload, self.source)

    async def aclose(self) -> None:
        if self._client is not None:
            await self._client.aclose()
            self._client = None
