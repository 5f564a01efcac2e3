"""The vendors' official SDKs as test oracles: each one called the way its docs show for the exporter's
health check, its verdict (success, exception class, parsed code) recorded, and a mapping, written from
the vendor's public docs and the SDK's own exception hierarchy, from that verdict to our class.

Nothing here reads the exporter's catalogs: the mapping is the independent expectation the catalogs
are checked against (tests/integration/test_sdk_parity.py).
"""

from __future__ import annotations

import http.client
import re
import urllib.error
from collections.abc import Callable
from dataclasses import dataclass

# Each SDK is imported by the call that uses it: every pytest-xdist worker collects this module, and
# importing the five SDKs costs more than collecting most modules whole.

__all__ = ["SDK_CALLS", "SDK_CLASS", "Verdict", "sdk_verdict"]

#: seconds an SDK call may take on loopback before it counts as hung
_TIMEOUT = 10


@dataclass(frozen=True)
class Verdict:
    """What an SDK made of one answer: ``kind`` is ``success`` or the exception's class name."""

    kind: str
    status: int | None = None  # the HTTP status the SDK reports, where it keeps one
    code: str | None = None  # the vendor's code as the SDK parsed it (Slack's error name, Stripe's code...)
    detail: str | None = None  # on success: the field the SDK read (Twilio's account status...)

    def __str__(self) -> str:
        parts = [self.kind, *(f"{k}={v}" for k, v in (("status", self.status), ("code", self.code),
                                                        ("detail", self.detail)) if v is not None)]
        return " ".join(parts)


def _no_answer() -> tuple[type[BaseException], ...]:
    """Transport failures, as each SDK's stack raises them (no HTTP answer at all)."""
    import openai
    import requests
    import stripe

    return (ConnectionError, urllib.error.URLError, http.client.HTTPException, requests.ConnectionError,
            stripe.APIConnectionError, openai.APIConnectionError)


def _unreadable(exc: BaseException) -> Verdict:
    """The SDK got an answer it could not read (a parse error inside the SDK, not its own exception)."""
    return Verdict("unreadable", detail=f"{type(exc).__name__}: {str(exc)[:60]}")


# --- the calls: each SDK's health check, as its docs show it --------------------------------------


def slack_call(base: str, creds: dict[str, str]) -> Verdict:
    from slack_sdk import WebClient
    from slack_sdk.errors import SlackApiError

    client = WebClient(token=creds["token"], base_url=base.rstrip("/") + "/", timeout=_TIMEOUT, retry_handlers=[])
    try:
        resp = client.auth_test()
    except SlackApiError as exc:
        # on a body that is not JSON the SDK puts its own sentence where Slack's error name goes
        error = exc.response.get("error")
        name = error if isinstance(error, str) and re.fullmatch(r"[a-z0-9_]+", error) else None
        return Verdict("SlackApiError", exc.response.status_code, name)
    return Verdict("success", resp.status_code, detail=str(resp.get("user_id")))


def github_call(base: str, creds: dict[str, str]) -> Verdict:
    import github

    # retry=None: PyGithub otherwise sleeps through secondary limits and retries 5xx itself
    gh = github.Github(auth=github.Auth.Token(creds["token"]), base_url=base, retry=None, timeout=_TIMEOUT)
    try:
        core = gh.get_rate_limit().resources.core
        return Verdict("success", detail=f"core {core.remaining}/{core.limit}")
    except github.GithubException as exc:
        message = exc.data.get("message") if isinstance(exc.data, dict) else None
        return Verdict(type(exc).__name__, exc.status, detail=str(message)[:60] if message else None)


def stripe_call(base: str, creds: dict[str, str]) -> Verdict:
    import stripe

    client = stripe.StripeClient(creds["secret_key"], base_addresses={"api": base}, max_network_retries=0)
    try:
        balance = client.v1.balance.retrieve()
    except stripe.StripeError as exc:
        if isinstance(exc, stripe.APIConnectionError):
            raise
        return Verdict(type(exc).__name__, exc.http_status, exc.code)
    return Verdict("success", detail=str(balance.object))


def openai_call(base: str, creds: dict[str, str]) -> Verdict:
    import openai

    client = openai.OpenAI(api_key=creds["api_key"], base_url=base + "/v1", max_retries=0, timeout=_TIMEOUT)
    try:
        models = [model.id for model in client.models.list()]
    except openai.APIStatusError as exc:
        return Verdict(type(exc).__name__, exc.status_code, exc.code, detail=exc.type)
    return Verdict("success", detail=f"{len(models)} models")


def twilio_call(base: str, creds: dict[str, str]) -> Verdict:
    from twilio.base.exceptions import TwilioRestException
    from twilio.rest import Client as TwilioClient

    client = TwilioClient(creds["account_sid"], creds["auth_token"])
    client.api.base_url = base  # the SDK's documented way to reach another host (edge, region, a mock)
    try:
        account = client.api.v2010.accounts(creds["account_sid"]).fetch()
    except TwilioRestException as exc:
        return Verdict("TwilioRestException", exc.status, str(exc.code) if exc.code is not None else None)
    return Verdict("success", detail=account.status)


SDK_CALLS: dict[str, Callable[[str, dict[str, str]], Verdict]] = {
    "slack": slack_call, "github": github_call, "stripe": stripe_call, "openai": openai_call, "twilio": twilio_call}


def sdk_verdict(vendor: str, base: str, creds: dict[str, str]) -> Verdict:
    """Run ``vendor``'s SDK health check against ``base``; a failure to read the answer is a verdict too."""
    no_answer = _no_answer()
    try:
        return SDK_CALLS[vendor](base, creds)
    except no_answer as exc:
        return Verdict("no_answer", detail=type(exc).__name__)
    except Exception as exc:  # noqa: BLE001 - the SDK choking on the body is exactly what we record
        return _unreadable(exc)


# --- the mappings: SDK verdict -> our class, from the vendors' docs ------------------------------------


def _by_status(status: int | None) -> str:
    """HTTP semantics, where the vendor documents its errors by status (RFC 9110; every vendor's docs)."""
    if status is None:
        return "unknown"
    if status in (401, 403):
        return "auth"
    if status == 429:
        return "rate_limited"
    if 400 <= status < 500:
        return "client_error"
    if status >= 500:
        return "server_error"
    return "unknown"  # a 2xx the SDK refused: it could not read it


def _common(verdict: Verdict) -> str | None:
    """What a verdict means whichever the SDK: no answer at all, or one it could not read."""
    if verdict.kind == "no_answer":
        return "network_error"
    if verdict.kind == "unreadable":
        return "unknown"  # every SDK fails to parse it: never ok (docs/vendors.md)
    return None


def _after_common(vendor_class: Callable[[Verdict], str]) -> Callable[[Verdict], str]:
    """``vendor_class`` (the vendor's own mapping, below) for the verdicts :func:`_common` leaves to it."""
    return lambda verdict: _common(verdict) or vendor_class(verdict)


# Slack's error names by family (https://docs.slack.dev/reference/methods/auth.test, the Web API's
# common errors, https://docs.slack.dev/apis/web-api/rate-limits). The SDK raises SlackApiError for every
# one; the name is the verdict.
SLACK_FAMILIES: dict[str, tuple[str, ...]] = {
    "auth": ("not_authed", "invalid_auth", "account_inactive", "token_revoked", "token_expired", "no_permission",
             "not_allowed_token_type", "ekm_access_denied", "two_factor_setup_required", "accesslimited"),
    # a workspace mid-migration: Slack says to retry once the migration is over
    "maintenance": ("org_login_required", "team_added_to_org"),
    "rate_limited": ("ratelimited",),
    "client_error": ("invalid_arguments", "invalid_arg_name", "invalid_charset", "invalid_form_data",
                     "invalid_post_type", "missing_post_type", "request_timeout", "method_deprecated",
                     "deprecated_endpoint"),
    "server_error": ("service_unavailable", "fatal_error", "internal_error"),
}
_SLACK = {name: cls for cls, names in SLACK_FAMILIES.items() for name in names}


def slack_class(verdict: Verdict) -> str:
    if verdict.kind == "success":
        return "ok"
    if verdict.code is not None:
        return _SLACK.get(verdict.code, "unknown")  # a name Slack has not documented: unknown
    # no envelope: slack_sdk keeps the status; a 2xx without {"ok": true} is nothing it can read
    return _by_status(verdict.status)


def github_class(verdict: Verdict) -> str:
    if verdict.kind == "success":
        return "ok"
    if verdict.kind == "RateLimitExceededException":
        return "rate_limited"  # PyGithub: primary or secondary limit, by header or message
    if verdict.kind in ("BadCredentialsException", "TwoFactorException"):
        return "auth"
    if verdict.kind in ("BadUserAgentException", "UnknownObjectException"):
        return "client_error"
    return _by_status(verdict.status)


def stripe_class(verdict: Verdict) -> str:
    if verdict.kind == "success":
        return "ok" if verdict.detail == "balance" else "unknown"
    # https://docs.stripe.com/api/errors/handling: the SDK's class is the family
    family = {"AuthenticationError": "auth", "PermissionError": "auth", "RateLimitError": "rate_limited",
              "InvalidRequestError": "client_error", "CardError": "client_error", "IdempotencyError": "client_error"}
    if verdict.kind in family:
        # api_key_expired and friends come as InvalidRequestError under 401: the key is the problem
        return "auth" if verdict.status in (401, 403) else family[verdict.kind]
    if verdict.kind == "APIError" and verdict.status == 424:
        return "server_error"  # "a failure in a dependency external to Stripe"
    return _by_status(verdict.status)  # APIError: 5xx, or a body it could not read


def openai_class(verdict: Verdict) -> str:
    if verdict.kind == "success":
        return "ok"
    if verdict.kind == "RateLimitError":
        # https://platform.openai.com/docs/guides/error-codes: 429 "You exceeded your current quota"
        # needs billing, not patience; every other 429 is a rate limit
        return "quota_exceeded" if "insufficient_quota" in (verdict.code, verdict.detail) else "rate_limited"
    if verdict.kind == "InternalServerError" and verdict.code == "slow_down":
        return "rate_limited"  # 503 "Slow Down": reduce the request rate
    family = {"AuthenticationError": "auth", "PermissionDeniedError": "auth", "NotFoundError": "client_error",
              "BadRequestError": "client_error", "ConflictError": "client_error",
              "UnprocessableEntityError": "client_error", "InternalServerError": "server_error"}
    return family.get(verdict.kind) or _by_status(verdict.status)


def twilio_class(verdict: Verdict) -> str:
    if verdict.kind == "success":
        # https://www.twilio.com/docs/iam/api/account: a suspended or closed account cannot use the API
        return "auth" if verdict.detail in ("suspended", "closed") else "ok"
    # TwilioRestException for every error: Twilio documents each code with its HTTP status
    return _by_status(verdict.status)


SDK_CLASS: dict[str, Callable[[Verdict], str]] = {
    vendor: _after_common(vendor_class) for vendor, vendor_class in (
        ("slack", slack_class), ("github", github_class), ("stripe", stripe_class), ("openai", openai_class),
        ("twilio", twilio_class))}
