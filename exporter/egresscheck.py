"""Our own way out: the ``egress_checks`` of the config, probed through the prober's one request path
with their egress settings, and the signal derived from the targets themselves when most of those
behind one egress fail at the transport level at once, across at least ``MIN_VENDORS`` vendors.

A target's transport failure has the checks of its egress run again at once (``recheck``): the
scheduler holds the target's next probe (the one that confirms the failure) until they have answered,
so a confirmed transport failure is always seen beside egress checks that started after its first
failure was seen.

An egress is named after the first check whose effective ``http_client`` a target shares (the same
proxy and TLS settings); targets that share no check's settings are behind ``default``. An egress
check is never a vendor: it has no catalog, no class and no budget; it is reachable or not.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import defaultdict
from collections.abc import Awaitable, Iterable
from dataclasses import dataclass

from .clock import Clock, sleep_or_wake
from .config import EgressCheck, Target
from .model import Answer, HttpRequest
from .probe import Prober

log = logging.getLogger(__name__)

__all__ = ["DEFAULT_EGRESS", "MIN_VENDORS", "RECHECK_SPACING", "TRANSPORT", "CheckState", "EgressBook", "Suspicion",
           "suspicion"]

#: the egress of targets that share no egress check's settings
DEFAULT_EGRESS = "default"
#: the derived signal needs transport failures of targets of at least this many vendors
MIN_VENDORS = 3
#: classes that mean the request never got an answer from the vendor
TRANSPORT = frozenset({"network_error", "timeout"})
#: runs of one egress's checks start at least this many seconds apart (or a twentieth of the check
#: interval, when that is shorter), however many targets fail: a flood of transport failures costs the
#: canary a request every few seconds at most, and a confirmation waits that long at most for it
RECHECK_SPACING = 2.0


@dataclass(slots=True)
class CheckState:
    check: EgressCheck
    egress: str
    up: bool | None = None  # None: not checked yet
    http_status: int = 0
    code: str = ""  # the transport failure's code, or http_NNN for an unexpected status
    message: str = ""
    duration: float = 0.0
    checked_at: float = 0.0


@dataclass(frozen=True, slots=True)
class Suspicion:
    """The targets behind one egress, as of their latest probes."""

    egress: str
    targets: int
    failing: int  # of them, whose latest answer is a transport failure
    vendors: int  # distinct vendors among the failing ones

    @property
    def down(self) -> bool:
        return self.vendors >= MIN_VENDORS and self.failing * 2 > self.targets


def suspicion(egress: str, latest: Iterable[tuple[str, str | None]]) -> Suspicion:
    """``latest``: (vendor, class of the latest answer or None) of each target behind ``egress``."""
    total = failing = 0
    vendors: set[str] = set()
    for vendor, cls in latest:
        if cls is None:
            continue  # not probed yet: neither for nor against
        total += 1
        if cls in TRANSPORT:
            failing += 1
            vendors.add(vendor)
    return Suspicion(egress, total, failing, len(vendors))


class EgressBook:
    """The checks of the running config, their latest results, and which egress each target is behind."""

    def __init__(self, prober: Prober, clock: Clock) -> None:
        self.prober = prober
        self.clock = clock
        self.checks: dict[str, CheckState] = {}
        self.of_target: dict[str, str] = {}
        self.interval = 60.0
        self.timeout = 10.0
        self._wake = asyncio.Event()
        #: per egress, the run of its checks in flight or planned (single flight), and when it starts
        self._flights: dict[str, tuple[float, asyncio.Task[None]]] = {}
        #: per egress, when its latest run started (monotonic)
        self._last_run: dict[str, float] = {}
        #: the waits ``recheck`` handed out: ``stop`` calls them off too, or one not yet started would
        #: plan a run after it
        self._waits: set[asyncio.Future[None]] = set()

    def apply(self, checks: Iterable[EgressCheck], targets: Iterable[Target], interval: float, timeout: float) -> None:
        named: dict[object, str] = {}
        states: dict[str, CheckState] = {}
        for check in checks:
            egress = named.setdefault(check.http_client, check.name)
            old = self.checks.get(check.name)
            states[check.name] = old if old is not None and old.check == check and old.egress == egress else \
                CheckState(check, egress)
        self.checks = states
        egresses = {state.egress for state in states.values()}
        self._last_run = {e: t for e, t in self._last_run.items() if e in egresses}  # renamed ones go
        self.of_target = {t.name: named.get(t.http_client, DEFAULT_EGRESS) for t in targets} if states else {}
        self.interval, self.timeout = interval, min(timeout, interval)
        self._wake.set()

    def egresses(self) -> list[str]:
        """Every egress name, checked ones first in config order."""
        out = list(dict.fromkeys(state.egress for state in self.checks.values()))
        return out + ([DEFAULT_EGRESS] if DEFAULT_EGRESS not in out else [])

    def egress_of(self, target: str) -> str:
        return self.of_target.get(target, DEFAULT_EGRESS)

    def suspicions(self, latest: Iterable[tuple[str, str, str | None]]) -> list[Suspicion]:
        """``latest``: (target name, vendor, class of its latest answer or None) of every target."""
        if not self.of_target:  # no egress checks: every target is behind the default egress
            return [suspicion(DEFAULT_EGRESS, ((vendor, cls) for _, vendor, cls in latest))]
        groups: dict[str, list[tuple[str, str | None]]] = defaultdict(list)
        of_target = self.of_target
        for name, vendor, cls in latest:
            groups[of_target.get(name, DEFAULT_EGRESS)].append((vendor, cls))
        return [suspicion(egress, groups.get(egress, ())) for egress in self.egresses()]

    @property
    def spacing(self) -> float:
        """The least time between the starts of two runs of one egress's checks."""
        return min(RECHECK_SPACING, self.interval / 20)

    def checked(self, egress: str) -> bool:
        return any(state.egress == egress for state in self.checks.values())

    def recheck(self, target: str) -> Awaitable[None] | None:
        """A transport failure of ``target`` was just seen: the checks of its egress run again, and the
        awaitable returned ends once a run that started at or after now has answered (its results in
        ``checks``, what /metrics renders). None when its egress has no check: nothing to wait for."""
        egress = self.egress_of(target)
        if not self.checked(egress):
            return None
        # a task, not a coroutine: whoever waits may be cancelled before it first awaits this
        wait = asyncio.ensure_future(self._run_since(egress, self.clock.monotonic()))
        self._waits.add(wait)
        wait.add_done_callback(self._waits.discard)
        return wait

    async def _run_since(self, egress: str, since: float) -> None:
        while True:
            start, flight = self._flight(egress)
            await asyncio.shield(flight)  # the run is shared: a waiter that goes away never cancels it
            if start >= since:
                return
            # that run went out before the failure was seen: it says nothing of the egress since; the
            # next one does (every failure seen meanwhile shares it)

    def _flight(self, egress: str) -> tuple[float, asyncio.Task[None]]:
        """The run of the egress's checks in flight or planned, else a new one, planned no sooner than
        ``spacing`` after the latest one started."""
        if (flight := self._flights.get(egress)) is not None:
            return flight
        now = self.clock.monotonic()
        last = self._last_run.get(egress)
        start = now if last is None else max(now, last + self.spacing)
        task = asyncio.create_task(self._run_egress(egress, start), name=f"egress-check:{egress}")
        self._flights[egress] = flight = (start, task)
        task.add_done_callback(lambda t: self._landed(egress, t))
        return flight

    def _landed(self, egress: str, task: asyncio.Task[None]) -> None:
        if (flight := self._flights.get(egress)) is not None and flight[1] is task:
            del self._flights[egress]

    async def _run_egress(self, egress: str, start: float) -> None:
        if (wait := start - self.clock.monotonic()) > 0:
            await self.clock.sleep(wait)
        self._last_run[egress] = self.clock.monotonic()
        states = [state for state in self.checks.values() if state.egress == egress]
        for state, outcome in zip(states, await asyncio.gather(*(self.check(s) for s in states),
                                                              return_exceptions=True), strict=True):
            if isinstance(outcome, Exception):  # a bug: one line, and the check runs again next time
                log.error("egress check %s failed internally (%s)", state.check.name, outcome.__class__.__name__)

    async def run(self) -> None:
        try:
            while True:
                if self.checks:
                    # through the same single flight as the re-checks: a re-check in flight is this run
                    egresses = list(dict.fromkeys(state.egress for state in self.checks.values()))
                    await asyncio.gather(*(asyncio.shield(self._flight(e)[1]) for e in egresses),
                                         return_exceptions=True)
                await sleep_or_wake(self.clock, self.interval, self._wake)
        finally:
            await self.stop()

    async def stop(self) -> None:
        """Cancel the runs in flight (the exporter closes)."""
        flights = [*self._waits, *(task for _, task in self._flights.values())]
        for task in flights:
            task.cancel()
        await asyncio.gather(*flights, return_exceptions=True)

    async def check(self, state: CheckState) -> None:
        check = state.check
        t0 = time.perf_counter()
        result = await self.prober.fetch(HttpRequest("GET", check.url), self.timeout, check.http_client)
        state.duration = time.perf_counter() - t0
        state.checked_at = self.clock.time()
        if isinstance(result, Answer):
            state.http_status = result.status
            state.up = check.expect_status is None or result.status in check.expect_status
            state.code = "" if state.up else f"http_{result.status}"
            state.message = "" if state.up else f"HTTP {result.status} is not an expected status"
        else:
            state.http_status, state.up, state.code, state.message = result.http_status, False, result.code, \
                result.message
