"""A reload runs in a worker thread that may be given up while it still runs: it must not switch the
process's cyclic garbage collector off for the event loop meanwhile (start-up may: nothing else runs)."""

from __future__ import annotations

import asyncio
import gc
import threading
from pathlib import Path
from typing import Any

import pytest

from exporter import config as config_module
from exporter.clock import FakeClock
from exporter.config import load_config

from ..conftest import config_from, running_exporter


async def test_a_slow_reload_leaves_the_collector_on_for_the_event_loop(tmp_path: Path,
                                                                        monkeypatch: pytest.MonkeyPatch) -> None:
    path = tmp_path / "config.yml"
    path.write_text("targets: []\n")
    entered, release = threading.Event(), threading.Event()
    real = config_module.parse_config

    def slow(*args: Any, **kw: Any) -> Any:
        entered.set()
        release.wait(10)  # a load that takes long (a huge file, a slow disk)
        return real(*args, **kw)

    monkeypatch.setattr(config_module, "parse_config", slow)
    assert gc.isenabled()
    async with running_exporter(config_from({"targets": []}), clock=FakeClock(),
                                loader=lambda: load_config(path)) as run:
        reload = asyncio.create_task(run.exporter.reload())
        try:
            for _ in range(500):
                if entered.is_set():
                    break
                await asyncio.sleep(0.01)
            assert entered.is_set()
            assert gc.isenabled()  # the event loop's cycles are still collected
        finally:
            release.set()
            assert (await reload)[0]
    assert gc.isenabled()
