"""What every vendor simulator shares: its own clock, the control API, request counts, and the
conditions a test or the demo can switch on (maintenance, rotated credentials, slow answers...).

A simulator answers the way its vendor documents (docs/vendors.md): each vendor module only says
how a request is verified and where a code is put in the answer. Conditions a vendor has no signal
for (Rubiq documents no maintenance) are refused with a one-line error instead of being invented.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import math
import random
import re
import ssl
from collections import Counter, deque
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any, ClassVar

from aiohttp import web

from ..clock import Clock, SystemClock
from .vendors import StatusPageSim, vendor_settings

__all__ = ["COMMON_SETTINGS", "CONDITIONS", "ControlError", "Simulator", "StatusPageSim",
           "WindowedSimulator", "json_answer"]

#: settings every simulator takes, with their healthy values
COMMON_SETTINGS: dict[str, Any] = {
    "code": None,  # answer every health check with this code (any code, documented or not)
    "maintenance": False,
    "rotated": False,  # the vendor now expects other credentials: ours are refused
    "disabled": False,  # the account (or domain, or key) is disabled
    "rate_limited": False,
    "quota_exceeded": False,
    "server_error": False,
    "delay": 0.0,  # seconds before answering (real time: it is about the exporter's timeout)
    "down": False,  # accept the connection, then close it without an answer
    "clock_offset": 0.0,  # seconds added to the simulator's clock: skews timestamps it checks
    "retry_after": 30,  # the Retry-After seconds sent where the vendor sends one
    # share of API requests (0 to 1) answered with a random transient failure instead: a bare 503 or a
    # connection closed without an answer, each request drawn on its own (counted as "flaky")
    "flaky": 0.0,
    # the vendor's own status page (status_page in vendors.yaml): an incident or a maintenance it
    # declares, by title,
    # on one component (its id; None: the first one listed)
    "status_incident": None,
    "status_maintenance": None,
    "status_component": None,
}
#: the status-page settings: text or None
_STATUS_TEXT = ("status_incident", "status_maintenance", "status_component")


#: the condition settings, in the order they win when several are on
CONDITIONS = ("maintenance", "server_error", "disabled", "quota_exceeded", "rate_limited")
_CODE = re.compile(r"[A-Za-z0-9_.-]{1,32}")
#: bounds of numeric settings (others: not negative)
_RANGES: dict[str, tuple[float, float]] = {"delay": (0, 600), "clock_offset": (-86400 * 365, 86400 * 365),
                                           "retry_after": (0, 86400 * 7), "flaky": (0, 1)}


def _show(value: Any) -> str:
    """A setting's value for a one-line error: short, whatever was sent."""
    text = repr(value)
    return text if len(text) <= 40 else text[:37] + "..."


class ControlError(ValueError):
    """A control setting that does not exist, has the wrong type, or means nothing for this vendor."""


class Simulator:
    """One vendor on 127.0.0.1. Subclasses add routes and answer; what they know of their vendor (which code
    each condition gives, its own settings, the demo credentials) is its entry in vendors.yaml."""

    vendor: ClassVar[str]
    #: the path prefix a target's base_url carries (e.g. ``/v1`` for Flipsnack)
    prefix: ClassVar[str] = ""
    #: condition -> the vendor's code for it; a condition missing here has no documented signal
    condition_codes: ClassVar[Mapping[str, str]] = {}
    #: vendor-specific settings and their healthy values
    extra_settings: ClassVar[Mapping[str, Any]] = {}
    #: the demo credentials this simulator accepts unless others are given
    default_credentials: ClassVar[Mapping[str, str]] = {}
    #: the keys of its vendor's entry in vendors.yaml a simulator of this kind reads, each becoming the
    #: class attribute of that name; one without a default in the class is required
    #: the vendor's own public status page, served on the simulator's port, if its catalog names one
    status_page: ClassVar[StatusPageSim | None] = None
    settings_keys: ClassVar[tuple[str, ...]] = ("prefix", "condition_codes", "extra_settings", "default_credentials",
                                                "status_page")

    def __init_subclass__(cls, vendor: str = "", **kwargs: Any) -> None:
        """``class XSimulator(Simulator, vendor="x")``: the class simulates vendor x, with the settings of
        x's entry in vendors.yaml (checked against what a simulator of its kind reads and needs)."""
        super().__init_subclass__(**kwargs)
        if vendor:
            needs = [key for key in cls.settings_keys if not hasattr(cls, key)]
            for key, value in vendor_settings(vendor, cls.settings_keys, needs, CONDITIONS, COMMON_SETTINGS).items():
                setattr(cls, key, value)
            cls.vendor = vendor

    def __init__(self, clock: Clock | None = None, credentials: Mapping[str, str] | None = None) -> None:
        self.clock: Clock = clock or SystemClock()
        self.creds = {**self.default_credentials, **(credentials or {})}
        self.counts: Counter[str] = Counter()
        self.settings: dict[str, Any] = {}
        self.url = ""
        self._runner: web.AppRunner | None = None
        self._rng = random.Random()  # which answers fail (the flaky setting)
        self.reset()

    # --- what a target needs ---------------------------------------------------------------------
    @property
    def base_url(self) -> str:
        return self.url + self.prefix

    def credentials(self) -> dict[str, str]:
        """The credentials this simulator accepts (while not rotated)."""
        return dict(self.creds)

    def check(self) -> dict[str, Any]:
        """The ``check`` override a target needs, if any."""
        return {}

    def catalog_override(self) -> dict[str, Any]:
        """What a config's ``vendors:`` block must change in the built-in catalog to reach this simulator
        (a token endpoint on another host, say), if anything."""
        return {}

    # --- state -----------------------------------------------------------------------------------
    def reset(self) -> None:
        """Healthy again; counts are kept (tests compare them across conditions)."""
        self.settings = {**COMMON_SETTINGS, **self.extra_settings}
        #: when the status page last changed: its updated_at, so an unchanged page keeps its ETag
        self.status_since = self.clock.time()
        self.on_reset()

    def on_reset(self) -> None:
        """Subclasses drop vendor state (tokens, rate windows) here."""

    def now(self) -> float:
        """The vendor's idea of the time: our clock plus the configured offset."""
        return self.clock.time() + float(self.settings["clock_offset"])

    def secret(self, value: str) -> str:
        """What the vendor expects for a secret credential: a rotated one no longer matches ours."""
        return value + "-rotated" if self.settings["rotated"] else value

    def control(self, **settings: Any) -> dict[str, Any]:
        """Switch conditions on or off; ``reset=True`` first returns to healthy. Raises ControlError,
        and then changes nothing: a half-applied condition would make a test or the demo lie."""
        reset = settings.pop("reset", False)
        if not isinstance(reset, bool):
            raise ControlError(f"{self.vendor}: reset must be true or false, got {_show(reset)}")
        checked: dict[str, Any] = {}
        for key, value in settings.items():
            if key not in self.settings:
                known = ", ".join(sorted([*self.settings, "reset"]))
                raise ControlError(f"{self.vendor}: unknown control setting {_show(key)} (known: {known})")
            default = COMMON_SETTINGS.get(key, self.extra_settings.get(key))
            checked[key] = self._coerce(key, value, default)
            if key in CONDITIONS and checked[key] and key not in self.condition_codes:
                raise ControlError(f"{self.vendor}: the vendor documents no signal for {key}")
        if reset:
            self.reset()
        for key, value in checked.items():
            self.settings[key] = value
            if key in _STATUS_TEXT:
                self.status_since = self.now()
            self.on_control(key)
        return self.status()

    def _coerce(self, key: str, value: Any, default: Any) -> Any:
        if key in _STATUS_TEXT:
            page = self.status_page
            if page is None:
                raise ControlError(f"{self.vendor}: the vendor has no status page to declare anything on")
            if value is not None and (not isinstance(value, str) or not 0 < len(value) <= 200):
                raise ControlError(f"{self.vendor}: {key} must be a text of 1 to 200 characters or null")
            if key == "status_component" and value is not None and value not in dict(page.components):
                known = ", ".join(cid for cid, _ in page.components)
                raise ControlError(f"{self.vendor}: status_component {_show(value)} is not listed (known: {known})")
            return value
        if key == "code":
            if value is None:
                return None
            text = str(value)
            if isinstance(value, bool) or not _CODE.fullmatch(text):
                raise ControlError(f"{self.vendor}: code {_show(value)} must be letters, digits, '.', '_' or '-'")
            return text
        if isinstance(default, bool):
            if not isinstance(value, bool):
                raise ControlError(f"{self.vendor}: {key} must be true or false, got {_show(value)}")
            return value
        if isinstance(default, int | float):
            if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
                raise ControlError(f"{self.vendor}: {key} must be a number, got {_show(value)}")
            low, high = _RANGES.get(key, (0, math.inf))
            if not low <= value <= high:
                raise ControlError(f"{self.vendor}: {key} must be between {low:g} and {high:g}, got {value!r}")
            return type(default)(value)
        return value

    def on_control(self, key: str) -> None:
        """Subclasses react to a setting (e.g. revoke tokens when credentials rotate)."""

    def status(self) -> dict[str, Any]:
        return {"vendor": self.vendor, "base_url": self.base_url, "settings": dict(self.settings),
                "counts": dict(self.counts)}

    def condition(self) -> str | None:
        """The code the switched-on condition answers with, if any (a forced code wins)."""
        if self.settings["code"] is not None:
            return str(self.settings["code"])
        for cond in CONDITIONS:
            if self.settings[cond] and cond in self.condition_codes:
                return self.condition_codes[cond]
        return None

    def health_check(self) -> str | None:
        """Count one health-check request; the code a test forced on it (it wins over everything), if any."""
        self.counts["health"] += 1
        forced = self.settings["code"]
        return None if forced is None else str(forced)

    def before_credentials(self) -> str | None:
        """Count one health check; the code the vendor answers it with before looking at the credentials,
        if any: a forced one, or that of a switched-on condition of the whole vendor (maintenance, an outage)."""
        return self.health_check() or self._condition_among(("maintenance", "server_error"))

    def account_condition(self) -> str | None:
        """The code of a switched-on condition of our account (disabled, quota, rate limited), which
        the vendor answers once it has accepted the credentials, if any."""
        return self._condition_among(("disabled", "quota_exceeded", "rate_limited"))

    def _condition_among(self, conditions: tuple[str, ...]) -> str | None:
        return next((self.condition_codes[c] for c in conditions if self.settings[c] and c in self.condition_codes),
                    None)

    # --- HTTP ------------------------------------------------------------------------------------
    def routes(self, app: web.Application) -> None:
        raise NotImplementedError

    def make_app(self) -> web.Application:
        app = web.Application(middlewares=[self._middleware])
        app.router.add_get("/_control", self._get_control)
        app.router.add_post("/_control", self._post_control)
        page = self.status_page
        if page is not None:  # before the vendor's routes: some end in a catch-all
            app.router.add_get(page.path, self._status_page)
        self.routes(app)
        return app

    # --- the vendor's own status page (conditional GETs answered as a CDN would) ------------------

    def status_document(self) -> dict[str, Any]:
        """The page as its format lays it out, with the declared incident or maintenance."""
        page = self.status_page
        assert page is not None  # served only for a vendor with a page
        stamp = datetime.fromtimestamp(self.status_since, UTC).isoformat().replace("+00:00", "Z")
        target = self.settings["status_component"] or page.components[0][0]
        incident, maint = self.settings["status_incident"], self.settings["status_maintenance"]
        names = dict(page.components)
        if page.format == "slack":
            events = [{"id": n, "date_created": stamp, "date_updated": stamp, "title": title, "type": kind,
                       "status": "active", "url": "https://status.slack.com/", "services": [target], "notes": []}
                      for n, (title, kind) in enumerate(((incident, "incident"), (maint, "maintenance")), 1) if title]
            return {"status": "active" if events else "ok", "active_incidents": events,
                    "date_created": stamp, "date_updated": stamp}
        worst = "major_outage" if incident else "under_maintenance" if maint else "operational"
        components = [{"id": cid, "name": name, "status": worst if cid == target else "operational",
                       "updated_at": stamp, "group": False} for cid, name in page.components]
        doc: dict[str, Any] = {
            "page": {"id": "simulated", "name": self.vendor, "url": self.url, "updated_at": stamp},
            "status": {"indicator": "major" if incident else "maintenance" if maint else "none",
                       "description": "Partial System Outage" if incident else "All Systems Operational"},
            "components": components,
            "scheduled_maintenances": [{
                "id": "simmaint0001", "name": maint, "status": "in_progress", "impact": "maintenance",
                "scheduled_for": stamp, "scheduled_until": stamp, "updated_at": stamp,
                "components": [{"id": target, "name": names[target]}]}] if maint else [],
        }
        if page.format == "statuspage":  # incident.io's summary has no incidents key
            doc["incidents"] = [{
                "id": "simincident1", "name": incident, "status": "investigating", "impact": "major",
                "created_at": stamp, "started_at": stamp, "updated_at": stamp,
                "components": [{"id": target, "name": names[target]}]}] if incident else []
        return doc

    async def _status_page(self, request: web.Request) -> web.Response:
        self.counts["status_page"] += 1
        body = json.dumps(self.status_document(), sort_keys=True).encode()
        etag = f'"{hashlib.sha256(body).hexdigest()[:16]}"'
        if request.headers.get("If-None-Match") == etag:
            self.counts["status_page_not_modified"] += 1
            return web.Response(status=304, headers={"ETag": etag})
        return web.Response(body=body, content_type="application/json", headers={"ETag": etag})

    @web.middleware
    async def _middleware(self, request: web.Request, handler: Any) -> web.StreamResponse:
        page = self.status_page
        if request.path == "/_control" or (page is not None and request.path == page.path):
            # the status page is another service of the vendor's: its conditions do not touch it
            response: web.StreamResponse = await handler(request)
            return response
        self.counts["requests"] += 1
        if self.settings["delay"] > 0:
            # read the body before a slow spell: the client may give up meanwhile, and then it is gone
            await request.read()
            await asyncio.sleep(float(self.settings["delay"]))
        if self.settings["flaky"] > 0 and self._rng.random() < self.settings["flaky"]:
            self.counts["flaky"] += 1
            if self._rng.random() < 0.5 and request.transport is not None:
                request.transport.close()
                raise asyncio.CancelledError
            return web.Response(status=503, text="upstream unavailable\n")
        if self.settings["down"] and request.transport is not None:
            # a vendor whose load balancer drops the connection: no status line at all
            request.transport.close()
            raise asyncio.CancelledError
        response = await handler(request)
        return response

    async def _get_control(self, request: web.Request) -> web.Response:
        return web.json_response(self.status())

    async def _post_control(self, request: web.Request) -> web.Response:
        try:
            data = json.loads(await request.read() or b"{}")
        except (ValueError, RecursionError):  # hostile nesting is bad JSON too
            return web.json_response({"error": "control body must be a JSON object"}, status=400)
        if not isinstance(data, dict):
            return web.json_response({"error": "control body must be a JSON object"}, status=400)
        try:
            return web.json_response(self.control(**data))
        except ControlError as exc:
            return web.json_response({"error": str(exc)}, status=400)

    async def start(self, host: str = "127.0.0.1", port: int = 0, ssl_context: ssl.SSLContext | None = None) -> None:
        """Listen on ``host``; with ``ssl_context``, over HTTPS."""
        # a short shutdown: a slow-spell answer still sleeping must not hold up closing the simulator
        self._runner = web.AppRunner(self.make_app(), access_log=None, handle_signals=False, shutdown_timeout=1.0)
        await self._runner.setup()
        await web.TCPSite(self._runner, host, port, ssl_context=ssl_context).start()
        bound = self._runner.addresses[0]
        shown = f"[{host}]" if ":" in host else host
        self.url = f"{'https' if ssl_context else 'http'}://{shown}:{bound[1]}"

    async def close(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None


class WindowedSimulator(Simulator):
    """A vendor that limits the requests of one key over a sliding window, on the simulator's clock,
    with a ``burst`` action (requests with our key by someone else, now) that fills the window."""

    #: requests the window holds, and its length in seconds
    window_limit: ClassVar[int]
    window_seconds: ClassVar[float]
    settings_keys = (*Simulator.settings_keys, "window_limit", "window_seconds")

    def on_reset(self) -> None:
        self.calls: deque[float] = deque()

    def on_control(self, key: str) -> None:
        if key == "burst":
            # more than fills the window changes nothing, and must not exhaust memory
            self.calls.extend([self.now()] * min(int(self.settings["burst"]), self.window_limit))
            self.settings["burst"] = 0

    def _in_window(self, now: float) -> int:
        while self.calls and self.calls[0] <= now - self.window_seconds:
            self.calls.popleft()
        return len(self.calls)

    def window(self) -> int:
        """Requests in the window (expired ones dropped)."""
        return self._in_window(self.now())

    def booked(self) -> bool:
        """Book one request in the window, or say the window is full."""
        now = self.now()
        if self._in_window(now) >= self.window_limit:
            return False
        self.calls.append(now)
        return True


def json_answer(data: Any, status: int = 200, headers: Mapping[str, str] | None = None) -> web.Response:
    return web.Response(status=status, body=json.dumps(data).encode(), content_type="application/json",
                        headers=dict(headers or {}))


class HeaderKeySimulator(WindowedSimulator):
    """A vendor whose health check is one GET with a static key in a header (Cloudflare, Datadog,
    SendGrid, PagerDuty, Anthropic). The order is the vendors' own: a forced code, then a vendor-wide
    condition, then the key, then what is the key's own (disabled, quota, rate limit, the window).
    Its path, header and codes are the vendor's entry in vendors.yaml; a subclass writes each answer the
    way its vendor does."""

    #: the health check's path (under ``prefix``), the header carrying the key and the key's prefix in it
    path: ClassVar[str]
    key_header: ClassVar[str]
    key_scheme: ClassVar[str] = ""
    #: the credential that holds the key
    key_credential: ClassVar[str] = "api_key"
    #: the code for a missing and for a wrong key
    missing_key_code: ClassVar[str]
    wrong_key_code: ClassVar[str]
    window_limit = 1_000_000
    window_seconds = 60.0
    settings_keys = (*WindowedSimulator.settings_keys, "path", "key_header", "key_scheme", "key_credential",
                     "missing_key_code", "wrong_key_code")

    def routes(self, app: web.Application) -> None:
        app.router.add_get(self.prefix + self.path, self.handle)
        app.router.add_route("*", "/{tail:.*}", self.not_found)

    async def not_found(self, request: web.Request) -> web.Response:
        return self.answer("404")

    def answer(self, code: str) -> web.Response:
        """The vendor's answer carrying ``code`` (any code, documented or not)."""
        raise NotImplementedError

    def healthy(self, request: web.Request) -> web.Response:
        raise NotImplementedError

    def headers(self) -> dict[str, str]:
        """Headers every answer carries (rate-limit figures)."""
        return {}

    def key_of(self, request: web.Request) -> str | None:
        value = request.headers.get(self.key_header)
        if value is None or not value.startswith(self.key_scheme):
            return None
        return value[len(self.key_scheme):] or None

    async def handle(self, request: web.Request) -> web.Response:
        if (early := self.before_credentials()) is not None:
            return self.answer(early)
        key = self.key_of(request)
        if key is None:
            return self.answer(self.missing_key_code)
        if key != self.secret(self.creds[self.key_credential]):
            return self.answer(self.wrong_key_code)
        if (refused := self.account_condition()) is not None:
            return self.answer(refused)
        if not self.booked():
            return self.answer(self.condition_codes["rate_limited"])
        return self.healthy(request)
