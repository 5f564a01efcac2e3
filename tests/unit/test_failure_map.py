"""The one map of transport failures (``probe._failure``) over curl's error codes: every code lands on
one of the documented codes (docs/metrics.md), and through a proxy the proxy's failures are named as
the proxy's. Pure: no socket, no curl transfer."""

from __future__ import annotations

import errno

import pycurl
import pytest

from exporter.engine import TransportError
from exporter.httpconfig import Proxy
from exporter.probe import _failure

DOCUMENTED = {"timeout", "dns", "refused", "connect", "tls", "reset", "protocol", "proxy_connect", "proxy_auth",
              "proxy_error", "undecodable_body", "other"}
PROXY = Proxy("http://127.0.0.1:3128")


@pytest.mark.parametrize("via", [None, PROXY], ids=["direct", "proxy"])
def test_every_curl_error_code_maps_to_a_documented_code(via: Proxy | None) -> None:
    for code in range(1, 101):
        failure = _failure(TransportError(code, "some curl message", proxy=via))
        assert failure.code in DOCUMENTED, (code, failure)
        assert failure.cls in ("timeout", "network_error", "unknown"), (code, failure)


@pytest.mark.parametrize(("code", "extra", "expected"), [
    (pycurl.E_OPERATION_TIMEDOUT, {}, "timeout"),
    (pycurl.E_COULDNT_RESOLVE_HOST, {}, "dns"),
    (pycurl.E_COULDNT_CONNECT, {"os_errno": errno.ECONNREFUSED}, "refused"),
    (pycurl.E_COULDNT_CONNECT, {"os_errno": errno.EHOSTUNREACH}, "connect"),
    (pycurl.E_SSL_CONNECT_ERROR, {}, "tls"),
    (pycurl.E_PEER_FAILED_VERIFICATION, {}, "tls"),
    (pycurl.E_GOT_NOTHING, {}, "reset"),
    (pycurl.E_RECV_ERROR, {}, "reset"),
    (pycurl.E_PARTIAL_FILE, {}, "reset"),
    (8, {}, "protocol"),  # a weird server reply
    (pycurl.E_UNSUPPORTED_PROTOCOL, {}, "protocol"),  # HTTP/0.9: no status line at all
    (pycurl.E_BAD_CONTENT_ENCODING, {"status": 200, "encoding": "zstd"}, "undecodable_body"),
])
def test_direct_failures(code: int, extra: dict[str, object], expected: str) -> None:
    assert _failure(TransportError(code, "x", **extra)).code == expected  # type: ignore[arg-type]


def test_oversized_headers_and_tls_alerts_are_named_for_what_they_are() -> None:
    assert _failure(TransportError(pycurl.E_RECV_ERROR, "Too large response headers: 307288 > 307200")).code \
        == "protocol"
    alert = "OpenSSL SSL_read: error:0A00045C:SSL routines::tlsv13 alert certificate required, errno 0"
    assert _failure(TransportError(pycurl.E_RECV_ERROR, alert)).code == "tls"


@pytest.mark.parametrize(("code", "extra", "expected"), [
    (pycurl.E_COULDNT_CONNECT, {"os_errno": errno.ECONNREFUSED}, "proxy_connect"),  # curl connects to the proxy only
    (pycurl.E_COULDNT_RESOLVE_PROXY, {}, "proxy_connect"),
    (pycurl.E_RECV_ERROR, {"proxy_status": 407}, "proxy_auth"),
    (pycurl.E_RECV_ERROR, {"proxy_status": 401}, "proxy_auth"),
    (pycurl.E_RECV_ERROR, {"proxy_status": 403}, "proxy_error"),
    (pycurl.E_RECV_ERROR, {"proxy_status": 503}, "proxy_error"),
    (pycurl.E_GOT_NOTHING, {}, "proxy_error"),  # closed on CONNECT
    (8, {}, "proxy_error"),  # no HTTP answer to CONNECT
    (97, {}, "proxy_error"),  # a SOCKS proxy's refusal
    (pycurl.E_OPERATION_TIMEDOUT, {}, "timeout"),
])
def test_failures_through_a_proxy_are_the_proxys(code: int, extra: dict[str, object], expected: str) -> None:
    assert _failure(TransportError(code, "x", proxy=PROXY, **extra)).code == expected  # type: ignore[arg-type]


def test_tls_through_a_proxy() -> None:
    tunnel_up = {"proxy": PROXY, "proxy_status": 200}
    # after the tunnel opened: the vendor's TLS failed, unless what came was no TLS at all (the proxy's)
    assert _failure(TransportError(pycurl.E_PEER_FAILED_VERIFICATION, "x", **tunnel_up)).code == "tls"  # type: ignore[arg-type]
    assert _failure(TransportError(pycurl.E_SSL_CONNECT_ERROR, "wrong version number", **tunnel_up)).code \
        == "proxy_error"  # type: ignore[arg-type]
    # TLS to an https:// proxy itself, before any CONNECT answer
    https = Proxy("https://proxy.example:3129")
    assert _failure(TransportError(pycurl.E_PEER_FAILED_VERIFICATION, "x", proxy=https)).code == "proxy_connect"
