"""Websocket connectors against a real ``websockets`` server on 127.0.0.1 that plays recorded
frames: the client's real connect / subscribe / parse / reconnect code runs end to end.

The server checks what the client sends (auth, subscribe) on every connection, then replays
the feed's recorded frames (tests/data/feeds). In the drop tests it aborts the TCP connection
part-way; the client must reconnect, subscribe again and resume with the remaining frames.
"""
from __future__ import annotations

import asyncio
import json

import pytest
from websockets.asyncio.server import serve

from alphastream.local_services import free_port
from ingestion.backoff import Backoff
from ingestion.connectors.base import FeedFatalError
from tests.fixtures.connectors import take_ticks
from tests.fixtures.recorded_feeds import CASES, frames

FAST_BACKOFF = dict(base=0.02, cap=0.1)
TIMEOUT = 10.0
POLYGON_KEY = "test-key-not-real"


class FeedServer:
    """Plays one feed. ``sessions[i]`` holds what the client sent on connection i."""

    def __init__(self, feed: str, recorded: list[str], drop_after: int | None = None, auth_ok: bool = True):
        self.feed, self.recorded, self.drop_after, self.auth_ok = feed, recorded, drop_after, auth_ok
        self.sessions: list[list] = []
        self.paths: list[str] = []
        self.position = 0  # next recorded frame to send: a new connection resumes here

    async def _handshake(self, ws, received: list) -> None:
        if self.feed == "polygon":  # https://massive.com/docs/websocket/quickstart: connected, auth, subscribe
            await ws.send(json.dumps([{"ev": "status", "status": "connected", "message": "Connected Successfully"}]))
            received.append(json.loads(await ws.recv()))
            if not self.auth_ok:
                await ws.send(json.dumps([{"ev": "status", "status": "auth_failed",
                                           "message": "authentication failed"}]))
                await ws.wait_closed()
                return
            await ws.send(json.dumps([{"ev": "status", "status": "auth_success", "message": "authenticated"}]))
        expected_messages = 3 if self.feed == "finnhub" else 1  # finnhub: one subscribe per symbol
        for _ in range(expected_messages):
            received.append(json.loads(await ws.recv()))

    async def handler(self, ws) -> None:
        received: list = []
        self.sessions.append(received)
        self.paths.append(ws.request.path)
        await self._handshake(ws, received)
        first_connection = len(self.sessions) == 1
        while self.position < len(self.recorded):
            if first_connection and self.drop_after is not None and self.position == self.drop_after:
                ws.transport.abort()  # a network drop: no close frame
                return
            await ws.send(self.recorded[self.position])
            self.position += 1
        await ws.wait_closed()


def _connector(feed: str, port: int):
    factory = CASES[feed][0]
    connector = factory()
    connector._url = f"ws://127.0.0.1:{port}/"
    connector._backoff = Backoff(**FAST_BACKOFF)
    return connector


def _expected_client_messages(feed: str, connector) -> list:
    if feed == "polygon":
        return [{"action": "auth", "params": POLYGON_KEY}, connector.subscribe_message()]
    if feed == "finnhub":
        return connector.subscribe_messages()
    return [connector.subscribe_message()]


async def _play(feed: str, drop_after: int | None = None):
    _, file_name, expected, _ = CASES[feed]
    server = FeedServer(feed, frames(file_name), drop_after=drop_after)
    async with serve(server.handler, "127.0.0.1", 0) as ws_server:
        port = ws_server.sockets[0].getsockname()[1]
        connector = _connector(feed, port)
        ticks = await asyncio.wait_for(take_ticks(connector, len(expected)), TIMEOUT)
    return server, connector, ticks, expected


@pytest.mark.parametrize("feed", sorted(CASES))
def test_feed_connects_subscribes_and_streams_the_recorded_trades(feed):
    server, connector, ticks, expected = asyncio.run(_play(feed))
    assert ticks == expected
    assert server.sessions == [_expected_client_messages(feed, connector)]
    assert (connector.stats.connects, connector.stats.reconnects) == (1, 0)
    assert connector.stats.malformed == CASES[feed][3]


@pytest.mark.parametrize("feed", sorted(CASES))
def test_feed_reconnects_after_a_drop_and_resumes(feed):
    drop_after = 3  # frames delivered before the server aborts the first connection
    server, connector, ticks, expected = asyncio.run(_play(feed, drop_after=drop_after))
    assert ticks == expected, "every trade before and after the drop arrives once, in order"
    assert len(server.sessions) == 2
    assert server.sessions[1] == _expected_client_messages(feed, connector), "subscribe again after reconnect"
    assert (connector.stats.connects, connector.stats.reconnects) == (2, 1)


def test_finnhub_sends_the_token_as_a_query_parameter():
    server, _, _, _ = asyncio.run(_play("finnhub"))
    assert server.paths == ["/?token=test-key-not-real"]


def test_connector_retries_until_the_server_comes_up():
    async def scenario():
        port = free_port()
        _, file_name, expected, _ = CASES["kraken"]
        connector = _connector("kraken", port)
        collecting = asyncio.create_task(take_ticks(connector, len(expected)))
        await asyncio.sleep(0.3)  # refused connections meanwhile
        server = FeedServer("kraken", frames(file_name))
        async with serve(server.handler, "127.0.0.1", port):
            ticks = await asyncio.wait_for(collecting, TIMEOUT)
        return connector, ticks, expected

    connector, ticks, expected = asyncio.run(scenario())
    assert ticks == expected
    assert connector.stats.reconnects >= 1 and connector.stats.connects == 1


def test_polygon_rejected_key_stops_without_retrying():
    async def scenario():
        server = FeedServer("polygon", frames("polygon_trades.jsonl"), auth_ok=False)
        async with serve(server.handler, "127.0.0.1", 0) as ws_server:
            connector = _connector("polygon", ws_server.sockets[0].getsockname()[1])
            with pytest.raises(FeedFatalError, match="refused the API key"):
                await asyncio.wait_for(take_ticks(connector, 1), TIMEOUT)
        return server, connector

    server, connector = asyncio.run(scenario())
    assert len(server.sessions) == 1 and connector.stats.reconnects == 0
