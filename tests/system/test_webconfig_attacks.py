"""The web config attacked the way issue 25 found it failing, on a real exporter process over loopback:
a file emptied or broken while it runs, a FIFO put in its place, a bcrypt hash too costly to check,
unknown users timed against known ones, SIGTERM while password checks run."""

from __future__ import annotations

import asyncio
import base64
import os
import signal
import statistics
import time
from pathlib import Path

import aiohttp
import bcrypt
import pytest
import yaml

from exporter.webconfig import BasicAuth, WebConfigError, validate_web_config
from exporter.webconfig.auth import MAX_COST
from tests.conftest import free_port, sample, spawn_exporter

PASSWORD = "correct horse battery staple"

def basic(user: str, password: str) -> str:
    return "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode()

def _config(tmp_path: Path) -> Path:
    cfg = tmp_path / "config.yml"
    cfg.write_text(yaml.safe_dump({"global": {"interval": "1h"}, "targets": [
        {"name": "a", "vendor": "flipsnack", "base_url": "http://127.0.0.1:9",
         "credentials": {"api_key": "k", "secret": "s"}}]}))
    return cfg

def _rewrite(path: Path, text: str) -> None:
    path.write_text(text)
    st = path.stat()
    os.utime(path, ns=(st.st_atime_ns, st.st_mtime_ns + 2_000_000_000))  # a visibly newer file

async def _status(s: aiohttp.ClientSession, url: str, auth: str | None = None) -> int:
    async with s.get(url, headers={"Authorization": auth} if auth else {}) as r:
        await r.read()
        return r.status

async def test_an_emptied_broken_or_fifo_web_config_never_switches_basic_auth_off(tmp_path: Path) -> None:
    web = tmp_path / "web.yml"
    hashed = bcrypt.hashpw(PASSWORD.encode(), bcrypt.gensalt(4)).decode()
    users = f"basic_auth_users: {{prometheus: '{hashed}'}}\n"
    web.write_text(users)
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    right = basic("prometheus", PASSWORD)
    async with spawn_exporter("--config", str(_config(tmp_path)), "--web.config.file", str(web),
                              "--listen", f"127.0.0.1:{port}") as (_proc, lines), aiohttp.ClientSession() as s:
        await _until_ready_with_auth(s, base, right)
        bad_files = ("", "# being rewritten\n", "basic_auth_users: [broken\n", "basic_auth_users: {a: x}\n")
        for failures, bad in enumerate(bad_files, 1):
            _rewrite(web, bad)
            for path in ("/metrics", "/", "/-/healthy"):
                assert await _status(s, base + path) == 401, (bad, path)  # never loosened
            assert await _status(s, base + "/metrics", right) == 200, bad
            async with s.post(base + "/-/reload") as r:
                assert r.status == 401, bad
            async with s.get(base + "/metrics", headers={"Authorization": right}) as r:
                text = await r.text()
            assert sample(text, "apistatus_web_config_last_reload_successful") == 0
            assert sample(text, "apistatus_web_config_reload_failures_total") == failures
        # a FIFO in its place: refused from its stat; the loop keeps answering and the old users stay
        web.unlink()
        os.mkfifo(web)
        started = time.monotonic()
        assert await _status(s, base + "/-/healthy") == 401
        assert await _status(s, base + "/-/healthy", right) == 200
        assert time.monotonic() - started < 2
        web.unlink()
        web.write_text(users)  # fixed: re-read, and reported as such
        async with s.get(base + "/metrics", headers={"Authorization": right}) as r:
            assert sample(await r.text(), "apistatus_web_config_last_reload_successful") == 1
    log = "".join(lines)
    assert "parses to nothing" in log and "is a FIFO, not a regular file" in log, log[-3000:]
    assert "invalid YAML" in log and "previous settings stay in force" in log
    assert hashed not in log and "Traceback" not in log

async def _until_ready_with_auth(s: aiohttp.ClientSession, base: str, auth: str, limit: float = 60) -> None:
    end = time.monotonic() + limit
    while time.monotonic() < end:
        try:
            if await _status(s, base + "/-/ready", auth) == 200:
                return
        except aiohttp.ClientError:
            pass
        await asyncio.sleep(0.1)
    raise AssertionError("not ready")

def test_a_bcrypt_cost_above_the_maximum_is_refused_with_one_line(tmp_path: Path) -> None:
    web = tmp_path / "web.yml"
    for cost in (MAX_COST + 1, 31):
        web.write_text(f"basic_auth_users: {{prometheus: '$2y${cost}$" + "a" * 53 + "'}\n")
        with pytest.raises(WebConfigError) as err:
            validate_web_config(web)
        assert str(err.value) == (
            f"{web}: basic_auth_users.prometheus: bcrypt cost {cost} is above the maximum of {MAX_COST} (each step "
            "doubles the time of every check); make one with htpasswd -nBC 10 \"\" | tr -d ':\\n'")
    web.write_text("basic_auth_users: {prometheus: '" + bcrypt.hashpw(b"x", bcrypt.gensalt(MAX_COST)).decode()
                   + "'}\n")
    validate_web_config(web)  # the maximum itself is fine

@pytest.mark.parametrize("cost", [4, 5, 6, 8, 10])
async def test_an_unknown_user_costs_what_a_wrong_password_costs(cost: int) -> None:
    """Timing must not tell which users exist: the medians of the two are within 2x at each cost
    (htpasswd -B's default is 5, Go's 10). Interleaved rounds, fresh passwords (no cache hits)."""
    auth = BasicAuth()
    users = {"prometheus": bcrypt.hashpw(PASSWORD.encode(), bcrypt.gensalt(cost)).decode()}
    assert not await auth.check(users, basic("nobody", "warm-up"))  # the dummy hash is made once
    rounds = 31 if cost < 10 else 9
    known: list[float] = []
    unknown: list[float] = []
    pair = [("prometheus", known), ("nobody", unknown)]
    for i in range(rounds):
        for user, out in pair if i % 2 else pair[::-1]:  # each goes first in every other round
            started = time.perf_counter()
            assert not await auth.check(users, basic(user, f"guess-{i}"))
            out.append(time.perf_counter() - started)
    a, b = statistics.median(known), statistics.median(unknown)
    assert max(a, b) / min(a, b) < 2, (cost, a, b)

async def test_sigterm_ends_the_process_within_2s_while_password_checks_run(tmp_path: Path) -> None:
    web = tmp_path / "web.yml"
    # the costliest hash allowed: each check holds a core for about a second
    web.write_text("basic_auth_users: {prometheus: '" + bcrypt.hashpw(b"x", bcrypt.gensalt(MAX_COST)).decode()
                   + "'}\n")
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    async with spawn_exporter("--config", str(_config(tmp_path)), "--web.config.file", str(web),
                              "--listen", f"127.0.0.1:{port}") as (proc, lines), aiohttp.ClientSession() as s:
        await _wait_listening(s, base)
        # a flood of new wrong passwords and unknown users: checks running and queued
        flood = [asyncio.create_task(_status(s, base + "/metrics", basic(user, f"p{i}")))
                 for i in range(20) for user in ("prometheus", "mallory")]
        await asyncio.sleep(1.5)
        loop = asyncio.get_running_loop()
        proc.send_signal(signal.SIGTERM)
        started = loop.time()
        await asyncio.wait_for(proc.wait(), 10)
        took = loop.time() - started
        for task in flood:
            task.cancel()
        await asyncio.gather(*flood, return_exceptions=True)
    assert proc.returncode == 0, "".join(lines)
    assert took < 2, f"SIGTERM took {took:.1f}s"
    assert "Traceback" not in "".join(lines)

async def _wait_listening(s: aiohttp.ClientSession, base: str, limit: float = 60) -> None:
    end = time.monotonic() + limit
    while time.monotonic() < end:
        try:
            if await _status(s, base + "/-/ready") == 401:  # up, and asking for a password
                return
        except aiohttp.ClientError:
            pass
        await asyncio.sleep(0.1)
    raise AssertionError("not listening")
