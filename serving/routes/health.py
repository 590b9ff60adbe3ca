"""``GET /healthz`` (the process answers) and ``GET /readyz`` (the database is usable)."""
from __future__ import annotations

import anyio
import psycopg
from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse
from psycopg_pool import PoolTimeout

from serving import queries
from serving.deps import Pool
from serving.models import Health, Readiness

router = APIRouter(tags=["operations"])


@router.get("/healthz", response_model=Health, summary="The API process is up")
async def get_health() -> Health:
    """Always ``ok`` while the process serves requests; it does not touch the database."""
    return Health(status="ok")


@router.get("/readyz", response_model=Readiness, summary="The database is reachable and migrated",
            responses={503: {"model": Readiness, "description": "Not ready: see database and pending_migrations."}})
async def get_ready(request: Request, pool: Pool) -> JSONResponse:
    """Ready when a pooled connection answers and no migration is pending."""
    from store import migrate  # imports psycopg only, no Beam

    try:
        async with pool.connection() as conn:
            await conn.execute(queries.PING)
        pending = await anyio.to_thread.run_sync(migrate.pending, request.app.state.dsn)
    except (PoolTimeout, psycopg.Error) as err:
        body = Readiness(status="not ready", database=f"unreachable: {type(err).__name__}", pending_migrations=[])
        return JSONResponse(body.model_dump(), status_code=503)
    ready = not pending
    body = Readiness(status="ready" if ready else "not ready", database="ok", pending_migrations=pending)
    return JSONResponse(body.model_dump(), status_code=200 if ready else 503)
