"""Per-day bar versions (pipeline/db/versions.py) against a real PostgreSQL: every sink write
bumps exactly the (symbol, interval, UTC day) it wrote, in the write's own transaction, and
concurrent writers over shared days neither deadlock nor lose a bump."""
from __future__ import annotations

import datetime as dt
import logging
import threading

import psycopg

from pipeline.db.versions import MICROS_PER_DAY
from pipeline.db.writer import BARS, CopyMergeWriter
from tests.test_db_sink import FAST_RETRY, T0, make_bar

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
        # New keys: the direct COPY path.
        assert writer.write([make_bar("AAPL", 0, start_us=DAY_A), make_bar("AAPL", 1, start_us=DAY_A),
                             make_bar("AAPL", 0, interval="5m", start_us=DAY_A),
                             make_bar("MSFT", 0, start_us=DAY_B)]) == []
        assert versions(db_url) == {("AAPL", "1m", A): 1, ("AAPL", "5m", A): 1, ("MSFT", "1m", B): 1}
        # A later pane of one bar: the merge path; only its day moves.
        assert writer.write([make_bar("AAPL", 0, pane=1, close=101.0, start_us=DAY_A)]) == []
        assert versions(db_url) == {("AAPL", "1m", A): 2, ("AAPL", "5m", A): 1, ("MSFT", "1m", B): 1}
        # A refused row (low > high) is bisected out: its attempt rolled back with its bump.
        bad = make_bar("NVDA", 0, start_us=DAY_A)._replace(low=200.0)
        failed = writer.write([make_bar("MSFT", 5, start_us=DAY_A), bad])
        assert [f.row[0] for f in failed] == ["NVDA"]
        assert versions(db_url) == {("AAPL", "1m", A): 2, ("AAPL", "5m", A): 1, ("MSFT", "1m", B): 1,
                                    ("MSFT", "1m", A): 1}
    finally:
        writer.close()


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
                leftovers.extend(writer.write(batch[::-1] if reverse else batch))
        except Exception as err:  # collected and asserted below: a thread's error must fail the test
            errors.append(err)
        finally:
            writer.close()

    with caplog.at_level(logging.WARNING, logger="pipeline.db.writer"):
        threads = [threading.Thread(target=writer_thread, args=(reverse,)) for reverse in (False, True)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(timeout=60)
    assert errors == [] and leftovers == []
    assert not [r for r in caplog.records if "deadlock" in r.getMessage()]
    day_text = {DAY_A: A, DAY_B: B}
    assert versions(db_url) == {(s, "1m", day_text[day]): 2 * writes_each for s, day in keys}
