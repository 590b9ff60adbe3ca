"""``GET /v1/symbols`` and ``GET /v1/quotes/latest``: what the store holds and the newest prices."""
from __future__ import annotations

import re
from typing import Annotated

from fastapi import APIRouter, Query

from alphastream.records import SYMBOL_PATTERN
from serving import queries
from serving.catalog import SymbolInfo
from serving.deps import Pool, Settings, StoreCatalog
from serving.errors import invalid, not_found
from serving.models import ERROR_RESPONSES, NOT_FOUND, QuoteOut, QuotesList, SymbolOut, SymbolsList

router = APIRouter(tags=["symbols"])

_SYMBOL = re.compile(SYMBOL_PATTERN)
MAX_SYMBOLS_PARAM_LENGTH = 4_096


def symbol_list(text: str, most: int) -> list[str]:
    """Symbols of a comma-separated parameter, in order, without repeats (422 if malformed)."""
    names = list(dict.fromkeys(part.strip() for part in text.split(",") if part.strip()))
    if not names:
        raise invalid("symbols is empty: pass a comma-separated list, e.g. symbols=AAPL,MSFT")
    bad = [name for name in names if not _SYMBOL.match(name)]
    if bad:
        raise invalid(f"malformed symbol(s) {', '.join(map(repr, bad[:5]))}: symbols match {SYMBOL_PATTERN}")
    if len(names) > most:
        raise invalid(f"{len(names)} symbols is too many: at most {most} per request")
    return names


async def known_symbols(catalog: StoreCatalog, pool: Pool, names: list[str]) -> list[SymbolInfo]:
    """Catalog entries of the named symbols; 404 naming those the store does not hold."""
    infos = [await catalog.lookup(pool, name) for name in names]
    unknown = [name for name, info in zip(names, infos, strict=True) if info is None]
    if unknown:
        raise not_found(f"unknown symbol(s) {', '.join(unknown)}: GET /v1/symbols lists the stored ones")
    return [info for info in infos if info is not None]


SymbolsParam = Annotated[str, Query(max_length=MAX_SYMBOLS_PARAM_LENGTH,
                                    description="Comma-separated symbols, e.g. AAPL,MSFT,BTC-USD.")]


@router.get("/symbols", response_model=SymbolsList, responses=ERROR_RESPONSES,
            summary="Symbols with stored bars")
async def get_symbols(pool: Pool, catalog: StoreCatalog) -> SymbolsList:
    """Every symbol with its stored intervals, first and last bar and last price."""
    symbols = await catalog.refresh(pool)
    return SymbolsList(items=[
        SymbolOut(symbol=info.symbol, intervals=info.intervals,
                  first_bar=min(s.first_bar for s in info.series), last_bar=info.finest.last_bar,
                  last_price=info.finest.last_close)
        for info in symbols.values()
    ])


@router.get("/quotes/latest", response_model=QuotesList, responses={**ERROR_RESPONSES, **NOT_FOUND},
            summary="Newest price of each symbol")
async def get_latest_quotes(pool: Pool, catalog: StoreCatalog, settings: Settings,
                            symbols: SymbolsParam) -> QuotesList:
    """The newest bar of each symbol's shortest stored interval, with its UTC day's open,
    volume and change so far."""
    infos = await known_symbols(catalog, pool, symbol_list(symbols, settings.api_max_symbols))
    params = {"symbols": [i.symbol for i in infos], "intervals": [i.finest.interval for i in infos],
              "epoch": queries.EPOCH}
    async with pool.connection() as conn:
        rows = await (await conn.execute(queries.LATEST_QUOTES, params)).fetchall()
    return QuotesList(items=[
        QuoteOut(symbol=symbol, interval=interval, price=close, bucket_start=start, updated_at=updated,
                 day_open=day_open, day_volume=day_volume,
                 change_pct=(close / day_open - 1.0) * 100.0 if day_open else None)
        for symbol, interval, start, close, updated, day_open, day_volume in rows
    ])
