"""COPY-then-merge writes of records into PostgreSQL, with retries and bisection.

A batch of records is written in one transaction: binary ``COPY`` into a per-connection
temporary staging table, then one merge statement into the real table. COPY is the fastest way
in; the merge makes the write idempotent (a replay changes nothing) and, for bars, lets only a
higher (or equal, changed) ``revision`` update a row (``store.revisions``: pane order
within a run, later runs over earlier ones, final bars over every pane), so early, on-time and
late panes end as the final values whatever order they arrive in. Ticks and dead letters never change once
stored: their merge is ``INSERT ... ON CONFLICT DO NOTHING``. Bars use an update + anti-join
insert (see ``TableSpec._upsert_sql`` for why not ON CONFLICT DO UPDATE). While bar batches
are all new keys (batch runs, new windows) the writer skips the staging table and COPYs
straight into ``bars``: a stored or repeated key makes that COPY fail whole, and the batch
goes the merge way instead, so the outcome is the same and new data costs a plain COPY.

Failures: a lost connection (or a deadlock, or a server restart) is retried on a new
connection with exponential backoff; the transaction makes the retry all-or-nothing, so rows
are never lost or doubled. A row the server refuses (bad value, check constraint) is found by
bisecting the batch, so one bad row does not sink its neighbours. Whatever still fails is
returned with the reason, for the caller to dead-letter. Once a batch has failed every attempt
on a lost server, later batches fail at once, with one probe per ``RetryPolicy.probe_seconds``,
until a write succeeds (a circuit breaker: a streaming bundle must not sit in backoff while the
rest of the pipeline, the lake included, waits behind it).
"""
from __future__ import annotations

import datetime as dt
import logging
import random
import struct
import threading
import time
import typing
from dataclasses import dataclass, field
from operator import itemgetter
from typing import Any, NamedTuple, Sequence

import psycopg
from psycopg.adapt import Dumper
from psycopg.pq import Format

from alphastream.records import MICROS_PER_SECOND, TIME_SUFFIX, Anomaly, DeadLetter, Tick, storage_name
from alphastream.settings import mask_dsn
from store import versions
from store.migrate import scalar
from store.revisions import StoredBar

log = logging.getLogger(__name__)

CONNECT_TIMEOUT_SECONDS = 10
# The staging table lives in session-local buffers; the default 8MB spills a large batch to
# disk. Must be set before the session first touches a temporary table.
TEMP_BUFFERS = "128MB"
# The merge sorts the staged batch by key; with the default 4MB work_mem a large batch sorts on disk.
WORK_MEM = "128MB"
# A batch spanning more months than this (a backfill, or a stray timestamp) goes to the
# partitions that exist plus the DEFAULT one instead of creating every month in between.
MAX_PARTITION_MONTHS_PER_BATCH = 24
ANALYZE_MIN_ROWS = 5_000  # below this the default estimate is close enough and ANALYZE costs more
_PG_TYPES = {str: "text", int: "bigint", float: "double precision"}
_COPY_TYPES = {str: "text", int: "int8", float: "float8"}
_EPOCH = dt.datetime(1970, 1, 1, tzinfo=dt.timezone.utc)
# PostgreSQL's binary timestamptz counts microseconds from 2000-01-01 UTC.
_PG_EPOCH_OFFSET_US = (int((dt.datetime(2000, 1, 1, tzinfo=dt.timezone.utc) - _EPOCH).total_seconds())
                       * MICROS_PER_SECOND)
_INT8 = struct.Struct(">q")
TIMESTAMPTZ_OID = 1184


class EpochMicrosTimestamptzDumper(Dumper):
    """Binary timestamptz straight from epoch microseconds (an int): no datetime per row.

    Registered by oid only (``register_dumper(None, ...)``) on the cursor that COPYs, so it is
    used for the timestamptz columns named in ``Copy.set_types`` and nowhere else.
    """

    format = Format.BINARY
    oid = TIMESTAMPTZ_OID

    def dump(self, obj: int) -> bytes:
        return _INT8.pack(obj - _PG_EPOCH_OFFSET_US)

Row = Sequence[Any]  # a record (NamedTuple) or a plain tuple in the record's field order


def fields_of(record_type: type[NamedTuple], *names: str) -> tuple[str, ...]:
    """``names``, checked against the record: a renamed field fails here, at import."""
    missing = [n for n in names if n not in record_type._fields]
    if missing:
        raise AttributeError(f"{record_type.__name__} has no field(s) {missing}")
    return names


@dataclass(frozen=True)
class TableSpec:
    """How one record type lands in one table; all SQL is derived from the record's fields.

    ``key``: the conflict target (None: ON CONFLICT DO NOTHING on any unique key).
    ``version``: a field that must not go backwards (bars: revision); None: rows never change.
    ``pane``: the field that says a row is a later firing, likely to update a stored row (bars:
    pane_index); None: rows are expected to be new.
    ``time_field``: the field used as the dead letter's event time and, for partitioned tables,
    to create the months a batch needs before writing it.
    ``series``: the (symbol, interval) fields whose per-day versions every write bumps
    (``store.versions``; bars only); None: no versions.
    """

    table: str
    record_type: type[NamedTuple]
    time_field: str
    partitioned: bool
    key: tuple[str, ...] | None = None
    version: str | None = None
    pane: str | None = None
    series: tuple[str, str] | None = None

    @property
    def fields(self) -> tuple[str, ...]:
        return self.record_type._fields

    @property
    def stage(self) -> str:
        return f"stage_{self.table}"

    def _hint(self, field: str) -> type:
        hint: type = typing.get_type_hints(self.record_type)[field]
        return hint

    def column_definitions(self) -> str:
        """The record's fields as SQL columns, time fields as epoch-microsecond bigints."""
        return ", ".join(f"{f} {_PG_TYPES[self._hint(f)]}" for f in self.fields)

    def create_stage_sql(self) -> str:
        # Time fields stay epoch-microsecond bigints in the stage: converting them in SQL is
        # exact and costs no Python work per row.
        return (f"CREATE TEMPORARY TABLE IF NOT EXISTS {self.stage} ({self.column_definitions()}) "
                "ON COMMIT DELETE ROWS")

    def copy_sql(self) -> str:
        return f"COPY {self.stage} ({', '.join(self.fields)}) FROM STDIN (FORMAT BINARY)"

    def direct_copy_sql(self) -> str:
        """COPY straight into the table (the fast path for batches of new keys)."""
        return f"COPY {self.table} ({', '.join(storage_name(f) for f in self.fields)}) FROM STDIN (FORMAT BINARY)"

    def copy_types(self) -> list[str]:
        return [_COPY_TYPES[self._hint(f)] for f in self.fields]

    @staticmethod
    def _value(field: str) -> str:
        if field.endswith(TIME_SUFFIX):
            return f"timestamptz 'epoch' + {field} * interval '1 microsecond'"
        return field

    def merge_sql(self) -> str:
        target = ", ".join(storage_name(f) for f in self.fields)
        if self.key is None:
            values = ", ".join(self._value(f) for f in self.fields)
            return f"INSERT INTO {self.table} ({target}) SELECT {values} FROM {self.stage} ON CONFLICT DO NOTHING"
        return self._upsert_sql(target, self.key)

    def _upsert_sql(self, target: str, key_fields: tuple[str, ...]) -> str:
        """Update the stored rows this batch supersedes, insert the keys not stored yet.

        Not ``INSERT ... ON CONFLICT DO UPDATE``: its speculative insertion costs every new row
        an extra index probe and WAL record, and new rows are most rows.
        A writer that commits the same new key between our snapshot and our insert makes this
        statement fail with a unique violation; the writer retries the batch, which then
        takes the update path. Both paths apply the same rule, so the outcome is the same.
        """
        key = [storage_name(f) for f in key_fields]
        rest = [storage_name(f) for f in self.fields if f not in key_fields]
        staged = ", ".join(f"{self._value(f)} AS {storage_name(f)}" for f in self.fields)
        # One row per key, the highest version; key order also makes concurrent writers take
        # row locks in the same order (no deadlocks between them).
        order = ", ".join(key_fields) + (f", {self.version} DESC" if self.version else "")
        match = " AND ".join(f"t.{c} = s.{c}" for c in key)
        changed = f"({', '.join(f't.{c}' for c in rest)}) IS DISTINCT FROM ({', '.join(f's.{c}' for c in rest)})"
        if self.version:
            v = storage_name(self.version)
            # A lower pane never wins; an equal one only if something changed (a re-run over
            # corrected input), so an exact replay leaves even updated_at untouched.
            newer = f"s.{v} > t.{v} OR (s.{v} = t.{v} AND {changed})"
        else:
            newer = changed
        return (
            f"WITH staged AS MATERIALIZED (SELECT DISTINCT ON ({', '.join(key_fields)}) {staged} "
            f"FROM {self.stage} ORDER BY {order}), "
            f"updated AS (UPDATE {self.table} AS t SET {', '.join(f'{c} = s.{c}' for c in rest)}, "
            f"updated_at = now() FROM staged AS s WHERE {match} AND ({newer})) "
            f"INSERT INTO {self.table} ({target}) SELECT {target} FROM staged AS s "
            f"WHERE NOT EXISTS (SELECT 1 FROM {self.table} AS t WHERE {match})"
        )


BARS = TableSpec("bars", StoredBar, time_field=fields_of(StoredBar, "bucket_start_us")[0], partitioned=True,
                 key=fields_of(StoredBar, "symbol", "interval", "bucket_start_us"),
                 version=fields_of(StoredBar, "revision")[0], pane=fields_of(StoredBar, "pane_index")[0],
                 series=(fields_of(StoredBar, "symbol")[0], fields_of(StoredBar, "interval")[0]))
TICKS = TableSpec("ticks", Tick, time_field=fields_of(Tick, "ts_us")[0], partitioned=True)
DEAD_LETTERS = TableSpec("dead_letters", DeadLetter, time_field=fields_of(DeadLetter, "seen_at_us")[0],
                         partitioned=False)
# A re-run that scores a detection differently (new thresholds, corrected bars) updates it.
ANOMALIES = TableSpec("anomalies", Anomaly, time_field=fields_of(Anomaly, "bucket_start_us")[0], partitioned=False,
                      key=fields_of(Anomaly, "symbol", "interval", "bucket_start_us", "kind"))


@dataclass(frozen=True)
class RetryPolicy:
    """Attempts per batch on connection loss, with exponential backoff and jitter."""

    attempts: int = 5
    first_backoff_seconds: float = 0.2
    max_backoff_seconds: float = 10.0
    probe_seconds: float = 2.0  # while the server is down: at most one attempt this often

    def backoff(self, attempt: int) -> float:
        delay = min(self.max_backoff_seconds, self.first_backoff_seconds * 2.0 ** attempt)
        return delay * random.uniform(0.5, 1.0)  # jitter: workers that lost the server together do not return together


@dataclass(frozen=True)
class FailedRow:
    row: Row
    reason: str


# The connection is gone, the server rolled the transaction back (deadlock, serialization,
# shutdown) or a concurrent writer inserted one of our new keys first: a new attempt can succeed.
_TRANSIENT = (psycopg.OperationalError, psycopg.InterfaceError, psycopg.errors.UniqueViolation)
# The server (or psycopg while encoding) refused particular rows: retrying the same rows fails
# again, so bisect to find them.
_ROW_ERRORS = (psycopg.DataError, psycopg.IntegrityError, TypeError, ValueError, OverflowError)


@dataclass
class _ServerState:
    """Circuit breaker, one per DSN and process: after a batch failed every attempt on a lost
    server, the next batches fail at once (one probe per ``RetryPolicy.probe_seconds``) instead
    of each spending the whole backoff: a streaming bundle sitting in retries holds back every
    step behind it, the lake included. Shared by the process's writers because runners make a
    new DoFn (and writer) per bundle or thread. Their rows become dead letters; the finaliser
    repairs the bars from the tick archive."""

    lock: threading.Lock = field(default_factory=threading.Lock)
    down_since: float | None = None
    reason: str = ""
    last_probe: float = 0.0

    def down(self, reason: str) -> None:
        with self.lock:
            if self.down_since is None:
                self.down_since, self.reason = time.monotonic(), reason
            self.last_probe = time.monotonic()

    def up(self, table: str, dsn: str) -> None:
        with self.lock:
            if self.down_since is not None:
                log.info("%s: %s reachable again after %.0f s", table, mask_dsn(dsn),
                         time.monotonic() - self.down_since)
                self.down_since = None


_SERVERS: dict[str, _ServerState] = {}
_SERVERS_LOCK = threading.Lock()


def _server_state(dsn: str) -> _ServerState:
    with _SERVERS_LOCK:
        return _SERVERS.setdefault(dsn, _ServerState())


def _month_starts(first_us: int, last_us: int) -> list[tuple[int, int]]:
    first = _EPOCH + dt.timedelta(microseconds=first_us)
    last = _EPOCH + dt.timedelta(microseconds=last_us)
    months, (year, month) = [], (first.year, first.month)
    while (year, month) <= (last.year, last.month):
        months.append((year, month))
        year, month = (year + 1, 1) if month == 12 else (year, month + 1)
    return months


def _server_address(dsn: str) -> str:
    """host:port of a DSN, for messages that end up in stored dead letters (never the password)."""
    try:
        parts = psycopg.conninfo.conninfo_to_dict(dsn)
    except psycopg.ProgrammingError:
        return "the configured server"
    return f"{parts.get('host', 'localhost')}:{parts.get('port', 5432)}"


class CopyMergeWriter:
    """Writes batches of one record type through one connection (reconnecting when lost)."""

    def __init__(self, dsn: str, spec: TableSpec, retry: RetryPolicy = RetryPolicy()):
        self._dsn = dsn
        self._spec = spec
        self._retry = retry
        self._conn: psycopg.Connection[Any] | None = None
        self._time_index = spec.fields.index(spec.time_field)
        self._pane_index = spec.fields.index(spec.pane) if spec.pane else None
        self._series_indexes = ((spec.fields.index(spec.series[0]), spec.fields.index(spec.series[1]),
                                 self._time_index) if spec.series else None)
        self._months_ready: set[tuple[int, int]] = set()
        self._copy_sql, self._copy_types, self._merge_sql = spec.copy_sql(), spec.copy_types(), spec.merge_sql()
        self._direct_types: list[int] = []  # the table's column type oids, read on connect
        # Try the direct COPY while batches are all new keys (batch runs, new windows); after a
        # batch that updated or repeated keys (streaming panes, replays), merge until one is new.
        self._try_direct = spec.key is not None
        self._server = _server_state(dsn)

    def connect(self) -> None:
        if self._conn is not None and not self._conn.closed:
            return
        conn = psycopg.connect(self._dsn, autocommit=True, connect_timeout=CONNECT_TIMEOUT_SECONDS,
                               application_name=f"alphastream-sink-{self._spec.table}")
        conn.execute(f"SET temp_buffers = '{TEMP_BUFFERS}'")
        conn.execute(f"SET work_mem = '{WORK_MEM}'")
        conn.execute(self._spec.create_stage_sql())
        if self._spec.key is not None:
            self._direct_types = [scalar(
                conn, "SELECT atttypid::int FROM pg_attribute WHERE attrelid = %s::regclass AND attname = %s",
                (self._spec.table, storage_name(f))) for f in self._spec.fields]
        self._conn = conn

    def close(self) -> None:
        if self._conn is not None:
            self._conn.close()
            self._conn = None

    @property
    def _connection(self) -> psycopg.Connection[Any]:
        """The open connection (``connect()`` ran first in this attempt)."""
        if self._conn is None:
            raise psycopg.InterfaceError(f"{self._spec.table}: the writer is not connected")
        return self._conn

    def write(self, rows: Sequence[Row]) -> list[FailedRow]:
        """Write ``rows``; returns those that could not be written, each with the reason."""
        if not rows:
            return []
        server = self._server
        with server.lock:
            down_since = server.down_since
            down = down_since is not None
            skip = down and time.monotonic() - server.last_probe < self._retry.probe_seconds
            if down and not skip:
                server.last_probe = time.monotonic()
        if skip and down_since is not None:
            reason = (f"{self._spec.table} not written: PostgreSQL at {_server_address(self._dsn)} unreachable for "
                      f"{time.monotonic() - down_since:.0f} s ({server.reason})")
            log.error("%s: %s rows dead-lettered: %s", self._spec.table, len(rows), reason)
            return [FailedRow(row, reason) for row in rows]
        # While the server is known to be down, one probe per probe_seconds, without backoff.
        attempts = 1 if down else self._retry.attempts
        last_error: Exception | None = None
        for attempt in range(attempts):
            if attempt:
                time.sleep(self._retry.backoff(attempt - 1))
            try:
                self.connect()
                span = self._time_span(rows)
                self._ensure_partitions(span)
                self._write_once(rows, span)
                server.up(self._spec.table, self._dsn)
                return []
            except _TRANSIENT as err:
                last_error = err
                log.warning("%s: %s rows not written (attempt %d of %d), reconnecting to %s: %s",
                            self._spec.table, len(rows), attempt + 1, attempts,
                            mask_dsn(self._dsn), str(err).strip())
                self.close()
            except _ROW_ERRORS as err:
                if len(rows) == 1:
                    return [FailedRow(rows[0], f"{self._spec.table} refused the row: {str(err).strip()}")]
                middle = len(rows) // 2
                return self.write(rows[:middle]) + self.write(rows[middle:])
            except psycopg.Error as err:  # the statement itself fails (missing table, privileges)
                reason = f"{self._spec.table} write failed: {str(err).strip()}"
                log.error("%s: %s rows dead-lettered: %s", self._spec.table, len(rows), reason)
                return [FailedRow(row, reason) for row in rows]
        reason = (f"{self._spec.table} write failed after {attempts} attempts: "
                  f"{str(last_error).strip()}")
        if isinstance(last_error, (psycopg.OperationalError, psycopg.InterfaceError)):
            server.down(str(last_error).strip().splitlines()[0])
        log.error("%s: %s rows dead-lettered: %s", self._spec.table, len(rows), reason)
        return [FailedRow(row, reason) for row in rows]

    def _time_span(self, rows: Sequence[Row]) -> tuple[int, int] | None:
        """(first, last) event time of the batch, epoch microseconds; None for a table that
        needs neither partitions nor bar versions (dead letters)."""
        if not (self._spec.partitioned or self._series_indexes):
            return None
        time_of = itemgetter(self._time_index)  # C-level passes, no Python work per row
        return min(map(time_of, rows)), max(map(time_of, rows))

    def _ensure_partitions(self, span: tuple[int, int] | None) -> None:
        """Create the monthly partitions this batch needs (once per month per writer)."""
        if not self._spec.partitioned or span is None:
            return
        first_us, last_us = span
        months = _month_starts(first_us, last_us)
        if set(months) <= self._months_ready:
            return
        if len(months) > MAX_PARTITION_MONTHS_PER_BATCH:
            # One stray timestamp must not create years of empty partitions: the DEFAULT
            # partition takes these rows, and `migrate` keeps the months around now ready.
            log.warning("%s: batch spans %d months (%s .. %s); not creating partitions for it",
                        self._spec.table, len(months), months[0], months[-1])
            return
        self._connection.execute(
            "SELECT alphastream_ensure_partitions(%s::regclass, timestamptz 'epoch' + %s * interval '1 microsecond', "
            "timestamptz 'epoch' + %s * interval '1 microsecond')",
            (self._spec.table, first_us, last_us + 1))
        self._months_ready.update(months)

    def _write_once(self, rows: Sequence[Row], span: tuple[int, int] | None) -> None:
        if self._try_direct and not self._has_later_panes(rows):
            try:
                self._copy_direct(rows, span)
                return
            except psycopg.errors.UniqueViolation:
                # Some keys are stored already (an update, a replay) or repeat in the batch
                # (several panes of a bar): the direct COPY rolled back; merge instead.
                self._try_direct = False
        inserted = self._copy_and_merge(rows, span)
        self._try_direct = self._spec.key is not None and inserted == len(rows)

    def _has_later_panes(self, rows: Sequence[Row]) -> bool:
        """A batch led by a later pane updates stored bars: the direct COPY would fail. Only
        the first row is looked at (a scan would cost every batch); a batch of first panes
        with a few later ones costs one failed COPY, then the merge path takes over."""
        return self._pane_index is not None and rows[0][self._pane_index] > 0

    def _copy_direct(self, rows: Sequence[Row], span: tuple[int, int] | None) -> None:
        """Binary COPY straight into the table: right when every key is new, and as fast as
        writing can be. Any stored or repeated key makes it fail whole (unique violation)."""
        conn = self._connection
        with conn.transaction(), conn.cursor() as cur:
            cur.adapters.register_dumper(None, EpochMicrosTimestamptzDumper)
            with cur.copy(self._spec.direct_copy_sql()) as copy:
                copy.set_types(self._direct_types)
                for row in rows:
                    copy.write_row(row)
            self._bump_versions(cur, rows, span)

    def _copy_and_merge(self, rows: Sequence[Row], span: tuple[int, int] | None) -> int:
        """COPY into the staging table, then merge; returns the number of rows inserted."""
        conn = self._connection
        with conn.transaction():
            with conn.cursor() as cur:
                with cur.copy(self._copy_sql) as copy:
                    copy.set_types(self._copy_types)
                    for row in rows:
                        copy.write_row(row)
                if len(rows) >= ANALYZE_MIN_ROWS:
                    # Without statistics the planner guesses the batch size; with them it picks
                    # key probes for small batches and a merge join for large ones.
                    cur.execute(f"ANALYZE {self._spec.stage}")
                cur.execute(self._merge_sql)
                inserted = cur.rowcount
                self._bump_versions(cur, rows, span)
                return inserted

    def _bump_versions(self, cur: psycopg.Cursor[Any], rows: Sequence[Row], span: tuple[int, int] | None) -> None:
        """Last in the write's transaction: readers caching these days see the change and the
        bump together (``store.versions``). Bumped even when the merge changed nothing
        (a replay): that costs readers one cache miss, and knowing would cost a second query."""
        if self._series_indexes is not None and span is not None:
            symbol, interval, time_index = self._series_indexes
            cur.execute(versions.BUMP_SQL, versions.touched_days(rows, symbol, interval, time_index, span))
