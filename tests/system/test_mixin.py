"""The monitoring mixin (mixin/): the shipped rules, example configs and dashboards are exactly what
it renders (``make mixin``), it renders with the `jsonnet` package from PyPI, and a user's _config
reaches every alert, rule and dashboard."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import yaml

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "mixin"))
import render  # noqa: E402

sys.path.pop(0)


def _tool(name: str) -> str:
    path = shutil.which(name)
    assert path, f"{name} is not installed (apt-get install prometheus prometheus-alertmanager)"
    return path


def test_every_shipped_file_is_what_the_mixin_renders_byte_for_byte() -> None:
    files = render.render()
    assert set(files) == {
        "config/prometheus/alert_rules.yml", "config/prometheus/recording_rules.yml",
        "config/prometheus/prometheus.yml", "config/alertmanager/alertmanager.yml",
        "dashboards/apistatus-overview.json", "dashboards/apistatus-target.json"}
    stale = [rel for rel, text in files.items() if (ROOT / rel).read_text() != text]
    assert stale == [], f"hand-edited or stale (run `make mixin`): {stale}"
    # every generated YAML says so; no other rule file or dashboard sits beside them unrendered
    for rel, text in files.items():
        if rel.endswith(".yml"):
            assert text.startswith(render.HEADER), rel
    assert {p.name for p in (ROOT / "dashboards").glob("*.json")} == {
        Path(r).name for r in files if r.startswith("dashboards/")}
    assert {p.name for p in (ROOT / "config" / "prometheus").glob("*.yml")} == {
        Path(r).name for r in files if r.startswith("config/prometheus/")}


def test_render_check_names_a_hand_edited_file(tmp_path: Path) -> None:
    """`mixin/render.py --check` (what a CI step or a pre-commit hook runs) fails on a difference."""
    out = subprocess.run([sys.executable, str(ROOT / "mixin" / "render.py"), "--check"], capture_output=True,
                         text=True, timeout=120, check=False)
    assert out.returncode == 0, out.stderr
    path = ROOT / "dashboards" / "apistatus-target.json"
    good = path.read_text()
    try:
        path.write_text(good.replace('"refresh": "30s"', '"refresh": "5s"'))
        out = subprocess.run([sys.executable, str(ROOT / "mixin" / "render.py"), "--check"], capture_output=True,
                             text=True, timeout=120, check=False)
    finally:
        path.write_text(good)
    assert out.returncode == 1
    assert out.stderr.strip() == "dashboards/apistatus-target.json: differs from the mixin; run `make mixin`"


def test_mixin_exposes_the_standard_fields_and_a_jsonnetfile() -> None:
    m = render.evaluate()
    assert m["alerts"]["groups"] and m["rules"]["groups"] and m["dashboards"]
    jf = json.loads((ROOT / "mixin" / "jsonnetfile.json").read_text())
    assert jf["version"] == 1 and isinstance(jf["dependencies"], list)
    for key in ("selector", "exporterSelector", "probeSelector", "groupLabels", "runbookURLPattern", "thresholds",
                "for", "dashboards"):
        assert key in m["config"], key
    for key in ("prefix", "tags", "refresh", "timezone"):
        assert key in m["config"]["dashboards"], key


USER = """{_config+:: {
  selector: 'job=~"apis|apis-probe"', exporterSelector: 'job="apis"', probeSelector: 'job="apis-probe"',
  groupLabels: ['region'], clusterLabel: 'region', showMultiCluster: true,
  runbookURLPattern: 'https://wiki.example/runbooks/%s',
  'for'+: {ApistatusTargetDown: '7m'},
  thresholds+: {quotaLowRatio: 0.2},
  dashboards+: {prefix: 'APIs / ', tags: ['apis'], refresh: '1m', timezone: 'utc'},
}}"""


def _alerts(files: dict[str, str]) -> dict[str, dict[str, Any]]:
    doc = yaml.safe_load(files["config/prometheus/alert_rules.yml"])
    return {r["alert"]: r for g in doc["groups"] for r in g["rules"]}


def test_a_user_config_reaches_every_alert_rule_and_dashboard(tmp_path: Path) -> None:
    files = render.render(USER)
    alerts = _alerts(files)
    for name, rule in alerts.items():
        sel = re.findall(r"\{([^}]*)\}", rule["expr"])
        assert sel, name
        for s in sel:
            assert "apis" in s and "apistatus" not in s, f"{name}: {s}"
        assert rule["annotations"]["runbook_url"] == "https://wiki.example/runbooks/" + name.lower()
    assert alerts["ApistatusTargetDown"]["for"] == "7m"
    assert "< 0.2" in alerts["ApistatusQuotaLow"]["expr"]
    rules = yaml.safe_load(files["config/prometheus/recording_rules.yml"])
    for g in rules["groups"]:
        for r in g["rules"]:
            assert "apistatus\"" not in r["expr"] and 'job=~"apistatus' not in r["expr"], r
    am = yaml.safe_load(files["config/alertmanager/alertmanager.yml"])
    assert am["route"]["group_by"][0] == "region"
    assert all(r["equal"][0] == "region" for r in am["inhibit_rules"])
    for rel in ("config/prometheus/alert_rules.yml", "config/prometheus/recording_rules.yml"):
        (tmp_path / Path(rel).name).write_text(files[rel])
    out = subprocess.run([_tool("promtool"), "check", "rules", *(str(p) for p in tmp_path.glob("*.yml"))],
                         capture_output=True, text=True, timeout=60, check=False)
    assert out.returncode == 0, out.stdout + out.stderr
    (tmp_path / "am.yml").write_text(files["config/alertmanager/alertmanager.yml"])
    out = subprocess.run([_tool("amtool"), "check-config", str(tmp_path / "am.yml")], capture_output=True, text=True,
                         timeout=60, check=False)
    assert out.returncode == 0, out.stdout + out.stderr
    for name in ("dashboards/apistatus-overview.json", "dashboards/apistatus-target.json"):
        board = json.loads(files[name])
        assert board["title"].startswith("APIs / ") and board["tags"] == ["apis"]
        assert board["refresh"] == "1m" and board["timezone"] == "utc"
        names = [v["name"] for v in board["templating"]["list"]]
        assert names == ["datasource", "cluster", "job", "instance", "vendor", "target"], names
        for p in board["panels"]:
            for t in p.get("targets", []):
                assert 'region=~"$cluster"' in t["expr"], (name, p["title"], t["expr"])
                assert "apistatus\"" not in t["expr"]


def test_the_history_guard_scales_with_each_burn_window() -> None:
    """Each window pair of the burn alerts needs data from the oldest twelfth of its long window."""
    alerts = _alerts(render.render())
    fast = alerts["ApistatusErrorBudgetBurnFast"]["expr"]
    assert "present_over_time(apistatus_up{" in fast
    assert re.findall(r"\[(\w+)\] offset (\w+)\)", fast) == [("5m", "55m"), ("30m", "330m")]
    slow = alerts["ApistatusErrorBudgetBurnSlow"]["expr"]
    assert re.findall(r"\[(\w+)\] offset (\w+)\)", slow) == [("2h", "22h"), ("6h", "66h")]


def test_a_bad_duration_in_the_config_is_one_clear_error() -> None:
    """A window that is not a Prometheus duration stops the rendering with a message naming it."""
    try:
        render.evaluate("{_config+:: {slo+: {fast: [{long: '1x', short: '5m', factor: 10}]}}}")
    except RuntimeError as exc:
        assert str(exc).splitlines()[0] == "RUNTIME ERROR: not a duration of s, m, h, d: 1x"
    else:
        raise AssertionError("rendered with a window of '1x'")
    # compound durations work, and the guard follows them
    alerts = _alerts(render.render("{_config+:: {slo+: {fast: [{long: '1h30m', short: '5m', factor: 10}]}}}"))
    assert "[450s] offset 4950s)" in alerts["ApistatusErrorBudgetBurnFast"]["expr"]


def _links(board: dict[str, Any]) -> list[str]:
    """Every link URL of the dashboard's panels, fields and overrides."""
    found: list[str] = []

    def walk(node: Any) -> None:
        if isinstance(node, dict):
            if isinstance(node.get("url"), str):
                found.append(node["url"])
            for v in node.values():
                walk(v)
        elif isinstance(node, list):
            for v in node:
                walk(v)

    walk(board["panels"])
    return found


def test_exporter_url_makes_the_target_page_links_right_for_probe_jobs() -> None:
    """By default a target's page is reached through the instance label (the exporter's address on the
    plain job only); with exporterURL every such link goes there, whatever job the row comes from."""
    def pages(files: dict[str, str]) -> list[str]:
        return sorted(u for name in ("dashboards/apistatus-overview.json", "dashboards/apistatus-target.json")
                      for u in _links(json.loads(files[name])) if "/targets/" in u)

    default = pages(render.render())
    assert default == ["http://${__data.fields.instance}/targets/${__value.raw}",
                       "http://${__field.labels.instance}/targets/${__field.labels.target}"]
    configured = pages(render.render("{_config+:: {exporterURL: 'https://apistatus.example:9798'}}"))
    assert configured == ["https://apistatus.example:9798/targets/${__field.labels.target}",
                          "https://apistatus.example:9798/targets/${__value.raw}"]
