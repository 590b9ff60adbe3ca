"""Lake compaction (orchestration.compaction) on real files: the streaming lake's small files
of a day become the batch layout's daily files, no bar or dead letter is lost, the latest pane
of a bar wins, and a re-run (also after a crash between the write and the deletes) changes nothing."""
from __future__ import annotations

import datetime as dt
import shutil
from pathlib import Path

import pyarrow.parquet as pq

from alphastream.records import Bar, DeadLetter
from orchestration.compaction import compact_day, main
from pipeline.lake import bar_stem, dead_letter_stem, records_to_table, write_parquet_replacing
from pipeline.streaming_lake import lake_file_name

DAY = dt.date(2026, 1, 24)
DAY_US = 1_769_212_800_000_000
MINUTE_US = 60_000_000


def _bar(symbol: str, minute: int, close: float, pane: int = 0, timing: str = "ON_TIME") -> Bar:
    return Bar(symbol, "1m", DAY_US + minute * MINUTE_US, 10, 12, 9, close, 5, 10.5, 3, timing, pane)


def _letter(n: int) -> DeadLetter:
    return DeadLetter("bad_price", "price -1 <= 0", f"raw-{n}", f"ticks.csv:{n}", DAY_US + n)


def _write_pane(lake: Path, records: list, stem: str, record_type, window: int, pane: int) -> Path:
    start = DAY_US + window * MINUTE_US
    path = lake / lake_file_name(stem, start, start + MINUTE_US, pane)
    write_parquet_replacing(str(path), records_to_table(records, record_type))
    return path


def _rows(path: Path) -> list[dict]:
    return pq.read_table(path).to_pylist()


def _streamed_day(lake: Path) -> list[Path]:
    """Two symbols over three lake windows; AAPL's minute 1 is corrected by a late pane."""
    paths = []
    for window in range(3):
        for symbol in ("AAPL", "BTC-USD"):
            bar = _bar(symbol, window, 100 + window)
            paths.append(_write_pane(lake, [bar], bar_stem(bar), Bar, window, 0))
    late = _bar("AAPL", 1, 111.0, pane=1, timing="LATE")
    paths.append(_write_pane(lake, [late], bar_stem(late), Bar, 1, 1))
    letters = [_letter(1), _letter(2)]
    paths.append(_write_pane(lake, letters[:1], dead_letter_stem(letters[0]), DeadLetter, 0, 0))
    paths.append(_write_pane(lake, letters[1:], dead_letter_stem(letters[1]), DeadLetter, 0, 1))
    return paths


def test_small_files_become_daily_files_keeping_every_bar_and_the_latest_pane(tmp_path: Path):
    lake = tmp_path / "lake"
    small = _streamed_day(lake)

    result = compact_day(str(lake), DAY)

    assert (result.small_files, result.daily_files) == (len(small), 3)
    assert not [p for p in small if p.exists()]
    folder = lake / "bars" / "interval=1m" / f"date={DAY}"
    assert sorted(p.name for p in folder.iterdir()) == ["bars-AAPL.parquet", "bars-BTC-USD.parquet"]
    aapl = _rows(folder / "bars-AAPL.parquet")
    assert [(r["close"], r["pane_index"], r["timing"]) for r in aapl] == [
        (100.0, 0, "ON_TIME"), (111.0, 1, "LATE"), (102.0, 0, "ON_TIME")]
    assert [r["close"] for r in _rows(folder / "bars-BTC-USD.parquet")] == [100.0, 101.0, 102.0]
    (letters_file,) = (lake / "dead_letters" / f"date={DAY}").iterdir()
    assert [r["origin"] for r in _rows(letters_file)] == ["ticks.csv:1", "ticks.csv:2"]


def test_a_rerun_and_a_rerun_after_a_crash_before_the_deletes_change_nothing(tmp_path: Path):
    lake, saved = tmp_path / "lake", tmp_path / "saved"
    small = _streamed_day(lake)
    shutil.copytree(lake, saved)
    compact_day(str(lake), DAY)
    daily = {p: _rows(p) for p in sorted(lake.rglob("*.parquet"))}

    assert compact_day(str(lake), DAY).small_files == 0
    assert {p: _rows(p) for p in sorted(lake.rglob("*.parquet"))} == daily

    # A crash after the daily files were written but before the small files were deleted.
    for path in small:
        shutil.copy(saved / path.relative_to(lake), path)
    assert compact_day(str(lake), DAY).small_files == len(small)
    assert {p: _rows(p) for p in sorted(lake.rglob("*.parquet"))} == daily


def test_a_batch_daily_file_keeps_its_bars_and_gains_the_streamed_ones(tmp_path: Path):
    lake = tmp_path / "lake"
    batch = [_bar("AAPL", 0, 90.0), _bar("AAPL", 5, 95.0)]
    write_parquet_replacing(str(lake / f"{bar_stem(batch[0])}.parquet"), records_to_table(batch, Bar))
    streamed = _bar("AAPL", 0, 91.0)  # same pane as the batch bar: the daily file's row wins
    _write_pane(lake, [streamed], bar_stem(streamed), Bar, 0, 0)
    _write_pane(lake, [_bar("AAPL", 7, 97.0)], bar_stem(streamed), Bar, 7, 0)

    compact_day(str(lake), DAY)

    rows = _rows(lake / f"{bar_stem(streamed)}.parquet")
    assert [r["close"] for r in rows] == [90.0, 95.0, 97.0]


def test_other_days_are_left_alone(tmp_path: Path):
    lake = tmp_path / "lake"
    small = _streamed_day(lake)
    assert compact_day(str(lake), DAY + dt.timedelta(days=1)).small_files == 0
    assert all(p.exists() for p in small)


def test_the_command_line_reports_what_it_did(tmp_path: Path, capsys):
    lake = tmp_path / "lake"
    small = _streamed_day(lake)
    assert main(["--lake", str(lake), "--date", DAY.isoformat()]) == 0
    assert capsys.readouterr().out.strip() == (f"compacted {len(small)} small files into 3 daily files "
                                               f"(9 rows read, 8 kept)")
