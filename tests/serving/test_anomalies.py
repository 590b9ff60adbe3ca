"""Anomalies stored and served: ``python -m pipeline --detect_anomalies`` over the synthetic market
with injected anomalies writes the ``anomalies`` table and the lake alike; the sink is idempotent;
``GET /v1/anomalies`` pages and filters what is stored. Real PostgreSQL throughout."""
from __future__ import annotations

import datetime as dt
import json
import typing

import apache_beam as beam
import pandas as pd
import psycopg
import pyarrow.dataset as ds
import pytest
from fastapi.testclient import TestClient

from alphastream.records import ANOMALY_FIELDS, TIME_SUFFIX, Anomaly, AnomalyKind, storage_columns, storage_name
from alphastream.synthetic import MarketSpec, injected_anomalies
from pipeline.postgres_sink import WriteAnomaliesToPostgres
from serving.anomaly_queries import ANOMALY_COLUMNS
from serving.main import create_app
from tests.fixtures.api import api_settings
from tests.fixtures.postgres import run_pipeline

SYMBOLS, PER_SYMBOL, SEED = 3, 6, 5
DATE = "2024-03-05"
SPEC = MarketSpec(day=dt.date.fromisoformat(DATE), symbols=SYMBOLS, anomalies_per_symbol=PER_SYMBOL, seed=SEED)
SQL_TYPES = {str: {"text"}, float: {"double precision"}, int: {"bigint"}}


@pytest.fixture(scope="module")
def run(pg_cluster, tmp_path_factory) -> tuple[str, str]:
    """(DSN, lake root) after one batch run with detection over injected anomalies."""
    db_url, lake = pg_cluster.new_database(), tmp_path_factory.mktemp("lake")
    run_pipeline("--symbols", str(SYMBOLS), "--date", DATE, "--seed", str(SEED), "--inject_anomalies", str(PER_SYMBOL),
                 "--detect_anomalies", "--db_url", db_url, "--output", str(lake))
    return db_url, str(lake)


def stored(db_url: str) -> pd.DataFrame:
    with psycopg.connect(db_url) as conn:
        rows = conn.execute(f"SELECT {', '.join(ANOMALY_COLUMNS)} FROM anomalies").fetchall()
    frame = pd.DataFrame(rows, columns=list(ANOMALY_COLUMNS))
    frame["bucket_start"] = pd.to_datetime(frame["bucket_start"], utc=True)
    return frame.sort_values(["bucket_start", "symbol", "interval", "kind"], ascending=False, ignore_index=True)


@pytest.fixture(scope="module")
def client(run):
    with TestClient(create_app(api_settings(), dsn=run[0])) as test_client:
        yield test_client


def test_table_has_every_record_field_with_its_type(db_url):
    with psycopg.connect(db_url) as conn:
        columns = dict(conn.execute("SELECT column_name, data_type FROM information_schema.columns "
                                    "WHERE table_name = 'anomalies'").fetchall())
    hints = typing.get_type_hints(Anomaly)
    for field in ANOMALY_FIELDS:
        expected = {"timestamp with time zone"} if field.endswith(TIME_SUFFIX) else SQL_TYPES[hints[field]]
        assert columns.pop(storage_name(field)) in expected
    assert set(columns) == {"updated_at"}


def test_the_run_stores_in_the_table_and_the_lake_what_it_found_and_finds_the_labels(run):
    db_url, lake = run
    table = stored(db_url)
    read = ds.dataset(f"{lake}/anomalies", partitioning="hive").to_table().to_pandas()
    assert tuple(c for c in read.columns if c != "date") == storage_columns(ANOMALY_FIELDS)
    key = ["symbol", "interval", "bucket_start", "kind"]
    pd.testing.assert_frame_equal(
        read.drop(columns="date").sort_values(key, ignore_index=True)
        .astype({"bucket_start": table.bucket_start.dtype}),
        table.sort_values(key, ignore_index=True))
    labels = injected_anomalies(SPEC)
    starts = table.bucket_start.map(lambda t: int(t.value // 1000))

    def hit(i, label):
        return (table.symbol[i], table.kind[i]) == (label.symbol, label.kind) and \
            label.first_bucket_us <= starts[i] <= label.last_bucket_us
    assert sum(any(hit(i, lb) for lb in labels) for i in table.index) / len(table) >= 0.9
    assert sum(any(hit(i, lb) for i in table.index) for lb in labels) / len(labels) >= 0.9


def _write(db_url: str, anomalies: list[Anomaly]) -> None:
    with beam.Pipeline() as p:
        _ = p | beam.Create(anomalies) | WriteAnomaliesToPostgres(db_url)


def test_sink_is_idempotent_and_a_rescored_detection_is_updated(db_url):
    t = 1_709_649_000_000_000
    first = [Anomaly("AAPL", "1m", t + i * 60_000_000, AnomalyKind.RETURN_OUTLIER.value, 7.5 + i, 6.0,
                     json.dumps({"window": 30})) for i in range(3)]
    _write(db_url, first)
    before = stored(db_url)
    with psycopg.connect(db_url) as conn:
        stamps = conn.execute("SELECT bucket_start, updated_at FROM anomalies ORDER BY 1").fetchall()
    _write(db_url, first)  # a replay
    pd.testing.assert_frame_equal(stored(db_url), before)
    with psycopg.connect(db_url) as conn:
        assert conn.execute("SELECT bucket_start, updated_at FROM anomalies ORDER BY 1").fetchall() == stamps
    _write(db_url, [first[0]._replace(score=9.25, threshold=5.0)])  # a re-run with another threshold
    after = stored(db_url)
    assert len(after) == 3
    assert after[after.score == 9.25].threshold.tolist() == [5.0]


def test_api_pages_through_everything_stored_newest_first(run, client):
    reference = stored(run[0])
    items, cursor = [], None
    while True:
        answer = client.get("/v1/anomalies", params={"limit": 4, **({"cursor": cursor} if cursor else {})})
        assert answer.status_code == 200, answer.text
        body = answer.json()
        items += body["items"]
        cursor = body["next_cursor"]
        if cursor is None:
            break
    served = pd.DataFrame(items)
    assert len(served) == len(reference) > 4
    assert served.symbol.tolist() == reference.symbol.tolist()
    assert served.kind.tolist() == reference.kind.tolist()
    assert pd.to_datetime(served.bucket_start, utc=True, format="ISO8601").tolist() == reference.bucket_start.tolist()
    assert served.score.tolist() == reference.score.tolist()
    assert [json.dumps(d, sort_keys=True) for d in served.details] == reference.details.tolist()


@pytest.mark.parametrize("query", [
    {"symbol": "MSFT"},
    {"kind": "volume_spike"},
    {"since": "2024-03-05T18:00:00Z"},
    {"symbol": "AAPL", "kind": "stale_price", "since": "2024-03-05T15:00:00+00:00"},
    {"until": "2024-03-05T18:00:00Z"},
    {"symbol": "AAPL", "since": "2024-03-05T15:00:00Z", "until": "2024-03-05T19:00:00Z"},
])
def test_api_filters_by_symbol_kind_since_and_until(run, client, query):
    reference = stored(run[0])
    expected = reference[
        (reference.symbol == query.get("symbol", reference.symbol))
        & (reference.kind == query.get("kind", reference.kind))
        & (reference.bucket_start >= pd.Timestamp(query.get("since", "1970-01-01T00:00:00Z")))
        & (reference.bucket_start < pd.Timestamp(query.get("until", "2100-01-01T00:00:00Z")))]
    answer = client.get("/v1/anomalies", params={**query, "limit": 1000})
    assert answer.status_code == 200, answer.text
    served = answer.json()["items"]
    assert len(served) == len(expected) > 0
    assert [(a["symbol"], a["kind"]) for a in served] == list(zip(expected.symbol, expected.kind, strict=True))


@pytest.mark.parametrize("query, complaint", [
    ({"kind": "meteor"}, "kind"),
    ({"symbol": "not a symbol"}, "symbol"),
    ({"since": "yesterday"}, "since"),
    ({"until": "tomorrow"}, "until"),
    ({"cursor": "bm90LWEtY3Vyc29y"}, "cursor"),
])
def test_api_refuses_bad_parameters_with_a_reason(client, query, complaint):
    answer = client.get("/v1/anomalies", params=query)
    assert answer.status_code == 422
    assert complaint in answer.text
