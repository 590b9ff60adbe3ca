"""Bar revisions in real PostgreSQL: final bars win, later runs win, and the finaliser repairs
from the tick archive whatever a streaming run left short."""
from __future__ import annotations

import datetime as dt

import psycopg

from alphastream.records import Bar, Tick
from alphastream.tick_archive import TickArchive
from pipeline.finalizer import BarFinalizer, read_mark
from pipeline.repair import main as repair_main
from pipeline.repair import recompute
from store.revisions import FINAL_REVISION, StoredBar, bar_state, streaming_revision
from store.writer import BARS, CopyMergeWriter
from tests.fixtures.bars import make_bar

MINUTE_US = 60_000_000
T0 = int(dt.datetime(2024, 3, 4, 14, tzinfo=dt.timezone.utc).timestamp()) * 1_000_000
INTERVALS = ("1m", "5m")


def write(db_url: str, *rows: StoredBar) -> None:
    writer = CopyMergeWriter(db_url, BARS)
    try:
        assert writer.write(list(rows)) == []
    finally:
        writer.close()


def stored(db_url: str) -> dict[tuple, tuple]:
    """(symbol, interval, bucket start us) -> (close, trades, revision, updated_at)."""
    with psycopg.connect(db_url) as conn:
        rows = conn.execute("SELECT symbol, interval, (extract(epoch FROM bucket_start) * 1e6)::bigint, close, "
                            "trades, revision, updated_at FROM bars").fetchall()
    return {(s, i, b): (c, t, r, u) for s, i, b, c, t, r, u in rows}


def test_a_final_bar_is_never_replaced_by_a_streaming_pane(db_url):
    key = ("AAPL", "1m", make_bar().bucket_start_us)
    write(db_url, StoredBar(*make_bar(pane=3, close=103.0), streaming_revision(100, 3)))
    write(db_url, StoredBar(*make_bar(close=110.0), FINAL_REVISION))  # a repair supersedes the panes
    assert stored(db_url)[key][:3] == (110.0, 3, FINAL_REVISION)
    for epoch, pane in ((100, 4), (2**40, 0), (2**41, 2**20 - 1)):  # no pane of any run gets past it
        write(db_url, StoredBar(*make_bar(pane=pane % 3, close=120.0), streaming_revision(epoch, pane)))
    assert stored(db_url)[key][:2] == (110.0, 3)


def test_a_later_run_replaces_an_earlier_runs_higher_pane(db_url):
    key = ("AAPL", "1m", make_bar().bucket_start_us)
    write(db_url, StoredBar(*make_bar(pane=2, close=102.0), streaming_revision(1_700_000_000, 5)))
    write(db_url, StoredBar(*make_bar(pane=0, close=100.5), streaming_revision(1_700_000_100, 0)))  # restarted
    assert stored(db_url)[key][0] == 100.5
    write(db_url, StoredBar(*make_bar(pane=2, close=99.0), streaming_revision(1_700_000_000, 6)))  # the old run
    assert stored(db_url)[key][0] == 100.5


def test_a_final_bar_changes_only_when_its_values_do(db_url):
    key = ("AAPL", "1m", make_bar().bucket_start_us)
    write(db_url, StoredBar(*make_bar(close=100.0), FINAL_REVISION))
    before = stored(db_url)[key]
    write(db_url, StoredBar(*make_bar(close=100.0), FINAL_REVISION))  # a replay: not even updated_at moves
    assert stored(db_url)[key] == before
    write(db_url, StoredBar(*make_bar(close=104.0), FINAL_REVISION))  # a re-run over corrected ticks
    assert stored(db_url)[key][0] == 104.0


def test_states_served_for_each_revision():
    assert bar_state("ON_TIME", FINAL_REVISION) == "final"
    assert bar_state("EARLY", streaming_revision(5, 0)) == "provisional"
    assert bar_state("ON_TIME", streaming_revision(5, 1)) == "provisional"
    assert bar_state("LATE", streaming_revision(5, 2)) == "revised"


def archive_ticks(root: str, ticks: list[Tick]) -> None:
    archive = TickArchive(root, "ingest")
    archive.append(ticks)
    archive.close()


def minute_ticks(minutes: int, per_minute: int) -> list[Tick]:
    return [Tick("AAPL", T0 + m * MINUTE_US + i * 1_000_000, 100.0 + m + i / 100, 1.0 + i, f"{m}-{i}", "coinbase")
            for m in range(minutes) for i in range(per_minute)]


def test_finaliser_repairs_short_streaming_bars_and_resumes_from_its_mark(db_url, tmp_path):
    ticks = minute_ticks(10, 30)
    archive_ticks(str(tmp_path), ticks)
    expected = {(b.symbol, b.interval, b.bucket_start_us): (b.close, b.trades)
                for b in recompute(str(tmp_path), T0, T0 + 10 * MINUTE_US, INTERVALS, now_us=T0 + 86_400_000_000).bars}
    # A streaming run that died: its bars hold a few ticks each (the rest of its state was lost).
    short = [Bar("AAPL", "1m", T0 + m * MINUTE_US, 100.0, 100.0, 100.0, 100.0, 1.0, 100.0, 1, "EARLY", 4)
             for m in range(10)]
    write(db_url, *(StoredBar(*bar, streaming_revision(1_700_000_000, 4)) for bar in short))

    clock = [T0 + 2 * MINUTE_US]
    finalizer = BarFinalizer(str(tmp_path), db_url, INTERVALS, allowed_lateness_seconds=30, now_us=lambda: clock[0])
    assert finalizer.run_once() is None  # a new archive: the mark starts at the closed edge
    assert read_mark(db_url, str(tmp_path)) == T0  # 5m buckets: [14:00, 14:05) is still open at 14:02

    clock[0] = T0 + 10 * MINUTE_US + 31_000_000  # 14:10:31, every 5m window closed 30 s ago
    outcome = finalizer.run_once()
    assert (outcome.start_us, outcome.end_us, outcome.failed) == (T0, T0 + 10 * MINUTE_US, 0)
    now = stored(db_url)
    for key, (close, trades) in expected.items():
        assert now[key][:3] == (close, trades, FINAL_REVISION), key
    assert read_mark(db_url, str(tmp_path)) == T0 + 10 * MINUTE_US
    assert finalizer.run_once() is None  # nothing new: the mark holds


def test_finaliser_keeps_its_mark_while_the_database_is_away(db_url, tmp_path):
    archive_ticks(str(tmp_path), minute_ticks(5, 5))
    clock = [T0]
    finalizer = BarFinalizer(str(tmp_path), db_url, ("1m",), allowed_lateness_seconds=0, now_us=lambda: clock[0],
                             every_seconds=0.01)
    finalizer.run_once()
    away = BarFinalizer(str(tmp_path), "postgresql://nobody@127.0.0.1:1/none", ("1m",), allowed_lateness_seconds=0,
                        now_us=lambda: T0 + 5 * MINUTE_US)
    away._attempt()  # logs and returns: the mark is untouched
    assert read_mark(db_url, str(tmp_path)) == T0
    clock[0] = T0 + 5 * MINUTE_US
    finalizer.start()
    finalizer.stop()  # the loop's pass and the final one: idempotent
    assert read_mark(db_url, str(tmp_path)) == T0 + 5 * MINUTE_US
    assert {v[1] for v in stored(db_url).values()} == {5}


def test_repair_cli_stores_final_bars(db_url, tmp_path, capsys):
    archive_ticks(str(tmp_path), minute_ticks(3, 4))
    code = repair_main(["--archive", str(tmp_path), "--start", "2024-03-04T14:00", "--end", "2024-03-04T14:03",
                        "--intervals", "1m", "--db_url", db_url])
    assert code == 0
    assert "stored 3 final bars" in capsys.readouterr().out
    assert {(v[1], v[2]) for v in stored(db_url).values()} == {(4, FINAL_REVISION)}


def test_finaliser_keeps_the_live_runs_gap_fills(db_url, tmp_path):
    """With gap filling on (the live default), final bars include the filled buckets, so a
    finalised series has no holes where the live one had fills."""
    from transforms.gap_fill import FillPolicy

    ticks = [t for t in minute_ticks(5, 3) if not T0 + MINUTE_US <= t.ts_us < T0 + 3 * MINUTE_US]  # quiet 14:01-14:03
    archive_ticks(str(tmp_path), ticks)
    clock = [T0]
    finalizer = BarFinalizer(str(tmp_path), db_url, ("1m",), allowed_lateness_seconds=0, now_us=lambda: clock[0],
                             fill=FillPolicy())
    finalizer.run_once()
    clock[0] = T0 + 5 * MINUTE_US
    finalizer.run_once()
    rows = stored(db_url)
    filled = sorted(b for (_, _, b), (_, trades, revision, _) in rows.items()
                    if trades == 0 and revision == FINAL_REVISION)
    assert filled == [T0 + MINUTE_US, T0 + 2 * MINUTE_US]
    assert len(rows) == 5
