"""The Grafana dashboards (rendered from mixin/): their JSON has the shape current Grafana imports
(stable uids, schema 39+, datasource/job/instance/vendor/target variables, known panel types) and
decodes with Grafana's own types (grafana-foundation-sdk) without losing a key; every query keeps
job in its aggregation; and every panel query, with the variables substituted, parses and returns
data from a real Prometheus scraping the exporter against the simulators through two jobs (the
plain one and a /probe job; the stack of test_prometheus_e2e, started once for both modules)."""

from __future__ import annotations

import json
import math
import re
import time
import urllib.parse
from typing import Any

import pytest
import yaml

from exporter.collector import FAMILIES, FAULT_FAMILIES
from exporter.model import CLASSES

from ..conftest import ROOT
from .test_prometheus_e2e import PROM_DIR, VENDORS, WAIT, Stack, http, prom_stack, wait_for  # noqa: F401

DASHBOARDS = ROOT / "dashboards"
UIDS = {"apistatus-overview", "apistatus-target"}
PANEL_TYPES = {"timeseries", "state-timeline", "stat", "bargauge", "table", "row"}
#: Grafana's own variables the queries may use, and what the test puts in their place (1 s scrapes)
BUILTINS = {"__rate_interval": "10s", "__interval": "1s", "__range": "1m"}
VAR = re.compile(r"\$(?:\{(\w+)(?::\w+)?\}|(\w+))")
#: per dashboard: the values of its variables for the queries (the drill-down takes each target in turn)
OVERVIEW_VARS = {"job": ".*", "instance": ".*", "vendor": ".*", "target": ".*"}
JOBS = {"apistatus", "apistatus-probe"}
RUNBOOK_URL = "https://github.com/apistatus-exporter/apistatus-exporter/blob/main/docs/runbook.md#"


def dashboards() -> dict[str, dict[str, Any]]:
    found = {}
    for path in sorted(DASHBOARDS.glob("*.json")):
        board = json.loads(path.read_text())
        found[board["uid"]] = board
    return found


def queries(board: dict[str, Any]) -> list[tuple[str, dict[str, Any]]]:
    return [(p["title"], t) for p in board["panels"] for t in p.get("targets", [])]


def panels(board: dict[str, Any]) -> list[dict[str, Any]]:
    return [p for p in board["panels"] if p["type"] != "row"]


def substitute(expr: str, values: dict[str, str]) -> str:
    def one(m: re.Match[str]) -> str:
        name = m.group(1) or m.group(2)
        if name in values:
            return values[name]
        assert name in BUILTINS, f"variable ${name} is not defined by the dashboard"
        return BUILTINS[name]

    return VAR.sub(one, expr)


def known_series() -> set[str]:
    """Every series name the exporter or the recording rules produce."""
    names = {f.name for f in FAMILIES} | {f.name for f in FAULT_FAMILIES}  # the vendors' pages, our egress
    names |= {f.name + s for f in FAMILIES if f.type == "histogram" for s in ("_bucket", "_sum", "_count")}
    names |= {"apistatus_build_info", "apistatus_config_last_reload_successful",
              "apistatus_config_last_reload_success_timestamp_seconds", "apistatus_targets",
              "apistatus_probe_start_lag_seconds", "apistatus_probe_start_lag_seconds_sum",
              "apistatus_probe_start_lag_seconds_count", "apistatus_probes_in_flight", "apistatus_budget_delays_total",
              "apistatus_probe_cached"}
    rules = yaml.safe_load((PROM_DIR / "recording_rules.yml").read_text())
    names |= {r["record"] for g in rules["groups"] for r in g["rules"]}
    return names


def test_dashboards_have_the_shape_grafana_imports() -> None:
    boards = dashboards()
    assert set(boards) == UIDS, "dashboard uids are links and bookmarks: they must not change"
    for uid, board in boards.items():
        assert board["schemaVersion"] >= 39, uid
        assert board["title"] and board["tags"], uid
        variables = {v["name"]: v for v in board["templating"]["list"]}
        assert list(variables) == ["datasource", "job", "instance", "vendor", "target"], uid
        assert variables["datasource"]["type"] == "datasource"
        assert variables["datasource"]["query"] == "prometheus"
        for name in ("job", "instance", "vendor", "target"):
            assert variables[name]["type"] == "query"
            assert variables[name]["datasource"]["uid"] == "${datasource}"
        ids = [p["id"] for p in board["panels"]]
        assert len(ids) == len(set(ids)), f"{uid}: panel ids repeat"
        cells: set[tuple[int, int]] = set()
        for p in board["panels"]:
            where = f"{uid} panel {p['title']!r}"
            assert p["type"] in PANEL_TYPES, where
            if p["type"] == "row":
                assert p["gridPos"]["w"] == 24 and p["gridPos"]["h"] == 1, where
                continue
            assert p["datasource"] == {"type": "prometheus", "uid": "${datasource}"}, where
            assert p["targets"], where
            for t in p["targets"]:
                assert t["datasource"]["uid"] == "${datasource}" and t["expr"].strip(), where
            g = p["gridPos"]
            assert g["x"] >= 0 and g["x"] + g["w"] <= 24 and g["h"] > 0, where
            mine = {(x, y) for x in range(g["x"], g["x"] + g["w"]) for y in range(g["y"], g["y"] + g["h"])}
            assert not mine & cells, f"{where} overlaps another panel"
            cells |= mine


def test_dashboards_cover_what_the_issue_asks_for() -> None:
    boards = dashboards()

    def text(uid: str) -> str:
        return " ".join(t["expr"] for _, t in queries(boards[uid]))

    overview, target = text("apistatus-overview"), text("apistatus-target")
    types = {p["type"] for p in panels(boards["apistatus-overview"])}
    assert {"state-timeline", "stat", "bargauge", "timeseries", "table"} <= types
    for needle in ("apistatus_outcome", "apistatus_up", "apistatus_maintenance", "apistatus_auth_failures_total",
                   "apistatus_quota_remaining", 'class="rate_limited"', "histogram_quantile(0.5",
                   "histogram_quantile(0.95", "sum by (job, class) (rate(apistatus_responses_total"):
        assert needle in overview, needle
    for needle in ("up{", "apistatus_config_last_reload_successful", "apistatus_probe_start_lag_seconds_sum",
                   "apistatus_targets", "scrape_duration_seconds", "apistatus_probes_in_flight",
                   "apistatus_budget_delays_total", "apistatus_probe_cached"):
        assert needle in overview, f"exporter-health row lacks {needle}"
    for needle in ("by (job, class, code)", "apistatus_request_duration_seconds_bucket",
                   "apistatus_retry_after_seconds", "apistatus_quota_remaining", "apistatus_clock_skew_seconds",
                   "apistatus_tls_cert_expiry_timestamp_seconds"):
        assert needle in target, needle
    assert "apistatus_tls_cert_expiry_timestamp_seconds" in overview  # a column of the state table
    # is it us or them (issue 26): the overview opens with our egress and the vendors' own word; the
    # drill-down draws the vendor's word in the same panel as our check
    first = boards["apistatus-overview"]["panels"]
    assert first[0]["type"] == "row" and first[0]["title"] == "Is it us or them?"
    for needle in ("apistatus_egress_up", "apistatus_egress_suspected_down", "apistatus_vendor_incident_active",
                   "apistatus_vendor_maintenance{", "apistatus_vendor_incident_info",
                   "apistatus_vendor_maintenance_info", "apistatus_vendor_status_fetch_success"):
        assert needle in overview, needle
    beside = [p["title"] for p in panels(boards["apistatus-target"])
              if {"apistatus_up{", "apistatus_vendor_incident_active{"} <= {n for t in p["targets"] for n in
                                                                          re.findall(r"apistatus_\w+\{", t["expr"])}]
    assert beside, "no drill-down panel shows the vendor's word beside our check"
    # every series a query names exists: a typo would otherwise show as an empty panel
    known = known_series()
    for uid, board in boards.items():
        for title, t in queries(board):
            for name in re.findall(r"\b(?:apistatus_\w+|\w+:apistatus_\w+:\w+)", t["expr"]):
                assert name in known, f"{uid} {title!r}: unknown series {name}"


def _has_data(result: list[dict[str, Any]]) -> bool:
    """At least one sample that is a number (a query that only yields NaN shows an empty panel)."""
    for r in result:
        values = r.get("values") or ([r["value"]] if "value" in r else [])
        if any(not math.isnan(float(v[1])) for v in values):
            return True
    return False


def _run(stack: Stack, target: dict[str, Any], expr: str) -> list[dict[str, Any]]:
    if target.get("instant"):
        return stack.query(expr)
    return stack.query_range(expr, 30)


def test_every_panel_query_returns_data(prom_stack: Stack) -> None:  # noqa: F811
    """Overview with all vendors and targets; the drill-down with each of the ten targets in turn: every
    query parses for each, and returns data (for the drill-down: for at least one target, since a
    quota panel has nothing for a vendor without quotas)."""
    boards = dashboards()
    jobs: list[tuple[str, list[str], dict[str, Any]]] = []  # (where, substituted exprs, target)
    for title, t in queries(boards["apistatus-overview"]):
        jobs.append((f"overview {title!r}", [substitute(t["expr"], OVERVIEW_VARS)], t))
    for title, t in queries(boards["apistatus-target"]):
        exprs = [substitute(t["expr"], {"job": ".*", "instance": ".*", "vendor": v, "target": v}) for v in VENDORS]
        jobs.append((f"target {title!r}", exprs, t))

    pending = list(jobs)
    end = time.monotonic() + WAIT
    while pending:
        still = []
        for where, exprs, t in pending:
            # a PromQL error fails at once inside _run, naming the query and Prometheus's message
            results = [_run(prom_stack, t, e) for e in exprs]  # all of them: each must parse
            if not any(_has_data(r) for r in results):
                still.append((where, exprs, t))
        pending = still
        if pending and time.monotonic() > end:
            missing = "; ".join(f"{w}: {e[0]}" for w, e, _ in pending)
            pytest.fail(f"no data after {WAIT:.0f}s for: {missing}")
        if pending:
            time.sleep(0.5)


def test_variable_queries_list_every_job_instance_vendor_and_target(prom_stack: Stack) -> None:  # noqa: F811
    """$job lists both jobs of the stack, $instance the exporter and the /probe job's target,
    $vendor and $target every vendor."""
    exporter = prom_stack.exporter.removeprefix("http://")
    wanted = {"job": JOBS, "instance": {exporter, "rubiq"}, "vendor": set(VENDORS), "target": set(VENDORS)}
    for uid, board in dashboards().items():
        for var in board["templating"]["list"]:
            if var["type"] != "query":
                continue
            m = re.fullmatch(r"label_values\((.+), (\w+)\)", var["query"]["query"])
            assert m, f"{uid} ${var['name']}: {var['query']['query']}"
            match = substitute(m.group(1), OVERVIEW_VARS)
            url = (prom_stack.prometheus + f"/api/v1/label/{m.group(2)}/values?"
                   + urllib.parse.urlencode({"match[]": match}))
            status, body = http(url)
            assert status == 200, body[:300]
            assert set(json.loads(body)["data"]) == wanted[var["name"]], f"{uid} ${var['name']}"


def test_per_target_panels_keep_the_jobs_apart(prom_stack: Stack) -> None:  # noqa: F811
    """rubiq is scraped by the plain job and by the /probe job: the overview's Up panel shows it once
    per job, never blended into one line."""
    up = next(t for title, t in queries(dashboards()["apistatus-overview"]) if title == "Up")
    got = wait_for("both jobs' rubiq series in the Up panel", lambda: {
        r["metric"]["job"] for r in prom_stack.query(substitute(up["expr"], OVERVIEW_VARS))
        if r["metric"].get("target") == "rubiq"} or None)
    assert got == JOBS


def test_dashboards_decode_with_grafana_s_own_types_without_losing_a_key() -> None:
    """Grafana's dashboard schema as its SDK (grafana-foundation-sdk) has it: decoded and encoded
    again, every key of ours survives with its value (a key Grafana does not know would be dropped)."""
    from grafana_foundation_sdk.cog import plugins
    from grafana_foundation_sdk.cog.encoder import JSONEncoder
    from grafana_foundation_sdk.models.dashboard import Dashboard

    plugins.register_default_plugins()

    def lost(ours: Any, theirs: Any, path: str) -> list[str]:
        if isinstance(ours, dict):
            if not isinstance(theirs, dict):
                return [path]
            return [p for k, v in ours.items()
                    for p in ([f"{path}/{k}"] if k not in theirs else lost(v, theirs[k], f"{path}/{k}"))]
        if isinstance(ours, list):
            if not isinstance(theirs, list) or len(ours) != len(theirs):
                return [path]
            return [p for i, (a, b) in enumerate(zip(ours, theirs, strict=True)) for p in lost(a, b, f"{path}[{i}]")]
        return [] if ours == theirs else [f"{path}: {ours!r} became {theirs!r}"]

    for uid, board in dashboards().items():
        again = json.loads(json.dumps(Dashboard.from_json(board), cls=JSONEncoder))
        assert lost(board, again, uid) == []


def _aggregations(expr: str) -> list[str]:
    return re.findall(r"\b(?:sum|max|min|avg|count) by \(([^)]*)\)", expr)


def test_every_query_filters_on_job_and_instance_and_keeps_job_apart() -> None:
    """Several jobs, instances and shards: every selector takes $job (and, but for /probe scrapes,
    $instance), and every aggregation keeps job (or is per instance), so nothing blends."""
    for uid, board in dashboards().items():
        for title, t in queries(board):
            where = f"{uid} {title!r}: {t['expr']}"
            selectors = re.findall(r"\{([^}]*)\}", t["expr"])
            assert selectors, where
            for sel in selectors:
                assert 'job=~"$job"' in sel, where
                if "/probe" not in title:
                    assert 'instance=~"$instance"' in sel, where
            for by in _aggregations(t["expr"]):
                assert "job" in by.split(", "), f"{where}: aggregates jobs together"


def test_panels_tied_to_an_alert_link_its_runbook_and_targets_link_their_page() -> None:
    """Each runbook link names an alert of the rules and its runbook URL; the alerts a person looks
    at a dashboard for have a panel that links them; the overview table and the drill-down link the
    exporter's /targets/NAME page."""
    from .test_prometheus_e2e import alert_rules

    rules = alert_rules()
    linked: set[str] = set()
    for board in dashboards().values():
        for p in panels(board):
            for link in p.get("links", []):
                name = link["title"].removeprefix("Runbook: ")
                assert name in rules, link
                assert link["url"] == rules[name]["annotations"]["runbook_url"] == RUNBOOK_URL + name.lower()
                linked.add(name)
    assert linked >= {"ApistatusTargetDown", "ApistatusVendorMaintenance", "ApistatusAuthFailing",
                      "ApistatusQuotaLow", "ApistatusQuotaExceeded", "ApistatusRateLimited", "ApistatusClockSkew",
                      "ApistatusErrorBudgetBurnFast", "ApistatusProbesStale", "ApistatusConfigReloadFailed",
                      "ApistatusExporterAbsent", "ApistatusExporterOverloaded", "ApistatusProbeScrapeFailed",
                      "ApistatusCertificateExpiringSoon", "ApistatusBudgetDelayingProbes"}
    text = json.dumps(dashboards())
    assert "/targets/${__value.raw}" in text and "/targets/${__field.labels.target}" in text


def test_class_timelines_know_every_class() -> None:
    """The state timelines turn each class into a number and back; a class missing from either side
    would show as a bare number or a gap."""
    for uid, board in dashboards().items():
        for p in panels(board):
            if p["type"] != "state-timeline":
                continue
            expr = p["targets"][0]["expr"]
            index = dict(re.findall(r'class="(\w+)"\} == 1\) \* (\d+)', expr))
            names = {o["text"]: k for m in p["fieldConfig"]["defaults"]["mappings"] for k, o in m["options"].items()}
            assert set(index) == set(CLASSES), f"{uid} {p['title']!r}: query classes"
            assert names == index, f"{uid} {p['title']!r}: value mappings do not match the query"
