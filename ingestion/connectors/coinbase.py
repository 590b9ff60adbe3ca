"""Coinbase Exchange websocket feed, ``matches`` channel.

Docs: https://docs.cdp.coinbase.com/exchange/websocket-feed/channels (Matches / Heartbeat)
Endpoint wss://ws-feed.exchange.coinbase.com. After connecting we send
``{"type": "subscribe", "product_ids": [...], "channels": ["matches", "heartbeat"]}``; the
feed answers ``subscriptions``, then sends one ``last_match`` per product and a ``match`` per
trade; ``heartbeat`` messages (one a second) are ignored.

Mapping: symbol = product_id (e.g. BTC-USD, already canonical); ts = ``time`` (RFC 3339,
microseconds); price/size from decimal strings; trade_id = "<product_id>:<trade_id>" because
Coinbase numbers trades per product and the pipeline deduplicates on (source, trade_id).
"""
from __future__ import annotations

import json
from typing import Any, Iterable

from alphastream.records import Tick
from ingestion.connectors.base import FeedFatalError
from ingestion.connectors.normalize import canonical_symbol, field, make_tick, rfc3339_to_us, whole_number
from ingestion.connectors.websocket import WebSocketFeed

TRADE_TYPES = ("match", "last_match")


class CoinbaseFeed(WebSocketFeed):
    source = "coinbase"
    default_url = "wss://ws-feed.exchange.coinbase.com"

    def subscribe_message(self) -> dict:
        return {"type": "subscribe", "product_ids": self.symbols, "channels": ["matches", "heartbeat"]}

    async def subscribe(self, ws) -> None:
        await ws.send(json.dumps(self.subscribe_message()))

    def trades(self, message: Any) -> Iterable[Any]:
        kind = field(message, "type")
        if kind in TRADE_TYPES:
            return [message]
        if kind == "error":
            raise FeedFatalError(f"coinbase rejected the request: {message.get('message')} "
                                 f"({message.get('reason', 'no reason given')})")
        return []  # subscriptions, heartbeat, and channels we did not ask for

    def to_tick(self, trade: Any) -> Tick:
        symbol = canonical_symbol(field(trade, "product_id"))
        return make_tick(symbol=symbol, ts_us=rfc3339_to_us(field(trade, "time")),
                         price=field(trade, "price"), size=field(trade, "size"),
                         trade_id=f"{symbol}:{field(trade, 'trade_id')}", source=self.source)

    def trade_number(self, trade: Any) -> tuple[str, int]:
        return canonical_symbol(field(trade, "product_id")), whole_number(field(trade, "trade_id"), "trade_id")
