"""The command line as a user meets it (issue 14), each case a real ``python3 -m exporter`` process:
flags in Prometheus style and their old aliases, --help, the explicit demo, the one-line refusal
without a config, ``config example``, ``--config.check`` listing every problem, ``probe``, the logs,
``apistatus_build_info`` and serving under a route prefix. Everything on 127.0.0.1."""

from __future__ import annotations

import asyncio
import json
import re
import signal
import subprocess
import sys
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from html.parser import HTMLParser
from pathlib import Path
from urllib.parse import urljoin

import aiohttp
import pytest
import yaml

from exporter.__main__ import DEFAULT_PORT, build_parser, listen_addresses
from exporter.catalog import builtin_raw
from exporter.simulators import SimulatorSet, start_simulators

from ..conftest import ROOT, free_port, sample

VENDORS = sorted(builtin_raw())
TS = re.compile(r"^ts=\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z level=(debug|info|warn|error) msg=")


def run(*args: str, env: dict[str, str] | None = None, timeout: float = 60) -> subprocess.CompletedProcess[str]:
    import os

    return subprocess.run([sys.executable, "-m", "exporter", *args], capture_output=True, text=True, cwd=ROOT,
                          timeout=timeout, env={**os.environ, **(env or {})})


@asynccontextmanager
async def serving(*args: str, ready: str = "/-/ready", base: str | None = None,
                  env: dict[str, str] | None = None) -> AsyncIterator[tuple[str, aiohttp.ClientSession, list[str]]]:
    """The exporter as a process, until it answers ``ready``; yields (url, session, stderr lines so far)."""
    import os

    port = free_port()
    argv = [a.replace("PORT", str(port)) for a in args]
    proc = await asyncio.create_subprocess_exec(sys.executable, "-m", "exporter", *argv, cwd=ROOT,
                                                stdout=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.PIPE,
                                                env={**os.environ, **(env or {})})
    url = base.replace("PORT", str(port)) if base else f"http://127.0.0.1:{port}"
    lines: list[str] = []

    async def read() -> None:
        assert proc.stderr is not None
        async for raw in proc.stderr:
            lines.append(raw.decode().rstrip("\n"))

    reader = asyncio.create_task(read())
    try:
        async with aiohttp.ClientSession() as session:
            for _ in range(400):  # bounded: start-up
                await asyncio.sleep(0.05)
                try:
                    async with session.get(url + ready) as r:
                        if r.status == 200:
                            break
                except aiohttp.ClientConnectionError:
                    continue
            else:
                pytest.fail("exporter did not become ready: " + "\n".join(lines))
            yield url, session, lines
        proc.send_signal(signal.SIGTERM)
        assert await asyncio.wait_for(proc.wait(), 30) == 0
        await asyncio.wait_for(reader, 10)
        assert not any("Traceback" in line for line in lines), lines
    finally:
        if proc.returncode is None:
            proc.kill()
            await proc.wait()
        reader.cancel()


@pytest.fixture
async def sims() -> AsyncIterator[SimulatorSet]:
    started = await start_simulators()
    try:
        yield started
    finally:
        await started.close()


def write_config(tmp_path: Path, sims: SimulatorSet, interval: str = "60s") -> Path:
    path = tmp_path / "config.yml"
    path.write_text(yaml.safe_dump(sims.targets_config(interval)))
    return path


# --- --help and flags ------------------------------------------------------------------------------

def test_help_is_clean_text_and_lists_every_flag_alias_and_subcommand() -> None:
    out = run("--help")
    assert out.returncode == 0
    text = out.stdout
    assert "`" not in text and "``" not in text
    for flag in ("--config.file", "--config.check", "--web.listen-address", "--web.config.file",
                 "--web.external-url", "--web.route-prefix", "--log.level", "--log.format",
                 "--config", "--check-config", "--listen", "--log-level", "--log-format", "--shard"):
        assert re.search(rf"(^|[\s,]){re.escape(flag)}\b", text), flag
    for sub in ("demo", "simulate", "config example VENDOR", "probe --config.file PATH NAME"):
        assert sub in text, sub


def test_without_a_config_the_exporter_exits_with_one_line_naming_the_flag_and_demo() -> None:
    out = run()
    assert out.returncode == 1
    lines = out.stderr.strip().splitlines()
    assert len(lines) == 1 and "--config.file" in lines[0] and "demo" in lines[0], out.stderr
    assert out.stdout == ""


def test_the_demo_listens_on_loopback_unless_told_otherwise_and_the_exporter_on_all_interfaces() -> None:
    assert listen_addresses(build_parser(demo=True).parse_args([])) == [("127.0.0.1", DEFAULT_PORT)]
    assert listen_addresses(build_parser().parse_args(["--config.file", "x"])) == [("0.0.0.0", DEFAULT_PORT)]
    args = build_parser().parse_args(["--web.listen-address", ":9100", "--listen", "127.0.0.1:9101"])
    assert listen_addresses(args) == [("0.0.0.0", 9100), ("127.0.0.1", 9101)]
    refused = run("demo", "--config.file", "x.yml")  # the demo never runs a config: a mistake, said so
    assert refused.returncode == 2 and "--config.file" in refused.stderr


def test_bad_flag_values_are_one_line_errors() -> None:
    for args in (["--web.listen-address", "9798"], ["--log.level", "verbose"], ["--log.format", "xml"],
                 ["--web.route-prefix", "/a?b"], ["--web.external-url", "ftp://x/"]):
        out = run(*args)
        assert out.returncode == 2, args
        assert "Traceback" not in out.stderr and out.stderr.strip().splitlines()[-1].startswith("apistatus-exporter")


async def test_the_demo_shows_its_banner_on_the_console_and_the_status_page() -> None:
    async with serving("demo", "--web.listen-address", "127.0.0.1:PORT") as (url, session, lines):
        async with session.get(url + "/") as r:
            page = await r.text()
        async with session.get(url + "/targets/slack") as r:
            target_page = await r.text()
    assert "demo-banner" in page and "DEMO" in page and "demo-banner" in target_page
    assert any(TS.match(line) and "level=warn" in line and "DEMO" in line for line in lines), lines


async def test_new_flags_and_old_aliases_serve_alike(tmp_path: Path, sims: SimulatorSet) -> None:
    config = write_config(tmp_path, sims)
    second = free_port()
    new = ("--config.file", str(config), "--web.listen-address", "127.0.0.1:PORT", "--web.listen-address",
           f"127.0.0.1:{second}", "--log.level", "warn", "--log.format", "logfmt")
    async with serving(*new) as (url, session, lines):
        for base in (url, f"http://127.0.0.1:{second}"):  # repeatable: both addresses answer
            async with session.get(base + "/metrics") as r:
                assert r.status == 200 and "apistatus_targets 10" in await r.text()
    assert not any("level=info" in line for line in lines), lines  # warn hides info
    old = ("--config", str(config), "--listen", "127.0.0.1:PORT", "--log-level", "warning", "--log-format", "text")
    async with serving(*old) as (url, session, lines), session.get(url + "/metrics") as r:
        assert r.status == 200
    assert all(TS.match(line) for line in lines if line), lines  # text is logfmt now


# --- logs -------------------------------------------------------------------------------------------

async def test_logfmt_says_once_when_a_class_changes_and_debug_adds_a_line_per_probe(
        tmp_path: Path, sims: SimulatorSet) -> None:
    raw = sims.targets_config("1s")
    raw["targets"] = [t for t in raw["targets"] if t["vendor"] == "slack"]
    secret = raw["targets"][0]["credentials"]["token"]
    config = tmp_path / "config.yml"
    config.write_text(yaml.safe_dump(raw))

    async def probes(level: str, rotate: bool) -> list[str]:
        async with serving("--config.file", str(config), "--web.listen-address", "127.0.0.1:PORT",
                           "--log.level", level) as (url, session, lines):
            for _ in range(200):  # bounded: until three probes were made
                await asyncio.sleep(0.05)
                async with session.get(url + "/metrics") as r:
                    count = sample(await r.text(), "apistatus_probe_duration_seconds_count", target="slack") or 0
                if count >= 3:
                    break
            if rotate:
                await sims.control("slack", revoked=True)
                for _ in range(200):
                    await asyncio.sleep(0.05)
                    if any("class changed" in line for line in lines):
                        break
                await sims.control("slack", revoked=False)
        return lines

    lines = await probes("info", rotate=True)
    changes = [line for line in lines if "class changed" in line]
    assert all(TS.match(line) for line in lines if line), lines
    assert len(changes) == 1, lines  # ok -> auth once, not one per probe; a healthy start says nothing
    assert "target=slack" in changes[0] and "vendor=slack" in changes[0] and "code=" in changes[0]
    assert "old=ok" in changes[0] and "new=auth" in changes[0] and "ok -> auth" in changes[0]
    assert not any("level=debug" in line for line in lines)
    debug = await probes("debug", rotate=False)
    assert sum("msg=\"probe: ok" in line and "target=slack" in line for line in debug) >= 3, debug
    assert secret not in "\n".join(lines + debug)


async def test_json_logs_are_one_object_a_line_and_a_target_that_starts_down_says_so(tmp_path: Path,
                                                                                    sims: SimulatorSet) -> None:
    config = write_config(tmp_path, sims)
    await sims.control("flipsnack", maintenance=True)
    async with serving("--config.file", str(config), "--web.listen-address", "127.0.0.1:PORT",
                       "--log.format", "json") as (url, session, lines):
        for _ in range(400):  # bounded: until flipsnack's first result is in
            async with session.get(url + "/metrics") as r:
                if sample(await r.text(), "apistatus_up", target="flipsnack") is not None:
                    break
            await asyncio.sleep(0.05)
    docs = [json.loads(line) for line in lines if line]
    assert docs and all(re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z", d["ts"]) for d in docs)
    assert {d["level"] for d in docs} <= {"debug", "info", "warn", "error"}
    changes = [d for d in docs if d["msg"].startswith("class changed")]
    # the target that starts in maintenance gets a line; the healthy ones start without one
    assert [(d["target"], d["vendor"], d["old"], d["new"], d["level"]) for d in changes] == [
        ("flipsnack", "flipsnack", "none", "maintenance", "info")], docs


# --- config example and --config.check ---------------------------------------------------------------

@pytest.mark.parametrize("vendor", VENDORS)
def test_config_example_passes_the_check_once_its_variables_are_set(tmp_path: Path, vendor: str) -> None:
    out = run("config", "example", vendor)
    assert out.returncode == 0, out.stderr
    text = out.stdout
    assert text.startswith("#") and f"vendor: {vendor}" in text
    for cred in builtin_raw()[vendor].value["credentials"]:
        assert re.search(rf"^\s+{cred}: \"\$\{{[A-Z0-9_]+\}}\"", text, re.M), cred
    path = tmp_path / "config.yml"
    path.write_text(text)
    unset = run("--config.file", str(path), "--config.check")
    assert unset.returncode == 1 and "is not set" in unset.stderr
    names = set(re.findall(r"\$\{([A-Z0-9_]+)\}", text.replace("# ", "")))
    env = {n: ("/monitoring/check" if n.endswith("_PATH") else "x1") for n in names}
    ok = run("--config.file", str(path), "--config.check", env=env)
    assert ok.returncode == 0, ok.stderr
    assert "OK, 1 target, vendors: " in ok.stdout


def test_config_example_takes_several_vendors_and_refuses_an_unknown_one_in_one_line() -> None:
    out = run("config", "example", "slack", "stripe", "slack")
    assert out.returncode == 0 and out.stdout.count("vendor: slack") == 1 and "vendor: stripe" in out.stdout
    bad = run("config", "example", "slack", "nosuchvendor")
    assert bad.returncode == 2 and bad.stdout == ""
    assert bad.stderr.count("\n") == 1 and "nosuchvendor" in bad.stderr and "slack" in bad.stderr


def test_config_check_lists_every_problem_one_line_each(tmp_path: Path) -> None:
    path = tmp_path / "config.yml"
    path.write_text(yaml.safe_dump({"targets": [
        {"name": "a", "vendor": "slack", "base_url": "https://slack.example/api", "credentials": {"token": "t"}},
        {"name": "b", "vendor": "nosuch", "base_url": "https://x.example"},
        {"name": "c", "vendor": "slack", "base_url": "https://slack.example/api"},
        {"name": "d", "vendor": "stripe", "base_url": "https://s.example", "credentials": {"secret_key": "k"},
         "interval": "fast"},
        {"name": "a", "vendor": "slack", "base_url": "https://slack.example/api", "credentials": {"token": "t"}},
    ]}))
    out = run("--config.file", str(path), "--config.check")
    assert out.returncode == 1
    errors = out.stderr.strip().splitlines()
    assert len(errors) == 4, errors
    for i, what in ((1, "unknown vendor"), (2, "needs credential token"), (3, "interval"), (4, "duplicate")):
        assert any(f"targets[{i}]" in e and what in e for e in errors), (i, errors)
    assert all(e.startswith("error: ") and str(path) in e for e in errors)


def test_config_check_finds_problems_far_apart_and_stops_at_a_hundred(tmp_path: Path) -> None:
    good = {"vendor": "slack", "base_url": "https://slack.example/api", "credentials": {"token": "t"}}
    targets = [{"name": f"t{i}", **good} for i in range(600)]
    targets[450]["name"] = "t3"  # a duplicate far from the first
    targets[590]["vendor"] = "nosuch"
    path = tmp_path / "config.yml"
    path.write_text(yaml.safe_dump({"global": {"interval": "never"}, "targets": targets}))
    errors = run("--config.file", str(path), "--config.check").stderr.strip().splitlines()
    assert len(errors) == 3, errors
    assert "global.interval" in errors[0] and "targets[590].vendor" in errors[1] and "targets[450].name" in errors[2]
    path.write_text(yaml.safe_dump({"targets": [{"name": f"t{i}", "vendor": "nosuch", "base_url": "https://x.example"}
                                                for i in range(150)]}))
    errors = run("--config.file", str(path), "--config.check").stderr.strip().splitlines()
    assert len(errors) == 101 and errors[-1].endswith("stopped after 100 problems") and "targets[99]" in errors[-2]


def test_config_check_includes_the_web_config(tmp_path: Path) -> None:
    cfg = tmp_path / "config.yml"
    cfg.write_text(yaml.safe_dump({"targets": [
        {"name": "a", "vendor": "slack", "base_url": "https://slack.example/api", "credentials": {"token": "t"}}]}))
    web = tmp_path / "web.yml"
    web.write_text("basic_auth_users: {alice: not-a-bcrypt-hash}\n")
    out = run("--config.file", str(cfg), "--config.check", "--web.config.file", str(web))
    assert out.returncode == 1 and str(web) in out.stderr and len(out.stderr.strip().splitlines()) == 1
    web.write_text("{}\n")
    assert run("--config.file", str(cfg), "--config.check", "--web.config.file", str(web)).returncode == 0


# --- probe --------------------------------------------------------------------------------------------

async def probe_cli(*args: str) -> tuple[int, str, str]:
    proc = await asyncio.create_subprocess_exec(sys.executable, "-m", "exporter", "probe", *args, cwd=ROOT,
                                                stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE)
    out, err = await asyncio.wait_for(proc.communicate(), 60)
    assert proc.returncode is not None
    return proc.returncode, out.decode(), err.decode()


async def test_probe_prints_what_the_exporter_makes_of_one_answer(tmp_path: Path, sims: SimulatorSet) -> None:
    config = write_config(tmp_path, sims)
    secrets = [v for creds in sims.credentials.values() for v in creds.values() if len(v) > 6]
    code, out, err = await probe_cli("--config.file", str(config), "github")
    assert code == 0, err
    for key in ("class:", "code:", "message:", "http status:", "duration:", "quotas:", "retry-after:",
                "clock skew:", "request:"):
        assert re.search(rf"^{key}\s+\S", out, re.M), (key, out)
    assert re.search(r"^class:\s+ok \(up\)", out, re.M) and "GET http://127.0.0.1" in out
    assert re.search(r"^quotas:\s+core \d+/\d+ left", out, re.M), out
    code, out, err = await probe_cli("--config", str(config), "--json", "bannersnack")
    doc = json.loads(out)
    assert code == 0 and doc["class"] == "ok" and doc["http_status"] == 200 and doc["up"] is True
    assert {"code", "message", "duration_seconds", "quotas", "retry_after_seconds", "clock_skew_seconds",
            "request", "phases"} <= set(doc)
    assert list(doc["phases"]) == ["resolve", "connect", "tls", "processing", "transfer"]
    assert doc["phases"]["connect"] > 0 and doc["phases"]["tls"] == 0  # a new plain-HTTP connection
    assert "signature=" in doc["request"] and not any(s in out for s in secrets)
    await sims.control("flipsnack", maintenance=True)
    code, out, _ = await probe_cli("--config.file", str(config), "--json", "flipsnack")
    assert code == 1 and json.loads(out)["class"] == "maintenance"
    code, out, err = await probe_cli("--config.file", str(config), "nosuch")
    assert code == 2 and out == "" and err.count("\n") == 1 and "nosuch" in err


# --- build info and the route prefix -----------------------------------------------------------------

async def test_build_info_carries_version_revision_and_python_version(tmp_path: Path, sims: SimulatorSet) -> None:
    config = write_config(tmp_path, sims)
    async with serving("--config.file", str(config), "--web.listen-address", "127.0.0.1:PORT",
                       env={"APISTATUS_REVISION": "0123abc"}) as (url, session, _), session.get(url + "/metrics") as r:
        text = await r.text()
    from exporter import __version__

    assert sample(text, "apistatus_build_info", version=__version__, revision="0123abc",
                  pythonversion="{}.{}.{}".format(*sys.version_info[:3])) == 1


class _Links(HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.links: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        href = dict(attrs).get("href")
        if tag == "a" and href and not href.startswith(("http", "data:")):
            self.links.append(href)


async def crawl(session: aiohttp.ClientSession, start: str, must_start: str) -> set[str]:
    """Every page and link reachable from ``start``, each answering 200 under ``must_start``."""
    seen: set[str] = set()
    todo = [start]
    while todo and len(seen) < 50:  # bounded
        url = todo.pop()
        if url in seen:
            continue
        seen.add(url)
        assert url.startswith(must_start), url
        async with session.get(url) as r:
            assert r.status == 200, url
            body = await r.text()
        if r.content_type == "text/html":
            parser = _Links()
            parser.feed(body)
            todo += [urljoin(url, link).split("?")[0] for link in parser.links]
    return seen


async def check_prefixed(session: aiohttp.ClientSession, root: str, prefix: str, root_redirects: bool = True) -> None:
    pages = await crawl(session, f"{root}{prefix}/", f"{root}{prefix}/")
    assert {f"{root}{prefix}/metrics", f"{root}{prefix}/api/v1/targets", f"{root}{prefix}/targets/github"} <= pages
    for path in ("/-/healthy", "/-/ready", "/probe?target=github", "/api/v1/targets/github"):
        async with session.get(f"{root}{prefix}{path}") as r:
            assert r.status == 200, path
    async with session.post(f"{root}{prefix}/-/reload") as r:
        assert r.status == 200
    for path in ("/", prefix) if root_redirects else (prefix,):
        async with session.get(root + path, allow_redirects=False) as r:
            assert r.status == 302 and r.headers["Location"] == f"{prefix}/", path


async def test_every_endpoint_link_and_page_works_under_the_route_prefix(tmp_path: Path,
                                                                         sims: SimulatorSet) -> None:
    config = write_config(tmp_path, sims)
    async with serving("--config.file", str(config), "--web.listen-address", "127.0.0.1:PORT",
                       "--web.route-prefix", "/tools/apistatus/", ready="/tools/apistatus/-/ready") as (url, s, lines):
        await check_prefixed(s, url, "/tools/apistatus")
        async with s.get(url + "/metrics") as r:
            assert r.status == 404  # only under the prefix
    assert any("metrics at http://127.0.0.1:" in line and "/tools/apistatus/metrics" in line for line in lines)


async def test_the_external_urls_path_is_the_default_route_prefix(tmp_path: Path, sims: SimulatorSet) -> None:
    config = write_config(tmp_path, sims)
    async with serving("--config.file", str(config), "--web.listen-address", "127.0.0.1:PORT",
                       "--web.external-url", "https://monitoring.example/apistatus/",
                       ready="/apistatus/-/ready") as (url, s, lines):
        await check_prefixed(s, url, "/apistatus")
    assert any("metrics at https://monitoring.example/apistatus/metrics" in line for line in lines), lines



# --- the container's health check follows the flags -----------------------------------------------------

def test_the_health_check_url_follows_the_listen_address_prefix_and_tls(tmp_path: Path) -> None:
    from exporter.healthcheck import health_url

    assert health_url(["--config.file", "c.yml"]) == (f"http://127.0.0.1:{DEFAULT_PORT}/-/healthy", False)
    assert health_url(["--config", "c.yml", "--listen", ":9100", "--web.route-prefix", "/a/"]) == (
        "http://127.0.0.1:9100/a/-/healthy", False)
    assert health_url(["--web.external-url", "https://x.example/p/", "--web.listen-address", "[::1]:9101"]) == (
        "http://[::1]:9101/p/-/healthy", False)
    assert health_url(["demo"])[0] == f"http://127.0.0.1:{DEFAULT_PORT}/-/healthy"
    certs = tmp_path / "web.yml"
    certs.write_text("tls_server_config: {cert_file: c.pem, key_file: k.pem}\n")
    assert health_url(["--web.config.file", str(certs), "--listen", ":9102"]) == (
        "https://127.0.0.1:9102/-/healthy", True)


async def test_the_health_check_passes_against_a_running_exporter_and_fails_without_one(
        tmp_path: Path, sims: SimulatorSet) -> None:
    config = write_config(tmp_path, sims)
    async def check(*flags: str) -> int:
        proc = await asyncio.create_subprocess_exec(sys.executable, "-m", "exporter.healthcheck", "--", *flags,
                                                    cwd=ROOT, stderr=asyncio.subprocess.DEVNULL)
        return await asyncio.wait_for(proc.wait(), 30)

    async with serving("--config.file", str(config), "--web.listen-address", "127.0.0.1:PORT",
                       "--web.route-prefix", "/x", ready="/x/-/ready") as (url, _, _):
        port = url.rsplit(":", 1)[1]
        assert await check("--config.file", str(config), "--web.listen-address", f"127.0.0.1:{port}",
                           "--web.route-prefix", "/x") == 0
        assert await check("--web.listen-address", f"127.0.0.1:{port}") == 1  # wrong prefix: 404
    assert await check("--web.listen-address", f"127.0.0.1:{free_port()}") == 1
