"""The vocabulary and the records every stage shares; stdlib only, and it imports nothing of ours.

Data flows config -> scheduler -> prober -> classifier -> state -> collector and views; the records
that travel between those stages live here so that no stage has to import the one that produced them.
"""

from __future__ import annotations

import enum
from collections.abc import Mapping
from dataclasses import dataclass, field, fields
from typing import Any

__all__ = [
    "ALL",
    "BACKOFF",
    "CLASSES",
    "FAILURE",
    "PHASES",
    "TRACE_MAX_CHARS",
    "UP",
    "Answer",
    "ConfigError",
    "Expanded",
    "Explanation",
    "ExporterError",
    "ExporterStatus",
    "Failure",
    "HttpRequest",
    "Outcome",
    "OutcomeClass",
    "ProbeResult",
    "QuotaReading",
    "RecordError",
    "Shard",
    "SignError",
    "StartLag",
]


class OutcomeClass(enum.StrEnum):
    """Every answer and every failed attempt gets exactly one of these (docs/metrics.md, "Classes").

    A ``StrEnum``: members compare equal to their value, so catalogs, label values and older code that
    compares with plain strings keep working."""

    OK = "ok"
    DEGRADED = "degraded"
    PROCESSING = "processing"
    MAINTENANCE = "maintenance"
    AUTH = "auth"
    CLOCK_SKEW = "clock_skew"
    RATE_LIMITED = "rate_limited"
    QUOTA_EXCEEDED = "quota_exceeded"
    CLIENT_ERROR = "client_error"
    SERVER_ERROR = "server_error"
    TIMEOUT = "timeout"
    NETWORK_ERROR = "network_error"
    UNKNOWN = "unknown"


# Typed as plain strings: an Outcome's class is compared with catalog text, label values and JSON.
#: every class, in the order metrics and pages list them
CLASSES: tuple[str, ...] = tuple(OutcomeClass)
#: the vendor answered and the check did its job (``apistatus_up`` is 1)
UP: frozenset[str] = frozenset({OutcomeClass.OK, OutcomeClass.DEGRADED, OutcomeClass.PROCESSING})
#: the vendor asked us, or is known, to come back later: the next probe waits longer
BACKOFF: frozenset[str] = frozenset({
    OutcomeClass.MAINTENANCE, OutcomeClass.RATE_LIMITED, OutcomeClass.QUOTA_EXCEEDED, OutcomeClass.SERVER_ERROR})
FAILURE: frozenset[str] = frozenset(OutcomeClass) - UP


# --- records ---------------------------------------------------------------------------------------


#: the phases of one HTTP request, as blackbox_exporter names them (``Answer.phases`` in this order)
PHASES: tuple[str, ...] = ("resolve", "connect", "tls", "processing", "transfer")


@dataclass(frozen=True, slots=True)
class HttpRequest:
    """One request before it is sent. ``url`` has no query string; ``params`` become it."""

    method: str
    url: str
    params: tuple[tuple[str, str], ...] = ()
    headers: Mapping[str, str] = field(default_factory=dict)
    body: bytes | None = None


@dataclass(frozen=True, slots=True)
class Answer:
    """What came back. ``headers`` keys are lower-case; ``body`` is capped by the prober."""

    status: int
    headers: Mapping[str, str]
    body: bytes
    truncated: bool = False
    #: earliest notAfter of the vendor's certificates on this answer's TLS connection; None for plain HTTP
    tls_cert_expiry: float | None = None
    #: seconds spent in each of ``PHASES`` (resolve, connect, tls, processing, transfer); None: not timed
    phases: tuple[float, float, float, float, float] | None = None
    #: TLS version and cipher ("1.3 TLS_AES_128_GCM_SHA256"), told for a debug trace's requests only; "" otherwise
    tls_version: str = ""
    #: (notBefore, notAfter) of the vendor's own certificate (the first of its chain); None for plain HTTP
    tls_cert_validity: tuple[float, float] | None = None


@dataclass(frozen=True, slots=True)
class Failure:
    """No usable answer: ``cls`` is timeout or network_error (or auth from a refused login)."""

    cls: str
    code: str
    message: str
    http_status: int = 0


@dataclass(frozen=True, slots=True)
class QuotaReading:
    name: str
    remaining: float | None
    limit: float | None
    reset_at: float | None = None


@dataclass(frozen=True, slots=True)
class Outcome:
    cls: str
    code: str
    message: str
    http_status: int
    retry_after: float | None = None
    quotas: tuple[QuotaReading, ...] = ()
    clock_skew: float | None = None


@dataclass(frozen=True, slots=True)
class ProbeResult:
    target: str
    started: float  # wall clock
    duration: float  # seconds, all attempts of this probe
    outcome: Outcome
    request_line: str  # redacted
    excerpt: str  # redacted start of the response body
    attempts: int = 1
    #: HTTP requests this probe cost the vendor (logins and quota calls included)
    requests: int = 1
    #: the check's answer came over TLS: the earliest notAfter the vendor presented (Unix seconds)
    tls_cert_expiry: float | None = None
    #: the check's final request, seconds in each of ``PHASES``; None when no answer came
    phases: tuple[float, float, float, float, float] | None = None
    #: a readable account of the probe (every request, login and answer, what decided the class),
    #: redacted and at most ``TRACE_MAX_CHARS``; None when the prober did not trace this probe
    trace: str | None = None


#: a stored or printed trace is cut at this many characters (the target page keeps two per target)
TRACE_MAX_CHARS = 4096


@dataclass(frozen=True, slots=True)
class Explanation:
    """Why an answer got its class: which ``code_from`` source gave the code and which catalog entry
    (or HTTP fallback) turned it into the class; ``notes`` are the sources passed over, and why."""

    source: str
    entry: str
    cls: str
    code: str
    notes: tuple[str, ...] = ()


# --- errors ----------------------------------------------------------------------------------------


class ExporterError(Exception):
    """The root of the exporter's own errors."""


class RecordError(ExporterError):
    """An error that carries fields for the step that handles it, declared as a dataclass (``eq=False``
    and ``repr=False``: compared and shown as an exception); its text is its ``message`` field."""

    message: str

    def __post_init__(self) -> None:
        super().__init__(self.message)

    def __reduce__(self) -> tuple[Any, ...]:
        # an exception is copied and pickled as ``type(self)(*self.args)``, and ``args`` holds the message
        # alone: rebuilt from its fields instead (a signer copies the failure each waiting probe raises)
        record: Any = self  # a dataclass: every subclass is declared as one
        values = {f.name: getattr(self, f.name) for f in fields(record)}
        state = {key: value for key, value in vars(self).items() if key not in values}  # __notes__, say
        return _rebuilt, (type(self), values), state or None


def _rebuilt(cls: type[RecordError], values: dict[str, Any]) -> RecordError:
    return cls(**values)


_UNSET: Any = object()


class Expanded(str):
    """A config string with something from outside the file in it (``${VAR}``, a ``*_file``): an error
    may say where it came from (``sources``: ``${VAR}``, ``KEY_file``), never what it holds, whatever
    the type of the value it sits in."""

    sources: tuple[str, ...] = ()


def _expanded_sources(value: Any) -> tuple[str, ...] | None:
    """The ``${VAR}`` names held anywhere in ``value`` (a list or mapping too); None when it holds none.
    A value too large to search is treated as holding some."""
    found: dict[str, None] = {}
    stack, seen = [value], 0
    while stack:
        item = stack.pop()
        seen += 1
        if seen > 10_000:
            return tuple(found) or ("?",)
        if isinstance(item, Expanded):
            found.update(dict.fromkeys(item.sources))
        elif isinstance(item, dict):
            stack.extend(item.keys())
            stack.extend(item.values())
        elif isinstance(item, list | tuple | set | frozenset):
            stack.extend(item)
    return tuple(found) if found else None


class ConfigError(ExporterError):
    """A bad config or catalog value. ``str()`` is the one line a user sees."""

    def __init__(self, file: str, path: str, reason: str, value: Any = _UNSET) -> None:
        self.file, self.path, self.reason = file, path, reason
        sources = None if value is _UNSET else _expanded_sources(value)
        if sources is not None:  # expanded from the environment: where from, never what
            value = _UNSET
            shown = f" (value not shown: it comes from {', '.join(sources)})"
        else:
            shown = "" if value is _UNSET else f" (got {_short(value)})"
        self.value = None if value is _UNSET else value
        # a key path echoes key names as written: YAML's "\n" or "\e" escapes must not forge a second line
        # or reach a terminal, and a key of 100,000 characters must not make a line of that size
        where = f"{_visible(file)}: {_visible(_cut(path, _PATH_SHOWN))}" if path else _visible(file)
        super().__init__(f"{where}: {_visible(reason)}{shown}")


#: characters of a key path an error shows: a real one is far shorter
_PATH_SHOWN = 256


def _cut(text: str, width: int) -> str:
    return text if len(text) <= width else text[:width - 3] + "..."


def _short(value: Any) -> str:
    text = _flow(value)
    return text if len(text) <= 80 else text[:77] + "..."


def _flow(value: Any, depth: int = 0) -> str:
    """A value as the user would write it in YAML (flow style), never a Python repr: ``true`` not
    ``True``, ``{a: 1}`` not ``{'a': 1}``; text quoted so blanks and empty strings show."""
    if depth > 4:
        return "..."
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float):
        return repr(value)
    if isinstance(value, str):
        # single quotes are YAML's literal quoting; text that needs escapes gets YAML's double quotes
        return "'" + value.replace("'", "''") + "'" if value.isprintable() else _double(value)
    if isinstance(value, Mapping):
        items = [f"{_key(key)}: {_flow(item, depth + 1)}" for key, item in list(value.items())[:20]]
        return "{" + ", ".join(items) + "}"
    if isinstance(value, list | tuple):
        return "[" + ", ".join(_flow(item, depth + 1) for item in list(value)[:20]) + "]"
    return _flow(str(value), depth)


def _key(key: Any) -> str:
    text = str(key)
    return text if text and all(c.isalnum() or c in "_-." for c in text) else _flow(text)


def _double(text: str) -> str:
    return '"' + _visible(text.replace("\\", "\\\\").replace('"', '\\"')) + '"'


def _visible(text: str) -> str:
    """``text`` with every character that is not printable as a YAML-style escape (``\\x1b``)."""
    if text.isprintable():
        return text
    out = []
    for char in text:
        if char.isprintable():
            out.append(char)
        else:
            code = ord(char)
            out.append(f"\\x{code:02x}" if code < 0x100 else f"\\u{code:04x}" if code < 0x10000 else f"\\U{code:08x}")
    return "".join(out)


@dataclass(eq=False, repr=False)
class SignError(RecordError):
    """Signing failed (e.g. the login call was refused); carries a class and a short code."""

    cls: str
    code: str
    message: str
    http_status: int = 0
    #: the token endpoint's refusal, when the vendor's catalog is to classify it (oauth2): the
    #: prober then classifies this answer instead of taking ``cls`` and ``code``
    answer: Answer | None = None


# --- the exporter's own status -----------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Shard:
    index: int
    count: int

    def __str__(self) -> str:
        return f"{self.index}/{self.count}"


#: every replica, as one process would see it: the config as loaded
ALL = Shard(0, 1)


@dataclass(frozen=True, slots=True)
class StartLag:
    """Planned-to-actual start of probes, seconds."""

    recent: tuple[float, ...]  # of the latest probes, in the scheduler's window
    total: float  # sum over every probe started so far
    count: int  # probes started so far


@dataclass(frozen=True, slots=True)
class ExporterStatus:
    """The exporter's own figures, as of one scrape."""

    reload_successful: bool = True
    reload_success_timestamp: float = 0.0
    targets: int = 0
    start_lag: StartLag | None = None  # None until the scheduler runs
    #: which of the fleet's replicas this is (0/1 when not sharded)
    shard: Shard = ALL
    #: probes started and not finished (or waiting for a concurrency slot)
    in_flight: int = 0
    #: (vendor, probes held back because the credential's request budget was spent), by vendor
    budget_delays: tuple[tuple[str, int], ...] = ()
    #: the web config's re-reads: (whether the latest succeeded, how many failed); None without one
    web_config: tuple[bool, int] | None = None
