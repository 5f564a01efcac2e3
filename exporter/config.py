"""The exporter config: YAML in, frozen dataclasses out, every mistake a one-line ConfigError.

Layout::

    global:    {interval, timeout, max_concurrency, probe_share, max_body_bytes, history, keepalive}
    catalog_files: [extra vendor catalogs, relative to this file]
    vendors:   {name: catalog or override of a built-in}
    targets:   [{name, vendor, base_url, interval, timeout, credentials, check, labels, budget, status_components}]
    egress_checks: [{name, url, expect_status, http_client}]  (our own way out, exporter/egresscheck.py)
"""

from __future__ import annotations

import os
import re
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field, replace
from itertools import chain
from pathlib import Path
from typing import Any, TypeVar

from ._yamlnode import (
    SECRET_FILE_LIMIT,
    ConfigError,
    FileReadError,
    Node,
    decode_utf8,
    load_document,
    read_regular_file,
)
from .backoff import DEFAULT_MAX_BACKOFF
from .catalog import (
    Budget,
    Catalog,
    CheckSpec,
    builtin_catalogs,
    builtin_raw,
    check_name,
    load_catalog_file,
    merge_raw,
    parse_budget,
    parse_catalog,
    parse_check,
)
from .httpconfig import HttpClient, client_secrets, parse_http_client, target_http_client
from .model import Expanded
from .signers import Signer, SignerContext, make_signer
from .statuspage import component_id_pattern

__all__ = ["DEFAULT_MAX_BACKOFF", "DEFAULT_PROBE_SHARE", "Config", "ConfigError", "Credentials", "EgressCheck",
           "GlobalConfig", "Target", "load_config", "parse_config", "secrets_of"]

#: the default share of a vendor's request budget the probes may spend (``global.probe_share``)
DEFAULT_PROBE_SHARE = 0.05

_T = TypeVar("_T")
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
    max_body_bytes: int = 1 << 20  # a healthy answer of a few hundred KiB (model lists) is read whole
    history: int = 50
    #: probe once more right after a failure before the class changes (both answers are counted); on
    #: by default: the shipped alerts page on a confirmed failure, and the second probe is what makes
    #: that page come within the interval instead of a (backed-off) interval later
    confirm_failures: bool = True
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
    confirm_failures: bool = True
    #: egress settings (proxy, TLS client); None: the shared default session
    http_client: HttpClient | None = None
    max_backoff: float = DEFAULT_MAX_BACKOFF
    #: ids of the vendor status page's components this target depends on; None: all of them
    status_components: tuple[str, ...] | None = None

    @property
    def budget_key(self) -> tuple[str, str, tuple[tuple[str, str], ...]]:
        """Targets that share one credential share one request budget."""
        return (self.vendor, self.base_url.split("/")[2], tuple(sorted(self.credentials.items())))


@dataclass(frozen=True, slots=True)
class EgressCheck:
    """One URL of our own way out (a proxy's health endpoint, a company canary): never a vendor."""

    name: str
    url: str
    #: the statuses that count as reachable; None: any HTTP answer does
    expect_status: frozenset[int] | None
    #: egress settings: its own block over the global one (None: direct, the shared session)
    http_client: HttpClient | None


@dataclass(frozen=True, slots=True)
class Config:
    source: str
    global_: GlobalConfig
    targets: tuple[Target, ...]
    catalogs: Mapping[str, Catalog]
    egress_checks: tuple[EgressCheck, ...] = ()
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

        out = Expanded(_ENV.sub(sub, value))
        out.sources = tuple(dict.fromkeys(f"${{{name}}}" for name in _ENV.findall(value)))
        return out
    return value


def _credential_names(catalog: Catalog) -> tuple[tuple[str, ...], frozenset[str]]:
    """The vendor's credential names, and the keys a target's credentials may have."""
    names = (*catalog.credentials, *catalog.optional_credentials)
    return names, frozenset(names) | {f"{cred}_file" for cred in names}


def _credentials(node: Node, catalog: Catalog, base: Path,
                 known: tuple[tuple[str, ...], frozenset[str]] | None = None,
                 problems: _Problems | None = None) -> Credentials:
    """The target's credentials; with ``problems`` collecting, every unknown, unreadable or missing one
    is noted (the result is then incomplete), else the first raises."""
    node.secret = True  # no credential value ever appears in an error
    noted = problems or _Problems(None)
    out: dict[str, str] = {}
    unreadable: set[str] = set()
    names, allowed = known or _credential_names(catalog)
    for key, val in node.mapping().items():
        if key not in allowed:
            noted.value(lambda val=val: val.fail(  # type: ignore[misc]
                f"unknown credential for vendor {catalog.vendor} (allowed: {', '.join(names)} or NAME_file)",
                show=False), None)
            continue
        if key.endswith("_file"):
            path = base / val.text()
            try:
                secret = Expanded(decode_utf8(read_regular_file(path, SECRET_FILE_LIMIT)).rstrip("\r\n"))
                secret.sources = (key,)  # should an error ever hold it: where from, never what
                out[key[:-5]] = secret
            except FileReadError as exc:
                unreadable.add(key[:-5])  # said once: not also "needs credential" below
                # a path from ${VAR} is not shown (token_file: ${TOKEN}, where token: was meant, is the
                # usual slip: the "path" is then the secret itself); the error says where it came from
                hidden = isinstance(val.value, Expanded)
                noted.note(ConfigError(val.file, val.path, f"cannot read {'the file' if hidden else path}: {exc}",
                                       *((val.value,) if hidden else ())))
        else:
            out[key] = val.text()
    for cred in catalog.credentials:
        if not out.get(cred) and cred not in unreadable:
            noted.value(lambda cred=cred: Node(None, node.file, f"{node.path}.{cred}").fail(  # type: ignore[misc]
                f"vendor {catalog.vendor} needs credential {cred} (or {cred}_file)", show=False), None)
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
    # a built-in vendor nobody overrides keeps the Catalog parsed once per process; only an overridden
    # one is merged and parsed again, from a fresh copy of its file's data (the override's errors name
    # the override's file). catalog_files are read at every load: they may change between reloads.
    shipped = builtin_catalogs()
    raw: dict[str, Node | None] = dict.fromkeys(shipped)
    layers: list[tuple[str, Node]] = []
    for entry in root.get("catalog_files", Node([], "", "catalog_files")):
        doc = load_catalog_file(base / entry.text())
        vendor = doc.mapping().get("vendor")
        if vendor is None:
            raise ConfigError(doc.file, "vendor", "is required in a catalog file")
        layers.append((vendor.text(), doc))
    for name, node in root["vendors"].mapping().items() if "vendors" in root else []:
        layers.append((name, node))
    copies = builtin_raw() if any(name in shipped for name, _ in layers) else {}
    for name, node in layers:
        check_name(name, node)
        if name in raw:
            previous = raw[name]
            node = merge_raw(copies[name] if previous is None else previous, node)
        raw[name] = node
    return {name: shipped[name] if node is None else parse_catalog(name, node) for name, node in raw.items()}


class _Problems:
    """Where parse_config puts what is wrong: at the first problem it raises (loading), or, given a list
    (``--config.check``), it notes each one and goes on with a default, so every bad key of ``global``
    and every bad field of a target is reported, not only the first of each block."""

    __slots__ = ("sink",)

    def __init__(self, sink: list[ConfigError] | None) -> None:
        self.sink = sink

    def note(self, exc: ConfigError) -> None:
        if self.sink is None:
            raise exc
        self.sink.append(exc)

    def value(self, parse: Callable[[], _T], default: _T) -> _T:
        try:
            return parse()
        except ConfigError as exc:
            self.note(exc)
            return default

    def mapping(self, node: Node, allowed: set[str], required: tuple[str, ...] = ()) -> dict[str, Node]:
        """``node.mapping(allowed, required)``, with every unknown and missing key noted, not only the
        first; what remains are the known keys."""
        if self.sink is None:
            return node.mapping(allowed, required)
        fields = node.mapping()
        for key in [key for key in fields if key not in allowed]:
            try:  # the loader's own wording, for this one key
                Node({key: fields.pop(key).value}, node.file, node.path, node.secret).mapping(allowed)
            except ConfigError as exc:
                self.note(exc)
        for key in required:
            if key not in fields or fields[key].value is None:
                try:
                    Node({}, node.file, node.path).mapping(required=(key,))
                except ConfigError as exc:
                    self.note(exc)
        return fields


_GLOBAL_KEYS = {"interval", "timeout", "max_concurrency", "probe_share", "max_body_bytes", "history",
                "confirm_failures", "keepalive", "http_client", "max_backoff"}
_TARGET_KEYS = {"name", "vendor", "base_url", "interval", "timeout", "credentials", "check", "labels", "budget",
                "probe_share", "confirm_failures", "http_client", "max_backoff", "status_components"}


def _global(node: Node | None, base: Path, env: Mapping[str, str], problems: _Problems) -> GlobalConfig:
    defaults = GlobalConfig()
    if node is None:
        return defaults
    section = problems.mapping(node, _GLOBAL_KEYS)

    def get(key: str, parse: Callable[[Node], _T], default: _T) -> _T:
        return problems.value(lambda: parse(section[key]), default) if key in section else default

    glob = GlobalConfig(
        interval=get("interval", lambda n: n.duration(minimum=1), defaults.interval),
        timeout=get("timeout", lambda n: n.duration(minimum=0.1), defaults.timeout),
        max_concurrency=get("max_concurrency", lambda n: n.integer(1, 100000), defaults.max_concurrency),
        probe_share=get("probe_share", lambda n: n.number(0.0001, 1), defaults.probe_share),
        max_body_bytes=get("max_body_bytes", lambda n: n.integer(1024, 16 << 20), defaults.max_body_bytes),
        history=get("history", lambda n: n.integer(1, 10000), defaults.history),
        confirm_failures=get("confirm_failures", lambda n: n.boolean(), defaults.confirm_failures),
        keepalive=get("keepalive", lambda n: n.boolean(), defaults.keepalive),
        http_client=get("http_client", lambda n: parse_http_client(n, base, env), None),
        max_backoff=get("max_backoff", _max_backoff, defaults.max_backoff),
    )
    if glob.timeout > glob.interval:
        # the global block's own mistake: blamed there, not on the first target that inherits it
        problems.value(lambda: (section.get("timeout") or section["interval"]).fail(
            f"timeout {glob.timeout:g}s is longer than the interval {glob.interval:g}s"), None)
    return glob


def parse_config(root_node: Node, base: Path, env: Mapping[str, str] | None = None, *,
                 may_mention_env: bool = True, problems: list[ConfigError] | None = None) -> Config:
    """``may_mention_env``: False when the text is known to hold no ``${`` (load_document).
    ``problems``: note every problem of the global block and of each target there and go on (the
    config returned is then incomplete whenever the list grew); without it the first one raises."""
    env = os.environ if env is None else env
    noted = _Problems(problems)
    if may_mention_env and _mentions_env(root_node.value):
        root_node = Node(_expand(root_node.value, env, root_node.file, ""), root_node.file, "")
    root = root_node.mapping({"global", "targets", "vendors", "catalog_files", "egress_checks"}, required=("targets",))
    glob = _global(root.get("global"), base, env, noted)
    catalogs = _catalogs(root, base)
    targets: list[Target] = []
    seen: set[str] = set()
    cred_names: dict[str, tuple[tuple[str, ...], frozenset[str]]] = {}
    label_sets: dict[tuple[tuple[str, str], ...], tuple[tuple[str, str], ...]] = {}
    headless: dict[str, Catalog] = {}
    for tnode in root["targets"]:
        target = _target(tnode, glob, catalogs, base, env, seen, cred_names, label_sets, noted, headless)
        if target is not None:
            targets.append(target)
    no_checks: tuple[EgressCheck, ...] = ()
    egress = (noted.value(lambda: _egress_checks(root["egress_checks"], base, env, glob), no_checks)
              if "egress_checks" in root else no_checks)
    return Config(root_node.file, glob, tuple(targets), catalogs, egress)


def _target(tnode: Node, glob: GlobalConfig, catalogs: Mapping[str, Catalog], base: Path, env: Mapping[str, str],
            seen: set[str], cred_names: dict[str, tuple[tuple[str, ...], frozenset[str]]],
            label_sets: dict[tuple[tuple[str, str], ...], tuple[tuple[str, str], ...]],
            problems: _Problems, headless: dict[str, Catalog]) -> Target | None:
    """One target, or None when a problem was noted (``--config.check`` goes on with the next field)."""
    before = len(problems.sink) if problems.sink is not None else 0
    fields = problems.mapping(tnode, _TARGET_KEYS, required=("name", "vendor", "base_url"))

    def get(key: str, parse: Callable[[Node], _T], default: _T) -> _T:
        return problems.value(lambda: parse(fields[key]), default) if key in fields else default

    # not only dots: a browser rewrites /targets/.. before it is sent, so such a page is unreachable
    name = get("name", lambda n: n.text(r"(?!\.+$)[A-Za-z0-9_.:-]{1,128}",
                                        "letters, digits, '.', ':', '_' or '-' (at most 128, not only dots)"), "")
    if name and name in seen:
        problems.value(lambda: fields["name"].fail("duplicate target name"), None)
    seen.add(name)

    def known_vendor(node: Node) -> str:
        vendor = node.text()
        if vendor not in catalogs:
            node.fail(f"unknown vendor (known: {', '.join(sorted(catalogs))})")
        return vendor

    vendor = get("vendor", known_vendor, "")
    catalog = catalogs.get(vendor)
    base_url = get("base_url", lambda n: n.url(), "")
    interval = get("interval", lambda n: n.duration(minimum=1), glob.interval)
    timeout = get("timeout", lambda n: n.duration(minimum=0.1), glob.timeout)
    if timeout > interval and ("timeout" in fields or "interval" in fields):
        # neither set here: the global block's own problem, reported there
        problems.value(lambda: (fields.get("timeout") or fields["interval"]).fail(
            f"timeout {timeout:g}s is longer than the interval {interval:g}s"), None)
    creds = Credentials({})
    check = catalog.check if catalog is not None else CheckSpec("GET", "", (), (), None)
    budget = catalog.budget if catalog is not None else ()
    if catalog is not None:
        if vendor not in cred_names:
            cred_names[vendor] = _credential_names(catalog)
        creds = problems.value(lambda: _credentials(
            fields["credentials"] if "credentials" in fields else Node({}, tnode.file, f"{tnode.path}.credentials"),
            catalog, base, cred_names[vendor], problems), creds)
        check = get("check", lambda n: parse_check(n, catalog.check), catalog.check)
        problems.value(lambda: _require(check, fields.get("check"), catalog, tnode), None)
        budget = get("budget", parse_budget, catalog.budget)
    no_labels: tuple[tuple[str, str], ...] = ()
    labels = get("labels", lambda n: _labels(n, label_sets), no_labels)
    probe_share = get("probe_share", lambda n: n.number(0.0001, 1), glob.probe_share)
    confirm = get("confirm_failures", lambda n: n.boolean(), glob.confirm_failures)
    client = problems.value(lambda: target_http_client(fields, name, base, env, glob.http_client), None)
    max_backoff = get("max_backoff", _max_backoff, glob.max_backoff)
    components = (get("status_components", lambda n: _status_components(n, catalog, base_url), None)
                  if catalog is not None else None)
    if catalog is None or (problems.sink is not None and len(problems.sink) > before):
        return None
    classified_by = catalog
    if check.method == "HEAD" and catalog.envelope != "none":
        # a HEAD answer never has a body (RFC 9110): no JSON envelope to ask of it; one catalog per vendor
        classified_by = headless.setdefault(vendor, replace(catalog, envelope="none"))
    return Target(
        name=name, vendor=vendor, catalog=classified_by, base_url=base_url, interval=interval, timeout=timeout,
        credentials=creds, check=check, labels=labels, budget=budget, probe_share=probe_share,
        confirm_failures=confirm, http_client=client, max_backoff=max_backoff, status_components=components)


def _status_components(node: Node, catalog: Catalog, base_url: str) -> tuple[str, ...] | None:
    """Component ids of the vendor's status page (docs/vendors.md says how to find them); null: all."""
    if node.is_missing():
        return None
    if catalog.status_page is None:
        node.fail(f"vendor {catalog.vendor} has no status_page in its catalog", show=False)
    if not catalog.status_page.describes(base_url):
        node.fail(f"the status page of {catalog.vendor} speaks for {', '.join(catalog.status_page.hosts)}, not for "
                  "this target's base_url (status_page.hosts names the hosts it describes)", show=False)
    pattern, what = component_id_pattern(catalog.status_page.format)
    ids = tuple(dict.fromkeys(item.text(pattern, what) for item in node))
    if not ids:
        node.fail("must name at least one component id (leave it out to watch all)", show=False)
    return ids


def _egress_checks(node: Node, base: Path, env: Mapping[str, str], glob: GlobalConfig) -> tuple[EgressCheck, ...]:
    out: list[EgressCheck] = []
    seen: set[str] = set()
    for item in node:
        fields = item.mapping({"name", "url", "expect_status", "http_client"}, required=("name", "url"))
        name = fields["name"].text(r"[A-Za-z0-9_.:-]{1,64}", "letters, digits, '.', ':', '_' or '-' (at most 64)")
        if name in seen:
            fields["name"].fail("duplicate egress check name")
        seen.add(name)
        expect: frozenset[int] | None = None
        if "expect_status" in fields and not fields["expect_status"].is_missing():
            expect = frozenset(status.integer(100, 599) for status in fields["expect_status"])
            if not expect:
                fields["expect_status"].fail("must list at least one HTTP status (leave it out for any)")
        client = (parse_http_client(fields["http_client"], base, env, glob.http_client) if "http_client" in fields
                  else glob.http_client)
        out.append(EgressCheck(name, fields["url"].url(), expect, client))
    return tuple(out)


def load_config(path: str | Path, env: Mapping[str, str] | None = None) -> Config:
    file_path = Path(path)
    root, may_mention_env = load_document(file_path)
    return parse_config(root, file_path.parent, env, may_mention_env=may_mention_env)


def secrets_of(target: Target, signer: Signer | None = None) -> list[str]:
    """Everything of ``target`` that must be redacted wherever it is shown: its credentials, what its
    signer derives from them (``signer``: the one in use, with its learnt tokens; else a fresh one,
    which knows the forms derived without a login, such as Basic's encoded pair) and its http_client's
    proxy passwords and CONNECT header values. The one list, for the prober and the views alike; it
    lives with the target it reads (the signers know nothing of targets)."""
    if signer is None:
        signer = make_signer(target.catalog.signer, SignerContext(target.credentials, target.catalog.signer_options,
                                                                  target.base_url))
    return [*target.credentials.values(), *signer.secrets(), *client_secrets(target.http_client)]
