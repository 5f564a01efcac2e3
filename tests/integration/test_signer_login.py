"""The bearer_login signer through the prober's one request path, against a loopback server; and the
plug-ins load without the HTTP client (a fresh interpreter)."""

from __future__ import annotations

import asyncio
import gzip
import json
import socket
import subprocess
import sys
from collections.abc import AsyncIterator

import pytest

from exporter.clock import SystemClock
from exporter.engine import new_session
from exporter.probe import Prober

from .test_shared_login import shared

TOKEN = "tok-" + "k" * 40


class LoginServer:
    """A bare HTTP/1.1 server that writes its login answer in many small TCP segments, so a reader
    that takes the first chunk for the whole body sees half a JSON document."""

    def __init__(self) -> None:
        self.mode = "segmented"  # or "gzip", "huge", "refuse", "drop"
        self.seen: list[tuple[str, str, dict[str, str], bytes]] = []
        self.pieces = 0

    async def handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        writer.get_extra_info("socket").setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        try:
            while True:
                head = (await reader.readuntil(b"\r\n\r\n")).decode("latin-1").split("\r\n")
                method, path, _ = head[0].split(" ")
                headers = {k.strip().lower(): v.strip() for k, v in (line.split(":", 1) for line in head[1:] if line)}
                body = await reader.readexactly(int(headers.get("content-length", "0")))
                self.seen.append((method, path, headers, body))
                if path != "/login":
                    ok = headers.get("authorization") == f"Bearer {TOKEN}"
                    await self._answer(writer, 200 if ok else 401, b"{}")
                elif self.mode == "drop":
                    return  # the connection closes with no answer at all
                elif self.mode == "refuse":
                    await self._answer(writer, 401, b'{"message": "bad credentials"}')
                elif self.mode == "huge":
                    await self._answer(writer, 200, json.dumps({"padding": "p" * 100_000, "accessToken": TOKEN})
                                       .encode())
                elif self.mode == "gzip":
                    payload = gzip.compress(json.dumps({"padding": "p" * 300, "accessToken": TOKEN}).encode())
                    await self._answer(writer, 200, payload, piece=5, gzipped=True)
                else:
                    payload = json.dumps({"padding": "p" * 300, "accessToken": TOKEN}).encode()
                    await self._answer(writer, 200, payload, piece=5)
        except (asyncio.IncompleteReadError, ConnectionError):
            pass
        finally:
            writer.close()

    async def _answer(self, writer: asyncio.StreamWriter, status: int, body: bytes, piece: int = 0,
                      gzipped: bool = False) -> None:
        encoding = "Content-Encoding: gzip\r\n" if gzipped else ""
        writer.write(f"HTTP/1.1 {status} X\r\nContent-Type: application/json\r\n{encoding}"
                     f"Content-Length: {len(body)}\r\n\r\n".encode())
        for start in range(0, len(body), piece or len(body)):
            writer.write(body[start:start + (piece or len(body))])
            await writer.drain()
            if piece:
                self.pieces += 1
                await asyncio.sleep(0.001)  # let each piece leave as a segment of its own


@pytest.fixture
async def login_server() -> AsyncIterator[tuple[LoginServer, str]]:
    server = LoginServer()
    listener = await asyncio.start_server(server.handle, "127.0.0.1", 0)
    port = listener.sockets[0].getsockname()[1]
    try:
        yield server, f"http://127.0.0.1:{port}"
    finally:
        listener.close()
        await listener.wait_closed()


async def test_a_login_answer_in_many_small_segments_is_read_whole(login_server: tuple[LoginServer, str]) -> None:
    server, url = login_server
    async with new_session() as session:
        result = await Prober(session, SystemClock()).probe(shared(url, 1).targets[0])
    assert server.pieces > 50
    assert (result.outcome.cls, result.outcome.code, result.requests) == ("ok", "200", 2)
    login, check = server.seen
    assert (login[0], login[1], json.loads(login[3])) == ("POST", "/login", {"username": "monitor",
                                                                             "password": "pw"})
    assert check[2]["authorization"] == f"Bearer {TOKEN}"


async def test_a_refused_login_is_auth_and_a_dropped_one_goes_through_the_failure_map(
        login_server: tuple[LoginServer, str]) -> None:
    server, url = login_server
    target = shared(url, 1).targets[0]
    async with new_session() as session:
        prober = Prober(session, SystemClock())
        server.mode = "refuse"
        refused = await prober.probe(target)
        server.mode = "drop"
        dropped = await prober.probe(target)
    assert (refused.outcome.cls, refused.outcome.code, refused.outcome.http_status) == ("auth", "login_401", 401)
    assert refused.request_line == "GET (not sent)"
    assert (dropped.outcome.cls, dropped.outcome.code) == ("network_error", "reset")
    # only logins were sent, never the check (curl sends a request once more when the reused connection
    # it went out on closes before any byte of the answer: the dropped login may be seen twice)
    assert {p for _, p, _, _ in server.seen} == {"/login"}


def test_plugins_and_catalogs_load_without_the_http_client() -> None:
    """Catalog validation and the plug-ins are pure: only the prober brings the HTTP client in."""
    code = ("import sys, exporter.catalog, exporter.signers, exporter.classify; "
            "print(sorted(m for m in sys.modules if m.split('.')[0] in ('aiohttp', 'pycurl')))")
    run = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60, check=True)
    assert run.stdout.strip() == "[]"


async def test_a_login_answer_is_inflated_and_capped_like_any_answer(login_server: tuple[LoginServer, str]) -> None:
    server, url = login_server
    target = shared(url, 1).targets[0]
    async with new_session() as session:
        server.mode = "gzip"
        inflated = await Prober(session, SystemClock()).probe(target)
        server.mode = "huge"
        capped = await Prober(session, SystemClock(), max_body=4096).probe(target)
    assert (inflated.outcome.cls, inflated.outcome.code) == ("ok", "200")
    assert (capped.outcome.cls, capped.outcome.code) == ("server_error", "login_body")
    assert capped.outcome.message == "token endpoint answer is larger than the body cap"
