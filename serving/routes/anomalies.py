"""``GET /v1/anomalies``: what the pipeline's detectors found (transforms.anomalies), newest first."""
from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Query
from fastapi.responses import Response

from alphastream.records import SYMBOL_PATTERN, AnomalyKind
from serving import anomaly_queries
from serving.deps import Pool, Settings
from serving.models import ERROR_RESPONSES, AnomaliesPage
from serving.paging import CursorParam, IsoDateTime, Keyset, LimitParam, keyset_page

router = APIRouter(tags=["analytics"])

# The cursor position: (bucket_start in epoch us, symbol, interval, kind), the table's key.
ANOMALIES = Keyset(anomaly_queries.ANOMALIES_PAGE,
                   after=("after_bucket_start", "after_symbol", "after_interval", "after_kind"),
                   columns=anomaly_queries.ANOMALY_ROW_COLUMNS)
SinceParam = Annotated[IsoDateTime | None, Query(description="Only anomalies of bars starting at or after this time.")]
UntilParam = Annotated[IsoDateTime | None, Query(description="Only anomalies of bars starting before this time.")]


@router.get("/anomalies", response_model=AnomaliesPage, responses=ERROR_RESPONSES, summary="Detected anomalies")
async def get_anomalies(
    pool: Pool, settings: Settings,
    symbol: Annotated[str | None, Query(pattern=SYMBOL_PATTERN, description="Only this symbol.")] = None,
    since: SinceParam = None, until: UntilParam = None,
    kind: Annotated[AnomalyKind | None, Query(description="Only anomalies of this kind.")] = None,
    limit: LimitParam = None, cursor: CursorParam = None,
) -> Response:
    """Anomalies, newest bar first, ``limit`` per page; follow ``next_cursor`` for older ones.

    Kinds: `return_outlier` (robust z-score of the bar's 1-bar log return against the median and
    1.4826 x MAD of the previous window's returns), `gap_jump` (the first bar after missing
    buckets: its return over the k buckets, z-scored with the spread scaled by sqrt(k)),
    `volume_spike` (volume / median volume of the previous window) and `stale_price` (N bars with
    trades in a row with an unchanged close). `score` is the statistic, `threshold` the limit it
    passed; `details` holds the inputs (window, median, scale...).
    """
    kind_value = kind.value if kind else None
    scope = ["anomalies", symbol, since.isoformat() if since else None, until.isoformat() if until else None,
             kind_value]
    return await keyset_page(pool, ANOMALIES, scope=scope,
                             filters={"symbol": symbol, "kind": kind_value, "since": since, "until": until},
                             limit=limit,
                             cursor=cursor, settings=settings)
