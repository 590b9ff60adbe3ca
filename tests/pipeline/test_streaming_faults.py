"""Faults on the live path, with real processes: ``python -m ingestion`` (synthetic feed, tick
archive) -> the Pub/Sub emulator -> ``python -m pipeline --streaming --archive`` -> PostgreSQL
(tests/fixtures/live_stack.py). Each fault ends with the ``bars`` table equal to the bars of
every tick the feed published (its archive, computed independently with pandas), all final,
within a bounded time after the feed ends.
"""
from __future__ import annotations

import signal
import time

import pyarrow.parquet as pq
import pytest

from pipeline.dead_letter_replay import letters_in_table, with_unwrapped
from tests.fixtures.live_stack import LiveStack, feed_outcome

pytestmark = pytest.mark.slow

RATE = 500
TICKS = 10_000  # 20 s of feed
FAULT_AFTER_SECONDS = 6
# After the feed ends: the last 15 s window closes, plus the 5 s lateness, plus a finaliser
# pass, plus slack for a loaded machine.
SETTLE_SECONDS = 60
FEED_TIMEOUT_SECONDS = 90
DEAD_LETTERS_TIMEOUT_SECONDS = 60  # finaliser passes after the database is back, on a loaded machine


@pytest.fixture
def stack(pubsub_emulator, pg_cluster, tmp_path):
    live = LiveStack(pubsub_emulator, pg_cluster, tmp_path)
    yield live
    live.close()


def finish_feed(stack: LiveStack, feed) -> None:
    assert feed.wait(FEED_TIMEOUT_SECONDS) == 0, feed.log
    outcome = feed_outcome(feed)
    assert outcome["published"] == TICKS and outcome["failed"] == 0, outcome
    stack.keep_watermark_moving()


@pytest.mark.parametrize("down_seconds", [3, 20], ids=["restart-after-3s", "restart-after-20s"])
def test_pipeline_killed_and_restarted_leaves_every_bar_exact(stack, down_seconds):
    pipeline = stack.start_pipeline()
    feed = stack.start_feed(RATE, TICKS)
    time.sleep(FAULT_AFTER_SECONDS)
    pipeline.kill()  # SIGKILL: open windows, pulled-but-unwritten messages and state are lost
    time.sleep(down_seconds)
    restarted = stack.start_pipeline()
    finish_feed(stack, feed)
    stack.wait_for_exact_bars(SETTLE_SECONDS)
    assert restarted.process.poll() is None, restarted.log


def test_graceful_stop_and_restart_leaves_every_bar_exact(stack):
    pipeline = stack.start_pipeline()
    feed = stack.start_feed(RATE, TICKS)
    time.sleep(FAULT_AFTER_SECONDS)
    pipeline.signal(signal.SIGTERM)
    assert pipeline.wait(30) == 0, pipeline.log
    assert "finaliser: final pass done" in pipeline.log  # its last pass ran before the exit
    time.sleep(3)
    stack.start_pipeline()
    finish_feed(stack, feed)
    stack.wait_for_exact_bars(SETTLE_SECONDS)


def sink_failures_logged(lines: list[str]) -> int:
    """Rows the streaming sinks dead-lettered, from the writer's log lines: the finaliser's own
    writes go through the same writer and log the same way, but it keeps those rows and retries
    them (it says how many), so they are not dead letters."""
    logged = sum(int(line.split(": ")[2].split()[0]) for line in lines if "rows dead-lettered" in line)
    retried = sum(int(line.split("finaliser: ")[1].split()[0]) for line in lines
                  if "finaliser: " in line and " not stored; will retry" in line)
    return logged - retried


def lake_dead_letters(lake) -> list:
    return [letter for path in lake.glob("dead_letters/**/*.parquet")
            for letter in letters_in_table(pq.read_table(path))]


def test_database_outage_loses_nothing_and_the_lake_keeps_writing(stack, pg_cluster):
    pipeline = stack.start_pipeline()
    feed = stack.start_feed(RATE, TICKS)
    time.sleep(FAULT_AFTER_SECONDS)
    pg_cluster.local.stop()
    down_at = time.time()
    time.sleep(12)
    bar_files_while_down = [p for p in stack.lake.glob("bars/**/*.parquet") if p.stat().st_mtime > down_at]
    pg_cluster.local.ensure_running()
    finish_feed(stack, feed)
    stack.wait_for_exact_bars(SETTLE_SECONDS)
    assert pipeline.process.poll() is None, pipeline.log
    assert bar_files_while_down, "the streaming lake wrote no bars while the database was down"
    # Every sink_failed dead letter the sinks logged is in the lake once (the sinks spool them
    # before handing them on) and, from it, in the table, with the letters the dead-letter table
    # itself refused unwrapped.
    deadline = time.monotonic() + DEAD_LETTERS_TIMEOUT_SECONDS
    while True:
        logged = sink_failures_logged(pipeline.lines)
        in_lake = lake_dead_letters(stack.lake)
        unwrapped = set(with_unwrapped(in_lake))
        stored = {(d["reason"], d["origin"], d["raw"]) for d in stack.dead_letters()}
        missing = [d for d in unwrapped if (d.reason, d.origin, d.raw) not in stored]
        recovered = "reachable again" in pipeline.log  # the sinks' circuit breaker closed
        if (logged == len(in_lake) and not missing and recovered) or time.monotonic() > deadline:
            break
        time.sleep(1)
    assert logged, "the outage produced no sink_failed dead letters: did the database stop?"
    assert recovered, "the sinks never wrote again after the outage"
    assert all(letter.reason == "sink_failed" for letter in in_lake)
    assert {letter.origin for letter in in_lake} == {"postgres:bars", "postgres:dead_letters"}
    assert logged == len(in_lake), f"{logged} sink_failed letters logged, {len(in_lake)} in the lake"
    assert not missing, f"{len(missing)} of {len(unwrapped)} dead letters in the lake never reached the table"


def test_deleted_subscription_stops_the_pipeline_with_one_clear_line(stack, pubsub_emulator):
    from google.cloud import pubsub_v1

    pipeline = stack.start_pipeline()
    feed = stack.start_feed(RATE, TICKS)
    time.sleep(3)
    with pubsub_v1.SubscriberClient() as subscriber:
        subscriber.delete_subscription(subscription=stack.subscription)
    code = pipeline.wait(60)
    feed.kill()
    assert code not in (0, None), pipeline.log
    errors = [line for line in pipeline.lines if line.startswith("error: ")]
    assert len(errors) == 1, pipeline.log[-3000:]
    assert stack.subscription in errors[0] and "gcloud pubsub subscriptions create" in errors[0], errors[0]
