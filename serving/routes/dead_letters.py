"""``GET /v1/dead-letters``: records the pipeline rejected, newest first, for operators."""
from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Query
from fastapi.responses import Response

from alphastream.records import DeadLetterReason
from serving import queries
from serving.deps import Pool, Settings
from serving.models import ERROR_RESPONSES, DeadLettersPage
from serving.paging import CursorParam, IsoDateTime, Keyset, LimitParam, keyset_page

router = APIRouter(tags=["operations"])

# The cursor position: (seen_at in epoch us, origin, reason, md5 of raw), the table's identity.
DEAD_LETTERS = Keyset(queries.DEAD_LETTERS_PAGE, after=("after_seen_at", "after_origin", "after_reason", "after_md5"),
                      columns=queries.DEAD_LETTER_ROW_COLUMNS)


@router.get("/dead-letters", response_model=DeadLettersPage, responses=ERROR_RESPONSES,
            summary="Rejected records")
async def get_dead_letters(
    pool: Pool, settings: Settings,
    since: Annotated[IsoDateTime | None, Query(description="Only letters seen at or after this time.")] = None,
    reason: Annotated[DeadLetterReason | None, Query(description="Only letters with this reason.")] = None,
    limit: LimitParam = None, cursor: CursorParam = None,
) -> Response:
    """Dead letters, newest first, ``limit`` per page; follow ``next_cursor`` for older ones."""
    reason_value = reason.value if reason else None
    return await keyset_page(pool, DEAD_LETTERS, scope=["dead-letters", since.isoformat() if since else None,
                                                        reason_value],
                             filters={"since": since, "reason": reason_value}, limit=limit, cursor=cursor,
                             settings=settings)
