"""The exporter's own HTTP/1.1 client against raw loopback servers that do what well-behaved ones
refuse to: answers cut at every byte, garbage status lines, interim answers, bodies until close, a
pooled connection closed by the server, a proxy that refuses. Everything goes through the prober's
one request path (``Prober._send``) and its one failure map."""

from __future__ import annotations

import asyncio
import contextlib
import gzip
import ssl
import time
from collections.abc import AsyncIterator, Awaitable, Callable

import pytest
import trustme

from exporter import http1
from exporter.clock import FakeClock
from exporter.engine import new_session
from exporter.model import Answer, HttpRequest
from exporter.probe import Prober, _failure
from exporter.simulators.faults import LoopbackResolver

Handler = Callable[[asyncio.StreamReader, asyncio.StreamWriter, "Raw"], Awaitable[None]]
OK = b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: 11\r\n\r\n{\"code\":20}"


class Raw:
    """A loopback server whose handler gets each connection raw; counts connections and requests."""

    def __init__(self, handler: Handler) -> None:
        self.handler = handler
        self.connections = 0
        self.heads: list[bytes] = []
        self.server: asyncio.Server | None = None
        self.port = 0
        self._tasks: set[asyncio.Task[None]] = set()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    async def read_head(self, reader: asyncio.StreamReader) -> bytes:
        head = await reader.readuntil(b"\r\n\r\n")
        self.heads.append(head)
        length = next((int(line.split(b":", 1)[1]) for line in head.split(b"\r\n")
                       if line.lower().startswith(b"content-length:")), 0)
        if length:
            await reader.readexactly(length)
        return head

    async def _accept(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.connections += 1
        task = asyncio.current_task()
        assert task is not None
        self._tasks.add(task)
        try:
            with contextlib.suppress(OSError, asyncio.IncompleteReadError, asyncio.LimitOverrunError):
                await self.handler(reader, writer, self)
        finally:
            writer.close()
            self._tasks.discard(task)


@contextlib.asynccontextmanager
async def raw(handler: Handler, ctx: ssl.SSLContext | None = None) -> AsyncIterator[Raw]:
    """A loopback server that runs ``handler`` on each connection (over TLS with ``ctx``)."""
    srv = Raw(handler)
    srv.server = await asyncio.start_server(srv._accept, "127.0.0.1", 0, ssl=ctx)
    srv.port = srv.server.sockets[0].getsockname()[1]
    try:
        yield srv
    finally:
        srv.server.close()
        for task in list(srv._tasks):
            task.cancel()
        await asyncio.gather(*srv._tasks, return_exceptions=True)


def answering(*answers: bytes, close: bool = False) -> Handler:
    """Each request on a connection gets the next answer; ``close``: the connection closes after each."""
    async def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, srv: Raw) -> None:
        for answer in answers:
            await srv.read_head(reader)
            writer.write(answer)
            await writer.drain()
            if close:
                return
        await reader.read()  # keep the connection until the client closes it
    return handler


async def send(prober: Prober, url: str, method: str = "GET", timeout: float = 5.0) -> Answer | str:
    """The answer, or the failure code of the one map."""
    try:
        return await prober._send(HttpRequest(method, url), time.monotonic() + timeout)
    except Exception as exc:  # noqa: BLE001 - the code is what the test looks at
        return _failure(exc).code


@pytest.fixture
async def prober() -> AsyncIterator[Prober]:
    async with new_session(resolver=LoopbackResolver()) as session:
        yield Prober(session, FakeClock(), max_body=4096)


async def test_an_answer_cut_at_any_byte_is_a_reset_and_a_whole_one_is_read(prober: Prober) -> None:
    for cut in range(len(OK) + 1):
        async def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, srv: Raw,
                          cut: int = cut) -> None:
            await srv.read_head(reader)
            writer.write(OK[:cut])
            await writer.drain()

        async with raw(handler) as srv:
            got = await send(prober, srv.url + "/x")
        if cut == len(OK):
            assert isinstance(got, Answer) and (got.status, got.body) == (200, b'{"code":20}'), cut
        else:
            assert got == "reset", (cut, got)


GARBAGE = [b"garbage\r\n\r\n", b"HTTP/1.1 abc OK\r\n\r\n", b"SSH-2.0-OpenSSH_9.2\r\n",
                                    b"HTTP/1.1 200 OK\r\nBad Header\r\n\r\n",
                                    b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\nContent-Length: 7\r\n\r\nhello",
                                    b"HTTP/1.1 200 OK\r\nX: " + b"a" * 70000 + b"\r\n\r\n",
                                    b"HTTP/1.1 200 OK\r\n" + b"X-Many: v\r\n" * 8000 + b"\r\n",
                                    b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\n"
                                    b"Connection: upgrade\r\n\r\n"]


@pytest.mark.parametrize("answer", GARBAGE, ids=["garbage", "status", "ssh", "no-colon", "two-lengths", "long-header",
                                                 "many-headers", "upgrade"])
async def test_garbage_and_oversized_headers_are_protocol_errors(prober: Prober, answer: bytes) -> None:
    async with raw(answering(answer)) as srv:
        assert await send(prober, srv.url + "/x") == "protocol"


async def test_garbage_after_a_whole_answer_keeps_the_answer_and_drops_the_connection(prober: Prober) -> None:
    async with raw(answering(OK + b"\x00\x01 not http\r\n\r\n", OK)) as srv:
        for _ in range(2):
            got = await send(prober, srv.url + "/x")
            assert isinstance(got, Answer) and got.body == b'{"code":20}'
    assert srv.connections == 2


async def test_headers_that_never_end_are_a_protocol_error_not_a_memory_hog(prober: Prober) -> None:
    async def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, srv: Raw) -> None:
        await srv.read_head(reader)
        writer.write(b"HTTP/1.1 200 OK\r\n")
        for _ in range(2000):
            writer.write(b"X-Pad: " + b"p" * 100 + b"\r\n")
            await writer.drain()

    async with raw(handler) as srv:
        assert await send(prober, srv.url + "/x") == "protocol"


async def test_interim_answers_are_skipped(prober: Prober) -> None:
    interim = b"HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 103 Early Hints\r\nLink: </a>; rel=preload\r\n\r\n"
    async with raw(answering(interim + OK)) as srv:
        got = await send(prober, srv.url + "/x")
    assert isinstance(got, Answer) and (got.status, got.body) == (200, b'{"code":20}')
    assert "link" not in got.headers  # the interim answer's headers are not the answer's


async def test_an_http10_answer_without_length_ends_at_close(prober: Prober) -> None:
    async with raw(answering(b"HTTP/1.0 200 OK\r\nContent-Type: text/plain\r\n\r\nuntil the end", close=True)) as srv:
        got = await send(prober, srv.url + "/x")
        assert isinstance(got, Answer) and (got.status, got.body, got.truncated) == (200, b"until the end", False)
        got = await send(prober, srv.url + "/x")  # never pooled: a new connection
        assert isinstance(got, Answer) and srv.connections == 2


async def test_chunked_and_gzip_bodies_in_tiny_segments_are_read_whole(prober: Prober) -> None:
    body = gzip.compress(b'{"code": 20, "pad": "' + b"x" * 1000 + b'"}')
    chunked = b"".join(b"%x\r\n%s\r\n" % (len(body[i:i + 100]), body[i:i + 100]) for i in range(0, len(body), 100))
    answer = (b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\nContent-Encoding: gzip\r\n\r\n"
              + chunked + b"0\r\n\r\n")

    async def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, srv: Raw) -> None:
        await srv.read_head(reader)
        for i in range(len(answer)):
            writer.write(answer[i:i + 1])
            await writer.drain()
        await reader.read()

    async with raw(handler) as srv:
        got = await send(prober, srv.url + "/x")
    assert isinstance(got, Answer) and got.body == gzip.decompress(body) and not got.truncated


async def test_a_pooled_connection_the_server_closed_is_not_a_failure(prober: Prober) -> None:
    async with raw(answering(OK, close=True)) as srv:  # the server closes right after each answer
        # (no Connection: close: the client cannot know until the FIN arrives)
        for _ in range(3):
            got = await send(prober, srv.url + "/x")
            assert isinstance(got, Answer) and got.status == 200
            await asyncio.sleep(0.01)  # the FIN arrives while the connection idles in the pool
    assert srv.connections == 3


async def test_a_reused_connection_dropped_before_the_answer_retries_a_get_once_never_a_post(
        prober: Prober) -> None:
    """The race a pool cannot see: the server takes the next request on a kept connection and closes
    without a byte. A GET is sent again on a new connection; a POST (a login) is never sent twice."""
    async def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, srv: Raw) -> None:
        await srv.read_head(reader)
        writer.write(OK)
        await writer.drain()
        if srv.connections % 2:  # every other connection dies on its second request
            await srv.read_head(reader)
            return
        await reader.read()

    async with raw(handler) as srv:
        assert isinstance(await send(prober, srv.url + "/x"), Answer)
        got = await send(prober, srv.url + "/x")
        assert isinstance(got, Answer) and got.status == 200 and srv.connections == 2
    async with raw(handler) as srv:
        assert isinstance(await send(prober, srv.url + "/x", "POST"), Answer)
        assert await send(prober, srv.url + "/x", "POST") == "reset"
        assert len(srv.heads) == 2 and srv.connections == 1


async def test_keepalive_reuses_one_connection_and_head_answers_have_no_body(prober: Prober) -> None:
    head = b"HTTP/1.1 200 OK\r\nContent-Length: 5000\r\n\r\n"
    async with raw(answering(OK, head, OK)) as srv:
        first = await send(prober, srv.url + "/x")
        second = await send(prober, srv.url + "/x", "HEAD")
        third = await send(prober, srv.url + "/x")
    assert isinstance(first, Answer) and isinstance(second, Answer) and isinstance(third, Answer)
    assert (second.status, second.body) == (200, b"") and third.body == b'{"code":20}'
    assert srv.connections == 1


async def test_keepalive_false_is_one_connection_per_request_closed_after_it() -> None:
    async with raw(answering(OK, OK)) as srv, new_session(keepalive=False) as session:
        prober = Prober(session, FakeClock())
        for _ in range(2):
            assert isinstance(await send(prober, srv.url + "/x"), Answer)
    assert srv.connections == 2
    assert all(b"\r\nConnection: close\r\n" in h for h in srv.heads)


async def test_an_idle_connection_past_its_time_is_not_reused(prober: Prober, monkeypatch: pytest.MonkeyPatch) -> None:
    async with raw(answering(OK, OK)) as srv:
        assert isinstance(await send(prober, srv.url + "/x"), Answer)
        monkeypatch.setattr(http1, "IDLE_TIMEOUT", 0.0)
        assert isinstance(await send(prober, srv.url + "/x"), Answer)
    assert srv.connections == 2


async def test_a_body_past_the_cap_drops_the_connection_instead_of_draining(prober: Prober) -> None:
    big = b"HTTP/1.1 200 OK\r\nContent-Length: 10000000\r\n\r\n" + b"x" * 10_000_000
    async with raw(answering(big, OK)) as srv:
        got = await send(prober, srv.url + "/x")
        assert isinstance(got, Answer) and got.truncated and len(got.body) == 4096
        assert isinstance(await send(prober, srv.url + "/x"), Answer)
    assert srv.connections == 2  # the cut connection was not put back


async def test_the_pool_limit_holds_and_waiting_counts_against_the_deadline() -> None:
    busy = 0
    most = 0

    async def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, srv: Raw) -> None:
        nonlocal busy, most
        while True:
            await srv.read_head(reader)
            busy += 1
            most = max(most, busy)
            await asyncio.sleep(0.05)
            busy -= 1
            writer.write(OK)
            await writer.drain()

    async with raw(handler) as srv, new_session(limit=2) as session:
        prober = Prober(session, FakeClock())
        got = await asyncio.gather(*(send(prober, srv.url + "/x") for _ in range(6)))
        assert all(isinstance(g, Answer) for g in got)
        assert most == 2 and srv.connections == 2
        slow = await asyncio.gather(*(send(prober, srv.url + "/x", timeout=0.08) for _ in range(6)))
        assert "timeout" in slow  # the last ones never got a connection in time


async def test_dns_goes_through_the_resolver_and_ip_literals_skip_it() -> None:
    asked: list[str] = []

    class Recording(LoopbackResolver):
        async def resolve(self, host: str, port: int = 0, family: object = None) -> list:  # type: ignore[override, type-arg]
            asked.append(host)
            return await super().resolve(host, port)

    async with raw(answering(OK, OK, OK)) as srv, new_session(resolver=Recording()) as session:
        prober = Prober(session, FakeClock())
        assert isinstance(await send(prober, f"http://localhost:{srv.port}/x"), Answer)
        assert isinstance(await send(prober, f"http://127.0.0.1:{srv.port}/x"), Answer)
        assert await send(prober, f"http://vendor.invalid:{srv.port}/x") == "dns"
    assert asked == ["localhost", "vendor.invalid"]


@pytest.mark.parametrize(("answer", "code"), [
    (b"HTTP/1.1 407 Proxy Authentication Required\r\nContent-Length: 0\r\n\r\n", "proxy_auth"),
    (b"HTTP/1.1 403 Forbidden\r\nContent-Length: 3\r\n\r\nno!", "proxy_error"),
    (b"not http at all\r\n\r\n", "protocol"),
    (b"HTTP/1.1 200 Connection established\r\n", "timeout"),  # never ends its answer
    (b"", "reset"),
])
async def test_a_proxy_that_refuses_the_tunnel(answer: bytes, code: str) -> None:
    async def proxy(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, srv: Raw) -> None:
        await srv.read_head(reader)
        writer.write(answer)
        await writer.drain()
        if answer.endswith(b"\r\n\r\n") or not answer:
            return
        await reader.read()

    async with raw(proxy) as srv, new_session() as session:
        try:
            await session.request("GET", "https://vendor.example/x", {}, None, time.monotonic() + 0.5, 4096,
                                  proxy=("127.0.0.1", srv.port))
        except Exception as exc:  # noqa: BLE001
            assert _failure(exc).code == code, exc
        else:
            raise AssertionError("the tunnel cannot have worked")
        assert srv.heads[0].startswith(b"CONNECT vendor.example:443 HTTP/1.1\r\n")


async def test_a_cancelled_request_leaves_nothing_behind(prober: Prober) -> None:
    async def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, srv: Raw) -> None:
        await srv.read_head(reader)
        await reader.read()

    async with raw(handler) as srv:
        task = asyncio.create_task(send(prober, srv.url + "/x"))
        await asyncio.sleep(0.05)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        session = prober.session
        assert not session._active and not any(session._idle.values())


async def test_header_injection_is_refused_before_anything_is_sent(prober: Prober) -> None:
    async with raw(answering(OK)) as srv:
        req = HttpRequest("GET", srv.url + "/x", (), {"X-Evil": "a\r\nHost: other"})
        with pytest.raises(ValueError, match="line breaks"):
            await prober._send(req, time.monotonic() + 2)
    assert srv.connections == 0


async def test_the_deadline_covers_a_tls_handshake_that_never_ends(prober: Prober) -> None:
    async def silent(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, srv: Raw) -> None:
        await reader.read()  # takes the ClientHello and says nothing

    async with raw(silent) as srv:
        assert await send(prober, f"https://127.0.0.1:{srv.port}/x", timeout=0.3) == "timeout"
        assert srv.connections == 1


async def test_a_plain_http_server_on_the_https_port_is_a_tls_error(prober: Prober) -> None:
    async with raw(answering(b"HTTP/1.1 400 Bad Request\r\nContent-Length: 0\r\n\r\n")) as srv:
        async def plain(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, srv: Raw) -> None:
            await reader.read(1)
            writer.write(b"HTTP/1.1 400 Bad Request\r\nContent-Length: 0\r\n\r\n")
            await writer.drain()
            await reader.read()
        srv.handler = plain
        assert await send(prober, f"https://127.0.0.1:{srv.port}/x") == "tls"


async def test_an_https_proxy_carries_plain_requests_and_tunnels_tls_inside_tls() -> None:
    ca = trustme.CA()
    server = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ca.issue_cert("127.0.0.1", "localhost").configure_cert(server)
    trusting = ssl.create_default_context()
    ca.configure_trust(trusting)

    async def proxy(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, srv: Raw) -> None:
        head = await srv.read_head(reader)
        if not head.startswith(b"CONNECT "):
            writer.write(OK)  # an absolute-form request: the proxy answers it (as if from the vendor)
            await writer.drain()
            await reader.read()
            return
        up_r, up_w = await asyncio.open_connection("127.0.0.1", int(head.split(b" ")[1].rsplit(b":", 1)[1]))
        writer.write(b"HTTP/1.1 200 Connection established\r\n\r\n")

        async def pipe(r: asyncio.StreamReader, w: asyncio.StreamWriter) -> None:
            while data := await r.read(65536):
                w.write(data)
                await w.drain()

        try:
            await asyncio.gather(pipe(reader, up_w), pipe(up_r, writer))
        finally:
            up_w.close()

    async with raw(answering(OK), server) as vendor, raw(proxy, server) as srv, \
            new_session(trusting) as session:
        via = {"proxy": ("127.0.0.1", srv.port), "proxy_tls": True}
        plain = await session.request("GET", "http://vendor.example/x", {}, None, time.monotonic() + 5, 4096, **via)
        tunnelled = await session.request("GET", f"https://localhost:{vendor.port}/x", {}, None,
                                          time.monotonic() + 5, 4096, **via)
        assert (plain.status, plain.body) == (tunnelled.status, tunnelled.body) == (200, b'{"code":20}')
        assert srv.heads[0].startswith(b"GET http://vendor.example/x HTTP/1.1\r\n")
        assert srv.heads[1].startswith(b"CONNECT localhost:%d HTTP/1.1\r\n" % vendor.port)
        assert vendor.heads[0].startswith(b"GET /x HTTP/1.1\r\n")  # the vendor saw the request, not the proxy
        assert tunnelled.cert_expiry is not None
    async with raw(proxy, server) as srv, new_session() as untrusting:  # the proxy's certificate is unknown
        try:
            await untrusting.request("GET", "http://vendor.example/x", {}, None, time.monotonic() + 5, 4096,
                                     proxy=("127.0.0.1", srv.port), proxy_tls=True)
        except Exception as exc:  # noqa: BLE001
            assert _failure(exc).code == "proxy_connect", exc
        else:
            raise AssertionError("an untrusted proxy certificate cannot have been accepted")
