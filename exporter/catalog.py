"""Vendor catalogs: everything the exporter knows about a vendor, loaded from YAML and validated.

A catalog says where a vendor puts its status code (HTTP status, a response header, a JSON body
field, in precedence order), what each code means (class + message), the default health-check call,
which signer to use, where quota figures are read and the vendor's request budget. Built-in catalogs
ship in ``exporter/catalogs/``; a config can add vendors or override single codes of a built-in one
with the same schema (see ``merge_raw``).
"""

from __future__ import annotations

import copy
from collections.abc import Mapping
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import Any

from ._yamlnode import ConfigError, Node, load_yaml
from .signers import SIGNERS

__all__ = [
    "CLASSES",
    "UP_CLASSES",
    "Budget",
    "Catalog",
    "CheckSpec",
    "CodeInfo",
    "CodeSource",
    "QuotaSpec",
    "ValueSource",
    "builtin_raw",
    "merge_raw",
    "parse_budget",
    "parse_catalog",
]

#: Every answer and every failed attempt gets exactly one of these (shared/vendors.md, "Classes").
CLASSES: tuple[str, ...] = (
    "ok", "degraded", "processing", "maintenance", "auth", "clock_skew", "rate_limited",
    "quota_exceeded", "client_error", "server_error", "timeout", "network_error", "unknown",
)
UP_CLASSES = frozenset({"ok", "degraded", "processing"})
_METHODS = ("GET", "POST", "PUT", "HEAD", "PATCH", "DELETE", "OPTIONS")


@dataclass(frozen=True, slots=True)
class CodeInfo:
    cls: str
    message: str


@dataclass(frozen=True, slots=True)
class CodeSource:
    """Where a code may be found. ``kind`` is status, header or body (a dotted JSON path)."""

    kind: str
    key: str = ""
    when_status: frozenset[int] | None = None
    #: for body sources: a non-empty value at ``key`` yields this fixed code (GraphQL ``errors``)
    nonempty: str | None = None


@dataclass(frozen=True, slots=True)
class ValueSource:
    """A number read from the body (dotted path), a header, or a constant."""

    kind: str
    key: str = ""
    const: float = 0.0


@dataclass(frozen=True, slots=True)
class CheckSpec:
    method: str
    path: str
    params: tuple[tuple[str, str], ...]
    headers: tuple[tuple[str, str], ...]
    body: str | None
    requires: tuple[str, ...] = ()
    hint: str = ""


@dataclass(frozen=True, slots=True)
class QuotaSpec:
    name: str
    remaining: ValueSource | None
    used: ValueSource | None
    limit: ValueSource | None
    reset: str | None
    #: a separate read-only call that carries the figures (movingimage's usage endpoint)
    request: CheckSpec | None
    #: true for a quota the health check does not need (it is shown, and may warn, but never pages)
    informational: bool = False


@dataclass(frozen=True, slots=True)
class Budget:
    requests: int
    per: float


@dataclass(frozen=True, slots=True)
class Catalog:
    vendor: str
    title: str
    docs_url: str
    credentials: tuple[str, ...]
    #: credentials a target may give but need not (movingimage's video_manager_id)
    optional_credentials: tuple[str, ...]
    signer: str
    signer_options: Mapping[str, Any]
    check: CheckSpec
    code_from: tuple[CodeSource, ...]
    codes: Mapping[str, CodeInfo]
    #: class per HTTP status (or ``2xx``-style family) for answers without the vendor's own code
    http_fallback: Mapping[str, str]
    quota: tuple[QuotaSpec, ...]
    #: the vendor's request limits per credential, each a window (Flipsnack: 5/s and 60/min)
    budget: tuple[Budget, ...]
    ratelimit_headers: bool

    @property
    def status_is_code(self) -> bool:
        return any(s.kind == "status" for s in self.code_from)


# --- raw YAML: built-ins and merging ---------------------------------------------------------------


def builtin_raw() -> dict[str, Node]:
    """The catalogs shipped in the package, unparsed, keyed by vendor name."""
    out: dict[str, Node] = {}
    folder = resources.files(__package__).joinpath("catalogs")
    for entry in sorted(folder.iterdir(), key=lambda e: e.name):
        if entry.name.endswith(".yaml"):
            node = load_yaml(Path(str(entry)))
            name = node.mapping().get("vendor")
            out[name.text() if name is not None else entry.name[:-5]] = node
    return out


_DEEP_KEYS = {"codes", "check", "signer", "http_fallback"}


def merge_raw(base: Node, override: Node) -> Node:
    """Override a catalog: per code (and per field of a code), per check key, per signer option;
    every other key is replaced whole. The result reports errors against the override's file."""
    merged = copy.deepcopy(base.value) if isinstance(base.value, dict) else {}
    over = override.mapping()
    for key, node in over.items():
        if key in _DEEP_KEYS and isinstance(node.value, dict) and isinstance(merged.get(key), dict):
            merged[key] = _deep_merge(merged[key], node.value)
        else:
            merged[key] = copy.deepcopy(node.value)
    return Node(merged, override.file, override.path)


def _deep_merge(a: dict[Any, Any], b: dict[Any, Any]) -> dict[Any, Any]:
    out = dict(a)
    for k, v in b.items():
        key = str(k) if isinstance(k, int) else k
        if isinstance(v, dict) and isinstance(out.get(key), dict):
            out[key] = _deep_merge(out[key], v)
        else:
            out[key] = v
    return out


# --- parsing and validation ------------------------------------------------------------------------

_ALLOWED = {
    "vendor", "title", "docs_url", "credentials", "optional_credentials", "signer", "check", "code_from", "codes",
    "http_fallback", "quota", "budget", "ratelimit_headers",
}


def parse_check(node: Node, default: CheckSpec | None = None) -> CheckSpec:
    m = node.mapping({"method", "path", "params", "headers", "body", "requires", "hint"})
    d = default or CheckSpec("GET", "", (), (), None)
    method = m["method"].text().upper() if "method" in m else d.method
    if method not in _METHODS:
        m["method"].fail(f"must be one of {', '.join(_METHODS)}")
    path = m["path"].text() if "path" in m and not m["path"].is_missing() else d.path
    if path and not path.startswith("/"):
        m["path"].fail("must start with /")
    # A target's params and headers add to the vendor's default check per key: setting Bannersnack's
    # banner hash must not drop its action, nor an extra header Bizwebs' Content-Type.
    params = tuple(sorted({**dict(d.params), **m["params"].str_map()}.items())) if "params" in m else d.params
    headers = tuple(sorted({**dict(d.headers), **m["headers"].str_map()}.items())) if "headers" in m else d.headers
    body = (None if m["body"].is_missing() else m["body"].text()) if "body" in m else d.body
    requires = tuple(r.text(r"path|body|params\.[\w.-]+", "path, body or params.NAME")
                     for r in m["requires"]) if "requires" in m else d.requires
    hint = m["hint"].text() if "hint" in m else d.hint
    return CheckSpec(method, path, params, headers, body, requires, hint)


def _code_key(node: Node) -> str:
    if isinstance(node.value, float):
        # YAML reads 401.10 as the float 401.1: a silent mix-up, so dotted codes must be quoted.
        node.fail("a code with a dot must be quoted, e.g. '401.10'")
    return node.text(r"[A-Za-z0-9_.-]{1,32}", "letters, digits, '.', '_' or '-' (at most 32)")


def _value_source(node: Node) -> ValueSource:
    if isinstance(node.value, int | float) and not isinstance(node.value, bool):
        return ValueSource("const", const=float(node.value))
    m = node.mapping({"body", "header"})
    if len(m) != 1:
        node.fail("must be a number, {body: PATH} or {header: NAME}")
    kind, val = next(iter(m.items()))
    return ValueSource(kind, key=val.text())


def _when(node: Node) -> frozenset[int]:
    out: set[int] = set()
    for item in node:
        text = item.text(r"[1-5](\d\d|xx)", "an HTTP status like 200 or a family like 4xx")
        if text.endswith("xx"):
            base = int(text[0]) * 100
            out.update(range(base, base + 100))
        else:
            out.add(int(text))
    return frozenset(out)


def parse_catalog(name: str, node: Node) -> Catalog:
    m = node.mapping(_ALLOWED, required=("credentials", "signer", "check", "codes"))
    if "vendor" in m and m["vendor"].text() != name:
        m["vendor"].fail(f"does not match the vendor name {name!r}")
    creds = tuple(c.text(r"[a-z][a-z0-9_]*", "a lower-case identifier") for c in m["credentials"])
    optional = tuple(c.text(r"[a-z][a-z0-9_]*", "a lower-case identifier")
                     for c in m.get("optional_credentials", Node([], node.file, "optional_credentials")))
    for c in [*m["credentials"], *m.get("optional_credentials", Node([], node.file, "optional_credentials"))]:
        if c.text().endswith("_file"):
            c.fail("must not end in _file (that suffix names a file holding the credential)")

    sm = m["signer"].mapping({"name", "options"}, required=("name",))
    signer = sm["name"].choice(SIGNERS)
    options = dict(sm["options"].mapping()) if "options" in sm else {}
    signer_options = {k: v.value for k, v in options.items()}
    for opt, val in signer_options.items():
        if opt.endswith("_credential") and val not in creds:
            options[opt].fail(f"names a credential not listed in {name}.credentials")

    check = parse_check(m["check"])
    sources: list[CodeSource] = []
    for src in m.get("code_from", Node([{"status": True}], node.file, "code_from")):
        sm2 = src.mapping({"status", "header", "body", "when_status", "nonempty"})
        kinds = [k for k in ("status", "header", "body") if k in sm2]
        if len(kinds) != 1:
            src.fail("needs exactly one of status, header, body")
        kind = kinds[0]
        key = "" if kind == "status" else sm2[kind].text()
        when = _when(sm2["when_status"]) if "when_status" in sm2 else None
        nonempty = _code_key(sm2["nonempty"]) if "nonempty" in sm2 else None
        if nonempty and kind != "body":
            sm2["nonempty"].fail("only applies to a body source")
        sources.append(CodeSource(kind, key, when, nonempty))
    if not sources:
        m["code_from"].fail("must name at least one place")

    codes: dict[str, CodeInfo] = {}
    codes_node = m["codes"]
    if not isinstance(codes_node.value, dict):
        codes_node.fail("must be a mapping of code -> {class, message}")
    for key_raw, info in codes_node.value.items():
        entry = Node(info, node.file, f"{codes_node.path}.{key_raw}")
        key = _code_key(Node(key_raw, node.file, entry.path))
        im = entry.mapping({"class", "message"}, required=("class",))
        codes[key] = CodeInfo(im["class"].choice(CLASSES), im["message"].text() if "message" in im else key)
    for source in sources:
        if source.nonempty and source.nonempty not in codes:
            m["code_from"].fail(f"nonempty code {source.nonempty!r} is not listed in codes")

    fallback: dict[str, str] = {}
    if "http_fallback" in m:
        for k, v in m["http_fallback"].mapping().items():
            Node(k, v.file, v.path).text(r"[1-5](\d\d|xx)", "an HTTP status or family like 5xx")
            fallback[k] = v.choice(CLASSES)

    quotas: list[QuotaSpec] = []
    for q in m.get("quota", Node([], node.file, "quota")):
        qm = q.mapping({"name", "remaining", "used", "limit", "reset", "request", "informational"}, required=("name",))
        remaining = _value_source(qm["remaining"]) if "remaining" in qm else None
        used = _value_source(qm["used"]) if "used" in qm else None
        limit = _value_source(qm["limit"]) if "limit" in qm else None
        if remaining is None and (used is None or limit is None):
            q.fail("needs remaining, or used and limit")
        quotas.append(QuotaSpec(
            qm["name"].text(r"[a-z][a-z0-9_]{0,31}", "a lower-case identifier"),
            remaining, used, limit,
            qm["reset"].choice(("daily", "monthly", "hourly")) if "reset" in qm else None,
            parse_check(qm["request"]) if "request" in qm else None,
            qm["informational"].boolean() if "informational" in qm else False,
        ))

    budget = parse_budget(m["budget"]) if "budget" in m else ()

    return Catalog(
        vendor=name,
        title=m["title"].text() if "title" in m else name,
        docs_url=m["docs_url"].text() if "docs_url" in m else "",
        credentials=creds,
        optional_credentials=optional,
        signer=signer,
        signer_options=signer_options,
        check=check,
        code_from=tuple(sources),
        codes=codes,
        http_fallback=fallback,
        quota=tuple(quotas),
        budget=budget,
        ratelimit_headers=m["ratelimit_headers"].boolean() if "ratelimit_headers" in m else True,
    )


def parse_budget(node: Node) -> tuple[Budget, ...]:
    """``{requests, per}`` or a list of them (every window applies)."""
    if node.is_missing():
        return ()
    items = node.seq() if isinstance(node.value, list) else [node]
    out = []
    for item in items:
        bm = item.mapping({"requests", "per"}, required=("requests", "per"))
        out.append(Budget(bm["requests"].integer(1), bm["per"].duration(minimum=1)))
    return tuple(out)


def check_name(name: str, node: Node) -> None:
    if not name or not name.replace("_", "").replace("-", "").isalnum():
        raise ConfigError(node.file, node.path, "vendor name must be letters, digits, '_' or '-'", name)
