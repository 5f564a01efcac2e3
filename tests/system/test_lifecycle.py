"""The exporter as a process: SIGTERM with probes in flight, reloads (HTTP and SIGHUP) under load that
keep the counters of unchanged targets, a config file that vanishes or turns invalid, and requests to
the exporter that are oversized or malformed. Everything on 127.0.0.1."""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp
import pytest
import yaml

from exporter.simulators.faults import FaultServer

from ..conftest import ROOT, free_port, sample, spawn_exporter


def config_yaml(faults: FaultServer, targets: dict[str, str], **labels: dict[str, str]) -> str:
    return yaml.safe_dump({
        "global": {"interval": "1s", "timeout": "1s", "probe_share": 1},
        "targets": [{"name": name, "vendor": "flipsnack", "base_url": faults.url(fault),
                     "credentials": {"api_key": f"key-{name}", "secret": f"secret-{name}"},
                     **({"labels": labels[name]} if name in labels else {})}
                    for name, fault in targets.items()],
    })


@dataclass
class Proc:
    proc: asyncio.subprocess.Process
    url: str
    session: aiohttp.ClientSession
    stderr: list[str] = field(default_factory=list)

    async def get(self, path: str) -> tuple[int, str]:
        async with self.session.get(self.url + path) as r:
            return r.status, await r.text()

    async def post(self, path: str) -> tuple[int, str]:
        async with self.session.post(self.url + path) as r:
            return r.status, await r.text()

    async def value(self, name: str, **labels: str) -> float | None:
        status, text = await self.get("/metrics")
        assert status == 200
        return sample(text, name, **labels)

    async def responses(self, target: str) -> float:
        status, text = await self.get("/metrics")
        assert status == 200
        from prometheus_client.parser import text_string_to_metric_families

        return sum(s.value for fam in text_string_to_metric_families(text) for s in fam.samples
                   if s.name == "apistatus_responses_total" and s.labels.get("target") == target)


async def wait_until(pred: Any, limit: float = 20.0) -> None:
    loop = asyncio.get_running_loop()
    end = loop.time() + limit
    while not await pred():
        assert loop.time() < end, "condition not reached"
        await asyncio.sleep(0.05)


@contextlib.asynccontextmanager
async def exporter_process(config: Path, *extra: str) -> AsyncIterator[Proc]:
    port = free_port()
    async with (spawn_exporter("--config", str(config), "--listen", f"127.0.0.1:{port}", *extra,
                               env={**os.environ, "PYTHONPATH": str(ROOT)}) as (proc, lines),
                aiohttp.ClientSession() as session):
        p = Proc(proc, f"http://127.0.0.1:{port}", session, lines)

        async def ready() -> bool:
            assert proc.returncode is None, "".join(lines)
            with contextlib.suppress(aiohttp.ClientError):
                return (await p.get("/-/ready"))[0] == 200
            return False

        await wait_until(ready)
        yield p


async def test_sigterm_stops_quickly_and_cancels_probes_in_flight(faults: FaultServer, tmp_path: Path) -> None:
    cfg = tmp_path / "config.yml"
    cfg.write_text(yaml.safe_dump({
        "global": {"interval": "30s", "timeout": "25s", "probe_share": 1},
        "targets": [{"name": f"hang{i}", "vendor": "flipsnack", "base_url": faults.url(f),
                     "credentials": {"api_key": f"k{i}", "secret": f"s{i}"}}
                    for i, f in enumerate(["no_answer", "slow_headers", "trickle"] * 3)]}))
    async with exporter_process(cfg) as p:
        async def all_hanging() -> bool:
            return faults.open_connections >= 9
        await wait_until(all_hanging)
        loop = asyncio.get_running_loop()
        p.proc.send_signal(signal.SIGTERM)
        started = loop.time()
        # far sooner than the probes' 25 s timeout: they are cancelled, not waited for
        rc = await asyncio.wait_for(p.proc.wait(), 10)
        stopped_in = loop.time() - started

        async def closed() -> bool:
            return faults.open_connections == 0
        await wait_until(closed)  # the exporter closed its side of every hanging connection
    assert rc == 0, "".join(p.stderr)
    assert stopped_in < 10
    err = "".join(p.stderr)
    assert "Traceback" not in err and "Task was destroyed" not in err and "Unclosed" not in err, err
    assert "stopping" in err


async def test_reloads_under_load_keep_counting_for_unchanged_targets(faults: FaultServer, tmp_path: Path) -> None:
    names = {f"t{i:02d}": "ok" for i in range(30)}
    cfg = tmp_path / "config.yml"
    cfg.write_text(config_yaml(faults, names))
    async with exporter_process(cfg) as p:
        async def probed_twice() -> bool:
            return await p.responses("t00") >= 2
        await wait_until(probed_twice)
        seen = await p.responses("t00")
        # reload 1, over HTTP: a target added, one removed, one relabelled; t00 untouched
        names2 = {**{k: v for k, v in names.items() if k != "t29"}, "new": "ok"}
        cfg.write_text(config_yaml(faults, names2, t01={"team": "b"}))
        status, body = await p.post("/-/reload")
        assert status == 200, body
        # reload 2, by SIGHUP, while probes keep running
        cfg.write_text(config_yaml(faults, {**names2, "newer": "ok"}, t01={"team": "c"}))
        p.proc.send_signal(signal.SIGHUP)

        async def newer_probed() -> bool:
            return await p.responses("newer") >= 1
        await wait_until(newer_probed)
        for target in ("t00", "t01"):
            async def grows(t: str = target) -> bool:
                now = await p.responses(t)
                assert now >= (seen if t == "t00" else 1), "a counter went backwards: state was lost"
                return now > seen + 1
            await wait_until(grows)
        _, text = await p.get("/metrics")
        assert sample(text, "apistatus_up", target="t01", team="c") == 1
        assert sample(text, "apistatus_up", target="t29") is None
        assert sample(text, "apistatus_config_last_reload_successful") == 1
    assert "Traceback" not in "".join(p.stderr)


@pytest.mark.parametrize("breakage", ["vanished", "invalid_yaml", "invalid_value"])
async def test_a_config_that_vanishes_or_breaks_keeps_the_running_one(faults: FaultServer, tmp_path: Path,
                                                                      breakage: str) -> None:
    cfg = tmp_path / "config.yml"
    cfg.write_text(config_yaml(faults, {"a": "ok", "b": "ok"}))
    async with exporter_process(cfg) as p:
        async def probed() -> bool:
            return await p.responses("a") >= 1
        await wait_until(probed)
        if breakage == "vanished":
            cfg.unlink()
        elif breakage == "invalid_yaml":
            cfg.write_text("targets: [unclosed\n")
        else:
            cfg.write_text(config_yaml(faults, {"a": "ok"}).replace("interval: 1s", "interval: soon"))
        status, body = await p.post("/-/reload")
        assert status == 500
        assert body.count("\n") == 1 and str(cfg) in body and "Traceback" not in body, body
        p.proc.send_signal(signal.SIGHUP)  # the same through the signal: logged, not fatal
        before = await p.responses("b")

        async def still_probing() -> bool:
            return await p.responses("b") > before
        await wait_until(still_probing)
        assert await p.value("apistatus_config_last_reload_successful") == 0
        assert await p.value("apistatus_targets") == 2
        # fixing the file recovers
        cfg.write_text(config_yaml(faults, {"a": "ok"}))
        assert (await p.post("/-/reload"))[0] == 200
        assert await p.value("apistatus_config_last_reload_successful") == 1
        assert await p.value("apistatus_targets") == 1
    err = "".join(p.stderr)
    assert "Traceback" not in err
    assert "config reload failed, keeping the running config" in err


RAW_REQUESTS = {
    # Each just past its limit (16 KiB body, 8 KiB line or header): a request much larger than what the
    # server reads before refusing it makes the server close with unread data, and the reset that
    # follows can discard the 4xx in the client's socket before it is read.
    "oversized body": b"POST /-/reload HTTP/1.1\r\nHost: x\r\nContent-Length: 104857600\r\n\r\n" + b"x" * 20_000,
    "oversized chunked body": b"POST /-/reload HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n"
                              + b"3000\r\n" + b"x" * 0x3000 + b"\r\n" + b"3000\r\n" + b"x" * 0x3000 + b"\r\n",
    "huge header": b"GET /metrics HTTP/1.1\r\nHost: x\r\nX-Big: " + b"a" * 20_000 + b"\r\n\r\n",
    "huge url": b"GET /probe?target=" + b"a" * 20_000 + b" HTTP/1.1\r\nHost: x\r\n\r\n",
    "too many headers": b"GET /metrics HTTP/1.1\r\nHost: x\r\n" + b"".join(b"X-H%d: v\r\n" % i for i in range(500))
                        + b"\r\n",
    "garbage request line": b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03 garbage\r\n\r\n",
    "bad http version": b"GET /metrics HTTP/9.9\r\nHost: x\r\n\r\n",
    "bad percent encoding": b"GET /probe?target=%ZZ%ff HTTP/1.1\r\nHost: x\r\n\r\n",
    "non utf-8 path": b"GET /\xff\xfe HTTP/1.1\r\nHost: x\r\n\r\n",
    "unknown target": b"GET /probe?target=http%3A%2F%2F10.0.0.1%2F HTTP/1.1\r\nHost: x\r\n\r\n",
    "wrong method": b"DELETE /metrics HTTP/1.1\r\nHost: x\r\n\r\n",
    "bad content length": b"POST /-/reload HTTP/1.1\r\nHost: x\r\nContent-Length: -5\r\n\r\n",
    "conflicting length": b"POST /-/reload HTTP/1.1\r\nHost: x\r\nContent-Length: 3\r\n"
                          b"Transfer-Encoding: chunked\r\n\r\nabc",
}


async def raw_status(port: int, payload: bytes) -> int:
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    answer = asyncio.create_task(reader.readline())  # read while writing: take the answer as it comes
    try:
        with contextlib.suppress(ConnectionError):
            writer.write(payload)
            await writer.drain()
        line = await asyncio.wait_for(answer, 10)
        assert line.startswith(b"HTTP/1."), line[:80]
        return int(line.split()[1])
    finally:
        writer.close()
        with contextlib.suppress(ConnectionError):
            await writer.wait_closed()


async def test_oversized_or_malformed_requests_get_a_4xx(faults: FaultServer, tmp_path: Path) -> None:
    cfg = tmp_path / "config.yml"
    cfg.write_text(config_yaml(faults, {"a": "ok"}))
    async with exporter_process(cfg) as p:
        port = int(p.url.rsplit(":", 1)[1])
        loaded_at = await p.value("apistatus_config_last_reload_success_timestamp_seconds")
        got = {name: await raw_status(port, payload) for name, payload in RAW_REQUESTS.items()}
        bad = {name: status for name, status in got.items() if not 400 <= status < 500}
        assert not bad, got
        assert got["oversized body"] == 413
        assert (await p.get("/metrics"))[0] == 200  # and it keeps serving
        # the oversized reloads were refused before they ran
        assert await p.value("apistatus_config_last_reload_success_timestamp_seconds") == loaded_at
    err = "".join(p.stderr)
    assert "Traceback" not in err, err
    assert "aaaaaaaa" not in err  # the raw request is not echoed into the log
