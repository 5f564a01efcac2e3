"""The first five built-in vendors end to end (the SaaS five: test_saas_vendors_e2e.py): the real
exporter (its prober, signers, classifier, state, collector and HTTP endpoints) against the vendor
simulators over loopback, read back from /probe and /metrics.

The exporter and the simulators share one FakeClock: signatures and timestamps are made and checked
on it, tokens expire on it, and the scheduler only probes when a test moves it.
"""

from __future__ import annotations

import asyncio
import copy
import re
import signal
import sys
from collections import Counter
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest
import yaml
from aiohttp import web
from yarl import URL

from exporter.catalog import builtin_catalogs
from exporter.clock import FakeClock
from exporter.model import UP as UP_CLASSES
from exporter.simulators import SimulatorSet, start_simulators

from ..conftest import (
    Running,
    config_from,
    free_port,
    next_probe_text,
    probe_text,
    running_exporter,
    sample,
    serve,
)
from ..relay import Relay

BUILT_IN = set(builtin_catalogs())

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(params=["direct", "tiny_segments"])
async def sims(request: pytest.FixtureRequest) -> AsyncIterator[tuple[SimulatorSet, FakeClock]]:
    """The simulators, reached directly and (the second run of every case) through a relay that
    hands every answer on in pieces of 1 to 7 bytes: probes, logins and refreshes all go through it."""
    clock = FakeClock()
    started = await start_simulators(clock=clock)
    relays: list[Relay] = []
    try:
        if request.param == "tiny_segments":
            for sim in started.sims.values():
                url = URL(sim.url)
                assert url.host is not None and url.port is not None
                relay = await Relay(url.host, url.port).start()
                relays.append(relay)
                sim.url = relay.url  # base_url, login and token URLs all follow
        yield started, clock
        if relays:  # the relay really was in the path, and cut what it passed on small
            assert sum(r.connections for r in relays) > 0
            assert max(r.largest for r in relays) <= 7
    finally:
        for relay in relays:
            await relay.close()
        await started.close()


def wrong(creds: dict[str, str], key: str) -> dict[str, str]:
    return {**creds, key: creds[key] + "-wrong"}


def assert_class(text: str, vendor: str, cls: str, code: str, count: int = 1) -> None:
    """The last answer's class and code; ``count`` answers of that class and code so far (/probe
    shows the target's own cumulative counters)."""
    got = re.findall(r'apistatus_outcome\{[^}]*class="(\w+)"\} 1', text)
    assert sample(text, "apistatus_outcome", target=vendor, **{"class": cls}) == 1, f"{vendor}: {cls} != {got}"
    assert sample(text, "apistatus_responses_total", target=vendor, code=code, **{"class": cls}) == count, text
    assert sample(text, "apistatus_up", target=vendor) == (1 if cls in UP_CLASSES else 0)
    assert sample(text, "apistatus_maintenance", target=vendor) == (1 if cls == "maintenance" else 0)
    if cls == "auth":
        assert sample(text, "apistatus_auth_failures_total", target=vendor, code=code) == 1


# (vendor, control settings, credential made wrong, expected class, expected code, Retry-After)
CASES: list[tuple[str, dict[str, Any], str | None, str, str, float]] = [
    ("bannersnack", {}, None, "ok", "200", 0),
    ("bannersnack", {}, "secret", "auth", "513", 0),
    ("bannersnack", {}, "client_id", "auth", "512", 0),
    ("bannersnack", {"clock_offset": 400}, None, "clock_skew", "510", 0),
    ("bannersnack", {"clock_offset": -400}, None, "clock_skew", "510", 0),
    ("bannersnack", {"maintenance": True}, None, "maintenance", "511", 0),
    ("bannersnack", {"disabled": True}, None, "auth", "516", 0),
    ("bannersnack", {"server_error": True}, None, "server_error", "521", 0),
    ("bannersnack", {"banner_pending": True}, None, "processing", "532", 0),
    ("bannersnack", {"banner_missing": True}, None, "client_error", "531", 0),
    ("bizwebs", {}, None, "ok", "200", 0),
    ("bizwebs", {}, "token", "auth", "401", 0),
    ("bizwebs", {"maintenance": True, "retry_after": 120}, None, "maintenance", "501", 120),
    ("bizwebs", {"rate_limited": True, "retry_after": 7}, None, "rate_limited", "429", 7),
    ("bizwebs", {"quota_exceeded": True, "retry_after": 3600}, None, "quota_exceeded", "509", 3600),
    ("bizwebs", {"partial": True}, None, "degraded", "206", 0),
    ("bizwebs", {"partner_required": True}, None, "auth", "412", 0),
    ("bizwebs", {"server_error": True}, None, "server_error", "500", 0),
    ("rubiq", {}, None, "ok", "200", 0),
    ("rubiq", {}, "app_secret", "auth", "401.9", 0),
    ("rubiq", {"clock_offset": 3700}, None, "clock_skew", "401.6", 0),
    ("rubiq", {"rate_limited": True}, None, "rate_limited", "403.30", 0),
    ("rubiq", {"busy": True}, None, "processing", "409.1", 0),
    ("rubiq", {"nonstandard": True}, "app_secret", "auth", "401.9", 0),
    ("rubiq", {"nonstandard": True, "busy": True}, None, "processing", "409.1", 0),
    ("rubiq", {"disabled": True}, None, "auth", "401.10", 0),
    ("flipsnack", {}, None, "ok", "20", 0),
    ("flipsnack", {}, "secret", "auth", "44", 0),
    ("flipsnack", {}, "api_key", "auth", "41", 0),
    ("flipsnack", {"maintenance": True}, None, "maintenance", "22", 0),
    ("flipsnack", {"rate_limited": True}, None, "rate_limited", "32", 0),
    ("flipsnack", {"burst": 5}, None, "rate_limited", "31", 0),
    ("flipsnack", {"server_error": True}, None, "server_error", "50", 0),
    ("movingimage", {}, None, "ok", "200", 0),
    ("movingimage", {}, "password", "auth", "login_401", 0),
    ("movingimage", {"disabled": True}, None, "auth", "login_403", 0),
    ("movingimage", {"quota_exceeded": True}, None, "quota_exceeded", "1101", 0),
    ("movingimage", {"server_error": True}, None, "server_error", "login_500", 0),
]


def ways(cases: list[tuple[str, dict[str, Any], str | None, str, str, float]]) -> list[tuple[str, ...]]:
    """How each case reaches its simulator: every case directly, and each vendor's first two (its
    healthy answer, whose login and signing flow the other cases share, and its first refusal) through
    the relay too; the rest would repeat those reads, the class being taken from the whole answer
    however it arrived."""
    seen: Counter[str] = Counter()
    out = []
    for vendor, *_ in cases:
        seen[vendor] += 1
        out.append(("direct", "tiny_segments") if seen[vendor] <= 2 else ("direct",))
    return out


CASE_RUNS = [(way, *case) for case, case_ways in zip(CASES, ways(CASES), strict=True) for way in case_ways]


@pytest.mark.parametrize(("sims", "vendor", "settings", "bad", "cls", "code", "retry"), CASE_RUNS, indirect=["sims"],
                         ids=[f"{c[0]}-{c[1]}-{c[4]}-{c[5]}" + ("-" + "-".join(c[2]) if c[2] else "")
                              for c in CASE_RUNS])
async def test_each_vendor_condition_gets_its_class(sims: tuple[SimulatorSet, FakeClock], vendor: str,
                                                    settings: dict[str, Any], bad: str | None, cls: str, code: str,
                                                    retry: float) -> None:
    s, clock = sims
    raw = s.targets_config("60s")
    target = next(t for t in raw["targets"] if t["vendor"] == vendor)
    if bad:
        target["credentials"] = wrong(target["credentials"], bad)
    raw["targets"] = [target]
    await s.control(vendor, **settings)
    before = copy.copy(s.counts(vendor))
    async with running_exporter(config_from(raw), clock=clock) as run:
        text = await probe_text(run, vendor)
    assert_class(text, vendor, cls, code)
    assert sample(text, "apistatus_retry_after_seconds", target=vendor) == retry
    # the simulator really was asked: the class comes from its answer, not from a shortcut
    assert s.counts(vendor)["requests"] > before["requests"]


async def test_quota_gauges_follow_the_vendors_figures(sims: tuple[SimulatorSet, FakeClock]) -> None:
    s, clock = sims
    gb = 1024**3
    await s.control("flipsnack", uploads_left=3)
    await s.control("movingimage", storage_used=990 * gb, storage_max=1000 * gb, traffic_used=10, traffic_max=50)
    async with running_exporter(config_from(s.targets_config("60s")), clock=clock) as run:
        flip = await probe_text(run, "flipsnack")
        assert sample(flip, "apistatus_quota_remaining", target="flipsnack", quota="uploads") == 3
        assert sample(flip, "apistatus_quota_limit", target="flipsnack", quota="uploads") == 1000
        mi = await probe_text(run, "movingimage")
        assert sample(mi, "apistatus_quota_remaining", target="movingimage", quota="video_storage") == 10 * gb
        assert sample(mi, "apistatus_quota_limit", target="movingimage", quota="video_storage") == 1000 * gb
        assert sample(mi, "apistatus_quota_remaining", target="movingimage", quota="traffic") == 40
        assert sample(mi, "apistatus_quota_limit", target="movingimage", quota="traffic") == 50
        assert s.counts("movingimage")["usage"] == 1  # one extra read-only call per probe

        # the monthly upload quota used up: the read-only health check still works, the gauge says 0
        await s.control("flipsnack", quota_exceeded=True)
        flip = await next_probe_text(run, clock, "flipsnack")
        assert_class(flip, "flipsnack", "ok", "20", count=2)
        assert sample(flip, "apistatus_quota_remaining", target="flipsnack", quota="uploads") == 0


# --- movingimage tokens through the running scheduler -----------------------------------------------

async def settle(run: Running, done: int) -> None:
    """Wait (bounded, on real time) until the scheduler has completed ``done`` probes in all."""
    sched = run.exporter.scheduler
    assert sched is not None
    for _ in range(1000):
        if sched.completed >= done and sched.in_flight() == 0:
            return
        await asyncio.sleep(0.01)
    raise AssertionError(f"only {sched.completed} of {done} probes completed")


async def advance_to_next_probe(run: Running, clock: FakeClock, done: int) -> None:
    ts = run.exporter.state.get("movingimage")
    assert ts is not None
    await clock.advance(max(0.0, ts.next_probe_at - clock.time()) + 0.01)
    await settle(run, done)


async def test_movingimage_token_expiring_between_probes_is_renewed_without_auth(
        sims: tuple[SimulatorSet, FakeClock]) -> None:
    s, clock = sims
    raw = s.targets_config("400s")
    raw["targets"] = [t for t in raw["targets"] if t["vendor"] == "movingimage"]
    async with running_exporter(config_from(raw), clock=clock) as run:
        await clock.advance(2)
        await settle(run, 1)
        assert dict(s.counts("movingimage")) == {"requests": 3, "login": 1, "health": 1, "usage": 1}
        # every ~400 s: the 300 s access token has expired in between and is refreshed first
        for n in range(2, 12):  # ten intervals: past the refresh token's hour
            await advance_to_next_probe(run, clock, n)
        counts = s.counts("movingimage")
        assert counts["login"] == 2  # the first probe, and once when the 1 h refresh token had run out
        assert counts["refresh"] == 9  # every other probe refreshed its expired access token first
        assert counts["health"] == 11  # one health call per probe: never a refused one retried
        text = await run.metrics()
        assert sample(text, "apistatus_responses_total", target="movingimage", code="200", **{"class": "ok"}) == 11
        assert "apistatus_auth_failures_total{" not in text
        assert not re.search(r'apistatus_responses_total\{[^}]*class="auth"', text)


async def test_movingimage_one_relogin_on_a_401_before_auth_counts(sims: tuple[SimulatorSet, FakeClock]) -> None:
    s, clock = sims
    # short enough that our cached token is still valid on our side; one probe per step (no confirming
    # probe after the auth failure: its logins would be counted with the probe's)
    raw = s.targets_config("100s", confirm_failures=False)
    raw["targets"] = [t for t in raw["targets"] if t["vendor"] == "movingimage"]
    async with running_exporter(config_from(raw), clock=clock) as run:
        await clock.advance(2)
        await settle(run, 1)
        # the vendor ends our session early (say a restart): one fresh login, and the answer is ok
        await s.control("movingimage", revoke_tokens=True)
        before = copy.copy(s.counts("movingimage"))
        await advance_to_next_probe(run, clock, 2)
        after = s.counts("movingimage")
        assert (after["health"] - before["health"], after["login"] - before["login"]) == (2, 1)
        text = await run.metrics()
        assert sample(text, "apistatus_up", target="movingimage") == 1
        assert "apistatus_auth_failures_total{" not in text

        # the password was changed: exactly one re-login is tried, then the answer counts as auth
        await s.control("movingimage", rotated=True)
        before = copy.copy(after)
        await advance_to_next_probe(run, clock, 3)
        after = s.counts("movingimage")
        assert (after["health"] - before["health"], after["login"] - before["login"]) == (1, 1)
        text = await run.metrics()
        assert sample(text, "apistatus_outcome", target="movingimage", **{"class": "auth"}) == 1
        assert sample(text, "apistatus_auth_failures_total", target="movingimage", code="login_401") == 1

        # while the credentials stay wrong, each probe costs one login attempt, not a loop of them
        before = copy.copy(after)
        await advance_to_next_probe(run, clock, 4)
        after = s.counts("movingimage")
        assert (after["health"] - before["health"], after["login"] - before["login"]) == (0, 1)


# --- a vendor of your own, in YAML only---------------------------------------------------------------

def docs_example() -> dict[str, Any]:
    """The worked example catalog of docs/vendors.md, so the docs and this test cannot drift apart."""
    text = (ROOT / "docs/vendors.md").read_text(encoding="utf-8")
    section = text.split("## Adding a vendor of your own in YAML", 1)[1]
    block = re.search(r"```yaml\n(.*?)```", section, re.S)
    assert block is not None, "docs/vendors.md lost its example catalog"
    doc = yaml.safe_load(block.group(1))
    assert isinstance(doc, dict)
    return dict(doc["vendors"]["acme"])


class Acme:
    """A small loopback vendor: Flipsnack's signing scheme with its own names, codes in the body."""

    def __init__(self) -> None:
        self.state = "ok"
        self.seen: list[dict[str, str]] = []

    async def handle(self, request: web.Request) -> web.Response:
        from exporter.signers import md5_signature

        q = dict(request.query)
        self.seen.append(q)
        if md5_signature("acme-secret", list(request.query.items()), ("sig",)) != q.get("sig") or not q.get("ts"):
            return web.json_response({"result": {"code": 2001, "text": "bad signature"}})
        if self.state == "maintenance":
            return web.json_response({"result": {"code": 4001}}, headers={"Retry-After": "90"})
        return web.json_response({"result": {"code": 1000}, "limits": {"calls_left": 4321}})


async def test_a_vendor_defined_only_in_yaml_works_end_to_end() -> None:
    catalog = docs_example()
    acme = Acme()
    async with serve(acme.handle) as url:
        raw = {"global": {"interval": "60s", "timeout": "5s"}, "vendors": {"acme": catalog},
               "targets": [{"name": "acme-prod", "vendor": "acme", "base_url": url + "/api",
                            "credentials": {"account": "acct-1", "secret": "acme-secret"}}]}
        clock = FakeClock()
        async with running_exporter(config_from(raw), clock=clock) as run:
            text = await probe_text(run, "acme-prod")
            assert_class(text, "acme-prod", "ok", "1000")
            assert sample(text, "apistatus_quota_remaining", target="acme-prod", quota="calls") == 4321
            assert acme.seen[-1]["account"] == "acct-1" and acme.seen[-1]["action"] == "ping"
            acme.state = "maintenance"
            text = await next_probe_text(run, clock, "acme-prod")
            assert_class(text, "acme-prod", "maintenance", "4001")
            assert sample(text, "apistatus_retry_after_seconds", target="acme-prod") == 90
        raw["targets"][0]["credentials"]["secret"] = "not-it"
        async with running_exporter(config_from(raw), clock=FakeClock()) as run:
            assert_class(await probe_text(run, "acme-prod"), "acme-prod", "auth", "2001")


# --- the embedded demo -------------------------------------------------------------------------------

@pytest.mark.parametrize("sims", ["direct"], indirect=True)  # what is signed is the request: the relay cuts answers
@pytest.mark.parametrize("value", ["a b", "a/b", "x?y=z&w", "ä+%"])
async def test_rubiq_signature_covers_the_url_exactly_as_sent(sims: tuple[SimulatorSet, FakeClock],
                                                              value: str) -> None:
    """The token signs the full URL: query characters that encoders treat differently ('/', '?')
    must be signed the way they travel, or Rubiq answers 401.9."""
    s, clock = sims
    raw = s.targets_config("60s")
    target = next(t for t in raw["targets"] if t["vendor"] == "rubiq")
    target["check"] = {**target["check"], "params": {"fields": value}}
    raw["targets"] = [target]
    async with running_exporter(config_from(raw), clock=clock) as run:
        assert_class(await probe_text(run, "rubiq"), "rubiq", "ok", "200")


async def test_the_first_command_serves_every_built_in_vendor() -> None:
    """``apistatus-exporter demo``, as the README's first command runs it."""
    port = free_port()
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "exporter", "demo", "--web.listen-address", f"127.0.0.1:{port}",
        stdout=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.PIPE, cwd=ROOT)
    try:
        vendors: set[str] = set()
        async with aiohttp.ClientSession() as session:
            for _ in range(600):  # bounded: start-up plus the first probe of each target
                await asyncio.sleep(0.05)
                try:
                    async with session.get(f"http://127.0.0.1:{port}/metrics") as r:
                        text = await r.text()
                except aiohttp.ClientConnectionError:
                    continue
                vendors = set(re.findall(r'apistatus_up\{target="[\w-]+",vendor="([\w-]+)"', text))
                if vendors >= BUILT_IN:
                    break
        assert vendors == BUILT_IN  # a vendor added without a demo target fails here
        proc.send_signal(signal.SIGTERM)
        assert await asyncio.wait_for(proc.wait(), 30) == 0
        assert proc.stderr is not None
        log = (await proc.stderr.read()).decode()
        assert f"metrics at http://127.0.0.1:{port}/metrics" in log and "Traceback" not in log
    finally:
        if proc.returncode is None:
            proc.kill()
            await proc.wait()


@pytest.mark.parametrize("vendor", ["bannersnack", "bizwebs", "rubiq", "flipsnack", "movingimage"])
async def test_slow_and_dropped_answers_are_timeout_and_network_error(sims: tuple[SimulatorSet, FakeClock],
                                                                      vendor: str) -> None:
    s, clock = sims
    # each answer its own probe (no confirming probe of a failure), counted once
    raw = s.targets_config("60s", timeout="200ms", confirm_failures=False)
    raw["targets"] = [t for t in raw["targets"] if t["vendor"] == vendor]
    async with running_exporter(config_from(raw), clock=clock) as run:
        await s.control(vendor, down=True)
        text = await probe_text(run, vendor)
        assert_class(text, vendor, "network_error", "reset")
        assert sample(text, "apistatus_http_status_code", target=vendor) == 0
        await s.control(vendor, down=False, delay=0.3)  # a slow spell, longer than the timeout
        assert_class(await next_probe_text(run, clock, vendor), vendor, "timeout", "timeout")
        await s.control(vendor, reset=True)
        assert_class(await next_probe_text(run, clock, vendor), vendor, "ok", "20" if vendor == "flipsnack" else "200")


async def test_movingimage_through_the_openid_connect_password_grant(sims: tuple[SimulatorSet, FakeClock]) -> None:
    """The newer login route, chosen in YAML alone: the same catalog with the ``oidc_password`` signer."""
    s, clock = sims
    sim = s.sims["movingimage"]
    raw = s.targets_config("400s", confirm_failures=False)  # each answer its own probe, counted once
    target = next(t for t in raw["targets"] if t["vendor"] == "movingimage")
    target["credentials"] = {**target["credentials"], "video_manager_id": "4711"}
    raw["targets"] = [target]
    raw["vendors"] = {"movingimage": {"signer": {"name": "oidc_password", "options": {
        "token_url": sim.url + "/oidc/token", "client_id": "apistatus-exporter"}}}}
    async with running_exporter(config_from(raw), clock=clock) as run:
        text = await probe_text(run, "movingimage")
        assert_class(text, "movingimage", "ok", "200")
        assert sample(text, "apistatus_quota_limit", target="movingimage", quota="video_storage") == 1000 * 1024**3
        assert (sim.counts["oidc_password"], sim.counts["login"]) == (1, 0)
        # the next probe comes after the access token expired: the refresh-token grant renews it
        assert_class(await next_probe_text(run, clock, "movingimage"), "movingimage", "ok", "200", count=2)
        assert sim.counts["oidc_refresh_token"] >= 1 and sim.counts["oidc_password"] == 1
        await s.control("movingimage", rotated=True)
        text = await next_probe_text(run, clock, "movingimage")
        assert_class(text, "movingimage", "auth", "login_401")
