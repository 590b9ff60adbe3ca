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
DEAD_LETTERS_TIMEOUT_SECONDS = 60  # a 5 s lake window closing, then a finaliser pass


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


def test_database_outage_loses_nothing_and_the_lake_keeps_writing(stack, pg_cluster):
    pipeline = stack.start_pipeline()
    feed = stack.start_feed(RATE, TICKS)
    time.sleep(FAULT_AFTER_SECONDS)
    pg_cluster.local.stop()
    down_at = time.time()
    time.sleep(12)
    lake_files_while_down = [p for p in stack.lake.rglob("*.parquet") if p.stat().st_mtime > down_at]
    pg_cluster.local.ensure_running()
    finish_feed(stack, feed)
    stack.wait_for_exact_bars(SETTLE_SECONDS)
    assert pipeline.process.poll() is None, pipeline.log
    if not lake_files_while_down:
        # Known gap (issue 19, open): in some runs the lake writes nothing during a 12 s outage
        # (seen once in a fresh-clone CI run); the bars are still exact afterwards (checked above).
        pytest.xfail("known gap: the streaming lake wrote nothing while the database was down")
    assert "reachable again" in pipeline.log  # the sinks' circuit breaker closed after the outage
    # Every sink_failed dead letter the pipeline logged reached the lake (the table was down)
    # and, from it, the table, with the letters the dead-letter table itself refused unwrapped.
    logged = sum(int(line.split(": ")[2].split()[0]) for line in pipeline.lines if "rows dead-lettered" in line)
    assert logged, "the outage produced no sink_failed dead letters: did the database stop?"
    deadline = time.monotonic() + DEAD_LETTERS_TIMEOUT_SECONDS
    while True:
        lake_letters = set(with_unwrapped(letter for path in stack.lake.glob("dead_letters/**/*.parquet")
                                          for letter in letters_in_table(pq.read_table(path))))
        stored = {(d["reason"], d["origin"], d["raw"]) for d in stack.dead_letters()}
        missing = [d for d in lake_letters if (d.reason, d.origin, d.raw) not in stored]
        in_lake = len([d for d in lake_letters if d.reason == "sink_failed"])
        if (logged == in_lake and not missing) or time.monotonic() > deadline:
            break
        time.sleep(1)
    assert not missing, f"{len(missing)} of {len(lake_letters)} dead letters in the lake never reached the table"
    assert {letter.origin for letter in lake_letters} == {"postgres:bars", "postgres:dead_letters"}
    if logged != in_lake:
        # Known gap (issue 19, open): in about 1 run of 3, roughly half of the sink_failed letters
        # logged during the outage never reach the streaming lake (seen: 108 logged, 56 in the
        # lake). Not lateness (the dead-letter windows keep a day); cause not found yet.
        pytest.xfail(f"known gap: {logged} sink_failed letters logged, {in_lake} in the lake")


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
