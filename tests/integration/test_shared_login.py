"""Targets that share one login share its token: an ``auth`` answer to a token that another target
has already replaced must not throw the new one away, or N targets make N logins a round during an
auth problem. A loopback vendor that revokes its token, answering 401 to it one probe after another."""

from __future__ import annotations

import asyncio

from aiohttp import web

from exporter.clock import FakeClock
from exporter.config import Config
from exporter.engine import new_session
from exporter.probe import Prober

from ..conftest import config_from, serve


class LoginVendor:
    def __init__(self) -> None:
        self.logins = 0
        self.valid: set[str] = set()
        self.refused = 0

    async def handle(self, request: web.Request) -> web.Response:
        if request.path == "/login":
            self.logins += 1
            token = f"tok-{self.logins}"
            self.valid = {token}
            return web.json_response({"accessToken": token})
        if request.headers.get("Authorization", "").removeprefix("Bearer ") in self.valid:
            return web.json_response({})
        # each refusal arrives after the previous one's new login is done: the worst order
        self.refused += 1
        await asyncio.sleep(0.1 * self.refused)
        return web.json_response({}, status=401)


def shared(url: str, n: int) -> Config:
    return config_from({
        "vendors": {"acme": {
            "credentials": ["username", "password"],
            "signer": {"name": "bearer_login", "options": {
                "login_path": "/login", "access_token_field": "accessToken", "access_ttl": 3600}},
            "check": {"path": "/health"},
            "codes": {"200": {"class": "ok"}, "401": {"class": "auth"}}}},
        "targets": [{"name": f"t{i}", "vendor": "acme", "base_url": url,
                     "credentials": {"username": "monitor", "password": "pw"}} for i in range(n)]})


async def test_an_auth_answer_to_a_replaced_token_keeps_the_new_one() -> None:
    vendor = LoginVendor()
    async with serve(vendor.handle) as url, new_session() as session:
        targets = shared(url, 4).targets
        prober = Prober(session, FakeClock())
        first = await asyncio.gather(*(prober.probe(t) for t in targets))
        assert [r.outcome.cls for r in first] == ["ok"] * 4 and vendor.logins == 1
        vendor.valid = set()  # the vendor revokes the token the four share
        second = await asyncio.gather(*(prober.probe(t) for t in targets))
    assert vendor.refused == 4
    assert [r.outcome.cls for r in second] == ["ok"] * 4  # each retried once, with the new token
    assert vendor.logins == 2  # one new login for the credential, not one per target
