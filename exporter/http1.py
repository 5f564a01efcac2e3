"""The exporter's own HTTP/1.1 client: one request, one answer, a pool of keep-alive connections.

Every outgoing request (probes, quota calls, logins and refreshes) is one exchange with a vendor
that answers a few hundred bytes, so a general client's machinery (streams, per-request futures for
each stage, URL objects, cookie jars, tracing) is most of what a probe costs. Here an exchange is
one write and one future: the protocol parses the answer as it arrives (``httptools``, the binding of
llhttp, the parser Node.js uses), keeps at most ``max_body`` raw body bytes and settles the future
when the answer is complete, the cap is reached (the connection is then dropped, not drained), the
deadline passes or the connection fails.

What it does not do, on purpose: follow redirects, decompress (the prober inflates, with the cap),
keep cookies, pipeline, speak HTTP/2.

Failures are raised as the few classes below (plus ``TimeoutError`` and ``ssl.SSLError``), which
the prober maps to its codes in one place (``probe._failure``).
"""

from __future__ import annotations

import asyncio
import contextlib
import ipaddress
import socket
import ssl
import time
from collections import deque
from collections.abc import Mapping, Sequence
from typing import Any, Protocol, cast

import httptools

from .httpclient import cert_not_after

__all__ = [
    "USER_AGENT",
    "Client",
    "ConnectError",
    "DNSError",
    "HttpError",
    "ProtocolError",
    "ProxyConnectError",
    "ProxyRefused",
    "ResetError",
    "Resolver",
    "Response",
    "TLSError",
]

USER_AGENT = "apistatus-exporter"
#: the whole header section of an answer (status line included); a larger one is a protocol error
MAX_HEAD = 65536
#: an idle pooled connection older than this is closed, not reused (servers close theirs after 5-75 s)
IDLE_TIMEOUT = 15.0
#: how long a name's addresses are kept
DNS_TTL = 60.0


class HttpError(Exception):
    """Base of the client's own failures."""


class ConnectError(HttpError):
    """No connection to the server (``os_error`` says why: refused, unreachable ...)."""

    def __init__(self, message: str, os_error: OSError | None = None) -> None:
        super().__init__(message)
        self.os_error = os_error


class DNSError(ConnectError):
    """The server's name did not resolve."""


class ProxyConnectError(ConnectError):
    """No connection to the proxy (refused, unresolved, unreachable)."""


class ProxyRefused(HttpError):
    """The proxy answered CONNECT with something other than 2xx."""

    def __init__(self, status: int) -> None:
        super().__init__(f"the proxy answered CONNECT with {status}")
        self.status = status


class TLSError(HttpError):
    """The TLS handshake or a TLS alert after it (a certificate the server refused)."""


class ProtocolError(HttpError):
    """Not an HTTP/1.x answer we can read: garbage, oversized or malformed headers, an upgrade."""


class ResetError(HttpError):
    """The connection closed before a complete answer."""

    def __init__(self, message: str, *, before_answer: bool = False) -> None:
        super().__init__(message)
        #: nothing of the answer had arrived: on a reused connection, a request worth one retry
        self.before_answer = before_answer


class Resolver(Protocol):
    """What tests inject instead of the system resolver (aiohttp's resolver shape, so one class
    serves both the server-side tools and this client)."""

    async def resolve(self, host: str, port: int = ...,
                      family: socket.AddressFamily = ...) -> Sequence[Mapping[str, Any]]: ...

    async def close(self) -> None: ...


class Response:
    """One answer: status, headers (lower-case names, the last of repeated ones), the raw body up
    to the cap and whether it was cut."""

    __slots__ = ("body", "cert_expiry", "headers", "status", "truncated")

    def __init__(self, status: int, headers: dict[str, str], body: bytes, truncated: bool,
                 cert_expiry: float | None) -> None:
        self.status = status
        self.headers = headers
        self.body = body
        self.truncated = truncated
        self.cert_expiry = cert_expiry


#: requests that may be sent again when a reused connection dies before any byte of the answer
_IDEMPOTENT = frozenset({"GET", "HEAD", "OPTIONS"})

_default_ctx: ssl.SSLContext | None = None


def _system_context() -> ssl.SSLContext:
    """The system's verification, built once (loading the CA store is the costly part)."""
    global _default_ctx
    if _default_ctx is None:
        _default_ctx = ssl.create_default_context()
    return _default_ctx


class _Conn(asyncio.Protocol):
    """One connection and, at most, the one exchange in flight on it."""

    __slots__ = (
        "_body",
        "_body_len",
        "_complete",
        "_fut",
        "_head_bytes",
        "_head_done",
        "_head_size",
        "_headers",
        "_keep",
        "_max_body",
        "_method",
        "_parser",
        "_status",
        "_timer",
        "_until_eof",
        "cert_expiry",
        "idle_since",
        "key",
        "lost",
        "transport",
        "used",
    )

    def __init__(self, key: tuple[Any, ...]) -> None:
        self.key = key
        self.transport: asyncio.Transport | None = None
        self.lost = False
        self.used = False  # has carried an exchange: a failure before any byte may be a stale connection
        self.idle_since = 0.0
        self.cert_expiry: float | None = None
        self._fut: asyncio.Future[Response] | None = None
        self._parser: httptools.HttpResponseParser | None = None
        self._timer: asyncio.TimerHandle | None = None
        self._reset_exchange()

    def _reset_exchange(self) -> None:
        self._headers: dict[str, str] = {}
        self._body: list[bytes] = []
        self._body_len = 0
        self._head_bytes = 0
        self._head_size = 0
        self._head_done = False
        self._complete = False
        self._status = 0
        self._keep = False
        self._until_eof = False
        self._method = "GET"
        self._max_body = 0

    # --- asyncio.Protocol -----------------------------------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.Transport, transport)  # uvloop's transports are no subclass

    def data_received(self, data: bytes) -> None:
        parser = self._parser
        if parser is None or self._fut is None:
            # bytes nobody asked for (on an idle connection): it cannot be trusted for the next request
            self._drop()
            return
        try:
            parser.feed_data(data)
        except (httptools.HttpParserError, httptools.HttpParserUpgrade) as exc:
            if isinstance(exc, httptools.HttpParserUpgrade):
                self._fail(ProtocolError("the server switched protocols"))  # we never ask it to
            elif self._complete and self._head_done:
                # a whole answer, then bytes that are none: the answer stands, the connection goes
                self._keep = False
                self._finish(truncated=False)
            else:
                self._fail(ProtocolError(f"invalid HTTP answer ({exc.__class__.__name__})"))
            return
        if self._fut is None:
            return
        if not self._head_done:
            self._head_bytes += len(data)
            if self._head_bytes > MAX_HEAD:
                self._fail(ProtocolError("the answer's headers are too large"))
            return
        if self._complete:
            self._finish(truncated=False)
        elif self._body_len >= self._max_body:
            self._finish(truncated=True)

    def eof_received(self) -> bool | None:
        return False  # close our side too

    def connection_lost(self, exc: Exception | None) -> None:
        self.lost = True
        if self._fut is not None and not self._fut.done():
            if exc is None and self._head_done and self._until_eof:
                self._keep = False
                self._finish(truncated=False)  # an answer without length ends with the connection
                return
            if isinstance(exc, ssl.SSLError) and not isinstance(exc, ssl.SSLEOFError | ssl.SSLZeroReturnError):
                # a TLS alert read after the handshake, e.g. TLS 1.3's "certificate required"
                self._fail(TLSError(f"TLS alert: {exc.reason or exc.__class__.__name__}"), close=False)
            else:
                nothing = self._head_bytes == 0 and not self._head_done
                self._fail(ResetError("connection closed before a complete answer", before_answer=nothing),
                           close=False)
        self.transport = None

    # --- httptools callbacks ----------------------------------------------------------------------

    def on_header(self, name: bytes, value: bytes) -> None:
        self._head_size += len(name) + len(value) + 4
        if self._head_size > MAX_HEAD:
            raise ProtocolError("the answer's headers are too large")  # feed_data raises it as a parser error
        self._headers[name.decode("latin-1").lower()] = value.decode("utf-8", "surrogateescape")

    def on_headers_complete(self) -> None:
        parser = self._parser
        assert parser is not None
        status = parser.get_status_code()
        if 100 <= status < 200 and status != 101:
            self._headers = {}  # an interim answer (100 Continue, 103 Early Hints): the real one follows
            return
        self._status = status
        self._head_done = True
        self._keep = parser.should_keep_alive()
        headers = self._headers
        if self._method == "HEAD" or status in (204, 304):
            self._complete = True  # no body follows, whatever the headers say
            return
        self._until_eof = "content-length" not in headers and "chunked" not in headers.get(
            "transfer-encoding", "").lower()

    def on_body(self, body: bytes) -> None:
        if self._complete:
            return  # a HEAD answer's announced body: never sent, or not ours to read
        self._body.append(body)
        self._body_len += len(body)

    def on_message_complete(self) -> None:
        if self._head_done:
            self._complete = True

    # --- the exchange -----------------------------------------------------------------------------

    def exchange(self, data: bytes, method: str, max_body: int, deadline: float,
                 loop: asyncio.AbstractEventLoop) -> asyncio.Future[Response]:
        self._reset_exchange()
        self._method = method
        self._max_body = max_body
        self.used = True
        fut = self._fut = loop.create_future()
        self._parser = httptools.HttpResponseParser(self)
        self._timer = loop.call_at(deadline, self._timed_out)
        assert self.transport is not None
        self.transport.write(data)
        return fut

    def _timed_out(self) -> None:
        self._timer = None
        self._fail(TimeoutError("no complete answer within the timeout"))

    def _finish(self, truncated: bool) -> None:
        fut, self._fut, self._parser = self._fut, None, None
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        body = b"".join(self._body) if len(self._body) != 1 else self._body[0]
        if len(body) > self._max_body:
            body, truncated = body[:self._max_body], True
        if truncated:
            self._keep = False
            self._drop()  # do not drain a body we will not read
        self._body = []
        # the answer takes the headers: an idle connection in the pool keeps no copy of them
        headers, self._headers = self._headers, {}
        if fut is not None and not fut.done():
            fut.set_result(Response(self._status, headers, body, truncated, self.cert_expiry))

    def _fail(self, exc: BaseException, close: bool = True) -> None:
        fut, self._fut, self._parser = self._fut, None, None
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        self._keep = False
        if close:
            self._drop()
        if fut is not None and not fut.done():
            fut.set_exception(exc)

    def _drop(self) -> None:
        self.lost = True
        if self.transport is not None:
            self.transport.abort()

    @property
    def reusable(self) -> bool:
        return self._keep and not self.lost and self.transport is not None and not self.transport.is_closing()

    def cancel(self) -> None:
        """The caller gave up (its task was cancelled): the connection is in an unknown state."""
        self._fail(asyncio.CancelledError())


class _ConnectReader(asyncio.Protocol):
    """Reads a proxy's answer to CONNECT on a fresh connection, then hands the socket over."""

    def __init__(self) -> None:
        self.transport: asyncio.Transport | None = None
        self.done: asyncio.Future[int] = asyncio.get_running_loop().create_future()
        self._buf = b""

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.Transport, transport)  # uvloop's transports are no subclass

    def data_received(self, data: bytes) -> None:
        if self.done.done():
            return
        self._buf += data
        end = self._buf.find(b"\r\n\r\n")
        if end < 0:
            if len(self._buf) > MAX_HEAD:
                self.done.set_exception(ProtocolError("the proxy's answer to CONNECT is too large"))
            return
        head, rest = self._buf[:end], self._buf[end + 4:]
        parts = head.split(b"\r\n", 1)[0].split(None, 2)
        if len(parts) < 2 or not parts[0].startswith(b"HTTP/1.") or not parts[1].isdigit():
            self.done.set_exception(ProtocolError("the proxy's answer to CONNECT is not HTTP"))
            return
        status = int(parts[1])
        if 200 <= status < 300 and rest:
            self.done.set_exception(ProtocolError("the proxy sent bytes before the tunnel's TLS"))
            return
        self.done.set_result(status)

    def connection_lost(self, exc: Exception | None) -> None:
        if not self.done.done():
            self.done.set_exception(ResetError("the proxy closed the connection during CONNECT"))


def _is_ip(host: str) -> bool:
    try:
        ipaddress.ip_address(host)
    except ValueError:
        return False
    return True


class Client:
    """A pool of connections per (scheme, host, port, TLS name, proxy), at most ``limit`` of them in
    use at once (more requests wait for one, within their deadline). ``keepalive=False``: one
    connection per request, closed after it. The default headers go with every request."""

    def __init__(self, ssl_ctx: ssl.SSLContext | bool = True, *, limit: int = 100, keepalive: bool = True,
                 resolver: Resolver | None = None, headers: Mapping[str, str] | None = None) -> None:
        self.ssl = ssl_ctx
        self.limit = limit
        self.keepalive = keepalive
        self.resolver = resolver
        self.headers = dict(headers) if headers is not None else {"User-Agent": USER_AGENT}
        self.closed = False
        self._idle: dict[tuple[Any, ...], list[_Conn]] = {}
        self._active: set[_Conn] = set()
        self._waiters: deque[asyncio.Future[None]] = deque()
        self._dns: dict[tuple[str, int], tuple[float, list[str]]] = {}
        self._ip: dict[str, bool] = {}
        self._memo: dict[bytes, float] = {}
        self._last_sweep = time.monotonic()

    async def __aenter__(self) -> Client:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    def _context(self) -> ssl.SSLContext:
        return self.ssl if isinstance(self.ssl, ssl.SSLContext) else _system_context()

    # --- the request ------------------------------------------------------------------------------

    async def request(self, method: str, url: str, headers: Mapping[str, str], body: bytes | None,
                      deadline: float, max_body: int, *, server_hostname: str | None = None,
                      proxy: tuple[str, int] | None = None, proxy_tls: bool = False,
                      proxy_headers: Mapping[str, str] | None = None) -> Response:
        """Send ``method url`` (``url`` exactly as it goes on the wire) and read the answer; the
        deadline (``time.monotonic()``) covers waiting for a connection, connecting, TLS, the
        headers and the body."""
        if self.closed:
            raise RuntimeError("the HTTP client is closed")
        scheme, host, port, target = _split(url)
        tls = scheme == "https"
        sni = server_hostname or host
        px = (*proxy, proxy_tls) if proxy is not None else None
        key = (tls, host, port, sni, px)
        if proxy is not None and not tls:
            target = url  # absolute-form: the proxy forwards it
        data = self._head(method, target, host, port, tls, headers, body)
        loop = asyncio.get_running_loop()
        deadline = loop.time() + (deadline - time.monotonic())  # the loop's clock need not be monotonic()'s
        for attempt in (0, 1):
            conn = await self._acquire(key, tls, host, port, sni, px, proxy_headers, deadline, loop)
            reused = conn.used
            fut = conn.exchange(data, method, max_body, deadline, loop)
            try:
                resp = await fut
            except ResetError as exc:
                self._release(conn)
                if attempt == 0 and reused and exc.before_answer and method in _IDEMPOTENT:
                    # most likely the server closed the pooled connection as we sent: once more, on a
                    # new one; never a login or any other request that must not be sent twice
                    continue
                raise
            except BaseException:
                conn.cancel()
                self._release(conn)
                raise
            self._release(conn)
            return resp
        raise AssertionError("unreachable")  # pragma: no cover

    def _head(self, method: str, target: str, host: str, port: int, tls: bool, headers: Mapping[str, str],
              body: bytes | None) -> bytes:
        """The request's head (and body): what the caller gives wins over our defaults."""
        given = {k.lower() for k in headers}
        lines = [f"{method} {target} HTTP/1.1"]
        if "host" not in given:
            shown = f"[{host}]" if ":" in host else host
            lines.append(f"Host: {shown}" if port == (443 if tls else 80) else f"Host: {shown}:{port}")
        for name, value in self.headers.items():
            if name.lower() not in given:
                lines.append(f"{name}: {value}")
        if "accept" not in given:
            lines.append("Accept: */*")
        for name, value in headers.items():
            if "\n" in value or "\r" in value or "\n" in name or "\r" in name or ":" in name:
                raise ValueError(f"header {name!r}: line breaks or a colon in a header are not allowed")
            lines.append(f"{name}: {value}")
        if (body is not None or method in ("POST", "PUT", "PATCH")) and "content-length" not in given:
            if body and "content-type" not in given:
                lines.append("Content-Type: application/octet-stream")
            lines.append(f"Content-Length: {len(body or b'')}")
        if not self.keepalive and "connection" not in given:
            lines.append("Connection: close")
        lines.append("\r\n")
        head = "\r\n".join(lines).encode("utf-8")
        return head + body if body else head

    # --- the pool ---------------------------------------------------------------------------------

    async def _acquire(self, key: tuple[Any, ...], tls: bool, host: str, port: int, sni: str,
                       proxy: tuple[str, int, bool] | None, proxy_headers: Mapping[str, str] | None, deadline: float,
                       loop: asyncio.AbstractEventLoop) -> _Conn:
        while len(self._active) >= self.limit:
            waiter = loop.create_future()
            self._waiters.append(waiter)
            try:
                async with asyncio.timeout_at(deadline):
                    await waiter
            except BaseException:
                if waiter in self._waiters:
                    self._waiters.remove(waiter)
                elif waiter.done() and not waiter.cancelled():
                    self._wake()  # we were woken but leave: pass the turn on
                raise
        idle = self._idle.get(key)
        now = time.monotonic()
        while idle:
            conn = idle.pop()
            if conn.reusable and now - conn.idle_since < IDLE_TIMEOUT:
                self._active.add(conn)
                return conn
            conn._drop()
        conn = _Conn(key)
        self._active.add(conn)
        try:
            async with asyncio.timeout_at(deadline):
                await self._connect(conn, tls, host, port, sni, proxy, proxy_headers, loop)
        except BaseException:
            self._active.discard(conn)
            conn._drop()
            self._wake()
            raise
        return conn

    def _release(self, conn: _Conn) -> None:
        self._active.discard(conn)
        if self.keepalive and conn.reusable and not self.closed:
            now = conn.idle_since = time.monotonic()
            self._idle.setdefault(conn.key, []).append(conn)
            if now - self._last_sweep > IDLE_TIMEOUT:
                self._sweep(now)
        else:
            conn._drop()
        self._wake()

    def _wake(self) -> None:
        while self._waiters:
            waiter = self._waiters.popleft()
            if not waiter.done():
                waiter.set_result(None)
                return

    def _sweep(self, now: float) -> None:
        """Close idle connections past their time, and forget pools of hosts no longer probed."""
        self._last_sweep = now
        for key, conns in list(self._idle.items()):
            keep = [c for c in conns if c.reusable and now - c.idle_since < IDLE_TIMEOUT]
            for c in conns:
                if c not in keep:
                    c._drop()
            if keep:
                self._idle[key] = keep
            else:
                del self._idle[key]

    async def close(self) -> None:
        self.closed = True
        for conns in self._idle.values():
            for c in conns:
                c._drop()
        self._idle.clear()
        for c in list(self._active):
            c._drop()
        for waiter in self._waiters:
            if not waiter.done():
                waiter.set_exception(RuntimeError("the HTTP client is closed"))
        self._waiters.clear()
        await asyncio.sleep(0)  # let the transports' connection_lost run

    # --- connecting -------------------------------------------------------------------------------

    async def _addresses(self, host: str, port: int, loop: asyncio.AbstractEventLoop) -> list[str]:
        literal = self._ip.get(host)
        if literal is None:
            if len(self._ip) > 10000:
                self._ip.clear()
            literal = self._ip[host] = _is_ip(host)
        if literal:
            return [host]
        cached = self._dns.get((host, port))
        now = time.monotonic()
        if cached is not None and cached[0] > now:
            return cached[1]
        try:
            if self.resolver is not None:
                found = [str(r["host"]) for r in await self.resolver.resolve(host, port, socket.AF_UNSPEC)]
            else:
                infos = await loop.getaddrinfo(host, port, type=socket.SOCK_STREAM)
                found = [str(info[4][0]) for info in infos]
        except OSError as exc:  # socket.gaierror included
            raise DNSError(f"{host}: name not resolved", exc) from exc
        if not found:
            raise DNSError(f"{host}: no address")
        if len(self._dns) > 10000:
            self._dns.clear()
        self._dns[(host, port)] = (now + DNS_TTL, found)
        return found

    async def _open(self, factory: Any, host: str, port: int, loop: asyncio.AbstractEventLoop,
                    **kwargs: Any) -> asyncio.Transport:
        last: OSError | None = None
        for addr in await self._addresses(host, port, loop):
            try:
                transport, _ = await loop.create_connection(factory, addr, port, **kwargs)
            except ssl.SSLError:
                raise
            except OSError as exc:
                last = exc
                continue
            return transport
        raise ConnectError(f"could not connect to {host}:{port}", last)

    async def _connect(self, conn: _Conn, tls: bool, host: str, port: int, sni: str,
                       proxy: tuple[str, int, bool] | None, proxy_headers: Mapping[str, str] | None,
                       loop: asyncio.AbstractEventLoop) -> None:
        if proxy is None:
            try:
                await self._open(lambda: conn, host, port, loop, **(
                    {"ssl": self._context(), "server_hostname": sni} if tls else {}))
            except ssl.SSLError as exc:
                raise TLSError(f"TLS handshake failed: {exc.reason or exc.__class__.__name__}") from exc
        elif not tls:
            await self._open_proxy(lambda: conn, proxy, loop)
        else:
            await self._tunnel(conn, host, port, sni, proxy, proxy_headers, loop)
        if tls and conn.transport is not None:
            conn.cert_expiry = _expiry(conn.transport.get_extra_info("ssl_object"), self._memo)

    async def _open_proxy(self, factory: Any, proxy: tuple[str, int, bool],
                          loop: asyncio.AbstractEventLoop) -> asyncio.Transport:
        """A connection to the proxy (TLS for an https:// one); whatever fails on the way there is
        the proxy's failure, never the vendor's."""
        host, port, tls = proxy
        try:
            return await self._open(factory, host, port, loop,
                                    **({"ssl": self._context(), "server_hostname": host} if tls else {}))
        except (ConnectError, ssl.SSLError) as exc:
            raise ProxyConnectError(f"could not connect to the proxy {host}:{port}",
                                    exc.os_error if isinstance(exc, ConnectError) else exc) from exc

    async def _tunnel(self, conn: _Conn, host: str, port: int, sni: str, proxy: tuple[str, int, bool],
                      proxy_headers: Mapping[str, str] | None, loop: asyncio.AbstractEventLoop) -> None:
        reader = _ConnectReader()
        raw = await self._open_proxy(lambda: reader, proxy, loop)
        try:
            authority = f"[{host}]:{port}" if ":" in host else f"{host}:{port}"
            lines = [f"CONNECT {authority} HTTP/1.1", f"Host: {authority}"]
            lines.extend(f"{k}: {v}" for k, v in (proxy_headers or {}).items())
            raw.write(("\r\n".join(lines) + "\r\n\r\n").encode("utf-8"))
            status = await reader.done
            if not 200 <= status < 300:
                raise ProxyRefused(status)
            try:
                # through an https:// proxy this is TLS inside TLS, which asyncio's SSL transport carries
                transport = await loop.start_tls(raw, conn, self._context(), server_hostname=sni)
            except ssl.SSLError as exc:
                raise TLSError(f"TLS handshake failed: {exc.reason or exc.__class__.__name__}") from exc
            except OSError as exc:  # the tunnel closed during the handshake: the vendor end did not connect
                raise ConnectError(f"could not connect to {host}:{port} through the proxy", exc) from exc
        except BaseException:
            raw.abort()
            raise
        if transport is None:  # the loop's contract: only a closed transport gives None
            raise ConnectError(f"could not connect to {host}:{port} through the proxy")
        conn.connection_made(transport)


def _split(url: str) -> tuple[str, str, int, str]:
    """(scheme, host, port, request target) of an absolute http(s) URL."""
    sep = url.find("://")
    if sep < 0:
        raise ValueError(f"not an absolute URL: {url!r}")
    scheme = url[:sep].lower()
    if scheme not in ("http", "https"):
        raise ValueError(f"unsupported URL scheme {scheme!r}")
    rest = url[sep + 3:]
    cut = len(rest)
    for ch in "/?#":
        at = rest.find(ch)
        if 0 <= at < cut:
            cut = at
    authority, target = rest[:cut], rest[cut:]
    target = target.split("#", 1)[0]
    if not target.startswith("/"):
        target = "/" + target
    if "@" in authority:
        raise ValueError("userinfo in a vendor URL is not sent")
    port = 443 if scheme == "https" else 80
    if authority.startswith("["):
        end = authority.find("]")
        host, tail = authority[1:end], authority[end + 1:]
    else:
        host, _, tail = authority.partition(":")
        tail = ":" + tail if tail else ""
    if tail.startswith(":") and tail[1:]:
        if not tail[1:].isdigit():
            raise ValueError(f"bad port in {url!r}")
        port = int(tail[1:])
    if not host:
        raise ValueError(f"no host in {url!r}")
    if not host.isascii():
        host = host.encode("idna").decode("ascii")
    return scheme, host.lower(), port, target


def _expiry(sslobj: Any, cache: dict[bytes, float]) -> float | None:
    """The earliest ``notAfter`` of the certificates the peer presented: the chain where Python
    offers it (3.13+), else the leaf. With verification off ``getpeercert()`` is empty, so DER it is."""
    if not isinstance(sslobj, ssl.SSLObject | ssl.SSLSocket):
        return None
    chain = getattr(sslobj, "get_unverified_chain", None)
    ders: list[bytes] = []
    with contextlib.suppress(ssl.SSLError, ValueError):
        if chain is not None:
            ders = [c for c in chain() or () if isinstance(c, bytes)]
        if not ders:
            leaf = sslobj.getpeercert(binary_form=True)
            ders = [leaf] if leaf else []
    expiries = []
    for der in ders:
        found = cache.get(der)
        if found is None:
            try:
                found = cert_not_after(der)
            except (ValueError, UnicodeDecodeError):
                continue
            if len(cache) >= 1024:  # a bounded memo: vendors rotate certificates, we must not grow with them
                cache.clear()
            cache[der] = found
        expiries.append(found)
    return min(expiries) if expiries else None
