"""How long a target waits after an answer: the interval with a little jitter, or a backoff after an
answer that asks the exporter to back off (Retry-After, else exponential with jitter). Pure (no clock,
no state: the random source is passed in), so the policy is tested on its own; the scheduler plans
with it and config takes its default bound from it.

Two bounds, each with one job:

- ``max_backoff`` (config, default ``DEFAULT_MAX_BACKOFF``, 1 h): no wait exceeds it (or the interval,
  when that is longer), whatever a vendor's Retry-After says.
- ``EXPONENTIAL_CEILING`` (15 min): without a Retry-After, the doubling stops here, so a vendor that
  keeps failing is still seen recovering within a quarter of an hour; only a vendor's own Retry-After
  asks for longer, up to ``max_backoff``.
"""

from __future__ import annotations

import random

from .model import BACKOFF as BACKOFF_CLASSES
from .model import Outcome

__all__ = ["BACKOFF_CLASSES", "DEFAULT_MAX_BACKOFF", "EXPONENTIAL_CEILING", "JITTER", "next_delay", "streak_after"]

#: the default bound on any wait, Retry-After included (``global.max_backoff``)
DEFAULT_MAX_BACKOFF = 3600.0
#: where the exponential backoff stops doubling (or the interval, when that is longer)
EXPONENTIAL_CEILING = 900.0
#: the interval's jitter, either way; a backoff's, upwards only and twice as wide
JITTER = 0.05


def streak_after(streak: int, outcome: Outcome) -> int:
    """Back-off answers in a row, this one included (0 after any other answer)."""
    return streak + 1 if outcome.cls in BACKOFF_CLASSES else 0


def next_delay(interval: float, outcome: Outcome, streak: int, rng: random.Random,
               max_backoff: float = DEFAULT_MAX_BACKOFF) -> tuple[float, float]:
    """(seconds until the next probe, of which backoff). ``streak`` counts back-off answers in a row,
    this one included (``streak_after``)."""
    if outcome.cls not in BACKOFF_CLASSES:
        return interval * (1 + rng.uniform(-JITTER, JITTER)), 0.0
    if outcome.retry_after is not None:
        delay = max(interval, outcome.retry_after)
    else:
        exp = interval * 2 ** min(streak, 20)  # the first back-off answer already doubles the wait
        delay = max(interval, min(exp, EXPONENTIAL_CEILING)) * (1 + rng.uniform(0, 2 * JITTER))
    delay = min(delay, max(interval, max_backoff))
    return delay, max(0.0, delay - interval)
