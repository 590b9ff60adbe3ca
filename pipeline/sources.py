"""Sources: where ticks enter the pipeline. Thin adapters over Beam's IOs.

Batch sources yield ``(origin, Arrow table)`` (columnar: synthetic, Parquet) or
``(origin, payload)`` (per record: a JSON line as bytes, a CSV row as a ``CsvRow``); streaming
sources yield ``(origin, JSON text)`` timestamped with the tick's event time. Each counts what
it reads as ``ticks_read`` so the run summary can prove every record was accounted for.

Text files are read as bytes and decoded by the parser, record by record, so a line that is
not UTF-8 is one dead letter rather than the end of the run. A UTF-8 byte-order mark at the
start of a file is ignored. Blank lines (nothing but ASCII whitespace), in CSV and JSON lines
alike, are skipped and not counted as records.
"""
from __future__ import annotations

import codecs
import csv
import io
import json
import logging
import time
from typing import Iterable, Iterator

import apache_beam as beam
import numpy as np
import pyarrow as pa
from apache_beam.io import fileio
from apache_beam.io.filesystem import BeamIOError
from apache_beam.io.filesystems import FileSystems
from apache_beam.io.parquetio import ReadAllFromParquetBatched
from apache_beam.io.textio import ReadAllFromText
from apache_beam.metrics import Metrics
from apache_beam.transforms.periodicsequence import PeriodicImpulse
from apache_beam.transforms.window import TimestampedValue
from apache_beam.utils.timestamp import MAX_TIMESTAMP, Timestamp

from alphastream.errors import UserFacingError
from alphastream.records import METRICS_NAMESPACE, MICROS_PER_SECOND, Tick
from alphastream.synthetic import SYNTHETIC_SOURCE, MarketSpec, symbol_names, symbol_ticks
from transforms.tick_tables import ArrowTableCoder  # noqa: F401  (registers the pa.Table coder)
from transforms.validation import ASCII_WHITESPACE, CsvRow

log = logging.getLogger(__name__)

JSONL_EXTENSIONS = (".jsonl", ".json", ".ndjson")
_BLANK_BYTES = ASCII_WHITESPACE.encode()


def _ticks_read():
    return Metrics.counter(METRICS_NAMESPACE, "ticks_read")


class _GenerateSymbolDoFn(beam.DoFn):
    def __init__(self, spec: MarketSpec):
        self._spec = spec
        self._read = _ticks_read()

    def process(self, index: int):
        table = symbol_ticks(self._spec, index)
        self._read.inc(table.num_rows)
        log.info("synthetic market: symbol %d/%d (%s) generated %s ticks",
                 index + 1, self._spec.symbols, table.column("symbol")[0], f"{table.num_rows:,}")
        yield SYNTHETIC_SOURCE, table


class ReadSyntheticMarket(beam.PTransform):
    """Batch: one trading day of the seeded synthetic market, one Arrow table per symbol."""

    def __init__(self, spec: MarketSpec):
        super().__init__()
        self._spec = spec

    def expand(self, pbegin):
        return (
            pbegin
            | "SymbolIndexes" >> beam.Create(list(range(self._spec.symbols)))
            | "SpreadSymbols" >> beam.Reshuffle()
            | "GenerateTicks" >> beam.ParDo(_GenerateSymbolDoFn(self._spec)).with_output_types(tuple[str, pa.Table])
        )


class _LiveSyntheticDoFn(beam.DoFn):
    """Each impulse emits ``rate * interval`` ticks spread over the impulse's interval, as JSON
    payloads like a feed would publish, each timestamped with its event time."""

    START_PRICE_RANGE = (20.0, 500.0)
    MOVE_SIGMA = 0.0005  # standard deviation of one trade's log price move
    MAX_SIZE = 500  # trade sizes are whole shares in [1, MAX_SIZE)
    PRICE_DECIMALS = 4

    def __init__(self, symbols: int, rate: float, fire_interval: float, seed: int):
        self._symbols, self._rate, self._interval, self._seed = symbols, rate, fire_interval, seed

    def setup(self):
        self._rng = np.random.default_rng(self._seed)
        self._names = symbol_names(self._symbols)
        self._prices = self._rng.uniform(*self.START_PRICE_RANGE, self._symbols)
        self._sequence = 0  # ticks_read is counted by the parser, as for any streaming source

    def process(self, _impulse, impulse_time=beam.DoFn.TimestampParam) -> Iterable:
        count = max(1, int(round(self._rate * self._interval)))
        start_us = impulse_time.micros
        offsets = np.sort(self._rng.uniform(0, self._interval * MICROS_PER_SECOND, count)).astype(np.int64)
        who = self._rng.integers(0, self._symbols, count)
        moves = np.exp(self._rng.standard_normal(count) * self.MOVE_SIGMA)
        for offset, index, move in zip(offsets, who, moves, strict=True):
            self._prices[index] *= move
            self._sequence += 1
            tick = Tick(symbol=self._names[index], ts_us=int(start_us + offset),
                        price=round(float(self._prices[index]), self.PRICE_DECIMALS),
                        size=float(self._rng.integers(1, self.MAX_SIZE)),
                        trade_id=f"live-{self._seed}-{self._sequence}", source=SYNTHETIC_SOURCE)
            yield TimestampedValue((SYNTHETIC_SOURCE, json.dumps(tick._asdict())), Timestamp(micros=tick.ts_us))


class ReadLiveSyntheticMarket(beam.PTransform):
    """Streaming: an unbounded synthetic market at ``rate`` ticks/s, driven by Beam's
    PeriodicImpulse; stops after ``duration_seconds`` if given."""

    FIRE_INTERVAL_SECONDS = 0.5

    def __init__(self, symbols: int, rate: float, seed: int, duration_seconds: float | None = None):
        super().__init__()
        self._symbols, self._rate, self._seed, self._duration = symbols, rate, seed, duration_seconds

    def expand(self, pbegin):
        start = time.time()
        stop = start + self._duration if self._duration else MAX_TIMESTAMP
        return (
            pbegin
            | "Impulse" >> PeriodicImpulse(start_timestamp=start, stop_timestamp=stop,
                                           fire_interval=self.FIRE_INTERVAL_SECONDS)
            | "GenerateLiveTicks" >> beam.ParDo(
                _LiveSyntheticDoFn(self._symbols, self._rate, self.FIRE_INTERVAL_SECONDS, self._seed))
        )


def detect_format(path: str, declared: str) -> str:
    """The file format from --input_format, or from the extension when it is 'auto'."""
    if declared != "auto":
        return declared
    lower = path.lower().removesuffix(".gz")
    if lower.endswith(".parquet"):
        return "parquet"
    if lower.endswith(".csv"):
        return "csv"
    if lower.endswith(JSONL_EXTENSIONS):
        return "jsonl"
    raise UserFacingError(f"cannot tell the format of {path!r} from its extension (.parquet, .csv, "
                          f"{', '.join(JSONL_EXTENSIONS)}): pass --input_format csv|jsonl|parquet, "
                          "or narrow --input to the tick files")


def is_blank_line(line: bytes) -> bool:
    return not line.removeprefix(codecs.BOM_UTF8).strip(_BLANK_BYTES)


def _is_blank_row(row: list[str]) -> bool:
    """A blank line as csv.reader gives it: no cell, or one cell of whitespace."""
    return len(row) <= 1 and not "".join(row).strip(ASCII_WHITESPACE)


class _LineTap:
    """The lines of a text stream as csv.reader takes them, remembered until the row they make
    is done, so a row the reader cannot split is dead-lettered with its own text."""

    def __init__(self, lines: Iterable[str]):
        self._lines = iter(lines)
        self._taken: list[str] = []

    def __iter__(self) -> _LineTap:
        return self

    def __next__(self) -> str:
        line = next(self._lines)
        self._taken.append(line)
        return line

    def take(self) -> str:
        """The lines read since the last row, joined (only a row that failed needs them)."""
        text = "".join(self._taken)
        self._taken.clear()
        return text

    def forget(self) -> None:
        """The row split fine: its lines are not needed."""
        self._taken.clear()


def _csv_rows(lines: _LineTap) -> Iterator[tuple[list[str] | csv.Error, str | None, int]]:
    """(row, None, line number) per row; a row the reader cannot split (e.g. a cell over
    csv.field_size_limit()) comes as (the error, its lines as read, line number), and reading
    goes on with the next line."""
    reader = csv.reader(lines)
    while True:
        try:
            row = next(reader)
        except StopIteration:
            return
        except csv.Error as err:
            yield err, lines.take().rstrip("\r\n"), reader.line_num
        else:
            lines.forget()
            yield row, None, reader.line_num


class _CsvRowsDoFn(beam.DoFn):
    """One CSV file -> (file:line, CsvRow); the header (its first non-blank line) names the
    tick fields."""

    def __init__(self):
        self._read = _ticks_read()

    def process(self, readable: fileio.ReadableFile) -> Iterable[tuple[str, CsvRow]]:
        path = readable.metadata.path
        with FileSystems.open(path) as raw:
            # utf-8-sig drops a byte-order mark; surrogateescape carries undecodable bytes to the
            # parser, which dead-letters that row alone (strict decoding would end the run).
            lines = _LineTap(io.TextIOWrapper(raw, encoding="utf-8-sig", errors="surrogateescape", newline=""))
            header: tuple[str, ...] | None = None
            for row, unsplit, line_num in _csv_rows(lines):
                if isinstance(row, csv.Error):
                    record = CsvRow(header or (), (), str(row), unsplit)
                elif _is_blank_row(row):
                    continue
                elif header is None:
                    header = tuple(name.strip(ASCII_WHITESPACE) for name in row)
                    continue
                else:
                    record = CsvRow(header, tuple(row))
                self._read.inc()
                yield f"{path}:{line_num}", record


class _CountRead(beam.DoFn):
    def __init__(self):
        self._read = _ticks_read()

    def process(self, element):
        origin, payload = element
        rows = payload.num_rows if hasattr(payload, "num_rows") else 1
        self._read.inc(rows)
        yield element


def _matched_paths(pattern: str) -> list[str]:
    try:
        matches = FileSystems.match([pattern])[0].metadata_list
    except (BeamIOError, ValueError) as err:  # a bucket that cannot be listed, a scheme Beam does not know
        raise UserFacingError(f"--input {pattern!r} cannot be listed: {err}") from None
    if not matches:
        raise UserFacingError(f"--input {pattern!r} matches no file: check the path, and quote a glob so "
                              "the shell does not expand it")
    return sorted(m.path for m in matches)


class ReadTickFiles(beam.PTransform):
    """Historical files (local or gs://, globs) -> columnar and per-record outputs.

    Returns a dict: ``tables`` -> (origin, Arrow table) from Parquet; ``records`` ->
    (origin, JSON text) from CSV and JSON lines. A key is present only if the pattern
    matched files of that kind (it is matched when the graph is built): an empty branch
    would still cost its consumers a Flatten, which Beam's portable runners materialise.
    """

    def __init__(self, pattern: str, declared_format: str = "auto"):
        super().__init__()
        self._pattern = pattern
        self._format = declared_format

    def expand(self, pbegin):
        by_format: dict[str, list[str]] = {"parquet": [], "csv": [], "jsonl": []}
        for path in _matched_paths(self._pattern):
            by_format[detect_format(path, self._format)].append(path)
        log.info("files source: %s", ", ".join(f"{len(v)} {k}" for k, v in by_format.items() if v))

        outputs, record_branches = {}, []
        if by_format["parquet"]:
            outputs["tables"] = (
                pbegin
                | "ParquetPaths" >> beam.Create(by_format["parquet"])
                | "ReadParquet" >> ReadAllFromParquetBatched(with_filename=True).with_output_types(tuple[str, pa.Table])
                | "CountParquetRows" >> beam.ParDo(_CountRead()).with_output_types(tuple[str, pa.Table])
            )
        if by_format["jsonl"]:
            record_branches.append(
                pbegin
                | "JsonlPaths" >> beam.Create(by_format["jsonl"])
                | "ReadJsonLines" >> ReadAllFromText(with_filename=True, coder=beam.coders.BytesCoder())
                | "SkipBlankLines" >> beam.Filter(lambda element: not is_blank_line(element[1]))
                | "CountJsonLines" >> beam.ParDo(_CountRead())
            )
        if by_format["csv"]:
            record_branches.append(
                pbegin
                | "CsvPaths" >> beam.Create(by_format["csv"])
                | "MatchCsv" >> fileio.MatchAll()
                | "OpenCsv" >> fileio.ReadMatches()
                | "ReadCsvRows" >> beam.ParDo(_CsvRowsDoFn())
            )
        if len(record_branches) == 1:
            outputs["records"] = record_branches[0]
        elif record_branches:
            outputs["records"] = record_branches | "FlattenRecords" >> beam.Flatten()
        return outputs
