"""AWS Signature Version 4, byte for byte against botocore's own signer (botocore.auth.SigV4Auth, the
reference every AWS SDK for Python signs with), on a table of requests: query strings, empty and
form bodies, session tokens, odd characters in paths, parameters and headers. Time is fixed: the
signer gets ``now`` and botocore's clock is set to the same moment."""

from __future__ import annotations

import datetime
from collections.abc import Iterator
from typing import Any

import pytest

from exporter.model import HttpRequest
from exporter.signatures import sigv4_canonical_request, sigv4_headers, sigv4_timestamp
from exporter.signers import SignerContext, SigV4Options, make_signer

NOW = 1_765_000_000.0  # 2025-12-06T05:46:40Z
KEY_ID, SECRET = "AKIDEXAMPLE", "wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY"
FORM = {"Content-Type": "application/x-www-form-urlencoded; charset=utf-8"}

#: (name, method, url, params, headers, body, session token, region, service)
TABLE: list[tuple[str, str, str, tuple[tuple[str, str], ...], dict[str, str], bytes | None, str, str, str]] = [
    ("sts GetCallerIdentity form POST", "POST", "https://sts.amazonaws.com/", (), FORM,
     b"Action=GetCallerIdentity&Version=2011-06-15", "", "us-east-1", "sts"),
    ("empty body GET", "GET", "https://sts.us-west-2.amazonaws.com/", (), {}, None, "", "us-west-2", "sts"),
    ("empty bytes body", "POST", "https://sts.amazonaws.com/", (), FORM, b"", "", "us-east-1", "sts"),
    ("query in params", "GET", "https://sts.amazonaws.com/",
     (("Version", "2011-06-15"), ("Action", "GetCallerIdentity")), {}, None, "", "us-east-1", "sts"),
    ("query in the URL", "GET", "https://iam.amazonaws.com/?Version=2010-05-08&Action=ListUsers", (), {}, None,
     "", "us-east-1", "iam"),
    ("repeated keys sorted by value", "GET", "https://example.amazonaws.com/",
     (("b", "2"), ("a", "z"), ("a", "y"), ("a", "")), {}, None, "", "eu-west-1", "service"),
    ("odd characters in params", "GET", "https://example.amazonaws.com/",
     (("key with space", "a+b=c&d/e"), ("ü~", "é😀*!'()"), ("empty", "")), {}, None, "", "eu-central-1", "execute-api"),
    ("session token", "POST", "https://sts.eu-west-1.amazonaws.com/", (), FORM,
     b"Action=GetCallerIdentity&Version=2011-06-15", "FwoGZXIvYXdzEBYaD+token/with=odd+chars", "eu-west-1", "sts"),
    ("path with dot segments and double slashes", "GET", "https://example.amazonaws.com/a/./b//c/../d/", (), {}, None,
     "", "us-east-1", "service"),
    ("path with odd characters", "GET", "https://example.amazonaws.com/caf%C3%A9/a b/~x/%2F", (), {}, None, "",
     "us-east-1", "service"),
    ("header values trimmed and case folded", "GET", "https://example.amazonaws.com/",
     (), {"X-Custom": "  a   b\tc  ", "Content-Type": "text/plain", "User-Agent": "not signed"}, None, "",
     "ap-southeast-2", "service"),
    ("port kept in host", "POST", "http://127.0.0.1:8443/", (), FORM, b"Action=GetCallerIdentity", "",
     "us-east-1", "sts"),
    ("default port dropped from host", "GET", "https://sts.amazonaws.com:443/", (), {}, None, "", "us-east-1", "sts"),
    ("binary body", "PUT", "https://example.amazonaws.com/x", (), {"Content-Type": "application/octet-stream"},
     bytes(range(256)), "tok", "us-east-1", "service"),
    ("JSON body", "POST", "https://example.amazonaws.com/", (),
     {"Content-Type": "application/x-amz-json-1.1", "X-Amz-Target": "AWSCertificateManager.ListCertificates"},
     b'{"MaxItems": 1, "name": "\\u00e9"}', "", "us-east-1", "acm"),
    ("an old signature replaced", "GET", "https://sts.amazonaws.com/", (("Action", "GetCallerIdentity"),),
     {"Authorization": "AWS4-HMAC-SHA256 stale", "X-Amz-Date": "20000101T000000Z"}, None, "", "us-east-1", "sts"),
]


# botocore is imported by the fixture, not at collection: importing it interns thousands of names, and the
# interpreter's table of interned text then grows in the middle of test_history's memory bound


@pytest.fixture
def frozen_botocore(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    import botocore.auth

    at = datetime.datetime.fromtimestamp(NOW, datetime.UTC).replace(tzinfo=None)
    monkeypatch.setattr(botocore.auth, "get_current_datetime", lambda: at)
    yield


def _botocore(method: str, url: str, params: tuple[tuple[str, str], ...], headers: dict[str, str],
              body: bytes | None, token: str, region: str, service: str) -> dict[str, str]:
    import botocore.auth
    from botocore.awsrequest import AWSRequest
    from botocore.credentials import Credentials

    request = AWSRequest(method=method, url=url, headers=dict(headers), data=body or b"",
                         params=list(params) if params else None)
    botocore.auth.SigV4Auth(Credentials(KEY_ID, SECRET, token or None), service, region).add_auth(request)
    return {name: request.headers[name] for name in ("Authorization", "X-Amz-Date", "X-Amz-Security-Token")
            if name in request.headers}


@pytest.mark.parametrize("row", TABLE, ids=[row[0] for row in TABLE])
def test_sigv4_equals_botocore_byte_for_byte(row: Any, frozen_botocore: None) -> None:
    _, method, url, params, headers, body, token, region, service = row
    expected = _botocore(method, url, params, headers, body, token, region, service)
    ours = sigv4_headers(HttpRequest(method, url, params, headers, body), access_key=KEY_ID, secret_key=SECRET,
                         session_token=token, region=region, service=service, now=NOW)
    assert {name: ours[name] for name in expected} == expected
    assert ("X-Amz-Security-Token" in ours) == bool(token)
    assert [name for name in ours if name.lower() == "authorization"] == ["Authorization"]  # the old one is gone


def test_the_timestamp_is_the_given_moment_in_utc() -> None:
    assert sigv4_timestamp(NOW) == "20251206T054640Z"
    assert sigv4_timestamp(NOW + 0.999) == "20251206T054640Z"


def test_the_documented_example_canonical_request() -> None:
    # AWS's own worked example (IAM ListUsers, GET with the query in the URL), docs "Create a signed
    # AWS API request": the canonical request's hash is published there
    import hashlib

    canonical, signed = sigv4_canonical_request(
        "GET", "https://iam.amazonaws.com/?Action=ListUsers&Version=2010-05-08", (),
        [("content-type", "application/x-www-form-urlencoded; charset=utf-8"), ("x-amz-date", "20150830T123600Z")],
        b"")
    assert signed == "content-type;host;x-amz-date"
    assert hashlib.sha256(canonical.encode()).hexdigest() == (
        "f536975d06c0309214f805bb90ccff089219ecd68b2577efef23edd43b7e1a59")


async def test_the_plugin_signs_with_the_targets_credentials_and_the_injected_time(frozen_botocore: None) -> None:
    creds = {"access_key_id": KEY_ID, "secret_access_key": SECRET, "session_token": "tok"}
    signer = make_signer("sigv4", SignerContext(creds, SigV4Options(region="eu-west-1", service="sts"),
                                                "https://sts.eu-west-1.amazonaws.com"))
    request = HttpRequest("POST", "https://sts.eu-west-1.amazonaws.com/", (), FORM,
                          b"Action=GetCallerIdentity&Version=2011-06-15")

    async def no_send(_: HttpRequest) -> Any:
        raise AssertionError("sigv4 sends nothing of its own")

    signed = await signer.sign(request, NOW, no_send)
    expected = _botocore("POST", request.url, (), FORM, request.body, "tok", "eu-west-1", "sts")
    assert {name: signed.headers[name] for name in expected} == expected
    assert signed.body == request.body and request.headers == FORM  # the check's own request is untouched


async def test_a_region_credential_wins_over_the_catalogs_region(frozen_botocore: None) -> None:
    creds = {"access_key_id": KEY_ID, "secret_access_key": SECRET, "region": "ap-northeast-1"}
    signer = make_signer("sigv4", SignerContext(creds, SigV4Options(region="us-east-1", service="sts"), ""))

    async def no_send(_: HttpRequest) -> Any:
        raise AssertionError

    signed = await signer.sign(HttpRequest("GET", "https://sts.ap-northeast-1.amazonaws.com/"), NOW, no_send)
    assert "/ap-northeast-1/sts/aws4_request" in signed.headers["Authorization"]
