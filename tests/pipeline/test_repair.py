"""Repair from the tick archive: the batch path's bars, for whole buckets of a range."""
from __future__ import annotations

import datetime as dt
import random

import apache_beam as beam
from apache_beam.testing.test_pipeline import TestPipeline

from alphastream.records import Tick
from alphastream.tick_archive import TickArchive
from pipeline.repair import aligned_range, closed_until, main, recompute
from tests.fixtures.beam import Collected
from tests.fixtures.reference import assert_same_bars, bars_frame
from transforms.batch_bars import BatchBars
from transforms.tick_tables import ticks_to_table

INTERVALS = ("1m", "5m", "1h")
HOUR_US = 3_600_000_000
T0 = int(dt.datetime(2024, 3, 4, 14, tzinfo=dt.timezone.utc).timestamp()) * 1_000_000
NOW_US = T0 + 30 * 86_400_000_000


def market(seed: int, count: int) -> list[Tick]:
    """Ticks over two hours, with repeated deliveries (same trade, same values)."""
    rng = random.Random(seed)
    ticks = [Tick(rng.choice(["AAPL", "MSFT"]), T0 + rng.randrange(2 * HOUR_US), round(rng.uniform(90, 110), 2),
                  float(rng.randrange(0, 50)), str(i), rng.choice(["coinbase", "kraken"])) for i in range(count)]
    return ticks + rng.sample(ticks, count // 10)


def batch_bars(ticks: list[Tick]) -> list:
    with TestPipeline() as p:
        bars = Collected(p | beam.Create([ticks_to_table(ticks)]) | BatchBars(INTERVALS))
    return bars.items


def test_ranges_cover_whole_buckets_of_the_largest_interval():
    assert aligned_range(T0 + 61_000_000, T0 + HOUR_US + 1, INTERVALS) == (T0, T0 + 2 * HOUR_US)
    assert aligned_range(T0, T0 + HOUR_US, INTERVALS) == (T0, T0 + HOUR_US)
    # A bucket is final once its end plus the allowed lateness has passed.
    assert closed_until(T0 + HOUR_US + 59_000_000, 60, INTERVALS) == T0
    assert closed_until(T0 + HOUR_US + 60_000_000, 60, INTERVALS) == T0 + HOUR_US


def test_repair_equals_the_batch_path_on_the_same_ticks(tmp_path):
    ticks = market(seed=7, count=3_000)
    archive = TickArchive(str(tmp_path), "ingest")
    shuffled = random.Random(1).sample(ticks, len(ticks))  # archive order never matters
    for start in range(0, len(shuffled), 500):
        archive.append(shuffled[start:start + 500])
    archive.close()

    result = recompute(str(tmp_path), T0, T0 + 2 * HOUR_US, INTERVALS, now_us=NOW_US)
    assert result.ticks_read == len(ticks)
    assert result.ticks_unique == 3_000
    assert_same_bars(bars_frame(result.bars), bars_frame(batch_bars(ticks)))


def test_repair_of_one_hour_reads_only_that_hour(tmp_path):
    ticks = market(seed=3, count=1_000)
    archive = TickArchive(str(tmp_path), "ingest")
    archive.append(ticks)
    archive.close()
    first_hour = [t for t in ticks if t.ts_us < T0 + HOUR_US]
    result = recompute(str(tmp_path), T0 + 5 * 60_000_000, T0 + 10 * 60_000_000, INTERVALS, now_us=NOW_US)
    assert (result.start_us, result.end_us) == (T0, T0 + HOUR_US)
    assert result.ticks_read == len(first_hour)
    assert_same_bars(bars_frame(result.bars), bars_frame(batch_bars(first_hour)))


def test_invalid_archived_ticks_are_counted_not_used(tmp_path):
    good = Tick("AAPL", T0 + 1, 100.0, 1.0, "1", "coinbase")
    bad = Tick("AAPL", T0 + 2, -5.0, 1.0, "2", "coinbase")
    archive = TickArchive(str(tmp_path), "ingest")
    archive.append([good, bad])
    archive.close()
    result = recompute(str(tmp_path), T0, T0 + HOUR_US, INTERVALS, now_us=NOW_US)
    assert (result.ticks_read, result.ticks_invalid, result.ticks_unique) == (2, 1, 1)
    assert {bar.trades for bar in result.bars} == {1}


def test_cli_dry_run_reports_what_it_would_store(tmp_path, capsys):
    archive = TickArchive(str(tmp_path), "ingest")
    archive.append(market(seed=5, count=200))
    archive.close()
    code = main(["--archive", str(tmp_path), "--start", "2024-03-04T14:00", "--end", "2024-03-04T16:00",
                 "--dry_run"], now_us=lambda: NOW_US)
    out = capsys.readouterr().out
    assert code == 0
    assert "220 archived ticks read" in out and "200 unique trades" in out
