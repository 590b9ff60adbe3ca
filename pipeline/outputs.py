"""Everything after the bars, the same for batch and streaming: gap fill, anomalies, the database
sinks, the Parquet lake and the dead letters.

The run kind changes how each output is written (final vs. pane-by-pane bars, windowed lake
files in streaming), not which outputs there are. Labels are stable: Dataflow uses them to
match steps when a streaming job is updated.
"""
from __future__ import annotations

import functools
from dataclasses import dataclass
from typing import TYPE_CHECKING, Callable

import apache_beam as beam

from pipeline.anomaly_lake import write_anomalies_to_lake
from pipeline.lake import WriteBarsToLake, WriteDeadLettersToLake
from pipeline.options import AlphastreamOptions, anomaly_params, fill_policy
from transforms.anomalies import DetectAnomalies
from transforms.batch_bars import coarse_bucket_micros
from transforms.beam_types import PColl, Transform
from transforms.gap_fill import FillGaps
from transforms.parse import NowFn

if TYPE_CHECKING:  # the sinks (and psycopg) are imported only when a database is written
    from pipeline.postgres_sink import DatabaseUrl

# A dead letter must never be dropped as late (a sink's failures come out after its retries,
# when the watermark may have moved on): the streaming lake takes them at least this late.
DEAD_LETTER_LATENESS_SECONDS = 86_400


@dataclass
class ComputedBars:
    """What a graph builder hands to write_outputs: the bars, the ticks to store, the dead letters so far."""

    bars: PColl
    # The deduplicated ticks --write_ticks stores (Arrow tables in batch, where the ticks table's
    # unique key drops repeated trades; Tick records in streaming), None when not stored.
    ticks: PColl | None
    dead_letters: list[PColl]


@dataclass
class GraphOutputs:
    bars: PColl
    dead_letters: PColl


@dataclass
class _LakeWriters:
    bars: Callable[[], Transform]
    dead_letters: Callable[[], Transform]


def write_outputs(built: ComputedBars, opts: AlphastreamOptions, *, streaming: bool, now_us: NowFn,
                  db_url: DatabaseUrl | None) -> GraphOutputs:
    """Gap fill, anomalies, database and lake sinks; every failure ends up a dead letter."""
    bars = _fill_gaps(built.bars, opts, streaming)
    anomalies = _detect_anomalies(bars, opts, streaming) if opts.detect_anomalies else None
    # Streaming sinks write the rows they cannot store to the lake themselves before handing them
    # on (pipeline.dead_letter_spool), so no failure waits in memory for a lake window to fire.
    spool_root = opts.output if streaming else None
    failures = (_write_to_database(db_url, bars, built.ticks, anomalies, streaming, now_us, spool_root)
                if db_url else [])
    dead_letters = (built.dead_letters + failures) | "FlattenDeadLetters" >> beam.Flatten()
    lake = _lake_writers(opts, streaming)
    _ = bars | "WriteBarsToLake" >> lake.bars()
    _ = dead_letters | "WriteDeadLettersToLake" >> lake.dead_letters()
    if db_url:
        from pipeline.postgres_sink import WriteDeadLettersToPostgres

        # Dead letters the table refuses cannot join the flatten above (that would be a
        # cycle), so they reach the lake through a write of their own.
        unstored = dead_letters | "WriteDeadLettersToPostgres" >> WriteDeadLettersToPostgres(
            db_url, spool_root=spool_root)
        _ = unstored | "WriteUnstoredDeadLettersToLake" >> lake.dead_letters()
    return GraphOutputs(bars=bars, dead_letters=dead_letters)


def _fill_gaps(bars: PColl, opts: AlphastreamOptions, streaming: bool) -> PColl:
    fill = fill_policy(opts, streaming)
    if fill is None:
        return bars
    return bars | "FillGaps" >> FillGaps(fill, streaming=streaming, group_us=coarse_bucket_micros(opts.intervals))


def _detect_anomalies(bars: PColl, opts: AlphastreamOptions, streaming: bool) -> PColl:
    """The shortest interval's anomalies, written to the lake; streaming judges each on-time bar
    as the watermark passes it."""
    anomalies = bars | "DetectAnomalies" >> DetectAnomalies(opts.intervals[0], anomaly_params(opts),
                                                             streaming=streaming)
    _ = anomalies | "WriteAnomaliesToLake" >> write_anomalies_to_lake(
        opts.output, streaming=streaming, window_seconds=opts.lake_window_seconds,
        allowed_lateness_seconds=opts.allowed_lateness)
    return anomalies


def _write_to_database(db_url: DatabaseUrl, bars: PColl, ticks: PColl | None, anomalies: PColl | None,
                       streaming: bool, now_us: NowFn, spool_root: str | None) -> list[PColl]:
    """Anomalies, bars and ticks to PostgreSQL; returns the sinks' failures as dead letters."""
    from pipeline.postgres_sink import WriteAnomaliesToPostgres, WriteBarsToPostgres, WriteTicksToPostgres

    failures = []
    if anomalies is not None:
        failures.append(anomalies | "WriteAnomaliesToPostgres" >> WriteAnomaliesToPostgres(
            db_url, spool_root=spool_root))
    # Batch bars are final; streaming panes carry this run's epoch, so after a restart the
    # new run's panes replace the old run's (store.revisions).
    failures.append(bars | "WriteBarsToPostgres" >> WriteBarsToPostgres(
        db_url, final=not streaming, run_epoch_seconds=now_us() // 1_000_000, spool_root=spool_root))
    if ticks is not None:
        failures.append(ticks | "WriteTicksToPostgres" >> WriteTicksToPostgres(db_url, spool_root=spool_root))
    return failures


def _lake_writers(opts: AlphastreamOptions, streaming: bool) -> _LakeWriters:
    if not streaming:
        return _LakeWriters(bars=functools.partial(WriteBarsToLake, opts.output),
                            dead_letters=functools.partial(WriteDeadLettersToLake, opts.output))
    from pipeline.streaming_lake import WriteBarsToLakeStreaming, WriteDeadLettersToLakeStreaming

    return _LakeWriters(
        bars=functools.partial(WriteBarsToLakeStreaming, opts.output, allowed_lateness_seconds=opts.allowed_lateness,
                               window_seconds=opts.lake_window_seconds),
        dead_letters=functools.partial(
            WriteDeadLettersToLakeStreaming, opts.output,
            allowed_lateness_seconds=max(opts.allowed_lateness, DEAD_LETTER_LATENESS_SECONDS),
            window_seconds=opts.lake_window_seconds, sinks_spool=True))
