"""Dead letters the database could not take, replayed from the lake into ``dead_letters``.

While PostgreSQL is down the streaming sinks give up on rows after their retries and turn them
into ``sink_failed`` dead letters, which each sink writes to the lake itself
(``pipeline.dead_letter_spool``); the ``dead_letters`` table is down too, so those (and every
other dead letter of the outage) reach only the lake. The lake is the spool: durable locally and
on gs://, and already written by every runner. This replays its dead-letter files (windowed and
spooled alike) into the table once the database is back:

* every dead letter in a file is inserted as it is;
* a ``sink_failed`` letter of the ``dead_letters`` table itself wraps the letter it failed to
  store (as JSON in ``raw``): that inner letter is inserted too, so the table ends holding what
  it would have held without the outage.

Inserts are idempotent (the table's identity index; ``ON CONFLICT DO NOTHING``), so a file read
twice, or letters already stored, change nothing. Bars that failed are not replayed from here:
the finaliser recomputes them from the tick archive (``pipeline.finalizer``).
"""
from __future__ import annotations

import datetime as dt
import json
import logging
from dataclasses import dataclass
from typing import Iterable, Iterator

import pyarrow as pa
import pyarrow.parquet as pq
from apache_beam.io.filesystems import FileSystems

from alphastream.records import DEAD_LETTER_FIELDS, DeadLetter, DeadLetterReason, storage_name
from pipeline.lake import TIMESTAMP_TYPE

log = logging.getLogger(__name__)

DEAD_LETTER_TABLE_ORIGIN = "postgres:dead_letters"  # pipeline.postgres_sink.sink_dead_letter's origin for the table
# Files a little older than the last replay are read again: a file's modification time is
# when its write finished, which can be later than the pass that first listed its folder.
MTIME_MARGIN_SECONDS = 30


def unwrapped(letter: DeadLetter) -> DeadLetter | None:
    """The letter a ``sink_failed`` dead letter of the dead-letter table carries, or None."""
    if letter.reason != DeadLetterReason.SINK_FAILED.value or letter.origin != DEAD_LETTER_TABLE_ORIGIN:
        return None
    try:
        inner = json.loads(letter.raw)
        return DeadLetter(**{name: inner[name] for name in DEAD_LETTER_FIELDS})
    except (ValueError, TypeError, KeyError):
        log.warning("dead-letter replay: a sink_failed letter's raw is not a dead letter; kept as it is: %.200s",
                    letter.raw)
        return None


def letters_in_table(table: pa.Table) -> Iterator[DeadLetter]:
    """The DeadLetters of one lake file (its time column back to epoch microseconds)."""
    columns = []
    for name in DEAD_LETTER_FIELDS:
        column = table.column(storage_name(name))
        if pa.types.is_timestamp(column.type):
            column = column.cast(TIMESTAMP_TYPE).cast(pa.int64())
        columns.append(column.to_pylist())
    for values in zip(*columns, strict=True):  # columns of one table: equal lengths
        yield DeadLetter(*values)


def with_unwrapped(letters: Iterable[DeadLetter]) -> list[DeadLetter]:
    out = []
    for letter in letters:
        out.append(letter)
        inner = unwrapped(letter)
        if inner is not None:
            out.append(inner)
    return out


def _dates(since_seconds: float, until_seconds: float) -> list[str]:
    first = dt.datetime.fromtimestamp(since_seconds, dt.timezone.utc).date()
    last = dt.datetime.fromtimestamp(until_seconds, dt.timezone.utc).date()
    return [str(first + dt.timedelta(days=n)) for n in range((last - first).days + 1)]


@dataclass
class ReplayResult:
    files: int
    letters: int
    failed: int


LakeFile = tuple[str, float]  # (path, modification time in epoch seconds)


def recent_lake_files(lake: str, since_seconds: float, until_seconds: float) -> list[LakeFile]:
    """Dead-letter files under ``lake`` changed since ``since_seconds`` (epoch seconds).

    A sink_failed letter is dated by its record's event time, which can be a day before the
    write (a late bar around midnight), so the day before ``since`` is listed too."""
    files = []
    for date in _dates(since_seconds - 86_400, until_seconds):
        pattern = FileSystems.join(lake.rstrip("/"), "dead_letters", f"date={date}", "*.parquet")
        for match in FileSystems.match([pattern])[0].metadata_list:
            if match.last_updated_in_seconds >= since_seconds - MTIME_MARGIN_SECONDS:
                files.append((match.path, match.last_updated_in_seconds))
    return sorted(files)


def replay_dead_letters(lake: str, db_url: str, since_seconds: float, until_seconds: float,
                        done: frozenset[LakeFile] = frozenset()) -> tuple[ReplayResult, list[LakeFile]]:
    """Insert the dead letters of the lake files changed since ``since_seconds`` (but those in
    ``done``, already replayed unchanged); returns the result and the files it read. Raises
    psycopg errors when the database is unreachable (the caller keeps its mark and retries)."""
    from pipeline.postgres_sink import storable_in_postgres
    from store.writer import DEAD_LETTERS, CopyMergeWriter, RetryPolicy

    files = [f for f in recent_lake_files(lake, since_seconds, until_seconds) if f not in done]
    letters: list[DeadLetter] = []
    for path, _ in files:
        with FileSystems.open(path) as handle:
            letters.extend(letters_in_table(pq.read_table(handle)))
    letters = [storable_in_postgres(letter) for letter in with_unwrapped(letters)]
    if not letters:
        return ReplayResult(len(files), 0, 0), files
    writer = CopyMergeWriter(db_url, DEAD_LETTERS, RetryPolicy(attempts=1))
    try:
        writer.connect()  # an unreachable database raises here, not as failed rows
        failed = writer.write(letters)
    finally:
        writer.close()
    for failure in failed[:5]:
        log.error("dead-letter replay: not stored: %s", failure.reason)
    return ReplayResult(len(files), len(letters), len(failed)), files
