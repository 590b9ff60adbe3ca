"""Shared dependencies of the routes: settings, the connection pool, the catalog, auth, errors.

The pool is a psycopg 3 ``AsyncConnectionPool`` opened by the app's lifespan without waiting
for the database, so the process starts (and ``/healthz`` answers) while PostgreSQL is still
coming up; ``/readyz`` tells when it can serve data.
"""
from __future__ import annotations

import hmac
import logging
from typing import Annotated

from fastapi import Depends, Request
from fastapi.security import APIKeyHeader, HTTPAuthorizationCredentials, HTTPBearer
from psycopg_pool import AsyncConnectionPool

from alphastream.settings import API_KEY_HEADER, mask_dsn
from serving.catalog import Catalog
from serving.errors import ApiProblem
from serving.settings import ApiSettings

log = logging.getLogger("serving")


def database_url(settings: ApiSettings) -> str:
    """ALPHASTREAM_DB_URL, else the embedded local database (started if needed)."""
    if settings.db_url:
        return settings.db_url
    from store.localdb import LocalDatabase  # imports no Beam; only needed without a DSN

    return LocalDatabase.from_settings(settings).ensure_running()


def connection_options(settings: ApiSettings) -> str:
    """Session settings of every API connection: UTC times and a statement timeout, so one
    slow query cannot hold a connection (and a client) forever."""
    return f"-c TimeZone=UTC -c statement_timeout={settings.api_statement_timeout_ms}"


def make_pool(dsn: str, settings: ApiSettings) -> AsyncConnectionPool:
    log.info("API database: %s", mask_dsn(dsn))
    return AsyncConnectionPool(
        dsn, min_size=settings.api_pool_min_size, max_size=settings.api_pool_max_size,
        timeout=settings.api_pool_timeout_seconds, open=False, name="alphastream-api",
        kwargs={"autocommit": True, "options": connection_options(settings)},
    )


# Dependencies are coroutines: FastAPI runs plain functions in a worker thread, a hop longer
# than the lookup itself.
async def get_settings(request: Request) -> ApiSettings:
    settings: ApiSettings = request.app.state.settings
    return settings


async def get_pool(request: Request) -> AsyncConnectionPool:
    pool: AsyncConnectionPool = request.app.state.pool
    return pool


async def get_catalog(request: Request) -> Catalog:
    catalog: Catalog = request.app.state.catalog
    return catalog


Settings = Annotated[ApiSettings, Depends(get_settings)]
Pool = Annotated[AsyncConnectionPool, Depends(get_pool)]
StoreCatalog = Annotated[Catalog, Depends(get_catalog)]

_api_key_header = APIKeyHeader(name=API_KEY_HEADER, auto_error=False,
                               description="Required when the API runs with ALPHASTREAM_API_KEY set.")


# The same key as a bearer token: what Prometheus's `authorization` scrape setting sends.
_bearer = HTTPBearer(auto_error=False, description=f"The API key as a bearer token (same key as {API_KEY_HEADER}).")


def _matches(given: str | None, expected: str) -> bool:
    return given is not None and hmac.compare_digest(given.encode(), expected.encode())


async def require_api_key(settings: Settings, key: Annotated[str | None, Depends(_api_key_header)],
                          bearer: Annotated[HTTPAuthorizationCredentials | None, Depends(_bearer)]) -> None:
    """Refuse the request unless auth is off, or the X-API-Key header or a bearer token matches
    (constant time)."""
    expected = settings.api_key
    token = bearer.credentials if bearer else None
    if expected and not (_matches(key, expected) or _matches(token, expected)):
        raise ApiProblem(401, f"missing or wrong {API_KEY_HEADER} header (or Authorization: Bearer): "
                              "this API requires an API key")
