"""The Parquet lake: bars and dead letters as Hive-partitioned Parquet, local or gs://.

    <root>/bars/interval=1m/date=2024-01-02/bars-AAPL.parquet
    <root>/dead_letters/date=2024-01-02/dead_letters-<input>.parquet
    <root>/anomalies/date=2024-01-02/anomalies-AAPL.parquet

A file holds exactly what one run recomputes and nothing else, so a re-run replaces it without
touching anything it did not recompute: bars are one file per (interval, date, symbol), so a
back-fill of one symbol leaves the other symbols' bars alone; dead letters are one file per
(date, input), anomalies one file per (date, symbol), ``<input>`` a short hash of the origin
without its line number (the file, the subscription, ``postgres:bars`` for a sink's failures).
The symbol is in the file name, not a Hive folder: a Hive value would override the file's own
symbol column on read, and symbols hold characters (``/``) a folder name cannot. Dead letters
are dated by ``seen_at`` (the record's event time where known, else when it was read). Files are
written to a temporary name and renamed through Beam's FileSystems, so a reader never sees half
a file. Columns follow alphastream.records via storage_name(): time fields become timestamp[us,
UTC] columns without the ``_us`` suffix.
"""
from __future__ import annotations

import datetime as dt
import functools
import hashlib
import logging
import re
import typing
import uuid
from collections import defaultdict
from typing import Any, Callable, Iterable, NamedTuple, Sequence

import apache_beam as beam
import pyarrow as pa
import pyarrow.parquet as pq
from apache_beam.io.filesystems import FileSystems
from apache_beam.metrics import Metrics
from apache_beam.transforms.window import BoundedWindow
from apache_beam.utils.windowed_value import WindowedValue

from alphastream.records import METRICS_NAMESPACE, TIME_SUFFIX, Anomaly, Bar, DeadLetter, storage_name
from transforms.tick_tables import ArrowTableCoder  # noqa: F401  (registers the pa.Table coder)

log = logging.getLogger(__name__)

_ARROW_TYPES = {str: pa.string(), int: pa.int64(), float: pa.float64()}
TIMESTAMP_TYPE = pa.timestamp("us", tz="UTC")
MICROS_PER_DAY = 86_400_000_000
EPOCH_DATE = dt.date(1970, 1, 1)


def arrow_schema(record_type: type[NamedTuple]) -> pa.Schema:
    """Parquet schema of a record type, derived from its annotations."""
    hints = typing.get_type_hints(record_type)
    return pa.schema(
        (storage_name(name), TIMESTAMP_TYPE if name.endswith(TIME_SUFFIX) else _ARROW_TYPES[hints[name]])
        for name in record_type._fields
    )


def records_to_table(records: Sequence[NamedTuple], record_type: type[NamedTuple]) -> pa.Table:
    schema = arrow_schema(record_type)
    columns: list[Sequence[Any]] = list(zip(*records, strict=True)) if records else [[] for _ in schema]
    arrays = []
    for values, field in zip(columns, schema, strict=True):
        if pa.types.is_timestamp(field.type):
            arrays.append(pa.array(values, pa.int64()).cast(field.type))
        else:
            arrays.append(pa.array(values, field.type))
    return pa.table(arrays, schema=schema)


def utc_date(micros: int) -> str:
    """The UTC date of a time in microseconds (integer arithmetic: exact at day edges)."""
    return _utc_date_of_day(micros // MICROS_PER_DAY)


@functools.lru_cache(maxsize=4096)
def _utc_date_of_day(day: int) -> str:
    # Cached: every bar is partitioned, and bars of a run fall on a few days.
    return (EPOCH_DATE + dt.timedelta(days=day)).isoformat()


def bar_partition(bar: Bar) -> str:
    return f"bars/interval={bar.interval}/date={utc_date(bar.bucket_start_us)}"


def bar_stem(bar: Bar) -> str:
    """The lake path of a bar's file without its ending: one per (interval, date, symbol)."""
    return f"{bar_partition(bar)}/bars-{_symbol_in_file_name(bar.symbol)}"


@functools.lru_cache(maxsize=4096)
def _symbol_in_file_name(symbol: str) -> str:
    # "/" is the one symbol character a file name cannot hold; "~" is never in a symbol
    # (alphastream.records.SYMBOL_PATTERN), so distinct symbols keep distinct names.
    return symbol.replace("/", "~")


def bar_file(bar: Bar) -> str:
    return f"{bar_stem(bar)}.parquet"


def dead_letter_partition(letter: DeadLetter) -> str:
    return f"dead_letters/date={utc_date(letter.seen_at_us)}"


# "path/to/ticks.csv:17" -> "path/to/ticks.csv": a file's dead letters share one lake file.
_LINE_NUMBER = re.compile(r":\d+$")
INPUT_KEY_HEX_DIGITS = 16


@functools.lru_cache(maxsize=4096)
def input_key(origin: str) -> str:
    """A short, stable name for the input a dead letter came from (its origin without a line)."""
    return hashlib.sha256(_LINE_NUMBER.sub("", origin).encode("utf-8", "surrogatepass")).hexdigest()[
        :INPUT_KEY_HEX_DIGITS]


def dead_letter_stem(letter: DeadLetter) -> str:
    """The lake path of a dead letter's file without its ending: one per (date, input)."""
    return f"{dead_letter_partition(letter)}/dead_letters-{input_key(letter.origin)}"


def dead_letter_file(letter: DeadLetter) -> str:
    return f"{dead_letter_stem(letter)}.parquet"


def anomaly_stem(anomaly: Anomaly) -> str:
    """The lake path of an anomaly's file without its ending: one per (date, symbol), as bars."""
    return f"anomalies/date={utc_date(anomaly.bucket_start_us)}/anomalies-{_symbol_in_file_name(anomaly.symbol)}"


ANOMALY_SORT_BY = ("bucket_start_us", "interval", "kind")


def anomaly_file(anomaly: Anomaly) -> str:
    return f"{anomaly_stem(anomaly)}.parquet"


def write_parquet_replacing(path: str, table: pa.Table) -> None:
    """Write ``table`` to ``path`` atomically: temp file, then rename over any old file."""
    temp_path = f"{path}.tmp-{uuid.uuid4().hex}"
    with FileSystems.create(temp_path) as sink:
        pq.write_table(table, sink, compression="zstd")
    if FileSystems.exists(path):
        FileSystems.delete([path])
    FileSystems.rename([temp_path], [path])


class _PackByFileDoFn(beam.DoFn):
    """Records -> (lake file, Arrow table of the bundle's records for it), per window.

    Packing before the shuffle, as a combiner would, means the shuffle moves one table per
    partition and bundle instead of encoding and decoding every bar as a record.
    """

    def __init__(self, record_type: type[NamedTuple], file_of: Callable[[NamedTuple], str]):
        self._record_type = record_type
        self._file_of = file_of

    def start_bundle(self):
        self._pending: dict[tuple[BoundedWindow, str], list[NamedTuple]] = defaultdict(list)

    def process(self, record: NamedTuple, window=beam.DoFn.WindowParam) -> None:
        self._pending[(window, self._file_of(record))].append(record)

    def finish_bundle(self) -> Iterable[WindowedValue]:
        for (window, file), records in self._pending.items():
            yield WindowedValue((file, records_to_table(records, self._record_type)),
                                window.max_timestamp(), (window,))
        self._pending.clear()


class _WriteFileDoFn(beam.DoFn):
    def __init__(self, root: str, record_type: type[NamedTuple], sort_by: tuple[str, ...]):
        self._root = root.rstrip("/")
        self._record_type = record_type
        self._sort_keys = [(storage_name(name), "ascending") for name in sort_by]
        self._rows = Metrics.counter(METRICS_NAMESPACE, f"lake_{record_type.__name__.lower()}_rows")

    def process(self, element: tuple[str, Iterable[pa.Table]]) -> Iterable[str]:
        file, tables = element
        table = pa.concat_tables(tables).sort_by(self._sort_keys)
        path = FileSystems.join(self._root, file)
        write_parquet_replacing(path, table)
        self._rows.inc(table.num_rows)
        log.info("lake: wrote %s rows to %s", f"{table.num_rows:,}", path)
        yield path


class _WriteToLake(beam.PTransform):
    def __init__(self, root: str, record_type, file_of, sort_by: tuple[str, ...]):
        super().__init__()
        self._pack = _PackByFileDoFn(record_type, file_of)
        self._write = _WriteFileDoFn(root, record_type, sort_by)

    def expand(self, records):
        return (
            records
            | "PackByFile" >> beam.ParDo(self._pack).with_output_types(tuple[str, pa.Table])
            | "GroupByFile" >> beam.GroupByKey()
            | "WriteFile" >> beam.ParDo(self._write)
        )


class WriteBarsToLake(_WriteToLake):
    """Batch: Bars -> one Parquet file per (interval, date, symbol); yields the paths written."""

    def __init__(self, root: str):
        super().__init__(root, Bar, bar_file, ("bucket_start_us",))


class WriteDeadLettersToLake(_WriteToLake):
    """Batch: DeadLetters -> one Parquet file per (date, input); yields the paths written."""

    def __init__(self, root: str):
        super().__init__(root, DeadLetter, dead_letter_file, ("seen_at_us", "origin", "raw"))


class WriteAnomaliesToLake(_WriteToLake):
    """Batch: Anomalies -> one Parquet file per (date, symbol); yields the paths written."""

    def __init__(self, root: str):
        super().__init__(root, Anomaly, anomaly_file, ANOMALY_SORT_BY)
