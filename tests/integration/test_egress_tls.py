"""TLS client settings of ``http_client.tls_config`` against real TLS servers on 127.0.0.1, with
certificates made in the test (trustme): a private CA, a vendor that requires a client certificate,
``server_name`` for SNI and verification, an expired certificate, a minimum version; and the
``apistatus_tls_cert_expiry_timestamp_seconds`` metric against the certificate's own notAfter."""

from __future__ import annotations

import datetime as dt
import json
import logging
import ssl
import time
from pathlib import Path

import pytest
import trustme
from aiohttp import web

from exporter.clock import FakeClock
from exporter.egress import Egress
from exporter.engine import new_session
from exporter.probe import Prober
from exporter.simulators.faults import FaultServer, LoopbackResolver

from ..conftest import config_from, sample, serve, wait_for
from ..egress_support import (
    EXPIRY,
    exporter_with,
    flip,
    not_after,
    outcome,
    probe,
    server_ctx,
    shows_expiry_of,
    tls_vendor,
    write_client,
)


async def test_private_ca_via_ca_file_and_the_expiry_metric(ca: trustme.CA, ca_file: str) -> None:
    leaf = ca.issue_cert("localhost")
    srv = await FaultServer.start(server_ctx(leaf))
    try:
        url = srv.url("ok", host="localhost")
        # as shipped, the private CA is not trusted
        async with exporter_with([flip("t", url)], resolver=LoopbackResolver()) as ex:
            assert outcome(await probe(ex, "t")) == ("network_error", "tls")
            assert sample(await ex.metrics(), EXPIRY, target="t") is None  # no successful handshake
        client = {"tls_config": {"ca_file": ca_file}}
        async with exporter_with([flip("t", url)], client, resolver=LoopbackResolver()) as ex:
            assert outcome(await probe(ex, "t")) == ("ok", "20")
            text = await ex.metrics()
        assert shows_expiry_of(text, leaf, target="t", vendor="flipsnack")
        assert f"# TYPE {EXPIRY} gauge" in text
    finally:
        await srv.close()


async def test_plain_http_has_no_expiry_metric() -> None:
    srv = await FaultServer.start()
    try:
        async with exporter_with([flip("t", srv.url("ok"))]) as ex:
            assert outcome(await probe(ex, "t")) == ("ok", "20")
            text = await ex.metrics()
        assert sample(text, "apistatus_up", target="t") == 1
        assert EXPIRY not in text
    finally:
        await srv.close()


async def test_targets_without_http_client_keep_the_shared_session_and_get_the_expiry(
        ca: trustme.CA, ca_file: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """No block: the one shared session, as before; the expiry is read for every HTTPS target."""
    leaf = ca.issue_cert("localhost")
    srv = await FaultServer.start(server_ctx(leaf))
    try:
        skip = {"tls_config": {"insecure_skip_verify": True}}
        cfg = config_from({"targets": [flip("a", srv.url("ok", host="localhost")),
                                       flip("b", srv.url("ok", host="localhost")),
                                       flip("c", srv.url("ok", host="localhost"), http_client=skip),
                                       flip("d", srv.url("ok", host="localhost"), http_client=skip)]})
        # the system's roots, as the shipped exporter finds them: here the test CA
        monkeypatch.setenv("SSL_CERT_FILE", ca_file)
        monkeypatch.setenv("SSL_CERT_DIR", str(tmp_path))
        async with new_session(resolver=LoopbackResolver()) as session:
            egress = Egress(session, new_session)
            prober = Prober(session, FakeClock(), egress=egress)
            results = [await prober.probe(t) for t in cfg.targets]
            a, b, c, d = cfg.targets
            assert egress.session(a.http_client) is egress.session(b.http_client) is session
            assert egress.session(c.http_client) is egress.session(d.http_client) is not session
            await egress.close()
        assert [outcome(r) for r in results] == [("ok", "20")] * 4
        assert {r.tls_cert_expiry for r in results} == {not_after(leaf)}
    finally:
        await srv.close()


async def test_mtls_vendor_refuses_without_client_certificate_and_accepts_with_it(
        ca: trustme.CA, ca_file: str, tmp_path: Path) -> None:
    client_ca = trustme.CA()
    with tls_vendor(server_ctx(ca.issue_cert("localhost"), client_ca=client_ca)) as vendor:
        async with exporter_with([flip("t", vendor.url())], {"tls_config": {"ca_file": ca_file}},
                                 resolver=LoopbackResolver()) as ex:
            assert outcome(await probe(ex, "t")) == ("network_error", "tls")
        # the vendor's thread notes why it refused the handshake a moment after the client has seen it
        wait_for("the vendor to refuse for want of a certificate",
                 lambda: any("certificate" in r.lower() for r in vendor.refused), timeout=10)
        (tmp_path / "wrong").mkdir()
        wrong_cert, wrong_key = write_client(trustme.CA().issue_cert("exporter.example"), tmp_path / "wrong")
        async with exporter_with([flip("t", vendor.url())], {"tls_config": {
                "ca_file": ca_file, "cert_file": wrong_cert, "key_file": wrong_key}},
                resolver=LoopbackResolver()) as ex:
            assert outcome(await probe(ex, "t")) == ("network_error", "tls")  # from a CA the vendor does not know
        cert, key = write_client(client_ca.issue_cert("exporter.example"), tmp_path)
        async with exporter_with([flip("t", vendor.url())], {"tls_config": {
                "ca_file": ca_file, "cert_file": cert, "key_file": key}}, resolver=LoopbackResolver()) as ex:
            assert outcome(await probe(ex, "t")) == ("ok", "20")


async def test_server_name_overrides_the_host_for_sni_and_verification(ca: trustme.CA, ca_file: str) -> None:
    with tls_vendor(server_ctx(ca.issue_cert("api.vendor.example"))) as vendor:
        url = vendor.url("127.0.0.1")  # reached by address: the certificate names a host
        async with exporter_with([flip("t", url)], {"tls_config": {"ca_file": ca_file}}) as ex:
            assert outcome(await probe(ex, "t")) == ("network_error", "tls")
        vendor.sni.clear()
        async with exporter_with([flip("t", url)], {"tls_config": {
                "ca_file": ca_file, "server_name": "api.vendor.example"}}) as ex:
            assert outcome(await probe(ex, "t")) == ("ok", "20")
        assert vendor.sni == ["api.vendor.example"]
        async with exporter_with([flip("t", url)], {"tls_config": {
                "ca_file": ca_file, "server_name": "other.vendor.example"}}) as ex:
            assert outcome(await probe(ex, "t")) == ("network_error", "tls")  # verified against server_name


async def test_expired_certificate_is_a_tls_error_and_skip_verify_shows_its_past_expiry(
        ca: trustme.CA, ca_file: str, caplog: pytest.LogCaptureFixture) -> None:
    now = dt.datetime.now(dt.UTC)
    leaf = ca.issue_cert("localhost", not_before=now - dt.timedelta(days=30), not_after=now - dt.timedelta(days=2))
    with tls_vendor(server_ctx(leaf)) as vendor:
        async with exporter_with([flip("t", vendor.url())], {"tls_config": {"ca_file": ca_file}},
                                 resolver=LoopbackResolver()) as ex:
            result = await probe(ex, "t")
            assert outcome(result) == ("network_error", "tls")
            assert sample(await ex.metrics(), EXPIRY, target="t") is None
        caplog.clear()
        with caplog.at_level(logging.WARNING, logger="exporter.config"):
            async with exporter_with([flip("t", vendor.url()), flip("u", vendor.url())],
                                     {"tls_config": {"insecure_skip_verify": True}},
                                     resolver=LoopbackResolver()) as ex:
                assert outcome(await probe(ex, "t")) == ("ok", "20")
                text = await ex.metrics()
                _, page = await ex.get("/")
                _, api = await ex.get("/api/v1/targets")
    warnings = [r.getMessage() for r in caplog.records if "insecure_skip_verify" in r.getMessage()]
    assert len(warnings) == 2 and "target t:" in warnings[0] and "target u:" in warnings[1]  # one per target
    assert sample(text, EXPIRY, target="t") == not_after(leaf) < now.timestamp()
    assert page.count('class="note c-degraded insecure"') == 2  # both targets say verification is off
    shown = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(not_after(leaf)))
    assert f'<time datetime="{shown}"' in page
    view = json.loads(api)["targets"][0]
    assert view["http_client"]["insecure_skip_verify"] is True
    assert view["tls_cert_expiry"] == not_after(leaf)


@pytest.mark.parametrize(("option", "server", "allowed", "refused"), [
    ("min_version", "maximum_version", "TLS12", "TLS13"),  # a vendor stuck at TLS 1.2: min_version refuses it
    ("max_version", "minimum_version", "TLS13", "TLS12"),  # a TLS 1.3-only vendor: max_version refuses it
])
async def test_a_version_bound_refuses_a_server_outside_it(ca: trustme.CA, ca_file: str, option: str,
                                                           server: str, allowed: str, refused: str) -> None:
    ctx = server_ctx(ca.issue_cert("localhost"))
    # the vendor's own bound is the version the option allows: one side of it ok, the other refused
    setattr(ctx, server, ssl.TLSVersion.TLSv1_2 if allowed == "TLS12" else ssl.TLSVersion.TLSv1_3)
    with tls_vendor(ctx) as vendor:
        for version, expected in ((allowed, ("ok", "20")), (refused, ("network_error", "tls"))):
            async with exporter_with([flip("t", vendor.url())],
                                     {"tls_config": {"ca_file": ca_file, option: version}},
                                     resolver=LoopbackResolver()) as ex:
                assert outcome(await probe(ex, "t")) == expected, version


async def test_follow_redirects_off_by_default_and_on_when_asked() -> None:
    async def vendor(request: web.Request) -> web.Response:
        if request.path.startswith("/moved/"):
            raise web.HTTPFound(request.path.removeprefix("/moved"))
        return web.json_response({"code": 20})

    async with serve(vendor) as url:
        async with exporter_with([flip("t", url + "/moved")]) as ex:
            assert outcome(await probe(ex, "t")) == ("client_error", "http_302")  # a redirect is the answer
        async with exporter_with([flip("t", url + "/moved")], {"follow_redirects": True}) as ex:
            assert outcome(await probe(ex, "t")) == ("ok", "20")


async def test_a_reused_connection_keeps_the_last_known_expiry(ca: trustme.CA, ca_file: str) -> None:
    leaf = ca.issue_cert("localhost")
    connections: set[int] = set()

    async def handler(request: web.Request) -> web.Response:
        assert request.transport is not None
        connections.add(id(request.transport))
        return web.json_response({"ok": True})

    app = web.Application()
    app.router.add_route("*", "/{tail:.*}", handler)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0, ssl_context=server_ctx(leaf))
    await site.start()
    port = runner.addresses[0][1]
    try:
        target = {"name": "shop", "vendor": "bizwebs", "base_url": f"https://localhost:{port}",
                  "credentials": {"token": "egress-token"}}
        async with exporter_with([target], {"tls_config": {"ca_file": ca_file}},
                                 resolver=LoopbackResolver()) as ex:
            first = await probe(ex, "shop")
            second = await probe(ex, "shop")
            text = await ex.metrics()
        assert outcome(first)[0] == outcome(second)[0] == "ok"
        assert len(connections) == 1  # the second probe reused the first one's connection
        assert first.tls_cert_expiry == second.tls_cert_expiry == not_after(leaf)
        assert shows_expiry_of(text, leaf, target="shop")
    finally:
        await runner.cleanup()


async def test_phase_timings_are_exported_shown_and_zero_where_skipped(ca: trustme.CA, ca_file: str) -> None:
    """apistatus_http_duration_seconds: every phase of the final request, always all five; over a new
    TLS connection each phase took time, on the reused connection resolve, connect and tls are 0."""
    srv = await FaultServer.start(server_ctx(ca.issue_cert("localhost")))
    try:
        client = {"tls_config": {"ca_file": ca_file}}
        async with exporter_with([flip("t", srv.url("ok", host="localhost"))], client,
                                 resolver=LoopbackResolver()) as ex:
            first = await probe(ex, "t")
            text = await ex.metrics()
            _, page = await ex.get("/targets/t")
        phases = ("resolve", "connect", "tls", "processing", "transfer")
        got = {p: sample(text, "apistatus_http_duration_seconds", target="t", vendor="flipsnack", phase=p)
               for p in phases}
        assert first.phases is not None and tuple(got.values()) == pytest.approx(first.phases, abs=1e-6)
        assert got["connect"] > 0 and got["tls"] > 0 and got["processing"] > 0
        assert "# TYPE apistatus_http_duration_seconds gauge" in text
        assert "<dt>phases</dt>" in page and "processing" in page
    finally:
        await srv.close()
    srv = await FaultServer.start()  # plain HTTP: no TLS phase, all five still exported
    try:
        async with exporter_with([flip("p", srv.url("ok"))]) as ex:
            await probe(ex, "p")
            text = await ex.metrics()
        assert sample(text, "apistatus_http_duration_seconds", target="p", phase="tls") == 0
        assert sample(text, "apistatus_http_duration_seconds", target="p", phase="connect") > 0
    finally:
        await srv.close()
