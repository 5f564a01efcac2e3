"""POST /-/reload cannot be triggered by a web page on another site: the content types a browser form
sends without a CORS preflight are refused, and so are requests a browser marks as cross-site."""

from __future__ import annotations

import aiohttp
import pytest

from exporter.config import Config
from tests.conftest import config_from, running_exporter


def _cfg() -> Config:
    return config_from({"targets": [{"name": "a", "vendor": "flipsnack", "base_url": "http://127.0.0.1:9",
                                     "interval": "1h", "credentials": {"api_key": "k", "secret": "s"}}]})


@pytest.mark.parametrize(("headers", "body", "status"), [
    ({"Content-Type": "application/x-www-form-urlencoded"}, b"a=1", 415),
    ({"Content-Type": "multipart/form-data; boundary=x"}, b"--x--\r\n", 415),
    ({"Content-Type": "text/plain;charset=UTF-8"}, b"hi", 415),
    ({"Content-Type": "Application/X-WWW-Form-Urlencoded"}, b"x=1", 415),
    # an empty form from a page: the browser's own marks give it away
    ({"Content-Type": "application/x-www-form-urlencoded", "Sec-Fetch-Site": "cross-site"}, b"", 403),
    ({"Sec-Fetch-Site": "cross-site"}, b"", 403),  # fetch(url, {method: "POST", mode: "no-cors"})
    ({"Origin": "https://evil.example"}, b"", 403),
    ({"Origin": "null"}, b"", 403),  # a sandboxed frame or a local file
])
async def test_a_cross_site_reload_is_refused_and_nothing_is_reloaded(
        headers: dict[str, str], body: bytes, status: int) -> None:
    cfg = _cfg()
    calls: list[int] = []

    def loader() -> Config:
        calls.append(1)
        return cfg

    async with running_exporter(cfg, loader=loader) as run:
        async with run.session.post(run.url + "/-/reload", data=body, headers=headers) as r:
            assert r.status == status
            text = await r.text()
            assert text.count("\n") == 1
        assert calls == []
        # the tools that do reload are unaffected: no body, a same-origin page, JSON from a script
        same = {"Origin": run.url, "Sec-Fetch-Site": "same-origin"}
        urllib_like = {"Content-Type": "application/x-www-form-urlencoded"}  # urllib, curl -d '': empty
        for kw in ({}, {"headers": same}, {"json": {}}, {"headers": urllib_like, "data": b""}):
            async with run.session.post(run.url + "/-/reload", **kw) as r:  # type: ignore[arg-type]
                assert r.status == 200, await r.text()
        assert len(calls) == 4


async def test_put_reload_still_works() -> None:
    async with running_exporter(_cfg(), loader=_cfg) as run, aiohttp.ClientSession() as s, \
            s.put(run.url + "/-/reload") as r:
        assert r.status == 200
