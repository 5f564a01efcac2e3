"""Target state: what the exporter knows about each target, updated once per probe.

The state owns the counters, the latest outcome, the last known quota figures and a bounded history.
It knows no metric names: a ``render`` hook (the collector's) is called after each update so that a
scrape only joins text that was prepared when the probe finished.

It also owns reload reconciliation (``kept``): which targets of a new config carry their state over.
"""

from __future__ import annotations

import contextlib
import logging
from collections import deque
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field, replace

from .config import Target
from .model import FAILURE, UP, Outcome, ProbeResult, QuotaReading

__all__ = ["DURATION_BUCKETS", "MAX_FOREIGN_CODES", "Rendered", "State", "TargetState", "kept"]

#: one target's samples as exposition text, one encoded fragment per metric family (the collector's)
Rendered = tuple[bytes, ...]

log = logging.getLogger(__name__)

DURATION_BUCKETS: tuple[float, ...] = (0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0)
#: codes outside the vendor's catalog (unknown codes, http_NNN fallbacks, transport codes) that get
#: a label of their own per target; the rest are counted under ``other``, so series stay bounded.
MAX_FOREIGN_CODES = 16


def kept(old: Target | None, new: Target) -> bool:
    """After a (re)load, whether what a target had (counters, history, schedule) carries over to its
    new config: when its name (looked up by the caller) and vendor are unchanged. A target whose
    vendor changed starts afresh, since its codes mean other things."""
    return old is not None and old.vendor == new.vendor


@dataclass(slots=True)
class TargetState:
    target: Target
    last: ProbeResult | None = None
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
    #: earliest notAfter of the vendor's certificates on the last TLS answer; None: never over TLS
    tls_cert_expiry: float | None = None
    next_probe_at: float = 0.0
    backoff: float = 0.0
    recent: deque[ProbeResult] = field(default_factory=lambda: deque(maxlen=50))
    failures: deque[ProbeResult] = field(default_factory=lambda: deque(maxlen=50))
    classes: deque[str] = field(default_factory=lambda: deque(maxlen=20))
    rendered: Rendered | None = None  # the collector's prepared text for this target, None before any

    def bounded_code(self, code: str) -> str:
        if code in self.target.catalog.codes or code in self.foreign_codes:
            return code
        if len(self.foreign_codes) < MAX_FOREIGN_CODES:
            self.foreign_codes.add(code)
            return code
        return "other"

    def record(self, result: ProbeResult) -> None:
        if self.last is not None:
            result = _intern(result, self.last)
        out = result.outcome
        code = self.bounded_code(out.code)
        if self.last is None or self.last.outcome.cls != out.cls:
            self.since = result.started
        self.last = result
        key = (out.cls, code)
        self.responses[key] = self.responses.get(key, 0) + 1
        if out.cls == "auth":
            self.auth_failures[code] = self.auth_failures.get(code, 0) + 1
        for i, bound in enumerate(DURATION_BUCKETS):
            if result.duration <= bound:
                self.bucket_counts[i] += 1
        self.duration_sum += result.duration
        self.probes += 1
        self.consecutive_failures = 0 if out.cls in UP else self.consecutive_failures + 1
        for q in out.quotas:
            self.quotas[q.name] = q
        if out.clock_skew is not None:
            self.clock_skew = out.clock_skew
        if result.tls_cert_expiry is not None:
            self.tls_cert_expiry = result.tls_cert_expiry
        elif not self.target.base_url.startswith("https:"):
            self.tls_cert_expiry = None  # a reload moved the target to plain HTTP
        self.recent.append(result)
        if out.cls in FAILURE:  # a person on call wants to read these back later: a longer-lived ring
            self.failures.append(result)
        self.classes.append(out.cls)

    def history(self) -> list[ProbeResult]:
        """Recent probes, newest first; failures older than the recent ring are kept too."""
        seen = {id(result) for result in self.recent}
        merged = list(self.recent) + [result for result in self.failures if id(result) not in seen]
        return sorted(merged, key=lambda result: result.started, reverse=True)


def _intern(new: ProbeResult, prev: ProbeResult) -> ProbeResult:
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
                if ts.recent.maxlen != self._history:
                    ts.recent = deque(ts.recent, maxlen=self._history)
                    ts.failures = deque(ts.failures, maxlen=self._history)
            else:
                ts = TargetState(target, recent=deque(maxlen=self._history), failures=deque(maxlen=self._history))
            self._refresh(ts)
            fresh[target.name] = ts
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
