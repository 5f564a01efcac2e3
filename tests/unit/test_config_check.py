"""``--config.check`` lists every problem: each bad key of ``global`` and each bad field of a target on a
line of its own, with the file and key path, and no Python reprs; the OK line names what the file uses."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from exporter.__main__ import main
from exporter.cli import config_problems

BAD_GLOBAL = """\
global:
  interval: 1m
  timeout: 90s
  max_concurrency: lots
  colour: blue
  keepalive: maybe
  confirm_failures: yes please
targets:
  - {name: a, vendor: slack, base_url: "https://slack.com/api", credentials: {token: t}}
"""

BAD_TARGETS = """\
targets:
  - {name: a, vendor: slack, base_url: "https://slack.com/api", credentials: {token: t}, interval: soon,
     probe_share: 7, labels: {job: x}, colour: red}
  - {name: b, vendor: nope, base_url: "ftp://x.example", wat: 1}
  - {name: c, vendor: slack, base_url: "https://slack.com/api", credentials: {token: t}}
  - {name: a, vendor: github, base_url: "https://api.github.com", credentials: {}, timeout: 5m}
"""


def problems_of(tmp_path: Path, text: str) -> list[str]:
    path = tmp_path / "config.yml"
    path.write_text(text)
    config, problems = config_problems(path, env={})
    assert config is None
    prefix = f"{path}: "
    assert all(line.startswith(prefix) and "\n" not in line for line in problems), problems
    return [line[len(prefix):] for line in problems]


def test_every_bad_key_of_global_is_a_line_of_its_own(tmp_path: Path) -> None:
    assert problems_of(tmp_path, BAD_GLOBAL) == [
        "global.colour: unknown key (allowed: confirm_failures, history, http_client, interval, keepalive, "
        "max_backoff, max_body_bytes, max_concurrency, probe_share, timeout)",
        "global.max_concurrency: must be a whole number (got 'lots')",
        "global.confirm_failures: must be true or false (got 'yes please')",
        "global.keepalive: must be true or false (got 'maybe')",
        # the global block's own mistake, not the first target's, and no Python dict
        "global.timeout: timeout 90s is longer than the interval 60s (got '90s')",
    ]


def test_every_bad_field_of_every_target_is_a_line_of_its_own(tmp_path: Path) -> None:
    assert problems_of(tmp_path, BAD_TARGETS) == [
        "targets[0].colour: unknown key (allowed: base_url, budget, check, confirm_failures, credentials, "
        "http_client, interval, labels, max_backoff, name, probe_share, status_components, timeout, vendor)",
        "targets[0].interval: must be a duration like 30s, 5m or 1h30m (got 'soon')",
        "targets[0].labels.job: is reserved by the exporter (got 'job')",
        "targets[0].probe_share: must be between 0.0001 and 1 (got 7)",
        "targets[1].wat: unknown key (allowed: base_url, budget, check, confirm_failures, credentials, "
        "http_client, interval, labels, max_backoff, name, probe_share, status_components, timeout, vendor)",
        "targets[1].vendor: unknown vendor (known: anthropic, aws-sts, bannersnack, bizwebs, cloudflare, datadog, "
        "flipsnack, github, movingimage, msgraph, openai, pagerduty, rubiq, sendgrid, slack, stripe, twilio) "
        "(got 'nope')",
        "targets[1].base_url: must be an http:// or https:// URL without query or fragment (got 'ftp://x.example')",
        "targets[3].name: duplicate target name (got 'a')",
        "targets[3].timeout: timeout 300s is longer than the interval 60s (got '5m')",
        "targets[3].credentials.token: vendor github needs credential token (or token_file)",
    ]


@pytest.mark.parametrize(("yaml_text", "shown"), [
    ("vendors: {slack: {code_from: [{body: ok, equals: true}]}}\ntargets: []\n", "{body: 'ok', equals: true}"),
    ("global: {http_client: {tls_config: [ca_file]}}\ntargets: []\n", "['ca_file']"),
    ("targets:\n  - {name: a, vendor: slack, base_url: 'https://x.example', credentials: {token: t}, "
     "labels: {team: [1, null]}}\n", None),
])
def test_no_message_shows_a_python_repr(tmp_path: Path, yaml_text: str, shown: str | None) -> None:
    lines = problems_of(tmp_path, yaml_text)
    assert lines
    for line in lines:
        assert not re.search(r"\b(True|False|None)\b|\{'|': ", line), line
    if shown is not None:
        assert any(f"(got {shown})" in line for line in lines), lines


def test_the_ok_line_names_the_vendors_the_file_uses_with_a_plural_that_fits(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = tmp_path / "config.yml"
    path.write_text("targets:\n  - {name: a, vendor: slack, base_url: 'https://slack.com/api', "
                    "credentials: {token: t}}\n")
    assert main(["--config.file", str(path), "--config.check"]) == 0
    assert capsys.readouterr().out == f"{path}: OK, 1 target, vendors: slack\n"
    path.write_text(path.read_text() + "  - {name: b, vendor: github, base_url: 'https://api.github.com', "
                    "credentials: {token: t}}\n")
    assert main(["--config.file", str(path), "--config.check"]) == 0
    assert capsys.readouterr().out == f"{path}: OK, 2 targets, vendors: github, slack\n"


def test_every_bad_credential_of_a_target_is_a_line_of_its_own(tmp_path: Path) -> None:
    lines = problems_of(tmp_path, "targets:\n  - {name: a, vendor: flipsnack, base_url: 'https://x.example', "
                                  "credentials: {apikey: hunter2}}\n")
    assert lines == [
        "targets[0].credentials.apikey: unknown credential for vendor flipsnack (allowed: api_key, secret or "
        "NAME_file)",
        "targets[0].credentials.api_key: vendor flipsnack needs credential api_key (or api_key_file)",
        "targets[0].credentials.secret: vendor flipsnack needs credential secret (or secret_file)",
    ]
    assert not any("hunter2" in line for line in lines)


def test_a_key_with_control_characters_or_of_any_length_stays_one_short_line(tmp_path: Path) -> None:
    # YAML's "\n" and "\e" escapes put control characters in a key name: the key is echoed in the path
    text = ('global:\n  "bad\\nerror: forged line\\e[31m\\a": 1\n  ? "' + "k" * 100_000 + '"\n  : 1\n'
            'targets:\n  - {name: a, vendor: slack, base_url: "https://slack.com/api", credentials: {token: t},\n'
            '     "zz\\u0085\\u009b": 1}\n')
    problems = problems_of(tmp_path, text)
    assert len(problems) == 3, problems
    for line in problems:
        assert line.isprintable(), repr(line)  # no newline to forge a line, no ESC/BEL for the terminal
        assert len(line) < 1000
    assert "bad\\x0aerror: forged line\\x1b[31m\\x07" in problems[0]
    assert "global.kkkk" in problems[1] and "unknown key" in problems[1]
    assert "targets[0].zz\\x85\\x9b: unknown key" in problems[2]


@pytest.mark.parametrize("key, value", [("interval", "9" * 400 + "s"), ("probe_share", "9" * 400),
                                        ("timeout", "1" + "0" * 30 + "y")])
def test_an_absurdly_large_number_is_one_line_not_a_traceback(tmp_path: Path, key: str, value: str) -> None:
    text = (f"global:\n  {key}: {value}\ntargets:\n"
            "  - {name: a, vendor: slack, base_url: 'https://slack.com/api', credentials: {token: t}}\n")
    problems = problems_of(tmp_path, text)
    assert len(problems) == 1 and problems[0].startswith(f"global.{key}: "), problems
