"""A catalog's ``matches:`` pattern against a hostile answer. A user catalog may hold a pattern that a
backtracking engine takes exponential time on ("(a|aa)+$"); the vendor (or a proxy in between) chooses
the text. Classification runs on the event loop, so one such answer would stall /-/healthy, every probe
and SIGTERM. Patterns are RE2 (as Prometheus' own regexes): matched in time linear in the text."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from exporter._yamlnode import ConfigError, Node
from exporter.catalog import parse_catalog

ROOT = Path(__file__).resolve().parents[2]


def _catalog(pattern: str) -> Any:
    return parse_catalog("acme", Node({
        "credentials": ["token"], "check": {"path": "/ping"},
        "signer": {"name": "header", "options": {"template": "Bearer {token}"}},
        "code_from": [{"body": "message", "matches": pattern, "code": "slow"}, {"status": True}],
        "codes": {"200": {"class": "ok"}, "429": {"class": "rate_limited"}, "slow": {"class": "rate_limited"}},
    }, "acme.yaml", ""))


_CLASSIFY = """
import json, sys
from exporter._yamlnode import Node
from exporter.catalog import parse_catalog
from exporter.classify import Answer, classify
pattern, text = sys.argv[1], sys.argv[2]
cat = parse_catalog("acme", Node({
    "credentials": ["token"], "check": {"path": "/ping"},
    "signer": {"name": "header", "options": {"template": "Bearer {token}"}},
    "code_from": [{"body": "message", "matches": pattern, "code": "slow"}, {"status": True}],
    "codes": {"200": {"class": "ok"}, "slow": {"class": "rate_limited"}},
}, "acme.yaml", ""))
print(classify(cat, Answer(200, {}, json.dumps({"message": text}).encode()), 0.0).cls)
"""


@pytest.mark.parametrize("pattern", ["^(a|aa)+$", "^(a+)+$", "(x+x+)+y", "^(\\w+\\s?)*$"])
def test_a_catastrophic_pattern_classifies_a_hostile_answer_at_once(pattern: str) -> None:
    hostile = ("a" if "x" not in pattern else "x") * 1000 + "!"
    # a subprocess and a watchdog, not a measurement: a backtracking engine holds the interpreter (no
    # other thread runs) for longer than the universe's age on this text; RE2 answers at once
    try:
        done = subprocess.run([sys.executable, "-c", _CLASSIFY, pattern, hostile], capture_output=True, text=True,
                              timeout=60, cwd=ROOT)
    except subprocess.TimeoutExpired:
        pytest.fail("classifying one answer did not finish: the pattern backtracks")
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "ok"


@pytest.mark.parametrize("pattern", ["(a)\\1", "(?=secondary)limit", "(?<!x)y"])
def test_a_pattern_only_a_backtracking_engine_runs_is_refused_at_load(pattern: str) -> None:
    with pytest.raises(ConfigError, match=r"acme\.yaml: code_from\[0\]\.matches: is not an RE2 regular expression"):
        _catalog(pattern)


def test_an_error_about_a_pattern_from_the_environment_shows_none_of_it(tmp_path: Any) -> None:
    from exporter.config import parse_config

    root = Node({"vendors": {"github": {"code_from": [{"body": "message", "matches": "${PAT}", "code": "x"}],
                                        "codes": {"x": {"class": "rate_limited"}}}}, "targets": []},
                str(tmp_path / "c.yml"), "")
    with pytest.raises(ConfigError) as info:
        parse_config(root, tmp_path, {"PAT": "(?P<hunter 2>x)"})
    assert "hunter" not in str(info.value) and "${PAT}" in str(info.value)
