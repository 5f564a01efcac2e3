"""Every code of every vendor in docs/vendors.md, answered by a real loopback server the way that
vendor sends it (body code, HTTP status, ApiStatusSubCode header), probed by the real prober."""

from __future__ import annotations

import json
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass, field

import pytest
from aiohttp import web

from exporter.clock import SystemClock
from exporter.engine import new_session
from exporter.probe import Prober

from ..conftest import config_from, serve

# The tables of docs/vendors.md, code -> class, one row per code (ranges written out).
EXPECTED: dict[str, dict[str, str]] = {
    "bannersnack": {
        "200": "ok", "510": "clock_skew", "511": "maintenance", "512": "auth", "513": "auth", "514": "client_error",
        "515": "auth", "516": "auth", "520": "client_error", "521": "server_error", "530": "client_error",
        "531": "client_error", "532": "processing", "533": "client_error", "534": "client_error",
        "535": "client_error",
    },
    "bizwebs": {
        "200": "ok", "206": "degraded", "301": "client_error", "302": "client_error", "307": "client_error",
        "308": "client_error", "400": "client_error", "401": "auth", "403": "auth", "404": "client_error",
        "412": "auth", "429": "rate_limited", "500": "server_error", "501": "maintenance", "502": "server_error",
        "503": "server_error", "504": "server_error", "509": "quota_exceeded",
    },
    "rubiq": {
        "200": "ok", "201": "ok", "204": "ok", "202": "processing", "303": "ok", "400": "client_error",
        "401": "auth", **{f"401.{i}": "auth" for i in (1, 2, 3, 4, 5, 7, 8, 9, 10)}, "401.6": "clock_skew",
        **{f"401.{i}": "auth" for i in (20, 21, 22, 23, 24, 30, 31, 32)},
        "403": "auth", "403.21": "auth", "403.22": "auth", "403.23": "auth", "403.25": "auth",
        "403.30": "rate_limited", "404": "client_error", "404.1": "client_error", "404.2": "client_error",
        "409": "processing", "409.1": "processing", "412": "auth", "500": "server_error", "501": "client_error",
    },
    "flipsnack": {
        "20": "ok", "22": "maintenance", "30": "client_error", "31": "rate_limited", "32": "rate_limited",
        "33": "quota_exceeded", "34": "client_error", "35": "client_error", "36": "client_error",
        "37": "client_error", "38": "processing", "40": "client_error", "41": "auth", "42": "client_error",
        "43": "client_error", "44": "auth", "45": "client_error", "46": "client_error", "47": "client_error",
        "50": "server_error",
    },
    "movingimage": {
        "200": "ok", "201": "ok", "204": "ok", "400": "client_error", "401": "auth", "403": "auth",
        "404": "client_error", "415": "client_error", "500": "server_error", "502": "server_error",
        "1001": "client_error", "1002": "client_error", "1003": "client_error", "1004": "client_error",
        "1101": "quota_exceeded",
    },
}


@dataclass
class Vendorish:
    """A loopback server that answers the next request with ``answer`` (status, headers, body)."""

    answer: tuple[int, dict[str, str], bytes] = (200, {}, b"{}")
    seen: list[str] = field(default_factory=list)

    async def handle(self, request: web.Request) -> web.StreamResponse:
        self.seen.append(request.path_qs)
        if request.path.endswith("/auth/login"):  # movingimage login: always succeeds here
            return web.json_response({"accessToken": "tok-" + str(len(self.seen)), "refreshToken": "r",
                                      "videoManagerList": [{"id": 7, "name": "vm"}]})
        status, headers, body = self.answer
        return web.Response(status=status, headers=headers, body=body if status not in (204, 304) else None)


def place(vendor: str, code: str) -> tuple[int, dict[str, str], bytes]:
    """Put ``code`` where this vendor puts its code (docs/vendors.md)."""
    js = {"Content-Type": "application/json"}
    if vendor in ("bannersnack", "flipsnack"):
        return 200, js, json.dumps({"code": int(code), "message": "x"}).encode()
    if vendor == "rubiq":
        main = int(code.split(".")[0])
        return main, {**js, "ApiStatusSubCode": code} if "." in code else js, b"{}"
    if vendor == "movingimage" and int(code) >= 1000:
        return 400, js, json.dumps({"code": int(code), "message": "x"}).encode()
    return int(code), js, b"[]" if vendor == "movingimage" else b'{"data": {}}'


CHECKS = {"bannersnack": {"params": {"hash": "abc"}}, "rubiq": {"path": "/entity/id/42/data"}}
CREDS = {
    "bannersnack": {"client_id": "cid", "secret": "s3cret"}, "bizwebs": {"token": "t" * 32},
    "rubiq": {"app_key": "32767", "app_secret": "RCL1EDAYOVHANLL3A51G"},
    "flipsnack": {"api_key": "key", "secret": "s3cret"}, "movingimage": {"username": "u", "password": "p"},
}


@pytest.fixture
async def server() -> AsyncIterator[tuple[Vendorish, str]]:
    vend = Vendorish()
    async with serve(vend.handle) as url:
        yield vend, url + "/prefix"


@pytest.mark.parametrize("vendor", sorted(EXPECTED))
async def test_every_documented_code_gets_its_class(server: tuple[Vendorish, str], vendor: str) -> None:
    vend, url = server
    cfg = config_from({"targets": [{"name": "t", "vendor": vendor, "base_url": url, "credentials": CREDS[vendor],
                                    **({"check": CHECKS[vendor]} if vendor in CHECKS else {})}]})
    async with new_session() as session:
        prober = Prober(session, SystemClock())
        got = {}
        for code in EXPECTED[vendor]:
            vend.answer = place(vendor, code)
            result = await prober.probe(cfg.targets[0])
            got[code] = (result.outcome.cls, result.outcome.code)
    assert got == {code: (cls, code) for code, cls in EXPECTED[vendor].items()}
    # the base URL's path prefix is kept, the check's path appended
    assert all(p.startswith("/prefix") for p in vend.seen)


async def test_rubiq_non_standard_mode_reads_the_body(server: tuple[Vendorish, str]) -> None:
    vend, url = server
    cfg = config_from({"targets": [{"name": "t", "vendor": "rubiq", "base_url": url, "credentials": CREDS["rubiq"],
                                    "check": CHECKS["rubiq"]}]})
    async with new_session() as session:
        prober = Prober(session, SystemClock())
        vend.answer = (200, {}, json.dumps({"status": {"statusCode": 409, "statusText": "locked"}}).encode())
        assert (await prober.probe(cfg.targets[0])).outcome.cls == "processing"
        vend.answer = (401, {}, json.dumps({"status": {"statusCode": 401, "statusText": "x"}}).encode())
        assert (await prober.probe(cfg.targets[0])).outcome.cls == "auth"


async def test_redirects_are_not_followed_and_timing_is_recorded(server: tuple[Vendorish, str]) -> None:
    vend, url = server
    cfg = config_from({"targets": [{"name": "t", "vendor": "bizwebs", "base_url": url,
                                    "credentials": CREDS["bizwebs"]}]})
    async with new_session() as session:
        vend.answer = (302, {"Location": url + "/elsewhere"}, b"")
        t0 = time.perf_counter()
        result = await Prober(session, SystemClock()).probe(cfg.targets[0])
        assert (result.outcome.cls, result.outcome.http_status) == ("client_error", 302)
        assert 0 < result.duration <= time.perf_counter() - t0
    assert vend.seen == ["/prefix/api/graphql"]
