"""Scheduling on a controllable clock against real loopback servers: backoff honours Retry-After,
shared budgets hold over a simulated hour, no overlap, a concurrency cap, confirmation retries."""

from __future__ import annotations

import asyncio
import heapq
import random
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field

import pytest
from aiohttp import web

from exporter import scheduler as scheduler_module
from exporter.backoff import EXPONENTIAL_CEILING, next_delay
from exporter.budget import budget_warnings
from exporter.classify import Outcome
from exporter.clock import FakeClock
from exporter.collector import render_target
from exporter.config import Config
from exporter.engine import Session as Client
from exporter.engine import new_session
from exporter.probe import Prober
from exporter.scheduler import Scheduler
from exporter.state import Rendered, State, TargetState

from ..conftest import config_from, serve

#: the coalescing slack the tests turn on
SLACK = 0.005


@dataclass
class Vendor:
    """A loopback server: ``answer(request) -> (status, headers, json)``; logs (clock time, target key)."""

    clock: FakeClock
    answer: Callable[[web.Request], tuple[int, dict[str, str], object]] = lambda r: (200, {}, {"code": 20})
    log: list[tuple[float, str]] = field(default_factory=list)
    hold: asyncio.Event | None = None
    in_flight: int = 0
    max_in_flight: int = 0

    async def handle(self, request: web.Request) -> web.StreamResponse:
        self.log.append((self.clock.monotonic(), request.query.get("apiKey", request.path)))
        self.in_flight += 1
        self.max_in_flight = max(self.max_in_flight, self.in_flight)
        try:
            if self.hold is not None:
                await self.hold.wait()
            status, headers, body = self.answer(request)
            return web.json_response(body, status=status, headers=headers)
        finally:
            self.in_flight -= 1


@dataclass
class Sim:
    clock: FakeClock
    vendor: Vendor
    url: str
    scheduler: Scheduler | None = None
    state: State | None = None

    async def start(self, cfg: Config, session: Client) -> None:
        self.state = State(render_target)
        self.state.sync(cfg.targets)
        self.scheduler = Scheduler(Prober(session, self.clock), self.state, self.clock,
                                   cfg.global_.max_concurrency, rng=random.Random(7))
        self.scheduler.apply(cfg.targets)

    async def step(self, seconds: float, every: float = 1.0) -> None:
        """Advance simulated time, letting each probe's real HTTP exchange finish as it comes due."""
        assert self.scheduler is not None
        done = 0.0
        while done < seconds:
            dt = min(every, seconds - done)
            await self.clock.advance(dt)
            done += dt
            for _ in range(2000):
                if not self.scheduler.in_flight():
                    break
                await asyncio.sleep(0.002)


@pytest.fixture
async def sim() -> AsyncIterator[Sim]:
    clock = FakeClock()
    vendor = Vendor(clock)
    async with serve(vendor.handle) as url, new_session() as session:
        s = Sim(clock, vendor, url)
        s.session = session  # type: ignore[attr-defined]
        yield s
        if s.scheduler is not None:
            await s.scheduler.stop()


def flip_targets(url: str, n: int = 1, interval: str = "10s", same_key: bool = False,
                 **extra: object) -> Config:
    return config_from({"global": {"interval": interval, "timeout": "2s", **extra}, "targets": [
        {"name": f"t{i}", "vendor": "flipsnack", "base_url": url,
         "credentials": {"api_key": "shared" if same_key else f"key{i}", "secret": "s"}} for i in range(n)]})


async def run(sim: Sim, cfg: Config) -> asyncio.Task[None]:
    await sim.start(cfg, sim.session)  # type: ignore[attr-defined]
    assert sim.scheduler is not None
    return asyncio.create_task(sim.scheduler.run())


async def test_retry_after_120_delays_the_next_probe_by_at_least_120s(sim: Sim) -> None:
    sim.vendor.answer = lambda r: (200, {"Retry-After": "120"}, {"code": 22})  # maintenance
    task = await run(sim, flip_targets(sim.url))
    await sim.step(2)
    assert len(sim.vendor.log) == 1
    assert sim.state is not None
    ts = sim.state.get("t0")
    assert ts is not None and ts.backoff == pytest.approx(110)
    assert ts.next_probe_at - sim.clock.time() == pytest.approx(120, abs=2)
    first = sim.vendor.log[0][0]
    await sim.step(first + 119.5 - sim.clock.monotonic(), every=0.1)
    assert len(sim.vendor.log) == 1  # nothing before Retry-After has passed
    sim.vendor.answer = lambda r: (200, {}, {"code": 20})
    await sim.step(2, every=0.1)
    assert len(sim.vendor.log) == 2 and sim.vendor.log[1][0] - first >= 120
    assert ts.last is not None and ts.backoff == 0
    # back to the normal interval (10 s, 5% jitter) after a success, planned from the last start
    assert ts.next_probe_at - ts.last.started == pytest.approx(10, abs=0.6)
    await sim.step(12, every=0.1)
    assert len(sim.vendor.log) == 3
    task.cancel()


async def test_exponential_backoff_with_cap_then_back_to_normal(sim: Sim) -> None:
    sim.vendor.answer = lambda r: (200, {}, {"code": 50})  # server_error, no Retry-After
    # the backoff alone: no confirming probe between the backed-off ones (test_confirm_failures)
    task = await run(sim, flip_targets(sim.url, interval="10s", confirm_failures=False))
    await sim.step(160, every=0.1)
    gaps = [b[0] - a[0] for a, b in zip(sim.vendor.log, sim.vendor.log[1:], strict=False)]
    assert len(gaps) >= 3
    assert gaps[0] == pytest.approx(20, rel=0.15) and gaps[1] == pytest.approx(40, rel=0.15)
    assert gaps[2] == pytest.approx(80, rel=0.15)
    task.cancel()


def test_backoff_policy_is_capped_and_retry_after_wins() -> None:
    rng = random.Random(1)
    err = Outcome("server_error", "50", "x", 200)
    assert next_delay(30, err, 30, rng)[0] <= EXPONENTIAL_CEILING * 1.1
    assert next_delay(3600, err, 5, rng)[0] >= 3600  # never shorter than the interval
    ra = Outcome("rate_limited", "31", "x", 200, retry_after=300)
    assert next_delay(30, ra, 1, rng) == (300, 270)
    ok = Outcome("ok", "20", "x", 200)
    delay, backoff = next_delay(30, ok, 0, rng)
    assert 28.5 <= delay <= 31.5 and backoff == 0


async def test_three_targets_on_one_flipsnack_key_stay_within_budget_over_an_hour(sim: Sim) -> None:
    # 3 targets at 10 s would make 18 requests a minute; 5% of Flipsnack's 60/min allows 3.
    cfg = flip_targets(sim.url, n=3, interval="10s", same_key=True)
    assert budget_warnings(cfg.targets) == [
        "targets t0, t1, t2 share one flipsnack credential: their intervals make 1.2 requests per 4s but probes "
        "may spend 1 (5% of 5 per 1s); an interval of at least 12s each would fit",
        "targets t0, t1, t2 share one flipsnack credential: their intervals make 18 requests per 60s but probes "
        "may spend 3 (5% of 60 per 60s); an interval of at least 60s each would fit"]
    task = await run(sim, cfg)
    await sim.step(3600, every=1)
    times = [t for t, _ in sim.vendor.log]
    worst = max(sum(1 for u in times if t <= u < t + 60) for t in times)
    assert worst <= 3  # never more than the probes' share in any minute
    assert len(times) >= 170  # and the budget is used, not starved: ~3 a minute
    per_target = {k: sum(1 for _, kk in sim.vendor.log if kk == k) for _, k in sim.vendor.log}
    assert len(per_target) == 1  # one key
    task.cancel()


async def test_no_overlap_and_concurrency_cap(sim: Sim) -> None:
    sim.vendor.hold = asyncio.Event()
    # the prober's timeout runs on the loop's own clock: 5 s, so that a busy machine (these steps take
    # real time) does not time the held probes out and let more in beside the vendor's held requests
    task = await run(sim, flip_targets(sim.url, n=5, interval="5s", timeout="5s", max_concurrency=2))
    assert sim.scheduler is not None
    for _ in range(5):
        await sim.clock.advance(1)
        for _ in range(50):
            await asyncio.sleep(0.002)
    assert sim.vendor.max_in_flight == 2  # the global cap
    assert len(sim.vendor.log) == 2  # nobody probed again while its probe was in flight
    sim.vendor.hold.set()
    await sim.step(3)
    keys = [k for _, k in sim.vendor.log]
    assert set(keys) == {f"key{i}" for i in range(5)}
    task.cancel()


async def test_at_a_cap_of_one_the_schedule_goes_on_after_each_probe(sim: Sim) -> None:
    # the place frees before the next probe is due: the loop must still wake for it
    cfg = config_from({"global": {"interval": "1s", "timeout": "1s", "max_concurrency": 1},
                       "vendors": {"flipsnack": {"budget": None}},  # the interval, not the budget, paces it
                       "targets": [{"name": "t0", "vendor": "flipsnack", "base_url": sim.url,
                                    "credentials": {"api_key": "key0", "secret": "s"}}]})
    task = await run(sim, cfg)
    await sim.step(10)
    assert len(sim.vendor.log) >= 9
    task.cancel()


async def test_behind_schedule_only_the_capped_probes_hold_a_task_and_the_rest_start_as_places_free(
        sim: Sim) -> None:
    # 40 targets, a cap of 3 and a vendor that holds every answer: the 37 due probes wait in the
    # schedule, not as tasks of their own, and the in-flight gauge still counts them
    sim.vendor.hold = asyncio.Event()
    task = await run(sim, flip_targets(sim.url, n=40, interval="60s", timeout="30s", max_concurrency=3))
    assert sim.scheduler is not None
    await sim.clock.advance(10)  # every first probe is due by now (spread over at most 5 s)
    for _ in range(100):
        await asyncio.sleep(0.002)
    probe_tasks = [t for t in asyncio.all_tasks() if t.get_name().startswith("probe:")]
    assert len(probe_tasks) == 3
    assert sim.vendor.in_flight == 3
    assert sim.scheduler.in_flight() == 40
    sim.vendor.hold.set()
    for _ in range(2000):
        if len(sim.vendor.log) == 40 and not sim.scheduler.in_flight():
            break
        await asyncio.sleep(0.002)
    assert sorted(k for _, k in sim.vendor.log) == sorted(f"key{i}" for i in range(40))
    assert sim.vendor.max_in_flight == 3
    task.cancel()


async def test_probes_due_close_together_start_in_one_wake_up_and_never_early_beyond_the_slack(
        sim: Sim) -> None:
    slack = scheduler_module.COALESCE  # as shipped
    assert 0 < slack <= 0.05  # a small fraction of any interval's jitter
    # 200 first probes spread over 2 s: many fall within the slack of another one
    cfg = flip_targets(sim.url, n=200, interval="60s")
    task = await run(sim, cfg)
    assert sim.state is not None and sim.scheduler is not None
    planned = {t.name: sim.state.get(t.name).next_probe_at for t in cfg.targets}  # type: ignore[union-attr]
    await sim.step(3, every=0.25)
    started = {}
    for t in cfg.targets:
        ts = sim.state.get(t.name)
        assert ts is not None and ts.last is not None and ts.probes == 1
        started[t.name] = ts.last.started
    for name, at in started.items():
        # the fake clock is never late: each start lies within the slack before its plan, or on it
        assert planned[name] - slack - 1e-6 <= at <= planned[name] + 1e-6, name
    assert len(set(started.values())) < 180  # several probes started by one wake-up of the loop
    lags = list(sim.scheduler.lag.recent)
    assert len(lags) == 200
    # the start lag reports the early starts as they happened
    assert -slack - 1e-6 <= min(lags) < 0 and max(lags) <= 1e-6
    task.cancel()


async def test_nothing_starts_early_unless_a_probe_is_due_with_it(sim: Sim) -> None:
    # 300 first probes spread over a few seconds from now: some are planned within the slack of the start
    cfg = flip_targets(sim.url, n=300, interval="60s")
    task = await run(sim, cfg)
    assert sim.scheduler is not None
    now = sim.clock.monotonic()
    assert any(due - now <= scheduler_module.COALESCE for due, *_ in sim.scheduler._heap)
    assert all(due > now for due, *_ in sim.scheduler._heap)
    for _ in range(100):  # the loop wakes for the new schedule, but the clock stands still
        await asyncio.sleep(0.002)
    # nothing is due yet, so nothing rides along: a clock that never moves never sends a probe
    assert sim.vendor.log == [] and not sim.scheduler.in_flight()
    await sim.step(0.5, every=0.05)
    assert sim.vendor.log  # and the schedule runs as soon as time does
    task.cancel()


async def test_the_end_of_a_retry_after_is_never_started_early_by_a_wake_up_just_before(
        sim: Sim, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(scheduler_module, "COALESCE", SLACK)
    sim.vendor.answer = lambda r: (200, {"Retry-After": "60"}, {"code": 22})  # maintenance
    task = await run(sim, flip_targets(sim.url))
    await sim.step(2)
    sched, state = sim.scheduler, sim.state
    assert sched is not None and state is not None
    ts = state.get("t0")
    assert ts is not None and ts.probes == 1 and ts.backoff > 0
    end = sched._heap[0][0]  # the end of the Retry-After (monotonic)
    # something else wakes the loop within the coalescing slack before it (a stale plan stands in for
    # another target's probe)
    heapq.heappush(sched._heap, (end - SLACK / 2, -1, "t0", -1))
    sched._poke()
    await sim.step(end - SLACK / 4 - sim.clock.monotonic(), every=0.01)
    assert ts.probes == 1  # woken, but not started before its Retry-After has passed
    await sim.step(SLACK, every=0.001)
    assert ts.probes == 2 and ts.last is not None
    assert ts.last.started >= sim.clock.time() - sim.clock.monotonic() + end - 1e-6
    task.cancel()


async def settle(rounds: int = 50) -> None:
    """Let real HTTP exchanges and woken tasks run, without moving the fake clock."""
    for _ in range(rounds):
        await asyncio.sleep(0.002)


async def planned_probe_joins_an_on_demand_one(sim: Sim) -> asyncio.Task[bool]:
    """t0's planned probe comes due while a /probe caller's probe of it is held at the vendor: the
    planned probe joins it. Returns the caller."""
    sched = sim.scheduler
    assert sched is not None and sim.vendor.hold is not None
    sim.vendor.hold.set()
    await sim.step(6)
    due = sched._slots["t0"].not_before
    await sim.step(due - sim.clock.monotonic() - 0.5, every=0.25)
    sim.vendor.hold.clear()
    sim.clock._now += due - sim.clock.monotonic()  # the caller comes just before the loop wakes
    asking = asyncio.create_task(sched.on_demand("t0"))
    for _ in range(500):
        if sim.vendor.in_flight:
            break
        await asyncio.sleep(0.002)
    await sim.clock.advance(0.1)  # the loop wakes: the planned probe joins the one in flight
    await settle()
    assert sim.vendor.in_flight == 1 and len(sim.vendor.log) == 2
    return asking


async def test_a_scheduled_probe_that_joined_an_on_demand_one_keeps_the_schedule_going(sim: Sim) -> None:
    sim.vendor.hold = asyncio.Event()
    task = await run(sim, flip_targets(sim.url, interval="10s"))
    sched, state = sim.scheduler, sim.state
    assert sched is not None and state is not None
    asking = await planned_probe_joins_an_on_demand_one(sim)
    ts = state.get("t0")
    assert ts is not None and ts.probes == 1 and "t0" in sched._inflight
    sim.vendor.hold.set()
    assert await asyncio.wait_for(asking, 5)
    await settle()
    next_at = sched._slots["t0"].not_before  # the answer planned the next probe an interval on
    assert next_at > sim.clock.monotonic() + 5
    await sim.step(15)
    # and the loop woke for it: it slept for an hour before, the heap being empty when the planned
    # probe joined the one in flight
    assert len(sim.vendor.log) == 3, sim.vendor.log
    assert next_at <= sim.vendor.log[2][0] <= next_at + 1
    task.cancel()


async def test_confirmation_retry_keeps_the_first_failure_visible(sim: Sim) -> None:
    answers = iter([(200, {}, {"code": 41}), (200, {}, {"code": 20})])
    sim.vendor.answer = lambda r: next(answers, (200, {}, {"code": 20}))
    task = await run(sim, flip_targets(sim.url, confirm_failures=True))
    await sim.step(2)
    assert sim.scheduler is not None and len(sim.vendor.log) == 1
    # the confirmation waits for the budget planned, not as a probe in flight holding a place
    assert sim.scheduler.in_flight() == 0 and sim.scheduler._places.used == 0
    await sim.step(5)
    assert sim.state is not None
    ts = sim.state.get("t0")
    assert ts is not None
    assert ts.responses == {("auth", "41"): 1, ("ok", "20"): 1}
    assert ts.last is not None and ts.last.outcome.cls == "ok"
    assert len(sim.vendor.log) == 2
    # the confirming probe waited for room in the key's share of Flipsnack's budget (5% of 5 a second)
    assert sim.vendor.log[1][0] - sim.vendor.log[0][0] >= 4
    task.cancel()



@pytest.mark.parametrize("code", ["41", "50"])
async def test_confirming_probes_keep_within_the_shared_budget(sim: Sim, code: str) -> None:
    """Three targets on one Flipsnack key, every answer a failure (auth; a server error, which backs
    off): each failure is confirmed by a second probe planned for when the key's share has room, and
    booked when it goes out, so no window ever holds more than the share (5% of 5 a second and of 60
    a minute: 1 per 4 s, 3 a minute) with confirmations and scheduled probes in between."""
    sim.vendor.answer = lambda r: (200, {}, {"code": code})
    task = await run(sim, flip_targets(sim.url, n=3, interval="10s", same_key=True, confirm_failures=True))
    await sim.step(300)
    times = [t for t, _ in sim.vendor.log]
    assert max(sum(1 for u in times if t <= u < t + 60) for t in times) <= 3
    assert max(sum(1 for u in times if t <= u < t + 4) for t in times) <= 1
    assert sim.state is not None
    confirmed = [ts.consecutive_failures for ts in sim.state]
    assert all(n >= 2 for n in confirmed), confirmed  # and every target's failure got confirmed
    task.cancel()


@pytest.mark.parametrize("share", [1.0, 0.05])
async def test_the_flipsnack_simulator_never_limits_the_exporter_alone(share: float) -> None:
    """Six targets on one key at 1 s would make 6 calls a second; the exporter keeps within 5/s and
    60/min (or its share of them) so the vendor never answers 31 or 32, while using what it may."""
    from exporter.simulators import start_simulators

    clock = FakeClock()
    sims = await start_simulators(clock=clock)
    try:
        base = sims.targets_config(interval="1s")
        flip = next(t for t in base["targets"] if t["vendor"] == "flipsnack")
        cfg = config_from({"global": {**base["global"], "probe_share": share},
                           "targets": [{**flip, "name": f"fs{i}", "probe_share": share} for i in range(6)]})
        async with new_session() as session:
            sim = Sim(clock, Vendor(clock), "")
            await sim.start(cfg, session)
            assert sim.scheduler is not None and sim.state is not None
            task = asyncio.create_task(sim.scheduler.run())
            await sim.step(600, every=0.5)
            task.cancel()
            await sim.scheduler.stop()
        answers: dict[str, int] = {}
        for ts in sim.state:
            for (cls, _), n in ts.responses.items():
                answers[cls] = answers.get(cls, 0) + n
        assert set(answers) == {"ok"}, [ts.responses for ts in sim.state]  # no 31/32, nor anything else
        allowed = 60 * share * 10  # per minute, for 10 minutes
        assert 0.9 * allowed <= answers["ok"] <= allowed + 60 * share
    finally:
        await sims.close()


async def test_a_failure_while_recording_a_result_never_stops_the_targets_schedule(sim: Sim) -> None:
    def render_failing_once(ts: TargetState) -> Rendered:
        if ts.probes == 1:
            raise RuntimeError("a bug in rendering")
        return render_target(ts)

    sim.vendor.answer = lambda r: (200, {}, {"code": 41})  # auth: confirmed once, then recorded
    cfg = flip_targets(sim.url, confirm_failures=True)
    sim.state = State(render_failing_once)
    sim.state.sync(cfg.targets)
    sim.scheduler = Scheduler(Prober(sim.session, sim.clock), sim.state, sim.clock,  # type: ignore[attr-defined]
                              rng=random.Random(7))
    sim.scheduler.apply(cfg.targets)
    task = asyncio.create_task(sim.scheduler.run())
    await sim.step(70)  # the confirming probes wait for the budget: 3 requests a minute
    ts = sim.state.get("t0")
    assert ts is not None
    assert len(sim.vendor.log) >= 4  # confirmed, then probed again on schedule
    assert ts.probes == len(sim.vendor.log) and ts.rendered  # later results are recorded and rendered
    task.cancel()


async def test_probes_held_back_by_the_budget_are_counted_per_vendor(sim: Sim) -> None:
    """apistatus_budget_delays_total: every time the shared budget makes a probe wait; 0 (but present)
    for a vendor whose probes fit their budget; rendered with the probes in flight."""
    from exporter.collector import render_exposition
    from exporter.model import ExporterStatus

    from ..conftest import sample

    task = await run(sim, flip_targets(sim.url, n=1, interval="60s"))
    await sim.step(600, every=1)
    assert sim.scheduler is not None
    assert sim.scheduler.budget_delays == {"flipsnack": 0}  # 1 a minute fits 5% of 60/min
    task.cancel()
    await asyncio.gather(task, return_exceptions=True)

    sim.vendor.log.clear()
    task = await run(sim, flip_targets(sim.url, n=3, interval="10s", same_key=True))
    await sim.step(600, every=1)
    sched = sim.scheduler
    assert sched is not None
    made = len(sim.vendor.log)
    # 180 probes wanted, about 30 let through: each let-through one had waited for room at least once
    # (but the first few)
    assert made < 40 and sched.budget_delays["flipsnack"] >= made - 3
    status = ExporterStatus(in_flight=sched.in_flight(), budget_delays=tuple(sched.budget_delays.items()))
    text = render_exposition([], status, process=False).decode()
    assert sample(text, "apistatus_budget_delays_total", vendor="flipsnack") == sched.budget_delays["flipsnack"]
    assert sample(text, "apistatus_probes_in_flight") == 0
    assert "# TYPE apistatus_budget_delays_total counter" in text
    task.cancel()
