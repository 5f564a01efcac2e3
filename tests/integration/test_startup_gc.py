"""Start-up pauses the cyclic garbage collector (nothing is garbage while the config and the states
are built) and must hand it back: on once the exporter listens, on after a start-up that fails, and
what start-up froze out of collections unfrozen by the first reload, so that what a reload replaces
can be collected."""

from __future__ import annotations

import asyncio
import gc
import os
import signal
from collections.abc import Iterator
from pathlib import Path

import aiohttp
import pytest

from exporter.__main__ import build_parser, main, serve
from exporter.gcpolicy import GC

from ..conftest import free_port


@pytest.fixture(autouse=True)
def _collector_restored() -> Iterator[None]:
    yield
    gc.unfreeze()
    gc.enable()


async def _until_metrics(url: str, task: asyncio.Task[int]) -> None:
    async with aiohttp.ClientSession() as session:
        for _ in range(500):
            assert not task.done(), "the exporter stopped before it answered"
            try:
                async with session.get(url) as resp:
                    if resp.status == 200:
                        return
            except aiohttp.ClientError:
                pass
            await asyncio.sleep(0.01)
    raise AssertionError("no /metrics within 5 s")


async def test_the_collector_is_on_once_the_exporter_listens_and_a_reload_unfreezes(tmp_path: Path) -> None:
    cfg = tmp_path / "config.yml"
    cfg.write_text("targets: []\n")
    port = free_port()
    args = build_parser().parse_args(["--config.file", str(cfg), "--web.listen-address", f"127.0.0.1:{port}",
                                      "--log.level", "error"])
    task = asyncio.create_task(serve(args))
    await asyncio.sleep(0)  # serve has started: the collector is paused for the start-up
    assert not gc.isenabled()
    await _until_metrics(f"http://127.0.0.1:{port}/metrics", task)
    assert gc.isenabled()
    assert gc.get_freeze_count() > 0  # what start-up built is left out of collections
    os.kill(os.getpid(), signal.SIGHUP)  # a reload
    for _ in range(500):
        if gc.get_freeze_count() == 0:
            break
        await asyncio.sleep(0.01)
    assert gc.get_freeze_count() == 0
    os.kill(os.getpid(), signal.SIGTERM)
    assert await asyncio.wait_for(task, 5) == 0
    assert gc.isenabled() and not GC.paused


async def test_a_start_up_that_fails_hands_the_collector_back(tmp_path: Path) -> None:
    cfg = tmp_path / "config.yml"
    cfg.write_text("targets: [{name: a}]\n")  # no vendor: refused
    args = build_parser().parse_args(["--config.file", str(cfg), "--web.listen-address", f"127.0.0.1:{free_port()}",
                                      "--log.level", "error"])
    assert await serve(args) == 1
    assert gc.isenabled() and gc.get_freeze_count() == 0 and not GC.paused


def test_other_commands_run_with_the_collector_on(capsys: pytest.CaptureFixture[str],
                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    """As the program, the collector is paused before the imports; every command but serving resumes it
    (the simulators run for long)."""
    for argv in (["config", "example", "flipsnack"], ["--config.check", "--config.file", "/nonexistent.yml"]):
        gc.disable()
        monkeypatch.setattr(GC, "paused", True)
        main(argv)
        assert gc.isenabled() and not GC.paused, argv
    capsys.readouterr()
