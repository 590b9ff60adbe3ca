"""Ingestion metrics: sequence gaps found in recorded frames, the Prometheus exposition built
from a connector's counters, and ``python -m ingestion --metrics_port`` serving it over HTTP."""
from __future__ import annotations

import os
import re
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest
from prometheus_client import generate_latest
from prometheus_client.parser import text_string_to_metric_families

from alphastream.records import Tick
from ingestion.connectors.base import SequenceGaps
from ingestion.connectors.binance import BinanceFeed
from ingestion.connectors.coinbase import CoinbaseFeed
from ingestion.connectors.kraken import KrakenFeed
from ingestion.metrics import IngestionMetrics
from ingestion.sinks.base import StdoutSink

FEEDS = Path(__file__).parents[1] / "data" / "feeds"
ROOT = Path(__file__).resolve().parents[2]
CLI_START_TIMEOUT_SECONDS = 30.0


def replay_frames(feed, name: str):
    for line in (FEEDS / name).read_text().splitlines():
        if line.strip():
            feed.parse_frame(line)
    return feed


def samples(registry) -> dict[tuple[str, tuple], float]:
    """{(sample name, sorted labels): value} of a registry's exposition, parsed back from text."""
    text = generate_latest(registry).decode()
    return {(s.name, tuple(sorted(s.labels.items()))): s.value
            for family in text_string_to_metric_families(text) for s in family.samples}


@pytest.mark.parametrize("feed, frames, gaps, missing", [
    # BTC-USD 100, 101, 104 (2 missing), 104 again (a repeat); ETH-USD 7, 9 (1 missing; its size is
    # invalid, but the trade arrived), 10.
    (CoinbaseFeed(["BTC-USD", "ETH-USD"]), "coinbase_gaps.jsonl", {"BTC-USD": 1, "ETH-USD": 1},
     {"BTC-USD": 2, "ETH-USD": 1}),
    # BTCUSDT 500, 501 (combined-stream frame), 510 (8 missing), 511; ETHUSDT seen once: no gap.
    (BinanceFeed(["BTCUSDT"]), "binance_gaps.jsonl", {"BTCUSDT": 1}, {"BTCUSDT": 8}),
    # 1000, 1001, 1005 (3 missing); a reconnect snapshot repeats 1001 and 1005, then 1006: no new gap.
    (KrakenFeed(["BTC/USD"]), "kraken_gaps.jsonl", {"BTC/USD": 1}, {"BTC/USD": 3}),
    # The documentation frames: Coinbase's trade 12 arrives truncated (unreadable), so 13 is a gap.
    (CoinbaseFeed(["BTC-USD"]), "coinbase_matches.jsonl", {"BTC-USD": 1}, {"BTC-USD": 1}),
    (KrakenFeed(["MATIC/USD"]), "kraken_trade_v2.jsonl", {"MATIC/USD": 1}, {"MATIC/USD": 58}),
    (BinanceFeed(["BTCUSDT"]), "binance_trade.jsonl", {}, {}),
], ids=["coinbase", "binance", "kraken", "coinbase-docs", "kraken-docs", "binance-docs"])
def test_recorded_frames_with_gaps_are_counted_per_symbol(feed, frames, gaps, missing):
    replay_frames(feed, frames)
    assert dict(feed.stats.sequence.gaps) == gaps
    assert dict(feed.stats.sequence.missing) == missing


def test_gap_rule_repeats_and_late_numbers_are_not_gaps():
    sequence = SequenceGaps()
    assert [sequence.observe("X", n) for n in (5, 6, 6, 4, 9, 8, 10)] == [0, 0, 0, 0, 2, 0, 0]
    assert sequence.highest == {"X": 10} and sequence.missing == {"X": 2}


def test_exposition_carries_feed_symbol_gap_and_publish_series():
    feed = replay_frames(CoinbaseFeed(["BTC-USD", "ETH-USD"]), "coinbase_gaps.jsonl")
    sink = StdoutSink(open(os.devnull, "w"))
    metrics = IngestionMetrics(feed, sink)
    before = time.time()
    for tick in (Tick("BTC-USD", 1, 1.0, 1.0, "1", "coinbase"), Tick("BTC-USD", 2, 1.0, 1.0, "2", "coinbase"),
                 Tick("ETH-USD", 3, 1.0, 1.0, "3", "coinbase")):
        sink.publish(tick)
        feed.stats.record_tick(tick.symbol, time.time())
    sink.latency_observer(0.003)
    got = samples(metrics.registry)
    feed_label = (("feed", "coinbase"),)
    btc = (("feed", "coinbase"), ("symbol", "BTC-USD"))
    eth = (("feed", "coinbase"), ("symbol", "ETH-USD"))
    assert got[("alphastream_ingest_messages_received_total", feed_label)] == 8
    assert got[("alphastream_ingest_malformed_messages_total", feed_label)] == 1
    assert got[("alphastream_ingest_ticks_received_total", btc)] == 2
    assert got[("alphastream_ingest_ticks_received_total", eth)] == 1
    assert got[("alphastream_ingest_sequence_gaps_total", btc)] == 1
    assert got[("alphastream_ingest_sequence_missing_trades_total", btc)] == 2
    assert got[("alphastream_ingest_sequence_missing_trades_total", eth)] == 1
    assert got[("alphastream_ingest_last_tick_timestamp_seconds", eth)] >= before
    assert got[("alphastream_ingest_last_message_timestamp_seconds", feed_label)] >= before
    assert got[("alphastream_ingest_ticks_published_total", feed_label)] == 3
    assert got[("alphastream_ingest_publish_errors_total", feed_label)] == 0
    assert got[("alphastream_ingest_publish_latency_seconds_count", feed_label)] == 1
    assert got[("alphastream_ingest_publish_latency_seconds_bucket", feed_label + (("le", "0.005"),))] == 1
    assert got[("alphastream_ingest_publish_latency_seconds_bucket", feed_label + (("le", "0.0025"),))] == 0


def test_cli_serves_metrics_while_it_runs():
    command = [sys.executable, "-m", "ingestion", "--source", "synthetic", "--sink", "stdout", "--rate", "200",
               "--num_symbols", "3", "--metrics_port", "0", "--log_interval", "60"]
    process = subprocess.Popen(command, cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.monotonic() + CLI_START_TIMEOUT_SECONDS
        port = None
        while port is None and time.monotonic() < deadline:
            line = process.stderr.readline()
            assert line or process.poll() is None, "python -m ingestion exited before serving metrics"
            if match := re.search(r"metrics on http://127\.0\.0\.1:(\d+)/metrics", line):
                port = int(match.group(1))
        assert port, "python -m ingestion never logged its metrics address"
        time.sleep(0.5)
        text = urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=10).read().decode()
    finally:
        process.terminate()
        process.wait(timeout=30)
    ticks = {s.labels["symbol"]: s.value for family in text_string_to_metric_families(text)
             for s in family.samples if s.name == "alphastream_ingest_ticks_received_total"}
    assert len(ticks) == 3, f"expected the 3 synthetic symbols, got {sorted(ticks)}"
    assert all(count > 0 for count in ticks.values())
