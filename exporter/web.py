"""The exporter's own HTTP endpoints."""

from __future__ import annotations

import asyncio
import gzip
import html
import logging
import zlib

from aiohttp import web
from aiohttp.typedefs import Handler

from .app import Exporter
from .collector import CONTENT_TYPE, exposition_chunks, render_exposition
from .pages import setup_pages

__all__ = ["EXPORTER_KEY", "make_app"]

log = logging.getLogger(__name__)
EXPORTER_KEY = web.AppKey("exporter", Exporter)
#: requests to the exporter are small; anything larger is refused with 413 before it is read
MAX_REQUEST_BYTES = 16 * 1024


async def metrics(request: web.Request) -> web.StreamResponse:
    exp = request.app[EXPORTER_KEY]
    chunks = exposition_chunks(exp.state, exp.info)
    gzipped = "gzip" in request.headers.get("Accept-Encoding", "")
    resp = web.StreamResponse(headers={"Content-Type": CONTENT_TYPE})
    if gzipped:
        resp.headers["Content-Encoding"] = "gzip"
    # Streamed piece by piece: a scrape of 10,000 targets never holds a second copy of its 34 MB of
    # text, and probes run between the pieces. gzip level 1: the text compresses ~20x even so.
    z = zlib.compressobj(1, zlib.DEFLATED, 31) if gzipped else None
    await resp.prepare(request)
    for chunk in chunks:
        data = z.compress(chunk) if z is not None else chunk
        if data:
            await resp.write(data)
    if z is not None:
        await resp.write(z.flush())
    await resp.write_eof()
    return resp


async def _maybe_gzip(request: web.Request, body: bytes) -> web.Response:
    if "gzip" in request.headers.get("Accept-Encoding", "") and len(body) > 1024:
        # level 1: scrapes are frequent and the text compresses well even at the fastest level
        # in a thread, which zlib lets run beside the event loop: compressing 10,000 targets' answer
        # takes tens of milliseconds that would otherwise delay every probe in flight
        zipped = await asyncio.get_running_loop().run_in_executor(None, gzip.compress, body, 1)
        return web.Response(body=zipped, headers={"Content-Type": CONTENT_TYPE, "Content-Encoding": "gzip"})
    return web.Response(body=body, headers={"Content-Type": CONTENT_TYPE})


async def probe(request: web.Request) -> web.Response:
    exp = request.app[EXPORTER_KEY]
    name = request.query.get("target", "")
    if not name:
        raise web.HTTPBadRequest(text="target parameter is missing\n")
    if exp.config.target(name) is None:
        # Only configured target names: /probe must never become a proxy to arbitrary URLs.
        shown = html.escape(name[:64])
        raise web.HTTPBadRequest(text=f"unknown target {shown!r}: /probe takes a configured target name\n")
    done = await exp.probe_now(name)
    assert done is not None
    return await _maybe_gzip(request, render_exposition([done[1]], None, process=False))


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
    ctype = request.headers.get("Content-Type")
    if ctype is not None and ctype.split(";", 1)[0].strip().lower() in _SIMPLE_CONTENT_TYPES:
        raise web.HTTPUnsupportedMediaType(text="/-/reload takes no form or text body\n")
    # A body-less fetch(..., {mode: "no-cors"}) is a simple request too; browsers mark it as cross-site
    site = request.headers.get("Sec-Fetch-Site", "").lower()
    origin = request.headers.get("Origin")
    if site in ("cross-site", "same-site") or (
            origin is not None and origin.split("://", 1)[-1].lower() != request.host.lower()):
        raise web.HTTPForbidden(text="/-/reload refuses requests from web pages of other origins\n")


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
            await request.read()
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
            record.msg, record.args = f"{record.getMessage()}: {kind}", None
            record.exc_info, record.exc_text = None, None
            if record.levelno > logging.WARNING:
                record.levelno, record.levelname = logging.WARNING, "WARNING"
        return True


_SERVER_LOG_FILTER = _OneLineServerErrors()


def make_app(exporter: Exporter) -> web.Application:
    logging.getLogger("aiohttp.server").addFilter(_SERVER_LOG_FILTER)
    app = web.Application(client_max_size=MAX_REQUEST_BYTES, middlewares=[errors])
    app[EXPORTER_KEY] = exporter
    app.router.add_get("/metrics", metrics)
    app.router.add_get("/probe", probe)
    app.router.add_get("/-/healthy", healthy)
    app.router.add_get("/-/ready", ready)
    app.router.add_post("/-/reload", reload)
    app.router.add_put("/-/reload", reload)
    setup_pages(app, exporter)
    return app
