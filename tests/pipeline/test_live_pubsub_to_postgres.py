"""End to end, live: the real Pub/Sub emulator -> ``python -m pipeline --streaming --source pubsub``
(a subprocess, the real CLI) -> the real PostgreSQL.

A known tick set with current timestamps is published in batched and single-tick bodies, with
duplicates, out-of-order ticks and malformed messages. The bars in PostgreSQL must equal the
independent pandas computation (tests/fixtures/reference.py) and every malformed message must be in
``dead_letters`` with its reason. Heartbeats (empty batches) keep the reader pulling so the
DirectRunner's watermark reaches each window's end; the run is stopped with SIGINT, which must
end it cleanly within seconds.
"""
from __future__ import annotations

import json
import os
import random
import signal
import subprocess
import sys
import threading
import time
import urllib.request
from pathlib import Path

import pandas as pd
import psycopg

from alphastream.intervals import interval_micros
from alphastream.local_services import free_port
from alphastream.records import BAR_FIELDS, DEAD_LETTER_FIELDS, MICROS_PER_SECOND, PaneTiming, Tick, storage_columns
from alphastream.wire import TIMESTAMP_ATTRIBUTE, encode_batch, encode_heartbeat, encode_tick, rfc3339_millis
from tests.fixtures.reference import assert_same_bars, pandas_bars

REPO = Path(__file__).resolve().parents[2]
INTERVAL = "5s"
ALLOWED_LATENESS_SECONDS = 5
HEARTBEAT_SECONDS = 0.2
STARTUP_TIMEOUT_SECONDS = 60
BARS_TIMEOUT_SECONDS = 30
STOP_TIMEOUT_SECONDS = 20
METRICS_TIMEOUT_SECONDS = 15
TICKS_PER_MESSAGE = 25
SYMBOLS = ("AAPL", "MSFT", "BTC-USD")


def known_ticks(now_us: int, rng: random.Random) -> list[Tick]:
    """40 trades per symbol over the last 3 s (so they straddle a 5 s bucket edge now and then)."""
    ticks = []
    for symbol in SYMBOLS:
        for i in range(40):
            ts_us = now_us - rng.randrange(3 * MICROS_PER_SECOND)
            ticks.append(Tick(symbol, ts_us, round(rng.uniform(90, 110), 2), float(rng.randint(1, 50)),
                              f"{symbol}-{i}", "live-test"))
    return ticks


def malformed_messages(now_us: int) -> list[tuple[bytes, str]]:
    """(message body, the dead-letter reason it must produce)."""
    good = {"symbol": "AAPL", "ts_us": now_us, "price": 100.0, "size": 1.0, "trade_id": "bad-x", "source": "live-test"}
    return [
        (b"{broken", "bad_json"),
        (json.dumps({**good, "price": -1.0, "trade_id": "bad-1"}).encode(), "bad_price"),
        (json.dumps({k: v for k, v in good.items() if k != "symbol"} | {"trade_id": "bad-2"}).encode(),
         "missing_field"),
        (json.dumps({**good, "size": "lots", "trade_id": "bad-3"}).encode(), "bad_size"),
    ]


def scrape_metrics(port: int) -> dict[str, float]:
    from prometheus_client.parser import text_string_to_metric_families

    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as response:
        text = response.read().decode()
    return {sample.name: sample.value for family in text_string_to_metric_families(text) for sample in family.samples}


def _stderr_lines(process: subprocess.Popen, lines: list[str]) -> None:
    for line in process.stderr:
        lines.append(line)


class Heartbeats:
    """Publishes an empty batch every HEARTBEAT_SECONDS (what the ingestion service does when idle)."""

    def __init__(self, publisher, topic: str):
        self._publisher, self._topic = publisher, topic
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        while not self._stop.wait(HEARTBEAT_SECONDS):
            body, attributes = encode_heartbeat(time.time_ns() // 1_000)
            self._publisher.publish(self._topic, body, **attributes)

    def __enter__(self):
        self._thread.start()
        return self

    def __exit__(self, *exc):
        self._stop.set()
        self._thread.join()


def stored_bars(db_url: str) -> pd.DataFrame:
    columns = storage_columns(BAR_FIELDS)
    with psycopg.connect(db_url) as conn:
        rows = conn.execute(f"SELECT {', '.join(columns)} FROM bars ORDER BY interval, symbol, bucket_start").fetchall()
    frame = pd.DataFrame(rows, columns=list(BAR_FIELDS))
    if not frame.empty:
        frame["bucket_start_us"] = [int(ts.timestamp()) * MICROS_PER_SECOND + ts.microsecond
                                    for ts in frame["bucket_start_us"]]
    return frame


def stored_dead_letters(db_url: str) -> list[dict]:
    columns = storage_columns(DEAD_LETTER_FIELDS)
    with psycopg.connect(db_url) as conn:
        rows = conn.execute(f"SELECT {', '.join(columns)} FROM dead_letters").fetchall()
    return [dict(zip(DEAD_LETTER_FIELDS, row, strict=True)) for row in rows]


def start_pipeline(subscription: str, db_url: str, lake: Path, metrics_port: int) -> subprocess.Popen:
    """``python -m pipeline`` streaming from ``subscription`` into ``db_url`` (the real CLI)."""
    return subprocess.Popen(
        [sys.executable, "-m", "pipeline", "--streaming", "--source", "pubsub", "--subscription", subscription,
         "--db_url", db_url, "--intervals", INTERVAL, "--allowed_lateness", str(ALLOWED_LATENESS_SECONDS),
         "--early_firing_seconds", "0", "--max_duration", "300", "--output", str(lake),
         "--metrics_port", str(metrics_port)],
        cwd=REPO, env=dict(os.environ, PYTHONUNBUFFERED="1"), stdout=subprocess.PIPE, stderr=subprocess.PIPE,
        text=True)


def wait_until_streaming(process: subprocess.Popen, stderr: list[str]) -> None:
    deadline = time.monotonic() + STARTUP_TIMEOUT_SECONDS
    while not any("streaming; stop with Ctrl-C" in line for line in stderr):
        assert process.poll() is None, "".join(stderr)
        assert time.monotonic() < deadline, "the pipeline did not start:\n" + "".join(stderr)
        time.sleep(0.1)


def publish(publisher, topic: str, deliveries: list[Tick], bad: list[tuple[bytes, str]], now_us: int) -> None:
    """The deliveries in batched bodies (the last few as single-tick bodies), then the malformed
    messages; returns once the emulator has accepted them all."""
    futures = []
    for start in range(0, len(deliveries) - 10, TICKS_PER_MESSAGE):
        body, attributes = encode_batch(deliveries[start:start + TICKS_PER_MESSAGE])
        futures.append(publisher.publish(topic, body, **attributes))
    for tick in deliveries[start + TICKS_PER_MESSAGE:]:
        body, attributes = encode_tick(tick)
        futures.append(publisher.publish(topic, body, **attributes))
    for body, _ in bad:
        futures.append(publisher.publish(topic, body, **{TIMESTAMP_ATTRIBUTE: rfc3339_millis(now_us)}))
    for future in futures:
        future.result(timeout=10)


def wait_for_bars(db_url: str, expected: pd.DataFrame, dead_letters: int, last_window_end_us: int) -> pd.DataFrame:
    """The stored bars once every tick is in one and the last window has closed (or at the timeout)."""
    deadline = time.monotonic() + BARS_TIMEOUT_SECONDS
    while True:
        bars = stored_bars(db_url)
        letters = stored_dead_letters(db_url)
        # Every tick in a bar (a LATE pane may still be coming: see the test's assertion).
        done = (len(bars) == len(expected) and bars["trades"].sum() == expected["trades"].sum()
                and len(letters) == dead_letters and time.time_ns() // 1_000 > last_window_end_us)
        if done or time.monotonic() > deadline:
            return stored_bars(db_url)
        time.sleep(0.25)


def wait_for_counters(metrics_port: int, least_read: float) -> dict[str, float]:
    """The served metrics once ``ticks_read`` reaches ``least_read`` (counters land when their
    bundles commit), or at the timeout."""
    deadline = time.monotonic() + METRICS_TIMEOUT_SECONDS
    while True:
        metrics = scrape_metrics(metrics_port)
        if metrics.get("alphastream_pipeline_ticks_read_total", 0) >= least_read or time.monotonic() > deadline:
            return metrics
        time.sleep(0.5)


def test_live_ticks_become_bars_in_postgres_and_malformed_messages_dead_letters(pubsub_emulator, db_url, tmp_path):
    from google.cloud import pubsub_v1

    topic, subscription = pubsub_emulator.create_topic_and_subscription("live")
    metrics_port = free_port()
    process = start_pipeline(subscription, db_url, tmp_path / "lake", metrics_port)
    stderr: list[str] = []
    reader = threading.Thread(target=_stderr_lines, args=(process, stderr), daemon=True)
    reader.start()
    publisher = pubsub_v1.PublisherClient()
    try:
        wait_until_streaming(process, stderr)
        rng = random.Random(4)
        now_us = time.time_ns() // 1_000
        ticks = known_ticks(now_us, rng)
        deliveries = ticks + rng.sample(ticks, 12)
        rng.shuffle(deliveries)  # out of order, duplicates anywhere
        bad = malformed_messages(now_us)
        publish(publisher, topic, deliveries, bad, now_us)

        expected = pandas_bars(pd.DataFrame([t._asdict() for t in ticks]), (INTERVAL,))
        bucket = interval_micros(INTERVAL)
        last_window_end_us = max(t.ts_us for t in ticks) // bucket * bucket + bucket
        with Heartbeats(publisher, topic):
            bars_at_window_close = wait_for_bars(db_url, expected, len(bad), last_window_end_us)
            pipeline_metrics = wait_for_counters(metrics_port, 0.8 * (len(deliveries) + len(bad)))
            process.send_signal(signal.SIGINT)
            stop_started = time.monotonic()
            process.wait(STOP_TIMEOUT_SECONDS)
            stop_seconds = time.monotonic() - stop_started
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
        publisher.stop()
    reader.join(timeout=5)
    log = "".join(stderr)

    assert process.returncode == 0, log
    assert "streaming pipeline stopped" in log
    # The running pipeline served its Beam metrics for Prometheus (--metrics_port). A running
    # DirectRunner reports the bundles it has committed, so the counts may trail the input a little.
    assert 0.8 * (len(deliveries) + len(bad)) <= pipeline_metrics["alphastream_pipeline_ticks_read_total"] \
        <= len(deliveries) + len(bad)
    assert pipeline_metrics["alphastream_pipeline_ticks_duplicate_total"] >= 1
    assert pipeline_metrics["alphastream_pipeline_db_bar_rows_on_time_total"] >= 1
    assert pipeline_metrics["alphastream_pipeline_bar_write_lag_ms_count"] >= 1
    assert stop_seconds < 10, f"stopping took {stop_seconds:.1f} s"

    # The DirectRunner moves the watermark to the wall clock at every read, so ticks of a window
    # that closed while they waited in an earlier pull arrive LATE and correct the bar (within
    # the allowed lateness); nothing is EARLY (no early firings asked for).
    assert set(bars_at_window_close["timing"]) <= {PaneTiming.ON_TIME.value, PaneTiming.LATE.value}
    assert_same_bars(bars_at_window_close.drop(columns=["timing", "pane_index"]), expected)

    by_reason = {}
    for letter in stored_dead_letters(db_url):
        by_reason.setdefault(letter["reason"], []).append(letter)
    assert sorted(by_reason) == sorted(reason for _, reason in bad)
    for body, reason in bad:
        (letter,) = by_reason[reason]
        assert json.loads(letter["raw"]) == json.loads(body) if reason != "bad_json" else letter["raw"] == body.decode()
        assert letter["origin"] == subscription
        assert letter["detail"]
