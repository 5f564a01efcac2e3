"""Signals at the worst moments: SIGTERM while a /probe waits on a vendor that never answers, and
SIGHUP from the first instant of a start with 20,000 targets. Real processes on 127.0.0.1."""

from __future__ import annotations

import asyncio
import contextlib
import signal
from pathlib import Path

import aiohttp
import yaml
from aiohttp import web

from tests.conftest import flipsnack_config_file, free_port, serve, spawn_exporter


async def _until_ready(proc: asyncio.subprocess.Process, port: int, limit: float = 60) -> None:
    loop = asyncio.get_running_loop()
    end = loop.time() + limit
    async with aiohttp.ClientSession() as s:
        while loop.time() < end:
            assert proc.returncode is None, "the exporter died"
            with contextlib.suppress(aiohttp.ClientError):
                async with s.get(f"http://127.0.0.1:{port}/-/ready") as r:
                    if r.status == 200:
                        return
            await asyncio.sleep(0.1)
    raise AssertionError("not ready")


async def test_sigterm_with_a_slow_probe_in_flight_exits_within_2s(tmp_path: Path) -> None:
    calls, release = asyncio.Event(), asyncio.Event()

    async def never(request: web.Request) -> web.Response:
        calls.set()
        await release.wait()  # for longer than the probe's timeout, until the test is over
        return web.json_response({"code": 20})

    async with serve(never) as vendor:
        cfg = flipsnack_config_file(tmp_path / "config.yml", vendor, "slow", interval="1h", timeout="30s")
        port = free_port()
        sent = asyncio.Event()

        async def request_sent(*_: object) -> None:
            sent.set()

        tracing = aiohttp.TraceConfig()
        tracing.on_request_headers_sent.append(request_sent)
        try:
            async with spawn_exporter("--config", str(cfg), "--listen", f"127.0.0.1:{port}") as (proc, lines):
                await _until_ready(proc, port)
                async with aiohttp.ClientSession(trace_configs=[tracing]) as s:
                    probing = asyncio.create_task(s.get(f"http://127.0.0.1:{port}/probe?target=slow"))
                    # the vendor holds the probe, and the whole /probe request is with the exporter
                    await asyncio.wait_for(calls.wait(), 10)
                    await asyncio.wait_for(sent.wait(), 10)
                    loop = asyncio.get_running_loop()
                    proc.send_signal(signal.SIGTERM)
                    started = loop.time()
                    await asyncio.wait_for(proc.wait(), 10)
                    took = loop.time() - started
                    probing.cancel()
                    await asyncio.gather(probing, return_exceptions=True)
        finally:
            release.set()
    err = "".join(lines)
    assert proc.returncode == 0, err
    assert took < 2, f"SIGTERM took {took:.1f}s"
    assert "Traceback" not in err


def _sighup_handled(pid: int) -> bool:
    with contextlib.suppress(OSError):
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            key, _, value = line.partition(":")
            if key in ("SigIgn", "SigCgt") and int(value, 16) & (1 << (signal.SIGHUP - 1)):
                return True
    return False


async def test_sighup_from_the_first_moment_of_a_start_with_20000_targets(tmp_path: Path) -> None:
    cfg = tmp_path / "config.yml"
    # one shared credential: the budget keeps the probes few, so this tests start-up, not probing
    cfg.write_text(yaml.safe_dump({"global": {"interval": "1h", "timeout": "1s"}, "targets": [
        {"name": f"t{i}", "vendor": "flipsnack", "base_url": "http://127.0.0.1:9",
         "credentials": {"api_key": "k", "secret": "s"}} for i in range(20000)]}))
    port = free_port()
    async with spawn_exporter("--config", str(cfg), "--listen", f"127.0.0.1:{port}") as (proc, lines):
        # From the exporter's first instruction on, which /proc shows as SIGHUP no longer having its
        # default action (killing the process); before that the interpreter is still starting, and
        # that is a launcher's business. At most 1 s: the moment the issue was seen.
        loop = asyncio.get_running_loop()
        end = loop.time() + 1.0
        while loop.time() < end and not _sighup_handled(proc.pid):
            await asyncio.sleep(0.001)
        hups = 0

        async def hup_until_ready() -> None:
            nonlocal hups
            while proc.returncode is None:
                proc.send_signal(signal.SIGHUP)
                hups += 1
                await asyncio.sleep(0.05)

        hupping = asyncio.create_task(hup_until_ready())
        await _until_ready(proc, port, limit=120)
        hupping.cancel()
        await asyncio.gather(hupping, return_exceptions=True)
        assert hups > 5
        assert proc.returncode is None
        # the queued reload is done once the exporter runs (a reload of 20,000 targets takes a while)
        for _ in range(1200):
            if "config reloaded: 20000 targets" in "".join(lines):
                break
            assert proc.returncode is None
            await asyncio.sleep(0.1)
        proc.send_signal(signal.SIGTERM)
        await asyncio.wait_for(proc.wait(), 30)
    log = "".join(lines)
    assert proc.returncode == 0, log[-2000:]
    assert "config reloaded: 20000 targets" in log
    assert "Traceback" not in log
