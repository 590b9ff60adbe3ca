"""``GET /metrics``: Prometheus exposition of the API's and the store's metrics."""
from __future__ import annotations

import dataclasses
import datetime as dt
import logging

import psycopg
from fastapi import APIRouter, Request
from fastapi.responses import Response
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from psycopg_pool import PoolTimeout

from serving import queries
from serving.alerts import recent_dead_letters
from serving.deps import Pool, Settings, StoreCatalog
from serving.metrics import ROW_COUNTERS, ApiMetrics, StoreSnapshot

router = APIRouter(tags=["operations"])
log = logging.getLogger("serving")


@router.get("/metrics", response_class=Response, summary="Prometheus metrics",
            responses={200: {"content": {CONTENT_TYPE_LATEST: {"schema": {"type": "string"}}},
                             "description": "Prometheus text exposition."}})
async def get_metrics(request: Request, pool: Pool, catalog: StoreCatalog, settings: Settings) -> Response:
    """Request counts and latency by route, pool statistics, whether the database answers
    (``alphastream_db_up``), per-symbol freshness, the rows written to each table and recent dead
    letters by reason. Store figures are read at scrape time."""
    metrics: ApiMetrics = request.app.state.metrics
    try:
        symbols = await catalog.refresh(pool)
        async with pool.connection() as conn:
            rows = await (await conn.execute(queries.ROWS_WRITTEN, {"tables": list(ROW_COUNTERS)})).fetchall()
            recent = await recent_dead_letters(conn, settings.api_alert_dead_letter_window_seconds)
        metrics.store.snapshot = StoreSnapshot(symbols=symbols, rows_written=dict(rows), pool_stats=pool.get_stats(),
                                               taken_at=dt.datetime.now(dt.timezone.utc), db_up=True,
                                               recent_dead_letters=recent)
    except (PoolTimeout, psycopg.Error) as err:
        # Still answer: request metrics and pool statistics matter most when the database is down.
        log.warning("metrics: store figures unavailable (%s); serving the last ones", type(err).__name__)
        metrics.store.snapshot = dataclasses.replace(metrics.store.snapshot, pool_stats=pool.get_stats(), db_up=False)
    return Response(generate_latest(metrics.registry), media_type=CONTENT_TYPE_LATEST)
