"""Helpers shared by the ingestion connector tests."""
from __future__ import annotations

import contextlib

from alphastream.records import Tick


async def take_ticks(connector, count: int) -> list[Tick]:
    """The first ``count`` ticks of ``connector.stream()``, closing the stream after them."""
    ticks = []
    async with contextlib.aclosing(connector.stream()) as stream:
        async for tick in stream:
            ticks.append(tick)
            if len(ticks) == count:
                break
    return ticks
