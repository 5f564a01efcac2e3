"""The status page and probe history for a person on call: ``/``, ``/targets/NAME`` and the same data
as JSON under ``/api/v1/targets``.

Everything shown comes from the in-memory state (no I/O per request) and is built in one pass over
the targets. Every value a vendor or a config could influence is escaped on the way out; the pages
carry no scripts and a Content-Security-Policy that would refuse any that slipped through.
"""

from __future__ import annotations

import base64
import gzip
import hashlib
import html
import json
import time
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from importlib import resources
from string import Template
from typing import Any
from urllib.parse import quote

from aiohttp import web

from . import __version__
from .app import Exporter
from .catalog import CLASSES, UP_CLASSES
from .probe import redact
from .state import HistoryEntry, TargetState

__all__ = ["history_view", "render_status", "render_target_page", "setup_pages", "target_view"]

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
PENDING = "pending"
#: auto-refresh bounds, seconds: faster than 2 s only costs CPU, slower than 10 min is not "live"
MIN_REFRESH, MAX_REFRESH = 2, 600


def _asset(name: str) -> str:
    return resources.files(__package__).joinpath("pages", name).read_text(encoding="utf-8")


_BASE = Template(_asset("base.html"))
_CSS = _asset("status.css")
# A hash of the one inline stylesheet: the CSP then allows exactly it, and nothing else inline.
_CSS_HASH = base64.b64encode(hashlib.sha256(_CSS.encode()).digest()).decode()
_HEADERS = {
    "Content-Security-Policy": f"default-src 'none'; style-src 'sha256-{_CSS_HASH}'; img-src 'self' data:; "
                               "base-uri 'none'; form-action 'none'; frame-ancestors 'none'",
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    "Cache-Control": "no-store",
}


def e(value: object) -> str:
    return html.escape(str(value), quote=True)


# --- views: the JSON shape, and the one source the HTML is rendered from ---------------------------


def _num(value: float | None, digits: int = 3) -> float | None:
    return None if value is None else round(value, digits)


def target_view(ts: TargetState) -> dict[str, Any]:
    """One target as the API shows it (docs/status-page.md, "JSON API (v1)")."""
    t, last = ts.target, ts.last
    out = last.outcome if last is not None else None
    secrets = list(t.credentials.values())
    return {
        "name": t.name,
        "vendor": t.vendor,
        "vendor_title": t.catalog.title,
        "docs_url": t.catalog.docs_url,
        "labels": dict(t.labels),
        "interval_seconds": t.interval,
        "class": out.cls if out else None,
        "up": (out.cls in UP_CLASSES) if out else None,
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
        "clock_skew_seconds": _num(ts.clock_skew),
        "quotas": [{"name": q.name, "remaining": q.remaining, "limit": q.limit, "reset_at": q.reset_at}
                   for q in ts.quotas.values()],
        "recent_classes": list(ts.classes),
        "probes": ts.probes,
    }


def history_view(ts: TargetState) -> list[dict[str, Any]]:
    """Recent probes, newest first. Request line and excerpt were redacted by the prober; the
    target's credentials are taken out once more here, so a new leak path cannot reach a page."""
    secrets = list(ts.target.credentials.values())
    return [_entry_view(h, secrets) for h in ts.history()]


def _entry_view(h: HistoryEntry, secrets: list[str]) -> dict[str, Any]:
    r, o = h.result, h.result.outcome
    return {
        "time": _num(r.started),
        "class": o.cls,
        "code": o.code,
        "message": redact(o.message, secrets),
        "http_status": o.http_status or None,
        "latency_seconds": _num(r.duration, 4),
        "attempts": r.attempts,
        "retry_after_seconds": _num(o.retry_after),
        "request_line": redact(r.request_line, secrets),
        "excerpt": redact(r.excerpt, secrets),
    }


# --- formatting ------------------------------------------------------------------------------------


def fmt_age(seconds: float) -> str:
    s = int(max(0.0, seconds))
    if s < 60:
        return f"{s}s"
    if s < 3600:
        return f"{s // 60}m {s % 60:02d}s"
    if s < 86400:
        return f"{s // 3600}h {s % 3600 // 60:02d}m"
    return f"{s // 86400}d {s % 86400 // 3600}h"


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


def fmt_num(v: float | None) -> str:
    if v is None:
        return "?"
    for bound, suffix in ((1e12, "T"), (1e9, "G"), (1e6, "M"), (1e4, "k")):
        if abs(v) >= bound:
            return f"{v / bound:.3g}{suffix}"
    return f"{v:g}"


def _badge(cls: str | None) -> str:
    c = cls or PENDING
    words = CLASS_WORDS.get(c, c) if cls else "not probed yet"
    return f'<span class="badge c-{e(c)}">{e(words)}</span>'


def _safe_link(url: str, text: str) -> str:
    # A user catalog's docs_url is text, not trust: only web links become links.
    if url.startswith(("https://", "http://")):
        return f'<a href="{e(url)}" rel="noreferrer noopener">{e(text)}</a>'
    return e(text)


def _labels(labels: Mapping[str, str]) -> str:
    if not labels:
        return ""
    chips = "".join(f'<span class="label">{e(k)}={e(v)}</span>' for k, v in labels.items())
    return f'<div class="labels">{chips}</div>'


def _strip(classes: list[str]) -> str:
    if not classes:
        return ""
    cells = "".join(_CELLS.get(c) or _cell(c) for c in classes)
    words = ", ".join(classes)
    return (f'<div class="strip" role="img" aria-label="last {len(classes)} outcomes, oldest first: '
            f'{e(words)}">{cells}</div>')


def _cell(cls: str) -> str:
    return f'<span class="c-{e(cls)}" title="{e(cls)}"></span>'


# escaped once: the strip is the page's most repeated element (20 cells a target)
_CELLS = {c: _cell(c) for c in CLASSES}


def _quotas(quotas: list[dict[str, Any]], now: float) -> str:
    rows = []
    for q in quotas:
        rem, lim = q["remaining"], q["limit"]
        if rem is not None and lim:
            pct = max(0.0, min(1.0, rem / lim))
            bar = (f'<meter min="0" max="{lim:g}" value="{max(0.0, min(rem, lim)):g}" low="{lim * 0.2:g}" '
                   f'high="{lim * 0.5:g}" optimum="{lim:g}" title="{pct:.0%} left"></meter>')
            text = f"{fmt_num(rem)} / {fmt_num(lim)} left"
        else:
            bar, text = "<span></span>", f"{fmt_num(rem)} left" if rem is not None else f"limit {fmt_num(lim)}"
        if q["reset_at"] is not None:
            text += f", resets in {fmt_age(q['reset_at'] - now)}"
        rows.append(f'<span>{e(q["name"])}</span>{bar}<span>{text}</span>')
    return f'<div class="quota">{"".join(rows)}</div>' if rows else ""


def _facts(v: dict[str, Any], now: float) -> str:
    """The key facts of one target's current state, as a definition list."""
    dl: list[tuple[str, str]] = []
    if v["class"] is None:
        dl.append(("state", "waiting for the first probe"))
    else:
        dl.append(("since", f'{fmt_time(v["since"], now)} ({fmt_age(now - v["since"])} ago)'))
        code = f'<code>{e(v["code"])}</code> {e(v["message"])}'
        dl.append(("last code", code))
        dl.append(("HTTP", e(v["http_status"]) if v["http_status"] else "no answer"))
        dl.append(("latency", fmt_latency(v["latency_seconds"])
                   + (f' ({v["attempts"]} attempts)' if (v["attempts"] or 1) > 1 else "")))
        dl.append(("last probe", f'{fmt_time(v["last_probe"], now)} ({fmt_age(now - v["last_probe"])} ago)'))
    if v["next_probe"] is not None:
        nxt = f'in {fmt_age(v["next_probe"] - now)}' if v["next_probe"] > now else "due now"
        if v["backoff_seconds"]:
            nxt += f' (backing off {fmt_age(v["backoff_seconds"])})'
        dl.append(("next probe", nxt))
    if v["clock_skew_seconds"] is not None and (abs(v["clock_skew_seconds"]) >= 1 or v["class"] == "clock_skew"):
        dl.append(("clock skew", f'{v["clock_skew_seconds"]:+.1f}&nbsp;s (vendor minus us)'))
    return "<dl class=\"kv\">" + "".join(f"<dt>{k}</dt><dd>{val}</dd>" for k, val in dl) + "</dl>"


def _notes(v: dict[str, Any]) -> str:
    notes = []
    if v["maintenance"]:
        text = "The vendor says it is in maintenance"
        if v["retry_after_seconds"] is not None:
            text += f'; retry after {fmt_age(v["retry_after_seconds"])}'
        notes.append(f'<p class="note c-maintenance">{text}.</p>')
    elif v["retry_after_seconds"] is not None:
        notes.append(f'<p class="note c-{e(v["class"])}">The vendor asks to retry after '
                     f'{fmt_age(v["retry_after_seconds"])}.</p>')
    if v["consecutive_failures"] > 1:
        notes.append(f'<p class="note c-{e(v["class"])}">{v["consecutive_failures"]} failed probes in a row.</p>')
    return "".join(notes)


def _card(v: dict[str, Any], now: float, link: str | None) -> str:
    name = f'<a href="{e(link)}">{e(v["name"])}</a>' if link else e(v["name"])
    return (f'<article class="card c-{e(v["class"] or PENDING)}" id="t-{e(quote(v["name"], safe=""))}" '
            f'data-target="{e(v["name"])}" data-class="{e(v["class"] or PENDING)}">'
            f'<h3>{name} {_badge(v["class"])}</h3>{_labels(v["labels"])}{_notes(v)}'
            f'{_facts(v, now)}{_quotas(v["quotas"], now)}{_strip(v["recent_classes"])}</article>')


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
    return _BASE.substitute(title=e(title), css=_CSS, body=body, root=e(root), api=e(api), now=fmt_time(now, now),
                            version=e(__version__), refresh_meta=refresh.meta(), refresh_link=refresh.link())


def render_status(views: list[dict[str, Any]], now: float, refresh: Refresh) -> str:
    """The overview: a summary of what needs attention, then every target grouped by vendor."""
    groups: dict[str, list[dict[str, Any]]] = {}
    for v in views:
        groups.setdefault(v["vendor"], []).append(v)
    down = [v for v in views if v["class"] is not None and not v["up"]]
    pending = sum(1 for v in views if v["class"] is None)
    head = (f'{len(views)} targets: {len(views) - len(down) - pending} up, {len(down)} down'
            + (f", {pending} not probed yet" if pending else ""))
    attention = "".join(f'<li><a href="targets/{e(quote(v["name"], safe=""))}">{e(v["name"])}</a> '
                        f'{_badge(v["class"])} {e(v["message"])}</li>' for v in down)
    summary = (f'<section class="summary" id="summary"><strong>{head}</strong>'
               + (f"<ul>{attention}</ul>" if attention else "") + "</section>")
    sections = []
    for vendor, vs in groups.items():
        first = vs[0]
        up = sum(1 for v in vs if v["up"])
        cards = "".join(_card(v, now, f'targets/{quote(v["name"], safe="")}') for v in vs)
        sections.append(
            f'<section class="vendor n{min(len(vs), 4)}" id="vendor-{e(quote(vendor, safe=""))}" '
            f'data-vendor="{e(vendor)}">'
            f'<h2>{_safe_link(first["docs_url"], first["vendor_title"])} <small>{e(vendor)} &middot; '
            f'{up}/{len(vs)} up</small></h2><div class="cards">{cards}</div></section>')
    if not views:
        sections.append("<p>No targets are configured.</p>")
    body = "<h1>API status</h1>" + summary + f'<div class="vendors">{"".join(sections)}</div>'
    return _page("API status", body, now, "./", "api/v1/targets", refresh)


def render_target_page(v: dict[str, Any], history: list[dict[str, Any]], now: float, refresh: Refresh) -> str:
    rows = []
    for h in history:
        retry = f' &middot; retry after {fmt_age(h["retry_after_seconds"])}' if h["retry_after_seconds"] else ""
        attempts = f' &middot; {h["attempts"]} attempts' if h["attempts"] > 1 else ""
        # a failure's answer is what the reader came for: shown unfolded; successes stay folded
        unfold = "" if h["class"] in UP_CLASSES else " open"
        excerpt = (f'<details{unfold}><summary>response excerpt</summary><pre>{e(h["excerpt"])}</pre></details>'
                   if h["excerpt"] else '<p class="muted">no response body</p>')
        rows.append(
            f'<li class="c-{e(h["class"])}" data-class="{e(h["class"])}">'
            f'<div class="row">{fmt_time(h["time"], now)} {_badge(h["class"])} <code>{e(h["code"])}</code> '
            f'<span>{e(h["message"])}</span></div>'
            f'<div class="row muted">HTTP {e(h["http_status"] or "none")} &middot; '
            f'{fmt_latency(h["latency_seconds"])}{attempts}{retry}</div>'
            f'<pre class="request">{e(h["request_line"])}</pre>{excerpt}</li>')
    hist = (f'<ol class="history">{"".join(rows)}</ol>' if rows else "<p>No probes yet.</p>")
    name_q = quote(v["name"], safe="")
    body = (f'<p><a href="../">&larr; all targets</a></p><h1>{e(v["name"])}</h1>'
            f'<p class="muted">{_safe_link(v["docs_url"], v["vendor_title"])} ({e(v["vendor"])}), '
            f'probed every {fmt_age(v["interval_seconds"])}</p>'
            f'<div class="cards">{_card(v, now, None)}</div>'
            f'<h2>Recent probes <small>newest first; failures are kept longer than successes</small></h2>{hist}')
    return _page(f'{v["name"]} - API status', body, now, "../", f"../api/v1/targets/{name_q}", refresh)


# --- HTTP ------------------------------------------------------------------------------------------


def _refresh(request: web.Request, default: int) -> Refresh:
    raw = request.query.get("refresh")
    if raw is None:
        return Refresh(default, default)
    if not (raw.isascii() and raw.isdigit()) or len(raw) > 6:
        shown = html.escape(raw[:32])
        raise web.HTTPBadRequest(text=f"refresh must be whole seconds (0 turns it off), got {shown!r}\n")
    n = int(raw)
    return Refresh(0 if n == 0 else max(MIN_REFRESH, min(MAX_REFRESH, n)), default)


def _unknown(name: str, api: bool) -> web.HTTPNotFound:
    # escaped although served as text: a reflected name must never become markup anywhere
    msg = f"unknown target {html.escape(name[:64])!r}: the configured targets are listed at /"
    if api:
        return web.HTTPNotFound(text=json.dumps({"error": msg}), content_type="application/json")
    return web.HTTPNotFound(text=msg + "\n")


def _send(request: web.Request, body: bytes, content_type: str, headers: Mapping[str, str]) -> web.Response:
    # 1,000 targets make ~2 MB of repetitive HTML: gzip level 1 takes it to ~3% in a few ms
    if len(body) > 1024 and "gzip" in request.headers.get("Accept-Encoding", ""):
        return web.Response(body=gzip.compress(body, 1), headers={
            **headers, "Content-Type": content_type, "Content-Encoding": "gzip", "Vary": "Accept-Encoding"})
    return web.Response(body=body, headers={**headers, "Content-Type": content_type, "Vary": "Accept-Encoding"})


def _json(request: web.Request, doc: Mapping[str, Any]) -> web.Response:
    return _send(request, json.dumps(doc).encode(), "application/json", {"Cache-Control": "no-store"})


class Pages:
    def __init__(self, exporter: Exporter) -> None:
        self.exporter = exporter

    def _default_refresh(self, targets: Iterable[TargetState]) -> int:
        shortest = min((ts.target.interval for ts in targets), default=30.0)
        return int(max(MIN_REFRESH, min(MAX_REFRESH, shortest)))

    def _html(self, request: web.Request, text: str) -> web.Response:
        return _send(request, text.encode(), "text/html; charset=utf-8", _HEADERS)

    def _get(self, request: web.Request, api: bool) -> TargetState:
        name = request.match_info["name"]
        ts = self.exporter.state.get(name)
        if ts is None:
            raise _unknown(name, api)
        return ts

    async def status(self, request: web.Request) -> web.Response:
        targets = list(self.exporter.state)
        refresh = _refresh(request, self._default_refresh(targets))
        now = self.exporter.clock.time()
        return self._html(request, render_status([target_view(ts) for ts in targets], now, refresh))

    async def target(self, request: web.Request) -> web.Response:
        ts = self._get(request, api=False)
        # off by default: a reload would fold the excerpt someone is reading
        refresh = _refresh(request, self._default_refresh([ts]))
        if "refresh" not in request.query:
            refresh = Refresh(0, refresh.default)
        now = self.exporter.clock.time()
        return self._html(request, render_target_page(target_view(ts), history_view(ts), now, refresh))

    async def api_targets(self, request: web.Request) -> web.Response:
        views = [target_view(ts) for ts in self.exporter.state]
        return _json(request, {"generated_at": _num(self.exporter.clock.time()), "targets": views})

    async def api_target(self, request: web.Request) -> web.Response:
        ts = self._get(request, api=True)
        return _json(request, {"generated_at": _num(self.exporter.clock.time()), "target": target_view(ts),
                               "history": history_view(ts)})


def setup_pages(app: web.Application, exporter: Exporter) -> None:
    """Register the human pages and their JSON twins on the exporter's app."""
    pages = Pages(exporter)
    app.router.add_get("/", pages.status)
    app.router.add_get("/targets/{name}", pages.target)
    app.router.add_get("/api/v1/targets", pages.api_targets)
    app.router.add_get("/api/v1/targets/{name}", pages.api_target)
