"""/probe is never an amplifier: each failure seen in the field (issue 12), reproduced against the
vendor simulators, which count every request they get. The simulators and the exporter share one
FakeClock, so budgets, backoff and token lifetimes move only when a test moves it."""

from __future__ import annotations

import asyncio
import copy
from typing import Any

from exporter.clock import FakeClock
from exporter.simulators import SimulatorSet
from tests.conftest import Running, config_from, idle, running_exporter, sample

CACHED = "X-Apistatus-Cached"


def only(s: SimulatorSet, vendors: list[str], interval: str = "60s", **glob: Any) -> dict[str, Any]:
    raw = s.targets_config(interval, **glob)
    raw["targets"] = [t for t in raw["targets"] if t["vendor"] in vendors]
    return raw


async def probe(run: Running, name: str, method: str = "GET") -> tuple[str, str]:
    """(the X-Apistatus-Cached header, the body) of one /probe."""
    async with run.session.request(method, run.url + "/probe", params={"target": name}) as r:
        assert r.status == 200
        return r.headers[CACHED], await r.text()


def total(text: str, name: str) -> float:
    """The sum of the target's responses_total samples: must never go down from one answer to the next."""
    from prometheus_client.parser import text_string_to_metric_families

    return sum(s.value for f in text_string_to_metric_families(text) for s in f.samples
               if s.name == "apistatus_responses_total" and s.labels.get("target") == name)


async def test_80_calls_in_14_seconds_stay_within_a_budget_of_3_a_minute(sims: tuple[SimulatorSet, FakeClock]) -> None:
    s, clock = sims
    raw = only(s, ["flipsnack"], interval="1s")  # the schedule alone would want 60 a minute
    raw["targets"][0]["probe_share"] = 0.05  # of 60 a minute and 5 a second: 3 a minute, 1 per 4 s
    async with running_exporter(config_from(raw), clock=clock) as run:
        answers = []
        for _ in range(80):
            answers.append(await probe(run, "flipsnack"))
            await clock.advance(14 / 80)
        await idle(run)
        sent = s.counts("flipsnack")["requests"]
        assert 1 <= sent <= 3, sent  # the scheduler's probes and the /probe calls together
        assert sum(cached == "0" for cached, _ in answers) <= sent
        assert sum(cached == "1" for cached, _ in answers) >= 77
        # every answer is the target's own state: counters never restart, so increase() works
        totals = [total(text, "flipsnack") for _, text in answers]
        assert totals == sorted(totals) and totals[-1] >= 1
        for cached, text in answers:
            assert sample(text, "apistatus_probe_cached") == float(cached)
            assert sample(text, "apistatus_up", target="flipsnack") == 1
        # a probe sets the next one at least ~0.95 s ahead (7 calls at most); every other cached
        # answer was the budget's doing, and is counted on /metrics
        delays = sample(await run.metrics(), "apistatus_budget_delays_total", vendor="flipsnack")
        assert delays is not None and delays >= 80 - sent * 8


async def test_5_calls_during_a_retry_after_of_3600_send_nothing(sims: tuple[SimulatorSet, FakeClock]) -> None:
    s, clock = sims
    await s.control("bizwebs", rate_limited=True, retry_after=3600)
    async with running_exporter(config_from(only(s, ["bizwebs"])), clock=clock) as run:
        cached, text = await probe(run, "bizwebs")  # the first answer asks us to wait an hour
        assert cached == "0" and sample(text, "apistatus_retry_after_seconds", target="bizwebs") == 3600
        before = s.counts("bizwebs")["requests"]
        for _ in range(5):
            await clock.advance(300)
            cached, text = await probe(run, "bizwebs")
            assert cached == "1"
            assert sample(text, "apistatus_outcome", target="bizwebs", **{"class": "rate_limited"}) == 1
            assert (sample(text, "apistatus_backoff_seconds", target="bizwebs") or 0) > 0
        await idle(run)
        # ... and the Retry-After a /probe met holds for the schedule too
        assert s.counts("bizwebs")["requests"] == before
        await clock.advance(3600 - 1500 + 5)
        await idle(run)
        assert s.counts("bizwebs")["requests"] == before + 1


async def test_head_sends_nothing_upstream(sims: tuple[SimulatorSet, FakeClock]) -> None:
    s, clock = sims
    async with running_exporter(config_from(only(s, ["bannersnack"])), clock=clock) as run:
        cached, body = await probe(run, "bannersnack", "HEAD")
        assert (cached, body) == ("1", "")
        await idle(run)
        assert s.counts("bannersnack")["requests"] == 0  # a GET now would probe: a HEAD does not
        cached, _ = await probe(run, "bannersnack")
        assert cached == "0" and s.counts("bannersnack")["requests"] == 1


async def test_10_concurrent_probes_with_an_expired_token_make_one_refresh(
        sims: tuple[SimulatorSet, FakeClock]) -> None:
    s, clock = sims
    raw = only(s, ["movingimage"], interval="400s")  # longer than the 5 minute access token
    # a second target with the same login: one credential, one token, one renewal at a time
    twin = copy.deepcopy(raw["targets"][0])
    twin["name"] = "movingimage-twin"
    raw["targets"].append(twin)
    async with running_exporter(config_from(raw), clock=clock) as run:
        await asyncio.gather(probe(run, "movingimage"), probe(run, "movingimage-twin"))
        await idle(run)
        counts = s.counts("movingimage")
        assert counts["login"] == 1  # the twin used the token its credential already had
        before = copy.copy(counts)
        ts = run.exporter.state.get("movingimage")
        assert ts is not None
        # to when the next probes may run: past the access token's lifetime, so each needs a renewal
        assert ts.next_probe_at - clock.time() > 300
        due = max(t.next_probe_at for t in run.exporter.state) - clock.time()
        await s.control("movingimage", delay=0.3)  # each call takes a while: the callers overlap for sure
        await clock.advance(due + 0.01)
        answers = await asyncio.gather(*(probe(run, name) for name in ["movingimage", "movingimage-twin"] * 5))
        await idle(run)
        assert [cached for cached, _ in answers] == ["0"] * 10  # each joined a probe in flight
        after = s.counts("movingimage")
        assert after["refresh"] - before["refresh"] == 1, (before, after)
        assert after["login"] == before["login"]
        assert after["health"] - before["health"] == 2  # one probe per target, whoever asked
        for _, text in answers:
            assert sample(text, "apistatus_up", target="movingimage") in (1, None)
            assert "apistatus_auth_failures_total{" not in text


async def test_a_probe_flood_does_not_turn_another_targets_scheduled_probes_into_timeouts(
        sims: tuple[SimulatorSet, FakeClock]) -> None:
    s, clock = sims
    raw = only(s, ["bizwebs", "bannersnack"], timeout="2s", max_concurrency=2)
    next(t for t in raw["targets"] if t["vendor"] == "bannersnack")["timeout"] = "300ms"
    await s.control("bizwebs", delay=1.5)  # the flooded vendor is slow: each call holds its place long
    async with running_exporter(config_from(raw), clock=clock) as run:
        stop = asyncio.Event()

        async def client() -> int:
            n = 0
            while not stop.is_set() and n < 200:  # bounded in count and, below, in time
                async with run.session.get(run.url + "/probe", params={"target": "bizwebs"}) as r:
                    assert r.status == 200
                    await r.read()
                n += 1
            return n

        clients = [asyncio.create_task(client()) for _ in range(30)]
        banner = run.exporter.state.get("bannersnack")
        assert banner is not None
        try:
            for _ in range(6):  # six intervals: bannersnack is probed on schedule each time
                done = banner.probes
                await clock.advance(61)
                for _ in range(50):  # its probe ends while the flood goes on; at most half a second
                    if banner.probes > done:
                        break
                    await asyncio.sleep(0.01)
        finally:
            stop.set()
            calls = sum(await asyncio.gather(*clients))
        await idle(run)
        text = await run.metrics()
        assert calls >= 30
        probes = sample(text, "apistatus_request_duration_seconds_count", target="bannersnack")
        assert probes is not None and probes >= 5
        assert sample(text, "apistatus_responses_total", target="bannersnack", code="200", **{"class": "ok"}) == probes
        assert "timeout" not in "".join(line for line in text.splitlines() if 'target="bannersnack"' in line
                                        and "responses_total" in line)
        # and the flooded vendor saw no more than its schedule: about one probe per interval
        assert s.counts("bizwebs")["requests"] <= 8


async def test_a_target_without_a_budget_is_probed_no_more_often_than_its_schedule(
        sims: tuple[SimulatorSet, FakeClock]) -> None:
    """Bannersnack publishes no limit: the interval is then the only bound, whoever calls /probe."""
    s, clock = sims
    async with running_exporter(config_from(only(s, ["bannersnack"])), clock=clock) as run:
        fresh = 0
        for _ in range(100):  # 100 calls over 5 minutes, 20 an interval
            cached, _ = await probe(run, "bannersnack")
            fresh += cached == "0"
            await clock.advance(3)
        await idle(run)
        sent = s.counts("bannersnack")["requests"]
        assert 5 <= sent <= 6, sent  # one a minute (jitter: the sixth may just fit), as with no caller
        assert fresh <= sent
