"""Backoff from hostile Retry-After values: parsed exactly as RFC 9110 says, every wait capped at
``max_backoff`` (validated), and a reload that changes a target's config clears its backoff. On the
controllable clock against a real loopback vendor."""

from __future__ import annotations

import asyncio
import random
from collections.abc import AsyncIterator
from email.utils import formatdate

import pytest
from aiohttp import web

from exporter.backoff import next_delay
from exporter.classify import RETRY_AFTER_CEILING, Outcome, parse_retry_after
from exporter.clock import FakeClock
from exporter.collector import render_target
from exporter.config import Config, ConfigError
from exporter.engine import Session as Client
from exporter.engine import new_session
from exporter.probe import Prober
from exporter.scheduler import Scheduler
from exporter.state import State
from tests.conftest import config_from, serve

NOW = 1_800_000_000.0  # 2027-01-15


@pytest.mark.parametrize(("header", "expected"), [
    ("120", 120.0),
    ("0000000000120", 120.0),  # leading zeros are digits like any other
    ("0", 0.0),
    (" 30\t", 30.0),  # optional whitespace around a field value
    ("1000000000000", RETRY_AFTER_CEILING),  # huge: capped, not an error
    ("9" * 5000, RETRY_AFTER_CEILING),  # more digits than int() accepts by default
    ("²", None),  # str.isdigit() says yes; RFC 9110 says only ASCII digits
    ("١٢٠", None),  # Arabic-Indic digits
    ("\uff11\uff12\uff10", None),  # full-width digits
    ("12 0", None),
    ("-5", None),
    ("1.5", None),
    ("+120", None),
    (formatdate(NOW + 90, usegmt=True), 90.0),  # IMF-fixdate
    ("Friday, 15-Jan-27 08:01:30 GMT", 90.0),  # obsolete RFC 850 form
    ("Fri Jan 15 08:01:30 2027", 90.0),  # obsolete asctime form
    ("Fri, 31 Dec 9999 23:59:59 GMT", RETRY_AFTER_CEILING),  # year 9999: capped
    (formatdate(NOW - 90, usegmt=True), 0.0),
    ("Fri, 15 Jan 2027 08:01:30 +0000", None),  # not an HTTP-date (numeric zone)
    ("Fri, ³5 Jan 2027 08:01:30 GMT", None),
    ("Fri, 31 Feb 2027 08:01:30 GMT", None),
    ("soon", None),
    ("", None),
])
def test_retry_after_is_parsed_as_rfc_9110_says(header: str, expected: float | None) -> None:
    assert NOW + 90 == 1_800_000_090.0 and formatdate(NOW + 90, usegmt=True) == "Fri, 15 Jan 2027 08:01:30 GMT"
    assert parse_retry_after(header, NOW) == expected


def test_every_wait_is_capped_at_max_backoff() -> None:
    rng = random.Random(3)
    huge = Outcome("rate_limited", "31", "x", 429, retry_after=RETRY_AFTER_CEILING)
    assert next_delay(30, huge, 1, rng) == (3600, 3570)  # the default cap: 1 h
    assert next_delay(30, huge, 1, rng, max_backoff=120) == (120, 90)
    # a cap below the interval never shortens the interval itself
    assert next_delay(600, huge, 1, rng, max_backoff=60) == (600, 0)
    err = Outcome("server_error", "50", "x", 500)
    assert next_delay(30, err, 20, rng, max_backoff=100)[0] == 100


def _cfg(global_: dict[str, object] | None = None, **target: object) -> Config:
    return config_from({"global": global_ or {}, "targets": [
        {"name": "a", "vendor": "flipsnack", "base_url": "https://x.example",
         "credentials": {"api_key": "k", "secret": "s"}, **target}]})


def test_max_backoff_is_validated_global_and_per_target() -> None:
    assert _cfg().targets[0].max_backoff == 3600
    assert _cfg({"max_backoff": "10m"}).targets[0].max_backoff == 600
    assert _cfg({"max_backoff": "10m"}, max_backoff="2m").targets[0].max_backoff == 120
    cases = [
        ({"max_backoff": "soon"}, {}, "test-config.yml: global.max_backoff: must be a duration like 30s, 5m or "
                                      "1h30m (got 'soon')"),
        ({"max_backoff": 3600}, {}, "test-config.yml: global.max_backoff: must be a duration like 30s, 5m or "
                                    "1h30m (got 3600)"),
        ({"max_backoff": "0s"}, {}, "test-config.yml: global.max_backoff: must be at least 1s (got '0s')"),
        ({"max_backoff": "2w"}, {}, "test-config.yml: global.max_backoff: must be at most 1w (got '2w')"),
        ({}, {"max_backoff": "-1s"}, "test-config.yml: targets[0].max_backoff: must be a duration like 30s, 5m "
                                     "or 1h30m (got '-1s')"),
    ]
    for glob, target, message in cases:
        with pytest.raises(ConfigError) as err:
            _cfg(glob, **target)
        assert str(err.value) == message


class _Vendor:
    def __init__(self, clock: FakeClock) -> None:
        self.clock = clock
        self.calls: list[tuple[float, str]] = []
        self.retry_after = "1000000000000"

    async def handle(self, request: web.Request) -> web.Response:
        self.calls.append((self.clock.monotonic(), request.query.get("apiKey", "")))
        if self.retry_after:
            return web.json_response({"code": 22}, headers={"Retry-After": self.retry_after})  # maintenance
        return web.json_response({"code": 20})


@pytest.fixture
async def vendor() -> AsyncIterator[tuple[_Vendor, str, Client]]:
    v = _Vendor(FakeClock(NOW))
    async with serve(v.handle) as url, new_session() as session:
        yield v, url, session


async def _step(clock: FakeClock, sched: Scheduler, seconds: float) -> None:
    for _ in range(int(seconds)):
        await clock.advance(1)
        for _ in range(1000):
            if not sched.in_flight():
                break
            await asyncio.sleep(0.002)


def _flip(url: str, key: str, **glob: object) -> Config:
    return config_from({"global": {"interval": "10s", "timeout": "2s", "probe_share": 1, **glob}, "targets": [
        {"name": "t", "vendor": "flipsnack", "base_url": url, "credentials": {"api_key": key, "secret": "s"}},
        {"name": "u", "vendor": "flipsnack", "base_url": url, "credentials": {"api_key": "other", "secret": "s"}},
    ]})


async def test_a_huge_retry_after_waits_max_backoff_and_a_changed_config_clears_it(
        vendor: tuple[_Vendor, str, Client]) -> None:
    v, url, session = vendor
    clock = v.clock
    cfg = _flip(url, "old", max_backoff="5m")
    state = State(render_target)
    state.sync(cfg.targets)
    sched = Scheduler(Prober(session, clock), state, clock, rng=random.Random(1))
    sched.apply(cfg.targets)
    task = asyncio.create_task(sched.run())
    try:
        await _step(clock, sched, 6)
        assert sorted(k for _, k in v.calls) == ["old", "other"]
        ts = state.get("t")
        assert ts is not None and ts.backoff == pytest.approx(290)  # 5 min, not 7 days or 31,000 years
        await _step(clock, sched, 280)
        assert len(v.calls) == 2  # still backing off
        await _step(clock, sched, 20)
        assert len(v.calls) == 4  # both probed again once the 5 min cap has passed
        # a reload with new credentials for t: its backoff is gone and it is probed within seconds;
        # u, unchanged, keeps waiting out its own backoff
        v.retry_after = ""
        new = _flip(url, "new", max_backoff="5m")
        state.sync(new.targets)
        sched.apply(new.targets)
        assert ts.backoff == 0
        await _step(clock, sched, 12)
        assert v.calls[4:] and {k for _, k in v.calls[4:]} == {"new"}
        assert ts.last is not None and ts.last.outcome.cls == "ok"
        assert state.get("u") is not None and state.get("u").backoff > 0  # type: ignore[union-attr]
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
        await sched.stop()
