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

__all__ = ["Budgets", "Limiter", "SlidingWindow", "allowances", "budget_warnings", "group_allowances"]


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
        # One expression for "expired" and for the wait, so that float rounding at the window's edge
        # can never report a full window as having room (it did: 0.366 + 2 vs 2.366 - 2).
        while self._stamps and self._stamps[0] + self.span <= now:
            self._stamps.popleft()
        return 0.0 if len(self._stamps) < self.count else self._stamps[0] + self.span - now

    def spend(self, now: float, n: int = 1) -> None:
        # Logins and quota calls a probe made beyond its first request are booked too; they may
        # overfill the window, which then simply stays shut for longer.
        self._stamps.extend([now] * n)


def allowances(target: Target) -> list[tuple[int, float, int, float]]:
    """Per budget window: (requests, seconds) the probes of this target's credential may spend, then
    the vendor's own (requests, seconds). Whole requests, so a share below one request per window
    becomes one request per longer window."""
    out = []
    for budget in target.budget:
        share = budget.requests * target.probe_share
        count = max(1, math.floor(share + 1e-9))
        out.append((count, budget.per * count / share, budget.requests, budget.per))
    return out


def group_allowances(group: Iterable[Target]) -> list[tuple[int, float, int, float, Target]]:
    """The windows of targets sharing one credential: each target's own, so that the probes of all of
    them keep within the strictest (different probe_share or budget on one key must not loosen it).
    Each window carries the target it comes from, for messages."""
    out: dict[tuple[int, float], tuple[int, float, int, float, Target]] = {}
    for target in group:
        for count, window, requests, per in allowances(target):
            out.setdefault((count, window), (count, window, requests, per, target))
    return [out[k] for k in sorted(out, key=lambda k: (k[1], k[0]))]


class Limiter:
    """All of a credential's windows: a request waits for the strictest, and is booked in each."""

    def __init__(self, windows: list[SlidingWindow]) -> None:
        self.windows = windows

    def wait(self, now: float) -> float:
        return max(w.wait(now) for w in self.windows)

    def spend(self, now: float, n: int = 1) -> None:
        for window in self.windows:
            window.spend(now, n)


class Budgets:
    """One limiter per credential (``budget_key``), built from its whole group when a config is applied."""

    def __init__(self) -> None:
        self._limiters: dict[Hashable, Limiter] = {}
        #: by target name: (the Target it was looked up for, its limiter), so that a probe, which asks
        #: up to twice, need not build its budget key (sorted credentials) each time
        self._by_target: dict[str, tuple[Target, Limiter]] = {}

    def configure(self, targets: Iterable[Target]) -> None:
        """(Re)load: a window the new config keeps keeps its requests, so a reload never opens a budget."""
        groups: dict[Hashable, list[Target]] = defaultdict(list)
        for target in targets:
            if target.budget:
                groups[target.budget_key].append(target)
        old = {(key, w.count, w.window): w for key, lim in self._limiters.items() for w in lim.windows}
        self._limiters = {
            key: Limiter([old.get((key, c, w)) or SlidingWindow(c, w) for c, w, _, _, _ in group_allowances(group)])
            for key, group in groups.items()}
        self._by_target = {}

    def limiter(self, target: Target) -> Limiter | None:
        if not target.budget:
            return None
        if (known := self._by_target.get(target.name)) is not None and known[0] is target:
            return known[1]
        held = self._limiters.get(target.budget_key)
        if held is None:  # a target of no applied config (a caller that skipped configure)
            held = self._limiters[target.budget_key] = Limiter(
                [SlidingWindow(c, w) for c, w, _, _, _ in group_allowances([target])])
        self._by_target[target.name] = (target, held)
        return held


def budget_warnings(targets: Iterable[Target]) -> list[str]:
    """One line per credential and window whose targets' intervals would spend more than the share."""
    groups: dict[Hashable, list[Target]] = defaultdict(list)
    for target in targets:
        if target.budget:
            groups[target.budget_key].append(target)
    out = []
    for group in groups.values():
        for count, window, requests, per, strict in group_allowances(group):
            demand = sum(window / t.interval for t in group)
            if demand > count + 1e-9:
                fits = math.ceil(len(group) * window / count)
                out.append(
                    f"targets {', '.join(t.name for t in group)} share one {strict.vendor} credential: their "
                    f"intervals make {demand:g} requests per {window:g}s but probes may spend {count} "
                    f"({strict.probe_share:.0%} of {requests} per {per:g}s); "
                    f"an interval of at least {fits}s each would fit"
                )
    return out
