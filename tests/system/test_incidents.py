"""Incidents, end to end: one notification group per incident at the right severity.

Real parts on loopback: two sets of the vendor simulators (and one more simulator served over HTTPS
with a certificate that expires in a few days, from a CA the exporter trusts through ``ca_file``),
three exporters in one job (shards), a
Debian Prometheus running the mixin's rules (rendered with a test _config whose `for` durations and
windows are seconds, not minutes), a Debian Alertmanager with the shipped routes and inhibit rules,
and a webhook receiver in this test that records every notification. The incidents run at the same
time, each on its own vendor or exporter, and the webhook's notifications are counted per incident.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import json
import select
import shutil
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any, TypeVar

import pytest
import yaml

from tests.conftest import free_port, need, wait_for

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "mixin"))
import render  # noqa: E402

sys.path.pop(0)

from .alerting import Webhook, http, stop_processes  # noqa: E402
from .tls_simulator import TLSSimulator  # noqa: E402

#: the test's _config: seconds instead of minutes, the burn-rate pair over one minute (so its history
#: guard, 55 s, is passed within the test), the slow pair out of reach. The alerts on a confirmed failure
#: (ApistatusTargetDown, ApistatusAuthFailing) and the one that inhibits them behind a down egress keep
#: the shipped `for` (none) and keep_firing_for: what pages, and how often, is what ships
TEST_CONFIG = """{_config+:: {
  'for'+: {ApistatusCheckRejected: '4s', ApistatusVendorMaintenance: '2s',
           ApistatusClockSkew: '4s', ApistatusRateLimited: '4s', ApistatusQuotaLow: '8s',
           ApistatusQuotaExhaustionPredicted: '1h', ApistatusQuotaExceeded: '4s', ApistatusProbesStale: '6s',
           ApistatusConfigReloadFailed: '4s', ApistatusExporterAbsent: '4s', ApistatusExporterOverloaded: '4s',
           ApistatusProbeScrapeFailed: '4s', ApistatusCertificateExpiringSoon: '4s',
           ApistatusErrorBudgetBurnFast: '6s', ApistatusErrorBudgetBurnSlow: '6s', ApistatusBudgetDelayingProbes: '4s',
           ApistatusVendorDeclaredMaintenance: '2s', ApistatusEgressDown: '2s'},
  maintenanceKeepFiringFor: '30s',
  egressKeepFiringFor: '15s',
  staleMinSeconds: 5,
  thresholds+: {rateLimitedWindow: '10s', startLagSeconds: 1, startLagWindow: '10s', budgetDelayWindow: '10s'},
  slo+: {fast: [{long: '60s', short: '10s', factor: 14.4}], slow: [{long: '1h', short: '10m', factor: 3}]},
}}"""
VENDORS = ("bannersnack", "bizwebs", "rubiq", "flipsnack", "movingimage")
#: each incident: simulator set, vendor, settings; the one notification group it must produce
#: (alertname, vendor or "", receiver)
INCIDENTS: dict[str, tuple[str, str, dict[str, Any], tuple[str, str, str]]] = {
    "vendor outage": ("a", "rubiq", {"server_error": True}, ("ApistatusTargetDown", "rubiq", "pager")),
    "rotated credential": ("a", "bizwebs", {"rotated": True}, ("ApistatusAuthFailing", "bizwebs", "pager")),
    "maintenance": ("a", "flipsnack", {"maintenance": True}, ("ApistatusVendorMaintenance", "flipsnack", "chat")),
    "quota exhausted": ("a", "movingimage", {"quota_exceeded": True},
                        ("ApistatusQuotaExceeded", "movingimage", "pager")),
    "clock skew": ("a", "bannersnack", {"clock_offset": 600}, ("ApistatusClockSkew", "bannersnack", "ticket")),
    "rate limited": ("b", "bizwebs", {"rate_limited": True, "retry_after": 1},
                     ("ApistatusRateLimited", "bizwebs", "ticket")),
    "check rejected": ("b", "rubiq", {"code": "404"}, ("ApistatusCheckRejected", "rubiq", "ticket")),
    # Flipsnack's uploads quota is informational (the health check does not need it): a warning, no page
    "informational quota used up": ("b", "flipsnack", {"uploads_left": 0},
                                    ("ApistatusQuotaLow", "flipsnack", "ticket")),
}
#: incidents there from the start, set up by the config: (alertname, vendor, receiver)
STANDING_INCIDENTS = {
    # openai's simulator over HTTPS with a certificate that expires in 5 days
    "certificate expiring": ("ApistatusCertificateExpiringSoon", "openai", "ticket"),
    # a stripe target whose probe_share allows one request per 2 s, probed every second
    "budget too small for the interval": ("ApistatusBudgetDelayingProbes", "stripe", "ticket"),
}
CERT_DAYS = 5
#: incidents of the exporters themselves (no vendor label)
EXPORTER_INCIDENTS = {
    "/probe of an unknown target": ("ApistatusProbeScrapeFailed", "ticket"),
    "config reload failing": ("ApistatusConfigReloadFailed", "ticket"),
    "exporter overloaded": ("ApistatusExporterOverloaded", "ticket"),
    "exporter down (one shard of three)": ("ApistatusExporterAbsent", "pager"),
}
WAIT = 90.0
LIFETIME = 600
T = TypeVar("T")
class Stack:
    def __init__(self) -> None:
        self.tmp = Path(tempfile.mkdtemp(prefix="apistatus-incidents-"))
        self.procs: dict[str, subprocess.Popen[bytes]] = {}
        self.sims: dict[str, dict[str, dict[str, Any]]] = {}
        self.exporters: dict[str, str] = {}
        self.webhook = Webhook()
        self.prometheus = self.alertmanager = ""
        self.tls: TLSSimulator | None = None

    def spawn(self, name: str, args: list[str], stdout: int | None = None) -> subprocess.Popen[bytes]:
        log = open(self.tmp / f"{name}.log", "wb")  # noqa: SIM115 - closed with the process
        proc = subprocess.Popen(["timeout", "-k", "5", str(LIFETIME), *args], stderr=log,
                                stdout=log if stdout is None else stdout, cwd=ROOT, start_new_session=True)
        self.procs[name] = proc
        return proc

    def log(self, name: str) -> str:
        path = self.tmp / f"{name}.log"
        return path.read_text(errors="replace")[-2000:] if path.exists() else ""

    def stop(self, name: str) -> None:
        stop_processes([self.procs[name]])

    def close(self) -> None:
        for name in reversed(list(self.procs)):
            self.stop(name)
        self.webhook.close()
        if self.tls is not None:
            self.tls.close()
        shutil.rmtree(self.tmp, ignore_errors=True)

    def control(self, sims: str, vendor: str, **settings: Any) -> None:
        status, body = http(self.sims[sims][vendor]["control_url"], json.dumps(settings).encode())
        assert status == 200, f"{sims}/{vendor} control {settings}: {body!r}"

    def query(self, expr: str) -> list[dict[str, Any]]:
        status, body = http(self.prometheus + "/api/v1/query?" + urllib.parse.urlencode({"query": expr}))
        data = json.loads(body)
        assert status == 200 and data["status"] == "success", f"{expr!r}: {data.get('error')}"
        result: list[dict[str, Any]] = data["data"]["result"]
        return result

    def am_alerts(self) -> list[dict[str, Any]]:
        status, body = http(self.alertmanager + "/api/v2/alerts")
        assert status == 200, body[:300]
        alerts: list[dict[str, Any]] = json.loads(body)
        return alerts

    def ready(self, name: str, url: str) -> str:
        wait_for(f"{name} to be ready: {self.log(name)}", lambda: http(url + "/-/ready")[0] == 200, 40)
        return url

    def start_alertmanager(self, mixin: dict[str, Any]) -> dict[str, Any]:
        """Alertmanager with the mixin's routes and inhibit rules, delivering to this test's webhook, fast
        enough for a test; the rest of the mixin's Prometheus config (rules, alerts, the Alertmanager) is
        returned for the caller to point at its exporters and start."""
        am = mixin["alertmanager"]
        am["route"].update(group_wait="1s", group_interval="2s", repeat_interval="1h")
        for r in am["receivers"]:
            if r["name"] != "null":  # routed nowhere, as shipped
                r["webhook_configs"] = [{"url": f"{self.webhook.url}/{r['name']}", "send_resolved": False}]
        (self.tmp / "alertmanager.yml").write_text(yaml.safe_dump(am))
        self.alertmanager = self.serve("alertmanager", [
            need("prometheus-alertmanager"), f"--config.file={self.tmp / 'alertmanager.yml'}",
            f"--storage.path={self.tmp / 'am'}", "--cluster.listen-address=", "--log.level=warn"])
        (self.tmp / "alerts.yml").write_text(yaml.safe_dump(mixin["alerts"]))
        (self.tmp / "rules.yml").write_text(yaml.safe_dump(mixin["rules"]))
        prom: dict[str, Any] = mixin["prometheus"]
        prom["global"] = {"scrape_interval": "1s", "evaluation_interval": "1s"}
        prom["rule_files"] = [str(self.tmp / "rules.yml"), str(self.tmp / "alerts.yml")]
        prom["alerting"]["alertmanagers"][0]["static_configs"][0]["targets"] = [
            self.alertmanager.removeprefix("http://")]
        return prom

    def start_prometheus(self, prom: dict[str, Any]) -> None:
        (self.tmp / "prometheus.yml").write_text(yaml.safe_dump(prom))
        self.prometheus = self.serve("prometheus", [
            need("prometheus"), f"--config.file={self.tmp / 'prometheus.yml'}",
            f"--storage.tsdb.path={self.tmp / 'tsdb'}", "--log.level=warn", "--rules.alert.resend-delay=1s"])

    def serve(self, name: str, args: list[str]) -> str:
        """A Prometheus-style server (``--web.listen-address``) on a free loopback port; its URL once ready."""
        url = f"http://127.0.0.1:{free_port()}"
        self.spawn(name, [*args, f"--web.listen-address={url.removeprefix('http://')}"])
        return self.ready(name, url)


def target(sims: str, vendor: str, sim: dict[str, Any], name: str | None = None, **extra: Any) -> dict[str, Any]:
    t = {"name": name or f"{sims}-{vendor}", "vendor": vendor, "base_url": sim["base_url"],
         "credentials": sim["credentials"], "probe_share": 1, **extra}
    if "check" in sim:
        t["check"] = sim["check"]
    return t


def start(stack: Stack) -> None:
    for sims in ("a", "b"):
        proc = stack.spawn(f"sims-{sims}", [sys.executable, "-m", "exporter", "simulate", "--json"],
                           stdout=subprocess.PIPE)
        assert proc.stdout is not None
        ready, _, _ = select.select([proc.stdout], [], [], 40)
        assert ready, stack.log(f"sims-{sims}")
        stack.sims[sims] = json.loads(proc.stdout.readline())
    a, b = stack.sims["a"], stack.sims["b"]
    stack.tls = TLSSimulator("openai", stack.tmp, valid_for=dt.timedelta(days=CERT_DAYS))

    def spaced(t: dict[str, Any]) -> dict[str, Any]:
        # Flipsnack allows 60 requests a minute: a probe every second would be held back now and then
        # (a budget incident of its own), so its targets are probed every 2 s
        return {**t, "interval": "2s"} if t["vendor"] == "flipsnack" else t

    configs = {
        # every incident's target, and a healthy one that the /probe job asks for
        "e1": {"global": {"interval": "1s", "timeout": "1s"},
               "targets": [spaced(target("a", v, a[v])) for v in VENDORS]
               + [spaced(target("b", v, b[v])) for v in ("bizwebs", "rubiq", "flipsnack", "movingimage")]
               + [stack.tls.target("tls-openai"), target("b", "stripe", b["stripe"], probe_share=0.04)]},
        # a shard that will go down
        "e2": {"global": {"interval": "2s", "timeout": "2s"},
               "targets": [target("b", "bannersnack", b["bannersnack"], "e2-bannersnack")]},
        # a shard with more work than one probe at a time can do once its vendor slows down
        "e3": {"global": {"interval": "2s", "timeout": "2s", "max_concurrency": 1},
               "targets": [target("b", "bannersnack", b["bannersnack"], f"e3-bannersnack-{i}") for i in range(3)]},
    }
    for name, config in configs.items():
        path = stack.tmp / f"{name}.yml"
        path.write_text(yaml.safe_dump(config))
        port = free_port()
        stack.spawn(name, [sys.executable, "-m", "exporter", "--config", str(path), "--listen", f"127.0.0.1:{port}",
                           "--log-level", "error"])
        stack.exporters[name] = f"127.0.0.1:{port}"
    for name, addr in stack.exporters.items():
        wait_for(f"exporter {name}: {stack.log(name)}", lambda a=addr: http(f"http://{a}/-/ready")[0] == 200, 40)

    prom = stack.start_alertmanager(render.evaluate(TEST_CONFIG))
    jobs = {j["job_name"]: j for j in prom["scrape_configs"]}
    jobs["apistatus"]["static_configs"][0]["targets"] = list(stack.exporters.values())
    probe = jobs["apistatus-probe"]
    probe["static_configs"][0]["targets"] = ["b-movingimage", "no-such-target"]
    probe["scrape_interval"] = probe["scrape_timeout"] = "2s"
    probe["relabel_configs"][-1]["replacement"] = stack.exporters["e1"]
    stack.start_prometheus(prom)


@pytest.fixture(scope="module")
def stack() -> Iterator[Stack]:
    need("prometheus")
    need("prometheus-alertmanager")
    s = Stack()
    try:
        start(s)
        yield s
    finally:
        s.close()


def refired(stack: Stack, seconds: float, alerts: str = "ApistatusTargetDown|ApistatusAuthFailing") -> list[Any]:
    """The alerts that resolved and fired again within the last ``seconds``: each firing starts afresh
    (ALERTS_FOR_STATE holds when it became active), and a pager that was told of the resolve pages again."""
    return [r["metric"] for r in stack.query(
        f'changes(ALERTS_FOR_STATE{{alertname=~"{alerts}"}}[{max(1, round(seconds))}s]) > 0')]


def _incident_of(group: list[tuple[str, dict[str, Any]]]) -> tuple[str, str, str]:
    receiver, n = group[0]
    labels = n["groupLabels"]
    return labels.get("alertname", ""), labels.get("vendor", ""), receiver


def test_each_incident_sends_exactly_one_notification_at_its_severity(stack: Stack) -> None:
    started = time.monotonic()
    wait_for("every target of e1 scraped up", lambda: len(stack.query(
        'apistatus_up{job="apistatus"} == 1')) >= len(VENDORS) + 4 + 2 + 4 or None)
    # what a loaded machine's start-up may have sent (a first scrape later than the scaled
    # ApistatusExporterAbsent for): never about a vendor, and not part of the incidents below
    wait_for("no exporter reported absent", lambda: not stack.query(
        'ALERTS{alertname="ApistatusExporterAbsent",alertstate="firing"}') or None)
    with stack.webhook.lock:
        before = len(stack.webhook.got)
        startup = [n for _, n in stack.webhook.got]
    assert all(n["groupLabels"].get("alertname") == "ApistatusExporterAbsent" for n in startup), startup

    def groups_after() -> dict[str, list[tuple[str, dict[str, Any]]]]:
        with stack.webhook.lock:
            out: dict[str, list[tuple[str, dict[str, Any]]]] = {}
            for receiver, n in stack.webhook.got[before:]:
                out.setdefault(n["groupKey"], []).append((receiver, n))
            return out

    # all incidents at once, each on its own vendor (or exporter)
    for sims, vendor, settings, _ in INCIDENTS.values():
        stack.control(sims, vendor, **settings)
    stack.control("b", "bannersnack", delay=1.5)  # e3 falls behind its schedule
    e1 = stack.tmp / "e1.yml"
    e1.write_text(e1.read_text() + "\n  - name: [broken\n")
    status, body = http(f"http://{stack.exporters['e1']}/-/reload", b"")
    assert status >= 400 and b"e1.yml" in body, body

    expected = {inc for *_, inc in INCIDENTS.values()} | set(STANDING_INCIDENTS.values())
    expected |= {(alert, "", receiver) for alert, receiver in EXPORTER_INCIDENTS.values()
                 if alert != "ApistatusExporterAbsent"}
    wait_for("a notification for every incident", lambda: expected <= {
        _incident_of(g) for g in groups_after().values()} or None)

    # one shard of three goes down; the other two keep being scraped
    stack.stop("e2")
    expected.add(("ApistatusExporterAbsent", "", "pager"))
    wait_for("the exporter-down page", lambda: ("ApistatusExporterAbsent", "", "pager") in {
        _incident_of(g) for g in groups_after().values()} or None)

    # The outage's burn-rate alert fires once the minute of history is there; Alertmanager holds it
    # as inhibited by TargetDown. Likewise the overloaded shard's stale probes.
    wait_for("ApistatusErrorBudgetBurnFast firing in Prometheus for a-rubiq", lambda: stack.query(
        'ALERTS{alertname="ApistatusErrorBudgetBurnFast",alertstate="firing",target="a-rubiq"}'))

    def suppressed(alertname: str, **labels: str) -> bool:
        return any(a["labels"]["alertname"] == alertname and a["status"]["state"] == "suppressed"
                   and a["status"]["inhibitedBy"] and all(a["labels"].get(k) == v for k, v in labels.items())
                   for a in stack.am_alerts())

    wait_for("Alertmanager to hold the burn alert inhibited",
             lambda: suppressed("ApistatusErrorBudgetBurnFast", target="a-rubiq"))
    # quiet time: a late duplicate (group_interval is 2 s) would arrive in it
    time.sleep(5)

    groups = groups_after()
    got = {}
    for group in groups.values():
        inc = _incident_of(group)
        assert inc not in got, f"two notification groups for {inc}"
        got[inc] = len(group)
    assert set(got) == expected, f"unexpected: {sorted(set(got) - expected)}; missing: {sorted(expected - set(got))}"
    counts = {inc: n for inc, n in got.items() if n != 1}
    sent = {inc: [[(a["labels"].get("instance", a["labels"].get("target")), a["status"], a["startsAt"])
                   for a in n["alerts"]] for _, n in group]
            for group in groups.values() for inc in [_incident_of(group)] if inc in counts}
    assert counts == {}, f"incidents with more than one notification: {counts}: {sent}"
    # and no page on a confirmed failure resolved in between and fired again (the vendor outage, the
    # rotated credential: a re-fire is a second page for a pager told of the resolve)
    assert refired(stack, time.monotonic() - started) == []
    # the severity each receiver stands for
    for group in groups.values():
        receiver, n = group[0]
        sev = {a["labels"]["severity"] for a in n["alerts"]}
        assert sev == {{"pager": "critical", "ticket": "warning", "chat": "info"}[receiver]}, (receiver, sev)
    # the informational quota never paged, in Prometheus either (not inhibited: never fired)
    assert stack.query('ALERTS{alertname="ApistatusQuotaExceeded",target="b-flipsnack"}') == []
    assert stack.query('apistatus_quota_remaining{target="b-flipsnack",quota="uploads"} == 0')
    assert stack.query('apistatus_quota_informational{target="b-flipsnack",quota="uploads"} == 1')
    assert stack.query('apistatus_quota_informational{target="a-movingimage"} == 1') == []
    # the certificate's own notAfter (read with an independent parser), a few days ahead
    assert stack.tls is not None
    [cert] = stack.query('apistatus_tls_cert_expiry_timestamp_seconds{job="apistatus",target="tls-openai"}')
    assert float(cert["value"][1]) == stack.tls.not_after()
    assert stack.query('apistatus_tls_cert_expiry_timestamp_seconds{job="apistatus",target!="tls-openai"}') == []
    print(f"\n{len(got)} incidents, one notification each, in {time.monotonic() - started:.0f}s")


# --- our own egress: one page for an egress outage, none per vendor ---------------------------------

EGRESS_VENDORS = ("bannersnack", "bizwebs", "rubiq", "flipsnack", "movingimage")


class Proxy:
    """Debian's tinyproxy at a fixed port, stopped and started again by the test (our egress)."""

    def __init__(self, directory: Path) -> None:
        from tests.egress_support import tinyproxy_binary

        self.binary = tinyproxy_binary()
        self.port = free_port()
        self.conf = directory / "tinyproxy.conf"
        self.conf.write_text("\n".join([f"Port {self.port}", "Listen 127.0.0.1", "Timeout 20", "MaxClients 64",
                                         "Allow 127.0.0.1", "LogLevel Critical", "DisableViaHeader Yes"]) + "\n")
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> None:
        self.proc = subprocess.Popen(["timeout", "-k", "5", str(LIFETIME), self.binary, "-d", "-c", str(self.conf)],
                                     stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
        wait_for("tinyproxy to listen", lambda: _listens(self.port) or None, 10)

    def stop(self) -> None:
        if self.proc is not None:
            stop_processes([self.proc])
        self.proc = None


def _listens(port: int) -> bool:
    import socket

    with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), timeout=0.5):
        return True
    return False


@pytest.fixture(scope="module")
def egress_stack() -> Iterator[tuple[Stack, Proxy]]:
    need("prometheus")
    need("prometheus-alertmanager")
    s = Stack()
    proxy = Proxy(s.tmp)
    try:
        proxy.start()
        proc = s.spawn("sims", [sys.executable, "-m", "exporter", "simulate", "--json"], stdout=subprocess.PIPE)
        assert proc.stdout is not None
        ready, _, _ = select.select([proc.stdout], [], [], 40)
        assert ready, s.log("sims")
        s.sims["a"] = sims = json.loads(proc.stdout.readline())
        # ten targets of five vendors, every request through the proxy; the egress check too
        targets = [{**target("a", v, sims[v], f"{v}-{i}"), "interval": "4s" if v == "flipsnack" else "2s"}
                   for v in EGRESS_VENDORS for i in (1, 2)]
        config = {"global": {"interval": "2s", "timeout": "1s", "http_client": {"proxy_url": proxy.url}},
                  "egress_checks": [{"name": "corp-proxy", "url": sims["bannersnack"]["control_url"],
                                     "expect_status": [200]}],
                  "targets": targets}
        path = s.tmp / "egress.yml"
        path.write_text(yaml.safe_dump(config))
        port = free_port()
        s.spawn("exporter", [sys.executable, "-m", "exporter", "--config", str(path), "--listen", f"127.0.0.1:{port}",
                             "--log-level", "error"])
        s.exporters["exporter"] = f"127.0.0.1:{port}"
        s.ready("exporter", f"http://127.0.0.1:{port}")

        prom = s.start_alertmanager(render.evaluate(TEST_CONFIG))
        prom["scrape_configs"] = [j for j in prom["scrape_configs"] if j["job_name"] == "apistatus"]
        prom["scrape_configs"][0]["static_configs"][0]["targets"] = [s.exporters["exporter"]]
        # a scrape may take up to 2 s on a loaded machine: a missed one must not read as the exporter down
        prom["scrape_configs"][0].update(scrape_interval="2s", scrape_timeout="2s")
        s.start_prometheus(prom)
        yield s, proxy
    finally:
        proxy.stop()
        s.close()


def _notifications(s: Stack) -> list[tuple[str, str, str]]:
    """Every page sent: (receiver, alertname, vendor) of its group, once per group. Alertmanager sends a
    group again when a second alert joins it after group_wait (a vendor's second target failing a probe
    later): that is an update of the same page, which the pager integrations deduplicate by group key,
    not a second page."""
    with s.webhook.lock:
        seen: set[str] = set()
        out = []
        for receiver, n in s.webhook.got:
            if n["groupKey"] not in seen:
                seen.add(n["groupKey"])
                out.append((receiver, n["groupLabels"].get("alertname", ""), n["groupLabels"].get("vendor", "")))
        return out


def test_an_egress_outage_pages_once_and_no_vendor_a_vendor_outage_still_pages(
        egress_stack: tuple[Stack, Proxy]) -> None:
    s, proxy = egress_stack
    wait_for("all ten targets up through the proxy", lambda: len(s.query(
        'apistatus_up{job="apistatus"} == 1')) == 10 or None)
    wait_for("the egress check up", lambda: s.query('apistatus_egress_up{egress="corp-proxy"} == 1'))
    time.sleep(3)
    # what a loaded machine's start-up may have sent (a first scrape late enough for
    # ApistatusExporterAbsent's 4 s): never about a vendor or the egress, and not part of the incident
    before = _notifications(s)
    assert [n for n in before if n[2] or n[1] == "ApistatusEgressDown"] == [], before

    # the proxy goes away: every target of every vendor fails at the transport level at once
    proxy.stop()
    wait_for("the egress page", lambda: ("pager", "ApistatusEgressDown", "") in _notifications(s) or None)
    wait_for("every target down in Prometheus, its page held by Alertmanager", lambda: len(s.query(
        'ALERTS{alertname="ApistatusTargetDown",alertstate="firing"}')) == 10 or None)
    wait_for("the targets' pages inhibited", lambda: sum(
        a["labels"]["alertname"] == "ApistatusTargetDown" and a["status"]["state"] == "suppressed"
        for a in s.am_alerts()) == 10 or None)
    assert s.query('apistatus_egress_suspected_down{egress="corp-proxy"} == 1')  # the derived signal agrees
    time.sleep(6)  # quiet time: a late vendor page (group_interval 2 s) would arrive in it
    assert _notifications(s)[len(before):] == [("pager", "ApistatusEgressDown", "")], (
        [(a["labels"], a["startsAt"]) for _, n in s.webhook.got for a in n["alerts"]])

    # the egress is back; once its hold is over, a real vendor outage pages once, for that vendor
    proxy.start()
    wait_for("all ten targets up again", lambda: len(s.query('apistatus_up{job="apistatus"} == 1')) == 10 or None)
    wait_for("the egress alerts resolved and their hold over", lambda: not s.query(
        'ALERTS{alertname=~"ApistatusEgressDown|ApistatusTargetBehindEgressDown"}') or None)
    assert _notifications(s)[len(before):] == [("pager", "ApistatusEgressDown", "")]  # nothing on the way back
    s.control("a", "rubiq", server_error=True)
    outage = time.monotonic()
    wait_for("the rubiq page", lambda: ("pager", "ApistatusTargetDown", "rubiq") in _notifications(s) or None)
    time.sleep(8)  # a few probes of the outage, backoff included: a late duplicate or a re-fire comes in it
    assert refired(s, time.monotonic() - outage) == []
    assert _notifications(s)[len(before):] == [("pager", "ApistatusEgressDown", ""),
                                               ("pager", "ApistatusTargetDown", "rubiq")]
    assert not s.query('ALERTS{alertname="ApistatusEgressDown"}')  # a vendor outage is not ours
