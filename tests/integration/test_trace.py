"""A failure explained (issue 26, part 3): ``/probe?debug=true``, ``probe --debug`` and the target page's
traces, against real loopback vendors, a real tinyproxy and real TLS. Each trace tells every login and
request, the answer, what decided the class and what follows; no form of any secret (credentials, the
signer's learnt tokens, the proxy's password) is in any of them."""

from __future__ import annotations

import asyncio
import datetime
import html
import json
import secrets
import ssl
import sys
import time
from pathlib import Path
from typing import Any

import pytest
import trustme
import yaml
from aiohttp import web
from cryptography import x509

from exporter import probe as probe_module
from exporter.clock import FakeClock
from exporter.engine import new_session
from exporter.httpconfig import TLSConfig
from exporter.model import TRACE_MAX_CHARS
from exporter.probe import Prober
from exporter.simulators.faults import FaultServer

from ..conftest import Running, config_from, idle, running_exporter, serve
from ..egress_support import FLIP_CREDS, flip, server_ctx, tinyproxy, write_ca
from .test_redaction import ENCODINGS, EchoVendor, no_secret_shown

ROOT = Path(__file__).resolve().parents[2]


class RecordingEcho(EchoVendor):
    """The echoing movingimage vendor, remembering every token it handed out (each is a secret once
    the signer has learnt it)."""

    def __init__(self) -> None:
        super().__init__()
        self.tokens: list[str] = []

    def _tokens(self) -> dict[str, Any]:
        out = super()._tokens()
        self.tokens += [self.access, self.refresh]
        return out

    async def handle(self, request: web.Request) -> web.Response:
        response = await super().handle(request)
        if not request.path.startswith("/auth/"):
            # the headers echo them too, in the encoding of this answer's body (ASCII forms only)
            encode = ENCODINGS[self.served[-1]]
            token = request.headers["Authorization"].removeprefix("Bearer ")
            values = [encode(v) for v in (token, self.login["password"], self.login["username"])]
            if all(v.isascii() and v.isprintable() for v in values):
                response.headers["X-Echo"] = " ".join(values)
        return response


def _chat(url: str, digit: str) -> dict[str, Any]:
    """A config of one Slack target, ``chat``, at ``url``, probed every minute (its own token each test)."""
    return {"global": {"interval": "60s", "timeout": "5s"}, "targets": [
        {"name": "chat", "vendor": "slack", "base_url": url, "credentials": {"token": "xoxb-" + digit * 20}}]}


async def _debug(run: Running, name: str, method: str = "GET") -> tuple[int, str, str]:
    async with run.session.request(method, run.url + "/probe", params={"target": name, "debug": "true"}) as r:
        return r.status, await r.text(), r.headers.get("X-Apistatus-Cached", "")


async def _cli(config: Path, *args: str) -> tuple[int, str, str]:
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "exporter", "probe", "--config.file", str(config), *args, cwd=ROOT,
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE)
    out, err = await asyncio.wait_for(proc.communicate(), 60)
    assert proc.returncode is not None
    return proc.returncode, out.decode(), err.decode()


async def test_debug_traces_tell_logins_requests_proxy_and_class_and_hide_every_secret(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(probe_module, "TRACE_EVERY", (0.0, 0.0))  # every probe traced: each encoding meets one
    vendor = RecordingEcho()
    clock = FakeClock()
    password = 'pw/Zq+ r&é😀"\\' + secrets.token_hex(4)
    username = "user+" + secrets.token_hex(3) + "@example.com"
    proxy_password = "pxpw" + secrets.token_hex(8)  # tinyproxy's config takes no quoting
    texts: list[str] = []
    with tinyproxy(tmp_path, auth=("squidward", proxy_password)) as proxy:
        async with serve(vendor.handle) as url:
            raw = {"global": {"interval": "60s", "timeout": "5s",
                              "http_client": {"proxy_url": proxy.url_with("squidward", proxy_password)}},
                   "targets": [{"name": "echo", "vendor": "movingimage", "base_url": url,
                                "credentials": {"username": username, "password": password}}]}
            async with running_exporter(config_from(raw), clock=clock) as run:
                status, first, cached = await _debug(run, "echo")
                assert status == 200 and cached == "0", first
                texts.append(first)
                # the whole story of the probe, in order: the signer's login, then the check
                assert "a probe was made now for this request; its trace:" in first
                assert "[1] login: POST " + url + "/auth/login" in first and "[2] check: GET " + url in first
                assert "body: not shown (a login's answer carries tokens)" in first
                assert "proxy: http://squidward@127.0.0.1:" in first
                assert "answer: HTTP 503" in first and "timings: resolve " in first
                assert "classified by: code_from[1] (the HTTP status) gave code 503" in first
                assert "catalog entry: code 503 is not in the movingimage catalog -> unknown" in first
                assert "passed over, HTTP 503 is not in its when_status" in first
                assert "sent headers: Authorization: <redacted>" in first
                assert "next: next probe in" in first
                # every later probe echoes the secrets in another encoding; each trace is kept redacted
                traced: set[float] = set()
                for _ in range(len(ENCODINGS) + 2):
                    ts = run.exporter.state.get("echo")
                    assert ts is not None
                    await clock.advance(max(0.0, ts.next_probe_at - clock.time()) + 0.01)
                    await idle(run)
                    texts.append((await _debug(run, "echo"))[1])
                    kept = ts.traces()["failure"]
                    assert kept is not None and "<redacted>" in kept[1]
                    traced.add(kept[0])
                    texts.append(kept[1])
                    # the JSON API carries the same trace: its raw bytes and the decoded text are checked
                    status, raw_api = await run.get("/api/v1/targets/echo")
                    assert status == 200
                    api = json.loads(raw_api)["traces"]
                    assert api["last_failure"] == {"time": round(kept[0], 3), "text": kept[1]}
                    texts += [raw_api, api["last_failure"]["text"]]
                assert len(traced) == len(ENCODINGS) + 2  # a trace of each probe, so of each encoding
                status, page = await run.get("/targets/echo")
                assert status == 200
                texts += [page, html.unescape(page)]
                assert 'id="trace-failure"' in page and "Last success traced: none yet" in page
                ts = run.exporter.state.get("echo")
                assert ts is not None
                kept = ts.traces()["failure"]
                assert kept is not None and len(kept[1]) <= TRACE_MAX_CHARS
            assert len(vendor.served) >= len(ENCODINGS) + 2
            # the CLI, text and JSON, through the same proxy
            config = tmp_path / "config.yml"
            config.write_text(yaml.safe_dump(raw))
            code, out, err = await _cli(config, "--debug", "echo")
            assert code == 1 and not err, err
            # what a running exporter does next: confirm the failure (confirm_failures, on by default)
            assert "[1] login: POST" in out and "next: confirm_failures: the failure (unknown) is re-probed" in out
            texts += [out]
            code, out, err = await _cli(config, "--debug", "--json", "echo")
            assert code == 1 and not err, err
            doc = json.loads(out)
            assert "[2] check: GET" in doc["trace"] and doc["class"] == "unknown"
            texts += [out, doc["trace"]]
    assert len(vendor.tokens) >= 4
    no_secret_shown(texts, [password, username, proxy_password, *vendor.tokens])


async def test_debug_probe_obeys_backoff_and_shows_the_latest_trace_instead() -> None:
    calls: list[str] = []

    async def slack(request: web.Request) -> web.Response:
        calls.append(request.path)
        return web.json_response({"ok": False, "error": "ratelimited"}, status=429, headers={"Retry-After": "120"})

    clock = FakeClock()
    async with serve(slack) as url:
        raw = _chat(url, "1")
        async with running_exporter(config_from(raw), clock=clock) as run:
            status, first, cached = await _debug(run, "chat")
            assert status == 200 and cached == "0" and len(calls) == 1
            assert "code_from[0] (body error (type string)) gave code ratelimited" in first
            assert "the catalog's codes[ratelimited] -> rate_limited" in first
            assert "note: wait 120s before the next call (the Retry-After header)" in first
            assert "next: backoff after rate_limited (the vendor's wait of 120s): next probe in 120s" in first
            # in backoff: no call, the latest trace, and why
            status, again, cached = await _debug(run, "chat")
            assert status == 200 and cached == "1" and len(calls) == 1
            assert again.startswith("no probe was made now: the target is in backoff for 120s more (after "
                                    "rate_limited); the latest kept trace:")
            assert first.split("\n", 1)[1] == again.split("\n", 1)[1]
            # HEAD never calls either
            status, _, _ = await _debug(run, "chat", "HEAD")
            assert status == 200 and len(calls) == 1
            status, bad = await run.get("/probe", params={"target": "chat", "debug": "maybe"})
            assert status == 400 and "debug takes true or false" in bad


async def test_target_page_keeps_the_last_failure_and_the_last_success() -> None:
    answers = [({"ok": False, "error": "invalid_auth"}, 200), ({"ok": True}, 200)]
    huge = {f"x-filler-{i}": "v" * 500 for i in range(60)}

    async def slack(request: web.Request) -> web.Response:
        body, status = answers[0] if len(answers) == 1 else answers.pop(0)
        return web.json_response(body, status=status, headers=huge)

    clock = FakeClock()
    async with serve(slack) as url:
        raw = _chat(url, "2")
        async with running_exporter(config_from(raw), clock=clock) as run:
            before = json.loads((await run.get("/api/v1/targets/chat"))[1])["traces"]
            status, text, _ = await _debug(run, "chat")
            assert "codes[invalid_auth] -> auth" in text and " ..." in text and len(text) < 4096
            ts = run.exporter.state.get("chat")
            assert ts is not None
            await clock.advance(ts.next_probe_at - clock.time() + 0.01)  # the next planned probe
            await idle(run)
            assert ts is not None and ts.last is not None and ts.last.outcome.cls == "ok"
            status, page = await run.get("/targets/chat")
            api_status, raw_api = await run.get("/api/v1/targets/chat")
            api = json.loads(raw_api)
            listing = json.loads((await run.get("/api/v1/targets"))[1])
    assert status == 200
    failure = page.split('id="trace-failure"', 1)[1].split("</details>", 1)[0]
    success = page.split('id="trace-success"', 1)[1].split("</details>", 1)[0]
    assert "codes[invalid_auth] -&gt; auth" in failure and "result: auth (down)" in failure
    assert "result: ok (up)" in success and "code_from[1] (body ok (equal to True: code ok)) gave code ok" in success
    assert '<details open class="trace" id="trace-failure">' in page  # the failure unfolded, the success folded
    assert '<details class="trace" id="trace-success">' in page
    kept = ts.traces()
    assert kept["failure"] is not None and kept["success"] is not None
    # the JSON API: both, as kept; the list of targets leaves them out
    assert api_status == 200 and api["traces"] == {
        "last_failure": {"time": round(kept["failure"][0], 3), "text": kept["failure"][1]},
        "last_success": {"time": round(kept["success"][0], 3), "text": kept["success"][1]}}
    assert "result: auth (down)" in api["traces"]["last_failure"]["text"]
    assert "traces" not in listing and all("traces" not in t for t in listing["targets"])
    assert before == {"last_failure": None, "last_success": None}
    assert all(len(t[1]) <= TRACE_MAX_CHARS for t in kept.values() if t is not None)


def _day_cert(ca: trustme.CA, version: str) -> tuple[trustme.LeafCert, ssl.SSLContext]:
    """A certificate for 127.0.0.1 valid from 30 days ago to a year on (whole days, so the trace's dates
    are known), served with TLS ``version`` only."""
    today = datetime.datetime.now(datetime.UTC).replace(hour=0, minute=0, second=0, microsecond=0, tzinfo=None)
    leaf = ca.issue_cert("127.0.0.1", not_before=today - datetime.timedelta(days=30),
                         not_after=today + datetime.timedelta(days=365))
    ctx = server_ctx(leaf)
    ctx.minimum_version = ctx.maximum_version = {"1.2": ssl.TLSVersion.TLSv1_2, "1.3": ssl.TLSVersion.TLSv1_3}[version]
    return leaf, ctx


@pytest.mark.parametrize("version", ["1.2", "1.3"])
async def test_debug_traces_tell_the_tls_version_and_the_certificate_dates(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch, version: str) -> None:
    monkeypatch.setattr(probe_module, "TRACE_EVERY", (0.0, 0.0))  # the scheduled probe's trace is kept too
    ca = trustme.CA()
    leaf, ctx = _day_cert(ca, version)
    cert = x509.load_pem_x509_certificate(leaf.cert_chain_pems[0].bytes())  # an independent reading
    start, end = cert.not_valid_before_utc, cert.not_valid_after_utc
    valid = (f"certificate valid {start:%Y-%m-%d} .. {end:%Y-%m-%d} (notBefore {start:%Y-%m-%d %H:%M:%S} UTC, "
             f"notAfter {end:%Y-%m-%d %H:%M:%S} UTC, expires in ")
    srv = await FaultServer.start(ctx)
    try:
        raw = {"global": {"interval": "60s", "timeout": "5s",
                          "http_client": {"tls_config": {"ca_file": write_ca(ca, tmp_path / "ca.pem")}}},
               "targets": [flip("t", srv.url("ok"))]}
        clock = FakeClock(time.time())
        async with running_exporter(config_from(raw), clock=clock) as run:
            status, text, _ = await _debug(run, "t")
            ts = run.exporter.state.get("t")
            assert ts is not None
            await clock.advance(ts.next_probe_at - clock.time() + 0.01)  # a scheduled probe, no debug
            await idle(run)
            kept = ts.traces()["success"]
        config = tmp_path / "config.yml"
        config.write_text(yaml.safe_dump(raw))
        code, out, err = await _cli(config, "--debug", "t")
    finally:
        await srv.close()
    assert status == 200 and "result: ok (up)" in text
    assert code == 0 and not err, err
    for shown in (text, out):  # /probe?debug=true and probe --debug alike
        line = next(line for line in shown.splitlines() if line.startswith("    tls: "))
        assert line.startswith(f"    tls: TLS {version} (") and valid in line, line
        assert "proxy: none (direct)" in shown
    # a scheduled probe's trace: the dates (its connection was reused: the ones of the last handshake),
    # and no version it did not read
    assert kept is not None and kept[1] != text
    assert "tls: TLS version not recorded (a debug trace records it" in kept[1] and valid in kept[1], kept[1]
    # curl's verbose text saw the signed request's headers: none of it reaches a trace
    no_secret_shown([text, out, kept[1]], [v + "-t" for v in FLIP_CREDS.values()])


async def _debug_trace_behind(ctx: ssl.SSLContext, ca: trustme.CA, tmp_path: Path) -> tuple[int, str]:
    """The status and text of /probe?debug=true for a target served with ``ctx``, trusting ``ca``."""
    srv = await FaultServer.start(ctx)
    try:
        raw = {"global": {"interval": "60s", "timeout": "5s",
                          "http_client": {"tls_config": {"ca_file": write_ca(ca, tmp_path / "ca.pem")}}},
               "targets": [flip("t", srv.url("ok"))]}
        async with running_exporter(config_from(raw), clock=FakeClock(time.time())) as run:
            status, text, _ = await _debug(run, "t")
    finally:
        await srv.close()
    return status, text


async def test_a_certificate_whose_subject_reads_like_curls_tls_line_does_not_set_the_tls_version(
        tmp_path: Path) -> None:
    # curl's verbose text prints the vendor's subject and issuer after its own "SSL connection using"
    # line: a name written like that line must not become the trace's TLS version and cipher
    ca = trustme.CA(organization_unit_name="SSL connection using TLSv1 / ISSUER_SAYS_SO")
    leaf = ca.issue_cert("127.0.0.1", common_name="SSL connection using TLSv1.1 / SUBJECT_SAYS_SO")
    ctx = server_ctx(leaf)
    ctx.minimum_version = ctx.maximum_version = ssl.TLSVersion.TLSv1_3
    status, text = await _debug_trace_behind(ctx, ca, tmp_path)
    line = next(line for line in text.splitlines() if line.startswith("    tls: "))
    assert status == 200 and line.startswith("    tls: TLS 1.3 (TLS_"), line
    assert "SAYS_SO" not in text


@pytest.mark.parametrize("version", [ssl.TLSVersion.TLSv1_2, ssl.TLSVersion.TLSv1_3])
async def test_a_debug_request_reads_the_certificate_the_vendor_presents_now(version: ssl.TLSVersion) -> None:
    # a vendor renews its certificate and keeps its session ticket keys: the debug trace, asked for to
    # see what the vendor presents now, must show the new certificate, not the one of the last full
    # handshake (a resumed TLS session carries no certificate)
    ca = trustme.CA()
    old = ca.issue_cert("127.0.0.1", not_after=datetime.datetime(2099, 1, 1))
    new = ca.issue_cert("127.0.0.1", not_after=datetime.datetime(2199, 1, 1))
    ctx = server_ctx(old, max_version=version)
    srv = await FaultServer.start(ctx)
    try:
        async with new_session(TLSConfig(insecure_skip_verify=True)) as session:
            async def debug_request() -> tuple[float, float] | None:
                resp = await session.request("GET", srv.url("ok"), {}, None, time.monotonic() + 5, 4096, detail=True)
                assert resp.status == 200 and resp.tls
                return resp.cert_validity
            before = await debug_request()
            new.configure_cert(ctx)  # the same context: the same ticket keys, another certificate
            after = await debug_request()
    finally:
        await srv.close()
    assert before is not None and time.gmtime(before[1]).tm_year == 2099
    assert after is not None and time.gmtime(after[1]).tm_year == 2199


async def test_a_chain_whose_intermediate_expires_first_says_so(tmp_path: Path) -> None:
    # trustme's intermediate ends in 3000: a leaf made to outlive it (OpenSSL accepts such a chain)
    root = trustme.CA()
    intermediate = root.create_child_ca()
    leaf = intermediate.issue_cert("127.0.0.1", not_after=datetime.datetime(3001, 1, 1))
    status, text = await _debug_trace_behind(server_ctx(leaf), root, tmp_path)
    chain = [x509.load_pem_x509_certificate(pem.bytes()) for pem in leaf.cert_chain_pems]
    first = min(c.not_valid_after_utc for c in chain)
    assert status == 200 and first < chain[0].not_valid_after_utc
    assert f"certificate chain expires {first:%Y-%m-%d %H:%M:%S} UTC (in " in text, text
    assert "certificate valid " in text and "notAfter 3001-01-01 00:00:00 UTC" in text


async def test_a_repeated_answer_is_traced_again_only_after_a_while_a_new_one_at_once() -> None:
    answers = ["invalid_auth"]

    async def slack(request: web.Request) -> web.Response:
        return web.json_response({"ok": False, "error": answers[-1]})

    clock = FakeClock()
    async with serve(slack) as url, new_session() as session:
        target = config_from({"targets": [{"name": "chat", "vendor": "slack", "base_url": url,
                                           "credentials": {"token": "xoxb-" + "3" * 20}}]}).targets[0]
        prober = Prober(session, clock)
        assert (await prober.probe(target)).trace is not None
        await clock.advance(30)
        assert (await prober.probe(target)).trace is None  # the same failure, traced 30 s ago
        forced = probe_module.FORCE_TRACE.set(True)
        assert (await prober.probe(target)).trace is not None  # asked for (debug)
        probe_module.FORCE_TRACE.reset(forced)
        answers.append("account_inactive")
        assert (await prober.probe(target)).trace is not None  # another code: told at once
        await clock.advance(probe_module.TRACE_EVERY[1] + 1)
        answers.append("account_inactive")
        assert (await prober.probe(target)).trace is not None  # the same again, a minute on


async def test_debug_probe_without_budget_room_sends_nothing_and_says_so() -> None:
    # two targets on one Flipsnack key share its budget; a share of it allows one request a minute
    srv = await FaultServer.start()
    try:
        same_key = {"api_key": "shared-key-1234", "secret": "shared-secret-1234"}
        targets = [{**flip(name, srv.url("ok")), "credentials": same_key} for name in ("a", "b")]
        raw = {"global": {"interval": "10m", "timeout": "3s", "probe_share": 0.01}, "targets": targets}
        clock = FakeClock()
        async with running_exporter(config_from(raw), clock=clock) as run:
            status, first, cached = await _debug(run, "a")
            assert status == 200 and cached == "0" and "result: ok (up)" in first
            sent = srv.requests["ok"]
            await clock.advance(6)  # b's first planned probe is due (and held back: no budget room)
            await idle(run)
            status, second, cached = await _debug(run, "b")
    finally:
        await srv.close()
    assert status == 200 and cached == "1" and srv.requests["ok"] == sent == 1
    assert second.startswith("no probe was made now: the credential's request budget has no room for ")
    assert "no trace is kept yet" in second


async def test_a_refused_token_and_a_refused_login_are_each_a_step_of_the_trace() -> None:
    logins: list[int] = []

    async def vendor(request: web.Request) -> web.Response:
        if request.path == "/auth/login":
            logins.append(1)
            if len(logins) > 1:  # the fresh login after the refused token is refused too
                return web.json_response({"code": "LOGIN_FAILED"}, status=401)
            return web.json_response({"accessToken": "tok-" + secrets.token_hex(8),
                                      "refreshToken": "ref-" + secrets.token_hex(8), "videoManagerList": [{"id": 7}]})
        return web.json_response({"code": "TOKEN_EXPIRED"}, status=401)

    async with serve(vendor) as url, new_session() as session:
        target = config_from({"targets": [{"name": "mi", "vendor": "movingimage", "base_url": url,
                                           "credentials": {"username": "someone", "password": "pw-0123456789"}}]}
                             ).targets[0]
        result = await Prober(session, FakeClock()).probe(target)
    assert result.trace is not None and result.outcome.cls == "auth"
    steps = [line.split(":", 1)[0] for line in result.trace.splitlines() if line.startswith("[")]
    assert steps == ["[1] login", "[2] check", "[3] login"], result.trace
    assert "cost: 2 attempts, 3 requests" in result.trace
    assert "classified by: the signer: the check was not sent" in result.trace
    assert result.trace.count("answer: HTTP 401") == 2


async def test_control_characters_of_an_answer_reach_no_trace_output_raw(tmp_path: Path) -> None:
    hostile = "boom \x1b[2J\x07 \u202eevil\u202c \x00 end\r\nforged: line"

    async def slack(request: web.Request) -> web.Response:
        return web.Response(status=503, text=hostile, content_type="text/plain")

    async with serve(slack) as url:
        raw = _chat(url, "4")
        async with running_exporter(config_from(raw), clock=FakeClock()) as run:
            status, text, _ = await _debug(run, "chat")
            _, page = await run.get("/targets/chat")
        config = tmp_path / "config.yml"
        config.write_text(yaml.safe_dump(raw))
        _, out, _ = await _cli(config, "--debug", "chat")
    assert status == 200 and "\\x1b[2J\\x07" in text and "\\x1b[2J\\x07" in out
    traces = page.split('id="traces"', 1)[1].split("<h2>Recent probes", 1)[0]
    for shown in (text, out, traces):
        assert not any(c in shown for c in "\x1b\x07\x00\u202e\r"), repr(shown)
    # the vendor's line break is written out, so it cannot forge a line of the trace
    assert not any(line.startswith("forged") for line in (text + out).splitlines())


async def test_a_login_that_outlasts_the_timeout_is_a_step_without_answer() -> None:
    async def vendor(request: web.Request) -> web.Response:
        await asyncio.sleep(2)  # the login never answers within the target's timeout (1 s)
        return web.json_response({})

    async with serve(vendor) as url, new_session() as session:
        target = config_from({"global": {"timeout": "1s"}, "targets": [
            {"name": "mi", "vendor": "movingimage", "base_url": url,
             "credentials": {"username": "someone", "password": "pw-0123456789"}}]}).targets[0]
        result = await Prober(session, FakeClock()).probe(target)
    assert result.trace is not None and result.outcome.cls == "timeout", result.trace
    assert "[1] login: POST " + url + "/auth/login" in result.trace
    assert "no answer: timeout/timeout: no complete answer within the timeout" in result.trace
    assert "[2]" not in result.trace
