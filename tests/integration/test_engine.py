"""Every outgoing request goes through libcurl (exporter/engine.py); these tests drive it through the
prober's one request path (``Prober._send``) and its one failure map against raw loopback servers that
do what well-behaved ones refuse to: answers cut at every byte, odd heads, interim answers, bodies
until close, encodings, a pooled connection closed by the server, proxies that fail in every way.

Where it applies, the expectation is curl's own verdict on the same answer (the ``curl`` program,
run against the same server): a monitor must not call an answer broken that the field's reference
client reads."""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import gc
import gzip
import shutil
import socket
import ssl
import time
import zlib
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path

import pycurl
import pytest
import trustme
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from exporter.clock import FakeClock
from exporter.engine import TransportError, new_session
from exporter.httpconfig import HttpClient, Proxy, TLSConfig
from exporter.model import Answer, HttpRequest
from exporter.probe import Prober, _failure
from exporter.simulators.faults import LoopbackResolver

Handler = Callable[[asyncio.StreamReader, asyncio.StreamWriter, "Raw"], Awaitable[None]]
OK = b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: 11\r\n\r\n{\"code\":20}"
CURL = shutil.which("curl")


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
        body = b"{}" if method == "POST" else None
        return await prober._send(HttpRequest(method, url, body=body), time.monotonic() + timeout)
    except Exception as exc:  # noqa: BLE001 - the code is what the test looks at
        return _failure(exc).code


async def curl_verdict(url: str, *extra: str) -> tuple[int, int, bytes]:
    """What the ``curl`` program makes of ``url``: (exit code, HTTP status, decoded body)."""
    assert CURL is not None, "the tests need curl (the Makefile's APT_NEEDS installs it)"
    proc = await asyncio.create_subprocess_exec(
        CURL, "-sS", "--max-time", "5", "--noproxy", "*", "-w", "\n%{http_code}", *extra, url,
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.DEVNULL)
    out, _ = await proc.communicate()
    body, _, status = out.rpartition(b"\n")
    return proc.returncode or 0, int(status or 0), body


async def verdict(prober: Prober, url: str) -> str:
    """The exporter's verdict in curl's terms: "200" (an answer and its status) or a failure code."""
    got = await send(prober, url)
    return str(got.status) if isinstance(got, Answer) else got


def curl_code(exit_code: int, status: int) -> str:
    """curl's exit code through the exporter's one failure map: the same words for both verdicts."""
    return str(status) if exit_code == 0 else _failure(TransportError(exit_code, "")).code


@pytest.fixture
async def prober() -> AsyncIterator[Prober]:
    async with new_session(resolver=LoopbackResolver()) as session:
        yield Prober(session, FakeClock(), max_body=4096)


def via(proxy_url: str, ca: trustme.CA | None = None, **fields: object) -> HttpClient:
    """Settings that send every request through ``proxy_url``, trusting ``ca``."""
    proxy = Proxy(proxy_url)
    tls = TLSConfig(ca_file="test-ca.pem", pems=(ca.cert_pem.bytes(), None, None)) if ca else TLSConfig()
    return HttpClient(http_proxy=proxy, https_proxy=proxy, tls=tls, **fields)  # type: ignore[arg-type]


# --- answers: what curl reads, we read -------------------------------------------------------------

ODD = {
    # the heads the field sends that a strict parser refuses and curl reads (issue #23)
    "control-byte": b"HTTP/1.1 200 OK\r\nDate: Mon, 01 Jan 2024\x01 00:00:00 GMT\r\nContent-Length: 11\r\n\r\n"
                    b"{\"code\":20}",
    "length-list": b"HTTP/1.1 200 OK\r\nContent-Length: 11, 11\r\n\r\n{\"code\":20}",
    "length-twice": b"HTTP/1.1 200 OK\r\nContent-Length: 11\r\nContent-Length: 11\r\n\r\n{\"code\":20}",
    "chunked-and-length": b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\nContent-Length: 99\r\n\r\n"
                          b"b\r\n{\"code\":20}\r\n0\r\n\r\n",
    "bare-lf": b"HTTP/1.1 200 OK\nContent-Type: application/json\nContent-Length: 11\n\n{\"code\":20}",
    "folded": b"HTTP/1.1 200 OK\r\nX-Folded: first\r\n  second\r\nContent-Length: 11\r\n\r\n{\"code\":20}",
    "80k-headers": b"HTTP/1.1 200 OK\r\n" + (b"X-More: " + b"m" * 1000 + b"\r\n") * 80
                   + b"Content-Length: 11\r\n\r\n{\"code\":20}",
    # and what no client can read
    "garbage": b"garbage\r\n\r\n",
    "status": b"HTTP/1.1 abc OK\r\n\r\n",
    "ssh": b"SSH-2.0-OpenSSH_9.2\r\n",
    "no-colon": b"HTTP/1.1 200 OK\r\nBad Header\r\nContent-Length: 11\r\n\r\n{\"code\":20}",
    "two-lengths": b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\nContent-Length: 7\r\n\r\nhello",
    "one-header-of-a-megabyte": b"HTTP/1.1 200 OK\r\nX: " + b"a" * (1 << 20) + b"\r\n\r\n",
    "upgrade": b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: upgrade\r\n\r\n",
}
READ_BY_CURL = ["control-byte", "length-list", "length-twice", "chunked-and-length", "bare-lf", "folded",
                "80k-headers"]


@pytest.mark.parametrize("name", list(ODD))
async def test_odd_heads_get_curls_verdict(prober: Prober, name: str) -> None:
    async with raw(answering(ODD[name], close=True)) as srv:
        ours = await verdict(prober, srv.url + "/x")
    async with raw(answering(ODD[name], close=True)) as srv:
        theirs = curl_code(*(await curl_verdict(srv.url + "/x"))[:2])
    # the same verdict: the same answer, or both a failure (curl here is the Debian program, an older
    # release than the libcurl pycurl brings: which failure code a broken head earns may differ between
    # releases, whether it is read does not)
    assert ours == theirs or not (ours.isdigit() or theirs.isdigit()), (name, ours, theirs)
    # (a 101 nobody asked for: curl waits for the answer that never comes after it, as for a cut one)
    assert ours == ("200" if name in READ_BY_CURL else "reset" if name == "upgrade" else "protocol"), (name, ours)


async def test_the_odd_heads_curl_reads_give_the_whole_body_and_the_headers(prober: Prober) -> None:
    for name in READ_BY_CURL:
        async with raw(answering(ODD[name], close=True)) as srv:
            got = await send(prober, srv.url + "/x")
        assert isinstance(got, Answer) and got.body == b'{"code":20}', name
    async with raw(answering(ODD["folded"], close=True)) as srv:
        got = await send(prober, srv.url + "/x")
    assert isinstance(got, Answer) and got.headers["x-folded"] == "first second"


async def test_an_answer_cut_at_any_byte_gets_curls_verdict(prober: Prober) -> None:
    for cut in range(len(OK) + 1):
        async def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, srv: Raw,
                          cut: int = cut) -> None:
            await srv.read_head(reader)
            writer.write(OK[:cut])
            await writer.drain()

        async with raw(handler) as srv:
            ours = await verdict(prober, srv.url + "/x")
            theirs = curl_code(*(await curl_verdict(srv.url + "/x"))[:2])
        assert ours == theirs or not (ours.isdigit() or theirs.isdigit()), (cut, ours, theirs)
        assert ours in ("200", "reset", "protocol"), (cut, ours)
        if cut < len(b"HTTP/1.1 200 OK\r\n") or len(b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\n"
                                                      b"Content-Length: 11\r\n\r\n") < cut < len(OK):
            # no status yet, or a body shorter than its length; (a close inside the head after the
            # status line curl takes for the end of the head, and so does the exporter)
            assert ours != "200", cut
    assert ours == "200"  # the whole answer


async def test_garbage_after_a_whole_answer_keeps_the_answer(prober: Prober) -> None:
    async with raw(answering(OK + b"\x00\x01 not http\r\n\r\n", OK)) as srv:
        for _ in range(2):
            got = await send(prober, srv.url + "/x")
            assert isinstance(got, Answer) and got.body == b'{"code":20}'


async def test_headers_that_never_end_are_a_protocol_error_not_a_memory_hog(prober: Prober) -> None:
    async def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, srv: Raw) -> None:
        await srv.read_head(reader)
        writer.write(b"HTTP/1.1 200 OK\r\n")
        for _ in range(20000):
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
        got = await send(prober, srv.url + "/x")
        assert isinstance(got, Answer) and srv.connections == 2


async def test_pythons_http10_server_body_until_close(prober: Prober) -> None:
    """Python's own http.server (HTTP/1.0 by default): a body without a length, ended by the close."""
    import http.server
    import threading

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.end_headers()
            self.wfile.write(b'{"code":20,' + b'"pad":"' + b"y" * 3000 + b'"}')

        def log_message(self, format: str, *args: object) -> None:
            return None

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        url = f"http://127.0.0.1:{server.server_address[1]}/x"
        got = await send(prober, url)
        theirs = await curl_verdict(url)
    finally:
        server.shutdown()
        server.server_close()
    assert isinstance(got, Answer) and got.status == 200 and not got.truncated
    assert got.body == theirs[2] and len(got.body) == 3000 + 20


# --- bodies: decoded by curl, capped after ---------------------------------------------------------

BODY = b'{"code": 20, "pad": "' + b"x" * 1000 + b'"}'


def _raw_deflate(data: bytes) -> bytes:
    co = zlib.compressobj(wbits=-15)
    return co.compress(data) + co.flush()


@pytest.mark.parametrize(("encoding", "encode"), [
    ("gzip", gzip.compress), ("deflate", zlib.compress), ("deflate", _raw_deflate)],
    ids=["gzip", "deflate-zlib", "deflate-raw"])
async def test_compressed_bodies_in_tiny_segments_are_read_as_curl_reads_them(
        prober: Prober, encoding: str, encode: Callable[[bytes], bytes]) -> None:
    body = encode(BODY)
    chunked = b"".join(b"%x\r\n%s\r\n" % (len(body[i:i + 100]), body[i:i + 100]) for i in range(0, len(body), 100))
    answer = (b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\nContent-Encoding: " + encoding.encode()
              + b"\r\n\r\n" + chunked + b"0\r\n\r\n")

    async def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, srv: Raw) -> None:
        await srv.read_head(reader)
        for i in range(len(answer)):
            writer.write(answer[i:i + 1])
            await writer.drain()

    async with raw(handler) as srv:
        got = await send(prober, srv.url + "/x")
        status, curl_body = (await curl_verdict(srv.url + "/x", "--compressed"))[1:]
    assert isinstance(got, Answer) and got.body == BODY and not got.truncated and status == 200
    if encode is _raw_deflate and curl_body == b"":
        # Debian's curl program (older than the libcurl the engine bundles) now and then fails to tell raw
        # deflate from the zlib form when the body's first bytes come one segment at a time: no verdict
        return
    assert curl_body == BODY
    assert b"accept-encoding: " in srv.heads[0].lower()  # asked for: curl names what it can decode


@pytest.mark.parametrize(("encoding", "body"), [("gzip", b"\x1f\x8b not gzip at all"), ("zstd", b"(\xb5/\xfd...")])
async def test_a_body_that_cannot_be_decoded_is_unknown_and_says_so(encoding: str, body: bytes) -> None:
    answer = (b"HTTP/1.1 200 OK\r\nContent-Encoding: " + encoding.encode() + b"\r\nContent-Length: %d\r\n\r\n"
              % len(body) + body)
    async with raw(answering(answer)) as srv, new_session() as session:
        prober = Prober(session, FakeClock())
        try:
            await prober._send(HttpRequest("GET", srv.url + "/x"), time.monotonic() + 5)
        except TransportError as exc:
            failure = _failure(exc)
        else:
            raise AssertionError("an undecodable body cannot be read")
    assert (failure.cls, failure.code, failure.http_status) == ("unknown", "undecodable_body", 200)
    assert "could not be decoded" in failure.message and encoding in failure.message


async def test_a_body_past_the_cap_stops_the_transfer_and_says_it_was_cut(prober: Prober) -> None:
    big = b"HTTP/1.1 200 OK\r\nContent-Length: 102400\r\n\r\n" + b"x" * 102400
    async with raw(answering(big, OK)) as srv:
        got = await send(prober, srv.url + "/x")
        assert isinstance(got, Answer) and got.truncated and len(got.body) == 4096
        assert isinstance(await send(prober, srv.url + "/x"), Answer)
    assert srv.connections == 2  # the cut connection was dropped, not drained
    bomb = gzip.compress(b"0" * (64 << 20))
    answer = b"HTTP/1.1 200 OK\r\nContent-Encoding: gzip\r\nContent-Length: %d\r\n\r\n" % len(bomb) + bomb
    async with raw(answering(answer)) as srv:
        got = await send(prober, srv.url + "/x")
    assert isinstance(got, Answer) and got.truncated and len(got.body) == 4096  # the cap is on the inflated body


# --- connections ---------------------------------------------------------------------------------


async def test_a_pooled_connection_the_server_closed_is_not_a_failure(prober: Prober) -> None:
    async with raw(answering(OK, close=True)) as srv:  # the server closes right after each answer
        for _ in range(3):
            got = await send(prober, srv.url + "/x")
            assert isinstance(got, Answer) and got.status == 200
            await asyncio.sleep(0.01)
    assert srv.connections == 3


@pytest.mark.parametrize("method", ["GET", "POST"])
async def test_a_reused_connection_dropped_before_the_answer_is_sent_again_once(prober: Prober, method: str) -> None:
    """The race a pool cannot see: the server takes the next request on a kept connection and closes
    without a byte. libcurl sends it once more on a new connection, a POST too (as curl does): the
    request never reached the application."""
    async def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, srv: Raw) -> None:
        await srv.read_head(reader)
        writer.write(OK)
        await writer.drain()
        if srv.connections % 2:  # every other connection dies on its second request
            await srv.read_head(reader)
            return
        await reader.read()

    async with raw(handler) as srv:
        assert isinstance(await send(prober, srv.url + "/x", method), Answer)
        got = await send(prober, srv.url + "/x", method)
        assert isinstance(got, Answer) and got.status == 200 and srv.connections == 2


async def test_keepalive_reuses_one_connection_and_head_answers_have_no_body(prober: Prober) -> None:
    head = b"HTTP/1.1 200 OK\r\nContent-Length: 5000\r\n\r\n"
    async with raw(answering(OK, head, OK)) as srv:
        first = await send(prober, srv.url + "/x")
        second = await send(prober, srv.url + "/x", "HEAD")
        third = await send(prober, srv.url + "/x")
    assert isinstance(first, Answer) and isinstance(second, Answer) and isinstance(third, Answer)
    assert (second.status, second.body) == (200, b"") and third.body == b'{"code":20}'
    assert srv.connections == 1
    assert first.phases is not None and third.phases is not None
    assert first.phases[1] > 0 and third.phases[:3] == (0.0, 0.0, 0.0)  # reused: no resolve, connect or TLS


async def test_keepalive_false_is_one_connection_per_request() -> None:
    async with raw(answering(OK, OK)) as srv, new_session(keepalive=False) as session:
        prober = Prober(session, FakeClock())
        for _ in range(2):
            assert isinstance(await send(prober, srv.url + "/x"), Answer)
    assert srv.connections == 2


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


def _curl_handles() -> int:
    """libcurl easy handles alive in this process (each one pycurl object)."""
    gc.collect()
    return sum(1 for obj in gc.get_objects() if type(obj) is pycurl.Curl)


async def test_a_burst_of_waiting_requests_leaves_no_more_idle_handles_than_the_pool_limit() -> None:
    async def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, srv: Raw) -> None:
        while True:
            await srv.read_head(reader)
            await asyncio.sleep(0.01)
            writer.write(OK)
            await writer.drain()

    before = _curl_handles()
    async with raw(handler) as srv, new_session(limit=2) as session:
        prober = Prober(session, FakeClock())
        got = await asyncio.gather(*(send(prober, srv.url + "/x") for _ in range(40)))
        assert all(isinstance(g, Answer) for g in got)
        # forty requests were in the session at once (most waiting for one of two connections): what is
        # kept for the next ones is at most one handle per connection
        assert _curl_handles() - before <= 2
        assert isinstance(await send(prober, srv.url + "/x"), Answer)  # and they are reused
        assert _curl_handles() - before <= 2
    assert _curl_handles() - before == 0


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


async def test_happy_eyeballs_a_hanging_ipv6_address_does_not_stop_a_working_ipv4_one() -> None:
    """One name, two addresses: ::1 where connecting hangs (a listener whose accept queue is full, so
    the kernel drops the SYN) and 127.0.0.1 that answers. curl races them: the answer, not a timeout."""
    hanging = socket.socket(socket.AF_INET6, socket.SOCK_STREAM)
    hanging.bind(("::1", 0))
    hanging.listen(0)
    port = hanging.getsockname()[1]
    fillers = []
    for _ in range(8):  # fill the accept queue: nobody accepts
        f = socket.socket(socket.AF_INET6, socket.SOCK_STREAM)
        f.setblocking(False)
        with contextlib.suppress(BlockingIOError):
            f.connect(("::1", port))
        fillers.append(f)
    await asyncio.sleep(0.2)

    class DualStack:
        async def resolve(self, host: str, port: int = 0, family: object = None) -> list[dict[str, object]]:
            return [{"host": "::1", "port": port}, {"host": "127.0.0.1", "port": port}]

        async def close(self) -> None:
            return None

    try:
        ok = await asyncio.start_server(lambda r, w: _answer_once(r, w), "127.0.0.1", port)
    except OSError:
        pytest.fail("the IPv4 port matching the IPv6 listener is taken; run again")
    try:
        # the ::1 connect really hangs: a plain connect to it does not finish within a second
        probe = socket.socket(socket.AF_INET6, socket.SOCK_STREAM)
        probe.setblocking(False)
        with contextlib.suppress(BlockingIOError):
            probe.connect(("::1", port))
        loop = asyncio.get_running_loop()
        with pytest.raises(TimeoutError):
            await asyncio.wait_for(loop.sock_connect(probe, ("::1", port)), 1)
        probe.close()
        async with new_session(resolver=DualStack()) as session:  # type: ignore[arg-type]
            prober = Prober(session, FakeClock())
            got = await send(prober, f"http://dual.test:{port}/x", timeout=4)
        assert isinstance(got, Answer) and got.status == 200
    finally:
        ok.close()
        hanging.close()
        for f in fillers:
            f.close()


async def _answer_once(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    with contextlib.suppress(OSError, asyncio.IncompleteReadError):
        await reader.readuntil(b"\r\n\r\n")
        writer.write(OK)
        await writer.drain()
        await reader.read()
    writer.close()


# --- proxies -------------------------------------------------------------------------------------


@pytest.mark.parametrize(("answer", "code"), [
    (b"HTTP/1.1 407 Proxy Authentication Required\r\nContent-Length: 0\r\n\r\n", "proxy_auth"),
    (b"HTTP/1.1 403 Forbidden\r\nContent-Length: 3\r\n\r\nno!", "proxy_error"),
    (b"not http at all\r\n\r\n", "proxy_error"),
    # sshd on the proxy's port: its banner, then its complaint about the CONNECT, then the close
    (b"SSH-2.0-OpenSSH_9.2\r\nInvalid SSH identification string.\r\n", "proxy_error"),
    (b"HTTP/1.1 200 Connection established\r\n\r\nHTTP/1.1 200 OK\r\n\r\n", "proxy_error"),  # HTTP, not TLS
    (b"HTTP/1.1 200 Connection established\r\n", "timeout"),  # never ends its answer
    (b"", "proxy_error"),  # closes on CONNECT
], ids=["407", "403", "garbage", "ssh", "http-not-tls", "never-ends", "closes"])
async def test_a_proxy_that_fails_the_tunnel_is_the_proxys_failure(answer: bytes, code: str) -> None:
    async def proxy(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, srv: Raw) -> None:
        await srv.read_head(reader)
        writer.write(answer)
        await writer.drain()
        if not answer or answer.endswith((b"\r\n\r\nno!", b"string.\r\n")) or b"Content-Length: 0" in answer:
            return
        await reader.read()

    async with raw(proxy) as srv, new_session(via(srv.url)) as session:
        try:
            await session.request("GET", "https://vendor.example/x", {}, None, time.monotonic() + 0.5, 4096)
        except Exception as exc:  # noqa: BLE001
            assert _failure(exc).code == code, exc
        else:
            raise AssertionError("the tunnel cannot have worked")
        assert srv.heads[0].startswith(b"CONNECT vendor.example:443 HTTP/1.1\r\n")


async def test_no_proxy_with_the_default_port_matches_a_url_without_one() -> None:
    client = via("http://127.0.0.1:9")
    client = HttpClient(client.http_proxy, client.https_proxy, no_proxy=("vendor.example:443",))
    assert client.proxy_for("https", "vendor.example", None) is None
    assert client.proxy_for("http", "vendor.example", None) is not None  # port 80: not the rule's


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
        assert isinstance(await send(prober, srv.url.replace("/x", "") + "/y", timeout=0.2), str)  # still usable
        await asyncio.sleep(0.05)
    assert srv.connections >= 1


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
    async def plain(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, srv: Raw) -> None:
        await reader.read(1)
        writer.write(b"HTTP/1.1 400 Bad Request\r\nContent-Length: 0\r\n\r\n")
        await writer.drain()
        await reader.read()

    async with raw(plain) as srv:
        assert await send(prober, f"https://127.0.0.1:{srv.port}/x") == "tls"


async def test_an_https_proxy_carries_plain_requests_and_tunnels_tls_inside_tls() -> None:
    ca = trustme.CA()
    server = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ca.issue_cert("127.0.0.1", "localhost").configure_cert(server)

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

    # the proxy speaks TLS 1.2 only, the vendor 1.3: a debug trace's request names the vendor's handshake
    proxy_tls = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ca.issue_cert("127.0.0.1", "localhost").configure_cert(proxy_tls)
    proxy_tls.maximum_version = ssl.TLSVersion.TLSv1_2
    server.minimum_version = ssl.TLSVersion.TLSv1_3

    async with raw(answering(OK), server) as vendor, raw(proxy, proxy_tls) as srv:
        async with new_session(via(f"https://localhost:{srv.port}", ca), resolver=LoopbackResolver()) as session:
            plain = await session.request("GET", "http://vendor.example/x", {}, None, time.monotonic() + 5, 4096,
                                          detail=True)
            tunnelled = await session.request("GET", f"https://localhost:{vendor.port}/x", {}, None,
                                              time.monotonic() + 5, 4096, detail=True)
        assert (plain.status, plain.body) == (tunnelled.status, tunnelled.body) == (200, b'{"code":20}')
        assert plain.tls == "" and tunnelled.tls.startswith("1.3 "), (plain.tls, tunnelled.tls)
        assert srv.heads[0].startswith(b"GET http://vendor.example/x HTTP/1.1\r\n")
        assert srv.heads[1].startswith(b"CONNECT localhost:%d HTTP/1.1\r\n" % vendor.port)
        assert vendor.heads[0].startswith(b"GET /x HTTP/1.1\r\n")  # the vendor saw the request, not the proxy
        assert tunnelled.cert_expiry is not None
        async with new_session(via(f"https://localhost:{srv.port}"), resolver=LoopbackResolver()) as untrusting:
            try:
                await untrusting.request("GET", "http://vendor.example/x", {}, None, time.monotonic() + 5, 4096)
            except Exception as exc:  # noqa: BLE001
                assert _failure(exc).code == "proxy_connect", exc
            else:
                raise AssertionError("an untrusted proxy certificate cannot have been accepted")


# --- certificates ---------------------------------------------------------------------------------


def _chain(tmp: Path, name: str = "localhost") -> tuple[ssl.SSLContext, bytes, float]:
    """A root, an intermediate that expires in 10 days and a leaf valid for a year: the server context
    (presenting leaf and intermediate), the root's PEM and the intermediate's notAfter."""
    now = dt.datetime.now(dt.UTC).replace(microsecond=0)

    def cert(subject: str, issuer: str, key: ec.EllipticCurvePrivateKey, signer: ec.EllipticCurvePrivateKey,
             days: int, ca: bool, sans: list[x509.GeneralName] | None = None) -> x509.Certificate:
        b = (x509.CertificateBuilder()
             .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, subject)]))
             .issuer_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, issuer)]))
             .public_key(key.public_key()).serial_number(x509.random_serial_number())
             .not_valid_before(now - dt.timedelta(days=1)).not_valid_after(now + dt.timedelta(days=days))
             .add_extension(x509.BasicConstraints(ca=ca, path_length=None), critical=True))
        if sans:
            b = b.add_extension(x509.SubjectAlternativeName(sans), critical=False)
        return b.sign(signer, hashes.SHA256())

    root_key, mid_key, leaf_key = (ec.generate_private_key(ec.SECP256R1()) for _ in range(3))
    root = cert("Test Root", "Test Root", root_key, root_key, 3650, True)
    mid = cert("Test Intermediate", "Test Root", mid_key, root_key, 10, True)
    leaf = cert(name, "Test Intermediate", leaf_key, mid_key, 365, False, [x509.DNSName(name)])
    pem = serialization.Encoding.PEM
    (tmp / "chain.pem").write_bytes(leaf.public_bytes(pem) + mid.public_bytes(pem))
    (tmp / "key.pem").write_bytes(leaf_key.private_bytes(pem, serialization.PrivateFormat.PKCS8,
                                                         serialization.NoEncryption()))
    ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ctx.load_cert_chain(tmp / "chain.pem", tmp / "key.pem")
    return ctx, root.public_bytes(pem), mid.not_valid_after_utc.timestamp()


async def test_the_certificate_expiry_is_the_earliest_over_the_whole_chain(tmp_path: Path) -> None:
    ctx, root, intermediate_expiry = _chain(tmp_path)
    async with raw(answering(OK, OK), ctx) as srv:
        tls = TLSConfig(ca_file="root.pem", pems=(root, None, None))
        async with new_session(tls, resolver=LoopbackResolver()) as session:
            prober = Prober(session, FakeClock())
            first = await send(prober, f"https://localhost:{srv.port}/x")
            again = await send(prober, f"https://localhost:{srv.port}/x")  # a reused connection
    assert isinstance(first, Answer) and isinstance(again, Answer)
    assert first.tls_cert_expiry == again.tls_cert_expiry == intermediate_expiry  # not the leaf's, a year away
    assert first.phases is not None and first.phases[2] > 0  # the TLS phase was timed
