"""A value expanded from ``${VAR}`` never appears in a config error, whatever the type of the value it
sits in (issue 25: ``proxy_url`` written as a list or a mapping put the proxy password in the error):
not in ``--config.check``, not in the log, not in the 500 answer of ``/-/reload``. The error still says
where the value came from."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import aiohttp
import pytest
import yaml

from exporter.config import ConfigError
from tests.conftest import ROOT, config_from, free_port, spawn_exporter

from .test_signals import _until_ready

SECRET = "hunter2-proxy-Pw"
ENV = {**os.environ, "PROXY_PW": SECRET, "PYTHONPATH": str(ROOT)}
TARGET = {"name": "a", "vendor": "flipsnack", "base_url": "http://127.0.0.1:9",
          "credentials": {"api_key": "k", "secret": "s"}}
#: the shapes a mistyped value takes; each holds the expanded secret somewhere inside
SHAPES: list[Any] = [
    ["http://u:${PROXY_PW}@proxy:3128"],
    {"url": "http://u:${PROXY_PW}@proxy:3128"},
    [{"nested": ["${PROXY_PW}"]}],
]


def _bad(shape: Any) -> dict[str, Any]:
    return {"global": {"http_client": {"proxy_url": shape}}, "targets": [TARGET]}


def _assert_hidden(text: str) -> None:
    assert SECRET not in text and "hunter2" not in text, text
    assert "proxy_url: must be a string (value not shown: it comes from ${PROXY_PW})" in text, text


@pytest.mark.parametrize("shape", SHAPES, ids=["list", "mapping", "nested"])
def test_the_error_names_the_variable_not_its_value(shape: Any) -> None:
    with pytest.raises(ConfigError) as err:
        config_from(_bad(shape), env={"PROXY_PW": SECRET})
    _assert_hidden(str(err.value))
    assert err.value.value is None  # not kept on the exception either
    # a value that held no variable is still shown, so a typo can be seen
    with pytest.raises(ConfigError) as err:
        config_from(_bad(["http://proxy:3128"]), env={})
    assert "(got ['http://proxy:3128'])" in str(err.value)


@pytest.mark.parametrize("shape", SHAPES, ids=["list", "mapping", "nested"])
def test_config_check_and_the_start_up_log_never_show_it(tmp_path: Path, shape: Any) -> None:
    cfg = tmp_path / "config.yml"
    cfg.write_text(yaml.safe_dump(_bad(shape)))
    check = subprocess.run([sys.executable, "-m", "exporter", "--config.file", str(cfg), "--config.check"],
                           capture_output=True, text=True, timeout=60, cwd=ROOT, env=ENV)
    assert check.returncode == 1
    _assert_hidden(check.stdout + check.stderr)
    start = subprocess.run([sys.executable, "-m", "exporter", "--config.file", str(cfg), "--listen",
                            f"127.0.0.1:{free_port()}"], capture_output=True, text=True, timeout=60, cwd=ROOT, env=ENV)
    assert start.returncode == 1
    _assert_hidden(start.stdout + start.stderr)


async def test_the_reload_answer_and_its_log_line_never_show_it(tmp_path: Path) -> None:
    cfg = tmp_path / "config.yml"
    cfg.write_text(yaml.safe_dump({"global": {"interval": "1h"}, "targets": [TARGET]}))
    port = free_port()
    async with spawn_exporter("--config", str(cfg), "--listen", f"127.0.0.1:{port}", env=ENV) as (proc, lines):
        await _until_ready(proc, port)
        async with aiohttp.ClientSession() as s:
            for shape in SHAPES:
                cfg.write_text(yaml.safe_dump(_bad(shape)))
                async with s.post(f"http://127.0.0.1:{port}/-/reload") as r:
                    assert r.status == 500
                    _assert_hidden(await r.text())
    log = "".join(lines)
    assert log.count("(value not shown: it comes from ${PROXY_PW})") == len(SHAPES), log
    assert SECRET not in log
