"""Request budgets: targets that share one credential share one budget (e.g. Flipsnack 60/min per
key), of which the probes may spend a configured share. A sliding-window log per credential gives an
exact guarantee (never more than the share in any window), which a token bucket's burst would not;
the scheduler asks it before each probe, and ``--check-config`` warns when the intervals cannot fit.
"""

from __future__ import annotations

import math
from collections import defaultdict, deque
from collections.abc import Hashable, Iterable

from .config import Target

__all__ = ["Budgets", "SlidingWindow", "allowance", "budget_warnings"]


class SlidingWindow:
    """At most ``count`` requests in any ``window`` seconds."""

    def __init__(self, count: int, window: float) -> None:
        self.count, self.window = count, window
        # Requests launched exactly one window apart can arrive less than a window apart at the
        # vendor (network jitter); a margin keeps them clear of the vendor's window edge.
        self.span = window + max(1.0, window * 0.01)
        self._stamps: deque[float] = deque()

    def wait(self, now: float) -> float:
        """Seconds until one more request fits (0 when it fits now)."""
        while self._stamps and self._stamps[0] <= now - self.span:
            self._stamps.popleft()
        return 0.0 if len(self._stamps) < self.count else self._stamps[0] + self.span - now

    def spend(self, now: float, n: int = 1) -> None:
        # Logins and quota calls a probe made beyond its first request are booked too; they may
        # overfill the window, which then simply stays shut for longer.
        self._stamps.extend([now] * n)


def allowance(target: Target) -> tuple[int, float] | None:
    """(requests, per seconds) this target's credential may spend on probes, or None: whole requests,
    so a share below one request per window becomes one request per longer window."""
    if target.budget is None:
        return None
    share = target.budget.requests * target.probe_share
    count = max(1, math.floor(share + 1e-9))
    return count, target.budget.per * count / share


class Budgets:
    def __init__(self) -> None:
        self._windows: dict[Hashable, SlidingWindow] = {}

    def window(self, target: Target) -> SlidingWindow | None:
        allowed = allowance(target)
        if allowed is None:
            return None
        key = target.budget_key
        w = self._windows.get(key)
        if w is None or (w.count, w.window) != allowed:
            w = self._windows[key] = SlidingWindow(*allowed)
        return w


def budget_warnings(targets: Iterable[Target]) -> list[str]:
    """One line per credential whose targets' intervals would spend more than the probes' share."""
    groups: dict[Hashable, list[Target]] = defaultdict(list)
    for t in targets:
        if t.budget is not None:
            groups[t.budget_key].append(t)
    out = []
    for group in groups.values():
        first = group[0]
        allowed = allowance(first)
        assert allowed is not None and first.budget is not None
        count, window = allowed
        demand = sum(window / t.interval for t in group)
        if demand > count + 1e-9:
            fits = math.ceil(len(group) * window / count)
            out.append(
                f"targets {', '.join(t.name for t in group)} share one {first.vendor} credential: their intervals "
                f"make {demand:g} requests per {window:g}s but probes may spend {count} "
                f"({first.probe_share:.0%} of {first.budget.requests} per {first.budget.per:g}s); "
                f"an interval of at least {fits}s each would fit"
            )
    return out
