"""Egress through a real forward proxy: Debian's tinyproxy on 127.0.0.1, started by the tests with a
config of their own. HTTPS vendors are reached through it with CONNECT, plain HTTP ones with
absolute-form requests; with and without proxy basic auth; ``no_proxy``; ``proxy_from_environment``;
a proxy that is down, one that answers 407, one that refuses the tunnel.

The vendor is named ``localhost`` and the exporter gets a resolver that resolves nothing: a request
that reached the vendor can only have gone through the proxy (which resolves the name itself).
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import logging
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
import trustme
from aiohttp import web

from exporter.simulators.faults import FaultServer, LoopbackResolver
from exporter.simulators.movingimage import MovingimageSimulator

from ..conftest import free_port, sample, serve
from ..egress_support import (
    NoDNS,
    exporter_with,
    flip,
    outcome,
    probe,
    server_ctx,
    shows_expiry_of,
    tinyproxy,
    tls_vendor,
)

# tinyproxy takes only a few characters in a password; the URL spells the '.' percent-encoded, which
# the exporter decodes
USER, PASSWORD = "alice", "s3cr3t.proxy_pw-Z9"
QUOTED = "s3cr3t%2Eproxy_pw-Z9"


async def test_https_vendor_through_the_proxy_with_connect(ca: trustme.CA, ca_file: str, tmp_path: Path) -> None:
    leaf = ca.issue_cert("localhost")
    with tinyproxy(tmp_path) as proxy, tls_vendor(server_ctx(leaf)) as vendor:
        targets = [flip("t", vendor.url())]
        async with exporter_with(targets, {"tls_config": {"ca_file": ca_file}}, resolver=NoDNS()) as ex:
            assert outcome(await probe(ex, "t")) == ("network_error", "dns")  # no way there but the proxy
        assert proxy.requests() == []
        client = {"proxy_url": proxy.url, "tls_config": {"ca_file": ca_file}}
        async with exporter_with(targets, client, resolver=NoDNS()) as ex:
            assert outcome(await probe(ex, "t")) == ("ok", "20")
            text = await ex.metrics()
            _, page = await ex.get("/targets/t")
        assert proxy.connects() == [f"CONNECT localhost:{vendor.port} HTTP/1.1"]
        assert vendor.handshakes == 1
        # the vendor's certificate, seen through the tunnel
        assert shows_expiry_of(text, leaf, target="t")
        assert f"127.0.0.1:{proxy.port}" in page  # the page says which proxy the target goes through


async def test_proxy_basic_auth_and_407_and_the_password_shown_nowhere(
        ca: trustme.CA, ca_file: str, tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    plain = await FaultServer.start()
    try:
        with tinyproxy(tmp_path, auth=(USER, PASSWORD)) as proxy, \
                tls_vendor(server_ctx(ca.issue_cert("localhost"))) as vendor:
            good = f"http://{USER}:{QUOTED}@127.0.0.1:{proxy.port}"
            targets = [flip("tls", vendor.url()), flip("plain", plain.url("ok", host="localhost")),
                       flip("no-auth", vendor.url(), http_client={"proxy_url": proxy.url}),
                       flip("wrong", vendor.url(), http_client={"proxy_url": proxy.url_with(USER, "guess")}),
                       flip("plain-no-auth", plain.url("ok", host="localhost"),
                            http_client={"proxy_url": proxy.url})]
            with caplog.at_level(logging.DEBUG):
                async with exporter_with(targets, {"proxy_url": good, "tls_config": {"ca_file": ca_file}},
                                         resolver=NoDNS()) as ex:
                    got = {name: outcome(await probe(ex, name)) for name in
                           ("tls", "plain", "no-auth", "wrong", "plain-no-auth")}
                    _, probed = await ex.get("/probe", params={"target": "wrong"})
                    shown = [await ex.metrics(), probed]
                    for path in ("/", "/targets/tls", "/targets/wrong", "/api/v1/targets", "/api/v1/targets/tls"):
                        status, body = await ex.get(path)
                        assert status == 200, path
                        shown.append(body)
            assert got == {"tls": ("ok", "20"), "plain": ("ok", "20"), "no-auth": ("network_error", "proxy_auth"),
                           "wrong": ("network_error", "proxy_auth"),
                           "plain-no-auth": ("network_error", "proxy_auth")}
            assert any(r.startswith(f"GET http://localhost:{plain.port}/ok") for r in proxy.requests())
            assert plain.requests["ok"] == 1  # only the authorised plain request reached the vendor
            assert vendor.handshakes == 1
    finally:
        await plain.close()
    basic = base64.b64encode(f"{USER}:{PASSWORD}".encode()).decode()
    everything = "\n".join([*shown, caplog.text])
    for secret in (PASSWORD, QUOTED, basic):
        assert secret not in everything
    assert f"{USER}@127.0.0.1:{proxy.port}" in shown[2]  # the page shows the user, not the password
    assert 'code="proxy_auth"' in shown[1] and 'class="network_error"' in shown[1]


async def test_no_proxy_bypasses_the_proxy(ca: trustme.CA, ca_file: str, tmp_path: Path) -> None:
    with tinyproxy(tmp_path) as proxy, tls_vendor(server_ctx(ca.issue_cert("localhost", "127.0.0.1"))) as vendor:
        targets = [flip("direct", vendor.url("127.0.0.1")), flip("proxied", vendor.url("localhost"))]
        client = {"proxy_url": proxy.url, "no_proxy": "127.0.0.0/8,.internal.example",
                  "tls_config": {"ca_file": ca_file}}
        async with exporter_with(targets, client, resolver=LoopbackResolver()) as ex:
            assert outcome(await probe(ex, "direct")) == ("ok", "20")
            assert proxy.requests() == []
            assert outcome(await probe(ex, "proxied")) == ("ok", "20")
        assert proxy.connects() == [f"CONNECT localhost:{vendor.port} HTTP/1.1"]


async def test_proxy_from_environment(ca: trustme.CA, ca_file: str, tmp_path: Path) -> None:
    with tinyproxy(tmp_path) as proxy, tls_vendor(server_ctx(ca.issue_cert("localhost"))) as vendor:
        targets = [flip("t", vendor.url())]
        client = {"proxy_from_environment": True, "tls_config": {"ca_file": ca_file}}
        env = {"HTTPS_PROXY": proxy.url, "HTTP_PROXY": "http://127.0.0.1:1"}
        async with exporter_with(targets, client, env=env, resolver=NoDNS()) as ex:
            assert outcome(await probe(ex, "t")) == ("ok", "20")
        assert proxy.connects() == [f"CONNECT localhost:{vendor.port} HTTP/1.1"]
        # NO_PROXY (lower case too) is read from the environment as well: then no proxy, and no DNS
        async with exporter_with(targets, client, env={"https_proxy": proxy.url, "no_proxy": "localhost"},
                                 resolver=NoDNS()) as ex:
            assert outcome(await probe(ex, "t")) == ("network_error", "dns")
        assert len(proxy.connects()) == 1
        # without the variables, proxy_from_environment means direct
        async with exporter_with(targets, client, env={}, resolver=NoDNS()) as ex:
            assert outcome(await probe(ex, "t")) == ("network_error", "dns")


async def test_proxy_down_is_proxy_connect_not_the_vendor(ca_file: str) -> None:
    targets = [flip("refused", "https://localhost:443", http_client={"proxy_url": f"http://127.0.0.1:{free_port()}"}),
               flip("unresolved", "https://localhost:443", http_client={"proxy_url": "http://proxy.invalid:3128"}),
               flip("plain", "http://localhost:80", http_client={"proxy_url": f"http://127.0.0.1:{free_port()}"})]
    async with exporter_with(targets, resolver=NoDNS()) as ex:
        for name in ("refused", "unresolved", "plain"):
            result = await probe(ex, name)
            assert outcome(result) == ("network_error", "proxy_connect"), name
            assert "proxy" in result.outcome.message
        text = await ex.metrics()
    assert sample(text, "apistatus_responses_total", target="refused", code="proxy_connect",
                  **{"class": "network_error"}) == 1


async def test_proxy_refusing_the_tunnel_is_proxy_error(ca: trustme.CA, ca_file: str, tmp_path: Path) -> None:
    """tinyproxy allows CONNECT only to the ports listed (443 here): any other is refused with 403."""
    with tinyproxy(tmp_path, connect_ports=(443,)) as proxy, \
            tls_vendor(server_ctx(ca.issue_cert("localhost"))) as vendor:
        async with exporter_with([flip("t", vendor.url())], {"proxy_url": proxy.url}, resolver=NoDNS()) as ex:
            result = await probe(ex, "t")
        assert outcome(result) == ("network_error", "proxy_error")
        assert "403" in result.outcome.message
        assert vendor.handshakes == 0


async def test_login_and_check_of_a_token_vendor_both_go_through_the_proxy(
        ca: trustme.CA, ca_file: str, tmp_path: Path) -> None:
    sim = MovingimageSimulator()
    await sim.start("127.0.0.1", ssl_context=server_ctx(ca.issue_cert("localhost")))
    try:
        target = {"name": "videos", "vendor": "movingimage", "credentials": sim.credentials(),
                  "base_url": sim.base_url.replace("127.0.0.1", "localhost"), **({"check": sim.check()}
                                                                                 if sim.check() else {})}
        with tinyproxy(tmp_path, auth=(USER, PASSWORD)) as proxy:
            client = {"proxy_url": f"http://{USER}:{QUOTED}@127.0.0.1:{proxy.port}", "tls_config": {"ca_file": ca_file}}
            async with exporter_with([target], client, resolver=NoDNS()) as ex:
                result = await probe(ex, "videos")
        assert result.outcome.cls == "ok", result.outcome
        assert result.requests >= 2 and sim.counts["login"] == 1  # the login, then the check: DNS-less
        assert proxy.connects()
    finally:
        await sim.close()


@contextlib.asynccontextmanager
async def recording_proxy(answer: bytes) -> AsyncIterator[tuple[int, list[bytes]]]:
    """A loopback listener that records what a client sends a proxy and answers ``answer``."""
    heads: list[bytes] = []

    async def on_connect(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        with contextlib.suppress(OSError, asyncio.IncompleteReadError, asyncio.LimitOverrunError):
            heads.append(await reader.readuntil(b"\r\n\r\n"))
            writer.write(answer)
            await writer.drain()
        writer.close()

    server = await asyncio.start_server(on_connect, "127.0.0.1", 0)
    try:
        yield server.sockets[0].getsockname()[1], heads
    finally:
        server.close()
        await server.wait_closed()


async def test_proxy_connect_header_goes_with_connect_only() -> None:
    refused = b"HTTP/1.1 502 Bad Gateway\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
    async with recording_proxy(refused) as (port, heads):
        client: dict[str, Any] = {"proxy_url": f"http://{USER}:{QUOTED}@127.0.0.1:{port}",
                                  "proxy_connect_header": {"X-Team": ["payments"], "X-Token": ["t0ken-value"]}}
        async with exporter_with([flip("t", "https://api.vendor.example")], client, resolver=NoDNS()) as ex:
            result = await probe(ex, "t")
            _, page = await ex.get("/targets/t")
    assert outcome(result) == ("network_error", "proxy_error")
    head = heads[0].decode()
    assert head.startswith("CONNECT api.vendor.example:443 HTTP/1.1\r\n")
    assert "X-Team: payments\r\n" in head and "X-Token: t0ken-value\r\n" in head
    assert f"Proxy-Authorization: Basic {base64.b64encode(f'{USER}:{PASSWORD}'.encode()).decode()}" in head
    assert "t0ken-value" not in page and PASSWORD not in page


async def test_a_407_from_a_vendor_reached_directly_is_the_vendors_answer() -> None:
    async def handler(request: web.Request) -> web.Response:
        return web.Response(status=407, text="odd vendor")

    async with serve(handler) as url:
        shop = {"name": "shop", "vendor": "bizwebs", "base_url": url, "credentials": {"token": "egress-token"}}
        async with exporter_with([shop]) as ex:
            result = await probe(ex, "shop")
    assert result.outcome.code != "proxy_auth" and result.outcome.http_status == 407
