"""Labelled anomalies injected into the live synthetic market, on a fake clock: visible in the
ticks where the plan's labels say, and found there by the detectors."""
from __future__ import annotations

import asyncio

import numpy as np
import pandas as pd
import pytest

from alphastream.records import MICROS_PER_SECOND, AnomalyKind, Bar
from alphastream.synthetic import INJECTED_GAP_MINUTES, INJECTED_VOLUME_FACTOR, LiveAnomalyPlan, symbol_names
from ingestion.connectors.synthetic import SyntheticMarket
from tests.fixtures.connectors import FakeTime, take_ticks
from transforms.anomalies import DetectorParams, detect_series

SYMBOLS = 3
RATE = 600.0  # 200 ticks per symbol and second: every 1-second bar trades
SECONDS = 100


def _run(seed: int, plan: LiveAnomalyPlan | None) -> pd.DataFrame:
    fake = FakeTime()
    market = SyntheticMarket(rate=RATE, symbols=SYMBOLS, seed=seed, anomalies=plan, clock=fake.clock, sleep=fake.sleep)
    ticks = asyncio.run(take_ticks(market, int(RATE * SECONDS)))
    frame = pd.DataFrame(ticks)
    frame["bucket_us"] = frame.ts_us - frame.ts_us % (plan.bar_us if plan else MICROS_PER_SECOND)
    return frame


def _bars(frame: pd.DataFrame) -> dict[str, list[Bar]]:
    """1s OHLCV per symbol, by pandas (ticks arrive in event-time order)."""
    grouped = frame.groupby(["symbol", "bucket_us"]).agg(open=("price", "first"), high=("price", "max"),
                                                          low=("price", "min"), close=("price", "last"),
                                                          volume=("size", "sum"), trades=("price", "size"))
    bars: dict[str, list[Bar]] = {}
    for (symbol, bucket), row in grouped.iterrows():
        bars.setdefault(symbol, []).append(Bar(symbol, "1s", int(bucket), row.open, row.high, row.low, row.close,
                                               row.volume, row.close, int(row.trades), "ON_TIME", 0))
    return bars


@pytest.fixture(scope="module")
def injected():
    plan = LiveAnomalyPlan(bar_seconds=1, seed=5)
    frame = _run(5, plan)
    labels = plan.labels(symbol_names(SYMBOLS), int(frame.bucket_us.min()), int(frame.ts_us.max()))
    return frame, labels


def test_labels_of_a_run_follow_from_the_seed_and_its_first_tick(injected):
    frame, labels = injected
    again = _run(5, LiveAnomalyPlan(bar_seconds=1, seed=5))
    assert again[["symbol", "price", "size"]].equals(frame[["symbol", "price", "size"]])
    assert len(labels) >= SYMBOLS * 5
    assert {a.kind for a in labels} == {k.value for k in AnomalyKind}


def test_each_injection_is_visible_in_the_ticks(injected):
    frame, labels = injected
    for label in labels:
        ticks = frame[frame.symbol == label.symbol]
        span = ticks[(ticks.bucket_us >= label.first_bucket_us) & (ticks.bucket_us <= label.last_bucket_us)]
        before = ticks[ticks.bucket_us < label.first_bucket_us]
        volume_per_bar = before.groupby("bucket_us")["size"].sum().median()
        close_before = before.price.iloc[-1]
        assert len(span) > 0, label
        if label.kind == AnomalyKind.VOLUME_SPIKE.value:
            assert span["size"].sum() > INJECTED_VOLUME_FACTOR / 3 * volume_per_bar, label
        elif label.kind == AnomalyKind.STALE_PRICE.value:
            assert (span.price == close_before).all(), label
        elif label.kind == AnomalyKind.GAP_JUMP.value:
            gap_start = label.first_bucket_us - INJECTED_GAP_MINUTES * MICROS_PER_SECOND
            assert before.bucket_us.max() == gap_start - MICROS_PER_SECOND, label
        if label.kind in (AnomalyKind.RETURN_OUTLIER.value, AnomalyKind.GAP_JUMP.value):
            returns = np.diff(np.log(before.groupby("bucket_us")["price"].last().to_numpy()))
            jump = abs(np.log(span.price.iloc[-1] / close_before))
            assert jump > 6 * np.median(np.abs(returns)), label


def test_the_detectors_find_the_labels_and_little_else(injected):
    frame, labels = injected
    found = [a for bars in _bars(frame).values() for a in detect_series(bars, DetectorParams())]

    def covers(label, anomaly) -> bool:
        return (label.symbol, label.kind) == (anomaly.symbol, anomaly.kind) and \
            label.first_bucket_us <= anomaly.bucket_start_us <= label.last_bucket_us

    assert all(any(covers(label, a) for a in found) for label in labels), "every label detected"
    false = [a for a in found if not any(covers(label, a) for label in labels)]
    assert len(false) <= 0.1 * len(found), false


def test_injection_needs_a_second_symbol_to_trade_through_a_gap():
    with pytest.raises(ValueError, match="at least 2 symbols"):
        SyntheticMarket(rate=10, symbols=1, anomalies=LiveAnomalyPlan(bar_seconds=1))
