"""Target state: what the exporter knows about each target, updated once per probe.

The state owns the counters, the latest outcome, the last known quota figures and a bounded history.
It knows no metric names: a ``render`` hook (the collector's) is called after each update so that a
scrape only joins text that was prepared when the probe finished.

The history is kept in columns: each probe is one fixed-size row of packed numbers (start time,
duration, attempts) and the index of its answer in a small per-target table of the distinct answers
(class, code, message, HTTP status, Retry-After, request line, excerpt), which the probes of a healthy
target share. A full history therefore costs a few dozen bytes a probe instead of several objects and
strings each.

It also owns reload reconciliation (``kept``): which targets of a new config carry their state over.
"""

from __future__ import annotations

import contextlib
import logging
import struct
import sys
import zlib
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field, replace
from typing import Any

from .config import Target
from .model import CLASSES, FAILURE, UP, Outcome, ProbeResult, QuotaReading
from .trace import cap, decision

__all__ = ["DURATION_BUCKETS", "MAX_FOREIGN_CODES", "HistoryEntry", "Rendered", "State", "TargetState", "kept"]


@dataclass(frozen=True, slots=True)
class Rendered:
    """One target's samples as exposition text, prepared by the collector after each change and laid
    out as the collector decides (state only keeps it): encoded fragments per metric family, the
    target's label set and the shapes of the families that a scrape joins with it."""

    parts: tuple[bytes, ...]
    size: int  # bytes this target adds to /metrics
    labels: bytes = b""
    shapes: tuple[tuple[bytes, ...], ...] = ()
    present: int = 0  # which families have samples (as the collector encodes it)


log = logging.getLogger(__name__)

DURATION_BUCKETS: tuple[float, ...] = (0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0)
#: codes outside the vendor's catalog (unknown codes, http_NNN fallbacks, transport codes) that get
#: a label of their own per target; the rest are counted under ``other``, so series stay bounded.
MAX_FOREIGN_CODES = 16
#: how many classes the status page's strip shows
RECENT_CLASSES = 20
_CLASS_INDEX = {cls: index for index, cls in enumerate(CLASSES)}
_UNKNOWN = _CLASS_INDEX["unknown"]


def kept(old: Target | None, new: Target) -> bool:
    """After a (re)load, whether what a target had (counters, history, schedule) carries over to its
    new config: when its name (looked up by the caller) and vendor are unchanged. A target whose
    vendor changed starts afresh, since its codes mean other things."""
    return old is not None and old.vendor == new.vendor


@dataclass(frozen=True, slots=True)
class HistoryEntry:
    """One probe as the status page and the API show it, rebuilt from the history's columns."""

    started: float  # wall clock
    duration: float
    cls: str
    code: str
    message: str
    http_status: int
    retry_after: float | None
    attempts: int
    request_line: str  # redacted by the prober
    excerpt: str  # redacted by the prober


#: what probes of one target share: (class, code, message, HTTP status, Retry-After, request line, excerpt)
_Answer = tuple[str, str, str, int, float | None, str, str]
#: one history row: start time, duration, index into the answers (two rings of at most ``history`` rows
#: refer to them: 16 bits hold config's bound), attempts (capped)
_ROW = struct.Struct("<ddHB")
_Row = tuple[float, float, int, int]


def _intern(part: object) -> object:
    return sys.intern(part) if type(part) is str else part


class _Answers:
    """The distinct answers a target's history refers to, each kept once and dropped with its last row.

    A target has a handful of distinct answers, so they are found by a scan of one list; a dict
    (a couple of hundred bytes a target, at 10,000 targets a few MB) is only made for the target whose
    answers differ every probe, once they are more than ``_SCAN``."""

    __slots__ = ("_cells", "_free", "_index", "_last", "_live")

    #: up to this many answers a lookup compares them in turn (each comparison stops at the first field
    #: that differs; the repeat of the last answer is found first)
    _SCAN = 8

    def __init__(self) -> None:
        self._index: dict[_Answer, int] | None = None
        #: slot i's answer (None once released) at 2i, the rows referring to it at 2i + 1: one list, not two
        self._cells: list[Any] = []
        self._free: list[int] | None = None  # slots to reuse, made when one is first released
        self._last: _Answer | None = None
        self._live = 0

    def __len__(self) -> int:
        return self._live

    def _find(self, answer: _Answer) -> int | None:
        if self._index is not None:
            return self._index.get(answer)
        try:
            return self._cells.index(answer) >> 1  # a count never equals an answer: always an even cell
        except ValueError:
            return None

    def add(self, answer: _Answer) -> int:
        slot = self._find(answer)
        cells = self._cells
        if slot is None:
            answer = self._share(answer)
            if self._free:
                slot = self._free.pop()
                cells[2 * slot], cells[2 * slot + 1] = answer, 0
            else:
                slot = len(cells) >> 1
                cells += (answer, 0)
            self._live += 1
            if self._index is not None:
                self._index[answer] = slot
            elif self._live > self._SCAN:
                self._index = {item: at >> 1 for at, item in enumerate(cells) if type(item) is tuple}
            self._last = answer
        cells[2 * slot + 1] += 1
        return slot

    def _share(self, answer: _Answer) -> _Answer:
        """A new answer that differs from the last new one in a part or two (a Retry-After counting
        down, an excerpt with a request id) holds the last one's copies of the rest; its new text is
        interned, so the targets that get the same answer (a vendor's "OK") keep one copy of it."""
        last = self._last
        if last is None:
            return tuple(_intern(part) for part in answer)  # type: ignore[return-value]
        return tuple(old if old == new else _intern(new) for old, new in zip(last, answer, strict=True))  # type: ignore[return-value]

    def get(self, slot: int) -> _Answer:
        answer: _Answer | None = self._cells[2 * slot]
        assert answer is not None
        return answer

    def release(self, slot: int) -> None:
        cells = self._cells
        cells[2 * slot + 1] -= 1
        if cells[2 * slot + 1] == 0:
            answer = cells[2 * slot]
            assert answer is not None
            if self._index is not None:
                del self._index[answer]
            cells[2 * slot] = None
            self._live -= 1
            if self._free is None:
                self._free = []
            self._free.append(slot)


class _Ring:
    """At most ``cap`` rows, oldest first, in one preallocated buffer."""

    __slots__ = ("_buf", "_head", "cap", "size")

    def __init__(self, cap: int) -> None:
        self.cap = cap
        self._buf = bytearray()
        self._head = 0  # position of the oldest row once the ring is full
        self.size = 0

    def push(self, row: _Row) -> _Row | None:
        """Append a row; returns the row it pushed out, if the ring was full."""
        if not self._buf:
            self._buf = bytearray(self.cap * _ROW.size)
        if self.size < self.cap:
            _ROW.pack_into(self._buf, self.size * _ROW.size, *row)
            self.size += 1
            return None
        offset = self._head * _ROW.size
        old: _Row = _ROW.unpack_from(self._buf, offset)
        _ROW.pack_into(self._buf, offset, *row)
        self._head = (self._head + 1) % self.cap
        return old

    def rows(self) -> list[_Row]:
        """Oldest first."""
        start = self._head if self.size == self.cap else 0
        return [_ROW.unpack_from(self._buf, ((start + index) % self.cap) * _ROW.size) for index in range(self.size)]


@dataclass(slots=True)
class TargetState:
    target: Target
    last: ProbeResult | None = None
    since: float = 0.0  # wall time the current class began
    responses: dict[tuple[str, str], int] = field(default_factory=dict)
    auth_failures: dict[str, int] = field(default_factory=dict)
    #: a tuple, not a set: most targets never see one, and an empty set costs some 200 bytes a target
    foreign_codes: tuple[str, ...] = ()
    bucket_counts: list[int] = field(default_factory=lambda: [0] * len(DURATION_BUCKETS))
    duration_sum: float = 0.0
    probes: int = 0
    consecutive_failures: int = 0
    quotas: dict[str, QuotaReading] = field(default_factory=dict)
    #: per quota, when an answer last reported it (the pages show a figure's age); None until one did
    quota_seen: dict[str, float] | None = None
    clock_skew: float | None = None
    #: earliest notAfter of the vendor's certificates on the last TLS answer; None: never over TLS
    tls_cert_expiry: float | None = None
    next_probe_at: float = 0.0
    backoff: float = 0.0
    #: probes kept for the pages: the last ``history_size`` ones, and the last ``history_size`` failures
    history_size: int = 50
    #: the classes of the last ``RECENT_CLASSES`` probes, oldest first, one byte each (see ``classes``)
    _classes: bytearray = field(default_factory=bytearray, repr=False)
    rendered: Rendered | None = None  # the collector's prepared text for this target, None before any
    _answers: _Answers = field(default_factory=_Answers, repr=False)
    _recent: _Ring | None = field(default=None, repr=False)
    #: failures pushed out of the recent ring, newest last; see ``history`` for how many are shown
    _older_failures: _Ring | None = field(default=None, repr=False)
    _recent_failures: int = field(default=0, repr=False)  # rows of the recent ring whose class is a failure
    #: the traces of the last traced failure and success (see ``traces``): (probe start, the redacted text
    #: with what the scheduler did next, zlib-compressed: two per target, at thousands of targets)
    _trace_failure: tuple[float, bytes] | None = field(default=None, repr=False)
    _trace_success: tuple[float, bytes] | None = field(default=None, repr=False)
    #: the last traced probe was a failure that ``confirm_failures`` re-probes at once
    _confirming: bool = field(default=False, repr=False)

    def bounded_code(self, code: str) -> str:
        if code in self.target.catalog.codes or code in self.foreign_codes:
            return code
        if len(self.foreign_codes) < MAX_FOREIGN_CODES:
            self.foreign_codes += (code,)
            return code
        return "other"

    def record(self, result: ProbeResult) -> None:
        out = result.outcome
        code = self.bounded_code(out.code)
        if self.last is None or self.last.outcome.cls != out.cls:
            self.since = result.started
        self.last = result
        key = (out.cls, code)
        seen = self.responses.get(key)
        if seen is None:  # the key stays for good: its code is the one copy every target shares
            key = (out.cls, sys.intern(code))
        self.responses[key] = (seen or 0) + 1
        if out.cls == "auth":
            self.auth_failures[code] = self.auth_failures.get(code, 0) + 1
        for index, bound in enumerate(DURATION_BUCKETS):
            if result.duration <= bound:
                self.bucket_counts[index] += 1
        self.duration_sum += result.duration
        self.probes += 1
        self.consecutive_failures = 0 if out.cls in UP else self.consecutive_failures + 1
        if out.quotas:
            reported = self.quota_seen if self.quota_seen is not None else {}
            for quota in out.quotas:
                self.quotas[quota.name] = quota
                reported[quota.name] = result.started
            self.quota_seen = reported
        if out.clock_skew is not None:
            self.clock_skew = out.clock_skew
        if result.tls_cert_expiry is not None:
            self.tls_cert_expiry = result.tls_cert_expiry
        elif not self.target.base_url.startswith("https:"):
            self.tls_cert_expiry = None  # a reload moved the target to plain HTTP
        self._remember(result)
        self._classes.append(_CLASS_INDEX.get(out.cls, _UNKNOWN))
        if len(self._classes) > RECENT_CLASSES:
            del self._classes[0]

    @property
    def classes(self) -> list[str]:
        """The classes of the last ``RECENT_CLASSES`` probes, oldest first (the status page's strip)."""
        return [CLASSES[index] for index in self._classes]

    def _remember(self, result: ProbeResult) -> None:
        out = result.outcome
        slot = self._answers.add((out.cls, out.code, out.message, out.http_status, out.retry_after,
                                  result.request_line, result.excerpt))
        self._push((result.started, result.duration, slot, min(result.attempts, 255)))

    def _push(self, row: _Row) -> None:
        if self._recent is None:
            self._recent = _Ring(self.history_size)
        if self._failed(row):
            self._recent_failures += 1
        gone = self._recent.push(row)
        if gone is None:
            return
        if not self._failed(gone):
            self._answers.release(gone[2])
            return
        self._recent_failures -= 1
        if self._older_failures is None:
            self._older_failures = _Ring(self.history_size)
        if (dropped := self._older_failures.push(gone)) is not None:
            self._answers.release(dropped[2])

    def _failed(self, row: _Row) -> bool:
        return self._answers.get(row[2])[0] in FAILURE

    def _rows(self) -> tuple[list[_Row], list[_Row]]:
        """The recent rows and the older failures still shown, both oldest first. Shown are the last
        ``history_size`` probes and the last ``history_size`` failures: of the failures pushed out of the
        recent ring, as many as those in it leave room for."""
        recent = self._recent.rows() if self._recent is not None else []
        older = self._older_failures.rows() if self._older_failures is not None else []
        room = max(0, self.history_size - self._recent_failures)
        return recent, (older[max(0, len(older) - room):] if room else [])

    def history(self) -> list[HistoryEntry]:
        """Recent probes, newest first; failures older than the recent ring are kept too."""
        recent, older = self._rows()
        entries = [self._entry(row) for row in recent + older]
        return sorted(entries, key=lambda entry: entry.started, reverse=True)

    def _entry(self, row: _Row) -> HistoryEntry:
        started, duration, slot, attempts = row
        cls, code, message, status, retry, line, excerpt = self._answers.get(slot)
        return HistoryEntry(started, duration, cls, code, message, status, retry, attempts, line, excerpt)

    def keep_trace(self, result: ProbeResult, next_probe_at: float, backoff: float) -> None:
        """Keep the probe's trace (when it has one) as the last failure's or success's, with the
        scheduler's decision after it; at most ``TRACE_MAX_CHARS`` each, so two per target stay small."""
        if result.trace is None:
            return
        out, target = result.outcome, self.target
        ended = result.started + result.duration
        # the scheduler records the first failure of a confirmation with the re-probe planned within
        # half the interval and no backoff (a failure planned as usual is about an interval or a backoff
        # away); the confirming probe's own answer is planned as usual
        confirming = (target.confirm_failures and out.cls not in UP and backoff == 0 and not self._confirming
                      and next_probe_at - ended <= target.interval / 2)
        follows = decision(out, target.interval, max(0.0, next_probe_at - ended), backoff, confirming=confirming,
                           requests=result.requests)
        if self._confirming:
            verdict = "not confirmed, the target counts as up" if out.cls in UP else "confirmed"
            follows = ("confirmation: this probe re-checked the failure of the probe just before it "
                       f"(confirm_failures): {verdict}\n" + follows)
        self._confirming = confirming
        entry = (result.started, zlib.compress(cap(result.trace, tail=follows).encode()))
        if out.cls in UP:
            self._trace_success = entry
        else:
            self._trace_failure = entry

    def traces(self) -> dict[str, tuple[float, str] | None]:
        """The kept traces, ``failure`` and ``success``: (probe start, text), None when there is none."""
        return {kind: None if held is None else (held[0], zlib.decompress(held[1]).decode())
                for kind, held in (("failure", self._trace_failure), ("success", self._trace_success))}

    def resize(self, size: int) -> None:
        """A new history size, keeping the newest probes and failures."""
        if size == self.history_size:
            return
        recent, older = self._rows()
        keep = recent[-size:]
        pushed_out = older + [row for row in recent[:-size] if self._failed(row)]
        answers = self._answers
        self.history_size, self._answers = size, _Answers()
        self._recent = self._older_failures = None
        self._recent_failures = 0
        for row in pushed_out[-size:]:
            if self._older_failures is None:
                self._older_failures = _Ring(size)
            self._older_failures.push((row[0], row[1], self._answers.add(answers.get(row[2])), row[3]))
        for row in keep:
            self._push((row[0], row[1], self._answers.add(answers.get(row[2])), row[3]))


class State:
    """All targets' state, in config order. ``render`` is called after every change of a target."""

    def __init__(self, render: Callable[[TargetState], Rendered] | None = None, history: int = 50) -> None:
        self._targets: dict[str, TargetState] = {}
        self._render = render
        self._history = history
        #: renderings that raised (a bug, or a value no encoder can write): each one logged, none fatal
        self.render_failures = 0

    def __iter__(self) -> Iterator[TargetState]:
        return iter(list(self._targets.values()))

    def __len__(self) -> int:
        return len(self._targets)

    def get(self, name: str) -> TargetState | None:
        return self._targets.get(name)

    def sync(self, targets: Iterable[Target], history: int | None = None) -> None:
        """Apply a (re)loaded config: removed targets are dropped, new ones start empty, and a kept one
        (see ``kept``) keeps what it had under its new config. A new ``history`` size applies to kept
        targets too, keeping their newest entries."""
        self._history = history or self._history
        fresh: dict[str, TargetState] = {}
        for target in targets:
            ts = self._targets.get(target.name)
            if ts is not None and kept(ts.target, target):
                ts.target = target
                ts.resize(self._history)
            else:
                ts = TargetState(target, history_size=self._history)
            self._refresh(ts)
            fresh[target.name] = ts
        self._targets = fresh

    def record(self, result: ProbeResult, next_probe_at: float, backoff: float) -> TargetState | None:
        ts = self._targets.get(result.target)
        if ts is None:
            return None  # removed by a reload while its probe was in flight
        # the trace is kept apart (keep_trace), with what follows: ``last`` need not hold a second copy
        ts.record(replace(result, trace=None) if result.trace is not None else result)
        ts.next_probe_at, ts.backoff = next_probe_at, backoff
        ts.keep_trace(result, next_probe_at, backoff)
        self._refresh(ts)
        return ts

    def schedule(self, name: str, next_probe_at: float) -> None:
        if (ts := self._targets.get(name)) is not None:
            ts.next_probe_at = next_probe_at
            self._refresh(ts)

    def clear_backoff(self, name: str) -> None:
        if (ts := self._targets.get(name)) is not None and ts.backoff:
            ts.backoff = 0.0
            self._refresh(ts)

    def _refresh(self, ts: TargetState) -> None:
        if self._render is None:
            return
        try:
            ts.rendered = self._render(ts)
        except Exception as exc:  # noqa: BLE001 - a probe task must never die from rendering its own result
            self.render_failures += 1
            log.error("rendering target %s failed, it is shown as unknown/render_error: %s",
                      ts.target.name, exc.__class__.__name__)
            started = ts.last.started if ts.last is not None else 0.0
            stand_in = ProbeResult(ts.target.name, started, 0.0,
                                   Outcome("unknown", "render_error", "the result could not be rendered", 0), "", "")
            # the target stays on /metrics, as unknown (without the parts that may have broken it, if
            # need be); failing that, as it was before
            for fallback in (replace(ts, last=stand_in), replace(ts, last=stand_in, quotas={}, responses={},
                                                                 auth_failures={})):
                with contextlib.suppress(Exception):
                    ts.rendered = self._render(fallback)
                    break
