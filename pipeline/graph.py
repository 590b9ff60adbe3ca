"""The pipeline graph: read | parse | dedup | bars | sinks, the same in batch and streaming.

Batch keeps ticks columnar (Arrow tables) from the source to the bars, which is what makes
it fast; streaming keeps each message's ticks grouped per (symbol, second) through parse, dedup
and pre-aggregation, then into event-time windows. Both produce the same Bars for the same
ticks (tests/transforms/test_batch_bars.py). Labels are stable: Dataflow
uses them to match steps when a streaming job is updated.
"""
from __future__ import annotations

import datetime as dt
import functools
from dataclasses import dataclass
from typing import TYPE_CHECKING, Callable

import apache_beam as beam
import pyarrow as pa
from apache_beam.pvalue import PCollection

from alphastream.records import Tick
from alphastream.synthetic import MarketSpec
from pipeline.anomaly_lake import write_anomalies_to_lake
from pipeline.lake import WriteBarsToLake, WriteDeadLettersToLake
from pipeline.options import AlphastreamOptions, anomaly_params, dedup_horizon_seconds, fill_policy
from pipeline.sources import ReadLiveSyntheticMarket, ReadSyntheticMarket, ReadTickFiles
from transforms.anomalies import DetectAnomalies
from transforms.batch_bars import BatchBars, coarse_bucket_micros
from transforms.gap_fill import FillGaps
from transforms.parse import DEAD_LETTERS, TICKS, ParseTicks
from transforms.tick_batches import DEDUP_BUCKET_US, BarsFromTickBatches, DedupTickBatches, ParseTickBatches
from transforms.tick_tables import ValidateTickTables, ticks_to_table
from transforms.validation import ValidationPolicy

if TYPE_CHECKING:  # the sinks (and psycopg) are imported only when a database is written
    from pipeline.postgres_sink import DatabaseUrl

NowFn = Callable[[], int]
RECORDS_PER_TABLE = 50_000
DEAD_LETTER_LATENESS_SECONDS = 86_400


@dataclass
class GraphOutputs:
    bars: PCollection
    dead_letters: PCollection


def _policy(opts: AlphastreamOptions) -> ValidationPolicy:
    return ValidationPolicy(max_future_us=opts.max_future_seconds * 1_000_000)


def _default_source(opts: AlphastreamOptions) -> str:
    return {"files": "file", "pubsub": "pubsub", "kafka": "kafka"}.get(opts.source, opts.source)


def read_batch(p, opts: AlphastreamOptions, now_us: NowFn, day: dt.date) -> tuple[PCollection, list[PCollection]]:
    """Batch sources -> (canonical tick tables, [dead-letter PCollections])."""
    policy, default_source = _policy(opts), _default_source(opts)
    if opts.source == "synthetic":
        spec = MarketSpec(day=day, symbols=opts.symbols, ticks_per_symbol=opts.ticks_per_symbol, seed=opts.seed,
                          duplicate_rate=opts.duplicate_rate, out_of_order_rate=opts.out_of_order_rate,
                          anomalies_per_symbol=opts.inject_anomalies)
        raw_tables = p | "ReadSyntheticMarket" >> ReadSyntheticMarket(spec)
        validated = raw_tables | "ValidateTickTables" >> ValidateTickTables(now_us, default_source, policy)
        return validated[TICKS], [validated[DEAD_LETTERS]]
    if opts.source == "files":
        if not opts.input:
            raise ValueError("--source files needs --input PATH_OR_GLOB (local or gs://)")
        files = p | "ReadTickFiles" >> ReadTickFiles(opts.input, opts.input_format)
        table_parts, dead_letters = [], []
        if "tables" in files:
            validated = files["tables"] | "ValidateTickTables" >> ValidateTickTables(now_us, default_source, policy)
            table_parts.append(validated[TICKS])
            dead_letters.append(validated[DEAD_LETTERS])
        if "records" in files:
            parsed = files["records"] | "ParseTicks" >> ParseTicks(now_us, default_source, policy)
            table_parts.append(
                parsed[TICKS]
                | "BatchTicks" >> beam.BatchElements(min_batch_size=1_000, max_batch_size=RECORDS_PER_TABLE)
                | "TicksToTables" >> beam.Map(ticks_to_table).with_output_types(pa.Table))
            dead_letters.append(parsed[DEAD_LETTERS])
        # Only Flatten when both kinds are present: a multi-input Flatten is a materialised
        # stage boundary on the portable runners (every tick table copied through it).
        tables = table_parts[0] if len(table_parts) == 1 else table_parts | "FlattenTickTables" >> beam.Flatten()
        return tables, dead_letters
    raise ValueError(f"--source {opts.source} is a streaming source: add --streaming")


def read_stream(p, opts: AlphastreamOptions) -> PCollection:
    """Streaming sources -> (origin, JSON payload) timestamped with event time."""
    if opts.source == "synthetic":
        return p | "ReadLiveSyntheticMarket" >> ReadLiveSyntheticMarket(
            opts.symbols, opts.rate, opts.seed, opts.max_duration)
    if opts.source in ("pubsub", "kafka"):
        from pipeline.streaming_sources import ReadTicksFromKafka, ReadTicksFromPubSub

        reader = ReadTicksFromPubSub.from_options(opts) if opts.source == "pubsub" else ReadTicksFromKafka.from_options(opts)
        return p | f"Read{opts.source.capitalize()}" >> reader
    raise ValueError(f"--source {opts.source} is not a streaming source (use it without --streaming)")


def build_graph(p, opts: AlphastreamOptions, *, streaming: bool, now_us: NowFn, day: dt.date,
                db_url: DatabaseUrl | None) -> GraphOutputs:
    """Assemble the whole pipeline on ``p``; returns the bars and dead letters it writes."""
    if streaming:
        # Ticks stay grouped per message and (symbol, bucket) through dedup and pre-aggregation:
        # per-tick elements cap the DirectRunner near 1,500 ticks/s (transforms.tick_batches).
        payloads = read_stream(p, opts)
        parsed = payloads | "ParseTicks" >> ParseTickBatches(now_us, _default_source(opts), _policy(opts),
                                                             DEDUP_BUCKET_US)
        unique = parsed[TICKS] | "DedupTrades" >> DedupTickBatches(DEDUP_BUCKET_US, dedup_horizon_seconds(opts))
        bars = unique | "Bars" >> BarsFromTickBatches(opts.intervals, opts.allowed_lateness, opts.early_firing_seconds)
        dead_sources = [parsed[DEAD_LETTERS]]
        # Tick records, deduplicated; ungrouped only when stored (the DirectRunner computes
        # every branch, used or not, and per-tick elements are what the grouping avoids).
        ticks = (unique | "UngroupTicks" >> beam.FlatMap(lambda group: group[1]).with_output_types(Tick)
                 if opts.write_ticks else None)
    else:
        tables, dead_sources = read_batch(p, opts, now_us, day)
        bars = tables | "Bars" >> BatchBars(opts.intervals, dedup_horizon_seconds(opts))
        ticks = tables  # Arrow tables; the ticks table's unique key drops repeated trades
    fill = fill_policy(opts, streaming)
    if fill is not None:
        bars = bars | "FillGaps" >> FillGaps(fill, streaming=streaming, group_us=coarse_bucket_micros(opts.intervals))

    if opts.detect_anomalies:
        # The shortest interval's bars; streaming judges each on-time bar as the watermark passes it.
        anomalies = bars | "DetectAnomalies" >> DetectAnomalies(opts.intervals[0], anomaly_params(opts),
                                                                 streaming=streaming)
        _ = anomalies | "WriteAnomaliesToLake" >> write_anomalies_to_lake(
            opts.output, streaming=streaming, window_seconds=opts.lake_window_seconds,
            allowed_lateness_seconds=opts.allowed_lateness)
        if db_url:
            from pipeline.postgres_sink import WriteAnomaliesToPostgres

            dead_sources.append(anomalies | "WriteAnomaliesToPostgres" >> WriteAnomaliesToPostgres(db_url))

    if db_url:
        from pipeline.postgres_sink import WriteBarsToPostgres, WriteTicksToPostgres

        # Batch bars are final; streaming panes carry this run's epoch, so after a restart the
        # new run's panes replace the old run's (store.revisions).
        dead_sources.append(bars | "WriteBarsToPostgres" >> WriteBarsToPostgres(
            db_url, final=not streaming, run_epoch_seconds=now_us() // 1_000_000))
        if opts.write_ticks:
            dead_sources.append(ticks | "WriteTicksToPostgres" >> WriteTicksToPostgres(db_url))
    dead_letters = dead_sources | "FlattenDeadLetters" >> beam.Flatten()

    if not streaming:
        _ = bars | "WriteBarsToLake" >> WriteBarsToLake(opts.output)
        dead_letters_to_lake = functools.partial(WriteDeadLettersToLake, opts.output)
    else:
        from pipeline.streaming_lake import WriteBarsToLakeStreaming, WriteDeadLettersToLakeStreaming

        _ = bars | "WriteBarsToLake" >> WriteBarsToLakeStreaming(
            opts.output, allowed_lateness_seconds=opts.allowed_lateness, window_seconds=opts.lake_window_seconds)
        # A dead letter must never be dropped as late (a sink's failures come out after its
        # retries, when the watermark may have moved on): a late one lands in a later pane's file.
        dead_letters_to_lake = functools.partial(
            WriteDeadLettersToLakeStreaming, opts.output,
            allowed_lateness_seconds=max(opts.allowed_lateness, DEAD_LETTER_LATENESS_SECONDS),
            window_seconds=opts.lake_window_seconds)
    _ = dead_letters | "WriteDeadLettersToLake" >> dead_letters_to_lake()
    if db_url:
        from pipeline.postgres_sink import WriteDeadLettersToPostgres

        # Dead letters the table refuses cannot join the flatten above (that would be a
        # cycle), so they reach the lake through a write of their own.
        unstored = dead_letters | "WriteDeadLettersToPostgres" >> WriteDeadLettersToPostgres(db_url)
        _ = unstored | "WriteUnstoredDeadLettersToLake" >> dead_letters_to_lake()
    return GraphOutputs(bars=bars, dead_letters=dead_letters)
