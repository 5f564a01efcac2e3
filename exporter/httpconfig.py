"""The ``http_client`` block: how a target's requests leave the machine (proxy, TLS client settings).

The key names are Prometheus' own HTTP client ones, so that a user who configured a scrape job
recognises them. Everything is checked while the config loads: the files are read and the TLS
context is built once then, so a broken certificate is a one-line error at load or reload, never a
failed probe hours later. The records are frozen and hashable: targets with equal settings share
one HTTP session (see egress.py), and a target without the block keeps the exporter's shared one.

stdlib only (plus the config node): the requests themselves are libcurl's (engine.py), which maps
these settings onto curl options.
"""

from __future__ import annotations

import base64
import hashlib
import ipaddress
import logging
import re
import ssl
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path
from urllib.parse import quote, unquote, urlsplit

from ._yamlnode import Node
from .model import Expanded

__all__ = ["TLS_VERSIONS", "HttpClient", "Proxy", "TLSConfig", "bypasses_proxy", "client_secrets",
           "parse_http_client", "target_http_client"]

log = logging.getLogger("exporter.config")

#: Prometheus' names for the TLS versions (the exporter's one table of them)
TLS_VERSIONS: Mapping[str, ssl.TLSVersion] = {
    "TLS10": ssl.TLSVersion.TLSv1, "TLS11": ssl.TLSVersion.TLSv1_1,
    "TLS12": ssl.TLSVersion.TLSv1_2, "TLS13": ssl.TLSVersion.TLSv1_3,
}
_KEYS = ("proxy_url", "no_proxy", "proxy_from_environment", "proxy_connect_header", "tls_config", "enable_http2",
         "follow_redirects")
_TLS_KEYS = ("ca_file", "cert_file", "key_file", "server_name", "insecure_skip_verify", "min_version",
             "max_version")
#: proxy URL schemes Prometheus accepts; socks5:// hands the vendor's name to the proxy, as Go does
_PROXY_SCHEMES = ("http", "https", "socks5")
_DEFAULT_PORTS = {"http": 80, "https": 443, "socks5": 1080}
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
        return parts.hostname or "", parts.port or _DEFAULT_PORTS.get(parts.scheme, 80)

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
    max_version: str | None = None
    #: digest of the files' contents at load: a reload after a certificate rotation gets a new session
    fingerprint: str = ""
    #: the files' contents (ca_file, cert_file, key_file) read and checked at load: curl gets these
    #: (its *_BLOB options), so no file is read on the event loop and a file gone later changes nothing
    #: until the next reload
    pems: tuple[bytes | None, bytes | None, bytes | None] = field(default=(None, None, None), compare=False,
                                                                  repr=False)


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
    #: HTTP/2 when the server offers it by ALPN (Prometheus' default); false: HTTP/1.1 only
    enable_http2: bool = True
    #: a redirect is followed (up to 10) instead of being the answer (then client_error/redirect)
    follow_redirects: bool = False

    def proxy_for(self, scheme: str, host: str, port: int | None) -> Proxy | None:
        proxy = self.https_proxy if scheme == "https" else self.http_proxy
        # a URL without a port is on the scheme's default one: "host:443" in no_proxy matches it (as Go's
        # httpproxy and curl match it)
        if port is None:
            port = 443 if scheme == "https" else 80
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
    """An http://, https:// or socks5:// proxy URL; the value is never shown in an error (it may hold a
    password)."""
    try:
        parts = urlsplit(text.strip())
        port = parts.port
    except ValueError:
        node.fail(f"{what}must be an http://, https:// or socks5:// URL", show=False)
    if parts.scheme not in _PROXY_SCHEMES:
        node.fail(f"{what}must be an http://, https:// or socks5:// URL (got scheme {parts.scheme or 'none'!r})",
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


class _EncryptedKey(Exception):
    """The key file asked for a password: refused at load rather than prompting on a terminal."""


def _no_password() -> str:
    raise _EncryptedKey


def _checked_tls(tls: TLSConfig, node: Node) -> TLSConfig:
    """Read every file and check it with OpenSSL once (Python's ssl module loads the same files curl
    will): what fails here would fail every probe."""
    digest = hashlib.sha256()
    pems: list[bytes | None] = []
    for key in ("ca_file", "cert_file", "key_file"):
        path = getattr(tls, key)
        pems.append(None)
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
        pems[-1] = data
    fingerprint = digest.hexdigest()[:32]
    if tls.min_version and tls.max_version and TLS_VERSIONS[tls.min_version] > TLS_VERSIONS[tls.max_version]:
        Node(None, node.file, f"{node.path}.min_version").fail(
            f"min_version {tls.min_version} is above max_version {tls.max_version}", show=False)
    tls = replace(tls, fingerprint=fingerprint, pems=(pems[0], pems[1], pems[2]))
    if not (tls.ca_file or tls.cert_file):
        return tls
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
    return tls


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
    if "max_version" in fields:
        out = replace(out, max_version=fields["max_version"].choice(TLS_VERSIONS))
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
    if "enable_http2" in fields:
        out = replace(out, enable_http2=fields["enable_http2"].boolean())
    if "follow_redirects" in fields:
        out = replace(out, follow_redirects=fields["follow_redirects"].boolean())
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
