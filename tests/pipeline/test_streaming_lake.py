"""The streaming lake: windowed Parquet files per (partition, window, pane), same schema and
layout as the batch lake, driven by TestStream (on-time, early, late and too-late records)."""
from __future__ import annotations

import glob
import os

import apache_beam as beam
import polars as pl
import pyarrow.parquet as pq
from apache_beam.options.pipeline_options import StandardOptions
from apache_beam.testing.test_pipeline import TestPipeline
from apache_beam.testing.test_stream import TestStream
from apache_beam.transforms.window import TimestampedValue
from apache_beam.utils.timestamp import Timestamp

from alphastream.records import Bar, DeadLetter, PaneTiming
from pipeline.lake import arrow_schema, input_key
from pipeline.streaming_lake import WriteBarsToLakeStreaming, WriteDeadLettersToLakeStreaming, lake_file_name

T0 = 1_704_205_800_000_000  # 2024-01-02 14:30:00 UTC, a minute boundary
SEC = 1_000_000
LAKE_WINDOW_SECONDS = 60
LATENESS_SECONDS = 120


def bar(symbol: str, bucket_offset_s: int, close: float, timing: PaneTiming, pane_index: int,
        interval: str = "10s") -> Bar:
    return Bar(symbol, interval, T0 + bucket_offset_s * SEC, 100.0, max(100.0, close), min(100.0, close), close,
               10.0, (100.0 + close) / 2, 2, timing.value, pane_index)


def at_bar_end(b: Bar, interval_s: int = 10) -> TimestampedValue:
    """Bars leave StreamingBars stamped with their window's last microsecond."""
    return TimestampedValue(b, Timestamp(micros=b.bucket_start_us + interval_s * SEC - 1))


def streaming_pipeline() -> TestPipeline:
    p = TestPipeline()
    p.options.view_as(StandardOptions).streaming = True
    return p


def read_rows(path: str) -> list[dict]:
    return pq.read_table(path).to_pylist()


def test_bars_are_written_per_window_and_pane_with_the_batch_schema(tmp_path):
    on_time = [bar("AAPL", 0, 101.0, PaneTiming.ON_TIME, 1), bar("MSFT", 10, 99.0, PaneTiming.ON_TIME, 0)]
    early = bar("AAPL", 20, 102.0, PaneTiming.EARLY, 0)
    late = bar("AAPL", 0, 103.0, PaneTiming.LATE, 2)  # a correction of the first bar
    too_late = bar("MSFT", 0, 98.0, PaneTiming.LATE, 1)
    window_end = T0 + LAKE_WINDOW_SECONDS * SEC
    stream = (
        TestStream()
        .advance_watermark_to(Timestamp(micros=T0))
        .add_elements([at_bar_end(b) for b in on_time] + [at_bar_end(early)])
        .advance_watermark_to(Timestamp(micros=window_end + SEC))
        .add_elements([at_bar_end(late)])
        .advance_watermark_to(Timestamp(micros=window_end + (LATENESS_SECONDS + 1) * SEC))
        .add_elements([at_bar_end(too_late)])
        .advance_watermark_to_infinity()
    )
    root = str(tmp_path / "lake")
    with streaming_pipeline() as p:
        _ = (p | stream | WriteBarsToLakeStreaming(
            root, allowed_lateness_seconds=LATENESS_SECONDS, window_seconds=LAKE_WINDOW_SECONDS))

    partition = os.path.join(root, "bars", "interval=10s", "date=2024-01-02")
    files = sorted(os.path.basename(f) for f in glob.glob(os.path.join(partition, "*")))
    # One file per symbol, as in batch: a replay of one symbol's ticks rewrites only its files.
    assert files == [lake_file_name("bars-AAPL", T0, window_end, 0), lake_file_name("bars-AAPL", T0, window_end, 1),
                     lake_file_name("bars-MSFT", T0, window_end, 0)]
    assert files[0] == "bars-AAPL-20240102T143000Z-20240102T143100Z-pane000.parquet"

    on_time_file = os.path.join(partition, files[0])
    assert pq.read_schema(on_time_file).remove_metadata() == arrow_schema(Bar)
    got = read_rows(on_time_file) + read_rows(os.path.join(partition, files[2]))
    assert [(r["symbol"], r["close"], r["timing"], r["pane_index"]) for r in got] == [
        ("AAPL", 101.0, "ON_TIME", 1), ("MSFT", 99.0, "ON_TIME", 0)]  # EARLY bar left out
    assert got[0]["bucket_start"].timestamp() == T0 / SEC

    late_rows = read_rows(os.path.join(partition, files[1]))  # discarding panes: only the correction
    assert [(r["symbol"], r["close"], r["timing"], r["pane_index"]) for r in late_rows] == [("AAPL", 103.0, "LATE", 2)]

    # The lake reads as one Hive-partitioned dataset; the highest pane of a bar is its final value.
    lake = pl.scan_parquet(os.path.join(root, "bars", "**", "*.parquet"), hive_partitioning=True).collect()
    final = lake.sort("pane_index").group_by("symbol", "bucket_start").last().sort("symbol")
    assert final.select("symbol", "close", "interval").rows() == [("AAPL", 103.0, "10s"), ("MSFT", 99.0, "10s")]


def test_dead_letters_are_windowed_by_when_they_were_seen(tmp_path):
    seen = T0 + 5 * SEC
    letter = DeadLetter("bad_json", "not valid JSON", "{oops", "projects/p/subscriptions/s", seen)
    # The element's own timestamp (a bogus future event time) must not decide its lake window.
    stream = (
        TestStream()
        .advance_watermark_to(Timestamp(micros=T0))
        .add_elements([TimestampedValue(letter, Timestamp(micros=T0 + 3600 * SEC))])
        .advance_watermark_to_infinity()
    )
    root = str(tmp_path / "lake")
    with streaming_pipeline() as p:
        _ = p | stream | WriteDeadLettersToLakeStreaming(root, window_seconds=LAKE_WINDOW_SECONDS)

    files = glob.glob(os.path.join(root, "dead_letters", "date=2024-01-02", "*.parquet"))
    assert [os.path.basename(f) for f in files] == [
        lake_file_name(f"dead_letters-{input_key(letter.origin)}", T0, T0 + LAKE_WINDOW_SECONDS * SEC, 0)]
    rows = read_rows(files[0])
    assert pq.read_schema(files[0]).remove_metadata() == arrow_schema(DeadLetter)
    assert [(r["reason"], r["raw"], r["seen_at"].timestamp()) for r in rows] == [("bad_json", "{oops", seen / SEC)]


def test_two_dead_letter_writes_in_one_window_keep_both(tmp_path):
    """The graph writes dead letters twice (all of them, then those the table refused): files
    are per input, so neither write replaces the other's file of the same window."""
    seen = T0 + 5 * SEC
    parsed = DeadLetter("bad_json", "not valid JSON", "{oops", "projects/p/subscriptions/s", seen)
    unstored = DeadLetter("sink_failed", "refused", '{"raw": "{oops"}', "postgres:dead_letters", seen)
    stream = (TestStream()
              .advance_watermark_to(Timestamp(micros=T0))
              .add_elements([TimestampedValue(parsed, Timestamp(micros=seen)),
                             TimestampedValue(unstored, Timestamp(micros=seen))])
              .advance_watermark_to_infinity())
    root = str(tmp_path / "lake")
    with streaming_pipeline() as p:
        letters = p | stream
        for label, reason in (("All", "bad_json"), ("Unstored", "sink_failed")):
            _ = (letters | f"Only{label}" >> beam.Filter(lambda d, r=reason: d.reason == r)
                 | f"Write{label}" >> WriteDeadLettersToLakeStreaming(root, window_seconds=LAKE_WINDOW_SECONDS))

    files = glob.glob(os.path.join(root, "dead_letters", "date=2024-01-02", "*.parquet"))
    assert sorted(r["reason"] for f in files for r in read_rows(f)) == ["bad_json", "sink_failed"]
