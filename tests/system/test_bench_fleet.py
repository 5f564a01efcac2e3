"""The fleet benchmark's machinery, run short: every shard reports its figures and the Fleet section
of BENCHMARKS.md is replaced in place. No timing is asserted: the figures live in BENCHMARKS.md."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

from tests.conftest import ROOT


def test_a_short_fleet_run_reports_every_shard_and_keeps_the_rest_of_the_file(tmp_path: Path) -> None:
    out, js, work = tmp_path / "BENCHMARKS.md", tmp_path / "fleet.json", tmp_path / "work"
    work.mkdir()
    out.write_text("# Benchmarks\n\n## Scale\n\nkept as it is\n\n## Fleet\n\nold figures\n\n## Soak\n\nkept too\n")
    argv = [sys.executable, "-m", "bench.fleet", "--targets", "200", "--interval", "2", "--shards", "2",
            "--seconds", "2", "--scrape-every", "1", "--warmup", "3", "--out", str(out), "--json", str(js)]
    done = subprocess.run(argv, cwd=ROOT, capture_output=True, text=True, timeout=120,
                          env={**os.environ, "APISTATUS_BENCH_TMPDIR": str(work)})
    assert done.returncode == 0, done.stderr[-2000:]
    data = json.loads(js.read_text())
    shards = data["per_shard"]
    assert [s["index"] for s in shards] == [0, 1]
    assert sum(s["targets"] for s in shards) == 200 and all(s["targets"] > 0 for s in shards)
    for s in shards:
        assert s["planned"] == s["targets"] / 2 and s["achieved"] > 0, s
        assert s["startup_s"] > 0 and s["peak_rss_mb"] >= s["end_rss_mb"] > 0 and s["cpu_share"] > 0
        assert 0 < s["scrape_gzip_mb"] < s["scrape_mb"] and s["scrape_ms"] > 0
    text = out.read_text()
    assert text.count("## Fleet") == 1 and "old figures" not in text
    assert "kept as it is" in text and "kept too" in text and text.index("## Fleet") < text.index("## Soak")
    assert "200 targets at 2 s over 2 shards" in text and "load average" in text
    assert not list(work.iterdir()), "a work directory was not cleaned up"


def test_one_shard_alone_reports_that_shard_only(tmp_path: Path) -> None:
    js, work = tmp_path / "alone.json", tmp_path / "work"
    work.mkdir()
    before = (ROOT / "BENCHMARKS.md").read_text()
    argv = [sys.executable, "-m", "bench.fleet", "--targets", "150", "--interval", "2", "--shards", "3", "--only", "2",
            "--seconds", "1", "--scrape-every", "1", "--warmup", "3", "--json", str(js)]
    done = subprocess.run(argv, cwd=tmp_path, capture_output=True, text=True, timeout=120,
                          env={**os.environ, "APISTATUS_BENCH_TMPDIR": str(work), "PYTHONPATH": str(ROOT)})
    assert done.returncode == 0, done.stderr[-2000:]
    (shard,) = json.loads(js.read_text())["per_shard"]
    assert shard["index"] == 2 and 0 < shard["targets"] < 150 and shard["achieved"] > 0
    assert "only shard 2 running" in done.stdout
    assert (ROOT / "BENCHMARKS.md").read_text() == before  # a one-shard run writes no table unless asked
    bad = subprocess.run([*argv[:9], "--only", "3"], cwd=tmp_path, capture_output=True, text=True, timeout=60,
                         env={**os.environ, "PYTHONPATH": str(ROOT)})
    assert bad.returncode == 2 and "--only must be a shard index below --shards 3, got 3" in bad.stderr
