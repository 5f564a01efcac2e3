"""The seven vendors of issue 28 end to end: each simulator switched into each condition it documents,
probed by the real prober with the shipped catalog, gets the class and code on call should see. The
clock is a FakeClock shared by the simulators and the prober (SigV4 dates, token lifetimes, windows)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from exporter._yamlnode import Node
from exporter.clock import FakeClock
from exporter.config import Config, parse_config
from exporter.engine import new_session
from exporter.probe import Prober
from exporter.simulators import SimulatorSet, start_simulators

from ..conftest import run_cli_here

NEW = ("aws-sts", "msgraph", "cloudflare", "datadog", "sendgrid", "pagerduty", "anthropic")

#: vendor -> (control settings, class, code) after a healthy first probe
TABLE: list[tuple[str, dict[str, Any], str, str]] = [
    ("aws-sts", {}, "ok", "200"),
    ("aws-sts", {"rotated": True}, "auth", "SignatureDoesNotMatch"),
    ("aws-sts", {"clock_offset": 900.0}, "clock_skew", "SignatureDoesNotMatch"),
    ("aws-sts", {"clock_offset": -900.0}, "clock_skew", "SignatureDoesNotMatch"),
    ("aws-sts", {"clock_offset": 120.0}, "ok", "200"),  # within AWS's five minutes
    ("aws-sts", {"disabled": True}, "auth", "InvalidClientTokenId"),
    ("aws-sts", {"token_expired": True}, "auth", "ExpiredToken"),
    ("aws-sts", {"rate_limited": True}, "rate_limited", "Throttling"),
    ("aws-sts", {"server_error": True}, "server_error", "ServiceUnavailable"),
    ("aws-sts", {"region_disabled": True}, "auth", "RegionDisabledException"),
    ("msgraph", {}, "ok", "200"),
    ("msgraph", {"secret_expired": True}, "auth", "7000222"),
    ("msgraph", {"rotated": True}, "auth", "7000215"),
    ("msgraph", {"disabled": True}, "auth", "7000112"),
    # no token since the refusal above, and the token endpoint down: Graph is not called at all
    ("msgraph", {"token_down": True}, "server_error", "temporarily_unavailable"),
    ("msgraph", {"rate_limited": True}, "rate_limited", "activityLimitReached"),
    ("msgraph", {"no_permission": True}, "auth", "Authorization_RequestDenied"),
    ("msgraph", {"server_error": True}, "server_error", "serviceNotAvailable"),
    ("cloudflare", {}, "ok", "active"),
    ("cloudflare", {"rotated": True}, "auth", "1000"),
    ("cloudflare", {"disabled": True}, "auth", "disabled"),
    ("cloudflare", {"quota_exceeded": True}, "auth", "expired"),
    ("cloudflare", {"rate_limited": True}, "rate_limited", "971"),
    ("cloudflare", {"server_error": True}, "server_error", "500"),
    ("datadog", {}, "ok", "valid"),
    ("datadog", {"rotated": True}, "auth", "403"),
    ("datadog", {"rate_limited": True}, "rate_limited", "429"),
    ("datadog", {"server_error": True}, "server_error", "500"),
    ("sendgrid", {}, "ok", "200"),
    ("sendgrid", {"rotated": True}, "auth", "401"),
    ("sendgrid", {"disabled": True}, "auth", "403"),
    ("sendgrid", {"rate_limited": True}, "rate_limited", "429"),
    ("sendgrid", {"server_error": True}, "server_error", "503"),
    ("pagerduty", {}, "ok", "200"),
    ("pagerduty", {"rotated": True}, "auth", "2006"),
    ("pagerduty", {"disabled": True}, "auth", "2008"),
    ("pagerduty", {"quota_exceeded": True}, "auth", "2012"),
    ("pagerduty", {"rate_limited": True}, "rate_limited", "429"),
    ("pagerduty", {"server_error": True}, "server_error", "2000"),
    ("anthropic", {}, "ok", "200"),
    ("anthropic", {"rotated": True}, "auth", "authentication_error"),
    ("anthropic", {"disabled": True}, "auth", "permission_error"),
    ("anthropic", {"quota_exceeded": True}, "quota_exceeded", "billing_error"),
    ("anthropic", {"rate_limited": True}, "rate_limited", "rate_limit_error"),
    ("anthropic", {"overloaded": True}, "server_error", "overloaded_error"),
    ("anthropic", {"server_error": True}, "server_error", "api_error"),
]


@pytest.fixture
async def sims() -> AsyncIterator[tuple[SimulatorSet, Config, FakeClock]]:
    clock = FakeClock()
    started = await start_simulators(clock=clock)
    try:
        raw = started.targets_config("60s")
        raw["targets"] = [t for t in raw["targets"] if t["vendor"] in NEW]
        yield started, parse_config(Node(raw, "<test>", ""), Path("."), env={}), clock
    finally:
        await started.close()


async def test_every_documented_condition_of_the_new_vendors(sims: tuple[SimulatorSet, Config, FakeClock]) -> None:
    started, config, clock = sims
    assert sorted(t.vendor for t in config.targets) == sorted(NEW)
    got, wanted = [], []
    async with new_session() as session:
        prober = Prober(session, clock)
        for target in config.targets:
            assert (await prober.probe(target)).outcome.cls == "ok", target.vendor
        for vendor, settings, cls, code in TABLE:
            await started.control(vendor, reset=True, **settings)
            result = await prober.probe(config.target(vendor))  # type: ignore[arg-type]
            got.append((vendor, settings, result.outcome.cls, result.outcome.code))
            wanted.append((vendor, settings, cls, code))
            secrets = [v for v in config.target(vendor).credentials.values()]  # type: ignore[union-attr]
            assert not any(s in result.excerpt + result.request_line + result.outcome.message for s in secrets)
            await clock.advance(61)
    assert got == wanted


async def test_anthropic_529_carries_no_retry_after_but_a_429_does(
        sims: tuple[SimulatorSet, Config, FakeClock]) -> None:
    started, config, clock = sims
    target = config.target("anthropic")
    assert target is not None
    async with new_session() as session:
        prober = Prober(session, clock)
        await started.control("anthropic", rate_limited=True, retry_after=17)
        limited = await prober.probe(target)
        await started.control("anthropic", reset=True, overloaded=True)
        overloaded = await prober.probe(target)
    assert (limited.outcome.retry_after, limited.outcome.http_status) == (17.0, 429)
    assert (overloaded.outcome.retry_after, overloaded.outcome.http_status) == (None, 529)


async def test_sigv4_with_a_session_token(sims: tuple[SimulatorSet, Config, FakeClock]) -> None:
    started, _, clock = sims
    sim = started.sims["aws-sts"]
    sim.creds["session_token"] = "FwoGZXIvYXdzEBYaDHRlbXBvcmFyeS10b2tlbg=="
    config = parse_config(Node({"targets": [
        {"name": "with", "vendor": "aws-sts", "base_url": sim.base_url, "credentials": sim.credentials()},
        {"name": "without", "vendor": "aws-sts", "base_url": sim.base_url,
         "credentials": {k: v for k, v in sim.credentials().items() if k != "session_token"}}]}, "<t>", ""),
        Path("."), env={})
    async with new_session() as session:
        prober = Prober(session, clock)
        with_token, without = [await prober.probe(t) for t in config.targets]
    assert (with_token.outcome.cls, without.outcome.cls, without.outcome.code) == ("ok", "auth", "InvalidClientTokenId")


def test_the_config_example_of_the_seven_passes_the_check(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Issue 28's "done when": ``config example`` of the seven prints a config that ``--config.check``
    accepts once its variables are set (through the command line's entry point, in this process; each
    vendor's example as a program's run: tests/system/test_cli.py)."""
    import re

    out = run_cli_here("config", "example", *NEW)
    assert out.returncode == 0, out.stderr
    assert all(f"vendor: {vendor}\n" in out.stdout for vendor in NEW)
    path = tmp_path / "config.yml"
    path.write_text(out.stdout)
    assert run_cli_here("--config.file", str(path), "--config.check").returncode == 1  # the variables are not set yet
    for name in set(re.findall(r"\$\{([A-Z0-9_]+)\}", out.stdout)):
        monkeypatch.setenv(name, "x1")
    checked = run_cli_here("--config.file", str(path), "--config.check")
    assert checked.returncode == 0, checked.stderr
    assert "OK, 7 targets" in checked.stdout
