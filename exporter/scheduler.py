"""When each target is probed: first soon after start (spread a little), then every interval with a
little jitter, never overlapping itself, at most ``max_concurrency`` probes in flight, backing off
after answers that ask us to (Retry-After, else exponential with jitter and a cap), within the
shared request budgets. All waiting goes through the injectable clock.
"""

from __future__ import annotations

import asyncio
import heapq
import itertools
import logging
import random
from collections import deque
from collections.abc import Iterable
from dataclasses import dataclass

from .budget import Budgets
from .catalog import UP_CLASSES
from .classify import Outcome
from .clock import Clock
from .config import Target, carry_over
from .probe import Prober, ProbeResult
from .state import State

__all__ = ["BACKOFF_CLASSES", "DEFAULT_MAX_BACKOFF", "MAX_BACKOFF", "Scheduler", "next_delay"]

log = logging.getLogger(__name__)

#: classes after which the vendor should be left alone for a while
BACKOFF_CLASSES = frozenset({"maintenance", "rate_limited", "quota_exceeded", "server_error"})
#: exponential backoff never waits longer than this (or the interval, when that is longer)
MAX_BACKOFF = 900.0
#: the default cap on any wait, Retry-After included (``global.max_backoff``)
DEFAULT_MAX_BACKOFF = 3600.0
JITTER = 0.05


def next_delay(interval: float, outcome: Outcome, streak: int, rng: random.Random,
               max_backoff: float = DEFAULT_MAX_BACKOFF) -> tuple[float, float]:
    """(seconds until the next probe, of which backoff). ``streak`` counts back-off answers in a row,
    this one included. No wait exceeds ``max_backoff`` (or the interval, when that is longer), whatever
    a vendor's Retry-After says. Pure, so the policy is tested without any clock."""
    if outcome.cls not in BACKOFF_CLASSES:
        return interval * (1 + rng.uniform(-JITTER, JITTER)), 0.0
    if outcome.retry_after is not None:
        delay = max(interval, outcome.retry_after)
    else:
        exp = interval * 2 ** min(streak, 20)  # the first back-off answer already doubles the wait
        delay = max(interval, min(exp, MAX_BACKOFF)) * (1 + rng.uniform(0, 2 * JITTER))
    delay = min(delay, max(interval, max_backoff))
    return delay, max(0.0, delay - interval)


@dataclass(slots=True)
class _Slot:
    target: Target
    generation: int
    streak: int = 0
    #: monotonic time until which this slot waits out a backoff (0: not backing off)
    backoff_until: float = 0.0


class Scheduler:
    def __init__(self, prober: Prober, state: State, clock: Clock, max_concurrency: int = 100,
                 rng: random.Random | None = None) -> None:
        self.prober, self.state, self.clock = prober, state, clock
        self.rng = rng or random.Random()
        self._sem = asyncio.Semaphore(max_concurrency)
        self._max_concurrency = max_concurrency
        self._heap: list[tuple[float, int, str, int]] = []
        self._seq = itertools.count()
        self._gen = itertools.count(1)
        self._slots: dict[str, _Slot] = {}
        self._tasks: set[asyncio.Task[None]] = set()
        self._sleeper: asyncio.Future[None] | None = None
        self.budgets = Budgets()
        #: planned-to-actual start lag of recent probes, seconds (for benchmarks and the status page)
        self.lags: deque[float] = deque(maxlen=10000)
        #: all probes started so far and the sum of their start lags (the summary's _count and _sum)
        self.lag_count = 0
        self.lag_sum = 0.0
        self.completed = 0

    # --- config ------------------------------------------------------------------------------------
    def apply(self, targets: Iterable[Target], max_concurrency: int | None = None) -> None:
        """(Re)load: new targets are probed soon, kept ones keep their schedule, removed ones stop."""
        targets = list(targets)
        now = self.clock.monotonic()
        spread = min(5.0, 1.0 + len(targets) / 200)

        def new_slot(t: Target) -> _Slot:
            slot = _Slot(t, next(self._gen))
            self._push(now + self.rng.uniform(0, min(t.interval, spread)), slot)
            return slot

        before = {name: slot.target for name, slot in self._slots.items()}
        fresh = carry_over(self._slots, targets, new_slot)
        for name, slot in fresh.items():
            if slot.backoff_until > now and before.get(name, slot.target) != slot.target:
                # config or credentials changed (a new key after a 401 storm, a corrected URL): the
                # backoff earned by the old config says nothing about the new one, so probe soon
                slot.streak, slot.backoff_until, slot.generation = 0, 0.0, next(self._gen)
                self._push(now + self.rng.uniform(0, min(slot.target.interval, spread)), slot)
                self.state.clear_backoff(name)
        self._slots = fresh
        if max_concurrency is not None and max_concurrency != self._max_concurrency:
            # probes in flight finish under the old limit; new ones take the new one
            self._sem = asyncio.Semaphore(max_concurrency)
            self._max_concurrency = max_concurrency
        self.prober.forget(fresh)
        self._poke()

    def target(self, name: str) -> Target | None:
        slot = self._slots.get(name)
        return slot.target if slot else None

    # --- loop --------------------------------------------------------------------------------------
    def _push(self, due: float, slot: _Slot) -> None:
        heapq.heappush(self._heap, (due, next(self._seq), slot.target.name, slot.generation))
        self.state.schedule(slot.target.name, self.clock.time() + (due - self.clock.monotonic()))

    def _poke(self) -> None:
        if self._sleeper is not None and not self._sleeper.done():
            self._sleeper.cancel()

    async def run(self) -> None:
        try:
            while True:
                now = self.clock.monotonic()
                while self._heap and self._heap[0][0] <= now:
                    due, _, name, gen = heapq.heappop(self._heap)
                    slot = self._slots.get(name)
                    if slot is None or slot.generation != gen:
                        continue  # removed or replaced by a reload
                    budget = self.budgets.limiter(slot.target)
                    if budget is not None and (wait := budget.wait(now)) > 0:
                        self._push(now + wait, slot)  # the shared budget is spent: wait for room
                        continue
                    if budget is not None:
                        budget.spend(now)
                    slot.backoff_until = 0.0
                    task = asyncio.create_task(self._probe(slot, due), name=f"probe:{name}")
                    self._tasks.add(task)
                    task.add_done_callback(self._tasks.discard)
                deadline = self._heap[0][0] if self._heap else now + 3600.0
                self._sleeper = asyncio.ensure_future(self._sleep_until(deadline))
                await asyncio.wait({self._sleeper})
        finally:
            await self.stop()

    async def _sleep_until(self, deadline: float) -> None:
        # A deadline, not a duration: the sleep may start a moment after it was planned.
        await self.clock.sleep(deadline - self.clock.monotonic())

    def in_flight(self) -> int:
        return len(self._tasks)

    async def stop(self) -> None:
        self._poke()
        tasks = list(self._tasks)
        for t in tasks:
            t.cancel()
        if tasks:
            await asyncio.gather(*tasks, return_exceptions=True)

    async def _probe(self, slot: _Slot, planned: float) -> None:
        async with self._sem:
            lag = self.clock.monotonic() - planned
            self.lags.append(lag)
            self.lag_count += 1
            self.lag_sum += lag
            result = await self.probe_once(slot.target)
            if slot.target.confirm_failures and result.outcome.cls not in UP_CLASSES | BACKOFF_CLASSES:
                # Confirm a failure once before it becomes the current class. The first attempt is
                # recorded too, so a retry never hides a failure from the counters. Not after answers
                # that ask us to back off: a retry then would only add to the vendor's load.
                if self._slots.get(slot.target.name) is slot:
                    self.state.record(result, self.clock.time(), 0.0)
                if (budget := self.budgets.limiter(slot.target)) is not None:
                    budget.spend(self.clock.monotonic(), result.requests)
                result = await self.probe_once(slot.target)
        self.completed += 1
        if self._slots.get(slot.target.name) is not slot:
            return  # removed by a reload while in flight
        now = self.clock.monotonic()
        cls = result.outcome.cls
        slot.streak = slot.streak + 1 if cls in BACKOFF_CLASSES else 0
        delay, backoff = next_delay(slot.target.interval, result.outcome, slot.streak, self.rng,
                                    slot.target.max_backoff)
        # keep the phase when on time, so probes stay evenly spread; never plan in the past
        due = max(planned + delay, now + delay * 0.5) if backoff == 0 else now + delay
        slot.backoff_until = due if backoff > 0 else 0.0
        if (budget := self.budgets.limiter(slot.target)) is not None and result.requests > 1:
            budget.spend(now, result.requests - 1)
        heapq.heappush(self._heap, (due, next(self._seq), slot.target.name, slot.generation))
        self.state.record(result, self.clock.time() + (due - now), backoff)
        if self._heap[0][0] == due:
            self._poke()  # this target is now the next one due: the loop must wake for it

    async def probe_once(self, target: Target) -> ProbeResult:
        """One probe, never raising: a bug in a probe must not stop the loop for the others."""
        try:
            return await self.prober.probe(target)
        except asyncio.CancelledError:
            raise
        except Exception as exc:  # noqa: BLE001
            log.error("probe of target %s failed internally: %s", target.name, exc.__class__.__name__)
            return ProbeResult(target.name, self.clock.time(), 0.0,
                               Outcome("unknown", "internal", "internal error in the prober", 0), "", "")
