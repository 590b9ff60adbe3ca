"""Which (symbol, interval) pairs the store holds, with each symbol's first and last bar.

Every bars, quotes, indicators and stream request needs to know whether a symbol exists (404
otherwise) and which stored interval to roll up from. Asking PostgreSQL each time would add a
query to the hot path, so the catalog is cached for ``api_catalog_ttl_seconds`` and refreshed
early when a request names a symbol or interval it has not seen (new data may have landed).
"""
from __future__ import annotations

import asyncio
import datetime as dt
import time
from dataclasses import dataclass, field

from psycopg_pool import AsyncConnectionPool

from alphastream.intervals import IntervalError, canonical_interval, interval_seconds
from serving import queries
from serving.errors import invalid, not_found

# A catalog miss refreshes at most this often, so a client asking for unknown symbols in a
# loop cannot turn every request into a catalog query.
MIN_REFRESH_SECONDS = 0.5


@dataclass(frozen=True)
class SeriesInfo:
    """One stored (symbol, interval): its first and last bar, last close and write time."""

    interval: str
    first_bar: dt.datetime
    last_bar: dt.datetime
    last_close: float
    last_updated: dt.datetime


@dataclass(frozen=True)
class SymbolInfo:
    symbol: str
    series: tuple[SeriesInfo, ...]  # shortest interval first

    @property
    def intervals(self) -> list[str]:
        return [s.interval for s in self.series]

    @property
    def finest(self) -> SeriesInfo:
        return self.series[0]

    def source_for(self, interval: str) -> str | None:
        """The largest stored interval that divides ``interval`` (None if none does)."""
        wanted = interval_seconds(interval)
        usable = [s.interval for s in self.series if wanted % interval_seconds(s.interval) == 0]
        return max(usable, key=interval_seconds) if usable else None


@dataclass
class Catalog:
    """The cached catalog of one app; ``symbols`` maps a symbol to its stored series."""

    ttl_seconds: float
    symbols: dict[str, SymbolInfo] = field(default_factory=dict)
    loaded_at: float = float("-inf")
    _lock: asyncio.Lock = field(default_factory=asyncio.Lock)

    async def refresh(self, pool: AsyncConnectionPool) -> dict[str, SymbolInfo]:
        async with self._lock:
            async with pool.connection() as conn:
                rows = await (await conn.execute(queries.CATALOG)).fetchall()
            grouped: dict[str, list[SeriesInfo]] = {}
            for symbol, interval, first, last, close, updated in rows:
                grouped.setdefault(symbol, []).append(SeriesInfo(interval, first, last, close, updated))
            self.symbols = {
                symbol: SymbolInfo(symbol, tuple(sorted(series, key=lambda s: interval_seconds(s.interval))))
                for symbol, series in grouped.items()
            }
            self.loaded_at = time.monotonic()
            return self.symbols

    async def current(self, pool: AsyncConnectionPool) -> dict[str, SymbolInfo]:
        if time.monotonic() - self.loaded_at > self.ttl_seconds:
            return await self.refresh(pool)
        return self.symbols

    async def lookup(self, pool: AsyncConnectionPool, symbol: str, interval: str | None = None
                     ) -> SymbolInfo | None:
        """The symbol's info, refreshing once if it (or its interval) is not known yet."""
        info = (await self.current(pool)).get(symbol)
        if info is not None and (interval is None or info.source_for(interval)):
            return info
        if time.monotonic() - self.loaded_at > MIN_REFRESH_SECONDS:
            info = (await self.refresh(pool)).get(symbol)
        return info


@dataclass(frozen=True)
class ResolvedSeries:
    """A request's symbol and interval, checked against the store: where its bars come from."""

    info: SymbolInfo
    interval: str  # canonical spelling of the requested interval
    source: str  # the stored interval it is served (or rolled up) from

    @property
    def rolled(self) -> bool:
        return self.source != self.interval

    @property
    def ratio(self) -> int:
        """Stored bars per served bar (1 when not rolled up)."""
        return interval_seconds(self.interval) // interval_seconds(self.source)


async def resolve_series(catalog: Catalog, pool: AsyncConnectionPool, symbol: str, interval: str
                         ) -> ResolvedSeries:
    """Check symbol and interval: 422 for an unreadable or unbuildable interval, 404 for an
    unknown symbol."""
    try:
        canonical = canonical_interval(interval)
    except IntervalError as err:
        raise invalid(str(err)) from err
    info = await catalog.lookup(pool, symbol, canonical)
    if info is None:
        raise not_found(f"unknown symbol {symbol!r}: GET /v1/symbols lists the symbols with stored bars")
    source = info.source_for(canonical)
    if source is None:
        raise invalid(f"interval {canonical} cannot be built for {symbol}: it is not a multiple of a "
                      f"stored interval ({', '.join(info.intervals)})")
    return ResolvedSeries(info, canonical, source)
