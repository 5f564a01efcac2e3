"""When each target is probed: first soon after start (spread a little), then every interval with a
little jitter, never overlapping itself, at most ``max_concurrency`` probes in flight, backing off
after answers that ask us to (Retry-After, else exponential with jitter and a cap), within the
shared request budgets. All waiting goes through the injectable clock.

Probes asked for from outside (``/probe``, see ``on_demand``) go through the same rules: one probe of a
target at a time (a caller joins the one in flight), the same concurrency cap and budget, never
during backoff, and never sooner than the schedule would probe; what may not call answers from the
target's latest result.

A failure can hold a target's next probe back (``hold``, a callable the composition root hands in): the
exporter has the checks of the target's egress run again after a transport failure, and the probe
that would confirm it waits until they have answered, taking no place and no budget meanwhile.
"""

from __future__ import annotations

import asyncio
import heapq
import itertools
import logging
import random
from collections import Counter, deque
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass
from typing import Any

from .backoff import next_delay, streak_after
from .budget import Budgets
from .clock import Clock
from .config import Target
from .log import log_probe
from .model import UP, Outcome, ProbeResult
from .probe import Prober
from .state import State, kept

__all__ = ["COALESCE", "Hold", "LagStats", "Scheduler"]

log = logging.getLogger(__name__)
_probe_log = logging.getLogger("exporter.probe")  # log_probe's

#: when the loop wakes for a due probe, it starts with it every probe due within this many seconds,
#: so one wake-up (a select call, a timer) serves several probes at a high rate: the interpreter's
#: work per probe is much the same, but done in a burst, with warm caches, it costs markedly less CPU
#: than one probe per wake-up. No probe starts earlier than its plan by more than this (a fraction of
#: the interval's own jitter), none at the end of a backoff or without budget room (``_early_ok``),
#: and the start lag records each start as it happened (slightly negative when early)
COALESCE = 0.02

#: called with each failed answer (never with an up one) as it is recorded: what the target's next
#: probe, scheduled or asked for, must wait for (the exporter's egress re-check), or None
Hold = Callable[[Target, ProbeResult], Awaitable[None] | None]


@dataclass(slots=True)
class _Slot:
    target: Target
    generation: int
    streak: int = 0
    #: (monotonic) no probe of this target, scheduled or asked for, starts before this: its next
    #: planned probe, or the end of a backoff; an on-demand probe moves it, so the schedule waits
    not_before: float = 0.0
    #: monotonic time until which this slot waits out a backoff (0: not backing off)
    backoff_until: float = 0.0
    #: its next probe confirms a failure (``confirm_failures``): its answer is planned after as usual
    confirming: bool = False
    #: what its next probe waits for after a failure (``Scheduler.hold``), until it is done
    held_by: asyncio.Task[None] | None = None
    #: (due, generation) of the plan that came due while ``held_by`` ran: put back when it ends
    held_plan: tuple[float, int] | None = None


class _Places:
    """``max_concurrency``'s places, the one semaphore of the scheduler: scheduled probes and /probe
    callers share it, first come first served. The loop takes a place as it starts a probe (``take_now``)
    and leaves the others due in the heap while none is free; a caller of /probe waits for one in line
    (``async with``). Unlike ``asyncio.Semaphore`` it is resized in place by a reload: a new semaphore
    would let new probes in beside those still holding the old one's places (above the new cap, and
    above the old one when lowered)."""

    __slots__ = ("_on_free", "_waiters", "limit", "used")

    def __init__(self, limit: int, on_free: Callable[[], None]) -> None:
        self.limit, self.used = limit, 0
        self._waiters: deque[asyncio.Future[None]] = deque()
        #: called when a place frees up after none was: the loop sleeps while every place is taken
        self._on_free = on_free

    def free(self) -> bool:
        """Whether a place can be taken now, with no one waiting for it first."""
        return self.used < self.limit and not self._waiters

    def take_now(self) -> bool:
        if not self.free():
            return False
        self.used += 1
        return True

    async def __aenter__(self) -> None:
        if self.take_now():
            return
        fut = asyncio.get_running_loop().create_future()
        self._waiters.append(fut)
        try:
            await fut
        except asyncio.CancelledError:
            if not fut.cancelled():
                self.release()  # given a place just as it was cancelled: hand it on
            elif fut in self._waiters:
                self._waiters.remove(fut)
            raise

    async def __aexit__(self, *_exc: object) -> None:
        self.release()

    def resize(self, limit: int) -> None:
        was_full = not self.free()
        self.limit = limit
        self._grant(was_full)

    def release(self) -> None:
        was_full = not self.free()
        self.used -= 1
        self._grant(was_full)

    def _grant(self, was_full: bool) -> None:
        while self._waiters and self.used < self.limit:
            fut = self._waiters.popleft()
            if not fut.done():
                self.used += 1
                fut.set_result(None)
        if was_full and self.free():
            self._on_free()


class LagStats:
    """How late probes start against their plan: a window of the latest lags and running totals."""

    __slots__ = ("count", "recent", "total")

    def __init__(self, window: int = 10000) -> None:
        self.recent: deque[float] = deque(maxlen=window)
        self.total = 0.0  # seconds, over every probe started
        self.count = 0  # probes started

    def record(self, lag: float) -> None:
        self.recent.append(lag)
        self.total += lag
        self.count += 1


class Scheduler:
    def __init__(self, prober: Prober, state: State, clock: Clock, max_concurrency: int = 100,
                 rng: random.Random | None = None, hold: Hold | None = None) -> None:
        self.prober, self.state, self.clock = prober, state, clock
        self.hold = hold
        self.rng = rng or random.Random()
        self._places = _Places(max_concurrency, self._poke)
        self._heap: list[tuple[float, int, str, int]] = []
        self._seq = itertools.count()
        self._gen = itertools.count(1)
        self._slots: dict[str, _Slot] = {}
        self._tasks: set[asyncio.Task[Any]] = set()
        #: what the loop waits on until its next deadline; ``_poke`` sets it to wake the loop early
        self._wake: asyncio.Future[None] | None = None
        #: the probe of each target in flight (its task), which callers asking for one join (single-flight)
        self._inflight: dict[str, asyncio.Future[ProbeResult | None]] = {}
        self.budgets = Budgets()
        #: planned-to-actual start lag of probes (the exporter's own summary metric, benchmarks)
        self.lag = LagStats()
        #: probes finished so far (benchmarks and tests wait on it)
        self.completed = 0
        #: per vendor, probes held back because their credential's budget was spent (a metric)
        self.budget_delays: Counter[str] = Counter()

    # --- config ------------------------------------------------------------------------------------
    def apply(self, targets: Iterable[Target], max_concurrency: int | None = None) -> None:
        """(Re)load: new targets are probed soon, kept ones keep their schedule, removed ones stop."""
        targets = list(targets)
        now = self.clock.monotonic()
        spread = min(5.0, 1.0 + len(targets) / 200)

        fresh: dict[str, _Slot] = {}
        for target in targets:
            slot = self._slots.get(target.name)
            if slot is not None and kept(slot.target, target):
                changed = slot.target != target
                slot.target = target  # its planned probe stands; the next is planned on the new interval
                if changed and (slot.backoff_until > now or slot.not_before > now + target.interval):
                    # config or credentials changed (a new key after a 401 storm, a corrected URL): the
                    # backoff earned by the old config says nothing about the new one, so probe soon;
                    # so too when the plan lies further off than the new interval (an interval of 1 h
                    # shortened to 10 s waited out the rest of the hour)
                    slot.streak, slot.backoff_until, slot.not_before = 0, 0.0, 0.0
                    slot.generation = next(self._gen)
                    self._push(now + self.rng.uniform(0, min(target.interval, spread)), slot)
                    self.state.clear_backoff(target.name)
            else:
                slot = _Slot(target, next(self._gen))
                self._push(now + self.rng.uniform(0, min(target.interval, spread)), slot)
            fresh[target.name] = slot
            if target.budget:  # a vendor with a budget is shown at 0 before its first delay
                self.budget_delays.setdefault(target.vendor, 0)
        self._slots = fresh
        if len(self._heap) > 2 * len(fresh) + 64:
            # plans of removed or re-planned targets are dropped only when they come due: reloads that
            # drop and add back targets would pile them up for as long as an interval
            self._heap[:] = [e for e in self._heap if (s := fresh.get(e[2])) is not None and s.generation == e[3]]
            heapq.heapify(self._heap)
        self.budgets.configure(targets)
        if max_concurrency is not None and max_concurrency != self._places.limit:
            # probes in flight keep their places; no new one starts until fewer than the new limit hold one
            self._places.resize(max_concurrency)
        self.prober.forget(fresh)
        self._poke()

    # --- loop --------------------------------------------------------------------------------------
    def _push(self, due: float, slot: _Slot) -> None:
        heapq.heappush(self._heap, (due, next(self._seq), slot.target.name, slot.generation))
        if self._heap[0][0] == due:
            self._poke()  # now the next one due: the loop may be asleep until a later one (or an hour)
        self.state.schedule(slot.target.name, self.clock.time() + (due - self.clock.monotonic()))

    def _poke(self) -> None:
        if self._wake is not None and not self._wake.done():
            self._wake.set_result(None)

    async def run(self) -> None:
        try:
            while True:
                now = self.clock.monotonic()
                self._start_due(now)
                full = not self._places.free()
                # at the cap the next wake-up is a place freed (``_freed``), not the heap's head
                await self._sleep_until(self._heap[0][0] if self._heap and not full else now + 3600.0)
        except asyncio.CancelledError:
            # stopped: the probes with it. A loop that dies of a bug leaves them alone instead: each
            # plans its target's next probe when it finishes, so the loop started again finds every
            # target in the schedule (cancelled, they planned nothing: their targets were lost)
            await self.stop()
            raise

    def _start_due(self, now: float) -> None:
        """Start every probe due by ``now``, and with them those due within the coalescing slack: only
        along with one that is due, so a wake-up for anything else (a reload, a new plan) starts nothing
        early."""
        heap = self._heap
        horizon = now + COALESCE if heap and heap[0][0] <= now else now
        later: list[tuple[float, int, str, int]] = []
        # no free place: the due probes stay in the heap instead of becoming a task each that would only
        # wait for one (behind schedule, thousands of waiting tasks were megabytes of frames)
        while heap and heap[0][0] <= horizon and self._places.free():
            entry = heapq.heappop(heap)
            due, _, name, gen = entry
            slot = self._slots.get(name)
            if slot is None or slot.generation != gen:
                continue  # removed or replaced by a reload
            if slot.not_before > due:  # an on-demand probe stood in for this one: wait as it says
                self._push(slot.not_before, slot)
                continue
            if slot.held_by is not None:  # it waits for what its last failure holds it back for
                slot.held_plan = (due, gen)  # put back in the heap when that ends (``_unhold``)
                continue
            joined = self._inflight.get(name)
            try:
                if due > now and not self._early_ok(slot, due, now):
                    later.append(entry)  # it waits for its own wake-up
                    continue
                admitted = joined is not None or self._admit(slot, now)
            except Exception as exc:  # noqa: BLE001 - a bug costs this probe, not the loop
                self._replan(slot, "admitting", exc)
                continue
            if admitted:
                slot.backoff_until = 0.0
                # a probe of its own takes its place now (the loop runs while one is free); one that joins
                # a /probe caller's needs none
                if joined is None:
                    self._places.take_now()
                task = asyncio.create_task(self._probe(slot, due, joined), name=f"probe:{name}")
                if joined is None:
                    self._inflight[name] = task  # from now on, a caller of /probe joins this one
                    task.add_done_callback(self._freed)  # a callback: it runs even if never started
                self._tasks.add(task)
                task.add_done_callback(self._tasks.discard)
        for entry in later:
            heapq.heappush(heap, entry)

    def _freed(self, _task: asyncio.Task[Any]) -> None:
        # at the cap the loop sleeps until a place frees (the places poke it); below it, until the next
        # plan, starting with it those due within the slack (a wake-up per finished probe costs CPU)
        self._places.release()

    def _early_ok(self, slot: _Slot, due: float, now: float) -> bool:
        """Whether a probe due a moment from now may start with those due now: not at the end of a
        backoff (a Retry-After is kept to the letter), nor while its budget has no room yet (it would
        only be held back, and counted as such, again)."""
        if slot.backoff_until >= due:
            return False
        budget = self.budgets.limiter(slot.target)
        return budget is None or budget.wait(now) <= 0

    def _admit(self, slot: _Slot, now: float, spend: bool = False) -> bool:
        """Whether the credential's shared budget has room for the probe's first request now (then,
        with ``spend``, it is booked); if not, the probe is planned again for when there will be room.
        A probe is let through without booking and booked as it goes out, once it holds a place: one
        that waited for a place (held by slow probes, /probe callers) went out beside those booked
        meanwhile, and a key's 5 a second became 9 at once."""
        budget = self.budgets.limiter(slot.target)
        if budget is None:
            return True
        if (wait := budget.wait(now)) > 0:
            self.budget_delays[slot.target.vendor] += 1
            self._push(now + wait, slot)
            return False
        if spend:
            budget.spend(now)
        return True

    def _replan(self, slot: _Slot, step: str, exc: Exception) -> None:
        """After an internal error around a probe: one log line, and the target planned again an
        interval from now (a new generation, so a half-made plan is dropped) instead of lost."""
        log.error("%s a probe of target %s failed internally: %s", step, slot.target.name, exc.__class__.__name__)
        if not self._current(slot):
            return
        slot.generation = next(self._gen)
        slot.not_before = self.clock.monotonic() + slot.target.interval
        self._push(slot.not_before, slot)
        self._poke()

    async def _sleep_until(self, deadline: float) -> None:
        """Wait until ``deadline`` (monotonic) or a ``_poke``: one future and one timer handle, not a
        task of its own per wake-up."""
        wake = self._wake = asyncio.get_running_loop().create_future()
        timer = self.clock.call_at(deadline, self._poke)
        try:
            await wake
        finally:
            timer.cancel()
            self._wake = None

    def in_flight(self) -> int:
        """Probes started and not finished, and those due that wait for a place under the cap. One per
        target in flight: a planned probe that joined a /probe caller's is not another (its task only
        waits for that one's answer)."""
        flights = self._inflight
        if self._places.free():
            return len(flights)
        now, slots = self.clock.monotonic(), self._slots
        waiting = sum(1 for due, _, name, gen in self._heap
                      if due <= now and name not in flights and (slot := slots.get(name)) is not None
                      and slot.generation == gen)
        return len(flights) + waiting

    async def stop(self) -> None:
        self._poke()
        tasks = list(self._tasks)
        for task in tasks:
            task.cancel()
        if tasks:
            await asyncio.gather(*tasks, return_exceptions=True)
        # a probe's task cancelled before it first ran never reached its own clean-up
        for name in [name for name, flight in self._inflight.items() if flight.done()]:
            del self._inflight[name]

    async def _probe(self, slot: _Slot, planned: float,
                     joined: asyncio.Future[ProbeResult | None] | None) -> ProbeResult | None:
        """One scheduled probe: wait for a concurrency slot, probe, plan the next (or the confirmation).
        Its task is the target's probe in flight (``_inflight``) unless it ``joined`` one already there;
        its result, set once the answer is recorded, is what callers that joined answer from."""
        name = slot.target.name
        if joined is not None:
            # an on-demand probe is under way: its answer stands for this one (it booked what it
            # spent, recorded it and moved not_before); nothing more is sent, and nothing is booked
            self.completed += 1
            generation = slot.generation
            await _join(joined)
            # unless its answer planned the target afresh (a reload changed it meanwhile): a second
            # plan would go on in step with the first, one more joined "probe" every interval
            if self._current(slot) and slot.generation == generation:
                self._push(max(slot.not_before, self.clock.monotonic()), slot)
            return None
        # the place the loop took for it is given back when its task ends (``_freed``)
        try:
            if not self._current(slot):
                return None  # a reload removed or replaced the target before this task ran
            started = slot.target  # a reload may change it while the probe is in flight
            try:
                if not self._admit(slot, self.clock.monotonic(), spend=True):
                    return None  # planned again for when the budget has room
            except Exception as exc:  # noqa: BLE001 - a bug costs this probe, not the target's schedule
                self._replan(slot, "admitting", exc)
                return None
            self.lag.record(self.clock.monotonic() - planned)
            result = await self.probe_once(started)
        finally:
            if self._inflight.get(name) is asyncio.current_task():
                del self._inflight[name]
        self.completed += 1
        self._after(slot, result, started, planned)
        return result

    async def on_demand(self, name: str) -> bool:
        """A probe of ``name`` asked for from outside (``/probe``): True when it was answered by a
        probe made now (its own, or one in flight that it joined), False when it may not call now
        (backoff, the next planned probe not yet due, no budget left) and the caller answers from the
        latest result. What it spends is booked in the budget; its answer plans the schedule's next
        probe as a scheduled one would, so the vendor sees no more probes than the schedule's."""
        slot = self._slots.get(name)
        if slot is None:
            return False
        if (joined := self._inflight.get(name)) is not None:
            return await _join(joined)
        now = self.clock.monotonic()
        if now < slot.not_before or slot.held_by is not None:
            return False
        if (budget := self.budgets.limiter(slot.target)) is not None and budget.wait(now) > 0:
            self.budget_delays[slot.target.vendor] += 1
            return False
        # the scheduler's task, not the caller's: a client that goes away cannot cancel a probe that
        # others have joined, and stop() cancels it with the rest
        task = asyncio.create_task(self._on_demand(slot), name=f"probe-on-demand:{name}")
        self._inflight[name] = task
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        task.add_done_callback(lambda t: self._inflight.pop(name) if self._inflight.get(name) is t else None)
        return await _join(task)

    async def _on_demand(self, slot: _Slot) -> ProbeResult | None:
        # the scheduler's cap: callers of /probe share it, and since a second caller for a target
        # joins the first, they hold at most one of its places per target
        async with self._places:
            if not self._current(slot):
                return None  # removed or replaced by a reload while the caller waited for a place
            # booked as it goes out (see ``_admit``): the caller may have waited for the place
            if (budget := self.budgets.limiter(slot.target)) is not None:
                if budget.wait(now := self.clock.monotonic()) > 0:
                    self.budget_delays[slot.target.vendor] += 1
                    return None  # its callers answer from the latest result
                budget.spend(now)
            started = slot.target
            result = await self.probe_once(started)
        self._after(slot, result, started, None)
        return result

    def _current(self, slot: _Slot) -> bool:
        """False once a reload removed or replaced the target while its probe was in flight."""
        return self._slots.get(slot.target.name) is slot

    def _confirmation(self, slot: _Slot, result: ProbeResult, now: float) -> float | None:
        """With ``confirm_failures``, a failure of any class is confirmed by one more probe within the
        same interval, planned like any other (it takes a place under the cap and its budget room when
        it goes out, and holds neither meanwhile): the seconds until it may go out, after the answer's
        Retry-After and when the credential's budget has room; None when there is to be none (an up
        answer, a probe that confirms, the wait more than half the interval: then the next planned
        probe, after the backoff, confirms or not). The first failure is recorded (so a retry never
        hides a failure from the counters), and ``apistatus_consecutive_failures`` reads 2 only once
        it is confirmed: what the alerts wait for."""
        target = slot.target
        if not target.confirm_failures or slot.confirming or result.outcome.cls in UP:
            return None
        wait = result.outcome.retry_after or 0.0
        if (budget := self.budgets.limiter(target)) is not None:
            wait = max(wait, budget.wait(now))
        return wait if wait <= target.interval / 2 else None

    def _book(self, target: Target, now: float, requests: int) -> None:
        """Book requests a probe made in its credential's shared budget."""
        if requests > 0 and (budget := self.budgets.limiter(target)) is not None:
            budget.spend(now, requests)

    def _after(self, slot: _Slot, result: ProbeResult, started: Target, planned: float | None) -> None:
        """The one planning step after a probe's answer, scheduled (``planned``: when it was due) or asked
        for by /probe (None): book what it spent beyond its first request (booked as it went out,
        ``_admit``), plan the target's next probe (interval, jitter, backoff: ``backoff.next_delay``),
        record the answer. A scheduled probe's plan goes into the heap; an on-demand one moves
        ``not_before``, so the schedule's next probe waits as if this one were it. A bug here costs this
        plan, not the target's schedule."""
        if not self._current(slot):
            return  # a reload removed or replaced the target while the probe was in flight
        try:
            now = self.clock.monotonic()
            self._book(slot.target, now, result.requests - 1)
            if slot.target is not started and slot.target != started:
                self._plan_changed(slot, now, result)
                return
            wait = self._confirmation(slot, result, now) if planned is not None else None
            slot.confirming = wait is not None
            if wait is not None:
                # the confirming probe, planned (and kept to the Retry-After) like a backoff's end; the
                # streak waits for its answer
                slot.not_before = slot.backoff_until = due = now + wait
                heapq.heappush(self._heap, (due, next(self._seq), slot.target.name, slot.generation))
                self._poke()
                self._hold_after(slot, result)
                self._record(result, self.clock.time() + wait, 0.0)
                return
            slot.streak = streak_after(slot.streak, result.outcome)
            delay, backoff = next_delay(slot.target.interval, result.outcome, slot.streak, self.rng,
                                        slot.target.max_backoff)
            due = now + delay
            if planned is not None and backoff == 0:
                # keep the phase when on time, so probes stay evenly spread; never plan in the past
                due = max(planned + delay, now + delay * 0.5)
            slot.not_before = due
            slot.backoff_until = due if backoff > 0 else 0.0
            if planned is not None:
                heapq.heappush(self._heap, (due, next(self._seq), slot.target.name, slot.generation))
                if self._heap[0][0] == due:
                    self._poke()  # this target is now the next one due: the loop must wake for it
        except Exception as exc:  # noqa: BLE001
            self._replan(slot, "planning after", exc)
            return
        self._hold_after(slot, result)
        self._record(result, self.clock.time() + (due - now), backoff)

    def _plan_changed(self, slot: _Slot, now: float, result: ProbeResult) -> None:
        """A reload changed the target while its probe was in flight: the answer, to the old config, is
        recorded, but its backoff says nothing about the new one (as in ``apply``), so probe soon."""
        slot.streak, slot.backoff_until = 0, 0.0
        slot.generation = next(self._gen)  # drops what the schedule had planned for the old config
        slot.not_before = now + self.rng.uniform(0, min(slot.target.interval, 5.0))
        self._push(slot.not_before, slot)
        self._poke()
        self._hold_after(slot, result)
        self._record(result, self.clock.time() + (slot.not_before - now), 0.0)

    def _hold_after(self, slot: _Slot, result: ProbeResult) -> None:
        """After a failed answer, what ``hold`` says the target's next probe waits for: a task of the
        scheduler's own (``stop`` cancels it), which puts back the plan that came due meanwhile."""
        if self.hold is None or result.outcome.cls in UP or slot.held_by is not None:
            return
        try:
            awaitable = self.hold(slot.target, result)
        except Exception as exc:  # noqa: BLE001 - a bug costs the wait, not the schedule
            log.error("holding the next probe of target %s failed internally: %s", slot.target.name,
                      exc.__class__.__name__)
            return
        if awaitable is None:
            return
        task = asyncio.create_task(_wait_for(awaitable, slot.target.name), name=f"hold:{slot.target.name}")
        slot.held_by = task
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        task.add_done_callback(lambda t: self._unhold(slot, t))

    def _unhold(self, slot: _Slot, task: asyncio.Task[None]) -> None:
        if slot.held_by is not task:
            return
        slot.held_by, plan = None, slot.held_plan
        slot.held_plan = None
        if plan is None or task.cancelled() or not self._current(slot) or slot.generation != plan[1]:
            return  # nothing came due meanwhile, or stopped, or a reload planned the target afresh
        self._push(max(plan[0], self.clock.monotonic()), slot)

    def _record(self, result: ProbeResult, next_probe_at: float, backoff: float) -> None:
        """Write the result to the state; a bug there costs this one result, never the target's schedule."""
        try:
            before = self.state.get(result.target)
            old = before.last.outcome.cls if before is not None and before.last is not None else None
            ts = self.state.record(result, next_probe_at, backoff)
            # log_probe writes nothing for a probe that keeps its class unless debug is on: skip the call
            if ts is not None and (old != result.outcome.cls or _probe_log.isEnabledFor(logging.DEBUG)):
                log_probe(old, result, ts.target.vendor)
        except Exception as exc:  # noqa: BLE001
            log.error("recording a probe of target %s failed internally: %s", result.target,
                      exc.__class__.__name__)

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


async def _wait_for(awaitable: Awaitable[None], name: str) -> None:
    """What a target's next probe waits for: its end, whatever it ends with (one line for a bug)."""
    try:
        await awaitable
    except asyncio.CancelledError:
        task = asyncio.current_task()
        if task is not None and task.cancelling():
            raise  # stopped
        # what it waited for was called off (the exporter closes): nothing is left to wait for
    except Exception as exc:  # noqa: BLE001
        log.error("what the next probe of target %s waited for failed internally: %s", name, exc.__class__.__name__)


async def _join(flight: asyncio.Future[ProbeResult | None]) -> bool:
    """Wait for a probe in flight without being able to cancel it; False when it was cancelled or
    died of a bug (then the caller answers from the latest result, as when it may not call)."""
    try:
        await asyncio.shield(flight)
    except asyncio.CancelledError:
        task = asyncio.current_task()
        if flight.cancelled() and not (task is not None and task.cancelling()):
            return False
        raise
    except Exception:  # noqa: BLE001 - logged by the flight's own task
        return False
    return flight.result() is not None  # None: it sent nothing (its budget had no room after all)
