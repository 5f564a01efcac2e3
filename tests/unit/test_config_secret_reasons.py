"""A value expanded from ``${VAR}`` never appears in a config error, not even inside the reason of an
error about some other key: the sweep in tests/system/test_config_secret_errors.py checks the value an
error shows; these are reasons that quoted a value (or a part of it) of their own."""

from __future__ import annotations

import base64
import json
from pathlib import Path
from typing import Any
from urllib.parse import quote

import pytest

from exporter._yamlnode import Node
from exporter.config import ConfigError, parse_config

SECRET = "hunter2/Sup3r s3cret"
TARGET = {"name": "a", "vendor": "github", "base_url": "https://api.github.com", "credentials": {"token": "t"}}


def error_of(tree: dict[str, Any], tmp_path: Path) -> str:
    with pytest.raises(ConfigError) as info:
        parse_config(Node(tree, str(tmp_path / "config.yml"), ""), tmp_path, {"SECRET": SECRET})
    return str(info.value)


def assert_hidden(line: str) -> None:
    for shown in (SECRET, quote(SECRET), quote(SECRET, safe=""), json.dumps(SECRET)[1:-1],
                  base64.b64encode(SECRET.encode()).decode(), "hunter2", "s3cret"):
        assert shown not in line, line
    assert "${SECRET}" in line, line  # where it came from instead


@pytest.mark.parametrize("value", ["${SECRET}", "example.com,${SECRET}", "10.0.0.0/${SECRET}"])
def test_a_no_proxy_rule_from_the_environment_is_not_quoted(value: str, tmp_path: Path) -> None:
    line = error_of({"targets": [{**TARGET, "http_client": {"no_proxy": value,
                                                            "proxy_url": "http://proxy.example:3128"}}]}, tmp_path)
    assert "no_proxy" in line
    assert_hidden(line)


def test_a_body_key_from_the_environment_is_not_named_by_the_text_code_check(tmp_path: Path) -> None:
    line = error_of({"vendors": {"github": {"code_from": [{"body": "${SECRET}"}],
                                            "codes": {"E_QUOTA": {"class": "quota_exceeded"}}}},
                     "targets": [TARGET]}, tmp_path)
    assert "is a text code" in line and "code_from[0]" in line
    assert_hidden(line)


@pytest.mark.parametrize("value", ["${SECRET}", "/run/secrets/${SECRET}"])
def test_a_credential_file_named_from_the_environment_is_not_shown(value: str, tmp_path: Path) -> None:
    # the usual slip: token_file: ${GITHUB_TOKEN} where token: was meant puts the token in the path
    line = error_of({"targets": [{**TARGET, "credentials": {"token_file": value}}]}, tmp_path)
    assert "credentials.token_file: cannot read" in line
    assert_hidden(line)
