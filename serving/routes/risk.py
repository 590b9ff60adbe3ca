"""``GET /v1/risk`` and ``POST /v1/risk/portfolio``: risk metrics over served bars (serving/risk.py)."""
from __future__ import annotations

import asyncio
import datetime as dt
import math
from typing import Annotated, Any

from fastapi import APIRouter, Query
from psycopg_pool import AsyncConnectionPool

from alphastream.intervals import interval_micros, interval_seconds
from alphastream.records import SYMBOL_PATTERN
from serving import queries, risk
from serving.catalog import ResolvedSeries, resolve_series
from serving.deps import Pool, Settings, StoreCatalog
from serving.errors import invalid
from serving.models import ERROR_RESPONSES, NOT_FOUND, DrawdownOut, ErrorBody, PortfolioRequest, RiskOut, TailOut
from serving.paging import ceil_to, checked_range, from_us
from serving.routes.bars import EndParam, IntervalParam, StartParam, SymbolParam, range_params
from serving.settings import ApiSettings

router = APIRouter(tags=["risk"])

# About a year of 1-minute equity bars (252 x 390): a bound on the work of one request.
MAX_RISK_BARS = 100_000
DESCRIPTION = risk.__doc__.split("\n", 1)[1].strip()

# FastAPI answers a body it cannot parse as JSON with a 400 before validation.
BAD_BODY: dict[int | str, dict[str, Any]] = {400: {"model": ErrorBody, "description": "The body is not JSON."}}
BenchmarkParam = Annotated[str | None, Query(pattern=SYMBOL_PATTERN,
                                             description="Symbol to compute beta and correlation against.")]
CalendarParam = Annotated[risk.Calendar | None, Query(
    description="equity (252 sessions of 6.5 h) or 24/7; default: 24/7 for pairs such as BTC-USD, else equity.")]


def bar_bounds(series: ResolvedSeries, start: dt.datetime | None, end: dt.datetime | None,
               settings: ApiSettings) -> tuple[dt.datetime, dt.datetime, int]:
    """[lo, hi) aligned to the interval, and the most bars one series may bring."""
    lo, hi = checked_range(start, end, settings)
    step_us = interval_micros(series.interval)
    rows = min(MAX_RISK_BARS, settings.api_max_scan_rows // series.ratio - 1)
    return ceil_to(lo, step_us), ceil_to(hi, step_us), rows


async def read_closes(pool: AsyncConnectionPool, series: ResolvedSeries, start: dt.datetime | None,
                      end: dt.datetime | None, settings: ApiSettings) -> risk.Series:
    """One series' closes on a connection of its own, so several series are read at once."""
    lo, hi, rows = bar_bounds(series, start, end, settings)
    async with pool.connection() as conn:
        found = await (await conn.execute(queries.closes(series.rolled), range_params(series, lo, hi, rows),
                                          binary=True)).fetchall()
    if len(found) > rows:
        raise invalid(f"{series.info.symbol} has more than {rows:,} {series.interval} bars in this range: "
                      "narrow start/end or use a larger interval")
    return risk.series(found)


def risk_out(name: str, interval: str, calendar: risk.Calendar, metrics: risk.RiskMetrics,
             benchmark: str | None, weights: dict[str, float] | None = None) -> RiskOut:
    drawdown = metrics.drawdown
    return RiskOut(
        symbol=name, interval=interval, weights=weights, bars=metrics.bars,
        first_bar=None if metrics.first_us is None else from_us(metrics.first_us),
        last_bar=None if metrics.last_us is None else from_us(metrics.last_us),
        calendar=calendar, bars_per_year=metrics.bars_per_year, volatility=metrics.volatility,
        volatility_annualized=metrics.volatility_annualized,
        max_drawdown=DrawdownOut(fraction=drawdown.fraction,
                                 peak_at=None if drawdown.peak_us is None else from_us(drawdown.peak_us),
                                 trough_at=None if drawdown.trough_us is None else from_us(drawdown.trough_us)),
        tails=[TailOut(confidence=t.confidence, var=t.var, expected_shortfall=t.expected_shortfall)
               for t in metrics.tails],
        sharpe=metrics.sharpe, benchmark=benchmark, beta=metrics.beta, correlation=metrics.correlation,
        benchmark_returns=metrics.benchmark_returns,
    )


@router.get("/risk", response_model=RiskOut, responses={**ERROR_RESPONSES, **NOT_FOUND},
            summary="Risk metrics of one symbol", description=DESCRIPTION)
async def get_risk(pool: Pool, catalog: StoreCatalog, settings: Settings, symbol: SymbolParam,
                   interval: IntervalParam, start: StartParam = None, end: EndParam = None,
                   benchmark: BenchmarkParam = None, calendar: CalendarParam = None) -> RiskOut:
    series = await resolve_series(catalog, pool, symbol, interval)
    against = await resolve_series(catalog, pool, benchmark, interval) if benchmark else None
    closes, *reference = await asyncio.gather(*(read_closes(pool, s, start, end, settings)
                                                for s in (series, against) if s))
    calendar = calendar or risk.calendar_for(series.info.symbol)
    per_year = risk.bars_per_year(interval_seconds(series.interval), calendar)
    return risk_out(series.info.symbol, series.interval, calendar,
                    risk.risk_metrics(closes, per_year, *reference), against.info.symbol if against else None)


@router.post("/risk/portfolio", response_model=RiskOut, responses={**ERROR_RESPONSES, **NOT_FOUND, **BAD_BODY},
             summary="Risk metrics of a weighted portfolio", description=DESCRIPTION)
async def post_portfolio_risk(pool: Pool, catalog: StoreCatalog, settings: Settings,
                              request: PortfolioRequest) -> RiskOut:
    """The portfolio is rebalanced to ``weights`` every bar and valued from 1 over the bars all of
    its symbols have; its metrics are those of ``GET /v1/risk`` over that value."""
    if len(request.weights) > settings.api_max_symbols:
        raise invalid(f"{len(request.weights)} symbols in weights: at most {settings.api_max_symbols}")
    if not all(math.isfinite(w) for w in request.weights.values()):
        raise invalid("weights must be finite numbers")
    members = {name: await resolve_series(catalog, pool, name, request.interval) for name in request.weights}
    against = (await resolve_series(catalog, pool, request.benchmark, request.interval)
               if request.benchmark else None)
    wanted = [*members.values(), *([against] if against else [])]
    read = await asyncio.gather(*(read_closes(pool, s, request.start, request.end, settings) for s in wanted))
    closes, reference = read[:len(members)], read[-1] if against else None
    canonical = next(iter(members.values())).interval
    calendar = request.calendar or (risk.Calendar.ALWAYS_OPEN if all(
        risk.calendar_for(name) is risk.Calendar.ALWAYS_OPEN for name in members) else risk.Calendar.EQUITY)
    weights = {members[name].info.symbol: w for name, w in request.weights.items()}
    value = risk.portfolio({s.info.symbol: c for s, c in zip(members.values(), closes, strict=True)}, weights)
    per_year = risk.bars_per_year(interval_seconds(canonical), calendar)
    return risk_out("portfolio", canonical, calendar, risk.risk_metrics(value, per_year, reference),
                    against.info.symbol if against else None, weights)
