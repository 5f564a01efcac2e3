"""The exporter's own endpoints locked down by an exporter-toolkit web config file (``--web.config.file``).

The file, and what each key does, are exporter-toolkit's
(https://github.com/prometheus/exporter-toolkit/blob/master/docs/web-configuration.md): a file that
works for node_exporter works here, with the same effect, and a file it refuses is refused here with
one line naming the file and the key path. Where this differs, it is stricter, and docs/security.md
says why: settings Python's ``ssl`` cannot make are refused, a re-read that fails keeps the running
settings, bcrypt costs and password lengths are capped.

One module a job: ``goyaml`` (values as Go's yaml.v2 reads them), ``schema`` (the keys and their
checks), ``auth`` (basic auth and bcrypt), ``ratelimit``, ``tls`` (the TLS context), ``watcher`` (the
re-read); this module puts them in front of the application.
"""

from __future__ import annotations

import logging
import ssl
from pathlib import Path

from aiohttp import web
from aiohttp.typedefs import Handler, Middleware

from ..clock import Clock, SystemClock
from .auth import AuthBusy, BasicAuth, validate_users
from .goyaml import WebConfigError
from .ratelimit import RateLimiter
from .schema import TLS_VERSIONS, TLSSettings, WebConfig, load_web_config, parse_web_config
from .tls import build_tls_context, cert_sans, startup_checks
from .watcher import ReloadingContext, Snapshot, Watcher, read_snapshot

__all__ = ["TLS_VERSIONS", "WATCHER_KEY", "BasicAuth", "RateLimiter", "ReloadingContext", "WebConfig",
           "WebConfigError", "apply_web_config", "build_tls_context", "cert_sans", "load_web_config",
           "parse_web_config", "validate_web_config"]

log = logging.getLogger(__name__)

#: the running web config's watcher, for the exporter's own metrics
WATCHER_KEY = web.AppKey("web_config_watcher", Watcher)
_HEADERS_KEY = web.RequestKey("webconfig_headers", tuple)


def _middleware(watcher: Watcher, auth: BasicAuth, limiter: RateLimiter | None) -> Middleware:
    @web.middleware
    async def web_config(request: web.Request, handler: Handler) -> web.StreamResponse:
        # the toolkit's order: config, rate limit (429), headers, basic auth (401), the endpoint
        cfg = (await watcher.snapshot()).config
        if limiter is not None and not limiter.allow():
            return web.Response(status=429, text="Too Many Requests\n")
        request[_HEADERS_KEY] = cfg.headers
        if cfg.users:
            try:
                ok = await auth.check(cfg.users, request.headers.get("Authorization", ""))
            except AuthBusy:
                return web.Response(status=503, text="Service Unavailable: too many password checks waiting\n",
                                    headers={"Retry-After": "1"})
            if not ok:
                return web.Response(status=401, text="Unauthorized\n", headers={"WWW-Authenticate": "Basic"})
        return await handler(request)

    return web_config


async def _add_headers(request: web.Request, response: web.StreamResponse) -> None:
    # set before the endpoint in Go, so an endpoint's own value (the pages' CSP) wins
    for name, value in request.get(_HEADERS_KEY, ()):
        response.headers.setdefault(name, value)


def validate_web_config(path: Path) -> WebConfig:
    """The toolkit's Validate: the file, its users' hashes and (when TLS is on) its certificates."""
    cfg = load_web_config(path)
    validate_users(cfg)
    if cfg.tls.enabled:
        startup_checks(cfg)
        build_tls_context(cfg)
    return cfg


def apply_web_config(app: web.Application, path: Path, clock: Clock | None = None) -> ssl.SSLContext | None:
    """Validate the file, put the toolkit's checks in front of every endpoint, and return the TLS
    context to listen with (None: plain HTTP, as the toolkit when the file turns no TLS on). Blocking:
    called at start, before the exporter serves."""
    first: Snapshot = read_snapshot(path)
    cfg = first.config
    if cfg.tls.enabled:
        startup_checks(cfg)
    if not cfg.tls.enabled and cfg.tls != TLSSettings():
        log.warning("%s: tls_server_config sets no certificate, key, client CA or client_auth_type: serving "
                    "plain HTTP, as exporter-toolkit does", path)
    limiter = None
    if cfg.rate_interval != 0:
        if cfg.rate_burst <= 0 and cfg.rate_interval > 0:
            log.warning("%s: rate_limit.burst is %d: every request is refused with 429, as exporter-toolkit "
                        "does", path, cfg.rate_burst)
        limiter = RateLimiter(cfg.rate_interval, cfg.rate_burst, clock or SystemClock())
    watcher = Watcher(path, first)
    app[WATCHER_KEY] = watcher
    app.middlewares.insert(0, _middleware(watcher, BasicAuth(), limiter))
    app.on_response_prepare.append(_add_headers)
    if first.tls is None:
        return None
    outer = ReloadingContext(ssl.PROTOCOL_TLS_SERVER)
    outer.watcher = watcher
    return outer
