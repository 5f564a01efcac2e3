"""The running exporter: one HTTP session, prober, state and scheduler, and config reloads.

A reload that fails validation keeps the running config and sets the reload metric to 0.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any

import aiohttp

from .clock import Clock, SystemClock
from .collector import ExporterInfo, render_target
from .config import Config, ConfigError, load_config
from .probe import Prober, ProbeResult
from .scheduler import Scheduler
from .state import State, TargetState

__all__ = ["Exporter"]

log = logging.getLogger(__name__)
#: a reload that takes longer is given up (its thread is left to finish on its own): the lock is freed for
#: the next reload and shutdown never waits for it. Each file read has its own, shorter timeout.
RELOAD_TIMEOUT = 60.0


def _in_daemon_thread(fn: Callable[[], Config]) -> asyncio.Future[Config]:
    """``fn()`` in a daemon thread: unlike the default executor's, interpreter exit does not wait for it."""
    loop = asyncio.get_running_loop()
    fut: asyncio.Future[Config] = loop.create_future()

    def settle(ok: bool, value: Any) -> None:
        if not fut.done():
            (fut.set_result if ok else fut.set_exception)(value)

    def work() -> None:
        try:
            result = fn()
        except BaseException as exc:  # noqa: BLE001 - handed to the awaiting task
            with contextlib.suppress(RuntimeError):  # the loop may be closed by then
                loop.call_soon_threadsafe(settle, False, exc)
        else:
            with contextlib.suppress(RuntimeError):
                loop.call_soon_threadsafe(settle, True, result)

    threading.Thread(target=work, name="config-load", daemon=True).start()
    return fut


class Exporter:
    def __init__(self, config: Config, config_path: Path | None = None, clock: Clock | None = None,
                 loader: Callable[[], Config] | None = None,
                 resolver: aiohttp.abc.AbstractResolver | None = None) -> None:
        self.config = config
        #: tests and benchmarks pass a loopback-only resolver so that no DNS query leaves the machine
        self._resolver = resolver
        self.config_path = config_path
        self.clock = clock or SystemClock()
        if loader is None and config_path is not None:
            loader = lambda: load_config(config_path)  # noqa: E731
        self._loader = loader
        self.info = ExporterInfo(True, self.clock.time(), len(config.targets))
        self.state = State(render_target, history=config.global_.history)
        self.session: aiohttp.ClientSession | None = None
        self.prober: Prober | None = None
        self.scheduler: Scheduler | None = None
        self._task: asyncio.Task[None] | None = None
        self._reload_lock = asyncio.Lock()

    async def start(self) -> None:
        # One shared session for every probe; connections are reused per vendor host. Cookies are
        # ignored: a health check must not carry state from one probe to the next.
        connector = aiohttp.TCPConnector(limit=self.config.global_.max_concurrency, limit_per_host=0,
                                         ttl_dns_cache=60, enable_cleanup_closed=True, resolver=self._resolver,
                                         force_close=not self.config.global_.keepalive)
        self.session = aiohttp.ClientSession(connector=connector, cookie_jar=aiohttp.DummyCookieJar(),
                                             auto_decompress=True, raise_for_status=False,
                                             headers={"User-Agent": "apistatus-exporter"})
        self.prober = Prober(self.session, self.clock, self.config.global_.max_body_bytes)
        self.scheduler = Scheduler(self.prober, self.state, self.clock, self.config.global_.max_concurrency)
        sched = self.scheduler
        self.info.start_lag = lambda: (sched.lags, sched.lag_sum, sched.lag_count)
        self._apply(self.config)
        self._task = asyncio.create_task(self.scheduler.run(), name="scheduler")

    def _apply(self, config: Config) -> None:
        assert self.scheduler is not None
        self.state.sync(config.targets, config.global_.history)
        self.scheduler.apply(config.targets, config.global_.max_concurrency)
        self.info.targets = len(config.targets)

    @property
    def ready(self) -> bool:
        return self._task is not None and not self._task.done()

    async def reload(self) -> tuple[bool, str]:
        """Load the config again; on any error keep the running one. Returns (ok, one-line message)."""
        async with self._reload_lock:
            if self._loader is None:
                return True, "nothing to reload: running the embedded demo config"
            try:
                config = await asyncio.wait_for(_in_daemon_thread(self._loader), RELOAD_TIMEOUT)
            except ConfigError as exc:
                return self._reload_failed(str(exc))
            except TimeoutError:
                return self._reload_failed(f"loading the config took longer than {RELOAD_TIMEOUT:g}s")
            except Exception as exc:  # noqa: BLE001 - whatever went wrong, one line and the old config
                return self._reload_failed(f"internal error while loading the config: {exc.__class__.__name__}")
            try:
                self._apply(config)
            except Exception as exc:  # noqa: BLE001
                with contextlib.suppress(Exception):
                    self._apply(self.config)  # back to the running config
                return self._reload_failed(f"internal error while applying the config: {exc.__class__.__name__}")
            self.config = config
            self.info.reload_successful = True
            self.info.reload_success_timestamp = self.clock.time()
            log.info("config reloaded: %d targets", len(config.targets))
            return True, f"reloaded: {len(config.targets)} targets"

    def _reload_failed(self, message: str) -> tuple[bool, str]:
        self.info.reload_successful = False
        log.error("config reload failed, keeping the running config: %s", message)
        return False, message

    async def probe_now(self, name: str) -> tuple[ProbeResult, TargetState] | None:
        """Probe one configured target now, into a fresh state of its own (the /probe pattern)."""
        target = self.config.target(name)
        if target is None or self.scheduler is None:
            return None
        result = await self.scheduler.probe_once(target)
        fresh = TargetState(target)
        fresh.record(result)
        fresh.rendered = render_target(fresh)
        return result, fresh

    async def close(self) -> None:
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)
        if self.session is not None:
            await self.session.close()
