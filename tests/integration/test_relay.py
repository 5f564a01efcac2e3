"""The relay of the test helpers really cuts answers small (else running the vendor suite through it
would prove nothing), and the prober's one request path still reads them whole."""

from __future__ import annotations

import contextlib
import time
from collections.abc import AsyncIterator

import aiohttp
from aiohttp import web
from yarl import URL

from exporter.clock import FakeClock
from exporter.engine import new_session
from exporter.model import HttpRequest
from exporter.probe import Prober
from tests.conftest import serve
from tests.relay import Relay

BODY = b'{"accessToken": "' + b"e" * 3000 + b'", "refreshToken": "r"}'


async def _answer(request: web.Request) -> web.Response:
    return web.Response(body=BODY, content_type="application/json")


@contextlib.asynccontextmanager
async def _relayed() -> AsyncIterator[Relay]:
    """A loopback server answering BODY, behind a relay (closed afterwards)."""
    async with serve(_answer) as url:
        target = URL(url)
        assert target.host is not None and target.port is not None
        relay = await Relay(target.host, target.port).start()
        try:
            yield relay
        finally:
            await relay.close()


async def test_a_single_read_through_the_relay_gets_only_a_piece_of_the_answer() -> None:
    async with _relayed() as relay:
        async with aiohttp.ClientSession() as session, session.get(relay.url + "/") as resp:
            first = await resp.content.readany()
            rest = await resp.read()
        assert 0 < len(first) < len(BODY)  # one read() is not the answer
        assert first + rest == BODY
        assert relay.largest <= 7 and relay.pieces > len(BODY) // 7


async def test_the_prober_reads_a_long_answer_in_tiny_pieces_whole() -> None:
    async with _relayed() as relay:
        async with new_session() as session:
            prober = Prober(session, FakeClock())
            answer = await prober._send(HttpRequest("POST", relay.url + "/auth/login"), time.monotonic() + 10)
        assert (answer.status, answer.body, answer.truncated) == (200, BODY, False)
