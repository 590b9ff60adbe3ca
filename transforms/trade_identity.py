"""What a trade is, and which of its deliveries counts: one rule for batch and streaming.

A trade is ``(source, symbol, trade_id)``: feeds number trades per symbol, so the same id in two
symbols is two trades. Feeds deliver at least once and sometimes disagree with themselves;
deliveries of one trade resolve to the smallest ``(ts_us, price, size)``, compared
lexicographically, so the kept delivery depends neither on arrival order nor on file order.
Deliveries equal to the kept one are plain duplicates; the others are *conflicting*.
"""
from __future__ import annotations

from typing import Iterable

from alphastream.records import Tick

TRADE_IDENTITY = ("source", "symbol", "trade_id")
# The lexicographic order that picks the kept delivery of a trade: smallest first.
DELIVERY_ORDER = ("ts_us", "price", "size")

Identity = tuple[str, str, str]
Delivery = tuple[int, float, float]


def trade_identity(tick: Tick) -> Identity:
    return tick.source, tick.symbol, tick.trade_id


def delivery(tick: Tick) -> Delivery:
    return tick.ts_us, tick.price, tick.size


def kept_deliveries(ticks: Iterable[Tick]) -> dict[Identity, Tick]:
    """The kept delivery of every trade among ``ticks``, by identity."""
    kept: dict[Identity, Tick] = {}
    for tick in ticks:
        identity = trade_identity(tick)
        best = kept.get(identity)
        if best is None or delivery(tick) < delivery(best):
            kept[identity] = tick
    return kept
