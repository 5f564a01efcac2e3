"""The demo (exporter/demo.py, exporter/demo.yaml) as an exporter probing it sees it: every class, every
vendor's dialect, and the vendors' own word lined up with their failures.

The walk costs seconds, so it is recorded once per process (tests/conftest.py ``demo_walk``) and these
tests read that recording; they live in one module so that a pytest-xdist worker runs them together.
"""

from __future__ import annotations

import pytest

from exporter.demo import CYCLE
from exporter.model import CLASSES, UP

from ..conftest import demo_walk, sample

#: the SaaS vendors and the vendors added with them, each walked through its trouble by the demo
SAAS = ("slack", "github", "stripe", "openai", "twilio")
NEW = ("aws-sts", "msgraph", "cloudflare", "datadog", "sendgrid", "pagerduty", "anthropic")


async def test_the_demo_scenario_shows_every_class_within_two_minutes() -> None:
    walk = await demo_walk()
    first_seen: dict[str, int] = {}
    for second, sights in enumerate(walk.seconds[:120], 1):
        for sight in sights:
            first_seen.setdefault(sight.cls, second)
    assert set(first_seen) == set(CLASSES), f"missing: {set(CLASSES) - set(first_seen)}"
    for vendor in walk.vendors:
        assert (sample(walk.metrics_at_120, "apistatus_responses_total", vendor=vendor, **{"class": "ok"}) or 0) >= 1
    # the scenario survives its own end and starts over
    assert walk.alive_after_cycle
    assert walk.uploads_after_cycle == 120  # 0 before the restart


async def test_the_demo_walks_the_saas_vendors_through_their_dialects() -> None:
    seen = (await demo_walk()).outcomes(SAAS, upto=int(CYCLE))
    assert {("ok", "ok"), ("rate_limited", "ratelimited"), ("auth", "token_revoked"),
            ("maintenance", "org_login_required")} <= seen["slack"], seen["slack"]
    assert {("ok", "200"), ("rate_limited", "secondary_rate_limit"), ("auth", "403")} <= seen["github"]
    assert {("ok", "200"), ("rate_limited", "lock_timeout"), ("auth", "api_key_expired")} <= seen["stripe"]
    assert {("ok", "200"), ("quota_exceeded", "insufficient_quota"),
            ("rate_limited", "rate_limit_exceeded")} <= seen["openai"], seen["openai"]
    assert {("ok", "active"), ("rate_limited", "20429"), ("auth", "suspended")} <= seen["twilio"], seen["twilio"]


async def test_the_demo_walks_the_new_vendors_through_their_trouble() -> None:
    walk = await demo_walk()
    seen = walk.outcomes(NEW, upto=int(CYCLE))
    assert set(NEW) <= walk.vendors
    assert {("ok", "200"), ("clock_skew", "SignatureDoesNotMatch"), ("rate_limited", "Throttling"),
            ("auth", "ExpiredToken")} <= seen["aws-sts"], seen["aws-sts"]
    assert {("ok", "200"), ("auth", "7000222"), ("rate_limited", "activityLimitReached"),
            ("server_error", "temporarily_unavailable")} <= seen["msgraph"], seen["msgraph"]
    assert {("ok", "active"), ("auth", "disabled"), ("rate_limited", "971")} <= seen["cloudflare"], seen["cloudflare"]
    assert {("ok", "valid"), ("auth", "403"), ("server_error", "500")} <= seen["datadog"], seen["datadog"]
    assert {("ok", "200"), ("rate_limited", "429"), ("auth", "403")} <= seen["sendgrid"], seen["sendgrid"]
    assert {("ok", "200"), ("auth", "2008"), ("rate_limited", "429")} <= seen["pagerduty"], seen["pagerduty"]
    assert {("ok", "200"), ("server_error", "overloaded_error"),
            ("quota_exceeded", "billing_error")} <= seen["anthropic"], seen["anthropic"]


#: per vendor the demo declares for, the class of its declared failure and the vendor's word on it
DEMO_DECLARED = {
    "github": ("server_error", "vendor confirms: Incident with API Requests"),
    "openai": ("server_error", "vendor confirms: Chat Completions major outage"),
    "slack": ("maintenance", "vendor confirms maintenance: Scheduled maintenance"),
    "anthropic": ("server_error", "vendor confirms: Elevated errors on Claude API"),
    "datadog": ("server_error", "vendor confirms maintenance: Scheduled API maintenance"),
}


@pytest.mark.parametrize("late", [0, 41])
async def test_the_demo_declares_incidents_that_line_up_with_its_failures(late: int) -> None:
    # the exporter started this long into the demo's cycle: its pages are read at other moments
    walk = await demo_walk(late)
    seen: dict[str, set[str]] = {name: set() for name in DEMO_DECLARED}
    wrong: list[str] = []
    for second, sights in enumerate(walk.seconds, 1):  # two cycles, a second at a time (a page is read once a minute)
        for sight in sights:
            if sight.target not in DEMO_DECLARED or sight.word is None:
                continue  # not a declaring vendor, or its page not read yet
            cls, word = DEMO_DECLARED[sight.target]
            seen[sight.target].add(f"{sight.cls}: {sight.word}")
            # the declared failure shows the vendor's word on every failing probe; any other failure of the
            # vendor, none
            if sight.cls == cls and not sight.word.startswith(word):
                wrong.append(f"{second} s: {sight.target} {sight.cls}: {sight.word}")
            if sight.cls != cls and sight.cls not in UP and sight.word != "vendor reports operational":
                wrong.append(f"{second} s: {sight.target} {sight.cls}: {sight.word}")
    assert not wrong, wrong
    for name, (cls, word) in DEMO_DECLARED.items():
        assert any(s.startswith(f"{cls}: {word}") for s in seen[name]), seen[name]
        # and its other failures were seen, with the vendor's page saying all is well
        assert any(not s.startswith(f"{cls}:") and not s.startswith(tuple(f"{c}:" for c in UP))
                   for s in seen[name]), seen[name]
    assert "ok: vendor reports operational" in seen["github"]
    # and our own egress, checked beside them
    assert sample(walk.metrics, "apistatus_egress_up", egress="demo-egress") == 1
    assert "demo-egress" in walk.page
