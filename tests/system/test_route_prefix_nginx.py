"""The exporter behind a real nginx reverse proxy on loopback, under a path: passed through as it is
(``--web.route-prefix``), or stripped by the proxy (``--web.external-url`` with the prefix ``/``).
Every page, link and endpoint must work through the proxy. nginx is required (``make deps``)."""

from __future__ import annotations

import asyncio
import shutil
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

import pytest

from exporter.simulators import SimulatorSet

from ..conftest import free_port
from .test_cli import check_prefixed, crawl, serving, sims, write_config

__all__ = ["sims"]  # the fixture, imported for this module's tests


@asynccontextmanager
async def nginx_servers(tmp_path: Path, http: str, ports: list[int]) -> AsyncIterator[None]:
    """nginx with ``http`` in its ``http`` block (``server`` blocks and options), once it listens on all of
    ``ports`` (loopback)."""
    binary = shutil.which("nginx") or next((p for p in ("/usr/sbin/nginx",) if Path(p).exists()), None)
    assert binary, "nginx is required (Debian package nginx-light; make deps)"
    temp = tmp_path / "nginx-temp"
    temp.mkdir()
    conf = tmp_path / "nginx.conf"
    conf.write_text(f"""
daemon off;
worker_processes 1;
pid {tmp_path}/nginx.pid;
error_log {tmp_path}/nginx-error.log warn;
events {{ worker_connections 64; }}
http {{
  access_log off;
  client_body_temp_path {temp}/body; proxy_temp_path {temp}/proxy; fastcgi_temp_path {temp}/fcgi;
  uwsgi_temp_path {temp}/uwsgi; scgi_temp_path {temp}/scgi;
  {http}
}}
""")
    proc = await asyncio.create_subprocess_exec(binary, "-p", str(tmp_path), "-c", str(conf),
                                                stdout=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.DEVNULL)
    try:
        for port in ports:
            for _ in range(100):  # bounded: nginx starts within a few hundred ms
                try:
                    _, writer = await asyncio.open_connection("127.0.0.1", port)
                    writer.close()
                    break
                except OSError:
                    assert proc.returncode is None, (tmp_path / "nginx-error.log").read_text()
                    await asyncio.sleep(0.05)
            else:
                pytest.fail("nginx did not start")
        yield
    finally:
        if proc.returncode is None:
            proc.terminate()
            await asyncio.wait_for(proc.wait(), 10)


@asynccontextmanager
async def nginx(tmp_path: Path, locations: str) -> AsyncIterator[str]:
    """nginx with one plain-HTTP server of these ``location`` blocks; yields its URL."""
    port = free_port()
    async with nginx_servers(tmp_path, f"server {{ listen 127.0.0.1:{port}; {locations} }}", [port]):
        yield f"http://127.0.0.1:{port}"


async def test_behind_nginx_under_a_path_passed_through(tmp_path: Path, sims: SimulatorSet) -> None:
    config = write_config(tmp_path, sims)
    exporter_port = free_port()
    async with serving("--config.file", str(config), "--web.listen-address", f"127.0.0.1:{exporter_port}",
                       "--web.external-url", "http://proxy.example/apistatus/", ready="/apistatus/-/ready",
                       base=f"http://127.0.0.1:{exporter_port}") as (_url, session, _), \
            nginx(tmp_path, f"location /apistatus {{ proxy_pass http://127.0.0.1:{exporter_port}; }}") as proxy:
        await check_prefixed(session, proxy, "/apistatus", root_redirects=False)  # nginx serves / itself


async def test_behind_nginx_that_strips_the_path(tmp_path: Path, sims: SimulatorSet) -> None:
    config = write_config(tmp_path, sims)
    exporter_port = free_port()
    async with serving("--config.file", str(config), "--web.listen-address", f"127.0.0.1:{exporter_port}",
                       "--web.external-url", "http://proxy.example/tools/apistatus/", "--web.route-prefix", "/",
                       base=f"http://127.0.0.1:{exporter_port}") as (_url, session, lines), \
            nginx(tmp_path, f"location /tools/apistatus/ {{ proxy_pass http://127.0.0.1:{exporter_port}/; }}") as proxy:
        pages = await crawl(session, f"{proxy}/tools/apistatus/", f"{proxy}/tools/apistatus/")
        assert f"{proxy}/tools/apistatus/targets/github" in pages and f"{proxy}/tools/apistatus/metrics" in pages
        async with session.get(f"{proxy}/tools/apistatus/probe?target=github") as r:
            assert r.status == 200
    assert any("metrics at http://proxy.example/tools/apistatus/metrics" in line for line in lines)
