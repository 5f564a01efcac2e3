"""The command line attacked as issue 25 found it failing, each case a real ``python3 -m exporter``:
route prefixes a browser rewrites (a redirect loop), external URLs that crashed at start, vendor names
that forge lines or reach the terminal, a shard count that printed 200,000 lines, a catalog of a million
codes that took seconds and hundreds of MB to refuse."""

from __future__ import annotations

import asyncio
import contextlib
import os
import subprocess
import sys
from pathlib import Path

import aiohttp
import pytest
import yaml

from exporter.catalog import MAX_CODES
from tests.conftest import ROOT, free_port, spawn_exporter

TARGET = {"name": "a", "vendor": "flipsnack", "base_url": "http://127.0.0.1:9",
          "credentials": {"api_key": "k", "secret": "s"}}


def run(*args: str, timeout: float = 60) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "exporter", *args], capture_output=True, text=True, cwd=ROOT,
                          timeout=timeout, env={**os.environ, "PYTHONPATH": str(ROOT)})


def one_line_error(out: subprocess.CompletedProcess[str]) -> str:
    assert out.returncode == 2, out
    assert "Traceback" not in out.stderr
    lines = out.stderr.splitlines()
    assert len(lines) == 1, out.stderr
    assert out.stdout == ""
    return lines[0]


@pytest.fixture
def config(tmp_path: Path) -> Path:
    path = tmp_path / "config.yml"
    path.write_text(yaml.safe_dump({"global": {"interval": "1h"}, "targets": [TARGET]}))
    return path


@pytest.mark.parametrize(("flag", "value", "said"), [
    ("--web.route-prefix", "../", "must be a plain path like /apistatus (no '.' or '..' segments"),
    ("--web.route-prefix", "/./", "no '.' or '..' segments"),
    ("--web.route-prefix", "/a/../b", "no '.' or '..' segments"),
    ("--web.route-prefix", "/a\\b", "must be a plain path"),
    ("--web.route-prefix", "/a\u00a0b", "must be a plain path"),
    ("--web.external-url", "http://evil//x/", "its path must be a plain path"),  # would redirect to //x/
    ("--web.external-url", "http://example.com/my%20app/", "its path must be a plain path"),
    ("--web.external-url", "http://example.com/a/./", "its path must be a plain path"),
    ("--web.external-url", "http://example.com:99999/", "must be an http(s) URL"),
    ("--web.external-url", "http://[::1/", "must be an http(s) URL"),
    ("--web.external-url", "http://user:pw@example.com/", "must be an http(s) URL"),
    ("--web.external-url", "http://example.com/\x1b[31mred", "must be an http(s) URL"),
    ("--web.max-connections", "-5", "must be a whole number from 0"),
    ("--web.max-connections", "lots", "must be a whole number from 0"),
    ("--web.idle-timeout", "0s", "must be a duration"),
    ("--log.level", "verbose", "invalid choice"),
])
def test_each_bad_flag_is_one_line_naming_the_flag(config: Path, flag: str, value: str, said: str) -> None:
    line = one_line_error(run("--config.file", str(config), f"{flag}={value}"))
    assert line.startswith(f"apistatus-exporter: error: argument {flag}") and said in line, line
    assert "\x1b" not in line


@pytest.mark.parametrize("prefix", ["/.well-known", "/a..b/c.", "/-/_~"])
async def test_no_prefix_that_is_accepted_redirects_in_a_loop(config: Path, prefix: str) -> None:
    port = free_port()
    async with spawn_exporter("--config", str(config), "--listen", f"127.0.0.1:{port}",
                              "--web.route-prefix", prefix) as (_proc, _lines), aiohttp.ClientSession() as s:
        for _ in range(400):  # bounded: start-up
            with contextlib.suppress(aiohttp.ClientError):
                async with s.get(f"http://127.0.0.1:{port}{prefix}/-/ready") as r:
                    if r.status == 200:
                        break
            await asyncio.sleep(0.05)
        for start in ("/", prefix):
            async with s.get(f"http://127.0.0.1:{port}{start}", max_redirects=3) as r:
                assert r.status == 200, (start, r.status)
                assert str(r.url) == f"http://127.0.0.1:{port}{prefix}/"
                assert len(r.history) <= 1


def test_config_example_echoes_unknown_names_escaped_and_bounded() -> None:
    out = run("config", "example", "stripe", "evil\nerror: forged line", "\x1b]0;title\x07", "bell\x07")
    assert out.returncode == 2 and out.stdout == ""
    lines = out.stderr.splitlines()
    assert len(lines) == 1, out.stderr
    assert "\x1b" not in out.stderr and "\x07" not in out.stderr
    assert "evil\\x0aerror: forged line" in lines[0] and "\\x1b]0;title\\x07" in lines[0] and "bell\\x07" in lines[0]
    many = run("config", "example", *[f"vendor{i}" for i in range(10_000)])
    assert many.returncode == 2
    assert len(many.stderr.splitlines()) == 1 and len(many.stderr) < 1000, len(many.stderr)
    assert "vendor0, vendor1, vendor2, vendor3, vendor4 and 9995 more" in many.stderr
    assert "x" * 64 + "..." in run("config", "example", "x" * 100_000).stderr


def test_config_check_output_stays_short_whatever_the_shard_count(tmp_path: Path) -> None:
    path = tmp_path / "config.yml"
    path.write_text(yaml.safe_dump({"targets": [
        {**TARGET, "name": f"t{i}", "credentials": {"api_key": f"k{i}", "secret": "s"}} for i in range(100)]}))
    out = run("--config.file", str(path), "--config.check", "--shard=0/100000")
    assert out.returncode == 0, out.stderr
    lines = out.stdout.splitlines() + out.stderr.splitlines()
    assert len(lines) < 40, len(lines)
    assert any(line.startswith("shard 0/100000: ") and line.endswith("<- this replica") for line in lines)
    assert "99900 of 100000 shards get no targets" in out.stdout  # the summary line for the empty ones
    assert "... 80 more shards with targets (the 20 busiest are listed)" in out.stdout
    assert sum("gets no targets" in line or "get no targets" in line for line in out.stderr.splitlines()) == 1


def test_a_catalog_with_more_codes_than_the_cap_is_refused_at_once(tmp_path: Path) -> None:
    catalog = yaml.safe_load((ROOT / "exporter" / "catalogs" / "flipsnack.yaml").read_text())
    base = {k: v for k, v in catalog.items() if k != "codes"}
    base["vendor"] = "huge"
    text = yaml.safe_dump(base) + "codes:\n" + "".join(f"  '{i}': {{class: ok}}\n" for i in range(1_000_000))
    (tmp_path / "huge.yml").write_text(text)
    cfg = tmp_path / "config.yml"
    cfg.write_text(yaml.safe_dump({"catalog_files": ["huge.yml"], "targets": [{**TARGET, "vendor": "huge"}]}))
    out = run("--config.file", str(cfg), "--config.check", timeout=20)
    assert out.returncode == 1
    assert f"huge.yml: is larger than 1 MiB: a catalog holds at most {MAX_CODES:,} codes" in out.stderr, out.stderr
    # under the file cap, the count itself is checked, before any code is parsed
    small = yaml.safe_dump(base) + "codes:\n" + "".join(f"  '{i}': {{class: ok}}\n" for i in range(MAX_CODES + 1))
    (tmp_path / "huge.yml").write_text(small)
    out = run("--config.file", str(cfg), "--config.check", timeout=20)
    assert out.returncode == 1
    assert f"codes: has {MAX_CODES + 1:,} codes; a catalog holds at most {MAX_CODES:,}" in out.stderr, out.stderr
