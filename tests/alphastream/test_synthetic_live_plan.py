"""The live synthetic market's anomaly plan: labels follow from the seed and the run's first bucket."""
from __future__ import annotations

import itertools

import pytest

from alphastream.records import MICROS_PER_SECOND, AnomalyKind
from alphastream.synthetic import (
    INJECTED_FREEZE_MINUTES,
    INJECTED_GAP_MINUTES,
    LIVE_INJECTION_SPACING_BARS,
    LIVE_INJECTION_WARMUP_BARS,
    LiveAnomalyPlan,
    symbol_names,
)

FIRST_BUCKET_US = 1_700_000_000 * MICROS_PER_SECOND
NAMES = symbol_names(4)


def _labels(plan: LiveAnomalyPlan, seconds: int = 300, first_us: int = FIRST_BUCKET_US):
    return plan.labels(NAMES, first_us, first_us + seconds * MICROS_PER_SECOND)


def test_labels_are_deterministic_in_the_seed():
    assert _labels(LiveAnomalyPlan(bar_seconds=1, seed=3)) == _labels(LiveAnomalyPlan(bar_seconds=1, seed=3))
    assert _labels(LiveAnomalyPlan(bar_seconds=1, seed=3)) != _labels(LiveAnomalyPlan(bar_seconds=1, seed=4))


def test_labels_move_with_the_first_bucket_and_scale_with_the_bar():
    one = _labels(LiveAnomalyPlan(bar_seconds=1))
    later = _labels(LiveAnomalyPlan(bar_seconds=1), first_us=FIRST_BUCKET_US + 7 * MICROS_PER_SECOND)
    assert [(a.symbol, a.kind, a.first_bucket_us + 7 * MICROS_PER_SECOND) for a in one] == \
        [(a.symbol, a.kind, a.first_bucket_us) for a in later]
    five = _labels(LiveAnomalyPlan(bar_seconds=5), seconds=1500)
    assert [(a.symbol, a.kind) for a in five] == [(a.symbol, a.kind) for a in one]
    assert [a.first_bucket_us - FIRST_BUCKET_US for a in five] == [5 * (a.first_bucket_us - FIRST_BUCKET_US)
                                                                   for a in one]


def test_labels_cover_every_kind_after_the_warm_up_one_at_a_time_per_symbol():
    plan = LiveAnomalyPlan(bar_seconds=1)
    seconds = 300
    labels = _labels(plan, seconds)
    assert {a.kind for a in labels} == {k.value for k in AnomalyKind}
    spans = {AnomalyKind.STALE_PRICE.value: INJECTED_FREEZE_MINUTES - 1}
    for label in labels:
        first = (label.first_bucket_us - FIRST_BUCKET_US) // MICROS_PER_SECOND
        last = (label.last_bucket_us - FIRST_BUCKET_US) // MICROS_PER_SECOND
        assert LIVE_INJECTION_WARMUP_BARS <= first and last < seconds
        assert last - first == spans.get(label.kind, 0)
    for symbol in NAMES:
        starts = [a.first_bucket_us for a in labels if a.symbol == symbol]
        assert len(starts) >= (seconds - LIVE_INJECTION_WARMUP_BARS) // LIVE_INJECTION_SPACING_BARS - 2
        assert all(b - a >= (LIVE_INJECTION_SPACING_BARS - INJECTED_GAP_MINUTES) * MICROS_PER_SECOND
                   for a, b in itertools.pairwise(starts))


def test_injection_agrees_with_the_labels():
    plan = LiveAnomalyPlan(bar_seconds=1, seed=9)
    for label in _labels(plan):
        i = NAMES.index(label.symbol)
        bar = (label.first_bucket_us - FIRST_BUCKET_US) // MICROS_PER_SECOND
        injection = plan.injection(i, bar)
        assert injection is not None and injection.kind.value == label.kind
        if label.kind == AnomalyKind.GAP_JUMP.value:
            assert injection.offset == INJECTED_GAP_MINUTES
            assert plan.injection(i, bar - INJECTED_GAP_MINUTES) == injection._replace(offset=0)
        else:
            assert injection.offset == 0
    assert all(plan.injection(i, bar) is None for i in range(len(NAMES)) for bar in range(LIVE_INJECTION_WARMUP_BARS))


def test_bar_seconds_must_be_positive():
    with pytest.raises(ValueError, match="bar_seconds"):
        LiveAnomalyPlan(bar_seconds=0)
