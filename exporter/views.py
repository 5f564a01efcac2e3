"""The status page and probe history for a person on call (``/``, ``/targets/NAME``) and the same data
as JSON (``/api/v1/targets``), as pure functions: target states and the time in, text out.

Everything shown comes from the in-memory state (no I/O per request) and is built in one pass over
the targets. Every value a vendor or a config could influence is escaped on the way out, control
characters included (shown as ``\x1b``, never raw); the pages carry no scripts. The HTTP side
(routes, the Content-Security-Policy built from ``STYLE_SHA256``, gzip) is web.py's.
"""

from __future__ import annotations

import base64
import hashlib
import html
import json
import re
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from importlib import resources
from string import Template
from typing import Any
from urllib.parse import quote

from . import __version__
from .config import secrets_of
from .httpconfig import HttpClient
from .model import CLASSES, PHASES, UP
from .redact import redact
from .state import HistoryEntry, TargetState

__all__ = ["STYLE_SHA256", "Fault", "Refresh", "RefreshError", "api_target", "api_targets", "default_refresh",
           "egress_rows", "escape", "history_view", "parse_refresh", "render_status", "render_target_page",
           "status_page", "target_page", "target_view", "unknown_target", "vendor_status_view"]

#: the words next to each class colour: what it means for the person reading the page
CLASS_WORDS: Mapping[str, str] = {
    "ok": "OK",
    "degraded": "degraded",
    "processing": "busy (processing)",
    "maintenance": "maintenance",
    "auth": "credentials refused",
    "clock_skew": "clock skew",
    "rate_limited": "rate limited",
    "quota_exceeded": "quota exceeded",
    "client_error": "bad health-check call",
    "server_error": "vendor error",
    "timeout": "timeout",
    "network_error": "network error",
    "unknown": "unknown answer",
}
#: the letter in each cell of the recent-results strip: the class is readable without hover or colour
CLASS_GLYPHS: Mapping[str, str] = {
    "ok": "\u2713",  # a check mark
    "degraded": "d",
    "processing": "p",
    "maintenance": "M",
    "auth": "A",
    "clock_skew": "C",
    "rate_limited": "R",
    "quota_exceeded": "Q",
    "client_error": "E",
    "server_error": "S",
    "timeout": "T",
    "network_error": "N",
    "unknown": "?",
}
PENDING = "pending"
#: auto-refresh bounds, seconds: faster than 2 s only costs CPU, slower than 10 min is not "live"
MIN_REFRESH, MAX_REFRESH = 2, 600


def _asset(name: str) -> str:
    return resources.files(__package__).joinpath("templates", name).read_text(encoding="utf-8")


_BASE = Template(_asset("base.html"))
_CSS = _asset("status.css")
#: base64 SHA-256 of the one inline stylesheet: web.py's CSP allows exactly it, nothing else inline
STYLE_SHA256 = base64.b64encode(hashlib.sha256(_CSS.encode()).digest()).decode()

# C0 and C1 controls but the whitespace HTML handles (tab, newline, carriage return), DEL, the
# invisible bidi/format controls that can make text read differently from what it is, and lone
# surrogates (a YAML "\ud800" escape), which no page could even be encoded with
_CONTROL = re.compile("[\x00-\x08\x0b\x0c\x0e-\x1f\x7f-\x9f\u061c\u200b-\u200f\u202a-\u202e"
                      "\u2060-\u2069\ufeff\ud800-\udfff]")


def _visible(match: re.Match[str]) -> str:
    code = ord(match.group())
    return f"\\x{code:02x}" if code < 0x100 else f"\\u{code:04x}"


def escape(value: object) -> str:
    """Text for HTML: markup characters escaped, and control characters a vendor may send (ESC, BEL,
    NUL, ...) written out as ``\\x1b`` so that they are seen and never act on a terminal or a parser."""
    return _CONTROL.sub(_visible, html.escape(str(value), quote=True))


# --- views: the JSON shape, and the one source the HTML is rendered from ---------------------------


def _num(value: float | None, digits: int = 3) -> float | None:
    return None if value is None else round(value, digits)


def target_view(ts: TargetState) -> dict[str, Any]:
    """One target as the API shows it (docs/status-page.md, "JSON API (v1)")."""
    target, last = ts.target, ts.last
    out = last.outcome if last is not None else None
    secrets = secrets_of(target)
    return {
        "name": target.name,
        "vendor": target.vendor,
        "vendor_title": target.catalog.title,
        "docs_url": target.catalog.docs_url,
        "labels": dict(target.labels),
        "interval_seconds": target.interval,
        "class": out.cls if out else None,
        "up": (out.cls in UP) if out else None,
        "since": _num(ts.since) if out else None,
        "code": out.code if out else None,
        "message": redact(out.message, secrets) if out else None,
        "http_status": (out.http_status or None) if out else None,
        "latency_seconds": _num(last.duration, 4) if last else None,
        "last_probe": _num(last.started) if last else None,
        "attempts": last.attempts if last else None,
        "next_probe": _num(ts.next_probe_at) if ts.next_probe_at else None,
        "backoff_seconds": _num(ts.backoff),
        "consecutive_failures": ts.consecutive_failures,
        "maintenance": bool(out and out.cls == "maintenance"),
        "retry_after_seconds": _num(out.retry_after) if out else None,
        # the Date header the skew is read from counts whole seconds: more digits would be noise
        "clock_skew_seconds": None if ts.clock_skew is None else float(round(ts.clock_skew)),
        "quotas": quota_views(ts),
        "recent_classes": list(ts.classes),
        "probes": ts.probes,
        "tls_cert_expiry": _num(ts.tls_cert_expiry),
        # the last probe's final request, phase by phase (None: no answer came)
        "phases": ({p: _num(v, 6) for p, v in zip(PHASES, last.phases, strict=True)}
                   if last is not None and last.phases is not None else None),
        "http_client": _client_view(target.http_client),
    }


def quota_views(ts: TargetState) -> list[dict[str, Any]]:
    """The last known quota figures, each with when an answer reported it (``as_of``) and whether a later
    answer failed or left it out (``stale``): a figure from before a failure must not pass for today's."""
    seen = ts.quota_seen or {}
    latest = ts.last.started if ts.last is not None else None
    out = []
    for q in ts.quotas.values():
        as_of = seen.get(q.name)
        out.append({"name": q.name, "remaining": q.remaining, "limit": q.limit, "reset_at": q.reset_at,
                    "as_of": _num(as_of), "stale": as_of is not None and latest is not None and as_of < latest})
    return out


def _client_view(client: HttpClient | None) -> dict[str, Any] | None:
    """Egress settings a person on call needs to read an error right; never a password."""
    if client is None:
        return None
    return {
        "http_proxy": client.http_proxy.shown if client.http_proxy else None,
        "https_proxy": client.https_proxy.shown if client.https_proxy else None,
        "no_proxy": ",".join(client.no_proxy),
        "proxy_from_environment": client.proxy_from_environment,
        "server_name": client.tls.server_name,
        "insecure_skip_verify": client.tls.insecure_skip_verify,
    }


def history_view(ts: TargetState) -> list[dict[str, Any]]:
    """Recent probes, newest first. Request line and excerpt were redacted by the prober; the
    target's credentials are taken out once more here, so a new leak path cannot reach a page."""
    secrets = secrets_of(ts.target)
    return [_entry_view(entry, secrets) for entry in ts.history()]


def _entry_view(entry: HistoryEntry, secrets: list[str]) -> dict[str, Any]:
    return {
        "time": _num(entry.started),
        "class": entry.cls,
        "code": entry.code,
        "message": redact(entry.message, secrets),
        "http_status": entry.http_status or None,
        "latency_seconds": _num(entry.duration, 4),
        "attempts": entry.attempts,
        "retry_after_seconds": _num(entry.retry_after),
        "request_line": redact(entry.request_line, secrets),
        "excerpt": redact(entry.excerpt, secrets),
    }


def _json(doc: Mapping[str, Any]) -> bytes:
    # ensure_ascii (the default, kept on purpose) writes every control character, DEL and C1 ones
    # included, and everything beyond ASCII as \uXXXX: no vendor byte reaches a client raw
    return json.dumps(doc, ensure_ascii=True).encode()


def api_targets(targets: Iterable[TargetState], now: float, fault: Fault | None = None) -> bytes:
    """``/api/v1/targets``: every target, in config order (and our egress checks, with ``fault``)."""
    doc: dict[str, Any] = {"generated_at": _num(now),
                           "targets": [_with_fault(target_view(ts), fault) for ts in targets]}
    if fault is not None:
        doc["egress"] = list(fault.egress)
    return _json(doc)


def api_target(ts: TargetState, now: float, fault: Fault | None = None) -> bytes:
    """``/api/v1/targets/NAME``: one target, its history and its kept traces (the list leaves the traces
    out: two of up to 4 KB per target would make it many times larger)."""
    traces = trace_views(ts)
    return _json({"generated_at": _num(now), "target": _with_fault(target_view(ts), fault),
                  "history": history_view(ts),
                  "traces": {"last_failure": traces["failure"], "last_success": traces["success"]}})


def unknown_target(name: str, api: bool) -> str:
    """The one-line 404 answer for a name that is not configured: text, or JSON for the API."""
    # escaped although served as text: a reflected name must never become markup anywhere
    msg = f"unknown target {html.escape(name[:64])!r}: the configured targets are listed at /"
    return _json({"error": msg}).decode() if api else msg + "\n"


# --- is it us or them? What the vendor's own status page says, and our egress ------------------------


@dataclass(frozen=True, slots=True)
class Fault:
    """What the pages show beside the measured class: the vendor's own word per target (a
    vendorstatus.VendorView or None, by target name) and our egress (egress_rows)."""

    vendor: Callable[[str], Any]
    egress: tuple[dict[str, Any], ...] = ()


def vendor_status_view(view: Any) -> dict[str, Any] | None:
    """A vendorstatus.VendorView as the API shows it; None when the vendor has no status page for the target."""
    if view is None:
        return None

    def event(e: Any) -> dict[str, Any]:
        return {"id": e.id, "name": e.name, "impact": e.impact, "status": e.status, "started": _num(e.started),
                "updated": _num(e.updated), "ends": _num(e.ends), "components": list(e.components)}

    return {
        "summary": view.summary(),
        "fetch_ok": view.fetch_ok,
        "error": view.error or None,
        "as_of": _num(view.as_of) if view.as_of else None,
        "known": view.known,
        "incident": view.known and view.incident_active,
        "maintenance": view.known and view.maintenance,
        "incidents": [event(e) for e in view.incidents],
        "maintenances": [event(e) for e in view.maintenances],
        "components": [{"id": c.id, "name": c.name, "status": c.status} for c in view.troubled],
    }


def egress_rows(checks: Iterable[Any], suspicions: Iterable[Any]) -> tuple[dict[str, Any], ...]:
    """egresscheck.CheckState and Suspicion records as the API and the page show them, one row an egress."""
    rows: dict[str, dict[str, Any]] = {}
    for sus in suspicions:
        rows[sus.egress] = {"egress": sus.egress, "targets": sus.targets, "targets_transport_failing": sus.failing,
                            "vendors_failing": sus.vendors, "suspected_down": sus.down, "checks": []}
    for state in checks:
        row = rows.setdefault(state.egress, {"egress": state.egress, "targets": 0, "targets_transport_failing": 0,
                                             "vendors_failing": 0, "suspected_down": False, "checks": []})
        row["checks"].append({"name": state.check.name, "url": state.check.url, "up": state.up,
                              "http_status": state.http_status or None, "code": state.code or None,
                              "message": state.message or None,
                              "checked_at": _num(state.checked_at) if state.checked_at else None})
    return tuple(row for row in rows.values() if row["checks"] or row["targets"])


def _with_fault(view: dict[str, Any], fault: Fault | None) -> dict[str, Any]:
    if fault is not None:
        view["vendor_status"] = vendor_status_view(fault.vendor(view["name"]))
    return view


def _vendor_words(view: dict[str, Any]) -> str:
    vendor = view.get("vendor_status")
    return f' <span class="muted vendor-says">&middot; {escape(vendor["summary"])}</span>' if vendor else ""


def _vendor_note(view: dict[str, Any]) -> str:
    """Beside a failing target (or one the vendor declares trouble for): the vendor's own word."""
    vendor = view.get("vendor_status")
    if not vendor or (view["up"] is not False and not vendor["incident"] and not vendor["maintenance"]):
        return ""
    cls = "maintenance" if vendor["maintenance"] and not vendor["incident"] else (
        "server_error" if vendor["incident"] else "ok" if vendor["known"] else "unknown")
    return f'<p class="note c-{cls} vendor-status">{escape(vendor["summary"])}</p>'


def _egress_section(rows: list[dict[str, Any]], now: float) -> str:
    """Our own way out, above the vendors: when it is down, no vendor is to blame. Shown when egress
    checks are configured, or when the targets themselves point at it."""
    if not any(row["checks"] or row["suspected_down"] for row in rows):
        return ""
    items = []
    for row in rows:
        checks = ", ".join(
            f'{escape(c["name"])} '
            + ("not checked yet" if c["up"] is None else "up" if c["up"] else
               f'DOWN ({escape(c["code"] or "")}{": " + escape(c["message"]) if c["message"] else ""})')
            for c in row["checks"])
        derived = (f'{row["targets_transport_failing"]} of {row["targets"]} targets fail at the transport level '
                   f'across {row["vendors_failing"]} vendors')
        # every check of it failing (one canary down alone may be that host's trouble)
        down = row["suspected_down"] or (bool(row["checks"]) and all(c["up"] is False for c in row["checks"]))
        cls = "network_error" if down else "ok"
        verdict = "our egress looks DOWN: it is us, not them" if down else "our egress looks fine"
        name = escape(row["egress"])
        items.append(f'<li class="c-{cls}" data-egress="{name}"><strong>{name}</strong>'
                     f': {verdict}; {derived}' + (f"; checks: {checks}" if checks else "") + "</li>")
    return f'<section class="summary egress" id="egress"><strong>Our egress</strong><ul>{"".join(items)}</ul></section>'


# --- formatting ------------------------------------------------------------------------------------


def fmt_age(seconds: float) -> str:
    whole = int(max(0.0, seconds))
    if whole < 60:
        return f"{whole}s"
    if whole < 3600:
        return f"{whole // 60}m {whole % 60:02d}s"
    if whole < 86400:
        return f"{whole // 3600}h {whole % 3600 // 60:02d}m"
    return f"{whole // 86400}d {whole % 86400 // 3600}h"


def fmt_time(ts: float, now: float) -> str:
    """A <time> element: clock time in UTC (with the date when it is not today) and the full stamp."""
    iso = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(ts))
    same_day = time.gmtime(ts)[:3] == time.gmtime(now)[:3]
    shown = time.strftime("%H:%M:%S" if same_day else "%Y-%m-%d %H:%M:%S", time.gmtime(ts)) + " UTC"
    return f'<time datetime="{iso}" title="{iso}">{shown}</time>'


def fmt_latency(seconds: float | None) -> str:
    if seconds is None:
        return "&ndash;"
    return f"{seconds * 1000:.0f}&nbsp;ms" if seconds < 10 else f"{seconds:.1f}&nbsp;s"


def fmt_num(value: float | None) -> str:
    if value is None:
        return "?"
    # thousands from 10,000 on (4,500 reads better as it is); each suffix divides by its own power
    for bound, scale, suffix in ((1e12, 1e12, "T"), (1e9, 1e9, "G"), (1e6, 1e6, "M"), (1e4, 1e3, "k")):
        if abs(value) >= bound:
            return f"{value / scale:.3g}{suffix}"
    return f"{value:g}"


def _badge(cls: str | None) -> str:
    shown = cls or PENDING
    words = CLASS_WORDS.get(shown, shown) if cls else "not probed yet"
    return f'<span class="badge c-{escape(shown)}">{escape(words)}</span>'


def _safe_link(url: str, text: str) -> str:
    # A user catalog's docs_url is text, not trust: only web links become links.
    if url.startswith(("https://", "http://")):
        return f'<a href="{escape(url)}" rel="noreferrer noopener">{escape(text)}</a>'
    return escape(text)


def _labels(labels: Mapping[str, str]) -> str:
    if not labels:
        return ""
    chips = "".join(f'<span class="label">{escape(k)}={escape(v)}</span>' for k, v in labels.items())
    return f'<div class="labels">{chips}</div>'


def _strip(classes: list[str]) -> str:
    """The recent results, oldest first: a coloured cell with its class's letter each, and a legend of the
    letters shown, so the strip reads on a phone (no hover) and without colour."""
    if not classes:
        return ""
    cells = "".join(_CELLS.get(c) or _cell(c) for c in classes)
    words = ", ".join(classes)
    legend = " ".join(_LEGEND.get(c) or _legend(c) for c in dict.fromkeys(sorted(classes, key=_class_order)))
    return (f'<div class="strip" role="img" aria-label="last {_n(len(classes), "outcome")}, oldest first: '
            f'{escape(words)}">{cells}</div><p class="legend">{legend}</p>')


def _class_order(cls: str) -> int:
    return CLASSES.index(cls) if cls in CLASSES else len(CLASSES)


def _cell(cls: str) -> str:
    glyph = CLASS_GLYPHS.get(cls, "?")
    return f'<span class="c-{escape(cls)}" title="{escape(cls)}">{escape(glyph)}</span>'


def _legend(cls: str) -> str:
    return (f'<span class="c-{escape(cls)}"><b>{escape(CLASS_GLYPHS.get(cls, "?"))}</b> '
            f'{escape(CLASS_WORDS.get(cls, cls))}</span>')


def _n(count: int, word: str) -> str:
    """``1 target``, ``2 targets``: a count with its noun."""
    return f"{count} {word}{'' if count == 1 else 's'}"


# escaped once: the strip is the page's most repeated element (20 cells a target)
_CELLS = {c: _cell(c) for c in CLASSES}
_LEGEND = {c: _legend(c) for c in CLASSES}


def _quotas(quotas: list[dict[str, Any]], now: float, up: bool | None = True) -> str:
    """One row per quota: its bar and figures, and their age; a figure a later answer did not confirm is
    drawn stale (grey, and said so in words), with why: the failure since, or an answer without it."""
    rows = []
    for quota in quotas:
        rem, lim = quota["remaining"], quota["limit"]
        if rem is not None and lim:
            pct = max(0.0, min(1.0, rem / lim))
            bar = (f'<meter min="0" max="{lim:g}" value="{max(0.0, min(rem, lim)):g}" low="{lim * 0.2:g}" '
                   f'high="{lim * 0.5:g}" optimum="{lim:g}" title="{pct:.0%} left"></meter>')
            text = f"{fmt_num(rem)} / {fmt_num(lim)} left"
        else:
            bar, text = "<span></span>", f"{fmt_num(rem)} left" if rem is not None else f"limit {fmt_num(lim)}"
        if quota["reset_at"] is not None:
            text += f", resets in {fmt_age(quota['reset_at'] - now)}"
        stale = ""
        if quota.get("as_of") is not None:
            why = ""
            if quota.get("stale"):
                why = ", before the failure" if up is False else ", not in the latest answer"
                stale = " stale"
            when = fmt_clock(quota["as_of"], now)
            text += f' <span class="asof">({"stale: " if stale else ""}as of {when}{why})</span>'
        rows.append(f'<span class="qname{stale}">{escape(quota["name"])}</span><span class="qbar{stale}">{bar}</span>'
                    f'<span class="qtext{stale}">{text}</span>')
    return f'<div class="quota">{"".join(rows)}</div>' if rows else ""


def fmt_clock(ts: float, now: float) -> str:
    """A <time> element with the clock time to the minute (UTC; the date too when it is not today)."""
    iso = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(ts))
    same_day = time.gmtime(ts)[:3] == time.gmtime(now)[:3]
    shown = time.strftime("%H:%M" if same_day else "%Y-%m-%d %H:%M", time.gmtime(ts)) + " UTC"
    return f'<time datetime="{iso}" title="{iso}">{shown}</time>'


def _facts(view: dict[str, Any], now: float) -> str:
    """The key facts of one target's current state, as a definition list."""
    dl: list[tuple[str, str]] = []
    if view["class"] is None:
        dl.append(("state", "waiting for the first probe"))
    else:
        dl.append(("since", f'{fmt_time(view["since"], now)} ({fmt_age(now - view["since"])} ago)'))
        code = f'<code>{escape(view["code"])}</code> {escape(view["message"])}'
        dl.append(("last code", code))
        dl.append(("HTTP", escape(view["http_status"]) if view["http_status"] else "no answer"))
        dl.append(("latency", fmt_latency(view["latency_seconds"])
                   + (f' ({_n(view["attempts"], "attempt")})' if (view["attempts"] or 1) > 1 else "")))
        dl.append(("last probe", f'{fmt_time(view["last_probe"], now)} ({fmt_age(now - view["last_probe"])} ago)'))
        if view.get("phases"):
            dl.append(("phases", " · ".join(f"{p} {fmt_latency(v)}" for p, v in view["phases"].items())))
    if view["next_probe"] is not None:
        nxt = f'in {fmt_age(view["next_probe"] - now)}' if view["next_probe"] > now else "due now"
        if view["backoff_seconds"]:
            nxt += f' (backing off {fmt_age(view["backoff_seconds"])})'
        dl.append(("next probe", nxt))
    skew = view["clock_skew_seconds"]
    if skew is not None and (abs(skew) >= 1 or view["class"] == "clock_skew"):
        dl.append(("clock skew", _skew(skew)))
    expiry = view["tls_cert_expiry"]
    if expiry is not None:
        left = f"in {fmt_age(expiry - now)}" if expiry > now else f"expired {fmt_age(now - expiry)} ago"
        dl.append(("certificate", f"expires {fmt_time(expiry, now)} ({left})"))
    client = view["http_client"]
    proxy = client and (client["https_proxy"] or client["http_proxy"])
    if proxy:
        dl.append(("proxy", escape(proxy) + (" (from the environment)" if client["proxy_from_environment"] else "")))
    return "<dl class=\"kv\">" + "".join(f"<dt>{k}</dt><dd>{val}</dd>" for k, val in dl) + "</dl>"


def _skew(skew: float) -> str:
    # whole seconds: the vendor's Date header counts no finer, so a tenth would be noise
    return f'{round(skew):+d}&nbsp;s (vendor minus us, to the second of its Date header)'


def _notes(view: dict[str, Any]) -> str:
    notes = []
    if view["maintenance"]:
        text = "The vendor says it is in maintenance"
        if view["retry_after_seconds"] is not None:
            text += f'; retry after {fmt_age(view["retry_after_seconds"])}'
        notes.append(f'<p class="note c-maintenance">{text}.</p>')
    elif view["retry_after_seconds"] is not None:
        notes.append(f'<p class="note c-{escape(view["class"])}">The vendor asks to retry after '
                     f'{fmt_age(view["retry_after_seconds"])}.</p>')
    if view["http_client"] and view["http_client"]["insecure_skip_verify"]:
        notes.append('<p class="note c-degraded insecure">TLS certificate verification is off for this target '
                     '(<code>insecure_skip_verify</code>).</p>')
    if view["consecutive_failures"] > 1:
        notes.append(f'<p class="note c-{escape(view["class"])}">{_n(view["consecutive_failures"], "failed probe")} '
                     'in a row.</p>')
    return "".join(notes)


def _card(view: dict[str, Any], now: float, link: str | None) -> str:
    name = f'<a href="{escape(link)}">{escape(view["name"])}</a>' if link else escape(view["name"])
    cls = escape(view["class"] or PENDING)
    return (f'<article class="card c-{cls}" id="t-{escape(quote(view["name"], safe=""))}" '
            f'data-target="{escape(view["name"])}" data-class="{cls}">'
            f'<h3>{name} {_badge(view["class"])}</h3>{_labels(view["labels"])}{_notes(view)}{_vendor_note(view)}'
            f'{_facts(view, now)}{_quotas(view["quotas"], now, view["up"])}{_strip(view["recent_classes"])}</article>')


# --- pages -----------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Refresh:
    seconds: int  # 0 = off
    default: int

    def meta(self) -> str:
        return f'<meta http-equiv="refresh" content="{self.seconds}">\n' if self.seconds else ""

    def link(self) -> str:
        if self.seconds:
            return f'<a href="?refresh=0" title="auto-refresh every {self.seconds} s">pause refresh</a>'
        return f'<a href="?refresh={self.default or 30}">auto-refresh</a>'


def _page(title: str, body: str, now: float, root: str, api: str, refresh: Refresh) -> str:
    return _BASE.substitute(title=escape(title), css=_CSS, body=body, root=escape(root), api=escape(api),
                            now=fmt_time(now, now), version=escape(__version__), refresh_meta=refresh.meta(),
                            refresh_link=refresh.link())


def status_page(targets: Iterable[TargetState], now: float, refresh: Refresh, fault: Fault | None = None) -> bytes:
    """``/``: the overview of every target (and, with ``fault``, what the vendors and our egress say)."""
    views = [_with_fault(target_view(ts), fault) for ts in targets]
    return render_status(views, now, refresh, fault.egress if fault else ()).encode()


def target_page(ts: TargetState, now: float, refresh: Refresh, fault: Fault | None = None) -> bytes:
    """``/targets/NAME``: one target's card and its recent probes."""
    return render_target_page(_with_fault(target_view(ts), fault), history_view(ts), now, refresh,
                              trace_section(ts, now)).encode()


def render_status(views: list[dict[str, Any]], now: float, refresh: Refresh,
                  egress: Iterable[dict[str, Any]] = ()) -> str:
    """The overview: a summary of what needs attention, then every target grouped by vendor."""
    groups: dict[str, list[dict[str, Any]]] = {}
    for view in views:
        groups.setdefault(view["vendor"], []).append(view)
    down = [view for view in views if view["class"] is not None and not view["up"]]
    pending = sum(1 for view in views if view["class"] is None)
    head = (f'{_n(len(views), "target")}: {len(views) - len(down) - pending} up, {len(down)} down'
            + (f", {pending} not probed yet" if pending else ""))
    attention = "".join(f'<li><a href="targets/{escape(quote(view["name"], safe=""))}">{escape(view["name"])}</a> '
                        f'{_badge(view["class"])} {escape(view["message"])}{_vendor_words(view)}</li>'
                        for view in down)
    summary = (f'<section class="summary" id="summary"><strong>{head}</strong>'
               + (f"<ul>{attention}</ul>" if attention else "") + "</section>") + _egress_section(list(egress), now)
    sections = []
    for vendor, group in groups.items():
        first = group[0]
        up = sum(1 for view in group if view["up"])
        cards = "".join(_card(view, now, f'targets/{quote(view["name"], safe="")}') for view in group)
        sections.append(
            f'<section class="vendor n{min(len(group), 4)}" id="vendor-{escape(quote(vendor, safe=""))}" '
            f'data-vendor="{escape(vendor)}">'
            f'<h2>{_safe_link(first["docs_url"], first["vendor_title"])} <small>{escape(vendor)} &middot; '
            f'{up}/{len(group)} up</small></h2><div class="cards">{cards}</div></section>')
    if not views:
        sections.append("<p>No targets are configured.</p>")
    body = "<h1>API status</h1>" + summary + f'<div class="vendors">{"".join(sections)}</div>'
    return _page("API status", body, now, "./", "api/v1/targets", refresh)


def render_target_page(view: dict[str, Any], history: list[dict[str, Any]], now: float, refresh: Refresh,
                       traces: str = "") -> str:
    rows = []
    for entry in history:
        retry = f' &middot; retry after {fmt_age(entry["retry_after_seconds"])}' if entry["retry_after_seconds"] else ""
        attempts = f' &middot; {_n(entry["attempts"], "attempt")}' if entry["attempts"] > 1 else ""
        # a failure's answer is what the reader came for: shown unfolded; successes stay folded
        unfold = "" if entry["class"] in UP else " open"
        excerpt = (f'<details{unfold}><summary>response excerpt</summary><pre>{escape(entry["excerpt"])}</pre>'
                   '</details>'
                   if entry["excerpt"] else '<p class="muted">no response body</p>')
        rows.append(
            f'<li class="c-{escape(entry["class"])}" data-class="{escape(entry["class"])}">'
            f'<div class="row">{fmt_time(entry["time"], now)} {_badge(entry["class"])} '
            f'<code>{escape(entry["code"])}</code> '
            f'<span>{escape(entry["message"])}</span></div>'
            f'<div class="row muted">HTTP {escape(entry["http_status"] or "no answer")} &middot; '
            f'{fmt_latency(entry["latency_seconds"])}{attempts}{retry}</div>'
            f'<pre class="request">{escape(entry["request_line"])}</pre>{excerpt}</li>')
    hist = (f'<ol class="history">{"".join(rows)}</ol>' if rows else "<p>No probes yet.</p>")
    name_q = quote(view["name"], safe="")
    body = (f'<p><a href="../">&larr; all targets</a></p><h1>{escape(view["name"])}</h1>'
            f'<p class="muted">{_safe_link(view["docs_url"], view["vendor_title"])} ({escape(view["vendor"])}), '
            f'probed every {fmt_age(view["interval_seconds"])}</p>'
            f'<div class="cards">{_card(view, now, None)}</div>{traces}'
            f'<h2>Recent probes <small>newest first; failures are kept longer than successes</small></h2>{hist}')
    return _page(f'{view["name"]} - API status', body, now, "../", f"../api/v1/targets/{name_q}", refresh)


# --- the refresh parameter -----------------------------------------------------------------------


class RefreshError(ValueError):
    """A ``?refresh=`` value that is not whole seconds; its text is the one-line answer."""


def default_refresh(targets: Iterable[TargetState]) -> int:
    """The pace of the fastest-probed target shown, within the bounds."""
    shortest = min((ts.target.interval for ts in targets), default=30.0)
    return int(max(MIN_REFRESH, min(MAX_REFRESH, shortest)))


def parse_refresh(raw: str | None, default: int) -> Refresh:
    """``?refresh=N`` (seconds, 0 = off, clamped to the bounds); ``None`` gives ``default``."""
    if raw is None:
        return Refresh(default, default)
    if not (raw.isascii() and raw.isdigit()) or len(raw) > 6:
        raise RefreshError(f"refresh must be whole seconds (0 turns it off), got {html.escape(raw[:32])!r}")
    seconds = int(raw)
    return Refresh(0 if seconds == 0 else max(MIN_REFRESH, min(MAX_REFRESH, seconds)), default)


def with_banner(page: bytes, text: str) -> bytes:
    """``page`` with ``text`` as a notice at the top of its main part (the demo says it is one)."""
    if not text:
        return page
    notice = f'<p class="note c-degraded demo-banner" role="alert"><strong>{escape(text)}</strong></p>\n'
    return page.replace(b"<main>\n", b"<main>\n" + notice.encode(), 1)


# --- traces: the last failure and the last success, told (exporter/trace.py) ----------------------------


def trace_views(ts: TargetState) -> dict[str, Any]:
    """The target's kept traces, as the pages and ``/probe?debug=true`` show them: redacted by the prober,
    and once more here with the target's credentials, so a new leak path cannot reach a page."""
    secrets = secrets_of(ts.target)
    out: dict[str, Any] = {}
    for kind, held in ts.traces().items():
        out[kind] = None if held is None else {"time": _num(held[0]), "text": redact(held[1], secrets)}
    return out


def trace_section(ts: TargetState, now: float) -> str:
    """The target page's "Traces" section: the last failure's trace unfolded, the last success's folded."""
    views = trace_views(ts)
    parts = []
    for kind, title, unfold in (("failure", "Last failure", " open"), ("success", "Last success traced", "")):
        view = views[kind]
        if view is None:
            parts.append(f'<p class="muted">{title}: none yet</p>')
            continue
        parts.append(f'<details{unfold} class="trace" id="trace-{kind}"><summary>{title}, '
                     f'{fmt_time(view["time"], now)}</summary><pre>{escape(view["text"])}</pre></details>')
    return ('<h2 id="traces">Traces <small>every request and login, the answer, what decided the class and '
            'what followed; the same answer again is traced at most every minute (failures) or 5 minutes '
            '(successes)</small></h2>'
            + "".join(parts))


def latest_trace(ts: TargetState) -> tuple[float, str] | None:
    """The newest of the kept traces."""
    held = [t for t in ts.traces().values() if t is not None]
    return max(held, key=lambda t: t[0]) if held else None


def probe_debug_text(ts: TargetState, fresh: bool, why_not: str) -> str:
    """``/probe?debug=true``: the trace of the probe just made, or, when none could be made (``why_not``),
    the latest kept trace, saying so. Plain text, control characters escaped, secrets redacted."""
    from .log import escape_control

    secrets = secrets_of(ts.target)
    held = latest_trace(ts)
    last = ts.last
    if fresh and held is not None and last is not None and held[0] == last.started:
        head = "a probe was made now for this request; its trace:\n"
    elif fresh:
        head = ("a probe was made now (it joined one already in flight) but it was not traced; the latest "
                "kept trace:\n" if held is not None else "a probe was made now but it was not traced\n")
    else:
        head = (f"no probe was made now: {why_not}; the latest kept trace:\n" if held is not None
                else f"no probe was made now: {why_not}; no trace is kept yet\n")
    text = head + (held[1] if held is not None else "")
    return "".join(escape_control(line) + "\n" for line in redact(text, secrets).splitlines())
