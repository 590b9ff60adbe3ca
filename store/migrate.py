"""Versioned SQL migrations: apply ``migrations/NNNN_name[.variant].sql`` in order, once each.

Two schema variants share the version numbers: ``timescale`` (hypertables, compression,
retention, continuous aggregates) when the timescaledb extension can be created, ``plain``
(declarative partitioning, date_bin views) otherwise, e.g. on Cloud SQL. A database keeps the
variant it was first migrated with (recorded in ``schema_migrations.variant``). A file without
a variant suffix applies to both.

Each migration runs in its own transaction together with its ``schema_migrations`` row, so a
failed migration leaves nothing half-applied; a file whose first line is
``-- migrate: no-transaction`` runs statement by statement instead (TimescaleDB continuous
aggregates refuse transaction blocks). A session advisory lock serialises concurrent runners:
the second waits, then finds nothing left to do.
"""
from __future__ import annotations

import logging
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Sequence

import psycopg
from psycopg.conninfo import conninfo_to_dict

from alphastream.errors import UserFacingError
from alphastream.settings import mask_dsn

log = logging.getLogger(__name__)

MIGRATIONS_DIR = Path(__file__).with_name("migrations")
PLAIN, TIMESCALE = "plain", "timescale"
VARIANTS = (PLAIN, TIMESCALE)
# Any constant works as long as nothing else in the database uses it: "alphamig" in ASCII.
MIGRATION_LOCK_KEY = 0x616C7068616D6967
NO_TRANSACTION_MARKER = "-- migrate: no-transaction"
_FILE_NAME = re.compile(r"^(?P<version>\d{4})_(?P<name>[a-z0-9_]+?)(?:\.(?P<variant>plain|timescale))?\.sql$")
# Statement ends in a no-transaction file: a ";" at the end of a line.
_STATEMENT_END = re.compile(r";[ \t]*$", re.MULTILINE)
# Partitions (plain variant) kept ready around "now" on every run: one month back, three ahead.
PARTITIONS_BEHIND = "1 month"
PARTITIONS_AHEAD = "3 months"
PARTITIONED_TABLES = ("bars", "ticks")

_CREATE_SCHEMA_MIGRATIONS = """
CREATE TABLE IF NOT EXISTS schema_migrations (
    version    text PRIMARY KEY,
    name       text NOT NULL,
    applied_at timestamptz NOT NULL DEFAULT now(),
    variant    text NOT NULL
)"""


# libpq waits for the OS's TCP timeout (minutes) on a host that drops packets; a run says so sooner.
CONNECT_TIMEOUT_SECONDS = 10
UNREACHABLE_HINT = ("Check that the server runs and the DSN (--db_url / ALPHASTREAM_DB_URL) is right; "
                    "or leave --db_url unset to use the embedded local database (python -m store start), "
                    "or pass --no_db to write the Parquet lake only")


class DatabaseUnreachable(UserFacingError):
    """The DSN is malformed or its server does not answer; the message names host and port."""


def connect(dsn: str) -> psycopg.Connection:
    """An autocommit connection to ``dsn``, or DatabaseUnreachable saying where and what to try."""
    try:
        params = conninfo_to_dict(dsn)
    except psycopg.ProgrammingError as err:
        raise DatabaseUnreachable(f"{mask_dsn(dsn)} is not a PostgreSQL DSN ({str(err).strip()}): expected "
                                  "postgresql://user:password@host:5432/dbname") from None
    timeout: dict[str, Any] = {} if "connect_timeout" in params else {"connect_timeout": CONNECT_TIMEOUT_SECONDS}
    try:
        return psycopg.connect(dsn, autocommit=True, **timeout)
    except psycopg.OperationalError as err:
        where = f"{params.get('host', 'the local socket')}:{params.get('port', 5432)}"
        reason = "; ".join(line.strip() for line in str(err).splitlines() if line.strip())  # libpq's spans lines
        raise DatabaseUnreachable(f"cannot connect to PostgreSQL at {where} (database {params.get('dbname', '?')}, "
                                  f"user {params.get('user', '?')}): {reason} -- {UNREACHABLE_HINT}") from None


class MigrationError(RuntimeError):
    """A migration file could not be applied (the message names the file and the cause)."""


@dataclass(frozen=True)
class Migration:
    version: str
    name: str
    path: Path

    @property
    def sql(self) -> str:
        return self.path.read_text(encoding="utf-8")

    @property
    def transactional(self) -> bool:
        return not self.sql.lstrip().startswith(NO_TRANSACTION_MARKER)


def scalar(conn: psycopg.Connection[Any], query: str, params: Sequence[Any] = ()) -> Any:
    """The one value of a query that returns one row of one column (``SELECT f(...)``)."""
    row = conn.execute(query, params).fetchone()
    if row is None:
        raise psycopg.ProgrammingError(f"expected one row from {query!r}, got none")
    return row[0]


def available_migrations(variant: str, directory: Path = MIGRATIONS_DIR) -> list[Migration]:
    """The migrations of ``variant`` in version order (a variant file wins over a shared one)."""
    if variant not in VARIANTS:
        raise ValueError(f"unknown schema variant {variant!r}: expected one of {VARIANTS}")
    chosen: dict[str, Migration] = {}
    for path in sorted(directory.glob("*.sql")):
        match = _FILE_NAME.match(path.name)
        if not match:
            raise MigrationError(f"{path}: migration files are named NNNN_name[.plain|.timescale].sql")
        if match["variant"] not in (None, variant):
            continue
        version = match["version"]
        if version in chosen and match["variant"] is None:
            continue  # the variant-specific file for this version was already chosen
        chosen[version] = Migration(version, match["name"], path)
    return [chosen[v] for v in sorted(chosen)]


def detect_variant(conn: psycopg.Connection) -> str:
    """``timescale`` if the extension is installed, or available and preloaded; else ``plain``."""
    row = conn.execute(
        """SELECT installed_version IS NOT NULL
                  OR 'timescaledb' = ANY(string_to_array(
                      replace(current_setting('shared_preload_libraries'), ' ', ''), ','))
           FROM pg_available_extensions WHERE name = 'timescaledb'"""
    ).fetchone()
    return TIMESCALE if row and row[0] else PLAIN


def _applied(conn: psycopg.Connection) -> dict[str, str]:
    """version -> variant of the applied migrations ({} when the table does not exist yet)."""
    if scalar(conn, "SELECT to_regclass('schema_migrations')") is None:
        return {}
    return dict(conn.execute("SELECT version, variant FROM schema_migrations").fetchall())


def _database_variant(conn: psycopg.Connection, applied: dict[str, str]) -> str:
    return next(iter(applied.values())) if applied else detect_variant(conn)


def _pending(conn: psycopg.Connection) -> list[Migration]:
    applied = _applied(conn)
    return [m for m in available_migrations(_database_variant(conn, applied)) if m.version not in applied]


def pending(dsn: str) -> list[str]:
    """Versions not applied yet ([] when the schema is current)."""
    with connect(dsn) as conn:
        return [m.version for m in _pending(conn)]


def current_version(dsn: str) -> str | None:
    """The highest applied version, or None for an empty database."""
    with connect(dsn) as conn:
        applied = _applied(conn)
        return max(applied) if applied else None


def _split_statements(sql: str) -> list[str]:
    statements = (s.strip() for s in _STATEMENT_END.split(sql))
    # Drop pieces that are only comments (e.g. the header of the file).
    return [s for s in statements if any(line.strip() and not line.strip().startswith("--") for line in s.splitlines())]


def _apply(conn: psycopg.Connection, migration: Migration, variant: str) -> None:
    record = "INSERT INTO schema_migrations (version, name, variant) VALUES (%s, %s, %s)"
    try:
        if migration.transactional:
            with conn.transaction():
                conn.execute(migration.sql)  # no parameters: psycopg sends the whole file at once
                conn.execute(record, (migration.version, migration.name, variant))
        else:
            for statement in _split_statements(migration.sql):
                conn.execute(statement)
            conn.execute(record, (migration.version, migration.name, variant))
    except psycopg.Error as err:
        raise MigrationError(f"migration {migration.path.name} failed: {err}") from err


def ensure_partitions_ahead(conn: psycopg.Connection) -> int:
    """Create the monthly partitions around now (a no-op on TimescaleDB); returns how many."""
    created = 0
    for table in PARTITIONED_TABLES:
        created += int(scalar(
            conn, "SELECT alphastream_ensure_partitions(%s::regclass, now() - %s::interval, now() + %s::interval)",
            (table, PARTITIONS_BEHIND, PARTITIONS_AHEAD)))
    return created


def migrate(dsn: str) -> list[str]:
    """Apply every pending migration; returns the versions applied now ([] when current).

    Also creates the partitions for the months ahead, so a long-running database stays ready
    as time advances if this runs regularly (every pipeline start does).
    """
    with connect(dsn) as conn:
        conn.execute("SELECT pg_advisory_lock(%s)", (MIGRATION_LOCK_KEY,))
        try:
            conn.execute(_CREATE_SCHEMA_MIGRATIONS)
            applied = _applied(conn)
            variant = _database_variant(conn, applied)
            done = []
            for migration in available_migrations(variant):
                if migration.version in applied:
                    continue
                _apply(conn, migration, variant)
                log.info("migrated %s to %s_%s (%s)", mask_dsn(dsn), migration.version, migration.name, variant)
                done.append(migration.version)
            ensure_partitions_ahead(conn)
            return done
        finally:
            conn.execute("SELECT pg_advisory_unlock(%s)", (MIGRATION_LOCK_KEY,))
