"""Where a request goes out: one aiohttp session per distinct ``http_client`` setting, the route of
each request (proxy or direct, CONNECT headers, SNI name), and the vendor certificate's expiry read
from the connection the answer came on.

Targets without ``http_client`` use the exporter's shared session, exactly as before the block
existed; targets with equal settings share one session (and its connection pool), so a thousand
targets behind one corporate proxy cost one pool, not a thousand.
"""

from __future__ import annotations

import asyncio
import contextlib
import ssl
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlsplit

import aiohttp
from aiohttp.client_proto import ResponseHandler
from aiohttp.client_reqrep import ClientRequest
from aiohttp.tracing import Trace

from .httpclient import HttpClient, cert_not_after, needs_context, ssl_context

__all__ = ["CertConnector", "Egress", "Route", "SessionFactory", "new_session", "peer_cert_expiry"]

#: builds a session for one TLS context (``True``: the system's default verification)
SessionFactory = Callable[[ssl.SSLContext | bool], aiohttp.ClientSession]


def new_session(ctx: ssl.SSLContext | bool = True, *, limit: int = 100, keepalive: bool = True,
                resolver: aiohttp.abc.AbstractResolver | None = None) -> aiohttp.ClientSession:
    """The one way a session is made (the exporter's, every http_client setting's, and a bare
    Prober's alike). Connections are reused per vendor host. Cookies are ignored: a health check must
    not carry state from one probe to the next."""
    connector = CertConnector(limit=limit, limit_per_host=0, ttl_dns_cache=60, enable_cleanup_closed=True,
                              resolver=resolver, force_close=not keepalive, ssl=ctx)
    return aiohttp.ClientSession(connector=connector, cookie_jar=aiohttp.DummyCookieJar(),
                                 auto_decompress=True, raise_for_status=False,
                                 headers={"User-Agent": "apistatus-exporter"})


@dataclass(frozen=True, slots=True)
class Route:
    """How one request is sent: the session and the extra arguments of ``session.request``."""

    session: aiohttp.ClientSession
    kwargs: Mapping[str, Any] = field(default_factory=dict)
    #: extra request headers (Proxy-Authorization for a plain-HTTP request through a proxy)
    headers: Mapping[str, str] = field(default_factory=dict)
    #: (host, port) of the proxy when the request goes through one
    proxy_addr: tuple[str, int] | None = None


class Egress:
    """The sessions by settings. ``retire`` after a reload closes those no target uses any more, once
    requests still in flight on them have had time to finish."""

    def __init__(self, default: aiohttp.ClientSession, factory: SessionFactory) -> None:
        self.default = default
        self._factory = factory
        self._sessions: dict[HttpClient, aiohttp.ClientSession] = {}
        #: sessions of settings a reload dropped, until they close: a probe still in flight on one
        #: (its quota call, auth retry or login) goes on with it instead of building it again
        self._retired: dict[HttpClient, aiohttp.ClientSession] = {}
        #: the settings of the config applied last
        self._kept: set[HttpClient | None] = set()
        self._closing: set[asyncio.Task[None]] = set()
        self._direct = Route(default)  # the route of every target without http_client, made once

    def session(self, client: HttpClient | None) -> aiohttp.ClientSession:
        if client is None:
            return self.default
        session = self._sessions.get(client)
        if session is None:
            retiring = self._retired.get(client)
            if retiring is not None and client not in self._kept and not retiring.closed:
                return retiring
            # the context was built while the config loaded: nothing is read from disk here
            session = self._factory(ssl_context(client.tls) if needs_context(client.tls) else True)
            self._sessions[client] = session
        return session

    def route(self, client: HttpClient | None, url: str) -> Route:
        if client is None:
            return self._direct
        session = self.session(client)
        kwargs: dict[str, Any] = {}
        if client.tls.server_name:
            kwargs["server_hostname"] = client.tls.server_name
        parts = urlsplit(url)
        proxy = client.proxy_for(parts.scheme, parts.hostname or "", parts.port)
        if proxy is None:
            return Route(session, kwargs)
        kwargs["proxy"] = proxy.url
        auth = proxy.authorization
        if parts.scheme == "https":
            # the tunnel: the proxy sees only CONNECT, with these headers
            headers: dict[str, str] = {name: ", ".join(values) for name, values in client.proxy_connect_header}
            if auth:
                headers["Proxy-Authorization"] = auth
            kwargs["proxy_headers"] = headers
            return Route(session, kwargs, {}, proxy.address)
        return Route(session, kwargs, {"Proxy-Authorization": auth} if auth else {}, proxy.address)

    def retire(self, keep: Iterable[HttpClient | None], grace: float) -> None:
        """Close, after ``grace`` seconds, the sessions of settings no target has any more."""
        keep_set = self._kept = set(keep)
        for client in [c for c in self._sessions if c not in keep_set]:
            session = self._retired[client] = self._sessions.pop(client)
            self._close_after(session, grace, client)

    def replace_default(self, session: aiohttp.ClientSession, grace: float) -> None:
        """New connection-pool settings: ``session`` becomes the default, and every session built with
        the old ones (the old default too) closes after ``grace``; the others are built again as needed."""
        old, self.default, self._direct = self.default, session, Route(session)
        kept = self._kept
        self.retire((), grace)
        self._kept = kept
        self._close_after(old, grace)

    def _close_after(self, session: aiohttp.ClientSession, grace: float, client: HttpClient | None = None) -> None:
        task = asyncio.create_task(self._close_later(session, grace), name="egress:retire")
        self._closing.add(task)

        def closed(done: asyncio.Task[None]) -> None:
            self._closing.discard(done)
            if client is not None and self._retired.get(client) is session:
                del self._retired[client]

        task.add_done_callback(closed)

    @staticmethod
    async def _close_later(session: aiohttp.ClientSession, grace: float) -> None:
        try:
            await asyncio.sleep(grace)
        finally:
            await session.close()

    async def close(self) -> None:
        """Close every session of its own (not the default one, which its owner closes)."""
        for task in list(self._closing):
            task.cancel()
        sessions, self._sessions = list(self._sessions.values()), {}
        await asyncio.gather(*self._closing, *(s.close() for s in sessions), return_exceptions=True)


class CertConnector(aiohttp.TCPConnector):
    """A TCPConnector that notes, per vendor host and port, the certificate expiry of the latest TLS
    connection it made. An answer cannot always tell its connection (aiohttp hands a connection back
    to the pool, or closes it, as soon as a small body is in), so the note is taken when the
    connection is made, in the connector's one hook for that, and read by host after the answer."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.cert_expiry: dict[tuple[str, int | None], float] = {}
        self._memo: dict[bytes, float] = {}

    async def _create_connection(self, req: ClientRequest, traces: list[Trace],
                                 timeout: aiohttp.ClientTimeout) -> ResponseHandler:
        proto = await super()._create_connection(req, traces, timeout)
        transport = proto.transport
        expiry = _expiry(transport.get_extra_info("ssl_object") if transport is not None else None, self._memo)
        if expiry is not None:
            if len(self.cert_expiry) >= 10000:  # bounded by the hosts configured; a guard, not a policy
                self.cert_expiry.clear()
            self.cert_expiry[(req.url.host or "", req.url.port)] = expiry
        return proto


def peer_cert_expiry(resp: aiohttp.ClientResponse, connector: aiohttp.BaseConnector | None) -> float | None:
    """The vendor certificate expiry for this answer: that of the latest handshake with its host,
    which is the one its connection made, or a newer one. A reused connection keeps the value.
    None for plain HTTP, and for sessions not built on a CertConnector."""
    if resp.url.scheme != "https" or not isinstance(connector, CertConnector):
        return None
    return connector.cert_expiry.get((resp.url.host or "", resp.url.port))


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
