"""A fleet of three shards of one config on loopback, scraped by a real Prometheus: every target is
exported by exactly one shard, targets sharing a credential are on one shard, each credential's
requests stay within its share fleet-wide, and killing a shard fires the exporter-down alert for it
alone until it is back with its targets.

Two simulator processes give ten vendor simulators (five vendors on two addresses each); each is
one credential group (vendor, host, credential) of four targets. Every target gets a small
request budget, so a group split over two shards (two budgets) would show at the simulator.
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
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from exporter.budget import allowances
from exporter.config import load_config
from exporter.shard import Shard, shard_key
from exporter.shard import select as shard_select
from tests.conftest import free_port
from tests.system.test_prometheus_e2e import (
    PROM_DIR,
    WAIT,
    Stack,
    _spawn_ready,
    http,
    immediate_alert_rules,
    need,
    wait_for,
)

SHARDS = 3
PER_GROUP = 4
#: the budget every target gets: requests per minute of its credential, all of which probes may spend
BUDGET = 20
EXPORTER_DOWN = "ApistatusExporterAbsent"


class Fleet(Stack):
    config: Path
    ports: list[int]
    replicas: dict[int, subprocess.Popen[bytes]]
    sim_status: list[str]

    def start_replica(self, i: int) -> None:
        self.replicas[i] = self.spawn(f"shard{i}", [
            sys.executable, "-m", "exporter", "--config", str(self.config), "--shard", f"{i}/{SHARDS}",
            "--listen", f"127.0.0.1:{self.ports[i]}", "--log-level", "warning"])
        url = f"http://127.0.0.1:{self.ports[i]}"
        wait_for(f"shard {i} to be ready: {self.log(f'shard{i}')}", lambda: http(url + "/-/ready")[0] == 200)

    def close(self) -> None:
        # a replica whose timeout wrapper is gone still runs in the wrapper's process group
        for proc in self.procs:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGTERM if proc.poll() is None else signal.SIGKILL)
        super().close()

    def requests(self) -> dict[str, int]:
        """Requests each simulator has received, by its base URL."""
        out = {}
        for url in self.sim_status:
            status = json.loads(http(url)[1])
            out[status["base_url"]] = int(status["counts"].get("requests", 0))
        return out


def _simulators(fleet: Fleet, n: int) -> list[dict[str, Any]]:
    described = []
    for k in range(n):
        proc = fleet.spawn(f"simulators{k}", [sys.executable, "-m", "exporter", "simulate", "--json"],
                           stdout=subprocess.PIPE)
        assert proc.stdout is not None
        ready, _, _ = select.select([proc.stdout], [], [], WAIT)
        assert ready, f"the simulators printed no addresses: {fleet.log(f'simulators{k}')}"
        described.extend(json.loads(proc.stdout.readline()).values())
    return described


def _config(fleet: Fleet, sims: list[dict[str, Any]]) -> None:
    targets = []
    for g, sim in enumerate(sims):
        for j in range(PER_GROUP):
            target = {"name": f"{sim['base_url'].split(':')[-1].split('/')[0]}-{j}", "vendor": "", "probe_share": 1,
                      "base_url": sim["base_url"], "credentials": sim["credentials"],
                      "budget": [{"requests": BUDGET, "per": "1m"}], "labels": {"group": str(g)}}
            if "check" in sim:
                target["check"] = sim["check"]
            targets.append(target)
    vendors = {s["base_url"]: s for s in sims}
    for t in targets:  # the vendor of a simulator is in its control URL's answer
        t["vendor"] = json.loads(http(vendors[t["base_url"]]["control_url"])[1])["vendor"]
    fleet.config = fleet.tmp / "fleet.yml"
    fleet.config.write_text(yaml.safe_dump({"global": {"interval": "1s", "timeout": "1s"}, "targets": targets}))


def _prometheus(fleet: Fleet) -> None:
    binary = need("prometheus")
    immediate_alert_rules(fleet.tmp)
    config = {
        "global": {"scrape_interval": "1s", "evaluation_interval": "1s"},
        "rule_files": [str(PROM_DIR / "recording_rules.yml"), str(fleet.tmp / "alert_rules.yml")],
        "scrape_configs": [{"job_name": "apistatus", "scrape_timeout": "1s", "static_configs": [
            {"targets": [f"127.0.0.1:{p}"], "labels": {"shard": str(i)}} for i, p in enumerate(fleet.ports)]}],
    }
    path = fleet.tmp / "prometheus.yml"
    path.write_text(yaml.safe_dump(config))
    fleet.prometheus = _spawn_ready(fleet, "prometheus", [
        binary, f"--config.file={path}", f"--storage.tsdb.path={fleet.tmp / 'tsdb'}", "--log.level=warn"])


@pytest.fixture(scope="module")
def fleet() -> Iterator[Fleet]:
    need("prometheus")
    f = Fleet(Path(tempfile.mkdtemp(prefix="apistatus-fleet-")))
    try:
        # a simulator whose catalog must point at it (Graph's token endpoint) cannot be one group on two
        # addresses under one catalog: left out
        sims = [sim for sim in _simulators(f, 2) if "catalog_override" not in sim]
        f.sim_status = [s["control_url"] for s in sims]
        _config(f, sims)
        f.ports = [free_port() for _ in range(SHARDS)]
        f.replicas = {}
        for i in range(SHARDS):
            f.start_replica(i)
        f.started = time.monotonic()  # type: ignore[attr-defined]
        _prometheus(f)
        yield f
    finally:
        f.close()
        shutil.rmtree(f.tmp, ignore_errors=True)


def test_every_target_is_exported_by_exactly_one_shard_with_its_credential_group(fleet: Fleet) -> None:
    cfg = load_config(fleet.config)
    names = {t.name for t in cfg.targets}

    def counted() -> dict[str, int] | None:
        got = {r["metric"]["target"]: int(r["value"][1]) for r in fleet.query("count by (target) (apistatus_up)")}
        return got if set(got) == names else None

    got = wait_for("Prometheus to have every target from the fleet", counted)
    assert set(got.values()) == {1}, {t: n for t, n in got.items() if n != 1}
    # the shard that exports a target is the one its credential hashes to
    on = {r["metric"]["target"]: r["metric"]["shard"] for r in fleet.query("apistatus_up")}
    for i in range(SHARDS):
        mine = {t.name for t in shard_select(cfg, Shard(i, SHARDS)).targets}
        assert {n for n, s in on.items() if s == str(i)} == mine
    groups: dict[str, set[str]] = {}
    for t in cfg.targets:
        groups.setdefault(shard_key(t), set()).add(on[t.name])
    assert all(len(s) == 1 for s in groups.values()), groups
    assert len(set(on.values())) == SHARDS  # ten groups do spread over the three shards
    # and each replica reports its own part
    per_shard = {r["metric"]["shard"]: (r["metric"]["index"], r["metric"]["count"])
                 for r in fleet.query("apistatus_shard_info")}
    assert per_shard == {str(i): (str(i), str(SHARDS)) for i in range(SHARDS)}
    targets = {r["metric"]["shard"]: int(float(r["value"][1])) for r in fleet.query("apistatus_targets")}
    assert targets == {str(i): len(shard_select(cfg, Shard(i, SHARDS)).targets) for i in range(SHARDS)}


def test_each_credentials_requests_stay_within_its_share_fleet_wide(fleet: Fleet) -> None:
    cfg = load_config(fleet.config)
    # every group asks for 4 probes a second against a budget of 20 a minute: within a few seconds
    # every budget is spent, and a group split over two shards would be spent twice
    wait_for("every budget to be spent", lambda: all(n >= BUDGET for n in fleet.requests().values()))
    time.sleep(3)
    elapsed = time.monotonic() - fleet.started  # type: ignore[attr-defined]
    assert elapsed < 55, "the window is a minute: measured inside the first one"
    counts = fleet.requests()
    (count, _, _, _), = allowances(cfg.targets[0])
    assert count == BUDGET
    for base_url, n in counts.items():
        # a probe that logs in first books its extra requests after the fact (budget.py): at most
        # one probe's worth over the share
        assert BUDGET <= n <= BUDGET + 2, (base_url, n)


def test_killing_a_shard_fires_exporter_down_for_it_alone_and_a_restart_brings_its_targets_back(
        fleet: Fleet) -> None:
    cfg = load_config(fleet.config)
    victim = 1
    theirs = {t.name for t in shard_select(cfg, Shard(victim, SHARDS)).targets}
    wait_for(f"no {EXPORTER_DOWN} before", lambda: fleet.query(f'ALERTS{{alertname="{EXPORTER_DOWN}"}}') == [] or None)
    os.killpg(fleet.replicas[victim].pid, signal.SIGKILL)  # the replica and its timeout wrapper: a crash
    fleet.replicas[victim].wait(10)

    def firing() -> set[str] | None:
        got = {r["metric"].get("shard", "") for r in
               fleet.query(f'ALERTS{{alertname="{EXPORTER_DOWN}",alertstate="firing"}}')}
        return got or None

    assert wait_for(f"{EXPORTER_DOWN} to fire", firing) == {str(victim)}
    time.sleep(2)  # and it stays about that shard only, while the others keep being scraped
    assert firing() == {str(victim)}
    assert {r["metric"]["target"] for r in fleet.query("apistatus_up")} & theirs == set()
    fleet.start_replica(victim)
    wait_for("the restarted shard's targets to be back",
             lambda: {r["metric"]["target"] for r in fleet.query("apistatus_up")} >= theirs or None)
    wait_for(f"{EXPORTER_DOWN} to stop firing", lambda: firing() is None or None)
