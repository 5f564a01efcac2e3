"""``confirm_failures`` against the simulators on a controllable clock: a failure of any down class is
confirmed by a second probe within the same interval, so ``apistatus_consecutive_failures`` (what the
shipped alerts wait for) reaches 2 only for a failure that lasts; one that clears at once never does.
"""

from __future__ import annotations

import asyncio
import random
from collections.abc import AsyncIterator, Callable
from typing import Any

import pytest

from exporter.clock import FakeClock
from exporter.collector import render_exposition, render_target
from exporter.engine import new_session
from exporter.model import UP
from exporter.probe import Prober
from exporter.scheduler import Scheduler
from exporter.simulators import SimulatorSet, start_simulators
from exporter.state import Rendered, State, TargetState

from ..conftest import config_from, sample

INTERVAL = 60.0
#: each down class: the simulator's (bizwebs) settings that give it; the class the exporter reads
CLASSES: dict[str, tuple[dict[str, Any], str]] = {
    "server_error": ({"server_error": True}, "server_error"),
    "maintenance": ({"maintenance": True}, "maintenance"),
    "auth": ({"rotated": True}, "auth"),
    "quota": ({"quota_exceeded": True}, "quota_exceeded"),
    "rate_limited with Retry-After": ({"rate_limited": True, "retry_after": 20}, "rate_limited"),
    "network_error": ({"down": True}, "network_error"),
    "timeout": ({"delay": 1.5}, "timeout"),
}


class Run:
    """One bizwebs target probed every minute by a real scheduler on a FakeClock; every result the
    state records is seen by ``on_record`` (the render hook, called on each record)."""

    def __init__(self, sims: SimulatorSet, clock: FakeClock) -> None:
        self.sims, self.clock = sims, clock
        self.seen: list[tuple[float, str, int]] = []  # (monotonic time, class, consecutive failures)
        self.on_record: Callable[[TargetState], None] = lambda ts: None

    def render(self, ts: TargetState) -> Rendered:
        if ts.last is not None:
            self.seen.append((self.clock.monotonic(), ts.last.outcome.cls, ts.consecutive_failures))
            self.on_record(ts)
        return render_target(ts)

    async def go(self, seconds: float) -> State:
        base = self.sims.targets_config(interval="60s", timeout="1s", confirm_failures=True)
        [target] = [t for t in base["targets"] if t["vendor"] == "bizwebs"]
        cfg = config_from({"global": base["global"], "targets": [target]})
        state = State(self.render)
        state.sync(cfg.targets)
        async with new_session() as session:
            sched = Scheduler(Prober(session, self.clock), state, self.clock, rng=random.Random(3))
            sched.apply(cfg.targets)
            task = asyncio.create_task(sched.run())
            done = 0.0
            while done < seconds:
                await self.clock.advance(1.0)
                done += 1.0
                # the real HTTP exchange; a probe waiting on the (fake) clock for its confirmation
                # stays in flight, so the wait is short and a timeout's real second spans a few steps
                for _ in range(50):
                    if not sched.in_flight():
                        break
                    await asyncio.sleep(0.004)
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)
            await sched.stop()
        self.state = state
        return state

    def exported(self) -> float | None:
        text = render_exposition(list(self.state), process=False).decode()
        return sample(text, "apistatus_consecutive_failures", target="bizwebs")


@pytest.fixture
async def run() -> AsyncIterator[Run]:
    clock = FakeClock()
    sims = await start_simulators(clock=clock)
    try:
        yield Run(sims, clock)
    finally:
        await sims.close()


@pytest.mark.parametrize("name", list(CLASSES))
async def test_a_single_transient_failure_is_confirmed_away(run: Run, name: str) -> None:
    settings, cls = CLASSES[name]
    vendor = run.sims.sims["bizwebs"]

    def clear_after_first_failure(ts: TargetState) -> None:
        assert ts.last is not None
        if ts.last.outcome.cls not in UP:
            vendor.control(reset=True)  # the vendor is fine again right after one bad answer

    # healthy first; one bad answer at the second scheduled probe, then healthy again
    first = True

    def arm(ts: TargetState) -> None:
        nonlocal first
        if first:
            first = False
            vendor.control(**settings)
        else:
            clear_after_first_failure(ts)

    run.on_record = arm
    await run.go(3 * INTERVAL)
    classes = [c for _, c, _ in run.seen]
    assert classes[1] == cls, classes  # the failure was seen, and recorded (counters, history)
    assert classes[2] == "ok", classes  # confirmed away by the second probe
    assert max(n for _, _, n in run.seen) == 1  # never exported as a confirmed failure
    assert run.exported() == 0
    # the confirming probe came within the interval, not at the next scheduled one
    assert run.seen[2][0] - run.seen[1][0] < INTERVAL / 2 + 1


@pytest.mark.parametrize("name", list(CLASSES))
async def test_a_lasting_failure_is_confirmed_within_the_interval(run: Run, name: str) -> None:
    settings, cls = CLASSES[name]
    run.sims.sims["bizwebs"].control(**settings)
    await run.go(INTERVAL)
    assert [c for _, c, _ in run.seen][:2] == [cls, cls]
    (t1, _, n1), (t2, _, n2) = run.seen[:2]
    assert (n1, n2) == (1, 2)
    assert t2 - t1 <= INTERVAL / 2
    if "retry_after" in settings:  # Retry-After is kept: the confirming probe waits for it
        assert t2 - t1 >= settings["retry_after"]
    assert run.exported() == 2


async def test_a_retry_after_longer_than_half_the_interval_is_not_probed_again_before_it(run: Run) -> None:
    run.sims.sims["bizwebs"].control(rate_limited=True, retry_after=45)
    await run.go(INTERVAL)
    assert [(c, n) for _, c, n in run.seen] == [("rate_limited", 1)]  # no second probe within 45 s
    assert run.sims.sims["bizwebs"].counts["health"] == 1
