"""The demo's timetable is data (exporter/demo.yaml): it loads, it gives every built-in vendor its
trouble, and a mistake in it is a one-line error naming the file and the step, checked by the same rules
as the simulators' control API, before a demo runs."""

from __future__ import annotations

from pathlib import Path

import pytest

from exporter.demo import CYCLE, SCENARIO, SCENARIO_FILE, load_scenario
from exporter.model import ConfigError
from exporter.simulators import SIMULATORS


def test_the_shipped_timetable_loads_with_every_vendor_in_it() -> None:
    cycle, steps = load_scenario(SCENARIO_FILE)
    assert (cycle, steps) == (CYCLE, SCENARIO)
    assert {step.vendor for step in steps} == {cls.vendor for cls in SIMULATORS}
    assert all(0 <= step.at < cycle for step in steps)
    # each vendor gets into trouble with a note a person can read in the log
    assert {step.vendor for step in steps if step.note} == {cls.vendor for cls in SIMULATORS}


def test_a_steps_settings_are_those_written() -> None:
    bizwebs = [step for step in SCENARIO if step.vendor == "bizwebs"]
    assert (bizwebs[0].at, bizwebs[0].settings, bizwebs[0].note) == (
        10.0, {"maintenance": True, "retry_after": 10}, "Bizwebs: maintenance window")
    flipsnack = {step.at: step.settings for step in SCENARIO if step.vendor == "flipsnack"}
    assert flipsnack[100.0] == {"code": None, "down": True}


BROKEN = {
    "unknown_vendor": ("cycle: 150\nsteps:\n  slak:\n    - {at: 5, settings: {maintenance: true}}\n",
                       "steps.slak: unknown key (allowed: anthropic, aws-sts, bannersnack, bizwebs, cloudflare, "
                       "datadog, flipsnack, github, movingimage, msgraph, openai, pagerduty, rubiq, sendgrid, slack, "
                       "stripe, twilio)"),
    "unknown_setting": ("cycle: 150\nsteps:\n  slack:\n    - {at: 5, settings: {maintenace: true}}\n",
                        "steps.slack[0].settings: slack: unknown control setting 'maintenace' (known: "),
    "setting_of_the_wrong_kind": ("cycle: 150\nsteps:\n  slack:\n    - {at: 5, settings: {maintenance: 'yes'}}\n",
                                  "steps.slack[0].settings: slack: maintenance must be true or false, got 'yes'"),
    "condition_without_a_signal": ("cycle: 150\nsteps:\n  rubiq:\n    - {at: 5, settings: {maintenance: true}}\n",
                                   "steps.rubiq[0].settings: rubiq: the vendor documents no signal for maintenance"),
    "at_past_the_cycle": ("cycle: 150\nsteps:\n  slack:\n    - {at: 150, settings: {maintenance: true}}\n",
                          "steps.slack[0].at: must be less than the cycle (150 s) (got 150)"),
    "no_settings": ("cycle: 150\nsteps:\n  slack:\n    - {at: 5, settings: {}}\n",
                    "steps.slack[0].settings: must name at least one control setting (got {})"),
    "settings_missing": ("cycle: 150\nsteps:\n  slack:\n    - {at: 5, note: slow}\n",
                         "steps.slack[0].settings: is required"),
    "key_typo": ("cycle: 150\nsteps:\n  slack:\n    - {at: 5, setings: {maintenance: true}}\n",
                 "steps.slack[0].setings: unknown key (allowed: at, note, settings)"),
    "steps_not_a_list": ("cycle: 150\nsteps:\n  slack: {at: 5}\n", "steps.slack: must be a list (got {at: 5})"),
    "cycle_missing": ("steps: {}\n", "cycle: is required"),
}


@pytest.mark.parametrize(("text", "error"), BROKEN.values(), ids=BROKEN.keys())
def test_a_broken_timetable_is_one_line_naming_the_file_and_step(tmp_path: Path, text: str, error: str) -> None:
    path = tmp_path / "demo.yaml"
    path.write_text(text, encoding="utf-8")
    with pytest.raises(ConfigError) as caught:
        load_scenario(path)
    message = str(caught.value)
    if error.endswith("(known: "):  # the list of settings is the simulator's to extend
        assert message.startswith(f"{path}: {error}") and "\n" not in message, message
    else:
        assert message == f"{path}: {error}"
