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

from ..conftest import assert_refused_as_written, broken_files


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



@pytest.mark.parametrize("path", broken_files("simulator_vendors"), ids=lambda path: path.stem)
def test_a_broken_vendors_file_is_one_line_naming_the_file_and_key(path: Path) -> None:
    # the cases are files in tests/broken/simulator_vendors, each stating its refusal on its first line
    assert_refused_as_written(path, lambda path: load_vendors(path, CONDITIONS, COMMON_SETTINGS))

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
