"""A reload applies global.max_body_bytes, global.keepalive and global.max_concurrency to the requests
made after it, not only at start-up. Against a loopback vendor that notes the connection of each request."""

from __future__ import annotations

from typing import Any

from aiohttp import web

from exporter.clock import FakeClock
from exporter.config import Config
from exporter.model import ProbeResult

from ..conftest import Running, config_from, running_exporter, serve


def config(url: str, **glob: Any) -> Config:
    return config_from({"global": {"interval": "60s", "timeout": "5s", **glob}, "targets": [
        {"name": "t", "vendor": "flipsnack", "base_url": url, "credentials": {"api_key": "k", "secret": "s"}}]})


async def probe(run: Running) -> ProbeResult:
    target = run.exporter.config.target("t")
    assert target is not None and run.exporter.scheduler is not None
    return await run.exporter.scheduler.probe_once(target)


async def test_a_reload_applies_the_body_cap_and_the_connection_settings() -> None:
    ports: list[int] = []

    async def vendor(request: web.Request) -> web.Response:
        peer = request.transport.get_extra_info("peername") if request.transport else None
        ports.append(peer[1] if peer else 0)
        return web.json_response({"code": 20, "padding": "p" * 4000})  # the envelope is past 2 KiB

    async with serve(vendor) as url:
        configs = [config(url, max_body_bytes=2048, keepalive=False, max_concurrency=3)]
        async with running_exporter(config(url), clock=FakeClock(), loader=lambda: configs[0]) as run:
            before = [await probe(run) for _ in range(2)]
            assert [r.outcome.cls for r in before] == ["ok", "ok"]
            assert ports[0] == ports[1]  # keepalive: one connection
            assert (await run.exporter.reload())[0]
            after = [await probe(run) for _ in range(2)]
            session = run.exporter.prober.session if run.exporter.prober else None
            limit = session.limit if session is not None else None
    assert [(r.outcome.cls, r.outcome.code) for r in after] == [("unknown", "http_200")] * 2  # cut at 2 KiB
    assert len(set(ports[2:])) == 2 and not set(ports[2:]) & set(ports[:2])  # a connection per request
    assert limit == 3
