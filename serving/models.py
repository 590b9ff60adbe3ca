"""Pydantic response models of the API, built from ``alphastream.records``.

The bar and dead-letter models are generated from the record ``NamedTuple``s (field names via
``storage_name``, ``*_us`` integers as UTC datetimes), so a field added to a record appears in
the API without another place to edit. Times are ISO-8601 UTC in every response.

A number the store holds as NaN or infinity has no JSON spelling: it is served as null, and
every float field says so in the schema (the pipeline never writes one; the columns could hold one).
"""
from __future__ import annotations

import datetime as dt
import enum
import typing
from typing import Annotated, Any

from pydantic import BaseModel, ConfigDict, Field, create_model

from alphastream.records import TIME_SUFFIX, Anomaly, AnomalyKind, Bar, DeadLetter, storage_name
from serving.paging import IsoDateTime
from serving.queries import FILLED, RECORDED_AT, REVISION, STATE, UPDATED_AT, BarState
from serving.risk import Calendar

NOT_FINITE = "Null when the stored value is not a finite number."
# A float as served: null for NaN and infinities (orjson and pydantic both render them so).
Number = Annotated[float | None, Field(description=NOT_FINITE)]

BAR_STATE_DESCRIPTION = (
    "Whether a bar can still change. `state` is `final` when the store holds it as final (a batch "
    "run, or the streaming finaliser's repair from the tick archive): only a re-run over corrected "
    "input changes it again; `revised` when a late tick changed it after its window closed (it may "
    "change again until finalised); `provisional` otherwise: its window is open (an early pane) or "
    "closed and not yet finalised. `revision` counts the bar's updates in the run that wrote it (its "
    "pane index: 0 for the first). A rolled-up bar is final when all of its stored bars are, else "
    "provisional if any of them is early, else revised if any is late; it carries their highest revision."
)

FILLED_DESCRIPTION = (
    "True for a carry-forward bar: the pipeline's gap filling (--fill_gaps) wrote it for a bucket in the "
    "symbol's trading session without a trade, with open = high = low = close = vwap = the previous "
    "close, volume 0 and trades 0. A real bar has at least one trade. A rolled-up bar is filled when "
    "all of its stored bars are."
)


def record_model(name: str, record: type[Any], doc: str, **extra: Any) -> type[BaseModel]:
    """A pydantic model with one field per record field (storage names, times as datetimes)."""
    hints = typing.get_type_hints(record)
    fields: dict[str, Any] = {
        storage_name(field): (dt.datetime if field.endswith(TIME_SUFFIX) else Number if hints[field] is float
                              else hints[field], ...)
        for field in record._fields
    }
    return create_model(name, __doc__=doc, **fields, **extra)


BarOut = record_model(
    "BarOut", Bar,
    "One OHLCV bar. Rolled-up bars: open of the first and close of the last stored bar, "
    "volume-weighted vwap, summed volume and trades.",
    **{UPDATED_AT: (dt.datetime, Field(description="When the store last wrote this bar.")),
       STATE: (BarState, Field(description=BAR_STATE_DESCRIPTION)),
       REVISION: (int, Field(ge=0, description="Updates of this bar so far (its pane index).")),
       FILLED: (bool, Field(description=FILLED_DESCRIPTION))},
)
DeadLetterOut = record_model(
    "DeadLetterOut", DeadLetter, "A record the pipeline rejected, with the reason.",
    **{RECORDED_AT: (dt.datetime, Field(description="When the store recorded it."))},
)


class Page(BaseModel):
    """A page of rows; pass ``next_cursor`` back as ``cursor`` for the next page (null: done)."""

    next_cursor: str | None = Field(default=None, description="Cursor of the next page, or null.")


class BarsPage(Page):
    symbol: str
    interval: str
    source_interval: str = Field(description="The stored interval the bars come from (rolled up if different).")
    items: list[BarOut]  # type: ignore[valid-type]


class SymbolOut(BaseModel):
    symbol: str
    intervals: list[str] = Field(description="Stored intervals, shortest first.")
    first_bar: dt.datetime | None = Field(description="Start of the oldest stored bar.")
    last_bar: dt.datetime | None = Field(description="Start of the newest bar of the shortest interval.")
    last_price: float | None = Field(description=f"Close of that newest bar. {NOT_FINITE}")


class SymbolsList(BaseModel):
    items: list[SymbolOut]


class QuoteOut(BaseModel):
    """The newest bar of a symbol's shortest stored interval, with its UTC day so far."""

    symbol: str
    interval: str
    price: float | None = Field(description=f"Close of the newest bar. {NOT_FINITE}")
    bucket_start: dt.datetime
    updated_at: dt.datetime = Field(description="When the store last wrote that bar.")
    day_open: float | None = Field(description=f"Open of the first bar of the newest bar's UTC day. {NOT_FINITE}")
    day_volume: float | None = Field(description=f"Volume of that UTC day so far. {NOT_FINITE}")
    change_pct: float | None = Field(description=f"(price / day_open - 1) * 100. {NOT_FINITE}")


class QuotesList(BaseModel):
    items: list[QuoteOut]


class IndicatorPoint(BaseModel):
    bucket_start: dt.datetime
    value: float | None = Field(description=f"Null while the window is not yet full. {NOT_FINITE} "
                                            "macd: the MACD line; bollinger: the middle band.")
    # Present only for the kinds that have them (the route leaves them unset otherwise).
    signal: float | None = Field(default=None, description="macd only: EMA9 of the line.")
    histogram: float | None = Field(default=None, description="macd only: line - signal.")
    upper: float | None = Field(default=None, description="bollinger only: middle + 2 std.")
    lower: float | None = Field(default=None, description="bollinger only: middle - 2 std.")


class IndicatorsPage(Page):
    symbol: str
    interval: str
    kind: str
    window: int
    items: list[IndicatorPoint]


class DrawdownOut(BaseModel):
    fraction: float = Field(description="Largest fall of the close (or portfolio value) from its running peak, "
                                        "as a fraction of that peak: 0.25 is a 25% drawdown.")
    peak_at: dt.datetime | None = Field(description="Start of the bar at the peak (null without a drawdown).")
    trough_at: dt.datetime | None = Field(description="Start of the bar at the trough (null without a drawdown).")


class TailOut(BaseModel):
    confidence: float = Field(description="0.95 or 0.99.")
    var: float | None = Field(description="Historical value at risk: minus the (1 - confidence) quantile of the "
                                          "per-bar returns (linear interpolation), a positive loss fraction.")
    expected_shortfall: float | None = Field(
        description="Minus the mean of the per-bar returns at or below that quantile.")


class RiskOut(BaseModel):
    """Risk metrics over the bars of [start, end); null where too few bars define a metric."""

    symbol: str = Field(description='The symbol, or "portfolio".')
    interval: str
    weights: dict[str, float] | None = Field(default=None, description="Portfolio only: the weights used.")
    bars: int = Field(description="Bars (closes) used; their returns are one fewer.")
    first_bar: dt.datetime | None
    last_bar: dt.datetime | None
    calendar: Calendar = Field(description="equity (252 sessions of 6.5 h) or 24/7 (365 days of 24 h).")
    bars_per_year: float = Field(description="Annualization: values per bar times sqrt(bars_per_year).")
    volatility: float | None = Field(description="Per bar: sample standard deviation of log returns.")
    volatility_annualized: float | None
    max_drawdown: DrawdownOut
    tails: list[TailOut] = Field(description="Historical VaR and expected shortfall at 95% and 99%.")
    sharpe: float | None = Field(description="Annualized Sharpe ratio, risk-free rate 0: "
                                             "mean / sample std of the returns x sqrt(bars_per_year).")
    benchmark: str | None
    beta: float | None = Field(description="cov(r, r_benchmark) / var(r_benchmark) over the bars both have.")
    correlation: float | None = Field(description="Pearson correlation of r and r_benchmark.")
    benchmark_returns: int = Field(description="Returns shared with the benchmark (0 without one).")


class PortfolioRequest(BaseModel):
    """A portfolio rebalanced to fixed weights every bar, over the bars all its symbols have."""

    model_config = ConfigDict(extra="forbid")
    weights: dict[str, float] = Field(min_length=1, description='Symbol -> weight, e.g. {"AAPL": 0.6, '
                                      '"MSFT": 0.4}; negative weights are shorts; they need not sum to 1.')
    interval: str = Field(max_length=8, description="Bar interval, as in /v1/bars.")
    start: IsoDateTime | None = Field(default=None, description="Bars starting at or after this time.")
    end: IsoDateTime | None = Field(default=None, description="Bars starting before this time.")
    benchmark: str | None = Field(default=None, description="Symbol for beta and correlation.")
    calendar: Calendar | None = Field(default=None, description="equity or 24/7; default: 24/7 when every symbol is "
                                                           "a pair (e.g. BTC-USD), else equity.")


class DeadLettersPage(Page):
    items: list[DeadLetterOut]  # type: ignore[valid-type]


_AnomalyRecordOut = record_model(
    "_AnomalyRecordOut", Anomaly, "One detection on one bar.",
    **{UPDATED_AT: (dt.datetime, Field(description="When the store last wrote this detection."))},
)


class AnomalyOut(_AnomalyRecordOut):  # type: ignore[valid-type, misc]
    """One detection on one bar: ``score`` passed ``threshold`` (in absolute value for z-scores)."""

    kind: AnomalyKind
    details: dict[str, Any] = Field(description="The inputs of the score: window, median, scale, log_return, "
                                                "volume, buckets... depending on the kind.")


class AnomaliesPage(Page):
    items: list[AnomalyOut]


class Health(BaseModel):
    status: str = Field(description='"ok" when the process serves requests.')


class Readiness(BaseModel):
    status: str = Field(description='"ready" or "not ready".')
    database: str = Field(description='"ok", or why it cannot be used.')
    pending_migrations: list[str] = Field(description="Migrations not yet applied.")


class ErrorBody(BaseModel):
    """Every error answer: a sentence saying what was wrong and what to do."""

    model_config = ConfigDict(extra="allow")
    detail: str


ERROR_RESPONSES: dict[int | str, dict[str, Any]] = {
    401: {"model": ErrorBody, "description": "Missing or wrong X-API-Key (when auth is on)."},
    422: {"model": ErrorBody, "description": "A parameter is malformed or out of bounds."},
    503: {"model": ErrorBody, "description": "The database is unreachable or too slow."},
}
NOT_FOUND: dict[int | str, dict[str, Any]] = {404: {"model": ErrorBody, "description": "Unknown symbol."}}


class AlertName(str, enum.Enum):
    """Alerts the store can tell, named as the Prometheus rules in deploy/prometheus/alerts.yml."""

    SYMBOL_DATA_STALE = "SymbolDataStale"
    DEAD_LETTER_RATE = "DeadLetterRate"
    DATABASE_UNREACHABLE = "DatabaseUnreachable"


class AlertOut(BaseModel):
    """One condition firing now."""

    alert: AlertName
    severity: str = Field(description='"warning" or "critical", as the Prometheus rule labels it.')
    symbol: str | None = Field(default=None, description="The symbol concerned (SymbolDataStale), else null.")
    interval: str | None = Field(default=None, description="The stored interval whose newest bar is measured.")
    value: float = Field(description="Seconds since the newest bar ended (SymbolDataStale), or dead letters per "
                                     "second over the window (DeadLetterRate); 0 for DatabaseUnreachable.")
    threshold: float = Field(description="The limit `value` crossed (the API's ALPHASTREAM_API_ALERT_* setting).")
    since: dt.datetime | None = Field(default=None, description="When the condition began, where the store knows "
                                                                "(the newest bar's end plus the threshold).")
    reasons: dict[str, int] = Field(default_factory=dict,
                                    description="DeadLetterRate: dead letters in the window by reason.")
    summary: str = Field(description="One sentence for people.")
    runbook_url: str = Field(description="What it means and what to do.")


class AlertsList(BaseModel):
    checked_at: dt.datetime = Field(description="When the store was asked.")
    items: list[AlertOut] = Field(description="Alerts firing now, critical first; empty when all is well.")
