"""The back-fill's data-quality gate (orchestration.quality) and the counters it is handed
(orchestration.batch_run): each check passes a good day and fails a bad one with its reason."""
from __future__ import annotations

import datetime as dt
import json
from pathlib import Path

import pytest

from alphastream.records import Bar
from orchestration.batch_run import counters_from_summary
from orchestration.quality import Thresholds, check_bar_counts, check_counters, lake_bar_counts, main
from pipeline.lake import bar_stem, records_to_table, write_parquet_replacing
from pipeline.summary import RunSummary

DAY = dt.date(2026, 1, 24)
DAY_US = 1_769_212_800_000_000
GOOD = {"ticks_read": 1000, "ticks_unique": 990, "ticks_duplicate": 5, "ticks_dead_lettered": 5}


def test_a_balanced_run_passes_and_an_unbalanced_one_says_by_how_much():
    assert check_counters(GOOD, Thresholds()) == []
    problems = check_counters({**GOOD, "ticks_unique": 980}, Thresholds())
    assert problems == ["accounting: 1,000 ticks read but 980 unique + 5 duplicates + 5 dead-lettered = 990"]


def test_the_dead_letter_rate_and_an_empty_day_fail():
    (problem,) = check_counters({**GOOD, "ticks_unique": 960, "ticks_dead_lettered": 35}, Thresholds())
    assert problem.startswith("dead-letter rate 3.50% (35 of 1,000) is above 1.00%")
    empty = dict.fromkeys(GOOD, 0)
    assert check_counters(empty, Thresholds()) == ["no ticks read: check the input glob for this day"]


def test_bar_counts_are_compared_with_each_symbols_median_over_days_with_bars():
    history = [{"AAPL": 390, "MSFT": 390}, {}, {"AAPL": 380, "MSFT": 100}, {"AAPL": 400, "MSFT": 390}]
    assert check_bar_counts({"AAPL": 390, "MSFT": 390, "NEW": 5}, history, Thresholds(), "1m") == []
    problems = check_bar_counts({"AAPL": 150}, history, Thresholds(), "1m")
    assert problems == [
        "AAPL: 150 1m bars, below 50% of its median 390 over the 3 previous days with bars",
        "MSFT: 0 1m bars, below 50% of its median 390 over the 3 previous days with bars",
    ]
    assert check_bar_counts({}, [{}, {}], Thresholds(), "1m") == []  # the first day: no history


def _lake_day(lake: Path, day: dt.date, minutes: dict[str, int]) -> None:
    start = DAY_US + (day - DAY).days * 86_400_000_000
    for symbol, count in minutes.items():
        bars = [Bar(symbol, "1m", start + m * 60_000_000, 1, 1, 1, 1, 1, 1, 1, "ON_TIME", 0) for m in range(count)]
        write_parquet_replacing(str(lake / f"{bar_stem(bars[0])}.parquet"), records_to_table(bars, Bar))


def test_lake_bar_counts_reads_the_days_partition(tmp_path: Path):
    _lake_day(tmp_path, DAY, {"AAPL": 7, "BTC/USD": 3})
    _lake_day(tmp_path, DAY - dt.timedelta(days=1), {"AAPL": 9})
    assert lake_bar_counts(str(tmp_path), "1m", DAY) == {"AAPL": 7, "BTC/USD": 3}
    assert lake_bar_counts(str(tmp_path), "5m", DAY) == {}


def test_the_command_fails_a_day_whose_bars_collapsed(tmp_path: Path, capsys):
    for back in range(1, 4):
        _lake_day(tmp_path, DAY - dt.timedelta(days=back), {"AAPL": 60})
    _lake_day(tmp_path, DAY, {"AAPL": 60})
    args = ["--counters", json.dumps(GOOD), "--lake", str(tmp_path), "--date", DAY.isoformat()]
    assert main(args) == 0
    assert "data quality OK for 2026-01-24" in capsys.readouterr().out
    _lake_day(tmp_path, DAY, {"AAPL": 10})
    assert main(args) == 1
    assert "AAPL: 10 1m bars, below 50% of its median 60" in capsys.readouterr().err


def test_batch_run_reads_the_counters_the_pipeline_summary_prints():
    summary = RunSummary({"ticks_read": 200_400, "ticks_unique": 200_000, "ticks_duplicate": 400,
                          "ticks_dead_lettered": 0, "bars_1m": 7_800})
    output = "alphastream run finished in 0.8 s\n" + "\n".join("  " + line for line in summary.lines("lake", None))
    assert counters_from_summary(output) == {"ticks_read": 200_400, "ticks_unique": 200_000,
                                             "ticks_duplicate": 400, "ticks_dead_lettered": 0}
    with pytest.raises(ValueError, match="no ticks_dead_lettered, ticks_duplicate, ticks_read, ticks_unique line"):
        counters_from_summary("error: no such file")
