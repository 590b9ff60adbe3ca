"""A sink's dead letter reaches the streaming lake although its row's event time is long past:
the lake windows it by when the write failed (the element's timestamp), not by seen_at_us."""
from __future__ import annotations

import glob
import os

import pyarrow.parquet as pq
from apache_beam.options.pipeline_options import StandardOptions
from apache_beam.testing.test_pipeline import TestPipeline
from apache_beam.testing.test_stream import TestStream
from apache_beam.transforms.window import TimestampedValue
from apache_beam.utils.timestamp import Timestamp

from alphastream.records import DeadLetter
from pipeline.lake import input_key
from pipeline.streaming_lake import WriteDeadLettersToLakeStreaming, lake_file_name

T0 = 1_704_205_800_000_000  # 2024-01-02 14:30:00 UTC
SEC = 1_000_000
WINDOW_SECONDS = 60
FAILED_AT = T0 + 600 * SEC  # the sink gave up ten minutes after the bar's bucket started


def run(letter: DeadLetter, root: str) -> list[str]:
    stream = (TestStream()
              .advance_watermark_to(Timestamp(micros=FAILED_AT - SEC))
              .add_elements([TimestampedValue(letter, Timestamp(micros=FAILED_AT))])
              .advance_watermark_to_infinity())
    p = TestPipeline()
    p.options.view_as(StandardOptions).streaming = True
    with p:
        _ = p | stream | WriteDeadLettersToLakeStreaming(root, window_seconds=WINDOW_SECONDS,
                                                         allowed_lateness_seconds=5)
    return glob.glob(os.path.join(root, "dead_letters", "date=2024-01-02", "*.parquet"))


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
