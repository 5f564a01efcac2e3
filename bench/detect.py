"""How fast it pages, and how rarely it lies: the exporter against the simulators, with a real
Prometheus and Alertmanager running the shipped mixin, every interval (probe, scrape, evaluation,
``for``, rule windows, Alertmanager's group_wait and group_interval) divided by the same factor.

Incidents: each on a vendor of its own (one notification group each), started at a random moment
within a probe interval; the time from the vendor's change to the webhook's notification is
reported in probe intervals. Then a healthy run in which every simulator fails a share of its
answers at random (``flaky``): every notification in it is a false page. Loopback only; bounded by
``deadline`` seconds per incident and the healthy run's length.
"""

from __future__ import annotations

import contextlib
import json
import os
import random
import re
import select
import statistics
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from tests.system.alerting import Webhook

from .procs import ROOT, ProcError, _spawn, binary, exporter_env, free_port, get, workdir

#: (class, settings of the simulator, the alert that pages for it); each runs on a vendor of its own
INCIDENTS: tuple[tuple[str, str, dict[str, Any], str], ...] = (
    ("server_error", "bizwebs", {"server_error": True}, "ApistatusTargetDown"),
    ("server_error", "flipsnack", {"server_error": True}, "ApistatusTargetDown"),
    ("server_error", "rubiq", {"server_error": True}, "ApistatusTargetDown"),
    ("network_error", "bannersnack", {"down": True}, "ApistatusTargetDown"),
    ("network_error", "movingimage", {"down": True}, "ApistatusTargetDown"),
    ("network_error", "datadog", {"down": True}, "ApistatusTargetDown"),
    ("timeout", "sendgrid", {"delay": 5.0}, "ApistatusTargetDown"),
    ("timeout", "pagerduty", {"delay": 5.0}, "ApistatusTargetDown"),
    ("auth", "github", {"rotated": True}, "ApistatusAuthFailing"),
    ("auth", "cloudflare", {"rotated": True}, "ApistatusAuthFailing"),
    ("server_error", "twilio", {"server_error": True}, "ApistatusTargetDown"),
    ("server_error", "stripe", {"server_error": True}, "ApistatusTargetDown"),
)
_DURATION = re.compile(r"(\d+)(ms|s|m|h|d|w|y)")
_UNIT = {"ms": 0.001, "s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800, "y": 31536000}


def seconds(text: str) -> float:
    parts = _DURATION.findall(text)
    if not parts or "".join(n + u for n, u in parts) != text:
        raise ValueError(f"not a Prometheus duration: {text!r}")
    return sum(int(n) * _UNIT[u] for n, u in parts)


def scaled(text: str, factor: float) -> str:
    """A Prometheus duration divided by ``factor``, in whole milliseconds (at least 1; 0 stays 0: a
    ``for: 0s`` made 1 ms would wait for one more evaluation)."""
    if seconds(text) == 0:
        return "0s"
    return f"{max(1, round(seconds(text) * 1000 / factor))}ms"


def scale_rules(doc: dict[str, Any], factor: float) -> dict[str, Any]:
    """Every ``for``, ``keep_firing_for``, range and offset of a rule file divided by ``factor``."""
    def expr(text: str) -> str:
        text = re.sub(r"\[(\w+)\]", lambda m: f"[{scaled(m.group(1), factor)}]", text)
        return re.sub(r"offset (\w+)", lambda m: f"offset {scaled(m.group(1), factor)}", text)

    for group in doc["groups"]:
        for rule in group["rules"]:
            rule["expr"] = expr(rule["expr"])
            for key in ("for", "keep_firing_for"):
                if key in rule:
                    rule[key] = scaled(rule[key], factor)
    return doc


@dataclass
class DetectResult:
    factor: float
    interval: float  # the scaled probe interval, seconds
    confirm_failures: bool
    #: whether the exporter had an egress check (``egress_checks``) for the egress of every target
    egress_check: bool = True
    #: (class, vendor, intervals from the change to the notification; None: none within the deadline)
    incidents: list[tuple[str, str, float | None]] = field(default_factory=list)
    healthy_intervals: float = 0.0
    flaky: float = 0.0
    flaky_answers: int = 0
    false_pages: int = 0
    false_notifications: list[tuple[str, str, str]] = field(default_factory=list)
    #: the machine's 1-minute load average at the start and at the end (a shared machine slows the
    #: stack down: the figures are in probe intervals, but a late scrape or evaluation still adds)
    load: tuple[float, float] = (0.0, 0.0)

    def figures(self) -> tuple[float, float]:
        got = [d for _, _, d in self.incidents if d is not None]
        return (statistics.median(got), max(got)) if got else (float("nan"), float("nan"))


def _notified(hook: Webhook, t0: float) -> list[tuple[float, str, str, str]]:
    """(time, receiver, alertname, vendor) of every notification since ``t0``."""
    return [(t, r, n["groupLabels"].get("alertname", ""), n["groupLabels"].get("vendor", ""))
            for t, r, n in hook.since(t0)]


def _post(url: str, data: dict[str, Any]) -> None:
    req = urllib.request.Request(url, data=json.dumps(data).encode(), method="POST")
    with urllib.request.urlopen(req, timeout=5) as resp:
        if resp.status != 200:
            raise ProcError(f"{url}: {resp.status}")


@contextlib.contextmanager
def _stack(dir_: Path, factor: float, confirm: bool, root: Path,
           egress_check: bool = True) -> Iterator[tuple[dict[str, Any], Webhook, float]]:
    interval = 60.0 / factor
    hook: Webhook | None = None
    sims_log = (dir_ / "sims.log").open("wb")
    sims = subprocess.Popen([sys.executable, "-m", "exporter", "simulate", "--json"], stdout=subprocess.PIPE,
                            stderr=sims_log, cwd=ROOT, start_new_session=True, env=exporter_env(root))
    try:
        assert sims.stdout is not None
        if not select.select([sims.stdout], [], [], 40)[0]:
            raise ProcError("the simulators did not start")
        described: dict[str, Any] = json.loads(sims.stdout.readline())
        targets = []
        for vendor, sim in described.items():
            t = {"name": vendor, "vendor": vendor, "base_url": sim["base_url"], "credentials": sim["credentials"],
                 "probe_share": 1}
            if "check" in sim:
                t["check"] = sim["check"]
            targets.append(t)
        config: dict[str, Any] = {"global": {"interval": f"{interval:g}s",
                                             "timeout": f"{min(interval, 10 / factor * 2):g}s"}, "targets": targets}
        if not confirm:  # else the shipped default (on)
            config["global"]["confirm_failures"] = False
        if egress_check:  # our egress checked (a simulator's control URL, which no incident touches): the
            # transport classes page on a confirmed failure; without one, on one failure more
            config["egress_checks"] = [{"name": "canary", "url": next(iter(described.values()))["control_url"]}]
        (dir_ / "exporter.yml").write_text(yaml.safe_dump(config))
        sys.path.insert(0, str(root / "mixin"))
        try:
            import render  # the mixin of ``root``
            m = render.evaluate("{}")
        finally:
            sys.path.pop(0)
            sys.modules.pop("render", None)
        hook = Webhook()
        am = m["alertmanager"]
        route = am["route"]
        for key in ("group_wait", "group_interval"):
            route[key] = scaled(route[key], factor)
        route["repeat_interval"] = "1h"
        for r in am["receivers"]:
            if r["name"] != "null":
                r["webhook_configs"] = [{"url": f"{hook.url}/{r['name']}", "send_resolved": False}]
        (dir_ / "alertmanager.yml").write_text(yaml.safe_dump(am))
        (dir_ / "alerts.yml").write_text(yaml.safe_dump(scale_rules(m["alerts"], factor)))
        (dir_ / "rules.yml").write_text(yaml.safe_dump(scale_rules(m["rules"], factor)))
        eport, aport, pport = free_port(), free_port(), free_port()
        prom = m["prometheus"]
        prom["global"] = {k: scaled(v, factor) for k, v in prom["global"].items()}
        prom["rule_files"] = [str(dir_ / "rules.yml"), str(dir_ / "alerts.yml")]
        prom["alerting"]["alertmanagers"][0]["static_configs"][0]["targets"] = [f"127.0.0.1:{aport}"]
        prom["scrape_configs"] = [j for j in prom["scrape_configs"] if j["job_name"] == "apistatus"]
        prom["scrape_configs"][0]["static_configs"][0]["targets"] = [f"127.0.0.1:{eport}"]
        (dir_ / "prometheus.yml").write_text(yaml.safe_dump(prom))
        with (_spawn("exporter", [sys.executable, "-m", "exporter", "--config", str(dir_ / "exporter.yml"),
                                  "--listen", f"127.0.0.1:{eport}", "--log-level", "error"], eport, dir_,
                     "/-/ready", env=exporter_env(root), wait=40),
              _spawn("alertmanager", [binary("prometheus-alertmanager"), f"--config.file={dir_ / 'alertmanager.yml'}",
                                      f"--storage.path={dir_ / 'am'}", "--cluster.listen-address=",
                                      "--log.level=warn", f"--web.listen-address=127.0.0.1:{aport}"],
                     aport, dir_, "/-/ready", wait=40),
              _spawn("prometheus", [binary("prometheus"), f"--config.file={dir_ / 'prometheus.yml'}",
                                    f"--storage.tsdb.path={dir_ / 'tsdb'}", "--log.level=warn",
                                    f"--rules.alert.resend-delay={scaled('1m', factor)}",
                                    f"--web.listen-address=127.0.0.1:{pport}"], pport, dir_, "/-/ready", wait=40)):
            yield described, hook, interval
    finally:
        if hook is not None:
            hook.close()
        with contextlib.suppress(ProcessLookupError):
            sims.terminate()
        sims.wait(10)
        sims_log.close()


def run_detect(factor: float = 20.0, confirm: bool = True, healthy_intervals: float = 200.0,
               flaky: float = 0.01, deadline_intervals: float = 20.0, root: Path = ROOT,
               seed: int | None = None, egress_check: bool = True) -> DetectResult:
    rng = random.Random(seed)
    with workdir("apistatus-detect-") as dir_, \
            _stack(dir_, factor, confirm, root, egress_check) as (sims, hook, interval):
        result = DetectResult(factor, interval, confirm, egress_check, load=(os.getloadavg()[0], 0.0))
        time.sleep(5 * interval)  # every target probed and scraped healthy; the start-up's own alerts
        # incidents: started at random moments within one interval, each on its own vendor
        plan = sorted((rng.uniform(0, interval), inc) for inc in INCIDENTS)
        t_start = time.monotonic()
        started: dict[str, float] = {}
        for offset, (_cls, vendor, settings, _alert) in plan:
            time.sleep(max(0.0, t_start + offset - time.monotonic()))
            _post(sims[vendor]["control_url"], settings)
            started[vendor] = time.monotonic()
        end = t_start + interval + deadline_intervals * interval
        want = {(alert, vendor) for _, vendor, _, alert in INCIDENTS}
        while time.monotonic() < end:
            got = {(a, v) for _, _, a, v in _notified(hook, t_start)}
            if want <= got:
                break
            time.sleep(0.05)
        notes = _notified(hook, t_start)
        for cls, vendor, _settings, alert in INCIDENTS:
            first = min((t for t, _, a, v in notes if (a, v) == (alert, vendor)), default=None)
            result.incidents.append((cls, vendor, None if first is None else (first - started[vendor]) / interval))
        # healthy again, then the long healthy run with random transient failures
        for _, vendor, _, _ in INCIDENTS:
            _post(sims[vendor]["control_url"], {"reset": True})
        time.sleep(25 * interval)  # every alert resolved (keep_firing_for included)
        for sim in sims.values():
            _post(sim["control_url"], {"flaky": flaky})
        t_healthy = time.monotonic()
        time.sleep(healthy_intervals * interval)
        for sim in sims.values():
            _post(sim["control_url"], {"flaky": 0.0})
            status, body = get(sim["control_url"])
            if status == 200:
                result.flaky_answers += int(json.loads(body).get("counts", {}).get("flaky", 0))
        time.sleep(5 * interval)  # what was under way when the run ended
        false = [(r, a, v) for _, r, a, v in _notified(hook, t_healthy)]
        result.healthy_intervals, result.flaky = healthy_intervals, flaky
        result.false_notifications = false
        result.false_pages = sum(1 for r, _, _ in false if r == "pager")
        result.load = (result.load[0], os.getloadavg()[0])
        return result


def render_detect(r: DetectResult) -> str:
    median, worst = r.figures()
    lines = [f"detect: scale 1/{r.factor:g} (probe interval {r.interval:g} s), confirm_failures "
             f"{'on' if r.confirm_failures else 'off'}, egress check {'on' if r.egress_check else 'off'}; "
             f"load average {r.load[0]:.1f} at the start, "
             f"{r.load[1]:.1f} at the end",
             f"  notification after the vendor's change, in probe intervals: median {median:.1f}, worst {worst:.1f} "
             f"({sum(d is not None for *_, d in r.incidents)} of {len(r.incidents)} incidents notified)"]
    for cls, vendor, d in r.incidents:
        lines.append(f"    {cls:14} {vendor:12} {'-' if d is None else f'{d:.1f}'}")
    lines.append(f"  healthy run: {r.healthy_intervals:g} intervals of every target, {r.flaky:.0%} of "
                 f"answers failing at random ({r.flaky_answers} such answers): {r.false_pages} false pages, "
                 f"{len(r.false_notifications)} notifications in all {r.false_notifications or ''}")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    import argparse

    p = argparse.ArgumentParser(prog="python3 -m bench detect", description=__doc__.splitlines()[0])
    p.add_argument("--factor", type=float, default=20.0, help="every interval divided by this (default 20)")
    p.add_argument("--healthy-intervals", type=float, default=200.0, help="length of the flaky healthy run")
    p.add_argument("--flaky", type=float, default=0.01, help="share of answers failing at random in it")
    p.add_argument("--no-confirm", action="store_true", help="run the exporter without confirm_failures")
    p.add_argument("--no-egress-check", action="store_true",
                   help="run the exporter without an egress check (transport failures page one probe later)")
    p.add_argument("--root", type=Path, default=ROOT, help="the checkout whose exporter and mixin run")
    args = p.parse_args(argv)
    try:
        r = run_detect(args.factor, not args.no_confirm, args.healthy_intervals, args.flaky, root=args.root,
                       egress_check=not args.no_egress_check)
    except ProcError as exc:
        print(f"bench detect: {exc}", file=sys.stderr)
        return 1
    print(render_detect(r))
    return 0


if __name__ == "__main__":
    sys.exit(main())
