"""Request budgets: targets that share one credential share one budget (e.g. Flipsnack 60/min per
key), of which the probes may spend a configured share. A token bucket per credential; the
scheduler asks it before each probe, and ``--check-config`` warns when the intervals cannot fit.
"""

from __future__ import annotations

import math
from collections import defaultdict
from collections.abc import Hashable, Iterable

from .config import Target

__all__ = ["Budgets", "TokenBucket", "budget_warnings"]


class TokenBucket:
    """``rate`` tokens a second, at most ``capacity`` saved up. Spending may go into debt (a probe that
    had to log in cost more than one request): the debt delays the next probe."""

    def __init__(self, rate: float, capacity: float, now: float) -> None:
        self.rate, self.capacity = rate, capacity
        self.tokens, self.stamp = capacity, now

    def _fill(self, now: float) -> None:
        self.tokens = min(self.capacity, self.tokens + (now - self.stamp) * self.rate)
        self.stamp = now

    def wait(self, now: float) -> float:
        """Seconds until one whole token is there (0 when it is there now)."""
        self._fill(now)
        return 0.0 if self.tokens >= 1 else (1 - self.tokens) / self.rate

    def spend(self, now: float, n: float = 1) -> None:
        self._fill(now)
        self.tokens -= n


def allowance(target: Target) -> tuple[float, float] | None:
    """(requests, per seconds) the probes of this target's credential may spend, or None."""
    if target.budget is None:
        return None
    return target.budget.requests * target.probe_share, target.budget.per


class Budgets:
    def __init__(self) -> None:
        self._buckets: dict[Hashable, TokenBucket] = {}

    def bucket(self, target: Target, now: float) -> TokenBucket | None:
        allowed = allowance(target)
        if allowed is None:
            return None
        requests, per = allowed
        key = target.budget_key
        b = self._buckets.get(key)
        if b is None or not math.isclose(b.rate, requests / per):
            # capacity at least one request, so a share below one request per window still works
            b = self._buckets[key] = TokenBucket(requests / per, max(1.0, requests), now)
        return b


def budget_warnings(targets: Iterable[Target]) -> list[str]:
    """One line per credential whose targets' intervals spend more than the probes' share."""
    groups: dict[Hashable, list[Target]] = defaultdict(list)
    for t in targets:
        if t.budget is not None:
            groups[t.budget_key].append(t)
    out = []
    for group in groups.values():
        first = group[0]
        allowed = allowance(first)
        assert allowed is not None and first.budget is not None
        requests, per = allowed
        demand = sum(per / t.interval for t in group)
        if demand > requests + 1e-9:
            fits = math.ceil(len(group) * per / requests)
            names = ", ".join(t.name for t in group)
            out.append(
                f"targets {names} share one {first.vendor} credential: their intervals make {demand:g} requests "
                f"per {per:g}s but probes may spend {requests:g} ({first.probe_share:.0%} of "
                f"{first.budget.requests} per {per:g}s); an interval of at least {fits}s each would fit"
            )
    return out
