"""``--check-config`` as a user runs it: the exporter as a subprocess accepts the example and refuses a
broken config with its one-line error; through the same entry point in this process, it warns about a
shared budget and runs every catalog example."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import yaml

from ..conftest import ROOT, run_cli_here, written_refusal
from ..unit.test_config import EXAMPLE_ENV, example_copy


def _check(path: Path, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "exporter", "--config", str(path), "--check-config"],
                          capture_output=True, text=True, timeout=60, env={**os.environ, **env}, cwd=ROOT)


def test_check_config_cli_accepts_the_example_and_rejects_a_broken_one(tmp_path: Path) -> None:
    ok = _check(example_copy(tmp_path), EXAMPLE_ENV)
    assert ok.returncode == 0, ok.stderr
    assert "OK, 5 targets" in ok.stdout
    bad_path = ROOT / "tests" / "broken" / "duplicate_name.yml"
    bad = _check(bad_path, {})
    assert bad.returncode == 1
    assert bad.stderr.strip() == "error: " + written_refusal(bad_path)[0]
    assert "Traceback" not in bad.stderr


def test_check_config_warns_when_shared_budget_cannot_fit(tmp_path: Path) -> None:
    path = tmp_path / "c.yml"
    path.write_text("targets:\n" + "".join(
        f"  - {{name: fs{i}, vendor: flipsnack, base_url: 'https://api.flipsnack.com/v1', interval: 15s,"
        f" credentials: {{api_key: k, secret: s}}}}\n" for i in range(2)))
    out = run_cli_here("--config", str(path), "--check-config")
    assert out.returncode == 0
    assert out.stderr.strip() == (
        "warning: targets fs0, fs1 share one flipsnack credential: their intervals make 8 requests per 60s but "
        "probes may spend 3 (5% of 60 per 60s); an interval of at least 40s each would fit")


# --- --check-config -------------------------------------------------------------------------------

def check_config(tmp_path: Path, config: dict[str, Any], catalog_file: dict[str, Any] | None = None,
                 flag: str = "--check-config") -> subprocess.CompletedProcess[str]:
    if catalog_file is not None:
        (tmp_path / "acme.yaml").write_text(yaml.safe_dump(catalog_file), encoding="utf-8")
    path = tmp_path / "config.yml"
    path.write_text(yaml.safe_dump(config), encoding="utf-8")
    return run_cli_here(flag, "--config", str(path))


ACME: dict[str, Any] = {
    "vendor": "acme", "credentials": ["token"], "check": {"path": "/ping"},
    "signer": {"name": "header", "options": {"template": "Bearer {token}"}},
    "code_from": [{"body": "result", "type": "string"}, {"status": True}],
    "codes": {"fine": {"class": "ok"}, "denied": {"class": "auth"}, "500": {"class": "server_error"}},
    "examples": [{"status": 200, "body": {"result": "fine"}, "class": "ok", "code": "fine"},
                 {"status": 200, "body": {"result": "denied"}, "class": "auth", "code": "denied"},
                 {"status": 500, "body": "<html>", "class": "server_error", "code": "500"}],
}
TARGET = {"name": "a", "vendor": "acme", "base_url": "http://127.0.0.1:1", "credentials": {"token": "t"}}


def test_check_config_passes_a_user_catalog_whose_examples_hold(tmp_path: Path) -> None:
    run = check_config(tmp_path, {"catalog_files": ["acme.yaml"], "targets": [TARGET]}, ACME)
    assert run.returncode == 0, run.stderr
    assert "OK" in run.stdout


def test_check_config_names_the_failing_example(tmp_path: Path) -> None:
    wrong = {**ACME, "examples": [*ACME["examples"], {"status": 200, "body": {"result": "denied"},
                                                      "class": "ok", "code": "denied"}]}
    run = check_config(tmp_path, {"catalog_files": ["acme.yaml"], "targets": [TARGET]}, wrong, "--config.check")
    assert run.returncode == 1
    lines = run.stderr.strip().splitlines()
    assert lines == [f"error: {tmp_path / 'acme.yaml'}: examples[3]: expected class ok code denied, "
                     "got class auth code denied (denied)"], run.stderr
    assert "Traceback" not in run.stderr


def test_check_config_runs_examples_given_in_the_config_itself(tmp_path: Path) -> None:
    vendors = {"acme": {k: v for k, v in ACME.items() if k != "vendor"}}
    vendors["acme"]["examples"] = [{"status": 500, "class": "ok", "code": "500"}]
    run = check_config(tmp_path, {"vendors": vendors, "targets": [TARGET]})
    assert run.returncode == 1
    assert f"{tmp_path / 'config.yml'}: vendors.acme.examples[0]: expected class ok code 500" in run.stderr


def test_an_override_does_not_fail_the_builtin_examples_but_its_own_run(tmp_path: Path) -> None:
    """Reclassifying a built-in code is the point of an override: the built-in file's examples still
    prove the file as shipped, and the override's own examples prove the merged catalog."""
    target = {"name": "s", "vendor": "slack", "base_url": "http://127.0.0.1:1", "credentials": {"token": "t"}}
    override = {"slack": {"codes": {"team_added_to_org": {"class": "ok"}}}}
    assert check_config(tmp_path, {"vendors": override, "targets": [target]}).returncode == 0
    override["slack"]["examples"] = [{"status": 200, "body": {"ok": False, "error": "team_added_to_org"},
                                      "class": "maintenance", "code": "team_added_to_org"}]
    run = check_config(tmp_path, {"vendors": override, "targets": [target]})
    assert run.returncode == 1 and "vendors.slack.examples[0]: expected class maintenance" in run.stderr


def test_a_broken_shipped_demo_or_simulator_file_is_one_line_not_a_traceback(tmp_path: Path) -> None:
    # demo.yaml and simulators/vendors.yaml are read as the demo and the simulators are imported: an
    # edit that breaks one (a packager's, a developer's) is the loader's one-line error, exit status 1
    import shutil

    from exporter.demo import CYCLE

    for file, old, new, error in (
            ("demo.yaml", f"cycle: {CYCLE:g}\n", f"cycle: [{CYCLE:g}]\n",
             f"demo.yaml: cycle: must be a number (got [{CYCLE:g}])"),
            ("simulators/vendors.yaml", "  window_limit: 50\n", "  window_limit: lots\n",
             "vendors.yaml: anthropic.window_limit: must be a whole number (got 'lots')")):
        copy = tmp_path / file.replace("/", "-")
        shutil.copytree(ROOT / "exporter", copy / "exporter", ignore=shutil.ignore_patterns("__pycache__"))
        text = (copy / "exporter" / file).read_text()
        assert old in text, file
        (copy / "exporter" / file).write_text(text.replace(old, new, 1))
        commands = [["demo", "--web.listen-address", "127.0.0.1:0"]]
        if file.startswith("simulators/"):
            commands.append(["simulate"])
        for command in commands:
            run = subprocess.run([sys.executable, "-m", "exporter", *command], capture_output=True, text=True,
                                 timeout=60, cwd=copy, env={**os.environ, "PYTHONPATH": str(copy)})
            assert run.returncode == 1 and "Traceback" not in run.stderr, (command, run.stderr)
            assert len(run.stderr.strip().splitlines()) == 1 and error in run.stderr, (command, run.stderr)
