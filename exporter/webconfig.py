"""The exporter's own endpoints locked down by an exporter-toolkit web config file (``--web.config.file``).

The file, and what each key does, are exporter-toolkit's
(https://github.com/prometheus/exporter-toolkit/blob/master/docs/web-configuration.md): a file that
works for node_exporter works here, with the same effect, and a file it refuses is refused here with
one line naming the file and the key path. Where the toolkit's behaviour comes from Go rather than
from its docs, Go's is followed:

* values are read the way Go's yaml.v2 fills the toolkit's typed fields: a string field takes the
  scalar's source text (``X-XSS-Protection: 1`` is the string ``1``), booleans are YAML 1.1's
  (``y``/``on`` too), ``interval`` is a Go duration (a bare number is nanoseconds), unknown and
  duplicate keys are errors;
* the file is re-read as the toolkit re-reads it: users and headers on every request, the TLS
  settings (certificate, key, client CA) on every new connection. Here a ``stat`` of the files
  decides whether to parse again, so an unchanged file costs no parsing. As in the toolkit, whether
  TLS is on, ``http2`` and ``rate_limit`` are fixed at start;
* when a re-read file is broken, requests get 500 and new TLS handshakes fail until it is fixed, as
  with the toolkit; the problem is logged once per change of the file, not once per request.

Python's ssl cannot ask for a client certificate without verifying it, nor take a list of curves;
``_openssl`` reaches those two OpenSSL settings directly. HTTP/2 is not served (aiohttp speaks
HTTP/1.1): ``http2`` is accepted and validated as the toolkit does, and TLS offers HTTP/1.1 by ALPN.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import hashlib
import hmac
import ipaddress
import logging
import os
import re
import secrets
import ssl
import stat
import tempfile
import warnings
from collections import OrderedDict
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, NoReturn, cast

import yaml
from aiohttp import web
from aiohttp.typedefs import Handler, Middleware

from . import _openssl
from ._der import EncryptedKey as _EncryptedKey
from ._der import children as _children
from ._der import no_password as _no_password
from ._der import tlv as _tlv
from ._yamlnode import ConfigError, Node
from .clock import Clock, SystemClock

__all__ = ["BasicAuth", "RateLimiter", "WebConfig", "WebConfigError", "apply_web_config", "load_web_config",
           "validate_web_config"]

log = logging.getLogger(__name__)


class WebConfigError(ConfigError):
    """A bad web config file: one line naming the file, the key path and the reason."""


class _Node(Node):
    """The project's validating ``Node``, failing with a WebConfigError."""

    __slots__ = ()

    def fail(self, reason: str, show: bool = True) -> NoReturn:
        if show and not self.secret:
            raise WebConfigError(self.file, self.path, reason, self.value)
        raise WebConfigError(self.file, self.path, reason)

    def _sub(self, key: str | int, value: Any) -> Node:
        sub = super()._sub(key, value)
        return _Node(sub.value, sub.file, sub.path, sub.secret)


# --- Go's yaml.v2, as the toolkit's typed fields see it ------------------------------------------------

_PLAIN = "!go-plain"  # an untagged plain scalar: what it means depends on the field it fills
_NULLS = {"", "~", "null", "Null", "NULL"}
_TRUE = {"y", "Y", "yes", "Yes", "YES", "true", "True", "TRUE", "on", "On", "ON"}
_FALSE = {"n", "N", "no", "No", "NO", "false", "False", "FALSE", "off", "Off", "OFF"}
_YAML_FLOAT = re.compile(r"[-+]?(\.[0-9]+|[0-9]+(\.[0-9]*)?)([eE][-+]?[0-9]+)?")
_MAX_NODES = 100_000  # alias expansion beyond this is an attack, not a web config


class _GoLoader(yaml.SafeLoader):
    def resolve(self, kind: Any, value: Any, implicit: Any) -> Any:
        if kind is yaml.ScalarNode and implicit[0]:
            return _PLAIN
        return super().resolve(kind, value, implicit)  # type: ignore[no-untyped-call]


@dataclass(frozen=True, slots=True)
class _Scalar:
    text: str
    tag: str  # _PLAIN, or the explicit/quoted tag (quoted scalars are strings)

    def __repr__(self) -> str:
        return repr(self.text)


def _tree(file: str, root: yaml.Node) -> Any:
    """The composed document as dicts, lists and ``_Scalar``; nulls as None; duplicate keys refused."""
    count = 0

    def conv(node: yaml.Node, path: str, stack: tuple[int, ...]) -> Any:
        nonlocal count
        count += 1
        if count > _MAX_NODES or id(node) in stack:
            raise WebConfigError(file, path, "too many or recursive YAML aliases")
        stack = (*stack, id(node))
        if isinstance(node, yaml.ScalarNode):
            if (node.tag == _PLAIN and node.value in _NULLS) or node.tag == "tag:yaml.org,2002:null":
                return None
            return _Scalar(node.value, node.tag)
        if isinstance(node, yaml.SequenceNode):
            return [conv(child, f"{path}[{index}]", stack) for index, child in enumerate(node.value)]
        assert isinstance(node, yaml.MappingNode)
        out: dict[str, Any] = {}
        merged: list[tuple[str, Any]] = []
        for key_node, child in node.value:
            if isinstance(key_node, yaml.ScalarNode) and key_node.tag == _PLAIN and key_node.value == "<<":
                sources = child.value if isinstance(child, yaml.SequenceNode) else [child]
                for src in sources:
                    sub = conv(src, path, stack)
                    if not isinstance(sub, dict):
                        raise WebConfigError(file, path, "a YAML merge (<<) needs a mapping")
                    merged.extend(sub.items())
                continue
            if not isinstance(key_node, yaml.ScalarNode):
                raise WebConfigError(file, path, "a key must be a string, not a list or mapping")
            key = "" if key_node.tag == _PLAIN and key_node.value in _NULLS else key_node.value
            sub_path = f"{path}.{key}" if path else key
            if key in out:
                raise WebConfigError(file, sub_path, "is given twice")
            out[key] = conv(child, sub_path, stack)
        for key, val in merged:
            out.setdefault(key, val)
        return out

    return conv(root, "", ())


def _parse_yaml(file: Path, text: str) -> Any:
    try:
        # yaml.v2 reads the first document of a stream; so does this
        root = next(iter(yaml.compose_all(text, Loader=_GoLoader)), None)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        line = f"line {mark.line + 1}: " if mark is not None else ""
        raise WebConfigError(str(file), "", f"invalid YAML: {line}{getattr(exc, 'problem', None) or 'syntax error'}"
                             ) from None
    return None if root is None else _tree(str(file), root)


def _is_scalar(node: Node) -> _Scalar | None:
    if isinstance(node.value, list | dict):
        node.fail("must be a single value, not a list or mapping", show=False)
    return node.value if isinstance(node.value, _Scalar) else None


def _str(node: Node) -> str:
    """A Go string field: the scalar's source text, whatever YAML would read it as."""
    scalar = _is_scalar(node)
    return "" if scalar is None else scalar.text


def _bool(node: Node) -> bool:
    scalar = _is_scalar(node)
    if scalar is None:
        return False
    if scalar.tag in (_PLAIN, "tag:yaml.org,2002:bool"):
        if scalar.text in _TRUE:
            return True
        if scalar.text in _FALSE:
            return False
    node.fail("must be true or false")


def _go_int(text: str) -> int | None:
    plain = text.replace("_", "")
    match = re.fullmatch(r"([-+]?)(0[xX][0-9a-fA-F]+|0[oO][0-7]+|0[bB][01]+|0[0-7]*|[1-9][0-9]*)", plain)
    if match is None:
        return None
    digits = match.group(2)
    base = 8 if len(digits) > 1 and digits[0] == "0" and digits[1] in "01234567" else 0
    value = int(digits, base)
    return -value if match.group(1) == "-" else value


def _int(node: Node) -> int:
    scalar = _is_scalar(node)
    if scalar is None:
        return 0
    if scalar.tag in (_PLAIN, "tag:yaml.org,2002:int", "tag:yaml.org,2002:float"):
        value = _go_int(scalar.text)
        if value is not None:
            return value
        if _YAML_FLOAT.fullmatch(scalar.text.replace("_", "")):
            return int(float(scalar.text.replace("_", "")))  # yaml.v2 truncates a float into an int field
    node.fail("must be a whole number")


_GO_DURATION = re.compile(r"([0-9]*(?:\.[0-9]*)?)(ns|us|\u00b5s|\u03bcs|ms|s|m|h)")
_GO_UNIT = {"ns": 1e-9, "us": 1e-6, "\u00b5s": 1e-6, "\u03bcs": 1e-6, "ms": 1e-3, "s": 1.0, "m": 60.0, "h": 3600.0}


def _go_duration(text: str) -> float | None:
    """Go's time.ParseDuration (``1h30m``, ``1.5s``, ``300ms``, ``-2s``), in seconds."""
    sign, body = (-1.0, text[1:]) if text[:1] == "-" else (1.0, text[1:] if text[:1] == "+" else text)
    if body == "0":
        return 0.0
    if not body:
        return None
    pos, total = 0, 0.0
    for match in _GO_DURATION.finditer(body):
        if match.start() != pos or match.group(1) in ("", "."):
            return None
        total += float(match.group(1)) * _GO_UNIT[match.group(2)]
        pos = match.end()
    return sign * total if pos == len(body) else None


def _duration(node: Node) -> float:
    """A Go time.Duration field, in seconds: a Go duration string, or a number of nanoseconds."""
    scalar = _is_scalar(node)
    if scalar is None:
        return 0.0
    if scalar.tag == _PLAIN:
        as_int = _go_int(scalar.text)
        if as_int is not None:
            return as_int * 1e-9
        if _YAML_FLOAT.fullmatch(scalar.text.replace("_", "")):
            return int(float(scalar.text.replace("_", ""))) * 1e-9
    seconds = _go_duration(scalar.text)
    if seconds is None:
        node.fail("must be a duration like 1s, 500ms or 1m30s (Go syntax)")
    return seconds


def _strs(node: Node) -> tuple[str, ...] | None:
    """A Go []string field; None when absent or null (Go's nil), () for an explicit empty list."""
    if node.value is None:
        return None
    if not isinstance(node.value, list):
        node.fail("must be a list")
    return tuple(_str(item) for item in node.seq())


def _str_map(node: Node) -> dict[str, Node]:
    return node.mapping()


# --- the toolkit's names -------------------------------------------------------------------------------

#: Go's tls.CipherSuites() (the secure ones, all the toolkit accepts) -> OpenSSL's name; None: TLS 1.3,
#: which Go does not let a config choose (neither does this)
CIPHER_SUITES: dict[str, str | None] = {
    "TLS_AES_128_GCM_SHA256": None,
    "TLS_AES_256_GCM_SHA384": None,
    "TLS_CHACHA20_POLY1305_SHA256": None,
    "TLS_ECDHE_ECDSA_WITH_AES_128_CBC_SHA": "ECDHE-ECDSA-AES128-SHA",
    "TLS_ECDHE_ECDSA_WITH_AES_256_CBC_SHA": "ECDHE-ECDSA-AES256-SHA",
    "TLS_ECDHE_RSA_WITH_AES_128_CBC_SHA": "ECDHE-RSA-AES128-SHA",
    "TLS_ECDHE_RSA_WITH_AES_256_CBC_SHA": "ECDHE-RSA-AES256-SHA",
    "TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256": "ECDHE-ECDSA-AES128-GCM-SHA256",
    "TLS_ECDHE_ECDSA_WITH_AES_256_GCM_SHA384": "ECDHE-ECDSA-AES256-GCM-SHA384",
    "TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256": "ECDHE-RSA-AES128-GCM-SHA256",
    "TLS_ECDHE_RSA_WITH_AES_256_GCM_SHA384": "ECDHE-RSA-AES256-GCM-SHA384",
    "TLS_ECDHE_ECDSA_WITH_CHACHA20_POLY1305_SHA256": "ECDHE-ECDSA-CHACHA20-POLY1305",
    "TLS_ECDHE_RSA_WITH_CHACHA20_POLY1305_SHA256": "ECDHE-RSA-CHACHA20-POLY1305",
}
#: with http2 on, Go's HTTP server refuses a TLS 1.2 suite list without one of these (the toolkit with it)
_HTTP2_REQUIRED = {"TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256", "TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256"}
#: Go's default TLS 1.2 suites are the same ten; OpenSSL's default differs (DHE, no CBC-SHA)
_GO_DEFAULT_CIPHERS = ":".join(suite for suite in CIPHER_SUITES.values() if suite)
#: the toolkit's curve names -> OpenSSL group names
CURVES = {"CurveP256": "P-256", "CurveP384": "P-384", "CurveP521": "P-521", "X25519": "X25519"}
_GO_DEFAULT_GROUPS = ["X25519", "P-256", "P-384", "P-521"]
TLS_VERSIONS = {"TLS10": ssl.TLSVersion.TLSv1, "TLS11": ssl.TLSVersion.TLSv1_1,
                "TLS12": ssl.TLSVersion.TLSv1_2, "TLS13": ssl.TLSVersion.TLSv1_3}
CLIENT_AUTH = {"": "NoClientCert", "NoClientCert": "NoClientCert", "RequestClientCert": "RequestClientCert",
               "RequireAnyClientCert": "RequireAnyClientCert", "RequireClientCert": "RequireAnyClientCert",
               "VerifyClientCertIfGiven": "VerifyClientCertIfGiven",
               "RequireAndVerifyClientCert": "RequireAndVerifyClientCert"}
#: the headers the toolkit lets a config set, and the only values it allows where it restricts them
HEADERS: dict[str, tuple[str, ...]] = {
    "Strict-Transport-Security": (), "X-Content-Type-Options": ("nosniff",),
    "X-Frame-Options": ("deny", "sameorigin"), "X-XSS-Protection": (), "Content-Security-Policy": (),
}


# --- the parsed file -----------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class TLSSettings:
    cert: str = field(default="", repr=False)
    key: str = field(default="", repr=False)
    client_ca: str = field(default="", repr=False)
    cert_file: Path | None = None
    key_file: Path | None = None
    client_auth_type: str = ""
    client_ca_file: Path | None = None
    cipher_suites: tuple[str, ...] = ()
    curve_preferences: tuple[str, ...] = ()
    min_version: ssl.TLSVersion | None = ssl.TLSVersion.TLSv1_2  # None: YAML null, Go's zero (its default)
    max_version: ssl.TLSVersion | None = ssl.TLSVersion.TLSv1_3
    prefer_server_cipher_suites: bool = True
    client_allowed_sans: tuple[str, ...] | None = None

    @property
    def enabled(self) -> bool:
        """As the toolkit: TLS is on once any of these is set; cipher or version keys alone do not."""
        return bool(self.cert_file or self.cert or self.key_file or self.key or self.client_ca_file
                    or self.client_ca or self.client_auth_type)

    def files(self) -> tuple[Path, ...]:
        return tuple(path for path in (self.cert_file, self.key_file, self.client_ca_file) if path is not None)


@dataclass(frozen=True, slots=True)
class WebConfig:
    file: Path
    tls: TLSSettings = TLSSettings()
    http2: bool = True
    headers: tuple[tuple[str, str], ...] = ()
    users: Mapping[str, str] = field(default_factory=dict, repr=False)
    #: seconds between two requests (0: no limiter; negative: Go's rate.Inf, never limits)
    rate_interval: float = 0.0
    rate_burst: int = 0


def _path(base: Path, node: Node) -> Path | None:
    text = _str(node)
    if not text:
        return None
    path = Path(text)
    return path if path.is_absolute() else base / path


def _tls_settings(base: Path, node: Node) -> TLSSettings:
    fields = node.mapping(["cert", "key", "client_ca", "cert_file", "key_file", "client_auth_type", "client_ca_file",
                   "cipher_suites", "curve_preferences", "min_version", "max_version",
                   "prefer_server_cipher_suites", "client_allowed_sans"])
    key_node = fields.get("key")
    if key_node is not None:
        key_node.secret = True  # an inline private key is never echoed in an error
    suites = _strs(fields["cipher_suites"]) if "cipher_suites" in fields else None
    for index, name in enumerate(suites or ()):
        if name not in CIPHER_SUITES:
            _Node(name, node.file, f"{node.path}.cipher_suites[{index}]").fail(
                f"unknown cipher suite (Go names as in crypto/tls, e.g. TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256; "
                f"known: {', '.join(CIPHER_SUITES)})")
    curves = _strs(fields["curve_preferences"]) if "curve_preferences" in fields else None
    for index, name in enumerate(curves or ()):
        if name not in CURVES:
            _Node(name, node.file, f"{node.path}.curve_preferences[{index}]").fail(
                f"unknown curve (one of {', '.join(CURVES)})")
    versions: dict[str, ssl.TLSVersion | None] = {}
    for key, default in (("min_version", ssl.TLSVersion.TLSv1_2), ("max_version", ssl.TLSVersion.TLSv1_3)):
        if key not in fields:
            versions[key] = default
        elif fields[key].value is None:
            versions[key] = None
        else:
            name = _str(fields[key])
            if name not in TLS_VERSIONS:
                fields[key].fail(f"unknown TLS version (one of {', '.join(TLS_VERSIONS)})")
            versions[key] = TLS_VERSIONS[name]
    return TLSSettings(
        cert=_str(fields["cert"]) if "cert" in fields else "",
        key=_str(key_node) if key_node is not None else "",
        client_ca=_str(fields["client_ca"]) if "client_ca" in fields else "",
        cert_file=_path(base, fields["cert_file"]) if "cert_file" in fields else None,
        key_file=_path(base, fields["key_file"]) if "key_file" in fields else None,
        client_auth_type=_str(fields["client_auth_type"]) if "client_auth_type" in fields else "",
        client_ca_file=_path(base, fields["client_ca_file"]) if "client_ca_file" in fields else None,
        cipher_suites=tuple(suites or ()),
        curve_preferences=tuple(curves or ()),
        min_version=versions["min_version"], max_version=versions["max_version"],
        prefer_server_cipher_suites=_bool(fields["prefer_server_cipher_suites"])
        if "prefer_server_cipher_suites" in fields else True,
        client_allowed_sans=_strs(fields["client_allowed_sans"]) if "client_allowed_sans" in fields else None,
    )


def _headers(node: Node) -> tuple[tuple[str, str], ...]:
    out: list[tuple[str, str]] = []
    for name, val in _str_map(node).items():
        if name not in HEADERS:
            val.fail(f"this header can not be configured (exporter-toolkit allows {', '.join(HEADERS)})",
                     show=False)
        # Go's HTTP server sends a value's line breaks as spaces and trims it; a header is one line
        text = " ".join(_str(val).replace("\r", "\n").split("\n")).strip(" \t")
        allowed = HEADERS[name]
        if allowed and text not in allowed:
            val.fail(f"must be one of {', '.join(allowed)}")
        if text:  # "unset if blank"
            out.append((name, text))
    return tuple(out)


def parse_web_config(path: Path, text: str) -> WebConfig:
    """The toolkit's getConfig: the file's structure, names and headers; files are not opened."""
    tree = _parse_yaml(path, text)
    root = _Node(tree, str(path), "")
    if isinstance(root.value, _Scalar | list):
        root.fail("must be a mapping of tls_server_config, http_server_config, basic_auth_users, rate_limit",
                  show=False)
    top = root.mapping(["tls_server_config", "http_server_config", "basic_auth_users", "rate_limit"])
    base = path.parent
    tls = _tls_settings(base, top["tls_server_config"]) if "tls_server_config" in top else TLSSettings()
    http2, headers = True, cast(tuple[tuple[str, str], ...], ())
    if "http_server_config" in top:
        hm = top["http_server_config"].mapping(["http2", "headers"])
        http2 = _bool(hm["http2"]) if "http2" in hm else True
        headers = _headers(hm["headers"]) if "headers" in hm else ()
    users: dict[str, str] = {}
    if "basic_auth_users" in top:
        for user, hashed in _str_map(top["basic_auth_users"]).items():
            hashed.secret = True
            users[user] = _str(hashed)
    interval, burst = 0.0, 0
    if "rate_limit" in top:
        rm = top["rate_limit"].mapping(["interval", "burst"])
        interval = _duration(rm["interval"]) if "interval" in rm else 0.0
        burst = _int(rm["burst"]) if "burst" in rm else 0
    return WebConfig(path, tls, http2, headers, users, interval, burst)


def _read(path: Path) -> str:
    try:
        return path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise WebConfigError(str(path), "", "file not found") from None
    except IsADirectoryError:
        raise WebConfigError(str(path), "", "is a directory, not a file") from None
    except (OSError, UnicodeDecodeError) as exc:
        reason = getattr(exc, "strerror", None) or exc.__class__.__name__
        raise WebConfigError(str(path), "", f"cannot read: {reason}") from None


def load_web_config(path: Path) -> WebConfig:
    return parse_web_config(path, _read(path))


# --- bcrypt, as Go's golang.org/x/crypto/bcrypt reads a hash --------------------------------------------


def _bcrypt_parts(hashed: str) -> tuple[int, bytes] | str:
    """(cost, canonical ``$2b$`` hash for Python's bcrypt), or why Go's bcrypt.Cost refuses it."""
    raw = hashed.encode("utf-8", "surrogateescape")
    if len(raw) < 59:
        return "is too short to be a bcrypt hash"
    if raw[0:1] != b"$":
        return "must start with '$' (a bcrypt hash, $2y$...)"
    if raw[1] > ord("2"):
        return "is a newer bcrypt version than supported"
    rest = raw[3:] if raw[2:3] == b"$" else raw[4:]
    cost_text = rest[:2].decode("ascii", "replace")
    if not re.fullmatch(r"[-+]?[0-9]+", cost_text) or not 4 <= int(cost_text) <= 31:
        return "has a bcrypt cost outside 4..31"
    salt_and_hash = rest[3:]
    return int(cost_text), b"$2b$%02d$" % int(cost_text) + salt_and_hash[:53]


def _validate_users(cfg: WebConfig) -> None:
    for user, hashed in cfg.users.items():
        parts = _bcrypt_parts(hashed)
        if isinstance(parts, str):
            # the value is a secret of its own (or a password given by mistake): never echoed
            raise WebConfigError(str(cfg.file), f"basic_auth_users.{user}",
                                 f"{parts}; make one with htpasswd -nBC 10 \"\" | tr -d ':\\n'")


class BasicAuth:
    """``Authorization: Basic`` checked against bcrypt hashes, with the toolkit's cache and lock.

    As in the toolkit, each answer (right or wrong) for a (user, hash, password) is remembered, so a
    scrape every 15 s or a client retrying the same wrong password costs no bcrypt; bcrypt itself runs
    one at a time, off the event loop, so a flood of new wrong passwords keeps at most one core busy.
    Unlike the toolkit, right and wrong answers are kept apart, so that flood cannot evict the
    scraper's entry. Keys are salted digests: no password is kept. An unknown user pays a bcrypt check
    against a dummy hash, so timing does not reveal user names.
    """

    _CACHE = 100

    def __init__(self, checkpw: Callable[[bytes, bytes], bool] | None = None) -> None:
        if checkpw is None:
            import bcrypt

            checkpw = bcrypt.checkpw
        self._checkpw = checkpw
        self._salt = secrets.token_bytes(32)
        self._ok: OrderedDict[bytes, None] = OrderedDict()
        self._bad: OrderedDict[bytes, None] = OrderedDict()
        self._lock = asyncio.Lock()
        self._dummy: bytes | None = None

    @staticmethod
    def credentials(header: str) -> tuple[bytes, bytes] | None:
        """Go's Request.BasicAuth: "Basic " (any case), standard base64, user and password split at ':'."""
        if len(header) < 6 or header[:6].lower() != "basic ":
            return None
        try:
            raw = base64.b64decode(header[6:], validate=True)
        except (binascii.Error, ValueError):
            return None
        user, sep, password = raw.partition(b":")
        return (user, password) if sep else None

    def _key(self, user: bytes, hashed: bytes, password: bytes) -> bytes:
        msg = b"".join(len(part).to_bytes(4, "big") + part for part in (user, hashed, password))
        return hmac.new(self._salt, msg, hashlib.sha256).digest()

    async def check(self, users: Mapping[str, str], header: str) -> bool:
        creds = self.credentials(header)
        if creds is None:
            return False
        user, password = creds
        try:
            name = user.decode("utf-8")
        except UnicodeDecodeError:
            name = None
        hashed = users.get(name) if name is not None else None
        parts = _bcrypt_parts(hashed) if hashed is not None else None
        valid = isinstance(parts, tuple)
        if isinstance(parts, tuple):
            target = parts[1]
        else:
            if self._dummy is None:
                import bcrypt

                self._dummy = await asyncio.to_thread(bcrypt.hashpw, secrets.token_bytes(16), bcrypt.gensalt(10))
            target = self._dummy
        key = self._key(user, target, password)
        if key in self._ok:
            self._ok.move_to_end(key)
            return valid
        if key in self._bad:
            return False
        async with self._lock:
            if key in self._ok:  # a request with the same credentials got here first
                return valid
            if key in self._bad:
                return False
            good = valid and await asyncio.to_thread(self._verify, password, target)
            if not valid:
                await asyncio.to_thread(self._verify, password, target)  # the same cost as a real check
            cache = self._ok if good else self._bad
            cache[key] = None
            if len(cache) > self._CACHE:
                cache.popitem(last=False)
        return good

    def _verify(self, password: bytes, hashed: bytes) -> bool:
        try:
            # Go's bcrypt uses the first 72 bytes of a longer password; Python's refuses it whole
            return bool(self._checkpw(password[:72], hashed))
        except ValueError:
            return False


# --- rate limit: Go's rate.NewLimiter(rate.Every(interval), burst) -----------------------------------


class RateLimiter:
    """A token bucket: ``burst`` requests at once, then one more every ``interval`` seconds. As in Go, a
    burst of 0 refuses everything and a negative interval never limits. One bucket for all clients."""

    def __init__(self, interval: float, burst: int, clock: Clock) -> None:
        self._rate = None if interval < 0 else 1.0 / interval
        self._burst = burst
        self._tokens = float(burst)
        self._clock = clock
        self._last = clock.monotonic()

    def allow(self) -> bool:
        if self._rate is None:
            return True
        now = self._clock.monotonic()
        self._tokens = min(float(self._burst), self._tokens + max(0.0, now - self._last) * self._rate)
        self._last = now
        if self._tokens >= 1.0:
            self._tokens -= 1.0
            return True
        return False


# --- TLS: the toolkit's ConfigToTLSConfig -------------------------------------------------------------


class _CheckedSSLObject(ssl.SSLObject):
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


class _ServerContext(ssl.SSLContext):
    sslobject_class = _CheckedSSLObject
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
    """A certificate's SANs as Go's x509 spells them: DNS names, e-mail addresses, IPs, URIs."""
    out: list[str] = []
    try:
        _, start, end = _tlv(der, 0)
        _, start, end = _tlv(der, start)  # tbsCertificate
        for tag, cs, _ce in _children(der, start, end):
            if tag != 0xA3:  # [3] extensions
                continue
            _, xs, xe = _tlv(der, cs)
            for _, es, ee in _children(der, xs, xe):
                parts = list(_children(der, es, ee))
                if der[parts[0][1]:parts[0][2]] != b"\x55\x1d\x11":  # subjectAltName
                    continue
                _, gs, ge = _tlv(der, parts[-1][1])
                for name_tag, vs, ve in _children(der, gs, ge):
                    value = der[vs:ve]
                    if name_tag in (0x81, 0x82, 0x86):  # rfc822Name, dNSName, URI
                        out.append(value.decode("ascii", "replace"))
                    elif name_tag == 0x87 and len(value) in (4, 16):
                        ip = ipaddress.ip_address(value)
                        mapped = getattr(ip, "ipv4_mapped", None)
                        out.append(str(mapped or ip))  # Go prints ::ffff:a.b.c.d as a.b.c.d
    except (IndexError, ValueError):
        return out
    return out


_PEM_CERT = re.compile(rb"-----BEGIN CERTIFICATE-----\r?\n.*?-----END CERTIFICATE-----", re.S)


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
        return path.read_bytes()
    except OSError as exc:
        raise WebConfigError(file, key, f"cannot read {path}: {exc.strerror or exc.__class__.__name__}") from None
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
    if not _PEM_CERT.search(cert):
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
    for block in _PEM_CERT.findall(data):
        try:
            ctx.load_verify_locations(cadata=block.decode("ascii"))
            loaded += 1
        except (ssl.SSLError, ValueError, UnicodeDecodeError):
            continue
    return loaded


def build_tls_context(cfg: WebConfig) -> _ServerContext:
    """The server TLS context for ``cfg`` (which must have TLS enabled), or a WebConfigError."""
    tls, file, base = cfg.tls, str(cfg.file), "tls_server_config"
    ctx = _ServerContext(ssl.PROTOCOL_TLS_SERVER)
    _load_pair(cfg, ctx)
    mode = CLIENT_AUTH.get(tls.client_auth_type)
    if mode is None:
        raise WebConfigError(file, f"{base}.client_auth_type", f"invalid ClientAuth: must be one of "
                             f"{', '.join(auth_name for auth_name in CLIENT_AUTH if auth_name)}", tls.client_auth_type)
    has_ca = bool(tls.client_ca_file or tls.client_ca)
    if has_ca and mode == "NoClientCert":
        raise WebConfigError(file, f"{base}.client_auth_type", "a client CA is configured without a client auth "
                             "policy: set client_auth_type (RequireAndVerifyClientCert to check client certificates)")
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
    ciphers = ":".join(tls12) if tls12 else _GO_DEFAULT_CIPHERS
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
    groups = [CURVES[curve] for curve in tls.curve_preferences]
    if len(groups) == 1:
        ctx.set_ecdh_curve({"P-256": "prime256v1", "P-384": "secp384r1", "P-521": "secp521r1"}.get(
            groups[0], groups[0]))
    elif groups and not _openssl.set_groups(ctx, groups):
        raise WebConfigError(file, f"{base}.curve_preferences", "more than one curve needs OpenSSL's group list, "
                             "which this Python build does not expose; list one curve")
    elif not groups:
        _openssl.set_groups(ctx, _GO_DEFAULT_GROUPS)  # Go's defaults where possible; else OpenSSL's
    if mode == "NoClientCert":
        ctx.verify_mode = ssl.CERT_NONE
    elif mode in ("RequestClientCert", "RequireAnyClientCert"):
        ctx.verify_mode = ssl.CERT_OPTIONAL if mode == "RequestClientCert" else ssl.CERT_REQUIRED
        if not _openssl.accept_any_client_certificate(ctx):
            raise WebConfigError(file, f"{base}.client_auth_type", f"{tls.client_auth_type} (a client certificate "
                                 "taken unverified) needs an OpenSSL callback this Python build does not expose; "
                                 "use RequireAndVerifyClientCert with client_ca_file")
    else:
        ctx.verify_mode = ssl.CERT_OPTIONAL if mode == "VerifyClientCertIfGiven" else ssl.CERT_REQUIRED
        if has_ca:
            if _load_client_cas(cfg, ctx) == 0:
                log.warning("%s: tls_server_config.%s holds no usable PEM certificate: no client certificate "
                            "will verify", file, "client_ca_file" if tls.client_ca_file else "client_ca")
        else:
            ctx.load_default_certs(ssl.Purpose.CLIENT_AUTH)  # Go verifies against the system's roots then
    if tls.client_allowed_sans is not None:
        ctx.allowed_sans = frozenset(tls.client_allowed_sans)
    ctx.set_alpn_protocols(["http/1.1"])  # HTTP/2 is not served; clients offering h2 fall back
    return ctx


def _startup_checks(cfg: WebConfig) -> None:
    """What Go's HTTP server refuses at ServeTLS: http2 with a TLS 1.2 suite list lacking its required one."""
    tls = cfg.tls
    lo = tls.min_version or 0
    if cfg.http2 and tls.cipher_suites and lo < ssl.TLSVersion.TLSv1_3 and not _HTTP2_REQUIRED & set(tls.cipher_suites):
        raise WebConfigError(str(cfg.file), "tls_server_config.cipher_suites",
                             "with http2 on (the default) the list needs TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256 or "
                             "TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256, as Go's HTTP server requires; add one or set "
                             "http_server_config.http2: false")


# --- re-reading the file ------------------------------------------------------------------------------


def _signature(paths: tuple[Path, ...]) -> tuple[Any, ...]:
    out: list[Any] = []
    for path in paths:
        try:
            st = os.stat(path)
        except (OSError, ValueError) as exc:
            out.append((str(path), getattr(exc, "errno", None)))
            continue
        out.append((st.st_dev, st.st_ino, st.st_size, st.st_mtime_ns, st.st_ctime_ns, stat.S_IFMT(st.st_mode)))
    return tuple(out)


class _Watcher:
    """The web config as of now: parsed again only when a ``stat`` says a file changed."""

    def __init__(self, path: Path, first: WebConfig) -> None:
        self.path = path
        self._sig = _signature((path,))
        self._cfg: WebConfig | WebConfigError = first
        self._tls_sig: tuple[Any, ...] | None = None
        self._tls: _ServerContext | None = None
        self._tls_error: str | None = None

    def config(self) -> WebConfig | WebConfigError:
        sig = _signature((self.path,))
        if sig != self._sig:
            self._sig = sig
            try:
                self._cfg = load_web_config(self.path)
                log.info("web config %s re-read", self.path)
            except WebConfigError as exc:
                self._cfg = exc
                log.error("%s (requests get 500 until it is fixed)", exc)
        return self._cfg

    def tls(self) -> _ServerContext:
        cfg = self.config()
        files = cfg.tls.files() if isinstance(cfg, WebConfig) else ()
        sig = (self._sig, _signature(files))
        if sig == self._tls_sig and self._tls is not None:
            return self._tls
        self._tls_sig = sig
        error: str | None = None
        if isinstance(cfg, WebConfigError):
            error = str(cfg)
        elif not cfg.tls.enabled:
            error = f"{self.path}: tls_server_config: TLS was on at start and is now missing"
        else:
            try:
                self._tls = build_tls_context(cfg)
            except WebConfigError as exc:
                error = str(exc)
        if error is not None:
            refusing = _ServerContext(ssl.PROTOCOL_TLS_SERVER)
            refusing.refusal = "web config is broken"
            self._tls = refusing
            if error != self._tls_error:
                log.error("%s (new TLS connections are refused until it is fixed)", error)
        self._tls_error = error
        assert self._tls is not None
        return self._tls


class _ReloadingContext(ssl.SSLContext):
    """Handed to the listening socket; each new connection gets the context of the file as it is now
    (Go's GetConfigForClient), so a renewed certificate is served without a restart."""

    _watcher: _Watcher

    def wrap_bio(self, incoming: ssl.MemoryBIO, outgoing: ssl.MemoryBIO, server_side: bool = False,
                 server_hostname: str | bytes | None = None, session: ssl.SSLSession | None = None) -> ssl.SSLObject:
        return self._watcher.tls().wrap_bio(incoming, outgoing, server_side=server_side,
                                             server_hostname=server_hostname, session=session)


# --- wiring -------------------------------------------------------------------------------------------

_HEADERS_KEY = web.RequestKey("webconfig_headers", tuple)


def _middleware(watcher: _Watcher, auth: BasicAuth, limiter: RateLimiter | None) -> Middleware:
    @web.middleware
    async def web_config(request: web.Request, handler: Handler) -> web.StreamResponse:
        # the toolkit's order: config (500), rate limit (429), headers, basic auth (401), the endpoint
        cfg = watcher.config()
        if isinstance(cfg, WebConfigError):
            return web.Response(status=500, text="Internal Server Error\n")
        if limiter is not None and not limiter.allow():
            return web.Response(status=429, text="Too Many Requests\n")
        request[_HEADERS_KEY] = cfg.headers
        if cfg.users and not await auth.check(cfg.users, request.headers.get("Authorization", "")):
            return web.Response(status=401, text="Unauthorized\n", headers={"WWW-Authenticate": "Basic"})
        return await handler(request)

    return web_config


async def _add_headers(request: web.Request, response: web.StreamResponse) -> None:
    # set before the endpoint in Go, so an endpoint's own value (the pages' CSP) wins
    for name, value in request.get(_HEADERS_KEY, ()):
        response.headers.setdefault(name, value)


def validate_web_config(path: Path) -> WebConfig:
    """The toolkit's Validate: the file, its users' hashes and (when TLS is on) its certificates."""
    cfg = load_web_config(path)
    _validate_users(cfg)
    if cfg.tls.enabled:
        _startup_checks(cfg)
        build_tls_context(cfg)
    return cfg


def apply_web_config(app: web.Application, path: Path, clock: Clock | None = None) -> ssl.SSLContext | None:
    """Validate the file, put the toolkit's checks in front of every endpoint, and return the TLS
    context to listen with (None: plain HTTP, as the toolkit when the file turns no TLS on)."""
    cfg = validate_web_config(path)
    if not cfg.tls.enabled and cfg.tls != TLSSettings():
        log.warning("%s: tls_server_config sets no certificate, key, client CA or client_auth_type: serving "
                    "plain HTTP, as exporter-toolkit does", path)
    limiter = None
    if cfg.rate_interval != 0:
        if cfg.rate_burst <= 0 and cfg.rate_interval > 0:
            log.warning("%s: rate_limit.burst is %d: every request is refused with 429, as exporter-toolkit "
                        "does", path, cfg.rate_burst)
        limiter = RateLimiter(cfg.rate_interval, cfg.rate_burst, clock or SystemClock())
    watcher = _Watcher(path, cfg)
    app.middlewares.insert(0, _middleware(watcher, BasicAuth(), limiter))
    app.on_response_prepare.append(_add_headers)
    if not cfg.tls.enabled:
        return None
    outer = _ReloadingContext(ssl.PROTOCOL_TLS_SERVER)
    outer._watcher = watcher
    watcher.tls()  # built now, so the first connection does not pay for it
    return outer
