"""Our own egress: egress checks through the prober, the derived "most targets across three vendors
fail at the transport level" signal, and a hostile vendor status page read through the same path."""

from __future__ import annotations

import asyncio
import contextlib
import json
from typing import Any

from aiohttp import web

from exporter.clock import FakeClock
from exporter.simulators import SimulatorSet
from exporter.vendorstatus import FETCH_EVERY

from ..conftest import config_from, idle, running_exporter, sample, serve

FOUR = ("bannersnack", "bizwebs", "rubiq", "flipsnack")


def four_vendors(s: SimulatorSet, **top: Any) -> dict[str, Any]:
    raw = s.targets_config("30s", timeout="2s")
    raw["targets"] = [t for t in raw["targets"] if t["vendor"] in FOUR]
    raw.update(top)
    return raw


async def test_an_egress_check_is_up_or_down_by_its_expected_status(sims: tuple[SimulatorSet, FakeClock]) -> None:
    s, clock = sims
    answer = {"status": 204}

    async def canary(request: web.Request) -> web.Response:
        return web.Response(status=answer["status"])

    async with serve(canary) as url:
        checks = [{"name": "corp-canary", "url": url + "/healthz", "expect_status": [204]},
                  {"name": "any-answer", "url": url + "/other"}]
        async with running_exporter(config_from(four_vendors(s, egress_checks=checks)), clock=clock) as run:
            await clock.advance(0.5)
            await idle(run)
            text = await run.metrics()
            assert sample(text, "apistatus_egress_up", egress="corp-canary", check="corp-canary") == 1
            assert sample(text, "apistatus_egress_up", check="any-answer") == 1
            # both share the default settings: one egress, named after the first check
            assert sample(text, "apistatus_egress_up", egress="corp-canary", check="any-answer") == 1
            assert sample(text, "apistatus_target_egress_info", target="rubiq", egress="corp-canary") == 1
            assert sample(text, "apistatus_egress_suspected_down", egress="corp-canary") == 0
            # never a vendor: no apistatus_up, no target of that name
            assert sample(text, "apistatus_up", target="corp-canary") is None
            answer["status"] = 503
            await clock.advance(30.5)
            await idle(run)
            text = await run.metrics()
            assert sample(text, "apistatus_egress_up", check="corp-canary") == 0
            assert sample(text, "apistatus_egress_http_status_code", check="corp-canary") == 503
            assert sample(text, "apistatus_egress_up", check="any-answer") == 1  # any answer is reachable
            _, body = await run.get("/api/v1/targets")
            [row] = json.loads(body)["egress"]
            assert row["egress"] == "corp-canary"
            assert [(c["name"], c["up"], c["code"]) for c in row["checks"]] == [
                ("corp-canary", False, "http_503"), ("any-answer", True, None)]
            page = (await run.get("/"))[1]
            assert "Our egress" in page and "corp-canary" in page


async def test_most_targets_failing_at_the_transport_level_across_three_vendors_points_at_us(
        sims: tuple[SimulatorSet, FakeClock]) -> None:
    s, clock = sims
    async with running_exporter(config_from(four_vendors(s)), clock=clock) as run:
        await clock.advance(6)
        await idle(run)
        text = await run.metrics()
        assert sample(text, "apistatus_egress_suspected_down", egress="default") == 0
        assert sample(text, "apistatus_egress_targets", egress="default") == 4
        # two vendors unreachable: their trouble, not ours
        for vendor in ("bannersnack", "bizwebs"):
            await s.control(vendor, down=True)
        await clock.advance(31)
        await idle(run)
        text = await run.metrics()
        assert sample(text, "apistatus_egress_targets_transport_failing", egress="default") == 2
        assert sample(text, "apistatus_egress_suspected_down", egress="default") == 0
        # a third: three of four targets, three vendors, at once
        await s.control("rubiq", down=True)
        await clock.advance(31)
        await idle(run)
        text = await run.metrics()
        assert sample(text, "apistatus_egress_targets_transport_failing", egress="default") == 3
        assert sample(text, "apistatus_egress_suspected_down", egress="default") == 1
        page = (await run.get("/"))[1]
        assert "our egress looks DOWN" in page
        # a vendor answering with errors is no transport failure
        for vendor in ("bannersnack", "bizwebs", "rubiq"):
            await s.control(vendor, reset=True)
        await s.control("bannersnack", server_error=True)
        await clock.advance(90)
        await idle(run)
        text = await run.metrics()
        assert sample(text, "apistatus_egress_suspected_down", egress="default") == 0


async def test_a_hostile_status_page_costs_one_failed_read_and_nothing_else(
        sims: tuple[SimulatorSet, FakeClock]) -> None:
    s, clock = sims
    mode = {"kind": "huge"}
    done = asyncio.Event()  # set at the end: the slow answer then ends, and the server closes at once

    async def page(request: web.Request) -> web.StreamResponse:
        kind = mode["kind"]
        if kind == "huge":  # larger than max_body_bytes
            body = json.dumps({"components": [{"id": f"c{i:011d}", "name": "x" * 100, "status": "operational"}
                                              for i in range(20000)]})
            return web.Response(body=body.encode(), content_type="application/json")
        if kind == "slow":
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(done.wait(), 5)
        if kind == "error":
            return web.Response(status=502, text="<html>Bad gateway</html>")
        return web.Response(body=b'{"components": [], "incidents": []}', content_type="application/json",
                            headers={"ETag": '"' + "x" * 5000 + '"'})

    async with serve(page) as url:
        raw = s.targets_config("30s", timeout="1s")
        raw["targets"] = [t for t in raw["targets"] if t["vendor"] == "github"]
        raw["vendors"] = {"github": {"status_page": {"url": url + "/api/v2/summary.json", "format": "statuspage",
                                                     "hosts": ["127.0.0.1"]}}}
        async with running_exporter(config_from(raw), clock=clock) as run:
            exp = run.exporter
            assert exp.vendor_status is not None
            for kind, error in (("huge", "the status page is larger than max_body_bytes"), ("error", "HTTP 502"),
                                ("slow", "timeout: no complete answer within the timeout"), ("fine", "")):
                mode["kind"] = kind
                page_state = exp.vendor_status.pages["github"]
                # a page is read as soon as the exporter starts: the huge one is the first read
                before = page_state.fetches if kind != "huge" else 0
                await clock.advance(FETCH_EVERY if kind != "huge" else 6)
                for _ in range(500):  # the slow page takes its 1 s timeout in real time
                    if page_state.fetches > before and page_state.attempted_at and (
                            page_state.error != "not read yet") and (kind != "slow" or page_state.error == error):
                        break
                    await asyncio.sleep(0.01)
                text = await run.metrics()
                assert exp.vendor_status.pages["github"].error == error, kind
                assert sample(text, "apistatus_vendor_status_fetch_success", vendor="github") == (0 if error else 1)
                assert sample(text, "apistatus_up", target="github") == 1  # the probes go on as before
            # a validator too long to be one is not sent back
            assert exp.vendor_status.pages["github"].etag == ""
        done.set()


async def test_an_egress_check_never_shows_its_proxy_password(sims: tuple[SimulatorSet, FakeClock]) -> None:
    """The proxy of an egress check carries a password: it is in no page, API answer, metric or log
    line, in any encoding, while the check fails through that proxy (nothing listens there)."""
    import base64
    import logging
    import urllib.parse

    s, clock = sims
    password = "Eg-r3ss/P@ss w0rd"
    proxy = f"http://canary-user:{urllib.parse.quote(password, safe='')}@127.0.0.1:9"
    checks = [{"name": "corp-proxy", "url": "http://canary.corp.example/healthz",
               "http_client": {"proxy_url": proxy}}]
    records: list[str] = []

    class Keep(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            records.append(self.format(record))

    handler = Keep()
    logging.getLogger("exporter").addHandler(handler)
    try:
        async with running_exporter(config_from(four_vendors(s, egress_checks=checks)), clock=clock) as run:
            await clock.advance(0.5)
            await idle(run)
            text = await run.metrics()
            assert sample(text, "apistatus_egress_up", egress="corp-proxy") == 0
            shown = [text, (await run.get("/"))[1], (await run.get("/api/v1/targets"))[1], *records]
    finally:
        logging.getLogger("exporter").removeHandler(handler)
    forms = {password, urllib.parse.quote(password, safe=""), urllib.parse.quote_plus(password),
             json.dumps(password)[1:-1], base64.b64encode(f"canary-user:{password}".encode()).decode(),
             base64.b64encode(password.encode()).decode()}
    for text in shown:
        for form in forms:
            assert form not in text
    assert "proxy_connect" in shown[2]  # the check's failure is shown, by its code
