"""Where a request goes out: one HTTP client (``http1.Client``, its session) per distinct
``http_client`` setting, and the route of each request (proxy or direct, CONNECT headers, SNI name).

Targets without ``http_client`` use the exporter's shared session, exactly as before the block
existed; targets with equal settings share one session (and its connection pool), so a thousand
targets behind one corporate proxy cost one pool, not a thousand.
"""

from __future__ import annotations

import asyncio
import ssl
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from urllib.parse import urlsplit

from .http1 import USER_AGENT, Client, Resolver
from .httpclient import HttpClient, needs_context, ssl_context

__all__ = ["Egress", "Route", "SessionFactory", "new_session"]

#: builds a session for one TLS context (``True``: the system's default verification)
SessionFactory = Callable[[ssl.SSLContext | bool], Client]


def new_session(ctx: ssl.SSLContext | bool = True, *, limit: int = 100, keepalive: bool = True,
                resolver: Resolver | None = None) -> Client:
    """The one way a session is made (the exporter's, every http_client setting's, and a bare
    Prober's alike). Connections are reused per vendor host. No cookies: a health check must not
    carry state from one probe to the next."""
    return Client(ctx, limit=limit, keepalive=keepalive, resolver=resolver, headers={"User-Agent": USER_AGENT})


@dataclass(frozen=True, slots=True)
class Route:
    """How one request is sent: the session, and what the route adds to the request."""

    session: Client
    #: the TLS name (SNI and verification) when it is not the URL's host
    server_hostname: str | None = None
    #: extra request headers (Proxy-Authorization for a plain-HTTP request through a proxy)
    headers: Mapping[str, str] = field(default_factory=dict)
    #: (host, port) of the proxy when the request goes through one
    proxy_addr: tuple[str, int] | None = None
    #: the headers of the CONNECT request (an HTTPS target through a proxy)
    proxy_headers: Mapping[str, str] | None = None
    #: the proxy is an https:// one: TLS to the proxy itself
    proxy_tls: bool = False


class Egress:
    """The sessions by settings. ``retire`` after a reload closes those no target uses any more, once
    requests still in flight on them have had time to finish."""

    def __init__(self, default: Client, factory: SessionFactory) -> None:
        self.default = default
        self._factory = factory
        self._sessions: dict[HttpClient, Client] = {}
        #: sessions of settings a reload dropped, until they close: a probe still in flight on one
        #: (its quota call, auth retry or login) goes on with it instead of building it again
        self._retired: dict[HttpClient, Client] = {}
        #: the settings of the config applied last
        self._kept: set[HttpClient | None] = set()
        self._closing: set[asyncio.Task[None]] = set()
        self._direct = Route(default)  # the route of every target without http_client, made once

    def session(self, client: HttpClient | None) -> Client:
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
        sni = client.tls.server_name or None
        parts = urlsplit(url)
        proxy = client.proxy_for(parts.scheme, parts.hostname or "", parts.port)
        if proxy is None:
            return Route(session, sni)
        auth = proxy.authorization
        if parts.scheme == "https":
            # the tunnel: the proxy sees only CONNECT, with these headers
            headers: dict[str, str] = {name: ", ".join(values) for name, values in client.proxy_connect_header}
            if auth:
                headers["Proxy-Authorization"] = auth
            return Route(session, sni, {}, proxy.address, headers, proxy.url.startswith("https:"))
        return Route(session, sni, {"Proxy-Authorization": auth} if auth else {}, proxy.address, None,
                     proxy.url.startswith("https:"))

    def retire(self, keep: Iterable[HttpClient | None], grace: float) -> None:
        """Close, after ``grace`` seconds, the sessions of settings no target has any more."""
        keep_set = self._kept = set(keep)
        for client in [c for c in self._sessions if c not in keep_set]:
            session = self._retired[client] = self._sessions.pop(client)
            self._close_after(session, grace, client)

    def replace_default(self, session: Client, grace: float) -> None:
        """New connection-pool settings: ``session`` becomes the default, and every session built with
        the old ones (the old default too) closes after ``grace``; the others are built again as needed."""
        old, self.default, self._direct = self.default, session, Route(session)
        kept = self._kept
        self.retire((), grace)
        self._kept = kept
        self._close_after(old, grace)

    def _close_after(self, session: Client, grace: float, client: HttpClient | None = None) -> None:
        task = asyncio.create_task(self._close_later(session, grace), name="egress:retire")
        self._closing.add(task)

        def closed(done: asyncio.Task[None]) -> None:
            self._closing.discard(done)
            if client is not None and self._retired.get(client) is session:
                del self._retired[client]

        task.add_done_callback(closed)

    @staticmethod
    async def _close_later(session: Client, grace: float) -> None:
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
