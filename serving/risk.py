"""Risk metrics of ``/v1/risk`` and ``/v1/risk/portfolio``, from closes: plain numpy, no I/O.

Returns are simple close-to-close returns, r = c_t / c_(t-1) - 1, between consecutive bars of
the range (a portfolio's return is then the weighted sum of its members'). Realized volatility
is the sample standard deviation of the log returns ln(1 + r), as ``/v1/indicators`` computes it.

Annualization multiplies by the bars in a year, which depends on when the market trades:
``24/7`` (crypto pairs) has 365 days of 24 hours; ``equity`` has 252 sessions of 6.5 hours,
so a 1-minute bar counts 252 x 390 per year and a daily bar 252.
"""
from __future__ import annotations

import enum
import math
from dataclasses import dataclass
from typing import Mapping, Sequence

import numpy as np

SECONDS_PER_DAY = 86_400
DAYS_PER_YEAR = 365.0
SESSIONS_PER_YEAR = 252
SESSION_SECONDS = 23_400  # 6.5 hours: a US equity regular session
CONFIDENCES = (0.95, 0.99)


class Calendar(str, enum.Enum):
    EQUITY = "equity"
    ALWAYS_OPEN = "24/7"


def calendar_for(symbol: str) -> Calendar:
    """Pairs such as BTC-USD or EUR/USD trade around the clock; anything else as an equity."""
    return Calendar.ALWAYS_OPEN if "-" in symbol or "/" in symbol else Calendar.EQUITY


def bars_per_year(interval_seconds: int, calendar: Calendar) -> float:
    """Bars of ``interval_seconds`` in a year of ``calendar``: the annualization factor's square."""
    if calendar is Calendar.ALWAYS_OPEN:
        return DAYS_PER_YEAR * SECONDS_PER_DAY / interval_seconds
    if interval_seconds < SECONDS_PER_DAY:
        # Only session time has bars; a bar longer than a session still comes once a session.
        return SESSIONS_PER_YEAR * max(1.0, SESSION_SECONDS / interval_seconds)
    # Multi-day bars tile calendar days (weekends included) but never outnumber the sessions.
    return min(float(SESSIONS_PER_YEAR), DAYS_PER_YEAR * SECONDS_PER_DAY / interval_seconds)


@dataclass(frozen=True)
class Series:
    """Closes (or portfolio values) at bar starts, epoch microseconds, oldest first."""

    times: np.ndarray
    values: np.ndarray


def series(rows: Sequence[tuple[int, float]]) -> Series:
    """From (epoch microseconds, close) rows; the times pass through float64 exactly (< 2 ** 53)."""
    table = np.array(rows, dtype=float).reshape(-1, 2)
    return Series(table[:, 0].astype(np.int64), table[:, 1])


def aligned(*members: Series) -> tuple[np.ndarray, list[np.ndarray]]:
    """The bar times every member has, and each member's values at them."""
    common = members[0].times
    for member in members[1:]:
        common = np.intersect1d(common, member.times, assume_unique=True)
    return common, [m.values[np.searchsorted(m.times, common)] for m in members]


def simple_returns(values: np.ndarray) -> np.ndarray:
    returns: np.ndarray = values[1:] / values[:-1] - 1.0
    return returns


def portfolio(members: Mapping[str, Series], weights: Mapping[str, float]) -> Series:
    """Value of a portfolio rebalanced to ``weights`` every bar, starting at 1, over the bars all
    members have."""
    times, values = aligned(*members.values())
    returns = np.column_stack([simple_returns(v) for v in values]) if len(times) > 1 else np.empty((0, 0))
    weighted = returns @ np.array([weights[name] for name in members]) if returns.size else np.empty(0)
    return Series(times, np.concatenate([[1.0], np.cumprod(1.0 + weighted)]) if len(times) else np.empty(0))


@dataclass(frozen=True)
class Drawdown:
    fraction: float  # largest fall from a running peak, as a fraction of the peak
    peak_us: int | None
    trough_us: int | None


def max_drawdown(path: Series) -> Drawdown:
    if len(path.values) < 2:
        return Drawdown(0.0, None, None)
    drawdowns = 1.0 - path.values / np.maximum.accumulate(path.values)
    trough = int(np.argmax(drawdowns))
    if drawdowns[trough] <= 0:
        return Drawdown(0.0, None, None)
    peak = int(np.argmax(path.values[:trough + 1]))
    return Drawdown(float(drawdowns[trough]), int(path.times[peak]), int(path.times[trough]))


def _finite(value: float) -> float | None:
    return float(value) if math.isfinite(value) else None


@dataclass(frozen=True)
class Tail:
    """Historical value at risk and expected shortfall at one confidence, as positive losses."""

    confidence: float
    var: float | None  # -(the (1 - confidence) quantile of the returns, linear interpolation)
    expected_shortfall: float | None  # -(the mean of the returns at or below that quantile)


def tail(returns: np.ndarray, confidence: float) -> Tail:
    if len(returns) == 0:
        return Tail(confidence, None, None)
    quantile = float(np.quantile(returns, 1.0 - confidence))
    return Tail(confidence, -quantile, -float(returns[returns <= quantile].mean()))


@dataclass(frozen=True)
class RiskMetrics:
    bars: int
    first_us: int | None
    last_us: int | None
    bars_per_year: float
    volatility: float | None  # per bar: sample std of log returns
    volatility_annualized: float | None
    drawdown: Drawdown
    tails: tuple[Tail, ...]
    sharpe: float | None  # annualized, risk-free rate 0
    beta: float | None
    correlation: float | None
    benchmark_returns: int  # returns of the bars the benchmark shares


def _sample_std(values: np.ndarray) -> float | None:
    return _finite(float(np.std(values, ddof=1))) if len(values) > 1 else None


def beta_correlation(path: Series, benchmark: Series | None) -> tuple[float | None, float | None, int]:
    """Beta (cov / benchmark variance) and Pearson correlation of the simple returns between the
    bars both series have."""
    if benchmark is None:
        return None, None, 0
    _, (mine, theirs) = aligned(path, benchmark)
    ours, market = simple_returns(mine), simple_returns(theirs)
    if len(ours) < 2 or np.var(market) == 0:
        return None, None, len(ours)
    covariance = np.cov(ours, market, ddof=1)
    spread = math.sqrt(covariance[0, 0] * covariance[1, 1])
    return (_finite(covariance[0, 1] / covariance[1, 1]),
            _finite(covariance[0, 1] / spread) if spread > 0 else None, len(ours))


def risk_metrics(path: Series, per_year: float, benchmark: Series | None = None) -> RiskMetrics:
    """Every metric of ``path`` (closes or portfolio values), annualized with ``per_year`` bars."""
    returns = simple_returns(path.values) if len(path.values) > 1 else np.empty(0)
    volatility = _sample_std(np.log1p(returns))
    std = _sample_std(returns)
    beta, correlation, shared = beta_correlation(path, benchmark)
    return RiskMetrics(
        bars=len(path.values),
        first_us=int(path.times[0]) if len(path.times) else None,
        last_us=int(path.times[-1]) if len(path.times) else None,
        bars_per_year=per_year,
        volatility=volatility,
        volatility_annualized=None if volatility is None else volatility * math.sqrt(per_year),
        drawdown=max_drawdown(path),
        tails=tuple(tail(returns, c) for c in CONFIDENCES),
        sharpe=_finite(float(np.mean(returns)) / std * math.sqrt(per_year)) if std else None,
        beta=beta, correlation=correlation, benchmark_returns=shared,
    )
