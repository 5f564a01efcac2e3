"""Slack, GitHub, Stripe, OpenAI and Twilio end to end: the real exporter (prober, signers, classifier,
state, collector, HTTP endpoints) against their loopback simulators, read back from /probe.

One FakeClock is shared by the exporter and the simulators: rate windows count on it, and the
scheduler only probes when a test moves it.
"""

from __future__ import annotations

import copy
import re
from typing import Any

import pytest

from exporter.clock import FakeClock
from exporter.model import UP as UP_CLASSES
from exporter.simulators import ControlError, SimulatorSet

from ..conftest import config_from, next_probe_text, probe_text, running_exporter, sample

SAAS = ("slack", "github", "stripe", "openai", "twilio")


def one_target(s: SimulatorSet, vendor: str, bad: str | None = None, **glob: Any) -> dict[str, Any]:
    raw = s.targets_config("60s", **glob)
    target = next(t for t in raw["targets"] if t["vendor"] == vendor)
    if bad:
        target["credentials"] = {**target["credentials"], bad: target["credentials"][bad] + "-wrong"}
    raw["targets"] = [target]
    return raw


def assert_class(text: str, vendor: str, cls: str, code: str, count: int = 1) -> None:
    got = re.findall(r'apistatus_responses_total\{[^}]*\} 1', text)
    assert sample(text, "apistatus_outcome", target=vendor, **{"class": cls}) == 1, f"{vendor}: not {cls}: {got}"
    assert sample(text, "apistatus_responses_total", target=vendor, code=code, **{"class": cls}) == count, got
    assert sample(text, "apistatus_up", target=vendor) == (1 if cls in UP_CLASSES else 0)
    if cls == "auth":
        assert sample(text, "apistatus_auth_failures_total", target=vendor, code=code) == 1


# (vendor, control settings, credential made wrong, expected class, expected code, Retry-After)
CASES: list[tuple[str, dict[str, Any], str | None, str, str, float]] = [
    ("slack", {}, None, "ok", "ok", 0),
    ("slack", {}, "token", "auth", "invalid_auth", 0),
    ("slack", {"rotated": True}, None, "auth", "invalid_auth", 0),
    ("slack", {"disabled": True}, None, "auth", "account_inactive", 0),
    ("slack", {"revoked": True}, None, "auth", "token_revoked", 0),
    ("slack", {"expired": True}, None, "auth", "token_expired", 0),
    ("slack", {"maintenance": True}, None, "maintenance", "org_login_required", 0),
    ("slack", {"rate_limited": True, "retry_after": 42}, None, "rate_limited", "ratelimited", 42),
    ("slack", {"burst": 50}, None, "rate_limited", "ratelimited", 30),
    ("slack", {"server_error": True}, None, "server_error", "fatal_error", 0),
    ("slack", {"code": "team_added_to_org"}, None, "maintenance", "team_added_to_org", 0),
    ("github", {}, None, "ok", "200", 0),
    ("github", {}, "token", "auth", "401", 0),
    ("github", {"rotated": True}, None, "auth", "401", 0),
    ("github", {"disabled": True}, None, "auth", "403", 0),
    ("github", {"secondary": True, "retry_after": 60}, None, "rate_limited", "secondary_rate_limit", 60),
    ("github", {"burst": 900}, None, "rate_limited", "secondary_rate_limit", 30),
    # /rate_limit spends no primary quota: spent, it still answers (the gauge says 0, see below)
    ("github", {"rate_limited": True}, None, "ok", "200", 0),
    ("github", {"server_error": True}, None, "server_error", "500", 0),
    ("github", {"code": "503"}, None, "server_error", "503", 0),
    ("stripe", {}, None, "ok", "200", 0),
    ("stripe", {}, "secret_key", "auth", "401", 0),
    ("stripe", {"rotated": True}, None, "auth", "401", 0),
    ("stripe", {"disabled": True}, None, "auth", "api_key_expired", 0),
    ("stripe", {"restricted": True}, None, "auth", "403", 0),
    ("stripe", {"rate_limited": True}, None, "rate_limited", "rate_limit", 0),
    ("stripe", {"burst": 25}, None, "rate_limited", "rate_limit", 0),
    ("stripe", {"locked": True}, None, "rate_limited", "lock_timeout", 0),
    ("stripe", {"server_error": True}, None, "server_error", "500", 0),
    ("stripe", {"code": "resource_missing"}, None, "client_error", "resource_missing", 0),
    # a code the catalog does not list falls through to the HTTP status
    ("stripe", {"code": "brand_new_code"}, None, "client_error", "400", 0),
    ("openai", {}, None, "ok", "200", 0),
    ("openai", {}, "api_key", "auth", "invalid_api_key", 0),
    ("openai", {"rotated": True}, None, "auth", "invalid_api_key", 0),
    ("openai", {"region_blocked": True}, None, "auth", "403", 0),
    # one HTTP status, two classes: the error body decides
    ("openai", {"rate_limited": True}, None, "rate_limited", "rate_limit_exceeded", 1),
    ("openai", {"quota_exceeded": True}, None, "quota_exceeded", "insufficient_quota", 0),
    ("openai", {"burst": 500}, None, "rate_limited", "rate_limit_exceeded", 1),
    ("openai", {"server_error": True}, None, "server_error", "500", 0),
    ("openai", {"overloaded": True}, None, "server_error", "503", 0),
    ("twilio", {}, None, "ok", "active", 0),
    ("twilio", {}, "auth_token", "auth", "20003", 0),
    ("twilio", {"rotated": True}, None, "auth", "20003", 0),
    ("twilio", {"disabled": True}, None, "auth", "20403", 0),
    ("twilio", {"account_status": "suspended"}, None, "auth", "suspended", 0),
    ("twilio", {"account_status": "closed"}, None, "auth", "closed", 0),
    ("twilio", {"rate_limited": True}, None, "rate_limited", "20429", 0),
    ("twilio", {"in_flight": 100}, None, "rate_limited", "20429", 0),
    ("twilio", {"server_error": True}, None, "server_error", "20500", 0),
    ("twilio", {"code": "20005"}, None, "auth", "20005", 0),
]


@pytest.mark.parametrize(("vendor", "settings", "bad", "cls", "code", "retry"), CASES,
                         ids=[f"{c[0]}-{c[3]}-{c[4]}" + ("-" + "-".join(c[1]) if c[1] else "") for c in CASES])
async def test_each_condition_gets_its_class_and_code(sims: tuple[SimulatorSet, FakeClock], vendor: str,
                                                      settings: dict[str, Any], bad: str | None, cls: str,
                                                      code: str, retry: float) -> None:
    s, clock = sims
    await s.control(vendor, **settings)
    before = copy.copy(s.counts(vendor))
    async with running_exporter(config_from(one_target(s, vendor, bad)), clock=clock) as run:
        text = await probe_text(run, vendor)
    assert_class(text, vendor, cls, code)
    assert sample(text, "apistatus_retry_after_seconds", target=vendor) == retry
    # the simulator really was asked: the class comes from its answer
    assert s.counts(vendor)["health"] > before["health"]


async def test_slack_counts_calls_per_minute_on_its_clock(sims: tuple[SimulatorSet, FakeClock]) -> None:
    """The simulator's window is real: 49 calls by others leave exactly one for the probe; a minute later
    the window has emptied."""
    s, clock = sims
    await s.control("slack", burst=49)
    raw = one_target(s, "slack")
    raw["targets"][0]["interval"] = "20s"  # the next probe falls in the same minute
    async with running_exporter(config_from(raw), clock=clock) as run:
        assert_class(await probe_text(run, "slack"), "slack", "ok", "ok")
        assert_class(await next_probe_text(run, clock, "slack"), "slack", "rate_limited", "ratelimited")
        await clock.advance(61)
        text = await next_probe_text(run, clock, "slack")
        assert sample(text, "apistatus_outcome", target="slack", **{"class": "ok"}) == 1


@pytest.mark.parametrize("vendor", SAAS)
async def test_conditions_without_a_documented_signal_are_refused(sims: tuple[SimulatorSet, FakeClock],
                                                                  vendor: str) -> None:
    s, _ = sims
    missing = [c for c in ("maintenance", "server_error", "disabled", "quota_exceeded", "rate_limited")
               if c not in s.sims[vendor].condition_codes]
    for cond in missing:
        with pytest.raises(ControlError, match="documents no signal"):
            await s.control(vendor, **{cond: True})


async def test_github_quotas_and_a_spent_primary_limit(sims: tuple[SimulatorSet, FakeClock]) -> None:
    s, clock = sims
    await s.control("github", core_used=4000)
    raw = one_target(s, "github")
    async with running_exporter(config_from(raw), clock=clock) as run:
        text = await probe_text(run, "github")
        assert_class(text, "github", "ok", "200")
        assert sample(text, "apistatus_quota_remaining", target="github", quota="core") == 1000
        assert sample(text, "apistatus_quota_limit", target="github", quota="core") == 5000
        assert sample(text, "apistatus_quota_limit", target="github", quota="search") == 30
        await s.control("github", rate_limited=True)
        text = await next_probe_text(run, clock, "github")
        assert_class(text, "github", "ok", "200", count=2)  # cumulative: the first probe's answer counted too
        assert sample(text, "apistatus_quota_remaining", target="github", quota="core") == 0
    # a check that spends primary quota (GET /user) is refused with 403 and x-ratelimit-remaining: 0
    raw["targets"][0]["check"] = {"path": "/user"}
    async with running_exporter(config_from(raw), clock=clock) as run:
        assert_class(await probe_text(run, "github"), "github", "rate_limited", "primary_rate_limit")
        await s.control("github", reset=True)
        assert_class(await next_probe_text(run, clock, "github"), "github", "ok", "200")
        assert s.sims["github"].settings["core_used"] == 1  # the call spent one


async def test_stripe_publishable_key_is_refused_as_auth(sims: tuple[SimulatorSet, FakeClock]) -> None:
    s, clock = sims
    raw = one_target(s, "stripe")
    raw["targets"][0]["credentials"] = {"secret_key": "pk_test_51DEMO000000000000000"}
    async with running_exporter(config_from(raw), clock=clock) as run:
        text = await probe_text(run, "stripe")
    assert_class(text, "stripe", "auth", "secret_key_required")
    assert "pk_test_51DEMO" not in text  # the key never shows, not even in the probe's debug output


async def test_openai_rate_limit_headers_become_quota_gauges(sims: tuple[SimulatorSet, FakeClock]) -> None:
    s, clock = sims
    await s.control("openai", burst=120)
    async with running_exporter(config_from(one_target(s, "openai")), clock=clock) as run:
        text = await probe_text(run, "openai")
        assert_class(text, "openai", "ok", "200")
        # what is left after this request: 500 - 120 by others - our probe
        assert sample(text, "apistatus_quota_remaining", target="openai", quota="requests") == 379
        assert sample(text, "apistatus_quota_limit", target="openai", quota="requests") == 500
        await clock.advance(61)  # the minute's window empties of the others' calls
        text = await next_probe_text(run, clock, "openai")
        in_window = s.sims["openai"].window()
        assert in_window <= 2
        assert sample(text, "apistatus_quota_remaining", target="openai", quota="requests") == 500 - in_window


async def test_twilio_basic_auth_never_shows_the_token_in_any_encoding(sims: tuple[SimulatorSet, FakeClock]) -> None:
    import base64

    s, clock = sims
    creds = s.sims["twilio"].credentials()
    pair = base64.b64encode(f"{creds['account_sid']}:{creds['auth_token']}".encode()).decode()
    async with running_exporter(config_from(one_target(s, "twilio")), clock=clock) as run:
        text = await probe_text(run, "twilio")
        assert_class(text, "twilio", "ok", "active")
        _, page = await run.get("/targets/twilio")
        metrics = await run.metrics()
    for shown in (text, page, metrics):
        assert creds["auth_token"] not in shown and pair not in shown
        assert creds["account_sid"] not in shown  # the SID is in the path: the request line redacts it


async def test_twilio_account_sid_of_another_account_is_not_found(sims: tuple[SimulatorSet, FakeClock]) -> None:
    s, clock = sims
    raw = one_target(s, "twilio")
    raw["targets"][0]["check"] = {"path": "/2010-04-01/Accounts/AC0000000000000000000000000000othr.json"}
    async with running_exporter(config_from(raw), clock=clock) as run:
        assert_class(await probe_text(run, "twilio"), "twilio", "client_error", "20404")


async def test_a_bad_control_setting_changes_nothing(sims: tuple[SimulatorSet, FakeClock]) -> None:
    s, _ = sims
    with pytest.raises(ControlError, match="account_status must be"):
        await s.control("twilio", rate_limited=True, account_status="frozen")
    assert s.sims["twilio"].settings["rate_limited"] is False
    assert s.sims["twilio"].settings["account_status"] == "active"


@pytest.mark.parametrize("vendor", ["slack", "github", "stripe", "openai"])
async def test_a_huge_burst_only_fills_the_window(sims: tuple[SimulatorSet, FakeClock], vendor: str) -> None:
    s, _ = sims
    await s.control(vendor, burst=10**12)  # over the control API a number is a number: bounded, not a crash
    sim: Any = s.sims[vendor]
    assert 0 < len(sim.calls) <= 900
