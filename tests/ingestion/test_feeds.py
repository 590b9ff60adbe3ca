"""Each websocket feed's parser against recorded frames in the provider's documented format
(tests/data/feeds/README.md cites the doc page of each file), plus the normalisation helpers.

Expected timestamps are written out as integers (computed independently, not by the code under
test): e.g. Coinbase "2014-11-07T08:19:26.028459Z" is 1415348366 s + 028459 us.
"""
from __future__ import annotations

import pytest

from ingestion.connectors.base import FeedFatalError, MalformedFrame
from ingestion.connectors.finnhub import FinnhubFeed
from ingestion.connectors.normalize import canonical_symbol, epoch_ms_to_us, rfc3339_to_us
from ingestion.connectors.websocket import redact_url
from tests.fixtures.recorded_feeds import CASES, binance, coinbase, finnhub, frames, kraken, polygon

# (connector factory, recorded file, expected ticks in order, malformed frames/trades in the file)


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
    ("coinbase", '{"type":"heartbeat","sequence":90,"last_trade_id":20,"product_id":"BTC-USD",'
                 '"time":"2014-11-07T08:19:28.464459Z"}'),
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
    assert binance().subscribe_message() == {"method": "SUBSCRIBE", "params": ["bnbbtc@trade", "btcusdt@trade"],
                                             "id": 1}
    assert finnhub().subscribe_messages() == [{"type": "subscribe", "symbol": s}
                                              for s in ["BINANCE:BTCUSDT", "TSLA", "AAPL"]]
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
