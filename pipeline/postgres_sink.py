"""Beam sinks into PostgreSQL: bars (upserted by pane), raw ticks and dead letters.

Each DoFn instance holds one connection (``setup``/``teardown``), buffers the rows of a bundle
and writes them with ``writer.CopyMergeWriter`` in ``finish_bundle``, or earlier when the
buffer is full: a binary COPY straight into the table while batches are all new bars, else a
COPY into a temporary table and one merge statement that never lets a lower pane win. Rows the
writer could not store after its retries come out as DeadLetters with reason ``sink_failed``,
so nothing vanishes: the graph routes them to the dead-letter outputs. Given a lake root
(``spool_root``, streaming), a sink first writes those letters to the lake itself
(``pipeline.dead_letter_spool``), so none waits in memory for a lake window while the
database is away. PostgreSQL text cannot
hold NUL, which hostile input can carry into a dead letter: the dead-letter sink stores each NUL
as the six characters ``\\u0000`` (the lake keeps the text as it was).
"""
from __future__ import annotations

import json
import time
from collections import Counter
from typing import Callable, Iterable, Iterator

import apache_beam as beam
import pyarrow as pa
from apache_beam.metrics import Metrics
from apache_beam.transforms.window import GlobalWindow, GlobalWindows, TimestampedValue
from apache_beam.utils.secret import Secret
from apache_beam.utils.timestamp import Timestamp
from apache_beam.utils.windowed_value import WindowedValue

from alphastream.intervals import interval_micros
from alphastream.records import METRICS_NAMESPACE, DeadLetter, DeadLetterReason, PaneTiming
from pipeline.dead_letter_spool import DeadLetterSpool
from pipeline.summary import SINK_ROWS_FAILED
from store.revisions import FINAL_REVISION, StoredBar, streaming_revision
from store.writer import ANOMALIES, BARS, DEAD_LETTERS, TICKS, CopyMergeWriter, FailedRow, RetryPolicy, TableSpec
from transforms.tick_tables import table_to_ticks

# Rows buffered before a write inside a bundle: large enough to amortise a write's fixed
# round trips, small enough to bound a worker's memory (~100 bytes per buffered bar).
MAX_BUFFERED_ROWS = 100_000
# A DSN, or a Beam Secret holding one (--db_url_secret): read on the worker, in setup, so the
# DSN never travels in the pickled graph.
DatabaseUrl = str | Secret


NUL = "\x00"
NUL_IN_POSTGRES = "\\u0000"  # JSON's spelling of NUL, as the sinks' own raw payloads are JSON


def storable_in_postgres(letter: DeadLetter) -> DeadLetter:
    """``letter`` with every NUL spelled ``\\u0000``: PostgreSQL text refuses the character."""
    if not any(NUL in value for value in letter if isinstance(value, str)):
        return letter
    return DeadLetter(*(value.replace(NUL, NUL_IN_POSTGRES) if isinstance(value, str) else value
                        for value in letter))


def sink_dead_letter(failed: FailedRow, spec: TableSpec) -> DeadLetter:
    """A row the sink gave up on, as a DeadLetter holding the row as JSON."""
    record = spec.record_type(*failed.row)
    return DeadLetter(
        reason=DeadLetterReason.SINK_FAILED.value, detail=failed.reason, raw=json.dumps(record._asdict()),
        origin=f"postgres:{spec.table}", seen_at_us=getattr(record, spec.time_field),
    )


class _WriteRowsDoFn(beam.DoFn):
    def __init__(self, db_url: DatabaseUrl, spec: TableSpec, rows_metric: str, retry: RetryPolicy,
                 observe: Callable[[list], None] | None = None, spool_root: str | None = None):
        self._observe = observe  # called with the rows stored, after each write
        self._spool = DeadLetterSpool(spool_root) if spool_root else None
        self._db_url = db_url
        self._spec = spec
        self._retry = retry
        self._written = Metrics.counter(METRICS_NAMESPACE, rows_metric)
        self._failed = Metrics.counter(METRICS_NAMESPACE, SINK_ROWS_FAILED)
        self._writer: CopyMergeWriter | None = None
        self._rows: list = []

    def setup(self) -> None:
        dsn = self._db_url.get_str() if isinstance(self._db_url, Secret) else self._db_url
        self._writer = CopyMergeWriter(dsn, self._spec, self._retry)
        # Connect lazily on the first write: an unreachable server must become retries and
        # dead letters, not a setup failure that kills the worker.

    def start_bundle(self) -> None:
        self._rows = []

    def process(self, element) -> Iterator[TimestampedValue]:
        if isinstance(element, pa.Table):  # batch ticks travel as Arrow tables
            self._rows.extend(table_to_ticks(element))
        else:
            self._rows.append(element)
        if len(self._rows) >= MAX_BUFFERED_ROWS:
            failed_at = Timestamp.now()
            for letter in self._flush():
                yield TimestampedValue(letter, failed_at)

    def finish_bundle(self) -> Iterable[WindowedValue]:
        # Stamped when the write failed, not by the row's event time (the letter's seen_at_us):
        # in streaming, a bar that failed after the retries is already past its window, and
        # an event-time stamp would make its dead letter too late for the lake's windows.
        failed_at = Timestamp.now()
        for letter in self._flush():
            yield WindowedValue(letter, failed_at, [GlobalWindow()])

    def teardown(self) -> None:
        if self._writer is not None:
            self._writer.close()

    def _flush(self) -> list[DeadLetter]:
        rows, self._rows = self._rows, []
        failed = self._writer.write(rows)
        self._written.inc(len(rows) - len(failed))
        self._failed.inc(len(failed))
        if self._observe is not None:
            refused = {id(f.row) for f in failed}
            self._observe([row for row in rows if id(row) not in refused])
        letters = [sink_dead_letter(f, self._spec) for f in failed]
        if self._spool is not None and letters:
            self._spool.write(letters)
        return letters


class _WriteToPostgres(beam.PTransform):
    """PCollection of records -> PCollection[DeadLetter] of the rows that could not be stored
    (in the global window, so they flatten with the other dead letters in batch and streaming),
    each already in the lake under ``spool_root`` when one is given."""

    def __init__(self, db_url: DatabaseUrl, spec: TableSpec, rows_metric: str, retry: RetryPolicy | None = None,
                 observe: Callable[[list], None] | None = None, spool_root: str | None = None):
        super().__init__()
        self._write = _WriteRowsDoFn(db_url, spec, rows_metric, retry or RetryPolicy(), observe, spool_root)

    def expand(self, records):
        return (
            records
            | "CopyAndMerge" >> beam.ParDo(self._write).with_output_types(DeadLetter)
            | "FailuresToGlobalWindow" >> beam.WindowInto(GlobalWindows())
        )


class _WithRevision:
    """Bar -> its stored row: final (a batch run) or a streaming pane of run ``epoch``."""

    def __init__(self, final: bool, run_epoch_seconds: int):
        self._final, self._epoch = final, run_epoch_seconds

    def __call__(self, bar):
        revision = FINAL_REVISION if self._final else streaming_revision(self._epoch, bar.pane_index)
        return StoredBar(*bar, revision)


class _BarWriteMetrics:
    """After each write: bars stored by pane timing (``db_bar_rows_early`` etc.), and how long
    after its window closed each closed bar was stored (``bar_write_lag_ms``, the event-time lag
    the BarWriteLag alert watches). Early panes are left out of the lag: their window is open."""

    def __init__(self):
        self._by_timing = {t.value: Metrics.counter(METRICS_NAMESPACE, f"db_bar_rows_{t.value.lower()}")
                           for t in PaneTiming}
        self._lag_ms = Metrics.distribution(METRICS_NAMESPACE, "bar_write_lag_ms")

    def __call__(self, rows) -> None:
        now_us = time.time_ns() // 1_000
        for timing, count in Counter(row.timing for row in rows).items():
            self._by_timing[timing].inc(count)
        for row in rows:
            if row.timing != PaneTiming.EARLY.value:
                end_us = row.bucket_start_us + interval_micros(row.interval)
                self._lag_ms.update(max(0, now_us - end_us) // 1_000)


class WriteBarsToPostgres(_WriteToPostgres):
    """Bars -> ``bars``, upserted by revision (``store.revisions``): ``final`` bars (batch
    runs) replace every streaming pane and are never replaced by one; streaming panes of
    ``run_epoch_seconds`` replace lower panes of their run and any pane of an earlier run."""

    def __init__(self, db_url: DatabaseUrl, retry: RetryPolicy | None = None, *, final: bool = False,
                 run_epoch_seconds: int = 0, spool_root: str | None = None):
        super().__init__(db_url, BARS, "db_bar_rows", retry, observe=_BarWriteMetrics(), spool_root=spool_root)
        self._revision = _WithRevision(final, run_epoch_seconds)

    def expand(self, bars):
        return super().expand(bars | "WithRevision" >> beam.Map(self._revision))


class WriteTicksToPostgres(_WriteToPostgres):
    """Ticks (records, or Arrow tables in batch) -> ``ticks``; a trade already stored is skipped."""

    def __init__(self, db_url: DatabaseUrl, retry: RetryPolicy | None = None, *, spool_root: str | None = None):
        super().__init__(db_url, TICKS, "db_tick_rows", retry, spool_root=spool_root)


class WriteAnomaliesToPostgres(_WriteToPostgres):
    """Anomalies -> ``anomalies``, keyed by (symbol, interval, bucket_start, kind): a replay changes
    nothing, a detection scored differently by a re-run is updated."""

    def __init__(self, db_url: DatabaseUrl, retry: RetryPolicy | None = None, *, spool_root: str | None = None):
        super().__init__(db_url, ANOMALIES, "db_anomaly_rows", retry, spool_root=spool_root)


class WriteDeadLettersToPostgres(_WriteToPostgres):
    """DeadLetters -> ``dead_letters`` (NUL spelled ``\\u0000``); the same dead letter replayed
    is recorded once."""

    def __init__(self, db_url: DatabaseUrl, retry: RetryPolicy | None = None, *, spool_root: str | None = None):
        super().__init__(db_url, DEAD_LETTERS, "db_dead_letter_rows", retry, spool_root=spool_root)

    def expand(self, dead_letters):
        storable = dead_letters | "EscapeNul" >> beam.Map(storable_in_postgres).with_output_types(DeadLetter)
        return super().expand(storable)

