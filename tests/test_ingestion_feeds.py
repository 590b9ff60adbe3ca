"""Each websocket feed's parser against recorded frames in the provider's documented format
(tests/data/feeds/README.md cites the doc page of each file), plus the normalisation helpers.

Expected timestamps are written out as integers (computed independently, not by the code under
test): e.g. Coinbase "2014-11-07T08:19:26.028459Z" is 1415348366 s + 028459 us.
"""
from __future__ import annotations

from pathlib import Path

import pytest

from alphastream.records import Tick
from ingestion.connectors.base import FeedFatalError, MalformedFrame
from ingestion.connectors.binance import BinanceFeed
from ingestion.connectors.coinbase import CoinbaseFeed
from ingestion.connectors.finnhub import FinnhubFeed
from ingestion.connectors.kraken import KrakenFeed
from ingestion.connectors.normalize import canonical_symbol, epoch_ms_to_us, rfc3339_to_us
from ingestion.connectors.polygon import PolygonFeed
from ingestion.connectors.websocket import redact_url

FEEDS = Path(__file__).parent / "data" / "feeds"


def frames(name: str) -> list[str]:
    return (FEEDS / name).read_text().splitlines()


def coinbase() -> CoinbaseFeed:
    return CoinbaseFeed(["BTC-USD", "ETH-USD"])


def kraken() -> KrakenFeed:
    return KrakenFeed(["MATIC/USD", "BTC/USD"])


def binance() -> BinanceFeed:
    return BinanceFeed(["BNBBTC", "BTCUSDT"])


def finnhub() -> FinnhubFeed:
    return FinnhubFeed(["BINANCE:BTCUSDT", "TSLA", "AAPL"], api_key="test-key-not-real")


def polygon() -> PolygonFeed:
    return PolygonFeed(["MSFT", "AAPL"], api_key="test-key-not-real")


# (connector factory, recorded file, expected ticks in order, malformed frames/trades in the file)
CASES = {
    "coinbase": (coinbase, "coinbase_matches.jsonl", [
        Tick("BTC-USD", 1415348366028459, 400.00, 1.0, "BTC-USD:9", "coinbase"),  # last_match
        Tick("BTC-USD", 1415348367028459, 400.23, 5.23512, "BTC-USD:10", "coinbase"),
        Tick("ETH-USD", 1415348369100001, 20.50, 0.5, "ETH-USD:10", "coinbase"),  # same id, other product
        Tick("BTC-USD", 1415348371000000, 400.30, 0.01, "BTC-USD:13", "coinbase"),
    ], 2),
    "kraken": (kraken, "kraken_trade_v2.jsonl", [
        Tick("MATIC/USD", 1695628116925533, 0.5147, 6423.46326, "MATIC/USD:4665846", "kraken"),
        Tick("MATIC/USD", 1695628176925603, 0.5147, 1136.19677815, "MATIC/USD:4665847", "kraken"),
        Tick("MATIC/USD", 1695632687220000, 0.5117, 40.0, "MATIC/USD:4665906", "kraken"),
        Tick("BTC/USD", 1695632688000001, 26500.1, 0.0125, "BTC/USD:61234567", "kraken"),
    ], 2),
    "binance": (binance, "binance_trade.jsonl", [
        Tick("BNBBTC", 1672515782136000, 0.001, 100.0, "BNBBTC:12345", "binance"),
        Tick("BNBBTC", 1672515782139000, 0.00101, 2.5, "BNBBTC:12346", "binance"),
        Tick("BTCUSDT", 1672515782199000, 16541.07, 0.003, "BTCUSDT:2461023451", "binance"),  # combined stream
        Tick("BTCUSDT", 1672515782298000, 16541.08, 0.01, "BTCUSDT:2461023452", "binance"),
    ], 2),
    "finnhub": (finnhub, "finnhub_trades.jsonl", [
        Tick("BINANCE_BTCUSDT", 1575526691134000, 7296.89, 0.011467,
             "BINANCE_BTCUSDT:1575526691134:7296.89:0.011467", "finnhub"),
        Tick("TSLA", 1672348887195000, 122.1, 1.0, "TSLA:1672348887195:122.1:1", "finnhub"),
        Tick("TSLA", 1672348887196000, 122.09, 4.0, "TSLA:1672348887196:122.09:4", "finnhub"),
        Tick("TSLA", 1672348887196000, 122.1, 1.0, "TSLA:1672348887196:122.1:1", "finnhub"),
        Tick("TSLA", 1672348887196000, 122.1, 1.0, "TSLA:1672348887196:122.1:1#2", "finnhub"),  # identical print
        Tick("AAPL", 1672348887666000, 129.58, 1.0, "AAPL:1672348887666:129.58:1", "finnhub"),
        Tick("AAPL", 1672348887785000, 129.575, 1.0, "AAPL:1672348887785:129.575:1", "finnhub"),
    ], 2),
    "polygon": (polygon, "polygon_trades.jsonl", [
        Tick("MSFT", 1536036818784000, 114.125, 100.0, "MSFT:4:12345", "polygon"),
        Tick("AAPL", 1748476801234000, 192.31, 100.0, "AAPL:4:12345", "polygon"),
        Tick("AAPL", 1748476801251000, 192.32, 25.0, "AAPL:11:52983525029461", "polygon"),
        Tick("MSFT", 1536036818790000, 114.13, 0.0, "MSFT:10:71675577320245", "polygon"),
    ], 2),
}


@pytest.mark.parametrize("feed", sorted(CASES))
def test_recorded_frames_parse_to_the_expected_ticks(feed):
    factory, file_name, expected, malformed = CASES[feed]
    connector = factory()
    ticks = [tick for frame in frames(file_name) for tick in connector.parse_frame(frame)]
    assert ticks == expected
    assert connector.stats.malformed == malformed
    assert connector.stats.frames == len(frames(file_name))
    assert connector.stats.ticks == len(expected)


@pytest.mark.parametrize("feed, control", [
    ("coinbase", '{"type":"heartbeat","sequence":90,"last_trade_id":20,"product_id":"BTC-USD","time":"2014-11-07T08:19:28.464459Z"}'),
    ("kraken", '{"channel":"heartbeat"}'),
    ("binance", '{"result":null,"id":1}'),
    ("finnhub", '{"type":"ping"}'),
    ("polygon", '[{"ev":"status","status":"connected","message":"Connected Successfully"}]'),
])
def test_heartbeats_and_acks_are_ignored_not_counted_as_malformed(feed, control):
    connector = CASES[feed][0]()
    assert connector.parse_frame(control) == []
    assert connector.stats.malformed == 0


@pytest.mark.parametrize("feed, frame", [
    ("coinbase", '{"type":"error","message":"Failed to subscribe","reason":"ZZZ-USD is not a valid product"}'),
    ("kraken", '{"error":"Currency pair not supported ZZZ/USD","method":"subscribe","success":false,'
               '"symbol":"ZZZ/USD","time_in":"2023-09-25T09:04:31.742599Z","time_out":"2023-09-25T09:04:31.742648Z"}'),
    ("binance", '{"error":{"code":2,"msg":"Invalid request: unknown variant"},"id":1}'),
    ("polygon", '[{"ev":"status","status":"auth_failed","message":"authentication failed"}]'),
])
def test_rejections_by_the_feed_stop_the_connector(feed, frame):
    with pytest.raises(FeedFatalError):
        CASES[feed][0]().parse_frame(frame)


def test_subscribe_messages_follow_the_documented_shapes():
    assert coinbase().subscribe_message() == {
        "type": "subscribe", "product_ids": ["BTC-USD", "ETH-USD"], "channels": ["matches", "heartbeat"]}
    assert kraken().subscribe_message() == {
        "method": "subscribe", "params": {"channel": "trade", "symbol": ["MATIC/USD", "BTC/USD"], "snapshot": True}}
    assert binance().subscribe_message() == {"method": "SUBSCRIBE", "params": ["bnbbtc@trade", "btcusdt@trade"], "id": 1}
    assert finnhub().subscribe_messages() == [{"type": "subscribe", "symbol": s} for s in ["BINANCE:BTCUSDT", "TSLA", "AAPL"]]
    assert polygon().subscribe_message() == {"action": "subscribe", "params": "T.MSFT,T.AAPL"}


def test_finnhub_key_goes_in_the_url_and_never_in_the_logged_form():
    feed = FinnhubFeed(["AAPL"], api_key="s3cret", url="ws://127.0.0.1:9/")
    assert feed.connect_url() == "ws://127.0.0.1:9/?token=s3cret"
    assert "s3cret" not in redact_url(feed.connect_url())


def test_malformed_frames_are_logged_without_raising(caplog):
    connector = coinbase()
    assert connector.parse_frame("{not json") == []
    assert connector.stats.malformed == 1
    assert "malformed frame #1" in caplog.text


@pytest.mark.parametrize("text, expected", [
    ("2014-11-07T08:19:27.028459Z", 1415348367028459),
    ("2014-11-07T08:19:27.028459123Z", 1415348367028459),  # nanoseconds truncated
    ("2014-11-07T08:19:27Z", 1415348367000000),
    ("2014-11-07T09:19:27.5+01:00", 1415348367500000),
    ("2014-11-07 08:19:27.1", 1415348367100000),  # no zone: UTC
])
def test_rfc3339_to_epoch_microseconds(text, expected):
    assert rfc3339_to_us(text) == expected


@pytest.mark.parametrize("bad", ["yesterday", "2014-13-07T08:19:27Z", 1415348367, None])
def test_bad_timestamps_are_malformed(bad):
    with pytest.raises(MalformedFrame):
        rfc3339_to_us(bad)


def test_epoch_ms_accepts_numbers_and_numeric_text_only():
    assert epoch_ms_to_us(1672515782136) == epoch_ms_to_us("1672515782136") == 1672515782136000
    for bad in (True, "soon", 1.5):
        with pytest.raises(MalformedFrame):
            epoch_ms_to_us(bad)


@pytest.mark.parametrize("raw, canonical", [
    ("btc-usd", "BTC-USD"), ("XBT/USD", "XBT/USD"), ("BINANCE:BTCUSDT", "BINANCE_BTCUSDT"), ("brk.b", "BRK.B"),
])
def test_symbols_keep_the_feed_spelling_in_upper_case(raw, canonical):
    assert canonical_symbol(raw) == canonical


def test_symbols_outside_the_pattern_are_malformed():
    for bad in ("", "BTC USD", "A" * 40, 42):
        with pytest.raises(MalformedFrame):
            canonical_symbol(bad)
