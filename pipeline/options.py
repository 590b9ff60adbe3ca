"""Command-line flags of the pipeline, in Beam's style: one PipelineOptions subclass.

The same flags work on every runner (``--runner DataflowRunner`` included); Beam's own flags
(--runner, --streaming, --project, --region, --temp_location, --setup_file...) come with it.
"""
from __future__ import annotations

import argparse
import datetime as dt
import math
import re
from typing import Callable, TypeVar

from apache_beam.options.pipeline_options import PipelineOptions
from apache_beam.utils.secret import GcpSecret

from alphastream.errors import UserFacingError
from alphastream.intervals import DEFAULT_INTERVALS, interval_seconds, parse_intervals
from alphastream.sessions import HOURS, SessionMap, parse_exchange_map
from alphastream.settings import AlphastreamSettings
from alphastream.synthetic import INJECTION_SLOTS, LIVE_TICKS_PER_SECOND, MarketSpec, last_weekday_before
from pipeline.finalizer import BarFinalizer
from pipeline.streaming_lake import DEFAULT_WINDOW_SECONDS
from transforms.anomalies import DetectorParams
from transforms.batch_bars import check_intervals_nest
from transforms.gap_fill import DEFAULT_MAX_GAP_SECONDS, FillPolicy
from transforms.validation import DEFAULT_MAX_FUTURE_SECONDS

SOURCES = ("synthetic", "files", "pubsub", "kafka")
FILE_FORMATS = ("auto", "csv", "jsonl", "parquet")
DEFAULT_OUTPUT = "data/lake"


def _date(text: str) -> str:
    # Kept as text: option values must stay JSON-serialisable (Beam ships them to workers).
    try:
        dt.date.fromisoformat(text)
        return text
    except ValueError:
        raise argparse.ArgumentTypeError(f"bad date {text!r}: expected YYYY-MM-DD") from None


def _intervals(text: str) -> tuple[str, ...]:
    # Nesting is checked here, not where bars are built, so batch and streaming refuse alike.
    try:
        intervals = parse_intervals(text)
        check_intervals_nest(intervals)
        return intervals
    except ValueError as err:
        raise argparse.ArgumentTypeError(str(err)) from None


Number = TypeVar("Number", int, float)


def _number(text: str, kind: Callable[[str], Number], accept: Callable[[Number], bool], expected: str) -> Number:
    try:
        value = kind(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected {expected}, got {text!r}") from None
    if not accept(value):
        raise argparse.ArgumentTypeError(f"expected {expected}, got {text}")
    return value


def _positive_int(text: str) -> int:
    return _number(text, int, lambda v: v > 0, "a positive integer")


def _non_negative_int(text: str) -> int:
    return _number(text, int, lambda v: v >= 0, "an integer >= 0")


def _positive_float(text: str) -> float:
    return _number(text, float, lambda v: 0 < v < math.inf, "a positive number")


def _share(text: str) -> float:
    return _number(text, float, lambda v: 0 <= v <= 1, "a share between 0 and 1")


def _exchange_map(text: str) -> str:
    # Checked here, kept as text: option values must stay JSON-serialisable.
    try:
        parse_exchange_map(text)
        return text
    except ValueError as err:
        raise argparse.ArgumentTypeError(str(err)) from None


def _injected_anomalies(text: str) -> int:
    slots = len(INJECTION_SLOTS)
    return _number(text, int, lambda v: 0 <= v <= slots, f"an integer within [0, {slots}]")


class AlphastreamOptions(PipelineOptions):
    """alphastream's own flags (see also Beam's: --runner, --streaming, --project, ...)."""

    @classmethod
    def _add_argparse_args(cls, parser: argparse.ArgumentParser) -> None:
        _add_source_args(parser)
        _add_event_time_args(parser)
        _add_output_args(parser)
        _add_gap_fill_args(parser)
        _add_anomaly_args(parser)


def _add_source_args(parser: argparse.ArgumentParser) -> None:
    src = parser.add_argument_group("source")
    src.add_argument("--source", choices=SOURCES, default="synthetic",
                     help="Where ticks come from: a seeded synthetic market, historical "
                          "files (--input), Pub/Sub (--subscription or --topic) or Kafka (--kafka_topic).")
    src.add_argument("--input", default=None,
                     help="Files source: a path or glob, local or gs:// (e.g. 'gs://b/ticks/*.parquet'). "
                          "Tick format: see README 'Tick format'.")
    src.add_argument("--input_format", choices=FILE_FORMATS, default="auto",
                     help="Files source: format; 'auto' goes by extension (.csv, .jsonl/.json/.ndjson, .parquet).")
    src.add_argument("--symbols", type=_positive_int, default=MarketSpec.symbols,
                     help="Synthetic market: number of symbols.")
    src.add_argument("--ticks_per_symbol", type=_positive_int, default=MarketSpec.ticks_per_symbol,
                     help="Synthetic market (batch): trades per symbol over the session.")
    src.add_argument("--date", type=_date, default=None,
                     help="Synthetic market (batch): trading day YYYY-MM-DD "
                          "(default: the last weekday before today, UTC).")
    src.add_argument("--seed", type=int, default=MarketSpec.seed, help="Synthetic market: random seed.")
    src.add_argument("--duplicate_rate", type=_share, default=MarketSpec.duplicate_rate,
                     help="Synthetic market: share of trades delivered twice (exercises dedup).")
    src.add_argument("--out_of_order_rate", type=_share, default=MarketSpec.out_of_order_rate,
                     help="Synthetic market: share of trades delivered out of order.")
    src.add_argument("--inject_anomalies", type=_injected_anomalies, default=MarketSpec.anomalies_per_symbol,
                     help="Synthetic market (batch): labelled anomalies injected per symbol (a price jump, "
                          "a volume spike, a jump after missing minutes, a frozen price, in turn).")
    src.add_argument("--rate", type=_positive_float, default=LIVE_TICKS_PER_SECOND,
                     help="Synthetic market with --streaming: ticks per second.")
    src.add_argument("--subscription", default=None,
                     help="Pub/Sub source: projects/P/subscriptions/S (preferred: survives restarts).")
    src.add_argument("--topic", default=None,
                     help="Pub/Sub source: projects/P/topics/T (a temporary subscription is created).")
    src.add_argument("--kafka_bootstrap_servers", default=None, help="Kafka source: host:port[,host:port].")
    src.add_argument("--kafka_topic", default=None, help="Kafka source: topic of JSON ticks.")
    src.add_argument("--kafka_consumer_group", default=None,
                     help="Kafka source: consumer group; a restart with the same group resumes from its "
                          "committed offsets (default alphastream-<topic>).")
    src.add_argument("--expansion_service", default=None,
                     help="Kafka source: address (host:port) of a running Java expansion service for "
                          "ReadFromKafka; default lets Beam start one from the Maven jar (needs Java and "
                          "network access to Maven Central).")


def _add_event_time_args(parser: argparse.ArgumentParser) -> None:
    rules = parser.add_argument_group("event time and validation")
    rules.add_argument("--intervals", type=_intervals, default=DEFAULT_INTERVALS,
                       help="Bar intervals, comma-separated, each dividing the largest.")
    rules.add_argument("--allowed_lateness", type=_non_negative_int, default=300,
                       help="Streaming: seconds after a window closes that late ticks still update its bar.")
    rules.add_argument("--early_firing_seconds", type=_non_negative_int, default=5,
                       help="Streaming: processing-time seconds between live partial bars (0: none).")
    rules.add_argument("--max_future_seconds", type=_non_negative_int, default=DEFAULT_MAX_FUTURE_SECONDS,
                       help="Ticks more than this many seconds ahead of the clock are dead-lettered.")
    rules.add_argument("--dedup_horizon_seconds", type=_non_negative_int, default=None,
                       help="Event-time seconds within which deliveries of one trade are matched: batch "
                            "across day groups (groups span at least this), streaming how long a trade is "
                            "remembered (default: allowed lateness + the largest interval).")


def _add_output_args(parser: argparse.ArgumentParser) -> None:
    out = parser.add_argument_group("outputs")
    out.add_argument("--output", default=DEFAULT_OUTPUT,
                     help="Parquet lake root, local path or gs://bucket/prefix "
                          "(bars/interval=I/date=D/, dead_letters/date=D/).")
    out.add_argument("--db_url", default=None,
                     help="PostgreSQL DSN for bars and dead letters (default: $ALPHASTREAM_DB_URL; "
                          "on the DirectRunner, if unset, the embedded local database is started).")
    out.add_argument("--db_url_secret", default=None,
                     help="Instead of --db_url, for remote runners: the Secret Manager secret version "
                          "holding the DSN (projects/P/secrets/S/versions/latest). Each worker reads it when "
                          "its sink starts, so the DSN is in neither the job's options nor its graph.")
    out.add_argument("--no_db", action="store_true", help="Write the Parquet lake only.")
    out.add_argument("--lake_window_seconds", type=_positive_int, default=DEFAULT_WINDOW_SECONDS,
                     help="Streaming: event-time seconds of bars per Parquet file (one file per "
                          "partition, window and pane).")
    out.add_argument("--write_ticks", action="store_true",
                     help="Also store deduplicated raw ticks in the database's ticks table.")
    out.add_argument("--wait", action="store_true",
                     help="Remote runners (Dataflow): after submitting, wait until the job ends and exit "
                          "non-zero if it did not end well; Ctrl-C stops the waiting, never the job. "
                          "Default: return once the job is submitted.")
    out.add_argument("--max_duration", type=_positive_float, default=None,
                     help="Streaming: stop cleanly after this many seconds (default: until Ctrl-C).")
    out.add_argument("--archive", default=None, metavar="PATH",
                     help="Streaming: the tick archive that `python -m ingestion --archive PATH` writes. "
                          "With it, bars become final from the archive once their window (plus the allowed "
                          "lateness) has closed, including whatever a crash, stop or database outage left "
                          "short (see `python -m pipeline repair --help`).")
    out.add_argument("--metrics_port", type=int, default=None,
                     help="Local streaming runs: serve the pipeline's Beam metrics (ticks parsed, dead "
                          "letters by reason, duplicates, bars written by pane timing, write lag) for "
                          "Prometheus on this port (0: any free port). On Dataflow they are the job's "
                          "custom metrics.")
    out.add_argument("--metrics_host", default="127.0.0.1",
                     help="Interface for --metrics_port (default: loopback only).")
    out.add_argument("--finalize_every_seconds", type=_positive_float, default=BarFinalizer.every_seconds,
                     help="Streaming with --archive: seconds between passes that finalise closed windows.")


def _add_gap_fill_args(parser: argparse.ArgumentParser) -> None:
    gaps = parser.add_argument_group("gap filling")
    gaps.add_argument("--fill_gaps", action=argparse.BooleanOptionalAction, default=None,
                      help="Emit a carry-forward bar (OHLC = previous close, volume 0, trades 0) for every "
                           "empty bucket after a symbol's first trade, within its trading session "
                           "(default: on with --streaming, off in batch; --no-fill_gaps turns it off).")
    gaps.add_argument("--fill_gaps_max_seconds", type=_positive_int, default=DEFAULT_MAX_GAP_SECONDS,
                      help="Gap filling: stop filling a symbol once a bucket starts more than this many "
                           "seconds after the last bucket it traded in.")
    gaps.add_argument("--exchange_map", type=_exchange_map, default="",
                      help="Trading calendars per symbol, SYMBOL=CALENDAR comma-separated (exchange_calendars "
                           "names, e.g. 'SHEL=XLON,ETH-USD=24/7'). Default: pairs such as BTC-USD or XBT/USD "
                           "trade 24/7, other symbols on XNYS. 1d bars follow these sessions; gap filling fills "
                           "only buckets in session.")
    gaps.add_argument("--fill_session_hours", choices=HOURS, default=SessionMap.hours,
                      help="Which hours are in session, for 1d bars and gap filling: the calendar's regular "
                           "sessions, or extended (04:00 exchange time to 4 hours after the regular close).")


def _add_anomaly_args(parser: argparse.ArgumentParser) -> None:
    found = parser.add_argument_group("anomaly detection")
    found.add_argument("--detect_anomalies", action="store_true",
                       help="Detect anomalies in the shortest interval's bars (return outliers, volume spikes, "
                            "jumps across gaps, stale prices) into the anomalies table and the lake; "
                            "streaming judges each on-time bar when the watermark passes it.")
    found.add_argument("--anomaly_window", type=_positive_int, default=DetectorParams.window,
                       help="Anomalies: bars of rolling history the median and MAD are taken over.")
    found.add_argument("--anomaly_return_z", type=_positive_float, default=DetectorParams.return_z,
                       help="Anomalies: robust z-score (vs the rolling median/MAD of 1-bar log returns) "
                            "that makes a return outlier or a jump across a gap.")
    found.add_argument("--anomaly_volume_ratio", type=_positive_float, default=DetectorParams.volume_ratio,
                       help="Anomalies: volume / rolling median volume that makes a volume spike.")
    found.add_argument("--anomaly_stale_bars", type=_positive_int, default=DetectorParams.stale_bars,
                       help="Anomalies: consecutive bars with trades and an unchanged close that make a stale price.")


STREAMING_SOURCES = ("pubsub", "kafka")
BATCH_SOURCES = ("files",)


def check_source_flags(options: AlphastreamOptions, streaming: bool) -> None:
    """Refuse --source combinations the graph cannot build, before anything starts."""
    if options.source == "files" and not options.input:
        raise UserFacingError("--source files needs --input PATH_OR_GLOB (local or gs://, e.g. 'ticks/*.csv')")
    if streaming and options.source in BATCH_SOURCES:
        raise UserFacingError(f"--source {options.source} is batch only: drop --streaming "
                              "(stream ticks through --source pubsub or kafka)")
    if not streaming and options.source in STREAMING_SOURCES:
        raise UserFacingError(f"--source {options.source} is a streaming source: add --streaming")


def resolved_date(options: AlphastreamOptions, today: dt.date) -> dt.date:
    return dt.date.fromisoformat(options.date) if options.date else last_weekday_before(today)


def resolved_db_url(options: AlphastreamOptions, settings: AlphastreamSettings) -> str | None:
    """The DSN to write to, or None for the embedded local database (or --no_db)."""
    if options.no_db:
        return None
    return options.db_url or settings.db_url


SECRET_VERSION_PATTERN = re.compile(r"^projects/[^/]+/secrets/[^/]+/versions/[^/]+$")


def db_url_secret(options: AlphastreamOptions) -> GcpSecret | None:
    """--db_url_secret as a Beam secret (read where it is used), or None; refuses a malformed
    name or both --db_url and --db_url_secret."""
    name = options.db_url_secret
    if name is None or options.no_db:
        return None
    if options.db_url:
        raise ValueError("pass --db_url or --db_url_secret, not both")
    if not SECRET_VERSION_PATTERN.match(name):
        raise ValueError(f"--db_url_secret {name!r} is not a secret version name: "
                         "projects/PROJECT/secrets/SECRET/versions/VERSION (VERSION may be latest)")
    return GcpSecret(name)


def dedup_horizon_seconds(options: AlphastreamOptions) -> int:
    chosen: int | None = options.dedup_horizon_seconds
    if chosen is not None:
        return chosen
    lateness: int = options.allowed_lateness
    return lateness + max(interval_seconds(i) for i in options.intervals)


def anomaly_params(options: AlphastreamOptions) -> DetectorParams:
    """The detectors' window and thresholds from the flags (history needed: at most the window)."""
    return DetectorParams(window=options.anomaly_window,
                          min_history=min(DetectorParams.min_history, options.anomaly_window),
                          return_z=options.anomaly_return_z, volume_ratio=options.anomaly_volume_ratio,
                          stale_bars=options.anomaly_stale_bars)


def fill_policy(options: AlphastreamOptions, streaming: bool) -> FillPolicy | None:
    """What --fill_gaps asks for: on by default for live runs (streaming from a bus), off for
    batch and for the bounded local synthetic stream (whose final watermark jump to the end of
    time would otherwise fill every series up to --fill_gaps_max_seconds)."""
    live = streaming and options.source in STREAMING_SOURCES
    enabled = live if options.fill_gaps is None else options.fill_gaps
    if not enabled:
        return None
    sessions = SessionMap(parse_exchange_map(options.exchange_map), options.fill_session_hours)
    return FillPolicy(options.fill_gaps_max_seconds, sessions)
