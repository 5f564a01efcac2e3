"""The ``http_client`` block: how a target's requests leave the machine (proxy, TLS client settings).

The key names are Prometheus' own HTTP client ones, so that a user who configured a scrape job
recognises them. Everything is checked while the config loads: the files are read and the TLS
context is built once then, so a broken certificate is a one-line error at load or reload, never a
failed probe hours later. The records are frozen and hashable: targets with equal settings share
one HTTP session (see egress.py), and a target without the block keeps the exporter's shared one.

stdlib only (plus the config node): the aiohttp side lives in egress.py.
"""

from __future__ import annotations

import base64
import calendar
import hashlib
import ipaddress
import logging
import re
import ssl
import warnings
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path
from urllib.parse import quote, unquote, urlsplit

from ._der import EncryptedKey as _EncryptedKey
from ._der import no_password as _no_password
from ._der import tlv as _tlv
from ._yamlnode import Node
from .model import Expanded

__all__ = ["TLS_VERSIONS", "HttpClient", "Proxy", "TLSConfig", "bypasses_proxy", "cert_not_after",
           "client_secrets", "needs_context", "parse_http_client", "ssl_context", "target_http_client"]

log = logging.getLogger("exporter.config")

#: Prometheus' names for the TLS versions
TLS_VERSIONS: Mapping[str, ssl.TLSVersion] = {
    "TLS10": ssl.TLSVersion.TLSv1, "TLS11": ssl.TLSVersion.TLSv1_1,
    "TLS12": ssl.TLSVersion.TLSv1_2, "TLS13": ssl.TLSVersion.TLSv1_3,
}
_KEYS = ("proxy_url", "no_proxy", "proxy_from_environment", "proxy_connect_header", "tls_config")
_TLS_KEYS = ("ca_file", "cert_file", "key_file", "server_name", "insecure_skip_verify", "min_version")
#: a CA bundle is a few hundred KB; anything far larger is a wrong path
_MAX_PEM = 16 << 20
_HEADER_NAME = r"[!#$%&'*+.^_`|~0-9A-Za-z-]{1,128}"
_HOST = r"[A-Za-z0-9]([A-Za-z0-9-]{0,62}[A-Za-z0-9])?(\.[A-Za-z0-9]([A-Za-z0-9-]{0,62}[A-Za-z0-9])?)*\.?"


@dataclass(frozen=True, slots=True)
class Proxy:
    """One forward proxy. ``url`` carries no userinfo: the password is kept apart, out of every repr."""

    url: str
    username: str = ""
    password: str = field(default="", repr=False)

    @property
    def authorization(self) -> str | None:
        """The ``Proxy-Authorization`` value, when the URL had userinfo."""
        if not self.username and not self.password:
            return None
        return "Basic " + base64.b64encode(f"{self.username}:{self.password}".encode()).decode()

    @property
    def address(self) -> tuple[str, int]:
        parts = urlsplit(self.url)
        return parts.hostname or "", parts.port or (443 if parts.scheme == "https" else 80)

    @property
    def shown(self) -> str:
        """For pages: the URL with the user name and never the password."""
        if not self.username:
            return self.url
        scheme, rest = self.url.split("://", 1)
        return f"{scheme}://{self.username}@{rest}"


@dataclass(frozen=True, slots=True)
class TLSConfig:
    ca_file: str | None = None
    cert_file: str | None = None
    key_file: str | None = None
    server_name: str | None = None
    insecure_skip_verify: bool = False
    min_version: str | None = None
    #: digest of the files' contents at load: a reload after a certificate rotation gets a new session
    fingerprint: str = ""
    #: the client context, built while the config loads (in the loader's thread, never on the event
    #: loop); None when the settings need none of their own (the system's default verification)
    context: ssl.SSLContext | None = field(default=None, compare=False, repr=False)


@dataclass(frozen=True, slots=True)
class HttpClient:
    """A target's egress settings, after merging the global block and the target's own."""

    #: proxy for http:// and for https:// vendor URLs (the same one unless taken from the environment)
    http_proxy: Proxy | None = None
    https_proxy: Proxy | None = None
    no_proxy: tuple[str, ...] = ()
    proxy_from_environment: bool = False
    #: headers sent to the proxy with CONNECT (values may be secrets, hence out of the repr)
    proxy_connect_header: tuple[tuple[str, tuple[str, ...]], ...] = field(default=(), repr=False)
    tls: TLSConfig = TLSConfig()

    def proxy_for(self, scheme: str, host: str, port: int | None) -> Proxy | None:
        proxy = self.https_proxy if scheme == "https" else self.http_proxy
        if proxy is None or bypasses_proxy(self.no_proxy, host, port):
            return None
        return proxy


def client_secrets(client: HttpClient | None) -> tuple[str, ...]:
    """What must never be shown: proxy passwords in every form they travel in, CONNECT header values."""
    if client is None:
        return ()
    out: list[str] = []
    for proxy in (client.http_proxy, client.https_proxy):
        if proxy is not None and proxy.password:
            auth = proxy.authorization or ""
            out += [proxy.password, quote(proxy.password, safe=""), auth, auth.removeprefix("Basic ")]
    out += [value for _, values in client.proxy_connect_header for value in values]
    return tuple(dict.fromkeys(out))


# --- no_proxy ----------------------------------------------------------------------------------


def bypasses_proxy(rules: tuple[str, ...], host: str, port: int | None) -> bool:
    """Whether ``host`` is reached directly. A rule is ``*``, an IP address, a CIDR range, or a domain
    (``example.com`` and ``.example.com`` both match it and its subdomains), each optionally with
    ``:port``."""
    host = host.lower().rstrip(".").strip("[]")
    try:
        ip: ipaddress.IPv4Address | ipaddress.IPv6Address | None = ipaddress.ip_address(host)
    except ValueError:
        ip = None
    for rule in rules:
        if rule == "*":
            return True
        name, rule_port = _split_port(rule)
        if rule_port is not None and rule_port != port:
            continue
        if "/" in name:
            if ip is not None and ip in ipaddress.ip_network(name, strict=False):
                return True
            continue
        name = name.lstrip(".")
        if host == name or host.endswith("." + name):
            return True
    return False


def _split_port(rule: str) -> tuple[str, int | None]:
    if rule.startswith("["):  # [::1]:8080
        addr, _, rest = rule[1:].partition("]")
        return addr, int(rest[1:]) if rest.startswith(":") and rest[1:].isdigit() else None
    if rule.count(":") == 1:
        name, _, port = rule.partition(":")
        if port.isdigit():
            return name, int(port)
    return rule, None


def _no_proxy(text: str, node: Node, what: str) -> tuple[str, ...]:
    rules = []
    # from ${VAR}: the rule is named by its place, and the error says where the value came from
    hidden = isinstance(text, Expanded)
    for index, raw in enumerate(text.split(",")):
        rule = raw.strip().lower()
        if not rule:
            continue
        name, _ = _split_port(rule)
        shown = f"rule {index + 1}" if hidden else repr(raw.strip())
        if rule == "*":
            pass
        elif "/" in name:
            try:
                ipaddress.ip_network(name, strict=False)
            except ValueError:
                node.fail(f"{what}{shown} is not a CIDR range", show=hidden)
        elif not re.fullmatch(r"\.?" + _HOST, name):
            try:
                ipaddress.ip_address(name)
            except ValueError:
                node.fail(f"{what}{shown} is not a host name, domain, IP address or CIDR range", show=hidden)
        rules.append(rule)
    return tuple(rules)


# --- proxy URLs ----------------------------------------------------------------------------------


def _proxy(text: str, node: Node, what: str) -> Proxy:
    """An http:// or https:// proxy URL; the value is never shown in an error (it may hold a password)."""
    try:
        parts = urlsplit(text.strip())
        port = parts.port
    except ValueError:
        node.fail(f"{what}must be an http:// or https:// URL", show=False)
    if parts.scheme not in ("http", "https"):
        node.fail(f"{what}must be an http:// or https:// URL (got scheme {parts.scheme or 'none'!r})",
                  show=False)
    if not parts.hostname or parts.query or parts.fragment or parts.path not in ("", "/"):
        node.fail(f"{what}must be scheme://[user:password@]host[:port] without path, query or fragment",
                  show=False)
    host = parts.hostname if ":" not in parts.hostname else f"[{parts.hostname}]"
    url = f"{parts.scheme}://{host}" + (f":{port}" if port is not None else "")
    return Proxy(url, unquote(parts.username or ""), unquote(parts.password or ""))


def _env(env: Mapping[str, str], name: str) -> tuple[str, str] | None:
    """``NAME`` or ``name`` (upper case first, as Go's ProxyFromEnvironment reads them)."""
    for key in (name.upper(), name.lower()):
        if env.get(key):
            return key, env[key]
    return None


# --- TLS -----------------------------------------------------------------------------------------


def _reason(exc: ssl.SSLError) -> str:
    """OpenSSL's short reason (``KEY_VALUES_MISMATCH``), lower case, without the C source location."""
    return str(exc.reason or re.sub(r"\s*\(_ssl\.c:\d+\)", "", str(exc))).lower().replace("_", " ")


def ssl_context(tls: TLSConfig) -> ssl.SSLContext:
    """The client context for these settings. ``ca_file`` replaces the system roots, as in Prometheus.
    The one built at load when there is one (it reads files: never call this on the event loop)."""
    if tls.context is not None:
        return tls.context
    ctx = ssl.create_default_context(cafile=tls.ca_file) if tls.ca_file else ssl.create_default_context()
    if tls.cert_file is not None:
        ctx.load_cert_chain(tls.cert_file, tls.key_file, password=_no_password)
    return _configured(ctx, tls)


def needs_context(tls: TLSConfig) -> bool:
    """Whether these settings need a context of their own (else: the system's default verification)."""
    return bool(tls.ca_file or tls.cert_file or tls.insecure_skip_verify or tls.min_version)


def _configured(ctx: ssl.SSLContext, tls: TLSConfig) -> ssl.SSLContext:
    if tls.min_version is not None:
        with warnings.catch_warnings():  # TLS 1.0/1.1 are deprecated in Python; asked for, they are allowed
            warnings.simplefilter("ignore", DeprecationWarning)
            ctx.minimum_version = TLS_VERSIONS[tls.min_version]
    if tls.insecure_skip_verify:
        ctx.check_hostname = False
        ctx.verify_mode = ssl.CERT_NONE
    return ctx


def _checked_tls(tls: TLSConfig, node: Node) -> TLSConfig:
    """Read every file and build the context once: what fails here would fail every probe."""
    digest = hashlib.sha256()
    for key in ("ca_file", "cert_file", "key_file"):
        path = getattr(tls, key)
        if path is None:
            continue
        sub = Node(path, node.file, f"{node.path}.{key}")
        try:
            if not Path(path).is_file():  # a FIFO or /dev/zero would hang the load
                sub.fail(f"cannot read {path}: " + ("not a regular file" if Path(path).exists()
                                                     else "No such file or directory"), show=False)
            with open(path, "rb") as fh:
                data = fh.read(_MAX_PEM + 1)
        except OSError as exc:
            sub.fail(f"cannot read {path}: {exc.strerror or exc.__class__.__name__}", show=False)
        if len(data) > _MAX_PEM:
            sub.fail(f"{path} is larger than {_MAX_PEM >> 20} MiB: not a PEM file", show=False)
        digest.update(data)
    fingerprint = digest.hexdigest()[:32]
    if not needs_context(tls):
        return replace(tls, fingerprint=fingerprint, context=None)
    try:
        ctx = ssl.create_default_context(cafile=tls.ca_file) if tls.ca_file else ssl.create_default_context()
    except ssl.SSLError as exc:
        Node(None, node.file, f"{node.path}.ca_file").fail(
            f"no PEM CA certificate in {tls.ca_file} ({_reason(exc)})", show=False)
    if tls.cert_file is not None:
        try:
            ctx.load_cert_chain(tls.cert_file, tls.key_file, password=_no_password)
        except _EncryptedKey:
            Node(None, node.file, f"{node.path}.key_file").fail(
                f"{tls.key_file} is encrypted; give an unencrypted key readable only by the exporter", show=False)
        except ssl.SSLError as exc:
            what = "does not match" if "mismatch" in _reason(exc) else "cannot be loaded with"
            Node(None, node.file, f"{node.path}.cert_file").fail(
                f"{tls.cert_file} {what} key_file {tls.key_file} ({_reason(exc)})", show=False)
    # the context probes use, built here in the loader's thread: no file is read on the event loop
    return replace(tls, fingerprint=fingerprint, context=_configured(ctx, tls))


def _tls(node: Node, base: Path, inherited: TLSConfig) -> TLSConfig:
    fields = node.mapping(_TLS_KEYS)

    def path(key: str) -> str | None:
        return str(base / fields[key].text()) if key in fields and fields[key].value is not None else None

    if ("cert_file" in fields) != ("key_file" in fields):
        given, missing = ("cert_file", "key_file") if "cert_file" in fields else ("key_file", "cert_file")
        fields[given].fail(f"{given} needs {missing} in the same tls_config", show=False)
    out = inherited
    if "ca_file" in fields:
        out = replace(out, ca_file=path("ca_file"))
    if "cert_file" in fields:
        out = replace(out, cert_file=path("cert_file"), key_file=path("key_file"))
    if "server_name" in fields:
        out = replace(out, server_name=fields["server_name"].text(_HOST, "a host name") or None)
    if "insecure_skip_verify" in fields:
        out = replace(out, insecure_skip_verify=fields["insecure_skip_verify"].boolean())
    if "min_version" in fields:
        out = replace(out, min_version=fields["min_version"].choice(TLS_VERSIONS))
    return _checked_tls(out, node)


# --- the block -----------------------------------------------------------------------------------


def parse_http_client(node: Node, base: Path, env: Mapping[str, str],
                      inherited: HttpClient | None = None) -> HttpClient:
    """One ``http_client`` block. A target's block overrides the global one key by key (``tls_config``
    too, with ``cert_file`` and ``key_file`` as a pair); the proxy choice (``proxy_url`` or
    ``proxy_from_environment``) is one setting, so a target's own replaces the global one, and
    ``proxy_url: ""`` turns an inherited proxy off."""
    fields = node.mapping(_KEYS)
    out = inherited or HttpClient()
    if "proxy_url" in fields and "proxy_from_environment" in fields and fields["proxy_from_environment"].boolean() \
            and fields["proxy_url"].value:
        fields["proxy_url"].fail("proxy_url and proxy_from_environment: true cannot both be set", show=False)
    if "proxy_url" in fields:
        text = fields["proxy_url"].text() if fields["proxy_url"].value is not None else ""
        proxy = _proxy(text, fields["proxy_url"], "") if text.strip() else None
        out = replace(out, http_proxy=proxy, https_proxy=proxy, proxy_from_environment=False,
                      no_proxy=() if inherited and inherited.proxy_from_environment else out.no_proxy)
    if "proxy_from_environment" in fields and fields["proxy_from_environment"].boolean():
        out = _from_environment(out, fields["proxy_from_environment"], env)
    elif "proxy_from_environment" in fields and out.proxy_from_environment:
        out = replace(out, http_proxy=None, https_proxy=None, no_proxy=(), proxy_from_environment=False)
    if "no_proxy" in fields:
        value = fields["no_proxy"].text() if fields["no_proxy"].value is not None else ""
        out = replace(out, no_proxy=_no_proxy(value, fields["no_proxy"], ""))
    if "proxy_connect_header" in fields:
        out = replace(out, proxy_connect_header=_connect_headers(fields["proxy_connect_header"]))
    if "tls_config" in fields:
        out = replace(out, tls=_tls(fields["tls_config"], base, out.tls))
    return out


def _from_environment(out: HttpClient, node: Node, env: Mapping[str, str]) -> HttpClient:
    """HTTP_PROXY / HTTPS_PROXY / NO_PROXY, read once at load (a reload reads them again)."""
    proxies: dict[str, Proxy | None] = {}
    for scheme in ("http", "https"):
        found = _env(env, f"{scheme}_proxy")
        proxies[scheme] = _proxy(found[1], node, f"environment variable {found[0]} ") if found else None
    found = _env(env, "no_proxy")
    rules = _no_proxy(found[1], node, f"environment variable {found[0]}: ") if found else ()
    return replace(out, http_proxy=proxies["http"], https_proxy=proxies["https"], no_proxy=rules,
                   proxy_from_environment=True)


def _connect_headers(node: Node) -> tuple[tuple[str, tuple[str, ...]], ...]:
    node.secret = True  # Prometheus treats these values as secrets: never shown in an error
    out = []
    for name, values in node.mapping().items():
        Node(name, node.file, values.path).text(_HEADER_NAME, "an HTTP header name")
        if isinstance(values.value, str):
            values.fail("must be a list of strings (Prometheus' form: Header: [value])")
        texts = tuple(value.text() for value in values.seq())
        for index, text in enumerate(texts):
            if "\r" in text or "\n" in text or "\0" in text:
                Node(None, node.file, f"{values.path}[{index}]").fail("must not contain a line break or NUL")
        out.append((name, texts))
    return tuple(out)


def target_http_client(fields: Mapping[str, Node], name: str, base: Path, env: Mapping[str, str],
                       inherited: HttpClient | None) -> HttpClient | None:
    """A target's effective settings (its own block over the global one), from the target's
    ``fields``; logs the one warning a target with verification off gets at each load."""
    client = parse_http_client(fields["http_client"], base, env, inherited) if "http_client" in fields else inherited
    if client is not None and client.tls.insecure_skip_verify:
        log.warning("target %s: tls_config.insecure_skip_verify is true: the vendor's certificate is not "
                    "verified, so anyone on the path can read and change this target's traffic", name)
    return client


# --- certificates --------------------------------------------------------------------------------


def cert_not_after(der: bytes) -> float:
    """The ``notAfter`` of a DER certificate, Unix seconds. A few lines of DER walking rather than an
    X.509 library: this one field is all the exporter needs, and with verification off Python gives
    the certificate only as DER."""
    _, start, _ = _tlv(der, 0)  # Certificate
    tag, pos, _ = _tlv(der, start)  # tbsCertificate
    if tag != 0x30:
        raise ValueError("not a certificate")
    tag, _, end = _tlv(der, pos)
    if tag == 0xA0:  # explicit version
        pos = end
    for _ in range(3):  # serialNumber, signature, issuer
        _, _, pos = _tlv(der, pos)
    tag, pos, _ = _tlv(der, pos)  # validity
    if tag != 0x30:
        raise ValueError("no validity")
    _, _, pos = _tlv(der, pos)  # notBefore
    tag, start, end = _tlv(der, pos)
    text = der[start:end].decode("ascii")
    if tag == 0x17:  # UTCTime YYMMDDHHMMSSZ: years 50-99 are 19xx
        year = int(text[:2])
        text = f"{1900 + year if year >= 50 else 2000 + year}{text[2:]}"
    elif tag != 0x18:  # GeneralizedTime YYYYMMDDHHMMSSZ
        raise ValueError("bad time")
    if not re.fullmatch(r"\d{14}Z", text):
        raise ValueError("bad time")
    fields = (int(text[0:4]), int(text[4:6]), int(text[6:8]), int(text[8:10]), int(text[10:12]), int(text[12:14]))
    return float(calendar.timegm((*fields, 0, 0, 0)))
