"""The benchmark machinery, run short (``python3 -m bench all --quick``), and the keepalive switch
it compares. No timing is asserted here: performance figures live in BENCHMARKS.md."""

from __future__ import annotations

import json
import math
import os
import subprocess
import sys
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from aiohttp import web

from exporter.clock import FakeClock
from exporter.config import ConfigError
from exporter.scheduler import COALESCE

from ..conftest import ROOT, config_from, serve


def test_quick_bench_run_produces_every_figure(tmp_path: Path) -> None:
    # nginx and blackbox_exporter are real dependencies of the bench: missing ones fail this test
    out, js = tmp_path / "BENCHMARKS.md", tmp_path / "bench.json"
    work = tmp_path / "work"
    work.mkdir()
    done = subprocess.run([sys.executable, "-m", "bench", "all", "--quick", "--out", str(out), "--json", str(js)],
                          cwd=ROOT, capture_output=True, text=True, timeout=120,
                          env={**os.environ, "APISTATUS_BENCH_TMPDIR": str(work)})
    assert done.returncode == 0, done.stderr[-2000:]
    data = json.loads(js.read_text())

    subjects = {r["subject"]: r for r in data["cpu"]}
    assert set(subjects) == {"exporter (defaults)", "exporter (keepalive: false)", "blackbox_exporter",
                             "wrk (keep-alive)", "wrk (new connection each)"}
    for r in subjects.values():
        # every probe of the window answered, by the exporter and by blackbox alike, and cost some CPU
        assert r["probes"] > 0 and r["ok_share"] == 1.0, r
        assert r["cpu"] > 0, r

    scale = data["scale"]
    assert scale["targets"] == 200 and scale["probes"] > 0 and scale["ok_share"] == 1.0
    # probes due within the coalescing slack of a wake-up start with it, a little early
    assert -COALESCE <= scale["lag_p50"] <= scale["lag_p99"] and math.isfinite(scale["lag_mean"])
    assert scale["peak_rss_mb"] >= scale["end_rss_mb"] > 0 and scale["scrapes"] >= 1

    (scrape,) = data["scrape"]
    # 20 targets, each with the same families: the baseline was built from exactly the served series
    assert scrape["targets"] == 20 and scrape["series"] > 20 * 16
    assert 0 < scrape["bytes_gzip"] < scrape["bytes_plain"]
    assert scrape["plain_ms"] > 0 and scrape["baseline_ms"] > 0

    floor, startup = data["startup"]
    assert startup["targets"] == 5 and len(startup["runs"]) == 1 and startup["runs"][0] > 0
    assert floor["targets"] == 0 and len(floor["runs"]) == 1 and floor["runs"][0] > 0

    memory = data["memory"]
    assert [d["case"] for d in memory["deep"]] == ["same answer", "5% failures", "every body differs"]
    # the RSS samples cover the ring filling up: the probes done grow to at least a full ring
    assert memory["samples"] and memory["samples"][-1][2] >= memory["targets"] * memory["history"]

    text = out.read_text()
    for heading in ("## CPU per probe", "## Scale", "## Scrape cost", "## Start-up", "## Memory", "## Soak"):
        assert heading in text
    assert "python3 -m bench all --quick" in text
    # no process the bench started is left behind: each one's command line names its work directory
    assert not list(work.iterdir()), "a work directory was not cleaned up"
    left = subprocess.run(["pgrep", "-f", str(work)], capture_output=True, text=True)
    assert left.stdout == "", f"processes left running: {left.stdout}"


def test_report_keeps_hand_written_sections(tmp_path: Path) -> None:
    from bench.report import Run, write

    path = tmp_path / "BENCHMARKS.md"
    path.write_text("# Benchmarks\n\nold table\n\n## Notes\n\nwhy the gap.\n\n## Soak\n\n| minute |\n| 1 |\n")
    write(path, Run("python3 -m bench cpu", "2026-01-01 00:00", False))
    text = path.read_text()
    assert "old table" not in text
    assert "## Notes\n\nwhy the gap." in text and "## Soak\n\n| minute |\n| 1 |" in text


@pytest.fixture
async def peer_ports() -> AsyncIterator[tuple[str, list[int]]]:
    """A loopback server that records the client port of every request (one port per connection)."""
    ports: list[int] = []

    async def handle(request: web.Request) -> web.Response:
        assert request.transport is not None
        ports.append(request.transport.get_extra_info("peername")[1])
        return web.json_response({"code": 20, "data": {"api_uploads_left": 900}})

    async with serve(handle) as url:
        yield url, ports


@pytest.mark.parametrize(("keepalive", "connections"), [(None, 1), (True, 1), (False, 3)])
async def test_keepalive_switch_decides_connection_reuse(peer_ports: tuple[str, list[int]],
                                                         keepalive: bool | None, connections: int) -> None:
    from exporter.app import Exporter

    url, ports = peer_ports
    glob: dict[str, object] = {"interval": "1h"}
    if keepalive is not None:
        glob["keepalive"] = keepalive
    config = config_from({"global": glob, "targets": [
        {"name": "a", "vendor": "flipsnack", "base_url": url, "credentials": {"api_key": "k", "secret": "s"}}]})
    assert config.global_.keepalive is (keepalive is not False)
    exp = Exporter(config, clock=FakeClock())  # a clock that never moves: no scheduled probe interferes
    await exp.start()
    try:
        assert exp.scheduler is not None
        for _ in range(3):  # the probe path itself: /probe would answer the second and third from cache
            done = await exp.scheduler.probe_once(config.targets[0])
            assert done.outcome.cls == "ok"
    finally:
        await exp.close()
    assert len(ports) == 3 and len(set(ports)) == connections


def test_keepalive_must_be_a_boolean() -> None:
    with pytest.raises(ConfigError) as err:
        config_from({"global": {"keepalive": "sometimes"}, "targets": []})
    assert "global.keepalive" in str(err.value) and "sometimes" in str(err.value)
