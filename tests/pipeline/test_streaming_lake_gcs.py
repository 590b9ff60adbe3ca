"""The streaming lake on gs://, against the GCS emulator: the same windowed Parquet files as on
local disk, written through Beam's GCS filesystem (no local staging), readable back."""
from __future__ import annotations

import pyarrow.parquet as pq
from apache_beam.io.filesystems import FileSystems
from apache_beam.options.pipeline_options import StandardOptions
from apache_beam.testing.test_pipeline import TestPipeline
from apache_beam.testing.test_stream import TestStream
from apache_beam.transforms.window import TimestampedValue
from apache_beam.utils.timestamp import Timestamp

from alphastream.records import Bar, DeadLetter, PaneTiming
from pipeline.lake import arrow_schema, input_key
from pipeline.streaming_lake import WriteBarsToLakeStreaming, WriteDeadLettersToLakeStreaming, lake_file_name

T0 = 1_704_205_800_000_000  # 2024-01-02 14:30:00 UTC
SEC = 1_000_000
LAKE_WINDOW_SECONDS = 60


def read_table(path: str):
    with FileSystems.open(path) as handle:
        return pq.read_table(handle)


def test_bars_and_dead_letters_land_on_gcs_per_window_and_pane(gcs_emulator):
    root = f"gs://{gcs_emulator.new_bucket('lake')}/alphastream"
    on_time = Bar("AAPL", "10s", T0, 100.0, 101.0, 99.0, 100.5, 30.0, 100.2, 3, PaneTiming.ON_TIME.value, 0)
    late = on_time._replace(close=98.0, low=98.0, trades=4, timing=PaneTiming.LATE.value, pane_index=1)
    letter = DeadLetter("bad_price", "price=-1.0 must be > 0", '{"price": -1}', "projects/p/subscriptions/s",
                        T0 + 5 * SEC)
    window_end = T0 + LAKE_WINDOW_SECONDS * SEC
    bar_stream = (TestStream()
                  .advance_watermark_to(Timestamp(micros=T0))
                  .add_elements([TimestampedValue(on_time, Timestamp(micros=T0 + 10 * SEC - 1))])
                  .advance_watermark_to(Timestamp(micros=window_end + SEC))
                  .add_elements([TimestampedValue(late, Timestamp(micros=T0 + 10 * SEC - 1))])
                  .advance_watermark_to_infinity())
    letter_stream = (TestStream()
                     .advance_watermark_to(Timestamp(micros=T0))
                     .add_elements([TimestampedValue(letter, Timestamp(micros=letter.seen_at_us))])
                     .advance_watermark_to_infinity())
    # One TestStream per pipeline: the DirectRunner drives a single test clock.
    for stream, write in ((bar_stream, WriteBarsToLakeStreaming(root, allowed_lateness_seconds=120,
                                                                window_seconds=LAKE_WINDOW_SECONDS)),
                          (letter_stream, WriteDeadLettersToLakeStreaming(root, window_seconds=LAKE_WINDOW_SECONDS))):
        p = TestPipeline()
        p.options.view_as(StandardOptions).streaming = True
        _ = p | stream | write
        p.run().wait_until_finish()

    written = sorted(m.path for m in FileSystems.match([f"{root}/**"])[0].metadata_list)
    bars_dir = f"{root}/bars/interval=10s/date=2024-01-02"
    letters_dir = f"{root}/dead_letters/date=2024-01-02"
    assert written == sorted([
        f"{bars_dir}/{lake_file_name('bars-AAPL', T0, window_end, 0)}",
        f"{bars_dir}/{lake_file_name('bars-AAPL', T0, window_end, 1)}",
        f"{letters_dir}/{lake_file_name(f'dead_letters-{input_key(letter.origin)}', T0, window_end, 0)}",
    ]), "exactly the final files: no temporary file left behind"
    pane0 = read_table(f"{bars_dir}/{lake_file_name('bars-AAPL', T0, window_end, 0)}")
    assert pane0.schema.remove_metadata() == arrow_schema(Bar)
    assert [(r["close"], r["timing"]) for r in pane0.to_pylist()] == [(100.5, "ON_TIME")]
    pane1 = read_table(f"{bars_dir}/{lake_file_name('bars-AAPL', T0, window_end, 1)}")
    assert [(r["close"], r["trades"], r["timing"]) for r in pane1.to_pylist()] == [(98.0, 4, "LATE")]
    letters_file = lake_file_name(f"dead_letters-{input_key(letter.origin)}", T0, window_end, 0)
    letters = read_table(f"{letters_dir}/{letters_file}").to_pylist()
    assert [(r["reason"], r["raw"]) for r in letters] == [("bad_price", '{"price": -1}')]
