"""The web config file (``--web.config.file``): its keys, their types and the checks made when it is
read, as exporter-toolkit's getConfig makes them
(https://github.com/prometheus/exporter-toolkit/blob/master/docs/web-configuration.md). Files it names
(certificates, keys) are not opened here: that is the TLS context's job (``tls.py``).

What Python's ``ssl`` cannot make, and ``RequireAndVerifyClientCert`` without a client CA, are refused
where the toolkit checks client auth, when the TLS context is made (tls.py).
"""

from __future__ import annotations

import ssl
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import cast

from .._yamlnode import FileReadError, Node, decode_utf8, read_regular_file
from ..httpconfig import TLS_VERSIONS  # Prometheus' names, one table for both sides
from .goyaml import GoNode, Scalar, WebConfigError, as_bool, as_duration, as_int, as_str, as_strs, parse_yaml

__all__ = ["CIPHER_SUITES", "CLIENT_AUTH", "CURVES", "HEADERS", "TLS_VERSIONS", "WEB_CONFIG_LIMIT", "TLSSettings",
           "WebConfig", "load_web_config", "parse_web_config", "read_web_config"]

#: a web config holds a few users and perhaps inline PEM: anything larger is a mistake (or an attack)
WEB_CONFIG_LIMIT = 1 << 20

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
HTTP2_REQUIRED = {"TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256", "TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256"}
#: Go's default TLS 1.2 suites are the same ten; OpenSSL's default differs (DHE, no CBC-SHA)
GO_DEFAULT_CIPHERS = ":".join(suite for suite in CIPHER_SUITES.values() if suite)
#: the toolkit's curve names -> the names Python's ``set_ecdh_curve`` takes (OpenSSL's)
CURVES = {"CurveP256": "prime256v1", "CurveP384": "secp384r1", "CurveP521": "secp521r1", "X25519": "X25519"}
CLIENT_AUTH = {"": "NoClientCert", "NoClientCert": "NoClientCert", "RequestClientCert": "RequestClientCert",
               "RequireAnyClientCert": "RequireAnyClientCert", "RequireClientCert": "RequireAnyClientCert",
               "VerifyClientCertIfGiven": "VerifyClientCertIfGiven",
               "RequireAndVerifyClientCert": "RequireAndVerifyClientCert"}
#: the headers the toolkit lets a config set, and the only values it allows where it restricts them
HEADERS: dict[str, tuple[str, ...]] = {
    "Strict-Transport-Security": (), "X-Content-Type-Options": ("nosniff",),
    "X-Frame-Options": ("deny", "sameorigin"), "X-XSS-Protection": (), "Content-Security-Policy": (),
}



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
    text = as_str(node)
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
    suites = as_strs(fields["cipher_suites"]) if "cipher_suites" in fields else None
    for index, name in enumerate(suites or ()):
        if name not in CIPHER_SUITES:
            GoNode(name, node.file, f"{node.path}.cipher_suites[{index}]").fail(
                f"unknown cipher suite (Go names as in crypto/tls, e.g. TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256; "
                f"known: {', '.join(CIPHER_SUITES)})")
    curves = as_strs(fields["curve_preferences"]) if "curve_preferences" in fields else None
    for index, name in enumerate(curves or ()):
        if name not in CURVES:
            GoNode(name, node.file, f"{node.path}.curve_preferences[{index}]").fail(
                f"unknown curve (one of {', '.join(CURVES)})")
    versions: dict[str, ssl.TLSVersion | None] = {}
    for key, default in (("min_version", ssl.TLSVersion.TLSv1_2), ("max_version", ssl.TLSVersion.TLSv1_3)):
        if key not in fields:
            versions[key] = default
        elif fields[key].value is None:
            versions[key] = None
        else:
            name = as_str(fields[key])
            if name not in TLS_VERSIONS:
                fields[key].fail(f"unknown TLS version (one of {', '.join(TLS_VERSIONS)})")
            versions[key] = TLS_VERSIONS[name]
    settings = TLSSettings(
        cert=as_str(fields["cert"]) if "cert" in fields else "",
        key=as_str(key_node) if key_node is not None else "",
        client_ca=as_str(fields["client_ca"]) if "client_ca" in fields else "",
        cert_file=_path(base, fields["cert_file"]) if "cert_file" in fields else None,
        key_file=_path(base, fields["key_file"]) if "key_file" in fields else None,
        client_auth_type=as_str(fields["client_auth_type"]) if "client_auth_type" in fields else "",
        client_ca_file=_path(base, fields["client_ca_file"]) if "client_ca_file" in fields else None,
        cipher_suites=tuple(suites or ()),
        curve_preferences=tuple(curves or ()),
        min_version=versions["min_version"], max_version=versions["max_version"],
        prefer_server_cipher_suites=as_bool(fields["prefer_server_cipher_suites"])
        if "prefer_server_cipher_suites" in fields else True,
        client_allowed_sans=as_strs(fields["client_allowed_sans"]) if "client_allowed_sans" in fields else None,
    )
    return settings


def _headers(node: Node) -> tuple[tuple[str, str], ...]:
    out: list[tuple[str, str]] = []
    for name, val in node.mapping().items():
        if name not in HEADERS:
            val.fail(f"this header can not be configured (exporter-toolkit allows {', '.join(HEADERS)})",
                     show=False)
        # Go's HTTP server sends a value's line breaks as spaces and trims it; a header is one line
        text = " ".join(as_str(val).replace("\r", "\n").split("\n")).strip(" \t")
        allowed = HEADERS[name]
        if allowed and text not in allowed:
            val.fail(f"must be one of {', '.join(allowed)}")
        if text:  # "unset if blank"
            out.append((name, text))
    return tuple(out)


def parse_web_config(path: Path, text: str, allow_empty: bool = True) -> WebConfig:
    """The toolkit's getConfig: the file's structure, names and headers; files are not opened.
    ``allow_empty=False`` (a re-read): a file that parses to nothing is an error, not "no settings"."""
    tree = parse_yaml(path, text)
    if tree is None and not allow_empty:
        raise WebConfigError(str(path), "", "parses to nothing (empty, or only comments): a file being rewritten "
                             "in place? Write {} to turn every setting off")
    root = GoNode(tree, str(path), "")
    if isinstance(root.value, Scalar | list):
        root.fail("must be a mapping of tls_server_config, http_server_config, basic_auth_users, rate_limit",
                  show=False)
    top = root.mapping(["tls_server_config", "http_server_config", "basic_auth_users", "rate_limit"])
    base = path.parent
    tls = _tls_settings(base, top["tls_server_config"]) if "tls_server_config" in top else TLSSettings()
    http2, headers = True, cast(tuple[tuple[str, str], ...], ())
    if "http_server_config" in top:
        hm = top["http_server_config"].mapping(["http2", "headers"])
        http2 = as_bool(hm["http2"]) if "http2" in hm else True
        headers = _headers(hm["headers"]) if "headers" in hm else ()
    users: dict[str, str] = {}
    if "basic_auth_users" in top:
        for user, hashed in top["basic_auth_users"].mapping().items():
            hashed.secret = True
            users[user] = as_str(hashed)
    interval, burst = 0.0, 0
    if "rate_limit" in top:
        rm = top["rate_limit"].mapping(["interval", "burst"])
        interval = as_duration(rm["interval"]) if "interval" in rm else 0.0
        burst = as_int(rm["burst"]) if "burst" in rm else 0
    return WebConfig(path, tls, http2, headers, users, interval, burst)


def read_web_config(path: Path) -> str:
    """The file's text, read as the main config is read (``read_regular_file``): a regular file only
    (a FIFO or a device is refused from its ``stat``, before any open that could block), at most
    WEB_CONFIG_LIMIT bytes, within the read timeout, strict UTF-8."""
    try:
        return decode_utf8(read_regular_file(path, WEB_CONFIG_LIMIT))
    except FileReadError as exc:
        if not path.exists() and not path.is_symlink():
            raise WebConfigError(str(path), "", "file not found") from None
        raise WebConfigError(str(path), "", f"cannot read: {exc}") from None
    except ValueError:  # a NUL in the path
        raise WebConfigError(str(path), "", "is not a valid path") from None


def load_web_config(path: Path, allow_empty: bool = True) -> WebConfig:
    """Read and parse the file. Blocking (up to the read timeout): off the event loop once serving."""
    return parse_web_config(path, read_web_config(path), allow_empty)
