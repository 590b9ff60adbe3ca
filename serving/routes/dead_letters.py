"""``GET /v1/dead-letters``: records the pipeline rejected, newest first, for operators."""
from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Query
from fastapi.responses import Response

from alphastream.records import DeadLetterReason
from serving import encoding, queries
from serving.deps import Pool, Settings
from serving.errors import invalid
from serving.models import ERROR_RESPONSES, DeadLettersPage
from serving.paging import NOT_ISSUED, IsoDateTime, checked_limit, decode_cursor, encode_cursor, time_position
from serving.routes.bars import CursorParam, LimitParam

router = APIRouter(tags=["operations"])

# A cursor position: (seen_at in epoch us, origin, reason, md5 of raw): the table's identity.
_POSITION_TYPES = (int, str, str, str)


@router.get("/v1/dead-letters", response_model=DeadLettersPage, responses=ERROR_RESPONSES,
            summary="Rejected records")
async def get_dead_letters(
    pool: Pool, settings: Settings,
    since: Annotated[IsoDateTime | None, Query(description="Only letters seen at or after this time.")] = None,
    reason: Annotated[DeadLetterReason | None, Query(description="Only letters with this reason.")] = None,
    limit: LimitParam = None, cursor: CursorParam = None,
) -> Response:
    """Dead letters, newest first, ``limit`` per page; follow ``next_cursor`` for older ones."""
    rows = checked_limit(limit, settings)
    scope = ["dead-letters", since.isoformat() if since else None, reason.value if reason else None]
    after: list = [None] * len(_POSITION_TYPES)
    if cursor is not None:
        after = decode_cursor(cursor, scope)
        if not (isinstance(after, list) and len(after) == len(_POSITION_TYPES)
                and all(isinstance(v, t) for v, t in zip(after, _POSITION_TYPES))):
            raise invalid(NOT_ISSUED)
        after[0] = time_position(after[0])
    params = {"since": since, "reason": reason.value if reason else None, "rows": rows + 1,
              "after_seen_at": after[0], "after_origin": after[1], "after_reason": after[2],
              "after_md5": after[3]}
    async with pool.connection() as conn:
        found = await (await conn.execute(queries.DEAD_LETTERS_PAGE, params)).fetchall()
    key_length = len(_POSITION_TYPES)
    next_cursor = encode_cursor(scope, list(found[rows - 1][:key_length])) if len(found) > rows else None
    items = encoding.row_dicts(queries.DEAD_LETTER_ROW_COLUMNS, (row[key_length:] for row in found[:rows]))
    return Response(encoding.dumps({"next_cursor": next_cursor, "items": items}), media_type="application/json")
