"""The web config as of now: re-read when a ``stat`` says the file (or a certificate, key or CA file it
names) changed, as exporter-toolkit re-reads it for every request and every new TLS connection.

The read, the parse and the TLS context are made in a daemon thread, never on the event loop, with the
main config's file rules (a regular file, size-capped, within the read timeout), so a FIFO or a hung
mount in its place cannot stall ``/-/healthy`` or the probes. Requests and connections that arrive
meanwhile wait for that one re-read. Unlike the toolkit (which answers 500 until a broken file is
fixed), a re-read that fails, or that parses to nothing (an editor rewriting the file in place), never
replaces what is running: the previous settings stay, one error line is logged per change of the
files, and ``apistatus_web_config_reload_failures_total`` counts it.
"""

from __future__ import annotations

import asyncio
import logging
import os
import ssl
import stat
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..offloop import in_daemon_thread
from .auth import validate_users
from .goyaml import WebConfigError
from .schema import WebConfig, load_web_config
from .tls import ServerContext, build_tls_context

__all__ = ["ReloadingContext", "Snapshot", "Watcher"]

log = logging.getLogger("exporter.webconfig")


def _signature(paths: tuple[Path, ...]) -> tuple[Any, ...]:
    out: list[Any] = []
    for path in paths:
        try:
            st = os.stat(path)  # a stat does not block on a FIFO or a device, unlike an open
        except (OSError, ValueError) as exc:
            out.append((str(path), getattr(exc, "errno", None)))
            continue
        out.append((st.st_dev, st.st_ino, st.st_size, st.st_mtime_ns, st.st_ctime_ns, stat.S_IFMT(st.st_mode)))
    return tuple(out)


@dataclass(frozen=True, slots=True)
class Snapshot:
    """One good reading of the files: the settings, and the TLS context when TLS is on."""

    config: WebConfig
    tls: ServerContext | None


def read_snapshot(path: Path, with_tls: bool | None = None, allow_empty: bool = True) -> Snapshot:
    """The files read and checked as at start (users' hashes, the TLS context); ``with_tls``: whether
    TLS was on at start (None: as the file says). Blocking."""
    cfg = load_web_config(path, allow_empty)
    validate_users(cfg)
    if with_tls is None:
        with_tls = cfg.tls.enabled
    if not with_tls:
        return Snapshot(cfg, None)
    if not cfg.tls.enabled:
        raise WebConfigError(str(path), "tls_server_config", "TLS was on at start and is now missing (TLS is "
                             "turned on or off only by a restart, as in exporter-toolkit)")
    return Snapshot(cfg, build_tls_context(cfg))


class Watcher:
    def __init__(self, path: Path, first: Snapshot) -> None:
        self.path = path
        self.current = first
        self._with_tls = first.tls is not None
        self._sig = self._signature(first.config)
        self._reading: asyncio.Task[None] | None = None
        self._logged: str | None = None
        #: re-reads refused (the previous settings kept), and whether the latest one succeeded
        self.failures = 0
        self.last_successful = True

    def _signature(self, cfg: WebConfig) -> tuple[Any, ...]:
        return _signature((self.path, *cfg.tls.files()))

    def stale(self) -> bool:
        return self._signature(self.current.config) != self._sig

    async def snapshot(self) -> Snapshot:
        """The settings as of now: re-read first when a file changed."""
        if self.stale():
            if self._reading is None or self._reading.done():
                self._reading = asyncio.create_task(self._reread(), name="web-config-reread")
            await asyncio.shield(self._reading)  # one re-read, however many requests wait for it
        return self.current

    def refresh_soon(self) -> None:
        """From code that cannot wait (a handshake begun synchronously): re-read in the background."""
        if self.stale() and (self._reading is None or self._reading.done()):
            self._reading = asyncio.get_running_loop().create_task(self._reread(), name="web-config-reread")

    async def _reread(self) -> None:
        before = self._sig

        def work() -> tuple[Snapshot | WebConfigError, tuple[Any, ...]]:
            # the signature is taken before the read: a change during it is seen next time
            sig = self._signature(self.current.config)
            try:
                snap = read_snapshot(self.path, self._with_tls, allow_empty=False)
            except WebConfigError as exc:
                return exc, sig
            except Exception as exc:  # noqa: BLE001 - a bug here must not turn every request into a 500
                # the class only: the exception's text may quote the file (a hash, an inline key)
                return WebConfigError(str(self.path), "", f"cannot be re-read ({exc.__class__.__name__})"), sig
            return snap, (sig[0], *_signature(snap.config.tls.files()))

        result, sig = await in_daemon_thread(work, "web-config-read")
        if self._sig != before:
            return  # another re-read finished meanwhile
        self._sig = sig
        if isinstance(result, Snapshot):
            self.current, self.last_successful, self._logged = result, True, None
            log.info("web config %s re-read", self.path)
            return
        self.failures += 1
        self.last_successful = False
        message = str(result)
        if message != self._logged:  # once per change of the files, not once per request
            self._logged = message
            log.error("%s (web config not re-read: the previous settings stay in force)", message)


class ReloadingContext(ssl.SSLContext):
    """Handed to the listening socket. ``GuardedSite`` (web.py) awaits ``watcher.snapshot()`` before each
    handshake, so a renewed certificate is served to the very next connection (Go's
    GetConfigForClient); any other server gets the context as of now, refreshed in the background."""

    watcher: Watcher

    async def for_connection(self) -> ssl.SSLContext:
        ctx = (await self.watcher.snapshot()).tls
        assert ctx is not None
        return ctx

    def wrap_bio(self, incoming: ssl.MemoryBIO, outgoing: ssl.MemoryBIO, server_side: bool = False,
                 server_hostname: str | bytes | None = None, session: ssl.SSLSession | None = None) -> ssl.SSLObject:
        self.watcher.refresh_soon()
        ctx = self.watcher.current.tls
        assert ctx is not None
        return ctx.wrap_bio(incoming, outgoing, server_side=server_side, server_hostname=server_hostname,
                            session=session)
