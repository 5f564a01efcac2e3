"""A bug inside the scheduler costs one probe, never the loop or a target's schedule: the loop keeps
probing the other targets, the target is planned again, and a loop that dies anyway is logged in one
line, reported not ready, and started again. On a controllable clock against a loopback vendor."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

import pytest
from aiohttp import web

from exporter.app import RESTART_PAUSE
from exporter.clock import FakeClock
from exporter.config import Target

from ..conftest import Running, running_exporter, serve
from .test_scheduler import flip_targets


class Vendor:
    def __init__(self) -> None:
        self.keys: list[str] = []

    async def handle(self, request: web.Request) -> web.StreamResponse:
        self.keys.append(request.query.get("apiKey", ""))
        return web.json_response({"code": 20})


async def step(ex: Running, clock: FakeClock, seconds: float) -> None:
    """Advance simulated time a second at a time, letting each real HTTP exchange finish."""
    assert ex.exporter.scheduler is not None
    for _ in range(int(seconds)):
        await clock.advance(1)
        for _ in range(500):
            if not ex.exporter.scheduler.in_flight():
                break
            await asyncio.sleep(0.002)


@pytest.fixture
async def setup() -> AsyncIterator[tuple[Running, FakeClock, Vendor]]:
    vendor, clock = Vendor(), FakeClock()
    async with serve(vendor.handle) as url, running_exporter(flip_targets(url, n=2, probe_share=1), clock=clock) as ex:
        yield ex, clock, vendor


def fail_once(obj: Any, name: str, when: Any = lambda *a: True) -> list[int]:
    """Make ``obj.name`` raise once (when ``when(*args)``); returns a list that counts the failures."""
    real, failed = getattr(obj, name), []

    def broken(*args: Any, **kw: Any) -> Any:
        if not failed and when(*args):
            failed.append(1)
            raise RuntimeError("injected bug")
        return real(*args, **kw)

    setattr(obj, name, broken)
    return failed


async def test_a_bug_admitting_one_probe_costs_that_probe_not_the_loop(
        setup: tuple[Running, FakeClock, Vendor], caplog: pytest.LogCaptureFixture) -> None:
    ex, clock, vendor = setup
    sched = ex.exporter.scheduler
    assert sched is not None
    failed = fail_once(sched.budgets, "limiter", lambda t: isinstance(t, Target) and t.name == "t0")
    await step(ex, clock, 30)
    assert failed == [1]
    assert ex.exporter.ready
    assert (await ex.get("/-/ready"))[0] == 200
    assert vendor.keys.count("key1") >= 3  # the other target kept its schedule
    assert vendor.keys.count("key0") >= 2  # and this one was planned again
    line = [r.getMessage() for r in caplog.records if "injected" not in r.getMessage() and "t0" in r.getMessage()]
    assert line == ["admitting a probe of target t0 failed internally: RuntimeError"]


async def test_a_bug_planning_after_a_probe_does_not_lose_the_target(
        setup: tuple[Running, FakeClock, Vendor], caplog: pytest.LogCaptureFixture) -> None:
    ex, clock, vendor = setup
    sched = ex.exporter.scheduler
    assert sched is not None
    failed = fail_once(sched, "_book", lambda t, *a: t.name == "t0")
    await step(ex, clock, 40)
    assert failed == [1]
    assert vendor.keys.count("key0") >= 3  # probed again an interval later, and on schedule after
    assert vendor.keys.count("key1") >= 3
    assert "planning after a probe of target t0 failed internally: RuntimeError" in caplog.text


async def test_a_scheduler_loop_that_dies_is_reported_not_ready_and_restarted(
        setup: tuple[Running, FakeClock, Vendor], caplog: pytest.LogCaptureFixture) -> None:
    ex, clock, vendor = setup
    sched = ex.exporter.scheduler
    assert sched is not None
    await step(ex, clock, 6)
    before = len(vendor.keys)
    assert before == 2
    fail_once(sched, "_sleep_until")
    sched._poke()  # the loop wakes and plans its next sleep, which fails
    for _ in range(20):
        await asyncio.sleep(0)
    assert not ex.exporter.ready
    assert (await ex.get("/-/ready"))[0] == 503
    assert "the scheduler loop failed internally (RuntimeError); restarting it in" in caplog.text
    await step(ex, clock, RESTART_PAUSE + 30)
    assert ex.exporter.ready
    assert len(vendor.keys) >= before + 4  # probing goes on for both targets
    assert {"key0", "key1"} <= set(vendor.keys[before:])
