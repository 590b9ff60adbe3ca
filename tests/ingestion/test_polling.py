"""Polling connectors: Alpha Vantage against a local HTTP server serving its documented JSON,
the free-tier rate limiter on a fake clock, and the yfinance DataFrame -> tick mapping.

Bar -> tick convention (ingestion.connectors.polling): one tick per bar at the bar's end minus
1 us, price = close, size = volume. Expected values below are computed by hand: Alpha Vantage
"2024-01-05 19:55:00" US/Eastern (EST, UTC-5) is 1704502500 s; + 300 s (5min) - 1 us.
"""
from __future__ import annotations

import asyncio
import http.server
import json
import threading
import urllib.parse
from pathlib import Path

import pandas as pd
import pytest

from alphastream.records import Tick
from ingestion.backoff import Backoff, RateLimiter, RateLimitExhausted
from ingestion.connectors.alphavantage import FREE_TIER_LIMITS, AlphaVantagePoller, intraday_ticks
from ingestion.connectors.base import FeedFatalError
from ingestion.connectors.polling import Throttled
from ingestion.connectors.yahoo import YahooPoller, history_ticks
from tests.fixtures.connectors import FakeTime, take_ticks

FEEDS = Path(__file__).parents[1] / "data" / "feeds"
TIMEOUT = 10.0

IBM_BARS = [
    Tick("IBM", 1704502199999999, 159.15, 12.0, "IBM:5min:1704501900000000", "alphavantage"),
    Tick("IBM", 1704502499999999, 159.10, 130.0, "IBM:5min:1704502200000000", "alphavantage"),
    Tick("IBM", 1704502799999999, 159.16, 176.0, "IBM:5min:1704502500000000", "alphavantage"),
]




class RecordedApi:
    """A loopback HTTP server answering each request with the next recorded file."""

    def __init__(self, files: list[str]):
        self.files, self.requests = list(files), []
        api = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_GET(self):  # noqa: N802 (http.server's naming)
                api.requests.append(dict(urllib.parse.parse_qsl(urllib.parse.urlsplit(self.path).query)))
                name = api.files.pop(0) if len(api.files) > 1 else api.files[0]
                body = (FEEDS / name).read_bytes()
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *args):
                pass

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/query"

    def __enter__(self):
        threading.Thread(target=self.server.serve_forever, daemon=True).start()
        return self

    def __exit__(self, *exc):
        self.server.shutdown()
        self.server.server_close()


async def _collect(connector, count: int) -> list:
    ticks = await take_ticks(connector, count)
    await connector.aclose()
    return ticks


def _poller(url, fake: FakeTime, **kwargs) -> AlphaVantagePoller:
    limiter = kwargs.pop("limiter", None) or RateLimiter(FREE_TIER_LIMITS, clock=fake.clock, sleep=fake.sleep)
    return AlphaVantagePoller(kwargs.pop("symbols", ["IBM"]), api_key="demo-key", interval="5min", url=url,
                              limiter=limiter, clock=fake.clock, sleep=fake.sleep,
                              backoff=Backoff(base=1.0, cap=2.0), **kwargs)


def test_intraday_json_maps_to_one_tick_per_bar_at_its_close():
    payload = json.loads((FEEDS / "alphavantage_intraday_5min.json").read_text())
    assert intraday_ticks(payload) == IBM_BARS


def test_rate_limit_notice_and_error_message_are_recognised():
    with pytest.raises(Throttled, match="25 requests per day"):
        intraday_ticks(json.loads((FEEDS / "alphavantage_rate_limited.json").read_text()))
    with pytest.raises(FeedFatalError, match="Invalid API call"):
        intraday_ticks(json.loads((FEEDS / "alphavantage_error.json").read_text()))


def test_poller_backs_off_when_throttled_then_emits_the_bars():
    fake = FakeTime()
    with RecordedApi(["alphavantage_rate_limited.json", "alphavantage_intraday_5min.json"]) as api:
        connector = _poller(api.url, fake, backfill=True)
        ticks = asyncio.run(asyncio.wait_for(_collect(connector, 3), TIMEOUT))
    assert ticks == IBM_BARS
    assert fake.sleeps and fake.sleeps[0] <= 1.0  # one backoff
    # The provider's quota notice is a rate-limit wait (what the alert watches), not a reconnect.
    assert connector.stats.rate_limit_waits == 1 and connector.stats.reconnects == 0
    assert connector.stats.rate_limit_wait_seconds == pytest.approx(fake.sleeps[0])
    assert api.requests[0] == {"function": "TIME_SERIES_INTRADAY", "symbol": "IBM", "interval": "5min",
                               "outputsize": "compact", "apikey": "demo-key"}
    assert len(api.requests) == 2


def test_first_poll_without_backfill_emits_only_the_newest_bar_and_repeats_are_skipped():
    fake = FakeTime()
    connector = _poller("http://unused", fake)
    assert connector.new_ticks("IBM", IBM_BARS) == IBM_BARS[-1:]
    assert connector.new_ticks("IBM", IBM_BARS) == []  # the next poll returns the same bars
    newer = IBM_BARS[-1]._replace(ts_us=IBM_BARS[-1].ts_us + 300_000_000, trade_id="IBM:5min:next")
    assert connector.new_ticks("IBM", IBM_BARS + [newer]) == [newer]


def test_every_request_goes_through_the_rate_limiter():
    fake = FakeTime()
    one_per_minute = RateLimiter([(1, 60.0)], clock=fake.clock, sleep=fake.sleep)
    with RecordedApi(["alphavantage_intraday_5min.json"]) as api:
        connector = _poller(api.url, fake, symbols=["IBM", "IBM2"], limiter=one_per_minute)
        asyncio.run(asyncio.wait_for(_collect(connector, 2), TIMEOUT))
    assert len(api.requests) == 2
    assert fake.sleeps[0] == pytest.approx(60.0), "the second request waited for the per-minute budget"
    assert connector.stats.rate_limit_waits == 1
    assert connector.stats.rate_limit_wait_seconds == pytest.approx(60.0)


def test_error_message_stops_the_poller():
    fake = FakeTime()
    with RecordedApi(["alphavantage_error.json"]) as api:
        connector = _poller(api.url, fake)
        with pytest.raises(FeedFatalError):
            asyncio.run(asyncio.wait_for(_collect(connector, 1), TIMEOUT))


def test_free_tier_limiter_allows_5_a_minute_and_25_a_day():
    fake = FakeTime()
    limiter = RateLimiter(FREE_TIER_LIMITS, clock=fake.clock, sleep=fake.sleep)

    async def take(n):
        for _ in range(n):
            await limiter.acquire()

    asyncio.run(take(5))
    assert fake.sleeps == []
    asyncio.run(take(1))
    assert fake.sleeps == [pytest.approx(60.0)]
    asyncio.run(take(19))  # 25 in total, 5 in each of the minutes starting at 0, 60, ..., 240 s
    assert fake.sleeps == [pytest.approx(60.0)] * 4 and fake.now - 1_000_000.0 == pytest.approx(240.0)
    assert limiter.wait_time() == pytest.approx(86_400.0 - 240.0), "the 26th waits for the daily window"
    with pytest.raises(RateLimitExhausted):
        asyncio.run(limiter.acquire(max_wait=3600))


def _yahoo_frame() -> pd.DataFrame:
    """The recorded CSV back into yfinance's shape: tz-aware (exchange zone) DatetimeIndex."""
    frame = pd.read_csv(FEEDS / "yahoo_history_1m.csv", index_col="Datetime")
    frame.index = pd.to_datetime(frame.index, utc=True).tz_convert("America/New_York")
    return frame


YAHOO_TICKS = [  # 09:30 EDT = 13:30 UTC = 1714570200 s
    Tick("AAPL", 1714570259999999, 169.85, 1203456.0, "AAPL:1m:1714570200000000", "yahoo"),
    Tick("AAPL", 1714570319999999, 169.97, 401230.0, "AAPL:1m:1714570260000000", "yahoo"),
    Tick("AAPL", 1714570379999999, 170.05, 352100.0, "AAPL:1m:1714570320000000", "yahoo"),
]


def test_yfinance_history_maps_to_one_tick_per_bar_and_skips_the_unfinished_minute():
    assert history_ticks("AAPL", _yahoo_frame(), "1m") == YAHOO_TICKS


def test_yfinance_download_multiindex_columns_map_the_same():
    frame = _yahoo_frame()
    multi = pd.concat({"AAPL": frame}, axis=1).swaplevel(axis=1)  # (field, ticker) like yf.download
    assert history_ticks("AAPL", multi, "1m") == YAHOO_TICKS


def test_yahoo_poller_emits_new_bars_across_polls():
    fake = FakeTime()
    frame = _yahoo_frame()
    responses = [frame.iloc[:2], frame]  # the second poll sees one more finished minute

    class CannedYahoo(YahooPoller):
        def _history(self, symbol):
            return responses.pop(0) if len(responses) > 1 else responses[0]

    connector = CannedYahoo(["AAPL"], backfill=True, clock=fake.clock, sleep=fake.sleep)
    ticks = asyncio.run(asyncio.wait_for(_collect(connector, 3), TIMEOUT))
    assert ticks == YAHOO_TICKS
    assert fake.sleeps == [pytest.approx(60.0)], "one poll interval between the polls"
