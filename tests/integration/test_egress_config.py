"""The ``http_client`` block as the config loader sees it: merging the global block with a target's,
one-line errors for what only real files show (a key that does not match its certificate, an
encrypted key, a bad proxy in the environment), secrets kept out of errors and reprs, ``no_proxy``
matching, notAfter read from DER, and sessions retired after a reload."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import trustme
from aiohttp import web
from cryptography.hazmat.primitives import serialization

from exporter.clock import FakeClock
from exporter.config import ConfigError, Target
from exporter.egress import Egress
from exporter.engine import new_session
from exporter.httpconfig import bypasses_proxy, client_secrets
from exporter.probe import Prober

from ..conftest import ROOT, config_from, free_port, running_exporter, serve
from ..egress_support import NoDNS, probe, write_client

SECRET = "pr0xy-secret-Pw"


def target(name: str = "a", **extra: Any) -> dict[str, Any]:
    return {"name": name, "vendor": "bizwebs", "base_url": "https://shop.example", "credentials": {"token": "t"},
            **extra}


def load(glob: dict[str, Any] | None, *targets: dict[str, Any], base: Path | None = None,
         env: dict[str, str] | None = None) -> tuple[Target, ...]:
    doc: dict[str, Any] = {"targets": list(targets or [target()])}
    if glob is not None:
        doc["global"] = {"http_client": glob}
    return config_from(doc, base=base, env=env).targets


def error(glob: dict[str, Any] | None, *targets: dict[str, Any], base: Path | None = None,
          env: dict[str, str] | None = None) -> str:
    with pytest.raises(ConfigError) as err:
        load(glob, *targets, base=base, env=env)
    text = str(err.value)
    assert "\n" not in text
    return text


def test_no_block_means_no_settings_and_equal_blocks_are_equal_records() -> None:
    a, = load(None)
    assert a.http_client is None  # the shared default session, as before the block existed
    b, c = load({"proxy_url": "http://proxy.corp.example:3128"}, target("b"), target("c"))
    assert b.http_client == c.http_client and hash(b.http_client) == hash(c.http_client)
    assert b.http_client is not None and b.http_client.https_proxy is not None
    assert b.http_client.https_proxy.url == "http://proxy.corp.example:3128"


def test_the_keys_libcurl_brings_load_with_their_defaults() -> None:
    t, = load(None, target(http_client={}))
    assert t.http_client is not None
    assert (t.http_client.enable_http2, t.http_client.follow_redirects) == (True, False)
    t, = load({"proxy_url": f"socks5://bob:{SECRET}@proxy.corp.example", "enable_http2": False,
               "follow_redirects": True, "tls_config": {"min_version": "TLS12", "max_version": "TLS12"}})
    client = t.http_client
    assert client is not None and client.https_proxy is not None
    assert client.https_proxy.address == ("proxy.corp.example", 1080)  # SOCKS' own default port
    assert SECRET not in repr(client) and SECRET in client_secrets(client)
    assert (client.enable_http2, client.follow_redirects) == (False, True)
    assert (client.tls.min_version, client.tls.max_version) == ("TLS12", "TLS12")
    assert error({"tls_config": {"max_version": "TLS14"}}) == (
        "test-config.yml: global.http_client.tls_config.max_version: must be one of TLS10, TLS11, TLS12, TLS13 "
        "(got 'TLS14')")


def test_a_target_overrides_the_global_block_key_by_key(ca: trustme.CA, ca_file: str, tmp_path: Path) -> None:
    cert, key = write_client(ca.issue_cert("client.example"), tmp_path)
    glob = {"proxy_url": "http://proxy.corp.example:3128", "no_proxy": ".internal.example",
            "tls_config": {"ca_file": "ca.pem", "min_version": "TLS12"}}
    inherit, mtls, direct, env = load(
        glob, target("inherit"),
        target("mtls", http_client={"tls_config": {"cert_file": "client.pem", "key_file": "client.key"}}),
        target("direct", http_client={"proxy_url": ""}),
        target("env", http_client={"proxy_from_environment": True}),
        base=tmp_path, env={"HTTPS_PROXY": "http://envproxy.example:8080"})
    assert inherit.http_client is not None and inherit.http_client.tls.ca_file == ca_file
    assert mtls.http_client is not None
    assert (mtls.http_client.tls.ca_file, mtls.http_client.tls.cert_file, mtls.http_client.tls.key_file) == (
        ca_file, cert, key)  # relative to the config file, like Prometheus
    assert mtls.http_client.tls.min_version == "TLS12"
    assert mtls.http_client.https_proxy == inherit.http_client.https_proxy
    assert direct.http_client is not None and direct.http_client.https_proxy is None
    assert direct.http_client.tls == inherit.http_client.tls
    assert env.http_client is not None and env.http_client.proxy_from_environment
    assert env.http_client.https_proxy is not None and env.http_client.https_proxy.url == "http://envproxy.example:8080"
    assert env.http_client.http_proxy is None and env.http_client.no_proxy == ()  # NO_PROXY unset: none


def test_certificate_and_key_that_do_not_match_and_an_encrypted_key(ca: trustme.CA, tmp_path: Path) -> None:
    cert, _ = write_client(ca.issue_cert("one.example"), tmp_path)
    other = ca.issue_cert("two.example")
    (tmp_path / "other.key").write_bytes(other.private_key_pem.bytes())
    tls = {"cert_file": "client.pem", "key_file": "other.key"}
    msg = error({"tls_config": tls}, base=tmp_path)
    assert msg.startswith(f"test-config.yml: global.http_client.tls_config.cert_file: {cert} does not match key_file")
    key = serialization.load_pem_private_key(other.private_key_pem.bytes(), None)
    (tmp_path / "locked.key").write_bytes(key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
        serialization.BestAvailableEncryption(b"a-pass-phrase")))
    msg = error({"tls_config": {"cert_file": "client.pem", "key_file": "locked.key"}}, base=tmp_path)
    assert msg == (f"test-config.yml: global.http_client.tls_config.key_file: {tmp_path}/locked.key is encrypted; "
                   "give an unencrypted key readable only by the exporter")


def test_a_proxy_password_is_in_no_error_and_no_repr() -> None:
    url = f"http://bob:{SECRET}@proxy.corp.example:3128"
    for glob in ({"proxy_url": url + "/path"}, {"proxy_url": url, "proxy_from_environment": True},
                 {"proxy_url": url.replace("http:", "ftp:")}):
        assert SECRET not in error(glob)
    msg = error({"proxy_from_environment": True}, env={"HTTPS_PROXY": f"socks4://bob:{SECRET}@proxy:1080"})
    assert msg == ("test-config.yml: global.http_client.proxy_from_environment: environment variable HTTPS_PROXY "
                   "must be an http://, https:// or socks5:// URL (got scheme 'socks4')")
    msg = error({"proxy_connect_header": {"Proxy-Authorization": [f"Basic {SECRET}\r\nX-Evil: 1"]}})
    assert SECRET not in msg and "must not contain a line break" in msg
    t, = load({"proxy_url": url, "proxy_connect_header": {"X-Token": ["t0ken-Value"]}})
    assert SECRET not in repr(t) and "t0ken-Value" not in repr(t)
    assert {SECRET, "t0ken-Value"} <= set(client_secrets(t.http_client))


@pytest.mark.parametrize(("rules", "host", "port", "bypass"), [
    ("*", "api.vendor.example", 443, True),
    ("vendor.example", "api.vendor.example", 443, True),
    (".vendor.example", "vendor.example", 443, True),
    ("vendor.example", "notvendor.example", 443, False),
    ("10.0.0.0/8", "10.1.2.3", 443, True),
    ("10.0.0.0/8", "11.1.2.3", 443, False),
    ("10.0.0.0/8", "ten.example", 443, False),
    ("127.0.0.1", "127.0.0.1", 8443, True),
    ("vendor.example:8443", "api.vendor.example", 443, False),
    ("vendor.example:8443", "api.vendor.example", 8443, True),
    ("[::1]:443,::1", "::1", 80, True),
    ("LOCALHOST", "localhost", 80, True),
    ("", "localhost", 80, False),
])
def test_no_proxy_matching(rules: str, host: str, port: int, bypass: bool) -> None:
    t, = load({"proxy_url": "http://proxy.corp.example:3128", "no_proxy": rules})
    assert t.http_client is not None
    assert bypasses_proxy(t.http_client.no_proxy, host, port) is bypass


async def test_sessions_of_settings_no_target_has_any_more_are_closed() -> None:
    first, second = load({"proxy_url": "http://a.example:3128"}, target("a"),
                         target("b", http_client={"proxy_url": "http://b.example:3128"}))
    async with new_session() as default:
        egress = Egress(default, new_session)
        a, b = egress.session(first.http_client), egress.session(second.http_client)
        egress.retire([first.http_client, None], grace=0)
        await asyncio.sleep(0)  # let the retiring task run (grace 0: no waiting)
        for _ in range(10):
            if b.closed:
                break
            await asyncio.sleep(0.01)
        assert b.closed and not a.closed and not default.closed
        assert egress.session(first.http_client) is a
        await egress.close()
        assert a.closed and not default.closed  # the default session is its owner's to close


def test_check_config_reports_a_broken_http_client_in_one_line() -> None:
    path = ROOT / "tests" / "broken" / "http_client_proxy_url_and_environment.yml"
    done = subprocess.run([sys.executable, "-m", "exporter", "--config", str(path), "--check-config"],
                          capture_output=True, text=True, timeout=60, cwd=ROOT)
    assert done.returncode == 1
    assert done.stderr.strip() == (f"error: {path}: global.http_client.proxy_url: proxy_url and "
                                   "proxy_from_environment: true cannot both be set")
    assert "hunter2" not in done.stderr + done.stdout


def test_a_tls_file_that_is_no_regular_file_fails_at_once_instead_of_hanging(tmp_path: Path) -> None:
    fifo = tmp_path / "fifo.pem"
    os.mkfifo(fifo)
    for path in ("/dev/zero", str(fifo)):
        assert error({"tls_config": {"ca_file": path}}) == (
            f"test-config.yml: global.http_client.tls_config.ca_file: cannot read {path}: not a regular file")


async def test_a_reload_applies_new_proxy_settings_and_retires_the_old_session() -> None:
    ports = iter([free_port(), free_port()])
    configs = [config_from({"global": {"http_client": {"proxy_url": f"http://127.0.0.1:{next(ports)}"}},
                            "targets": [target("t")]}) for _ in range(2)]
    loads = iter(configs[1:])
    async with running_exporter(configs[0], clock=FakeClock(), loader=lambda: next(loads), resolver=NoDNS()) as ex:
        assert (await probe(ex, "t")).outcome.code == "proxy_connect"
        egress = ex.exporter.egress
        assert egress is not None
        old = egress.session(configs[0].targets[0].http_client)
        assert (await ex.exporter.reload())[0]
        new = egress.session(configs[1].targets[0].http_client)
        assert new is not old and not old.closed  # closed once in-flight probes had their time
        assert (await probe(ex, "t")).outcome.code == "proxy_connect"
        assert len(egress._closing) == 1
    assert old.closed and new.closed  # closing the exporter closes retired sessions at once


async def test_a_prober_without_an_egress_builds_its_sessions_as_the_exporter_does() -> None:
    agents: list[str] = []

    async def vendor(request: web.Request) -> web.Response:
        agents.append(request.headers.get("User-Agent", ""))
        return web.json_response({"code": 20})

    async with serve(vendor) as url, new_session() as session:
        cfg = config_from({"targets": [
            {"name": "t", "vendor": "flipsnack", "base_url": url, "credentials": {"api_key": "k", "secret": "s"},
             "http_client": {"no_proxy": "elsewhere.example"}}]})
        prober = Prober(session, FakeClock())
        assert (await prober.probe(cfg.targets[0])).outcome.cls == "ok"
        await prober.egress.close()
    assert agents == ["apistatus-exporter"]  # one session constructor: the same headers everywhere
