"""Targets that get the same answer keep one copy of its text (state.py interns it), and a reload that
drops them frees it: sharing never keeps memory alive for targets that are gone."""

from __future__ import annotations

import gc
import tracemalloc
from pathlib import Path

from exporter import state as state_module
from exporter._yamlnode import Node
from exporter.classify import Outcome
from exporter.config import Target, parse_config
from exporter.probe import ProbeResult
from exporter.state import State


def _targets(n: int) -> list[Target]:
    cfg = parse_config(Node({"targets": [
        {"name": f"t{i}", "vendor": "flipsnack", "base_url": "http://127.0.0.1:9",
         "credentials": {"api_key": f"key-{i:04d}", "secret": f"secret-{i:04d}"}} for i in range(n)]},
        "t.yml", ""), Path("."), {})
    return list(cfg.targets)


def _result(name: str, i: int, body_id: str = "") -> ProbeResult:
    # fresh, equal strings for every target and probe, as the prober and the classifier make them
    code, line = "".join(["2", "0"]), "".join(["GET http://127.0.0.1:9/?action=user.getStats", "&apiKey=<redacted>"])
    body = "".join(['{"code":20,"status":"OK"', body_id, "}"])
    return ProbeResult(name, 1000.0 + 15 * i, 0.01, Outcome("ok", code, "".join(["O", "K"]), 200), line, body)


def test_targets_with_the_same_answer_keep_one_copy_of_its_text() -> None:
    targets = _targets(50)
    state = State(history=5)
    state.sync(targets)
    for i in range(8):
        for t in targets:
            state.record(_result(t.name, i), 0, 0)
    entries = [e for ts in state for e in ts.history()]
    assert len(entries) == 50 * 5
    for part in ("excerpt", "request_line", "code", "message"):
        assert len({id(getattr(e, part)) for e in entries}) == 1, part
    # what the pages show is unchanged by the sharing
    assert {(e.code, e.message, e.excerpt) for e in entries} == {("20", "OK", '{"code":20,"status":"OK"}')}


def test_a_reload_that_drops_targets_frees_their_answers() -> None:
    targets = _targets(100)
    # the interpreter's table of interned text is not the exporter's: it grows in steps, at any time
    # (a new block of megabytes), and sys.intern, which grows it, allocates nothing else
    intern_line = state_module._intern.__code__.co_firstlineno + 1
    mine = [tracemalloc.Filter(True, "*/exporter/*"), tracemalloc.Filter(True, __file__),
            tracemalloc.Filter(False, state_module.__file__, intern_line)]
    tracemalloc.start()
    try:
        state = State(history=20)

        def fill(tag: str) -> None:
            state.sync(targets)
            for i in range(20):
                for t in targets:  # every answer its own text: nothing to share, all of it to free
                    state.record(_result(t.name, i, f',"id":"{tag}{t.name}-{i}"'), 0, 0)

        # once before measuring: the interpreter's table of interned text keeps the size it grew to
        # (a slot per text alive at once), the text itself goes
        fill("warm-up")
        state.sync(targets[:1])
        gc.collect()
        before = tracemalloc.take_snapshot().filter_traces(mine)
        fill("")
        gc.collect()
        full = tracemalloc.take_snapshot().filter_traces(mine)
        state.sync(targets[:1])
        gc.collect()
        after = tracemalloc.take_snapshot().filter_traces(mine)
    finally:
        tracemalloc.stop()
    held = sum(stat.size_diff for stat in full.compare_to(before, "filename"))
    left = sum(stat.size_diff for stat in after.compare_to(before, "filename"))
    assert held > 100 * 20 * 40  # 100 targets' full histories of distinct answers were held
    top = [str(stat) for stat in after.compare_to(before, "lineno")[:5]]
    assert left < held / 20, (held, left, top)  # and went with the targets (the one kept target's included)
