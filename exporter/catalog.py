"""Vendor catalogs: everything the exporter knows about a vendor, loaded from YAML and validated.

A catalog says where a vendor puts its status code (HTTP status, a response header, a JSON body
field, in precedence order), what each code means (class + message), the default health-check call,
which signer to use, where quota figures are read and the vendor's request budget. Built-in catalogs
ship in ``exporter/catalogs/``; a config can add vendors or override single codes of a built-in one
with the same schema (see ``merge_raw``).
"""

from __future__ import annotations

import copy
import functools
import json
import math
import re
import string
from collections.abc import Mapping
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import re2

from ._yamlnode import ConfigError, Node, load_yaml
from .model import CLASSES, Expanded
from .signers import SIGNERS, OptionSpec, option_specs
from .statuspage import FORMATS as STATUS_FORMATS

__all__ = [
    "CATALOG_FILE_LIMIT",
    "MAX_CODES",
    "Budget",
    "Catalog",
    "CatalogExample",
    "CheckSpec",
    "CodeInfo",
    "CodeSource",
    "QuotaSpec",
    "StatusPageSpec",
    "ValueSource",
    "builtin_catalogs",
    "builtin_raw",
    "load_catalog_file",
    "merge_raw",
    "parse_budget",
    "parse_catalog",
    "parse_signer_options",
]

_METHODS = ("GET", "POST", "PUT", "HEAD", "PATCH", "DELETE", "OPTIONS")


@dataclass(frozen=True, slots=True)
class CodeInfo:
    cls: str
    message: str
    #: seconds to wait when the answer carries no Retry-After (GitHub: a secondary limit without one
    #: means "at least a minute"); None: the scheduler's own backoff
    retry_after: float | None = None
    #: the class instead when the answer's Date header and our clock are more than ``skewed_over``
    #: seconds apart (AWS's SignatureDoesNotMatch for a signature made with a wrong clock)
    skewed_class: str | None = None
    skewed_over: float = 0.0
    skewed_message: str = ""


@dataclass(frozen=True, slots=True)
class TextPattern:
    """A ``matches:`` pattern, searched case-insensitively. RE2 syntax, as Prometheus' own regexes: RE2
    matches in time linear in the text whatever the pattern, so a catalog's pattern cannot turn a
    vendor's (or a proxy's) answer into a stalled event loop; backreferences and lookaround, which only
    a backtracking engine runs, are refused at load."""

    pattern: str
    compiled: Any = field(compare=False, repr=False)

    def search(self, text: str) -> Any:
        """The first match in ``text``, or None (``re.Pattern.search``'s contract)."""
        return self.compiled.search(text)


_RE2_OPTIONS = re2.Options()
_RE2_OPTIONS.case_sensitive = False
_RE2_OPTIONS.log_errors = False  # RE2 would print the refused pattern to stderr: it may come from ${VAR}


@dataclass(frozen=True, slots=True)
class CodeSource:
    """Where a code may be found. ``kind`` is status, header, body (a dotted JSON path) or xml (a dotted
    path of element names from the root, namespaces ignored: AWS's ``ErrorResponse.Error.Code``)."""

    kind: str
    key: str = ""
    when_status: frozenset[int] | None = None
    #: a non-empty value at ``key`` (body) or a present header yields this fixed code (GraphQL ``errors``)
    nonempty: str | None = None
    #: body sources: which JSON values are a code: ``integer`` (the default), ``string`` or ``any`` of both
    type: str = "integer"
    #: a value at ``key`` equal to one of these yields the fixed code ``code`` (a header compares as text)
    equals: tuple[str | int | float | bool, ...] = ()
    code: str | None = None
    #: a code not listed in the catalog falls through to the next source instead of being ``unknown``
    known_only: bool = False
    #: a value (text) this regular expression finds yields the fixed code ``code`` (GitHub's secondary
    #: limit is told only by its message); searched case-insensitively
    matches: TextPattern | None = None
    #: a code not listed in the catalog under a 3xx-5xx answer keeps its label but takes the class of
    #: its HTTP status (Twilio documents its codes by status: an unlisted code under 401 is still auth)
    unlisted_by_status: bool = False


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
class StatusPageSpec:
    """The vendor's own public status page (exporter/statuspage.py reads it)."""

    url: str
    format: str
    #: the API hosts the page speaks for (a target elsewhere, e.g. GitHub Enterprise Server or a test
    #: double, is not described by it); empty: every target of the vendor
    hosts: tuple[str, ...] = ()

    def describes(self, base_url: str) -> bool:
        return not self.hosts or (urlsplit(base_url).hostname or "") in self.hosts


@dataclass(frozen=True, slots=True)
class CatalogExample:
    """An answer a catalog documents, and the class and code it must get (``--check-config`` runs it)."""

    #: where it is written: ``FILE: examples[N]``
    where: str
    status: int
    headers: tuple[tuple[str, str], ...]
    body: bytes
    cls: str
    code: str


@dataclass(frozen=True, slots=True)
class Catalog:
    vendor: str
    title: str
    docs_url: str
    credentials: tuple[str, ...]
    #: credentials a target may give but need not (movingimage's video_manager_id)
    optional_credentials: tuple[str, ...]
    signer: str
    #: the signer plug-in's ``Options`` dataclass, checked while the catalog loaded
    signer_options: Any
    check: CheckSpec
    code_from: tuple[CodeSource, ...]
    codes: Mapping[str, CodeInfo]
    #: class per HTTP status (or ``2xx``-style family) for answers without the vendor's own code
    http_fallback: Mapping[str, str]
    quota: tuple[QuotaSpec, ...]
    #: the vendor's request limits per credential, each a window (Flipsnack: 5/s and 60/min)
    budget: tuple[Budget, ...]
    ratelimit_headers: bool
    #: documented answers with the class and code each must get (see CatalogExample)
    examples: tuple[CatalogExample, ...] = ()
    #: ``json``: a 2xx answer is the vendor's only when its body is a JSON object or array (an HTML
    #: captive portal, a proxy's splash page or an empty body is never ok); ``xml``: likewise a plain
    #: XML document (AWS's query APIs); ``none``: any body will do
    envelope: str = "none"
    #: the vendor's public status page, when it has one in a format we read
    status_page: StatusPageSpec | None = None


# --- raw YAML: built-ins and merging ---------------------------------------------------------------


@functools.cache
def _shipped() -> tuple[tuple[str, Node], ...]:
    """The shipped catalog files, read and parsed once per process. They are part of the installed
    package, which does not change under a running process (an upgrade restarts it), so a reload never
    needs them read again. Never handed out: its Nodes are mutable (``Node.mapping`` fills a None in)."""
    out: list[tuple[str, Node]] = []
    folder = resources.files(__package__).joinpath("catalogs")
    for entry in sorted(folder.iterdir(), key=lambda entry: entry.name):
        if entry.name.endswith(".yaml"):
            node = load_yaml(Path(str(entry)))
            name = node.mapping().get("vendor")
            out.append((name.text() if name is not None else entry.name[:-5], node))
    return tuple(out)


def builtin_raw() -> dict[str, Node]:
    """The catalogs shipped in the package, unparsed, keyed by vendor name: a fresh copy, the caller's
    to change."""
    return {name: Node(copy.deepcopy(node.value), node.file, node.path) for name, node in _shipped()}


_DEEP_KEYS = {"codes", "check", "signer", "http_fallback"}


@functools.cache
def _builtin_parsed() -> tuple[tuple[str, Catalog], ...]:
    # a Catalog is frozen (its mappings typed read-only), so one parse serves every config load
    return tuple((name, parse_catalog(name, node)) for name, node in builtin_raw().items())


def builtin_catalogs() -> dict[str, Catalog]:
    """The shipped catalogs, parsed as they are (no config overrides): their examples test the files.
    Parsed once per process (see ``_shipped``); every config load without an override of a vendor
    uses its Catalog from here."""
    return dict(_builtin_parsed())


def merge_raw(base: Node, override: Node) -> Node:
    """Override a catalog: per code (and per field of a code), per check key, per signer option;
    every other key is replaced whole. The result reports errors against the override's file."""
    merged = copy.deepcopy(base.value) if isinstance(base.value, dict) else {}
    # The base's examples prove the base file (builtin_catalogs); an override that reclassifies a code
    # must not fail them, so the merged catalog carries only the override's own examples.
    merged.pop("examples", None)
    over = override.mapping()
    for key, node in over.items():
        if key == "signer" and _renames_signer(merged.get(key), node.value):
            # another plug-in: the built-in signer's options mean nothing to it
            merged[key] = copy.deepcopy(node.value)
        elif key in _DEEP_KEYS and isinstance(node.value, dict) and isinstance(merged.get(key), dict):
            merged[key] = _deep_merge(merged[key], node.value)
        else:
            merged[key] = copy.deepcopy(node.value)
    return Node(merged, override.file, override.path)


def _renames_signer(base: Any, override: Any) -> bool:
    return (isinstance(base, dict) and isinstance(override, dict) and "name" in override
            and override["name"] != base.get("name"))


def _deep_merge(base: dict[Any, Any], override: dict[Any, Any]) -> dict[Any, Any]:
    out = dict(base)
    for raw_key, value in override.items():
        key = str(raw_key) if isinstance(raw_key, int) else raw_key
        if isinstance(value, dict) and isinstance(out.get(key), dict):
            out[key] = _deep_merge(out[key], value)
        else:
            out[key] = value
    return out


# --- parsing and validation ------------------------------------------------------------------------

_ALLOWED = {
    "vendor", "title", "docs_url", "credentials", "optional_credentials", "signer", "check", "code_from", "codes",
    "http_fallback", "quota", "budget", "ratelimit_headers", "examples", "envelope",
    "base_url",  # the vendor's usual base_url, for `config example` only
    "status_page",
}


def parse_check(node: Node, default: CheckSpec | None = None) -> CheckSpec:
    fields = node.mapping({"method", "path", "params", "headers", "body", "requires", "hint"})
    base = default or CheckSpec("GET", "", (), (), None)
    method = fields["method"].text().upper() if "method" in fields else base.method
    if method not in _METHODS:
        fields["method"].fail(f"must be one of {', '.join(_METHODS)}")
    path = fields["path"].text() if "path" in fields and not fields["path"].is_missing() else base.path
    if path and not path.startswith("/"):
        fields["path"].fail("must start with /")
    # A target's params and headers add to the vendor's default check per key: setting Bannersnack's
    # banner hash must not drop its action, nor an extra header Bizwebs' Content-Type.
    params = (tuple(sorted({**dict(base.params), **fields["params"].str_map()}.items())) if "params" in fields
              else base.params)
    headers = (tuple(sorted({**dict(base.headers), **fields["headers"].str_map()}.items())) if "headers" in fields
               else base.headers)
    body = (None if fields["body"].is_missing() else fields["body"].text()) if "body" in fields else base.body
    requires = tuple(item.text(r"path|body|params\.[\w.-]+", "path, body or params.NAME")
                     for item in fields["requires"]) if "requires" in fields else base.requires
    hint = fields["hint"].text() if "hint" in fields else base.hint
    return CheckSpec(method, path, params, headers, body, requires, hint)


def _code_key(node: Node) -> str:
    if isinstance(node.value, float):
        # YAML reads 401.10 as the float 401.1: a silent mix-up, so dotted codes must be quoted.
        node.fail("a code with a dot must be quoted, e.g. '401.10'")
    return node.text(r"[A-Za-z0-9_.-]{1,32}", "letters, digits, '.', '_' or '-' (at most 32)")


def _value_source(node: Node) -> ValueSource:
    if isinstance(node.value, int | float) and not isinstance(node.value, bool):
        return ValueSource("const", const=float(node.value))
    fields = node.mapping({"body", "header"})
    if len(fields) != 1:
        node.fail("must be a number, {body: PATH} or {header: NAME}")
    kind, val = next(iter(fields.items()))
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


#: codes in one vendor's catalog: real ones list tens; this many is a generated file gone wrong
MAX_CODES = 10_000
#: a catalog file of MAX_CODES codes with their messages fits well within this; a larger file is refused
#: from its size, before it is read and parsed (parsing a file of a million codes costs far more)
CATALOG_FILE_LIMIT = 1 << 20


def load_catalog_file(path: Path) -> Node:
    """A ``catalog_files`` entry, refused at once when it is larger than any catalog of MAX_CODES codes."""
    try:
        size = path.stat().st_size
    except (OSError, ValueError):
        size = 0  # load_yaml says what is wrong with it
    if size > CATALOG_FILE_LIMIT:
        raise ConfigError(str(path), "", f"is larger than {CATALOG_FILE_LIMIT >> 20} MiB: a catalog holds at most "
                          f"{MAX_CODES:,} codes")
    return load_yaml(path)


def parse_catalog(name: str, node: Node) -> Catalog:
    fields = node.mapping(_ALLOWED, required=("credentials", "signer", "check", "codes"))
    if "vendor" in fields and fields["vendor"].text() != name:
        fields["vendor"].fail(f"does not match the vendor name {name!r}")
    creds = tuple(cred.text(r"[a-z][a-z0-9_]*", "a lower-case identifier") for cred in fields["credentials"])
    optional = tuple(cred.text(r"[a-z][a-z0-9_]*", "a lower-case identifier")
                     for cred in fields.get("optional_credentials", Node([], node.file, "optional_credentials")))
    optional_nodes = fields.get("optional_credentials", Node([], node.file, "optional_credentials"))
    for cred in [*fields["credentials"], *optional_nodes]:
        if cred.text().endswith("_file"):
            cred.fail("must not end in _file (that suffix names a file holding the credential)")

    sm = fields["signer"].mapping({"name", "options"}, required=("name",))
    signer = sm["name"].choice(SIGNERS)
    options_node = sm["options"] if "options" in sm else Node({}, sm["name"].file, _sibling(sm["name"], "options"))
    signer_options = parse_signer_options(signer, options_node, name, creds)

    check = parse_check(fields["check"])
    sources: list[CodeSource] = []
    for src in fields.get("code_from", Node([{"status": True}], node.file, "code_from")):
        sources.append(_code_source(src))
    if not sources:
        fields["code_from"].fail("must name at least one place")

    codes: dict[str, CodeInfo] = {}
    codes_node = fields["codes"]
    if not isinstance(codes_node.value, dict):
        codes_node.fail("must be a mapping of code -> {class, message}")
    if len(codes_node.value) > MAX_CODES:
        codes_node.fail(f"has {len(codes_node.value):,} codes; a catalog holds at most {MAX_CODES:,}", show=False)
    for key_raw, info in codes_node.value.items():
        entry = Node(info, node.file, f"{codes_node.path}.{key_raw}")
        key = _code_key(Node(key_raw, node.file, entry.path))
        im = entry.mapping({"class", "message", "retry_after", "skewed"}, required=("class",))
        skewed_class, skewed_over, skewed_message = None, 0.0, ""
        if "skewed" in im:
            sk = im["skewed"].mapping({"over", "class", "message"}, required=("over", "class"))
            skewed_class, skewed_over = sk["class"].choice(CLASSES), sk["over"].duration(minimum=1)
            skewed_message = sk["message"].text() if "message" in sk else ""
        message = im["message"].text() if "message" in im else key
        codes[key] = CodeInfo(im["class"].choice(CLASSES), message,
                              im["retry_after"].duration(minimum=1) if "retry_after" in im else None,
                              skewed_class, skewed_over, skewed_message or message)
    for index, source in enumerate(sources):
        if source.nonempty and source.nonempty not in codes:
            fields["code_from"].fail(f"nonempty code {source.nonempty!r} is not listed in codes")
        if source.code and source.code not in codes:
            Node(source.code, node.file, f"code_from[{index}].code").fail("is not listed in codes")

    _text_codes_readable(fields, sources, codes, node.file)

    fallback: dict[str, str] = {}
    if "http_fallback" in fields:
        for status, cls_node in fields["http_fallback"].mapping().items():
            Node(status, cls_node.file, cls_node.path).text(r"[1-5](\d\d|xx)", "an HTTP status or family like 5xx")
            fallback[status] = cls_node.choice(CLASSES)

    quotas: list[QuotaSpec] = []
    for entry in fields.get("quota", Node([], node.file, "quota")):
        qm = entry.mapping({"name", "remaining", "used", "limit", "reset", "request", "informational"},
                           required=("name",))
        remaining = _value_source(qm["remaining"]) if "remaining" in qm else None
        used = _value_source(qm["used"]) if "used" in qm else None
        limit = _value_source(qm["limit"]) if "limit" in qm else None
        if remaining is None and (used is None or limit is None):
            entry.fail("needs remaining, or used and limit")
        quotas.append(QuotaSpec(
            qm["name"].text(r"[a-z][a-z0-9_]{0,31}", "a lower-case identifier"),
            remaining, used, limit,
            qm["reset"].choice(("daily", "monthly", "hourly")) if "reset" in qm else None,
            parse_check(qm["request"]) if "request" in qm else None,
            qm["informational"].boolean() if "informational" in qm else False,
        ))

    budget = parse_budget(fields["budget"]) if "budget" in fields else ()

    return Catalog(
        vendor=name,
        title=fields["title"].text() if "title" in fields else name,
        docs_url=fields["docs_url"].text() if "docs_url" in fields else "",
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
        ratelimit_headers=fields["ratelimit_headers"].boolean() if "ratelimit_headers" in fields else True,
        examples=tuple(_example(example) for example in fields.get("examples", Node([], node.file, "examples"))),
        # a vendor that puts its code in a JSON (XML) body answers JSON (XML): anything else on a 2xx is
        # not its answer; XML first, since a vendor read as XML may also answer its errors in JSON (but a
        # HEAD answer has no body at all)
        envelope=(fields["envelope"].choice(("json", "xml", "none")) if "envelope" in fields
                  else "none" if check.method == "HEAD"
                  else "xml" if any(src.kind == "xml" for src in sources)
                  else "json" if any(src.kind == "body" for src in sources) else "none"),
        status_page=(parse_status_page(fields["status_page"], fields.get("base_url")) if "status_page" in fields
                     else None),
    )


_NUMERIC_CODE = re.compile(r"[0-9]+(\.[0-9]+)?")


def _text_codes_readable(fields: dict[str, Node], sources: list[CodeSource], codes: Mapping[str, CodeInfo],
                         file: str) -> None:
    """The text-code trap: a catalog that lists ``E_QUOTA`` but reads its body code as a number (the
    default type) would classify every such answer ``unknown``, silently. A text code must be one some
    source can yield: a body source of type string or any, a header, or a source's fixed code."""
    if any(src.kind == "header" and src.code is None and src.nonempty is None for src in sources) or any(
            src.kind == "body" and src.type != "integer" and src.code is None and src.nonempty is None
            for src in sources):
        return
    fixed = {src.code for src in sources if src.code} | {src.nonempty for src in sources if src.nonempty}
    for code in codes:
        if code in fixed or _NUMERIC_CODE.fullmatch(code):
            continue
        where = next((index for index, src in enumerate(sources) if src.kind == "body" and src.code is None
                      and src.nonempty is None), None)
        # the key is named unless it came from ${VAR} (the error says where from then)
        key = "" if where is None or isinstance(sources[where].key, Expanded) else f" {sources[where].key}"
        hint = (f"code_from[{where}] reads body{key} as a number (the default type): "
                "add type: string (or any) there" if where is not None
                else "no code_from source reads text: add a body source with type: string")
        codes_node = fields["codes"]
        raise ConfigError(file, f"{codes_node.path}.{code}", f"is a text code, but {hint}",
                          *((sources[where].key,) if key == "" and where is not None else ()))


def parse_status_page(node: Node, base_url: Node | None = None) -> StatusPageSpec | None:
    """``status_page: {url, format, hosts}``; ``null`` says the vendor has none (an override may drop a
    built-in's). ``hosts`` defaults to the host of the catalog's usual ``base_url``."""
    if node.is_missing():
        return None
    fields = node.mapping({"url", "format", "hosts"}, required=("url", "format"))
    if "hosts" in fields:
        hosts = tuple(item.text(r"[A-Za-z0-9.:\[\]-]{1,253}", "a host name or address") for item in fields["hosts"])
    elif base_url is not None and not base_url.is_missing():
        hosts = ((urlsplit(base_url.url()).hostname or ""),)
    else:
        hosts = ()
    return StatusPageSpec(fields["url"].url(), fields["format"].choice(STATUS_FORMATS), hosts)


_BODY_TYPES = ("integer", "string", "any")


def _code_source(src: Node) -> CodeSource:
    sm = src.mapping({"status", "header", "body", "xml", "when_status", "nonempty", "type", "equals", "code",
                      "known_only", "matches", "unlisted"})
    kinds = [source_kind for source_kind in ("status", "header", "body", "xml") if source_kind in sm]
    if len(kinds) != 1:
        src.fail("needs exactly one of status, header, body, xml")
    kind = kinds[0]
    key = "" if kind == "status" else sm[kind].text()
    when = _when(sm["when_status"]) if "when_status" in sm else None
    nonempty = _code_key(sm["nonempty"]) if "nonempty" in sm else None
    if nonempty and kind == "status":
        sm["nonempty"].fail("only applies to a body or header source")
    # an XML element's text is always text: an xml source's codes are names (or digits read as names)
    body_type = sm["type"].choice(_BODY_TYPES) if "type" in sm else ("string" if kind == "xml" else "integer")
    if "type" in sm and kind != "body":
        sm["type"].fail("only applies to a body source")
    equals: tuple[str | int | float | bool, ...] = ()
    if "equals" in sm:
        items = sm["equals"].seq() if isinstance(sm["equals"].value, list) else [sm["equals"]]
        for item in items:
            if not isinstance(item.value, str | int | float | bool):
                item.fail("must be a string, number or true/false (or a list of them)")
        equals = tuple(item.value for item in items)
        if not equals or kind == "status":
            sm["equals"].fail("needs a value and a body, xml or header source")
    matches: TextPattern | None = None
    if "matches" in sm:
        if kind == "status":
            sm["matches"].fail("only applies to a body, xml or header source")
        pattern = sm["matches"].text()
        try:
            matches = TextPattern(pattern, re2.compile(pattern, _RE2_OPTIONS))
        except re2.error as exc:
            # RE2's reason quotes the offending part of the pattern: not when it came from outside the file
            why = "" if isinstance(pattern, Expanded) else ": " + _re2_reason(exc)
            sm["matches"].fail(f"is not an RE2 regular expression (Prometheus' syntax: no backreferences or "
                               f"lookaround){why}")
        if equals:
            src.fail("equals and matches exclude each other: each yields code")
    code = _code_key(sm["code"]) if "code" in sm else None
    if matches is not None and code is None:
        src.fail("matches and code go together: a value the pattern is found in yields code")
    if matches is None and bool(equals) != (code is not None):
        src.fail("equals and code go together: a value equal to one of equals yields code")
    if nonempty and code:
        src.fail("nonempty and equals/code exclude each other")
    known_only = sm["known_only"].boolean() if "known_only" in sm else False
    # unlisted: what a code the catalog does not list means: unknown (the default), the next source's
    # verdict (known_only), or the class of the answer's HTTP status with the code kept as its label
    unlisted = sm["unlisted"].choice(("unknown", "next", "status")) if "unlisted" in sm else (
        "next" if known_only else "unknown")
    if "unlisted" in sm and "known_only" in sm and (unlisted == "next") != known_only:
        sm["unlisted"].fail("contradicts known_only (known_only: true is unlisted: next)")
    if unlisted != "unknown" and (code is not None or nonempty):
        src.fail("known_only and unlisted apply to a source that reads a code, not one that yields a fixed code")
    return CodeSource(kind, key, when, nonempty, body_type, equals, code, unlisted == "next", matches,
                      unlisted == "status")


def _re2_reason(exc: Exception) -> str:
    reason = exc.args[0] if exc.args else ""
    return reason.decode("utf-8", "replace") if isinstance(reason, bytes) else str(reason)


def _example(node: Node) -> CatalogExample:
    em = node.mapping({"status", "headers", "body", "class", "code"}, required=("status", "class", "code"))
    status = em["status"].integer(100, 599)
    headers = tuple(em["headers"].str_map().items()) if "headers" in em else ()
    body = b""
    if "body" in em and not em["body"].is_missing():
        raw = em["body"].value
        # a mapping or list is the JSON the vendor sends; a string is sent as it is (an HTML error page)
        body = raw.encode() if isinstance(raw, str) else json.dumps(raw, default=str).encode()
    cls = em["class"].choice(CLASSES)
    code = em["code"].text(r"[A-Za-z0-9_.-]{1,32}", "a code label (letters, digits, '.', '_' or '-')")
    return CatalogExample(f"{node.file}: {node.path}", status, headers, body, cls, code)


def _sibling(node: Node, key: str) -> str:
    return node.path.rsplit(".", 1)[0] + "." + key if "." in node.path else key


def parse_signer_options(signer: str, node: Node, vendor: str, credentials: tuple[str, ...]) -> Any:
    """``signer.options`` checked against the plug-in's declared options: every unknown, missing or
    mistyped option is one ConfigError naming the file, the key path and the value."""
    plugin = SIGNERS[signer]
    specs = {spec.name: spec for spec in option_specs(plugin.Options)}
    given = node.mapping()
    for key, opt in given.items():
        if key not in specs:
            known = ", ".join(sorted(specs)) or "none"
            opt.fail(f"unknown option for signer {signer} (known: {known})")
    values: dict[str, Any] = {}
    for spec in specs.values():
        value = given.get(spec.name)
        if value is None or value.is_missing():
            if spec.required:
                Node(None, node.file, f"{node.path}.{spec.name}").fail(
                    f"is required by signer {signer}", show=False)
            if spec.kind == "credential" and spec.default not in credentials:
                Node(None, node.file, f"{node.path}.{spec.name}").fail(
                    f"is required: {vendor}.credentials has no {spec.default!r}", show=False)
            continue
        values[spec.name] = _option_value(spec, value, vendor, credentials)
    return plugin.Options(**values)


def _option_value(spec: OptionSpec, node: Node, vendor: str, credentials: tuple[str, ...]) -> Any:
    kind = spec.kind
    if kind == "seconds":
        seconds = node.number()
        if not 0 <= seconds < math.inf:
            node.fail("must be a number of seconds, 0 or more")
        return seconds
    if kind == "boolean":
        return node.boolean()
    if kind == "strings":
        return tuple(item.text() for item in node)
    if kind == "mapping":
        return tuple(sorted(node.str_map().items()))
    text = _string(node)
    if not text and spec.default != "":
        node.fail("must not be empty")  # only options whose default is empty take empty for "none"
    if kind == "credential" and text not in credentials:
        node.fail(f"names a credential not listed in {vendor}.credentials ({', '.join(credentials)})")
    if kind == "path" and text and not text.startswith("/"):
        node.fail("must be a path starting with /")
    if kind == "url_or_path" and not text.startswith("/"):
        node.url()
    if kind == "url_template":
        names = _fields(node, text)
        for field_name in names:
            if field_name not in credentials:
                node.fail(f"{{{field_name}}} is not a credential listed in {vendor}.credentials")
        if not text.startswith("/"):  # checked with each {name} filled in
            Node(text.format_map(dict.fromkeys(names, "x")), node.file, node.path).url()
    if spec.choices and text not in spec.choices:
        node.fail(f"must be one of {', '.join(spec.choices)}")
    if kind == "template":
        for field_name in _fields(node, text):
            if field_name not in credentials:
                node.fail(f"{{{field_name}}} is not a credential listed in {vendor}.credentials")
    return text


def _string(node: Node) -> str:
    # a number or a boolean where a name is expected is a slip, not a name
    if not isinstance(node.value, str):
        node.fail("must be a string")
    return node.value


def _fields(node: Node, text: str) -> list[str]:
    try:
        return [name for _, name, _, _ in string.Formatter().parse(text) if name is not None]
    except ValueError:
        node.fail("has an unbalanced { or }")


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
