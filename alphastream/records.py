"""The project's records: the one place that names a field.

Tick, Bar, DeadLetter and Anomaly are typed ``NamedTuple``s. Beam infers a schema (and uses
``RowCoder``) from them; ``transforms.schemas`` registers the coders. The SQL migrations, the
API's pydantic models and the Parquet writer follow the field lists below, and
``tests/alphastream/test_records_agree.py`` checks that they do.

This module imports nothing from Beam, so the API (which never imports Beam) can use it too.
Times are integers: microseconds since the Unix epoch, UTC. Integers make equality exact,
which the batch-vs-streaming and pandas comparisons rely on.

No ``from __future__ import annotations`` here: Beam reads the field annotations to infer the
schemas, and strings would make every field Python's catch-all type, which a Java runner cannot
decode (tests/transforms/test_schemas.py).
"""
import enum
from typing import NamedTuple

import pyarrow as pa


class Tick(NamedTuple):
    """One trade print, normalised from any feed."""

    symbol: str  # upper-case ticker or pair, e.g. "AAPL", "BTC-USD"
    ts_us: int  # event time of the trade, epoch microseconds UTC
    price: float  # > 0, finite
    size: float  # >= 0, finite (shares, contracts or coins)
    trade_id: str  # the feed's trade id; (source, symbol, trade_id) identifies a trade
    source: str  # the feed that reported it, e.g. "synthetic", "coinbase"


class PaneTiming(str, enum.Enum):
    """When a bar was emitted relative to the watermark (Beam's PaneInfoTiming)."""

    EARLY = "EARLY"  # live partial bar, window still open
    ON_TIME = "ON_TIME"  # the watermark passed the window end (batch bars are final: ON_TIME)
    LATE = "LATE"  # a late tick updated a bar already emitted on time


class Bar(NamedTuple):
    """OHLCV bar of one symbol over one interval bucket [bucket_start_us, + interval)."""

    symbol: str
    interval: str  # canonical interval name, e.g. "1m", "5m", "1h" (see alphastream.intervals)
    bucket_start_us: int  # start of the bucket, epoch microseconds UTC, aligned to the interval
    open: float  # price of the earliest trade by (ts_us, trade_id)
    high: float
    low: float
    close: float  # price of the latest trade by (ts_us, trade_id)
    volume: float  # sum of sizes
    vwap: float  # sum(price * size) / volume; the mean price when volume == 0
    trades: int  # number of distinct trades
    timing: str  # a PaneTiming value
    pane_index: int  # 0, 1, 2... in firing order for this bar; the sink never lets a lower one win


class DeadLetterReason(str, enum.Enum):
    """Machine-readable reasons a record was rejected. Values are stable: stored and queried."""

    BAD_JSON = "bad_json"  # not UTF-8, not a JSON object, holds a lone surrogate, or a CSV row not matching its header
    MISSING_FIELD = "missing_field"  # a required tick field is absent or empty
    BAD_PRICE = "bad_price"  # price not a number, or outside [1e-9, 1e12] (transforms.validation)
    BAD_SIZE = "bad_size"  # size not a number, or neither 0 nor within [1e-12, 1e15]
    BAD_TIMESTAMP = "bad_timestamp"  # timestamp unreadable or before 1990
    FUTURE_TIMESTAMP = "future_timestamp"  # timestamp too far ahead of the clock
    BAD_SYMBOL = "bad_symbol"  # symbol does not match SYMBOL_PATTERN
    SINK_FAILED = "sink_failed"  # a sink gave up on a batch after its retries


class DeadLetter(NamedTuple):
    """A record the pipeline could not use, kept with the reason so nothing is silently lost."""

    reason: str  # a DeadLetterReason value
    detail: str  # human-readable explanation: which field, what value, what was expected
    raw: str  # the original payload, as text (JSON for records that were not raw text)
    origin: str  # where it came from: file path, subscription, "synthetic", sink name
    seen_at_us: int  # event time if known, else the time it was read; epoch microseconds


class AnomalyKind(str, enum.Enum):
    """What a detection found in a symbol's bars (transforms.anomalies). Values are stable: stored and queried."""

    RETURN_OUTLIER = "return_outlier"  # a 1-bar log return far from the rolling median (robust z-score)
    VOLUME_SPIKE = "volume_spike"  # volume many times the rolling median volume
    GAP_JUMP = "gap_jump"  # the first bar after missing buckets moved far more than the gap's length explains
    STALE_PRICE = "stale_price"  # the close has not changed for N consecutive bars that had trades


class Anomaly(NamedTuple):
    """One detection on one bar; (symbol, interval, bucket_start_us, kind) identifies it."""

    symbol: str
    interval: str  # the bars it was found in (the shortest interval of the run, "1m" by default)
    bucket_start_us: int  # the bar the detection fired on
    kind: str  # an AnomalyKind value
    score: float  # the statistic compared with the threshold (robust z, volume ratio, run length)
    threshold: float  # the score's limit the detection passed (|score| >= threshold)
    details: str  # JSON object with the inputs of the score (e.g. log_return, median, scale, window)


# Symbols: letters and digits with . - / _ = ^ separators (BRK.B, BTC-USD, XBT/USD, ^GSPC, EURUSD=X).
SYMBOL_PATTERN = r"^[A-Z0-9^][A-Z0-9.\-/_=^]{0,31}$"

TICK_FIELDS: tuple[str, ...] = Tick._fields

# A Tick as an Arrow table's columns (same names, same order): file reads, the synthetic market
# and the tick archive all build tables of this schema.
TICK_ARROW_SCHEMA = pa.schema(
    [
        ("symbol", pa.string()),
        ("ts_us", pa.int64()),
        ("price", pa.float64()),
        ("size", pa.float64()),
        ("trade_id", pa.string()),
        ("source", pa.string()),
    ]
)
assert tuple(TICK_ARROW_SCHEMA.names) == TICK_FIELDS, "TICK_ARROW_SCHEMA must follow Tick"

# The namespace of every Beam counter the pipeline reports (the run summary and Dataflow's custom
# metrics read them by it).
METRICS_NAMESPACE = "alphastream"
BAR_FIELDS: tuple[str, ...] = Bar._fields
DEAD_LETTER_FIELDS: tuple[str, ...] = DeadLetter._fields
ANOMALY_FIELDS: tuple[str, ...] = Anomaly._fields

MICROS_PER_SECOND = 1_000_000

# Storage convention (SQL columns, Parquet columns, API fields): a field ending in "_us" is an
# epoch-microsecond time; storage keeps it as a real timestamp (timestamptz / timestamp[us, UTC])
# under the name without the suffix: bucket_start_us -> bucket_start, ts_us -> ts.
TIME_SUFFIX = "_us"


def storage_name(field: str) -> str:
    """Column name of a record field in SQL, Parquet and the API."""
    return field[: -len(TIME_SUFFIX)] if field.endswith(TIME_SUFFIX) else field


def storage_columns(fields: tuple[str, ...]) -> tuple[str, ...]:
    return tuple(storage_name(f) for f in fields)
