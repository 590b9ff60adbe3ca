"""The pipeline graph: read | parse | dedup | bars | outputs, the same in batch and streaming.

Batch keeps ticks columnar (Arrow tables) from the source to the bars, which is what makes
it fast; streaming keeps each message's ticks grouped per (symbol, second) through parse, dedup
and pre-aggregation, then into event-time windows. Both produce the same Bars for the same
ticks (tests/transforms/test_batch_bars.py) and hand them to one ``write_outputs``
(pipeline.outputs). Labels are stable: Dataflow uses them to match steps when a streaming job
is updated. ``1d`` bars follow each symbol's trading session (``session_map``).
"""
from __future__ import annotations

import datetime as dt
from typing import TYPE_CHECKING

import apache_beam as beam
import pyarrow as pa

from alphastream.records import Tick
from alphastream.sessions import SessionMap, parse_exchange_map
from alphastream.synthetic import MarketSpec
from pipeline.options import AlphastreamOptions, dedup_horizon_seconds
from pipeline.outputs import ComputedBars, GraphOutputs, write_outputs
from pipeline.runners import runs_on_flink
from pipeline.sources import ReadLiveSyntheticMarket, ReadSyntheticMarket, ReadTickFiles
from transforms.batch_bars import BatchBars
from transforms.beam_types import PColl
from transforms.parse import DEAD_LETTERS, TICKS, NowFn, ParseTicks
from transforms.tick_batches import DEDUP_BUCKET_US, BarsFromTickBatches, DedupTickBatches, Forget, ParseTickBatches
from transforms.tick_tables import ValidateTickTables, ticks_to_table
from transforms.validation import ValidationPolicy

if TYPE_CHECKING:
    from pipeline.postgres_sink import DatabaseUrl

RECORDS_PER_TABLE = 50_000


def build_graph(p: beam.Pipeline, opts: AlphastreamOptions, *, streaming: bool, now_us: NowFn, day: dt.date,
                db_url: DatabaseUrl | None) -> GraphOutputs:
    """Assemble the whole pipeline on ``p``; returns the bars and dead letters it writes."""
    built = streaming_bars(p, opts, now_us) if streaming else batch_bars(p, opts, now_us, day)
    return write_outputs(built, opts, streaming=streaming, now_us=now_us, db_url=db_url)


def batch_bars(p: beam.Pipeline, opts: AlphastreamOptions, now_us: NowFn, day: dt.date) -> ComputedBars:
    """Files or the synthetic market -> tick tables -> final bars."""
    tables, dead_letters = read_batch(p, opts, now_us, day)
    bars = tables | "Bars" >> BatchBars(opts.intervals, dedup_horizon_seconds(opts), sessions=session_map(opts))
    return ComputedBars(bars=bars, ticks=tables if opts.write_ticks else None, dead_letters=dead_letters)


def streaming_bars(p: beam.Pipeline, opts: AlphastreamOptions, now_us: NowFn) -> ComputedBars:
    """A bus or the live synthetic market -> parse -> dedup -> bars, pane by pane."""
    # Ticks stay grouped per message and (symbol, bucket) through dedup and pre-aggregation:
    # per-tick elements are what make the DirectRunner slow (transforms.tick_batches).
    payloads = read_stream(p, opts)
    parsed = payloads | "ParseTicks" >> ParseTickBatches(now_us, _default_source(opts), _policy(opts),
                                                         DEDUP_BUCKET_US)
    # On Flink a pending timer holds back the watermark of the bar windows after dedup.
    forget = Forget.SLOTS if runs_on_flink(opts) else Forget.TIMER
    unique = parsed[TICKS] | "DedupTrades" >> DedupTickBatches(DEDUP_BUCKET_US, dedup_horizon_seconds(opts), forget)
    bars = unique | "Bars" >> BarsFromTickBatches(opts.intervals, opts.allowed_lateness, opts.early_firing_seconds,
                                                  session_map(opts))
    # Tick records are ungrouped only when stored (the DirectRunner computes every branch,
    # used or not, and per-tick elements are what the grouping avoids).
    ticks = (unique | "UngroupTicks" >> beam.FlatMap(lambda group: group[1]).with_output_types(Tick)
             if opts.write_ticks else None)
    return ComputedBars(bars=bars, ticks=ticks, dead_letters=[parsed[DEAD_LETTERS]])


def session_map(opts: AlphastreamOptions) -> SessionMap:
    """The run's trading sessions per symbol (--exchange_map, --fill_session_hours): 1d bars follow them."""
    return SessionMap(parse_exchange_map(opts.exchange_map), opts.fill_session_hours)


def _policy(opts: AlphastreamOptions) -> ValidationPolicy:
    return ValidationPolicy(max_future_us=opts.max_future_seconds * 1_000_000)


def _default_source(opts: AlphastreamOptions) -> str:
    return {"files": "file", "pubsub": "pubsub", "kafka": "kafka"}.get(opts.source, opts.source)


def read_batch(p: beam.Pipeline, opts: AlphastreamOptions, now_us: NowFn,
               day: dt.date) -> tuple[PColl, list[PColl]]:
    """Batch sources -> (canonical tick tables, [dead-letter PCollections])."""
    if opts.source == "synthetic":
        spec = MarketSpec(day=day, symbols=opts.symbols, ticks_per_symbol=opts.ticks_per_symbol, seed=opts.seed,
                          duplicate_rate=opts.duplicate_rate, out_of_order_rate=opts.out_of_order_rate,
                          anomalies_per_symbol=opts.inject_anomalies)
        raw_tables = p | "ReadSyntheticMarket" >> ReadSyntheticMarket(spec)
        validated = raw_tables | "ValidateTickTables" >> ValidateTickTables(now_us, _default_source(opts),
                                                                           _policy(opts))
        return validated[TICKS], [validated[DEAD_LETTERS]]
    if opts.source == "files":
        return _read_files(p, opts, now_us)
    raise ValueError(f"--source {opts.source} is a streaming source: add --streaming")


def _read_files(p: beam.Pipeline, opts: AlphastreamOptions, now_us: NowFn) -> tuple[PColl, list[PColl]]:
    """Parquet as tables, CSV and JSON lines record by record, then packed into tables."""
    if not opts.input:
        raise ValueError("--source files needs --input PATH_OR_GLOB (local or gs://)")
    policy, default_source = _policy(opts), _default_source(opts)
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


def read_stream(p: beam.Pipeline, opts: AlphastreamOptions) -> PColl:
    """Streaming sources -> (origin, JSON payload) timestamped with event time."""
    if opts.source == "synthetic":
        return p | "ReadLiveSyntheticMarket" >> ReadLiveSyntheticMarket(
            opts.symbols, opts.rate, opts.seed, opts.max_duration)
    if opts.source in ("pubsub", "kafka"):
        from pipeline.streaming_sources import ReadTicksFromKafka, ReadTicksFromPubSub

        reader = (ReadTicksFromPubSub.from_options(opts) if opts.source == "pubsub"
                  else ReadTicksFromKafka.from_options(opts))
        return p | f"Read{opts.source.capitalize()}" >> reader
    raise ValueError(f"--source {opts.source} is not a streaming source (use it without --streaming)")
