"""The web config (``--web.config.file``) with exporter-toolkit's semantics, field by field: real TLS with
certificates made in the test (trustme: CA, server and client certificates with SANs), real HTTP
requests over loopback, and one-line errors naming the file and key path for what the toolkit refuses."""

from __future__ import annotations

import asyncio
import base64
import contextlib
import datetime
import os
import ssl
import subprocess
import sys
import textwrap
import warnings
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path

import aiohttp
import bcrypt
import pytest
import trustme
from aiohttp import web
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from exporter._yamlnode import ConfigError
from exporter.app import Exporter
from exporter.clock import FakeClock
from exporter.simulators.faults import FaultServer, LoopbackResolver
from exporter.web import ConnectionGuard, GuardedSite, ServerLimits, make_app
from exporter.webconfig import (
    BasicAuth,
    WebConfigError,
    apply_web_config,
    cert_sans,
    load_web_config,
    validate_web_config,
)

from ..conftest import ROOT, config_from, free_port

PASSWORD = "correct horse battery staple"
RSA = trustme.KeyType.RSA


def basic(user: str, password: str) -> str:
    return "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode()


@pytest.fixture(scope="module")
def ca() -> trustme.CA:
    return trustme.CA(key_type=RSA)


@pytest.fixture(scope="module")
def other_ca() -> trustme.CA:
    return trustme.CA(key_type=RSA)


@pytest.fixture(scope="module")
def hashed() -> str:
    # cost 4: the format and the check are what is tested here, not bcrypt's slowness
    return bcrypt.hashpw(PASSWORD.encode(), bcrypt.gensalt(rounds=4)).decode()


@pytest.fixture(scope="module")
def server_cert(ca: trustme.CA) -> trustme.LeafCert:
    # one RSA key for the module: making one costs more than most tests here, and no test changes it
    # (a test that renews the certificate writes a certificate of its own over the files)
    return ca.issue_cert("localhost", "127.0.0.1", key_type=RSA)


@pytest.fixture
def certs(tmp_path: Path, ca: trustme.CA, server_cert: trustme.LeafCert) -> Path:
    server = server_cert
    server.cert_chain_pems[0].write_to_path(str(tmp_path / "server.crt"))
    server.private_key_pem.write_to_path(str(tmp_path / "server.key"))
    server.private_key_and_cert_chain_pem.write_to_path(str(tmp_path / "server.pem"))
    ca.cert_pem.write_to_path(str(tmp_path / "ca.pem"))
    (tmp_path / "empty.pem").write_bytes(b"")
    return tmp_path


def client_ctx(ca: trustme.CA, cert: trustme.LeafCert | None = None, *, max_version: ssl.TLSVersion | None = None,
               ciphers: str | None = None, curve: str | None = None) -> ssl.SSLContext:
    ctx = ssl.create_default_context()
    ca.configure_trust(ctx)
    if cert is not None:
        cert.configure_cert(ctx)
    if max_version is not None:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", DeprecationWarning)  # TLS 1.1 on purpose
            ctx.maximum_version = max_version
    if ciphers is not None:
        ctx.set_ciphers(ciphers)
    if curve is not None:
        ctx.set_ecdh_curve(curve)
    return ctx


@dataclass
class Resp:
    status: int
    headers: dict[str, str] = field(default_factory=dict)
    body: bytes = b""
    cipher: str = ""
    version: str = ""


async def get(port: int, ctx: ssl.SSLContext | None = None, path: str = "/", auth: str | None = None) -> Resp | None:
    """One HTTP/1.1 request on a fresh connection; None when the server refuses the connection."""
    extra = f"Authorization: {auth}\r\n" if auth else ""
    try:
        reader, writer = await asyncio.wait_for(asyncio.open_connection(
            "127.0.0.1", port, ssl=ctx, server_hostname="localhost" if ctx else None), 10)
        sslobj = writer.get_extra_info("ssl_object")
        writer.write(f"GET {path} HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n{extra}\r\n".encode())
        await writer.drain()
        data = await asyncio.wait_for(reader.read(), 10)
        writer.close()
        with contextlib.suppress(OSError, ssl.SSLError):
            await writer.wait_closed()
    except (OSError, ssl.SSLError, ConnectionError, asyncio.IncompleteReadError):
        return None
    if not data:
        return None
    head, _, body = data.partition(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    headers = {}
    for line in lines[1:]:
        k, _, v = line.partition(":")
        headers[k.strip().lower()] = v.strip()
    cipher = sslobj.cipher()[0] if sslobj is not None else ""
    version = sslobj.version() if sslobj is not None else ""
    return Resp(int(lines[0].split()[1]), headers, body, cipher, version)


async def hello(request: web.Request) -> web.Response:
    return web.Response(text="hello\n")


@contextlib.asynccontextmanager
async def serving(web_yml: Path, text: str | None = None, clock: FakeClock | None = None) -> AsyncIterator[int]:
    """A small app behind ``web_yml`` on 127.0.0.1; yields the port."""
    async with guarded_serving(web_yml, text, clock) as (port, _):
        yield port


@contextlib.asynccontextmanager
async def guarded_serving(web_yml: Path, text: str | None = None, clock: FakeClock | None = None,
                          limits: ServerLimits | None = None) -> AsyncIterator[tuple[int, ConnectionGuard]]:
    """``serving``, with the connection guard and its limits."""
    if text is not None:
        web_yml.write_text(textwrap.dedent(text))
    app = web.Application()
    app.router.add_get("/", hello)
    ctx = apply_web_config(app, web_yml, clock=clock)
    runner = web.AppRunner(app)
    await runner.setup()
    port = free_port()
    # the exporter's own site: it waits for a changed web config to be re-read before each handshake
    guard = ConnectionGuard(limits or ServerLimits(), lambda: 10)
    site = GuardedSite(runner, "127.0.0.1", port, guard=guard, ssl_context=ctx)
    await site.start()
    try:
        yield port, guard
    finally:
        site.stop()
        await runner.cleanup()


TLS = "tls_server_config:\n  cert_file: server.crt\n  key_file: server.key\n"


async def test_tls_handshakes_count_as_connections_and_have_the_header_timeout(certs: Path, ca: trustme.CA) -> None:
    """A socket that never starts (or never ends) its TLS handshake holds a connection place from the
    TCP accept and is closed after the header timeout (Go's server times the handshake so too); at the
    cap a prompt client still gets through in its place."""
    limits = ServerLimits(header_timeout=1.0, max_connections=3)
    async with guarded_serving(certs / "web.yml", TLS, limits=limits) as (port, guard):
        silent = [await asyncio.open_connection("127.0.0.1", port) for _ in range(3)]
        for _ in range(100):
            if len(guard) == 3:
                break
            await asyncio.sleep(0.02)
        assert len(guard) == 3  # counted before any handshake
        r = await get(port, client_ctx(ca))
        assert r is not None and r.status == 200  # the oldest silent socket made room
        loop = asyncio.get_running_loop()
        started = loop.time()
        for reader, writer in silent:  # each closed by then: by the prompt client, or by the header timeout
            assert await asyncio.wait_for(reader.read(), 5) == b""
            writer.close()
        assert loop.time() - started < 4
        for _ in range(100):
            if len(guard) == 0:
                break
            await asyncio.sleep(0.02)
        assert len(guard) == 0  # nothing left counted: not the refused, nor the timed out, nor the served


# --- TLS basics ---------------------------------------------------------------------------------------


async def test_tls_serves_https_and_not_plain_http(certs: Path, ca: trustme.CA) -> None:
    async with serving(certs / "web.yml", TLS) as port:
        r = await get(port, client_ctx(ca))
        assert r is not None and r.status == 200 and r.body == b"hello\n"
        assert await get(port) is None  # plain HTTP on the TLS port gets no HTTP answer
        untrusting = ssl.create_default_context()
        assert await get(port, untrusting) is None  # a client that does not trust the certificate


async def test_inline_cert_and_key_and_a_file_winning_over_inline(certs: Path, ca: trustme.CA) -> None:
    cert = (certs / "server.crt").read_text()
    key = (certs / "server.key").read_text()
    inline = "tls_server_config:\n  cert: |\n" + textwrap.indent(cert, "    ") + "  key: |\n" + textwrap.indent(
        key, "    ")
    async with serving(certs / "web.yml", inline) as port:
        r = await get(port, client_ctx(ca))
        assert r is not None and r.status == 200
    # the toolkit uses cert_file when both are given (and does not complain)
    both = "tls_server_config:\n  cert: junk\n  cert_file: server.crt\n  key_file: server.key\n"
    async with serving(certs / "web.yml", both) as port:
        r = await get(port, client_ctx(ca))
        assert r is not None and r.status == 200


async def test_min_and_max_version(certs: Path, ca: trustme.CA) -> None:
    async with serving(certs / "web.yml", TLS + "  min_version: TLS13\n") as port:
        assert await get(port, client_ctx(ca, max_version=ssl.TLSVersion.TLSv1_2)) is None
        r = await get(port, client_ctx(ca))
        assert r is not None and r.version == "TLSv1.3"
    async with serving(certs / "web.yml", TLS + "  max_version: TLS12\n") as port:
        r = await get(port, client_ctx(ca))
        assert r is not None and r.version == "TLSv1.2"
    # the default minimum is TLS 1.2, as in the toolkit
    async with serving(certs / "web.yml", TLS) as port:
        assert await get(port, client_ctx(ca, max_version=ssl.TLSVersion.TLSv1_1, ciphers="DEFAULT:@SECLEVEL=0")) \
            is None


async def test_tls11_when_the_config_allows_it(certs: Path, ca: trustme.CA) -> None:
    old = client_ctx(ca, max_version=ssl.TLSVersion.TLSv1_1, ciphers="DEFAULT:@SECLEVEL=0")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        old.minimum_version = ssl.TLSVersion.TLSv1
    async with serving(certs / "web.yml", TLS + "  min_version: TLS10\n") as port:
        r = await get(port, old)
        assert r is not None and r.version == "TLSv1.1"


async def test_min_version_above_max_version_is_accepted_and_every_handshake_fails(certs: Path, ca: trustme.CA
                                                                                   ) -> None:
    async with serving(certs / "web.yml", TLS + "  min_version: TLS13\n  max_version: TLS12\n") as port:
        assert await get(port, client_ctx(ca)) is None


async def test_cipher_suites_are_go_names_applied_to_tls12(certs: Path, ca: trustme.CA) -> None:
    cfg = TLS + ("  cipher_suites: [TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256, TLS_ECDHE_RSA_WITH_AES_256_GCM_SHA384]\n"
                 "  max_version: TLS12\n")
    async with serving(certs / "web.yml", cfg) as port:
        r = await get(port, client_ctx(ca, ciphers="ECDHE-RSA-AES256-GCM-SHA384"))
        assert r is not None and r.cipher == "ECDHE-RSA-AES256-GCM-SHA384"
        # the server's order wins (prefer_server_cipher_suites defaults to true)
        r = await get(port, client_ctx(ca, ciphers="ECDHE-RSA-AES256-GCM-SHA384:ECDHE-RSA-AES128-GCM-SHA256"))
        assert r is not None and r.cipher == "ECDHE-RSA-AES128-GCM-SHA256"
        assert await get(port, client_ctx(ca, ciphers="ECDHE-RSA-AES256-SHA")) is None  # not in the list
    no_order = cfg + "  prefer_server_cipher_suites: false\n"
    async with serving(certs / "web.yml", no_order) as port:
        r = await get(port, client_ctx(ca, ciphers="ECDHE-RSA-AES256-GCM-SHA384:ECDHE-RSA-AES128-GCM-SHA256"))
        assert r is not None and r.cipher == "ECDHE-RSA-AES256-GCM-SHA384"  # the client's order


async def test_all_toolkit_cipher_names_are_accepted_and_tls13_is_unaffected(certs: Path, ca: trustme.CA) -> None:
    names = ["TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256", "TLS_ECDHE_ECDSA_WITH_AES_256_GCM_SHA384",
             "TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256", "TLS_ECDHE_RSA_WITH_AES_256_GCM_SHA384",
             "TLS_ECDHE_ECDSA_WITH_CHACHA20_POLY1305_SHA256", "TLS_ECDHE_RSA_WITH_CHACHA20_POLY1305_SHA256",
             "TLS_AES_128_GCM_SHA256", "TLS_AES_256_GCM_SHA384", "TLS_CHACHA20_POLY1305_SHA256",
             "TLS_ECDHE_ECDSA_WITH_AES_128_CBC_SHA", "TLS_ECDHE_ECDSA_WITH_AES_256_CBC_SHA",
             "TLS_ECDHE_RSA_WITH_AES_128_CBC_SHA", "TLS_ECDHE_RSA_WITH_AES_256_CBC_SHA"]
    async with serving(certs / "web.yml", TLS + f"  cipher_suites: [{', '.join(names)}]\n") as port:
        r = await get(port, client_ctx(ca))
        assert r is not None and r.version == "TLSv1.3"
        r = await get(port, client_ctx(ca, max_version=ssl.TLSVersion.TLSv1_2, ciphers="ECDHE-RSA-AES128-SHA"))
        assert r is not None and r.cipher == "ECDHE-RSA-AES128-SHA"  # Go's CBC-SHA suite, mapped


async def test_curve_preferences_one_curve(certs: Path, ca: trustme.CA) -> None:
    async with serving(certs / "web.yml", TLS + "  min_version: TLS13\n  curve_preferences: [CurveP521]\n") as port:
        assert await get(port, client_ctx(ca, curve="secp384r1")) is None
        r = await get(port, client_ctx(ca, curve="secp521r1"))
        assert r is not None and r.status == 200
    # no list: OpenSSL's defaults, every curve the toolkit names among them
    async with serving(certs / "web.yml", TLS) as port:
        for curve in ("prime256v1", "secp384r1", "secp521r1", "X25519"):
            r = await get(port, client_ctx(ca, curve=curve))
            assert r is not None and r.status == 200, curve


async def test_http2_is_accepted_and_http11_is_offered(certs: Path, ca: trustme.CA) -> None:
    cfg = TLS + "  cipher_suites: [TLS_ECDHE_RSA_WITH_AES_256_GCM_SHA384]\n  max_version: TLS12\n" \
                "http_server_config:\n  http2: false\n"
    async with serving(certs / "web.yml", cfg) as port:
        ctx = client_ctx(ca)
        ctx.set_alpn_protocols(["h2", "http/1.1"])
        _reader, writer = await asyncio.open_connection("127.0.0.1", port, ssl=ctx, server_hostname="localhost")
        assert writer.get_extra_info("ssl_object").selected_alpn_protocol() == "http/1.1"
        writer.close()


# --- client certificates --------------------------------------------------------------------------------


def self_signed(tmp: Path, *, uri: str | None = None, dns: str | None = None) -> tuple[ssl.SSLContext, Path]:
    """A client context with a self-signed certificate, and its PEM file (a client CA of its own)."""
    """A self-signed client certificate no CA vouches for (cryptography, for a URI SAN trustme cannot make)."""
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "self-signed client")])
    sans: list[x509.GeneralName] = []
    if uri:
        sans.append(x509.UniformResourceIdentifier(uri))
    if dns:
        sans.append(x509.DNSName(dns))
    now = datetime.datetime.now(datetime.UTC)
    builder = (x509.CertificateBuilder().subject_name(name).issuer_name(name).public_key(key.public_key())
               .serial_number(x509.random_serial_number()).not_valid_before(now - datetime.timedelta(hours=1))
               .not_valid_after(now + datetime.timedelta(days=1)))
    if sans:
        builder = builder.add_extension(x509.SubjectAlternativeName(sans), critical=False)
    cert = builder.sign(key, hashes.SHA256())
    pem = tmp / f"client-{os.urandom(4).hex()}.pem"
    pem.write_bytes(cert.public_bytes(serialization.Encoding.PEM) + key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()))
    ctx = ssl.create_default_context()
    ctx.load_cert_chain(str(pem))
    return ctx, pem


def with_trust(ctx: ssl.SSLContext, ca: trustme.CA) -> ssl.SSLContext:
    ca.configure_trust(ctx)
    return ctx


@pytest.mark.parametrize("mode", ["RequireAnyClientCert", "RequireClientCert", "RequestClientCert"])
def test_an_unverified_client_certificate_mode_is_refused_with_the_reason(certs: Path, mode: str) -> None:
    # the toolkit takes these (its testdata tls_config_noAuth.requireanyclientcert.good.yml); Python's ssl
    # has no way to ask for a certificate without verifying it, so this refuses them instead of faking it
    wc = certs / "web.yml"
    wc.write_text(TLS + f"  client_auth_type: {mode}\n  client_ca_file: ca.pem\n")
    with pytest.raises(WebConfigError) as err:
        validate_web_config(wc)
    msg = str(err.value)
    assert msg.startswith(f"{wc}: tls_server_config.client_auth_type: {mode} takes a client certificate without "
                          "verifying it, which Python's ssl module cannot do"), msg


async def test_verify_client_cert_if_given(certs: Path, ca: trustme.CA, other_ca: trustme.CA) -> None:
    cfg = TLS + "  client_auth_type: VerifyClientCertIfGiven\n  client_ca_file: ca.pem\n"
    async with serving(certs / "web.yml", cfg) as port:
        assert (await get(port, client_ctx(ca))) is not None  # no certificate is fine
        r = await get(port, client_ctx(ca, ca.issue_cert("prometheus")))
        assert r is not None and r.status == 200
        assert await get(port, client_ctx(ca, other_ca.issue_cert("intruder"))) is None
    # without client_ca_file the toolkit verifies against the system's roots: a private CA's
    # certificate does not verify, no certificate is still fine
    async with serving(certs / "web.yml", TLS + "  client_auth_type: VerifyClientCertIfGiven\n") as port:
        assert await get(port, client_ctx(ca)) is not None
        assert await get(port, client_ctx(ca, ca.issue_cert("prometheus"))) is None


async def test_require_and_verify_client_cert(certs: Path, ca: trustme.CA, other_ca: trustme.CA) -> None:
    cfg = TLS + "  client_auth_type: RequireAndVerifyClientCert\n  client_ca_file: ca.pem\n"
    async with serving(certs / "web.yml", cfg) as port:
        assert await get(port, client_ctx(ca)) is None
        assert await get(port, client_ctx(ca, other_ca.issue_cert("intruder"))) is None
        r = await get(port, client_ctx(ca, ca.issue_cert("prometheus")))
        assert r is not None and r.status == 200
    # inline client_ca works the same
    inline = TLS + "  client_auth_type: RequireAndVerifyClientCert\n  client_ca: |\n" + textwrap.indent(
        (certs / "ca.pem").read_text(), "    ")
    async with serving(certs / "web.yml", inline) as port:
        r = await get(port, client_ctx(ca, ca.issue_cert("prometheus")))
        assert r is not None and r.status == 200


def test_require_and_verify_client_cert_needs_a_client_ca(certs: Path) -> None:
    # the toolkit's testdata pairs RequireAndVerifyClientCert with client_ca_file; without one Go would
    # verify client certificates against the system's public roots: anyone with a public certificate
    wc = certs / "web.yml"
    wc.write_text(TLS + "  client_auth_type: RequireAndVerifyClientCert\n")
    with pytest.raises(WebConfigError) as err:
        validate_web_config(wc)
    assert str(err.value).startswith(f"{wc}: tls_server_config.client_auth_type: RequireAndVerifyClientCert needs "
                                     "client_ca_file (or client_ca)"), err.value


@pytest.mark.parametrize(("allowed", "identities", "ok"), [
    (["prometheus.example"], ["prometheus.example"], True),
    (["one", "test3", "two"], ["test3"], True),
    (["bad"], ["prometheus.example"], False),
    (["10.1.2.3"], ["10.1.2.3"], True),
    (["2001:db8::7"], ["2001:db8:0:0:0:0:0:7"], True),  # Go's canonical IPv6 spelling
    (["scraper@example.org"], ["scraper@example.org"], True),
    (["Prometheus.example"], ["prometheus.example"], False),  # exact match, as in Go
])
async def test_client_allowed_sans_with_verified_certificates(
        certs: Path, ca: trustme.CA, allowed: list[str], identities: list[str], ok: bool) -> None:
    cfg = TLS + "  client_auth_type: RequireAndVerifyClientCert\n  client_ca_file: ca.pem\n" \
        f"  client_allowed_sans: {allowed}\n"
    async with serving(certs / "web.yml", cfg) as port:
        r = await get(port, client_ctx(ca, ca.issue_cert(*identities)))
        assert (r is not None and r.status == 200) is ok


async def test_client_allowed_sans_uri_and_a_client_without_certificate(certs: Path, ca: trustme.CA) -> None:
    uri = "spiffe://cluster.local/ns/monitoring/sa/prometheus"
    good, good_pem = self_signed(certs, uri=uri)
    bad, bad_pem = self_signed(certs, uri=uri + "x")
    (certs / "clients.pem").write_bytes(good_pem.read_bytes() + bad_pem.read_bytes())
    cfg = TLS + f"  client_auth_type: RequireAndVerifyClientCert\n  client_ca_file: clients.pem\n" \
        f"  client_allowed_sans: ['{uri}']\n"
    async with serving(certs / "web.yml", cfg) as port:
        r = await get(port, with_trust(good, ca))
        assert r is not None and r.status == 200
        assert await get(port, with_trust(bad, ca)) is None  # verified, but its SAN is not allowed
    # VerifyClientCertIfGiven with an allow-list: a client without certificate is refused too (as the toolkit)
    cfg = TLS + "  client_auth_type: VerifyClientCertIfGiven\n  client_ca_file: ca.pem\n  client_allowed_sans: [x]\n"
    async with serving(certs / "web.yml", cfg) as port:
        assert await get(port, client_ctx(ca)) is None
    # NoClientCert asks for no certificate, so the list has nothing to check (as in Go)
    async with serving(certs / "web.yml", TLS + "  client_allowed_sans: [x]\n") as port:
        assert await get(port, client_ctx(ca)) is not None


def test_cert_sans_reads_every_kind(ca: trustme.CA) -> None:
    leaf = ca.issue_cert("a.example", "127.0.0.1", "::ffff:10.0.0.1", "fe80::1", "ops@example.org")
    der = ssl.PEM_cert_to_DER_cert(leaf.cert_chain_pems[0].bytes().decode())
    assert sorted(cert_sans(der)) == sorted(["a.example", "127.0.0.1", "10.0.0.1", "fe80::1", "ops@example.org"])
    assert cert_sans(b"\x30\x03garbage") == []


# --- headers -------------------------------------------------------------------------------------------


async def test_headers_on_every_response_with_go_yaml_values(certs: Path, hashed: str) -> None:
    cfg = f"""\
        http_server_config:
          headers:
            X-Frame-Options: deny
            Strict-Transport-Security: max-age=31536000; includeSubDomains
            X-Content-Type-Options: nosniff
            X-XSS-Protection: 1
            Content-Security-Policy: "default-src 'self' *.test.example.net"
        basic_auth_users:
          prometheus: '{hashed}'
        """
    async with serving(certs / "web.yml", cfg) as port:
        for path, auth, status in (("/", basic("prometheus", PASSWORD), 200), ("/nope", basic("prometheus", PASSWORD),
                                                                               404), ("/", None, 401)):
            r = await get(port, path=path, auth=auth)
            assert r is not None and r.status == status
            assert r.headers["x-frame-options"] == "deny"
            assert r.headers["x-xss-protection"] == "1"  # a YAML number, sent as written
            assert r.headers["strict-transport-security"] == "max-age=31536000; includeSubDomains"
            assert r.headers["content-security-policy"] == "default-src 'self' *.test.example.net"


async def test_a_number_header_keeps_its_source_text(certs: Path) -> None:
    async with serving(certs / "web.yml", "http_server_config: {headers: {X-XSS-Protection: 1.10}}\n") as port:
        r = await get(port)
        assert r is not None and r.headers["x-xss-protection"] == "1.10"  # not Python's 1.1


async def test_pages_keep_their_own_csp_and_others_get_the_configured_one(certs: Path) -> None:
    (certs / "web.yml").write_text("http_server_config: {headers: {Content-Security-Policy: \"default-src 'self'\"}}\n")
    cfg = config_from({"targets": [{"name": "flip", "vendor": "flipsnack", "base_url": "http://127.0.0.1:1/ok",
                                    "credentials": {"api_key": "k", "secret": "s"}}]})
    exp = Exporter(cfg, clock=FakeClock(), resolver=LoopbackResolver())
    app = make_app(exp)
    apply_web_config(app, certs / "web.yml")
    runner = web.AppRunner(app)
    await runner.setup()
    port = free_port()
    await web.TCPSite(runner, "127.0.0.1", port).start()
    try:
        page = await get(port, path="/")
        metrics = await get(port, path="/metrics")
        assert page is not None and metrics is not None
        # Go sets the header before the endpoint runs, so an endpoint's own value wins
        assert page.headers["content-security-policy"] != "default-src 'self'"
        assert metrics.headers["content-security-policy"] == "default-src 'self'"
    finally:
        await runner.cleanup()
        await exp.close()


# --- basic auth ----------------------------------------------------------------------------------------


async def test_tls_and_basic_auth_guard_every_endpoint(certs: Path, ca: trustme.CA, hashed: str) -> None:
    (certs / "web.yml").write_text(TLS + f"basic_auth_users:\n  prometheus: '{hashed}'\n")
    cfg = config_from({"targets": [{"name": "flip", "vendor": "flipsnack", "base_url": "http://127.0.0.1:1/ok",
                                    "credentials": {"api_key": "k-webcfg", "secret": "s-webcfg"}}]})
    exp = Exporter(cfg, clock=FakeClock(), resolver=LoopbackResolver())
    app = make_app(exp)
    ctx = apply_web_config(app, certs / "web.yml")
    await exp.start()
    runner = web.AppRunner(app)
    await runner.setup()
    port = free_port()
    # the exporter's own site: it waits for a changed web config to be re-read before each handshake
    site = GuardedSite(runner, "127.0.0.1", port, guard=ConnectionGuard(ServerLimits(), lambda: 10), ssl_context=ctx)
    await site.start()
    cctx = client_ctx(ca)
    try:
        right = basic("prometheus", PASSWORD)
        r = await get(port, cctx, "/metrics", right)
        assert r is not None and r.status == 200 and b"apistatus_build_info" in r.body
        # as the toolkit: every endpoint, health checks included
        for path in ("/metrics", "/", "/-/healthy", "/-/ready", "/probe?target=flip"):
            for auth in (None, basic("prometheus", "wrong"), basic("nobody", PASSWORD), "Bearer abc",
                         "Basic !!!not-base64", "Basic " + base64.b64encode(b"prometheus").decode(), "Basic"):
                r = await get(port, cctx, path, auth)
                assert r is not None and r.status == 401, (path, auth)
                assert r.headers["www-authenticate"] == "Basic"
        r = await get(port, cctx, "/-/healthy", "basic " + right[6:])  # the scheme in any case, as Go
        assert r is not None and r.status == 200
        reader, writer = await asyncio.open_connection("127.0.0.1", port, ssl=cctx, server_hostname="localhost")
        writer.write(b"POST /-/reload HTTP/1.1\r\nHost: localhost\r\nContent-Length: 0\r\nConnection: close\r\n\r\n")
        assert (await reader.read()).startswith(b"HTTP/1.1 401")  # the reload endpoint too
        writer.close()
    finally:
        site.stop()
        await runner.cleanup()
        await exp.close()


async def test_each_answer_is_cached_and_bcrypt_runs_one_at_a_time(hashed: str) -> None:
    calls: list[int] = []
    running = 0

    def counting(password: bytes, h: bytes) -> bool:
        nonlocal running
        running += 1
        assert running == 1  # never two bcrypt checks at once
        calls.append(1)
        try:
            return bool(bcrypt.checkpw(password, h))
        finally:
            running -= 1

    auth = BasicAuth(counting)
    users = {"prometheus": hashed}
    good, bad = basic("prometheus", PASSWORD), basic("prometheus", "nope")
    assert all(await asyncio.gather(*(auth.check(users, good) for _ in range(20))))
    assert len(calls) == 1  # a scrape every 15 s does not pay bcrypt each time
    assert not any(await asyncio.gather(*(auth.check(users, bad) for _ in range(5))))
    assert len(calls) == 2  # the same wrong password is remembered too, as in the toolkit
    flood = [basic("prometheus", f"guess{i}") for i in range(150)]
    assert not any(await asyncio.gather(*(auth.check(users, f) for f in flood)))
    assert await auth.check(users, good)
    assert len(calls) == 152  # the flood did not evict the scraper's entry
    assert not await auth.check(users, basic("mallory", PASSWORD))
    assert len(calls) == 153  # an unknown user costs a check too: timing does not reveal users
    # a changed hash for the same user is checked afresh (the config is re-read per request)
    other = bcrypt.hashpw(b"new", bcrypt.gensalt(4)).decode()
    assert not await auth.check({"prometheus": other}, good)


async def test_go_bcrypt_quirks(hashed: str) -> None:
    auth = BasicAuth()
    long_pw = "x" * 72
    h = bcrypt.hashpw(long_pw.encode(), bcrypt.gensalt(4)).decode()
    assert await auth.check({"u": h}, basic("u", long_pw))  # 72 bytes: bcrypt's whole input
    # Go's bcrypt refuses a longer password (it would compare only its first 72 bytes): so does this
    assert not await auth.check({"u": h}, basic("u", long_pw + "tail"))
    assert not await auth.check({"u": h}, basic("u", long_pw + "\u00e9"))  # 74 bytes in UTF-8
    # $2a$/$2y$/$2x$ prefixes are all the same algorithm to Go
    for prefix in ("$2a$", "$2y$", "$2x$"):
        assert await auth.check({"u": prefix + hashed[4:]}, basic("u", PASSWORD)), prefix
    # a password with ':' and non-UTF-8 bytes is split at the first ':' and compared as bytes
    h2 = bcrypt.hashpw(b"a:b\xff", bcrypt.gensalt(4)).decode()
    header = "Basic " + base64.b64encode(b"u:a:b\xff").decode()
    assert await auth.check({"u": h2}, header)


# --- rate limit -----------------------------------------------------------------------------------------


async def test_rate_limit_is_a_token_bucket_and_429_comes_before_auth(certs: Path, hashed: str) -> None:
    clock = FakeClock()
    cfg = f"rate_limit: {{interval: 1s, burst: 2}}\nbasic_auth_users: {{prometheus: '{hashed}'}}\n" \
          "http_server_config: {headers: {X-Frame-Options: deny}}\n"
    async with serving(certs / "web.yml", cfg, clock=clock) as port:
        right = basic("prometheus", PASSWORD)
        statuses = [(await get(port, auth=right)) for _ in range(3)]
        assert [r.status for r in statuses if r] == [200, 200, 429]
        assert statuses[2] is not None and statuses[2].body == b"Too Many Requests\n"
        assert "x-frame-options" not in statuses[2].headers  # the toolkit answers 429 before its headers
        await clock.advance(1.0)
        r = await get(port)
        assert r is not None and r.status == 401  # a token came back; unauthenticated requests spend it
        r = await get(port, auth=right)
        assert r is not None and r.status == 429
        await clock.advance(2.5)
        assert [(await get(port, auth=right)).status for _ in range(3)] == [200, 200, 429]  # type: ignore[union-attr]


@pytest.mark.parametrize(("limit", "step", "statuses"), [
    ("{interval: 1s, burst: 0}", 0.0, [429, 429]),  # the toolkit's own test: burst 0 refuses everything
    ("{interval: 0, burst: 0}", 0.0, [200, 200]),  # interval 0: no limiter
    ("{interval: -1s, burst: 0}", 0.0, [200, 200]),  # negative: Go's rate.Inf
    ("{interval: 1, burst: 1}", 1e-6, [200, 200]),  # a bare number is nanoseconds: refilled within 1 µs
    ("{interval: 1s, burst: 1}", 1e-6, [200, 429]),
    ("{interval: '1.5s', burst: 1.9}", 1.0, [200, 429]),  # a float burst is truncated, as yaml.v2 does
])
async def test_rate_limit_values(certs: Path, limit: str, step: float, statuses: list[int]) -> None:
    clock = FakeClock()
    async with serving(certs / "web.yml", f"rate_limit: {limit}\n", clock=clock) as port:
        got = []
        for _ in statuses:
            got.append(await get(port))
            await clock.advance(step)
        assert [r.status if r else None for r in got] == statuses


# --- re-reading the file ------------------------------------------------------------------------------


def touch_later(p: Path, text: str) -> None:
    p.write_text(text)
    st = p.stat()
    os.utime(p, ns=(st.st_atime_ns, st.st_mtime_ns + 2_000_000_000))  # a visibly newer file


async def test_users_and_headers_are_re_read_per_request(certs: Path, hashed: str,
                                                         caplog: pytest.LogCaptureFixture) -> None:
    wc = certs / "web.yml"
    async with serving(wc, "http_server_config: {headers: {X-Frame-Options: deny}}\n") as port:
        r = await get(port)
        assert r is not None and r.status == 200 and r.headers["x-frame-options"] == "deny"
        touch_later(wc, f"basic_auth_users: {{prometheus: '{hashed}'}}\n")
        r = await get(port)
        assert r is not None and r.status == 401 and "x-frame-options" not in r.headers
        r = await get(port, auth=basic("prometheus", PASSWORD))
        assert r is not None and r.status == 200
        touch_later(wc, "basic_auth_users: [broken\n")
        caplog.clear()
        for _ in range(5):
            # the previous settings stay in force (the toolkit would answer 500 until the file is fixed)
            r = await get(port, auth=basic("prometheus", PASSWORD))
            assert r is not None and r.status == 200
            r = await get(port)
            assert r is not None and r.status == 401
        errors = [rec.getMessage() for rec in caplog.records if rec.levelname == "ERROR"]
        assert len(errors) == 1 and "web.yml: invalid YAML" in errors[0]  # once per change, not per request
        touch_later(wc, "{}\n")
        r = await get(port)
        assert r is not None and r.status == 200


async def test_certificates_are_re_read_per_connection(certs: Path, ca: trustme.CA, other_ca: trustme.CA) -> None:
    wc = certs / "web.yml"
    async with serving(wc, TLS) as port:
        r = await get(port, client_ctx(ca))
        assert r is not None and r.status == 200
        # a renewed certificate from another CA: new connections get it without a restart
        renewed = other_ca.issue_cert("localhost", key_type=RSA)
        renewed.cert_chain_pems[0].write_to_path(str(certs / "server.crt"))
        renewed.private_key_pem.write_to_path(str(certs / "server.key"))
        assert await get(port, client_ctx(ca)) is None
        r = await get(port, client_ctx(other_ca))
        assert r is not None and r.status == 200
        # a broken key: the certificate that works stays in use until the files are fixed (the toolkit
        # would fail every handshake meanwhile)
        (certs / "server.key").write_text("not a key\n")
        r = await get(port, client_ctx(other_ca))
        assert r is not None and r.status == 200
        renewed.private_key_pem.write_to_path(str(certs / "server.key"))
        r = await get(port, client_ctx(other_ca))
        assert r is not None and r.status == 200
        # client_auth_type changed in the file: applies to the next connection
        touch_later(wc, TLS + "  client_auth_type: RequireAndVerifyClientCert\n  client_ca_file: ca.pem\n")
        assert await get(port, client_ctx(other_ca)) is None
        r = await get(port, client_ctx(other_ca, ca.issue_cert("prometheus")))
        assert r is not None and r.status == 200


# --- what the toolkit accepts, and what it refuses ---------------------------------------------------------

GOOD = [
    "",
    "{}\n",
    "tls_server_config:\n",
    "tls_server_config: {}\nbasic_auth_users: {}\n",
    TLS + "  client_auth_type: VerifyClientCertIfGiven\n",
    TLS + "  client_auth_type: RequireAndVerifyClientCert\n  client_ca_file: ca.pem\n",
    TLS + "  client_auth_type: ''\n",
    TLS + "  client_auth_type: VerifyClientCertIfGiven\n  client_ca_file: empty.pem\n",  # an empty CA pool
    TLS + "  cipher_suites: [TLS_ECDHE_RSA_WITH_AES_256_GCM_SHA384]\n  max_version: TLS12\n"
          "http_server_config:\n  http2: false\n",
    TLS + "  cipher_suites: [TLS_ECDHE_RSA_WITH_AES_256_GCM_SHA384]\n  min_version: TLS13\n",
    TLS + "  curve_preferences: [X25519]\n",
    TLS + "  min_version: ~\n  max_version: ~\n",
    TLS + "  prefer_server_cipher_suites: no\n",
    TLS + "  client_allowed_sans: []\n",
    "tls_server_config: {cert_file: server.pem, key_file: server.pem}\n",  # one file with both
    "tls_server_config: {min_version: TLS13}\n",  # no certificate: plain HTTP, as the toolkit
    "http_server_config: {http2: y}\n",  # YAML 1.1 booleans, as yaml.v2
    "http_server_config: {headers: {X-XSS-Protection: 0, Content-Security-Policy: ''}}\n",
    "rate_limit: {interval: 1m30s, burst: 0x10}\n",
    "rate_limit:\n",
    "http_server_config:\n  headers: &b {X-Frame-Options: sameorigin}\n",
    "basic_auth_users:\n  123: $2y$10$X0h1gDsPszWURQaxFh.zoubFi6DXncSjhoQNJgRrnGs7EsimhC7zG\n",
    "---\n{}\n---\nthis second document is not read: [\n",
]


@pytest.mark.parametrize("text", GOOD, ids=[f"good{i}" for i in range(len(GOOD))])
def test_configs_the_toolkit_accepts_are_accepted(certs: Path, text: str) -> None:
    wc = certs / "web.yml"
    wc.write_text(text)
    validate_web_config(wc)


BAD = [
    ("tls_server_config: [a]\n", "tls_server_config: must be a mapping"),
    ("hWkNKCp3fvIx3jKnsaBI\nTuEjdwNS8A2vYdFbiKqr\n", "web.yml: must be a mapping"),
    ("tls_server_config:\n  cert_filse: server.crt\n", "tls_server_config.cert_filse: unknown key"),
    ("tls_server_config: {key_file: server.key}\n", "tls_server_config.cert_file: is required"),
    ("tls_server_config: {cert_file: '', key_file: server.key}\n", "tls_server_config.cert_file: is required"),
    ("tls_server_config: {cert: '', key_file: server.key}\n", "tls_server_config.cert_file: is required"),
    ("tls_server_config: {cert_file: server.crt, key_file: ''}\n", "tls_server_config.key_file: is required"),
    ("tls_server_config: {cert_file: server.crt, key: ''}\n", "tls_server_config.key_file: is required"),
    ("tls_server_config: {cert_file: '', key_file: '', client_auth_type: x}\n",
     "tls_server_config.cert_file: is required"),
    ("tls_server_config: {cert_file: somefile, key_file: server.key}\n",
     "tls_server_config.cert_file: cannot read"),
    ("tls_server_config: {cert_file: server.crt, key_file: somefile}\n", "tls_server_config.key_file: cannot read"),
    ("tls_server_config: {cert_file: \"a\\0b\", key_file: server.key}\n",
     "tls_server_config.cert_file: is not a valid"),
    ("tls_server_config: {cert_file: web.yml, key_file: server.key}\n",
     "tls_server_config.cert_file: holds no PEM certificate"),
    ("tls_server_config: {cert_file: server.crt, key_file: ca.pem}\n",
     "tls_server_config.key_file: holds no PEM private key"),
    ("tls_server_config: {cert_file: ca.pem, key_file: server.key}\n",
     "tls_server_config.cert_file: the key does not belong to the certificate"),
    ("tls_server_config: {cert_file: server.crt, key_file: server.key, client_ca_file: /dev/null}\n",
     "tls_server_config.client_auth_type: a client CA is configured without a client auth policy"),
    # read as the main config's files are: a device, a FIFO or a directory is refused from its stat
    (TLS + "  client_auth_type: VerifyClientCertIfGiven\n  client_ca_file: /dev/zero\n",
     "tls_server_config.client_ca_file: cannot read /dev/zero: is a character device, not a regular file"),
    ("tls_server_config: {cert_file: server.crt, key_file: server.key, client_auth_type: VerifyClientCertIfGiven, "
     "client_ca_file: somefile}\n", "tls_server_config.client_ca_file: cannot read"),
    ("tls_server_config: {cert_file: server.crt, key_file: server.key, client_auth_type: Sometimes}\n",
     "tls_server_config.client_auth_type: invalid ClientAuth"),
    ("tls_server_config: {cert_file: server.crt, key_file: server.key, min_version: TLS111}\n",
     "tls_server_config.min_version: unknown TLS version"),
    ("tls_server_config: {cert_file: server.crt, key_file: server.key, cipher_suites: "
     "[TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA2048]}\n", "tls_server_config.cipher_suites[0]: unknown cipher suite"),
    ("tls_server_config: {cert_file: server.crt, key_file: server.key, cipher_suites: [ECDHE-RSA-AES128-GCM-SHA256]}\n",
     "tls_server_config.cipher_suites[0]: unknown cipher suite"),  # OpenSSL names are not Go names
    ("tls_server_config: {cert_file: server.crt, key_file: server.key, cipher_suites: "
     "[TLS_RSA_WITH_AES_128_GCM_SHA256]}\n", "tls_server_config.cipher_suites[0]: unknown"),  # Go: insecure list
    ("tls_server_config: {cert_file: server.crt, key_file: server.key, curve_preferences: [CurveP257]}\n",
     "tls_server_config.curve_preferences[0]: unknown curve"),
    # the toolkit's testdata web_config_noAuth_allCurves.good.yml: several curves in order, which Python's
    # ssl cannot set (one curve only)
    (TLS + "  curve_preferences: [CurveP256, CurveP384, CurveP521, X25519]\n",
     "tls_server_config.curve_preferences: lists more than one curve, and Python's ssl module can set only one"),
    (TLS + "  client_auth_type: RequireAndVerifyClientCert\n",
     "tls_server_config.client_auth_type: RequireAndVerifyClientCert needs client_ca_file"),
    (TLS + "  client_auth_type: RequireAnyClientCert\n",
     "tls_server_config.client_auth_type: RequireAnyClientCert takes a client certificate without verifying it"),
    ("tls_server_config: {cert_file: server.crt, key_file: server.key, cipher_suites: "
     "[TLS_ECDHE_RSA_WITH_AES_256_GCM_SHA384], max_version: TLS12}\n",
     "tls_server_config.cipher_suites: with http2 on"),  # Go's HTTP/2 server refuses it
    ("tls_server_config: {cert_file: server.crt, key_file: server.key, cipher_suites: TLS_AES_128_GCM_SHA256}\n",
     "tls_server_config.cipher_suites: must be a list"),
    ("tls_server_config: {cert_file: server.crt, key_file: server.key, prefer_server_cipher_suites: 'true'}\n",
     "tls_server_config.prefer_server_cipher_suites: must be true or false"),
    ("tls_server_config: {cert_file: server.crt, key_file: server.key}\ntls_server_config: {}\n",
     "tls_server_config: is given twice"),
    ("basic_auth_users: {john: doe}\n", "basic_auth_users.john: is too short to be a bcrypt hash"),
    ("basic_auth_users: {john: ~}\n", "basic_auth_users.john: is too short"),
    ("basic_auth_users: {john: '$2y$03$X0h1gDsPszWURQaxFh.zoubFi6DXncSjhoQNJgRrnGs7EsimhC7zG'}\n",
     "basic_auth_users.john: has a bcrypt cost outside 4..31"),
    ("basic_auth_users: [prometheus]\n", "basic_auth_users: must be a mapping"),
    ("basic_auth_users: {a: x, a: y}\n", "basic_auth_users.a: is given twice"),
    ("http_server_config: {headers: {X-Content-Type-Options: sniff}}\n",
     "http_server_config.headers.X-Content-Type-Options: must be one of nosniff"),
    ("http_server_config: {headers: {X-Frame-Options: foo}}\n", "http_server_config.headers.X-Frame-Options: must be"),
    ("http_server_config: {headers: {X-Frame-Options: DENY}}\n", "X-Frame-Options: must be"),  # exact, as Go
    ("http_server_config: {headers: {X-Frame-Options: ''}}\n", "X-Frame-Options: must be"),
    ("http_server_config: {headers: {Content-Type: foo}}\n", "http_server_config.headers.Content-Type: this header "
                                                             "can not be configured"),
    ("http_server_config: {headers: {x-frame-options: deny}}\n", "headers.x-frame-options: this header can not"),
    ("http_server_config: {headers: {Content-Security-Policy: [a, b]}}\n", "Content-Security-Policy: must be a "
                                                                           "single value"),
    ("http_server_config: {http2: 1}\n", "http_server_config.http2: must be true or false"),
    ("rate_limit: {interval: 1d, burst: 5}\n", "rate_limit.interval: must be a duration"),  # Go has no 'd'
    ("rate_limit: {interval: '5', burst: 5}\n", "rate_limit.interval: must be a duration"),
    ("rate_limit: {interval: 1s, burst: '5'}\n", "rate_limit.burst: must be a whole number"),
    ("rate_limit: {interval: 1s, bursts: 5}\n", "rate_limit.bursts: unknown key"),
    ("tls_config: {}\n", "tls_config: unknown key"),
    ("basic_auth_users: {a: [unclosed\n", "invalid YAML: line"),
    ("a: &a [*a]\n", "a[0]: too many or recursive YAML aliases"),
]


@pytest.mark.parametrize(("text", "expected"), BAD, ids=[f"bad{i}" for i in range(len(BAD))])
def test_configs_the_toolkit_refuses_are_one_line_naming_file_and_key(certs: Path, text: str, expected: str) -> None:
    wc = certs / "web.yml"
    wc.write_text(text)
    with pytest.raises(WebConfigError) as err:
        validate_web_config(wc)
    msg = str(err.value)
    assert isinstance(err.value, ConfigError)  # one error root with the config's
    assert msg.startswith(f"{wc}: ") and expected in msg, msg
    assert "\n" not in msg
    assert "$2y$" not in msg and "'doe'" not in msg  # a hash (or a password given by mistake) is not echoed


def test_an_inline_key_is_never_echoed(certs: Path) -> None:
    wc = certs / "web.yml"
    wc.write_text("tls_server_config: {cert_file: server.crt, key: [s3cr3t-key-material]}\n")
    with pytest.raises(WebConfigError) as err:
        validate_web_config(wc)
    assert "tls_server_config.key" in str(err.value) and "s3cr3t" not in str(err.value)


@pytest.mark.parametrize("fmt", [serialization.PrivateFormat.PKCS8, serialization.PrivateFormat.TraditionalOpenSSL])
def test_an_encrypted_key_is_refused_without_prompting(certs: Path, fmt: serialization.PrivateFormat) -> None:
    key = serialization.load_pem_private_key((certs / "server.key").read_bytes(), None)
    (certs / "enc.key").write_bytes(key.private_bytes(serialization.Encoding.PEM, fmt,
                                                      serialization.BestAvailableEncryption(b"pass phrase")))
    (certs / "web.yml").write_text("tls_server_config: {cert_file: server.crt, key_file: enc.key}\n")
    with pytest.raises(WebConfigError, match=r"tls_server_config\.key_file: is an encrypted key"):
        validate_web_config(certs / "web.yml")


def test_missing_web_config_file_is_named(tmp_path: Path) -> None:
    with pytest.raises(WebConfigError, match=r"web\.yml: file not found"):
        load_web_config(tmp_path / "web.yml")


def test_values_are_read_as_go_yaml_reads_them(certs: Path) -> None:
    wc = certs / "web.yml"
    wc.write_text("http_server_config: {http2: off, headers: {X-XSS-Protection: 0x1F}}\n"
                  "rate_limit: {interval: 0.5, burst: 2.9}\n"
                  "tls_server_config: {cert_file: 0123}\n")
    cfg = load_web_config(wc)
    assert cfg.http2 is False
    assert cfg.headers == (("X-XSS-Protection", "0x1F"),)
    assert cfg.rate_burst == 2 and cfg.rate_interval == 0.0  # 0.5 ns truncates to 0: no limiter
    assert cfg.tls.cert_file == certs / "0123"  # the source text, not the octal number


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
    assert len(lines) == 1 and "web.yml: basic_auth_users.prometheus: is too short" in lines[0], proc.stderr
    assert "Traceback" not in proc.stderr


async def test_an_empty_web_config_means_plain_http_without_auth(tmp_path: Path) -> None:
    for text in ("", "{}\n", "tls_server_config: {}\nbasic_auth_users: {}\n", "tls_server_config:\n"):
        async with serving(tmp_path / "web.yml", text) as port:
            r = await get(port)
            assert r is not None and r.status == 200, text


async def test_probe_accepts_only_configured_target_names(tmp_path: Path) -> None:
    faults = await FaultServer.start()
    try:
        (tmp_path / "web.yml").write_text("{}\n")
        cfg = config_from({"targets": [{"name": "flip", "vendor": "flipsnack", "base_url": faults.url("ok"),
                                        "credentials": {"api_key": "k-webcfg", "secret": "s-webcfg"}}]})
        exp = Exporter(cfg, clock=FakeClock(), resolver=LoopbackResolver())
        app = make_app(exp)
        apply_web_config(app, tmp_path / "web.yml")
        await exp.start()
        runner = web.AppRunner(app)
        await runner.setup()
        port = free_port()
        await web.TCPSite(runner, "127.0.0.1", port).start()
        try:
            async with aiohttp.ClientSession() as s:
                url = f"http://127.0.0.1:{port}"
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
            await runner.cleanup()
            await exp.close()
    finally:
        await faults.close()


async def test_a_request_whose_password_check_cannot_start_in_time_gets_503(
        certs: Path, hashed: str, monkeypatch: pytest.MonkeyPatch) -> None:
    import threading

    from exporter.webconfig import auth as auth_module

    monkeypatch.setattr(auth_module, "CHECK_DEADLINE", 0.3)
    release = threading.Event()

    def slow(password: bytes, h: bytes) -> bool:
        release.wait(10)  # a check that holds the only slot (a costly hash, a flood)
        return bool(bcrypt.checkpw(password, h))

    checker = BasicAuth(slow)
    users = {"prometheus": hashed}
    first = asyncio.create_task(checker.check(users, basic("prometheus", "wrong-1")))
    await asyncio.sleep(0.05)
    with pytest.raises(auth_module.AuthBusy):
        await checker.check(users, basic("prometheus", "wrong-2"))
    release.set()
    assert not await first
    # served over HTTP: 503 with Retry-After, not 401 and not a wait without end
    release.clear()
    import exporter.webconfig as webconfig_package

    monkeypatch.setattr(webconfig_package, "BasicAuth", lambda: checker)  # the one apply_web_config makes
    async with serving(certs / "web.yml", f"basic_auth_users: {{prometheus: '{hashed}'}}\n") as port:
        holding = asyncio.create_task(get(port, auth=basic("prometheus", "wrong-3")))
        await asyncio.sleep(0.1)
        r = await get(port, auth=basic("prometheus", "wrong-4"))
        assert r is not None and r.status == 503 and r.headers["retry-after"] == "1"
        release.set()
        held = await holding
        assert held is not None and held.status == 401


async def test_a_fifo_in_place_of_the_key_keeps_the_working_certificate_and_the_loop_free(
        certs: Path, ca: trustme.CA, caplog: pytest.LogCaptureFixture) -> None:
    async with serving(certs / "web.yml", TLS) as port:
        r = await get(port, client_ctx(ca))
        assert r is not None and r.status == 200
        (certs / "server.key").unlink()
        os.mkfifo(certs / "server.key")  # an open of it would wait for a writer forever
        loop = asyncio.get_running_loop()
        started = loop.time()
        r = await get(port, client_ctx(ca))
        assert r is not None and r.status == 200  # the certificate that worked is still served
        assert loop.time() - started < 2
    assert any("server.key: is a FIFO, not a regular file" in rec.getMessage() for rec in caplog.records)
