"""A Kafka topic that goes wholly quiet while the feed keeps running: the sink's heartbeats (one
record per partition, stamped now, after ``--heartbeat_seconds`` without a record) keep the
pipeline's watermark following the wall clock, so the gap filler writes a carry-forward bar for
every bucket after the last trade, each soon after the bucket ends.

Real processes: ``python -m ingestion --source replay --sink kafka`` (a file whose ticks stop after
a few seconds; a last row far ahead keeps the feed, and its heartbeats, running) -> a real KRaft
broker -> ``python -m pipeline --streaming --source kafka`` on Prism, gap filling on -> PostgreSQL.

Without heartbeats KafkaIO's create-time policy moves an idle partition's watermark on its own
once the reader sees no backlog (on Prism it did here; docs/kafka-flink.md has the measurements),
so this test does not assert that fills are missing without them.
"""
from __future__ import annotations

import csv
import signal
import time
from pathlib import Path

import pandas as pd
import pytest

from alphastream.intervals import interval_micros
from alphastream.records import MICROS_PER_SECOND
from tests.fixtures.kafka_stack import KafkaLiveStack
from tests.fixtures.live_stack import Child, stored_bars, wait_for_signal_exit, wait_until

pytestmark = pytest.mark.slow

SYMBOLS = ("BTC-USD", "ETH-USD")  # 24/7 pairs: every bucket is in session, so every empty one is filled
TRADING_SECONDS = 6
TICKS_PER_SECOND = 2  # per symbol: no 5 s bucket of the trading part is empty
# A last row this far ahead keeps the replay running (idle) through the test; the test stops it first.
LAST_ROW_SECONDS = 3_600
INTERVAL = "5s"  # the shortest of the stack's intervals
IDLE_SECONDS = 40  # how long the test watches the quiet topic
MIN_FILLS = 3  # per symbol after its last trade: 40 s idle is 8 buckets of 5 s, less the reader's lag
FEED_STOP_SECONDS = 30
HEARTBEAT_SECONDS = 1.0
MAX_FILL_LAG_SECONDS = 5 + HEARTBEAT_SECONDS + 4  # a 5 s bucket, a heartbeat, the reader and the sinks


def replay_file(path: Path) -> Path:
    """Ticks of SYMBOLS for TRADING_SECONDS, then one last tick at LAST_ROW_SECONDS."""
    rows = [(symbol, n * MICROS_PER_SECOND // TICKS_PER_SECOND, 100.0 + n, 1.0, f"{symbol}-{n}")
            for n in range(TRADING_SECONDS * TICKS_PER_SECOND) for symbol in SYMBOLS]
    rows.append((SYMBOLS[0], LAST_ROW_SECONDS * MICROS_PER_SECOND, 100.0, 1.0, "last"))
    with path.open("w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["symbol", "ts_us", "price", "size", "trade_id"])
        writer.writerows(rows)
    return path


def start_replay(stack: KafkaLiveStack, heartbeat_seconds: float) -> Child:
    child = Child.start("ingestion", [
        "-m", "ingestion", "--source", "replay", "--input", str(replay_file(stack.work_dir / "ticks.csv")),
        "--sink", "kafka", "--bootstrap", stack.broker.bootstrap, "--topic", stack.topic,
        "--heartbeat_seconds", str(heartbeat_seconds)])
    stack.children.append(child)
    return child


def fills_after_last_trade(bars: pd.DataFrame) -> dict[str, int]:
    """Per symbol, the INTERVAL fill bars (trades == 0) after its last traded bucket."""
    bars = bars[bars["interval"] == INTERVAL]
    counts = {}
    for symbol in SYMBOLS:
        own = bars[bars["symbol"] == symbol]
        last_traded = own.loc[own["trades"] > 0, "bucket_start_us"].max()
        counts[symbol] = int(((own["trades"] == 0) & (own["bucket_start_us"] > last_traded)).sum())
    return counts


@pytest.fixture
def idle_stack(kafka_broker, kafka_expansion_service, pg_cluster, tmp_path):
    # No archive finaliser: it would fill gaps from the archive whatever the watermark does.
    stack = KafkaLiveStack(None, pg_cluster, tmp_path, broker=kafka_broker,
                           expansion_service=kafka_expansion_service, with_archive=False, fill_gaps=True)
    yield stack
    stack.close()


def test_heartbeats_keep_gap_fills_coming_while_the_feed_idles(idle_stack, record_property):
    stack = idle_stack
    pipeline = stack.start_pipeline()
    feed = start_replay(stack, HEARTBEAT_SECONDS)
    # The trading part: every symbol's traded bars reach the table (the last ones may be early panes).
    assert wait_until(lambda: set(stored_bars(stack.db_url).query("trades > 0")["symbol"]) == set(SYMBOLS),
                      timeout=TRADING_SECONDS + 60, poll_seconds=1), pipeline.log[-4000:]

    def enough_fills() -> bool:
        return min(fills_after_last_trade(stored_bars(stack.db_url)).values()) >= MIN_FILLS

    filled = wait_until(enough_fills, timeout=IDLE_SECONDS, poll_seconds=1)
    bars = stored_bars(stack.db_url)
    fills = fills_after_last_trade(bars)
    fill_starts = bars.loc[(bars["interval"] == INTERVAL) & (bars["trades"] == 0), "bucket_start_us"]
    behind_s = time.time() - (fill_starts.max() + interval_micros(INTERVAL)) / MICROS_PER_SECOND
    record_property("fills_after_last_trade", fills)
    record_property("newest_fill_end_behind_wall_clock_s", round(behind_s, 1))
    assert feed.process.poll() is None, feed.log  # still running, idle: only heartbeats were sent
    assert filled, f"{fills} fill bars after the last trade within {IDLE_SECONDS} s\n{pipeline.log[-4000:]}"
    # The newest fill is at most a bucket, a heartbeat and the reader's bundle behind the wall clock.
    assert behind_s < MAX_FILL_LAG_SECONDS, behind_s
    assert pipeline.process.poll() is None, pipeline.log[-4000:]
    assert wait_for_signal_exit(feed, signal.SIGTERM, FEED_STOP_SECONDS) == 0, feed.log
