"""The installed `apistatus-exporter` script, not `python -m exporter`: it imports the entry module
instead of running it as __main__, and a SIGHUP soon after it starts must not kill it either.

No program can act on a signal before its interpreter runs its first line, so the test waits until the
process has taken SIGHUP over, and checks that it did so first of all (ignored from the first line of
the entry module, long before serve() installs the reload handler)."""

from __future__ import annotations

import asyncio
import contextlib
import shutil
import signal
from pathlib import Path

import aiohttp
import yaml

from tests.conftest import free_port

SIGHUP_BIT = 1 << (signal.SIGHUP - 1)


def _sighup_disposition(pid: int) -> str:
    """'ignored', 'caught' or 'default', from /proc/PID/status."""
    with contextlib.suppress(OSError):
        fields = dict(line.split(":\t", 1) for line in Path(f"/proc/{pid}/status").read_text().splitlines()
                      if ":\t" in line)
        if int(fields["SigIgn"], 16) & SIGHUP_BIT:
            return "ignored"
        if int(fields["SigCgt"], 16) & SIGHUP_BIT:
            return "caught"
    return "default"


async def test_sighup_in_the_first_instants_of_the_installed_script_is_survived(tmp_path: Path) -> None:
    script = shutil.which("apistatus-exporter")
    assert script, "the apistatus-exporter script is not installed (make deps installs the package)"
    cfg = tmp_path / "config.yml"
    cfg.write_text(yaml.safe_dump({"global": {"interval": "1h"}, "targets": [
        {"name": "t", "vendor": "flipsnack", "base_url": "http://127.0.0.1:9",
         "credentials": {"api_key": "k", "secret": "s"}}]}))
    port = free_port()
    proc = await asyncio.create_subprocess_exec(
        script, "--config.file", str(cfg), "--web.listen-address", f"127.0.0.1:{port}",
        stdout=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.PIPE)
    ready = False
    try:
        loop = asyncio.get_running_loop()
        end = loop.time() + 30
        first = "default"
        while first == "default" and loop.time() < end and proc.returncode is None:
            first = _sighup_disposition(proc.pid)
            await asyncio.sleep(0.001)
        assert first == "ignored", f"SIGHUP was first {first}: a SIGHUP before serve() would kill the process"
        async with aiohttp.ClientSession() as session:
            while loop.time() < end and not ready:
                # a config manager that signals "reload" as soon as it has started us, and again and again
                with contextlib.suppress(ProcessLookupError):
                    proc.send_signal(signal.SIGHUP)
                await asyncio.sleep(0.02)
                assert proc.returncode is None, "SIGHUP killed the exporter during start-up"
                with contextlib.suppress(aiohttp.ClientError):
                    async with session.get(f"http://127.0.0.1:{port}/-/ready") as resp:
                        ready = resp.status == 200
        assert ready, "the exporter never became ready"
        proc.send_signal(signal.SIGTERM)
        _, err = await asyncio.wait_for(proc.communicate(), 10)
    finally:
        if proc.returncode is None:
            proc.kill()
            await proc.wait()
    assert proc.returncode == 0, err.decode()
    assert b"Traceback" not in err
