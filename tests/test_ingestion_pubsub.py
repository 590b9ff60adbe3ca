"""End to end against Google's Pub/Sub emulator: connector -> PubSubSink -> topic -> pull.

Checks bodies and attributes in the wire format, that the pipeline's own parser accepts every
body, and that nothing handed to the sink is lost at shutdown (max_ticks, end of replay,
SIGTERM to the real ``python -m ingestion`` process).
"""
from __future__ import annotations

import asyncio
import json
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from alphastream.records import TICK_FIELDS
from ingestion.connectors.replay import ReplayFile
from ingestion.connectors.synthetic import SyntheticMarket
from ingestion.service import run_ingestion
from ingestion.sinks.pubsub import PublishSettings, PubSubSink
from ingestion.wire import ID_ATTRIBUTE, TIMESTAMP_ATTRIBUTE, decode_tick, dedup_id, rfc3339_millis

REPO = Path(__file__).resolve().parents[1]
FEEDS = Path(__file__).parent / "data" / "feeds"
RFC3339_MILLIS = re.compile(r"^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}\.\d{3}Z$")


def _check_messages(messages, expected_count):
    ticks = [decode_tick(m.data) for m in messages]
    assert len(ticks) == expected_count
    ids = [m.attributes[ID_ATTRIBUTE] for m in messages]
    assert len(set(ids)) == expected_count, "a message was delivered twice or ids collide"
    for message, tick in zip(messages, ticks):
        assert tuple(json.loads(message.data)) == TICK_FIELDS
        assert set(message.attributes) == {TIMESTAMP_ATTRIBUTE, ID_ATTRIBUTE}
        assert RFC3339_MILLIS.match(message.attributes[TIMESTAMP_ATTRIBUTE])
        assert message.attributes[TIMESTAMP_ATTRIBUTE] == rfc3339_millis(tick.ts_us)
        assert message.attributes[ID_ATTRIBUTE] == dedup_id(tick)
    return ticks


def test_synthetic_ticks_reach_the_topic_intact(pubsub_emulator):
    topic, subscription = pubsub_emulator.create_topic_and_subscription("synthetic")
    connector = SyntheticMarket(rate=5000, symbols=5, seed=7)
    sink = PubSubSink(topic, PublishSettings(batch_max_messages=100, batch_max_latency=0.01))
    started_us = time.time() * 1e6
    result = asyncio.run(run_ingestion(connector, sink, max_ticks=1500, handle_signals=False))
    assert (result.reason, result.submitted, result.published, result.failed) == ("max_ticks", 1500, 1500, 0)
    ticks = _check_messages(pubsub_emulator.pull(subscription, expected=1500), 1500)
    assert {t.source for t in ticks} == {"synthetic"}
    assert len({t.symbol for t in ticks}) == 5
    assert all(started_us - 1e6 <= t.ts_us <= time.time() * 1e6 for t in ticks), "timestamps should be now"


def test_pipeline_parser_accepts_every_published_body(pubsub_emulator):
    """The Beam side's parser (transforms.validation) reads our bodies without dead letters."""
    from transforms.validation import tick_from_json

    topic, subscription = pubsub_emulator.create_topic_and_subscription("parse")
    result = asyncio.run(run_ingestion(SyntheticMarket(rate=10_000, seed=1), PubSubSink(topic),
                                       max_ticks=300, handle_signals=False))
    assert result.published == 300
    messages = pubsub_emulator.pull(subscription, expected=300)
    now_us = int(time.time() * 1e6)
    parsed = [tick_from_json(m.data, now_us=now_us, default_source="pubsub") for m in messages]
    assert parsed == [decode_tick(m.data) for m in messages]


def test_replay_file_is_published_whole_with_shifted_timestamps(pubsub_emulator):
    topic, subscription = pubsub_emulator.create_topic_and_subscription("replay")
    connector = ReplayFile(FEEDS / "replay_ticks.csv", speed=100.0)
    originals = connector.load()
    connector = ReplayFile(FEEDS / "replay_ticks.csv", speed=100.0)
    result = asyncio.run(run_ingestion(connector, PubSubSink(topic), handle_signals=False))
    assert result.reason == "input ended"
    assert result.published == len(originals) and result.malformed == 1
    ticks = _check_messages(pubsub_emulator.pull(subscription, expected=len(originals)), len(originals))
    by_id = {t.trade_id: t for t in ticks}
    first = originals[0]
    shifted_first = by_id[first.trade_id]
    assert abs(shifted_first.ts_us / 1e6 - time.time()) < 30
    for original in originals:
        got = by_id[original.trade_id]
        assert (got.symbol, got.price, got.size) == (original.symbol, original.price, original.size)
        # offsets from the first tick are kept, divided by the speed
        assert abs((got.ts_us - shifted_first.ts_us) - (original.ts_us - first.ts_us) / 100.0) <= 1


def _run_cli(args, env, **kwargs):
    return subprocess.Popen([sys.executable, "-m", "ingestion", *args], cwd=REPO, env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, **kwargs)


def test_cli_publishes_max_ticks_to_the_emulator(pubsub_emulator):
    topic, subscription = pubsub_emulator.create_topic_and_subscription("cli")
    process = _run_cli(["--source", "synthetic", "--topic", topic, "--rate", "1000", "--max_ticks", "500",
                        "--log_interval", "0.2"], dict(os.environ))
    out, err = process.communicate(timeout=60)
    assert process.returncode == 0, err
    assert "ticks/s published, lag" in err, "the rate/lag line should be logged"
    assert "stopped (max_ticks)" in err and "submitted=500 published=500 failed=0" in err
    _check_messages(pubsub_emulator.pull(subscription, expected=500), 500)


def test_sigterm_flushes_everything_handed_to_the_publisher(pubsub_emulator):
    topic, subscription = pubsub_emulator.create_topic_and_subscription("sigterm")
    # A long latency keeps up to 1000 messages batched in the client: SIGTERM must get them out.
    process = _run_cli(["--source", "synthetic", "--topic", topic, "--rate", "2000",
                        "--batch_max_latency", "5", "--batch_max_messages", "1000"], dict(os.environ))
    time.sleep(3.0)
    process.send_signal(signal.SIGTERM)
    out, err = process.communicate(timeout=60)
    assert process.returncode == 0, err
    match = re.search(r"stopped \(signal SIGTERM\).*submitted=(\d+) published=(\d+) failed=(\d+)", err)
    assert match, err
    submitted, published, failed = map(int, match.groups())
    assert submitted == published > 0 and failed == 0
    assert published % 1000 != 0, "a partial batch should have been pending at SIGTERM"
    _check_messages(pubsub_emulator.pull(subscription, expected=published), published)
