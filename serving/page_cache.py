"""A bounded, versioned cache of rendered ``/v1/bars`` pages.

Rendering a day of one-minute bars (the query, decoding the rows, building and encoding the
JSON) is what bounds the API's request rate (docs/benchmarks.md), and many dashboards showing
the same symbol ask for the same pages. A page is cached under its
request (series, aligned range, rows, format) together with the *fingerprint* of the
stored days it covers (``store.versions``), read *before* the page's query. A later
request reads the fingerprint again (one index lookup) and gets the cached bytes only if it
is unchanged: no write to those days has committed since the page was read, so the bytes are
what the query would return now. Writers that do not bump the versions are covered by the
TTL only; ``api_bars_cache_mb = 0`` turns the cache off.

Entries are evicted least recently used first, by total size; a page larger than a quarter
of the budget is not cached.
"""
from __future__ import annotations

import time
from collections import OrderedDict
from dataclasses import dataclass
from typing import Callable, Hashable

Fingerprint = tuple[int, int]


@dataclass(frozen=True)
class CachedPage:
    fingerprint: Fingerprint
    body: bytes
    media_type: str
    headers: dict[str, str] | None
    expires_at: float


class PageCache:
    def __init__(self, max_bytes: int, ttl_seconds: float, clock: Callable[[], float] = time.monotonic):
        self.max_bytes = max_bytes
        self.ttl_seconds = ttl_seconds
        self._clock = clock
        self._pages: OrderedDict[Hashable, CachedPage] = OrderedDict()
        self._bytes = 0
        self.hits = self.misses = 0

    @property
    def enabled(self) -> bool:
        return self.max_bytes > 0 and self.ttl_seconds > 0

    def __len__(self) -> int:
        return len(self._pages)

    @property
    def size_bytes(self) -> int:
        return self._bytes

    def get(self, key: Hashable, fingerprint: Fingerprint) -> CachedPage | None:
        page = self._pages.get(key)
        if page is not None and page.fingerprint == fingerprint and self._clock() < page.expires_at:
            self._pages.move_to_end(key)
            self.hits += 1
            return page
        if page is not None:
            self._drop(key)  # stale: a write has landed, or the TTL passed
        self.misses += 1
        return None

    def put(self, key: Hashable, fingerprint: Fingerprint, body: bytes, media_type: str,
            headers: dict[str, str] | None = None) -> None:
        if not self.enabled or len(body) > self.max_bytes // 4:
            return
        if key in self._pages:
            self._drop(key)
        self._pages[key] = CachedPage(fingerprint, body, media_type, headers, self._clock() + self.ttl_seconds)
        self._bytes += len(body)
        while self._bytes > self.max_bytes:
            self._drop(next(iter(self._pages)))

    def _drop(self, key: Hashable) -> None:
        self._bytes -= len(self._pages.pop(key).body)
