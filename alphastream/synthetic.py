"""A seeded synthetic stock market: ticks for the zero-setup default and for benchmarks.

Each symbol follows a geometric random walk over one US trading session (09:30-16:00 New
York, taken as 14:30-21:00 UTC), with trades spread by a U-shaped intraday volume profile
(busy open and close, quiet lunch). A small share of trades is delivered twice (as a feed
retrying would) and some arrive out of order, so the pipeline's dedup and event-time logic is
exercised by default.

Generation is vectorised (numpy + Arrow) and per symbol: symbol i's ticks depend only on
(seed, i), so any split of symbols across workers gives identical data.

``MarketSpec.anomalies_per_symbol`` injects labelled anomalies into each symbol's session
(``injected_anomalies`` lists them): a persistent price jump, a volume spike, a price jump
across a gap of missing minutes (those minutes' trades removed), and a frozen price. Each is
sized by the symbol's own one-minute volatility, so the detectors (transforms.anomalies) can be
scored for precision and recall against the labels (bench/bench_anomalies.py).

``LiveAnomalyPlan`` does the same for the live market (ingestion.connectors.synthetic), whose
event time is the wall clock: the plan is counted in bars from the run's first bucket, so its
labels follow from the seed and the time of the run's first tick (``LiveAnomalyPlan.labels``).
"""
from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from typing import NamedTuple

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from alphastream.records import MICROS_PER_SECOND, TICK_ARROW_SCHEMA, AnomalyKind

SYNTHETIC_SOURCE = "synthetic"
LIVE_TICKS_PER_SECOND = 1000.0  # default pace of a live synthetic market (ingestion, streaming pipeline)
SESSION_OPEN_UTC = dt.time(14, 30)
SESSION_SECONDS = 390 * 60  # 6.5 hours
# Beta(a, a) with a < 1 is U-shaped: most trading near the open and the close.
VOLUME_PROFILE_BETA = 0.7
ANNUAL_VOLATILITY_RANGE = (0.15, 0.60)
TRADING_SECONDS_PER_YEAR = 252 * SESSION_SECONDS
MINUTE_SECONDS = 60
SESSION_MINUTES = SESSION_SECONDS // MINUTE_SECONDS

# Injected anomalies: sizes in the symbol's own one-minute log-return standard deviations.
INJECTED_JUMP_SIGMAS = 12.0
INJECTED_VOLUME_FACTOR = 25.0  # the minute's trade sizes multiplied by this
INJECTED_GAP_MINUTES = 5  # minutes whose trades are removed before a gap jump
INJECTED_FREEZE_MINUTES = 8  # minutes of unchanged price (every trade at the last price before)
# The first injection leaves this much history for rolling windows; injections are this far
# apart, so one never sits in another's span.
INJECTION_WARMUP_MINUTES = 35
INJECTION_SPACING_MINUTES = 15
INJECTION_SLOTS = range(INJECTION_WARMUP_MINUTES, SESSION_MINUTES - INJECTION_SPACING_MINUTES,
                        INJECTION_SPACING_MINUTES)
INJECTED_KINDS = (AnomalyKind.RETURN_OUTLIER, AnomalyKind.VOLUME_SPIKE, AnomalyKind.GAP_JUMP, AnomalyKind.STALE_PRICE)
_ANOMALY_STREAM = 1  # a random stream of its own: the plan never shifts the market's draws

# A live plan counts in bars of its own width: a symbol's first injection leaves the detectors
# this much rolling history, and its injections are this far apart, more than any one's span.
LIVE_INJECTION_WARMUP_BARS = 20
LIVE_INJECTION_SPACING_BARS = 12

_NAMED_SYMBOLS = (
    "AAPL MSFT NVDA AMZN GOOGL META TSLA BRK.B JPM V UNH XOM JNJ WMT MA PG AVGO HD CVX MRK "
    "ABBV COST PEP KO ADBE CRM NFLX AMD INTC CSCO ORCL TMO ACN MCD DIS ABT WFC VZ TXN NKE "
    "PM QCOM IBM GS CAT BA AMGN SBUX INTU SPY"
).split()



def symbol_names(count: int) -> list[str]:
    """The first ``count`` symbols of the synthetic market (real tickers, then SYM050...)."""
    if count < 1:
        raise ValueError(f"need at least one symbol, got {count}")
    extra = [f"SYM{i:03d}" for i in range(len(_NAMED_SYMBOLS), count)]
    return (list(_NAMED_SYMBOLS) + extra)[:count]


def session_open_us(day: dt.date) -> int:
    """Epoch microseconds of the session open on ``day``."""
    start = dt.datetime.combine(day, SESSION_OPEN_UTC, tzinfo=dt.timezone.utc)
    return int(start.timestamp()) * MICROS_PER_SECOND


def last_weekday_before(today: dt.date) -> dt.date:
    """The most recent Monday-Friday strictly before ``today``: the default demo session."""
    day = today - dt.timedelta(days=1)
    while day.weekday() >= 5:
        day -= dt.timedelta(days=1)
    return day


@dataclass(frozen=True)
class MarketSpec:
    """What to generate. Defaults give the README demo: 20 symbols, one trading day."""

    day: dt.date
    symbols: int = 20
    ticks_per_symbol: int = 10_000
    seed: int = 42
    duplicate_rate: float = 0.002  # share of trades delivered twice
    out_of_order_rate: float = 0.01  # share of trades swapped with a neighbour in delivery order
    anomalies_per_symbol: int = 0  # labelled anomalies injected into each symbol (injected_anomalies)

    def __post_init__(self) -> None:
        if self.ticks_per_symbol < 1:
            raise ValueError(f"ticks_per_symbol must be >= 1, got {self.ticks_per_symbol}")
        if not 0 <= self.anomalies_per_symbol <= len(INJECTION_SLOTS):
            raise ValueError(f"anomalies_per_symbol must be within [0, {len(INJECTION_SLOTS)}] "
                             f"(one per {INJECTION_SPACING_MINUTES} minutes of the session), "
                             f"got {self.anomalies_per_symbol}")
        for name in ("duplicate_rate", "out_of_order_rate"):
            rate = getattr(self, name)
            if not 0.0 <= rate <= 1.0:
                raise ValueError(f"{name} must be within [0, 1], got {rate}")

    @property
    def total_ticks(self) -> int:
        """Ticks delivered, duplicates included (what a reader of the feed sees); gap anomalies
        (anomalies_per_symbol) remove the trades of their missing minutes from this."""
        per_symbol = self.ticks_per_symbol + int(round(self.ticks_per_symbol * self.duplicate_rate))
        return per_symbol * self.symbols


def _symbol_rng(spec: MarketSpec, index: int) -> np.random.Generator:
    return np.random.default_rng([spec.seed, index])


class InjectedAnomaly(NamedTuple):
    """A label: an anomaly of ``kind`` put into ``symbol``'s bars between two 1m buckets (inclusive)."""

    symbol: str
    kind: str  # an AnomalyKind value
    first_bucket_us: int
    last_bucket_us: int  # a frozen price spans its minutes; the other kinds are one bucket


def symbol_ticks(spec: MarketSpec, index: int) -> pa.Table:
    """All ticks of symbol number ``index`` for the session, in delivery order."""
    return _symbol_ticks_and_labels(spec, index)[0]


def injected_anomalies(spec: MarketSpec) -> list[InjectedAnomaly]:
    """The labels of every anomaly ``spec`` injects (none when anomalies_per_symbol is 0)."""
    if not spec.anomalies_per_symbol:
        return []
    return [label for i in range(spec.symbols) for label in _symbol_ticks_and_labels(spec, i)[1]]


def _symbol_ticks_and_labels(spec: MarketSpec, index: int) -> tuple[pa.Table, list[InjectedAnomaly]]:
    rng = _symbol_rng(spec, index)
    symbol = symbol_names(spec.symbols)[index]
    n = spec.ticks_per_symbol

    offsets_s = np.sort(rng.beta(VOLUME_PROFILE_BETA, VOLUME_PROFILE_BETA, n)) * SESSION_SECONDS
    ts_us = session_open_us(spec.day) + (offsets_s * MICROS_PER_SECOND).astype(np.int64)

    start_price = float(rng.uniform(20.0, 500.0))
    sigma = rng.uniform(*ANNUAL_VOLATILITY_RANGE)
    dt_years = np.diff(offsets_s, prepend=0.0) / TRADING_SECONDS_PER_YEAR
    log_returns = rng.standard_normal(n) * sigma * np.sqrt(dt_years)
    size = np.maximum(1.0, np.round(rng.lognormal(mean=4.0, sigma=1.0, size=n)))
    labels: list[InjectedAnomaly] = []
    keep = np.ones(n, dtype=bool)
    if spec.anomalies_per_symbol:
        labels, keep = _inject_anomalies(spec, index, symbol, offsets_s, log_returns, size,
                                         sigma * np.sqrt(MINUTE_SECONDS / TRADING_SECONDS_PER_YEAR))
    price = np.round(start_price * np.exp(np.cumsum(log_returns)), 4)
    kept = np.flatnonzero(keep)  # a gap's trades are removed after pricing: the walk goes on under it
    ts_us, price, size, n = ts_us[kept], price[kept], size[kept], len(kept)

    order = np.arange(n)
    order = _with_duplicates(order, spec.duplicate_rate, rng)
    order = _out_of_order(order, spec.out_of_order_rate, rng)

    seq = pa.array(kept)  # trade ids number the trades before any were removed
    trade_ids = pc.binary_join_element_wise(symbol, pc.cast(seq, pa.string()), "-")
    columns = {
        "symbol": pa.array([symbol] * n, pa.string()),
        "ts_us": pa.array(ts_us),
        "price": pa.array(price),
        "size": pa.array(size),
        "trade_id": trade_ids,
        "source": pa.array([SYNTHETIC_SOURCE] * n, pa.string()),
    }
    table = pa.table(columns, schema=TICK_ARROW_SCHEMA)
    return table.take(pa.array(order)), labels


def _inject_anomalies(spec: MarketSpec, index: int, symbol: str, offsets_s: np.ndarray, log_returns: np.ndarray,
                      size: np.ndarray, minute_sigma: float) -> tuple[list[InjectedAnomaly], np.ndarray]:
    """Change ``log_returns`` and ``size`` in place; returns the labels and which trades to keep.

    Slots whose minutes (one before to the end of the slot) all have trades are eligible, so a
    label never lands where the market had a gap of its own.
    """
    rng = np.random.default_rng([spec.seed, index, _ANOMALY_STREAM])
    minute = (offsets_s // MINUTE_SECONDS).astype(np.int64)
    trades_per_minute = np.bincount(minute, minlength=SESSION_MINUTES + 1)
    eligible = [s for s in INJECTION_SLOTS if trades_per_minute[s - 1:s + INJECTION_SPACING_MINUTES - 1].all()]
    if len(eligible) < spec.anomalies_per_symbol:
        raise ValueError(f"{symbol}: only {len(eligible)} slots have a trade in every minute for "
                         f"{spec.anomalies_per_symbol} anomalies; raise ticks_per_symbol")
    slots = np.sort(rng.choice(eligible, size=spec.anomalies_per_symbol, replace=False))
    first_kind = int(rng.integers(len(INJECTED_KINDS)))
    keep = np.ones(len(offsets_s), dtype=bool)
    open_us = session_open_us(spec.day)
    labels = []
    for j, slot in enumerate(slots):
        kind = INJECTED_KINDS[(first_kind + j) % len(INJECTED_KINDS)]
        sign = 1.0 if rng.random() < 0.5 else -1.0
        first = last = int(slot)
        if kind is AnomalyKind.RETURN_OUTLIER:  # a persistent jump at the minute's first trade
            log_returns[np.argmax(minute == slot)] += sign * INJECTED_JUMP_SIGMAS * minute_sigma
        elif kind is AnomalyKind.VOLUME_SPIKE:
            size[minute == slot] *= INJECTED_VOLUME_FACTOR
        elif kind is AnomalyKind.GAP_JUMP:  # no trades for a few minutes, then a jump
            first = last = int(slot) + INJECTED_GAP_MINUTES
            keep[(minute >= slot) & (minute < first)] = False
            log_returns[np.argmax(minute == first)] += (
                sign * INJECTED_JUMP_SIGMAS * minute_sigma * np.sqrt(INJECTED_GAP_MINUTES + 1))
        else:  # every trade of the frozen minutes at the last price before them
            last = int(slot) + INJECTED_FREEZE_MINUTES - 1
            log_returns[(minute >= slot) & (minute <= last)] = 0.0
        labels.append(InjectedAnomaly(symbol, kind.value, open_us + first * MINUTE_SECONDS * MICROS_PER_SECOND,
                                      open_us + last * MINUTE_SECONDS * MICROS_PER_SECOND))
    return labels, keep


class LiveInjection(NamedTuple):
    """What a live plan does to one symbol's bar: ``kind``, its direction, and how many bars
    into the injection this bar is (a gap's missing bars, then its jump; a freeze's bars)."""

    kind: AnomalyKind
    sign: float
    offset: int


def _injection_span(kind: AnomalyKind) -> int:
    """Bars an injection of ``kind`` touches after its first."""
    if kind is AnomalyKind.GAP_JUMP:
        return INJECTED_GAP_MINUTES
    if kind is AnomalyKind.STALE_PRICE:
        return INJECTED_FREEZE_MINUTES - 1
    return 0


@dataclass(frozen=True)
class LiveAnomalyPlan:
    """Labelled anomalies for a live synthetic market, in bars of ``bar_seconds``.

    Each symbol gets one injection every LIVE_INJECTION_SPACING_BARS bars after a warm-up (at a
    phase of its own, so symbols do not all jump at once), the kinds in turn, sized as the batch
    market's (INJECTED_* above, in the bar's standard deviations instead of the minute's). Bar
    numbers count from the run's first bucket; everything else follows from the seed.
    """

    bar_seconds: int
    seed: int = 42

    def __post_init__(self) -> None:
        if self.bar_seconds < 1:
            raise ValueError(f"bar_seconds must be >= 1, got {self.bar_seconds}")

    @property
    def bar_us(self) -> int:
        return self.bar_seconds * MICROS_PER_SECOND

    def _phase(self, symbol_index: int) -> int:
        return int(np.random.default_rng([self.seed, symbol_index, _ANOMALY_STREAM])
                   .integers(LIVE_INJECTION_SPACING_BARS))

    def _slot(self, symbol_index: int, slot: int) -> tuple[AnomalyKind, float]:
        rng = np.random.default_rng([self.seed, symbol_index, slot, _ANOMALY_STREAM])
        sign = 1.0 if rng.random() < 0.5 else -1.0
        return INJECTED_KINDS[(symbol_index + slot) % len(INJECTED_KINDS)], sign

    def _slot_start(self, symbol_index: int, slot: int) -> int:
        return LIVE_INJECTION_WARMUP_BARS + self._phase(symbol_index) + slot * LIVE_INJECTION_SPACING_BARS

    def injection(self, symbol_index: int, bar: int) -> LiveInjection | None:
        """The injection in symbol ``symbol_index``'s bar number ``bar`` of the run, or None."""
        since = bar - self._slot_start(symbol_index, 0)
        if since < 0:
            return None
        slot, offset = divmod(since, LIVE_INJECTION_SPACING_BARS)
        kind, sign = self._slot(symbol_index, slot)
        return LiveInjection(kind, sign, offset) if offset <= _injection_span(kind) else None

    def labels(self, symbols: list[str], first_bucket_us: int, end_us: int) -> list[InjectedAnomaly]:
        """Every injection into ``symbols`` (the market's, in order) of a run whose first bucket
        starts at ``first_bucket_us``, whose labelled bars all ended by ``end_us``."""
        found = []
        for i, symbol in enumerate(symbols):
            slot = 0
            while True:
                kind, _ = self._slot(i, slot)
                first = self._slot_start(i, slot)
                last = first + _injection_span(kind)
                if kind is AnomalyKind.GAP_JUMP:
                    first = last
                if first_bucket_us + (last + 1) * self.bar_us > end_us:
                    break
                found.append(InjectedAnomaly(symbol, kind.value, first_bucket_us + first * self.bar_us,
                                             first_bucket_us + last * self.bar_us))
                slot += 1
        return sorted(found, key=lambda label: (label.first_bucket_us, label.symbol))


def _with_duplicates(order: np.ndarray, rate: float, rng: np.random.Generator) -> np.ndarray:
    """Deliver a random share of trades a second time, shortly after the first delivery."""
    dup_count = int(round(len(order) * rate))
    if dup_count == 0:
        return order
    dup_positions = np.sort(rng.choice(len(order), size=dup_count, replace=False))
    return np.insert(order, dup_positions + 1, order[dup_positions])


def _out_of_order(order: np.ndarray, rate: float, rng: np.random.Generator) -> np.ndarray:
    """Swap a random share of deliveries with their successor: trades arriving late."""
    swaps = int(round((len(order) - 1) * rate))
    if swaps == 0:
        return order
    order = order.copy()
    for pos in rng.choice(len(order) - 1, size=swaps, replace=False):
        order[pos], order[pos + 1] = order[pos + 1], order[pos]
    return order


def market_ticks(spec: MarketSpec) -> pa.Table:
    """Every symbol's ticks in one table (for tests and benchmarks; the pipeline goes per symbol)."""
    return pa.concat_tables(symbol_ticks(spec, i) for i in range(spec.symbols))
