"""The documented signing test vectors (docs/vendors.md), through the pure functions and through the
signer plug-ins the exporter actually uses, chosen by name as a catalog chooses them."""

from __future__ import annotations

import ast
import json
import sys
from calendar import timegm
from pathlib import Path
from urllib.parse import parse_qsl, urlsplit

import pytest

from exporter import model
from exporter.model import Answer, HttpRequest
from exporter.signatures import md5_signature, rubiq_issued_at, rubiq_token
from exporter.signers import (
    SIGNERS,
    HeaderOptions,
    Md5ParamsOptions,
    RubiqOptions,
    SignerContext,
    make_signer,
)

FLIP_SECRET = "123ABCDE-456-7890-FGH"
FLIP_KEY = "45FD-267-7SG7832"
RUBIQ_KEY, RUBIQ_SECRET = "32767", "RCL1EDAYOVHANLL3A51G"
#: 2014-04-08 04:59:41 UTC, the IssuedAt of Rubiq's vector
RUBIQ_NOW = float(timegm((2014, 4, 8, 4, 59, 41, 0, 0, 0)))


@pytest.mark.parametrize(("params", "expected"), [
    ([("action", "collection.getCollection"), ("collectionHash", "fxh4k89"), ("apiKey", FLIP_KEY)],
     "26e781d3d1751d82ec284acf4a019def"),
    ([("action", "user.getStats"), ("apiKey", FLIP_KEY)], "8606359ca21901b323baf9d61e0ca899"),
])
def test_flipsnack_md5_vectors(params: list[tuple[str, str]], expected: str) -> None:
    assert md5_signature(FLIP_SECRET, params) == expected
    # the order the params come in does not matter, and a signature param already present is ignored
    assert md5_signature(FLIP_SECRET, [*reversed(params), ("signature", "stale")]) == expected


def test_flipsnack_file_param_is_not_signed() -> None:
    params = [("action", "user.getStats"), ("apiKey", FLIP_KEY), ("file", "x.pdf")]
    assert md5_signature(FLIP_SECRET, params, ("signature", "file")) == "8606359ca21901b323baf9d61e0ca899"
    assert md5_signature(FLIP_SECRET, params) != "8606359ca21901b323baf9d61e0ca899"


@pytest.mark.parametrize(("method", "url", "expected"), [
    ("POST", "https://api.rubiq.net/entity", "eTqyykFcR5kN2kvb9RZiRXwV87xrowNREeNf6GGsIEA="),
    ("GET", "https://api.rubiq.net/entity/id/123456/data", "aVOnOd9eJ6j0sp0UpbPgxTK33oxYDX+4no8yk+UuBxE="),
])
def test_rubiq_hmac_vectors(method: str, url: str, expected: str) -> None:
    assert rubiq_issued_at(RUBIQ_NOW) == "20140408045941"
    assert rubiq_token(RUBIQ_KEY, RUBIQ_SECRET, method, url, "20140408045941") == expected
    assert rubiq_token(RUBIQ_KEY, RUBIQ_SECRET, method.lower(), url, "20140408045941") == expected


def _ctx(credentials: dict[str, str], options: object) -> SignerContext:
    return SignerContext(credentials, options, "https://vendor.invalid")


async def _no_calls(request: HttpRequest) -> Answer:
    raise AssertionError(f"a stateless signer sent {request.method} {request.url}")


async def test_md5_plugin_signs_flipsnacks_health_check_as_documented() -> None:
    signer = make_signer("md5_sorted_params", _ctx(
        {"api_key": FLIP_KEY, "secret": FLIP_SECRET},
        Md5ParamsOptions(key_param="apiKey", key_credential="api_key", secret_credential="secret",
                         signature_param="signature", exclude=("file",))))
    signed = await signer.sign(HttpRequest("GET", "https://api.flipsnack.com/v1/", (("action", "user.getStats"),)),
                               RUBIQ_NOW, _no_calls)
    params = dict(signed.params)
    assert params == {"action": "user.getStats", "apiKey": FLIP_KEY, "signature": "8606359ca21901b323baf9d61e0ca899"}


async def test_md5_plugin_with_a_timestamp_signs_it_too_for_bannersnack() -> None:
    signer = make_signer("md5_sorted_params", _ctx(
        {"client_id": "cid", "secret": "s3cret"},
        Md5ParamsOptions(key_param="client_id", key_credential="client_id", secret_credential="secret",
                         signature_param="signature", timestamp_param="t")))
    req = HttpRequest("GET", "https://bannersnack.invalid/wapi/2.0/", (("action", "get-banner-urls"), ("hash", "h")))
    signed = await signer.sign(req, 1_700_000_123.9, _no_calls)
    params = dict(signed.params)
    assert params["t"] == "1700000123"
    assert params["client_id"] == "cid"
    material = "actionget-banner-urls" + "client_idcid" + "hashh" + "t1700000123"
    import hashlib

    assert params["signature"] == hashlib.md5(("s3cret" + material).encode()).hexdigest()
    # signing twice (a retry) replaces the signature instead of adding a second one
    again = await signer.sign(signed, 1_700_000_124.0, _no_calls)
    assert [k for k, _ in again.params].count("signature") == 1


async def test_md5_plugin_signing_the_same_request_again_signs_each_new_timestamp() -> None:
    # the signer keeps the constant part of the last request's params; every probe's timestamp
    # (a key sorting anywhere among them) must still be signed exactly as the scheme says
    signer = make_signer("md5_sorted_params", _ctx(
        {"k": "key", "secret": "s3cret"},
        Md5ParamsOptions(key_param="k", key_credential="k", secret_credential="secret",
                         signature_param="signature", timestamp_param="m", exclude=("skip",))))
    req = HttpRequest("GET", "https://vendor.invalid/", (("a", "1"), ("skip", "x"), ("z", "2")))
    for now in (1_700_000_000.0, 1_700_000_001.5, 1_700_000_777.0):
        signed = await signer.sign(req, now, _no_calls)
        unsigned = [p for p in signed.params if p[0] != "signature"]
        assert unsigned == [("a", "1"), ("skip", "x"), ("z", "2"), ("k", "key"), ("m", str(int(now)))]
        assert dict(signed.params)["signature"] == md5_signature("s3cret", unsigned, ("signature", "skip"))
    other = await signer.sign(HttpRequest("GET", "https://vendor.invalid/", (("b", "3"),)), 5.0, _no_calls)
    assert dict(other.params)["signature"] == md5_signature("s3cret", [("b", "3"), ("k", "key"), ("m", "5")])


async def test_rubiq_plugin_sends_the_documented_signature_header() -> None:
    signer = make_signer("rubiq_hmac", _ctx(
        {"app_key": RUBIQ_KEY, "app_secret": RUBIQ_SECRET},
        RubiqOptions(app_key_credential="app_key", app_secret_credential="app_secret", header="Signature",
                     app_key_json_number=True)))
    signed = await signer.sign(HttpRequest("GET", "https://api.rubiq.net/entity/id/123456/data"), RUBIQ_NOW,
                               _no_calls)
    header = json.loads(signed.headers["Signature"])
    assert header == {"AppKey": 32767, "IssuedAt": "20140408045941",
                      "Token": "aVOnOd9eJ6j0sp0UpbPgxTK33oxYDX+4no8yk+UuBxE="}


async def test_rubiq_plugin_signs_the_full_url_with_its_query() -> None:
    signer = make_signer("rubiq_hmac", _ctx({"key": RUBIQ_KEY, "secret": RUBIQ_SECRET}, RubiqOptions(
        app_key_credential="key", app_secret_credential="secret", header="X-Sig")))
    signed = await signer.sign(HttpRequest("GET", "https://api.rubiq.net/entity", (("q", "a b"),)), RUBIQ_NOW,
                               _no_calls)
    header = json.loads(signed.headers["X-Sig"])
    token = header["Token"]
    assert header["AppKey"] == RUBIQ_KEY  # a string unless the catalog asks for a JSON number
    url = "https://api.rubiq.net/entity?q=a+b"
    assert dict(parse_qsl(urlsplit(url).query)) == {"q": "a b"}
    assert token == rubiq_token(RUBIQ_KEY, RUBIQ_SECRET, "GET", url, "20140408045941")


async def test_header_plugin_builds_bizwebs_token_header() -> None:
    signer = make_signer("header", _ctx({"token": "t" * 32}, HeaderOptions(header="BW-API-Key",
                                                                          template="Token {token}")))
    signed = await signer.sign(HttpRequest("POST", "https://shop.invalid/api/graphql",
                                           headers={"Content-Type": "application/json"}), RUBIQ_NOW, _no_calls)
    assert signed.headers == {"Content-Type": "application/json", "BW-API-Key": "Token " + "t" * 32}


def test_signers_are_plugins_chosen_by_name() -> None:
    assert {"none", "header", "md5_sorted_params", "rubiq_hmac", "bearer_login"} <= set(SIGNERS)


def test_the_shared_records_module_imports_only_the_standard_library() -> None:
    tree = ast.parse(Path(model.__file__).read_text())
    imported = {alias.name.split(".")[0] for node in ast.walk(tree) if isinstance(node, ast.Import)
                for alias in node.names}
    imported |= {node.module.split(".")[0] for node in ast.walk(tree)
                 if isinstance(node, ast.ImportFrom) and node.module and not node.level}
    assert imported and imported <= sys.stdlib_module_names | {"__future__"}
    assert not [node for node in ast.walk(tree) if isinstance(node, ast.ImportFrom) and node.level]


def test_the_wire_url_quotes_every_parameter_exactly_as_urlencode_does() -> None:
    # the prober sends this string and Rubiq signs it: a shortcut for plain values must not change a byte
    import random
    import string
    from urllib.parse import urlencode

    from yarl import URL

    from exporter.signatures import wire_url

    rng = random.Random(15)
    alphabet = string.printable + "éü😀\u00a0"
    for _ in range(2000):
        params = tuple(("".join(rng.choices(alphabet, k=rng.randint(0, 6))),
                        "".join(rng.choices(alphabet, k=rng.randint(0, 8)))) for _ in range(rng.randint(1, 4)))
        request = HttpRequest("GET", "http://vendor.invalid/a b/é", params)
        assert wire_url(request) == f"{URL(request.url)}?{urlencode(params)}", params
    assert wire_url(HttpRequest("GET", "http://vendor.invalid/x")) == "http://vendor.invalid/x"


def test_the_errors_that_carry_fields_survive_copy_and_pickle_with_every_field() -> None:
    # an exception is copied as type(self)(*self.args), and args holds the message alone: a dataclass
    # error with more than one field could be neither copied nor pickled (TypeError: missing arguments)
    import copy
    import pickle

    from exporter.engine import TransportError

    refused = TransportError(7, "Failed to connect", os_errno=111, status=0, encoding="gzip")
    refused.add_note("through the corp proxy")
    login = model.SignError("auth", "invalid_client", "the token endpoint refused the client", 401)
    for error in (refused, login):
        for again in (copy.copy(error), copy.deepcopy(error), pickle.loads(pickle.dumps(error))):
            assert again is not error and type(again) is type(error)
            assert vars(again) == vars(error) and str(again) == str(error) and again.args == error.args


async def test_each_probe_that_waited_for_a_failed_token_fetch_raises_its_own_error() -> None:
    # one fetch fails in transport for every probe that waited for it; each must raise an exception of
    # its own: one object raised in many tasks collects every task's traceback and context
    import asyncio

    from exporter.engine import TransportError
    from exporter.signers import OAuth2Options

    signer = make_signer("oauth2", _ctx({"client_id": "id", "client_secret": "s3cret"},
                                        OAuth2Options(token_url="https://login.invalid/token")))
    release = asyncio.Event()

    async def unreachable(request: HttpRequest) -> Answer:
        await release.wait()
        raise TransportError(7, "Failed to connect to login.invalid port 443", os_errno=111)

    probes = [asyncio.ensure_future(signer.sign(HttpRequest("GET", "https://vendor.invalid/x"), 0.0, unreachable))
              for _ in range(3)]
    await asyncio.sleep(0)
    release.set()
    raised = await asyncio.gather(*probes, return_exceptions=True)
    assert all(isinstance(error, TransportError) and (error.code, error.os_errno) == (7, 111) for error in raised)
    assert len({id(error) for error in raised}) == 3
