"""``GET /v1/alerts``: the store alerts firing now (stale symbols, dead-letter spikes, the
database down), for the dashboard's banner and badges."""
from __future__ import annotations

import datetime as dt
import logging

import psycopg
from fastapi import APIRouter
from psycopg_pool import PoolTimeout

from serving import alerts
from serving.deps import Pool, Settings, StoreCatalog
from serving.models import ERROR_RESPONSES, AlertsList

router = APIRouter(tags=["operations"])
log = logging.getLogger("serving")

DESCRIPTION = (
    "What is firing now, computed from the store at request time (no Prometheus needed): "
    "`SymbolDataStale` per symbol whose newest bar (shortest stored interval) ended more than "
    "ALPHASTREAM_API_ALERT_STALE_SECONDS ago; `DeadLetterRate` when dead letters were recorded faster "
    "than ALPHASTREAM_API_ALERT_DEAD_LETTER_RATE per second over the last "
    "ALPHASTREAM_API_ALERT_DEAD_LETTER_WINDOW_SECONDS; `DatabaseUnreachable` (answered with 200) when the "
    "store does not answer. Names, severities and runbook links are those of the Prometheus rules "
    "(deploy/prometheus/alerts.yml). Feed sequence gaps and silent feeds are not stored: they are on the "
    "ingestion service's /metrics (IngestionSequenceGap, IngestionFeedSilent)."
)


@router.get("/alerts", response_model=AlertsList, summary="Alerts firing now", description=DESCRIPTION,
            responses={401: ERROR_RESPONSES[401]})
async def get_alerts(pool: Pool, catalog: StoreCatalog, settings: Settings) -> AlertsList:
    checked_at = dt.datetime.now(dt.timezone.utc)
    try:
        symbols = await catalog.current(pool)
        async with pool.connection() as conn:
            counts = await alerts.recent_dead_letters(conn, settings.api_alert_dead_letter_window_seconds)
    except (PoolTimeout, psycopg.Error) as err:
        log.warning("alerts: the store does not answer (%s)", err)
        return AlertsList(checked_at=checked_at, items=[alerts.database_unreachable(err)])
    spike = alerts.dead_letter_spike(counts, settings.api_alert_dead_letter_window_seconds,
                                     settings.api_alert_dead_letter_rate)
    items = ([spike] if spike else []) + alerts.stale_symbols(symbols, checked_at, settings.api_alert_stale_seconds)
    return AlertsList(checked_at=checked_at, items=items)
