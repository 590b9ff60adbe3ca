"""Per-day bar versions (store/versions.py) against a real PostgreSQL: every sink write
bumps every (symbol, interval, UTC day) it wrote and none outside its batch, in the write's own
transaction, and
concurrent writers over shared days neither deadlock nor lose a bump."""
from __future__ import annotations

import datetime as dt
import logging
import threading

import psycopg
from hypothesis import given
from hypothesis import strategies as st

from store.versions import CROSS_PRODUCT_MAX_DAYS, MICROS_PER_DAY, touched_days
from store.writer import BARS, CopyMergeWriter
from tests.fixtures.bars import FAST_RETRY, T0, as_rows, make_bar

DAY_A = T0 - T0 % MICROS_PER_DAY  # midnight UTC of a day inside the current month
DAY_B = DAY_A + MICROS_PER_DAY
A, B = ((dt.date(1970, 1, 1) + dt.timedelta(microseconds=d)).isoformat() for d in (DAY_A, DAY_B))


def versions(dsn: str) -> dict[tuple[str, str, str], int]:
    with psycopg.connect(dsn) as conn:
        rows = conn.execute("SELECT symbol, interval, day::text, version FROM bar_versions").fetchall()
    return {(symbol, interval, day): version for symbol, interval, day, version in rows}


def test_each_write_bumps_the_days_it_wrote_in_its_transaction(db_url):
    writer = CopyMergeWriter(db_url, BARS)
    try:
        # New keys over two days: the direct COPY path. Within a short span the bump covers
        # symbol x interval x day of the batch, a superset of what was written.
        assert writer.write(as_rows([make_bar("AAPL", 0, start_us=DAY_A), make_bar("AAPL", 1, start_us=DAY_A),
                             make_bar("AAPL", 0, interval="5m", start_us=DAY_A),
                             make_bar("MSFT", 0, start_us=DAY_B)])) == []
        first = versions(db_url)
        assert first == {(s, i, d): 1 for s in ("AAPL", "MSFT") for i in ("1m", "5m") for d in (A, B)}
        # A later pane of one bar: the merge path; only its series and day move.
        assert writer.write(as_rows([make_bar("AAPL", 0, pane=1, close=101.0, start_us=DAY_A)])) == []
        assert versions(db_url) == {**first, ("AAPL", "1m", A): 2}
        # A refused row (low > high) is bisected out: its attempt rolled back with its bump.
        bad = make_bar("NVDA", 0, start_us=DAY_A)._replace(low=200.0)
        failed = writer.write(as_rows([make_bar("MSFT", 5, start_us=DAY_A), bad]))
        assert [f.row[0] for f in failed] == ["NVDA"]
        assert versions(db_url) == {**first, ("AAPL", "1m", A): 2, ("MSFT", "1m", A): 2}
    finally:
        writer.close()


rows_strategy = st.lists(st.tuples(st.sampled_from(["A", "B", "C"]), st.sampled_from(["1m", "5m", "1h"]),
                                   st.integers(-2 * MICROS_PER_DAY, 8 * MICROS_PER_DAY)), min_size=1, max_size=30)


@given(rows_strategy)
def test_touched_days_cover_every_written_day_and_stay_in_the_batch(rows):
    exact = {(s, i, t // MICROS_PER_DAY) for s, i, t in rows}
    span = (min(t for *_, t in rows), max(t for *_, t in rows))
    params = touched_days(rows, 0, 1, 2, span)
    got = set(zip(params["symbols"], params["intervals"], params["days"], strict=True))
    assert exact <= got and len(got) == len(params["days"])  # every key once
    assert {s for s, _, _ in got} == {s for s, _, _ in exact} and {i for _, i, _ in got} == {i for _, i, _ in exact}
    assert all(span[0] // MICROS_PER_DAY <= d <= span[1] // MICROS_PER_DAY for *_, d in got)
    if span[1] // MICROS_PER_DAY - span[0] // MICROS_PER_DAY >= CROSS_PRODUCT_MAX_DAYS:
        assert got == exact  # back-fill spans: exactly the keys written


def test_concurrent_writers_over_shared_days_never_deadlock_nor_lose_a_bump(db_url, caplog):
    """Two writers, keys in opposite orders, every batch touching the same ten (symbol, day)s:
    each committed write bumps each of them exactly once."""
    keys = [(s, day) for s in ("S1", "S2", "S3", "S4", "S5") for day in (DAY_A, DAY_B)]
    writes_each, errors, leftovers = 8, [], []

    def writer_thread(reverse: bool) -> None:
        writer = CopyMergeWriter(db_url, BARS, FAST_RETRY)
        try:
            for pane in range(writes_each):
                batch = [make_bar(s, 0, pane=pane, close=100.0 + pane, start_us=day) for s, day in keys]
                leftovers.extend(writer.write(as_rows(batch[::-1] if reverse else batch)))
        except Exception as err:  # collected and asserted below: a thread's error must fail the test
            errors.append(err)
        finally:
            writer.close()

    with caplog.at_level(logging.WARNING, logger="store.writer"):
        threads = [threading.Thread(target=writer_thread, args=(reverse,)) for reverse in (False, True)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(timeout=60)
    assert errors == [] and leftovers == []
    assert not [r for r in caplog.records if "deadlock" in r.getMessage()]
    day_text = {DAY_A: A, DAY_B: B}
    assert versions(db_url) == {(s, "1m", day_text[day]): 2 * writes_each for s, day in keys}
