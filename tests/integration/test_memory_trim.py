"""The exporter hands the C allocator's free memory back to the system once the first probes after a
start or a reload have run, and right after a reload; the call is real (glibc's malloc_trim) and
harmless: probing and scraping go on, a failed reload changes nothing."""

from __future__ import annotations

import asyncio
import gc
from pathlib import Path
from typing import Any

import pytest
from aiohttp import web

from exporter import app as app_module
from exporter.app import FIRST_ROUND_SPREAD, release_free_memory
from exporter.clock import FakeClock
from exporter.config import load_config

from ..conftest import serve_app


def _rss_kb() -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    raise AssertionError("no VmRSS in /proc/self/status")


def test_release_free_memory_gives_freed_heap_back_to_the_system() -> None:
    # blocks above pymalloc's limit come from malloc; freeing nine in ten leaves holes of many pages
    # in the heap that free() keeps and only malloc_trim hands back
    blocks = [bytes(4000) + bytes([i % 256]) for i in range(20_000)]
    kept = blocks[::10]
    del blocks
    before = _rss_kb()
    assert release_free_memory()
    after = _rss_kb()
    assert len(kept) == 2000
    assert before - after > 20_000, (before, after)  # most of the ~70 MB freed, not a rounding error
    assert release_free_memory()  # again, with nothing left to give: still fine


def _config(path: Path, base_url: str, timeout: str = "2s", extra: str = "") -> None:
    path.write_text(f"global:\n  interval: 30s\n  timeout: {timeout}\n{extra}targets:\n"
                    f"  - {{name: a, vendor: github, base_url: '{base_url}', credentials: {{token: tok-a-123456}}}}\n"
                    f"  - {{name: b, vendor: github, base_url: '{base_url}', credentials: {{token: tok-b-123456}}}}\n")


async def test_trims_after_the_first_round_and_after_a_reload_and_keeps_probing(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    calls: list[float] = []
    clock = FakeClock()

    def counted() -> bool:
        calls.append(clock.monotonic())
        return release_free_memory()  # the real call: it must not disturb anything that follows

    monkeypatch.setattr(app_module, "release_free_memory", counted)
    hits = 0

    async def ok(_: web.Request) -> web.Response:
        nonlocal hits
        hits += 1
        return web.json_response({"resources": {"core": {"limit": 5000, "remaining": 4999}}})

    upstream = web.Application()
    upstream.router.add_get("/{tail:.*}", ok)
    path = tmp_path / "config.yml"
    async with serve_app(upstream) as base_url:
        _config(path, base_url)
        exp = app_module.Exporter(load_config(path), path, clock=clock, loader=lambda: load_config(path))
        await exp.start()
        try:
            first_round = FIRST_ROUND_SPREAD + 2.0 + 1.0  # the spread, the timeout, a second
            await clock.advance(first_round - 0.5)
            assert calls == []
            await clock.advance(1.0)
            assert calls == [pytest.approx(first_round)]
            assert all(ts.last is not None and ts.last.outcome.cls == "ok" for ts in exp.state)

            _config(path, base_url, timeout="3s")
            ok_, _ = await exp.reload()
            assert ok_ and len(calls) == 2  # at once: what the load thread and the old config freed
            reloaded = clock.monotonic()
            await clock.advance(FIRST_ROUND_SPREAD + 3.0 + 1.5)
            assert calls[2:] == [pytest.approx(reloaded + FIRST_ROUND_SPREAD + 3.0 + 1.0)]

            path.write_text("targets: [oops\n")  # a reload that fails: nothing replaced, no trim
            ok_, _ = await exp.reload()
            assert not ok_ and len(calls) == 3

            probed = hits
            await clock.advance(40.0)  # every target's next interval
            for _ in range(200):
                if hits >= probed + 2:
                    break
                await asyncio.sleep(0.01)
            assert hits >= probed + 2  # probing goes on after the trims
            assert len(calls) == 3
        finally:
            await exp.close()


async def test_close_before_the_first_round_calls_the_trim_off(monkeypatch: pytest.MonkeyPatch,
                                                                tmp_path: Path) -> None:
    calls: list[Any] = []
    monkeypatch.setattr(app_module, "release_free_memory", lambda: calls.append(1))
    clock = FakeClock()
    path = tmp_path / "config.yml"
    _config(path, "http://127.0.0.1:9")
    exp = app_module.Exporter(load_config(path), path, clock=clock)
    await exp.start()
    await exp.close()
    await clock.advance(60.0)
    assert calls == []


async def test_what_the_first_round_builds_is_frozen_out_of_full_collections_until_a_reload(
        tmp_path: Path) -> None:
    async def ok(_: web.Request) -> web.Response:
        return web.json_response({"resources": {"core": {"limit": 5000, "remaining": 4999}}})

    upstream = web.Application()
    upstream.router.add_get("/{tail:.*}", ok)
    path = tmp_path / "config.yml"
    clock = FakeClock()
    gc.unfreeze()
    async with serve_app(upstream) as base_url:
        _config(path, base_url)
        exp = app_module.Exporter(load_config(path), path, clock=clock, loader=lambda: load_config(path))
        exp.freeze_after_first_round = True  # as the exporter's own process sets it
        await exp.start()
        try:
            first_round = FIRST_ROUND_SPREAD + 2.0 + 1.0
            await clock.advance(first_round - 0.5)
            assert gc.get_freeze_count() == 0
            await clock.advance(1.0)
            assert all(ts.last is not None and ts.last.outcome.cls == "ok" for ts in exp.state)
            assert gc.get_freeze_count() > 0  # the targets' states, caches and connections among them
            ok_, _ = await exp.reload()
            assert ok_ and gc.get_freeze_count() == 0  # what the reload replaced can be collected
            await clock.advance(FIRST_ROUND_SPREAD + 2.0 + 1.5)
            assert gc.get_freeze_count() > 0  # and the new first round is frozen in turn
        finally:
            await exp.close()
            gc.unfreeze()  # the rest of this test process collects as usual


async def test_without_the_process_asking_nothing_is_frozen(tmp_path: Path) -> None:
    path = tmp_path / "config.yml"
    _config(path, "http://127.0.0.1:9")
    clock = FakeClock()
    gc.unfreeze()
    exp = app_module.Exporter(load_config(path), path, clock=clock)
    await exp.start()
    try:
        await clock.advance(FIRST_ROUND_SPREAD + 4.0)
        assert gc.get_freeze_count() == 0  # a library user's heap is theirs
    finally:
        await exp.close()
