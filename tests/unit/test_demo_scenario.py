"""The demo's timetable is data (exporter/demo.yaml): it loads, it gives every built-in vendor its
trouble, and a mistake in it is a one-line error naming the file and the step, checked by the same rules
as the simulators' control API, before a demo runs."""

from __future__ import annotations

import inspect
from dataclasses import dataclass
from pathlib import Path

import pytest

from exporter._yamlnode import parse_duration
from exporter.demo import CYCLE, SCENARIO, SCENARIO_FILE, load_scenario, start_demo
from exporter.simulators import SIMULATORS
from exporter.vendorstatus import FETCH_EVERY

from ..conftest import assert_refused_as_written, broken_files


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




@pytest.mark.parametrize("path", broken_files("demo"), ids=lambda path: path.stem)
def test_a_broken_timetable_is_one_line_naming_the_file_and_step(path: Path) -> None:
    # the cases are files in tests/broken/demo, each stating its refusal on its first line
    assert_refused_as_written(path, load_scenario)

@dataclass(frozen=True)
class Episode:
    """A failure the timetable injects: from the step with its note to the step that changes any of the
    settings it switched on (or the end of the cycle, where every simulator is reset)."""

    vendor: str
    start: float
    end: float
    note: str


@dataclass(frozen=True)
class Declaration:
    """A status-page incident or maintenance: from the step that sets it to the step that clears it."""

    vendor: str
    key: str
    start: float
    end: float


def episodes() -> list[Episode]:
    out = []
    for step in SCENARIO:
        if step.note:
            later = sorted((s for s in SCENARIO if s.vendor == step.vendor and s.at > step.at), key=lambda s: s.at)
            end = next((s.at for s in later if any(k in step.settings and v != step.settings[k]
                                                   for k, v in s.settings.items())), CYCLE)
            out.append(Episode(step.vendor, step.at, end, step.note))
    return out


def declarations() -> list[Declaration]:
    out = []
    for step in SCENARIO:
        for key in ("status_incident", "status_maintenance"):
            if step.settings.get(key):
                later = sorted((s for s in SCENARIO if s.vendor == step.vendor and s.at > step.at), key=lambda s: s.at)
                end = next((s.at for s in later if key in s.settings and not s.settings[key]), CYCLE)
                out.append(Declaration(step.vendor, key, step.at, end))
    return out


def overlap(a: tuple[float, float], b: tuple[float, float]) -> bool:
    """Whether two spans of time meet, the cycle repeating for ever (a span may run into the next cycle)."""
    return any(a[0] <= b[1] + shift and b[0] + shift <= a[1] for shift in (-CYCLE, 0.0, CYCLE))


#: the demo's probe interval (start_demo's default)
INTERVAL = parse_duration(inspect.signature(start_demo).parameters["interval"].default) or 0.0
#: a read may come a little after its minute (the read loop's own wake-up); one probe interval is ample
READ_LATE = INTERVAL
#: a failing answer stands until the target's next probe: after a spell of the demo's length (25 s at
#: most) a back-off puts that up to 4 intervals (plus jitter) after the last failing probe, a
#: Retry-After up to its seconds (checked below)
LINGER = 5 * INTERVAL


def test_the_demo_keeps_to_what_the_rules_assume_of_it() -> None:
    assert INTERVAL > 0
    assert overlap((290, 310), (5, 8)) and overlap((5, 8), (290, 310)) and not overlap((290, 304), (5, 8))
    assert max((e.end - e.start for e in episodes()), default=0) <= LINGER
    assert all(s.settings.get("retry_after", 0) <= LINGER for s in SCENARIO)


def test_every_failure_the_demo_says_its_vendor_declared_is_confirmed_whenever_the_page_is_read() -> None:
    # A status page is read once every FETCH_EVERY seconds, at a moment the demo does not choose (when the
    # exporter started, a reload), and what a read saw stands until the next read. So, whatever the moment
    # of the reads:
    # - a declaration starts at least one read period before its failure, so a read has seen it before the
    #   failure's first probe: every failing probe shows "vendor confirms";
    # - it is cleared no sooner than the failure's last failing answer may stand, or a read between shows
    #   that answer beside "vendor reports operational";
    # - no other failure of the vendor is on (its last answer included) from the declaration's start until
    #   a read period after its clearing (the read before clearing stands that long), the next cycle's
    #   included: else that failure shows "vendor confirms" the incident of another.
    declared = declarations()
    assert {d.vendor for d in declared} >= {"anthropic", "datadog", "github", "openai", "slack"}
    wrong = []
    for dec in declared:
        mine = [e for e in episodes() if e.vendor == dec.vendor]
        covered = [e for e in mine if dec.start <= e.start < dec.end]
        if len(covered) != 1:
            wrong.append(f"{dec.vendor}: {dec.key} from {dec.start:g} to {dec.end:g} s covers {len(covered)} failures")
            continue
        failure = covered[0]
        if failure.start < dec.start + FETCH_EVERY + READ_LATE:
            wrong.append(f"{dec.vendor}: {dec.key} at {dec.start:g} s, {failure.note!r} at {failure.start:g} s: "
                         f"less than a read period ({FETCH_EVERY:g} s) before it")
        if dec.end < failure.end + LINGER:
            wrong.append(f"{dec.vendor}: {dec.key} cleared at {dec.end:g} s, {failure.note!r} until "
                         f"{failure.end:g} s: its last failing answer may stand until {failure.end + LINGER:g} s")
        window = (dec.start, dec.end + FETCH_EVERY + READ_LATE)
        for other in mine:
            if other != failure and overlap(window, (other.start, other.end + LINGER)):
                wrong.append(f"{dec.vendor}: {dec.key} may be read from {window[0]:g} to {window[1]:g} s, "
                             f"{other.note!r} from {other.start:g} to {other.end:g} s shows it")
    assert not wrong, wrong


def test_an_episode_is_what_the_timetable_says() -> None:
    """The rules above stand on this reading of the timetable: a failure ends at the step that changes a
    setting it switched, a declaration at the step that clears it."""
    github = {(e.start, e.end) for e in episodes() if e.vendor == "github"}
    gh = sorted((s for s in SCENARIO if s.vendor == "github"), key=lambda s: s.at)
    assert len(github) == sum(1 for s in gh if s.note) and all(end < CYCLE for _, end in github)
    flipsnack = sorted((e.start, e.end) for e in episodes() if e.vendor == "flipsnack")
    # an undocumented code, then (the same step ends it) a dropped connection
    assert flipsnack[-2][1] == flipsnack[-1][0]
    assert all(e.end < CYCLE for e in episodes())  # every episode ends within its cycle
    assert all(d.end < CYCLE for d in declarations())
