"""A transport failure has the checks of its egress run again at once, and the probe that confirms it
waits for their answer: when ``apistatus_consecutive_failures`` reaches 2, ``apistatus_egress_up``
already says what the egress does now (what lets the alerts page a transport failure on 2 without
ever paging for our own egress). Real canary and vendor simulators on loopback, a FakeClock."""

from __future__ import annotations

import asyncio
import contextlib
import random
from collections.abc import AsyncIterator, Awaitable
from typing import Any

import pytest
from aiohttp import web

from exporter.clock import FakeClock
from exporter.collector import render_target
from exporter.config import Config, Target
from exporter.egresscheck import RECHECK_SPACING, EgressBook
from exporter.engine import new_session
from exporter.model import ProbeResult
from exporter.probe import Prober
from exporter.scheduler import Scheduler
from exporter.simulators import SimulatorSet
from exporter.state import State

from ..conftest import Running, config_from, idle, running_exporter, sample, serve

FOUR = ("bannersnack", "bizwebs", "rubiq", "flipsnack")


class Canary:
    """An egress check's URL that counts its requests and answers only when let go (``slow``)."""

    def __init__(self) -> None:
        self.requests = 0
        self.answered = 0
        self.status = 204
        self.go = asyncio.Event()
        self.go.set()

    async def handle(self, request: web.Request) -> web.Response:
        self.requests += 1
        await self.go.wait()
        self.answered += 1
        return web.Response(status=self.status)

    def slow(self) -> None:
        self.go.clear()


@contextlib.asynccontextmanager
async def canary_url() -> AsyncIterator[tuple[Canary, str]]:
    canary = Canary()
    async with serve(canary.handle) as url:
        try:
            yield canary, url + "/healthz"
        finally:
            canary.go.set()  # an answer still held lets the server close at once


def config(s: SimulatorSet, checks: list[dict[str, Any]]) -> dict[str, Any]:
    raw = s.targets_config("30s", timeout="2s")
    raw["targets"] = [t for t in raw["targets"] if t["vendor"] in FOUR]
    if checks:
        raw["egress_checks"] = checks
    return raw


async def step(run: Running, clock: FakeClock, seconds: float = 1.0) -> None:
    await clock.advance(seconds)
    await idle(run)
    for _ in range(20):  # what the step woke that is no probe (a check's answer, a re-check) settles
        await asyncio.sleep(0.005)


async def until_failing(run: Running, clock: FakeClock, name: str, limit: int = 45) -> None:
    for _ in range(limit):
        await step(run, clock)
        ts = run.exporter.state.get(name)
        if ts is not None and ts.last is not None and ts.last.outcome.cls == "network_error":
            return
    raise AssertionError(f"{name} never failed")


def failures(run: Running, name: str) -> int:
    ts = run.exporter.state.get(name)
    assert ts is not None
    return ts.consecutive_failures


async def test_the_confirmation_waits_for_the_egress_recheck(sims: tuple[SimulatorSet, FakeClock]) -> None:
    s, clock = sims
    async with canary_url() as (canary, url):
        cfg = config_from(config(s, [{"name": "corp-canary", "url": url, "expect_status": [204]}]))
        async with running_exporter(cfg, clock=clock) as run:
            await step(run, clock, 6)  # every target probed once, the egress checked once
            assert sample(await run.metrics(), "apistatus_egress_up", egress="corp-canary") == 1
            assert failures(run, "bizwebs") == 0
            before = canary.requests
            # our egress breaks (the canary says so, slowly) just as bizwebs stops answering
            canary.slow()
            canary.status = 503
            vendor = s.sims["bizwebs"]
            vendor.control(down=True)
            await until_failing(run, clock, "bizwebs")
            sent = vendor.counts["requests"]
            assert failures(run, "bizwebs") == 1
            assert canary.requests > before  # re-checked at once, not at the next interval
            # the confirmation would go out now; it waits while the canary has not answered, and holds
            # no place under max_concurrency meanwhile
            for _ in range(int(3 * RECHECK_SPACING) + 2):
                await step(run, clock)
                assert vendor.counts["requests"] == sent
                assert failures(run, "bizwebs") == 1
                assert run.exporter.scheduler is not None and run.exporter.scheduler.in_flight() == 0
            text = await run.metrics()
            assert sample(text, "apistatus_egress_up", egress="corp-canary") == 1  # not answered yet
            assert sample(text, "apistatus_consecutive_failures", target="bizwebs") == 1
            # /probe may not confirm it either: it answers from the latest result
            status, body = await run.get("/probe", params={"target": "bizwebs"})
            assert status == 200 and vendor.counts["requests"] == sent
            assert sample(body, "apistatus_probe_cached") == 1
            canary.go.set()
            for _ in range(10):
                await step(run, clock)
                if failures(run, "bizwebs") == 2:
                    break
            assert vendor.counts["requests"] == sent + 1  # confirmed, once
            text = await run.metrics()
            # the scrape that first shows the confirmed failure shows the egress as it is now
            assert sample(text, "apistatus_consecutive_failures", target="bizwebs") == 2
            assert sample(text, "apistatus_egress_up", egress="corp-canary") == 0
            assert sample(text, "apistatus_target_egress_info", target="bizwebs", egress="corp-canary") == 1
            # the failures after the first of a streak re-check nothing more
            settled = canary.requests
            await step(run, clock, 20)
            assert canary.requests == settled
    leftover = [t.get_name() for t in asyncio.all_tasks() if t.get_name().startswith(("hold:", "egress-check:"))]
    assert leftover == []


async def test_closing_while_a_confirmation_waits_leaves_nothing_behind(sims: tuple[SimulatorSet, FakeClock]) -> None:
    s, clock = sims
    async with canary_url() as (canary, url):
        cfg = config_from(config(s, [{"name": "corp-canary", "url": url}]))
        async with running_exporter(cfg, clock=clock) as run:
            await step(run, clock, 6)
            canary.slow()
            s.sims["bizwebs"].control(down=True)
            await until_failing(run, clock, "bizwebs")
            sched = run.exporter.scheduler
            assert sched is not None
            assert any(t.get_name() == "hold:bizwebs" for t in asyncio.all_tasks())
            # a reload keeps the target: it still waits, and the hold ends with the re-check
            ok, _ = await run.exporter.reload()
            assert ok
        # closed with the canary still silent: nothing hangs, nothing is left running
        leftover = [t.get_name() for t in asyncio.all_tasks()
                    if t.get_name().startswith(("hold:", "egress-check:", "probe:"))]
        assert leftover == []


async def test_without_an_egress_check_the_confirmation_goes_out_at_once(
        sims: tuple[SimulatorSet, FakeClock]) -> None:
    s, clock = sims
    async with running_exporter(config_from(config(s, [])), clock=clock) as run:
        await step(run, clock, 6)
        s.sims["bizwebs"].control(down=True)
        await until_failing(run, clock, "bizwebs")
        # the same step of the clock that saw the failure saw its confirmation: nothing to wait for
        assert failures(run, "bizwebs") == 2
        assert not any(t.get_name().startswith("hold:") for t in asyncio.all_tasks())


async def test_many_failures_share_one_recheck_of_their_egress() -> None:
    clock = FakeClock()
    async with canary_url() as (canary, url), new_session() as session:
        targets = [{"name": f"t{i}", "vendor": "flipsnack", "base_url": "http://127.0.0.1:9",
                    "credentials": {"api_key": f"k{i}", "secret": f"s{i}"}} for i in range(12)]
        proxied = {"proxy_url": "http://127.0.0.1:9"}
        cfg = config_from({"targets": targets, "egress_checks": [
            {"name": "corp-canary", "url": url}, {"name": "via-proxy", "url": url, "http_client": proxied}]})
        book = EgressBook(Prober(session, clock), clock)
        book.apply(cfg.egress_checks, cfg.targets, 60.0, 2.0)
        assert book.spacing == RECHECK_SPACING  # a 60 s interval: at most one run every 2 s
        try:
            canary.slow()
            # twelve targets fail at the same moment: one request to the canary, which all of them wait for
            waits = [book.recheck(f"t{i}") for i in range(12)]
            assert all(w is not None for w in waits)
            for _ in range(50):
                await asyncio.sleep(0.005)
            assert canary.requests == 1
            assert not any(w.done() for w in waits)  # type: ignore[union-attr]
            canary.go.set()
            await asyncio.wait_for(asyncio.gather(*waits), 5)  # type: ignore[arg-type]
            assert canary.requests == 1
            assert book.checks["corp-canary"].up is True
            # a run in flight went out before a failure seen after it started: that failure waits for
            # the next one, which every failure seen meanwhile shares, no sooner than the spacing
            # after the one before
            await clock.advance(10)
            canary.slow()
            first = book.recheck("t0")
            for _ in range(20):
                await asyncio.sleep(0.005)
            assert canary.requests == 2
            await clock.advance(0.5)
            later = [book.recheck(f"t{i}") for i in range(1, 12)]
            canary.go.set()
            assert first is not None
            await asyncio.wait_for(first, 5)
            for _ in range(20):
                await asyncio.sleep(0.005)
            assert canary.requests == 2 and not any(w.done() for w in later)  # type: ignore[union-attr]
            await clock.advance(book.spacing - 0.5)
            await asyncio.wait_for(asyncio.gather(*later), 5)  # type: ignore[arg-type]
            assert canary.requests == 3
            # the proxied check is another egress: never re-run by failures behind corp-canary; and a
            # target behind an egress without a check has nothing to wait for
            assert book.checks["via-proxy"].up is None
            book.apply(cfg.egress_checks[1:], cfg.targets, 60.0, 2.0)
            assert book.egress_of("t0") == "default"
            assert book.recheck("t0") is None
        finally:
            canary.go.set()
            await book.stop()


# --- the scheduler's side: a held probe keeps every promise of the schedule ----------------------------


def flip_config(url: str, key: str = "k", names: tuple[str, ...] = ("t0", "t1")) -> Config:
    return config_from({"global": {"interval": "10s", "timeout": "2s"}, "targets": [
        {"name": n, "vendor": "flipsnack", "base_url": url, "credentials": {"api_key": f"{key}-{n}", "secret": "s"}}
        for n in names]})


@pytest.mark.parametrize("meanwhile", ["nothing", "reload-changed", "reload-removed", "stop"])
async def test_a_held_confirmation_waits_and_survives_reloads_and_stop(meanwhile: str) -> None:
    clock = FakeClock()
    sent: list[tuple[float, str]] = []
    failing = {"t0"}

    async def vendor(request: web.Request) -> web.Response:
        key = request.query.get("apiKey", "")
        sent.append((clock.monotonic(), key))
        code = 50 if any(key.endswith(f"-{n}") for n in failing) else 20  # 50: a server error
        return web.json_response({"code": code})

    gates: list[asyncio.Future[None]] = []
    classes: list[str] = []

    def hold(target: Target, result: ProbeResult) -> Awaitable[None] | None:
        classes.append(result.outcome.cls)
        gates.append(asyncio.get_running_loop().create_future())
        return gates[-1]

    async with serve(vendor) as url, new_session() as session:
        cfg = flip_config(url)
        state = State(render_target)
        state.sync(cfg.targets)
        sched = Scheduler(Prober(session, clock), state, clock, max_concurrency=1, rng=random.Random(5), hold=hold)
        sched.apply(cfg.targets)
        task = asyncio.create_task(sched.run())

        async def step(seconds: float) -> None:
            for _ in range(int(seconds * 10)):
                await clock.advance(0.1)
                for _ in range(200):
                    if not sched.in_flight():
                        break
                    await asyncio.sleep(0.002)

        def of(name: str) -> int:
            return sum(1 for _, key in sent if key.endswith(f"-{name}"))

        try:
            await step(6)  # both probed once; t0 failed and is held
            assert classes == ["server_error"], (classes, sent)
            assert len(gates) == 1 and of("t0") == 1
            await step(9)  # t1 keeps its schedule under max_concurrency 1: the held probe holds no place
            assert of("t0") == 1 and of("t1") == 2
            assert sched.in_flight() == 0
            assert not await sched.on_demand("t0")  # /probe may not confirm it either
            assert of("t0") == 1
            ts = state.get("t0")
            assert ts is not None and ts.consecutive_failures == 1
            if meanwhile == "reload-changed":  # new credentials: planned afresh, still held
                cfg = flip_config(url, key="new")
                sched.apply(cfg.targets)
                await step(6)
                assert of("t0") == 1
            elif meanwhile == "reload-removed":
                sched.apply([t for t in cfg.targets if t.name != "t0"])
            elif meanwhile == "stop":
                task.cancel()
                await asyncio.gather(task, return_exceptions=True)
                assert gates[0].cancelled()  # what it waited for is called off with it
                assert not [t for t in asyncio.all_tasks() if t.get_name().startswith(("hold:", "probe:"))]
                return
            gates[0].set_result(None)
            await step(1)
            if meanwhile == "reload-removed":
                assert of("t0") == 1
                return
            assert of("t0") == 2  # the confirmation, once, right after the hold ended
            ts = state.get("t0")
            assert ts is not None
            if meanwhile == "nothing":
                assert ts.consecutive_failures == 2
            await step(10)
            assert of("t0") == 2 or len(gates) == 2  # a second failure holds again: no probe in between
        finally:
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)
            await sched.stop()


async def test_a_recheck_asked_for_just_before_stop_sends_nothing_after_it() -> None:
    """A transport failure seen as the exporter closes: its re-check is called off with the rest, and
    no check goes out after close (stop used to cancel only the runs already planned)."""
    clock = FakeClock()
    async with canary_url() as (canary, url), new_session() as session:
        cfg = config_from({"targets": [{"name": "t0", "vendor": "flipsnack", "base_url": "http://127.0.0.1:9",
                                        "credentials": {"api_key": "k", "secret": "s"}}],
                           "egress_checks": [{"name": "corp-canary", "url": url}]})
        book = EgressBook(Prober(session, clock), clock)
        book.apply(cfg.egress_checks, cfg.targets, 60.0, 2.0)
        wait = book.recheck("t0")  # a transport failure seen as the exporter closes
        assert isinstance(wait, asyncio.Future)
        await book.stop()
        for _ in range(50):
            await asyncio.sleep(0.005)
        leftover = [t for t in asyncio.all_tasks() if t.get_name().startswith("egress-check:")]
        try:
            assert canary.requests == 0 and not leftover, (canary.requests, leftover)
        finally:
            for t in [*leftover, wait]:
                t.cancel()
            await asyncio.gather(*leftover, wait, return_exceptions=True)
