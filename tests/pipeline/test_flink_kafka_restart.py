"""Restart safety of a Kafka stream on Flink, with real processes: ``python -m ingestion --sink
kafka`` -> a real KRaft broker -> ``python -m pipeline --runner FlinkRunner --streaming --source
kafka --archive ...`` (embedded Flink, KafkaIO's legacy reader in the job server's JVM) ->
PostgreSQL. The pipeline is killed with SIGKILL mid-stream and started again with the same
consumer group.

What must hold: the killed pipeline's job server JVM goes with it (else it would go on reading
the topic and committing the group's offsets for a job nobody runs: pipeline.flink_job_server);
the restarted pipeline resumes from the group's offsets; and once the feed ends the table equals
the batch bars of every archived tick, every bar final (the ``--archive`` finaliser puts back
the windows the kill cut), and the group has committed every record.
"""
from __future__ import annotations

from pathlib import Path

import pytest

from alphastream.local_services import child_pids
from tests.fixtures import kafka_stack
from tests.fixtures.kafka_stack import KafkaLiveStack
from tests.fixtures.live_stack import Child, feed_outcome, stored_bars, wait_until
from tests.fixtures.reference import assert_same_bars
from tests.pipeline.test_kafka_end_to_end import committed_and_end_offsets

pytestmark = pytest.mark.slow

RATE = 500
TICKS = 10_000  # 20 s of feed: the first pipeline is killed well before it ends
FIRST_COMMIT_SECONDS = 60  # the first pipeline's consumer commits its first offsets
JVM_EXIT_SECONDS = 15
# After the feed ends: the last 15 s window closes, plus the 5 s lateness, plus a finaliser pass,
# plus slack for Flink, three JVMs and a loaded 2-core machine.
SETTLE_SECONDS = 120
FEED_TIMEOUT_SECONDS = 120
CATCH_UP_SECONDS = 60


@pytest.fixture
def flink_kafka_stack(kafka_broker, legacy_read_expansion_service, pg_cluster, tmp_path):
    yield from kafka_stack.flink_kafka_stack(kafka_broker, legacy_read_expansion_service, pg_cluster, tmp_path,
                                             with_archive=True)


def alive(pid: int) -> bool:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes() != b""  # a zombie has an empty command line
    except OSError:
        return False


def committed_records(stack: KafkaLiveStack) -> int:
    """How many records the pipeline's consumer group has committed, over every partition."""
    return sum(max(offset, 0) for offset in committed_and_end_offsets(stack.broker.bootstrap, stack.topic)[0])


def group_at_the_end(stack: KafkaLiveStack) -> bool:
    committed, ends = committed_and_end_offsets(stack.broker.bootstrap, stack.topic)
    return committed == ends


def test_flink_pipeline_killed_and_restarted_with_the_same_group_leaves_every_bar_exact(flink_kafka_stack):
    stack = flink_kafka_stack
    pipeline = stack.start_pipeline()
    feed = stack.start_feed(RATE, TICKS)
    # Killed once its consumer has committed offsets: the restart resumes from them.
    assert wait_until(lambda: committed_records(stack) > 0, FIRST_COMMIT_SECONDS), pipeline.log[-4000:]
    job_server = child_pids(pipeline.process.pid)
    assert job_server and feed.process.poll() is None, (job_server, feed.log)
    pipeline.kill()  # SIGKILL: open windows and polled-but-unwritten records are lost
    assert wait_until(lambda: not any(alive(pid) for pid in job_server), JVM_EXIT_SECONDS), \
        f"the killed pipeline's job server {job_server} is still running"

    restarted: Child = stack.start_pipeline()  # same topic, same consumer group
    assert feed.wait(FEED_TIMEOUT_SECONDS) == 0, feed.log
    outcome = feed_outcome(feed)
    assert outcome["published"] == TICKS and outcome["failed"] == 0, outcome
    stack.wait_for_exact_bars(SETTLE_SECONDS)
    # The finaliser makes the bars exact from the archive on its own; that the restarted pipeline
    # read on from the group's offsets shows in the group reaching the end of every partition.
    assert wait_until(lambda: group_at_the_end(stack), CATCH_UP_SECONDS), \
        (committed_and_end_offsets(stack.broker.bootstrap, stack.topic), restarted.log[-4000:])
    assert restarted.process.poll() is None, restarted.log[-4000:]
    # Its panes, all written by now, left every bar exact: none counted twice.
    assert_same_bars(stored_bars(stack.db_url), stack.batch_bars(TICKS))
