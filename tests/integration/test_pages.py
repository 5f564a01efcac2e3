"""The status page, the per-target history and their JSON twins, over real HTTP against loopback
vendors: escaping of hostile values, 404s, secrets kept out, history order and retention."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from html.parser import HTMLParser
from typing import Any

import pytest
from aiohttp import web

from exporter.clock import FakeClock
from exporter.state import TargetState

from ..conftest import Running, config_from, running_exporter, serve, serve_app

API_KEY = "KEY-sekrit-4711"
SECRET = "SIG-sekrit-0815"
TOKEN = "TOK-sekrit-1234567890abcdef12345"
HOSTILE = "<script>alert(1)</script>\"'&"


@dataclass
class Vendor:
    """One loopback server playing Flipsnack (body code) and BizWebs (HTTP status) at once."""

    flip_code: Any = 20
    flip_extra: dict[str, Any] = field(default_factory=dict)
    retry_after: str | None = None
    biz_status: int = 200

    async def flip(self, request: web.Request) -> web.Response:
        # Echo the API key back, as a careless vendor might: it must still never reach a page.
        body = {"code": self.flip_code, "echo": request.query.get("apiKey", ""),
                "data": {"api_uploads_left": 900}, **self.flip_extra}
        headers = {"Retry-After": self.retry_after} if self.retry_after else {}
        return web.json_response(body, headers=headers)

    async def biz(self, request: web.Request) -> web.Response:
        return web.json_response({"data": {"getOrderList": {"pageInfo": {"totalPages": 1}}}},
                                 status=self.biz_status)


@pytest.fixture
async def vendor() -> AsyncIterator[tuple[Vendor, str]]:
    v = Vendor()
    app = web.Application()
    app.router.add_post("/api/graphql", v.biz)
    app.router.add_get("/{tail:.*}", v.flip)
    async with serve_app(app) as url:
        yield v, url


def config(url: str, history: int = 50) -> dict[str, Any]:
    return {"global": {"interval": "1s", "timeout": "1s", "probe_share": 1, "history": history},
            "targets": [
                {"name": "flip-a", "vendor": "flipsnack", "base_url": url,
                 "labels": {"team": HOSTILE}, "credentials": {"api_key": API_KEY, "secret": SECRET}},
                {"name": "shop:1", "vendor": "bizwebs", "base_url": url, "credentials": {"token": TOKEN}},
                {"name": "flip-b", "vendor": "flipsnack", "base_url": url,
                 "credentials": {"api_key": API_KEY, "secret": SECRET}},
            ]}


class Tree(HTMLParser):
    """The parsed page: tags seen, attributes of elements that carry data-*, and the visible text."""

    def __init__(self, text: str) -> None:
        super().__init__()
        self.tags: list[str] = []
        self.data: list[dict[str, str | None]] = []
        self.text: list[str] = []
        self.feed(text)

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.tags.append(tag)
        if any(k.startswith("data-") for k, _ in attrs):
            self.data.append({"tag": tag, **dict(attrs)})

    def handle_data(self, data: str) -> None:
        self.text.append(data)

    def joined(self) -> str:
        return "".join(self.text)


async def wait_for(ex: Running, cond: Any, timeout: float = 10.0) -> None:
    """Poll real probes against a condition on the state; bounded, not a sleep standing in for a check."""
    loop = asyncio.get_running_loop()
    end = loop.time() + timeout
    while not cond(ex.exporter.state):
        assert loop.time() < end, "condition not reached in time"
        await asyncio.sleep(0.02)


def probed(*names: str, at_least: int = 1) -> Any:
    def cond(state: Any) -> bool:
        return all((ts := state.get(n)) is not None and ts.probes >= at_least for n in names)
    return cond


async def get_json(ex: Running, path: str) -> tuple[int, Any]:
    async with ex.session.get(ex.url + path) as r:
        return r.status, await r.json(content_type=None)


async def test_status_page_groups_by_vendor_and_escapes_hostile_values(vendor: tuple[Vendor, str]) -> None:
    v, url = vendor
    v.flip_code = 22  # maintenance, with a Retry-After
    v.retry_after = "30"
    cfg = config(url)
    # a user catalog is text too: its title is escaped and a non-web docs link is not made a link
    cfg["vendors"] = {"flipsnack": {"title": "Flip <i>snack</i>", "docs_url": "javascript:alert(1)"}}
    async with running_exporter(config_from(cfg)) as ex:
        await wait_for(ex, probed("flip-a", "shop:1", "flip-b"))
        status, page = await ex.get("/")
        async with ex.session.get(ex.url + "/") as r:
            headers = r.headers
    assert status == 200
    assert "script-src" not in headers["Content-Security-Policy"]  # default-src 'none' refuses scripts
    assert headers["Content-Security-Policy"].startswith("default-src 'none'")
    tree = Tree(page)
    assert "script" not in tree.tags and "i" not in tree.tags  # hostile values stayed text
    assert "javascript:" not in page and "Flip <i>snack</i>" in tree.joined()
    assert "<script>alert" not in page
    assert HOSTILE in tree.joined()  # ... and is shown as the user wrote it
    sections = [d for d in tree.data if d["tag"] == "section"]
    assert [s["data-vendor"] for s in sections] == ["flipsnack", "bizwebs"]  # grouped, in config order
    cards = [(d["data-target"], d["data-class"]) for d in tree.data if d["tag"] == "article"]
    assert cards == [("flip-a", "maintenance"), ("flip-b", "maintenance"), ("shop:1", "ok")]
    text = " ".join(tree.joined().split())
    assert "maintenance mode" in text  # the vendor's own message for code 22
    assert "retry after 30s" in text
    assert "900 / 1000 left" in text  # the Flipsnack upload quota
    assert "3 targets: 1 up, 2 down" in text
    assert 'href="targets/shop%3A1"' in page
    for secret in (API_KEY, SECRET, TOKEN):
        assert secret not in page


async def test_api_lists_every_target_in_the_documented_shape(vendor: tuple[Vendor, str]) -> None:
    _, url = vendor
    async with running_exporter(config_from(config(url))) as ex:
        await wait_for(ex, probed("flip-a", "shop:1", "flip-b"))
        status, doc = await get_json(ex, "/api/v1/targets")
    assert status == 200
    assert set(doc) == {"generated_at", "targets", "egress"}
    assert [t["name"] for t in doc["targets"]] == ["flip-a", "shop:1", "flip-b"]
    a = doc["targets"][0]
    assert set(a) == {
        "name", "vendor", "vendor_title", "docs_url", "labels", "interval_seconds", "class", "up", "since", "code",
        "message", "http_status", "latency_seconds", "last_probe", "attempts", "next_probe", "backoff_seconds",
        "consecutive_failures", "maintenance", "retry_after_seconds", "clock_skew_seconds", "quotas",
        "recent_classes", "probes", "tls_cert_expiry", "phases", "http_client", "vendor_status"}
    assert a["vendor_status"] is None  # Flipsnack publishes no status page
    assert a["labels"] == {"team": HOSTILE}
    assert (a["vendor"], a["class"], a["up"], a["code"], a["message"], a["http_status"]) == (
        "flipsnack", "ok", True, "20", "OK", 200)
    # Flipsnack's upload quota resets monthly: reset_at is the start of the next month (UTC)
    from exporter.classify import next_reset
    assert a["quotas"] == [{"name": "uploads", "remaining": 900.0, "limit": 1000.0,
                            "reset_at": next_reset("monthly", a["last_probe"]),
                            # reported by the latest answer: its age, and not stale
                            "as_of": a["last_probe"], "stale": False}]
    assert a["recent_classes"][-1] == "ok" and a["maintenance"] is False and a["latency_seconds"] >= 0
    assert a["next_probe"] >= a["last_probe"]
    shop = doc["targets"][1]
    assert (shop["vendor"], shop["class"], shop["code"]) == ("bizwebs", "ok", "200")


async def test_unknown_targets_get_a_one_line_404(vendor: tuple[Vendor, str]) -> None:
    _, url = vendor
    async with running_exporter(config_from(config(url))) as ex:
        status, text = await ex.get("/targets/nope")
        assert status == 404
        assert text == "unknown target 'nope': the configured targets are listed at /\n"
        status, text = await ex.get("/targets/%3Cb%3Ex")
        assert status == 404 and "<b>" not in text and text.count("\n") == 1
        status, doc = await get_json(ex, "/api/v1/targets/nope")
        assert status == 404
        assert doc == {"error": "unknown target 'nope': the configured targets are listed at /"}
        status, text = await ex.get("/?refresh=soon")
        assert status == 400
        assert text == "refresh must be whole seconds (0 turns it off), got 'soon'\n"
        for bad in ("\u00b2", "-1", "1e3", "9999999"):
            status, text = await ex.get("/", params={"refresh": bad})
            assert status == 400 and text.startswith("refresh must be whole seconds"), (bad, text)


async def test_page_refreshes_itself_at_the_probe_pace_unless_told_otherwise(vendor: tuple[Vendor, str]) -> None:
    _, url = vendor
    async with running_exporter(config_from(config(url))) as ex:
        _, page = await ex.get("/")
        assert '<meta http-equiv="refresh" content="2">' in page  # 1 s interval, never faster than 2 s
        _, page = await ex.get("/", params={"refresh": "15"})
        assert '<meta http-equiv="refresh" content="15">' in page
        _, page = await ex.get("/", params={"refresh": "0"})
        assert 'http-equiv="refresh"' not in page and 'href="?refresh=2"' in page
        _, page = await ex.get("/targets/flip-a")
        assert 'http-equiv="refresh"' not in page  # an open excerpt must not fold while it is read


async def test_history_is_newest_first_and_keeps_failures_longer(vendor: tuple[Vendor, str]) -> None:
    v, url = vendor
    clock = FakeClock()
    cfg = config(url, history=3)
    cfg["targets"] = cfg["targets"][:1]
    # one failure among successes, each its own probe: no confirming probe of it at the same moment
    cfg["global"]["confirm_failures"] = False
    async with running_exporter(config_from(cfg), clock=clock) as ex:
        async def probe_until(n: int) -> None:
            # move the fake clock in small steps until the n-th real probe has been recorded
            loop = asyncio.get_running_loop()
            end = loop.time() + 10
            ts = ex.exporter.state.get("flip-a")
            assert ts is not None
            while ts.probes < n:
                assert loop.time() < end, f"probe {n} did not happen"
                await clock.advance(0.25)
                await asyncio.sleep(0.01)

        v.flip_code = 42  # invalid action: a client_error, the one failure in this history
        await probe_until(1)
        v.flip_code = 20
        await probe_until(6)
        status, doc = await get_json(ex, "/api/v1/targets/flip-a")
        _, page = await ex.get("/targets/flip-a")
        ts = ex.exporter.state.get("flip-a")
        assert isinstance(ts, TargetState)
    assert status == 200
    hist = doc["history"]
    times = [h["time"] for h in hist]
    assert times == sorted(times, reverse=True) and len(set(times)) == len(times)
    # the ring holds 3 successes; the failure, older than all of them, is still there
    assert [h["class"] for h in hist] == ["ok", "ok", "ok", "client_error"]
    assert hist[-1]["code"] == "42" and hist[-1]["message"] == "invalid action"
    assert times[-1] == pytest.approx(ts.history()[-1].started, abs=0.01)
    assert set(hist[0]) == {"time", "class", "code", "message", "http_status", "latency_seconds", "attempts",
                            "retry_after_seconds", "request_line", "excerpt"}
    assert hist[0]["request_line"].startswith(f"GET {url}/?action=user.getStats")
    assert doc["target"]["name"] == "flip-a" and doc["target"]["probes"] == 6
    # the HTML page lists the same entries in the same order
    tree = Tree(page)
    assert [d["data-class"] for d in tree.data if d["tag"] == "li"] == ["ok", "ok", "ok", "client_error"]


async def test_vendor_answers_are_escaped_and_secrets_never_shown(vendor: tuple[Vendor, str]) -> None:
    v, url = vendor
    v.flip_code = 20
    v.flip_extra = {"note": "</pre><img src=x onerror=alert(1)>", "secret_echo": SECRET}
    async with running_exporter(config_from(config(url))) as ex:
        await wait_for(ex, probed("flip-a", "shop:1"))
        pages = [(await ex.get(p))[1] for p in
                 ("/", "/targets/flip-a", "/targets/shop%3A1", "/api/v1/targets", "/api/v1/targets/flip-a")]
        _, doc = await get_json(ex, "/api/v1/targets/flip-a")
    for text in pages:
        for secret in (API_KEY, SECRET, TOKEN):
            assert secret not in text
    detail = Tree(pages[1])
    assert "img" not in detail.tags and "script" not in detail.tags
    assert "</pre><img src=x onerror=alert(1)>" in detail.joined()  # shown, as text
    excerpt = doc["history"][0]["excerpt"]
    assert "<redacted>" in excerpt and json.loads(excerpt)["note"] == "</pre><img src=x onerror=alert(1)>"
    assert "<redacted>" in doc["history"][0]["request_line"]


async def test_a_target_not_yet_probed_says_so(vendor: tuple[Vendor, str]) -> None:
    _, url = vendor
    # a fake clock that is never advanced: the first probe never comes
    async with running_exporter(config_from(config(url)), clock=FakeClock()) as ex:
        _, page = await ex.get("/")
        _, doc = await get_json(ex, "/api/v1/targets/shop%3A1")
        _, detail = await ex.get("/targets/shop%3A1")
    text = " ".join(Tree(page).joined().split())
    assert "3 targets: 0 up, 0 down, 3 not probed yet" in text
    assert text.count("not probed yet") == 4 and text.count("waiting for the first probe") == 3
    t = doc["target"]
    assert (t["class"], t["up"], t["code"], t["since"], t["probes"], doc["history"]) == (None, None, None, None, 0, [])
    assert "No probes yet." in detail


async def test_no_vendor_credential_reaches_a_page_with_the_real_signers() -> None:
    from exporter.simulators import start_simulators

    sims = await start_simulators()
    try:
        async with running_exporter(config_from(sims.targets_config(interval="1s"))) as ex:
            vendors = list(sims.sims)
            await wait_for(ex, probed(*vendors))
            texts = [(await ex.get(p))[1] for p in ["/", "/api/v1/targets"]
                     + [f"/targets/{v}" for v in vendors] + [f"/api/v1/targets/{v}" for v in vendors]]
            docs = [(await get_json(ex, f"/api/v1/targets/{v}"))[1] for v in vendors]
    finally:
        await sims.close()
    secrets = [s for creds in sims.credentials.values() for s in creds.values() if len(s) >= 4]
    assert secrets
    for text in texts:
        for s in secrets:
            assert s not in text
    for doc in docs:
        assert doc["target"]["class"] == "ok", doc["target"]
        # each signer adds a key, a signature, a token or a header: the request line never shows one
        assert all(s not in h["request_line"] for h in doc["history"] for s in secrets)
    flip = next(d for d in docs if d["target"]["vendor"] == "flipsnack")
    assert "apiKey=<redacted>" in flip["history"][0]["request_line"]


async def test_a_thousand_targets_all_render_compressed(vendor: tuple[Vendor, str]) -> None:
    _, url = vendor
    cfg = {"global": {"interval": "1m"}, "targets": [
        {"name": f"t{i:04d}", "vendor": "flipsnack", "base_url": url,
         "credentials": {"api_key": f"k{i}", "secret": "s"}} for i in range(1000)]}
    async with running_exporter(config_from(cfg), clock=FakeClock()) as ex:
        async with ex.session.get(ex.url + "/", headers={"Accept-Encoding": "gzip"}) as r:
            encoding, page = r.headers.get("Content-Encoding"), await r.text()
        _, doc = await get_json(ex, "/api/v1/targets")
    assert encoding == "gzip"
    names = [d["data-target"] for d in Tree(page).data if d["tag"] == "article"]
    assert names == [f"t{i:04d}" for i in range(1000)]
    assert len(doc["targets"]) == 1000


# Control characters a vendor may put in an answer: ESC (a terminal escape), BEL, NUL, DEL, a C1
# control (CSI) and a right-to-left override that would make text read backwards.
CONTROLS = "\x1b[2J\x07\x00\x7f\x9b\u202e"
SHOWN = "\\x1b[2J\\x07\\x00\\x7f\\x9b\\u202e"


def raw_controls(data: bytes) -> list[int]:
    """Control bytes in an answer other than the whitespace HTML and JSON use themselves."""
    text = data.decode("utf-8")
    return [ord(c) for c in text if (ord(c) < 0x20 and c not in "\t\n\r") or 0x7f <= ord(c) <= 0x9f
            or c == "\u202e"]


async def test_control_characters_from_a_vendor_are_shown_escaped_never_raw() -> None:
    body = b'{"code": 20, "note": "' + CONTROLS.encode() + b'"}'

    async def vendor(request: web.Request) -> web.Response:
        return web.Response(body=body, content_type="application/json")

    async with serve(vendor) as url:
        cfg = {"global": {"interval": "1s", "timeout": "1s", "probe_share": 1},
               "targets": [{"name": "flip", "vendor": "flipsnack", "base_url": url,
                            "credentials": {"api_key": API_KEY, "secret": SECRET}}]}
        async with running_exporter(config_from(cfg)) as ex:
            await wait_for(ex, probed("flip"))
            answers = {}
            for path in ("/", "/targets/flip", "/api/v1/targets", "/api/v1/targets/flip"):
                async with ex.session.get(ex.url + path) as r:
                    assert r.status == 200
                    answers[path] = await r.read()
    for path, data in answers.items():
        assert raw_controls(data) == [], path
    # the page shows what the vendor sent, visibly
    assert SHOWN in Tree(answers["/targets/flip"].decode()).joined()
    # the JSON carries it escaped, and a client decoding it gets the vendor's text back unchanged
    doc = json.loads(answers["/api/v1/targets/flip"])
    assert CONTROLS in doc["history"][0]["excerpt"]


def test_views_are_pure_functions_of_the_state() -> None:
    from exporter import views
    from exporter.classify import Outcome
    from exporter.probe import ProbeResult
    from exporter.state import State

    cfg = config_from(config("http://127.0.0.1:9"))
    state = State()
    state.sync(cfg.targets)
    outcome = Outcome("server_error", "50", f"vendor says {CONTROLS}", 200)
    state.record(ProbeResult("flip-a", 1000.0, 0.2, outcome, "GET http://127.0.0.1:9/", f"oops {CONTROLS}"), 1010, 0)
    ts = state.get("flip-a")
    assert ts is not None
    page = views.target_page(ts, 1005.0, views.Refresh(0, 30)).decode()
    overview = views.status_page(state, 1005.0, views.Refresh(30, 30)).decode()
    assert raw_controls(page.encode()) == [] and raw_controls(overview.encode()) == []
    assert f"vendor says {SHOWN}" in Tree(page).joined() and f"oops {SHOWN}" in Tree(page).joined()
    assert f"vendor says {SHOWN}" in Tree(overview).joined()  # listed as needing attention
    assert HOSTILE in Tree(overview).joined() and "<script>" not in overview
    doc = json.loads(views.api_target(ts, 1005.0))
    assert doc["target"]["message"] == f"vendor says {CONTROLS}" and doc["generated_at"] == 1005.0
    assert raw_controls(views.api_targets(state, 1005.0)) == []
    with pytest.raises(views.RefreshError, match="got 'soon'"):
        views.parse_refresh("soon", 30)
    assert views.parse_refresh("1", 30) == views.Refresh(2, 30)  # never faster than 2 s
