"""Shared fixtures and helpers of the REST API tests (tests/test_api_*.py); no tests here.

The store is filled the way production fills it: ``python -m pipeline`` (the synthetic market,
bars from ticks, written by the project's PostgreSQL sink) into a fresh migrated database, and
dead letters through ``WriteDeadLettersToPostgres``. The API runs either in-process
(``TestClient``) or under a real uvicorn on a loopback port (``serve``).
"""
from __future__ import annotations

import contextlib
import threading
import time
from pathlib import Path
from typing import Iterator

import apache_beam as beam
import pandas as pd
import psycopg
from psycopg import sql
import pytest
import uvicorn
from fastapi import FastAPI
from fastapi.testclient import TestClient

from alphastream.local_services import free_port
from alphastream.records import BAR_FIELDS, Bar, storage_columns
from pipeline.postgres_sink import WriteBarsToPostgres

from serving.main import create_app
from serving.settings import ApiSettings
from tests.fixtures.postgres import run_pipeline

MARKET_SYMBOLS = 3
MARKET_TICKS_PER_SYMBOL = 2_000
MARKET_DATE = "2024-03-05"  # a Tuesday: one full synthetic session
SERVER_START_TIMEOUT_SECONDS = 20.0
BAR_COLUMNS = storage_columns(BAR_FIELDS)


def run_market_pipeline(db_url: str, output: Path, *extra: str) -> None:
    """The real batch pipeline's synthetic market day into ``db_url``."""
    run_pipeline("--symbols", str(MARKET_SYMBOLS), "--ticks_per_symbol", str(MARKET_TICKS_PER_SYMBOL),
                 "--date", MARKET_DATE, "--db_url", db_url, "--output", str(output), *extra)


def write_bars(db_url: str, bars: list[Bar], *, final: bool = False) -> None:
    """Write ``bars`` with the pipeline's own PostgreSQL sink: as streaming panes, or ``final`` as
    a batch run writes them."""
    with beam.Pipeline() as p:
        _ = p | beam.Create(bars) | WriteBarsToPostgres(db_url, final=final)


def stored_bars(db_url: str, symbol: str, interval: str) -> pd.DataFrame:
    """The bars table read directly with psycopg (the reference the API is compared with)."""
    with psycopg.connect(db_url) as conn:
        query = sql.SQL("SELECT {} FROM bars WHERE symbol = %s AND interval = %s ORDER BY bucket_start").format(
            sql.SQL(", ").join(map(sql.Identifier, BAR_COLUMNS)))
        rows = conn.execute(query, (symbol, interval)).fetchall()
    frame = pd.DataFrame(rows, columns=list(BAR_COLUMNS))
    frame["bucket_start"] = pd.to_datetime(frame["bucket_start"], utc=True)
    return frame


def api_frame(items: list[dict]) -> pd.DataFrame:
    frame = pd.DataFrame(items)
    frame["bucket_start"] = pd.to_datetime(frame["bucket_start"], utc=True, format="ISO8601")
    return frame


def api_settings(**overrides) -> ApiSettings:
    """Settings for a test app: no .env, no API key unless given, a short catalog cache."""
    base = {"api_key": None, "api_catalog_ttl_seconds": 0.0, "api_stream_poll_seconds": 0.1}
    return ApiSettings(_env_file=None, **{**base, **overrides})


@pytest.fixture(scope="module")
def market_db(pg_cluster, tmp_path_factory) -> str:
    """A migrated database holding one synthetic day of 3 symbols (1m, 5m, 1h bars)."""
    db_url = pg_cluster.new_database()
    run_market_pipeline(db_url, tmp_path_factory.mktemp("lake"))
    return db_url


@pytest.fixture(scope="module")
def client(market_db) -> Iterator[TestClient]:
    with TestClient(create_app(api_settings(), dsn=market_db)) as test_client:
        yield test_client


@contextlib.contextmanager
def serve(app: FastAPI) -> Iterator[str]:
    """Run ``app`` under uvicorn on a free loopback port in a thread; yields its base URL."""
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=free_port(), log_level="warning"))
    thread = threading.Thread(target=server.run, name="uvicorn-test", daemon=True)
    thread.start()
    deadline = time.monotonic() + SERVER_START_TIMEOUT_SECONDS
    while not server.started:
        if not thread.is_alive() or time.monotonic() > deadline:
            raise RuntimeError("uvicorn did not start")
        time.sleep(0.02)
    try:
        yield f"http://127.0.0.1:{server.config.port}"
    finally:
        server.should_exit = True
        thread.join(timeout=10)
