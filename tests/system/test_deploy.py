"""The deployment files are real: kustomize renders them, the Kubernetes API schemas accept the core
kinds, the rules inside the PrometheusRule are the shipped ones and pass promtool, the StatefulSet
runs each pod as its own shard with a restricted security context, and systemd accepts the unit."""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
from functools import cache
from pathlib import Path
from typing import Any

import kubernetes_validate
import pytest
import yaml

from exporter.config import load_config
from tests.conftest import ROOT, need

K8S = ROOT / "deploy" / "kubernetes"
KUSTOMIZATIONS = ("base", "prometheus-operator", "examples/five-shards")
#: the oldest Kubernetes with the pod-index label on StatefulSet pods, and a current one
VERSIONS = ("1.28.0", "1.32.0")
CORE = {"ServiceAccount", "ConfigMap", "Service", "StatefulSet", "PodDisruptionBudget", "NetworkPolicy"}
UNIT = ROOT / "deploy" / "systemd" / "apistatus-exporter.service"
sys.path.insert(0, str(ROOT / "deploy"))
import render_rules  # noqa: E402


@cache
def rendered(name: str) -> tuple[dict[str, Any], ...]:
    out = subprocess.run([need("kubectl"), "kustomize", str(K8S / name)], capture_output=True, text=True,
                         timeout=60)
    assert out.returncode == 0, out.stderr
    return tuple(d for d in yaml.safe_load_all(out.stdout) if d)


def one(docs: tuple[dict[str, Any], ...], kind: str) -> dict[str, Any]:
    (doc,) = [d for d in docs if d["kind"] == kind]
    return doc


def container(docs: tuple[dict[str, Any], ...]) -> dict[str, Any]:
    (c,) = one(docs, "StatefulSet")["spec"]["template"]["spec"]["containers"]
    return c


def env(docs: tuple[dict[str, Any], ...]) -> dict[str, dict[str, Any]]:
    return {e["name"]: e for e in container(docs)["env"]}


@pytest.mark.parametrize("name", KUSTOMIZATIONS)
@pytest.mark.parametrize("version", VERSIONS)
def test_core_kinds_pass_the_kubernetes_schemas(name: str, version: str) -> None:
    docs = rendered(name)
    assert {d["kind"] for d in docs} >= CORE
    for doc in docs:
        if doc["kind"] in CORE:
            try:
                kubernetes_validate.validate(doc, version, strict=True)
            except kubernetes_validate.ValidationError as exc:
                pytest.fail(f"{name}: {doc['kind']} {doc['metadata']['name']}: {str(exc).splitlines()[0]}")


@pytest.mark.parametrize("name", KUSTOMIZATIONS)
def test_each_pod_runs_the_shard_of_its_index_out_of_the_replica_count(name: str) -> None:
    docs = rendered(name)
    sts = one(docs, "StatefulSet")
    e = env(docs)
    assert e["SHARD_INDEX"]["valueFrom"]["fieldRef"]["fieldPath"] == "metadata.labels['apps.kubernetes.io/pod-index']"
    # Kubernetes expands $(VAR) of an earlier variable: pod 2 of 3 gets APISTATUS_SHARD=2/3
    assert e["APISTATUS_SHARD"]["value"] == f"$(SHARD_INDEX)/{sts['spec']['replicas']}"
    assert list(e).index("SHARD_INDEX") < list(e).index("APISTATUS_SHARD")
    assert sts["spec"]["serviceName"] == one(docs, "Service")["metadata"]["name"]
    assert one(docs, "Service")["spec"]["clusterIP"] == "None"


def test_the_overlay_changes_the_count_in_one_place() -> None:
    assert one(rendered("examples/five-shards"), "StatefulSet")["spec"]["replicas"] == 5
    assert env(rendered("examples/five-shards"))["APISTATUS_SHARD"]["value"].endswith("/5")


def _selects(selector: dict[str, str], labels: dict[str, str]) -> bool:
    return all(labels.get(k) == v for k, v in selector.items())


def test_selectors_pick_the_exporters_pods_and_only_the_peers_they_name() -> None:
    docs = rendered("prometheus-operator")
    pod_labels = one(docs, "StatefulSet")["spec"]["template"]["metadata"]["labels"]
    for kind, selector in [("StatefulSet", one(docs, "StatefulSet")["spec"]["selector"]["matchLabels"]),
                           ("Service", one(docs, "Service")["spec"]["selector"]),
                           ("PodDisruptionBudget", one(docs, "PodDisruptionBudget")["spec"]["selector"]["matchLabels"]),
                           ("NetworkPolicy", one(docs, "NetworkPolicy")["spec"]["podSelector"]["matchLabels"]),
                           ("PodMonitor", one(docs, "PodMonitor")["spec"]["selector"]["matchLabels"])]:
        assert selector and _selects(selector, pod_labels), kind
    policy = one(docs, "NetworkPolicy")["spec"]
    assert policy["policyTypes"] == ["Ingress", "Egress"]
    (ingress,) = policy["ingress"]
    (peer,) = ingress["from"]
    # a label transformer once added the exporter's own labels to these peers' selectors
    assert peer["podSelector"]["matchLabels"] == {"app.kubernetes.io/name": "prometheus"}
    assert ingress["ports"] == [{"port": "http-metrics", "protocol": "TCP"}]
    dns, https = policy["egress"]
    assert dns["to"][0]["podSelector"]["matchLabels"] == {"k8s-app": "kube-dns"}
    assert sorted((p["port"], p["protocol"]) for p in dns["ports"]) == [(53, "TCP"), (53, "UDP")]
    assert https["ports"] == [{"port": 443, "protocol": "TCP"}] and "10.0.0.0/8" in https["to"][0]["ipBlock"]["except"]


def test_the_pod_is_restricted_and_probed_on_the_exporters_endpoints() -> None:
    docs = rendered("base")
    spec = one(docs, "StatefulSet")["spec"]["template"]["spec"]
    c = container(docs)
    assert spec["securityContext"]["runAsNonRoot"] is True and spec["securityContext"]["runAsUser"] != 0
    assert spec["securityContext"]["seccompProfile"] == {"type": "RuntimeDefault"}
    assert spec["automountServiceAccountToken"] is False
    sc = c["securityContext"]
    assert sc["readOnlyRootFilesystem"] is True and sc["allowPrivilegeEscalation"] is False
    assert sc["capabilities"] == {"drop": ["ALL"]}
    assert c["livenessProbe"]["httpGet"]["path"] == "/-/healthy"
    assert c["readinessProbe"]["httpGet"]["path"] == "/-/ready"
    ports = {p["name"]: p["containerPort"] for p in c["ports"]}
    assert {p["targetPort"] for p in one(docs, "Service")["spec"]["ports"]} <= set(ports)
    assert c["resources"]["requests"]["cpu"] and c["resources"]["requests"]["memory"]
    assert c["resources"]["limits"]["memory"]


def test_credentials_are_secret_files_and_the_shipped_config_loads_with_them(tmp_path: Path) -> None:
    docs = rendered("base")
    c = container(docs)
    assert not any("secretKeyRef" in str(e.get("valueFrom", "")) for e in c["env"])  # files, never env
    mounts = {m["name"]: m for m in c["volumeMounts"]}
    volumes = {v["name"]: v for v in one(docs, "StatefulSet")["spec"]["template"]["spec"]["volumes"]}
    secret_dir = next(mounts[n]["mountPath"] for n, v in volumes.items() if "secret" in v)
    assert all(m["readOnly"] for m in mounts.values() if m["mountPath"] != "/tmp")
    config_dir = next(mounts[n]["mountPath"] for n, v in volumes.items() if "configMap" in v)
    assert container(docs)["args"][:2] == ["--config", f"{config_dir}/config.yml"]
    text = one(docs, "ConfigMap")["data"]["config.yml"]
    files = re.findall(r"_file: (\S+)", text)
    assert files and all(f.startswith(secret_dir + "/") for f in files)
    for f in files:  # the Secret's keys, as kubectl create secret --from-file makes them
        (tmp_path / Path(f).name).write_text("x" * 32 + "\n")
    (tmp_path / "config.yml").write_text(text.replace(secret_dir + "/", f"{tmp_path}/"))
    cfg = load_config(tmp_path / "config.yml", env={})
    assert cfg.targets


def test_the_prometheus_rule_is_the_shipped_rules_and_passes_promtool(tmp_path: Path) -> None:
    path = K8S / "prometheus-operator" / "prometheusrule.yaml"
    assert path.read_text() == render_rules.render(), "prometheusrule.yaml is out of date: run make deploy-rules"
    rule = one(rendered("prometheus-operator"), "PrometheusRule")
    shipped = [g for p in sorted((ROOT / "config" / "prometheus").glob("*.yml"))
               for g in (yaml.safe_load(p.read_text()) or {}).get("groups", [])]
    assert rule["spec"]["groups"] == shipped and shipped
    (tmp_path / "rules.yml").write_text(yaml.safe_dump({"groups": rule["spec"]["groups"]}))
    out = subprocess.run([need("promtool"), "check", "rules", str(tmp_path / "rules.yml")], capture_output=True,
                         text=True, timeout=60)
    assert out.returncode == 0, out.stdout + out.stderr


def test_the_check_finds_a_stale_prometheus_rule(tmp_path: Path) -> None:
    rules = tmp_path / "rules"
    rules.mkdir()
    for p in (ROOT / "config" / "prometheus").glob("*.yml"):
        shutil.copy(p, rules)
    doc = yaml.safe_load((rules / "alert_rules.yml").read_text())
    doc["groups"][0]["rules"][0]["for"] = "7m"
    (rules / "alert_rules.yml").write_text(yaml.safe_dump(doc))
    script = [sys.executable, str(ROOT / "deploy" / "render_rules.py")]
    out = subprocess.run([*script, "--check", "--rules", str(rules)], capture_output=True, text=True, timeout=60)
    assert out.returncode == 1 and "out of date" in out.stderr and "make deploy-rules" in out.stderr
    # the make target's command brings it back in line
    copy = tmp_path / "prometheusrule.yaml"
    subprocess.run([*script, "--rules", str(rules), "--out", str(copy)], check=True, timeout=60)
    out = subprocess.run([*script, "--check", "--rules", str(rules), "--out", str(copy)], capture_output=True,
                         text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    assert "for: 7m" in copy.read_text()


def test_the_pod_monitor_gives_the_job_the_rules_select_and_names_each_shard() -> None:
    docs = rendered("prometheus-operator")
    (endpoint,) = one(docs, "PodMonitor")["spec"]["podMetricsEndpoints"]
    assert endpoint["port"] in {p["name"] for p in container(docs)["ports"]} and endpoint["path"] == "/metrics"
    relabel = {r["targetLabel"]: r for r in endpoint["relabelings"]}
    # the rules select the exporter's own job, and the /probe job of the Probe example
    jobs = set(re.findall(r'job="([^"]+)"', render_rules.render()))
    probe_job = yaml.safe_load((K8S / "prometheus-operator" / "probe.yaml").read_text())["spec"]["jobName"]
    assert relabel["job"]["replacement"] in jobs
    assert jobs == {relabel["job"]["replacement"], probe_job}
    assert relabel["instance"]["sourceLabels"] == ["__meta_kubernetes_pod_name"]


def test_the_probe_example_points_at_one_shards_pod_and_configured_targets() -> None:
    probe = yaml.safe_load((K8S / "prometheus-operator" / "probe.yaml").read_text())
    docs = rendered("base")
    assert probe["apiVersion"] == "monitoring.coreos.com/v1" and probe["kind"] == "Probe"
    sts, svc = one(docs, "StatefulSet")["metadata"]["name"], one(docs, "Service")
    port = svc["spec"]["ports"][0]["port"]
    pod_dns = rf"{sts}-\d+\.{svc['metadata']['name']}\.[a-z0-9-]+\.svc:{port}"
    assert re.fullmatch(pod_dns, probe["spec"]["prober"]["url"])
    assert probe["spec"]["prober"]["path"] == "/probe"
    names = set(re.findall(r"- name: (\S+)", one(docs, "ConfigMap")["data"]["config.yml"]))
    assert set(probe["spec"]["targets"]["staticConfig"]["static"]) <= names


def _unit_copy(tmp_path: Path) -> Path:
    # verify checks that ExecStart exists: point it at the installed console script
    binary = shutil.which("apistatus-exporter")
    assert binary, "apistatus-exporter is not installed (pip install -e .)"
    unit = tmp_path / UNIT.name
    unit.write_text(UNIT.read_text().replace("/usr/local/bin/apistatus-exporter", binary))
    return unit


def test_systemd_accepts_the_unit(tmp_path: Path) -> None:
    out = subprocess.run([need("systemd-analyze"), "verify", str(_unit_copy(tmp_path))], capture_output=True,
                         text=True, timeout=60)
    assert out.returncode == 0 and not out.stderr.strip(), out.stderr
    text = UNIT.read_text()
    for setting in ("DynamicUser=yes", "ProtectSystem=strict", "NoNewPrivileges=yes", "PrivateTmp=yes",
                    "ProtectHome=yes", "CapabilityBoundingSet=\n", "RestrictAddressFamilies=", "SystemCallFilter="):
        assert setting in text, setting


def test_systemd_rates_the_unit_well_hardened(tmp_path: Path) -> None:
    out = subprocess.run([need("systemd-analyze"), "security", "--offline=true", str(_unit_copy(tmp_path))],
                         capture_output=True, text=True, timeout=60)
    m = re.search(r"Overall exposure level for \S+: ([\d.]+)", out.stdout)
    assert m, out.stdout[-500:] + out.stderr
    assert float(m.group(1)) <= 2.0, out.stdout  # systemd's scale: 0 is locked down, 10 is fully exposed
