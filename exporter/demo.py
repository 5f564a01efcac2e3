"""The embedded demo: the vendor simulators on loopback, a config probing them with their demo
credentials, and a scenario that walks them through realistic trouble, so that within about two
minutes every class, dashboard panel and alert has something to show.

The scenario is a timetable of control settings (the simulator conditions of docs/vendors.md), repeated for ever:
a maintenance window, a rate-limit burst, rotated credentials, a clock that drifts, quotas running
out, a slow spell, server errors, a dropped connection, an undocumented code, an expired client secret
and a token endpoint down, and recovery; every built-in vendor has its simulator in it.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ._yamlnode import Node
from .clock import Clock, SystemClock
from .config import Config, parse_config
from .simulators import SimulatorSet, start_simulators

__all__ = ["CYCLE", "SCENARIO", "Demo", "Step", "start_demo"]

log = logging.getLogger(__name__)
GB = 1024**3


@dataclass(frozen=True, slots=True)
class Step:
    at: float  # seconds into the cycle
    vendor: str
    settings: dict[str, Any]
    note: str = ""  # logged when the step starts something a person should notice


#: one cycle; the demo config probes every 5 s with a 3 s timeout, so each episode spans a few probes
SCENARIO: tuple[Step, ...] = (
    Step(5, "bannersnack", {"banner_pending": True}, "Bannersnack: the banner is still being generated"),
    Step(5, "rubiq", {"delay": 6.0}, "Rubiq: a slow spell, answers take 6 s"),
    Step(10, "bizwebs", {"maintenance": True, "retry_after": 10}, "Bizwebs: maintenance window"),
    Step(20, "flipsnack", {"rate_limited": True}, "Flipsnack: production traffic used up the minute's calls"),
    Step(25, "bannersnack", {"banner_pending": False}),
    Step(25, "rubiq", {"delay": 0.0}),
    Step(30, "bizwebs", {"maintenance": False}),
    Step(30, "rubiq", {"rotated": True}, "Rubiq: app secret rotated at the vendor, the exporter has the old one"),
    Step(30, "movingimage", {"server_error": True}, "movingimage: internal server errors"),
    Step(40, "flipsnack", {"rate_limited": False}),
    Step(45, "bizwebs", {"quota_exceeded": True, "retry_after": 10}, "Bizwebs: daily quota used up"),
    Step(45, "movingimage", {"server_error": False}),
    Step(50, "bannersnack", {"clock_offset": 400.0}, "Bannersnack: clocks 400 s apart"),
    Step(50, "rubiq", {"rotated": False}),
    Step(60, "flipsnack", {"maintenance": True}, "Flipsnack: maintenance mode"),
    Step(60, "rubiq", {"busy": True}, "Rubiq: an earlier request is still being processed"),
    Step(65, "bizwebs", {"quota_exceeded": False}),
    Step(70, "bannersnack", {"clock_offset": 0.0}),
    Step(70, "movingimage", {"quota_exceeded": True}, "movingimage: storage full"),
    Step(75, "bizwebs", {"partial": True}, "Bizwebs: the token may read only part of the data"),
    Step(75, "rubiq", {"busy": False}),
    Step(80, "flipsnack", {"maintenance": False}),
    Step(80, "bannersnack", {"banner_missing": True}, "Bannersnack: the monitored banner was deleted"),
    Step(85, "flipsnack", {"code": "99"}, "Flipsnack: answers with a code its documentation does not list"),
    Step(90, "rubiq", {"rate_limited": True}, "Rubiq: illegal-access prevention blocks the key"),
    Step(95, "bizwebs", {"partial": False}),
    Step(95, "movingimage", {"quota_exceeded": False, "storage_used": 600 * GB}),
    Step(95, "bannersnack", {"banner_missing": False}),
    Step(100, "flipsnack", {"code": None, "down": True}, "Flipsnack: connections dropped without an answer"),
    Step(100, "bannersnack", {"server_error": True}, "Bannersnack: internal server errors"),
    Step(100, "movingimage", {"rotated": True}, "movingimage: password changed, sessions ended"),
    Step(110, "rubiq", {"rate_limited": False}),
    Step(115, "flipsnack", {"down": False}),
    Step(115, "bannersnack", {"server_error": False}),
    Step(115, "movingimage", {"rotated": False}),
    Step(120, "bizwebs", {"disabled": True}, "Bizwebs: the API token was disabled"),
    Step(135, "bizwebs", {"disabled": False}),
    # the SaaS APIs: each dialect's way of saying the same few things
    Step(15, "slack", {"rate_limited": True, "retry_after": 20}, "Slack: auth.test rate limited (429, Retry-After)"),
    Step(25, "stripe", {"locked": True}, "Stripe: the balance is locked by a concurrent request (429 lock_timeout)"),
    Step(35, "slack", {"rate_limited": False}),
    Step(35, "stripe", {"locked": False}),
    Step(40, "github", {"secondary": True, "retry_after": 15}, "GitHub: a secondary rate limit (403 with retry-after)"),
    Step(45, "openai", {"quota_exceeded": True}, "OpenAI: the credit is used up (429 insufficient_quota)"),
    Step(55, "github", {"secondary": False}),
    Step(55, "slack", {"revoked": True}, "Slack: the app was removed from the workspace (token_revoked)"),
    Step(60, "twilio", {"in_flight": 100}, "Twilio: production traffic holds every concurrent slot (20429)"),
    Step(70, "openai", {"quota_exceeded": False}),
    Step(75, "slack", {"revoked": False}),
    Step(75, "twilio", {"in_flight": 0}),
    Step(85, "stripe", {"disabled": True}, "Stripe: the API key expired"),
    Step(90, "github", {"disabled": True}, "GitHub: the organization's SAML enforcement refuses the token"),
    Step(100, "stripe", {"disabled": False}),
    Step(105, "github", {"disabled": False}),
    Step(105, "openai", {"rate_limited": True}, "OpenAI: requests a minute used up (429 rate_limit_exceeded)"),
    Step(110, "twilio", {"account_status": "suspended"}, "Twilio: the account was suspended"),
    Step(120, "openai", {"rate_limited": False}),
    Step(125, "slack", {"maintenance": True}, "Slack: the workspace is in an enterprise migration"),
    Step(130, "twilio", {"account_status": "active"}),
    Step(140, "slack", {"maintenance": False}),
    # The vendors' own status pages, lining up with what the probes see (is it us or them?). A page is
    # read once a minute at most, so each declaration starts a little before its failure and what was
    # read stands until the next read.
    # OpenAI's overload comes after its rate-limit spell: the backoff after a run of 503s would otherwise
    # carry its next probe past that spell
    Step(118, "openai", {"status_incident": "Elevated error rates on Chat Completions",
                         "status_component": "01J00000000000000000000A01"}),
    Step(125, "openai", {"overloaded": True}, "OpenAI: overloaded (503), and its status page declares an incident"),
    Step(138, "openai", {"overloaded": False}),
    Step(145, "openai", {"status_incident": None}),
    Step(110, "github", {"status_incident": "Incident with API Requests"}),
    Step(115, "github", {"server_error": True}, "GitHub: API errors; githubstatus.com declares an incident"),
    Step(130, "github", {"server_error": False}),
    Step(140, "github", {"status_incident": None}),
    Step(118, "slack", {"status_maintenance": "Scheduled maintenance", "status_component": "Login/SSO"}),
    Step(145, "slack", {"status_maintenance": None}),
    # the cloud and SaaS APIs of issue 28: SigV4 and OAuth2 client credentials, and the header-key vendors
    Step(10, "aws-sts", {"clock_offset": 900.0}, "AWS STS: our clock and AWS's 15 minutes apart (signature expired)"),
    Step(25, "aws-sts", {"clock_offset": 0.0}),
    Step(70, "aws-sts", {"rate_limited": True}, "AWS STS: Throttling, rate exceeded"),
    Step(85, "aws-sts", {"rate_limited": False}),
    Step(115, "aws-sts", {"token_expired": True}, "AWS STS: the session token expired (ExpiredToken)"),
    Step(130, "aws-sts", {"token_expired": False}),
    Step(20, "msgraph", {"secret_expired": True}, "Microsoft Graph: the client secret expired (AADSTS7000222)"),
    Step(40, "msgraph", {"secret_expired": False}),
    Step(60, "msgraph", {"rate_limited": True, "retry_after": 10},
         "Microsoft Graph: throttled (429 activityLimitReached, Retry-After)"),
    Step(75, "msgraph", {"rate_limited": False}),
    Step(95, "msgraph", {"token_down": True, "revoke_tokens": True},
         "Microsoft Graph: the session ended while Entra ID's token endpoint is down"),
    Step(110, "msgraph", {"token_down": False}),
    Step(30, "cloudflare", {"disabled": True}, "Cloudflare: the API token was disabled"),
    Step(45, "cloudflare", {"disabled": False}),
    Step(100, "cloudflare", {"rate_limited": True}, "Cloudflare: 1200 requests in 5 minutes used up (971)"),
    Step(115, "cloudflare", {"rate_limited": False}),
    Step(50, "datadog", {"rotated": True}, "Datadog: the API key was revoked (403)"),
    Step(65, "datadog", {"rotated": False}),
    Step(120, "datadog", {"server_error": True}, "Datadog: internal server errors"),
    Step(135, "datadog", {"server_error": False}),
    Step(15, "sendgrid", {"rate_limited": True}, "SendGrid: too many requests (429)"),
    Step(30, "sendgrid", {"rate_limited": False}),
    Step(80, "sendgrid", {"disabled": True}, "SendGrid: access forbidden (the key lost its scope)"),
    Step(95, "sendgrid", {"disabled": False}),
    Step(55, "pagerduty", {"disabled": True}, "PagerDuty: the account is locked (2008)"),
    Step(70, "pagerduty", {"disabled": False}),
    Step(125, "pagerduty", {"rate_limited": True}, "PagerDuty: the key's requests a minute used up (429)"),
    Step(140, "pagerduty", {"rate_limited": False}),
    Step(35, "anthropic", {"overloaded": True}, "Anthropic: overloaded for everyone (HTTP 529)"),
    Step(50, "anthropic", {"overloaded": False}),
    Step(90, "anthropic", {"quota_exceeded": True}, "Anthropic: the credit balance is too low (402 billing_error)"),
    Step(105, "anthropic", {"quota_exceeded": False}),
)
CYCLE = 150.0
#: how often the slowly moving figures (uploads left, storage used, traffic) change
TICK = 10.0


def _ticks() -> list[Step]:
    """Quotas running out over the cycle: uploads down to 0, storage and traffic filling up, GitHub's hourly
    quota spent, OpenAI's requests a minute used by other traffic."""
    out = []
    for tick in range(int(CYCLE // TICK)):
        out.append(Step(tick * TICK, "flipsnack", {"uploads_left": max(0, 120 - 10 * tick)}))
        out.append(Step(tick * TICK, "movingimage", {"traffic_used": (4000 + 60 * tick) * GB}))
        out.append(Step(tick * TICK, "github", {"core_used": 1000 + 250 * tick}))
        out.append(Step(tick * TICK, "openai", {"burst": 25}))  # other traffic on the key, a minute in the window
    return out


@dataclass
class Demo:
    config: Config
    simulators: SimulatorSet
    clock: Clock = field(default_factory=SystemClock)
    task: asyncio.Task[None] | None = None

    def start(self) -> None:
        self.task = asyncio.create_task(self._run(), name="demo-scenario")

    async def _run(self) -> None:
        steps = sorted([*SCENARIO, *_ticks()], key=lambda item: item.at)
        cycle = 0
        while True:
            start = self.clock.monotonic()
            for vendor in self.simulators.sims:
                await self.simulators.control(vendor, reset=True)
            if cycle:
                log.info("every vendor healthy again; the scenario starts over")
            for step in steps:
                await self.clock.sleep(start + step.at - self.clock.monotonic())
                await self.simulators.control(step.vendor, **step.settings)
                if step.note:
                    log.info("%s", step.note)
            await self.clock.sleep(start + CYCLE - self.clock.monotonic())
            cycle += 1

    async def close(self) -> None:
        if self.task is not None:
            self.task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self.task
            self.task = None
        await self.simulators.close()


async def start_demo(clock: Clock | None = None, interval: str = "5s", timeout: str = "3s") -> Demo:
    """Start the simulators and the scenario; the returned config probes them."""
    clock = clock or SystemClock()
    sims = await start_simulators(clock=clock)
    try:
        raw = sims.targets_config(interval, status_pages=True, timeout=timeout)
        for target in raw["targets"]:
            target["labels"] = {"env": "demo"}
        # our own way out, as a site would check it (a canary it trusts): here a simulator's control URL
        raw["egress_checks"] = [{"name": "demo-egress", "url": next(iter(sims.control_urls.values())),
                                 "expect_status": [200]}]
        config = parse_config(Node(raw, "<embedded demo>", ""), Path("."), env={})
    except BaseException:
        await sims.close()
        raise
    demo = Demo(config, sims, clock)
    demo.start()
    log.info("%d vendor simulators on %s; the scenario repeats every %d s", len(sims.sims),
             ", ".join(f"{vendor} {url}" for vendor, url in sims.base_urls.items()), CYCLE)
    return demo
