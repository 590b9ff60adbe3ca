"""Anomaly detection (transforms.anomalies): each detector against constructed bars and an
independent pandas computation, batch == streaming on seeded series (TestStream with early,
late and out-of-order bars), and the synthetic market's labelled anomalies found by the batch
pipeline's own bars."""
from __future__ import annotations

import datetime as dt
import json
import math
import random

import apache_beam as beam
import numpy as np
import pandas as pd
import pytest
from apache_beam.options.pipeline_options import StandardOptions
from apache_beam.testing.test_pipeline import TestPipeline
from apache_beam.testing.test_stream import TestStream
from apache_beam.transforms.window import TimestampedValue
from apache_beam.utils.timestamp import Timestamp

import transforms.schemas  # noqa: F401  (Bar's RowCoder, as the pipeline registers it)
from alphastream.records import AnomalyKind, Bar, PaneTiming
from alphastream.synthetic import (
    INJECTED_FREEZE_MINUTES,
    INJECTED_GAP_MINUTES,
    INJECTED_VOLUME_FACTOR,
    INJECTION_SLOTS,
    MarketSpec,
    injected_anomalies,
    market_ticks,
    session_open_us,
)
from tests.fixtures.beam import Collected
from transforms.anomalies import MAD_TO_SIGMA, DetectAnomalies, DetectorParams, detect_series
from transforms.batch_bars import BatchBars

T0 = 1_704_205_800_000_000  # 2024-01-02 14:30:00 UTC
MINUTE = 60_000_000
PARAMS = DetectorParams()


def bar(minute: int, close: float, volume: float = 100.0, trades: int = 5, symbol: str = "AAPL",
        timing: str = PaneTiming.ON_TIME.value, pane_index: int = 0, interval: str = "1m") -> Bar:
    return Bar(symbol, interval, T0 + minute * MINUTE, close, close, close, close, volume, close, trades,
               timing, pane_index)


def walk(n: int, seed: int, sigma: float = 0.001, start: float = 100.0) -> list[float]:
    rng = np.random.default_rng(seed)
    return list(start * np.exp(np.cumsum(rng.normal(0.0, sigma, n))))


def kinds_at(found) -> dict[int, set[str]]:
    out: dict[int, set[str]] = {}
    for a in found:
        out.setdefault((a.bucket_start_us - T0) // MINUTE, set()).add(a.kind)
    return out


# --- the detectors, one by one ----------------------------------------------------------

def test_quiet_random_walk_has_no_detections():
    closes = walk(300, seed=1)
    volumes = np.random.default_rng(2).uniform(80, 120, 300)
    assert detect_series([bar(i, c, v) for i, (c, v) in enumerate(zip(closes, volumes, strict=True))], PARAMS) == []


def test_return_outlier_is_the_robust_z_score_against_pandas():
    """Independent reference: pandas rolling median and MAD of the previous ``window`` returns."""
    closes = walk(200, seed=3)
    for minute, jump in ((60, 0.012), (120, -0.015), (150, 0.004)):
        closes[minute:] = [c * math.exp(jump) for c in closes[minute:]]
    found = detect_series([bar(i, c) for i, c in enumerate(closes)], PARAMS)

    r = np.log(pd.Series(closes)).diff()
    previous = r.shift(1).rolling(PARAMS.window, min_periods=PARAMS.min_history)
    median = previous.median()
    mad = previous.apply(lambda w: np.median(np.abs(w - np.median(w))), raw=True)
    z = (r - median) / (MAD_TO_SIGMA * mad)
    expected = {int(i): float(v) for i, v in z.items() if abs(v) >= PARAMS.return_z}

    got = {(a.bucket_start_us - T0) // MINUTE: a.score for a in found if a.kind == AnomalyKind.RETURN_OUTLIER.value}
    assert set(got) == set(expected) and {60, 120} <= set(got)
    for minute, score in got.items():
        assert score == pytest.approx(expected[minute], rel=1e-9)


def test_volume_spike_is_the_ratio_to_the_rolling_median_against_pandas():
    rng = np.random.default_rng(4)
    volumes = rng.uniform(50, 150, 120)
    volumes[[40, 90]] *= [12, 30]
    found = detect_series([bar(i, 100.0 + (i % 2) * 0.01, v) for i, v in enumerate(volumes)], PARAMS)

    previous = pd.Series(volumes).shift(1).rolling(PARAMS.window, min_periods=PARAMS.min_history)
    ratio = pd.Series(volumes) / previous.median()
    expected = {int(i): v for i, v in ratio.items() if v >= PARAMS.volume_ratio}
    got = {(a.bucket_start_us - T0) // MINUTE: a.score for a in found if a.kind == AnomalyKind.VOLUME_SPIKE.value}
    assert set(got) == set(expected) == {40, 90}
    assert all(got[m] == pytest.approx(expected[m], rel=1e-12) for m in got)


def test_gap_jump_scales_the_move_by_the_square_root_of_the_gap():
    closes = walk(80, seed=5)
    bars = [bar(i, c) for i, c in enumerate(closes[:40])]
    sigma = np.std(np.diff(np.log(closes[:40])))
    # 9 buckets after the last bar: a 4-sigma one-bar move is an ordinary 9-bucket move...
    quiet = bars + [bar(48, closes[39] * math.exp(4 * sigma))]
    assert AnomalyKind.GAP_JUMP.value not in kinds_at(detect_series(quiet, PARAMS)).get(48, set())
    # ...and 30 sigma is a jump across the gap, not a return outlier.
    jumped = bars + [bar(48, closes[39] * math.exp(30 * sigma))]
    (anomaly,) = detect_series(jumped, PARAMS)
    assert anomaly.kind == AnomalyKind.GAP_JUMP.value and anomaly.bucket_start_us == T0 + 48 * MINUTE
    assert json.loads(anomaly.details)["buckets"] == 9


def test_stale_price_fires_once_per_run_on_the_bar_completing_it():
    closes = walk(60, seed=6)
    closes[30:39] = [closes[29]] * 9  # minutes 30..38 repeat minute 29's close: a run of 9
    found = detect_series([bar(i, c) for i, c in enumerate(closes)], PARAMS)
    stale = [a for a in found if a.kind == AnomalyKind.STALE_PRICE.value]
    assert [(a.bucket_start_us - T0) // MINUTE for a in stale] == [30 + PARAMS.stale_bars - 1]
    assert stale[0].score == PARAMS.stale_bars == stale[0].threshold
    # Unchanged closes do not shrink the return scale: the move after the run is not an outlier.
    assert [a for a in found if a.kind == AnomalyKind.RETURN_OUTLIER.value] == []


def test_bars_without_trades_and_other_intervals_are_not_read():
    closes = walk(60, seed=7)
    bars = [bar(i, c) for i, c in enumerate(closes)]
    filled = [bar(60 + i, closes[-1], volume=0, trades=0) for i in range(10)]  # gap-filled carry-forwards
    other = [bar(i, c * 2, interval="5m") for i, c in enumerate(closes)]
    with TestPipeline() as p:
        got = Collected(p | beam.Create(bars + filled + other) | DetectAnomalies("1m", PARAMS, streaming=False))
    assert got.items == [] == detect_series(bars, PARAMS)
    # Read as bars, the filled ones would be a stale price.
    assert [a.kind for a in detect_series(bars + filled, PARAMS)] == [AnomalyKind.STALE_PRICE.value]


def test_no_scores_before_min_history():
    closes = walk(12, seed=8)
    closes[5:] = [c * 1.2 for c in closes[5:]]
    volumes = [100.0] * 12
    volumes[6] = 10_000.0
    assert detect_series([bar(i, c, v) for i, (c, v) in enumerate(zip(closes, volumes, strict=True))], PARAMS) == []


def test_params_refuse_nonsense():
    with pytest.raises(ValueError, match="min_history"):
        DetectorParams(window=5, min_history=10)
    with pytest.raises(ValueError, match="positive"):
        DetectorParams(return_z=0)


# --- batch == streaming -----------------------------------------------------------------

def seeded_series(seed: int, symbols: int = 3, minutes: int = 150) -> list[Bar]:
    """On-time bars with every kind of event: jumps, volume spikes, gaps, frozen runs, filled bars."""
    rng = random.Random(seed)
    bars = []
    for s in range(symbols):
        symbol = f"S{s}"
        closes = walk(minutes, seed=seed * 100 + s)
        minute, price_shift = 0, 1.0
        while minute < minutes:
            event = rng.random()
            if event < 0.03:  # a gap of 2..8 buckets, maybe with a jump after it
                minute += rng.randint(2, 8)
                price_shift *= math.exp(rng.choice([0.0, 0.05, -0.05]))
                continue
            close = closes[min(minute, minutes - 1)] * price_shift
            volume = rng.uniform(50, 150) * (20 if event < 0.05 else 1)
            if event > 0.97 and bars and bars[-1].symbol == symbol:  # a frozen run of up to 8 bars
                for _ in range(rng.randint(1, 8)):
                    bars.append(bar(minute, bars[-1].close, volume, symbol=symbol))
                    minute += 1
                continue
            if 0.05 <= event < 0.07:
                price_shift *= math.exp(rng.choice([0.02, -0.02]))
            trades = 0 if 0.07 <= event < 0.08 else 5
            bars.append(bar(minute, close, volume, trades=trades, symbol=symbol))
            minute += 1
    return bars


def stamped(b: Bar) -> TimestampedValue:
    """A bar as the windowed chain emits it: stamped with its window's last microsecond."""
    return TimestampedValue(b, Timestamp(micros=b.bucket_start_us + MINUTE - 1))


def detect_streaming(stream: TestStream, params: DetectorParams = PARAMS) -> list:
    """The streaming detector over ``stream`` (bars), its detections."""
    options = TestPipeline().options
    options.view_as(StandardOptions).streaming = True
    with TestPipeline(options=options) as p:
        got = Collected(p | stream | DetectAnomalies("1m", params, streaming=True))
    return got.items


def streaming_detect(on_time: list[Bar], seed: int, params: DetectorParams = PARAMS, *,
                     extra_late: list[Bar] = ()) -> list:
    """The streaming detector over ``on_time`` bars arriving shuffled within each watermark step
    (out of order), with early panes before them and late panes after: what BarsFromTickBatches emits."""
    rng = random.Random(seed)
    by_minute: dict[int, list[Bar]] = {}
    for b in on_time:
        by_minute.setdefault((b.bucket_start_us - T0) // MINUTE, []).append(b)
    stream = TestStream(coder=beam.coders.registry.get_coder(Bar))
    last = max(by_minute)
    step = 0
    while step <= last:
        width = rng.randint(1, 6)  # the watermark advances over 1..6 buckets at once
        batch = [b for m in range(step, step + width) for b in by_minute.get(m, [])]
        early = [b._replace(timing=PaneTiming.EARLY.value, close=b.close * 1.5, volume=1.0) for b in batch]
        late = [b._replace(timing=PaneTiming.LATE.value, close=b.close * 3, pane_index=1) for b in batch]
        if early:
            stream = stream.add_elements([stamped(b) for b in early])
        arrivals = batch[:]
        rng.shuffle(arrivals)
        if arrivals:
            stream = stream.add_elements([stamped(b) for b in arrivals])
        stream = stream.advance_watermark_to(Timestamp(micros=T0 + (step + width) * MINUTE))
        if late:
            stream = stream.add_elements([stamped(b) for b in late])
        step += width
    if extra_late:
        stream = stream.add_elements([stamped(b) for b in extra_late])
    return detect_streaming(stream.advance_watermark_to_infinity(), params)


def batch_detect(bars: list[Bar], params: DetectorParams = PARAMS) -> list:
    with TestPipeline() as p:
        got = Collected(p | beam.Create(bars) | DetectAnomalies("1m", params, streaming=False))
    return got.items


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_batch_equals_streaming_on_the_same_bars(seed):
    bars = seeded_series(seed)
    batch = batch_detect(bars)
    assert {a.kind for a in batch} == {k.value for k in AnomalyKind}, "the seeded series must exercise every kind"
    assert sorted(streaming_detect(bars, seed)) == sorted(batch)


def test_streaming_drops_an_on_time_bar_older_than_what_it_judged():
    bars = seeded_series(4, symbols=1, minutes=80)
    kept = [b for b in bars if (b.bucket_start_us - T0) // MINUTE != 40]
    dropped = next(b for b in bars if (b.bucket_start_us - T0) // MINUTE == 40)
    # Arriving after the whole series was judged, it would reorder the series: it is dropped.
    got = streaming_detect(kept, seed=4, extra_late=[dropped._replace(close=dropped.close * 5, volume=1e9)])
    assert sorted(got) == sorted(batch_detect(kept))


def streaming_detect_behind(bars: list[Bar], seed: int, params: DetectorParams = PARAMS) -> list:
    """The streaming detector when the pipeline is behind its input: the watermark has passed
    every bucket before any of its bars arrives, so each bucket's first settled pane is LATE
    (pane 0). They arrive in small batches in bucket order, out of order within a batch, each
    batch followed by its corrections (LATE pane 1, different values) before the next."""
    rng = random.Random(seed)
    horizon = max(b.bucket_start_us for b in bars) + 10 * MINUTE
    stream = TestStream(coder=beam.coders.registry.get_coder(Bar)).advance_watermark_to(Timestamp(micros=horizon))
    ordered = sorted(bars, key=lambda b: b.bucket_start_us)
    tick = 0
    while ordered:
        width = rng.randint(1, 8)
        batch, ordered = ordered[:width], ordered[width:]
        first = [b._replace(timing=PaneTiming.LATE.value) for b in batch]
        rng.shuffle(first)
        tick += 1  # the watermark moves on a little after each batch, as a live one does: the timers fire
        stream = (stream.add_elements([stamped(b) for b in first])
                  .advance_watermark_to(Timestamp(micros=horizon + tick * 1000)))  # TestStream: whole ms
        corrections = [b._replace(timing=PaneTiming.LATE.value, pane_index=1, close=b.close * 3) for b in batch]
        stream = stream.add_elements([stamped(b) for b in corrections])
    return detect_streaming(stream.advance_watermark_to_infinity(), params)


@pytest.mark.parametrize("seed", [1, 2])
def test_a_pipeline_behind_its_input_judges_each_bucket_on_its_first_late_pane(seed):
    """When every bar comes late (a loaded pipeline whose watermark ran ahead), the first LATE
    pane of each bucket is read, as an on-time one would be; the corrections after it are not."""
    bars = seeded_series(seed)
    assert sorted(streaming_detect_behind(bars, seed)) == sorted(batch_detect(bars))


def test_of_two_panes_of_a_bucket_waiting_together_the_later_is_judged():
    """An on-time pane and its late correction both waiting when the watermark passes the bucket:
    the correction (panes accumulate, so it holds more of the bucket's ticks) is the one read."""
    closes = walk(60, seed=9)
    series = [bar(m, c) for m, c in enumerate(closes)]
    jumped = series[50]._replace(close=series[50].close * 1.2, timing=PaneTiming.LATE.value, pane_index=1)
    stream = (TestStream(coder=beam.coders.registry.get_coder(Bar))
              .add_elements([stamped(b) for b in series[:51]])
              .add_elements([stamped(jumped)])
              .add_elements([stamped(b) for b in series[51:]])
              .advance_watermark_to(Timestamp(micros=T0 + 60 * MINUTE))
              .advance_watermark_to_infinity())
    got = detect_streaming(stream)
    expected = batch_detect(series[:50] + [jumped._replace(timing=PaneTiming.ON_TIME.value, pane_index=0)]
                            + series[51:])
    assert 50 in kinds_at(expected)  # the correction is an outlier, the on-time pane is not
    assert 50 not in kinds_at(batch_detect(series))
    assert sorted(got) == sorted(expected)


# --- the synthetic market's labelled anomalies ------------------------------------------

DAY = dt.date(2024, 3, 5)


def _trades(spec: MarketSpec) -> pd.DataFrame:
    return market_ticks(spec).to_pandas().drop_duplicates("trade_id").set_index("trade_id").sort_values("ts_us")


def test_injection_changes_nothing_before_the_first_anomaly_and_does_what_each_label_says():
    clean = _trades(MarketSpec(day=DAY, symbols=2, ticks_per_symbol=8000))
    spec = MarketSpec(day=DAY, symbols=2, ticks_per_symbol=8000, anomalies_per_symbol=8)
    dirty, labels = _trades(spec), injected_anomalies(spec)
    assert len(labels) == 16 and {label.kind for label in labels} == {k.value for k in AnomalyKind}
    open_us = session_open_us(DAY)
    for symbol in ("AAPL", "MSFT"):
        mine = [label for label in labels if label.symbol == symbol]
        first_touched = min(label.first_bucket_us for label in mine) - INJECTED_GAP_MINUTES * MINUTE
        before = clean[(clean.symbol == symbol) & (clean.ts_us < first_touched)]
        pd.testing.assert_frame_equal(dirty.loc[before.index], before)
        for label in mine:
            c = clean[(clean.symbol == symbol)]
            d = dirty[(dirty.symbol == symbol)]
            in_bucket = lambda f, lo=label.first_bucket_us, hi=label.last_bucket_us: f[  # noqa: E731
                (f.ts_us >= lo) & (f.ts_us < hi + MINUTE)]
            if label.kind == AnomalyKind.VOLUME_SPIKE.value:
                assert in_bucket(d)["size"].sum() == INJECTED_VOLUME_FACTOR * in_bucket(c)["size"].sum()
            elif label.kind == AnomalyKind.STALE_PRICE.value:
                assert label.last_bucket_us - label.first_bucket_us == (INJECTED_FREEZE_MINUTES - 1) * MINUTE
                assert in_bucket(d)["price"].nunique() == 1
                assert in_bucket(d)["price"].iloc[0] == d[d.ts_us < label.first_bucket_us]["price"].iloc[-1]
            elif label.kind == AnomalyKind.GAP_JUMP.value:
                gap = d[(d.ts_us >= label.first_bucket_us - INJECTED_GAP_MINUTES * MINUTE)
                        & (d.ts_us < label.first_bucket_us)]
                assert gap.empty and not in_bucket(d).empty
            assert (label.first_bucket_us - open_us) // MINUTE >= INJECTION_SLOTS.start


def test_batch_pipeline_finds_the_injected_anomalies():
    """Bars from the pipeline's own batch path; precision and recall at the default thresholds."""
    spec = MarketSpec(day=DAY, symbols=4, anomalies_per_symbol=8, seed=11)
    with TestPipeline() as p:
        bars = p | beam.Create([market_ticks(spec)]) | BatchBars(("1m", "5m"))
        got = Collected(bars | DetectAnomalies("1m", PARAMS, streaming=False))
    found, labels = got.items, injected_anomalies(spec)

    def matches(a, label):
        return (a.symbol, a.kind) == (label.symbol, label.kind) and \
            label.first_bucket_us <= a.bucket_start_us <= label.last_bucket_us

    true_positives = [a for a in found if any(matches(a, label) for label in labels)]
    recalled = [label for label in labels if any(matches(a, label) for a in found)]
    assert len(true_positives) / len(found) >= 0.9
    assert len(recalled) / len(labels) >= 0.9
