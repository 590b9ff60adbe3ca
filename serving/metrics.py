"""Prometheus metrics of the API: requests, latency, the connection pool, the store's health and
data freshness.

Request counts and latency histograms are labelled by route template (``/v1/bars``, not the
full URL) so the number of series stays bounded. Pool statistics, per-symbol freshness and
the rows PostgreSQL has counted into each table are read when ``/metrics`` is scraped; the row
counters (``alphastream_bar_rows_written_total``, ...) are what the dashboard charts as
pipeline throughput. ``alphastream_db_up`` says whether those store queries answered at the
last scrape (the DatabaseUnreachable rule); ``alphastream_dead_letters_recent{reason}`` counts
the dead letters recorded in the /v1/alerts window. ``alphastream_api_bars_cache_lookups_total{result}`` and
``alphastream_api_bars_cache_bytes`` show how the bar page cache does. Each app has its own
registry, so several apps can live in one process (tests); with several uvicorn workers each
worker reports its own requests.
"""
from __future__ import annotations

import datetime as dt
import time
from dataclasses import dataclass, field
from typing import Any, Iterator, Sequence

from fastapi.routing import iter_route_contexts
from prometheus_client import CollectorRegistry, Counter, Histogram
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector
from starlette.routing import BaseRoute
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from serving import queries
from serving.alerts import bar_age_seconds
from serving.catalog import SymbolInfo
from serving.page_cache import PageCache

NAMESPACE = "alphastream"
# Latency buckets in seconds, dense around the API's millisecond targets.
LATENCY_BUCKETS = (0.0005, 0.001, 0.002, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)
UNMATCHED_ROUTE = "unmatched"
# Which tables' write counters are exported, under which metric name.
ROW_COUNTERS = {queries.BARS_TABLE: "bar_rows_written", queries.TICKS_TABLE: "tick_rows_written",
                queries.DEAD_LETTERS_TABLE: "dead_letter_rows_written"}


@dataclass
class StoreSnapshot:
    """What the last scrape read from the database and the pool."""

    symbols: dict[str, SymbolInfo] = field(default_factory=dict)
    rows_written: dict[str, float] = field(default_factory=dict)
    pool_stats: dict[str, int] = field(default_factory=dict)
    taken_at: dt.datetime | None = None
    db_up: bool = False  # whether the store answered this scrape's queries
    recent_dead_letters: dict[str, int] = field(default_factory=dict)


class StoreCollector(Collector):
    """Exports a ``StoreSnapshot`` (set by the /metrics route just before rendering)."""

    def __init__(self) -> None:
        self.snapshot = StoreSnapshot()

    def collect(self) -> Iterator[Metric]:
        snap = self.snapshot
        pool = GaugeMetricFamily(f"{NAMESPACE}_db_pool", "Connection pool statistics (psycopg_pool get_stats).",
                                 labels=["stat"])
        for name, value in sorted(snap.pool_stats.items()):
            pool.add_metric([name], float(value))
        yield pool
        yield GaugeMetricFamily(f"{NAMESPACE}_db_up", "1 when PostgreSQL answered the store queries of this scrape, "
                                "else 0.", value=1.0 if snap.db_up else 0.0)
        bar_age = GaugeMetricFamily(
            f"{NAMESPACE}_bar_age_seconds",
            "Seconds from the end of the newest bar (shortest stored interval) to the scrape.",
            labels=["symbol", "interval"])
        write_age = GaugeMetricFamily(
            f"{NAMESPACE}_bar_write_age_seconds", "Seconds since the store last wrote a bar of the symbol.",
            labels=["symbol", "interval"])
        if snap.taken_at is not None:
            for info in snap.symbols.values():
                s = info.finest
                bar_age.add_metric([info.symbol, s.interval], bar_age_seconds(s, snap.taken_at))
                write_age.add_metric([info.symbol, s.interval], (snap.taken_at - s.last_updated).total_seconds())
        yield bar_age
        yield write_age
        recent = GaugeMetricFamily(f"{NAMESPACE}_dead_letters_recent",
                                   "Dead letters recorded in the /v1/alerts window "
                                   "(ALPHASTREAM_API_ALERT_DEAD_LETTER_WINDOW_SECONDS), by reason.", labels=["reason"])
        for reason, count in sorted(snap.recent_dead_letters.items()):
            recent.add_metric([reason], float(count))
        yield recent
        for table, name in ROW_COUNTERS.items():
            counter = CounterMetricFamily(f"{NAMESPACE}_{name}",
                                          f"Rows PostgreSQL counted into {table} (inserts + updates) since "
                                          "its statistics were reset.")
            counter.add_metric([], snap.rows_written.get(table, 0.0))
            yield counter


class PageCacheCollector(Collector):
    """Hits, misses and size of the bar page cache, read at scrape time."""

    def __init__(self, cache: PageCache) -> None:
        self.cache = cache

    def collect(self) -> Iterator[Metric]:
        lookups = CounterMetricFamily(f"{NAMESPACE}_api_bars_cache_lookups",
                                      "Bar page cache lookups, by result.", labels=["result"])
        lookups.add_metric(["hit"], float(self.cache.hits))
        lookups.add_metric(["miss"], float(self.cache.misses))
        yield lookups
        yield GaugeMetricFamily(f"{NAMESPACE}_api_bars_cache_bytes", "Bytes of cached bar pages.",
                                value=float(self.cache.size_bytes))


class ApiMetrics:
    """The app's registry and its metrics."""

    def __init__(self, page_cache: PageCache) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        self.requests = Counter(f"{NAMESPACE}_api_requests", "HTTP requests answered, by route and status.",
                                ["method", "route", "status"], registry=self.registry)
        self.latency = Histogram(f"{NAMESPACE}_api_request_duration_seconds",
                                 "Time to answer a request (to the end of the body), by route.",
                                 ["method", "route"], buckets=LATENCY_BUCKETS, registry=self.registry)
        self.store = StoreCollector()
        self.registry.register(self.store)
        self.registry.register(PageCacheCollector(page_cache))


def route_templates(routes: Sequence[BaseRoute]) -> dict[int, str]:
    """The path template of every route, with the prefixes of the routers it is included in, by
    ``id`` of the route object a request's scope names (FastAPI puts the route as its own router
    declares it there, without those prefixes)."""
    return {id(context.original_route): context.path for context in iter_route_contexts(routes) if context.path}


class RequestMetricsMiddleware:
    """Pure ASGI middleware (cheaper than BaseHTTPMiddleware) timing every HTTP request."""

    def __init__(self, app: ASGIApp, metrics: ApiMetrics) -> None:
        self.app = app
        self.metrics = metrics
        self._templates: dict[int, str] | None = None  # read from the app at its first request

    def template(self, scope: Scope) -> str:
        """The route template of the request, or UNMATCHED_ROUTE."""
        route: Any = scope.get("route")
        if route is None:
            return UNMATCHED_ROUTE
        if self._templates is None:
            self._templates = route_templates(scope["app"].routes)
        return self._templates.get(id(route)) or str(getattr(route, "path", UNMATCHED_ROUTE))

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()
        status = 500  # if the app raises before answering, Starlette's error middleware answers 500

        async def send_with_status(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)

        try:
            await self.app(scope, receive, send_with_status)
        finally:
            template = self.template(scope)
            method = scope.get("method", "")
            self.metrics.requests.labels(method, template, str(status)).inc()
            self.metrics.latency.labels(method, template).observe(time.perf_counter() - started)
