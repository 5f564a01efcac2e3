"""The running exporter (the composition root): one HTTP session, prober, state and scheduler, config
reloads, and the exporter's own status, built fresh for each scrape.

A reload that fails validation keeps the running config and sets the reload metric to 0.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
import os
import sys
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import cast

from .clock import Clock, SystemClock, Timer
from .collector import render_fault, render_target
from .config import Config, ConfigError, Target, load_config
from .egress import Egress
from .egresscheck import TRANSPORT, EgressBook, Suspicion
from .engine import Resolver, new_session
from .engine import Session as Client
from .gcpolicy import GC
from .httpconfig import HttpClient
from .model import ALL, ExporterStatus, ProbeResult, Shard, StartLag
from .offloop import in_daemon_thread
from .probe import Prober
from .scheduler import Scheduler
from .state import State, TargetState
from .vendorstatus import VendorStatusBook, VendorView

__all__ = ["Exporter", "release_free_memory"]

log = logging.getLogger(__name__)
#: a reload that takes longer is given up (its thread is left to finish on its own): the lock is freed for
#: the next reload and shutdown never waits for it. Each file read has its own, shorter timeout.
RELOAD_TIMEOUT = 60.0
#: how long a scheduler loop that died of a bug waits before it is started again (not ready meanwhile)
RESTART_PAUSE = 1.0


#: the scheduler spreads the first probes after a (re)load over at most this long (``Scheduler.apply``):
#: that and the longest timeout later, every target has been probed once
FIRST_ROUND_SPREAD = 5.0


def release_free_memory() -> bool:
    """Ask the C allocator to return the free memory it keeps to the system (glibc's ``malloc_trim``).

    After start-up or a reload, memory freed by the config-load thread stays in that thread's malloc
    arena, where the event loop's thread never reuses it, and the holes that the replaced objects leave
    are kept too. Only glibc has the call: elsewhere this does nothing and returns False."""
    trim = _find_malloc_trim()
    if trim is None:
        return False
    try:
        trim(0)
    except Exception:  # noqa: BLE001 - a memory hint must never cost a probe or a reload
        return False
    return True


@functools.cache
def _find_malloc_trim() -> Callable[[int], int] | None:
    if not sys.platform.startswith("linux"):
        return None
    try:
        import ctypes

        trim = ctypes.CDLL(None).malloc_trim  # musl and others have no such symbol
    except (OSError, AttributeError, ImportError):
        return None
    trim.argtypes, trim.restype = [ctypes.c_size_t], ctypes.c_int
    return cast(Callable[[int], int], trim)


def _one_malloc_arena() -> None:
    """Have every thread allocate from glibc's main arena (``M_ARENA_MAX`` 1, what the environment
    variable ``MALLOC_ARENA_MAX=1`` sets). The config is read in a worker thread: with an arena of its
    own, what that thread frees stays there, where the event loop never reuses it. The exporter's
    threads (config loads) do not allocate at the same time as the loop for long, so one arena costs
    no measurable waiting. Set before any thread starts; does nothing where the call is missing or
    the variable is set."""
    if not sys.platform.startswith("linux") or "MALLOC_ARENA_MAX" in os.environ:
        return
    try:
        import ctypes

        mallopt = ctypes.CDLL(None).mallopt
        mallopt.argtypes, mallopt.restype = [ctypes.c_int, ctypes.c_int], ctypes.c_int
        mallopt(_M_ARENA_MAX, 1)
    except (OSError, AttributeError, ImportError):
        pass


_M_ARENA_MAX = -8  # glibc's malloc.h
_one_malloc_arena()


class Exporter:
    def __init__(self, config: Config, config_path: Path | None = None, clock: Clock | None = None,
                 loader: Callable[[], Config] | None = None,
                 resolver: Resolver | None = None, shard: Shard = ALL) -> None:
        self.config = config
        #: which replica of a sharded fleet this is; the config given is already this shard's part
        self.shard = shard
        #: tests and benchmarks pass a loopback-only resolver so that no DNS query leaves the machine
        self._resolver = resolver
        self.config_path = config_path
        self.clock = clock or SystemClock()
        if loader is None and config_path is not None:
            loader = lambda: load_config(config_path)  # noqa: E731
        self._loader = loader
        #: whether the last (re)load succeeded, and when one last did
        self.reload_successful = True
        self.reload_success_timestamp = self.clock.time()
        self.state = State(render_target, history=config.global_.history)
        self.session: Client | None = None
        self.prober: Prober | None = None
        self.egress: Egress | None = None
        self._longest = 0.0  # the longest timeout of the applied config
        #: (max_concurrency, keepalive) that the sessions' connection pools are built with
        self._pool = (config.global_.max_concurrency, config.global_.keepalive)
        self.scheduler: Scheduler | None = None
        self._task: asyncio.Task[None] | None = None
        #: the scheduler loop died of a bug and waits to be started again
        self._loop_down = False
        self._reload_lock = asyncio.Lock()
        self._first_round: Timer | None = None
        #: the process follows gcpolicy (its own process, not a library user's): each first round of
        #: probes is frozen out of the collector's full collections, until a reload unfreezes it all
        self.freeze_after_first_round = False
        #: the vendors' own status pages and our egress checks (exporter/vendorstatus.py, egresscheck.py)
        self.vendor_status: VendorStatusBook | None = None
        self.egress_checks: EgressBook | None = None
        self._fault_tasks: list[asyncio.Task[None]] = []
        self._suspicions: tuple[float, list[Suspicion]] | None = None

    def _new_session(self, client: HttpClient | None = None) -> Client:
        limit, keepalive = self._pool
        return new_session(client, limit=limit, keepalive=keepalive, resolver=self._resolver)

    async def start(self) -> None:
        # One shared session for every target without http_client; one more per distinct setting
        self.session = self._new_session()
        self.egress = Egress(self.session, self._new_session)
        self.prober = Prober(self.session, self.clock, self.config.global_.max_body_bytes, self.egress)
        self.vendor_status = VendorStatusBook(self.prober, self.clock)
        self.egress_checks = EgressBook(self.prober, self.clock)
        self.scheduler = Scheduler(self.prober, self.state, self.clock, self.config.global_.max_concurrency,
                                   hold=self._recheck_egress)
        self._apply(self.config)
        self._fault_tasks = [asyncio.create_task(self.vendor_status.run(), name="vendor-status"),
                             asyncio.create_task(self.egress_checks.run(), name="egress-checks")]
        self._task = asyncio.create_task(self._supervise(self.scheduler), name="scheduler")
        self._task.add_done_callback(self._loop_ended)
        self._plan_first_round_end()

    def _plan_first_round_end(self) -> None:
        """Plan ``_after_first_round`` for when every target has been probed after a (re)load: what
        start-up or the reload left behind is free by then, and what the first probes built is in
        place (the allocator's free memory goes back, and that is frozen out of full collections)."""
        if self._first_round is not None:
            self._first_round.cancel()
        targets = self.config.targets
        delay = max((min(t.interval, FIRST_ROUND_SPREAD) + t.timeout for t in targets), default=0.0) + 1.0
        self._first_round = self.clock.call_at(self.clock.monotonic() + delay, self._after_first_round)

    def _after_first_round(self) -> None:
        if self.freeze_after_first_round:
            GC.first_round_done()
        release_free_memory()

    async def _supervise(self, scheduler: Scheduler) -> None:
        """Run the scheduler loop; one that dies of a bug is logged in one line and started again after
        a pause, not ready meanwhile, so probing never stops for good."""
        while True:
            try:
                await scheduler.run()
                return
            except Exception as exc:  # noqa: BLE001
                self._loop_down = True
                log.error("the scheduler loop failed internally (%s); restarting it in %gs",
                          exc.__class__.__name__, RESTART_PAUSE)
                await self.clock.sleep(RESTART_PAUSE)
                self._loop_down = False

    def _loop_ended(self, task: asyncio.Task[None]) -> None:
        # anything that ends the loop other than close() leaves the exporter not ready: say so once
        if not task.cancelled() and (exc := task.exception()) is not None:
            log.error("the scheduler loop stopped: %s; not ready", exc.__class__.__name__)

    def _apply(self, config: Config) -> None:
        assert self.scheduler is not None
        self.state.sync(config.targets, config.global_.history)
        self.scheduler.apply(config.targets, config.global_.max_concurrency)
        # a retired session closes once probes still in flight on it (the old config's) have timed out
        longest = max((t.timeout for t in config.targets), default=0.0)
        grace = max(self._longest, longest) + 1
        if self.prober is not None:
            self.prober.max_body = config.global_.max_body_bytes
        pool = (config.global_.max_concurrency, config.global_.keepalive)
        if pool != self._pool and self.egress is not None and self.prober is not None:
            # the pools are built with these: new sessions for new probes, the old ones retired
            self._pool = pool
            self.session = self.prober.session = self._new_session()
            self.egress.replace_default(self.session, grace)
        self._apply_fault(config)
        if self.egress is not None:
            self.egress.retire({t.http_client for t in config.targets} | {c.http_client for c in config.egress_checks},
                               grace=grace)
        self._longest = longest

    # --- is it us or them? (the vendors' status pages, our egress) ---------------------------------

    def _apply_fault(self, config: Config) -> None:
        if self.vendor_status is not None:
            self.vendor_status.apply(config.targets)
        if self.egress_checks is not None:
            glob = config.global_
            self.egress_checks.apply(config.egress_checks, config.targets, glob.interval, glob.timeout)

    def _recheck_egress(self, target: Target, result: ProbeResult) -> Awaitable[None] | None:
        """The scheduler's ``hold``: a transport failure has the checks of the target's egress run again
        at once, and the probe that confirms it waits for their answer, so that when
        ``apistatus_consecutive_failures`` reaches 2, ``apistatus_egress_up`` already says what the
        egress does now (the alerts page a transport failure on 2 only behind a checked egress). Only
        on the way into transport failures (the latest answer before was not one): the failures after it
        change no page, and a vendor unreachable for hours costs the canary nothing more."""
        if result.outcome.cls not in TRANSPORT or self.egress_checks is None:
            return None
        before = self.state.get(target.name)
        if before is not None and before.last is not None and before.last.outcome.cls in TRANSPORT:
            return None
        return self.egress_checks.recheck(target.name)

    def vendor_view(self, name: str) -> VendorView | None:
        """What the target's vendor says on its own status page about what the target depends on."""
        target = self.config.target(name)
        if target is None or self.vendor_status is None:
            return None
        return self.vendor_status.view(target)

    def suspicions(self) -> list[Suspicion]:
        """Per egress: how many of the targets behind it fail at the transport level now. Made at most
        once a second: it walks every target, and several Prometheus servers and pages may ask."""
        if self.egress_checks is None:
            return []
        now = self.clock.monotonic()
        if self._suspicions is not None and now - self._suspicions[0] < 1.0:
            return self._suspicions[1]
        made = self.egress_checks.suspicions(
            (ts.target.name, ts.target.vendor, ts.last.outcome.cls if ts.last is not None else None)
            for ts in self.state)
        self._suspicions = (now, made)
        return made

    def fault_metrics(self) -> bytes:
        """The vendor-status and egress families of /metrics."""
        if self.vendor_status is None or self.egress_checks is None:
            return b""
        return render_fault(self.vendor_status, self.egress_checks, self.suspicions(), list(self.state))

    def status(self) -> ExporterStatus:
        """The exporter's own figures as of now, for a scrape."""
        lag = None
        in_flight = 0
        delays: tuple[tuple[str, int], ...] = ()
        if self.scheduler is not None:
            stats = self.scheduler.lag
            lag = StartLag(tuple(stats.recent), stats.total, stats.count)
            in_flight = self.scheduler.in_flight()
            delays = tuple(sorted(self.scheduler.budget_delays.items()))
        return ExporterStatus(self.reload_successful, self.reload_success_timestamp, len(self.config.targets), lag,
                              self.shard, in_flight, delays)

    @property
    def ready(self) -> bool:
        return self._task is not None and not self._task.done() and not self._loop_down

    async def reload(self) -> tuple[bool, str]:
        """Load the config again; on any error keep the running one. Returns (ok, one-line message)."""
        async with self._reload_lock:
            if self._loader is None:
                return True, "nothing to reload: running the embedded demo config"
            try:
                config = await asyncio.wait_for(in_daemon_thread(self._loader, "config-load"), RELOAD_TIMEOUT)
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
            if self.freeze_after_first_round:
                GC.reloaded()
            release_free_memory()  # what the load thread and the replaced config freed
            self._plan_first_round_end()
            self.reload_successful = True
            self.reload_success_timestamp = self.clock.time()
            log.info("config reloaded: %d targets", len(config.targets))
            return True, f"reloaded: {len(config.targets)} targets"

    def _reload_failed(self, message: str) -> tuple[bool, str]:
        self.reload_successful = False
        log.error("config reload failed, keeping the running config: %s", message)
        return False, message

    async def probe_now(self, name: str, call: bool = True) -> tuple[TargetState, bool] | None:
        """The target's state for a /probe answer and whether it is cached: after a probe made now
        when the scheduler lets one be made (``call``, and no backoff, budget or schedule against
        it), else as the latest probe left it. Always the target's own state, so counters never
        restart and ``increase()`` works on a /probe job."""
        if self.config.target(name) is None or self.scheduler is None:
            return None
        fresh = call and await self.scheduler.on_demand(name)
        ts = self.state.get(name)
        return None if ts is None else (ts, not fresh)

    async def close(self) -> None:
        if self._first_round is not None:
            self._first_round.cancel()
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)
        for task in self._fault_tasks:
            task.cancel()
        await asyncio.gather(*self._fault_tasks, return_exceptions=True)
        if self.egress_checks is not None:
            await self.egress_checks.stop()  # re-checks started by failures, even with the loop never run
        if self.egress is not None:
            await self.egress.close()
        if self.session is not None:
            await self.session.close()
