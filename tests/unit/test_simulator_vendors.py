"""The simulators' vendor settings live in exporter/simulators/vendors.yaml: every simulator has its
entry and gets it, and a mistake in the file is a one-line error naming the file and the key, caught
here rather than by a simulator that answers wrongly in some integration test."""

from __future__ import annotations

import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import pytest

from exporter.catalog import builtin_raw
from exporter.model import ConfigError
from exporter.simulators import SIMULATORS
from exporter.simulators.base import COMMON_SETTINGS, CONDITIONS, HeaderKeySimulator, Simulator, WindowedSimulator
from exporter.simulators.vendors import VENDORS_FILE, load_vendors


def _load(path: Path) -> dict[str, Mapping[str, Any]]:
    return load_vendors(path, CONDITIONS, COMMON_SETTINGS)


def test_every_simulator_has_an_entry_and_every_entry_a_simulator_of_a_builtin_vendor() -> None:
    entries = _load(VENDORS_FILE)
    simulated = [cls.vendor for cls in SIMULATORS]
    assert sorted(simulated) == sorted(entries)
    assert sorted(entries) == sorted(builtin_raw())  # one simulator per built-in catalog, by its name


@pytest.mark.parametrize("cls", SIMULATORS, ids=lambda cls: cls.__name__)
def test_each_simulator_class_carries_its_entry(cls: type[Simulator]) -> None:
    entry = _load(VENDORS_FILE)[cls.vendor]
    for key, value in entry.items():
        assert getattr(cls, key) == value, f"{cls.__name__}.{key}"
    assert cls.default_credentials, f"{cls.__name__} has no demo credentials"


def test_codes_and_healthy_values_keep_their_kind() -> None:
    rubiq = next(cls for cls in SIMULATORS if cls.vendor == "rubiq")
    assert rubiq.condition_codes["disabled"] == "401.10"  # a code, not the number 401.1
    twilio = next(cls for cls in SIMULATORS if cls.vendor == "twilio")
    # the control API takes a value of the healthy value's kind: a count stays a whole number
    assert type(twilio.extra_settings["in_flight"]) is int
    assert twilio.extra_settings["account_status"] == "active"
    stripe = next(cls for cls in SIMULATORS if cls.vendor == "stripe")
    assert (stripe.window_limit, stripe.window_seconds) == (25, 1.0)  # type: ignore[attr-defined]


# --- a broken file: the exact one-line error -------------------------------------------------------

BROKEN = {
    "key_typo": ("slack:\n  window_limt: 50\n",
                 "slack.window_limt: unknown key (allowed: condition_codes, default_credentials, extra_settings, "
                 "key_credential, key_header, key_scheme, missing_key_code, path, prefix, status_page, "
                 "window_limit, window_seconds, wrong_key_code)"),
    "unknown_condition": ("rubiq:\n  condition_codes:\n    maintanance: \"1\"\n",
                          "rubiq.condition_codes.maintanance: unknown key (allowed: disabled, maintenance, "
                          "quota_exceeded, rate_limited, server_error)"),
    "code_read_as_a_number": ("rubiq:\n  condition_codes:\n    disabled: 401.10\n",
                              "rubiq.condition_codes.disabled: must be a text (quote a code or a credential that "
                              "looks like a number) (got 401.1)"),
    "code_with_a_space": ("datadog:\n  missing_key_code: \"no key\"\n",
                          "datadog.missing_key_code: must be a code of letters, digits, '.', '_' or '-' "
                          "(got 'no key')"),
    "credential_read_as_a_number": ("rubiq:\n  default_credentials:\n    app_key: 0123\n",
                                    "rubiq.default_credentials.app_key: must be a text (quote a code or a "
                                    "credential that looks like a number) (got 83)"),
    "credential_name": ("rubiq:\n  default_credentials:\n    1: \"32767\"\n",
                        "rubiq.default_credentials.1: must be a credential name of letters, digits and '_'"),
    "common_setting_again": ("slack:\n  extra_settings:\n    delay: 1\n",
                             "slack.extra_settings.delay: is a setting every simulator has "
                             "(base.COMMON_SETTINGS): choose another name"),
    "healthy_value_a_list": ("slack:\n  extra_settings:\n    burst: [0]\n",
                             "slack.extra_settings.burst: must be true or false, a number or a text (got [0])"),
    "setting_name": ("slack:\n  extra_settings:\n    Burst: 0\n",
                     "slack.extra_settings.Burst: must be a setting name of lower case letters, digits and '_'"),
    "window_limit_zero": ("slack:\n  window_limit: 0\n", "slack.window_limit: must be between 1 and 10000000 "
                                                         "(got 0)"),
    "window_seconds_a_duration": ("slack:\n  window_seconds: 60s\n", "slack.window_seconds: must be a number "
                                                                     "(got '60s')"),
    "prefix_without_slash": ("slack:\n  prefix: api\n",
                             "slack.prefix: must be empty or a path starting with / (got 'api')"),
    "header_name": ("datadog:\n  key_header: \"DD API KEY\"\n",
                    "datadog.key_header: must be an HTTP header name (got 'DD API KEY')"),
    "status_page_format": ("slack:\n  status_page: {path: /x, format: atom, components: [[a, b]]}\n",
                           "slack.status_page.format: must be one of statuspage, incidentio, slack (got 'atom')"),
    "status_page_component_not_a_pair": ("slack:\n  status_page: {path: /x, format: slack, components: [[a]]}\n",
                                         "slack.status_page.components[0]: must be [id, name] (got ['a'])"),
    "status_page_no_components": ("slack:\n  status_page: {path: /x, format: slack, components: []}\n",
                                  "slack.status_page.components: must list at least one component (got [])"),
    "entry_not_a_mapping": ("slack: 50\n", "slack: must be a mapping (got 50)"),
    "vendor_name": ("Slack: {}\n", "Slack: must be a vendor name of lower case letters, digits and '-'"),
    "not_a_mapping": ("- slack\n", "must be a mapping (got ['slack'])"),
}


@pytest.mark.parametrize(("text", "error"), BROKEN.values(), ids=BROKEN.keys())
def test_a_broken_vendors_file_is_one_line_naming_the_file_and_key(tmp_path: Path, text: str, error: str) -> None:
    path = tmp_path / "vendors.yaml"
    path.write_text(text, encoding="utf-8")
    with pytest.raises(ConfigError) as caught:
        load_vendors(path, CONDITIONS, COMMON_SETTINGS)
    assert str(caught.value) == f"{path}: {error}"


def test_broken_yaml_names_the_file_and_line(tmp_path: Path) -> None:
    path = tmp_path / "vendors.yaml"
    path.write_text("slack:\n  prefix: [\n", encoding="utf-8")
    with pytest.raises(ConfigError, match=rf"^{re.escape(str(path))}: line \d+: ") as caught:
        load_vendors(path, CONDITIONS, COMMON_SETTINGS)
    assert "\n" not in str(caught.value)


# --- a class and its entry: what a simulator of its kind reads and needs ---------------------------


def test_a_class_of_a_kind_that_reads_no_window_refuses_an_entry_with_one() -> None:
    with pytest.raises(ConfigError) as caught:
        class _Slack(Simulator, vendor="slack"):
            pass
    assert str(caught.value) == (f"{VENDORS_FILE}: slack.window_limit: is not read by this vendor's simulator (it "
                                 "reads: prefix, condition_codes, extra_settings, default_credentials, status_page)")


def test_a_header_key_class_needs_its_path_and_header() -> None:
    with pytest.raises(ConfigError) as caught:
        class _Slack(HeaderKeySimulator, vendor="slack"):
            pass
    assert str(caught.value) == f"{VENDORS_FILE}: slack.path: is required by this vendor's simulator"


def test_a_class_naming_no_entry_is_refused() -> None:
    with pytest.raises(ConfigError) as caught:
        class _Slak(WindowedSimulator, vendor="slak"):
            pass
    assert str(caught.value).startswith(f"{VENDORS_FILE}: slak: no such vendor entry (a simulator class names it; "
                                        "entries: anthropic, aws-sts, bannersnack, ")


def test_a_class_of_the_right_kind_gets_the_entry() -> None:
    class _Slack(WindowedSimulator, vendor="slack"):
        pass
    assert (_Slack.vendor, _Slack.prefix, _Slack.window_limit) == ("slack", "/api", 50)
    assert _Slack.condition_codes["rate_limited"] == "ratelimited"
