"""The vendors' own status pages, fetched: at most one request per vendor per ``FETCH_EVERY`` however
many targets need it, conditional (ETag / Last-Modified), through the prober's one request path with
the egress settings and timeout of one of the vendor's targets. What each target sees of it
(``VendorView``) is made here too, from the page and the components the target watches.

The book is rebuilt on every (re)load (``apply``); a page whose URL, format and egress stay the same
keeps what it read and its validators, so a reload never costs an extra request.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field

from .catalog import StatusPageSpec
from .clock import Clock, sleep_or_wake
from .config import Target
from .httpconfig import HttpClient
from .model import Answer, HttpRequest
from .probe import Prober
from .statuspage import Component, Incident, StatusPageError, VendorStatus, affecting, component_trouble, parse

__all__ = ["FETCH_EVERY", "STALE_AFTER", "PageState", "VendorStatusBook", "VendorView"]

log = logging.getLogger(__name__)

#: one request per vendor page in this many seconds, at most
FETCH_EVERY = 60.0
#: what a page said stops counting this long after the last successful read (the page may be gone)
STALE_AFTER = 600.0


@dataclass(slots=True)
class PageState:
    """One vendor's page: how it is read, and what was read last."""

    vendor: str
    spec: StatusPageSpec
    client: HttpClient | None
    timeout: float
    status: VendorStatus | None = None
    etag: str = ""
    last_modified: str = ""
    #: the last attempt: whether it worked, its one-line error, when (wall clock)
    ok: bool = False
    error: str = "not read yet"
    attempted_at: float = 0.0
    #: when it last worked (wall clock); 0: never
    success_at: float = 0.0
    #: when the next read is due (monotonic)
    due: float = 0.0
    fetches: int = 0
    not_modified: int = 0

    def current(self, now: float) -> VendorStatus | None:
        """What the page says, unless the last good read is too old to stand for now."""
        if self.status is None or now - self.success_at > STALE_AFTER:
            return None
        return self.status


@dataclass(frozen=True, slots=True)
class VendorView:
    """What one target sees of its vendor's page (views and collector read this)."""

    vendor: str
    fetch_ok: bool
    error: str
    as_of: float  # wall clock of the last successful read, 0 if none
    known: bool  # the page's state is current (read recently enough)
    incidents: tuple[Incident, ...] = ()
    maintenances: tuple[Incident, ...] = ()  # in progress, on a watched component
    #: watched components that are not operational (incident.io pages say no more than this)
    troubled: tuple[Component, ...] = ()
    components: tuple[Component, ...] = field(default=(), repr=False)

    @property
    def incident_active(self) -> bool:
        return bool(self.incidents) or any(c.status != "under_maintenance" for c in self.troubled)

    @property
    def maintenance(self) -> bool:
        return bool(self.maintenances) or any(c.status == "under_maintenance" for c in self.troubled)

    def summary(self) -> str:
        """One line for a person on call: what the vendor says about what this target depends on."""
        if not self.known:
            return f"vendor status unknown ({self.error})"
        if self.incidents:
            first = self.incidents[0]
            more = f" (+{len(self.incidents) - 1} more)" if len(self.incidents) > 1 else ""
            return f"vendor confirms: {first.name} ({first.impact}, {first.status}){more}"
        if self.maintenances:
            return f"vendor confirms maintenance: {self.maintenances[0].name}"
        if self.troubled:
            names = ", ".join(f"{c.name} {c.status.replace('_', ' ')}" for c in self.troubled[:3])
            return f"vendor confirms: {names}"
        return "vendor reports operational"


def _watched(target: Target) -> frozenset[str] | None:
    return frozenset(target.status_components) if target.status_components is not None else None


class VendorStatusBook:
    """Every vendor page the running config needs, and the task that keeps them read."""

    def __init__(self, prober: Prober, clock: Clock) -> None:
        self.prober = prober
        self.clock = clock
        self.pages: dict[str, PageState] = {}
        #: per vendor, the components the targets watch (None among them: all)
        self._watched: dict[str, frozenset[str] | None] = {}
        self._wake = asyncio.Event()
        self._views: dict[tuple[str, frozenset[str] | None], VendorView] = {}
        #: bumped when any page changes: the collector's cached text is made again
        self.version = 0

    def apply(self, targets: Iterable[Target]) -> None:
        """The pages the targets need now; a page unchanged keeps its state and schedule."""
        wanted: dict[str, PageState] = {}
        watched: dict[str, frozenset[str] | None] = {}
        for target in targets:
            spec = target.catalog.status_page
            if spec is None or not spec.describes(target.base_url):
                continue
            vendor = target.vendor
            if vendor not in wanted:
                timeout = target.timeout  # the same as a probe of the target's
                old = self.pages.get(vendor)
                if old is not None and old.spec == spec and old.client == target.http_client:
                    old.timeout = timeout
                    wanted[vendor] = old
                else:
                    wanted[vendor] = PageState(vendor, spec, target.http_client, timeout)
                watched[vendor] = frozenset()
            mine = _watched(target)
            seen = watched[vendor]
            watched[vendor] = None if mine is None or seen is None else seen | mine
        self.pages = wanted
        self._watched = watched
        self._views.clear()
        self.version += 1
        self._wake.set()

    def watched(self, vendor: str) -> frozenset[str] | None:
        return self._watched.get(vendor)

    def view(self, target: Target) -> VendorView | None:
        """What ``target`` sees of its vendor's page; None when the vendor has no page."""
        page = self.pages.get(target.vendor)
        if page is None or not page.spec.describes(target.base_url):
            return None
        key = (target.vendor, _watched(target))
        cached = self._views.get(key)
        now = self.clock.time()
        if cached is not None and (not cached.known or now - cached.as_of <= STALE_AFTER):
            return cached
        status = page.current(now)
        if status is None:
            made = VendorView(page.vendor, page.ok, page.error, page.success_at, False)
        else:
            watched = key[1]
            maint = tuple(m for m in affecting(status.maintenances, watched) if m.active)
            made = VendorView(page.vendor, page.ok, page.error, page.success_at, True,
                              tuple(affecting(status.incidents, watched)), maint,
                              tuple(component_trouble(status.components, watched)), status.components)
        self._views[key] = made
        return made

    # --- reading ---------------------------------------------------------------------------------

    async def run(self) -> None:
        """Read each page when it is due, for ever; a reload wakes it to read new pages at once."""
        while True:
            now = self.clock.monotonic()
            due = [page for page in self.pages.values() if page.due <= now]
            if due:
                for page, outcome in zip(due, await asyncio.gather(*(self.read(page) for page in due),
                                                                   return_exceptions=True), strict=True):
                    if isinstance(outcome, Exception):  # a bug: one line, and the page is read again later
                        log.error("reading the status page of %s failed internally (%s)", page.vendor,
                                  outcome.__class__.__name__)
                        page.due = max(page.due, self.clock.monotonic() + FETCH_EVERY)
                continue
            nxt = min((page.due for page in self.pages.values()), default=now + FETCH_EVERY)
            await sleep_or_wake(self.clock, max(0.0, nxt - now), self._wake)

    async def read(self, page: PageState) -> None:
        """One conditional GET of ``page``; whatever happens, the next one is FETCH_EVERY later."""
        page.due = self.clock.monotonic() + FETCH_EVERY
        page.attempted_at = self.clock.time()
        page.fetches += 1
        headers = {"Accept": "application/json"}
        if page.etag:
            headers["If-None-Match"] = page.etag
        if page.last_modified:
            headers["If-Modified-Since"] = page.last_modified
        result = await self.prober.fetch(HttpRequest("GET", page.spec.url, (), headers), page.timeout, page.client)
        ok, error = self._take(page, result)
        if ok != page.ok or error != page.error:
            level = logging.INFO if ok else logging.WARNING
            log.log(level, "status page of %s: %s", page.vendor, "read" if ok else error)
        page.ok, page.error = ok, error
        if ok:
            page.success_at = self.clock.time()
        self._views.clear()
        self.version += 1

    def _take(self, page: PageState, result: object) -> tuple[bool, str]:
        if not isinstance(result, Answer):
            return False, f"{getattr(result, 'code', 'error')}: {getattr(result, 'message', '')}"[:200]
        if result.status == 304 and page.status is not None:
            page.not_modified += 1
            return True, ""
        if result.status != 200:
            return False, f"HTTP {result.status}"
        if result.truncated:
            return False, "the status page is larger than max_body_bytes"
        try:
            page.status = parse(page.spec.format, result.body)
        except StatusPageError as exc:
            return False, str(exc)
        page.etag = _validator(result.headers, "etag")
        page.last_modified = _validator(result.headers, "last-modified")
        return True, ""


def _validator(headers: Mapping[str, str], name: str) -> str:
    """A validator sent back as it came, if it is one a header may carry (no control characters)."""
    value = headers.get(name, "")
    return value if len(value) <= 256 and value.isprintable() else ""
