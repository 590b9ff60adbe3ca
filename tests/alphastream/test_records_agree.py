"""One place names a field: the SQL schema, the Parquet lake, the API models and the dashboard's
client all follow alphastream.records. Adding or renaming a record field without following it
everywhere fails here."""
from __future__ import annotations

import json
import typing

import psycopg
import pyarrow as pa
import pytest

from alphastream.records import (
    ANOMALY_FIELDS,
    BAR_FIELDS,
    DEAD_LETTER_FIELDS,
    TICK_FIELDS,
    TIME_SUFFIX,
    Anomaly,
    Bar,
    DeadLetter,
    Tick,
    storage_columns,
    storage_name,
)
from pipeline.lake import arrow_schema
from store.revisions import StoredBar

# What each Python type of a record field is stored as in PostgreSQL.
SQL_TYPES = {str: {"text"}, float: {"double precision"}, int: {"bigint", "integer"}}
TIMESTAMP_SQL_TYPE = "timestamp with time zone"
TABLES = {"bars": StoredBar, "dead_letters": DeadLetter, "ticks": Tick, "anomalies": Anomaly}


def _table_columns(dsn: str, table: str) -> dict[str, str]:
    with psycopg.connect(dsn) as conn:
        rows = conn.execute(
            "SELECT column_name, data_type FROM information_schema.columns "
            "WHERE table_schema = 'public' AND table_name = %s",
            (table,),
        ).fetchall()
    return dict(rows)


@pytest.mark.parametrize("table", sorted(TABLES))
def test_sql_tables_have_every_record_field_with_its_type(db_url, table):
    record = TABLES[table]
    columns = _table_columns(db_url, table)
    assert columns, f"table {table} does not exist after migrations"
    hints = typing.get_type_hints(record)
    for field in record._fields:
        name = storage_name(field)
        assert name in columns, f"{table}.{name} missing (record field {record.__name__}.{field})"
        expected = {TIMESTAMP_SQL_TYPE} if field.endswith(TIME_SUFFIX) else SQL_TYPES[hints[field]]
        assert columns[name] in expected, f"{table}.{name} is {columns[name]}, expected one of {expected}"
    extra = set(columns) - set(storage_columns(record._fields))
    # Bookkeeping columns only, never a second spelling of a record field.
    assert extra <= {"updated_at", "recorded_at"}, f"{table} has columns no record names: {extra}"


@pytest.mark.parametrize("record", [Bar, DeadLetter, Anomaly])
def test_parquet_lake_schema_follows_the_record(record):
    schema = arrow_schema(record)
    assert tuple(schema.names) == storage_columns(record._fields)
    for field in record._fields:
        if field.endswith(TIME_SUFFIX):
            assert schema.field(storage_name(field)).type == pa.timestamp("us", tz="UTC")


def test_api_models_follow_the_records():
    from serving.models import AnomalyOut, BarOut, DeadLetterOut

    assert tuple(BarOut.model_fields)[: len(BAR_FIELDS)] == storage_columns(BAR_FIELDS)
    assert tuple(AnomalyOut.model_fields)[: len(ANOMALY_FIELDS)] == storage_columns(ANOMALY_FIELDS)
    assert tuple(DeadLetterOut.model_fields)[: len(DEAD_LETTER_FIELDS)] == storage_columns(DEAD_LETTER_FIELDS)


def test_dashboard_client_reads_the_record_columns():
    from dash_app import api_client

    assert api_client.BAR_COLUMNS == storage_columns(BAR_FIELDS)
    assert api_client.DEAD_LETTER_COLUMNS == storage_columns(DEAD_LETTER_FIELDS)


def test_wire_format_body_is_exactly_a_tick():
    from alphastream import wire

    tick = Tick("AAPL", 1_714_573_800_123_456, 189.5, 100.0, "t-1", "test")
    body, attributes = wire.encode_tick(tick)
    assert tuple(json.loads(body)) == TICK_FIELDS
    assert wire.decode_tick(body) == tick
    assert set(attributes) == {wire.TIMESTAMP_ATTRIBUTE, wire.ID_ATTRIBUTE}
