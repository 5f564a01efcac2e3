"""The Prometheus rules and the Alertmanager example, checked by the real tools: promtool checks the
rule files and the scrape example and runs the rule unit tests; amtool checks the Alertmanager
example and its routing. A missing tool fails the test (apt-get install prometheus
prometheus-alertmanager), it never skips."""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml

from exporter.model import CLASSES
from exporter.model import UP as UP_CLASSES

from ..conftest import ROOT

PROM = ROOT / "config" / "prometheus"
RULE_FILES = [PROM / "recording_rules.yml", PROM / "alert_rules.yml"]
UNIT_TESTS = sorted((PROM / "tests").glob("*.yml"))
AM_CONFIG = ROOT / "config" / "alertmanager" / "alertmanager.yml"
RUNBOOK = ROOT / "docs" / "runbook.md"
RUNBOOK_URL = "https://github.com/apistatus-exporter/apistatus-exporter/blob/main/docs/runbook.md#"
#: alerts about the exporter itself: they have no target or vendor label to name
EXPORTER_WIDE = {"ApistatusConfigReloadFailed", "ApistatusExporterAbsent", "ApistatusExporterOverloaded",
                 "ApistatusProbeScrapeFailed", "ApistatusBudgetDelayingProbes"}
#: alerts about our own egress (issue 26): they name it, never a vendor
EGRESS_WIDE = {"ApistatusEgressDown"}
#: the alerts the issue asks for, by what they are about
REQUIRED = {
    "ApistatusTargetDown", "ApistatusVendorMaintenance", "ApistatusAuthFailing", "ApistatusClockSkew",
    "ApistatusRateLimited", "ApistatusQuotaLow", "ApistatusQuotaExhaustionPredicted", "ApistatusQuotaExceeded",
    "ApistatusProbesStale", "ApistatusConfigReloadFailed", "ApistatusExporterAbsent",
    "ApistatusErrorBudgetBurnFast", "ApistatusErrorBudgetBurnSlow",
    # issue 17: client_error as a ticket, the exporter's own load and /probe; issue 13: certificates
    "ApistatusCheckRejected", "ApistatusExporterOverloaded", "ApistatusProbeScrapeFailed",
    # issue 26: the vendor's own word and our egress
    "ApistatusVendorDeclaredMaintenance", "ApistatusEgressDown", "ApistatusTargetBehindEgressDown",
    "ApistatusCertificateExpiringSoon",
    # issue 17: probes held back by request budgets (the exporter-health row's budget panel)
    "ApistatusBudgetDelayingProbes",
}
#: the target that is only in maintenance in every unit test
MAINTENANCE_ONLY = "shop"
#: the unit tests of the alerts (the slow-burn ones evaluate every 5 minutes over days of history)
ALERT_TESTS = ("alerts_test.yml", "slow_burn_test.yml")


def tool(name: str) -> str:
    path = shutil.which(name)
    assert path, f"{name} is not installed (apt-get install prometheus prometheus-alertmanager)"
    return path


def run(*args: str | Path, cwd: Path = ROOT) -> subprocess.CompletedProcess[str]:
    return subprocess.run([str(a) for a in args], cwd=cwd, capture_output=True, text=True, timeout=60, check=False)


def alerts() -> dict[str, dict[str, Any]]:
    doc = yaml.safe_load((PROM / "alert_rules.yml").read_text())
    return {r["alert"]: r for g in doc["groups"] for r in g["rules"] if "alert" in r}


def test_promtool_checks_the_rule_files() -> None:
    out = run(tool("promtool"), "check", "rules", *RULE_FILES)
    assert out.returncode == 0, out.stdout + out.stderr
    assert "SUCCESS" in out.stdout


def test_promtool_checks_the_example_scrape_config() -> None:
    out = run(tool("promtool"), "check", "config", PROM / "prometheus.yml")
    assert out.returncode == 0, out.stdout + out.stderr
    jobs = {j["job_name"]: j for j in yaml.safe_load((PROM / "prometheus.yml").read_text())["scrape_configs"]}
    assert jobs["apistatus-probe"]["metrics_path"] == "/probe"
    assert "apistatus" in jobs


def test_promtool_rule_unit_tests_pass() -> None:
    assert {p.name for p in UNIT_TESTS} >= {*ALERT_TESTS, "recording_test.yml"}
    out = run(tool("promtool"), "test", "rules", *UNIT_TESTS)
    assert out.returncode == 0, out.stdout + out.stderr


def test_the_issue_s_alerts_all_exist() -> None:
    assert set(alerts()) == REQUIRED


def test_every_alert_has_severity_summary_description_and_runbook() -> None:
    runbook = RUNBOOK.read_text()
    sections = dict(re.findall(r"^## (\w+)\n(.*?)(?=^## |\Z)", runbook, re.S | re.M))
    for name, rule in alerts().items():
        # none: an alert that only inhibits others, routed nowhere (ApistatusTargetBehindEgressDown)
        assert rule["labels"]["severity"] in {"critical", "warning", "info", "none"}, name
        ann = rule["annotations"]
        assert ann["summary"].strip(), name
        if name in EXPORTER_WIDE:
            assert "$labels.instance" in ann["description"] or "$labels.job" in ann["description"], name
        elif name in EGRESS_WIDE:
            assert "{{ $labels.egress }}" in ann["description"], name
        else:
            for label in ("{{ $labels.target }}", "{{ $labels.vendor }}"):
                assert label in ann["description"], f"{name}: description does not name {label}"
        assert ann["runbook_url"] == RUNBOOK_URL + name.lower(), name
        assert name in sections, f"docs/runbook.md has no section '## {name}'"
        for part in ("**What it means.**", "**How to confirm.**", "**What to do.**"):
            assert part in sections[name], f"runbook section {name} lacks {part}"


def test_recording_rules_are_named_level_metric_operation() -> None:
    doc = yaml.safe_load((PROM / "recording_rules.yml").read_text())
    for g in doc["groups"]:
        for r in g["rules"]:
            assert re.fullmatch(r"[a-z_]+:[a-z_]+:[a-z0-9_]+", r["record"]), r["record"]


def _unit_tests() -> list[dict[str, Any]]:
    tests: list[dict[str, Any]] = []
    for name in ALERT_TESTS:
        tests += yaml.safe_load((PROM / "tests" / name).read_text())["tests"]
    return tests


def _copy_rules(tmp_path: Path, alert_rules: str) -> Path:
    (tmp_path / "tests").mkdir()
    (tmp_path / "recording_rules.yml").write_text((PROM / "recording_rules.yml").read_text())
    (tmp_path / "alert_rules.yml").write_text(alert_rules)
    for name in ALERT_TESTS:
        shutil.copy(PROM / "tests" / name, tmp_path / "tests" / name)
    return tmp_path


def test_unit_tests_notice_every_alert_firing_before_its_for(tmp_path: Path) -> None:
    """With every ``for`` dropped, the unit test of each alert with a ``for`` must fail: each one has
    an evaluation where the condition already holds but the alert must stay silent."""
    text = (PROM / "alert_rules.yml").read_text()
    dropped = re.sub(r"^(\s+)for: \w+$", r"\1for: 0s", text, flags=re.M)
    _copy_rules(tmp_path, dropped)
    out = run(tool("promtool"), "test", "rules", *(f"tests/{n}" for n in ALERT_TESTS), cwd=tmp_path)
    assert out.returncode != 0
    failed = set(re.findall(r"alertname: (\w+)", out.stdout + out.stderr))
    with_for = {name for name, rule in alerts().items() if rule.get("for") not in (None, "0s")}
    # the alerts with no for: those on a confirmed failure (the confirmation is their guard, proven
    # by the unconfirmed target of their unit tests), and the one that only inhibits TargetDown
    no_for = {"ApistatusTargetDown", "ApistatusAuthFailing", "ApistatusTargetBehindEgressDown"}
    assert set(alerts()) - with_for == no_for
    assert failed == with_for, f"no unit test catches these firing early: {sorted(with_for - failed)}"


def _minutes(value: str) -> float:
    parts = re.findall(r"(\d+)([smhd])", value)
    assert parts and "".join(n + u for n, u in parts) == value, value
    return sum(int(n) * {"s": 1 / 60, "m": 1, "h": 60, "d": 1440}[u] for n, u in parts)


def test_every_alert_has_a_unit_test_for_firing_before_its_for_and_maintenance() -> None:
    """Each alert: one evaluation where it is silent and a later one where it fires (that the silent
    one falls within the ``for`` is proven by test_unit_tests_notice_every_alert_firing_before_its_for);
    the maintenance-only target never fires (but for the maintenance alert itself)."""
    for name in alerts():
        evals = [(t, e) for t in _unit_tests() for e in t.get("alert_rule_test", []) if e["alertname"] == name]
        assert evals, f"{name} has no unit test"
        firing = [_minutes(e["eval_time"]) for _, e in evals if e["exp_alerts"]]
        silent = [_minutes(e["eval_time"]) for _, e in evals if not e["exp_alerts"]]
        assert firing and silent, f"{name}: needs a silent and a firing evaluation"
        assert min(silent) < min(firing), f"{name}: no silent evaluation before it fires"
        if name == "ApistatusVendorMaintenance":
            continue
        tests = {id(t): t for t, _ in evals}.values()
        in_maintenance = [t for t in tests if any(
            s["series"].startswith("apistatus_maintenance{") and f'target="{MAINTENANCE_ONLY}"' in s["series"]
            and s["values"].startswith("1") for s in t["input_series"])]
        assert in_maintenance, f"{name}: no unit test with the maintenance-only target {MAINTENANCE_ONLY}"
        for _, e in evals:
            for a in e["exp_alerts"]:
                assert a["exp_labels"].get("target") != MAINTENANCE_ONLY, f"{name} fires for maintenance"


def _render(overrides: str) -> dict[str, str]:
    sys.path.insert(0, str(ROOT / "mixin"))
    try:
        import render
    finally:
        sys.path.pop(0)
    files: dict[str, str] = render.render(overrides)
    return files


@pytest.mark.parametrize(("what", "overrides", "old", "new"), [
    ("maintenance counted as down", "{_config+:: {downClasses+: ['maintenance']}}", "", ""),
    ("client_error pages as down", "{_config+:: {downClasses+: ['client_error']}}", "", ""),
    ("maintenance not held after it ends", "{_config+:: {maintenanceKeepFiringFor: '0s'}}", "", ""),
    # the naive staleness test (time since the last probe) calls a target in a long backoff stale
    ("stale during a Retry-After backoff", "{}",
     re.escape("(time() - apistatus_next_probe_timestamp_seconds{"),
     "(time() - apistatus_last_probe_timestamp_seconds{"),
    ("auth severity lowered", "{}",
     r'class="auth"\}\) == 1\n\s+and\n\s+apistatus_consecutive_failures\{[^}]*\} >= 2\n\s+for: 0s\n\s+labels:\n'
     r"\s+severity: critical",
     "class=\"auth\"}) == 1\n      and\n      apistatus_consecutive_failures{job=~\"apistatus|apistatus-probe\"} >= 2\n"
     "    for: 0s\n    labels:\n      severity: warning"),
    # a single failed answer pages: the confirmation dropped
    ("unconfirmed failures page", "{_config+:: {confirmedFailures: 1}}", "", ""),
    # a transport failure behind an egress without an egress check pages before the egress is known
    # (only the derived suspicion speaks for it, which needs several targets: it races the inhibition)
    ("transport failures page before the egress is known", "{_config+:: {transportConfirmedFailures: 2}}", "", ""),
    # any egress_target_info counts as checked: behind an egress without a check (default, or one whose
    # first check has not answered yet) a transport failure pages on 2 again
    ("every egress counted as checked", "{}",
     r"\n\s+and on \(cluster, egress\)\n\s+apistatus_egress_up\{[^}]*\}", ""),
    # the rule before the egress re-check: a transport failure waits one probe more even behind a
    # checked egress (slower than it needs to be)
    ("transport waits one more behind a checked egress", "{}",
     re.escape('apistatus_consecutive_failures{job=~"apistatus|apistatus-probe"} >= 2\n      )\n'
               "      and on (cluster, target, vendor)"),
     'apistatus_consecutive_failures{job=~"apistatus|apistatus-probe"} >= 3\n      )\n'
     "      and on (cluster, target, vendor)"),
    ("informational quotas page", "{}",
     re.escape("unless (apistatus_quota_informational{"), "unless (apistatus_quota_informational_x{"),
    ("burn rates without the history guard", "{}", r"\] offset \w+\)", "])"),
], ids=["maintenance-as-down", "client-error-as-down", "maintenance-not-held", "naive-staleness", "auth-severity",
        "unconfirmed-pages", "transport-before-egress", "unchecked-egress-as-checked", "transport-slow-when-checked",
        "informational-quota", "no-history-guard"])
def test_unit_tests_catch_a_broken_rule(tmp_path: Path, what: str, overrides: str, old: str, new: str) -> None:
    """The unit tests are not decoration: the same tests against a subtly broken mixin fail."""
    (tmp_path / "tests").mkdir()
    files = _render(overrides)
    changed = overrides != "{}"
    for f in ("recording_rules.yml", "alert_rules.yml"):
        text = files[f"config/prometheus/{f}"]
        if old and re.search(old, text):
            text = re.sub(old, lambda _: new, text)
            changed = True
        (tmp_path / f).write_text(text)
    assert changed, what
    if old:
        out = run(tool("promtool"), "check", "rules", tmp_path / "alert_rules.yml")
        assert out.returncode == 0, f"{what}: the broken copy does not even load: {out.stdout}{out.stderr}"
    for name in ALERT_TESTS:
        shutil.copy(PROM / "tests" / name, tmp_path / "tests" / name)
    out = run(tool("promtool"), "test", "rules", *(f"tests/{n}" for n in ALERT_TESTS), cwd=tmp_path)
    assert out.returncode != 0, f"the unit tests did not notice {what}"
    assert "FAILED" in out.stdout + out.stderr


def test_amtool_checks_the_alertmanager_example() -> None:
    out = run(tool("amtool"), "check-config", AM_CONFIG)
    assert out.returncode == 0, out.stdout + out.stderr


@pytest.mark.parametrize(("labels", "receiver"), [
    (["alertname=ApistatusTargetDown", "severity=critical"], "pager"),
    (["alertname=ApistatusQuotaLow", "severity=warning"], "ticket"),
    (["alertname=ApistatusCheckRejected", "severity=warning"], "ticket"),
    (["alertname=ApistatusVendorMaintenance", "severity=info"], "chat"),
    (["alertname=ApistatusEgressDown", "severity=critical"], "pager"),
    (["alertname=ApistatusTargetBehindEgressDown", "severity=none"], "null"),
])
def test_alertmanager_example_pages_only_for_critical(labels: list[str], receiver: str) -> None:
    out = run(tool("amtool"), "config", "routes", "test", f"--config.file={AM_CONFIG}", *labels)
    assert out.returncode == 0, out.stdout + out.stderr
    assert out.stdout.split() == [receiver]


def _inhibitions() -> list[tuple[set[str], set[str], list[str]]]:
    out = []
    for r in yaml.safe_load(AM_CONFIG.read_text())["inhibit_rules"]:
        (src,), (dst,) = r["source_matchers"], r["target_matchers"]
        s, d = re.fullmatch(r'alertname=~"([\w|]+)"', src), re.fullmatch(r'alertname=~"([\w|]+)"', dst)
        assert s and d, r
        out.append((set(s.group(1).split("|")), set(d.group(1).split("|")), r["equal"]))
    return out


def test_alertmanager_example_inhibits_secondary_symptoms() -> None:
    """Maintenance mutes the outage and burn alerts of its target; TargetDown, AuthFailing and
    QuotaExceeded mute the burn alerts; every name is an alert that exists; each rule keeps the group
    labels in `equal`, so one cluster never mutes another."""
    names = set(alerts())
    muted: dict[str, set[str]] = {}
    for src, dst, equal in _inhibitions():
        assert src | dst <= names, f"unknown alert in an inhibit rule: {sorted((src | dst) - names)}"
        assert equal[:1] == ["cluster"], equal
        assert not src & dst, f"an alert inhibits itself: {src & dst}"
        for a in src:
            muted.setdefault(a, set()).update(dst)
    burns = {"ApistatusErrorBudgetBurnFast", "ApistatusErrorBudgetBurnSlow"}
    assert {"ApistatusTargetDown", "ApistatusCheckRejected"} | burns <= muted["ApistatusVendorMaintenance"]
    for cause in ("ApistatusTargetDown", "ApistatusAuthFailing", "ApistatusQuotaExceeded"):
        assert burns <= muted[cause], cause
    assert "ApistatusTargetDown" in muted["ApistatusAuthFailing"]
    # nothing mutes a page of its own incident: the pages that remain are the causes
    critical = {n for n, r in alerts().items() if r["labels"]["severity"] == "critical"}
    assert not (critical - burns - {"ApistatusTargetDown"}) & set().union(*muted.values())


def test_down_selector_is_outage_classes_only() -> None:
    """"Down" is an outage: never an up class, never maintenance, and none of the classes that have an
    alert of their own (a credentials or quota problem must not page as the vendor being down)."""
    doc = yaml.safe_load((PROM / "recording_rules.yml").read_text())
    expr = next(r["expr"] for g in doc["groups"] for r in g["rules"] if r["record"] == "target:apistatus_down:bool")
    m = re.search(r'class=~"([^"]+)"', expr)
    assert m
    down = set(m.group(1).split("|"))
    own_alert = {"maintenance", "auth", "clock_skew", "rate_limited", "quota_exceeded", "client_error"}
    assert down == set(CLASSES) - UP_CLASSES - own_alert
