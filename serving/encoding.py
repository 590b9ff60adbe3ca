"""JSON rendering of database rows for the endpoints that return many of them.

``/v1/bars``, ``/v1/dead-letters`` and the bar stream build their JSON with orjson straight
from the typed rows, skipping pydantic validation of thousands of objects per request (the
routes still declare their pydantic response models for OpenAPI, and the schemathesis test
checks the answers conform). Times render as ISO-8601 UTC with ``Z``, as pydantic does.
"""
from __future__ import annotations

from typing import Any, Iterable, Sequence

import orjson

_OPTIONS = orjson.OPT_UTC_Z


def row_dicts(columns: Sequence[str], rows: Iterable[Sequence[Any]]) -> list[dict[str, Any]]:
    return [dict(zip(columns, row)) for row in rows]


def keyed_row_dicts(columns: Sequence[str], key: tuple, rows: Iterable[tuple]) -> list[dict[str, Any]]:
    """Like ``row_dicts`` for rows that share their leading values ``key`` (read once, not per row)."""
    return [dict(zip(columns, key + row)) for row in rows]


def dumps(value: Any) -> bytes:
    return orjson.dumps(value, option=_OPTIONS)
