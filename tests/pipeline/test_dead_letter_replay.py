"""Dead letters replayed from the lake into ``dead_letters`` (pipeline.dead_letter_replay), on a
real PostgreSQL: the letters of an outage, which only the lake could take, reach the table once,
with the letters the table itself refused unwrapped."""
from __future__ import annotations

import json
import os
import time

import psycopg
import pytest

from alphastream.records import DeadLetter
from pipeline.dead_letter_replay import replay_dead_letters
from pipeline.lake import dead_letter_file, records_to_table, write_parquet_replacing

NOW_US = time.time_ns() // 1_000
BAD_TICK = DeadLetter("bad_json", "line 1: not JSON", "{broken", "projects/p/subscriptions/s", NOW_US)
BAR_FAILED = DeadLetter("sink_failed", "bars write failed after 5 attempts: connection refused",
                        json.dumps({"symbol": "AAPL", "interval": "5s"}), "postgres:bars", NOW_US - 5_000_000)
# What the dead-letter table's own sink makes of BAR_FAILED while the database is down.
TABLE_FAILED = DeadLetter("sink_failed", "dead_letters write failed after 5 attempts: connection refused",
                          json.dumps(BAR_FAILED._asdict()), "postgres:dead_letters", BAR_FAILED.seen_at_us)


def write_lake(lake, letters) -> list:
    paths = []
    for letter in letters:
        path = lake / dead_letter_file(letter).replace(".parquet", f"-{len(paths)}.parquet")
        path.parent.mkdir(parents=True, exist_ok=True)
        write_parquet_replacing(str(path), records_to_table([letter], DeadLetter))
        paths.append(path)
    return paths


def stored(db_url: str) -> set[tuple]:
    with psycopg.connect(db_url) as conn:
        return set(conn.execute("SELECT reason, origin, raw, (extract(epoch FROM seen_at) * 1e6)::bigint "
                                "FROM dead_letters").fetchall())


def key(letter: DeadLetter) -> tuple:
    return letter.reason, letter.origin, letter.raw, letter.seen_at_us


def test_the_lake_letters_reach_the_table_once_with_the_refused_ones_unwrapped(db_url, tmp_path):
    write_lake(tmp_path, [BAD_TICK, TABLE_FAILED])
    now = time.time()
    result, files = replay_dead_letters(str(tmp_path), db_url, now - 60, now)
    assert (result.files, result.letters, result.failed) == (2, 3, 0)
    assert stored(db_url) == {key(BAD_TICK), key(TABLE_FAILED), key(BAR_FAILED)}
    # Replayed again (the same files, or a later pass): nothing doubles.
    replay_dead_letters(str(tmp_path), db_url, now - 60, now)
    assert len(stored(db_url)) == 3
    # Files already replayed unchanged are skipped.
    again, _ = replay_dead_letters(str(tmp_path), db_url, now - 60, now, frozenset(files))
    assert again.files == 0


def test_files_older_than_the_last_replay_are_not_read(db_url, tmp_path):
    (old,) = write_lake(tmp_path, [BAD_TICK])
    os.utime(old, (time.time() - 3_600, time.time() - 3_600))
    now = time.time()
    result, _ = replay_dead_letters(str(tmp_path), db_url, now - 60, now)
    assert result.files == 0 and stored(db_url) == set()


def test_an_unreachable_database_raises_so_the_caller_retries(tmp_path, db_url):
    write_lake(tmp_path, [BAD_TICK])
    unreachable = db_url.rsplit(":", 1)[0] + ":1/none"
    now = time.time()
    with pytest.raises(psycopg.OperationalError):
        replay_dead_letters(str(tmp_path), unreachable, now - 60, now)
