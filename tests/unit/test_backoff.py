"""The backoff policy on its own (exporter/backoff.py): pure, so no clock and no scheduler."""

from __future__ import annotations

import random

import pytest

from exporter.backoff import DEFAULT_MAX_BACKOFF, EXPONENTIAL_CEILING, next_delay, streak_after
from exporter.config import GlobalConfig
from exporter.model import Outcome

ERROR = Outcome("server_error", "50", "x", 500)
OK = Outcome("ok", "20", "x", 200)


def test_the_exponential_backoff_doubles_from_twice_the_interval_up_to_its_ceiling() -> None:
    rng = random.Random(7)
    streak, waits = 0, []
    for _ in range(12):
        streak = streak_after(streak, ERROR)
        waits.append(next_delay(30, ERROR, streak, rng)[0])
    for wait, base in zip(waits, [60, 120, 240, 480, 900, 900], strict=False):
        assert base <= wait <= base * 1.1  # jitter upwards only
    assert max(waits) <= EXPONENTIAL_CEILING * 1.1


def test_a_retry_after_may_ask_for_longer_than_the_ceiling_but_not_than_max_backoff() -> None:
    rng = random.Random(7)
    asked = Outcome("maintenance", "22", "x", 503, retry_after=2 * EXPONENTIAL_CEILING)
    assert next_delay(30, asked, 1, rng) == (2 * EXPONENTIAL_CEILING, 2 * EXPONENTIAL_CEILING - 30)
    asked = Outcome("maintenance", "22", "x", 503, retry_after=10 * DEFAULT_MAX_BACKOFF)
    assert next_delay(30, asked, 1, rng) == (DEFAULT_MAX_BACKOFF, DEFAULT_MAX_BACKOFF - 30)
    assert next_delay(30, ERROR, 1, rng, max_backoff=45) == (45, 15)


def test_any_other_answer_ends_the_streak_and_waits_the_interval_with_jitter() -> None:
    assert streak_after(5, OK) == 0 and streak_after(5, ERROR) == 6
    delay, backoff = next_delay(30, OK, 0, random.Random(7))
    assert 28.5 <= delay <= 31.5 and backoff == 0


def test_the_configs_default_bound_is_the_policys() -> None:
    assert GlobalConfig().max_backoff == DEFAULT_MAX_BACKOFF


@pytest.mark.parametrize("interval", [1200.0, 7200.0])
def test_an_interval_longer_than_either_bound_is_still_waited(interval: float) -> None:
    assert next_delay(interval, ERROR, 9, random.Random(7))[0] >= interval
