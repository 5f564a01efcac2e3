"""Egress sessions over a config's life: the TLS context is built while the config loads (a CA file
gone afterwards changes nothing until the next reload), and a probe in flight when a reload drops its
http_client setting finishes on the retiring session instead of building it again. Loopback only."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import trustme
from aiohttp import web

from exporter.clock import FakeClock
from exporter.config import Config
from exporter.simulators.faults import FaultServer, LoopbackResolver

from ..conftest import config_from, running_exporter, serve
from ..egress_support import exporter_with, flip, outcome, probe, server_ctx


async def test_the_tls_context_comes_from_the_load_not_from_the_files_at_probe_time(
        ca: trustme.CA, ca_file: str) -> None:
    srv = await FaultServer.start(server_ctx(ca.issue_cert("localhost")))
    try:
        client = {"tls_config": {"ca_file": ca_file}}
        async with exporter_with([flip("t", srv.url("ok", host="localhost"))], client,
                                 resolver=LoopbackResolver()) as ex:
            Path(ca_file).unlink()  # read at load: the first probe must not need it again
            assert outcome(await probe(ex, "t")) == ("ok", "20")
    finally:
        await srv.close()


def config(url: str, no_proxy: str) -> Config:
    # movingimage: a probe logs in first, then calls the API (its second request)
    return config_from({"global": {"interval": "60s", "timeout": "5s", "probe_share": 1}, "targets": [
        {"name": "t", "vendor": "movingimage", "base_url": url,
         "credentials": {"username": "u", "password": "p"}, "http_client": {"no_proxy": no_proxy}}]})


async def until(pred: Any, limit: float = 10.0) -> None:
    end = asyncio.get_running_loop().time() + limit
    while not pred():
        assert asyncio.get_running_loop().time() < end, "condition not reached"
        await asyncio.sleep(0.005)


async def test_a_probe_in_flight_on_a_retired_setting_finishes_on_its_session() -> None:
    hold, ports = asyncio.Event(), []

    async def vendor(request: web.Request) -> web.Response:
        peer = request.transport.get_extra_info("peername") if request.transport else None
        ports.append(peer[1] if peer else 0)
        if request.path.endswith("/auth/login"):
            await hold.wait()  # the reload comes while the login is under way
            return web.json_response({"accessToken": "a", "refreshToken": "r",
                                      "videoManagerList": [{"id": 1, "name": "vm"}]})
        return web.json_response({})

    clock = FakeClock()
    async with serve(vendor) as url:
        old, new = config(url, "a.example"), config(url, "b.example")
        async with running_exporter(old, clock=clock, loader=lambda: new) as run:
            exp = run.exporter
            assert exp.egress is not None and exp.scheduler is not None
            await clock.advance(6)
            await until(lambda: len(ports) == 1)
            assert (await exp.reload())[0]
            hold.set()
            await until(lambda: exp.scheduler is not None and not exp.scheduler.in_flight())
            old_client = old.targets[0].http_client
            assert old_client is not None
            # the calls after the login (the check, the usage) went out on the old setting's
            # connection, and built no session for it
            assert len(ports) >= 2 and set(ports) == {ports[0]}, ports
            assert old_client not in exp.egress._sessions  # none left to live until the next reload

