"""A vendor's own public status page, read: untrusted JSON in, small bounded records out. Pure (no I/O).

Three formats (docs/vendors.md, "The vendor's own status page"):

- ``statuspage``: Atlassian Statuspage's v2 ``/api/v2/summary.json`` (GitHub, Twilio and many more):
  ``components`` with an ``id`` each, unresolved ``incidents`` naming the components they affect, and
  ``scheduled_maintenances``.
- ``incidentio``: incident.io's Statuspage-compatible ``summary.json`` (OpenAI): the same shape with
  ULID ids, and no ``incidents`` key (a component's status is then the only sign of an incident).
- ``slack``: Slack's ``/api/v2.0.0/current``: ``active_incidents`` naming the ``services`` they
  affect; services have names only, and a service not named is operational.

A status page is input from the network like any vendor answer: every value is checked for its type,
text is cut to ``MAX_TEXT`` characters with control characters replaced, and at most ``MAX_COMPONENTS``
components and ``MAX_INCIDENTS`` incidents (and as many maintenances) are kept, so a huge, deep or
malformed page costs bounded memory and bounded series, and never a traceback.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any

__all__ = ["COMPONENT_STATUSES", "FORMATS", "IMPACTS", "MAX_COMPONENTS", "MAX_INCIDENTS", "MAX_TEXT", "Component",
           "Incident", "StatusPageError", "VendorStatus", "affecting", "component_id_pattern", "component_trouble",
           "parse"]

#: the formats a catalog's ``status_page.format`` may name
FORMATS = ("statuspage", "incidentio", "slack")
#: a component's status as Statuspage names it (the other formats are mapped onto these); ``unknown``
#: for a value the page sends that is none of them
COMPONENT_STATUSES = ("operational", "degraded_performance", "partial_outage", "major_outage", "under_maintenance",
                      "unknown")
IMPACTS = ("none", "minor", "major", "critical", "maintenance", "unknown")
MAX_COMPONENTS = 200
MAX_INCIDENTS = 20
MAX_TEXT = 200
#: components one incident may name (a page-wide incident lists every component)
MAX_AFFECTED = MAX_COMPONENTS

_CONTROL = re.compile("[\x00-\x1f\x7f-\x9f\u061c\u200b-\u200f\u202a-\u202e\u2060-\u2069\ufeff\ud800-\udfff]")
_ID = re.compile(r"[A-Za-z0-9_.:-]{1,64}")
#: what a component id looks like in each format (a name where the format has no ids)
_ID_PATTERNS = {
    "statuspage": (r"[a-z0-9]{12}", "a Statuspage component id: 12 lower-case letters and digits, e.g. brv1bkgrwx7q"),
    "incidentio": (r"[0-9A-HJKMNP-TV-Z]{26}", "an incident.io component id: a 26-character ULID, e.g. "
                                              "01JMXBRMFE6N2NNT7DG6XZQ6PW"),
    "slack": (r"[^\x00-\x1f]{1,64}", "a Slack service name as the status API lists it, e.g. Apps/Integrations/APIs"),
}


class StatusPageError(ValueError):
    """A page that cannot be read as its format; the text is one short line that quotes nothing of it."""


@dataclass(frozen=True, slots=True)
class Component:
    id: str
    name: str
    status: str  # one of COMPONENT_STATUSES


@dataclass(frozen=True, slots=True)
class Incident:
    """An unresolved incident, or a scheduled maintenance (``maintenance``)."""

    id: str
    name: str
    impact: str  # one of IMPACTS
    status: str  # the page's own word (investigating, identified, in_progress, scheduled...), cut and cleaned
    started: float | None  # Unix seconds (a maintenance: when it is scheduled to start)
    updated: float | None
    components: tuple[str, ...]  # ids of the components it names
    maintenance: bool = False
    ends: float | None = None  # a maintenance: when it is scheduled to end
    #: a maintenance in progress (``False``: announced for later)
    active: bool = True


@dataclass(frozen=True, slots=True)
class VendorStatus:
    indicator: str  # none, minor, major, critical, maintenance or unknown
    description: str
    components: tuple[Component, ...]
    incidents: tuple[Incident, ...]
    maintenances: tuple[Incident, ...]
    #: more was on the page than is kept (components, incidents or maintenances over their caps)
    truncated: bool = False


def component_id_pattern(fmt: str) -> tuple[str, str]:
    """The regular expression a component id of ``fmt`` must match, and its description for an error."""
    return _ID_PATTERNS[fmt]


def _text(value: Any, limit: int = MAX_TEXT) -> str:
    if not isinstance(value, str):
        return ""
    return _CONTROL.sub(" ", value[:limit * 2])[:limit].strip()


def _ident(value: Any) -> str:
    text = str(value) if isinstance(value, int) and not isinstance(value, bool) else value
    return text if isinstance(text, str) and _ID.fullmatch(text) else ""


def _time(value: Any) -> float | None:
    if not isinstance(value, str) or len(value) > 40:
        return None
    try:
        stamp = datetime.fromisoformat(value.replace("Z", "+00:00") if value.endswith("Z") else value)
    except ValueError:
        return None
    if stamp.tzinfo is None:
        return None  # a time without a zone means nothing certain
    return stamp.timestamp()


def _items(value: Any) -> list[Any]:
    return value if isinstance(value, list) else []


def _load(body: bytes) -> Mapping[str, Any]:
    try:
        doc = json.loads(body)
    except RecursionError:
        raise StatusPageError("the status page nests too deeply to be JSON we read") from None
    except ValueError:
        raise StatusPageError("the status page is not valid JSON") from None
    if not isinstance(doc, dict):
        raise StatusPageError("the status page is not a JSON object")
    return doc


def parse(fmt: str, body: bytes) -> VendorStatus:
    """The page's current state; raises StatusPageError (one line) for a page that is not its format."""
    if fmt not in FORMATS:
        raise StatusPageError(f"unknown status page format {fmt[:32]!r}")
    doc = _load(body)
    if fmt == "slack":
        return _slack(doc)
    return _statuspage(doc, require_incidents=fmt == "statuspage")


# --- Statuspage v2 (and incident.io's copy of it) --------------------------------------------------


_STATUS_IMPACT = {"operational": "none", "degraded_performance": "minor", "partial_outage": "major",
                  "major_outage": "critical", "under_maintenance": "maintenance"}


def _statuspage(doc: Mapping[str, Any], require_incidents: bool) -> VendorStatus:
    if not isinstance(doc.get("components"), list):
        raise StatusPageError("the status page has no components list")
    if require_incidents and "incidents" in doc and not isinstance(doc["incidents"], list):
        raise StatusPageError("the status page's incidents is not a list")
    truncated = False
    components: list[Component] = []
    seen: set[str] = set()
    for item in _items(doc.get("components")):
        if not isinstance(item, dict) or item.get("group") is True:
            continue  # a group's status is its members'; they are listed themselves
        cid = _ident(item.get("id"))
        if not cid or cid in seen:
            continue
        if len(components) >= MAX_COMPONENTS:
            truncated = True
            break
        seen.add(cid)
        status = item.get("status")
        components.append(Component(cid, _text(item.get("name")) or cid,
                                    status if status in COMPONENT_STATUSES[:-1] else "unknown"))
    incidents, more = _events(doc.get("incidents"), maintenance=False)
    maintenances, more_m = _events(doc.get("scheduled_maintenances"), maintenance=True)
    status = doc.get("status")
    indicator = status.get("indicator") if isinstance(status, dict) else None
    description = _text(status.get("description")) if isinstance(status, dict) else ""
    return VendorStatus(indicator if indicator in IMPACTS[:-1] else "unknown", description, tuple(components),
                        incidents, maintenances, truncated or more or more_m)


_OVER = ("resolved", "postmortem", "completed")


def _events(value: Any, maintenance: bool) -> tuple[tuple[Incident, ...], bool]:
    out: list[Incident] = []
    seen: set[str] = set()
    for item in _items(value):
        if not isinstance(item, dict):
            continue
        iid = _ident(item.get("id"))
        status = _text(item.get("status"), 32).lower()
        if not iid or status in _OVER or iid in seen:  # an id twice would be one series twice
            continue
        seen.add(iid)
        if len(out) >= MAX_INCIDENTS:
            return tuple(out), True
        affected = _affected(item)
        impact = item.get("impact")
        if maintenance:
            out.append(Incident(iid, _text(item.get("name")) or iid, "maintenance", status,
                                _time(item.get("scheduled_for")), _time(item.get("updated_at")), affected, True,
                                _time(item.get("scheduled_until")), status in ("in_progress", "verifying")))
        else:
            out.append(Incident(iid, _text(item.get("name")) or iid, impact if impact in IMPACTS[:-1] else "unknown",
                                status, _time(item.get("started_at")) or _time(item.get("created_at")),
                                _time(item.get("updated_at")), affected))
    return tuple(out), False


def _affected(item: Mapping[str, Any]) -> tuple[str, ...]:
    """The ids of the components an incident names: its ``components``, and those its updates list."""
    ids: dict[str, None] = {}
    for comp in _items(item.get("components"))[:MAX_AFFECTED]:
        if isinstance(comp, dict) and (cid := _ident(comp.get("id"))):
            ids[cid] = None
    for update in _items(item.get("incident_updates"))[:MAX_INCIDENTS]:
        if not isinstance(update, dict):
            continue
        for comp in _items(update.get("affected_components"))[:MAX_AFFECTED]:
            if isinstance(comp, dict) and (cid := _ident(comp.get("code"))):
                ids[cid] = None
    return tuple(list(ids)[:MAX_AFFECTED])


# --- Slack ----------------------------------------------------------------------------------------

#: Slack's incident types, as the component status they stand for
_SLACK_TYPES = {"outage": "major_outage", "incident": "partial_outage", "notice": "degraded_performance",
                "maintenance": "under_maintenance"}
_SLACK_IMPACT = {"outage": "critical", "incident": "major", "notice": "minor", "maintenance": "maintenance"}
_SLACK_OVER = ("ok", "resolved", "completed")


def _slack(doc: Mapping[str, Any]) -> VendorStatus:
    status = doc.get("status")
    if not isinstance(status, str) or not isinstance(doc.get("active_incidents", []), list):
        raise StatusPageError("the status page has no status text or active_incidents list")
    truncated = False
    incidents: list[Incident] = []
    maintenances: list[Incident] = []
    worst: dict[str, str] = {}
    seen: set[str] = set()
    for item in _items(doc.get("active_incidents")):
        if not isinstance(item, dict):
            continue
        iid = _ident(item.get("id"))
        state = _text(item.get("status"), 32).lower()
        if not iid or state in _SLACK_OVER or iid in seen:
            continue
        seen.add(iid)
        kind = _text(item.get("type"), 32).lower()
        services = tuple(dict.fromkeys(
            name for name in (_text(s, 64) for s in _items(item.get("services"))[:MAX_AFFECTED]) if name))
        is_maintenance = kind == "maintenance"
        bucket = maintenances if is_maintenance else incidents
        if len(bucket) >= MAX_INCIDENTS:
            truncated = True
            continue
        bucket.append(Incident(iid, _text(item.get("title")) or iid, _SLACK_IMPACT.get(kind, "unknown"), state,
                               _time(item.get("date_created")), _time(item.get("date_updated")), services,
                               is_maintenance, active=state != "scheduled"))
        comp_status = _SLACK_TYPES.get(kind, "partial_outage")
        for name in services:
            if len(worst) >= MAX_COMPONENTS and name not in worst:
                truncated = True
                continue
            old = worst.get(name, "operational")
            worst[name] = comp_status if _rank(comp_status) > _rank(old) else old
    components = tuple(Component(name, name, state) for name, state in worst.items())
    indicator = "none" if status == "ok" else max((i.impact for i in incidents), key=_impact_rank, default="minor")
    if status != "ok" and not incidents and maintenances:
        indicator = "maintenance"
    return VendorStatus(indicator, _text(status, 32), components, tuple(incidents), tuple(maintenances), truncated)


_WORSE = ("operational", "under_maintenance", "degraded_performance", "partial_outage", "major_outage")


def _rank(status: str) -> int:
    return _WORSE.index(status) if status in _WORSE else 0


def _impact_rank(impact: str) -> int:
    return IMPACTS.index(impact) if impact in IMPACTS[:4] else 0


# --- what a target sees of it ---------------------------------------------------------------------


def affecting(events: Iterable[Incident], watched: frozenset[str] | None,
              components: Iterable[Component] = ()) -> list[Incident]:
    """The events that touch a component in ``watched`` (None: every component). An incident naming no
    component at all is page-wide and touches every one."""
    out = []
    for event in events:
        if watched is None or not event.components or watched.intersection(event.components):
            out.append(event)
    return out


def component_trouble(components: Iterable[Component], watched: frozenset[str] | None) -> list[Component]:
    """Watched components whose status is not operational (incident.io pages carry no incidents list:
    this is then the vendor's word)."""
    return [c for c in components if (watched is None or c.id in watched) and c.status != "operational"]
