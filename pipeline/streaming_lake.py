"""The Parquet lake in streaming: one file per (partition, lake window, pane), named deterministically.

Batch writes one file per partition (pipeline.lake). A stream never ends, so here records
are cut into fixed event-time "lake windows" (``window_seconds``, default 60 s) and each
firing writes one file into the same Hive layout, under the same schema (pipeline.lake):

    <root>/bars/interval=1m/date=2026-01-24/bars-AAPL-20260124T061500Z-20260124T061600Z-pane000.parquet
    <root>/dead_letters/date=2026-01-24/dead_letters-<input>-20260124T061500Z-20260124T061600Z-pane000.parquet

The on-time pane (pane000) is written when the watermark passes the lake window's end; late
records (within the allowed lateness) are written as they come, one file per late bundle and
partition: pane001, pane002... (A processing-time delay to gather late records would mean fewer
files, but the DirectRunner stalls on late processing-time triggers under TestStream: "Monitor
task detected a pipeline stall".) Panes discard: each file holds only what arrived since the
previous one. Names depend only on the folder, window and pane, so a retried write replaces its
file (atomically, through pipeline.lake.write_parquet_replacing) instead of duplicating it,
and, bars being one file per symbol as in batch, a replay of some symbols rewrites only theirs.

Bars: only ON_TIME and LATE bars go to the lake (EARLY bars are live previews, kept in the
database). A LATE bar is the whole corrected bar, so a reader takes, per (symbol, interval,
bucket_start), the row with the highest pane_index. Dead letters are windowed and dated by
``seen_at_us``, as in batch: the record's event time where known, else when it was read; a
sink's ``sink_failed`` letter by when the write failed (``dead_letter_lake_time``).
"""
from __future__ import annotations

import datetime as dt
import logging
from typing import Callable, Iterable, NamedTuple

import apache_beam as beam
from apache_beam.io.filesystems import FileSystems
from apache_beam.metrics import Metrics
from apache_beam.transforms import trigger, window
from apache_beam.transforms.window import TimestampedValue
from apache_beam.utils.timestamp import Duration, Timestamp

from alphastream.records import METRICS_NAMESPACE, Bar, DeadLetter, DeadLetterReason, PaneTiming
from pipeline.lake import bar_stem, dead_letter_stem, records_to_table, write_parquet_replacing

log = logging.getLogger(__name__)

DEFAULT_WINDOW_SECONDS = 60
_NAME_TIME_FORMAT = "%Y%m%dT%H%M%SZ"
DEAD_LETTER_SORT_BY = ("seen_at_us", "origin", "raw")


def lake_metric_name(record_type: type[NamedTuple], what: str) -> str:
    """The counter of lake ``what`` ("rows" or "files") written for ``record_type``, e.g.
    ``lake_deadletter_rows`` (the run summary's accounting reads it)."""
    return f"lake_{record_type.__name__.lower()}_{what}"


def lake_file_name(stem: str, window_start_us: int, window_end_us: int, pane_index: int) -> str:
    """``<stem>-<window start>-<window end>-pane<NNN>.parquet``, times in UTC."""
    def stamp(micros: int) -> str:
        return dt.datetime.fromtimestamp(micros / 1e6, tz=dt.timezone.utc).strftime(_NAME_TIME_FORMAT)

    return f"{stem}-{stamp(window_start_us)}-{stamp(window_end_us)}-pane{pane_index:03d}.parquet"


class _WriteWindowPaneDoFn(beam.DoFn):
    """(file stem, records of one window pane) -> one Parquet file; yields its path."""

    def __init__(self, root: str, record_type: type[NamedTuple], sort_by: tuple[str, ...]):
        self._root = root.rstrip("/")
        self._record_type = record_type
        self._sort_by = sort_by
        self._rows = Metrics.counter(METRICS_NAMESPACE, lake_metric_name(record_type, "rows"))
        self._files = Metrics.counter(METRICS_NAMESPACE, lake_metric_name(record_type, "files"))

    def process(self, element: tuple[str, Iterable], win=beam.DoFn.WindowParam,
                pane=beam.DoFn.PaneInfoParam) -> Iterable[str]:
        stem, records = element
        rows = sorted(records, key=lambda r: tuple(getattr(r, f) for f in self._sort_by))
        table = records_to_table(rows, self._record_type)
        path = FileSystems.join(self._root, lake_file_name(stem, win.start.micros, win.end.micros, pane.index))
        write_parquet_replacing(path, table)
        self._rows.inc(table.num_rows)
        self._files.inc()
        log.info("lake: wrote %s rows to %s", f"{table.num_rows:,}", path)
        yield path


def _stamp_for_lake(record, event_time_of: Callable, element_time=beam.DoFn.TimestampParam) -> TimestampedValue:
    return TimestampedValue(record, Timestamp(micros=event_time_of(record, element_time.micros)))


def dead_letter_lake_time(letter: DeadLetter, element_time_us: int) -> int:
    """When a dead letter belongs in the lake: when it was seen, except a sink failure.

    A ``sink_failed`` letter's seen_at_us is its row's event time (a bar's bucket start), long
    past once the sink has given up on it: windowed by it, the letter would land in a lake
    window closed beyond the allowed lateness, and Beam drops it without a trace. The sink
    stamps the element with the time of the failure; that time places it instead."""
    if letter.reason == DeadLetterReason.SINK_FAILED.value:
        return max(letter.seen_at_us, element_time_us)
    return letter.seen_at_us


class WriteToLakeStreaming(beam.PTransform):
    """Records -> windowed Parquet files under ``root``; yields the paths written.

    stem_of: record -> its file's lake path without the window and pane (pipeline.lake's stems).
    event_time_of: (record, the element's timestamp in epoch us) -> epoch us to window it by;
    None keeps the element's timestamp.
    allowed_lateness_seconds: keep windows open this long for late records (match the bars').
    """

    def __init__(self, root: str, record_type: type[NamedTuple], stem_of: Callable,
                 sort_by: tuple[str, ...], *, window_seconds: int = DEFAULT_WINDOW_SECONDS,
                 allowed_lateness_seconds: int = 0, event_time_of: Callable | None = None):
        super().__init__()
        if window_seconds < 1:
            raise ValueError(f"lake window must be at least 1 s, got {window_seconds}")
        self._stem_of = stem_of
        self._event_time_of = event_time_of
        self._window_seconds = window_seconds
        self._lateness = allowed_lateness_seconds
        self._write = _WriteWindowPaneDoFn(root, record_type, sort_by)

    def expand(self, records):
        if self._event_time_of is not None:
            records = records | "StampForLake" >> beam.Map(_stamp_for_lake, self._event_time_of)
        return (
            records
            | "LakeWindows" >> beam.WindowInto(
                window.FixedWindows(self._window_seconds),
                trigger=trigger.AfterWatermark(late=trigger.AfterCount(1)),
                accumulation_mode=trigger.AccumulationMode.DISCARDING,
                allowed_lateness=Duration(seconds=self._lateness))
            | "KeyByPartition" >> beam.Map(lambda r, stem=self._stem_of: (stem(r), r))
            | "GroupByPartition" >> beam.GroupByKey()
            | "WriteWindowPane" >> beam.ParDo(self._write)
        )


def _is_settled(bar: Bar) -> bool:
    return bar.timing != PaneTiming.EARLY.value


class WriteBarsToLakeStreaming(beam.PTransform):
    """Streaming: ON_TIME and LATE Bars -> bars/interval=I/date=D/bars-<symbol>-<window>-pane<N>.parquet."""

    def __init__(self, root: str, *, allowed_lateness_seconds: int, window_seconds: int = DEFAULT_WINDOW_SECONDS):
        super().__init__()
        self._write = WriteToLakeStreaming(
            root, Bar, bar_stem, ("bucket_start_us", "pane_index"),
            window_seconds=window_seconds, allowed_lateness_seconds=allowed_lateness_seconds)

    def expand(self, bars):
        return bars | "SettledBars" >> beam.Filter(_is_settled) | "Write" >> self._write


def _not_sink_failed(letter: DeadLetter) -> bool:
    return letter.reason != DeadLetterReason.SINK_FAILED.value


class WriteDeadLettersToLakeStreaming(beam.PTransform):
    """Streaming: DeadLetters -> dead_letters/date=D/dead_letters-<input>-<window>-pane<N>.parquet,
    windowed by ``seen_at_us``.

    sinks_spool: the database sinks write their ``sink_failed`` letters to the lake themselves
    (``pipeline.dead_letter_spool``), so they are left out here rather than written twice."""

    def __init__(self, root: str, *, window_seconds: int = DEFAULT_WINDOW_SECONDS,
                 allowed_lateness_seconds: int = 0, sinks_spool: bool = False):
        super().__init__()
        self._sinks_spool = sinks_spool
        self._write = WriteToLakeStreaming(
            root, DeadLetter, dead_letter_stem, DEAD_LETTER_SORT_BY,
            window_seconds=window_seconds, allowed_lateness_seconds=allowed_lateness_seconds,
            event_time_of=dead_letter_lake_time)

    def expand(self, dead_letters):
        if self._sinks_spool:
            dead_letters = dead_letters | "LeaveOutSpooled" >> beam.Filter(_not_sink_failed)
        return dead_letters | "Write" >> self._write
