"""A vendor that echoes what we sent, in every encoding a vendor stack may produce, with one
secret straddling the excerpt's cut: no form of any credential or learnt token may reach a page, an
API answer, /metrics, /probe or a log line."""

from __future__ import annotations

import ast
import asyncio
import base64
import html
import json
import logging
import re
import secrets
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any
from urllib.parse import quote, quote_plus

import pytest
from aiohttp import web

from exporter import redact as redact_module
from exporter.clock import FakeClock
from exporter.engine import new_session
from exporter.probe import EXCERPT_BYTES, Prober
from exporter.redact import REDACTED, Redactor, redact
from tests.conftest import config_from, running_exporter, serve


def _json_all(value: str) -> str:
    """Every character as a \\uXXXX escape (surrogate pairs beyond the BMP)."""
    out = []
    for unit in range(0, len(value.encode("utf-16-le")), 2):
        out.append(f"\\u{int.from_bytes(value.encode('utf-16-le')[unit:unit + 2], 'little'):04X}")
    return "".join(out)


def _b64(encode: Callable[[bytes], bytes], offset: int) -> Callable[[str], str]:
    """The value at ``offset`` (mod 3) of a longer encoded text, as in a Basic ``user:password``."""
    return lambda value: encode(("u:"[:offset] + value + "!?").encode()).decode()


ENCODINGS: dict[str, Callable[[str], str]] = {
    "literal": lambda v: v,
    "quote": lambda v: quote(v, safe=""),
    "quote_path": lambda v: quote(v),
    "quote_plus": quote_plus,
    "quote_lower_hex": lambda v: re.sub(r"%[0-9A-F]{2}", lambda m: m.group().lower(), quote(v, safe="")),
    "json": lambda v: json.dumps(v)[1:-1],
    "json_slash": lambda v: json.dumps(v)[1:-1].replace("/", "\\/"),
    "json_every_char": _json_all,
    # some characters escaped, some not: what a hand-rolled encoder or a proxy rewriting URLs makes
    "mixed": lambda v: "".join(quote(c, safe="") if i % 2 else json.dumps(c)[1:-1] for i, c in enumerate(v)),
    **{f"base64_{k}": _b64(base64.b64encode, k) for k in range(3)},
    **{f"base64url_{k}": _b64(base64.urlsafe_b64encode, k) for k in range(3)},
    # the bytes in hex (a debug echo), and a UTF-16 body (a .NET stack's) as the exporter reads it: as UTF-8
    "hex": lambda v: v.encode().hex(),
    "hex_upper": lambda v: v.encode().hex().upper(),
    **{f"utf16_{order}": (lambda codec: lambda v: v.encode(codec).decode("utf-8", "replace"))(f"utf-16-{order}")
       for order in ("le", "be")},
}


def no_secret_shown(texts: list[str], values: list[str]) -> None:
    """None of ``values`` appears in any of ``texts`` in any encoding, whole or its first half."""
    for text in texts:
        for value in values:
            for name, encode in ENCODINGS.items():
                form = encode(value)
                assert form not in text, f"{name} form of a secret shown"
                assert form[: max(6, len(form) // 2)] not in text, f"start of the {name} form of a secret shown"


def test_each_encoding_of_a_secret_is_redacted_and_unrelated_text_is_kept() -> None:
    secret = 'pw/Zq+ r&é😀"\\' + secrets.token_hex(4)
    for name, encode in ENCODINGS.items():
        form = encode(secret)
        shown = redact(f"before {form} after", [secret])
        assert REDACTED in shown and "before " in shown and " after" in shown, (name, shown)
        assert form not in shown and form[: max(4, len(form) // 2)] not in shown, (name, shown)
    for unrelated in ("nothing secret here %41 \\u0041 \\n", "pw/Zq+ r&", "%70%77%2F"):
        assert redact(unrelated, [secret]) == unrelated


def test_a_prepared_redactor_shows_what_redact_shows() -> None:
    secret = 'pw/Zq+ r&é😀"\\' + secrets.token_hex(4)
    hide = Redactor([secret, "abc"])  # a value too short to be a secret is left alone, as by redact
    for text in [f"before {encode(secret)} after abc" for encode in ENCODINGS.values()] + ["nothing %41 here", ""]:
        assert hide(text) == redact(text, [secret, "abc"]), text
    assert secret not in repr(hide)


def test_redaction_is_pure_and_the_views_use_it_without_the_http_client() -> None:
    tree = ast.parse(Path(redact_module.__file__).read_text())
    imported = {alias.name.split(".")[0] for node in ast.walk(tree) if isinstance(node, ast.Import)
                for alias in node.names}
    imported |= {node.module.split(".")[0] for node in ast.walk(tree)
                 if isinstance(node, ast.ImportFrom) and node.module}
    assert imported and imported <= sys.stdlib_module_names | {"__future__"}
    code = ("import sys, exporter.views; "
            "print(sorted(m for m in sys.modules if m.split('.')[0] == 'aiohttp' or m == 'exporter.probe'))")
    run = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60, check=True)
    assert run.stdout.strip() == "[]"


class EchoVendor:
    """movingimage's login scheme on loopback; every check answer (HTTP 503) echoes the password, the
    username and both tokens, all in one encoding per answer, the last of them across the cut."""

    def __init__(self) -> None:
        self.encodings = list(ENCODINGS)
        self.served: list[str] = []
        self.access = self.refresh = ""
        self.login: dict[str, str] = {}

    def _tokens(self) -> dict[str, Any]:
        self.access = "acc/" + secrets.token_urlsafe(12) + "+é"
        self.refresh = "ref/" + secrets.token_urlsafe(12) + " ~"
        return {"accessToken": self.access, "refreshToken": self.refresh, "videoManagerList": [{"id": 7}]}

    async def handle(self, request: web.Request) -> web.Response:
        if request.path == "/auth/login":
            self.login = await request.json()
            return web.json_response(self._tokens())
        if request.path.startswith("/auth/refresh"):
            return web.json_response(self._tokens())
        encoding = self.encodings[len(self.served) % len(self.encodings)]
        self.served.append(encoding)
        encode = ENCODINGS[encoding]
        sent_token = request.headers["Authorization"].removeprefix("Bearer ")
        first = " ".join(encode(v) for v in (self.login["username"], sent_token, self.refresh))
        last = encode(self.login["password"])
        # the cut after the first half of its characters (some take 3 bytes: a UTF-16 form's U+FFFD)
        filler = "x" * (EXCERPT_BYTES - len(first.encode()) - len(last[: len(last) // 2].encode()) - 2)
        body = f"{first} {filler} {last} tail"
        cut = body.encode()[:EXCERPT_BYTES].decode("utf-8", "ignore")
        assert last not in cut and last[: len(last) // 2] in cut  # it really straddles the cut
        return web.Response(status=503, text=body, content_type="text/plain")


def _strings(doc: Any) -> list[str]:
    if isinstance(doc, str):
        return [doc]
    if isinstance(doc, dict):
        return [s for k, v in doc.items() for s in (*_strings(k), *_strings(v))]
    if isinstance(doc, list):
        return [s for v in doc for s in _strings(v)]
    return []


async def test_no_form_of_any_secret_reaches_pages_api_metrics_or_logs(caplog: pytest.LogCaptureFixture) -> None:
    vendor = EchoVendor()
    clock = FakeClock()
    password = 'pw/Zq+ r&é😀"\\' + secrets.token_hex(4)
    username = "user+" + secrets.token_hex(3) + "@example.com"
    caplog.set_level(logging.DEBUG)
    async with serve(vendor.handle) as url:
        raw = {"global": {"interval": "60s", "timeout": "5s"}, "targets": [{
            "name": "echo", "vendor": "movingimage", "base_url": url,
            "credentials": {"username": username, "password": password}}]}
        async with running_exporter(config_from(raw), clock=clock) as run:
            exp = run.exporter
            rounds = len(ENCODINGS) + 2  # every encoding, then two more with refreshed tokens
            for _ in range(200):
                if len(vendor.served) >= rounds and exp.scheduler is not None and exp.scheduler.in_flight() == 0:
                    break
                await clock.advance(61)
                await asyncio.sleep(0.02)
            assert len(vendor.served) >= rounds, vendor.served
            ts = exp.state.get("echo")
            assert ts is not None
            excerpts = [r.excerpt for r in ts.history()]
            assert all(REDACTED in e for e in excerpts) and len(excerpts) >= rounds
            tokens_seen = {vendor.access, vendor.refresh}
            views: dict[str, str] = {}
            for path in ("/", "/targets/echo", "/api/v1/targets", "/api/v1/targets/echo", "/metrics"):
                status, views[path] = await run.get(path)
                assert status == 200, path
            status, views["/probe"] = await run.get("/probe", params={"target": "echo"})
            assert status == 200
    texts = [*views.values(), html.unescape(views["/"]), html.unescape(views["/targets/echo"])]
    for path in ("/api/v1/targets", "/api/v1/targets/echo"):
        texts.extend(_strings(json.loads(views[path])))
    texts.extend(r.getMessage() for r in caplog.records)
    texts.extend(excerpts)
    every = [password, username, *tokens_seen]
    no_secret_shown(texts, every)


async def test_a_secret_echoed_as_the_vendors_error_code_never_becomes_a_label() -> None:
    token = "xoxb-" + secrets.token_hex(8)

    async def slack(request: web.Request) -> web.Response:
        echoed = request.headers.get("Authorization", "").removeprefix("Bearer ")
        return web.json_response({"ok": False, "error": echoed})

    clock = FakeClock()
    async with serve(slack) as url:
        raw = {"global": {"interval": "60s", "timeout": "5s"}, "targets": [
            {"name": "chat", "vendor": "slack", "base_url": url, "credentials": {"token": token}}]}
        async with running_exporter(config_from(raw), clock=clock) as run:
            status, probe = await run.get("/probe", params={"target": "chat"})
            assert status == 200
            texts = [probe, *[(await run.get(p))[1] for p in ("/metrics", "/", "/targets/chat",
                                                             "/api/v1/targets/chat")]]
    assert 'code="redacted"' in probe
    for text in texts:
        assert token not in text and token[5:] not in text


async def test_a_body_seen_before_is_redacted_anew_once_a_login_makes_what_it_echoes_a_secret() -> None:
    # The prober remembers a target's last small body with its excerpt. Here the vendor echoes the same
    # text every time; the second login hands out that very text as the access token: the same body,
    # seen again, must now come out redacted.
    future_token = "tok-" + secrets.token_hex(8)
    tokens = ["tok-" + secrets.token_hex(8), future_token]
    body = f"echo {future_token} end"
    statuses = [503, 401, 503]
    checks: list[int] = []

    async def vendor(request: web.Request) -> web.Response:
        if request.path == "/auth/login":
            return web.json_response({"accessToken": tokens.pop(0), "refreshToken": "ref-" + secrets.token_hex(8),
                                      "videoManagerList": [{"id": 7}]})
        checks.append(1)
        return web.Response(status=statuses[len(checks) - 1], text=body, content_type="text/plain")

    async with serve(vendor) as url, new_session() as session:
        credentials = {"username": "someone", "password": "pw-" + secrets.token_hex(6)}
        cfg = config_from({"targets": [{"name": "echo", "vendor": "movingimage", "base_url": url,
                                        "credentials": credentials}]})
        prober = Prober(session, FakeClock())
        target = cfg.targets[0]
        first = await prober.probe(target)
        assert first.outcome.http_status == 503 and future_token in first.excerpt  # no secret yet
        again = await prober.probe(target)  # 401, a fresh login (learning the token), the same body again
    assert len(checks) == 3 and again.attempts == 2 and again.outcome.http_status == 503
    assert future_token not in again.excerpt and REDACTED in again.excerpt
