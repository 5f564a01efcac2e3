"""Target state: what the exporter knows about each target, updated once per probe.

The state owns the counters, the latest outcome, the last known quota figures and a bounded history.
It knows no metric names: a ``render`` hook (the collector's) is called after each update so that a
scrape only joins text that was prepared when the probe finished.
"""

from __future__ import annotations

import contextlib
import logging
from collections import deque
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field, replace
from typing import Any

from .catalog import UP_CLASSES
from .classify import Outcome, QuotaReading
from .config import Target, carry_over
from .probe import ProbeResult

__all__ = ["DURATION_BUCKETS", "MAX_FOREIGN_CODES", "HistoryEntry", "State", "TargetState"]

log = logging.getLogger(__name__)

DURATION_BUCKETS: tuple[float, ...] = (0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0)
#: codes outside the vendor's catalog (unknown codes, http_NNN fallbacks, transport codes) that get
#: a label of their own per target; the rest are counted under ``other``, so series stay bounded.
MAX_FOREIGN_CODES = 16
#: classes a person on call wants to read back later: kept in their own, longer-lived ring
_FAILURE = frozenset({"maintenance", "auth", "clock_skew", "rate_limited", "quota_exceeded", "client_error",
                      "server_error", "timeout", "network_error", "unknown"})


@dataclass(frozen=True, slots=True)
class HistoryEntry:
    result: ProbeResult
    code: str  # the bounded label actually counted


@dataclass(slots=True)
class TargetState:
    target: Target
    last: ProbeResult | None = None
    code: str = ""  # bounded code label of the last outcome
    since: float = 0.0  # wall time the current class began
    responses: dict[tuple[str, str], int] = field(default_factory=dict)
    auth_failures: dict[str, int] = field(default_factory=dict)
    foreign_codes: set[str] = field(default_factory=set)
    bucket_counts: list[int] = field(default_factory=lambda: [0] * len(DURATION_BUCKETS))
    duration_sum: float = 0.0
    probes: int = 0
    consecutive_failures: int = 0
    quotas: dict[str, QuotaReading] = field(default_factory=dict)
    clock_skew: float | None = None
    next_probe_at: float = 0.0
    backoff: float = 0.0
    recent: deque[HistoryEntry] = field(default_factory=lambda: deque(maxlen=50))
    failures: deque[HistoryEntry] = field(default_factory=lambda: deque(maxlen=50))
    classes: deque[str] = field(default_factory=lambda: deque(maxlen=20))
    rendered: Any = None  # the collector's prepared text for this target

    @property
    def up(self) -> bool:
        return self.last is not None and self.last.outcome.cls in UP_CLASSES

    def bounded_code(self, code: str) -> str:
        if code in self.target.catalog.codes or code in self.foreign_codes:
            return code
        if len(self.foreign_codes) < MAX_FOREIGN_CODES:
            self.foreign_codes.add(code)
            return code
        return "other"

    def record(self, result: ProbeResult) -> None:
        if self.last is not None:
            result = _share(result, self.last)
        out = result.outcome
        code = self.bounded_code(out.code)
        if self.last is None or self.last.outcome.cls != out.cls:
            self.since = result.started
        self.last, self.code = result, code
        key = (out.cls, code)
        self.responses[key] = self.responses.get(key, 0) + 1
        if out.cls == "auth":
            self.auth_failures[code] = self.auth_failures.get(code, 0) + 1
        for i, bound in enumerate(DURATION_BUCKETS):
            if result.duration <= bound:
                self.bucket_counts[i] += 1
        self.duration_sum += result.duration
        self.probes += 1
        self.consecutive_failures = 0 if out.cls in UP_CLASSES else self.consecutive_failures + 1
        for q in out.quotas:
            self.quotas[q.name] = q
        if out.clock_skew is not None:
            self.clock_skew = out.clock_skew
        entry = HistoryEntry(result, code)
        self.recent.append(entry)
        if out.cls in _FAILURE:
            self.failures.append(entry)
        self.classes.append(out.cls)

    def history(self) -> list[HistoryEntry]:
        """Recent probes, newest first; failures older than the recent ring are kept too."""
        seen = {id(e) for e in self.recent}
        merged = list(self.recent) + [e for e in self.failures if id(e) not in seen]
        return sorted(merged, key=lambda e: e.result.started, reverse=True)


def _share(new: ProbeResult, prev: ProbeResult) -> ProbeResult:
    """``new`` holding ``prev``'s copies of the parts that did not change (the redacted request line,
    the body excerpt, the quota readings): the history then costs a few hundred bytes a probe, not
    ~800, which at 10,000 targets and 50 entries each is some 200 MB less."""
    line = prev.request_line if new.request_line == prev.request_line else new.request_line
    excerpt = prev.excerpt if new.excerpt == prev.excerpt else new.excerpt
    quotas = prev.outcome.quotas if new.outcome.quotas == prev.outcome.quotas else new.outcome.quotas
    if line is new.request_line and excerpt is new.excerpt and quotas is new.outcome.quotas:
        return new
    outcome = new.outcome if quotas is new.outcome.quotas else replace(new.outcome, quotas=quotas)
    return replace(new, request_line=line, excerpt=excerpt, outcome=outcome)


class State:
    """All targets' state, in config order. ``render`` is called after every change of a target."""

    def __init__(self, render: Callable[[TargetState], Any] | None = None, history: int = 50) -> None:
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
        """Apply a (re)loaded config; removed targets are dropped (see ``carry_over`` for the rest).
        A new ``history`` size applies to kept targets too, keeping their newest entries."""
        self._history = history or self._history
        fresh = carry_over(self._targets, targets, lambda t: TargetState(
            t, recent=deque(maxlen=self._history), failures=deque(maxlen=self._history)))
        for ts in fresh.values():
            if ts.recent.maxlen != self._history:
                ts.recent = deque(ts.recent, maxlen=self._history)
                ts.failures = deque(ts.failures, maxlen=self._history)
            self._refresh(ts)
        self._targets = fresh

    def record(self, result: ProbeResult, next_probe_at: float, backoff: float) -> TargetState | None:
        ts = self._targets.get(result.target)
        if ts is None:
            return None  # removed by a reload while its probe was in flight
        ts.record(result)
        ts.next_probe_at, ts.backoff = next_probe_at, backoff
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
