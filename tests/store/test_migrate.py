"""Migrations against a real PostgreSQL: apply on an empty database, re-apply as a no-op,
race safely, and leave partitions that accept any row."""
import re
import threading
from pathlib import Path

import psycopg
import pytest

from alphastream.records import BAR_FIELDS, DEAD_LETTER_FIELDS, TICK_FIELDS, storage_columns
from store import migrate
from store.migrate import MIGRATIONS_DIR, PLAIN, TIMESCALE, available_migrations

ALL_VERSIONS = [m.version for m in available_migrations(PLAIN)]
ENSURE_MARCH_1995 = "SELECT alphastream_ensure_partitions('bars', '1995-03-01', '1995-04-01')"


def columns(conn, table: str) -> tuple[str, ...]:
    rows = conn.execute("SELECT column_name FROM information_schema.columns WHERE table_name = %s "
                        "ORDER BY ordinal_position", (table,)).fetchall()
    return tuple(r[0] for r in rows)


def test_migrations_apply_on_empty_database_then_are_a_no_op(pg_cluster):
    dsn = pg_cluster.new_database(migrated=False)
    assert migrate.pending(dsn) == ALL_VERSIONS
    assert migrate.current_version(dsn) is None

    assert migrate.migrate(dsn) == ALL_VERSIONS
    assert migrate.pending(dsn) == []
    assert migrate.current_version(dsn) == ALL_VERSIONS[-1]
    with psycopg.connect(dsn) as conn:
        recorded = conn.execute("SELECT version, name, applied_at, variant FROM schema_migrations ORDER BY 1"
                                ).fetchall()
        assert [r[0] for r in recorded] == ALL_VERSIONS and {r[3] for r in recorded} == {PLAIN}
        # the tables follow alphastream.records
        assert columns(conn, "bars") == storage_columns(BAR_FIELDS) + ("updated_at", "revision")
        assert columns(conn, "ticks") == storage_columns(TICK_FIELDS)
        assert columns(conn, "dead_letters") == storage_columns(DEAD_LETTER_FIELDS) + ("recorded_at",)
        assert columns(conn, "bars_1h_from_1m") == ("symbol", "bucket_start", "open", "high", "low", "close",
                                                     "volume", "vwap", "trades")

    assert migrate.migrate(dsn) == []  # re-applying changes nothing
    with psycopg.connect(dsn) as conn:
        assert conn.execute("SELECT version, name, applied_at, variant FROM schema_migrations "
                            "ORDER BY 1").fetchall() == recorded


def test_two_runners_racing_apply_each_migration_once(pg_cluster):
    dsn = pg_cluster.new_database(migrated=False)
    results, errors = [], []

    def run():
        try:
            results.append(migrate.migrate(dsn))
        except Exception as err:  # collected and asserted below: a race must not raise
            errors.append(err)

    threads = [threading.Thread(target=run) for _ in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    assert sorted(results) == [[], ALL_VERSIONS]


def test_partitions_exist_ahead_and_default_catches_out_of_range_rows(db_url):
    with psycopg.connect(db_url) as conn:
        months = conn.execute(
            "SELECT to_char(generate_series(date_trunc('month', now(), 'UTC'), "
            "date_trunc('month', now() + interval '3 months', 'UTC') - interval '1 month', interval '1 month') "
            "AT TIME ZONE 'UTC', 'YYYYMM')").fetchall()
        partitions = {r[0] for r in conn.execute(
            "SELECT c.relname FROM pg_inherits i JOIN pg_class c ON c.oid = i.inhrelid "
            "WHERE i.inhparent = 'bars'::regclass").fetchall()}
        assert {f"bars_{m[0]}" for m in months} <= partitions
        assert "bars_default" in partitions

        insert = ("INSERT INTO bars (symbol, interval, bucket_start, open, high, low, close, volume, vwap, "
                  "trades, timing, pane_index) VALUES ('OLD', '1m', %s, 1, 2, 1, 2, 10, 1.5, 3, 'ON_TIME', 0)")
        conn.execute(insert, ("1995-03-07 14:31:00+00",))
        where = "SELECT tableoid::regclass::text FROM bars WHERE symbol = 'OLD'"
        assert conn.execute(where).fetchone()[0] == "bars_default"

        # creating the month's partition later moves the row out of the default partition
        assert conn.execute(ENSURE_MARCH_1995).fetchone()[0] == 1
        assert conn.execute(where).fetchall() == [("bars_199503",)]
        assert conn.execute(ENSURE_MARCH_1995).fetchone()[0] == 0


def test_dead_letters_are_recorded_once(db_url):
    row = ("bad_json", "not JSON", "{broken", "file.jsonl:3", "2024-01-02 10:00:00+00")
    with psycopg.connect(db_url) as conn:
        for _ in range(2):
            conn.execute("INSERT INTO dead_letters (reason, detail, raw, origin, seen_at) "
                         "VALUES (%s, %s, %s, %s, %s) ON CONFLICT DO NOTHING", row)
        assert conn.execute("SELECT count(*) FROM dead_letters").fetchone()[0] == 1


def _declared_columns(sql: str, table: str) -> list[str]:
    body = re.search(rf"CREATE TABLE {table} \((.*?)\n\)", sql, re.S).group(1)
    names = [line.split()[0] for line in body.splitlines() if line.strip() and not line.strip().startswith("--")]
    return [n for n in names if n.upper() not in ("PRIMARY", "CONSTRAINT")]


@pytest.mark.parametrize("table", ["bars", "ticks", "dead_letters"])
def test_timescale_variant_declares_the_same_tables(table):
    """The TimescaleDB path cannot run here (no extension); check it declares what the plain one does."""
    plain = {m.version: m for m in available_migrations(PLAIN)}
    timescale = {m.version: m for m in available_migrations(TIMESCALE)}
    assert plain.keys() == timescale.keys()
    assert timescale["0001"].path.name.endswith(".timescale.sql")
    assert _declared_columns(plain["0001"].sql, table) == _declared_columns(timescale["0001"].sql, table)
    assert not timescale["0002"].transactional  # continuous aggregates refuse transaction blocks
    assert "CREATE MATERIALIZED VIEW IF NOT EXISTS bars_1h_from_1m" in timescale["0002"].sql


def test_this_server_gets_the_plain_variant(pg_cluster):
    with psycopg.connect(pg_cluster.admin_url) as conn:
        if conn.execute("SELECT 1 FROM pg_available_extensions WHERE name = 'timescaledb'").fetchone():
            pytest.skip("timescaledb is installed here: the plain-variant check does not apply")
        assert migrate.detect_variant(conn) == PLAIN


def test_badly_named_migration_file_is_refused(tmp_path: Path):
    (tmp_path / "1_bars.sql").write_text("SELECT 1;")
    with pytest.raises(migrate.MigrationError, match="NNNN_name"):
        available_migrations(PLAIN, tmp_path)
    assert len(available_migrations(PLAIN, MIGRATIONS_DIR)) == len(ALL_VERSIONS)
