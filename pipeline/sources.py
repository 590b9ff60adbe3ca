"""Sources: where ticks enter the pipeline. Thin adapters over Beam's IOs.

Batch sources yield ``(origin, Arrow table)`` (columnar: synthetic, Parquet) or
``(origin, JSON text)`` (per record: CSV, JSON lines); streaming sources yield ``(origin,
JSON text)`` timestamped with the tick's event time. Each counts what it reads as
``ticks_read`` so the run summary can prove every record was accounted for.
"""
from __future__ import annotations

import csv
import io
import json
import logging
import time
from typing import Iterable

import apache_beam as beam
import numpy as np
import pyarrow as pa
from apache_beam.io import fileio
from apache_beam.io.filesystems import FileSystems
from apache_beam.io.parquetio import ReadAllFromParquetBatched
from apache_beam.io.textio import ReadAllFromText
from apache_beam.metrics import Metrics
from apache_beam.transforms.periodicsequence import PeriodicImpulse
from apache_beam.transforms.window import TimestampedValue
from apache_beam.utils.timestamp import MAX_TIMESTAMP, Timestamp

from alphastream.records import MICROS_PER_SECOND, Tick
from alphastream.synthetic import SYNTHETIC_SOURCE, MarketSpec, symbol_names, symbol_ticks
from transforms.parse import METRICS_NAMESPACE
from transforms.tick_tables import ArrowTableCoder  # noqa: F401  (registers the pa.Table coder)

log = logging.getLogger(__name__)

JSONL_EXTENSIONS = (".jsonl", ".json", ".ndjson")


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

    def __init__(self, symbols: int, rate: float, fire_interval: float, seed: int):
        self._symbols, self._rate, self._interval, self._seed = symbols, rate, fire_interval, seed

    def setup(self):
        self._rng = np.random.default_rng(self._seed)
        self._names = symbol_names(self._symbols)
        self._prices = self._rng.uniform(20.0, 500.0, self._symbols)
        self._sequence = 0
        self._read = _ticks_read()

    def process(self, _impulse, impulse_time=beam.DoFn.TimestampParam) -> Iterable:
        count = max(1, int(round(self._rate * self._interval)))
        start_us = impulse_time.micros
        offsets = np.sort(self._rng.uniform(0, self._interval * MICROS_PER_SECOND, count)).astype(np.int64)
        who = self._rng.integers(0, self._symbols, count)
        moves = np.exp(self._rng.standard_normal(count) * 0.0005)
        for offset, index, move in zip(offsets, who, moves):
            self._prices[index] *= move
            self._sequence += 1
            tick = Tick(self._names[index], int(start_us + offset), round(float(self._prices[index]), 4),
                        float(self._rng.integers(1, 500)), f"live-{self._seed}-{self._sequence}", SYNTHETIC_SOURCE)
            self._read.inc()
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
    raise ValueError(f"cannot tell the format of {path!r} from its extension: pass --input_format csv|jsonl|parquet")


class _CsvRowsDoFn(beam.DoFn):
    """One CSV file -> (file:line, row as JSON text); the header names the tick fields."""

    def __init__(self):
        self._read = _ticks_read()

    def process(self, readable: fileio.ReadableFile) -> Iterable[tuple[str, str]]:
        path = readable.metadata.path
        with FileSystems.open(path) as raw:
            reader = csv.reader(io.TextIOWrapper(raw, encoding="utf-8", newline=""))
            header = next(reader, None)
            if header is None:
                return
            header = [name.strip() for name in header]
            for line_no, row in enumerate(reader, start=2):
                self._read.inc()
                origin = f"{path}:{line_no}"
                if len(row) != len(header):
                    # A ragged row cannot be mapped to fields: keep it raw, the parser dead-letters it.
                    yield origin, ",".join(row)
                    continue
                yield origin, json.dumps(dict(zip(header, row)))


class _CountRead(beam.DoFn):
    def __init__(self):
        self._read = _ticks_read()

    def process(self, element):
        origin, payload = element
        rows = payload.num_rows if hasattr(payload, "num_rows") else 1
        self._read.inc(rows)
        yield element


def _matched_paths(pattern: str) -> list[str]:
    matches = FileSystems.match([pattern])[0].metadata_list
    if not matches:
        raise FileNotFoundError(f"--input {pattern!r} matches no file")
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
                | "ReadJsonLines" >> ReadAllFromText(with_filename=True)
                | "SkipBlankLines" >> beam.Filter(lambda element: element[1].strip() != "")
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
