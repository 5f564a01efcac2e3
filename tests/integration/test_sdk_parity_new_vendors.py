"""The seven vendors of issue 28 against their official SDKs: each SDK is pointed at a real loopback
server that answers with every answer the catalog documents (its ``examples:``, taken from the vendor's
docs), and at the vendor's simulator in its conditions; what the SDK makes of the answer (an exception
class, an error code, a token status) is mapped to our class by a written table, and must equal the
class our catalog gives the same answer.

Where our catalog decides what the SDK cannot see (the clock behind a SignatureDoesNotMatch, a Datadog
200 without "valid": true), the case is listed in ``OURS_ALONE`` with the reason."""

from __future__ import annotations

import asyncio
import email.utils
import json
import ssl
import threading
import time
from collections.abc import Callable, Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest
import trustme

from exporter.catalog import CatalogExample, builtin_catalogs
from exporter.classify import EXAMPLE_NOW
from exporter.engine import new_session
from exporter.probe import Prober
from exporter.simulators import start_simulators

from ..conftest import config_from

CATALOGS = builtin_catalogs()
KEY = "sdk-parity-key-0123456789"


class Scripted:
    """A real HTTP server on 127.0.0.1 that answers every request with the answer set last."""

    def __init__(self, tls: ssl.SSLContext | None = None) -> None:
        self.answer: tuple[int, dict[str, str], bytes] = (200, {}, b"{}")
        #: what a token endpoint answers meanwhile, when the answer set is the API's (Graph's)
        self.token: tuple[int, dict[str, str], bytes] | None = None
        self.requests = 0
        outer = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def _answer(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                if length:
                    self.rfile.read(length)
                outer.requests += 1
                status, headers, body = outer.answer
                if outer.token is not None and self.path.endswith("/oauth2/v2.0/token"):
                    status, headers, body = outer.token
                if self.path.endswith("/.well-known/openid-configuration"):
                    # Entra ID's discovery document, which MSAL reads before it asks for a token
                    tenant = self.path.split("/")[1]
                    base = f"{outer.url}/{tenant}"
                    status, headers, body = 200, {}, json.dumps({
                        "token_endpoint": f"{base}/oauth2/v2.0/token", "issuer": f"{base}/v2.0",
                        "authorization_endpoint": f"{base}/oauth2/v2.0/authorize"}).encode()
                self.send_response_only(status)  # no Date of its own: an example's Date is the vendor's clock
                for name, value in headers.items():
                    self.send_header(name, value)
                if not any(name.lower() == "content-type" for name in headers):
                    looks_xml = body.lstrip().startswith(b"<")
                    self.send_header("Content-Type", "text/xml" if looks_xml else "application/json")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            do_GET = do_POST = do_PUT = do_DELETE = _answer

            def log_message(self, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        if tls is not None:
            self.server.socket = tls.wrap_socket(self.server.socket, server_side=True)
        self.url = f"{'https' if tls else 'http'}://127.0.0.1:{self.server.server_address[1]}"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    def serve(self, example: CatalogExample, token_endpoint_ok: bool = False) -> None:
        self.answer = (example.status, dict(example.headers), example.body)
        self.token = (200, {}, json.dumps({"token_type": "Bearer", "expires_in": 3599,
                                           "access_token": "scripted-token"}).encode()) if token_endpoint_ok else None


def is_token_answer(example: CatalogExample) -> bool:
    """An Entra ID token endpoint's answer (an OAuth error name, AADSTS numbers), not Graph's."""
    try:
        body = json.loads(example.body or b"null")
    except ValueError:
        return False
    return isinstance(body, dict) and (isinstance(body.get("error"), str) or "error_codes" in body)


@pytest.fixture(scope="module")
def ca(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[trustme.CA, str]]:
    authority = trustme.CA()
    path = tmp_path_factory.mktemp("ca") / "ca.pem"
    authority.cert_pem.write_to_path(str(path))
    yield authority, str(path)


@pytest.fixture(scope="module")
def scripted(ca: tuple[trustme.CA, str]) -> Iterator[dict[str, Scripted]]:
    """A plain and a TLS server (the PagerDuty client and MSAL speak only https)."""
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ca[0].issue_cert("127.0.0.1").configure_cert(context)
    servers = {"http": Scripted(), "https": Scripted(context)}
    for server in servers.values():
        server.thread.start()
    try:
        yield servers
    finally:
        for server in servers.values():
            server.server.shutdown()
            server.server.server_close()


# --- each SDK's verdict, and the written table from it to our class ---------------------------------

def _skew(date: str | None, now: float) -> float:
    if not date:
        return 0.0
    return email.utils.parsedate_to_datetime(date).timestamp() - now


#: AWS error codes the AWS SDKs treat as credential problems (botocore has no such list; the table is ours)
AWS_AUTH = {"InvalidClientTokenId", "ExpiredToken", "ExpiredTokenException", "SignatureDoesNotMatch",
            "IncompleteSignature", "MissingAuthenticationToken", "AccessDenied", "AccessDeniedException",
            "NotAuthorized", "OptInRequired", "RegionDisabledException"}
#: the codes on which the AWS SDKs for Java, Go and JavaScript correct their clock (with a skew over 5 minutes)
AWS_CLOCK = {"RequestExpired", "SignatureDoesNotMatch", "RequestTimeTooSkewed", "RequestInTheFuture"}


def aws_sts(url: str, now: float, key_id: str = "AKIAIOSFODNN7EXAMPLE",
            secret: str = "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY") -> str:
    import boto3
    from botocore.config import Config
    from botocore.exceptions import ClientError
    from botocore.parsers import ResponseParserError
    from botocore.retries.standard import RetryContext, ThrottledRetryableChecker, TransientRetryableChecker

    client = _STS_CLIENTS.get((url, key_id, secret))
    if client is None:  # making a client costs more than the call: one per server and key
        client = _STS_CLIENTS[(url, key_id, secret)] = boto3.client(
            "sts", region_name="us-east-1", endpoint_url=url, aws_access_key_id=key_id,
            aws_secret_access_key=secret, config=Config(retries={"total_max_attempts": 1, "mode": "standard"}))
    try:
        client.get_caller_identity()
    except (ResponseParserError, KeyError):
        # boto3 asks for XML and reads nothing else; an XML page without STS's result (a portal's HTML)
        # fails inside its parser with a KeyError
        return "unreadable"
    except ClientError as exc:
        response: Any = exc.response
        code = response.get("Error", {}).get("Code", "")
        status = response["ResponseMetadata"]["HTTPStatusCode"]
        headers = response["ResponseMetadata"].get("HTTPHeaders", {})
        context = RetryContext(attempt_number=1, parsed_response=response,
                               http_response=_Status(status), caught_exception=None)
        if ThrottledRetryableChecker().is_retryable(context):
            return "rate_limited"
        if code in AWS_CLOCK and (code == "RequestExpired" or abs(_skew(headers.get("date"), now)) > 300):
            return "clock_skew"
        if code in AWS_AUTH or status == 403:
            return "auth"
        if TransientRetryableChecker().is_retryable(context):
            return "server_error"
        return "client_error" if 400 <= status < 500 else "server_error"
    return "ok"


_STS_CLIENTS: dict[tuple[str, str, str], Any] = {}


class _Status:
    def __init__(self, status: int) -> None:
        self.status_code = status


#: our class -> the exception classes of an SDK that mean it (the SDK's own hierarchy, from its docs)
Families = dict[str, tuple[type[BaseException], ...]]


def family_of(exc: BaseException, families: Families) -> str:
    """The first class of ``families`` that ``exc`` is an instance of; ``unmapped`` when none is."""
    return next((cls for cls, kinds in families.items() if isinstance(exc, kinds)), "unmapped")


def anthropic_sdk(url: str, now: float, key: str = KEY) -> str:
    import anthropic

    client = anthropic.Anthropic(api_key=key, base_url=url, max_retries=0)
    families: Families = {
        "auth": (anthropic.AuthenticationError, anthropic.PermissionDeniedError),
        "rate_limited": (anthropic.RateLimitError,), "quota_exceeded": (anthropic.PaymentRequiredError,),
        "server_error": (anthropic.OverloadedError, anthropic.InternalServerError),
        "client_error": (anthropic.BadRequestError, anthropic.NotFoundError, anthropic.RequestTooLargeError),
    }
    try:
        client.models.list(limit=1)
    except anthropic.APIStatusError as exc:
        if exc.status_code >= 500:  # the SDK retries every 5xx: the vendor's trouble, not ours
            return "server_error"
        return family_of(exc, families)
    return "ok"


def cloudflare_sdk(url: str, now: float, key: str = KEY) -> str:
    import cloudflare

    client = cloudflare.Cloudflare(api_token=key, base_url=url + "/client/v4", max_retries=0)
    families: Families = {
        "auth": (cloudflare.AuthenticationError, cloudflare.PermissionDeniedError),
        "rate_limited": (cloudflare.RateLimitError,), "server_error": (cloudflare.InternalServerError,),
        "client_error": (cloudflare.BadRequestError, cloudflare.NotFoundError),
    }
    try:
        token = client.user.tokens.verify()
    except cloudflare.APIStatusError as exc:
        codes = [e.get("code") for e in (exc.body or {}).get("errors", [])] if isinstance(exc.body, dict) else []
        if 971 in codes:
            return "rate_limited"
        if codes and codes[0] in (1000, 6003, 9106, 9109, 10000):  # the docs' authentication errors
            return "auth"
        return family_of(exc, families)
    status = getattr(token, "status", None)
    return "auth" if status in ("disabled", "expired") else "ok"


def datadog_sdk(url: str, now: float, key: str = KEY) -> str:
    from datadog_api_client import ApiClient, Configuration
    from datadog_api_client.exceptions import (
        ApiException,
        ForbiddenException,
        NotFoundException,
        ServiceException,
        UnauthorizedException,
    )
    from datadog_api_client.v1.api.authentication_api import AuthenticationApi

    config = Configuration(host=url)
    config.api_key["apiKeyAuth"] = key
    with ApiClient(config) as api:
        try:
            answer = AuthenticationApi(api).validate()
        except (UnauthorizedException, ForbiddenException):
            return "auth"
        except NotFoundException:
            return "client_error"
        except ServiceException:
            return "server_error"
        except ApiException as exc:
            return "rate_limited" if exc.status == 429 else "client_error"
    return "ok" if answer.valid else "auth"


def sendgrid_sdk(url: str, now: float, key: str = KEY) -> str:
    import python_http_client.exceptions as errors
    from sendgrid import SendGridAPIClient

    families: Families = {
        "auth": (errors.UnauthorizedError, errors.ForbiddenError), "rate_limited": (errors.TooManyRequestsError,),
        "server_error": (errors.InternalServerError, errors.ServiceUnavailableError, errors.GatewayTimeoutError),
        "client_error": (errors.BadRequestsError, errors.NotFoundError, errors.MethodNotAllowedError,
                         errors.PayloadTooLargeError, errors.UnsupportedMediaTypeError),
    }
    try:
        SendGridAPIClient(api_key=key, host=url).client.scopes.get()
    except errors.HTTPError as exc:
        status = exc.status_code  # type: ignore[attr-defined]
        found = family_of(exc, families)
        if found == "unmapped":  # python_http_client has no class for these: the status says it
            return "server_error" if status >= 500 else "client_error"
        return found
    return "ok"


def pagerduty_sdk(url: str, now: float, key: str = KEY, ca_file: str = "") -> str:
    import pagerduty

    verify = ssl.create_default_context(cafile=ca_file) if ca_file else True
    client = pagerduty.RestApiV2Client(key, base_url=url, verify=verify)
    client.sleep_timer_base = 0
    client.retry[429] = 1  # the client retries 429 without end by default: once shows its verdict
    try:
        client.rget("/abilities")
    except pagerduty.HttpError as exc:
        status = exc.response.status_code
        try:
            code = exc.response.json().get("error", {}).get("code")
        except ValueError:
            code = None
        if status in (401, 402, 403) and code != 2009:  # the client's "credential invalid or deactivated"
            return "auth"
        if status == 429:
            return "rate_limited"
        return "server_error" if status >= 500 else "client_error"
    return "ok"


def msgraph_sdk(url: str, now: float, tenant: str = "contoso", client_id: str = "00001111-aaaa-2222-bbbb-3333cccc4444",
                secret: str = KEY, ca_file: str = "") -> str:
    """MSAL's client credentials flow; its verdict is the token endpoint's error (MSAL returns it as
    data) or, with a token, what Graph answers to it."""
    import msal
    import requests

    session = requests.Session()
    session.trust_env = False  # else REQUESTS_CA_BUNDLE from the environment wins over verify
    session.verify = ca_file or True
    app = msal.ConfidentialClientApplication(client_id, client_credential=secret, authority=f"{url}/{tenant}",
                                             http_client=session, instance_discovery=False,
                                             validate_authority=False)
    try:
        result = app.acquire_token_for_client(scopes=["https://graph.microsoft.com/.default"])
    except msal.exceptions.MsalServiceError:
        return "server_error"  # MSAL raises only when the token endpoint fails without an OAuth error
    if "access_token" in result:
        answer = session.get(url + "/v1.0/organization", params={"$select": "id"},
                             headers={"Authorization": "Bearer " + result["access_token"]}, timeout=10)
        if answer.status_code == 200:
            return "ok"
        code = (answer.json().get("error") or {}).get("code", "") if answer.content else ""
        return GRAPH.get(code) or _by_status(answer.status_code)
    number = (result.get("error_codes") or [None])[0]
    return AADSTS.get(number) or OAUTH.get(result.get("error", ""), "") or _by_status(
        result.get("status_code") or 400)


def _by_status(status: int) -> str:
    return {401: "auth", 403: "auth", 429: "rate_limited"}.get(status) or (
        "server_error" if status >= 500 else "client_error")


#: what MSAL returns, mapped: the AADSTS numbers by what the Entra ID error reference says to do about them
AADSTS = {7000215: "auth", 7000222: "auth", 7000218: "auth", 700016: "auth", 7000112: "auth", 90002: "auth",
          900023: "auth", 53003: "auth", 1002012: "client_error", 70011: "client_error", 500011: "client_error",
          50196: "rate_limited"}
#: the OAuth 2 error names of RFC 6749 section 5.2 (and temporarily_unavailable, section 4.1.2.1)
OAUTH = {"invalid_client": "auth", "unauthorized_client": "auth", "invalid_grant": "auth",
         "invalid_request": "client_error", "invalid_scope": "client_error",
         "temporarily_unavailable": "server_error"}
#: Graph's error codes by the class its error page gives them (https://learn.microsoft.com/graph/errors)
GRAPH = {"InvalidAuthenticationToken": "auth", "Authorization_IdentityNotFound": "auth",
         "Authorization_RequestDenied": "auth", "accessDenied": "auth", "unauthenticated": "auth",
         "activityLimitReached": "rate_limited", "TooManyRequests": "rate_limited",
         "quotaLimitReached": "quota_exceeded", "serviceNotAvailable": "server_error",
         "generalException": "server_error", "Request_ResourceNotFound": "client_error",
         "invalidRequest": "client_error"}


SDKS: dict[str, Callable[..., str]] = {
    "aws-sts": aws_sts, "anthropic": anthropic_sdk, "cloudflare": cloudflare_sdk, "datadog": datadog_sdk,
    "sendgrid": sendgrid_sdk, "pagerduty": pagerduty_sdk, "msgraph": msgraph_sdk,
}
#: the SDKs that speak only https
HTTPS_ONLY = {"pagerduty", "msgraph"}

#: (vendor, example index) -> (the SDK's verdict, why our class differs): documented answers the SDK
#: cannot read or reads otherwise on purpose; the test pins both sides
OURS_ALONE: dict[tuple[str, int], tuple[str, str]] = {
    ("aws-sts", 24): ("unreadable", "the JSON form answers only a client that asks for it; boto3 asks for XML"),
    ("aws-sts", 25): ("unreadable", "the JSON form answers only a client that asks for it; boto3 asks for XML"),
    ("aws-sts", 29): ("unreadable", "a 404 without a body: botocore cannot parse it, we fall back to the status"),
    ("datadog", 1): ("auth", "a 200 with \"valid\": false: the SDK table calls it auth, we cannot read it as ok "
                             "or as a refusal (the docs answer a bad key with 403), so unknown"),
    ("pagerduty", 2): ("client_error", "the client reads every 404 as a missing resource; code 2007 says the key's "
                                       "account is gone, which no request can fix: auth"),
}


def _cases() -> list[tuple[str, int, CatalogExample]]:
    return [(vendor, index, example) for vendor in SDKS for index, example in enumerate(CATALOGS[vendor].examples)]


@pytest.mark.parametrize(("vendor", "index", "example"), _cases(),
                         ids=[f"{v}-{i}-{e.code}" for v, i, e in _cases()])
def test_the_sdk_agrees_on_every_documented_answer(scripted: dict[str, Scripted], ca: tuple[trustme.CA, str],
                                                   vendor: str, index: int, example: CatalogExample) -> None:
    server = scripted["https" if vendor in HTTPS_ONLY else "http"]
    server.serve(example, token_endpoint_ok=vendor == "msgraph" and not is_token_answer(example))
    before = server.requests
    extra = {"ca_file": ca[1]} if vendor in HTTPS_ONLY else {}
    verdict = SDKS[vendor](server.url, EXAMPLE_NOW, **extra)
    assert server.requests > before, "the SDK did not call the scripted server"
    if verdict == "unreadable" and 200 <= example.status < 300:
        # the SDK cannot read what should be the vendor's success (a portal's page, an empty body): the
        # call failed for its user and nothing says why, which is our unknown
        verdict = "unknown"
    if (vendor, index) in OURS_ALONE:
        sdk_verdict, why = OURS_ALONE[(vendor, index)]
        assert (verdict, example.cls != verdict) == (sdk_verdict, True), why
    else:
        assert verdict == example.cls, (vendor, example.where, example.status)


def test_every_new_vendor_has_its_sdk_and_every_exception_is_one_example() -> None:
    assert set(SDKS) == {"aws-sts", "msgraph", "cloudflare", "datadog", "sendgrid", "pagerduty", "anthropic"}
    for vendor, index in OURS_ALONE:
        assert index < len(CATALOGS[vendor].examples)


# --- the SDKs against the simulators ------------------------------------------------------------------

#: vendor -> the conditions each SDK meets at the simulator; our prober meets the same
SIM_CONDITIONS: dict[str, list[dict[str, Any]]] = {
    "aws-sts": [{}, {"rotated": True}, {"disabled": True}, {"rate_limited": True}, {"server_error": True},
                {"clock_offset": 900.0}, {"token_expired": True}],
    "msgraph": [{}, {"secret_expired": True}, {"rotated": True}, {"disabled": True}, {"rate_limited": True},
                {"no_permission": True}, {"server_error": True}],
    "cloudflare": [{}, {"rotated": True}, {"disabled": True}, {"quota_exceeded": True}, {"rate_limited": True},
                   {"server_error": True}],
    "datadog": [{}, {"rotated": True}, {"rate_limited": True}, {"server_error": True}],
    "sendgrid": [{}, {"rotated": True}, {"disabled": True}, {"rate_limited": True}, {"server_error": True}],
    "pagerduty": [{}, {"rotated": True}, {"disabled": True}, {"quota_exceeded": True}, {"rate_limited": True},
                  {"server_error": True}],
    "anthropic": [{}, {"rotated": True}, {"disabled": True}, {"quota_exceeded": True}, {"rate_limited": True},
                  {"overloaded": True}, {"server_error": True}],
}


def _sdk_at(vendor: str, url: str, creds: dict[str, str], ca_file: str) -> str:
    now = time.time()
    if vendor == "aws-sts":
        return aws_sts(url, now, creds["access_key_id"], creds["secret_access_key"])
    if vendor == "msgraph":
        return msgraph_sdk(url, now, creds["tenant_id"], creds["client_id"], creds["client_secret"], ca_file)
    key = creds.get("api_key") or creds["api_token"]
    return SDKS[vendor](url, now, key, **({"ca_file": ca_file} if vendor in HTTPS_ONLY else {}))


@pytest.mark.parametrize("vendor", sorted(SIM_CONDITIONS))
async def test_the_sdk_and_the_exporter_agree_at_the_simulator(vendor: str, ca: tuple[trustme.CA, str]) -> None:
    from exporter.clock import SystemClock

    context = None
    if vendor in HTTPS_ONLY:
        context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        ca[0].issue_cert("127.0.0.1").configure_cert(context)
    sims = await start_simulators(clock=SystemClock())
    sim = sims.sims[vendor]
    try:
        if context is not None:  # the same simulator again, over TLS
            await sim.close()
            await sim.start("127.0.0.1", ssl_context=context)
        target: dict[str, Any] = {"name": vendor, "vendor": vendor, "base_url": sim.base_url,
                                  "credentials": sim.credentials()}
        if context is not None:
            target["http_client"] = {"tls_config": {"ca_file": ca[1]}}
        override = sim.catalog_override()
        config = config_from({"targets": [target], **({"vendors": {vendor: override}} if override else {})})
        ours, theirs = [], []
        async with new_session() as session:
            prober = Prober(session, SystemClock())
            for settings in SIM_CONDITIONS[vendor]:
                sim.control(reset=True, **settings)
                ours.append((settings, (await prober.probe(config.targets[0])).outcome.cls))
                sim.control(reset=True, **settings)
                url = sim.url
                theirs.append((settings, await asyncio.to_thread(_sdk_at, vendor, url, sim.credentials(), ca[1])))
    finally:
        await sims.close()
    assert theirs == ours
    assert ours[0][1] == "ok" and len({cls for _, cls in ours}) >= 3  # the conditions mean different things
