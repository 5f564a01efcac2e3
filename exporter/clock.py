"""Time, injectable: the real clock in production, a controllable one in tests and benchmarks.

Everything that waits or stamps goes through a Clock, so "a Retry-After of 120 s delays the next
probe by 120 s" is tested by advancing a FakeClock, never by sleeping.
"""

from __future__ import annotations

import asyncio
import contextlib
import heapq
import itertools
import time
from collections.abc import Callable
from typing import Any, Protocol

__all__ = ["Clock", "FakeClock", "SystemClock", "Timer", "sleep_or_wake"]


class Timer(Protocol):
    """What ``Clock.call_at`` returns: a pending call that can be called off."""

    def cancel(self) -> Any: ...


class Clock(Protocol):
    def time(self) -> float:
        """Wall-clock seconds since the epoch (for signatures, timestamps in metrics)."""
        ...

    def monotonic(self) -> float:
        """Seconds for scheduling; never jumps."""
        ...

    async def sleep(self, seconds: float) -> None: ...

    def call_at(self, deadline: float, callback: Callable[[], object]) -> Timer:
        """Call ``callback`` from the event loop once ``monotonic()`` reaches ``deadline``: a wake-up
        without a task or a coroutine of its own (the scheduler's loop waits this way)."""
        ...


async def sleep_or_wake(clock: Clock, seconds: float, wake: asyncio.Event) -> None:
    """Sleep ``seconds`` on ``clock``, or less if ``wake`` is set meanwhile (it is cleared first, so only a
    wake-up that comes after this call ends the sleep early): the pause of a background loop that a reload
    can cut short."""
    wake.clear()
    sleeper = asyncio.ensure_future(clock.sleep(seconds))
    waker = asyncio.ensure_future(wake.wait())
    try:
        await asyncio.wait({sleeper, waker}, return_when=asyncio.FIRST_COMPLETED)
    finally:
        for task in (sleeper, waker):
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task


class SystemClock:
    def time(self) -> float:
        return time.time()

    def monotonic(self) -> float:
        return time.monotonic()

    async def sleep(self, seconds: float) -> None:
        await asyncio.sleep(max(0.0, seconds))

    def call_at(self, deadline: float, callback: Callable[[], object]) -> Timer:
        # a delay from our own monotonic clock, not the loop's time(): the two need not be the same clock
        return asyncio.get_running_loop().call_later(max(0.0, deadline - time.monotonic()), callback)


class FakeClock:
    """A clock that moves only when told. ``sleep`` returns once ``advance`` passes its deadline."""

    def __init__(self, start: float = 1_700_000_000.0) -> None:
        self._wall0 = start
        self._now = 0.0
        self._sleepers: list[tuple[float, int, asyncio.Future[None]]] = []
        self._seq = itertools.count()

    def time(self) -> float:
        return self._wall0 + self._now

    def monotonic(self) -> float:
        return self._now

    async def sleep(self, seconds: float) -> None:
        if seconds <= 0:
            await asyncio.sleep(0)
            return
        fut: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        heapq.heappush(self._sleepers, (self._now + seconds, next(self._seq), fut))
        await fut

    def call_at(self, deadline: float, callback: Callable[[], object]) -> Timer:
        """Due when ``advance`` passes ``deadline`` (or right away, if it has); cancelling the returned
        future calls it off."""
        fut: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        fut.add_done_callback(lambda done: None if done.cancelled() else callback())
        if deadline <= self._now:
            fut.set_result(None)
        else:
            heapq.heappush(self._sleepers, (deadline, next(self._seq), fut))
        return fut

    def next_deadline(self) -> float | None:
        while self._sleepers and self._sleepers[0][2].done():
            heapq.heappop(self._sleepers)
        return self._sleepers[0][0] if self._sleepers else None

    async def advance(self, seconds: float, settle: int = 20) -> None:
        """Move time forward step by step, letting woken tasks run at each deadline."""
        target = self._now + seconds
        while True:
            for _ in range(settle):
                await asyncio.sleep(0)
            deadline = self.next_deadline()
            if deadline is None or deadline > target:
                break
            self._now = max(self._now, deadline)
            while self._sleepers and self._sleepers[0][0] <= self._now:
                _, _, fut = heapq.heappop(self._sleepers)
                if not fut.done():
                    fut.set_result(None)
        self._now = target
        for _ in range(settle):
            await asyncio.sleep(0)
