"""Numbers in the web config beyond Go's int64 (exporter-toolkit's yaml.v2 refuses them): one line naming
the key, never an OverflowError or ValueError traceback at start, and never a re-read that raises."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from exporter.webconfig import WebConfigError, parse_web_config
from exporter.webconfig.auth import validate_users

HUGE = "9" * 400
ENORMOUS = "9" * 5000  # past Python's int_max_str_digits


@pytest.mark.parametrize("text, key", [
    ("rate_limit: {interval: 1e999, burst: 1}", "rate_limit.interval"),
    (f"rate_limit: {{interval: {HUGE}, burst: 1}}", "rate_limit.interval"),
    (f"rate_limit: {{interval: {ENORMOUS}, burst: 1}}", "rate_limit.interval"),
    ("rate_limit: {interval: 99999999999999999999999999h, burst: 1}", "rate_limit.interval"),
    ("rate_limit: {interval: 1s, burst: 1e999}", "rate_limit.burst"),
    (f"rate_limit: {{interval: 1s, burst: {HUGE}}}", "rate_limit.burst"),
    (f"rate_limit: {{interval: 1s, burst: {ENORMOUS}}}", "rate_limit.burst"),
    ("rate_limit: {interval: 1s, burst: 9223372036854775808}", "rate_limit.burst"),
], ids=["interval-inf", "interval-400-digits", "interval-5000-digits", "interval-hours", "burst-inf",
        "burst-400-digits", "burst-5000-digits", "burst-int64-plus-one"])
def test_a_number_past_int64_is_one_line_naming_the_key(text: str, key: str) -> None:
    with pytest.raises(WebConfigError) as info:
        parse_web_config(Path("web.yml"), text + "\n")
    line = str(info.value)
    assert line.startswith(f"web.yml: {key}: ") and "\n" not in line and len(line) < 300, line


def test_the_largest_go_values_still_load() -> None:
    cfg = parse_web_config(Path("web.yml"), "rate_limit: {interval: 2562047h, burst: 9223372036854775807}\n")
    assert cfg.rate_burst == 9223372036854775807 and cfg.rate_interval == 2562047 * 3600


@pytest.mark.parametrize("text", ["a: " + "[" * 3000 + "]" * 3000, "a: " + "{a: " * 3000 + "1" + "}" * 3000],
                         ids=["lists", "mappings"])
def test_a_deeply_nested_file_is_one_line_not_a_recursion_error(text: str) -> None:
    with pytest.raises(WebConfigError, match=r"^web\.yml: values are nested too deeply"):
        parse_web_config(Path("web.yml"), text + "\n")


@pytest.mark.parametrize("text, key", [('basic_auth_users:\n  u: "\\ud800"', "basic_auth_users.u"),
                                       ('basic_auth_users:\n  "\\udfff": x', "basic_auth_users"),
                                       ('http_server_config: {headers: {X-Frame-Options: "\\ud800"}}',
                                        "http_server_config.headers.X-Frame-Options")],
                         ids=["hash", "user", "header"])
def test_a_lone_surrogate_escape_is_one_line_not_a_unicode_error(text: str, key: str) -> None:
    # YAML's "\ud800" makes a string no encoder can write: refused as the main config's loader refuses it
    with pytest.raises(WebConfigError, match=rf"^web\.yml: {re.escape(key)}: .*lone UTF-16 surrogate"):
        cfg = parse_web_config(Path("web.yml"), text + "\n")
        validate_users(cfg)
