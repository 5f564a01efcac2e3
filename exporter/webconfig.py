"""TLS and basic auth for the exporter's own endpoints, from a Prometheus exporter-toolkit web config file.

The file format is the one every Prometheus exporter reads with ``--web.config.file``
(https://github.com/prometheus/exporter-toolkit/blob/master/docs/web-configuration.md): the same file
works here and for node_exporter. As in exporter-toolkit, basic auth covers every endpoint, health
checks included. Relative paths are resolved against the web config file's own directory.

What Python's ssl module cannot do the way Go does (cipher suite and curve names, SAN allow-lists,
asking for a client certificate without verifying it) is refused with a one-line error, never
silently ignored: a security setting that is not applied must not look as if it were.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import hashlib
import hmac
import os
import re
import secrets
import ssl
import tempfile
from collections import OrderedDict
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import yaml
from aiohttp import web
from aiohttp.typedefs import Handler, Middleware

__all__ = ["BasicAuth", "WebConfigError", "apply_web_config", "load_web_config"]

_TOP = {"tls_server_config", "http_server_config", "basic_auth_users", "rate_limit"}
_TLS = {"cert", "key", "client_ca", "cert_file", "key_file", "client_auth_type", "client_ca_file",
        "client_allowed_sans", "min_version", "max_version", "cipher_suites", "prefer_server_cipher_suites",
        "curve_preferences"}
_VERSIONS = {"TLS10": ssl.TLSVersion.TLSv1, "TLS11": ssl.TLSVersion.TLSv1_1, "TLS12": ssl.TLSVersion.TLSv1_2,
             "TLS13": ssl.TLSVersion.TLSv1_3}
#: exporter-toolkit's client_auth_type -> (Python verify mode, a client CA is needed)
_CLIENT_AUTH = {
    "NoClientCert": ssl.CERT_NONE,
    "VerifyClientCertIfGiven": ssl.CERT_OPTIONAL,
    "RequireAndVerifyClientCert": ssl.CERT_REQUIRED,
}
_UNVERIFIED_CLIENT_AUTH = {"RequestClientCert", "RequireAnyClientCert"}
_HEADERS = {"Content-Security-Policy", "X-Frame-Options", "X-Content-Type-Options", "X-XSS-Protection",
            "Strict-Transport-Security"}
_HEADER_VALUES = {"X-Frame-Options": {"deny", "sameorigin"}, "X-Content-Type-Options": {"nosniff"}}
_BCRYPT = re.compile(r"\$2[abxy]\$\d\d\$[./A-Za-z0-9]{53}")


class WebConfigError(Exception):
    """A bad web config file. ``str()`` is the one line a user sees: file, key and reason."""

    def __init__(self, file: Path | str, key: str, reason: str) -> None:
        super().__init__(f"{file}: {key}: {reason}" if key else f"{file}: {reason}")


class _Doc:
    """The parsed file, with errors that name the file and the key path."""

    def __init__(self, file: Path) -> None:
        self.file = file

    def fail(self, key: str, reason: str) -> WebConfigError:
        return WebConfigError(self.file, key, reason)

    def mapping(self, value: Any, key: str, allowed: set[str] | None = None) -> dict[str, Any]:
        if value is None:
            return {}
        if not isinstance(value, dict):
            raise self.fail(key, "must be a mapping")
        for k in value:
            if not isinstance(k, str):
                raise self.fail(key, f"keys must be strings, got {k!r}")
            if allowed is not None and k not in allowed:
                raise self.fail(f"{key}.{k}" if key else k, f"unknown key (known: {', '.join(sorted(allowed))})")
        return value

    def text(self, value: Any, key: str) -> str:
        if not isinstance(value, str) or not value:
            raise self.fail(key, "must be a non-empty string")
        return value

    def path(self, value: Any, key: str) -> Path:
        p = Path(self.text(value, key))
        return p if p.is_absolute() else self.file.parent / p


# --- basic auth ------------------------------------------------------------------------------------


class BasicAuth:
    """Checks ``Authorization: Basic`` against bcrypt hashes. A bcrypt check costs ~50-100 ms, so a
    successful one is remembered (as a salted digest, never the password) and runs off the event loop."""

    _CACHE = 256

    def __init__(self, users: Mapping[str, str], checkpw: Callable[[bytes, bytes], bool]) -> None:
        self._users = {u: h.encode() for u, h in users.items()}
        self._checkpw = checkpw
        self._salt = secrets.token_bytes(32)
        self._ok: OrderedDict[bytes, None] = OrderedDict()
        self._sem = asyncio.Semaphore(4)  # bounds the threads an attacker can keep busy with bcrypt
        # an unknown user still pays one bcrypt check, so timing does not tell which users exist
        self._dummy = next(iter(self._users.values()))

    def _digest(self, user: str, password: bytes, hashed: bytes) -> bytes:
        return hmac.new(self._salt, user.encode() + b"\0" + password + b"\0" + hashed, hashlib.sha256).digest()

    async def check(self, header: str) -> bool:
        scheme, _, encoded = header.partition(" ")
        if scheme.lower() != "basic":
            return False
        try:
            user, sep, password = base64.b64decode(encoded.strip(), validate=True).decode("utf-8").partition(":")
        except (binascii.Error, UnicodeDecodeError, ValueError):
            return False
        if not sep:
            return False
        hashed = self._users.get(user)
        key = self._digest(user, password.encode(), hashed or self._dummy)
        if hashed is not None and key in self._ok:
            self._ok.move_to_end(key)
            return True
        async with self._sem:
            ok = await asyncio.to_thread(self._verify, password.encode(), hashed or self._dummy)
        if not ok or hashed is None:
            return False
        self._ok[key] = None
        if len(self._ok) > self._CACHE:
            self._ok.popitem(last=False)
        return True

    def _verify(self, password: bytes, hashed: bytes) -> bool:
        try:
            return bool(self._checkpw(password, hashed))
        except ValueError:
            return False


def _auth_middleware(auth: BasicAuth) -> Middleware:
    @web.middleware
    async def basic_auth(request: web.Request, handler: Handler) -> web.StreamResponse:
        header = request.headers.get("Authorization", "")
        if not header or not await auth.check(header):
            raise web.HTTPUnauthorized(text="Unauthorized\n",
                                       headers={"WWW-Authenticate": 'Basic realm="apistatus-exporter"'})
        return await handler(request)

    return basic_auth


# --- loading ---------------------------------------------------------------------------------------


def _tls(doc: _Doc, raw: Any) -> ssl.SSLContext | None:
    if raw is None or raw == {}:
        return None  # as in exporter-toolkit: no TLS settings at all means plain HTTP
    base = "tls_server_config"
    m = doc.mapping(raw, base, _TLS)
    for key in ("client_allowed_sans", "cipher_suites", "curve_preferences"):
        if m.get(key):
            raise doc.fail(f"{base}.{key}", "is not supported by apistatus-exporter (Python's TLS); remove it")
    if "prefer_server_cipher_suites" in m and not isinstance(m["prefer_server_cipher_suites"], bool):
        raise doc.fail(f"{base}.prefer_server_cipher_suites", "must be true or false")
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    versions = {}
    for key, default in (("min_version", "TLS12"), ("max_version", "TLS13")):
        name = m.get(key, default)
        if name not in _VERSIONS:
            raise doc.fail(f"{base}.{key}", f"must be one of {', '.join(_VERSIONS)} (got {name!r})")
        versions[key] = _VERSIONS[name]
    if versions["min_version"] > versions["max_version"]:
        raise doc.fail(f"{base}.min_version", "is above max_version")
    try:
        ctx.minimum_version, ctx.maximum_version = versions["min_version"], versions["max_version"]
    except (ValueError, ssl.SSLError):
        raise doc.fail(f"{base}.min_version", "this TLS version is not available in this Python build") from None

    _load_pair(doc, ctx, m)

    auth_type = m.get("client_auth_type", "NoClientCert")
    if auth_type in _UNVERIFIED_CLIENT_AUTH:
        raise doc.fail(f"{base}.client_auth_type", f"{auth_type} (a client certificate that is not verified) "
                       "is not supported: use RequireAndVerifyClientCert or VerifyClientCertIfGiven")
    if auth_type not in _CLIENT_AUTH:
        raise doc.fail(f"{base}.client_auth_type", f"must be one of {', '.join(_CLIENT_AUTH)} (got {auth_type!r})")
    has_ca = "client_ca_file" in m or "client_ca" in m
    if "client_ca_file" in m and "client_ca" in m:
        raise doc.fail(f"{base}.client_ca", "give client_ca or client_ca_file, not both")
    if _CLIENT_AUTH[auth_type] != ssl.CERT_NONE:
        if not has_ca:
            raise doc.fail(f"{base}.client_ca_file", f"is required with client_auth_type {auth_type}")
        try:
            if "client_ca_file" in m:
                ctx.load_verify_locations(cafile=str(doc.path(m["client_ca_file"], f"{base}.client_ca_file")))
            else:
                ctx.load_verify_locations(cadata=doc.text(m["client_ca"], f"{base}.client_ca"))
        except FileNotFoundError:
            raise doc.fail(f"{base}.client_ca_file", "file not found") from None
        except (ssl.SSLError, ValueError, OSError):
            key = "client_ca_file" if "client_ca_file" in m else "client_ca"
            raise doc.fail(f"{base}.{key}", "is not a PEM CA certificate") from None
        ctx.verify_mode = _CLIENT_AUTH[auth_type]
    elif has_ca:
        raise doc.fail(f"{base}.client_auth_type", "is NoClientCert, so the client CA would be ignored: "
                       "set RequireAndVerifyClientCert")
    return ctx


def _load_pair(doc: _Doc, ctx: ssl.SSLContext, m: Mapping[str, Any]) -> None:
    base = "tls_server_config"
    for file_key, inline_key in (("cert_file", "cert"), ("key_file", "key")):
        if file_key in m and inline_key in m:
            raise doc.fail(f"{base}.{inline_key}", f"give {inline_key} or {file_key}, not both")
        if file_key not in m and inline_key not in m:
            raise doc.fail(f"{base}.{file_key}", "is required")
    with tempfile.TemporaryDirectory() as tmp:
        paths: dict[str, Path] = {}
        for file_key, inline_key in (("cert_file", "cert"), ("key_file", "key")):
            if file_key in m:
                paths[file_key] = doc.path(m[file_key], f"{base}.{file_key}")
                if not paths[file_key].is_file():
                    raise doc.fail(f"{base}.{file_key}", f"file not found: {paths[file_key]}")
            else:
                # ssl loads keys from files only: an inline PEM goes to a private temporary file
                p = Path(tmp) / inline_key
                fd = os.open(p, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
                with os.fdopen(fd, "w") as fh:
                    fh.write(doc.text(m[inline_key], f"{base}.{inline_key}"))
                paths[file_key] = p
        try:
            ctx.load_cert_chain(str(paths["cert_file"]), str(paths["key_file"]))
        except (ssl.SSLError, ValueError, OSError):
            where = "cert_file" if "cert_file" in m else "cert"
            raise doc.fail(f"{base}.{where}", "certificate and key are not a valid PEM pair") from None


def _headers(doc: _Doc, raw: Any) -> dict[str, str]:
    m = doc.mapping(raw, "http_server_config", {"http2", "headers"})
    if "http2" in m and not isinstance(m["http2"], bool):
        raise doc.fail("http_server_config.http2", "must be true or false")
    out: dict[str, str] = {}
    for name, value in doc.mapping(m.get("headers"), "http_server_config.headers", _HEADERS).items():
        key = f"http_server_config.headers.{name}"
        if value in (None, ""):
            continue
        text = doc.text(value, key)
        if "\n" in text or "\r" in text:
            raise doc.fail(key, "must be one line")
        allowed = _HEADER_VALUES.get(name)
        if allowed is not None and text.lower() not in allowed:
            raise doc.fail(key, f"must be one of {', '.join(sorted(allowed))}")
        out[name] = text
    return out


def _users(doc: _Doc, raw: Any) -> dict[str, str]:
    out: dict[str, str] = {}
    for user, hashed in doc.mapping(raw, "basic_auth_users").items():
        key = f"basic_auth_users.{user}"
        if not user or ":" in user:
            raise doc.fail(key, "a user name must be non-empty and must not contain ':'")
        # the hash is never echoed back: it is a secret of its own
        if not isinstance(hashed, str) or not _BCRYPT.fullmatch(hashed):
            raise doc.fail(key, "must be a bcrypt hash ($2y$10$... as made by htpasswd -nBC 10)")
        out[user] = hashed
    return out


def load_web_config(path: Path) -> tuple[ssl.SSLContext | None, dict[str, str], dict[str, str]]:
    """(TLS context or None, basic auth users -> bcrypt hash, extra response headers)."""
    doc = _Doc(path)
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise doc.fail("", "file not found") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise doc.fail("", f"cannot read: {getattr(exc, 'strerror', None) or exc.__class__.__name__}") from None
    try:
        raw = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" at line {mark.line + 1}" if mark is not None else ""
        raise doc.fail("", f"invalid YAML{where}") from None
    top = doc.mapping(raw, "", _TOP)
    if top.get("rate_limit"):
        raise doc.fail("rate_limit", "is not supported by apistatus-exporter; remove it")
    return _tls(doc, top.get("tls_server_config")), _users(doc, top.get("basic_auth_users")), _headers(
        doc, top.get("http_server_config"))


def apply_web_config(app: web.Application, path: Path) -> ssl.SSLContext | None:
    """Validate the file, put basic auth in front of every endpoint, and return the TLS context."""
    ctx, users, headers = load_web_config(path)
    if users:
        try:
            import bcrypt
        except ImportError:
            raise WebConfigError(path, "basic_auth_users", "needs the bcrypt package: "
                                 "pip install 'apistatus-exporter[web]'") from None
        app.middlewares.insert(0, _auth_middleware(BasicAuth(users, bcrypt.checkpw)))
    if headers:
        async def add_headers(request: web.Request, response: web.StreamResponse) -> None:
            response.headers.update(headers)

        app.on_response_prepare.append(add_headers)
    return ctx
