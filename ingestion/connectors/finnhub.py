"""Finnhub websocket trades.

Docs: https://finnhub.io/docs/api/websocket-trades
Endpoint wss://ws.finnhub.io?token=<API key> (the key travels in the URL: never logged,
see ``redact_url``). After connecting we send ``{"type": "subscribe", "symbol": "AAPL"}``
once per symbol. Frames: ``{"type": "trade", "data": [{"s": "AAPL", "p": 129.58,
"t": 1672348887666, "v": 1, "c": ["1", "24", "12"]}, ...]}``; ``{"type": "ping"}`` is a
keepalive and ignored; ``{"type": "error", "msg": ...}`` is logged by the malformed counter.

Mapping: symbol = ``s`` upper-cased, with ':' mapped to '_' (BINANCE:BTCUSDT ->
BINANCE_BTCUSDT, since SYMBOL_PATTERN has no ':'); ts = ``t`` (ms); size = ``v`` (0 for
FX/crypto venues that send price updates instead of trades). Finnhub sends no trade id, so
trade_id = "<symbol>:<t>:<p>:<v>" plus "#n" for the n-th identical entry in one frame: the
same print delivered twice dedups, at the cost of also merging two genuinely identical
trades in the same millisecond that arrive in different frames.
"""
from __future__ import annotations

import json
from typing import Any, Iterable
from urllib.parse import urlencode, urlsplit, urlunsplit

from alphastream.records import Tick
from ingestion.connectors.base import MalformedFrame
from ingestion.connectors.normalize import canonical_symbol, epoch_ms_to_us, field, make_tick
from ingestion.connectors.websocket import WebSocketFeed


class FinnhubFeed(WebSocketFeed):
    source = "finnhub"
    default_url = "wss://ws.finnhub.io"

    def __init__(self, symbols: list[str], api_key: str, url: str | None = None, **kwargs):
        super().__init__(symbols, url, **kwargs)
        self._api_key = api_key

    def connect_url(self) -> str:
        parts = urlsplit(self._url)
        return urlunsplit(parts._replace(query=urlencode({"token": self._api_key})))

    def subscribe_messages(self) -> list[dict]:
        return [{"type": "subscribe", "symbol": symbol} for symbol in self.symbols]

    async def subscribe(self, ws) -> None:
        for message in self.subscribe_messages():
            await ws.send(json.dumps(message))

    def trades(self, message: Any) -> Iterable[Any]:
        kind = field(message, "type")
        if kind == "trade":
            data = field(message, "data")
            if not isinstance(data, list):
                raise MalformedFrame("trade frame 'data' is not a list")
            return _with_occurrence(data)
        if kind == "error":
            raise MalformedFrame(f"finnhub error: {message.get('msg')}")
        return []  # ping

    def to_tick(self, trade: Any) -> Tick:
        entry, occurrence = trade
        symbol = canonical_symbol(field(entry, "s"))
        t, p, v = field(entry, "t"), field(entry, "p"), entry.get("v", 0)
        trade_id = f"{symbol}:{t}:{p}:{v}" + (f"#{occurrence}" if occurrence > 1 else "")
        return make_tick(symbol=symbol, ts_us=epoch_ms_to_us(t), price=p, size=v,
                         trade_id=trade_id, source=self.source)


def _with_occurrence(entries: list) -> list[tuple[Any, int]]:
    """Pair each entry with how many identical entries came before it in the frame (+1)."""
    seen: dict[str, int] = {}
    paired = []
    for entry in entries:
        key = json.dumps(entry, sort_keys=True)
        seen[key] = seen.get(key, 0) + 1
        paired.append((entry, seen[key]))
    return paired
