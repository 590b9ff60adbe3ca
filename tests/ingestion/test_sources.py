"""The synthetic live market and the file replay, on a fake clock (no sleeping)."""
from __future__ import annotations

import asyncio
import json
import shutil
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from alphastream.records import Tick
from alphastream.synthetic import symbol_names
from ingestion.connectors.replay import ReplayFile, detect_format
from ingestion.connectors.synthetic import SyntheticMarket
from tests.fixtures.connectors import FakeTime, take_ticks

FEEDS = Path(__file__).parents[1] / "data" / "feeds"
REPLAY_CSV = FEEDS / "replay_ticks.csv"
# replay_ticks.csv, by hand: 2024-05-01T14:30:00Z = 1714573800 s; offsets 0, .25, .5, .4, (bad), 1, 2 s
REPLAY_OFFSETS_US = [0, 250_000, 500_000, 400_000, 1_000_000, 2_000_000]


def _synthetic(seed: int, fake: FakeTime, rate: float = 1000.0) -> SyntheticMarket:
    return SyntheticMarket(rate=rate, symbols=5, seed=seed, clock=fake.clock, sleep=fake.sleep)


def test_synthetic_is_seeded_and_timestamped_now():
    fake_a, fake_b = FakeTime(), FakeTime()
    a = asyncio.run(take_ticks(_synthetic(7, fake_a), 2000))
    b = asyncio.run(take_ticks(_synthetic(7, fake_b), 2000))
    other = asyncio.run(take_ticks(_synthetic(8, FakeTime()), 2000))
    assert [(t.symbol, t.price, t.size) for t in a] == [(t.symbol, t.price, t.size) for t in b]
    assert [(t.symbol, t.price) for t in a] != [(t.symbol, t.price) for t in other]
    assert {t.symbol for t in a} == set(symbol_names(5))
    assert all(t.price > 0 and t.size >= 1 and t.source == "synthetic" for t in a)
    assert len({t.trade_id for t in a}) == 2000
    assert all(1_000_000.0 * 1e6 <= t.ts_us <= fake_a.now * 1e6 for t in a), "event time = the clock"
    assert [t.ts_us for t in a] == sorted(t.ts_us for t in a)


def test_synthetic_paces_at_the_requested_rate():
    fake = FakeTime()
    ticks = asyncio.run(take_ticks(_synthetic(1, fake, rate=2000.0), 4001))
    assert fake.now - 1_000_000.0 == pytest.approx(2.0, abs=0.01)
    per_second = [sum(1 for t in ticks if int(t.ts_us / 1e6 - 1_000_000) == s) for s in (0, 1)]
    assert per_second == [pytest.approx(2000, abs=5)] * 2


def test_synthetic_runs_get_distinct_trade_ids():
    first = asyncio.run(take_ticks(_synthetic(7, FakeTime(1000.0)), 10))
    second = asyncio.run(take_ticks(_synthetic(7, FakeTime(2000.0)), 10))
    assert not {t.trade_id for t in first} & {t.trade_id for t in second}


def test_synthetic_random_walk_moves_prices_by_small_steps():
    ticks = asyncio.run(take_ticks(_synthetic(3, FakeTime()), 5000))
    by_symbol: dict[str, list[float]] = {}
    for tick in ticks:
        by_symbol.setdefault(tick.symbol, []).append(tick.price)
    for prices in by_symbol.values():
        assert len(set(prices)) > 1
        assert max(abs(b / a - 1) for a, b in zip(prices, prices[1:], strict=False)) < 0.01


def test_replay_csv_shifts_the_first_tick_to_now_and_keeps_offsets():
    fake = FakeTime()
    connector = ReplayFile(REPLAY_CSV, speed=1.0, clock=fake.clock, sleep=fake.sleep)
    ticks = asyncio.run(take_ticks(connector, 6))
    start_us = int(1_000_000.0 * 1e6)
    assert [t.ts_us - start_us for t in ticks] == REPLAY_OFFSETS_US
    assert [t.trade_id for t in ticks] == ["r-1", "r-2", "r-3", "r-4", "r-5", "r-6"]
    assert ticks[4] == Tick("BRK.B", start_us + 1_000_000, 405.0, 3.0, "r-5", "replay")
    assert connector.stats.malformed == 1  # MSFT,not-a-time
    assert sum(fake.sleeps) == pytest.approx(2.0), "real time: the file spans 2 s"


def test_replay_speed_compresses_time_and_timestamps():
    fake = FakeTime()
    ticks = asyncio.run(take_ticks(ReplayFile(REPLAY_CSV, speed=10.0, clock=fake.clock, sleep=fake.sleep), 6))
    start_us = int(1_000_000.0 * 1e6)
    assert [t.ts_us - start_us for t in ticks] == [o // 10 for o in REPLAY_OFFSETS_US]
    assert sum(fake.sleeps) == pytest.approx(0.2)


def test_replay_reads_jsonl_and_parquet_like_csv(tmp_path):
    rows = ReplayFile(REPLAY_CSV).load()
    jsonl = tmp_path / "ticks.jsonl"
    jsonl.write_text("".join(json.dumps(t._asdict()) + "\n" for t in rows) + "{broken\n")
    parquet = tmp_path / "ticks.parquet"
    pq.write_table(pa.Table.from_pylist([t._asdict() for t in rows]), parquet)
    from_jsonl = ReplayFile(jsonl)
    assert from_jsonl.load() == rows and from_jsonl.stats.malformed == 1
    assert ReplayFile(parquet).load() == rows


def test_replay_parquet_with_a_timestamp_column(tmp_path):
    table = pa.table({"symbol": ["AAPL"], "ts": pa.array([1714573800_500000], pa.timestamp("us", tz="UTC")),
                      "price": [1.5], "size": [2.0], "trade_id": ["x"]})
    path = tmp_path / "t.parquet"
    pq.write_table(table, path)
    assert ReplayFile(path).load() == [Tick("AAPL", 1714573800_500000, 1.5, 2.0, "x", "replay")]


def test_replay_rejects_unknown_extensions_and_bad_speeds(tmp_path):
    with pytest.raises(ValueError, match="--input_format"):
        detect_format(tmp_path / "ticks.txt")
    assert detect_format(tmp_path / "ticks.txt", "csv") == "csv"
    for speed in (0, -1, float("inf")):
        with pytest.raises(ValueError):
            ReplayFile(REPLAY_CSV, speed=speed)
    copy = tmp_path / "ticks.data"
    shutil.copy(REPLAY_CSV, copy)
    assert len(ReplayFile(copy, input_format="csv").load()) == 6
