"""A sink's dead letters reach the lake. Spooled (streaming): the sink writes them to the lake
itself before handing them on, where the finaliser's replay finds them and stores each once, and
the streaming dead-letter lake leaves them out. Windowed: the lake windows one by when the write
failed (the element's timestamp), not by its row's long-past seen_at_us."""
from __future__ import annotations

import glob
import os
import time

import apache_beam as beam
import psycopg
import pyarrow.parquet as pq
from apache_beam.options.pipeline_options import StandardOptions
from apache_beam.testing.test_pipeline import TestPipeline
from apache_beam.testing.test_stream import TestStream
from apache_beam.testing.util import assert_that, equal_to
from apache_beam.transforms.window import TimestampedValue
from apache_beam.utils.timestamp import Timestamp

from alphastream.records import DeadLetter
from pipeline.dead_letter_replay import letters_in_table, recent_lake_files, replay_dead_letters
from pipeline.lake import input_key
from pipeline.postgres_sink import WriteDeadLettersToPostgres
from pipeline.streaming_lake import WriteDeadLettersToLakeStreaming, lake_file_name
from store.writer import RetryPolicy

T0 = 1_704_205_800_000_000  # 2024-01-02 14:30:00 UTC
SEC = 1_000_000
WINDOW_SECONDS = 60
FAILED_AT = T0 + 600 * SEC  # the sink gave up ten minutes after the bar's bucket started


def run(letter: DeadLetter, root: str, *, sinks_spool: bool = False) -> list[str]:
    stream = (TestStream()
              .advance_watermark_to(Timestamp(micros=FAILED_AT - SEC))
              .add_elements([TimestampedValue(letter, Timestamp(micros=FAILED_AT))])
              .advance_watermark_to_infinity())
    p = TestPipeline()
    p.options.view_as(StandardOptions).streaming = True
    with p:
        _ = p | stream | WriteDeadLettersToLakeStreaming(root, window_seconds=WINDOW_SECONDS,
                                                         allowed_lateness_seconds=5, sinks_spool=sinks_spool)
    return glob.glob(os.path.join(root, "dead_letters", "date=2024-01-02", "*.parquet"))


def spool_files(root) -> list[str]:
    return sorted(glob.glob(os.path.join(root, "dead_letters", "date=*", "*-spool-*.parquet")))


def test_a_sink_spools_its_failures_before_handing_them_on_and_the_replay_stores_them_once(db_url, tmp_path):
    refused = DeadLetter("bad_json", "not JSON", "{oops", "projects/p/subscriptions/s", int(time.time() * SEC))
    unreachable = db_url.rsplit(":", 1)[0] + ":1/none"
    root = str(tmp_path)
    p = TestPipeline()
    with p:
        failed = (p | beam.Create([refused])
                  | WriteDeadLettersToPostgres(unreachable, RetryPolicy(attempts=1), spool_root=root))
        # What a step after the sink sees: each letter together with the spool files already written.
        seen = failed | beam.Map(lambda letter: (letter.reason, letter.origin, len(spool_files(root))))
        assert_that(seen, equal_to([("sink_failed", "postgres:dead_letters", 1)]))
    (path,) = spool_files(root)
    (letter,) = letters_in_table(pq.read_table(path))
    assert letter.reason == "sink_failed" and letter.origin == "postgres:dead_letters"

    now = time.time()
    assert [f for f, _ in recent_lake_files(root, now - 60, now)] == [path]
    for _ in range(2):  # a second replay (the same file read again) stores nothing twice
        result, _ = replay_dead_letters(root, db_url, now - 60, now)
        assert (result.letters, result.failed) == (2, 0)  # the spooled letter and the one it carries
    with psycopg.connect(db_url) as conn:
        rows = conn.execute("SELECT reason, origin, raw FROM dead_letters ORDER BY reason").fetchall()
    assert rows == [("bad_json", refused.origin, refused.raw), ("sink_failed", letter.origin, letter.raw)]


def test_spooled_sink_failures_are_left_out_of_the_windowed_lake(tmp_path):
    letter = DeadLetter("sink_failed", "bars write failed", '{"symbol": "AAPL"}', "postgres:bars", T0)
    assert run(letter, str(tmp_path), sinks_spool=True) == []
    other = DeadLetter("bad_json", "not JSON", "{oops", "projects/p/subscriptions/s", FAILED_AT)
    assert len(run(other, str(tmp_path), sinks_spool=True)) == 1


def test_a_sink_failure_is_windowed_by_when_it_failed_and_keeps_its_seen_at(tmp_path):
    letter = DeadLetter("sink_failed", "bars write failed after 5 attempts", '{"symbol": "AAPL"}',
                        "postgres:bars", T0)
    files = run(letter, str(tmp_path))
    window_start = FAILED_AT - FAILED_AT % (WINDOW_SECONDS * SEC)
    assert [os.path.basename(f) for f in files] == [lake_file_name(
        f"dead_letters-{input_key(letter.origin)}", window_start, window_start + WINDOW_SECONDS * SEC, 0)]
    (row,) = pq.read_table(files[0]).to_pylist()
    assert int(row["seen_at"].timestamp()) * SEC == T0  # the row's own time, as in batch


def test_other_dead_letters_still_go_by_when_they_were_seen(tmp_path):
    # Seen ten minutes before the watermark: beyond the lateness, so Beam drops it as before.
    letter = DeadLetter("bad_json", "not JSON", "{oops", "projects/p/subscriptions/s", T0)
    assert run(letter, str(tmp_path)) == []


def test_a_retried_bundle_rewrites_its_spool_file_instead_of_adding_a_second_copy(tmp_path):
    from pipeline.dead_letter_spool import DeadLetterSpool

    now_us = int(time.time() * SEC)
    first = [DeadLetter("sink_failed", "connection refused", '{"symbol": "AAPL"}', "postgres:bars", now_us),
             DeadLetter("sink_failed", "connection refused", '{"symbol": "MSFT"}', "postgres:bars", now_us)]
    spool = DeadLetterSpool(str(tmp_path))
    written = spool.write(first)
    # The runner retries the bundle: the same rows fail again (in another order, with other words).
    retried = [letter._replace(detail="server closed the connection") for letter in reversed(first)]
    assert spool.write(retried) == written
    assert spool_files(str(tmp_path)) == written
    assert len(pq.read_table(written[0])) == 2
    # Other rows that failed are another file: nothing a sink spools overwrites another write.
    other = spool.write([first[0]._replace(raw='{"symbol": "NVDA"}')])
    assert spool_files(str(tmp_path)) == sorted(written + other)
