"""JSON rendering of database rows for the endpoints that return many of them.

``/v1/bars``, ``/v1/dead-letters`` and the bar stream build their JSON with orjson straight
from the typed rows, skipping pydantic validation of thousands of objects per request (the
routes still declare their pydantic response models for OpenAPI, and the schemathesis test
checks the answers conform). Times render as ISO-8601 UTC with ``Z``, as pydantic does.
"""
from __future__ import annotations

import functools
from typing import Any, Callable, Iterable, Sequence

import orjson

_OPTIONS = orjson.OPT_UTC_Z


def row_dicts(columns: Sequence[str], rows: Iterable[Sequence[Any]]) -> list[dict[str, Any]]:
    return [dict(zip(columns, row, strict=True)) for row in rows]


Row = tuple[Any, ...]
RowDictBuilder = Callable[[Row, Iterable[Row]], list[dict[str, Any]]]


def keyed_row_dicts(columns: tuple[str, ...], key: Row, rows: Iterable[Row]) -> list[dict[str, Any]]:
    """Like ``row_dicts`` for rows that share their leading values ``key`` (read once, not per
    row): ``columns`` names the key's values, then each row's."""
    return _dict_builder(columns, len(key))(key, rows)


@functools.lru_cache(maxsize=None)
def _dict_builder(columns: tuple[str, ...], key_length: int) -> RowDictBuilder:
    """A function turning rows into dicts with a dict display of constant keys, compiled once per
    column tuple, as ``collections.namedtuple`` compiles its class.

    CPython builds a ``{'a': x, 'b': y}`` display in one step from a constant key tuple, much
    faster than ``dict(zip(columns, row))`` on the bar pages (docs/benchmarks.md). Keys enter the
    source only as ``repr`` literals and variables are generated names, so no column name is ever
    evaluated as code.
    """
    keys = [f"k{i}" for i in range(key_length)]
    values = [f"v{i}" for i in range(len(columns) - key_length)]
    display = ", ".join(f"{name!r}: {var}" for name, var in zip(columns, keys + values, strict=True))
    unpack = f"{', '.join(keys)}, = key" if keys else "pass"
    row_target = f"{', '.join(values)}," if values else "()"
    source = (f"def build(key, rows):\n"
              f"    {unpack}\n"
              f"    return [{{{display}}} for {row_target} in rows]\n")
    namespace: dict[str, Any] = {}
    exec(compile(source, f"<row dicts {columns}>", "exec"), namespace)  # noqa: S102 - see docstring
    build: RowDictBuilder = namespace["build"]
    return build


def dumps(value: Any) -> bytes:
    return orjson.dumps(value, option=_OPTIONS)
