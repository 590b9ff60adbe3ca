"""Kraken spot websocket v2, ``trade`` channel.

Docs: https://docs.kraken.com/exchange/api-reference/spot-websocket-v2/trade
Endpoint wss://ws.kraken.com/v2. After connecting we send
``{"method": "subscribe", "params": {"channel": "trade", "symbol": [...], "snapshot": true}}``.
The snapshot (recent trades) on every (re)connect back-fills trades missed while we were
disconnected; repeats are removed downstream by the (source, trade_id) dedup. Frames:
``{"channel": "trade", "type": "snapshot"|"update", "data": [trade, ...]}``; heartbeats
(``{"channel": "heartbeat"}``), ``status`` and the subscribe ack carry no trades. A subscribe
ack with ``"success": false`` (e.g. unknown pair) stops the connector.

Mapping: symbol = the v2 pair, e.g. BTC/USD (v2 uses BTC where v1 used XBT; an XBT/USD typed
on the command line is sent as given); ts = ``timestamp`` (RFC 3339, microseconds);
size = ``qty``; trade_id = "<pair>:<trade_id>" (Kraken numbers trades per book).
"""
from __future__ import annotations

import json
from typing import Any, Iterable

from alphastream.records import Tick
from ingestion.connectors.base import FeedFatalError, MalformedFrame
from ingestion.connectors.normalize import canonical_symbol, field, make_tick, rfc3339_to_us, whole_number
from ingestion.connectors.websocket import WebSocketFeed


class KrakenFeed(WebSocketFeed):
    source = "kraken"
    default_url = "wss://ws.kraken.com/v2"

    def subscribe_message(self) -> dict:
        return {"method": "subscribe", "params": {"channel": "trade", "symbol": self.symbols, "snapshot": True}}

    async def subscribe(self, ws) -> None:
        await ws.send(json.dumps(self.subscribe_message()))

    def trades(self, message: Any) -> Iterable[Any]:
        if not isinstance(message, dict):
            raise MalformedFrame(f"expected a JSON object, got {type(message).__name__}")
        if message.get("method") == "subscribe" and message.get("success") is False:
            raise FeedFatalError(f"kraken rejected the subscription: {message.get('error')}")
        if message.get("channel") != "trade":
            return []  # heartbeat, status, acks
        data = field(message, "data")
        if not isinstance(data, list):
            raise MalformedFrame("trade frame 'data' is not a list")
        return data

    def to_tick(self, trade: Any) -> Tick:
        symbol = canonical_symbol(field(trade, "symbol"))
        return make_tick(symbol=symbol, ts_us=rfc3339_to_us(field(trade, "timestamp")),
                         price=field(trade, "price"), size=field(trade, "qty"),
                         trade_id=f"{symbol}:{field(trade, 'trade_id')}", source=self.source)

    def trade_number(self, trade: Any) -> tuple[str, int]:
        return canonical_symbol(field(trade, "symbol")), whole_number(field(trade, "trade_id"), "trade_id")
