"""Columnar ticks: validate Arrow tables of ticks in bulk, pack Ticks into tables, and encode
tables for Beam.

The batch path moves ticks as Arrow tables (from Parquet or the synthetic market) because
per-element Beam costs far more than a vectorised pass. Validation here is a fast
pre-filter only: every row it rejects is handed to transforms.validation, which decides (and
names the reason), so the per-record and columnar paths cannot disagree on what is valid.

Every PCollection of tables is typed ``pa.Table`` so Beam uses ArrowTableCoder (registered
below) instead of pickling: see its docstring for why that matters even where nothing is
shuffled.
"""
# Beam's functions carry no annotations; calling them is the point of this module.
from __future__ import annotations

from typing import Any, Callable, Iterable, Sequence

import apache_beam as beam
import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
from apache_beam.coders.typecoders import registry
from apache_beam.metrics.metric import Metrics
from apache_beam.pvalue import TaggedOutput

from alphastream.records import METRICS_NAMESPACE, SYMBOL_PATTERN, TICK_ARROW_SCHEMA, DeadLetter, Tick
from transforms.beam_types import PColl, TaggedTransform
from transforms.parse import DEAD_LETTERS, TICKS, NowFn, TypeDeadLetters, validate_fields
from transforms.validation import (
    ASCII_WHITESPACE,
    MAX_PRICE,
    MAX_SIZE,
    MIN_PRICE,
    MIN_SIZE,
    ValidationPolicy,
    canonical_source,
)

IPC_OPTIONS = pa.ipc.IpcWriteOptions(compression="lz4")
# Columns a tick row is read from; others are not carried into the per-record fallback.
INPUT_COLUMNS = ("symbol", "ts_us", "ts", "price", "size", "trade_id", "source")
# datetime's range (years 1 to 9999) in epoch microseconds: the per-record fallback turns
# timestamps into datetimes, which cannot hold anything outside it.
DATETIME_MIN_US, DATETIME_MAX_US = -62_135_596_800_000_000, 253_402_300_799_999_999
_MICROS_PER_UNIT = {"s": 1_000_000, "ms": 1_000, "us": 1}


def table_to_ipc(table: pa.Table) -> bytes:
    """A table as LZ4-compressed Arrow IPC stream bytes."""
    sink = pa.BufferOutputStream()
    with pa.ipc.new_stream(sink, table.schema, options=IPC_OPTIONS) as writer:
        writer.write_table(table)
    data: bytes = sink.getvalue().to_pybytes()
    return data


def ipc_to_table(data: bytes) -> pa.Table:
    return pa.ipc.open_stream(pa.py_buffer(data)).read_all()


class ArrowTableCoder(beam.coders.Coder):
    """Arrow tables as LZ4-compressed Arrow IPC bytes, with a size estimate that costs nothing.

    Two reasons, both on the DirectRunner: (1) every shuffled byte is copied several times by
    the data plane, and compressed IPC is several times smaller than a pickled table and
    quicker to encode than the copies it saves; (2) Beam samples element sizes on every
    PCollection (always the first 10 elements), by *encoding* the element unless the coder can
    estimate: with the pickle fallback, each table would be pickled once per step just to be
    measured.
    """

    def encode(self, table: pa.Table) -> bytes:
        return table_to_ipc(table)

    def decode(self, data: bytes) -> pa.Table:
        return ipc_to_table(data)

    def estimate_size(self, table: pa.Table) -> int:
        size: int = table.nbytes
        return size

    def is_deterministic(self) -> bool:
        return False  # tables are values, never keys

    def to_type_hint(self) -> Any:
        return pa.Table


registry.register_coder(pa.Table, ArrowTableCoder)


def ticks_to_table(ticks: Sequence[Tick]) -> pa.Table:
    """Pack Tick records into a table with the canonical tick schema."""
    columns: list[Sequence[Any]] = list(zip(*ticks, strict=True)) if ticks else [[] for _ in TICK_ARROW_SCHEMA]
    return pa.table(
        [pa.array(col, type=field.type) for col, field in zip(columns, TICK_ARROW_SCHEMA, strict=True)],
        schema=TICK_ARROW_SCHEMA,
    )


def table_to_ticks(table: pa.Table) -> list[Tick]:
    return [Tick(*row) for row in zip(*(table.column(name).to_pylist() for name in TICK_ARROW_SCHEMA.names),
                                      strict=True)]


def timestamps_to_micros(column: pa.ChunkedArray) -> pa.ChunkedArray:
    """A timestamp column as timestamp[us, UTC]: a sub-microsecond part is floored (toward the
    past, as the per-record ISO parser does) and values are clipped to datetime's range (then
    rejected as too early or too late), so no tick value can fail a cast or a conversion.
    Arrow's own cast to microseconds raises on lost nanoseconds instead."""
    raw = pc.cast(column, pa.int64())  # the stored count of the column's unit, UTC
    unit = column.type.unit
    if unit == "ns":
        quotient = pc.divide(raw, 1_000)  # Arrow's integer division truncates toward zero
        micros = pc.if_else(pc.less(raw, pc.multiply(quotient, 1_000)), pc.subtract(quotient, 1), quotient)
    else:
        factor = _MICROS_PER_UNIT[unit]
        # One unit past the range on each side cannot overflow and still clips below.
        bounded = pc.min_element_wise(pc.max_element_wise(raw, DATETIME_MIN_US // factor - 1),
                                      DATETIME_MAX_US // factor + 1)
        micros = pc.multiply(bounded, factor)
    micros = pc.min_element_wise(pc.max_element_wise(micros, DATETIME_MIN_US), DATETIME_MAX_US)
    return pc.cast(micros, pa.timestamp("us", tz="UTC"))


def _input_columns(table: pa.Table) -> pa.Table:
    """The tick columns of ``table``, timestamp-typed ones through timestamps_to_micros."""
    table = table.select([name for name in INPUT_COLUMNS if name in table.column_names])
    for index, field in enumerate(table.schema):
        if pa.types.is_timestamp(field.type):
            table = table.set_column(index, field.name, timestamps_to_micros(table.column(index)))
    return table


def _timestamp_micros(table: pa.Table) -> pa.Array | None:
    """ts_us as int64 microseconds from an integer ts_us or a ts column already through
    timestamps_to_micros; None when a value does not fit (e.g. a uint64 beyond int64)."""
    if "ts_us" in table.column_names and pa.types.is_integer(table.schema.field("ts_us").type):
        try:
            return pc.cast(table.column("ts_us"), pa.int64())
        except pa.ArrowInvalid:
            return None
    if "ts" in table.column_names and pa.types.is_timestamp(table.schema.field("ts").type):
        return pc.cast(table.column("ts"), pa.int64())
    return None


def _numeric(table: pa.Table, name: str) -> pa.Array | None:
    if name in table.column_names:
        field_type = table.schema.field(name).type
        if pa.types.is_integer(field_type) or pa.types.is_floating(field_type):
            # Unsafe: an integer beyond 2**53 rounds to the nearest float, as float() does.
            return pc.cast(table.column(name), pa.float64(), safe=False)
    return None


def _per_distinct(column: pa.ChunkedArray, canonical: Callable[[pa.Array], pa.Array]) -> pa.Array:
    """``canonical`` applied once per distinct value: a tick table has a few symbols in millions
    of rows, and the symbol kernels (trim, upper, regex) are costly run per row."""
    encoded = pc.dictionary_encode(column).combine_chunks()
    return pc.take(canonical(encoded.dictionary), encoded.indices)


def _canonical_symbols(values: pa.Array) -> pa.Array:
    """transforms.validation.canonical_symbol, null where the result fails SYMBOL_PATTERN (so
    the mask needs no second pass)."""
    symbols = pc.ascii_upper(pc.utf8_trim(values, ASCII_WHITESPACE))
    return pc.if_else(pc.match_substring_regex(symbols, SYMBOL_PATTERN), symbols, None)


def _canonical_sources(values: pa.Array) -> pa.Array:
    """transforms.validation.canonical_source."""
    return pc.ascii_lower(pc.utf8_trim(values, ASCII_WHITESPACE))


def normalise(table: pa.Table, default_source: str) -> pa.Table | None:
    """The table with canonical tick columns and types, identity normalised as
    transforms.validation does (a symbol failing the pattern as null), or None if its column
    types do not allow a vectorised check (e.g. timestamps as strings, float trade ids): then
    every row goes through the per-record validator. Expects _input_columns' timestamps."""
    ts_us = _timestamp_micros(table)
    price, size = _numeric(table, "price"), _numeric(table, "size")
    names = table.column_names
    if ts_us is None or price is None or size is None or "symbol" not in names or "trade_id" not in names:
        return None
    trade_id_type = table.schema.field("trade_id").type
    if not pa.types.is_string(table.schema.field("symbol").type) or not (
            pa.types.is_string(trade_id_type) or pa.types.is_integer(trade_id_type)):
        return None
    symbol = _per_distinct(table.column("symbol"), _canonical_symbols)
    trade_id = pc.utf8_trim(pc.cast(table.column("trade_id"), pa.string()), ASCII_WHITESPACE)
    default = canonical_source(default_source)
    if "source" not in names:
        source = pa.repeat(pa.scalar(default, pa.string()), table.num_rows)
    elif pa.types.is_string(table.schema.field("source").type):
        # Per row: sources are often distinct per row, and trimming every row costs less than
        # dictionary-encoding them.
        source = pc.fill_null(_canonical_sources(table.column("source")), default)
    else:
        return None
    return pa.table([symbol, ts_us, price, size, trade_id, source], schema=TICK_ARROW_SCHEMA)


def valid_mask(canonical: pa.Table, *, now_us: int, policy: ValidationPolicy) -> np.ndarray:
    """Rows that pass every rule of transforms.validation (nulls fail: see normalise)."""
    symbol, ts_us = canonical.column("symbol"), canonical.column("ts_us")
    price, size, trade_id = canonical.column("price"), canonical.column("size"), canonical.column("trade_id")
    checks = [
        pc.is_valid(symbol),
        pc.greater_equal(ts_us, policy.min_ts_us),
        pc.less_equal(ts_us, now_us + policy.max_future_us),
        # NaN compares false, so these ranges also reject NaN and infinities.
        pc.and_(pc.greater_equal(price, MIN_PRICE), pc.less_equal(price, MAX_PRICE)),
        pc.or_(pc.equal(size, 0.0), pc.and_(pc.greater_equal(size, MIN_SIZE), pc.less_equal(size, MAX_SIZE))),
        # Byte length: non-empty iff the character count is, and it reads the offsets only
        # (utf8_length decodes every string).
        pc.greater(pc.binary_length(trade_id), 0),
        pc.greater(pc.binary_length(canonical.column("source")), 0),
    ]
    mask = checks[0]
    for check in checks[1:]:
        mask = pc.and_kleene(mask, check)
    valid: np.ndarray = pc.fill_null(mask, False).to_numpy(zero_copy_only=False)
    return valid


def split_valid(
    table: pa.Table, origin: str, *, now_us: int, default_source: str, policy: ValidationPolicy
) -> tuple[pa.Table, list[DeadLetter]]:
    """(valid ticks as a canonical table, dead letters for the rest)."""
    table = _input_columns(table)
    canonical = normalise(table, default_source)
    if canonical is None:
        suspects, valid = table.to_pylist(), ticks_to_table([])
    else:
        mask = valid_mask(canonical, now_us=now_us, policy=policy)
        if mask.all():
            return canonical, []
        valid = canonical.filter(pa.array(mask))
        suspects = table.filter(pa.array(~mask)).to_pylist()
    rescued: list[Tick] = []
    dead: list[DeadLetter] = []
    for row in suspects:
        result = validate_fields(row, origin, now_us=now_us, default_source=default_source, policy=policy)
        if isinstance(result, DeadLetter):
            dead.append(result)
        else:
            rescued.append(result)
    if rescued:
        valid = pa.concat_tables([valid, ticks_to_table(rescued)])
    return valid, dead


class _ValidateTableDoFn(beam.DoFn):
    def __init__(self, now_us: NowFn, default_source: str, policy: ValidationPolicy):
        self._now_us = now_us
        self._default_source = default_source
        self._policy = policy
        self._parsed = Metrics.counter(METRICS_NAMESPACE, "ticks_parsed")
        self._rejected = Metrics.counter(METRICS_NAMESPACE, "ticks_dead_lettered")

    def process(self, element: tuple[str, pa.Table]) -> Iterable[Any]:
        origin, table = element
        valid, dead = split_valid(
            table, origin, now_us=self._now_us(), default_source=self._default_source, policy=self._policy
        )
        self._parsed.inc(valid.num_rows)
        self._rejected.inc(len(dead))
        for letter in dead:
            yield TaggedOutput(DEAD_LETTERS, letter)
        if valid.num_rows:
            yield valid


class ValidateTickTables(TaggedTransform):
    """(origin, Arrow table) -> canonical tick tables (main) and DeadLetters (``dead_letters``)."""

    def __init__(self, now_us: NowFn, default_source: str, policy: ValidationPolicy):
        super().__init__()
        self._fn = _ValidateTableDoFn(now_us, default_source, policy)

    def expand(self, pcoll: PColl) -> dict[str, PColl]:
        results = pcoll | "ValidateTables" >> beam.ParDo(self._fn).with_output_types(pa.Table).with_outputs(
            DEAD_LETTERS, main=TICKS)
        return {TICKS: results[TICKS], DEAD_LETTERS: results[DEAD_LETTERS] | "TypeDeadLetters" >> TypeDeadLetters()}
