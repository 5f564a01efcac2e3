"""The ``basic`` signer (Twilio): HTTP basic auth from two credentials, a path variable, redaction."""

from __future__ import annotations

import base64

from exporter.model import Answer, HttpRequest
from exporter.signers import BasicOptions, SignerContext, make_signer


async def no_send(request: HttpRequest) -> Answer:
    raise AssertionError("the basic signer sends nothing")


def ctx(options: BasicOptions, **creds: str) -> SignerContext:
    return SignerContext(creds, options, "http://127.0.0.1:1")


async def test_basic_header_variables_and_secrets() -> None:
    signer = make_signer("basic", ctx(BasicOptions(username_credential="account_sid", password_credential="auth_token"),
                                      account_sid="AC123", auth_token="tok:en"))
    signed = await signer.sign(HttpRequest("GET", "http://x/Accounts/AC123.json"), 0.0, no_send)
    # a colon in the password survives: only the first one separates user and password
    assert signed.headers["Authorization"] == "Basic " + base64.b64encode(b"AC123:tok:en").decode()
    assert base64.b64decode(signed.headers["Authorization"][6:]).decode().partition(":")[2] == "tok:en"
    assert signer.variables() == {"account_sid": "AC123"}
    # the encoded pair is the token in another encoding: it is redacted like the token
    assert base64.b64encode(b"AC123:tok:en").decode() in signer.secrets()


async def test_an_api_key_as_user_keeps_the_account_sid_in_the_path() -> None:
    opts = BasicOptions(username_credential="api_key_sid", password_credential="api_key_secret",
                        path_variables=("account_sid", "nope"))
    signer = make_signer("basic", ctx(opts, account_sid="AC123", api_key_sid="SK9", api_key_secret="s3"))
    signed = await signer.sign(HttpRequest("GET", "http://x/"), 0.0, no_send)
    assert signed.headers["Authorization"] == "Basic " + base64.b64encode(b"SK9:s3").decode()
    assert signer.variables() == {"account_sid": "AC123"}
