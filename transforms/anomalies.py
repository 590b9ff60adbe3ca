"""Anomaly detection on a symbol's bars: one pure step function, called by batch and streaming.

``detect_step(state, bar, params)`` reads one bar and the symbol's rolling state (the last
``window`` one-bar log returns and volumes, the previous close and bucket, the run of unchanged
closes) and returns the new state and the bar's detections. Batch folds it over each symbol's
bars in bucket order; streaming folds it in a stateful DoFn keyed by symbol, in the same order
(below). Same bars in, same state, same arithmetic: batch == streaming by construction.

Detections (each an ``alphastream.records.Anomaly``):

- ``return_outlier``: robust z-score of the bar's log return against the window's returns,
  z = (r - median) / scale, scale = 1.4826 * MAD (the normal-consistent MAD), or, when more
  than half the returns are equal and the MAD is 0, 1.2533 * mean absolute deviation (Iglewicz
  and Hoaglin's fallback). |z| >= ``return_z``.
- ``gap_jump``: the first bar after k - 1 missing buckets: its log return over the k buckets,
  z = (r - k * median) / (scale * sqrt(k)) (a random walk's spread grows with sqrt(k)),
  |z| >= ``return_z``. Gap returns do not enter the return window, and neither do unchanged
  closes: a frozen price would shrink the MAD towards 0 and make the next honest move an
  outlier (docs/benchmarks.md compares the precision with and without them).
- ``volume_spike``: volume / median volume of the window >= ``volume_ratio``. A rolling median
  of the previous bars, not a time-of-day profile: a profile needs many sessions of per-minute
  history per symbol before it says anything, while a 30-bar median follows the intraday
  U-shape locally from the first half hour.
- ``stale_price``: ``stale_bars`` consecutive bars with trades whose close equals the previous
  close (a frozen feed or a halted quote); reported once per run, on the bar completing it.

Return and volume scores need ``min_history`` values in the window first. Bars without trades
(gap-filled carry-forward bars) are not read: they are not prices the market made.

Streaming judges each bucket's bar once, as it stands when the watermark has passed its end: its
ON_TIME pane, or, when its ticks all came after the watermark (a pipeline behind its input), its
first LATE pane. Early panes are partial and never read. The stateful DoFn buffers bars and
judges them when the watermark passes their end (an event-time timer), so out-of-order arrival
within the watermark does not change the order bars are read in; of two panes of one bucket
waiting together, the later (more complete) one is read. Later LATE panes of a judged bucket
are corrections and are not read again: re-judging would retract detections, which the sinks
do not model. A bucket's first settled pane older than one already judged is dropped and
counted (``anomaly_bars_out_of_order``).
"""
# Beam's functions carry no annotations; calling them is the point of this module.
from __future__ import annotations

import json
import math
import statistics
from dataclasses import dataclass
from typing import Any, Iterable, Iterator, NamedTuple

import apache_beam as beam
from apache_beam.coders.coders import FastPrimitivesCoder
from apache_beam.coders.row_coder import RowCoder
from apache_beam.coders.typecoders import registry
from apache_beam.metrics.metric import Metrics
from apache_beam.transforms.userstate import BagStateSpec, ReadModifyWriteStateSpec, on_timer

from alphastream.intervals import interval_micros
from alphastream.records import METRICS_NAMESPACE, Anomaly, AnomalyKind, Bar, PaneTiming
from transforms.beam_types import PColl, Transform
from transforms.looping_timer import BoundLoop, LoopingTimer, bucket_due_us

registry.register_coder(Anomaly, RowCoder)

# Scale a MAD (or a mean absolute deviation) to the standard deviation for normal data.
MAD_TO_SIGMA = 1.4826
MEAN_AD_TO_SIGMA = 1.2533


@dataclass(frozen=True)
class DetectorParams:
    """Window and thresholds. Defaults: see docs (precision/recall measured by bench/bench_anomalies.py)."""

    window: int = 30  # bars of rolling history (returns and volumes)
    min_history: int = 10  # values needed in the window before a score is computed
    return_z: float = 6.0  # robust z-score threshold for return outliers and gap jumps
    volume_ratio: float = 8.0  # volume / rolling median volume threshold
    stale_bars: int = 5  # consecutive unchanged closes (with trades) that make a stale price

    def __post_init__(self) -> None:
        if not 1 <= self.min_history <= self.window:
            raise ValueError(f"anomaly min_history must be within [1, window={self.window}], got {self.min_history}")
        if self.return_z <= 0 or self.volume_ratio <= 0:
            raise ValueError(f"anomaly thresholds must be positive, "
                             f"got {self.return_z} and {self.volume_ratio}")
        if self.stale_bars < 1:
            raise ValueError(f"anomaly stale_bars must be >= 1, got {self.stale_bars}")


class SeriesState(NamedTuple):
    """What detection remembers of one symbol's series (the streaming state, field for field)."""

    last_bucket_us: int | None = None
    last_close: float | None = None
    returns: tuple[float, ...] = ()  # the last ``window`` one-bar log returns, oldest first
    volumes: tuple[float, ...] = ()  # the last ``window`` volumes, oldest first
    unchanged: int = 0  # consecutive bars so far whose close equals the previous close


def robust_scale(values: tuple[float, ...], center: float) -> float:
    """Spread of ``values`` around ``center`` as a normal standard deviation; 0 if none."""
    deviations = [abs(v - center) for v in values]
    mad = statistics.median(deviations)
    return MAD_TO_SIGMA * mad if mad > 0 else MEAN_AD_TO_SIGMA * statistics.fmean(deviations)


def _anomaly(bar: Bar, kind: AnomalyKind, score: float, threshold: float, **details: object) -> Anomaly:
    return Anomaly(bar.symbol, bar.interval, bar.bucket_start_us, kind.value, float(score), float(threshold),
                   json.dumps(details, sort_keys=True))


def _return_anomaly(state: SeriesState, bar: Bar, log_return: float, buckets: int,
                    params: DetectorParams) -> Anomaly | None:
    """A return outlier (buckets == 1) or a gap jump (buckets > 1), or None."""
    if len(state.returns) < params.min_history:
        return None
    median = statistics.median(state.returns)
    scale = robust_scale(state.returns, median)
    if scale == 0:
        return None  # every return in the window is the same: nothing to measure a move against
    z = (log_return - buckets * median) / (scale * math.sqrt(buckets))
    if abs(z) < params.return_z:
        return None
    if buckets == 1:
        return _anomaly(bar, AnomalyKind.RETURN_OUTLIER, z, params.return_z,
                        log_return=log_return, median=median, scale=scale, window=len(state.returns))
    return _anomaly(bar, AnomalyKind.GAP_JUMP, z, params.return_z, log_return=log_return, median=median,
                    scale=scale, window=len(state.returns), buckets=buckets, previous_close=state.last_close)


def _volume_anomaly(state: SeriesState, bar: Bar, params: DetectorParams) -> Anomaly | None:
    if len(state.volumes) < params.min_history:
        return None
    median = statistics.median(state.volumes)
    if median <= 0:
        return None  # most bars traded size 0: a ratio means nothing
    ratio = bar.volume / median
    if ratio < params.volume_ratio:
        return None
    return _anomaly(bar, AnomalyKind.VOLUME_SPIKE, ratio, params.volume_ratio,
                    volume=bar.volume, median_volume=median, window=len(state.volumes))


def detect_step(state: SeriesState, bar: Bar, params: DetectorParams) -> tuple[SeriesState, list[Anomaly]]:
    """Read one bar (later than ``state.last_bucket_us``, with trades): (new state, its detections)."""
    found: list[Anomaly] = []
    returns, unchanged = state.returns, 0
    if state.last_bucket_us is not None and state.last_close is not None:
        buckets = (bar.bucket_start_us - state.last_bucket_us) // interval_micros(bar.interval)
        log_return = math.log(bar.close / state.last_close)
        anomaly = _return_anomaly(state, bar, log_return, buckets, params)
        if anomaly:
            found.append(anomaly)
        unchanged = state.unchanged + 1 if bar.close == state.last_close else 0
        if buckets == 1 and not unchanged:
            returns = (*state.returns, log_return)[-params.window:]
        if unchanged == params.stale_bars:
            found.append(_anomaly(bar, AnomalyKind.STALE_PRICE, unchanged, params.stale_bars, close=bar.close))
    anomaly = _volume_anomaly(state, bar, params)
    if anomaly:
        found.append(anomaly)
    volumes = (*state.volumes, bar.volume)[-params.window:]
    return SeriesState(bar.bucket_start_us, bar.close, returns, volumes, unchanged), found


def detect_series(bars: Iterable[Bar], params: DetectorParams) -> list[Anomaly]:
    """Every detection in one symbol's bars (any order; one bar per bucket), as batch reads them."""
    state, found = SeriesState(), []
    for bar in sorted(bars, key=lambda b: b.bucket_start_us):
        state, anomalies = detect_step(state, bar, params)
        found.extend(anomalies)
    return found


class _IsDetectable:
    """The bars detection reads: the chosen interval, settled (not an early pane), with trades."""

    def __init__(self, interval: str):
        self._interval = interval

    def __call__(self, bar: Bar) -> bool:
        return bar.interval == self._interval and bar.trades > 0 and bar.timing != PaneTiming.EARLY.value


def _is_correction(bar: Bar) -> bool:
    """A LATE pane after an earlier settled pane of its bucket (the sinks store it; detection has
    read the bucket already)."""
    return bar.timing == PaneTiming.LATE.value and bar.pane_index > 0


def _latest_pane_per_bucket(bars: Iterable[Bar]) -> list[Bar]:
    """One bar per bucket, the highest pane (panes accumulate: it is the most complete), in bucket order."""
    latest: dict[int, Bar] = {}
    for bar in bars:
        kept = latest.get(bar.bucket_start_us)
        if kept is None or bar.pane_index > kept.pane_index:
            latest[bar.bucket_start_us] = bar
    return [latest[bucket] for bucket in sorted(latest)]


class _DetectPerSymbolDoFn(beam.DoFn):
    """Batch: (symbol, its bars) -> its anomalies."""

    def __init__(self, params: DetectorParams):
        self._params = params
        self._found = Metrics.counter(METRICS_NAMESPACE, "anomalies_detected")

    def process(self, element: tuple[str, Iterable[Bar]]) -> Iterable[Anomaly]:
        found = detect_series(element[1], self._params)
        self._found.inc(len(found))
        return found


class _StreamingDetectorDoFn(beam.DoFn):
    """Streaming: (symbol, settled Bar) -> anomalies, each bucket judged once the watermark passes its end."""

    # Plain tuples: FastPrimitivesCoder encodes them compactly (a NamedTuple would be pickled).
    SERIES = ReadModifyWriteStateSpec("series", FastPrimitivesCoder())
    PENDING = BagStateSpec("pending", FastPrimitivesCoder())
    JUDGE = LoopingTimer("judge")
    # Beam finds a DoFn's state through these parameter defaults.
    SERIES_STATE, PENDING_STATE = beam.DoFn.StateParam(SERIES), beam.DoFn.StateParam(PENDING)

    def __init__(self, params: DetectorParams, interval: str):
        self._params = params
        self._interval_us = interval_micros(interval)
        self._found = Metrics.counter(METRICS_NAMESPACE, "anomalies_detected")
        self._out_of_order = Metrics.counter(METRICS_NAMESPACE, "anomaly_bars_out_of_order")

    def _due_us(self, bar: Bar) -> int:
        return bucket_due_us(bar.bucket_start_us, self._interval_us)

    def process(self, element: tuple[str, Bar], pending: Any = PENDING_STATE,
                due: Any = JUDGE.due_param, judge: Any = JUDGE.timer_param) -> None:
        pending.add(tuple(element[1]))
        BoundLoop(judge, due).arm(min(self._due_us(Bar(*b)) for b in pending.read()))

    @on_timer(JUDGE.spec)
    def _judge(self, series: Any = SERIES_STATE, pending: Any = PENDING_STATE,
               due: Any = JUDGE.due_param, judge: Any = JUDGE.timer_param) -> Iterator[Anomaly]:
        loop = BoundLoop(judge, due)
        fired_us = loop.firing_us()
        if fired_us is None:
            return
        bars = _latest_pane_per_bucket(Bar(*b) for b in pending.read())
        due_now = [b for b in bars if self._due_us(b) <= fired_us]
        waiting = [b for b in bars if self._due_us(b) > fired_us]
        stored = series.read()
        state = SeriesState(*stored) if stored else SeriesState()
        for bar in due_now:
            if state.last_bucket_us is not None and bar.bucket_start_us <= state.last_bucket_us:
                if not _is_correction(bar):  # a bucket's first reading, too late: judging it now would reorder
                    self._out_of_order.inc()
                continue
            state, found = detect_step(state, bar, self._params)
            self._found.inc(len(found))
            yield from found
        series.write(tuple(state))
        pending.clear()
        for bar in waiting:
            pending.add(tuple(bar))
        if waiting:
            loop.arm(self._due_us(waiting[0]))
        else:
            loop.stop()


class DetectAnomalies(Transform):
    """Bars (any intervals, any panes) -> Anomalies of the ``interval`` bars, batch or streaming.

    Batch groups each symbol's bars and folds ``detect_step`` over them; streaming keeps each
    symbol's state and folds each bucket's first settled bar in bucket order as the watermark
    passes them.
    """

    def __init__(self, interval: str, params: DetectorParams = DetectorParams(), *, streaming: bool):
        super().__init__()
        self._interval, self._params, self._streaming = interval, params, streaming

    def expand(self, bars: PColl) -> PColl:
        keyed = (bars
                 | "DetectableBars" >> beam.Filter(_IsDetectable(self._interval))
                 | "KeyBySymbol" >> beam.Map(lambda bar: (bar.symbol, bar)).with_output_types(tuple[str, Bar]))
        anomalies: PColl
        if self._streaming:
            judge = beam.ParDo(_StreamingDetectorDoFn(self._params, self._interval)).with_output_types(Anomaly)
            anomalies = keyed | "JudgeInEventTime" >> judge
        else:
            detect = beam.ParDo(_DetectPerSymbolDoFn(self._params)).with_output_types(Anomaly)
            anomalies = keyed | "GroupBySymbol" >> beam.GroupByKey() | "DetectPerSymbol" >> detect
        return anomalies
