"""Polygon.io (now Massive) stocks websocket, trades channel ``T.*``.

Docs: https://massive.com/docs/websocket/stocks/trades (formerly polygon.io/docs/stocks/ws_stocks_t)
Endpoints wss://socket.massive.com/stocks (real time), wss://delayed.massive.com/stocks;
the polygon.io hosts still answer. On connect the server sends
``[{"ev": "status", "status": "connected", ...}]``; we send ``{"action": "auth", "params":
KEY}``, wait for ``auth_success`` (``auth_failed`` stops the connector: retrying a rejected
key only gets it blocked), then ``{"action": "subscribe", "params": "T.AAPL,T.MSFT"}``
(``T.*`` for every ticker). Every frame is a JSON array of events; trades look like
``{"ev": "T", "sym": "MSFT", "x": 4, "i": "12345", "z": 3, "p": 114.125, "s": 100,
"c": [0, 12], "t": 1536036818784, "q": 3681328}``.

Mapping: symbol = ``sym``; ts = ``t`` (SIP timestamp, ms); size = ``s``; trade_id =
"<sym>:<x>:<i>" (trade ids are unique per symbol and exchange ``x``).
"""
from __future__ import annotations

import asyncio
import json
from typing import Any, Iterable

from alphastream.records import Tick
from ingestion.connectors.base import FeedFatalError, MalformedFrame
from ingestion.connectors.normalize import canonical_symbol, epoch_ms_to_us, field, make_tick
from ingestion.connectors.websocket import WebSocketFeed

AUTH_TIMEOUT_SECONDS = 10.0
TRADE_EVENT = "T"


class PolygonFeed(WebSocketFeed):
    source = "polygon"
    default_url = "wss://socket.massive.com/stocks"

    def __init__(self, symbols: list[str], api_key: str, url: str | None = None, **kwargs):
        super().__init__(symbols, url, **kwargs)
        self._api_key = api_key

    def subscribe_message(self) -> dict:
        return {"action": "subscribe", "params": ",".join(f"{TRADE_EVENT}.{s}" for s in self.symbols)}

    async def subscribe(self, ws) -> None:
        await ws.send(json.dumps({"action": "auth", "params": self._api_key}))
        await asyncio.wait_for(self._await_auth(ws), AUTH_TIMEOUT_SECONDS)
        await ws.send(json.dumps(self.subscribe_message()))

    async def _await_auth(self, ws) -> None:
        async for raw in ws:
            try:
                events = json.loads(raw)
            except ValueError as err:
                self.count_malformed(raw, err)
                continue
            for event in events if isinstance(events, list) else [events]:
                status = event.get("status") if isinstance(event, dict) else None
                if status == "auth_success":
                    return
                if status in ("auth_failed", "auth_timeout"):
                    raise FeedFatalError(f"polygon refused the API key: {event.get('message')}")
        raise ConnectionError("polygon closed the connection during authentication")

    def trades(self, message: Any) -> Iterable[Any]:
        if not isinstance(message, list):
            raise MalformedFrame(f"expected a JSON array of events, got {type(message).__name__}")
        trades = []
        for event in message:
            if not isinstance(event, dict):
                raise MalformedFrame(f"event {event!r} is not an object")
            if event.get("ev") == TRADE_EVENT:
                trades.append(event)
            elif event.get("ev") == "status" and event.get("status") in ("auth_failed", "error"):
                raise FeedFatalError(f"polygon: {event.get('message')}")
        return trades

    def to_tick(self, trade: Any) -> Tick:
        symbol = canonical_symbol(field(trade, "sym"))
        return make_tick(symbol=symbol, ts_us=epoch_ms_to_us(field(trade, "t")),
                         price=field(trade, "p"), size=field(trade, "s"),
                         trade_id=f"{symbol}:{field(trade, 'x')}:{field(trade, 'i')}", source=self.source)
