"""Binance spot websocket, ``<symbol>@trade`` streams.

Docs: https://developers.binance.com/docs/binance-spot-api-docs/web-socket-streams
(Trade Streams; Live subscribing). Endpoint wss://stream.binance.com:9443/ws. After
connecting we send ``{"method": "SUBSCRIBE", "params": ["btcusdt@trade", ...], "id": 1}``
(stream names are lower case); the server acks with ``{"result": null, "id": 1}``. Trade
payloads are ``{"e": "trade", "E": event_ms, "s": "BNBBTC", "t": id, "p": "0.001",
"q": "100", "T": trade_ms, "m": true, "M": true}``; combined-stream frames wrap them as
``{"stream": ..., "data": {...}}``. Binance's keepalive is a protocol ping frame, answered
by the websockets library.

Mapping: symbol = ``s`` (e.g. BTCUSDT, upper case as Binance sends it); ts = ``T`` (trade
time, ms); size = ``q``; trade_id = "<symbol>:<t>" (ids are per symbol).
"""
from __future__ import annotations

import json
from typing import Any, Iterable

from alphastream.records import Tick
from ingestion.connectors.base import FeedFatalError, MalformedFrame
from ingestion.connectors.normalize import canonical_symbol, epoch_ms_to_us, field, make_tick, whole_number
from ingestion.connectors.websocket import WebSocketFeed

SUBSCRIBE_REQUEST_ID = 1


class BinanceFeed(WebSocketFeed):
    source = "binance"
    default_url = "wss://stream.binance.com:9443/ws"

    def subscribe_message(self) -> dict:
        streams = [f"{symbol.lower()}@trade" for symbol in self.symbols]
        return {"method": "SUBSCRIBE", "params": streams, "id": SUBSCRIBE_REQUEST_ID}

    async def subscribe(self, ws) -> None:
        await ws.send(json.dumps(self.subscribe_message()))

    def trades(self, message: Any) -> Iterable[Any]:
        if not isinstance(message, dict):
            raise MalformedFrame(f"expected a JSON object, got {type(message).__name__}")
        if "stream" in message and "data" in message:
            message = message["data"]
        if message.get("e") == "trade":
            return [message]
        if "error" in message:
            raise FeedFatalError(f"binance rejected the request: {message['error']}")
        return []  # subscribe ack {"result": null, "id": 1}, other events

    def to_tick(self, trade: Any) -> Tick:
        symbol = canonical_symbol(field(trade, "s"))
        return make_tick(symbol=symbol, ts_us=epoch_ms_to_us(field(trade, "T")),
                         price=field(trade, "p"), size=field(trade, "q"),
                         trade_id=f"{symbol}:{field(trade, 't')}", source=self.source)

    def trade_number(self, trade: Any) -> tuple[str, int]:
        return canonical_symbol(field(trade, "s")), whole_number(field(trade, "t"), "t")
