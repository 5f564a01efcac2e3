"""The exporter config: YAML in, frozen dataclasses out, every mistake a one-line ConfigError.

Layout::

    global:    {interval, timeout, max_concurrency, probe_share, max_body_bytes, history, keepalive}
    catalog_files: [extra vendor catalogs, relative to this file]
    vendors:   {name: catalog or override of a built-in}
    targets:   [{name, vendor, base_url, interval, timeout, credentials, check, labels, budget}]
"""

from __future__ import annotations

import os
import re
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from itertools import chain
from pathlib import Path
from typing import Any

from ._yamlnode import (
    SECRET_FILE_LIMIT,
    ConfigError,
    FileReadError,
    Node,
    decode_utf8,
    load_document,
    load_yaml,
    read_regular_file,
)
from .backoff import DEFAULT_MAX_BACKOFF
from .catalog import (
    Budget,
    Catalog,
    CheckSpec,
    builtin_raw,
    check_name,
    merge_raw,
    parse_budget,
    parse_catalog,
    parse_check,
)
from .httpclient import HttpClient, parse_http_client, target_http_client

__all__ = ["DEFAULT_MAX_BACKOFF", "DEFAULT_PROBE_SHARE", "Config", "ConfigError", "Credentials", "GlobalConfig",
           "Target", "load_config", "parse_config"]

#: the default share of a vendor's request budget the probes may spend (``global.probe_share``)
DEFAULT_PROBE_SHARE = 0.05

_RESERVED_LABELS = {"target", "vendor", "class", "code", "quota", "le", "version", "job", "instance"}
_ENV = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)\}")


class Credentials(Mapping[str, str]):
    """A target's secrets. Its repr never shows a value, so a stray log line cannot leak one."""

    # names and values alternate in one tuple: a target has a few credentials, and a large config keeps
    # one of these per target for as long as it runs (a dict costs some three times as much)
    __slots__ = ("_flat",)

    def __init__(self, data: Mapping[str, str]) -> None:
        self._flat: tuple[str, ...] = tuple(chain.from_iterable((data if type(data) is dict else dict(data)).items()))

    def __getitem__(self, key: str) -> str:
        flat = self._flat
        for i in range(0, len(flat), 2):
            if flat[i] == key:
                return flat[i + 1]
        raise KeyError(key)

    def __iter__(self) -> Iterator[str]:
        return iter(self._flat[::2])

    def __len__(self) -> int:
        return len(self._flat) // 2

    def __repr__(self) -> str:
        return f"Credentials({', '.join(sorted(self))}: <redacted>)"

    def _pairs(self) -> list[tuple[str, str]]:
        return sorted(zip(self._flat[::2], self._flat[1::2], strict=True))

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Credentials) and self._pairs() == other._pairs()

    def __hash__(self) -> int:
        return hash(tuple(self._pairs()))


@dataclass(frozen=True, slots=True)
class GlobalConfig:
    interval: float = 60.0
    timeout: float = 10.0
    max_concurrency: int = 100
    #: the share of a vendor's request budget the probes may spend (the rest is production traffic)
    probe_share: float = DEFAULT_PROBE_SHARE
    max_body_bytes: int = 65536
    history: int = 50
    #: probe once more right after a failure before the class changes (both answers are counted)
    confirm_failures: bool = False
    #: reuse connections to a vendor host between probes; off, every probe pays a new TCP/TLS handshake
    keepalive: bool = True
    #: egress settings (proxy, TLS client) every target inherits; None: direct, system trust
    http_client: HttpClient | None = None
    #: no backoff (Retry-After included) waits longer than this, so a vendor's typo cannot silence a target
    max_backoff: float = DEFAULT_MAX_BACKOFF


@dataclass(frozen=True, slots=True)
class Target:
    name: str
    vendor: str
    catalog: Catalog = field(repr=False, compare=True)
    base_url: str
    interval: float
    timeout: float
    credentials: Credentials
    check: CheckSpec
    labels: tuple[tuple[str, str], ...] = ()
    budget: tuple[Budget, ...] = ()
    #: the share of the budget for probes: the target's own, else the global one
    probe_share: float = DEFAULT_PROBE_SHARE
    confirm_failures: bool = False
    #: egress settings (proxy, TLS client); None: the shared default session
    http_client: HttpClient | None = None
    max_backoff: float = DEFAULT_MAX_BACKOFF

    @property
    def budget_key(self) -> tuple[str, str, tuple[tuple[str, str], ...]]:
        """Targets that share one credential share one request budget."""
        return (self.vendor, self.base_url.split("/")[2], tuple(sorted(self.credentials.items())))


@dataclass(frozen=True, slots=True)
class Config:
    source: str
    global_: GlobalConfig
    targets: tuple[Target, ...]
    catalogs: Mapping[str, Catalog]
    #: targets by name, made once: /probe and the pages look one up on every request
    _by_name: Mapping[str, Target] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "_by_name", {t.name: t for t in self.targets})

    def target(self, name: str) -> Target | None:
        return self._by_name.get(name)


def _mentions_env(value: Any) -> bool:
    """Whether any string of the tree holds ``${``: most configs have none, and then no copy of the
    tree (nor a key path for each of its values) is made. A loop, not recursion: it visits every
    value of a large config."""
    stack = [value]
    while stack:
        item = stack.pop()
        kind = type(item)
        if kind is str:
            if "${" in item:
                return True
        elif kind is dict:
            stack.extend(item.values())
        elif kind is list:
            stack.extend(item)
        elif isinstance(item, dict):
            stack.extend(item.values())
        elif isinstance(item, list):
            stack.extend(item)
        elif isinstance(item, str) and "${" in item:
            return True
    return False


def _expand(value: Any, env: Mapping[str, str], file: str, path: str) -> Any:
    """Replace ``${VAR}`` in every string of the tree; a missing variable names its key path."""
    if isinstance(value, dict):
        return {key: _expand(item, env, file, f"{path}.{key}" if path else str(key)) for key, item in value.items()}
    if isinstance(value, list):
        return [_expand(item, env, file, f"{path}[{index}]") for index, item in enumerate(value)]
    if isinstance(value, str) and "${" in value:
        def sub(match: re.Match[str]) -> str:
            if match.group(1) not in env:
                raise ConfigError(file, path, f"environment variable {match.group(1)} is not set")
            got = env[match.group(1)]
            try:
                got.encode("utf-8")
            except UnicodeEncodeError:  # non-UTF-8 bytes in the environment, kept as surrogates by Python
                raise ConfigError(file, path, f"environment variable {match.group(1)} is not valid UTF-8") from None
            return got

        return _ENV.sub(sub, value)
    return value


def _credential_names(catalog: Catalog) -> tuple[tuple[str, ...], frozenset[str]]:
    """The vendor's credential names, and the keys a target's credentials may have."""
    names = (*catalog.credentials, *catalog.optional_credentials)
    return names, frozenset(names) | {f"{cred}_file" for cred in names}


def _credentials(node: Node, catalog: Catalog, base: Path,
                 known: tuple[tuple[str, ...], frozenset[str]] | None = None) -> Credentials:
    node.secret = True  # no credential value ever appears in an error
    out: dict[str, str] = {}
    names, allowed = known or _credential_names(catalog)
    for key, val in node.mapping().items():
        if key not in allowed:
            val.fail(f"unknown credential for vendor {catalog.vendor} (allowed: {', '.join(names)}"
                     f" or NAME_file)", show=False)
        if key.endswith("_file"):
            path = base / val.text()
            try:
                out[key[:-5]] = decode_utf8(read_regular_file(path, SECRET_FILE_LIMIT)).rstrip("\r\n")
            except FileReadError as exc:
                raise ConfigError(val.file, val.path, f"cannot read {path}: {exc}") from None
        else:
            out[key] = val.text()
    for cred in catalog.credentials:
        if not out.get(cred):
            Node(None, node.file, f"{node.path}.{cred}").fail(
                f"vendor {catalog.vendor} needs credential {cred} (or {cred}_file)", show=False)
    return Credentials(out)


def _max_backoff(node: Node) -> float:
    seconds = node.duration(minimum=1)
    if seconds > 7 * 86400:
        node.fail("must be at most 1w")
    return seconds


_LABEL_NAME = re.compile(r"[a-zA-Z_][a-zA-Z0-9_]*")


def _labels(node: Node, shared: dict[tuple[tuple[str, str], ...], tuple[tuple[str, str], ...]] | None = None,
            ) -> tuple[tuple[str, str], ...]:
    out = []
    for key, val in node.mapping().items():
        if _LABEL_NAME.fullmatch(key) is None or key in _RESERVED_LABELS or key.startswith("__"):
            lab = Node(key, val.file, val.path)  # the same checks again, for the error
            lab.text(r"[a-zA-Z_][a-zA-Z0-9_]*", "a Prometheus label name")
            lab.fail("is reserved by the exporter")
        out.append((key, val.text()))
    labels = tuple(sorted(out))
    # one tuple for each distinct set in a config: thousands of targets share a few (team, env, region)
    return labels if shared is None else shared.setdefault(labels, labels)


def _require(check: CheckSpec, override: Node | None, catalog: Catalog, node: Node) -> None:
    overridden = override.mapping() if override is not None else {}
    for req in check.requires:
        ok = (req == "path" and "path" in overridden) or (req == "body" and bool(check.body)) or (
            req.startswith("params.") and req[7:] in dict(check.params))
        if not ok:
            hint = f": {check.hint}" if check.hint else ""
            Node(None, node.file, f"{node.path}.check.{req}").fail(
                f"vendor {catalog.vendor} needs check.{req}{hint}", show=False)


def _catalogs(root: dict[str, Node], base: Path) -> dict[str, Catalog]:
    raw = builtin_raw()
    layers: list[tuple[str, Node]] = []
    for entry in root.get("catalog_files", Node([], "", "catalog_files")):
        doc = load_yaml(base / entry.text())
        vendor = doc.mapping().get("vendor")
        if vendor is None:
            raise ConfigError(doc.file, "vendor", "is required in a catalog file")
        layers.append((vendor.text(), doc))
    for name, node in root["vendors"].mapping().items() if "vendors" in root else []:
        layers.append((name, node))
    for name, node in layers:
        check_name(name, node)
        raw[name] = merge_raw(raw[name], node) if name in raw else node
    return {name: parse_catalog(name, node) for name, node in raw.items()}


def parse_config(root_node: Node, base: Path, env: Mapping[str, str] | None = None, *,
                 may_mention_env: bool = True) -> Config:
    """``may_mention_env``: False when the text is known to hold no ``${`` (load_document)."""
    env = os.environ if env is None else env
    if may_mention_env and _mentions_env(root_node.value):
        root_node = Node(_expand(root_node.value, env, root_node.file, ""), root_node.file, "")
    root = root_node.mapping({"global", "targets", "vendors", "catalog_files"}, required=("targets",))
    global_keys = {"interval", "timeout", "max_concurrency", "probe_share", "max_body_bytes", "history",
                   "confirm_failures", "keepalive", "http_client", "max_backoff"}
    section = root["global"].mapping(global_keys) if "global" in root else {}
    defaults = GlobalConfig()
    glob = GlobalConfig(
        interval=section["interval"].duration(minimum=1) if "interval" in section else defaults.interval,
        timeout=section["timeout"].duration(minimum=0.1) if "timeout" in section else defaults.timeout,
        max_concurrency=(section["max_concurrency"].integer(1, 100000) if "max_concurrency" in section
                         else defaults.max_concurrency),
        probe_share=section["probe_share"].number(0.0001, 1) if "probe_share" in section else defaults.probe_share,
        max_body_bytes=(section["max_body_bytes"].integer(1024, 16 << 20) if "max_body_bytes" in section
                        else defaults.max_body_bytes),
        history=section["history"].integer(1, 10000) if "history" in section else defaults.history,
        confirm_failures=(section["confirm_failures"].boolean() if "confirm_failures" in section
                          else defaults.confirm_failures),
        keepalive=section["keepalive"].boolean() if "keepalive" in section else defaults.keepalive,
        http_client=parse_http_client(section["http_client"], base, env) if "http_client" in section else None,
        max_backoff=_max_backoff(section["max_backoff"]) if "max_backoff" in section else defaults.max_backoff,
    )
    catalogs = _catalogs(root, base)
    targets: list[Target] = []
    seen: set[str] = set()
    cred_names: dict[str, tuple[tuple[str, ...], frozenset[str]]] = {}
    label_sets: dict[tuple[tuple[str, str], ...], tuple[tuple[str, str], ...]] = {}
    allowed = {"name", "vendor", "base_url", "interval", "timeout", "credentials", "check", "labels", "budget",
               "probe_share", "confirm_failures", "http_client", "max_backoff"}
    for tnode in root["targets"]:
        fields = tnode.mapping(allowed, required=("name", "vendor", "base_url"))
        # not only dots: a browser rewrites /targets/.. before it is sent, so such a page is unreachable
        name = fields["name"].text(r"(?!\.+$)[A-Za-z0-9_.:-]{1,128}",
                              "letters, digits, '.', ':', '_' or '-' (at most 128, not only dots)")
        if name in seen:
            fields["name"].fail("duplicate target name")
        seen.add(name)
        vendor = fields["vendor"].text()
        if vendor not in catalogs:
            fields["vendor"].fail(f"unknown vendor (known: {', '.join(sorted(catalogs))})")
        catalog = catalogs[vendor]
        base_url = fields["base_url"].url()
        interval = fields["interval"].duration(minimum=1) if "interval" in fields else glob.interval
        timeout = fields["timeout"].duration(minimum=0.1) if "timeout" in fields else glob.timeout
        if timeout > interval:
            (fields.get("timeout") or fields.get("interval") or tnode).fail(
                f"timeout {timeout:g}s is longer than the interval {interval:g}s")
        if vendor not in cred_names:
            cred_names[vendor] = _credential_names(catalog)
        creds = _credentials(fields["credentials"] if "credentials" in fields
                             else Node({}, tnode.file, f"{tnode.path}.credentials"), catalog, base, cred_names[vendor])
        check = parse_check(fields["check"], catalog.check) if "check" in fields else catalog.check
        _require(check, fields.get("check"), catalog, tnode)
        budget = parse_budget(fields["budget"]) if "budget" in fields else catalog.budget
        targets.append(Target(
            name=name, vendor=vendor, catalog=catalog, base_url=base_url, interval=interval, timeout=timeout,
            credentials=creds, check=check, labels=_labels(fields["labels"], label_sets) if "labels" in fields else (),
            budget=budget,
            probe_share=fields["probe_share"].number(0.0001, 1) if "probe_share" in fields else glob.probe_share,
            confirm_failures=(fields["confirm_failures"].boolean() if "confirm_failures" in fields
                              else glob.confirm_failures),
            http_client=target_http_client(fields, name, base, env, glob.http_client),
            max_backoff=_max_backoff(fields["max_backoff"]) if "max_backoff" in fields else glob.max_backoff,
        ))
    return Config(root_node.file, glob, tuple(targets), catalogs)


def load_config(path: str | Path, env: Mapping[str, str] | None = None) -> Config:
    file_path = Path(path)
    root, may_mention_env = load_document(file_path)
    return parse_config(root, file_path.parent, env, may_mention_env=may_mention_env)

