"""Every outgoing HTTP request: libcurl (pycurl), driven by the asyncio loop.

libcurl is the most field-proven HTTP engine there is: Happy Eyeballs, lenient reading of the odd
answers real servers send, HTTP/2 by ALPN, CONNECT tunnels (HTTP, HTTPS and SOCKS proxies), content
decoding (gzip, deflate with and without the zlib wrapper, brotli), connection reuse and the retry of
a reused connection that the server closed as we sent. The exporter's job is only to drive it from
its event loop and to say what came back.

The glue is curl's *multi socket* interface: curl tells us which sockets to watch
(``M_SOCKETFUNCTION``, which becomes ``loop.add_reader``/``add_writer``) and when to wake it
(``M_TIMERFUNCTION``, one loop timer); we tell it what happened (``socket_action``) and collect the
finished transfers (``info_read``). A ``Session`` is one multi handle: one connection pool and one
DNS cache for the requests of one egress setting (see egress.py), with easy handles reused.

Failures are raised as ``TransportError`` (curl's error code and what we know around it); the
prober maps them to its codes in one place (``probe._failure``).
"""

from __future__ import annotations

import asyncio
import calendar
import functools
import ipaddress
import logging
import re
import socket
import ssl
import time
from collections.abc import Mapping, Sequence
from dataclasses import KW_ONLY, dataclass
from typing import Any, Protocol

import pycurl

from .httpconfig import TLS_VERSIONS, HttpClient, Proxy, TLSConfig
from .model import PHASES, RecordError

__all__ = ["PHASES", "USER_AGENT", "Resolver", "Response", "Session", "TransportError", "new_session"]

log = logging.getLogger(__name__)

USER_AGENT = "apistatus-exporter"
#: how long a name's addresses from an injected resolver are kept
DNS_TTL = 60.0

# curl error codes pycurl does not name (or names after FTP only)
E_WEIRD_SERVER_REPLY = 8
E_HTTP2_STREAM = 92
E_HTTP3 = 95
E_QUIC_CONNECT = 96
E_PROXY = 97
E_SSL_CLIENTCERT = 98
E_TOO_LARGE = 100
_SUPPRESS_CONNECT_HEADERS = 265  # CURLOPT_SUPPRESS_CONNECT_HEADERS: the proxy's 200 is not the vendor's answer

_CURL_TLS = {
    ssl.TLSVersion.TLSv1: (pycurl.SSLVERSION_TLSv1_0, pycurl.SSLVERSION_MAX_TLSv1_0),
    ssl.TLSVersion.TLSv1_1: (pycurl.SSLVERSION_TLSv1_1, pycurl.SSLVERSION_MAX_TLSv1_1),
    ssl.TLSVersion.TLSv1_2: (pycurl.SSLVERSION_TLSv1_2, pycurl.SSLVERSION_MAX_TLSv1_2),
    ssl.TLSVersion.TLSv1_3: (pycurl.SSLVERSION_TLSv1_3, pycurl.SSLVERSION_MAX_TLSv1_3),
}
_PROXY_TYPES = {"http": pycurl.PROXYTYPE_HTTP, "https": 2,  # CURLPROXY_HTTPS
                # Prometheus' socks5:// (Go's x/net/proxy) hands the name to the proxy: curl's socks5h
                "socks5": pycurl.PROXYTYPE_SOCKS5_HOSTNAME}
_EXPIRE = re.compile(r"([A-Z][a-z]{2})\s+(\d{1,2})\s+(\d{2}):(\d{2}):(\d{2})\s+(\d{4})")
_MONTHS = {m: i for i, m in enumerate(("Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct",
                                       "Nov", "Dec"), 1)}
#: the one line of curl's verbose text a detailed request keeps (curl's OpenSSL backend writes it after
#: every handshake): the protocol version and the cipher, nothing else of it
_TLS_LINE = re.compile(rb"SSL connection using (TLSv1(?:\.[0-3])?|SSLv3) / ([A-Za-z0-9_-]{1,64})")
_TLS_NAMES = {b"TLSv1": "1.0", b"TLSv1.0": "1.0", b"TLSv1.1": "1.1", b"TLSv1.2": "1.2", b"TLSv1.3": "1.3",
              b"SSLv3": "SSLv3"}


@dataclass(eq=False, repr=False)
class TransportError(RecordError):
    """No usable answer: curl's error code and what the prober needs to name the cause."""

    code: int
    message: str
    _: KW_ONLY
    os_errno: int = 0
    #: the proxy the request went through (None: direct)
    proxy: Proxy | None = None
    #: the proxy's own refusal: its answer to CONNECT, or its 407 to a plain-HTTP request
    proxy_status: int = 0
    #: the vendor's HTTP status when one had arrived (a body that could not be decoded)
    status: int = 0
    encoding: str = ""


class Resolver(Protocol):
    """What tests and benchmarks inject instead of the system resolver (aiohttp's resolver shape):
    the addresses it gives are handed to curl (``CURLOPT_RESOLVE``), which still does the connecting,
    Happy Eyeballs included."""

    async def resolve(self, host: str, port: int = ...,
                      family: socket.AddressFamily = ...) -> Sequence[Mapping[str, Any]]: ...

    async def close(self) -> None: ...


class Response:
    """One answer: status, headers (lower-case names, the last of repeated ones), the body as curl
    decoded it up to the cap and whether it was cut, the certificate expiry and the phase timings; for a
    ``detail`` request also the TLS version and cipher ("" when not seen) and the vendor's certificate's
    (notBefore, notAfter)."""

    __slots__ = ("body", "cert_expiry", "cert_validity", "headers", "phases", "status", "tls", "truncated")

    def __init__(self, status: int, headers: dict[str, str], body: bytes, truncated: bool,
                 cert_expiry: float | None, phases: tuple[float, float, float, float, float], *,
                 tls: str = "", cert_validity: tuple[float, float] | None = None) -> None:
        self.status = status
        self.headers = headers
        self.body = body
        self.truncated = truncated
        self.cert_expiry = cert_expiry
        self.phases = phases
        self.tls = tls
        self.cert_validity = cert_validity


class _Transfer:
    """One request in flight: what curl hands us while it runs."""

    __slots__ = ("chunks", "fut", "head", "headers", "key", "lines", "max_body", "proxy", "size", "tls",
                 "tls_seen", "truncated")

    def __init__(self, fut: asyncio.Future[Response], max_body: int, key: tuple[Any, ...], tls: bool,
                 proxy: Proxy | None) -> None:
        self.fut = fut
        self.max_body = max_body
        self.key = key
        self.tls = tls
        self.proxy = proxy
        self.chunks: list[bytes] = []
        self.size = 0
        self.truncated = False
        self.headers: dict[str, str] = {}
        self.lines: list[bytes] = []
        self.head = False  # a HEAD request: no body follows, whatever the headers say
        self.tls_seen = ""  # a detail request: "1.3 TLS_AES_256_GCM_SHA384" from curl's verbose text

    def debug(self, kind: int, data: bytes) -> None:
        """curl's verbose output of a detail request: only the handshake's line is kept (the last one,
        the vendor's after a proxy's; nothing else: header lines, sent ones included, carry secrets)."""
        if kind == pycurl.INFOTYPE_TEXT and b"SSL connection using" in data:
            # anchored: curl prints the peer's subject and issuer after its own line, and a name may
            # be written to look like it
            m = _TLS_LINE.match(data)
            if m is not None:
                self.tls_seen = f"{_TLS_NAMES[m.group(1)]} {m.group(2).decode('ascii')}"

    def write(self, data: bytes) -> int | None:
        room = self.max_body - self.size
        if len(data) > room:
            # the cap: keep what fits and stop the transfer (curl closes the connection, nothing is drained)
            if room > 0:
                self.chunks.append(data[:room])
                self.size += room
            self.truncated = True
            return 0
        self.chunks.append(data)
        self.size += len(data)
        return None

    def parse_headers(self) -> None:
        """The answer's headers from the raw lines curl handed over (collected by ``lines.append``, no
        Python call per line): only the last answer's count, after any interim (100, 103) or redirect."""
        headers: dict[str, str] = {}
        last = ""
        for line in self.lines:
            if line.startswith(b"HTTP/"):
                headers, last = {}, ""
                continue
            if line[:1] in (b" ", b"\t"):  # an obsolete folded line continues the header before it
                if last:
                    headers[last] += " " + line.strip().decode("utf-8", "surrogateescape")
                continue
            name, sep, value = line.partition(b":")
            if not sep or not line.endswith(b"\n"):  # the blank line, or a line the close cut: not a header
                continue
            last = name.strip().decode("latin-1").lower()
            headers[last] = value.strip().decode("utf-8", "surrogateescape")
        self.headers = headers


def _system_ca() -> tuple[str | None, str | None]:
    """The system's CA bundle and directory, as Python's ssl module finds them (``SSL_CERT_FILE`` and
    ``SSL_CERT_DIR`` honoured): the bundled libcurl's own default path need not exist here."""
    paths = ssl.get_default_verify_paths()
    return paths.cafile, paths.capath


def _is_ip(host: str) -> bool:
    try:
        ipaddress.ip_address(host)
    except ValueError:
        return False
    return True


def _split(url: str) -> tuple[str, str, int]:
    """(scheme, host, port) of an absolute http(s) URL."""
    sep = url.find("://")
    if sep < 0:
        raise ValueError(f"not an absolute URL: {url!r}")
    cut = len(url)
    for ch in "/?#":
        at = url.find(ch, sep + 3)
        if 0 <= at < cut:
            cut = at
    return _split_origin(url[:cut], sep)


# keyed by the scheme and authority only: a signed URL's query (a timestamp, a signature) differs on
# every probe, and a cache keyed by it would keep thousands of URLs that never come again
@functools.lru_cache(maxsize=1024)
def _split_origin(origin: str, sep: int) -> tuple[str, str, int]:
    scheme = origin[:sep].lower()
    if scheme not in ("http", "https"):
        raise ValueError(f"unsupported URL scheme {scheme!r}")
    authority = origin[sep + 3:]
    if "@" in authority:
        raise ValueError("userinfo in a vendor URL is not sent")
    if authority.startswith("["):
        end = authority.find("]")
        host, tail = authority[1:end], authority[end + 1:]
    else:
        host, _, tail = authority.partition(":")
        tail = ":" + tail if tail else ""
    port = 443 if scheme == "https" else 80
    if tail.startswith(":") and tail[1:]:
        if not tail[1:].isdigit():
            raise ValueError(f"bad port in {origin!r}")
        port = int(tail[1:])
    if not host:
        raise ValueError(f"no host in {origin!r}")
    return scheme, host.lower(), port


def _expire_date(text: str) -> float | None:
    """curl's ``Expire date`` (OpenSSL's ``Mar  5 12:00:00 2030 GMT``) as Unix seconds."""
    m = _EXPIRE.search(text)
    if m is None or m.group(1) not in _MONTHS:
        return None
    return float(calendar.timegm((int(m.group(6)), _MONTHS[m.group(1)], int(m.group(2)), int(m.group(3)),
                                  int(m.group(4)), int(m.group(5)), 0, 0, 0)))


def leaf_validity(certinfo: Sequence[Sequence[tuple[str, str]]]) -> tuple[float, float] | None:
    """(notBefore, notAfter) of the first certificate the peer presented (its own; curl's CERTINFO)."""
    if not certinfo:
        return None
    fields = dict(certinfo[0])
    start, end = _expire_date(fields.get("Start date", "")), _expire_date(fields.get("Expire date", ""))
    return (start, end) if start is not None and end is not None else None


def chain_expiry(certinfo: Sequence[Sequence[tuple[str, str]]]) -> float | None:
    """The earliest ``notAfter`` over every certificate the peer presented (curl's CERTINFO)."""
    found = [_expire_date(value) for cert in certinfo for name, value in cert if name == "Expire date"]
    dates = [d for d in found if d is not None]
    return min(dates) if dates else None


def _header_lines(headers: Mapping[str, str]) -> list[str]:
    lines = []
    for name, value in headers.items():
        if any(c in name for c in "\r\n\0:") or any(c in value for c in "\r\n\0"):
            raise ValueError(f"header {name!r}: line breaks, NUL or a colon in a header are not allowed")
        # curl's syntax for a header sent with an empty value ("Name:" alone removes one)
        lines.append(f"{name}: {value}" if value else f"{name};")
    return lines


class Session:
    """One libcurl multi handle (a connection pool and DNS cache) for the requests of one egress
    setting, driven by the running event loop. ``limit``: connections open at once (more requests
    wait for one, within their deadline); ``keepalive=False``: a new connection per request."""

    def __init__(self, client: HttpClient | None = None, *, limit: int = 100, keepalive: bool = True,
                 resolver: Resolver | None = None, user_agent: str = USER_AGENT) -> None:
        self.client = client or HttpClient()
        self.limit = limit
        self.keepalive = keepalive
        self.resolver = resolver
        self.user_agent = user_agent
        self.closed = False
        tls = self.client.tls
        #: the CA bundle and directory when the system's roots apply (ca_file: its contents, see _tls;
        #: a TLSConfig made by hand without them has curl read the file)
        self._ca = ((None, None) if tls.pems[0] is not None else (tls.ca_file, None)) if tls.ca_file else _system_ca()
        self._multi: pycurl.CurlMulti | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._timer: asyncio.Handle | None = None
        self._now = False  # the pending timer is a call_soon (curl asked for "now")
        self._watched: dict[int, int] = {}  # fd -> 1 (read) | 2 (write)
        self._running: dict[pycurl.Curl, _Transfer] = {}
        self._free: list[pycurl.Curl] = []
        #: the earliest expiry of the chain each (host, port, TLS name, proxy) presented on its last
        #: full handshake, and the (notBefore, notAfter) of its own certificate: a reused connection or a
        #: resumed TLS session has no certificate info of its own
        self._expiry: dict[tuple[Any, ...], tuple[float | None, tuple[float, float] | None]] = {}
        self._dns: dict[tuple[str, int], tuple[float, str]] = {}

    async def __aenter__(self) -> Session:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    # --- the loop glue --------------------------------------------------------------------------

    def _start(self) -> pycurl.CurlMulti:
        self._loop = asyncio.get_running_loop()
        multi = pycurl.CurlMulti()
        multi.setopt(pycurl.M_SOCKETFUNCTION, self._on_socket)
        multi.setopt(pycurl.M_TIMERFUNCTION, self._on_timer)
        multi.setopt(pycurl.M_MAX_TOTAL_CONNECTIONS, self.limit)
        multi.setopt(pycurl.M_MAXCONNECTS, self.limit)
        multi.setopt(pycurl.M_PIPELINING, pycurl.PIPE_MULTIPLEX)
        self._multi = multi
        return multi

    def _on_socket(self, what: int, fd: int, multi: Any, data: Any) -> None:
        loop = self._loop
        if loop is None:  # closing: the sockets were let go already
            return
        old = self._watched.get(fd, 0)
        new = 0 if what == pycurl.POLL_REMOVE else {pycurl.POLL_IN: 1, pycurl.POLL_OUT: 2,
                                                    pycurl.POLL_INOUT: 3}.get(what, 0)
        if new & 1 and not old & 1:
            loop.add_reader(fd, self._act, fd, pycurl.CSELECT_IN)
        elif old & 1 and not new & 1:
            loop.remove_reader(fd)
        if new & 2 and not old & 2:
            loop.add_writer(fd, self._act, fd, pycurl.CSELECT_OUT)
        elif old & 2 and not new & 2:
            loop.remove_writer(fd)
        if new:
            self._watched[fd] = new
        else:
            self._watched.pop(fd, None)

    def _on_timer(self, ms: int) -> None:
        # never call socket_action from here (curl is inside a call already): the loop calls it back
        loop, timer = self._loop, self._timer
        if ms == 0 and loop is not None:  # "now" (a transfer was added): the next loop turn, no timer heap
            if timer is not None and self._now:
                return  # already asked for: one call serves every transfer added meanwhile
            if timer is not None:
                timer.cancel()
            self._timer, self._now = loop.call_soon(self._act, pycurl.SOCKET_TIMEOUT, 0), True
        elif ms > 0 and loop is not None:
            when = loop.time() + ms / 1000.0
            if isinstance(timer, asyncio.TimerHandle) and abs(timer.when() - when) < 0.001:
                return  # the same wake-up curl asked for already
            if timer is not None:
                timer.cancel()
            self._timer, self._now = loop.call_at(when, self._act, pycurl.SOCKET_TIMEOUT, 0), False
        elif timer is not None:
            timer.cancel()
            self._timer = None

    def _act(self, fd: int, events: int) -> None:
        multi = self._multi
        if multi is None:
            return
        if fd == pycurl.SOCKET_TIMEOUT:
            self._timer = None
        try:
            multi.socket_action(fd, events)
        except pycurl.error as exc:  # curl's own failure (out of memory, a bad socket): no transfer may hang
            log.error("libcurl failed (%s); failing the requests in flight", exc.args[-1] if exc.args else exc)
            for handle in list(self._running):
                self._finish(handle, pycurl.E_RECV_ERROR, "libcurl failed")
            return
        while True:
            queued, done, failed = multi.info_read()
            for handle in done:
                self._finish(handle, 0, "")
            for handle, code, message in failed:
                self._finish(handle, code, message)
            if not queued:
                break

    # --- one request ----------------------------------------------------------------------------

    async def request(self, method: str, url: str, headers: Mapping[str, str], body: bytes | None,
                      deadline: float, max_body: int, *, detail: bool = False) -> Response:
        """Send ``method url`` (``url`` exactly as it goes on the wire) and read the answer; the
        deadline (``time.monotonic()``) covers everything: waiting for a connection, the name, the
        connection, TLS, the headers and the body. ``detail`` (a debug trace's request): on a new
        connection, so that the answer tells the TLS version and the certificate as of now."""
        if self.closed:
            raise RuntimeError("the HTTP client is closed")
        scheme, host, port = _split(url)
        client = self.client
        proxy = client.proxy_for(scheme, host, port)
        handle = self._free.pop() if self._free else pycurl.Curl()
        try:
            key = (host, port, client.tls.server_name, proxy)
            transfer = self._prepare(handle, method, url, scheme, host, port, headers, body, max_body, proxy, key)
            if detail:
                # libcurl has no getinfo for the TLS version: its verbose text says it (curl -v's
                # "SSL connection using"); a Python call per verbose line, so only when asked
                handle.setopt(pycurl.VERBOSE, 1)
                handle.setopt(pycurl.DEBUGFUNCTION, transfer.debug)
                handle.setopt(pycurl.FRESH_CONNECT, 1)  # a reused connection has no handshake to tell
                # nor has a resumed TLS session a certificate: the trace shows what the vendor presents now
                handle.setopt(pycurl.SSL_SESSIONID_CACHE, 0)
            resolve = await self._resolve(host, port, proxy, deadline)
        except BaseException:
            self._release(handle)
            raise
        if resolve:
            handle.setopt(pycurl.RESOLVE, resolve)
        # the deadline covers everything curl does, waiting for a free connection included
        handle.setopt(pycurl.TIMEOUT_MS, max(1, int((deadline - time.monotonic()) * 1000)))
        if self._multi is None:
            self._start()
        multi = self._multi
        assert multi is not None
        fut = transfer.fut
        self._running[handle] = transfer
        multi.add_handle(handle)
        try:
            return await fut
        except asyncio.CancelledError:
            if handle in self._running:  # given up on: curl drops the transfer and its connection
                del self._running[handle]
                multi.remove_handle(handle)
                self._release(handle)
            raise

    def _release(self, handle: pycurl.Curl) -> None:
        """A handle whose transfer is over: kept for the next request (reset: no option, callback or
        header list of this one stays), up to ``limit`` of them; past that (after a burst of requests
        that waited for a connection) closed, so that a burst's handles are not kept for good."""
        handle.reset()
        if len(self._free) < self.limit and not self.closed:
            self._free.append(handle)
        else:
            handle.close()

    def _prepare(self, c: pycurl.Curl, method: str, url: str, scheme: str, host: str, port: int,
                 headers: Mapping[str, str], body: bytes | None, max_body: int, proxy: Proxy | None,
                 key: tuple[Any, ...]) -> _Transfer:
        loop = asyncio.get_running_loop()
        client, tls = self.client, self.client.tls
        transfer = _Transfer(loop.create_future(), max_body, key, scheme == "https", proxy)
        lines = _header_lines(headers)
        given = {name.lower() for name in headers}
        if body is not None or method in ("POST", "PUT", "PATCH"):
            if "content-type" not in given:
                # never curl's form type for a body we did not say the type of
                lines.append("Content-Type: application/octet-stream" if body else "Content-Type:")
            lines.append("Expect:")  # no 100-continue round trip: the body is small and already here
        name = tls.server_name
        if name and scheme == "https" and name != host:
            # the TLS name (SNI and verification) differs from the URL's host: curl takes the TLS name
            # from the URL, so the URL names it and CONNECT_TO sends the connection to the real host
            shown = f"[{host}]" if ":" in host else host
            if "host" not in given:
                lines.append(f"Host: {shown}" if port == 443 else f"Host: {shown}:{port}")
            c.setopt(pycurl.CONNECT_TO, [f"{name}:{port}:{shown}:{port}"])
            url = re.sub(r"^(https://)" + re.escape(shown), lambda m: m.group(1) + name, url, count=1, flags=re.I)
        c.setopt(pycurl.URL, url)
        c.setopt(pycurl.NOSIGNAL, 1)
        c.setopt(pycurl.PROTOCOLS, pycurl.PROTO_HTTP | pycurl.PROTO_HTTPS)
        c.setopt(pycurl.USERAGENT, self.user_agent)
        c.setopt(pycurl.ACCEPT_ENCODING, "")  # every encoding curl decodes; it inflates, the cap applies after
        # bytes: a header value outside ASCII (a token with é) goes as UTF-8, as every client sends it
        c.setopt(pycurl.HTTPHEADER, [line.encode() for line in lines])
        c.setopt(pycurl.WRITEFUNCTION, transfer.write)
        c.setopt(pycurl.HEADERFUNCTION, transfer.lines.append)
        if method == "HEAD":
            transfer.head = True
            c.setopt(pycurl.NOBODY, 1)
        elif body is not None or method in ("POST", "PUT", "PATCH"):
            c.setopt(pycurl.POSTFIELDSIZE, len(body or b""))
            c.setopt(pycurl.POSTFIELDS, body or b"")
            if method != "POST":
                c.setopt(pycurl.CUSTOMREQUEST, method)
        elif method != "GET":
            c.setopt(pycurl.CUSTOMREQUEST, method)
        if not self.keepalive:
            c.setopt(pycurl.FRESH_CONNECT, 1)
            c.setopt(pycurl.FORBID_REUSE, 1)
        if not client.enable_http2:
            c.setopt(pycurl.HTTP_VERSION, pycurl.CURL_HTTP_VERSION_1_1)
        if client.follow_redirects:
            c.setopt(pycurl.FOLLOWLOCATION, 1)
            c.setopt(pycurl.MAXREDIRS, 10)  # Go's http.Client, which Prometheus uses, stops after 10
            c.setopt(pycurl.REDIR_PROTOCOLS, pycurl.PROTO_HTTP | pycurl.PROTO_HTTPS)
        if scheme == "https":
            self._tls(c, tls)
        if proxy is None:
            c.setopt(pycurl.PROXY, "")  # direct, whatever http_proxy the environment holds
        else:
            self._proxy(c, proxy, client)
        return transfer

    def _tls(self, c: pycurl.Curl, tls: TLSConfig) -> None:
        c.setopt(pycurl.OPT_CERTINFO, 1)
        ca, cert, key = tls.pems  # read and checked at load (httpconfig): no file is read here
        cafile, capath = self._ca
        if tls.ca_file:
            # replaces the system roots, as in Prometheus: curl's built-in default paths go too
            c.unsetopt(pycurl.CAINFO)
            c.unsetopt(pycurl.CAPATH)
        if ca is not None:
            c.setopt(pycurl.CAINFO_BLOB, ca)
        if cafile:
            c.setopt(pycurl.CAINFO, cafile)
        if capath:
            c.setopt(pycurl.CAPATH, capath)
        if cert is not None:
            c.setopt(pycurl.SSLCERT_BLOB, cert)
            c.setopt(pycurl.SSLCERTTYPE, "PEM")
            c.setopt(pycurl.SSLKEY_BLOB, key if key is not None else cert)
            c.setopt(pycurl.SSLKEYTYPE, "PEM")
        elif tls.cert_file:
            c.setopt(pycurl.SSLCERT, tls.cert_file)
            c.setopt(pycurl.SSLKEY, tls.key_file or tls.cert_file)
        if tls.insecure_skip_verify:
            c.setopt(pycurl.SSL_VERIFYPEER, 0)
            c.setopt(pycurl.SSL_VERIFYHOST, 0)
        if tls.min_version or tls.max_version:
            low = _CURL_TLS[TLS_VERSIONS[tls.min_version]][0] if tls.min_version else pycurl.SSLVERSION_TLSv1_2
            high = _CURL_TLS[TLS_VERSIONS[tls.max_version]][1] if tls.max_version else pycurl.SSLVERSION_MAX_DEFAULT
            c.setopt(pycurl.SSLVERSION, low | high)

    def _proxy(self, c: pycurl.Curl, proxy: Proxy, client: HttpClient) -> None:
        c.setopt(pycurl.PROXY, proxy.url)
        c.setopt(pycurl.PROXYTYPE, _PROXY_TYPES[proxy.url.split("://", 1)[0]])
        if proxy.username or proxy.password:
            c.setopt(pycurl.PROXYUSERNAME, proxy.username)
            c.setopt(pycurl.PROXYPASSWORD, proxy.password)
            c.setopt(pycurl.PROXYAUTH, pycurl.HTTPAUTH_BASIC)
        c.setopt(pycurl.HEADEROPT, pycurl.HEADER_SEPARATE)  # the vendor's headers never go to the proxy
        c.setopt(pycurl.PROXYHEADER, [f"{name}: {', '.join(values)}".encode()
                                      for name, values in client.proxy_connect_header])
        c.setopt(_SUPPRESS_CONNECT_HEADERS, 1)
        if proxy.url.startswith("https:"):
            cafile, capath = self._ca
            if client.tls.pems[0] is not None:
                c.setopt(pycurl.PROXY_CAINFO_BLOB, client.tls.pems[0])
            if cafile:
                c.setopt(pycurl.PROXY_CAINFO, cafile)
            if capath:
                c.setopt(pycurl.PROXY_CAPATH, capath)
            if client.tls.insecure_skip_verify:
                c.setopt(pycurl.PROXY_SSL_VERIFYPEER, 0)
                c.setopt(pycurl.PROXY_SSL_VERIFYHOST, 0)

    async def _resolve(self, host: str, port: int, proxy: Proxy | None, deadline: float) -> list[str]:
        """With an injected resolver: the addresses of the name curl would look up (the vendor's when
        direct, the proxy's otherwise; a SOCKS5 or HTTP proxy resolves the vendor's name itself)."""
        if self.resolver is None:
            return []
        if proxy is not None:
            phost, pport = proxy.address
            name, at, code = phost, pport, pycurl.E_COULDNT_RESOLVE_PROXY
        else:
            name, at, code = host, port, pycurl.E_COULDNT_RESOLVE_HOST
        name = name.strip("[]")
        if _is_ip(name):
            return []
        cached = self._dns.get((name, at))
        now = time.monotonic()
        if cached is None or cached[0] <= now:
            try:
                async with asyncio.timeout(max(0.0, deadline - now)):
                    found = [str(r["host"]) for r in await self.resolver.resolve(name, at, socket.AF_UNSPEC)]
            except TimeoutError:
                raise TransportError(pycurl.E_OPERATION_TIMEDOUT, f"resolving {name} timed out", proxy=proxy) from None
            except OSError as exc:
                raise TransportError(code, f"could not resolve {name}", proxy=proxy) from exc
            if not found:
                raise TransportError(code, f"could not resolve {name}", proxy=proxy)
            if len(self._dns) > 10000:
                self._dns.clear()
            addrs = ",".join(f"[{a}]" if ":" in a else a for a in dict.fromkeys(found))
            cached = self._dns[(name, at)] = (now + DNS_TTL, f"{name}:{at}:{addrs}")
        return [cached[1]]

    def _finish(self, c: pycurl.Curl, code: int, message: str) -> None:
        transfer = self._running.pop(c, None)
        multi = self._multi
        assert multi is not None
        multi.remove_handle(c)
        if transfer is None:
            return
        try:
            result: Response | TransportError = self._result(c, transfer, code, message)
        except Exception as exc:  # noqa: BLE001 - reading curl's info must never lose the awaiting probe
            result = TransportError(code or pycurl.E_RECV_ERROR, f"{exc.__class__.__name__}", proxy=transfer.proxy)
        self._release(c)
        if transfer.fut.done():
            return
        if isinstance(result, Response):
            transfer.fut.set_result(result)
        else:
            transfer.fut.set_exception(result)

    def _result(self, c: pycurl.Curl, t: _Transfer, code: int, message: str) -> Response | TransportError:
        t.parse_headers()
        if code and not (code == pycurl.E_WRITE_ERROR and t.truncated):
            status = c.getinfo(pycurl.RESPONSE_CODE)
            return TransportError(code, message, os_errno=c.getinfo(pycurl.OS_ERRNO), proxy=t.proxy,
                                  proxy_status=c.getinfo(pycurl.HTTP_CONNECTCODE) if t.proxy else 0,
                                  status=status, encoding=t.headers.get("content-encoding", ""))
        status = c.getinfo(pycurl.RESPONSE_CODE)
        if self._short(t, status):
            # the connection closed inside the head, after a Content-Length that no body followed: libcurl
            # takes the close for the end of the head; it is an answer cut short, as curl says once the
            # head is whole
            return TransportError(pycurl.E_PARTIAL_FILE, "the connection closed before the answer's body",
                                  proxy=t.proxy)
        if status == 407 and t.proxy is not None and not t.tls:
            # plain HTTP through a proxy: the proxy's own refusal (inside a tunnel a 407 is the vendor's)
            return TransportError(pycurl.E_RECV_ERROR, "the proxy refused the request", proxy=t.proxy, proxy_status=407)
        new = c.getinfo(pycurl.NUM_CONNECTS) > 0
        expiry = validity = None
        if t.tls:
            # a reused connection, or a new one that resumed a TLS session, saw no certificate: the
            # chain is then the one this host presented on its last full handshake
            chain = c.getinfo(pycurl.INFO_CERTINFO) if new else None
            if chain:
                expiry, validity = chain_expiry(chain), leaf_validity(chain)
                if len(self._expiry) > 10000:
                    self._expiry.clear()
                self._expiry[t.key] = (expiry, validity)
            else:
                expiry, validity = self._expiry.get(t.key, (None, None))
        body = b"".join(t.chunks) if len(t.chunks) != 1 else t.chunks[0]
        # plain HTTP through an HTTPS proxy: the handshake seen was the proxy's, not the vendor's
        return Response(status, t.headers, body, t.truncated, expiry, self._phases(c, new),
                        tls=t.tls_seen if t.tls else "", cert_validity=validity)

    @staticmethod
    def _short(t: _Transfer, status: int) -> bool:
        """Whether the body is shorter than the Content-Length the head announced (plain bodies only:
        an encoded one is longer once decoded)."""
        length = t.headers.get("content-length", "")
        if t.truncated or t.head or status in (204, 304) or not length.isdigit() or "content-encoding" in t.headers \
                or "transfer-encoding" in t.headers:
            return False
        return t.size < int(length)

    @staticmethod
    def _phases(c: pycurl.Curl, new: bool) -> tuple[float, float, float, float, float]:
        """resolve, connect, tls, processing (to the first byte), transfer, from curl's timers
        (microseconds since the transfer began, each one cumulative)."""
        lookup = c.getinfo(pycurl.NAMELOOKUP_TIME_T)
        connect = c.getinfo(pycurl.CONNECT_TIME_T)
        tls = c.getinfo(pycurl.APPCONNECT_TIME_T)
        first = c.getinfo(pycurl.STARTTRANSFER_TIME_T)
        total = c.getinfo(pycurl.TOTAL_TIME_T)
        ready = max(lookup, connect, tls)
        if not new:  # a reused connection: nothing was resolved, connected or handshaken
            return 0.0, 0.0, 0.0, max(0, first - ready) / 1e6, max(0, total - first) / 1e6
        return (lookup / 1e6, max(0, connect - lookup) / 1e6, max(0, tls - connect) / 1e6 if tls else 0.0,
                max(0, first - ready) / 1e6, max(0, total - max(first, ready)) / 1e6)

    async def close(self) -> None:
        """Fail what is in flight, stop watching curl's sockets and close its connections."""
        self.closed = True
        loop, multi = self._loop, self._multi
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        for fd in list(self._watched):
            if loop is not None and not loop.is_closed():
                loop.remove_reader(fd)
                loop.remove_writer(fd)
        self._watched.clear()
        running, self._running = self._running, {}
        for handle, transfer in running.items():
            if multi is not None:
                multi.remove_handle(handle)
            if not transfer.fut.done():
                transfer.fut.set_exception(RuntimeError("the HTTP client is closed"))
            handle.close()
        for handle in self._free:
            handle.close()
        self._free.clear()
        if multi is not None:
            self._multi = None
            self._loop = None
            multi.close()
        await asyncio.sleep(0)


def new_session(client: HttpClient | TLSConfig | None = None, *, limit: int = 100, keepalive: bool = True,
                resolver: Resolver | None = None) -> Session:
    """The one way a session is made (the exporter's, every http_client setting's, and a bare
    Prober's alike); ``client`` may be only a TLS setting. No cookies: a health check must not carry
    state from one probe to the next."""
    if isinstance(client, TLSConfig):
        client = HttpClient(tls=client)
    return Session(client, limit=limit, keepalive=keepalive, resolver=resolver)
