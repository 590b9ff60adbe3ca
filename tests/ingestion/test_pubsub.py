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

from alphastream.records import TICK_FIELDS
from alphastream.wire import (
    BATCH_ID_PREFIX,
    HEARTBEAT_ID_PREFIX,
    ID_ATTRIBUTE,
    TIMESTAMP_ATTRIBUTE,
    decode_ticks,
    dedup_id,
    encode_batch,
    rfc3339_millis,
)
from ingestion.connectors.replay import ReplayFile
from ingestion.connectors.synthetic import SyntheticMarket
from ingestion.service import run_ingestion
from ingestion.sinks.pubsub import PublishSettings, PubSubSink
from tests.fixtures.pubsub import ticks_in

REPO = Path(__file__).resolve().parents[2]
FEEDS = Path(__file__).parents[1] / "data" / "feeds"
RFC3339_MILLIS = re.compile(r"^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}\.\d{3}Z$")


def _tick_messages(messages):
    """The messages that carry ticks (heartbeats, empty batches, are checked and left out)."""
    carrying = []
    for message in messages:
        if message.attributes[ID_ATTRIBUTE].startswith(HEARTBEAT_ID_PREFIX):
            assert message.data == b"[]"
        else:
            carrying.append(message)
    return carrying


def _check_messages(messages, expected_count):
    """Every tick message is in the wire format; returns the ticks (single or batched bodies)."""
    ticks = []
    for message in _tick_messages(messages):
        batch = decode_ticks(message.data)
        assert set(message.attributes) == {TIMESTAMP_ATTRIBUTE, ID_ATTRIBUTE}
        assert RFC3339_MILLIS.match(message.attributes[TIMESTAMP_ATTRIBUTE])
        assert message.attributes[TIMESTAMP_ATTRIBUTE] == rfc3339_millis(min(t.ts_us for t in batch))
        if message.data.startswith(b"["):
            assert message.attributes == encode_batch(batch)[1]
            assert message.attributes[ID_ATTRIBUTE].startswith(BATCH_ID_PREFIX)
            assert all(tuple(item) == TICK_FIELDS for item in json.loads(message.data))
        else:
            assert tuple(json.loads(message.data)) == TICK_FIELDS
            assert message.attributes[ID_ATTRIBUTE] == dedup_id(batch[0])
        ticks.extend(batch)
    assert len(ticks) == expected_count
    assert len({dedup_id(t) for t in ticks}) == expected_count, "a tick was delivered twice or ids collide"
    return ticks


def test_synthetic_ticks_reach_the_topic_intact(pubsub_emulator):
    topic, subscription = pubsub_emulator.create_topic_and_subscription("synthetic")
    connector = SyntheticMarket(rate=5000, symbols=5, seed=7)
    sink = PubSubSink(topic, PublishSettings(batch_max_messages=100, batch_max_latency=0.01))
    started_us = time.time() * 1e6
    result = asyncio.run(run_ingestion(connector, sink, max_ticks=1500, handle_signals=False))
    assert (result.reason, result.submitted, result.published, result.failed) == ("max_ticks", 1500, 1500, 0)
    ticks = _check_messages(pubsub_emulator.pull(subscription, expected=1500, weight=ticks_in), 1500)
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
    from transforms.tick_batches import decode_tick_batch

    messages = _tick_messages(pubsub_emulator.pull(subscription, expected=300, weight=ticks_in))
    now_us = int(time.time() * 1e6)
    parsed = [tick_from_json(raw, now_us=now_us, default_source="pubsub")
              for m in messages for _, raw in decode_tick_batch(m.data)]
    assert len(parsed) == 300
    assert parsed == [t for m in messages for t in decode_ticks(m.data)]


def test_replay_file_is_published_whole_with_shifted_timestamps(pubsub_emulator):
    topic, subscription = pubsub_emulator.create_topic_and_subscription("replay")
    connector = ReplayFile(FEEDS / "replay_ticks.csv", speed=100.0)
    originals = connector.load()
    connector = ReplayFile(FEEDS / "replay_ticks.csv", speed=100.0)
    result = asyncio.run(run_ingestion(connector, PubSubSink(topic), handle_signals=False))
    assert result.reason == "input ended"
    assert result.published == len(originals) and result.malformed == 1
    pulled = pubsub_emulator.pull(subscription, expected=len(originals), weight=ticks_in)
    ticks = _check_messages(pulled, len(originals))
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
    _check_messages(pubsub_emulator.pull(subscription, expected=500, weight=ticks_in), 500)


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
    _check_messages(pubsub_emulator.pull(subscription, expected=published, weight=ticks_in), published)


def test_ticks_share_messages_and_a_quiet_feed_sends_heartbeats(pubsub_emulator):
    """ticks_per_message=50: 120 ticks -> bodies of 50, 50 and (after batch_max_latency) 20;
    then heartbeats (empty batches) while nothing else is sent."""
    from alphastream.records import Tick

    topic, subscription = pubsub_emulator.create_topic_and_subscription("batched")
    sink = PubSubSink(topic, PublishSettings(ticks_per_message=50, batch_max_latency=0.05, heartbeat_seconds=0.2))
    now_us = int(time.time() * 1e6)
    sent = [Tick("AAPL", now_us + i, 100.0 + i, 1.0, f"b{i}", "test") for i in range(120)]
    for tick in sent:
        sink.publish(tick)
    time.sleep(0.7)  # the 20-tick remainder goes out after 50 ms, then heartbeats every 0.2 s
    sink.close(timeout=10)
    assert (sink.submitted, sink.published, sink.failed) == (120, 120, 0)
    assert sink.heartbeats >= 2
    messages = pubsub_emulator.pull(subscription, expected=3 + sink.heartbeats)
    tick_messages = _tick_messages(messages)
    assert sorted(len(decode_ticks(m.data)) for m in tick_messages) == [20, 50, 50]
    assert sorted(_check_messages(messages, 120)) == sorted(sent)
    assert len(messages) - len(tick_messages) == sink.heartbeats
