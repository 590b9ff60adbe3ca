"""The /v1/bars page cache (serving/page_cache.py): unit behaviour, and against a real
PostgreSQL written by the project's sink writer: a repeated request is served from the cache,
and any write to the days a page covers is visible to the very next request, also while
writes race with requests."""
from __future__ import annotations

import threading
import time

import httpx
import pytest
from fastapi.testclient import TestClient

from serving.main import create_app
from serving.page_cache import PageCache
from store import migrate
from store.versions import MICROS_PER_DAY
from store.writer import BARS, CopyMergeWriter
from tests.fixtures.api import api_settings, serve
from tests.fixtures.bars import T0, as_rows, make_bar

SYMBOL = "CACHE"
MINUTES = 120
DAY_A = T0 - T0 % MICROS_PER_DAY
DAY_B = DAY_A + MICROS_PER_DAY


# -- the cache on its own --------------------------------------------------------------------

class FakeClock:
    def __init__(self):
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def test_hit_only_while_the_fingerprint_is_unchanged_and_the_ttl_runs():
    clock = FakeClock()
    cache = PageCache(max_bytes=1_000, ttl_seconds=10, clock=clock)
    cache.put("k", (1, 1), b"page", "application/json")
    assert cache.get("k", (1, 1)).body == b"page"
    assert cache.get("k", (1, 2)) is None  # a write bumped a version
    assert cache.get("k", (1, 1)) is None  # and the stale page is gone
    cache.put("k", (1, 2), b"page2", "application/json")
    clock.now = 10.0
    assert cache.get("k", (1, 2)) is None  # the TTL bounds writers that bypass versions
    assert (cache.hits, cache.misses) == (1, 3)


def test_evicts_least_recently_used_by_size_and_skips_huge_pages():
    cache = PageCache(max_bytes=100, ttl_seconds=60)
    for key in "abcd":
        cache.put(key, (1, 1), b"x" * 25, "text/csv")
    cache.get("a", (1, 1))  # a is now the most recently used
    cache.put("e", (1, 1), b"x" * 25, "text/csv")
    assert cache.get("b", (1, 1)) is None and cache.get("a", (1, 1)) is not None
    assert cache.size_bytes <= 100 and len(cache) == 4
    cache.put("huge", (1, 1), b"x" * 26, "text/csv")  # over a quarter of the budget
    assert cache.get("huge", (1, 1)) is None


def test_zero_budget_turns_it_off():
    cache = PageCache(max_bytes=0, ttl_seconds=60)
    cache.put("k", (1, 1), b"page", "application/json")
    assert not cache.enabled and cache.get("k", (1, 1)) is None


# -- the API over a real database ----------------------------------------------------------

@pytest.fixture(scope="module")
def cache_db(pg_cluster) -> str:
    db_url = pg_cluster.new_database()
    migrate.migrate(db_url)
    write(db_url, *(make_bar(SYMBOL, m, start_us=day) for day in (DAY_A, DAY_B) for m in range(MINUTES)))
    return db_url


def write(db_url: str, *bars) -> None:
    writer = CopyMergeWriter(db_url, BARS)
    try:
        assert writer.write(as_rows(bars)) == []
    finally:
        writer.close()


def day_params(day_us: int, interval: str = "1m") -> dict:
    start = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(day_us / 1e6))
    end = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime((day_us + MICROS_PER_DAY) / 1e6))
    return {"symbol": SYMBOL, "interval": interval, "start": start, "end": end}


@pytest.fixture
def app_client(cache_db):
    app = create_app(api_settings(), dsn=cache_db)
    with TestClient(app) as client:
        yield app.state.page_cache, client


def closes(response) -> list[float]:
    assert response.status_code == 200, response.text
    return [bar["close"] for bar in response.json()["items"]]


def test_a_repeated_request_is_served_from_the_cache(app_client):
    cache, client = app_client
    first = client.get("/v1/bars", params=day_params(DAY_A))
    second = client.get("/v1/bars", params=day_params(DAY_A))
    assert first.content == second.content and len(first.json()["items"]) == MINUTES
    assert (cache.hits, cache.misses) == (1, 1)
    csv = client.get("/v1/bars", params=day_params(DAY_A), headers={"Accept": "text/csv"})
    assert csv.headers["content-type"].startswith("text/csv") and cache.misses == 2  # its own entry
    assert 'alphastream_api_bars_cache_lookups_total{result="hit"} 1.0' in client.get("/metrics").text


def test_a_write_to_the_day_is_seen_by_the_next_request(app_client, cache_db):
    cache, client = app_client
    minute = 7
    before = closes(client.get("/v1/bars", params=day_params(DAY_A)))
    rolled_before = client.get("/v1/bars", params=day_params(DAY_A, "15m")).json()["items"][0]["close"]
    csv_before = client.get("/v1/bars", params=day_params(DAY_A), headers={"Accept": "text/csv"}).text
    new_close = before[minute] + 11.0
    write(cache_db, make_bar(SYMBOL, minute, pane=9, close=new_close, start_us=DAY_A))
    after = closes(client.get("/v1/bars", params=day_params(DAY_A)))
    assert after[minute] == new_close and after[:minute] == before[:minute]
    # The roll-up's last constituent of its first 15 minutes is minute 14: write that one.
    write(cache_db, make_bar(SYMBOL, 14, pane=9, close=rolled_before + 3.0, start_us=DAY_A))
    assert client.get("/v1/bars", params=day_params(DAY_A, "15m")).json()["items"][0]["close"] == rolled_before + 3.0
    csv_after = client.get("/v1/bars", params=day_params(DAY_A), headers={"Accept": "text/csv"}).text
    assert csv_after != csv_before and str(new_close) in csv_after
    assert cache.hits == 0  # every request above followed a write to its day


def test_a_write_to_another_day_keeps_the_page(app_client, cache_db):
    cache, client = app_client
    client.get("/v1/bars", params=day_params(DAY_A))
    write(cache_db, make_bar(SYMBOL, 3, pane=9, close=123.0, start_us=DAY_B))
    client.get("/v1/bars", params=day_params(DAY_A))
    assert (cache.hits, cache.misses) == (1, 1)
    assert closes(client.get("/v1/bars", params=day_params(DAY_B)))[3] == 123.0


def test_cache_off_still_answers(cache_db):
    app = create_app(api_settings(api_bars_cache_mb=0), dsn=cache_db)
    with TestClient(app) as client:
        for _ in range(2):
            assert len(closes(client.get("/v1/bars", params=day_params(DAY_A)))) == MINUTES
    assert (app.state.page_cache.hits, app.state.page_cache.misses) == (0, 0)


def test_racing_writes_never_give_a_page_older_than_the_request(cache_db):
    """A writer commits ever newer panes of one bar while a client polls over HTTP: every answer
    holds at least the pane committed before its request was sent."""
    minute, panes = 42, 40
    committed = [0]
    done = threading.Event()
    errors: list[Exception] = []

    def writer() -> None:
        w = CopyMergeWriter(cache_db, BARS)
        try:
            for pane in range(10, 10 + panes):
                bar = make_bar(SYMBOL, minute, pane=pane, close=1000.0 + pane, start_us=DAY_A)
                assert w.write(as_rows([bar])) == []
                committed[0] = pane
                time.sleep(0.01)
        except Exception as err:  # asserted below: the writer's failure must fail the test
            errors.append(err)
        finally:
            w.close()
            done.set()

    app = create_app(api_settings(), dsn=cache_db)
    requests = 0
    with serve(app) as base, httpx.Client(base_url=base) as client:
        thread = threading.Thread(target=writer)
        thread.start()
        while not done.is_set() or requests < 5:
            floor = committed[0]
            got = closes(client.get("/v1/bars", params=day_params(DAY_A)))[minute]
            if floor:
                assert got >= 1000.0 + floor, f"stale page: close {got} after pane {floor} was committed"
            requests += 1
        thread.join()
    assert errors == []
    cache = app.state.page_cache
    assert cache.hits > 0 and cache.misses > 0, (cache.hits, cache.misses)  # both paths ran
