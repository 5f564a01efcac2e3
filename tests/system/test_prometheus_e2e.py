"""End to end with the real thing: Debian's Prometheus scrapes the exporter, which probes the ten
vendor simulators (twilio's over HTTPS); Debian's Alertmanager receives the alerts and sends them to
a webhook in this test.

Everything listens on 127.0.0.1. The simulators and the exporter run as subprocesses, the way a user
runs them (``apistatus-exporter simulate`` and ``apistatus-exporter --config``), and are switched
into conditions through the simulators' control API (twilio's simulator runs in this process, over
HTTPS with a trustme certificate, so the certificate series have data). Prometheus and Alertmanager get the example
configs of config/ with loopback addresses, 1 s intervals and, for the alerts, ``for: 0s`` (the
``for`` durations themselves are covered by the promtool unit tests in test_rules.py).

One stack serves this module and test_dashboards.py (session scope, started once).
"""

from __future__ import annotations

import contextlib
import json
import os
import select
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any, TypeVar

import pytest
import yaml

from .. import conftest
from ..conftest import ROOT, free_port, need
from .tls_simulator import TLSSimulator

PROM_DIR = ROOT / "config" / "prometheus"
AM_CONFIG = ROOT / "config" / "alertmanager" / "alertmanager.yml"
VENDORS = ("bannersnack", "bizwebs", "rubiq", "flipsnack", "movingimage",
           "slack", "github", "stripe", "openai", "twilio")
#: the condition each simulator is switched into for the whole session, and the alert that must find it
SCENARIO: dict[str, tuple[dict[str, Any], str]] = {
    "flipsnack": ({"maintenance": True}, "ApistatusVendorMaintenance"),
    "bizwebs": ({"rotated": True}, "ApistatusAuthFailing"),
    "movingimage": ({"quota_exceeded": True}, "ApistatusQuotaExceeded"),
    "rubiq": ({"server_error": True}, "ApistatusTargetDown"),
}
#: served over HTTPS by the test itself (a trustme CA the exporter trusts through ca_file), so that
#: the certificate-expiry series and panels have data
TLS_VENDOR = "twilio"
#: every wait below is bounded; a stack that does not get there in this time fails the test
WAIT = 40.0
#: seconds a process of the stack may live at most: the whole test suite takes less than this
LIFETIME = 900

# urllib honours *_proxy variables; these requests must stay on loopback, so no proxy handler at all.
_http = urllib.request.build_opener(urllib.request.ProxyHandler({}))
T = TypeVar("T")


def http(url: str, data: bytes | None = None, timeout: float = 5.0) -> tuple[int, bytes]:
    assert url.startswith("http://127.0.0.1:"), url
    req = urllib.request.Request(url, data=data, headers={"Content-Type": "application/json"} if data else {})
    try:
        with _http.open(req, timeout=timeout) as r:
            return int(r.status), r.read()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read()


def wait_for(what: str, probe: Callable[[], T | None], timeout: float = WAIT) -> T:
    """The shared poll, with this stack's own patience as the default."""
    return conftest.wait_for(what, probe, timeout)


class Webhook:
    """Alertmanager's webhook receiver: keeps every notification it is sent."""

    def __init__(self) -> None:
        self.notifications: list[dict[str, Any]] = []
        self._lock = threading.Lock()
        hook = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length", "0")))
                with hook._lock:
                    hook.notifications.append(json.loads(body))
                self.send_response(200)
                self.end_headers()

            def log_message(self, format: str, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/hook"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def alerts(self) -> list[dict[str, Any]]:
        with self._lock:
            return [a for n in self.notifications for a in n.get("alerts", [])]

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()
        self.thread.join(5)


@dataclass
class Stack:
    tmp: Path
    procs: list[subprocess.Popen[bytes]] = field(default_factory=list)
    sims: dict[str, dict[str, Any]] = field(default_factory=dict)
    exporter: str = ""
    prometheus: str = ""
    alertmanager: str = ""
    webhook: Webhook | None = None
    tls: TLSSimulator | None = None

    def spawn(self, name: str, args: list[str], **kw: Any) -> subprocess.Popen[bytes]:
        log = open(self.tmp / f"{name}.log", "wb")  # noqa: SIM115 - closed with the process
        # Each process ends by itself after LIFETIME even if pytest is killed before its teardown;
        # its own process group lets close() stop it together with anything it started.
        proc = subprocess.Popen(["timeout", "-k", "5", str(LIFETIME), *args], stderr=log,
                                stdout=kw.pop("stdout", log), cwd=ROOT, start_new_session=True, **kw)
        self.procs.append(proc)
        return proc

    def log(self, name: str) -> str:
        path = self.tmp / f"{name}.log"
        return path.read_text(errors="replace")[-2000:] if path.exists() else ""

    def control(self, vendor: str, **settings: Any) -> None:
        if vendor == TLS_VENDOR and self.tls is not None:
            self.tls.control(**settings)
            return
        status, body = http(self.sims[vendor]["control_url"], json.dumps(settings).encode())
        assert status == 200, f"{vendor} control {settings}: {body.decode(errors='replace')}"

    def query(self, expr: str) -> list[dict[str, Any]]:
        """An instant query; a PromQL error fails the test with Prometheus's message."""
        url = self.prometheus + "/api/v1/query?" + urllib.parse.urlencode({"query": expr})
        status, body = http(url)
        data = json.loads(body)
        assert status == 200 and data["status"] == "success", f"{expr!r}: {data.get('error', body[:300])}"
        result: list[dict[str, Any]] = data["data"]["result"]
        return result

    def query_range(self, expr: str, seconds: float, step: float = 1.0) -> list[dict[str, Any]]:
        now = time.time()
        url = self.prometheus + "/api/v1/query_range?" + urllib.parse.urlencode(
            {"query": expr, "start": now - seconds, "end": now, "step": step})
        status, body = http(url)
        data = json.loads(body)
        assert status == 200 and data["status"] == "success", f"{expr!r}: {data.get('error', body[:300])}"
        result: list[dict[str, Any]] = data["data"]["result"]
        return result

    def targets(self, expr: str) -> set[str]:
        return {r["metric"].get("target", "") for r in self.query(expr)}

    def firing(self, alertname: str) -> set[str]:
        return self.targets(f'ALERTS{{alertname="{alertname}",alertstate="firing"}}')

    def am_alerts(self, alertname: str) -> list[dict[str, Any]]:
        url = self.alertmanager + "/api/v2/alerts?" + urllib.parse.urlencode({"filter": f'alertname="{alertname}"'})
        status, body = http(url)
        assert status == 200, body[:300]
        alerts: list[dict[str, Any]] = json.loads(body)
        return alerts

    def close(self) -> None:
        for proc in reversed(self.procs):
            if proc.poll() is None:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(proc.pid, signal.SIGTERM)
        for proc in reversed(self.procs):
            try:
                proc.wait(10)
            except subprocess.TimeoutExpired:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(proc.pid, signal.SIGKILL)
                proc.wait(5)
            if proc.stdout is not None:
                proc.stdout.close()
        if self.webhook is not None:
            self.webhook.close()
        if self.tls is not None:
            self.tls.close()


def alert_rules() -> dict[str, dict[str, Any]]:
    doc = yaml.safe_load((PROM_DIR / "alert_rules.yml").read_text())
    return {r["alert"]: r for g in doc["groups"] for r in g["rules"] if "alert" in r}


def _start_simulators(stack: Stack) -> None:
    proc = stack.spawn("simulators", [sys.executable, "-m", "exporter", "simulate", "--json"],
                       stdout=subprocess.PIPE)
    assert proc.stdout is not None
    ready, _, _ = select.select([proc.stdout], [], [], WAIT)
    assert ready, f"the simulators printed no addresses: {stack.log('simulators')}"
    stack.sims = json.loads(proc.stdout.readline())
    assert sorted(stack.sims) == sorted(VENDORS), stack.sims


def _start_exporter(stack: Stack) -> None:
    targets = []
    stack.tls = TLSSimulator(TLS_VENDOR, stack.tmp)
    for vendor, sim in stack.sims.items():
        if vendor == TLS_VENDOR:  # this one over HTTPS (the subprocess's own stays unused)
            targets.append(stack.tls.target(vendor))
            continue
        target = {"name": vendor, "vendor": vendor, "base_url": sim["base_url"],
                  "credentials": sim["credentials"], "probe_share": 1}
        if "check" in sim:
            target["check"] = sim["check"]
        targets.append(target)
    # the vendors' own status pages from their simulators, and one egress check: the dashboards'
    # "is it us or them?" panels have data
    pages = {"github": "/api/v2/summary.json", "slack": "/api/v2.0.0/current"}
    vendors = {v: {"status_page": {"url": stack.sims[v]["control_url"].removesuffix("/_control") + path,
                                   "format": "slack" if v == "slack" else "statuspage", "hosts": ["127.0.0.1"]}}
               for v, path in pages.items()}
    checks = [{"name": "loopback", "url": stack.sims["github"]["control_url"], "expect_status": [200]}]
    config = stack.tmp / "exporter.yml"
    config.write_text(yaml.safe_dump({"global": {"interval": "1s", "timeout": "1s"}, "targets": targets,
                                      "vendors": vendors, "egress_checks": checks}))
    port = free_port()
    stack.spawn("exporter", [sys.executable, "-m", "exporter", "--config", str(config),
                             "--listen", f"127.0.0.1:{port}", "--log-level", "warning"])
    stack.exporter = f"http://127.0.0.1:{port}"
    wait_for(f"the exporter to be ready: {stack.log('exporter')}",
             lambda: http(stack.exporter + "/-/ready")[0] == 200)


def _start_alertmanager(stack: Stack) -> None:
    binary = need("prometheus-alertmanager")
    stack.webhook = Webhook()
    config = yaml.safe_load(AM_CONFIG.read_text())
    # the example's inhibit rules as they are; only the delivery is pointed at this test
    config["route"] = {"receiver": "webhook", "group_by": ["alertname", "target", "vendor"],
                       "group_wait": "0s", "group_interval": "1s", "repeat_interval": "1h"}
    config["receivers"] = [{"name": "webhook", "webhook_configs": [{"url": stack.webhook.url}]}]
    path = stack.tmp / "alertmanager.yml"
    path.write_text(yaml.safe_dump(config))
    stack.alertmanager = _spawn_ready(stack, "alertmanager", [
        binary, f"--config.file={path}", f"--storage.path={stack.tmp / 'am'}", "--cluster.listen-address=",
        "--log.level=warn"])


def _spawn_ready(stack: Stack, name: str, argv: list[str]) -> str:
    """Start a Prometheus-family server on a free loopback port; its URL once /-/ready answers."""
    url = f"http://127.0.0.1:{free_port()}"
    stack.spawn(name, [*argv, f"--web.listen-address={url.removeprefix('http://')}"])
    wait_for(f"{name} to be ready: {stack.log(name)}", lambda: http(url + "/-/ready")[0] == 200)
    return url


def immediate_alert_rules(tmp: Path) -> Path:
    """The shipped alert rules with every ``for`` set to 0s (so a test need not wait it out), in ``tmp``."""
    alerts = yaml.safe_load((PROM_DIR / "alert_rules.yml").read_text())
    for group in alerts["groups"]:
        for rule in group["rules"]:
            if "for" in rule:
                rule["for"] = "0s"
    path = tmp / "alert_rules.yml"
    path.write_text(yaml.safe_dump(alerts))
    return path


def _start_prometheus(stack: Stack) -> None:
    binary = need("prometheus")
    immediate_alert_rules(stack.tmp)
    exporter = stack.exporter.removeprefix("http://")
    config = yaml.safe_load((PROM_DIR / "prometheus.yml").read_text())
    config["global"] = {"scrape_interval": "1s", "evaluation_interval": "1s"}
    config["rule_files"] = [str(PROM_DIR / "recording_rules.yml"), str(stack.tmp / "alert_rules.yml")]
    config["alerting"]["alertmanagers"][0]["static_configs"][0]["targets"] = [
        stack.alertmanager.removeprefix("http://")]
    jobs = {j["job_name"]: j for j in config["scrape_configs"]}
    jobs["apistatus"]["static_configs"][0]["targets"] = [exporter]
    # the /probe job probes at every scrape: one target, every 2 s, keeps the simulators' budgets
    probe = jobs["apistatus-probe"]
    probe["static_configs"][0]["targets"] = ["rubiq"]
    probe["scrape_interval"] = probe["scrape_timeout"] = "2s"
    probe["relabel_configs"][-1]["replacement"] = exporter
    path = stack.tmp / "prometheus.yml"
    path.write_text(yaml.safe_dump(config))
    stack.prometheus = _spawn_ready(stack, "prometheus", [
        binary, f"--config.file={path}", f"--storage.tsdb.path={stack.tmp / 'tsdb'}", "--log.level=warn",
        "--rules.alert.resend-delay=1s"])


def start_stack() -> Stack:
    need("prometheus")
    need("prometheus-alertmanager")
    stack = Stack(Path(tempfile.mkdtemp(prefix="apistatus-e2e-")))
    try:
        _start_simulators(stack)
        # what the vendors declare on their own status pages, before the exporter's first read of them
        stack.control("github", status_incident="Incident with API Requests")
        stack.control("slack", status_maintenance="Scheduled maintenance")
        _start_exporter(stack)
        _start_alertmanager(stack)
        _start_prometheus(stack)
        # every target answered healthily and was scraped once before the conditions are switched on,
        # so the latency and quota series have a healthy start as they would in real life
        wait_for("Prometheus to have scraped every target up",
                 lambda: stack.targets('apistatus_up{job="apistatus"} == 1') == set(VENDORS))
        for vendor, (settings, _) in SCENARIO.items():
            stack.control(vendor, **settings)
    except BaseException:
        stack.close()
        shutil.rmtree(stack.tmp, ignore_errors=True)
        raise
    return stack


_stack: Stack | None = None
_users = 0


@pytest.fixture(scope="session")
def prom_stack() -> Iterator[Stack]:
    """The running stack, shared by every module that imports this fixture; stopped by the last user."""
    global _stack, _users
    if _stack is None:
        _stack = start_stack()
    _users += 1
    try:
        yield _stack
    finally:
        _users -= 1
        if _users == 0:
            _stack.close()
            shutil.rmtree(_stack.tmp, ignore_errors=True)
            _stack = None


def test_each_condition_is_found_by_its_alert_and_only_by_it(prom_stack: Stack) -> None:
    """Maintenance, rotated credentials, a used-up quota and an outage, each on one simulator: the
    expression of the matching alert returns that target in Prometheus, and the other alerts of
    the scenario do not (maintenance is not down, an auth failure is not down...)."""
    rules = alert_rules()
    wanted = {alert: vendor for vendor, (_, alert) in SCENARIO.items()}

    def found() -> dict[str, set[str]] | None:
        got = {alert: prom_stack.targets(rules[alert]["expr"]) for alert in wanted}
        return got if all(wanted[a] in got[a] for a in wanted) else None

    got = wait_for("each alert expression to return its target", found)
    scenario_targets = set(SCENARIO)
    for alert, vendor in wanted.items():
        assert got[alert] & scenario_targets == {vendor}, f"{alert} returned {got[alert]}"
    # a target in maintenance is in a long backoff (its next probe is far ahead): not stale
    assert prom_stack.query(rules["ApistatusProbesStale"]["expr"]) == []
    # the /probe job of the example config (relabelled to ?target=rubiq) probes rubiq at each scrape
    # (every 2 s, so its first samples may still predate the switch)
    wait_for("the /probe job to report rubiq's server errors", lambda: [
        r["metric"]["class"] for r in prom_stack.query('apistatus_outcome{job="apistatus-probe",instance="rubiq"} == 1')
    ] == ["server_error"])


def test_a_clock_off_by_ten_minutes_is_found_by_the_clock_skew_alert(prom_stack: Stack) -> None:
    """bannersnack's clock runs 10 minutes ahead, out of its 300 s signature window: it refuses our
    requests with 510, and ApistatusClockSkew's expression (not TargetDown's) returns it."""
    rules = alert_rules()
    prom_stack.control("bannersnack", clock_offset=600)
    try:
        wait_for("ApistatusClockSkew's expression to return bannersnack",
                 lambda: "bannersnack" in prom_stack.targets(rules["ApistatusClockSkew"]["expr"]))
        assert "bannersnack" not in prom_stack.targets(rules["ApistatusTargetDown"]["expr"])
        assert "bannersnack" not in prom_stack.targets(rules["ApistatusAuthFailing"]["expr"])
    finally:
        prom_stack.control("bannersnack", reset=True)


def test_alertmanager_inhibits_outage_alerts_while_the_vendor_is_in_maintenance(prom_stack: Stack) -> None:
    """bannersnack goes into maintenance, then answers server errors, as vendors do on their way back.
    Prometheus fires ApistatusTargetDown for it, but the example Alertmanager config inhibits it while
    the maintenance alert still fires: the webhook gets the same alert for rubiq (not in maintenance)
    and never for bannersnack."""
    assert prom_stack.webhook is not None
    prom_stack.control("bannersnack", maintenance=True)
    try:
        wait_for("ApistatusVendorMaintenance to fire for bannersnack",
                 lambda: "bannersnack" in prom_stack.firing("ApistatusVendorMaintenance"))
        prom_stack.control("bannersnack", reset=True, server_error=True)
        wait_for("ApistatusTargetDown to fire for bannersnack in Prometheus",
                 lambda: "bannersnack" in prom_stack.firing("ApistatusTargetDown"))

        def suppressed() -> dict[str, Any] | None:
            for a in prom_stack.am_alerts("ApistatusTargetDown"):
                if a["labels"].get("target") == "bannersnack" and a["status"]["state"] == "suppressed":
                    return a
            return None

        muted = wait_for("Alertmanager to hold ApistatusTargetDown{target=bannersnack} as suppressed", suppressed)
        assert muted["status"]["inhibitedBy"], muted
        webhook = prom_stack.webhook

        def sent() -> set[tuple[str, str]] | None:
            got = {(a["labels"]["alertname"], a["labels"].get("target", "")) for a in webhook.alerts()}
            expected = {("ApistatusTargetDown", "rubiq"), ("ApistatusVendorMaintenance", "bannersnack")}
            return got if expected <= got else None

        got = wait_for("the webhook to receive TargetDown for rubiq and the maintenance notice", sent)
        assert ("ApistatusTargetDown", "bannersnack") not in got, got
    finally:
        prom_stack.control("bannersnack", reset=True)


def test_a_failed_config_reload_is_found_by_its_alert(prom_stack: Stack) -> None:
    """A broken config file and a reload: the exporter keeps running the old config, and the
    expression of ApistatusConfigReloadFailed returns the exporter until a good reload."""
    expr = alert_rules()["ApistatusConfigReloadFailed"]["expr"]
    config = prom_stack.tmp / "exporter.yml"
    good = config.read_text()
    instance = prom_stack.exporter.removeprefix("http://")
    try:
        config.write_text(good + "\n  - name: [broken\n")
        status, body = http(prom_stack.exporter + "/-/reload", b"")
        assert status == 500 and b"exporter.yml" in body, body
        wait_for("ApistatusConfigReloadFailed's expression to return the exporter",
                 lambda: [r for r in prom_stack.query(expr) if r["metric"].get("instance") == instance])
        # the old config still runs: every target is still there
        assert prom_stack.targets('apistatus_up{job="apistatus"}') == set(VENDORS)
    finally:
        config.write_text(good)
        status, body = http(prom_stack.exporter + "/-/reload", b"")
    assert status == 200, body
    wait_for("the expression to be empty after a good reload", lambda: prom_stack.query(expr) == [])
