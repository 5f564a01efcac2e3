"""The embedded demo: the vendor simulators on loopback, a config probing them with their demo
credentials, and a scenario that walks them through realistic trouble, so that within about two
minutes every class, dashboard panel and alert has something to show.

The scenario is a timetable of control settings (the simulator conditions of docs/vendors.md), repeated
for ever: a maintenance window, a rate-limit burst, rotated credentials, a clock that drifts, quotas
running out, a slow spell, server errors, a dropped connection, an undocumented code, an expired client
secret and a token endpoint down, and recovery; every built-in vendor has its simulator in it. The
timetable is data, demo.yaml beside this module; the figures that move steadily (quotas running out)
are computed here.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any

from ._yamlnode import Node, load_yaml
from .clock import Clock, FakeClock, SystemClock
from .config import Config, parse_config
from .simulators import SIMULATORS, ControlError, SimulatorSet, start_simulators

__all__ = ["CYCLE", "SCENARIO", "SCENARIO_FILE", "Demo", "Step", "load_scenario", "start_demo"]

log = logging.getLogger(__name__)
GB = 1024**3


@dataclass(frozen=True, slots=True)
class Step:
    at: float  # seconds into the cycle
    vendor: str
    settings: dict[str, Any]
    note: str = ""  # logged when the step starts something a person should notice


#: the scenario's timetable (one cycle, repeated)
SCENARIO_FILE = Path(str(resources.files(__package__).joinpath("demo.yaml")))


def load_scenario(path: Path) -> tuple[float, tuple[Step, ...]]:
    """The cycle's length in seconds and its steps. Each step's settings are checked by the rules of the
    vendor simulator's own control API, on a simulator that never listens, on a clock that never moves:
    a ConfigError of one line naming the file and the step, not a demo that stops half-way through."""
    root = load_yaml(path).mapping(allowed=("cycle", "steps"), required=("cycle", "steps"))
    cycle = root["cycle"].number(1, 86400)
    classes = {cls.vendor: cls for cls in SIMULATORS}
    steps: list[Step] = []
    for vendor, timetable in root["steps"].mapping(allowed=classes).items():
        for node in timetable:
            fields = node.mapping(allowed=("at", "settings", "note"), required=("at", "settings"))
            at = fields["at"].number(0, cycle)
            if at >= cycle:
                fields["at"].fail(f"must be less than the cycle ({cycle:g} s)")
            settings = {key: value.value for key, value in fields["settings"].mapping().items()}
            if not settings:
                fields["settings"].fail("must name at least one control setting")
            try:
                classes[vendor](FakeClock()).control(**settings)
            except ControlError as exc:
                fields["settings"].fail(str(exc), show=False)
            note = fields["note"].text() if "note" in fields else ""
            steps.append(Step(at, vendor, settings, note))
    return cycle, tuple(steps)


CYCLE, SCENARIO = load_scenario(SCENARIO_FILE)
#: how often the slowly moving figures (uploads left, storage used, traffic) change
TICK = 10.0


def _ticks() -> list[Step]:
    """Quotas running out over the cycle: uploads down to 0, storage and traffic filling up, GitHub's hourly
    quota spent, OpenAI's requests a minute used by other traffic."""
    out = []
    ticks = int(CYCLE // TICK)
    for tick in range(ticks):
        part = tick / ticks  # how far into the cycle: the ramps take the same share of any cycle's length
        out.append(Step(tick * TICK, "flipsnack", {"uploads_left": max(0, round(120 - 150 * part))}))
        out.append(Step(tick * TICK, "movingimage", {"traffic_used": round(4000 + 900 * part) * GB}))
        out.append(Step(tick * TICK, "github", {"core_used": round(1000 + 3750 * part)}))
        out.append(Step(tick * TICK, "openai", {"burst": 25}))  # other traffic on the key, a minute in the window
    return out


@dataclass
class Demo:
    config: Config
    simulators: SimulatorSet
    clock: Clock = field(default_factory=SystemClock)
    task: asyncio.Task[None] | None = None

    def start(self) -> None:
        self.task = asyncio.create_task(self._run(), name="demo-scenario")

    async def _run(self) -> None:
        steps = sorted([*SCENARIO, *_ticks()], key=lambda item: item.at)
        cycle = 0
        while True:
            start = self.clock.monotonic()
            for vendor in self.simulators.sims:
                await self.simulators.control(vendor, reset=True)
            if cycle:
                log.info("every vendor healthy again; the scenario starts over")
            for step in steps:
                await self.clock.sleep(start + step.at - self.clock.monotonic())
                await self.simulators.control(step.vendor, **step.settings)
                if step.note:
                    log.info("%s", step.note)
            await self.clock.sleep(start + CYCLE - self.clock.monotonic())
            cycle += 1

    async def close(self) -> None:
        if self.task is not None:
            self.task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self.task
            self.task = None
        await self.simulators.close()


async def start_demo(clock: Clock | None = None, interval: str = "5s", timeout: str = "3s") -> Demo:
    """Start the simulators and the scenario; the returned config probes them."""
    clock = clock or SystemClock()
    sims = await start_simulators(clock=clock)
    try:
        raw = sims.targets_config(interval, status_pages=True, timeout=timeout)
        for target in raw["targets"]:
            target["labels"] = {"env": "demo"}
        # our own way out, as a site would check it (a canary it trusts): here a simulator's control URL
        raw["egress_checks"] = [{"name": "demo-egress", "url": next(iter(sims.control_urls.values())),
                                 "expect_status": [200]}]
        config = parse_config(Node(raw, "<embedded demo>", ""), Path("."), env={})
    except BaseException:
        await sims.close()
        raise
    demo = Demo(config, sims, clock)
    demo.start()
    log.info("%d vendor simulators on %s; the scenario repeats every %d s", len(sims.sims),
             ", ".join(f"{vendor} {url}" for vendor, url in sims.base_urls.items()), CYCLE)
    return demo
