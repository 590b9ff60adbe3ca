"""Builds the FastAPI app: ``uvicorn serving.main:app`` (or ``python -m serving``).

``create_app(settings)`` wires settings, the psycopg pool (opened in the lifespan), the
catalog cache, the bar page cache, CORS, optional API-key auth, error handlers, metrics and the routers. The
module-level ``app`` reads its settings from the environment (ALPHASTREAM_*).
"""
from __future__ import annotations

import contextlib
from typing import AsyncIterator

from fastapi import APIRouter, Depends, FastAPI
from fastapi.middleware.cors import CORSMiddleware

from alphastream.settings import API_KEY_HEADER
from serving.catalog import Catalog
from serving.deps import database_url, make_pool, require_api_key
from serving.errors import install_error_handlers
from serving.metrics import ApiMetrics, RequestMetricsMiddleware
from serving.models import BAR_STATE_DESCRIPTION
from serving.page_cache import PageCache
from serving.routes import alerts as alert_routes
from serving.routes import anomalies as anomaly_routes
from serving.routes import bars, dead_letters, docs, health, indicators, metrics, stream, symbols
from serving.routes import risk as risk_routes
from serving.settings import ApiSettings

API_PREFIX = "/v1"
DESCRIPTION = (
    "OHLCV bars, quotes, indicators and dead letters of the alphastream market-data store. "
    f"Times are ISO-8601 UTC. When the API runs with ALPHASTREAM_API_KEY set, send it in the "
    f"{API_KEY_HEADER} header (except /healthz, /readyz and the documentation pages); Prometheus "
    f"scrapes /metrics with it too.\n\n" + BAR_STATE_DESCRIPTION
)


def versioned_router() -> APIRouter:
    """The data routes, under the version prefix (set here only)."""
    router = APIRouter(prefix=API_PREFIX)
    for routes in (symbols, bars, indicators, dead_letters, stream, alert_routes, risk_routes, anomaly_routes):
        router.include_router(routes.router)
    return router


def create_app(settings: ApiSettings | None = None, *, dsn: str | None = None) -> FastAPI:
    """The API over the database at ``dsn`` (default: from the settings, see deps.database_url)."""
    settings = settings or ApiSettings()

    @contextlib.asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        app.state.dsn = dsn or database_url(settings)
        app.state.pool = make_pool(app.state.dsn, settings)
        # Do not wait for the database: /healthz answers while it is still coming up.
        await app.state.pool.open(wait=False)
        try:
            yield
        finally:
            await app.state.pool.close()

    # The documentation routes are the app's own (routes/docs.py): FastAPI's load from a CDN.
    app = FastAPI(title="alphastream API", version="1.0.0", description=DESCRIPTION, lifespan=lifespan,
                  openapi_url=None, docs_url=None, redoc_url=None)
    app.state.settings = settings
    app.state.catalog = Catalog(ttl_seconds=settings.api_catalog_ttl_seconds)
    app.state.page_cache = PageCache(int(settings.api_bars_cache_mb * 2**20), settings.api_bars_cache_ttl_seconds)
    app.state.metrics = ApiMetrics(app.state.page_cache)
    install_error_handlers(app)
    # The key check (and its OpenAPI security scheme) exists only when a key is configured,
    # so the published schema says whether this deployment wants the key.
    authenticated = [Depends(require_api_key)] if settings.api_key else []
    app.include_router(versioned_router(), dependencies=authenticated)
    app.include_router(metrics.router, dependencies=authenticated)
    # Probes stay open (orchestrators do not carry the API key), and so does the schema.
    app.include_router(health.router)
    app.include_router(docs.router)
    if settings.api_cors_origins:
        app.add_middleware(CORSMiddleware, allow_origins=settings.api_cors_origins,
                           allow_methods=["GET"], allow_headers=[API_KEY_HEADER],
                           expose_headers=[bars.NEXT_CURSOR_HEADER])
    app.add_middleware(RequestMetricsMiddleware, metrics=app.state.metrics)
    return app


app = create_app()
