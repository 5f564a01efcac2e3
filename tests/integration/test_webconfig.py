"""The exporter's own endpoints locked down with an exporter-toolkit web config file: TLS with a
certificate made in the test (trustme), basic auth with bcrypt hashes, client certificates, and
one-line errors for bad files. /probe takes configured target names only."""

from __future__ import annotations

import base64
import contextlib
import os
import ssl
import subprocess
import sys
import textwrap
from collections.abc import AsyncIterator
from pathlib import Path

import aiohttp
import bcrypt
import pytest
import trustme
from aiohttp import web

from exporter.app import Exporter
from exporter.clock import FakeClock
from exporter.simulators.faults import FaultServer, LoopbackResolver
from exporter.web import make_app
from exporter.webconfig import BasicAuth, WebConfigError, apply_web_config, load_web_config

from ..conftest import ROOT, config_from, free_port

PASSWORD = "correct horse battery staple"


def basic(user: str, password: str) -> str:
    return "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode()


@pytest.fixture(scope="module")
def ca() -> trustme.CA:
    return trustme.CA()


@pytest.fixture(scope="module")
def hashed() -> str:
    # cost 4: the format and the check are what is tested here, not bcrypt's slowness
    return bcrypt.hashpw(PASSWORD.encode(), bcrypt.gensalt(rounds=4)).decode()


@pytest.fixture
def certs(tmp_path: Path, ca: trustme.CA) -> Path:
    ca.issue_cert("localhost", "127.0.0.1").private_key_and_cert_chain_pem.write_to_path(str(tmp_path / "server.pem"))
    ca.cert_pem.write_to_path(str(tmp_path / "ca.pem"))
    return tmp_path


def client_ssl(ca: trustme.CA) -> ssl.SSLContext:
    ctx = ssl.create_default_context()
    ca.configure_trust(ctx)
    return ctx


@contextlib.asynccontextmanager
async def protected(web_config: Path, upstream: str = "http://127.0.0.1:1/ok") -> AsyncIterator[str]:
    """The exporter's endpoints, served with ``web_config`` applied, as ``serve()`` does."""
    cfg = config_from({"targets": [{"name": "flip", "vendor": "flipsnack", "base_url": upstream,
                                    "credentials": {"api_key": "k-webcfg", "secret": "s-webcfg"}}]})
    exp = Exporter(cfg, clock=FakeClock(), resolver=LoopbackResolver())
    app = make_app(exp)
    ctx = apply_web_config(app, web_config)
    await exp.start()
    runner = web.AppRunner(app)
    await runner.setup()
    port = free_port()
    await web.TCPSite(runner, "127.0.0.1", port, ssl_context=ctx).start()
    try:
        yield f"{'https' if ctx else 'http'}://localhost:{port}"
    finally:
        await runner.cleanup()
        await exp.close()


def loopback_session(ctx: ssl.SSLContext | None = None) -> aiohttp.ClientSession:
    # "localhost" (the certificate's name) resolved without asking any DNS server
    return aiohttp.ClientSession(connector=aiohttp.TCPConnector(ssl=ctx if ctx is not None else True,
                                                                resolver=LoopbackResolver()))


async def status(session: aiohttp.ClientSession, url: str, **kw: object) -> int:
    async with session.get(url, **kw) as r:  # type: ignore[arg-type]
        await r.read()
        return r.status


async def test_tls_and_basic_auth_guard_every_endpoint(certs: Path, ca: trustme.CA, hashed: str) -> None:
    wc = certs / "web.yml"
    wc.write_text(textwrap.dedent(f"""\
        tls_server_config:
          cert_file: server.pem
          key_file: server.pem
        basic_auth_users:
          prometheus: '{hashed}'
        http_server_config:
          headers:
            X-Content-Type-Options: nosniff
        """))
    async with protected(wc) as url, loopback_session(client_ssl(ca)) as s:
        right = {"Authorization": basic("prometheus", PASSWORD)}
        async with s.get(url + "/metrics", headers=right) as r:
            assert r.status == 200
            assert "apistatus_build_info" in await r.text()
            assert r.headers["X-Content-Type-Options"] == "nosniff"
        # exporter-toolkit puts every endpoint behind basic auth, health checks included
        for path in ("/metrics", "/", "/-/healthy", "/-/ready", "/probe?target=flip"):
            async with s.get(url + path) as r:
                assert r.status == 401, path
                assert r.headers["WWW-Authenticate"].startswith("Basic")
            assert await status(s, url + path, headers={"Authorization": basic("prometheus", "wrong")}) == 401
            assert await status(s, url + path, headers={"Authorization": basic("nobody", PASSWORD)}) == 401
        assert await status(s, url + "/-/healthy", headers=right) == 200
        async with s.post(url + "/-/reload") as r:
            assert r.status == 401
        for header in ("Basic !!!not-base64", "Bearer abc", "Basic " + "cHJvbWV0aGV1cw==", "Basic", "Digest x"):
            assert await status(s, url + "/metrics", headers={"Authorization": header}) == 401, header
    # the TLS port does not talk plain HTTP
    async with loopback_session() as plain:
        with pytest.raises(aiohttp.ClientError):
            await status(plain, url.replace("https", "http") + "/metrics", timeout=aiohttp.ClientTimeout(total=5))


async def test_a_client_that_does_not_trust_the_certificate_is_refused(certs: Path) -> None:
    wc = certs / "web.yml"
    wc.write_text("tls_server_config: {cert_file: server.pem, key_file: server.pem}\n")
    async with protected(wc) as url, loopback_session() as s:
        with pytest.raises(aiohttp.ClientConnectorCertificateError):
            await status(s, url + "/metrics")


async def test_client_certificates_when_required(certs: Path, ca: trustme.CA) -> None:
    wc = certs / "web.yml"
    wc.write_text("tls_server_config:\n  cert_file: server.pem\n  key_file: server.pem\n"
                  "  client_auth_type: RequireAndVerifyClientCert\n  client_ca_file: ca.pem\n")
    with_cert = client_ssl(ca)
    ca.issue_cert("prometheus@example").configure_cert(with_cert)
    async with protected(wc) as url:
        async with loopback_session(with_cert) as s:
            assert await status(s, url + "/metrics") == 200
        async with loopback_session(client_ssl(ca)) as s:
            with pytest.raises(aiohttp.ClientError):
                await status(s, url + "/metrics")


async def test_a_successful_bcrypt_check_is_cached_a_failed_one_is_not(hashed: str) -> None:
    calls = []

    def counting(password: bytes, h: bytes) -> bool:
        calls.append(1)
        return bool(bcrypt.checkpw(password, h))

    auth = BasicAuth({"prometheus": hashed}, counting)
    good = basic("prometheus", PASSWORD)
    bad = basic("prometheus", "nope")
    assert all([await auth.check(good) for _ in range(20)])
    assert len(calls) == 1  # a scrape every 15 s does not pay bcrypt each time
    assert not any([await auth.check(bad) for _ in range(3)])
    assert len(calls) == 4
    unknown = basic("mallory", PASSWORD)
    assert not await auth.check(unknown)
    assert len(calls) == 5  # an unknown user costs a bcrypt check too: timing does not reveal users


async def test_probe_accepts_only_configured_target_names(tmp_path: Path) -> None:
    faults = await FaultServer.start()
    try:
        wc = tmp_path / "web.yml"
        wc.write_text("{}\n")  # an empty web config: plain HTTP, no auth, as exporter-toolkit does
        async with protected(wc, faults.url("ok")) as url, loopback_session() as s:
            for bad in (faults.url("ok"), f"127.0.0.1:{faults.port}", "../flip", "flip2", "", "x" * 5000,
                        "http://169.254.169.254/latest/meta-data/"):
                async with s.get(url + "/probe", params={"target": bad}) as r:
                    body = await r.text()
                    assert r.status in (400, 414), (bad, r.status)
                    assert "Traceback" not in body
            assert faults.connections == 0  # none of them reached the vendor side
            async with s.get(url + "/probe", params={"target": "flip"}) as r:
                assert r.status == 200
                assert 'apistatus_up{target="flip",vendor="flipsnack"} 1' in await r.text()
        assert faults.requests["ok"] == 1
    finally:
        await faults.close()


BAD = [
    ("tls_server_config: [a]\n", "tls_server_config: must be a mapping"),
    ("tls_server_config: {key_file: server.pem}\n", "tls_server_config.cert_file: is required"),
    ("tls_server_config: {cert_file: nope.pem, key_file: server.pem}\n", "tls_server_config.cert_file: file not found"),
    ("tls_server_config: {cert_file: web.yml, key_file: web.yml}\n",
     "tls_server_config.cert_file: certificate and key"),
    ("tls_server_config: {cert_file: server.pem, key_file: server.pem, min_version: TLS99}\n",
     "tls_server_config.min_version: must be one of"),
    ("tls_server_config: {cert_file: server.pem, key_file: server.pem, client_auth_type: Sometimes}\n",
     "tls_server_config.client_auth_type: must be one of"),
    ("tls_server_config: {cert_file: server.pem, key_file: server.pem, client_auth_type: "
     "RequireAndVerifyClientCert}\n", "tls_server_config.client_ca_file: is required"),
    ("tls_server_config: {cert_file: server.pem, key_file: server.pem, cipher_suites: [TLS_AES_128_GCM_SHA256]}\n",
     "tls_server_config.cipher_suites: is not supported"),
    ("tls_server_config: {cert_file: server.pem, key_file: server.pem, kye: x}\n",
     "tls_server_config.kye: unknown key"),
    ("basic_auth_users: {prometheus: hunter2-plaintext}\n", "basic_auth_users.prometheus: must be a bcrypt hash"),
    ("basic_auth_users: [prometheus]\n", "basic_auth_users: must be a mapping"),
    ("http_server_config: {headers: {X-Frame-Options: always}}\n",
     "http_server_config.headers.X-Frame-Options: must be one of"),
    ("http_server_config: {headers: {X-Powered-By: me}}\n", "http_server_config.headers.X-Powered-By: unknown key"),
    ("tls_config: {}\n", "tls_config: unknown key"),
    ("rate_limit: {interval: 1s, burst: 5}\n", "rate_limit: is not supported"),
    ("basic_auth_users: {a: [unclosed\n", "invalid YAML at line"),
]


@pytest.mark.parametrize(("text", "expected"), BAD, ids=[b[1].split(":")[0] + str(i) for i, b in enumerate(BAD)])
def test_bad_web_config_is_one_line_naming_file_and_key(certs: Path, text: str, expected: str) -> None:
    wc = certs / "web.yml"
    wc.write_text(text)
    with pytest.raises(WebConfigError) as err:
        load_web_config(wc)
    msg = str(err.value)
    assert msg.startswith(f"{wc}: ") and expected in msg, msg
    assert "\n" not in msg
    assert "hunter2" not in msg  # a password (or a hash) given by mistake is not echoed


def test_missing_web_config_file_is_named(tmp_path: Path) -> None:
    with pytest.raises(WebConfigError, match=r"web\.yml: file not found"):
        load_web_config(tmp_path / "web.yml")


def test_cli_refuses_a_bad_web_config_with_one_line(certs: Path) -> None:
    (certs / "web.yml").write_text("basic_auth_users: {prometheus: not-a-hash}\n")
    (certs / "config.yml").write_text(
        "targets: [{name: a, vendor: bizwebs, base_url: 'http://127.0.0.1:1', credentials: {token: t0k3n}}]\n")
    proc = subprocess.run([sys.executable, "-m", "exporter", "--config", str(certs / "config.yml"),
                           "--web.config.file", str(certs / "web.yml"), "--listen", f"127.0.0.1:{free_port()}"],
                          capture_output=True, text=True, timeout=60, cwd=ROOT,
                          env={**os.environ, "PYTHONPATH": str(ROOT)})
    assert proc.returncode == 1
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and "web.yml: basic_auth_users.prometheus: must be a bcrypt hash" in lines[0], proc.stderr
    assert "Traceback" not in proc.stderr


def test_an_empty_web_config_means_plain_http_without_auth(tmp_path: Path) -> None:
    wc = tmp_path / "web.yml"
    for text in ("", "{}\n", "tls_server_config: {}\nbasic_auth_users: {}\n", "tls_server_config:\n"):
        wc.write_text(text)
        assert load_web_config(wc) == (None, {}, {}), text
