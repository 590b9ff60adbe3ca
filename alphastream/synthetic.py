"""A seeded synthetic stock market: ticks for the zero-setup default and for benchmarks.

Each symbol follows a geometric random walk over one US trading session (09:30-16:00 New
York, taken as 14:30-21:00 UTC), with trades spread by a U-shaped intraday volume profile
(busy open and close, quiet lunch). A small share of trades is delivered twice (as a feed
retrying would) and some arrive out of order, so the pipeline's dedup and event-time logic is
exercised by default.

Generation is vectorised (numpy + Arrow) and per symbol: symbol i's ticks depend only on
(seed, i), so any split of symbols across workers gives identical data.
"""
from __future__ import annotations

import datetime as dt
from dataclasses import dataclass

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from alphastream.records import MICROS_PER_SECOND, TICK_FIELDS

SYNTHETIC_SOURCE = "synthetic"
SESSION_OPEN_UTC = dt.time(14, 30)
SESSION_SECONDS = 390 * 60  # 6.5 hours
# Beta(a, a) with a < 1 is U-shaped: most trading near the open and the close.
VOLUME_PROFILE_BETA = 0.7
ANNUAL_VOLATILITY_RANGE = (0.15, 0.60)
TRADING_SECONDS_PER_YEAR = 252 * SESSION_SECONDS

_NAMED_SYMBOLS = (
    "AAPL MSFT NVDA AMZN GOOGL META TSLA BRK.B JPM V UNH XOM JNJ WMT MA PG AVGO HD CVX MRK "
    "ABBV COST PEP KO ADBE CRM NFLX AMD INTC CSCO ORCL TMO ACN MCD DIS ABT WFC VZ TXN NKE "
    "PM QCOM IBM GS CAT BA AMGN SBUX INTU SPY"
).split()

TICK_ARROW_SCHEMA = pa.schema(
    [
        ("symbol", pa.string()),
        ("ts_us", pa.int64()),
        ("price", pa.float64()),
        ("size", pa.float64()),
        ("trade_id", pa.string()),
        ("source", pa.string()),
    ]
)
assert tuple(TICK_ARROW_SCHEMA.names) == TICK_FIELDS, "TICK_ARROW_SCHEMA must follow records.Tick"


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

    def __post_init__(self) -> None:
        if self.ticks_per_symbol < 1:
            raise ValueError(f"ticks_per_symbol must be >= 1, got {self.ticks_per_symbol}")
        for name in ("duplicate_rate", "out_of_order_rate"):
            rate = getattr(self, name)
            if not 0.0 <= rate <= 1.0:
                raise ValueError(f"{name} must be within [0, 1], got {rate}")

    @property
    def total_ticks(self) -> int:
        """Ticks delivered, duplicates included (what a reader of the feed sees)."""
        per_symbol = self.ticks_per_symbol + int(round(self.ticks_per_symbol * self.duplicate_rate))
        return per_symbol * self.symbols


def _symbol_rng(spec: MarketSpec, index: int) -> np.random.Generator:
    return np.random.default_rng([spec.seed, index])


def symbol_ticks(spec: MarketSpec, index: int) -> pa.Table:
    """All ticks of symbol number ``index`` for the session, in delivery order."""
    rng = _symbol_rng(spec, index)
    symbol = symbol_names(spec.symbols)[index]
    n = spec.ticks_per_symbol

    offsets_s = np.sort(rng.beta(VOLUME_PROFILE_BETA, VOLUME_PROFILE_BETA, n)) * SESSION_SECONDS
    ts_us = session_open_us(spec.day) + (offsets_s * MICROS_PER_SECOND).astype(np.int64)

    start_price = float(rng.uniform(20.0, 500.0))
    sigma = rng.uniform(*ANNUAL_VOLATILITY_RANGE)
    dt_years = np.diff(offsets_s, prepend=0.0) / TRADING_SECONDS_PER_YEAR
    log_returns = rng.standard_normal(n) * sigma * np.sqrt(dt_years)
    price = np.round(start_price * np.exp(np.cumsum(log_returns)), 4)
    size = np.maximum(1.0, np.round(rng.lognormal(mean=4.0, sigma=1.0, size=n)))

    order = np.arange(n)
    order = _with_duplicates(order, spec.duplicate_rate, rng)
    order = _out_of_order(order, spec.out_of_order_rate, rng)

    seq = pa.array(np.arange(n))
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
    return table.take(pa.array(order))


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
