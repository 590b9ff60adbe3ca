"""``GET /v1/anomalies``: what the pipeline's detectors found (transforms.anomalies), newest first."""
from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Query
from fastapi.responses import Response

from alphastream.records import SYMBOL_PATTERN, AnomalyKind
from serving import anomaly_queries, encoding
from serving.deps import Pool, Settings
from serving.errors import invalid
from serving.models import ERROR_RESPONSES, AnomaliesPage
from serving.paging import NOT_ISSUED, IsoDateTime, checked_limit, decode_cursor, encode_cursor, time_position
from serving.routes.bars import CursorParam, LimitParam

router = APIRouter(tags=["analytics"])

# A cursor position: (bucket_start in epoch us, symbol, interval, kind): the table's key.
_POSITION_TYPES = (int, str, str, str)


@router.get("/v1/anomalies", response_model=AnomaliesPage, responses=ERROR_RESPONSES, summary="Detected anomalies")
async def get_anomalies(
    pool: Pool, settings: Settings,
    symbol: Annotated[str | None, Query(pattern=SYMBOL_PATTERN, description="Only this symbol.")] = None,
    since: Annotated[IsoDateTime | None, Query(description="Only anomalies of bars starting at or after this time.")] = None,
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
    rows = checked_limit(limit, settings)
    scope = ["anomalies", symbol, since.isoformat() if since else None, kind.value if kind else None]
    after: list = [None] * len(_POSITION_TYPES)
    if cursor is not None:
        after = decode_cursor(cursor, scope)
        if not (isinstance(after, list) and len(after) == len(_POSITION_TYPES)
                and all(isinstance(v, t) for v, t in zip(after, _POSITION_TYPES))):
            raise invalid(NOT_ISSUED)
        after[0] = time_position(after[0])
    params = {"symbol": symbol, "kind": kind.value if kind else None, "since": since, "rows": rows + 1,
              "after_bucket_start": after[0], "after_symbol": after[1], "after_interval": after[2],
              "after_kind": after[3]}
    async with pool.connection() as conn:
        found = await (await conn.execute(anomaly_queries.ANOMALIES_PAGE, params)).fetchall()
    key_length = len(_POSITION_TYPES)
    next_cursor = encode_cursor(scope, list(found[rows - 1][:key_length])) if len(found) > rows else None
    items = encoding.row_dicts(anomaly_queries.ANOMALY_ROW_COLUMNS, (row[key_length:] for row in found[:rows]))
    return Response(encoding.dumps({"next_cursor": next_cursor, "items": items}), media_type="application/json")
