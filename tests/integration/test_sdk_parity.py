"""The vendors' official SDKs (slack-sdk, PyGithub, stripe, openai, twilio) as oracles for our verdicts.

Each SDK and the real prober meet the same answer, from a loopback server: every row of a table written
from the vendor's public docs (every documented error family, rate limits with and without headers,
quota, maintenance, non-JSON and empty 2xx bodies, proxies' HTML pages), and each simulator in every
state it can take. The SDK's verdict, mapped to our class by tests/integration/sdk_support.py (written
from the docs, not from our catalogs), is the expectation; where the SDK cannot tell, the row says what
we decided and why. The requests are compared too: what the SDK sends for the health check against
what the exporter sends.
"""

from __future__ import annotations

import asyncio
import base64
import json
import re
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any

import pytest
from aiohttp import web

from exporter.clock import FakeClock
from exporter.config import Target
from exporter.engine import new_session
from exporter.probe import Prober
from exporter.simulators import SimulatorSet
from exporter.simulators.base import CONDITIONS

from ..conftest import config_from, serve
from .sdk_support import SDK_CLASS, Verdict, sdk_verdict

VENDORS = ("slack", "github", "stripe", "openai", "twilio")
CREDS: dict[str, dict[str, str]] = {
    "slack": {"token": "xoxb-1111-parity-token"},
    "github": {"token": "github_pat_11PARITY000000"},
    "stripe": {"secret_key": "sk_test_51PARITY0000000000"},
    "openai": {"api_key": "sk-proj-PARITY000000000000"},
    "twilio": {"account_sid": "AC00000000000000000000000000parity", "auth_token": "parity-auth-token-000"},
}
#: the path prefix of each vendor's base_url (Slack's Web API lives under /api)
PREFIX = {"slack": "/api"}


@dataclass(frozen=True)
class Row:
    """One scripted answer. ``decided`` is set where the SDK cannot tell: our class, and ``why``."""

    name: str
    status: int
    body: Any = None  # dict/list: JSON; str: sent as it is (HTML, text); None: empty
    headers: dict[str, str] = field(default_factory=dict)
    decided: str | None = None
    why: str = ""

    def wire(self) -> tuple[int, dict[str, str], bytes]:
        headers = dict(self.headers)
        if isinstance(self.body, dict | list):
            headers.setdefault("Content-Type", "application/json")
            return self.status, headers, json.dumps(self.body).encode()
        if isinstance(self.body, str):
            headers.setdefault("Content-Type", "text/html" if self.body.startswith("<") else "text/plain")
            return self.status, headers, self.body.encode()
        return self.status, headers, b""


def not_the_vendor() -> list[Row]:
    """What stands between us and any vendor: captive portals, proxies, CDNs."""
    return [
        Row("captive portal 200", 200, "<html><body><form>Accept the Wi-Fi terms</form></body></html>"),
        Row("empty 200", 200),
        Row("proxy splash 200 text", 200, "Welcome to the corporate proxy"),
        Row("proxy 502 page", 502, "<html><head><title>502 Bad Gateway</title></head><body>nginx</body></html>"),
        Row("proxy 503 maintenance page", 503, "<html><body>Service Temporarily Unavailable</body></html>",
            {"Retry-After": "120"}),
        Row("gateway 504 empty", 504),
        Row("CDN 429 text with Retry-After", 429, "Too Many Requests", {"Retry-After": "30"}),
        Row("CDN 429 bare", 429),
    ]


def slack_error(name: str, status: int = 200, headers: dict[str, str] | None = None) -> Row:
    return Row(f"error {name}", status, {"ok": False, "error": name}, headers or {})


# https://docs.slack.dev/reference/methods/auth.test, https://docs.slack.dev/apis/web-api/
SLACK = [
    Row("ok", 200, {"ok": True, "url": "https://demo.slack.com/", "team": "Demo", "user": "bot", "team_id": "T1",
                    "user_id": "U1"}),
    *(slack_error(name) for name in (
        "not_authed", "invalid_auth", "account_inactive", "token_revoked", "token_expired", "no_permission",
        "not_allowed_token_type", "ekm_access_denied", "two_factor_setup_required", "accesslimited",
        "org_login_required", "team_added_to_org", "invalid_arguments", "invalid_arg_name", "invalid_charset",
        "invalid_form_data", "invalid_post_type", "missing_post_type", "request_timeout", "method_deprecated",
        "deprecated_endpoint", "service_unavailable", "fatal_error", "internal_error", "some_new_error")),
    slack_error("ratelimited", 429, {"Retry-After": "30"}),
    slack_error("ratelimited", 429),  # rate limit without Retry-After
    Row("envelope naming nothing", 200, {"ok": False}),
    Row("fatal_error under 500", 500, {"ok": False, "error": "fatal_error"}),
    *not_the_vendor(),
]

# https://docs.github.com/rest/rate-limit/rate-limit, .../rate-limits-for-the-rest-api,
# .../troubleshooting-the-rest-api
_GH_OK = {"resources": {"core": {"limit": 5000, "used": 1, "remaining": 4999, "reset": 1750003600},
                        "search": {"limit": 30, "used": 0, "remaining": 30, "reset": 1750003600}},
          "rate": {"limit": 5000, "used": 1, "remaining": 4999, "reset": 1750003600}}
_GH_DOCS = "https://docs.github.com/rest"
GITHUB = [
    Row("ok", 200, _GH_OK, {"x-ratelimit-limit": "5000", "x-ratelimit-remaining": "4999"}),
    Row("ok with the primary quota spent", 200, _GH_OK, {"x-ratelimit-remaining": "0"}),
    Row("bad credentials", 401, {"message": "Bad credentials", "documentation_url": _GH_DOCS}),
    Row("requires authentication", 401, {"message": "Requires authentication", "documentation_url": _GH_DOCS}),
    Row("SAML enforcement", 403, {"message": "Resource protected by organization SAML enforcement."},
        {"x-ratelimit-remaining": "4990"}),
    Row("IP allow list", 403, {"message": "Although you appear to have the correct authorization credentials, the "
                                          "organization has an IP allow list enabled."}),
    Row("primary limit with headers", 403, {"message": "API rate limit exceeded for user ID 1."},
        {"x-ratelimit-remaining": "0", "x-ratelimit-reset": "1750003600"}),
    Row("primary limit, message only", 403, {"message": "API rate limit exceeded for 203.0.113.7."}),
    Row("primary limit as 429", 429, {"message": "API rate limit exceeded for user ID 1."},
        {"x-ratelimit-remaining": "0"}),
    Row("secondary limit with retry-after", 403, {"message": "You have exceeded a secondary rate limit. Please wait a "
                                                             "few minutes before you try again."},
        {"retry-after": "60", "x-ratelimit-remaining": "4000"}),
    Row("secondary limit without retry-after", 403,
        {"message": "You have exceeded a secondary rate limit and have been temporarily blocked from content "
                    "creation. Please retry your request again later."}, {"x-ratelimit-remaining": "4000"}),
    Row("abuse detection (older wording)", 403,
        {"message": "You have triggered an abuse detection mechanism. Please wait a few minutes before you try "
                    "again."}),
    Row("secondary limit as 429", 429, {"message": "You have exceeded a secondary rate limit."},
        {"retry-after": "60"}),
    Row("missing user agent", 403, {"message": "Missing or invalid User Agent string."}),
    Row("not found", 404, {"message": "Not Found", "documentation_url": _GH_DOCS}),
    Row("validation failed", 422, {"message": "Validation Failed", "documentation_url": _GH_DOCS}),
    Row("server error", 500, {"message": "Server Error"}),
    Row("unicorn 503", 503, "<html><body>Unicorn! We're having a really bad day.</body></html>"),
    Row("Enterprise Server, rate limiting off", 404,
        {"message": "Rate limiting is not enabled.",
         "documentation_url": "https://docs.github.com/enterprise-server@3.14/rest/rate-limit/rate-limit"},
        decided="ok", why="PyGithub's get_rate_limit raises on this 404, but the API answered it with its own JSON: "
                          "GitHub Enterprise Server has no /rate_limit while rate limiting is off (its default), so "
                          "the default check must not be down forever there"),
    Row("JSON without the resources", 200, {}, decided="ok",
        why="the SDK reads resources.core and fails; the exporter checks the envelope's form (JSON), not "
            "/rate_limit's fields, so a target's own check (path: /user) needs no other envelope"),
    *not_the_vendor(),
]


def stripe_error(status: int, kind: str, code: str | None = None, message: str = "x") -> dict[str, Any]:
    err: dict[str, Any] = {"type": kind, "message": message}
    if code is not None:
        err["code"] = code
    return {"error": err}


# https://docs.stripe.com/api/errors, https://docs.stripe.com/error-codes, https://docs.stripe.com/rate-limits
STRIPE = [
    Row("ok", 200, {"object": "balance", "livemode": False, "available": [{"amount": 0, "currency": "usd"}],
                    "pending": []}),
    Row("no key", 401, stripe_error(401, "invalid_request_error", None, "You did not provide an API key.")),
    Row("invalid key", 401, stripe_error(401, "invalid_request_error", None, "Invalid API Key provided: sk_t****")),
    Row("api_key_expired", 401, stripe_error(401, "invalid_request_error", "api_key_expired")),
    Row("platform_api_key_expired", 401, stripe_error(401, "invalid_request_error", "platform_api_key_expired")),
    Row("secret_key_required", 401, stripe_error(401, "invalid_request_error", "secret_key_required")),
    Row("account_invalid", 403, stripe_error(403, "invalid_request_error", "account_invalid")),
    Row("restricted key without permission", 403,
        stripe_error(403, "invalid_request_error", None, "The provided key does not have the required permissions")),
    Row("rate_limit", 429, stripe_error(429, "invalid_request_error", "rate_limit"), {"Retry-After": "1"}),
    Row("rate_limit without headers", 429, stripe_error(429, "invalid_request_error", "rate_limit")),
    Row("rate_limit as a 400 (older API)", 400, stripe_error(400, "invalid_request_error", "rate_limit")),
    Row("lock_timeout", 429, stripe_error(429, "invalid_request_error", "lock_timeout")),
    Row("parameter_unknown", 400, stripe_error(400, "invalid_request_error", "parameter_unknown")),
    Row("an unlisted code under 400", 400, stripe_error(400, "invalid_request_error", "some_new_code")),
    Row("invalid API version", 400, stripe_error(400, "invalid_request_error", None, "Invalid Stripe API version")),
    Row("card_declined", 402, stripe_error(402, "card_error", "card_declined")),
    Row("resource_missing", 404, stripe_error(404, "invalid_request_error", "resource_missing")),
    Row("idempotency_error", 400, stripe_error(400, "idempotency_error")),
    Row("external dependency failed", 424, stripe_error(424, "api_error")),
    Row("api_error", 500, stripe_error(500, "api_error", None, "An unknown error occurred")),
    *not_the_vendor(),
]


def openai_error(kind: str, code: str | None, message: str = "x") -> dict[str, Any]:
    return {"error": {"message": message, "type": kind, "param": None, "code": code}}


# https://platform.openai.com/docs/guides/error-codes, https://platform.openai.com/docs/guides/rate-limits
_OAI_LIMITS = {"x-ratelimit-limit-requests": "500", "x-ratelimit-remaining-requests": "0",
               "x-ratelimit-reset-requests": "120ms"}
OPENAI = [
    Row("ok", 200, {"object": "list", "data": [{"id": "gpt-4o-mini", "object": "model", "created": 1,
                                                "owned_by": "system"}]}, {"x-ratelimit-limit-requests": "500",
                                                                          "x-ratelimit-remaining-requests": "499"}),
    Row("invalid_api_key", 401, openai_error("invalid_request_error", "invalid_api_key")),
    Row("no key", 401, openai_error("invalid_request_error", None, "You didn't provide an API key.")),
    Row("not a member of an organization", 401, openai_error("invalid_request_error", None)),
    Row("unsupported region", 403, openai_error("request_forbidden", "unsupported_country_region_territory")),
    Row("missing scope", 403, openai_error("invalid_request_error", None, "You have insufficient permissions")),
    Row("unknown url", 404, openai_error("invalid_request_error", "unknown_url")),
    Row("bad request", 400, openai_error("invalid_request_error", None)),
    Row("rate_limit_exceeded with headers", 429, openai_error("requests", "rate_limit_exceeded"),
        {**_OAI_LIMITS, "retry-after": "1"}),
    Row("rate limit, no headers, no code", 429, openai_error("requests", None)),
    Row("tokens limit", 429, openai_error("tokens", "rate_limit_exceeded")),
    Row("insufficient_quota", 429, openai_error("insufficient_quota", "insufficient_quota",
                                                "You exceeded your current quota")),
    Row("insufficient_quota, type only", 429, openai_error("insufficient_quota", None)),
    Row("server error", 500, openai_error("server_error", None)),
    Row("engine overloaded", 503, openai_error("server_error", None, "The engine is currently overloaded")),
    Row("slow down", 503, openai_error("server_error", "slow_down", "Slow Down")),
    *not_the_vendor(),
]


def twilio_error(code: int, status: int, message: str = "x") -> dict[str, Any]:
    return {"code": code, "message": message, "more_info": f"https://www.twilio.com/docs/errors/{code}",
            "status": status}


_ACCOUNT = {"sid": CREDS["twilio"]["account_sid"], "friendly_name": "Demo", "type": "Full"}
# https://www.twilio.com/docs/iam/api/account, https://www.twilio.com/docs/api/errors
TWILIO = [
    Row("active", 200, {**_ACCOUNT, "status": "active"}),
    Row("suspended", 200, {**_ACCOUNT, "status": "suspended"}),
    Row("closed", 200, {**_ACCOUNT, "status": "closed"}),
    Row("a status Twilio may add", 200, {**_ACCOUNT, "status": "pending_review"}),
    Row("20003 authenticate", 401, twilio_error(20003, 401, "Authenticate")),
    Row("20005 not active", 401, twilio_error(20005, 401)),
    Row("20403 forbidden", 403, twilio_error(20403, 403)),
    Row("10001 account not active", 403, twilio_error(10001, 403)),
    Row("20008 test credentials (unlisted)", 403, twilio_error(20008, 403, "Resource not accessible with Test "
                                                                            "Account Credentials")),
    Row("20404 not found", 404, twilio_error(20404, 404)),
    Row("21211 (unlisted, 400)", 400, twilio_error(21211, 400)),
    Row("20429 too many requests", 429, twilio_error(20429, 429)),
    Row("20429 with Retry-After", 429, twilio_error(20429, 429), {"Retry-After": "1"}),
    Row("20500", 500, twilio_error(20500, 500)),
    Row("20503", 503, twilio_error(20503, 503)),
    Row("20599 (unlisted, 503)", 503, twilio_error(20599, 503)),
    Row("401 without a body", 401),
    *not_the_vendor(),
]

TABLES: dict[str, list[Row]] = {"slack": SLACK, "github": GITHUB, "stripe": STRIPE, "openai": OPENAI,
                                "twilio": TWILIO}


@dataclass
class Scripted:
    """Answers every request with ``answer``; keeps what each request carried."""

    answer: tuple[int, dict[str, str], bytes] = (200, {}, b"{}")
    seen: list[tuple[str, str, dict[str, str], bytes]] = field(default_factory=list)

    async def handle(self, request: web.Request) -> web.Response:
        body = await request.read()
        self.seen.append((request.method, request.path, {k.lower(): v for k, v in request.headers.items()}, body))
        status, headers, raw = self.answer
        return web.Response(status=status, headers=headers, body=raw)


@pytest.fixture
async def scripted() -> AsyncIterator[tuple[Scripted, str]]:
    server = Scripted()
    async with serve(server.handle) as url:
        yield server, url


@dataclass(frozen=True)
class Pair:
    """The SDK and the exporter, set up once for one vendor at ``base_url`` (a config is loaded once, not
    per answer): :meth:`both` puts the answer the server gives now to each of them."""

    vendor: str
    base_url: str
    creds: dict[str, str]
    prober: Prober
    target: Target

    @classmethod
    def of(cls, vendor: str, base_url: str, creds: dict[str, str], prober: Prober) -> Pair:
        target = config_from({"targets": [{"name": vendor, "vendor": vendor, "base_url": base_url,
                                           "credentials": creds}]}).targets[0]
        return cls(vendor, base_url, creds, prober, target)

    async def both(self) -> tuple[Verdict, str, str]:
        """The SDK's verdict, its class by the docs' mapping, and the exporter's class, on one answer each."""
        verdict = await asyncio.to_thread(sdk_verdict, self.vendor, self.base_url, self.creds)
        result = await self.prober.probe(self.target)
        return verdict, SDK_CLASS[self.vendor](verdict), result.outcome.cls


@pytest.mark.parametrize("vendor", VENDORS)
def test_each_table_covers_the_documented_families(vendor: str) -> None:
    rows = TABLES[vendor]
    assert len(rows) >= 20
    # rate limits with and without headers, non-JSON and empty 2xx, proxies' pages (every error family:
    # see the classes the SDK's verdicts cover, below)
    assert any(row.status == 429 and row.headers for row in rows) and any(row.status == 429 and not row.headers
                                                                          for row in rows)
    assert any(row.status == 200 and row.body is None for row in rows)
    assert any(row.status == 200 and isinstance(row.body, str) for row in rows)
    assert any(row.status >= 500 and isinstance(row.body, str) and row.body.startswith("<") for row in rows)
    assert all(row.why for row in rows if row.decided), "a decided row says why"


@pytest.mark.parametrize("vendor", VENDORS)
async def test_the_exporter_agrees_with_the_sdk_on_every_scripted_answer(
        scripted: tuple[Scripted, str], vendor: str) -> None:
    server, url = scripted
    base = url + PREFIX.get(vendor, "")
    disagreements = []
    families = set()
    async with new_session() as session:
        pair = Pair.of(vendor, base, CREDS[vendor], Prober(session, FakeClock()))
        for row in TABLES[vendor]:
            server.answer = row.wire()
            verdict, expected, got = await pair.both()
            families.add(expected)
            want = row.decided or expected
            if got != want:
                disagreements.append(f"{row.name}: SDK {verdict} -> {expected}"
                                     f"{f' (decided {row.decided})' if row.decided else ''}, exporter {got}")
    assert disagreements == []
    # every documented error family is in the table, as the SDK sees it
    assert {"ok", "auth", "rate_limited", "client_error", "server_error", "unknown"} <= families


# --- the simulators, in every state they can take ---------------------------------------------------

#: per vendor, each state and (where the SDK cannot tell) the class decided, with why
STATES: dict[str, list[tuple[dict[str, Any], str | None]]] = {
    "slack": [({}, None), ({"rotated": True}, None), ({"disabled": True}, None), ({"rate_limited": True}, None),
              ({"server_error": True}, None), ({"maintenance": True}, None), ({"revoked": True}, None),
              ({"expired": True}, None), ({"burst": 50}, None), ({"code": "invalid_arguments"}, None),
              ({"down": True}, None)],
    "github": [({}, None), ({"rotated": True}, None), ({"disabled": True}, None), ({"rate_limited": True}, None),
               ({"server_error": True}, None), ({"secondary": True}, None),
               ({"secondary": True, "retry_after": 0}, None), ({"core_used": 5000}, None), ({"burst": 900}, None),
               ({"code": "404"}, None), ({"down": True}, None),
               # PyGithub raises on Enterprise's 404; see the scripted row "Enterprise Server, rate limiting off"
               ({"enterprise": True}, "ok")],
    "stripe": [({}, None), ({"rotated": True}, None), ({"disabled": True}, None), ({"rate_limited": True}, None),
               ({"server_error": True}, None), ({"restricted": True}, None), ({"locked": True}, None),
               ({"burst": 25}, None), ({"code": "resource_missing"}, None), ({"down": True}, None)],
    "openai": [({}, None), ({"rotated": True}, None), ({"rate_limited": True}, None),
               ({"quota_exceeded": True}, None), ({"server_error": True}, None), ({"region_blocked": True}, None),
               ({"overloaded": True}, None), ({"burst": 500}, None), ({"code": "insufficient_quota"}, None),
               ({"down": True}, None)],
    "twilio": [({}, None), ({"rotated": True}, None), ({"disabled": True}, None), ({"rate_limited": True}, None),
               ({"server_error": True}, None), ({"account_status": "suspended"}, None),
               ({"account_status": "closed"}, None), ({"test_credentials": True}, None),
               ({"in_flight": 100}, None), ({"code": "20008"}, None), ({"down": True}, None)],
}
#: settings that are not states an SDK could tell apart: a slow answer is our timeout alone (an SDK just
#: waits), these vendors check no timestamps (clock_offset), retry_after only shapes another state
# the status_* settings change the vendor's status page, never an API answer the SDK could see; flaky
# fails a random share of answers (bench detect's healthy run), no state of the vendor's
NOT_STATES = {"delay", "clock_offset", "retry_after", "code", "reset", "status_incident", "status_maintenance",
              "status_component", "flaky"}


@pytest.mark.parametrize("vendor", VENDORS)
def test_the_states_cover_every_setting_of_the_simulator(vendor: str) -> None:
    from exporter.simulators import SIMULATORS
    sim = next(cls for cls in SIMULATORS if cls.vendor == vendor)()
    covered = {key for state, _ in STATES[vendor] for key in state}
    settable = {key for key in sim.settings if key not in NOT_STATES
                and (key not in CONDITIONS or key in sim.condition_codes)}
    assert settable - covered == set()


@pytest.mark.parametrize("vendor", VENDORS)
async def test_the_exporter_agrees_with_the_sdk_on_every_simulator_state(
        sims: tuple[SimulatorSet, FakeClock], vendor: str) -> None:
    started, clock = sims
    sim = started.sims[vendor]
    disagreements = []
    async with new_session() as session:
        pair = Pair.of(vendor, sim.base_url, sim.credentials(), Prober(session, clock))
        for state, decided in STATES[vendor]:
            await clock.advance(3600)  # every window of the previous state has passed
            sim.control(reset=True, **state)
            verdict, expected, got = await pair.both()
            if got != (decided or expected):
                disagreements.append(f"{state}: SDK {verdict} -> {expected}, exporter {got}")
    assert disagreements == []


# --- what is sent for the health check -----------------------------------------------------------------

#: headers a real vendor needs on the health check, and what their value must look like
REQUIRED: dict[str, dict[str, str]] = {
    # a Web API POST is a form (https://docs.slack.dev/apis/web-api/#posting_json)
    "slack": {"content-type": r"application/x-www-form-urlencoded.*"},
    # GitHub refuses requests without a User-Agent; its docs ask for this media type and an API version
    "github": {"user-agent": r".+", "accept": r"application/vnd\.github\+json", "x-github-api-version":
               r"\d{4}-\d{2}-\d{2}"},
    # https://docs.stripe.com/api/versioning: pinned, as the SDK pins its own
    "stripe": {"stripe-version": r"\d{4}-\d{2}-\d{2}(\.[a-z]+)?"},
    "openai": {},
    "twilio": {},
}
#: the auth schemes each vendor accepts (GitHub takes "token" and "Bearer" alike)
SCHEMES = {"slack": {"bearer"}, "github": {"bearer", "token"}, "stripe": {"bearer", "basic"}, "openai": {"bearer"},
           "twilio": {"basic"}}


def credential(header: str) -> tuple[str, str]:
    scheme, _, value = header.partition(" ")
    if scheme.lower() == "basic":
        value = base64.b64decode(value).decode()
    return scheme.lower(), value


@pytest.mark.parametrize("vendor", VENDORS)
async def test_the_exporter_sends_what_the_vendor_needs_as_the_sdk_does(
        scripted: tuple[Scripted, str], vendor: str) -> None:
    server, url = scripted
    base = url + PREFIX.get(vendor, "")
    server.answer = TABLES[vendor][0].wire()
    async with new_session() as session:
        verdict, _, got = await Pair.of(vendor, base, CREDS[vendor], Prober(session, FakeClock())).both()
    assert verdict.kind == "success" and got == "ok"
    (sdk_method, sdk_path, sdk_headers, _), (our_method, our_path, our_headers, our_body) = server.seen
    assert (our_method, our_path) == (sdk_method, sdk_path)
    sdk_scheme, sdk_cred = credential(sdk_headers["authorization"])
    our_scheme, our_cred = credential(our_headers["authorization"])
    assert {sdk_scheme, our_scheme} <= SCHEMES[vendor] and our_cred == sdk_cred
    for name, pattern in REQUIRED[vendor].items():
        assert re.fullmatch(pattern, our_headers.get(name, "")), f"{vendor}: {name}: {our_headers.get(name)!r}"
        if name in sdk_headers and name != "accept":
            assert re.fullmatch(pattern, sdk_headers[name]), f"the SDK sends {name}: {sdk_headers[name]!r}"
    assert our_body == b"" or our_method == "POST"
