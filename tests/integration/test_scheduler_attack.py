"""The scheduler attacked where its paths meet: reloads while probes are in flight or at the cap, /probe
callers joined by planned probes or queued for a place, a shared budget behind a slow probe, a loop
that dies with probes in flight, bugs in the confirmation path, reload churn over a long run. On the
fake clock against a real loopback vendor (test_scheduler's ``Sim``)."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from dataclasses import replace

import pytest

from exporter.app import RESTART_PAUSE
from exporter.clock import FakeClock

from ..conftest import Running, running_exporter, serve
from . import test_scheduler
from .test_scheduler import Sim, Vendor, flip_targets, planned_probe_joins_an_on_demand_one, run, settle

sim = test_scheduler.sim  # its fixture


async def test_a_reload_that_raises_max_concurrency_mid_flight_keeps_the_new_cap(sim: Sim) -> None:
    # 2 probes hold the old cap's places; the new cap is 3: scheduled and /probe callers together
    # must never have more than 3 at the vendor
    sim.vendor.hold = asyncio.Event()
    cfg = flip_targets(sim.url, n=6, interval="60s", timeout="30s", max_concurrency=2)
    task = await run(sim, cfg)
    sched = sim.scheduler
    assert sched is not None
    await sim.clock.advance(6)  # every first probe is due
    await settle()
    assert sim.vendor.in_flight == 2
    sched.apply(cfg.targets, max_concurrency=3)
    callers = [asyncio.create_task(sched.on_demand(t.name)) for t in cfg.targets]
    await settle(100)
    assert sim.vendor.max_in_flight <= 3
    sim.vendor.hold.set()
    await asyncio.wait_for(asyncio.gather(*callers), 10)
    task.cancel()


async def test_a_reload_that_lowers_max_concurrency_mid_flight_lets_no_probe_in_until_below_it(
        sim: Sim) -> None:
    sim.vendor.hold = asyncio.Event()
    cfg = flip_targets(sim.url, n=6, interval="60s", timeout="30s", max_concurrency=4)
    task = await run(sim, cfg)
    sched = sim.scheduler
    assert sched is not None
    await sim.clock.advance(6)
    await settle()
    assert sim.vendor.in_flight == 4
    sched.apply(cfg.targets, max_concurrency=2)
    callers = [asyncio.create_task(sched.on_demand(t.name)) for t in cfg.targets]
    await settle(100)
    assert sim.vendor.max_in_flight == 4  # the 4 already in flight finish; no /probe caller joins them
    sim.vendor.hold.set()
    await asyncio.wait_for(asyncio.gather(*callers), 10)
    assert len(sim.vendor.log) == 6  # and the last 2 were probed, once places were free
    task.cancel()


async def test_a_planned_probe_that_joined_a_probe_in_flight_is_not_counted_twice(sim: Sim) -> None:
    sim.vendor.hold = asyncio.Event()
    task = await run(sim, flip_targets(sim.url, interval="10s"))
    sched = sim.scheduler
    assert sched is not None
    asking = await planned_probe_joins_an_on_demand_one(sim)
    assert sched.in_flight() == 1  # apistatus_probes_in_flight: one probe is at the vendor
    sim.vendor.hold.set()
    assert await asyncio.wait_for(asking, 5)
    task.cancel()


async def test_a_reload_during_a_joined_probe_leaves_one_plan_for_the_target(sim: Sim) -> None:
    # the /probe answer, to a config the reload changed, plans the target again soon; the planned probe
    # that had joined it must not plan one more: two plans in step mean a second, joined "probe" per
    # interval ever after (counted as finished, and in flight)
    sim.vendor.hold = asyncio.Event()
    cfg = flip_targets(sim.url, interval="10s", probe_share=1)  # the interval, not the budget, paces it
    task = await run(sim, cfg)
    sched = sim.scheduler
    assert sched is not None
    asking = await planned_probe_joins_an_on_demand_one(sim)
    sched.apply([replace(t, timeout=3.0) for t in cfg.targets])
    sim.vendor.hold.set()
    assert await asyncio.wait_for(asking, 5)
    await settle()
    made, completed = len(sim.vendor.log), sched.completed
    await sim.step(100)
    assert len(sim.vendor.log) - made == pytest.approx(10, abs=1)  # on schedule
    assert sched.completed - completed == len(sim.vendor.log) - made  # each a single probe
    task.cancel()


async def test_a_reload_that_shortens_the_interval_takes_effect_within_the_new_interval(sim: Sim) -> None:
    task = await run(sim, flip_targets(sim.url, interval="1h"))
    sched = sim.scheduler
    assert sched is not None
    await sim.step(6)
    assert len(sim.vendor.log) == 1
    sched.apply(flip_targets(sim.url, interval="10s").targets)
    await sim.step(30)
    # not an hour of silence after asking for a probe every 10 s
    assert len(sim.vendor.log) >= 3, sim.vendor.log
    task.cancel()


async def test_a_bug_while_confirming_a_failure_does_not_lose_the_target(
        sim: Sim, caplog: pytest.LogCaptureFixture) -> None:
    sim.vendor.answer = lambda r: (200, {}, {"code": 41})  # auth: confirmed once
    task = await run(sim, flip_targets(sim.url, interval="10s", confirm_failures=True, probe_share=1))
    sched = sim.scheduler
    assert sched is not None
    real, failed = sched._book, []

    def book_failing_once(*args: object) -> None:
        if not failed:
            failed.append(1)
            raise RuntimeError("injected bug")
        real(*args)  # type: ignore[arg-type]

    sched._book = book_failing_once  # type: ignore[method-assign]
    await sim.step(40)
    assert failed == [1]
    assert len(sim.vendor.log) >= 4, sim.vendor.log  # probed again on schedule
    assert "a probe of target t0 failed internally: RuntimeError" in caplog.text
    task.cancel()


async def test_reload_churn_over_a_long_run_keeps_the_schedule_bounded(sim: Sim) -> None:
    # targets dropped and added back by reloads (a config generator, a flapping include): what the
    # schedule keeps for them must not grow with every reload for as long as their interval
    n = 20
    cfg = flip_targets(sim.url, n=n, interval="1h")
    task = await run(sim, cfg)
    sched = sim.scheduler
    assert sched is not None
    for _ in range(40):  # without the clean-up, 40 reloads would leave 800 plans
        sched.apply([])
        sched.apply(cfg.targets)
        await sim.step(10)
    assert len(sched._heap) <= 4 * n + 64  # memory: entries kept in the schedule
    assert sched.in_flight() == 0
    task.cancel()


@pytest.fixture
async def held_exporter() -> AsyncIterator[tuple[Running, FakeClock, Vendor]]:
    clock = FakeClock()
    vendor = Vendor(clock)
    vendor.hold = asyncio.Event()
    async with serve(vendor.handle) as url, running_exporter(
            flip_targets(url, n=2, timeout="9s", probe_share=1), clock=clock) as ex:
        yield ex, clock, vendor
        vendor.hold.set()


async def test_a_loop_restarted_after_a_bug_keeps_the_targets_whose_probes_were_in_flight(
        held_exporter: tuple[Running, FakeClock, Vendor]) -> None:
    ex, clock, vendor = held_exporter
    sched = ex.exporter.scheduler
    assert sched is not None and vendor.hold is not None
    await clock.advance(6)
    await settle()
    assert vendor.in_flight == 2  # both first probes held at the vendor
    real, failed = sched._sleep_until, []

    async def sleep_failing_once(deadline: float) -> None:
        if not failed:
            failed.append(1)
            raise RuntimeError("injected bug")
        await real(deadline)

    sched._sleep_until = sleep_failing_once  # type: ignore[method-assign]
    sched._poke()
    await settle()
    assert failed == [1] and not ex.exporter.ready
    vendor.hold.set()
    for _ in range(int(RESTART_PAUSE) + 40):
        await clock.advance(1)
        await settle(5)
    assert ex.exporter.ready
    keys = [k for _, k in vendor.log]
    assert keys.count("key0") >= 3 and keys.count("key1") >= 3, keys  # both still probed on schedule



async def test_probes_waiting_for_a_place_keep_the_budget_when_they_go_out(sim: Sim) -> None:
    # one place, held by a slow probe; /probe callers for targets on one Flipsnack key queue for it in
    # two batches 2.5 s apart (each within the 5 a second the key allows). When the place frees they
    # all go out at once: what was booked when they were let through long ago says nothing about now
    sim.vendor.hold = asyncio.Event()
    cfg = flip_targets(sim.url, n=11, interval="60s", timeout="30s", same_key=True, probe_share=1,
                       max_concurrency=1)
    task = await run(sim, cfg)
    sched = sim.scheduler
    assert sched is not None
    await sim.clock.advance(1.1)  # the first planned probe holds the place
    await settle()
    assert sim.vendor.in_flight == 1
    held = {k for _, k in sim.vendor.log}
    names = [t.name for t in cfg.targets if t.name not in held]
    callers = [asyncio.create_task(sched.on_demand(n)) for n in names[:4]]
    await settle()
    await sim.clock.advance(2.4)
    callers += [asyncio.create_task(sched.on_demand(n)) for n in names[4:9]]
    await settle()
    await sim.clock.advance(0.5)
    sim.vendor.hold.set()
    await asyncio.wait_for(asyncio.gather(*callers), 10)
    await sim.step(120)
    times = sorted(t for t, _ in sim.vendor.log)
    assert max(sum(1 for u in times if t <= u < t + 1) for t in times) <= 5  # the key's 5 a second
    assert max(sum(1 for u in times if t <= u < t + 60) for t in times) <= 60  # and 60 a minute
    task.cancel()


async def test_a_target_removed_by_a_reload_is_not_probed_by_a_caller_that_waited_for_a_place(
        sim: Sim) -> None:
    sim.vendor.hold = asyncio.Event()
    cfg = flip_targets(sim.url, n=2, interval="60s", timeout="30s", probe_share=1, max_concurrency=1)
    task = await run(sim, cfg)
    sched = sim.scheduler
    assert sched is not None
    await sim.clock.advance(6)
    await settle()
    assert len(sim.vendor.log) == 1  # one place: the first planned probe holds it
    other = "t1" if sim.vendor.log[0][1] == "key0" else "t0"
    asking = asyncio.create_task(sched.on_demand(other))  # waits for the place
    await settle()
    sched.apply([t for t in cfg.targets if t.name != other])  # the reload drops the target it asked for
    sim.vendor.hold.set()
    assert not await asyncio.wait_for(asking, 5)  # answered from its latest result
    await sim.step(120)
    assert [k for _, k in sim.vendor.log if k == f"key{other[1:]}"] == []
    task.cancel()


async def test_a_planned_probe_behind_a_callers_place_starts_once_it_frees(sim: Sim) -> None:
    # one place, taken by a /probe caller before any planned probe: the planned ones due meanwhile stay
    # in the schedule, and the caller's probe ending (not the loop's next wake-up, up to an hour away)
    # lets the next one out
    sim.vendor.hold = asyncio.Event()
    cfg = flip_targets(sim.url, n=2, interval="60s", timeout="30s", probe_share=1, max_concurrency=1)
    task = await run(sim, cfg)
    sched = sim.scheduler
    assert sched is not None
    asking = asyncio.create_task(sched.on_demand("t0"))
    await settle()
    assert [k for _, k in sim.vendor.log] == ["key0"]
    await sim.clock.advance(10)  # t1's first probe is due, and t0's planned one
    await settle()
    assert [k for _, k in sim.vendor.log] == ["key0"] and sched.in_flight() == 2
    sim.vendor.hold.set()
    assert await asyncio.wait_for(asking, 5)
    await sim.clock.advance(0.1)
    await settle()
    assert [k for _, k in sim.vendor.log][:2] == ["key0", "key1"]
    task.cancel()
