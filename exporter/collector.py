"""The only place that names metrics.

Each target's samples are rendered to exposition text once, when its state changes (after a probe):
one encoded fragment per metric family, except for the families whose values many targets share
(the outcome, one line per class and a third of the answer; up, maintenance, the HTTP status, ...),
which are kept as shapes (the text between the label sets, shared by every target with the same
values) plus the target's one label set, and joined back together by the scrape. A scrape writes
each family's HELP/TYPE once and joins the fragments of the targets present now, so a target removed
by a reload simply is not there, and the cost of a scrape is a few joins in C, not a walk over
objects. prometheus_client renders the process metrics.
"""

from __future__ import annotations

import bisect
import functools
import itertools
import math
import operator
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from operator import attrgetter, itemgetter
from typing import Any

from prometheus_client import CollectorRegistry, PlatformCollector, ProcessCollector, generate_latest

from .buildinfo import build_labels
from .model import CLASSES, PHASES, UP, ExporterStatus
from .state import DURATION_BUCKETS, Rendered, TargetState

__all__ = ["CONTENT_TYPE", "FAMILIES", "FAULT_FAMILIES", "Exposition", "exposition", "render_exposition",
           "render_fault", "render_probe", "render_target"]

CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"


@dataclass(frozen=True, slots=True)
class Family:
    name: str
    type: str
    help: str

    @property
    def header(self) -> str:
        return f"# HELP {self.name} {self.help}\n# TYPE {self.name} {self.type}\n"


# Per-target families, in the order they are written.
FAMILIES: tuple[Family, ...] = (
    Family("apistatus_up", "gauge", "1 when the last answer's class is ok, degraded or processing."),
    Family("apistatus_outcome", "gauge", "1 for the class of the last answer, 0 for every other class."),
    Family("apistatus_responses_total", "counter", "Probe answers and failed attempts by class and code."),
    Family("apistatus_maintenance", "gauge", "1 when the vendor says it is in maintenance."),
    Family("apistatus_auth_failures_total", "counter", "Answers refusing our credentials, by code."),
    Family("apistatus_quota_remaining", "gauge", "Quota remaining as the vendor reports it."),
    Family("apistatus_quota_limit", "gauge", "Quota limit as the vendor reports it."),
    Family("apistatus_quota_reset_timestamp_seconds", "gauge", "When the vendor says the quota resets."),
    Family("apistatus_quota_informational", "gauge",
           "1 for a quota the catalog marks as not needed by the health check, else 0."),
    Family("apistatus_retry_after_seconds", "gauge", "Retry-After of the last answer, 0 when absent."),
    Family("apistatus_http_status_code", "gauge", "HTTP status of the last answer, 0 when there was none."),
    Family("apistatus_clock_skew_seconds", "gauge", "Vendor Date header minus our clock, last answer that had one."),
    Family("apistatus_request_duration_seconds", "histogram", "Duration of a probe, all attempts included."),
    Family("apistatus_last_probe_timestamp_seconds", "gauge", "When the last probe started."),
    Family("apistatus_next_probe_timestamp_seconds", "gauge", "When the next probe is planned."),
    Family("apistatus_backoff_seconds", "gauge", "Extra wait beyond the interval after a failure, 0 when none."),
    Family("apistatus_consecutive_failures", "gauge", "Probes in a row whose class is not up."),
    Family("apistatus_tls_cert_expiry_timestamp_seconds", "gauge",
           "Earliest notAfter of the certificates the vendor presented on the last TLS handshake."),
    Family("apistatus_http_duration_seconds", "gauge",
           "Seconds of each phase of the last probe's final request (resolve, connect, tls, processing, "
           "transfer), 0 where it was skipped."),
)
_IDX = {f.name: i for i, f in enumerate(FAMILIES)}
_NO_PHASES = (0.0,) * len(PHASES)
_PHASE_LABELS = {phase: f',phase="{phase}"' for phase in PHASES}
#: the families kept as shapes, in the order of ``Rendered.shapes``: those whose values most targets
#: share when healthy (the class, flags, the HTTP status, no backoff, no failures), so that the text of
#: a target is its one label set between shared pieces. Targets in a row whose shapes are all the same
#: (one interned tuple) are written by one ``bytes.join`` over their label sets, without reading any
#: per-target text. The families whose values can differ per healthy target stay text (a quota limit
#: can be per account: as a shape it would split every run); a shape of a target's own pieces (the
#: histogram's counts) made the scrape slower than its text did.
_SHAPED = tuple(_IDX[name] for name in (
    "apistatus_up", "apistatus_outcome", "apistatus_maintenance", "apistatus_quota_informational",
    "apistatus_retry_after_seconds", "apistatus_http_status_code", "apistatus_backoff_seconds",
    "apistatus_consecutive_failures"))
_SHAPE_OF = {family: k for k, family in enumerate(_SHAPED)}
_OUTCOME = _SHAPE_OF[_IDX["apistatus_outcome"]]
_EMPTY = Rendered((b"",) * len(FAMILIES), 0, b"", ((),) * len(_SHAPED), 0)


def _esc(value: str) -> str:
    return value.replace("\\", "\\\\").replace("\n", "\\n").replace('"', '\\"')


def _num(value: float) -> str:
    if isinstance(value, int) or (math.isfinite(value) and value.is_integer() and abs(value) < 1e15):
        return str(int(value))
    if math.isnan(value):
        return "NaN"
    if math.isinf(value):
        return "+Inf" if value > 0 else "-Inf"
    return repr(value)


def _shape_size(labels: bytes, shape: tuple[bytes, ...]) -> int:
    """The length of ``labels.join(shape)``, without making it."""
    return sum(map(len, shape)) + len(labels) * (len(shape) - 1) if shape else 0


# Shapes: a family's text for one target is ``labels.join(shape)``; the pieces of a shape are the
# text between two label sets, so they hold no label and are shared by every target and rendering
# with the same values.


def _shape(name: str, tails: tuple[str, ...]) -> tuple[bytes, ...]:
    """The shape of a family's lines for one target, ``tails`` being what follows the label set on
    each line; ``()`` when it has none."""
    if not tails:
        return ()
    # "replace": a lone surrogate in a catalog's quota name costs one "?", as in the text families
    return (name.encode(), *(f"{t}{name}".encode(errors="replace") for t in tails[:-1]),
            tails[-1].encode(errors="replace"))


_OUTCOME_TAILS = {c: tuple(f',class="{k}"}} {1 if k == c else 0}\n' for k in CLASSES) for c in CLASSES}


@functools.lru_cache(maxsize=256)  # a handful in a healthy fleet; bounded when backoffs and counts vary
def _shapes(tails: tuple[tuple[str, ...], ...]) -> tuple[tuple[tuple[bytes, ...], ...], int, int, int]:
    """A target's shapes (one interned tuple for every target with the same values, which is what a
    scrape looks for), the families among them with lines (as ``Rendered.present`` encodes them),
    their bytes without the label sets and how many label sets they hold."""
    shapes = tuple(_shape(FAMILIES[family].name, t) for family, t in zip(_SHAPED, tails, strict=True))
    present = sum(1 << 8 * family for family, shape in zip(_SHAPED, shapes, strict=True) if shape)
    return shapes, present, sum(sum(map(len, shape)) for shape in shapes), sum(max(0, len(sh) - 1) for sh in shapes)


_BUCKET_LE = tuple(f',le="{_num(b)}"}} ' for b in DURATION_BUCKETS)


def label_prefix(ts: TargetState) -> str:
    """The target's labels as the opening of a sample's label set (left open for more pairs)."""
    target = ts.target
    return _label_prefix(target.name, target.vendor, target.labels)


@functools.lru_cache(maxsize=1 << 16)  # one entry a target: escaping its labels after every probe was measurable
def _label_prefix(name: str, vendor: str, labels: tuple[tuple[str, str], ...]) -> str:
    pairs = [("target", name), ("vendor", vendor), *labels]
    return "{" + ",".join(f'{k}="{_esc(v)}"' for k, v in pairs)


@functools.lru_cache(maxsize=1 << 16)  # the one copy a target's renderings share
def _label_bytes(prefix: str) -> bytes:
    return prefix.encode(errors="replace")


def render_target(ts: TargetState) -> Rendered:
    """A target's text, already encoded: a scrape then only joins bytes (at 10,000 targets encoding
    the joined text cost as much as the join). A target never probed has no samples yet."""
    out = [""] * len(FAMILIES)
    tails: list[list[str]] = [[] for _ in _SHAPED]
    last = ts.last
    if last is None:
        return _EMPTY
    labels = label_prefix(ts)
    outcome = last.outcome

    def add(name: str, value: float, extra: str = "") -> None:
        family = _IDX[name]
        shaped = _SHAPE_OF.get(family)
        if shaped is None:
            out[family] += f"{name}{labels}{extra}}} {_num(value)}\n"
        else:
            tails[shaped].append(f"{extra}}} {_num(value)}\n")

    add("apistatus_up", 1 if outcome.cls in UP else 0)
    tails[_OUTCOME] = list(_OUTCOME_TAILS.get(outcome.cls) or (
        f',class="{c}"}} {1 if c == outcome.cls else 0}\n' for c in CLASSES))
    out[_IDX["apistatus_responses_total"]] = "".join(
        f'apistatus_responses_total{labels},class="{c}",code="{_esc(code)}"}} {n}\n'
        for (c, code), n in sorted(ts.responses.items()))
    add("apistatus_maintenance", 1 if outcome.cls == "maintenance" else 0)
    out[_IDX["apistatus_auth_failures_total"]] = "".join(
        f'apistatus_auth_failures_total{labels},code="{_esc(code)}"}} {n}\n'
        for code, n in sorted(ts.auth_failures.items()))
    informational = {q.name for q in ts.target.catalog.quota if q.informational}
    for name, quota in sorted(ts.quotas.items()):
        extra = f',quota="{_esc(name)}"'
        add("apistatus_quota_informational", 1 if name in informational else 0, extra)
        if quota.remaining is not None:
            add("apistatus_quota_remaining", quota.remaining, extra)
        if quota.limit is not None:
            add("apistatus_quota_limit", quota.limit, extra)
        if quota.reset_at is not None:
            add("apistatus_quota_reset_timestamp_seconds", quota.reset_at, extra)
    add("apistatus_retry_after_seconds", outcome.retry_after or 0)
    add("apistatus_http_status_code", outcome.http_status)
    if ts.clock_skew is not None:
        add("apistatus_clock_skew_seconds", ts.clock_skew)
    hist = "apistatus_request_duration_seconds"
    head = f"{hist}_bucket{labels}"
    buckets = "".join([f"{head}{le}{n}\n" for le, n in zip(_BUCKET_LE, ts.bucket_counts, strict=True)])
    out[_IDX[hist]] = (f'{buckets}{hist}_bucket{labels},le="+Inf"}} {ts.probes}\n'
                       f"{hist}_sum{labels}}} {_num(ts.duration_sum)}\n{hist}_count{labels}}} {ts.probes}\n")
    add("apistatus_last_probe_timestamp_seconds", last.started)
    add("apistatus_next_probe_timestamp_seconds", ts.next_probe_at)
    add("apistatus_backoff_seconds", ts.backoff)
    add("apistatus_consecutive_failures", ts.consecutive_failures)
    if ts.tls_cert_expiry is not None:
        add("apistatus_tls_cert_expiry_timestamp_seconds", ts.tls_cert_expiry)
    # every phase always, as blackbox_exporter: 0 where skipped (a reused connection, plain HTTP, no answer)
    for phase, seconds in zip(PHASES, last.phases or _NO_PHASES, strict=True):
        add("apistatus_http_duration_seconds", seconds, _PHASE_LABELS[phase])
    # "replace": a lone surrogate in a config label value must cost one "?", not every probe's record
    parts = tuple(text.encode(errors="replace") for text in out)
    label_bytes = _label_bytes(labels)
    shapes, shaped_present, fixed, slots = _shapes(tuple(map(tuple, tails)))
    size = sum(map(len, parts)) + fixed + len(label_bytes) * slots
    # one byte a family, 1 where it has text (C loops: this runs after every probe)
    present = int.from_bytes(bytes(map(bool, parts)), "little") | shaped_present
    return Rendered(parts, _shared(size), label_bytes, shapes, _shared(present))


#: one int object per value for the sizes and masks of the renderings: a scrape reads every target's
#: (the length it declares, the families present), and an object of its own per target was a cache
#: miss per target; most targets have one of a few values
_INTS: dict[int, int] = {}
_MAX_INTS = 1 << 12


def _shared(value: int) -> int:
    shared = _INTS.get(value)
    if shared is None:
        if len(_INTS) >= _MAX_INTS:
            return value
        shared = _INTS[value] = value
    return shared


# The exporter's own status: plain records of plain values (no I/O module behind them), built by the
# composition root at each scrape, so the collector reads a snapshot and reaches into nothing.


_process_registry = CollectorRegistry(auto_describe=False)
ProcessCollector(registry=_process_registry)
PlatformCollector(registry=_process_registry)


#: read once: the revision does not change while the process runs
_BUILD_LABELS = ",".join(f'{k}="{_esc(v)}"' for k, v in build_labels().items())


def _own(info: ExporterStatus) -> str:
    return (
        "# HELP apistatus_build_info The exporter's version, revision and Python version; always 1.\n"
        f"# TYPE apistatus_build_info gauge\napistatus_build_info{{{_BUILD_LABELS}}} 1\n"
        "# HELP apistatus_config_last_reload_successful Whether the last config (re)load succeeded.\n"
        "# TYPE apistatus_config_last_reload_successful gauge\n"
        f"apistatus_config_last_reload_successful {1 if info.reload_successful else 0}\n"
        "# HELP apistatus_config_last_reload_success_timestamp_seconds When the config last loaded.\n"
        "# TYPE apistatus_config_last_reload_success_timestamp_seconds gauge\n"
        f"apistatus_config_last_reload_success_timestamp_seconds {_num(info.reload_success_timestamp)}\n"
        "# HELP apistatus_targets Targets in the running config.\n# TYPE apistatus_targets gauge\n"
        f"apistatus_targets {info.targets}\n"
        "# HELP apistatus_shard_info The shard of the fleet this replica runs (--shard); always 1.\n"
        "# TYPE apistatus_shard_info gauge\n"
        f'apistatus_shard_info{{index="{info.shard.index}",count="{info.shard.count}"}} 1\n'
    ) + _start_lag(info) + _load(info) + _web_config(info)


def _web_config(info: ExporterStatus) -> str:
    if info.web_config is None:
        return ""
    ok, failures = info.web_config
    return (
        "# HELP apistatus_web_config_last_reload_successful Whether the latest re-read of --web.config.file "
        "succeeded (else the previous settings stay in force).\n"
        f"# TYPE apistatus_web_config_last_reload_successful gauge\napistatus_web_config_last_reload_successful "
        f"{1 if ok else 0}\n"
        "# HELP apistatus_web_config_reload_failures_total Re-reads of --web.config.file refused (broken, "
        "empty or unreadable); the previous settings were kept.\n"
        f"# TYPE apistatus_web_config_reload_failures_total counter\napistatus_web_config_reload_failures_total "
        f"{failures}\n"
    )


#: quantiles of the start lag over the scheduler's window of recent probes
LAG_QUANTILES = (0.5, 0.9, 0.99)


def _start_lag(info: ExporterStatus) -> str:
    """How late probes start against their plan: the first sign that the exporter cannot keep up."""
    if info.start_lag is None:
        return ""
    recent, total, count = info.start_lag.recent, info.start_lag.total, info.start_lag.count
    name = "apistatus_probe_start_lag_seconds"
    # the HELP text stays the same from scrape to scrape; docs/metrics.md says the same window
    out = [f"# HELP {name} Planned-to-actual start of probes; quantiles over the latest 10000 probes (every probe "
           "until 10000 have started).\n"
           f"# TYPE {name} summary\n"]
    if recent:
        ordered = sorted(recent)
        out.extend(f'{name}{{quantile="{q:g}"}} {_num(ordered[min(len(ordered) - 1, int(q * len(ordered)))])}\n'
                   for q in LAG_QUANTILES)
    out.append(f"{name}_sum {_num(total)}\n{name}_count {count}\n")
    return "".join(out)


def _load(info: ExporterStatus) -> str:
    """Probes in flight and budget delays: with the start lag, why targets are probed late."""
    delays = "apistatus_budget_delays_total"
    return (
        "# HELP apistatus_probes_in_flight Probes started and not yet finished, waiting for a slot included.\n"
        f"# TYPE apistatus_probes_in_flight gauge\napistatus_probes_in_flight {info.in_flight}\n"
        f"# HELP {delays} Probes held back because their credential's request budget was spent.\n"
        f"# TYPE {delays} counter\n"
    ) + "".join(f'{delays}{{vendor="{_esc(v)}"}} {n}\n' for v, n in info.budget_delays)


_PARTS, _SHAPES, _LABELS = attrgetter("parts"), attrgetter("shapes"), attrgetter("labels")
_SIZE, _PRESENT = attrgetter("size"), attrgetter("present")
_ITEM = tuple(map(itemgetter, range(len(FAMILIES))))
#: about how many bytes each piece of an answer holds: small enough that no scrape holds a second copy
#: of the whole text and the event loop runs between pieces, large enough that pieces are few
CHUNK_BYTES = 1 << 18


#: targets in a row sharing their shapes from which one join over their label sets is worth it
RUN = 16


def _runs(shapes: list[tuple[tuple[bytes, ...], ...]]) -> tuple[list[int], list[int]]:
    """Starts and ends of the stretches of at least ``RUN`` targets in a row with the same shapes
    (interned: mostly a comparison of pointers, no target's text read)."""
    starts, ends, pos = [], [], 0
    for _, group in itertools.groupby(shapes):
        n = len(list(group))
        if n >= RUN:
            starts.append(pos)
            ends.append(pos + n)
        pos += n
    return starts, ends


def _same_shape(shape: tuple[bytes, ...], labels: list[bytes]) -> bytes:
    """The lines of targets that share ``shape``, from their label sets alone."""
    if len(shape) == 2:  # one line a target: the label sets joined by the text between two of them
        return b"".join((shape[0], (shape[1] + shape[0]).join(labels), shape[1]))
    return b"".join(map(bytes.join, labels, itertools.repeat(shape))) if shape else b""


class Exposition:
    """One /metrics answer, in pieces of about ``CHUNK_BYTES``. The targets' renderings are taken when
    it is made, so the answer is one consistent snapshot even if probes finish while it is sent; its
    length is known before any piece is made (Content-Length)."""

    __slots__ = ("_labels", "_parts", "_plan", "_runs", "_shapes", "size")

    def __init__(self, fragments: list[Rendered], tail: bytes) -> None:
        # Only the targets' renderings are taken here, not their fragments: copying a reference
        # touches the object, and at this size every touch is a cache miss; a piece reads each
        # fragment once, while it copies it.
        self._parts = list(map(_PARTS, fragments))
        self._shapes = list(map(_SHAPES, fragments))
        self._labels = list(map(_LABELS, fragments))
        self._runs = _runs(self._shapes)
        # the distinct masks first: or-ing a wide int per target allocated one per target
        present = functools.reduce(operator.or_, set(map(_PRESENT, fragments)), 0)
        #: each piece: bytes as they are, or (family, its shape or -1, first target, end)
        self._plan: list[bytes | tuple[int, int, int, int]] = []
        size = sum(map(_SIZE, fragments)) + len(tail)
        for i, fam in enumerate(FAMILIES):
            if not present >> 8 * i & 1:
                continue  # no target has a sample of this family: not even its HELP and TYPE
            shape = _SHAPE_OF.get(i, -1)
            has = [r for r in fragments[:64] if r.present >> 8 * i & 1] or [
                next(r for r in fragments if r.present >> 8 * i & 1)]
            if shape >= 0:
                each = max(_shape_size(r.labels, r.shapes[shape]) for r in has)
            else:
                each = max(len(r.parts[i]) for r in has)
            header = fam.header.encode()
            size += len(header)
            self._plan.append(header)
            step = max(16, CHUNK_BYTES // max(1, each))
            self._plan.extend((i, shape, a, min(a + step, len(fragments))) for a in range(0, len(fragments), step))
        if tail:
            self._plan.append(tail)
        self.size = size

    def __len__(self) -> int:
        return len(self._plan)

    def __iter__(self) -> Iterator[bytes]:
        return map(self.piece, range(len(self._plan)))

    def piece(self, index: int) -> bytes:
        step = self._plan[index]
        if isinstance(step, bytes):
            return step
        family, shape, a, b = step
        if shape < 0:
            return b"".join(map(_ITEM[family], self._parts[a:b]))
        # bytes.join over the targets' label sets and shapes: C loops only, however many targets
        labels, shapes, (starts, ends) = self._labels, self._shapes, self._runs
        out, at, run = [], a, bisect.bisect_right(ends, a)
        while at < b:
            start = max(starts[run], at) if run < len(starts) else b
            if start >= b:
                start = b
            if start > at:  # targets of differing shapes: each its own join
                out.append(b"".join(map(bytes.join, labels[at:start], map(_ITEM[shape], shapes[at:start]))))
            if start < b:
                end = min(ends[run], b)
                out.append(_same_shape(shapes[start][shape], labels[start:end]))
                start, run = end, run + 1
            at = start
        return b"".join(out)


def exposition(states: Iterable[TargetState], info: ExporterStatus | None = None,
               process: bool = True, extra: bytes = b"") -> Exposition:
    """The /metrics answer (or, with ``info=None`` and ``process=False``, just the targets' families
    for /probe), as a snapshot of the targets' text now; ``extra``: more families (render_fault)."""
    fragments = [ts.rendered for ts in states if ts.rendered is not None]
    tail = (_own(info) if info is not None else "").encode() + extra
    if process:
        tail += generate_latest(_process_registry)
    return Exposition(fragments, tail)


def render_probe(ts: TargetState, cached: bool) -> bytes:
    """A /probe answer: the target's families, and whether they come from its latest result."""
    return render_exposition([ts], None, process=False) + (
        "# HELP apistatus_probe_cached 1 when this /probe answer is the target's latest result, 0 when "
        "a probe was made for it.\n# TYPE apistatus_probe_cached gauge\n"
        f"apistatus_probe_cached {1 if cached else 0}\n").encode()


def render_exposition(states: Iterable[TargetState], info: ExporterStatus | None = None,
                      process: bool = True) -> bytes:
    """The whole /metrics answer (or, with ``info=None``, just the targets' families for /probe)."""
    return b"".join(exposition(states, info, process))


# --- is it us or them? The vendors' own status pages and our egress (exporter/vendorstatus.py and
# exporter/egresscheck.py). Bounded: a page keeps at most statuspage.MAX_COMPONENTS components and
# MAX_INCIDENTS incidents and maintenances; two gauges per target whose vendor has a page, one info
# series per target when egress checks are configured.

#: a component's status as a number (0 is operational; docs/metrics.md)
COMPONENT_STATUS_VALUES = {"operational": 0, "under_maintenance": 1, "degraded_performance": 2, "partial_outage": 3,
                           "major_outage": 4, "unknown": -1}

FAULT_FAMILIES: tuple[Family, ...] = (
    Family("apistatus_vendor_status_fetch_success", "gauge",
           "1 when the last read of the vendor's own status page worked (a 304 included)."),
    Family("apistatus_vendor_status_last_success_timestamp_seconds", "gauge",
           "When the vendor's status page was last read successfully."),
    Family("apistatus_vendor_component_status", "gauge",
           "A watched component's status on the vendor's page: 0 operational, 1 under maintenance, 2 degraded "
           "performance, 3 partial outage, 4 major outage, -1 unknown."),
    Family("apistatus_vendor_incident_info", "gauge", "An unresolved incident the vendor declares; always 1."),
    Family("apistatus_vendor_incident_started_timestamp_seconds", "gauge", "When the vendor's incident started."),
    Family("apistatus_vendor_incident_updated_timestamp_seconds", "gauge",
           "When the vendor last updated the incident."),
    Family("apistatus_vendor_maintenance_info", "gauge",
           "A maintenance the vendor has scheduled or is carrying out; always 1."),
    Family("apistatus_vendor_maintenance_start_timestamp_seconds", "gauge", "When the vendor's maintenance starts."),
    Family("apistatus_vendor_maintenance_end_timestamp_seconds", "gauge", "When the vendor's maintenance ends."),
    Family("apistatus_vendor_incident_active", "gauge",
           "1 when the vendor declares an incident on a component this target watches."),
    Family("apistatus_vendor_maintenance", "gauge",
           "1 when the vendor declares a maintenance in progress on a component this target watches."),
    Family("apistatus_egress_up", "gauge", "1 when the egress check got the answer it expects."),
    Family("apistatus_egress_http_status_code", "gauge", "HTTP status of the egress check's last answer, 0 if none."),
    Family("apistatus_egress_duration_seconds", "gauge", "Duration of the egress check's last request."),
    Family("apistatus_egress_targets", "gauge", "Targets behind this egress with a latest answer."),
    Family("apistatus_egress_targets_transport_failing", "gauge",
           "Targets behind this egress whose latest answer is a network error or a timeout."),
    Family("apistatus_egress_suspected_down", "gauge",
           "1 when most targets behind this egress fail at the transport level, across at least three vendors."),
    Family("apistatus_target_egress_info", "gauge", "The egress a target's requests go out through; always 1."),
)


def _labels_text(pairs: Iterable[tuple[str, str]]) -> str:
    return "{" + ",".join(f'{k}="{_esc(v)}"' for k, v in pairs) + "}"


def render_fault(book: Any, egress: Any, suspicions: Iterable[Any], states: Iterable[TargetState]) -> bytes:
    """The vendor-status and egress families; ``book`` a VendorStatusBook, ``egress`` an EgressBook,
    ``suspicions`` its Suspicion records (typed loosely: the collector imports no I/O module)."""
    lines: dict[str, list[str]] = {f.name: [] for f in FAULT_FAMILIES}

    def add(name: str, pairs: Iterable[tuple[str, str]], value: float) -> None:
        lines[name].append(f"{name}{_labels_text(pairs)} {_num(value)}\n")

    now = book.clock.time()
    for vendor, page in book.pages.items():
        v = (("vendor", vendor),)
        add("apistatus_vendor_status_fetch_success", v, 1 if page.ok else 0)
        if page.success_at:
            add("apistatus_vendor_status_last_success_timestamp_seconds", v, page.success_at)
        status = page.current(now)
        if status is None:
            continue
        watched = book.watched(vendor)
        for comp in status.components:
            if watched is None or comp.id in watched:
                add("apistatus_vendor_component_status", (*v, ("component", comp.id), ("name", comp.name)),
                    COMPONENT_STATUS_VALUES.get(comp.status, -1))
        for inc in status.incidents:
            ident = (*v, ("incident", inc.id))
            add("apistatus_vendor_incident_info",
                (*ident, ("name", inc.name), ("impact", inc.impact), ("status", inc.status)), 1)
            if inc.started is not None:
                add("apistatus_vendor_incident_started_timestamp_seconds", ident, inc.started)
            if inc.updated is not None:
                add("apistatus_vendor_incident_updated_timestamp_seconds", ident, inc.updated)
        for mnt in status.maintenances:
            ident = (*v, ("maintenance", mnt.id))
            add("apistatus_vendor_maintenance_info", (*ident, ("name", mnt.name), ("status", mnt.status)), 1)
            if mnt.started is not None:
                add("apistatus_vendor_maintenance_start_timestamp_seconds", ident, mnt.started)
            if mnt.ends is not None:
                add("apistatus_vendor_maintenance_end_timestamp_seconds", ident, mnt.ends)
    checked = bool(egress.checks)
    for ts in states if book.pages or checked else ():  # most configs have neither: no walk over targets
        target = ts.target
        if book.pages:
            view = book.view(target)
            if view is not None:
                pairs = (("target", target.name), ("vendor", target.vendor))
                add("apistatus_vendor_incident_active", pairs, 1 if view.known and view.incident_active else 0)
                add("apistatus_vendor_maintenance", pairs, 1 if view.known and view.maintenance else 0)
        if checked:
            add("apistatus_target_egress_info",
                (("target", target.name), ("vendor", target.vendor), ("egress", egress.egress_of(target.name))), 1)
    for state in egress.checks.values():
        if state.up is None:
            continue
        pairs = (("egress", state.egress), ("check", state.check.name))
        add("apistatus_egress_up", pairs, 1 if state.up else 0)
        add("apistatus_egress_http_status_code", pairs, state.http_status)
        add("apistatus_egress_duration_seconds", pairs, state.duration)
    for sus in suspicions:
        e = (("egress", sus.egress),)
        add("apistatus_egress_targets", e, sus.targets)
        add("apistatus_egress_targets_transport_failing", e, sus.failing)
        add("apistatus_egress_suspected_down", e, 1 if sus.down else 0)
    return "".join(f.header + "".join(lines[f.name]) for f in FAULT_FAMILIES if lines[f.name]).encode(
        errors="replace")
