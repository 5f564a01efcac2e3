"""The status-page parser against the three formats and against hostile pages: a page is untrusted
input, so whatever it holds costs bounded records, a one-line error at worst, never a traceback."""

from __future__ import annotations

import json
from typing import Any

import pytest

from exporter.statuspage import (
    MAX_COMPONENTS,
    MAX_INCIDENTS,
    MAX_TEXT,
    StatusPageError,
    affecting,
    component_trouble,
    parse,
)

GITHUB = {
    "page": {"id": "kctbh9vrtdwd", "name": "GitHub", "updated_at": "2026-12-06T10:00:00.000Z"},
    "status": {"indicator": "major", "description": "Partial System Outage"},
    "components": [
        {"id": "brv1bkgrwx7q", "name": "API Requests", "status": "major_outage", "group": False},
        {"id": "8l4ygp009s5s", "name": "Git Operations", "status": "operational"},
        {"id": "grp000000001", "name": "A group", "status": "operational", "group": True},
    ],
    "incidents": [{
        "id": "p0sm9ppnq4n8", "name": "Incident with API Requests", "status": "investigating", "impact": "major",
        "created_at": "2026-12-06T09:58:00.000Z", "started_at": "2026-12-06T09:55:00Z",
        "updated_at": "2026-12-06T10:00:00.000+00:00",
        "components": [{"id": "brv1bkgrwx7q", "name": "API Requests"}],
        "incident_updates": [{"affected_components": [{"code": "8l4ygp009s5s", "name": "Git Operations"}]}],
    }, {"id": "old000000001", "name": "Yesterday", "status": "resolved", "impact": "minor"}],
    "scheduled_maintenances": [{
        "id": "m00000000001", "name": "Database upgrade", "status": "in_progress", "impact": "maintenance",
        "scheduled_for": "2026-12-06T09:00:00Z", "scheduled_until": "2026-12-06T11:00:00Z",
        "components": [{"id": "8l4ygp009s5s"}]}, {
        "id": "m00000000002", "name": "Next week", "status": "scheduled", "scheduled_for": "2026-12-13T09:00:00Z"}],
}


def dumps(doc: Any) -> bytes:
    return json.dumps(doc).encode()


def test_statuspage_summary_components_incidents_and_maintenances() -> None:
    status = parse("statuspage", dumps(GITHUB))
    assert status.indicator == "major"
    assert [(c.id, c.name, c.status) for c in status.components] == [
        ("brv1bkgrwx7q", "API Requests", "major_outage"), ("8l4ygp009s5s", "Git Operations", "operational")]
    [incident] = status.incidents  # the resolved one is history
    assert (incident.name, incident.impact, incident.status) == ("Incident with API Requests", "major", "investigating")
    assert incident.started == 1796550900.0  # 2026-12-06T09:55:00Z
    assert incident.updated == 1796551200.0
    assert incident.components == ("brv1bkgrwx7q", "8l4ygp009s5s")  # its own list and its updates'
    assert [(m.name, m.active) for m in status.maintenances] == [("Database upgrade", True), ("Next week", False)]
    assert status.maintenances[0].ends == 1796554800.0


def test_what_a_target_watching_one_component_sees() -> None:
    status = parse("statuspage", dumps(GITHUB))
    api = frozenset({"brv1bkgrwx7q"})
    webhooks = frozenset({"4230lsnqdsld"})
    assert [i.id for i in affecting(status.incidents, api)] == ["p0sm9ppnq4n8"]
    assert affecting(status.incidents, webhooks) == []
    assert [i.id for i in affecting(status.incidents, None)] == ["p0sm9ppnq4n8"]
    assert [c.id for c in component_trouble(status.components, api)] == ["brv1bkgrwx7q"]
    # an incident that names no component is page-wide: it touches every component
    wide = parse("statuspage", dumps({"components": [], "incidents": [{"id": "x00000000001", "name": "All down",
                                                                     "status": "identified"}]}))
    assert [i.name for i in affecting(wide.incidents, webhooks)] == ["All down"]


def test_incident_io_summary_has_no_incidents_key_and_ulid_ids() -> None:
    doc = {"page": {"name": "OpenAI"}, "status": {"indicator": "minor", "description": "Degraded"},
           "components": [{"id": "01JMXBRMFE6N2NNT7DG6XZQ6PW", "name": "Login", "status": "partial_outage"},
                          {"id": "01JMXBRMFE6N2NNT7DG6XZQ6PX", "name": "Login", "status": "operational"}],
           "scheduled_maintenances": []}
    status = parse("incidentio", dumps(doc))
    assert status.incidents == ()
    # names are not unique (OpenAI lists "Login" twice): ids tell them apart
    trouble = component_trouble(status.components, frozenset({"01JMXBRMFE6N2NNT7DG6XZQ6PW"}))
    assert [(c.id, c.status) for c in trouble] == [("01JMXBRMFE6N2NNT7DG6XZQ6PW", "partial_outage")]
    assert component_trouble(status.components, frozenset({"01JMXBRMFE6N2NNT7DG6XZQ6PX"})) == []


def test_slack_current_services_by_name() -> None:
    ok = parse("slack", b'{"status":"ok","active_incidents":[],"date_created":"2018-09-07T18:34:15-07:00"}')
    assert (ok.indicator, ok.components, ok.incidents) == ("none", (), ())
    doc = {"status": "active", "active_incidents": [
        {"id": 879, "title": "Trouble with API calls", "type": "incident", "status": "active",
         "date_created": "2026-12-06T10:00:00-08:00", "services": ["Apps/Integrations/APIs", "Messaging"]},
        {"id": 880, "title": "Planned work", "type": "maintenance", "status": "active", "services": ["Login/SSO"]},
        {"id": 881, "title": "Done", "type": "outage", "status": "resolved", "services": ["Files"]}]}
    status = parse("slack", dumps(doc))
    assert [(i.id, i.impact) for i in status.incidents] == [("879", "major")]
    assert status.incidents[0].started == 1796580000.0
    assert [m.name for m in status.maintenances] == ["Planned work"]
    assert {c.id: c.status for c in status.components} == {
        "Apps/Integrations/APIs": "partial_outage", "Messaging": "partial_outage", "Login/SSO": "under_maintenance"}


@pytest.mark.parametrize(("fmt", "body", "error"), [
    ("statuspage", b"<html>Service Unavailable</html>", "the status page is not valid JSON"),
    ("statuspage", b"[1, 2]", "the status page is not a JSON object"),
    ("statuspage", b"{}", "the status page has no components list"),
    ("statuspage", b'{"components": {"a": 1}}', "the status page has no components list"),
    ("statuspage", b'{"components": [], "incidents": "none"}', "the status page's incidents is not a list"),
    ("slack", b'{"status": 1}', "the status page has no status text or active_incidents list"),
    ("statuspage", b"[" * 100000 + b"]" * 100000, "the status page nests too deeply to be JSON we read"),
    ("statuspage", b"[" * 50 + b"]" * 50, "the status page is not a JSON object"),
    ("statuspage", b'{"a":' * 100000 + b"1" + b"}" * 100000, "the status page nests too deeply to be JSON we read"),
    ("statuspage", b"\xff\xfe\x00garbage", "the status page is not valid JSON"),
], ids=["html", "list", "empty", "components-mapping", "incidents-text", "slack-status-number", "deep-list",
        "shallow-list", "deep-object", "binary"])
def test_a_page_that_is_not_its_format_is_one_line(fmt: str, body: bytes, error: str) -> None:
    with pytest.raises(StatusPageError) as err:
        parse(fmt, body)
    assert str(err.value) == error


def test_wrong_types_everywhere_are_skipped_not_fatal() -> None:
    doc = {"status": "weird", "components": [
        None, 3, "x", [], {"id": 5, "name": ["no"], "status": {"x": 1}}, {"id": None},
        {"id": "okid00000001", "name": 42, "status": "sideways"}, {"id": "bad id with spaces"},
    ], "incidents": [None, {"id": {"x": 1}}, {"id": "i00000000001", "name": None, "status": None, "impact": 7,
                                              "started_at": 12, "updated_at": "yesterday", "components": "all",
                                              "incident_updates": [None, {"affected_components": "x"}]}],
        "scheduled_maintenances": "later"}
    status = parse("statuspage", dumps(doc))
    assert [(c.id, c.name, c.status) for c in status.components] == [
        ("5", "5", "unknown"), ("okid00000001", "okid00000001", "unknown")]
    [inc] = status.incidents
    assert (inc.name, inc.impact, inc.started, inc.updated, inc.components) == (
        "i00000000001", "unknown", None, None, ())
    assert status.indicator == "unknown" and status.maintenances == ()


def test_control_characters_and_huge_text_are_cleaned_and_cut() -> None:
    hostile = "\x1b[31mRED\x07\u202eevil\x00" + "A" * 10_000
    doc = {"components": [{"id": "c00000000001", "name": hostile, "status": "operational"}],
           "incidents": [{"id": "i00000000001", "name": hostile, "status": "investigating\n\x1b"}]}
    status = parse("statuspage", dumps(doc))
    for text in (status.components[0].name, status.incidents[0].name):
        assert len(text) <= MAX_TEXT
        assert not any(ord(ch) < 32 or 0x7f <= ord(ch) <= 0x9f or ch == "\u202e" for ch in text)
        assert text.startswith("[31mRED")
    assert status.incidents[0].status == "investigating"


def test_many_components_and_incidents_are_capped() -> None:
    many, lots = 2 * MAX_INCIDENTS + 1, 2 * MAX_COMPONENTS + 1  # twice a cap and one: over it, whatever it is
    doc = {"components": [{"id": f"c{i:011d}", "name": f"C{i}", "status": "major_outage"} for i in range(lots)],
           "incidents": [{"id": f"i{i:011d}", "name": f"I{i}", "status": "investigating",
                          "components": [{"id": f"c{j:011d}"} for j in range(lots)]} for i in range(many)],
           "scheduled_maintenances": [{"id": f"m{i:011d}", "status": "in_progress"} for i in range(many)]}
    status = parse("statuspage", dumps(doc))
    assert len(status.components) == MAX_COMPONENTS
    assert len(status.incidents) == MAX_INCIDENTS and len(status.maintenances) == MAX_INCIDENTS
    assert all(len(i.components) <= MAX_COMPONENTS for i in status.incidents)
    assert status.truncated
    slack = {"status": "active", "active_incidents": [
        {"id": i, "title": "t", "type": "incident", "status": "active", "services": [f"s{j}" for j in range(lots)]}
        for i in range(many)]}
    parsed = parse("slack", dumps(slack))
    assert len(parsed.incidents) == MAX_INCIDENTS and len(parsed.components) <= MAX_COMPONENTS and parsed.truncated


def test_duplicate_component_ids_are_kept_once() -> None:
    doc = {"components": [{"id": "c00000000001", "name": "first", "status": "operational"},
                          {"id": "c00000000001", "name": "second", "status": "major_outage"}]}
    assert [c.name for c in parse("statuspage", dumps(doc)).components] == ["first"]


def test_an_id_listed_twice_is_one_record() -> None:
    """Two incidents with one id would be one series written twice (an invalid exposition)."""
    doc = {"components": [], "incidents": [{"id": "i00000000001", "name": "first", "status": "identified"},
                                          {"id": "i00000000001", "name": "again", "status": "identified"}],
           "scheduled_maintenances": [{"id": "m00000000001", "status": "in_progress"},
                                      {"id": "m00000000001", "status": "scheduled"}]}
    status = parse("statuspage", dumps(doc))
    assert [i.name for i in status.incidents] == ["first"] and len(status.maintenances) == 1
    slack = {"status": "active", "active_incidents": [{"id": 7, "title": "a", "type": "incident", "status": "active"},
                                                      {"id": "7", "title": "b", "type": "outage", "status": "active"}]}
    assert [i.name for i in parse("slack", dumps(slack)).incidents] == ["a"]
