"""The exporter's own HTTP endpoints: /metrics, /probe, the lifecycle endpoints and the status pages.

All HTTP lives here (routes, headers, gzip, limits); what a page or a JSON answer says is views.py's.
"""

from __future__ import annotations

import asyncio
import html
import logging
import resource
import ssl
from collections.abc import Awaitable, Callable, Iterable, Mapping
from dataclasses import dataclass, replace
from typing import Protocol

from aiohttp import web
from aiohttp.typedefs import Handler

from . import views
from .app import Exporter
from .collector import CHUNK_BYTES, CONTENT_TYPE, exposition, render_probe
from .state import TargetState

__all__ = ["EXPORTER_KEY", "ConnectionGuard", "GuardedSite", "ServerLimits", "accepts_gzip", "make_app",
           "max_connections_for"]

try:  # ISA-L's deflate: the same gzip as zlib's at its fastest level, several times faster (pyproject.toml)
    from isal import isal_zlib as deflate
except ImportError:  # a platform without its wheel: the standard library's zlib, slower
    import zlib as deflate  # type: ignore[no-redef]

log = logging.getLogger(__name__)
EXPORTER_KEY = web.AppKey("exporter", Exporter)
BODY_TIMEOUT_KEY = web.AppKey("body_timeout", float)
BANNER_KEY = web.AppKey("banner", str)


class WebConfigStatus(Protocol):
    """What the exporter's metrics show of the web config's re-reads (webconfig.watcher.Watcher)."""

    last_successful: bool
    failures: int


WEB_CONFIG_KEY = web.AppKey("web_config_status", WebConfigStatus)
#: requests to the exporter are small; anything larger is refused with 413 before it is read
MAX_REQUEST_BYTES = 16 * 1024
#: on /probe answers: "1" when answered from the target's latest result, "0" after a probe made for it
#: (the same as the apistatus_probe_cached sample, for a client that reads headers only, e.g. HEAD)
PROBE_CACHED_HEADER = "X-Apistatus-Cached"


def accepts_gzip(accept_encoding: str) -> bool:
    """Whether an Accept-Encoding header value admits gzip (RFC 9110, 12.5.3): ``gzip`` or ``x-gzip``
    with a non-zero q-value, else ``*`` with one; names are case-insensitive and ``gzip;q=0`` refuses
    it. A q-value that is not a number counts as a refusal: we never send what was not asked for."""
    named: float | None = None
    star: float | None = None
    for element in accept_encoding.split(","):
        coding, *params = (part.strip() for part in element.split(";"))
        coding = coding.lower()
        if coding not in ("gzip", "x-gzip", "*"):
            continue
        weight = 1.0
        for param in params:
            key, _, value = param.partition("=")
            if key.strip().lower() == "q":
                try:
                    weight = float(value.strip())
                except ValueError:
                    weight = 0.0
        weight = weight if 0.0 <= weight <= 1.0 else 0.0
        if coding == "*":
            star = weight if star is None else max(star, weight)
        else:
            named = weight if named is None else max(named, weight)
    chosen = named if named is not None else star
    return chosen is not None and chosen > 0


def _wants_gzip(request: web.Request) -> bool:
    return accepts_gzip(",".join(request.headers.getall("Accept-Encoding", [])))


#: below this an answer goes out as it is: gzip would save a packet at most
GZIP_MIN_BYTES = 1024

#: a large answer hands the loop back (probes run) once it has held it this long, not after every
#: piece: on a busy loop each hand-back waits a whole turn, and a scrape of many targets that handed
#: it back after every piece took seconds, keeping its snapshot's replaced renderings alive meanwhile
SLICE = 0.005


class _Slices:
    """Hands the event loop back once ``SLICE`` seconds have passed since it last did."""

    __slots__ = ("_loop", "_until")

    def __init__(self) -> None:
        self._loop = asyncio.get_running_loop()
        self._until = self._loop.time() + SLICE

    async def turn(self) -> None:
        if self._loop.time() >= self._until:
            await asyncio.sleep(0)
            self._until = self._loop.time() + SLICE


async def gzipped(pieces: Iterable[bytes | memoryview]) -> bytes:
    """One gzip member of the pieces, compressed one piece at a time on the event loop: ISA-L's
    deflate is quick enough that a piece takes well under a millisecond (it holds the GIL, so a
    thread would gain nothing), and probes run between slices of pieces. Level 1: the exposition text is
    so repetitive that the fastest level already shrinks it most of the way."""
    compressor = deflate.compressobj(1, deflate.DEFLATED, 16 + deflate.MAX_WBITS)
    out = []
    slices = _Slices()
    for piece in pieces:
        out.append(compressor.compress(piece))
        await slices.turn()
    out.append(compressor.flush())
    return b"".join(out)


async def _respond(request: web.Request, body: bytes, headers: Mapping[str, str]) -> web.Response:
    """A whole answer, gzipped when the client accepts it and it is worth it."""
    out = {**headers, "Vary": "Accept-Encoding"}
    if len(body) > GZIP_MIN_BYTES and _wants_gzip(request):
        view = memoryview(body)  # in pieces too: a page of many targets is megabytes
        body = await gzipped(view[i:i + CHUNK_BYTES] for i in range(0, len(body), CHUNK_BYTES))
        out["Content-Encoding"] = "gzip"
    return web.Response(body=body, headers=out)


async def metrics(request: web.Request) -> web.StreamResponse:
    exp = request.app[EXPORTER_KEY]
    status = exp.status()
    web_config = request.app.get(WEB_CONFIG_KEY)
    if web_config is not None:
        status = replace(status, web_config=(web_config.last_successful, web_config.failures))
    answer = exposition(exp.state, status, extra=exp.fault_metrics())
    headers = {"Content-Type": CONTENT_TYPE, "Vary": "Accept-Encoding"}
    if _wants_gzip(request):
        # the compressed answer is small enough to be held whole, and then its length is known
        body = await gzipped(answer)
        return web.Response(body=body, headers={**headers, "Content-Encoding": "gzip"})
    # Plain: streamed piece by piece with its length known up front (no chunked framing, which costs
    # a copy of every piece): a large scrape never holds a second copy of its whole text, and probes
    # run between the pieces.
    resp = web.StreamResponse(headers=headers)
    resp.content_length = answer.size
    await resp.prepare(request)
    try:
        if request.method != "HEAD":
            slices = _Slices()
            for piece in answer:
                await resp.write(piece)
                # write() waits only when the socket is full: to a reader as fast as loopback it never
                # does, and the whole answer would go out in one stall of the loop
                await slices.turn()
        await resp.write_eof()
    except ConnectionError:  # reset, broken pipe, or aiohttp's own for a closing transport
        # the scraper went away mid-answer (its scrape timeout, a restart): nothing is wrong here
        log.debug("%s %s: the client closed the connection mid-answer", request.method, request.path)
    return resp


async def probe(request: web.Request) -> web.Response:
    exp = request.app[EXPORTER_KEY]
    name = request.query.get("target", "")
    if not name:
        raise web.HTTPBadRequest(text="target parameter is missing\n")
    if exp.config.target(name) is None:
        # Only configured target names: /probe must never become a proxy to arbitrary URLs.
        shown = html.escape(name[:64])
        raise web.HTTPBadRequest(text=f"unknown target {shown!r}: /probe takes a configured target name\n")
    if _debug(request):
        return await _probe_debug(request, exp, name)
    # HEAD sends nothing upstream: it answers what a GET would answer from the latest result
    done = await exp.probe_now(name, call=request.method != "HEAD")
    if done is None:  # removed by a reload meanwhile
        raise web.HTTPNotFound(text=f"target {html.escape(name[:64])!r} is no longer configured\n")
    ts, cached = done
    return await _respond(request, render_probe(ts, cached), {
        "Content-Type": CONTENT_TYPE, "Cache-Control": "no-store", PROBE_CACHED_HEADER: "1" if cached else "0"})


def _debug(request: web.Request) -> bool:
    """blackbox_exporter's ``debug=true`` (Go's strconv.ParseBool spellings)."""
    value = request.query.get("debug", "")
    if value.lower() in ("", "0", "f", "false"):
        return False
    if value.lower() in ("1", "t", "true"):
        return True
    raise web.HTTPBadRequest(text=f"debug={html.escape(value[:16])!r}: debug takes true or false\n")


async def _probe_debug(request: web.Request, exp: Exporter, name: str) -> web.Response:
    """``/probe?target=NAME&debug=true``: the trace of a probe made now, under the same rules as any
    /probe (backoff, schedule, budget); when it may not call, the latest kept trace and why."""
    from .probe import FORCE_TRACE

    forced = FORCE_TRACE.set(True)  # the scheduler's on-demand task, made below, inherits it
    try:
        done = await exp.probe_now(name, call=request.method != "HEAD")
    finally:
        FORCE_TRACE.reset(forced)
    if done is None:
        raise web.HTTPNotFound(text=f"target {html.escape(name[:64])!r} is no longer configured\n")
    ts, cached = done
    why = "a HEAD request never calls the vendor" if request.method == "HEAD" else _why_cached(exp, ts)
    text = views.probe_debug_text(ts, not cached, why if cached else "")
    return await _respond(request, text.encode(), {"Content-Type": "text/plain; charset=utf-8",
                                                   "Cache-Control": "no-store",
                                                   PROBE_CACHED_HEADER: "1" if cached else "0"})


def _why_cached(exp: Exporter, ts: TargetState) -> str:
    """Why an on-demand probe did not call, as far as the state and the budget tell."""
    now = exp.clock.time()
    if ts.backoff and ts.next_probe_at > now:
        return f"the target is in backoff for {ts.next_probe_at - now:.0f}s more (after {ts.last.outcome.cls})" \
            if ts.last is not None else f"the target is in backoff for {ts.next_probe_at - now:.0f}s more"
    budget = exp.scheduler.budgets.limiter(ts.target) if exp.scheduler is not None else None
    if budget is not None and (wait := budget.wait(exp.clock.monotonic())) > 0:
        return f"the credential's request budget has no room for {wait:.1f}s"
    if ts.next_probe_at > now:
        return (f"the next planned probe is due in {ts.next_probe_at - now:.1f}s, and /probe never probes sooner "
                "than the schedule")
    return "the probe in flight sent nothing (its budget had no room after all, or a reload removed it)"


async def healthy(request: web.Request) -> web.Response:
    return web.Response(text="Healthy.\n")


async def ready(request: web.Request) -> web.Response:
    if request.app[EXPORTER_KEY].ready:
        return web.Response(text="Ready.\n")
    raise web.HTTPServiceUnavailable(text="Not ready.\n")


#: the content types a browser may send cross-site without asking first (a CORS "simple request"):
#: a form on any web page could otherwise make a visitor's browser reload the exporter
_SIMPLE_CONTENT_TYPES = frozenset({"application/x-www-form-urlencoded", "multipart/form-data", "text/plain"})


def _refuse_cross_site(request: web.Request) -> None:
    """A reload comes from curl, a config management tool or Kubernetes, never from a web page."""
    # Modern browsers mark every cross-site POST with Origin and Sec-Fetch-Site, a form's included
    site = request.headers.get("Sec-Fetch-Site", "").lower()
    origin = request.headers.get("Origin")
    if site in ("cross-site", "same-site") or (
            origin is not None and origin.split("://", 1)[-1].lower() != request.host.lower()):
        raise web.HTTPForbidden(text="/-/reload refuses requests from web pages of other origins\n")
    # and a form or text body is what a page can send without asking first; a reload takes no body.
    # (An empty one is let through: `curl -d ''` and urllib label an empty POST as a form.)
    ctype = request.headers.get("Content-Type")
    if (ctype is not None and ctype.split(";", 1)[0].strip().lower() in _SIMPLE_CONTENT_TYPES
            and (request.content_length or request.headers.get("Transfer-Encoding"))):
        raise web.HTTPUnsupportedMediaType(text="/-/reload takes no form or text body\n")


async def reload(request: web.Request) -> web.Response:
    _refuse_cross_site(request)
    ok, message = await request.app[EXPORTER_KEY].reload()
    if not ok:
        raise web.HTTPInternalServerError(text=f"failed to reload config: {message}\n")
    return web.Response(text=message + "\n")


@web.middleware
async def errors(request: web.Request, handler: Handler) -> web.StreamResponse:
    try:
        if request.body_exists:
            # No endpoint takes a body, so a handler would never read it and never hit the size cap:
            # reading it here refuses an oversized one (413, chunked too) before a reload runs.
            try:
                async with asyncio.timeout(request.app.get(BODY_TIMEOUT_KEY, 10.0)):
                    await request.read()
            except TimeoutError:
                raise web.HTTPRequestTimeout(text="request body too slow\n") from None
        response: web.StreamResponse = await handler(request)
        return response
    except web.HTTPException:
        raise
    except Exception as exc:  # noqa: BLE001 - one line, never a traceback to the client
        log.error("%s %s failed: %s", request.method, request.path, exc.__class__.__name__)
        raise web.HTTPInternalServerError(text="internal error\n") from None


class _OneLineServerErrors(logging.Filter):
    """aiohttp logs a malformed request with a traceback and a slice of the raw request, which may
    hold a credential: keep one line naming the error's kind only."""

    def filter(self, record: logging.LogRecord) -> bool:
        if record.exc_info and record.exc_info[1] is not None:
            kind = record.exc_info[1].__class__.__name__
            record.rate_key = f"{record.msg}: {kind}"  # one kind for every client (see log.RateLimitFilter)
            record.msg, record.args = f"{record.getMessage()}: {kind}", None
            record.exc_info, record.exc_text = None, None
            if record.levelno > logging.WARNING:
                record.levelno, record.levelname = logging.WARNING, "WARNING"
        return True


_SERVER_LOG_FILTER = _OneLineServerErrors()


def make_app(exporter: Exporter, prefix: str = "", banner: str = "") -> web.Application:
    """``prefix`` (``/a/b`` or empty): every route is under it, as ``--web.route-prefix`` asks; the
    pages link relatively, so they work under any prefix and behind a proxy that strips it.
    ``banner``: a notice at the top of every page (the demo's)."""
    logging.getLogger("aiohttp.server").addFilter(_SERVER_LOG_FILTER)
    app = web.Application(client_max_size=MAX_REQUEST_BYTES, middlewares=[_in_progress, errors])
    app[EXPORTER_KEY] = exporter
    app[BANNER_KEY] = banner
    app.router.add_get(prefix + "/metrics", metrics)
    app.router.add_get(prefix + "/probe", probe)
    app.router.add_get(prefix + "/-/healthy", healthy)
    app.router.add_get(prefix + "/-/ready", ready)
    app.router.add_post(prefix + "/-/reload", reload)
    app.router.add_put(prefix + "/-/reload", reload)
    _add_pages(app, prefix)
    if prefix:
        # as Prometheus: the root and the bare prefix lead to the status page (the slash matters: its
        # links are relative)
        async def to_prefix(request: web.Request) -> web.StreamResponse:
            raise web.HTTPFound(prefix + "/")

        app.router.add_get("/", to_prefix)
        app.router.add_get(prefix, to_prefix)
    return app


# --- the status pages and their JSON ---------------------------------------------------------------

_PAGE_HEADERS = {
    "Content-Type": "text/html; charset=utf-8",
    # no scripts at all, and only the page's own stylesheet (by its hash) inline
    "Content-Security-Policy": f"default-src 'none'; style-src 'sha256-{views.STYLE_SHA256}'; img-src 'self' data:; "
                               "base-uri 'none'; form-action 'none'; frame-ancestors 'none'",
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    "Cache-Control": "no-store",
}
_JSON_HEADERS = {"Content-Type": "application/json", "Cache-Control": "no-store"}


def _refresh(request: web.Request, default: int) -> views.Refresh:
    try:
        return views.parse_refresh(request.query.get("refresh"), default)
    except views.RefreshError as exc:
        raise web.HTTPBadRequest(text=f"{exc}\n") from None


def _target(request: web.Request, api: bool) -> TargetState:
    name = request.match_info["name"]
    ts = request.app[EXPORTER_KEY].state.get(name)
    if ts is None:
        raise web.HTTPNotFound(text=views.unknown_target(name, api),
                               content_type="application/json" if api else "text/plain")
    return ts


async def status_page(request: web.Request) -> web.Response:
    exp = request.app[EXPORTER_KEY]
    targets = list(exp.state)
    refresh = _refresh(request, views.default_refresh(targets))
    body = views.with_banner(views.status_page(targets, exp.clock.time(), refresh, _fault(exp)),
                             request.app.get(BANNER_KEY, ""))
    return await _respond(request, body, _PAGE_HEADERS)


async def target_page(request: web.Request) -> web.Response:
    ts = _target(request, api=False)
    refresh = _refresh(request, views.default_refresh([ts]))
    if "refresh" not in request.query:
        refresh = views.Refresh(0, refresh.default)  # off by default: a reload would fold the excerpt being read
    body = views.target_page(ts, request.app[EXPORTER_KEY].clock.time(), refresh, _fault(request.app[EXPORTER_KEY]))
    return await _respond(request, views.with_banner(body, request.app.get(BANNER_KEY, "")), _PAGE_HEADERS)


async def api_targets(request: web.Request) -> web.Response:
    exp = request.app[EXPORTER_KEY]
    return await _respond(request, views.api_targets(exp.state, exp.clock.time(), _fault(exp)), _JSON_HEADERS)


async def api_target(request: web.Request) -> web.Response:
    ts = _target(request, api=True)
    exp = request.app[EXPORTER_KEY]
    return await _respond(request, views.api_target(ts, exp.clock.time(), _fault(exp)), _JSON_HEADERS)


def _fault(exp: Exporter) -> views.Fault:
    """Is it us or them: the vendors' own status pages and our egress, for the pages."""
    checks = exp.egress_checks.checks.values() if exp.egress_checks is not None else ()
    return views.Fault(exp.vendor_view, views.egress_rows(checks, exp.suspicions()))


def _add_pages(app: web.Application, prefix: str = "") -> None:
    app.router.add_get(prefix + "/", status_page)
    app.router.add_get(prefix + "/targets/{name}", target_page)
    app.router.add_get(prefix + "/api/v1/targets", api_targets)
    app.router.add_get(prefix + "/api/v1/targets/{name}", api_target)
# --- the server's own limits: slow and idle clients, connection cap ----------------------------------
# aiohttp's server has an idle keep-alive timeout but no limit on the time a client may take to send
# its request headers, and no cap on connections: 300 idle sockets take every file descriptor, and the
# probes (which need sockets of their own) then fail as "network_error/connect". What follows adds
# both, around aiohttp's own protocol (which only sees a connection open, bytes arrive and close) and
# in one middleware (which sees a request start and end), with aiohttp's documented API alone.

#: file descriptors kept free besides the probes' sockets: stdio, the listening sockets, the event
#: loop, log and secret files, DNS look-ups in threads
FD_RESERVE = 64
#: never fewer client connections than this (a very low fd limit leaves the probes less headroom)
MIN_CONNECTIONS = 8
#: never more: the exporter's clients are a few Prometheus servers and people; more is a flood
MAX_CONNECTIONS = 1024


def max_connections_for(max_concurrency: int, nofile: int | None = None) -> int:
    """``RLIMIT_NOFILE - 2 * max_concurrency - FD_RESERVE``, within [MIN_CONNECTIONS, MAX_CONNECTIONS].
    Each probe in flight holds a socket and the pool keeps up to about as many idle ones for reuse,
    hence twice ``max_concurrency``."""
    if nofile is None:
        soft = resource.getrlimit(resource.RLIMIT_NOFILE)[0]
        nofile = MAX_CONNECTIONS * 4 if soft == resource.RLIM_INFINITY else soft
    return max(MIN_CONNECTIONS, min(MAX_CONNECTIONS, nofile - 2 * max_concurrency - FD_RESERVE))


@dataclass(frozen=True, slots=True)
class ServerLimits:
    #: from accepting a connection (or from the first byte of a later request on it) to the end of
    #: the request headers
    header_timeout: float = 10.0
    #: a kept-alive connection with no request in flight is closed after this
    idle_timeout: float = 30.0
    #: reading a request body (no endpoint takes one; the cap on its size is MAX_REQUEST_BYTES)
    body_timeout: float = 10.0
    #: 0: derived from RLIMIT_NOFILE and max_concurrency at each new connection (max_connections_for)
    max_connections: int = 0


class ConnectionGuard:
    """The exporter's client connections: counted, capped, and timed while they send headers. At the
    cap a new connection takes the place of the longest-connected one that has no request in progress
    (idle, or still sending headers); only when every one is busy is the new one refused. So a flood of
    idle or slow sockets cannot lock out a client that sends its request promptly."""

    def __init__(self, limits: ServerLimits, max_concurrency: Callable[[], int]) -> None:
        self.limits = limits
        self._max_concurrency = max_concurrency
        self._conns: dict[_GuardedConnection, None] = {}  # insertion order: oldest first

    def cap(self) -> int:
        return self.limits.max_connections or max_connections_for(self._max_concurrency())

    def __len__(self) -> int:
        return len(self._conns)

    def busy(self) -> int:
        """The connections that would not be closed for a newcomer: a request in progress."""
        return sum(1 for conn in self._conns if not conn.idle())

    def admit(self, conn: _GuardedConnection) -> bool:
        cap = self.cap()
        while len(self._conns) >= cap:
            victim = next((other for other in self._conns if other.idle()), None)
            if victim is None:
                log.warning("%d client connections, all busy: refused a new one", cap)
                return False
            self._conns.pop(victim, None)
            log.warning("%d client connections: closed the oldest one without a request in progress", cap)
            victim.close()
        self._conns[conn] = None
        return True

    def forget(self, conn: _GuardedConnection) -> None:
        self._conns.pop(conn, None)


#: the guarded connections open now, by their transport: the ``_in_progress`` middleware finds a
#: request's connection by ``request.transport`` (aiohttp's public view of it)
_LIVE: dict[asyncio.BaseTransport, _GuardedConnection] = {}


class _GuardedConnection(asyncio.Protocol):
    """One client connection: aiohttp's own protocol inside (made by the runner's ``web.Server``, the
    protocol factory aiohttp documents for ``loop.create_server``), and around it the guard's count,
    the cap and the header timer. What happens inside is aiohttp's; this only sees the connection
    open and close, bytes arrive, and (through the middleware) a request start and end."""

    def __init__(self, inner: asyncio.Protocol, guard: ConnectionGuard) -> None:
        self._inner = inner
        self._guard = guard
        self._transport: asyncio.Transport | None = None
        self._requests = 0  # being handled now
        self._header_timer: asyncio.TimerHandle | None = None

    def idle(self) -> bool:
        """No request being handled and nothing of an answer left to send: only then may the
        connection be closed for another."""
        if self._requests:
            return False
        return self._transport is None or self._transport.get_write_buffer_size() == 0

    def close(self) -> None:
        if self._transport is not None:
            self._transport.close()

    def request_started(self) -> None:
        self._requests += 1
        if self._header_timer is not None:
            self._header_timer.cancel()  # the headers are complete: the handler takes it from here
            self._header_timer = None

    def request_ended(self) -> None:
        self._requests -= 1

    def _arm(self) -> None:
        loop = asyncio.get_running_loop()
        self._header_timer = loop.call_later(self._guard.limits.header_timeout, self._headers_late)

    def _headers_late(self) -> None:
        self._header_timer = None
        if self.idle():
            log.warning("closed a client connection that sent no complete request headers within %gs",
                        self._guard.limits.header_timeout)
            self.close()

    def accepted(self, transport: asyncio.Transport) -> bool:
        """A TLS connection, counted and timed from its TCP accept: its handshake is part of the time it
        has to send its request headers (as Go's server times it), and a flood of handshakes that never
        end takes its place among the connections like any other. False: refused."""
        self._transport = transport
        if not self._guard.admit(self):
            return False
        self._arm()
        return True

    def abandon(self) -> None:
        """The TLS handshake failed or the client left during it: no longer counted."""
        if self._header_timer is not None:
            self._header_timer.cancel()
            self._header_timer = None
        self._guard.forget(self)

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        counted = self._transport is not None  # TLS: since the TCP accept (``accepted``)
        self._transport = transport
        _LIVE[transport] = self
        self._inner.connection_made(transport)
        if counted:
            return
        if self._guard.admit(self):
            self._arm()
        else:
            self.close()

    def data_received(self, data: bytes) -> None:
        if self._header_timer is None and self.idle():
            self._arm()  # the first bytes of a request, or of a further one on a kept-alive connection
        self._inner.data_received(data)

    def eof_received(self) -> bool | None:
        return self._inner.eof_received()

    def pause_writing(self) -> None:
        self._inner.pause_writing()

    def resume_writing(self) -> None:
        self._inner.resume_writing()

    def connection_lost(self, exc: Exception | None) -> None:
        if self._header_timer is not None:
            self._header_timer.cancel()
            self._header_timer = None
        self._guard.forget(self)
        if self._transport is not None:
            _LIVE.pop(self._transport, None)
        self._inner.connection_lost(exc)


@web.middleware
async def _in_progress(request: web.Request, handler: Handler) -> web.StreamResponse:
    """Tells the request's guarded connection (if it has one) that a request is in progress."""
    conn = _LIVE.get(request.transport) if request.transport is not None else None
    if conn is None:
        return await handler(request)
    conn.request_started()
    try:
        return await handler(request)
    finally:
        conn.request_ended()


class _TLSWhenCurrent(asyncio.Protocol):
    """A TLS connection whose handshake waits until the web config is current: the context is awaited
    (a changed file is re-read off the event loop), then ``loop.start_tls`` does the handshake. The
    request handler sees the connection once the handshake is done, as with a plain TLS server."""

    def __init__(self, make_handler: Callable[[], _GuardedConnection],
                 context: Callable[[], Awaitable[ssl.SSLContext]]) -> None:
        self._make_handler = make_handler
        self._context = context
        self._transport: asyncio.Transport | None = None
        self._task: asyncio.Task[None] | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self._transport = transport
        transport.pause_reading()  # the ClientHello waits for the context
        self._task = asyncio.get_running_loop().create_task(self._start(transport))

    async def _start(self, transport: asyncio.Transport) -> None:
        handler = self._make_handler()
        if not handler.accepted(transport):
            transport.abort()
            return
        try:
            ctx = await self._context()
            tls_transport = await asyncio.get_running_loop().start_tls(transport, handler, ctx, server_side=True)
        except asyncio.CancelledError:  # the client left while the config was read
            handler.abandon()
            transport.abort()
            raise
        except Exception:  # noqa: BLE001 - a failed handshake, a client gone, or one too slow (closed)
            handler.abandon()
            transport.abort()
            return
        if tls_transport is None:
            handler.abandon()
            transport.abort()
            return
        handler.connection_made(tls_transport)

    def connection_lost(self, exc: BaseException | None) -> None:
        # only before start_tls took the transport over: the client left while the config was read
        if self._task is not None and not self._task.done():
            self._task.cancel()


class GuardedSite:
    """A listening socket whose connections go through a ConnectionGuard to the runner's application.
    Made with ``loop.create_server`` and the runner's documented ``server`` (aiohttp's protocol
    factory), so it is not one of the runner's sites: ``stop()`` it before ``runner.cleanup()``, which
    then ends the connections it accepted."""

    def __init__(self, runner: web.BaseRunner, host: str | None, port: int, *, guard: ConnectionGuard,
                 ssl_context: ssl.SSLContext | None = None, backlog: int = 128) -> None:
        self.runner = runner
        self.host = host
        self.port = port  # the bound port once started (port 0 asks the system for one)
        self.guard = guard
        self.ssl_context = ssl_context
        self.backlog = backlog
        self.listener: asyncio.Server | None = None

    async def start(self) -> None:
        loop = asyncio.get_running_loop()
        server = self.runner.server
        assert server is not None, "runner.setup() first"
        guard = self.guard

        def factory() -> _GuardedConnection:
            return _GuardedConnection(server(), guard)

        ssl_context = self.ssl_context
        for_connection = getattr(ssl_context, "for_connection", None)  # the web config's (webconfig.watcher)
        if for_connection is not None:
            def tls_factory() -> _TLSWhenCurrent:
                return _TLSWhenCurrent(factory, for_connection)

            self.listener = await loop.create_server(tls_factory, self.host, self.port, backlog=self.backlog)
        else:
            self.listener = await loop.create_server(factory, self.host, self.port, ssl=ssl_context,
                                                     backlog=self.backlog)
        if self.listener.sockets:
            self.port = self.listener.sockets[0].getsockname()[1]

    def stop(self) -> None:
        """Stop accepting connections (those open are the runner's to end)."""
        if self.listener is not None:
            self.listener.close()
            self.listener = None
