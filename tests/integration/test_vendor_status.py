"""The vendors' own status pages end to end: the simulators serve them, the exporter reads them (one
conditional request per vendor and minute, whatever the number of targets), and /metrics, the status
page and /api/v1 show beside each target what the vendor declares."""

from __future__ import annotations

import asyncio
import json
import time
from typing import Any

from aiohttp import web
from yarl import URL

from exporter.catalog import StatusPageSpec
from exporter.clock import FakeClock
from exporter.engine import new_session
from exporter.probe import Prober
from exporter.simulators import SIMULATORS, SimulatorSet
from exporter.simulators.faults import FaultServer
from exporter.statuspage import parse
from exporter.vendorstatus import FETCH_EVERY, PageState, VendorStatusBook

from ..conftest import config_from, idle, running_exporter, sample, serve
from ..relay import Relay

#: every vendor whose simulator serves a status page (each built-in catalog that names one)
WITH_PAGES = tuple(sim.vendor for sim in SIMULATORS if sim.status_page is not None)


def config(s: SimulatorSet, copies: int = 1, **target_extra: Any) -> dict[str, Any]:
    raw = s.targets_config("30s", status_pages=True)
    targets = []
    for t in raw["targets"]:
        if t["vendor"] in WITH_PAGES:
            for i in range(copies):
                targets.append({**t, "name": f"{t['name']}-{i}", **target_extra.get(t["vendor"], {})})
    raw["targets"] = targets
    return raw


async def settle(clock: FakeClock, seconds: float = 1.0) -> None:
    await clock.advance(seconds)


async def test_one_conditional_request_per_vendor_a_minute_for_many_targets(
        sims: tuple[SimulatorSet, FakeClock]) -> None:
    s, clock = sims
    async with running_exporter(config_from(config(s, copies=5)), clock=clock) as run:
        await settle(clock)
        await idle(run)
        for vendor in WITH_PAGES:
            assert s.counts(vendor)["status_page"] == 1, vendor
        text = await run.metrics()
        for vendor in WITH_PAGES:
            assert sample(text, "apistatus_vendor_status_fetch_success", vendor=vendor) == 1
        # a minute on: one more request each, answered 304 (nothing changed), and still a success
        for _ in range(6):
            await clock.advance(FETCH_EVERY / 6)
        await idle(run)
        for vendor in WITH_PAGES:
            assert s.counts(vendor)["status_page"] == 2, vendor
            assert s.counts(vendor)["status_page_not_modified"] == 1, vendor
        text = await run.metrics()
        assert sample(text, "apistatus_vendor_status_fetch_success", vendor="github") == 1
        assert sample(text, "apistatus_vendor_component_status", vendor="github", component="brv1bkgrwx7q") == 0


async def test_a_declared_incident_shows_beside_the_failing_target_and_in_metrics(
        sims: tuple[SimulatorSet, FakeClock]) -> None:
    s, clock = sims
    extra = {"github": {"status_components": ["brv1bkgrwx7q"]}}
    async with running_exporter(config_from(config(s, **extra)), clock=clock) as run:
        await settle(clock)
        await idle(run)
        await s.control("github", server_error=True, status_incident="Degraded API performance")
        await s.control("twilio", status_maintenance="Database upgrade", status_component="tw0voice0001")
        await s.control("openai", status_incident="Elevated errors on Login",
                        status_component="01J00000000000000000000A04")
        await s.control("slack", status_incident="Trouble sending messages", status_component="Messaging")
        await clock.advance(FETCH_EVERY)
        await idle(run)
        text = await run.metrics()
        assert sample(text, "apistatus_vendor_incident_active", target="github-0") == 1
        assert sample(text, "apistatus_vendor_incident_info", vendor="github", name="Degraded API performance",
                        impact="major") == 1
        assert sample(text, "apistatus_vendor_component_status", vendor="github", component="brv1bkgrwx7q") == 4
        # a maintenance on a component: every component watched (the default), so it counts
        assert sample(text, "apistatus_vendor_maintenance", target="twilio-0") == 1
        assert sample(text, "apistatus_vendor_incident_active", target="twilio-0") == 0
        # incident.io: no incidents list; the component's own status is the vendor's word
        assert sample(text, "apistatus_vendor_incident_active", target="openai-0") == 1
        assert sample(text, "apistatus_vendor_component_status", vendor="openai",
                        component="01J00000000000000000000A04", name="Login") == 4
        assert sample(text, "apistatus_vendor_component_status", vendor="openai",
                        component="01J00000000000000000000A03", name="Login") == 0
        assert sample(text, "apistatus_vendor_incident_active", target="slack-0") == 1
        _, body = await run.get("/api/v1/targets")
        views = {t["name"]: t for t in json.loads(body)["targets"]}
        assert views["github-0"]["vendor_status"]["summary"].startswith("vendor confirms: Degraded API performance")
        assert views["twilio-0"]["vendor_status"]["summary"] == "vendor confirms maintenance: Database upgrade"
        page = (await run.get("/"))[1]
        assert "vendor confirms: Degraded API performance" in page


async def test_an_incident_on_a_component_the_target_does_not_watch_is_not_its_vendors_word(
        sims: tuple[SimulatorSet, FakeClock]) -> None:
    s, clock = sims
    extra = {"github": {"status_components": ["brv1bkgrwx7q"]}}
    async with running_exporter(config_from(config(s, **extra)), clock=clock) as run:
        await s.control("github", server_error=True, status_incident="Webhooks delayed",
                        status_component="4230lsnqdsld")
        await settle(clock)
        await idle(run)
        text = await run.metrics()
        assert sample(text, "apistatus_vendor_incident_active", target="github-0") == 0
        view = run.exporter.vendor_view("github-0")
        assert view is not None and view.summary() == "vendor reports operational"


async def test_a_reload_keeps_what_a_page_said_and_costs_no_extra_read(sims: tuple[SimulatorSet, FakeClock]) -> None:
    s, clock = sims
    await s.control("github", status_incident="Incident with API Requests")
    loads: dict[str, dict[str, Any]] = {"raw": config(s)}  # what a SIGHUP loads
    async with running_exporter(config_from(loads["raw"]), clock=clock,
                                loader=lambda: config_from(loads["raw"])) as run:
        await settle(clock)
        await idle(run)
        assert s.counts("github")["status_page"] == 1
        exp = run.exporter
        # the same targets with another label, and one more github target: the pages stay as they were
        second = config(s)
        second["targets"] = [{**t, "labels": {"team": "x"}} for t in second["targets"]]
        github = next(t for t in second["targets"] if t["vendor"] == "github")
        second["targets"].append({**github, "name": "github-extra"})
        loads["raw"] = second
        ok, message = await exp.reload()
        assert ok, message
        await clock.advance(1)
        await idle(run)
        assert s.counts("github")["status_page"] == 1  # no read for the reload
        view = exp.vendor_view("github-extra")
        assert view is not None and view.summary().startswith("vendor confirms: Incident with API Requests")
        # a reload that drops the vendor's page (an override with status_page: null) drops its series
        third = config(s)
        third["vendors"]["github"] = {"status_page": None}
        loads["raw"] = third
        ok, message = await exp.reload()
        assert ok, message
        text = await run.metrics()
        assert sample(text, "apistatus_vendor_status_fetch_success", vendor="github") is None
        assert sample(text, "apistatus_vendor_status_fetch_success", vendor="slack") == 1
        assert exp.vendor_view("github-0") is None


async def test_hostile_text_on_a_status_page_keeps_metrics_and_pages_valid(
        sims: tuple[SimulatorSet, FakeClock]) -> None:
    from .test_endpoints import promtool_check

    s, clock = sims
    hostile = 'He said "down" \\ now\x1b[31m \u202eevil <script>alert(1)</script> \U0001f642'
    await s.control("github", status_incident=hostile)
    await s.control("slack", status_maintenance=hostile, status_component="Messaging")
    async with running_exporter(config_from(config(s)), clock=clock) as run:
        await settle(clock)
        await idle(run)
        text = await run.metrics()
        check = promtool_check(text)
        assert check.returncode == 0, check.stdout + check.stderr
        shown = 'He said "down" \\ now [31m  evil <script>alert(1)</script> \U0001f642'
        assert sample(text, "apistatus_vendor_incident_info", vendor="github", name=shown) == 1
        page = (await run.get("/"))[1]
        assert "<script>alert" not in page and "\x1b" not in page and "\u202e" not in page
        _, body = await run.get("/api/v1/targets")
        assert "\\u202e" not in body and "\\u001b" not in body


GOOD_PAGE = json.dumps({"page": {"id": "p"}, "status": {"indicator": "minor"}, "components": [
    {"id": "c00000000001", "name": "API", "status": "partial_outage"}], "incidents": [
    {"id": "i00000000001", "name": "Slow API", "status": "investigating", "impact": "minor",
     "components": [{"id": "c00000000001"}]}]}).encode()


async def test_a_status_page_cut_into_tiny_segments_is_read_whole() -> None:
    async def page(request: web.Request) -> web.Response:
        return web.Response(body=GOOD_PAGE, content_type="application/json", headers={"ETag": '"v2"'})

    clock = FakeClock()
    async with serve(page) as url, new_session() as session:
        upstream = URL(url)
        relay = await Relay(upstream.host or "127.0.0.1", upstream.port or 80).start()
        try:
            book = VendorStatusBook(Prober(session, clock), clock)
            state = PageState("github", StatusPageSpec(relay.url + "/api/v2/summary.json", "statuspage"), None, 5.0)
            await book.read(state)
        finally:
            await relay.close()
    assert state.ok and state.error == "" and state.etag == '"v2"'
    assert relay.pieces > 50  # it really came in pieces
    current = state.current(clock.time())
    assert current is not None and [i.name for i in current.incidents] == ["Slow API"]


async def test_a_hostile_status_page_server_is_one_line_within_the_timeout_and_keeps_the_last_good_read(
        ) -> None:
    """A status page is untrusted input on the wire too: the probe's path (its timeout, body cap, decoding
    limits and failure map) reads it. Each fault of the fault server ends within the timeout as a failed
    read with a one-line reason, and what an earlier good read said still stands."""
    good = GOOD_PAGE
    faults = ["no_answer", "slow_headers", "trickle", "reset", "big_body", "gzip_bomb", "invalid_json",
              "wrong_content_type", "huge_header", "redirect_loop"]
    srv = await FaultServer.start(drip_interval=0.05)
    clock = FakeClock()
    try:
        async with new_session() as session:
            book = VendorStatusBook(Prober(session, clock, max_body=1 << 20), clock)
            pages = {f: PageState("github", StatusPageSpec(srv.url(f), "statuspage"), None, 1.0) for f in faults}
            for page in pages.values():  # what an earlier read said (its validators too)
                page.status, page.ok, page.success_at = parse("statuspage", good), True, clock.time()
                page.etag = '"v1"'
            started = time.monotonic()
            await asyncio.gather(*(book.read(page) for page in pages.values()))
            took = time.monotonic() - started
    finally:
        await srv.close()
    assert took < 5.0, took  # every read ended by the 1 s timeout (with slack for a loaded machine)
    for fault, page in pages.items():
        assert not page.ok and page.error and "\n" not in page.error and len(page.error) <= 200, (fault, page.error)
        assert page.fetches == 1 and page.due >= clock.monotonic() + FETCH_EVERY - 1
        # the last good read still stands (until STALE_AFTER), and the next read is conditional on it
        current = page.current(clock.time())
        assert current is not None and [i.name for i in current.incidents] == ["Slow API"], fault
        assert page.etag == '"v1"'
    reasons = {fault: page.error for fault, page in pages.items()}
    assert reasons["big_body"] == reasons["gzip_bomb"] == "the status page is larger than max_body_bytes"
    assert reasons["invalid_json"] == "the status page is not valid JSON"
    assert reasons["wrong_content_type"] == "the status page is not valid JSON"
    assert reasons["no_answer"].startswith("timeout") and reasons["trickle"].startswith("timeout"), reasons
