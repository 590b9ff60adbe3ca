"""WebSocketFeed: the connect / subscribe / read / reconnect loop shared by websocket feeds.

A feed subclass says where to connect (``url``), what to send after every (re)connect
(``subscribe``), how to find the trades in a decoded frame (``trades``) and how to turn one
trade into a Tick (``to_tick``). Control frames (acks, heartbeats, status) yield no trades.
Protocol-level pings are answered by the ``websockets`` library itself.

Reconnects use full-jitter exponential backoff; the backoff resets once a connection has
delivered a frame after subscribing, so a server that accepts and immediately drops us is
retried ever more slowly rather than in a tight loop.
"""
from __future__ import annotations

import abc
import asyncio
import json
import logging
from typing import Any, AsyncIterator, Iterable
from urllib.parse import urlsplit, urlunsplit

from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import InvalidHandshake, InvalidURI, WebSocketException

from alphastream.records import Tick
from ingestion.backoff import Backoff, Sleep
from ingestion.connectors.base import Connector, FeedFatalError, MalformedFrame

log = logging.getLogger(__name__)

OPEN_TIMEOUT_SECONDS = 10.0
PING_INTERVAL_SECONDS = 20.0  # client keepalive pings; most feeds drop idle peers after ~60 s
MAX_FRAME_BYTES = 4 * 1024 * 1024


def redact_url(url: str) -> str:
    """The URL without its query string (which may carry an API token): safe for logs."""
    parts = urlsplit(url)
    return urlunsplit(parts._replace(query="***" if parts.query else ""))


class WebSocketFeed(Connector):
    """Base class of the websocket trade feeds."""

    default_url: str = ""

    def __init__(self, symbols: list[str], url: str | None = None, *, backoff: Backoff | None = None,
                 sleep: Sleep = asyncio.sleep):
        super().__init__()
        if not symbols:
            raise ValueError(f"{self.source}: give at least one symbol (--symbols)")
        self.symbols = list(symbols)
        self._url = url or self.default_url
        self._backoff = backoff or Backoff()
        self._sleep = sleep

    # --- what a feed defines -------------------------------------------------------------
    def connect_url(self) -> str:
        """The URL to open (feeds that authenticate in the URL override this)."""
        return self._url

    @abc.abstractmethod
    async def subscribe(self, ws: ClientConnection) -> None:
        """Send the subscribe (and auth) messages on a fresh connection."""

    @abc.abstractmethod
    def trades(self, message: Any) -> Iterable[Any]:
        """The trade entries in one decoded frame; nothing for control frames. May raise
        MalformedFrame (bad envelope) or FeedFatalError (e.g. the feed rejected the subscribe)."""

    @abc.abstractmethod
    def to_tick(self, trade: Any) -> Tick:
        """One trade entry -> Tick, or MalformedFrame."""

    def trade_number(self, trade: Any) -> tuple[str, int] | None:
        """(symbol, sequential trade number) for feeds that number each symbol's trades; None for
        feeds that do not. May raise MalformedFrame."""
        return None

    # --- shared machinery ----------------------------------------------------------------
    def parse_frame(self, raw: str | bytes) -> list[Tick]:
        """All ticks in one raw frame; unreadable frames and trades are counted, not raised."""
        self.stats.frames += 1
        self.stats.record_message()
        try:
            message = json.loads(raw)
            entries = list(self.trades(message))
        except (ValueError, MalformedFrame) as err:
            self.count_malformed(raw, err)
            return []
        ticks = []
        for entry in entries:
            self._observe_sequence(entry)
            try:
                ticks.append(self.to_tick(entry))
            except MalformedFrame as err:
                self.count_malformed(entry, err)
        self.stats.ticks += len(ticks)
        return ticks

    def _observe_sequence(self, entry: Any) -> None:
        """Track the trade numbering, also of trades whose other fields are unreadable: they
        arrived, so skipping them is not a gap."""
        try:
            numbered = self.trade_number(entry)
        except MalformedFrame:
            return
        if numbered is None:
            return
        symbol, number = numbered
        skipped = self.stats.sequence.observe(symbol, number)
        if skipped:
            log.warning("%s: %s trade numbers jumped to %d: %d trades missing", self.source, symbol, number, skipped)

    async def stream(self) -> AsyncIterator[Tick]:
        where = redact_url(self.connect_url())
        while True:
            try:
                async with connect(self.connect_url(), open_timeout=OPEN_TIMEOUT_SECONDS,
                                   ping_interval=PING_INTERVAL_SECONDS, max_size=MAX_FRAME_BYTES) as ws:
                    self.stats.connects += 1
                    await self.subscribe(ws)
                    log.info("%s: connected to %s, subscribed to %s", self.source, where, ",".join(self.symbols))
                    delivered = False
                    async for raw in ws:
                        if not delivered:
                            delivered = True
                            self._backoff.reset()
                        for tick in self.parse_frame(raw):
                            yield tick
                    log.warning("%s: server closed the connection (code %s)", self.source, ws.close_code)
            except FeedFatalError:
                raise
            except InvalidURI as err:
                raise FeedFatalError(f"{self.source}: bad feed URL {where}: {err}") from None
            except (OSError, asyncio.TimeoutError, InvalidHandshake, WebSocketException) as err:
                log.warning("%s: connection to %s failed or dropped: %s: %s",
                            self.source, where, type(err).__name__, err)
            self.stats.reconnects += 1
            delay = self._backoff.next_delay()
            log.info("%s: reconnecting in %.2f s (attempt %d)", self.source, delay, self._backoff.attempt)
            await self._sleep(delay)
