"""Signals at the worst moments: SIGTERM while a /probe waits on a vendor that never answers, SIGHUP
from the first instant of a start with 20,000 targets, SIGHUP and SIGTERM while a failure's confirmation
waits out a Retry-After, and while a vendor's status page is being read and does not answer. Real
processes on 127.0.0.1."""

from __future__ import annotations

import asyncio
import contextlib
import signal
from pathlib import Path

import aiohttp
import yaml
from aiohttp import web
from aiohttp.typedefs import Handler

from exporter.simulators import start_simulators
from tests.conftest import flipsnack_config_file, free_port, sample, serve, spawn_exporter


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


async def _until_logged(proc: asyncio.subprocess.Process, lines: list[str], text: str, limit: float = 20) -> None:
    for _ in range(int(limit * 20)):
        if text in "".join(lines):
            return
        assert proc.returncode is None, "".join(lines)[-2000:]
        await asyncio.sleep(0.05)
    raise AssertionError(f"{text!r} not logged: {''.join(lines)[-2000:]}")


async def _sigterm_exits_at_once(proc: asyncio.subprocess.Process) -> float:
    loop = asyncio.get_running_loop()
    proc.send_signal(signal.SIGTERM)
    started = loop.time()
    await asyncio.wait_for(proc.wait(), 10)
    return loop.time() - started


def _busy(requests: list[float]) -> Handler:
    """A vendor that is busy: every answer a failure with a Retry-After of 3 s, each request noted."""
    async def busy(request: web.Request) -> web.Response:
        requests.append(asyncio.get_running_loop().time())
        return web.json_response({"code": 50}, status=503, headers={"Retry-After": "3"})
    return busy


async def _until_count(requests: list[float], n: int, limit: float = 10) -> None:
    for _ in range(int(limit * 20)):
        if len(requests) >= n:
            return
        await asyncio.sleep(0.05)
    raise AssertionError(f"{len(requests)} requests, not {n}")


def _two_targets(path: Path, keep: str, drop: str | None) -> Path:
    targets = [{"name": name, "vendor": "flipsnack", "base_url": url, "credentials": {"api_key": "k", "secret": "s"}}
               for name, url in (("keep", keep), ("drop", drop)) if url is not None]
    path.write_text(yaml.safe_dump({"global": {"interval": "1h", "timeout": "5s", "probe_share": 1},
                                    "targets": targets}))
    return path


async def test_a_reload_while_confirmations_wait_keeps_the_kept_ones_and_calls_off_the_dropped(
        tmp_path: Path) -> None:
    """Both first answers fail with a Retry-After: each confirmation waits for it (docs/configuration.md).
    A reload during that wait that drops one target keeps the other's confirmation, which goes out after
    the Retry-After and confirms the failure, and calls off the dropped one's."""
    kept: list[float] = []
    dropped: list[float] = []
    async with serve(_busy(kept)) as keep, serve(_busy(dropped)) as drop:
        cfg = _two_targets(tmp_path / "config.yml", keep, drop)
        port = free_port()
        async with spawn_exporter("--config", str(cfg), "--listen", f"127.0.0.1:{port}") as (proc, lines):
            await _until_ready(proc, port)
            await _until_count(kept, 1)
            await _until_count(dropped, 1)
            _two_targets(cfg, keep, None)
            proc.send_signal(signal.SIGHUP)
            await _until_logged(proc, lines, "config reloaded: 1 targets")
            assert len(kept) == 1  # not before the Retry-After
            await _until_count(kept, 2)
            assert kept[1] - kept[0] >= 3.0  # the confirmation waited the Retry-After out, reload or not
            async with aiohttp.ClientSession() as s:
                for _ in range(100):  # its answer recorded: a confirmed failure
                    async with s.get(f"http://127.0.0.1:{port}/metrics") as r:
                        text = await r.text()
                    if sample(text, "apistatus_consecutive_failures", target="keep") == 2:
                        break
                    await asyncio.sleep(0.05)
            assert sample(text, "apistatus_consecutive_failures", target="keep") == 2
            assert 'target="drop"' not in text
            await asyncio.sleep(0.5)  # the dropped target's confirmation was due with the kept one's
            assert len(dropped) == 1, "a dropped target's confirmation went out"
    log = "".join(lines)
    assert proc.returncode == 0, log[-2000:]
    assert "Traceback" not in log and "level=error" not in log, log[-2000:]


async def test_sigterm_while_a_confirmation_waits_out_a_retry_after_exits_at_once(tmp_path: Path) -> None:
    requests: list[float] = []
    async with serve(_busy(requests)) as vendor:
        cfg = _two_targets(tmp_path / "config.yml", vendor, None)
        port = free_port()
        async with spawn_exporter("--config", str(cfg), "--listen", f"127.0.0.1:{port}") as (proc, lines):
            await _until_ready(proc, port)
            await _until_count(requests, 1)
            took = await _sigterm_exits_at_once(proc)
    log = "".join(lines)
    assert proc.returncode == 0, log[-2000:]
    assert took < 2, f"SIGTERM took {took:.1f}s"
    assert len(requests) == 1
    assert "Traceback" not in log, log[-2000:]


async def test_sighup_and_sigterm_while_a_status_page_read_hangs(tmp_path: Path) -> None:
    """The vendor's status page accepts the request and never answers: a reload during that read
    changes nothing for the read or the probes, and SIGTERM exits at once."""
    reads, release = asyncio.Event(), asyncio.Event()

    async def hanging_page(request: web.Request) -> web.Response:
        reads.set()
        await release.wait()
        return web.json_response({})

    sims = await start_simulators()
    try:
        async with serve(hanging_page) as page:
            raw = sims.targets_config("1h", status_pages=True, timeout="30s")
            raw["targets"] = [t for t in raw["targets"] if t["vendor"] == "github"]
            raw["vendors"] = {"github": {**raw["vendors"].get("github", {}),
                                         "status_page": {"url": page + "/api/v2/summary.json",
                                                         "format": "statuspage", "hosts": ["127.0.0.1"]}}}
            cfg = tmp_path / "config.yml"
            cfg.write_text(yaml.safe_dump(raw))
            port = free_port()
            try:
                async with spawn_exporter("--config", str(cfg), "--listen", f"127.0.0.1:{port}") as (proc, lines):
                    await _until_ready(proc, port)
                    await asyncio.wait_for(reads.wait(), 20)  # the read is in flight, and stays so
                    proc.send_signal(signal.SIGHUP)
                    await _until_logged(proc, lines, "config reloaded: 1 targets")
                    async with aiohttp.ClientSession() as s:
                        async with s.get(f"http://127.0.0.1:{port}/probe?target=github") as r:
                            assert r.status == 200
                            text = await r.text()
                        assert sample(text, "apistatus_up", target="github") == 1
                        async with s.get(f"http://127.0.0.1:{port}/metrics") as r:
                            assert r.status == 200
                    took = await _sigterm_exits_at_once(proc)
            finally:
                release.set()  # before the page's server closes: it would wait for the held answer
    finally:
        await sims.close()
    log = "".join(lines)
    assert proc.returncode == 0, log[-2000:]
    assert took < 2, f"SIGTERM took {took:.1f}s"
    assert "Traceback" not in log, log[-2000:]


async def test_a_listen_address_in_use_is_one_line_naming_it(tmp_path: Path) -> None:
    """Two --web.listen-address flags, the second taken by another program: one line naming it in the
    system's words, exit 1, after the first was opened (and is closed again on the way out)."""
    import socket

    cfg = flipsnack_config_file(tmp_path / "config.yml", "http://127.0.0.1:9", "t", interval="1h", timeout="1s")
    first = free_port()
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        busy = taken.getsockname()[1]
        async with spawn_exporter("--config", str(cfg), "--listen", f"127.0.0.1:{first}",
                                  "--listen", f"127.0.0.1:{busy}") as (proc, lines):
            await asyncio.wait_for(proc.wait(), 30)
    log = "".join(lines)
    assert proc.returncode == 1, log[-2000:]
    assert f"cannot listen on 127.0.0.1:{busy}: Address already in use" in log
    assert "Traceback" not in log and log.count("level=error") == 1
