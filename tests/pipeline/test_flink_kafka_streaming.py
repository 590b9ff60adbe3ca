"""Kafka on Flink end to end, with real processes: ``python -m ingestion --sink kafka`` (synthetic
feed, tick archive) -> a real KRaft broker -> ``python -m pipeline --runner FlinkRunner --streaming
--source kafka`` (an embedded Flink 1.19 in the assembled job server; KafkaIO's legacy reader in
that JVM, the rest of the Kafka transform in the Java worker pool, the Python steps in LOOPBACK)
-> PostgreSQL.

The ground truth is the feed's tick archive: the streaming bars must equal the batch bars of the
same ticks (``pipeline.repair.recompute``). Why the legacy reader: ``alphastream.flink_kafka``.
Stopped, the run's summary shows the counters so far, read from Flink's REST API (Beam's Flink
job service has none for a cancelled streaming job: ``pipeline.summary``).
"""
from __future__ import annotations

import signal

import pytest

from orchestration.batch_run import counters_from_summary
from tests.fixtures import kafka_stack
from tests.fixtures.live_stack import feed_outcome, wait_for_signal_exit

pytestmark = pytest.mark.slow

RATE = 500
TICKS = 2_500  # 5 s of feed
# After the feed ends: the last 15 s window closes, plus the 5 s lateness, plus slack for Flink,
# three JVMs and a loaded 2-core machine.
SETTLE_SECONDS = 60
FEED_TIMEOUT_SECONDS = 60
STOP_TIMEOUT_SECONDS = 20.0


@pytest.fixture
def flink_kafka_stack(kafka_broker, legacy_read_expansion_service, pg_cluster, tmp_path):
    # No archive finaliser: the table holds the streaming panes alone. Gap filling on, as by
    # default: its keyed input is decoded by Flink's Java side (tests/transforms/test_schemas.py).
    yield from kafka_stack.flink_kafka_stack(kafka_broker, legacy_read_expansion_service, pg_cluster, tmp_path,
                                             with_archive=False, fill_gaps=True)


def test_streaming_bars_from_kafka_on_flink_equal_the_batch_bars_of_the_same_ticks(flink_kafka_stack):
    stack = flink_kafka_stack
    pipeline = stack.start_pipeline()
    feed = stack.start_feed(RATE, TICKS)
    assert feed.wait(FEED_TIMEOUT_SECONDS) == 0, feed.log
    outcome = feed_outcome(feed)
    assert outcome["published"] == TICKS and outcome["failed"] == 0, outcome
    stack.wait_for_streaming_bars(pipeline, TICKS, SETTLE_SECONDS)  # fails at once if the job died
    assert wait_for_signal_exit(pipeline, signal.SIGINT, timeout=STOP_TIMEOUT_SECONDS) == 0, pipeline.log[-4000:]
    summary = pipeline.log[pipeline.log.rindex("alphastream run finished"):]
    counters = counters_from_summary(summary)
    # Every tick was in a bar before the stop, so every one was counted read.
    assert counters["ticks_read"] == TICKS, summary
    assert "unknown: a stopped streaming run" in summary, summary
