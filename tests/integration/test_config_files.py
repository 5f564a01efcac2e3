"""Hostile config and secret files: FIFOs, devices, huge or non-UTF-8 secrets, alias bombs, escapes
only one of the two YAML loaders accepted, passwords in base_url. Each is one line naming the file
and the key path, fast, without a traceback, the same with and without libyaml; a reload that fails
in any way sets the reload metric to 0 and never blocks the next one."""

from __future__ import annotations

import asyncio
import copy
import os
import subprocess
import sys
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml

import exporter._yamlnode as yamlnode
from exporter import app as app_module
from exporter import config as config_module
from exporter.catalog import builtin_raw
from exporter.collector import render_exposition, render_target
from exporter.config import Config, ConfigError, load_config
from exporter.model import Outcome, ProbeResult
from exporter.state import Rendered, State, TargetState
from tests.conftest import ROOT, config_from, run_cli_here, running_exporter, sample

BROKEN = sorted((ROOT / "tests" / "broken").glob("*.yml"))
LOADERS = {"libyaml": getattr(yaml, "CSafeLoader", None), "python": yaml.SafeLoader}


def test_libyaml_is_there_so_both_loaders_are_really_compared() -> None:
    assert LOADERS["libyaml"] is not None, "PyYAML without libyaml: install python3-yaml or a PyYAML wheel"


#: the shipped catalogs, read once: what each loader is compared on is the file under test (that the
#: catalogs themselves read the same is tests/unit/test_yaml_loading.py's), and the pure-Python loader
#: took most of this file's time reading all ten again for every fixture
_BUILTIN = builtin_raw()


@pytest.fixture(params=sorted(LOADERS))
def loader(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> Iterator[str]:
    monkeypatch.setattr(yamlnode, "_SAFE_LOADER", LOADERS[request.param])
    monkeypatch.setattr(config_module, "builtin_raw", lambda: copy.deepcopy(_BUILTIN))
    yield request.param


def _expected(path: Path) -> str:
    first = path.read_text(encoding="utf-8", errors="replace").splitlines()[0]
    return first[len("# error: "):].replace("{file}", str(path)).replace("{dir}", str(path.parent))


@pytest.mark.parametrize("path", BROKEN, ids=[p.stem for p in BROKEN])
def test_every_broken_fixture_fails_alike_under_both_loaders(path: Path, loader: str) -> None:
    with pytest.raises(ConfigError) as err:
        load_config(path, env={})
    assert str(err.value) == _expected(path)


@pytest.mark.parametrize("doc", [
    'targets: []\nx: "\\ud800"\n',
    'targets: []\n"k\\udfff": 1\n',
    'targets: []\nx: "\\uDBFF\\uDFFF"\n',  # a surrogate pair as two escapes: YAML wants \U0010FFFF
    'targets: []\nx: "\\U0000D800"\n',
])
def test_surrogate_escapes_are_refused_by_both_loaders(doc: str, loader: str, tmp_path: Path) -> None:
    path = tmp_path / "c.yml"
    path.write_text(doc)
    with pytest.raises(ConfigError) as err:
        load_config(path, env={})
    assert "surrogate" in str(err.value) or "escape" in str(err.value)
    assert "\n" not in str(err.value)
    str(err.value).encode("utf-8")  # the message itself is writable


def test_a_surrogate_from_the_environment_is_refused() -> None:
    with pytest.raises(ConfigError) as err:
        config_from({"targets": [{"name": "a", "vendor": "bizwebs", "base_url": "https://x.example",
                                  "credentials": {"token": "${TOKEN}"}}]}, env={"TOKEN": "t\udce9"})
    assert str(err.value) == ("test-config.yml: targets[0].credentials.token: environment variable TOKEN is not "
                              "valid UTF-8")


def test_deep_nesting_is_one_line(tmp_path: Path, loader: str) -> None:
    path = tmp_path / "deep.yml"
    path.write_text("targets:\n" + "- " * 5000 + "x\n")  # block style: the pure-Python scanner is slow on flow
    with pytest.raises(ConfigError) as err:
        load_config(path, env={})
    assert str(err.value) == f"{path}: values are nested more than 100 levels deep"


def _bizwebs(tmp_path: Path, token_file: str) -> Path:
    path = tmp_path / "c.yml"
    path.write_text(yaml.safe_dump({"targets": [{"name": "a", "vendor": "bizwebs", "base_url": "https://x.example",
                                                 "credentials": {"token_file": token_file}}]}))
    return path


def _check(path: Path) -> subprocess.CompletedProcess[str]:
    # a hang is the bug: the timeout turns it into a failure instead of a stuck suite
    return subprocess.run([sys.executable, "-m", "exporter", "--config", str(path), "--check-config"],
                          capture_output=True, text=True, timeout=30, cwd=ROOT)


def _one_line(out: subprocess.CompletedProcess[str]) -> str:
    assert out.returncode == 1, out
    assert "Traceback" not in out.stderr
    lines = out.stderr.splitlines()
    assert len(lines) == 1, out.stderr
    return lines[0]


def test_fifo_secret_file_is_refused_at_once(tmp_path: Path) -> None:
    fifo = tmp_path / "token"
    os.mkfifo(fifo)
    line = _one_line(_check(_bizwebs(tmp_path, str(fifo))))
    assert line == (f"error: {tmp_path}/c.yml: targets[0].credentials.token_file: cannot read {fifo}: is a FIFO, "
                    "not a regular file")


def test_a_fifo_as_the_config_file_is_refused_at_once(tmp_path: Path) -> None:
    fifo = tmp_path / "c.yml"
    os.mkfifo(fifo)
    assert _one_line(_check(fifo)) == f"error: {fifo}: cannot read: is a FIFO, not a regular file"


@pytest.mark.parametrize(("name", "content", "reason"), [
    ("big", b"t" * (1 << 20), "is larger than 64 KiB"),
    ("latin1", "café".encode("latin-1"), "is not valid UTF-8 (byte 3)"),
    ("utf16", "token".encode("utf-16"), "is not valid UTF-8 (byte 0)"),
], ids=["1MB", "latin1", "utf16"])
def test_bad_secret_file_contents_are_one_line(tmp_path: Path, name: str, content: bytes, reason: str) -> None:
    secret = tmp_path / name
    secret.write_bytes(content)
    # a file that opens reads to its end or its cap: no hang to guard against, so in this process
    line = _one_line(run_cli_here("--config", str(_bizwebs(tmp_path, str(secret))), "--check-config"))
    assert line == f"error: {tmp_path}/c.yml: targets[0].credentials.token_file: cannot read {secret}: {reason}"


def test_a_secret_file_at_the_size_cap_is_accepted(tmp_path: Path) -> None:
    secret = tmp_path / "token"
    secret.write_text("t" * (64 * 1024 - 1) + "\n")
    cfg = load_config(_bizwebs(tmp_path, str(secret)), env={})
    assert cfg.targets[0].credentials["token"] == "t" * (64 * 1024 - 1)


def test_a_read_that_never_returns_times_out(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    # A hung network file system, played by a read that blocks until released.
    release = threading.Event()
    real = yamlnode._read_fd

    def hung(path: Path, limit: int) -> bytes:
        release.wait(30)
        return real(path, limit)

    monkeypatch.setattr(yamlnode, "_read_fd", hung)
    secret = tmp_path / "token"
    secret.write_text("t\n")
    try:
        with pytest.raises(yamlnode.FileReadError, match=r"read timed out after 0.2s"):
            yamlnode.read_regular_file(secret, 1024, timeout=0.2)
    finally:
        release.set()
    monkeypatch.setattr(yamlnode, "_read_fd", real)
    assert yamlnode.read_regular_file(secret, 1024) == b"t\n"  # a fresh reader thread takes over


def test_alias_bomb_fails_fast_with_one_line() -> None:
    bomb = ROOT / "tests" / "broken" / "alias_bomb.yml"
    assert _one_line(_check(bomb)) == f"error: {_expected(bomb)}"


def test_aliases_within_reason_still_work(tmp_path: Path) -> None:
    path = tmp_path / "c.yml"
    path.write_text("creds: &c {token: t}\ntargets:\n"
                    + "".join(f"  - {{name: t{i}, vendor: bizwebs, base_url: 'https://x.example', credentials: *c}}\n"
                              for i in range(50)))
    with pytest.raises(ConfigError, match="unknown key"):  # `creds` is not a config key, but it loaded fine
        load_config(path, env={})
    path.write_text(path.read_text().replace("creds: &c {token: t}\ntargets:\n",
                                             "targets:\n  - {name: first, vendor: bizwebs, base_url: "
                                             "'https://x.example', credentials: &c {token: t}}\n"))
    assert len(load_config(path, env={}).targets) == 51


@pytest.mark.parametrize("url", [
    "https://admin:hunter2@x.example", "https://admin:hunter2@x.example:bad/v1", "admin:hunter2@x.example",
    "https://hunter2@x.example?q=1", "https://admin:hunter2@/",
])
def test_userinfo_in_base_url_is_refused_without_showing_it(url: str) -> None:
    with pytest.raises(ConfigError) as err:
        config_from({"targets": [{"name": "a", "vendor": "bizwebs", "base_url": url,
                                  "credentials": {"token": "t"}}]})
    assert "hunter2" not in str(err.value) and "admin" not in str(err.value)
    assert str(err.value) == ("test-config.yml: targets[0].base_url: must not hold a user name or password "
                              "(user:password@): put them in credentials")


def test_an_at_sign_in_the_path_is_not_userinfo() -> None:
    cfg = config_from({"targets": [{"name": "a", "vendor": "bizwebs", "base_url": "https://x.example/@team",
                                    "credentials": {"token": "t"}}]})
    assert cfg.targets[0].base_url == "https://x.example/@team"


def _cfg() -> Config:
    return config_from({"targets": [{"name": "a", "vendor": "flipsnack", "base_url": "http://127.0.0.1:9",
                                     "interval": "1h", "credentials": {"api_key": "k", "secret": "s"}}]})


async def test_any_reload_failure_sets_the_metric_to_0_and_never_blocks_the_next(
        monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setattr(app_module, "RELOAD_TIMEOUT", 1.0)
    good = _cfg()
    release = threading.Event()
    fifo = tmp_path / "fifo.yml"
    os.mkfifo(fifo)
    behaviour: list[str] = []

    def loader() -> Config:
        what = behaviour.pop(0)
        if what == "bug":
            raise RuntimeError("a bug")
        if what == "utf8":
            raise UnicodeDecodeError("utf-8", b"\xff", 0, 1, "invalid start byte")
        if what == "fifo":
            return load_config(fifo, env={})
        if what == "hang":
            release.wait(30)
        return good

    async with running_exporter(good, loader=loader) as run:
        try:
            for what in ("bug", "utf8", "fifo", "hang"):
                behaviour.append(what)
                async with run.session.post(run.url + "/-/reload") as r:
                    text = await r.text()
                    assert r.status == 500, (what, text)
                    assert text.count("\n") == 1 and "Traceback" not in text
                assert sample(await run.metrics(), "apistatus_config_last_reload_successful") == 0, what
                behaviour.append("ok")  # and the next reload is not blocked by the failed one
                async with run.session.post(run.url + "/-/reload") as r:
                    assert r.status == 200, await r.text()
                assert sample(await run.metrics(), "apistatus_config_last_reload_successful") == 1
        finally:
            release.set()
            await asyncio.sleep(0)


def test_a_result_that_cannot_be_rendered_does_not_kill_the_probe_and_the_target_stays() -> None:
    cfg = _cfg()

    def render(ts: TargetState) -> Rendered:
        # the collector copes with every value a vendor can send today; a bug in it must still not
        # kill the probe task, so this render hook fails on one result the way such a bug would
        if ts.last is not None and ts.last.outcome.code == "boom":
            raise ValueError("a bug while rendering")
        return render_target(ts)

    state = State(render)
    state.sync(cfg.targets)
    good = ProbeResult("a", 1.0, 0.1, Outcome("ok", "20", "ok", 200), "", "")
    assert state.record(good, 2.0, 0.0) is not None
    bad = ProbeResult("a", 3.0, 0.1, Outcome("server_error", "boom", "x", 500), "", "")
    ts = state.record(bad, 4.0, 0.0)  # must not raise: this runs inside the probe task
    assert ts is not None and state.render_failures >= 1
    text = render_exposition([ts], None, process=False).decode()
    assert 'apistatus_up{target="a",vendor="flipsnack"} 0' in text
    assert 'apistatus_outcome{target="a",vendor="flipsnack",class="unknown"} 1' in text
