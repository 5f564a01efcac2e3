"""A replica started with --shard (or APISTATUS_SHARD) runs only its own targets, and keeps doing so
across reloads; /probe refuses the other shards' targets, since their budgets are another replica's."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from exporter.config import load_config
from exporter.shard import Shard, select
from tests.conftest import ROOT, free_port, sample
from tests.system.test_prometheus_e2e import http, wait_for


def write(path: Path, n: int) -> None:
    # nothing listens on port 9: every probe is a quick network error, which is all this test needs
    path.write_text(yaml.safe_dump({"global": {"interval": "30s", "timeout": "1s"}, "targets": [
        {"name": f"t{i:03d}", "vendor": "flipsnack", "base_url": "http://127.0.0.1:9/v1",
         "credentials": {"api_key": f"key-{i // 2}", "secret": "s"}} for i in range(n)]}))


class Replica:
    def __init__(self, config: Path, args: list[str], env: dict[str, str]) -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "exporter", "--config", str(config), "--listen", f"127.0.0.1:{self.port}",
             "--log-level", "warning", *args], cwd=ROOT, env={**os.environ, "PYTHONPATH": str(ROOT), **env},
            stderr=subprocess.PIPE, stdout=subprocess.DEVNULL, start_new_session=True)
        wait_for("the replica to be ready", lambda: self.proc.poll() is None and http(self.url + "/-/ready")[0] == 200)

    def metrics(self) -> str:
        status, body = http(self.url + "/metrics")
        assert status == 200
        return body.decode()

    def exported(self) -> set[str] | None:
        text = self.metrics()
        names = {line.split('target="')[1].split('"')[0] for line in text.splitlines()
                 if line.startswith("apistatus_up{")}
        return names if len(names) == sample(text, "apistatus_targets") else None

    def close(self) -> None:
        if self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGTERM)
        self.proc.wait(10)
        assert self.proc.stderr is not None
        self.proc.stderr.close()


@pytest.fixture
def replica(tmp_path: Path) -> Iterator[Any]:
    started: list[Replica] = []

    def start(config: Path, *args: str, **env: str) -> Replica:
        r = Replica(config, list(args), env)
        started.append(r)
        return r

    yield start
    for r in started:
        r.close()


def own(config: Path, shard: Shard) -> set[str]:
    return {t.name for t in select(load_config(config), shard).targets}


def test_a_replica_runs_its_shard_and_keeps_to_it_on_reload(tmp_path: Path, replica: Any) -> None:
    config = tmp_path / "fleet.yml"
    write(config, 40)
    r = replica(config, "--shard", "1/3")
    mine = wait_for("the shard's targets to be probed", r.exported)
    assert mine == own(config, Shard(1, 3)) and 0 < len(mine) < 40
    assert sample(r.metrics(), "apistatus_shard_info", index="1", count="3") == 1
    write(config, 80)  # forty more targets: the reload keeps only this shard's share of them
    status, body = http(r.url + "/-/reload", b"")
    assert status == 200, body
    grown = own(config, Shard(1, 3))
    assert grown > mine
    wait_for("the reloaded shard's targets to be probed", lambda: r.exported() == grown)
    r.proc.send_signal(signal.SIGHUP)  # the other reload path: same filter
    wait_for("the replica to be probing after SIGHUP", lambda: r.exported() == grown)


def test_the_environment_sets_the_shard_and_a_bad_one_stops_the_start(tmp_path: Path, replica: Any) -> None:
    config = tmp_path / "fleet.yml"
    write(config, 30)
    r = replica(config, APISTATUS_SHARD="0/2")
    assert wait_for("the shard's targets to be probed", r.exported) == own(config, Shard(0, 2))
    bad = subprocess.run([sys.executable, "-m", "exporter", "--config", str(config), "--listen", "127.0.0.1:0"],
                         cwd=ROOT, env={**os.environ, "PYTHONPATH": str(ROOT), "APISTATUS_SHARD": "2/2"},
                         capture_output=True, text=True, timeout=30)
    assert bad.returncode == 2
    assert bad.stderr.strip() == "error: APISTATUS_SHARD: expected I/N with 0 <= I < N (e.g. 0/3), got '2/2'"


def test_probe_only_answers_for_the_replicas_own_targets(tmp_path: Path, replica: Any) -> None:
    config = tmp_path / "fleet.yml"
    write(config, 30)
    r = replica(config, "--shard", "0/2")
    mine, theirs = own(config, Shard(0, 2)), own(config, Shard(1, 2))
    status, _ = http(r.url + f"/probe?target={sorted(mine)[0]}")
    assert status == 200
    status, body = http(r.url + f"/probe?target={sorted(theirs)[0]}")
    assert status == 400, body
