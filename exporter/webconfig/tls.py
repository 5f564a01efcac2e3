"""The TLS side of the web config: exporter-toolkit's ConfigToTLSConfig made with Python's ``ssl``.

Certificate, key and client CA files are read the way the config files are (``read_regular_file``:
a regular file, size-capped, within the read timeout) and handed to OpenSSL from memory, so building
a context never waits on a FIFO; callers build it off the event loop all the same (watcher.py).
Only public APIs are used: ``ssl`` for the context and ``cryptography`` to read a client
certificate's SANs. What ``ssl`` cannot make is refused when the file is read (schema.py).
HTTP/2 is not served (aiohttp speaks HTTP/1.1): TLS offers HTTP/1.1 by ALPN.
"""

from __future__ import annotations

import asyncio
import logging
import os
import re
import ssl
import tempfile
import warnings
from pathlib import Path
from typing import Any, NoReturn

from cryptography import x509

from .._yamlnode import FileReadError, read_regular_file
from .goyaml import WebConfigError
from .schema import CIPHER_SUITES, CLIENT_AUTH, CURVES, GO_DEFAULT_CIPHERS, HTTP2_REQUIRED, WebConfig

__all__ = ["PEM_FILE_LIMIT", "ServerContext", "build_tls_context", "cert_sans", "startup_checks"]

log = logging.getLogger("exporter.webconfig")

#: a certificate chain, a key or a CA bundle: a system bundle of every public root is a few hundred KiB
PEM_FILE_LIMIT = 4 << 20


class CheckedSSLObject(ssl.SSLObject):
    """One server-side TLS connection: refused outright while the web config is broken, and checked
    against ``client_allowed_sans`` once the handshake is done (Go's VerifyPeerCertificate)."""

    def do_handshake(self) -> None:
        ctx = self.context
        refusal = getattr(ctx, "refusal", None)
        if refusal:
            raise ssl.SSLError(refusal)
        super().do_handshake()
        allowed: frozenset[str] | None = getattr(ctx, "allowed_sans", None)
        if allowed is None or ctx.verify_mode == ssl.CERT_NONE:
            return  # no certificate was asked for: Go does not check either
        der = self.getpeercert(binary_form=True)
        # as in the toolkit, a client without a certificate fails the check too
        found = cert_sans(der) if der else []
        if not allowed.intersection(found):
            _SAN_LOG.warn(f"TLS client refused: none of its certificate's SANs {found} is in "
                          "tls_server_config.client_allowed_sans")
            raise ssl.SSLCertVerificationError("client certificate has no allowed SAN")


class ServerContext(ssl.SSLContext):
    sslobject_class = CheckedSSLObject
    allowed_sans: frozenset[str] | None = None
    refusal: str | None = None


class _ThrottledLog:
    """At most one warning a minute, so a client retrying in a loop cannot flood the log."""

    def __init__(self) -> None:
        self._next = 0.0

    def warn(self, msg: str) -> None:
        now = asyncio.get_running_loop().time() if _loop_running() else 0.0
        if now >= self._next:
            self._next = now + 60.0
            log.warning("%s", msg)


def _loop_running() -> bool:
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        return False
    return True


_SAN_LOG = _ThrottledLog()


def cert_sans(der: bytes) -> list[str]:
    """A certificate's SANs as Go's x509 spells them: DNS names, e-mail addresses, IPs, URIs; [] for
    anything that is not a readable certificate."""
    try:
        cert = x509.load_der_x509_certificate(der)
        names = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    except (ValueError, x509.ExtensionNotFound, x509.DuplicateExtension, x509.UnsupportedGeneralNameType):
        return []
    out: list[str] = []
    for name in names:
        if isinstance(name, x509.DNSName | x509.RFC822Name | x509.UniformResourceIdentifier):
            out.append(name.value)
        elif isinstance(name, x509.IPAddress):
            ip = name.value
            mapped = getattr(ip, "ipv4_mapped", None)
            out.append(str(mapped or ip))  # Go prints ::ffff:a.b.c.d as a.b.c.d
    return out


class _EncryptedKey(Exception):
    pass


def _no_password() -> NoReturn:
    """``load_cert_chain``'s password callback: an encrypted key must never make OpenSSL prompt on the
    terminal, so it is refused instead."""
    raise _EncryptedKey


_PEM_CERT = re.compile(rb"-----BEGIN CERTIFICATE-----\r?\n.*?-----END CERTIFICATE-----", re.S)
_PEM_END = b"-----END CERTIFICATE-----"


def _pem_certs(data: bytes) -> list[bytes]:
    """The PEM certificate blocks of ``data``, in time linear in its size: the scan stops at the last END
    line, since from each BEGIN line no END follows the pattern would search to the end again (a file of
    such lines took hours, holding the interpreter)."""
    last = data.rfind(_PEM_END)
    return [] if last < 0 else _PEM_CERT.findall(data, 0, last + len(_PEM_END))


def _pem_source(data: bytes, stack: list[Any]) -> str:
    """A path OpenSSL can open for inline PEM: an anonymous in-memory file where Linux has one."""
    if hasattr(os, "memfd_create") and os.path.isdir("/proc/self/fd"):
        try:
            fd = os.memfd_create("webconfig-pem", getattr(os, "MFD_CLOEXEC", 0))
        except OSError:
            pass  # a kernel or sandbox without memfd: the private temporary file below
        else:
            stack.append(lambda: os.close(fd))
            os.write(fd, data)
            return f"/proc/self/fd/{fd}"
    tmp = tempfile.TemporaryDirectory()
    stack.append(tmp.cleanup)
    pem_path = Path(tmp.name) / "pem"
    fd = os.open(pem_path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "wb") as fh:
        fh.write(data)
    return str(pem_path)


def _read_bytes(file: str, key: str, path: Path) -> bytes:
    try:
        return read_regular_file(path, PEM_FILE_LIMIT)
    except FileReadError as exc:
        raise WebConfigError(file, key, f"cannot read {path}: {exc}") from None
    except ValueError:  # a NUL in the path
        raise WebConfigError(file, key, "is not a valid path") from None


def _load_pair(cfg: WebConfig, ctx: ssl.SSLContext) -> None:
    tls, file, base = cfg.tls, str(cfg.file), "tls_server_config"
    if not (tls.cert_file or tls.cert):
        raise WebConfigError(file, f"{base}.cert_file", "is required (or cert, inline): missing one of cert or "
                             "cert_file")
    if not (tls.key_file or tls.key):
        raise WebConfigError(file, f"{base}.key_file", "is required (or key, inline): missing one of key or key_file")
    # as in the toolkit, a file wins over the inline value when both are given
    cert_key = f"{base}.cert_file" if tls.cert_file else f"{base}.cert"
    key_key = f"{base}.key_file" if tls.key_file else f"{base}.key"
    cert = _read_bytes(file, cert_key, tls.cert_file) if tls.cert_file else tls.cert.encode()
    key = _read_bytes(file, key_key, tls.key_file) if tls.key_file else tls.key.encode()
    if not _pem_certs(cert):
        raise WebConfigError(file, cert_key, "holds no PEM certificate")
    if b"PRIVATE KEY-----" not in key:
        raise WebConfigError(file, key_key, "holds no PEM private key")
    if b"-----BEGIN ENCRYPTED PRIVATE KEY-----" in key or b"Proc-Type: 4,ENCRYPTED" in key:
        raise WebConfigError(file, key_key, "is an encrypted key; the toolkit (and this) needs it unencrypted")
    cleanup: list[Any] = []
    try:
        ctx.load_cert_chain(_pem_source(cert, cleanup), _pem_source(key, cleanup), password=_no_password)
    except _EncryptedKey:
        raise WebConfigError(file, key_key, "is an encrypted key; the toolkit (and this) needs it unencrypted"
                             ) from None
    except ssl.SSLError as exc:
        why = "the key does not belong to the certificate" if "MISMATCH" in str(exc).upper() else \
            "certificate and key are not a valid PEM pair"
        raise WebConfigError(file, cert_key, why) from None
    finally:
        for close in reversed(cleanup):
            close()


def _load_client_cas(cfg: WebConfig, ctx: ssl.SSLContext) -> int:
    """Go's CertPool.AppendCertsFromPEM: every PEM certificate that parses; the rest is ignored."""
    tls = cfg.tls
    if tls.client_ca_file:
        data = _read_bytes(str(cfg.file), "tls_server_config.client_ca_file", tls.client_ca_file)
    else:
        data = tls.client_ca.encode()
    loaded = 0
    for block in _pem_certs(data):
        try:
            ctx.load_verify_locations(cadata=block.decode("ascii"))
            loaded += 1
        except (ssl.SSLError, ValueError, UnicodeDecodeError):
            continue
    return loaded


def _client_auth(cfg: WebConfig) -> str:
    """The toolkit's client auth checks, the two modes Python's ssl cannot serve (a certificate taken
    unverified) and a verifying mode without a CA; then the one curve ssl can set."""
    tls, file, key = cfg.tls, str(cfg.file), "tls_server_config.client_auth_type"
    mode = CLIENT_AUTH.get(tls.client_auth_type)
    if mode is None:
        raise WebConfigError(file, key, f"invalid ClientAuth: must be one of "
                             f"{', '.join(name for name in CLIENT_AUTH if name)}", tls.client_auth_type)
    has_ca = bool(tls.client_ca_file or tls.client_ca)
    if has_ca and mode == "NoClientCert":
        raise WebConfigError(file, key, "a client CA is configured without a client auth policy: set "
                             "client_auth_type (RequireAndVerifyClientCert to check client certificates)")
    if mode in ("RequestClientCert", "RequireAnyClientCert"):
        raise WebConfigError(file, key, f"{tls.client_auth_type} takes a client certificate without verifying "
                             "it, which Python's ssl module cannot do: use RequireAndVerifyClientCert (or "
                             "VerifyClientCertIfGiven) with client_ca_file")
    if mode == "RequireAndVerifyClientCert" and not has_ca:
        raise WebConfigError(file, key, "RequireAndVerifyClientCert needs client_ca_file (or client_ca): without "
                             "one, client certificates would be verified against the system's public roots, "
                             "letting in anyone with a publicly trusted certificate")
    if len(tls.curve_preferences) > 1:
        raise WebConfigError(file, "tls_server_config.curve_preferences", "lists more than one curve, and Python's "
                             "ssl module can set only one (no ordered group list): list one curve, or leave the "
                             "key out for OpenSSL's defaults")
    return mode


def build_tls_context(cfg: WebConfig) -> ServerContext:
    """The server TLS context for ``cfg`` (which must have TLS enabled), or a WebConfigError. Blocking:
    it reads the certificate, key and CA files."""
    tls, file, base = cfg.tls, str(cfg.file), "tls_server_config"
    ctx = ServerContext(ssl.PROTOCOL_TLS_SERVER)
    _load_pair(cfg, ctx)
    mode = _client_auth(cfg)
    # versions: Go's zero value (YAML null) means its defaults, TLS 1.2 to 1.3
    lo = tls.min_version or ssl.TLSVersion.TLSv1_2
    hi = tls.max_version or ssl.TLSVersion.TLSv1_3
    tls12 = [suite for suite in (CIPHER_SUITES[name] for name in tls.cipher_suites) if suite]
    if tls.cipher_suites and not tls12:
        lo = max(lo, ssl.TLSVersion.TLSv1_3)  # only TLS 1.3 names: TLS 1.2 has no suite left, as in Go
    if lo > hi:
        # Go accepts the file and fails every handshake ("no supported versions"); so does this
        ctx.refusal = "no TLS version satisfies min_version and max_version"
        log.warning("%s: tls_server_config: min_version is above max_version (or only TLS 1.3 cipher suites "
                    "with max_version below TLS13): every TLS handshake will fail, as with exporter-toolkit", file)
        return ctx
    ciphers = ":".join(tls12) if tls12 else GO_DEFAULT_CIPHERS
    if lo < ssl.TLSVersion.TLSv1_2:
        ciphers += ":@SECLEVEL=0"  # OpenSSL 3 allows TLS 1.0/1.1 only at level 0; Go allows them when asked
    try:
        ctx.set_ciphers(ciphers)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", DeprecationWarning)  # TLS 1.0/1.1: asked for by the config
            ctx.minimum_version, ctx.maximum_version = lo, hi
    except (ssl.SSLError, ValueError):
        raise WebConfigError(file, f"{base}.min_version", "this TLS version or cipher suite is not available in "
                             "this Python's OpenSSL") from None
    if tls.prefer_server_cipher_suites:
        ctx.options |= ssl.OP_CIPHER_SERVER_PREFERENCE
    else:
        ctx.options &= ~ssl.OP_CIPHER_SERVER_PREFERENCE
    if tls.curve_preferences:  # one at most (_client_auth): ssl sets no ordered list
        ctx.set_ecdh_curve(CURVES[tls.curve_preferences[0]])
    if mode == "NoClientCert":
        ctx.verify_mode = ssl.CERT_NONE
    else:  # VerifyClientCertIfGiven or RequireAndVerifyClientCert: the unverified modes are refused
        ctx.verify_mode = ssl.CERT_OPTIONAL if mode == "VerifyClientCertIfGiven" else ssl.CERT_REQUIRED
        if tls.client_ca_file or tls.client_ca:
            if _load_client_cas(cfg, ctx) == 0:
                log.warning("%s: tls_server_config.%s holds no usable PEM certificate: no client certificate "
                            "will verify", file, "client_ca_file" if tls.client_ca_file else "client_ca")
        else:
            # VerifyClientCertIfGiven without a CA (RequireAndVerifyClientCert needs one): Go verifies
            # against the system's roots then
            ctx.load_default_certs(ssl.Purpose.CLIENT_AUTH)
    if tls.client_allowed_sans is not None:
        ctx.allowed_sans = frozenset(tls.client_allowed_sans)
    ctx.set_alpn_protocols(["http/1.1"])  # HTTP/2 is not served; clients offering h2 fall back
    return ctx


def startup_checks(cfg: WebConfig) -> None:
    """What Go's HTTP server refuses at ServeTLS: http2 with a TLS 1.2 suite list lacking its required one."""
    tls = cfg.tls
    lo = tls.min_version or 0
    if cfg.http2 and tls.cipher_suites and lo < ssl.TLSVersion.TLSv1_3 and not HTTP2_REQUIRED & set(tls.cipher_suites):
        raise WebConfigError(str(cfg.file), "tls_server_config.cipher_suites",
                             "with http2 on (the default) the list needs TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256 or "
                             "TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256, as Go's HTTP server requires; add one or set "
                             "http_server_config.http2: false")
