"""A reload that changes a target while its probe is in flight: the old config's answer is recorded,
but the backoff it asks for is not laid on the new config (a new key after a rate-limit storm is tried
soon, not after the old Retry-After). On a controllable clock against a loopback vendor."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
from aiohttp import web

from exporter.clock import FakeClock
from exporter.config import Config

from ..conftest import config_from, running_exporter, serve


def config(url: str, key: str) -> Config:
    return config_from({"global": {"interval": "60s", "timeout": "30s", "probe_share": 1}, "targets": [
        {"name": "t", "vendor": "flipsnack", "base_url": url, "credentials": {"api_key": key, "secret": "s"}}]})


async def until(pred: Any, limit: float = 10.0) -> None:
    end = asyncio.get_running_loop().time() + limit
    while not pred():
        assert asyncio.get_running_loop().time() < end, "condition not reached"
        await asyncio.sleep(0.005)


@pytest.mark.parametrize("how", ["scheduled", "on_demand"])
async def test_a_reload_mid_probe_does_not_keep_the_old_configs_backoff(how: str) -> None:
    clock, hold, keys = FakeClock(), asyncio.Event(), []

    async def vendor(request: web.Request) -> web.Response:
        keys.append(request.query.get("apiKey", ""))
        if len(keys) == 1:
            await hold.wait()  # a slow answer: the reload happens while it is in flight
            return web.json_response({"code": 31}, headers={"Retry-After": "600"})  # rate limited
        return web.json_response({"code": 20})

    async with serve(vendor) as url:
        new = config(url, "new")
        async with running_exporter(config(url, "old"), clock=clock, loader=lambda: new) as run:
            exp = run.exporter
            assert exp.scheduler is not None
            if how == "scheduled":
                await clock.advance(6)
                await until(lambda: keys == ["old"])
                probe: asyncio.Future[Any] = asyncio.ensure_future(asyncio.sleep(0))
            else:
                probe = asyncio.ensure_future(run.get("/probe", params={"target": "t"}))
                await until(lambda: keys == ["old"])
            assert (await exp.reload())[0]
            hold.set()
            await probe
            await until(lambda: exp.scheduler is not None and not exp.scheduler.in_flight())
            ts = exp.state.get("t")
            assert ts is not None and ts.last is not None and ts.last.outcome.cls == "rate_limited"
            assert ts.backoff == 0  # the old key's Retry-After is not the new key's
            for _ in range(10):
                await clock.advance(1)
                await asyncio.sleep(0.01)
            await until(lambda: "new" in keys)
            assert keys[:2] == ["old", "new"]
