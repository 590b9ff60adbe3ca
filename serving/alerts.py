"""What is firing now, as the store sees it: the product's copy of the store alert rules.

``GET /v1/alerts`` and ``/metrics`` share these definitions, so the dashboard banner and
Prometheus (deploy/prometheus/alerts.yml) measure the same things:

- SymbolDataStale: the end of a symbol's newest bar (shortest stored interval) is more than
  ``api_alert_stale_seconds`` ago. A live streaming pipeline writes the open bar as early
  panes, so its newest bar ends in the future; a stopped feed lets it age.
- DeadLetterRate: dead letters *recorded* over the last ``api_alert_dead_letter_window_seconds``
  exceed ``api_alert_dead_letter_rate`` per second (recorded_at, not seen_at: a replay of old
  bad files is a spike now).
- DatabaseUnreachable: the store did not answer.

Sequence gaps are counted by ingestion and never stored: they are on ingestion's ``/metrics``
(IngestionSequenceGap).
"""
from __future__ import annotations

import datetime as dt
from typing import Any, Mapping

from psycopg import AsyncConnection, sql

from alphastream.intervals import interval_seconds
from serving.catalog import SeriesInfo, SymbolInfo
from serving.models import AlertName, AlertOut
from serving.queries import DEAD_LETTERS, RECORDED_AT

RUNBOOK = "docs/alerts.md#"
# Severities as the Prometheus rules label them (a test checks they agree).
SEVERITY = {AlertName.SYMBOL_DATA_STALE: "warning", AlertName.DEAD_LETTER_RATE: "warning",
            AlertName.DATABASE_UNREACHABLE: "critical"}

# Dead letters recorded in the last %(window)s seconds, by reason. The dead-letter table is
# small and has no index on recorded_at, so this scans it.
RECENT_DEAD_LETTERS = sql.SQL("""
SELECT {reason}, count(*) FROM {table}
WHERE {recorded_at} >= now() - make_interval(secs => %(window)s)
GROUP BY {reason} ORDER BY {reason}""").format(
    reason=sql.Identifier("reason"), table=DEAD_LETTERS, recorded_at=sql.Identifier(RECORDED_AT))


def bar_end(series: SeriesInfo) -> dt.datetime:
    """When the newest bar of a stored series ends."""
    return series.last_bar + dt.timedelta(seconds=interval_seconds(series.interval))


def bar_age_seconds(series: SeriesInfo, now: dt.datetime) -> float:
    """Seconds from the end of the series' newest bar to ``now`` (negative while it is open)."""
    return (now - bar_end(series)).total_seconds()


async def recent_dead_letters(conn: AsyncConnection, window_seconds: float) -> dict[str, int]:
    """Dead letters recorded in the last ``window_seconds``, by reason."""
    rows = await (await conn.execute(RECENT_DEAD_LETTERS, {"window": window_seconds})).fetchall()
    return {reason: count for reason, count in rows}


def _alert(name: AlertName, **fields: Any) -> AlertOut:
    return AlertOut(alert=name, severity=SEVERITY[name], runbook_url=RUNBOOK + name.value.lower(), **fields)


def stale_symbols(symbols: Mapping[str, SymbolInfo], now: dt.datetime, threshold_seconds: float) -> list[AlertOut]:
    """A SymbolDataStale alert per symbol whose newest bar ended over ``threshold_seconds`` ago,
    stalest first."""
    alerts = []
    for info in symbols.values():
        age = bar_age_seconds(info.finest, now)
        if age > threshold_seconds:
            alerts.append(_alert(
                AlertName.SYMBOL_DATA_STALE, symbol=info.symbol, interval=info.finest.interval, value=age,
                threshold=threshold_seconds, since=bar_end(info.finest) + dt.timedelta(seconds=threshold_seconds),
                summary=f"{info.symbol}: no {info.finest.interval} bar newer than {age:,.0f} s in the store"))
    return sorted(alerts, key=lambda a: (-a.value, a.symbol))


def dead_letter_spike(counts: Mapping[str, int], window_seconds: float, threshold_rate: float) -> AlertOut | None:
    """A DeadLetterRate alert when the dead letters recorded in the window exceed the rate."""
    total = sum(counts.values())
    rate = total / window_seconds
    if rate <= threshold_rate:
        return None
    top = ", ".join(f"{reason} {count}" for reason, count in sorted(counts.items(), key=lambda rc: -rc[1])[:3])
    return _alert(AlertName.DEAD_LETTER_RATE, value=rate, threshold=threshold_rate, reasons=dict(counts),
                  summary=f"{total:,} dead letters in the last {window_seconds:g} s ({rate:.2f}/s): {top}")


def database_unreachable(error: Exception) -> AlertOut:
    return _alert(AlertName.DATABASE_UNREACHABLE, value=0.0, threshold=0.0,
                  summary=f"the store does not answer ({type(error).__name__}): bars are neither served nor, "
                          "likely, written")
