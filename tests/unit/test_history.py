"""The probe history kept per target (state.py): what the status page and /api/v1 show of it, and that
it stays bounded in memory however the answers vary."""

from __future__ import annotations

import functools
import gc
import random
import tracemalloc
from collections import deque
from pathlib import Path

import pytest

from exporter import state as state_module
from exporter._yamlnode import Node
from exporter.classify import Outcome
from exporter.config import Target, parse_config
from exporter.probe import ProbeResult
from exporter.state import State, TargetState

FAILURE = "server_error"


@functools.cache  # a Target is frozen: one per size serves every test (a load parses every catalog)
def _target(history: int = 50) -> Target:
    cfg = parse_config(Node({"global": {"history": history}, "targets": [
        {"name": "a", "vendor": "flipsnack", "base_url": "http://127.0.0.1:9",
         "credentials": {"api_key": "key-1234", "secret": "secret-1234"}}]}, "t.yml", ""), Path("."), {})
    return cfg.targets[0]


def _stream(n: int, seed: int, fail_share: float = 0.3, bodies: int = 3) -> list[ProbeResult]:
    rng = random.Random(seed)
    out = []
    for i in range(n):
        failed = rng.random() < fail_share
        outcome = (Outcome(FAILURE, "50", "internal error", 500, retry_after=rng.choice([None, 30.0, 12.5]))
                   if failed else Outcome("ok", "20", "OK", 200))
        out.append(ProbeResult("a", 1000.0 + i * 15 + rng.random(), rng.uniform(0.001, 9.0), outcome,
                               f"GET http://127.0.0.1:9/?n={rng.randrange(bodies)}",
                               f'{{"code":{outcome.code},"id":{rng.randrange(bodies)}}}', rng.choice([1, 1, 2])))
    return out


class _Reference:
    """The history as it was specified before it was kept in columns: the last N probes and the last N
    failures, merged, newest first."""

    def __init__(self, size: int) -> None:
        self.recent: deque[ProbeResult] = deque(maxlen=size)
        self.failures: deque[ProbeResult] = deque(maxlen=size)

    def record(self, result: ProbeResult) -> None:
        self.recent.append(result)
        if result.outcome.cls == FAILURE:
            self.failures.append(result)

    def resize(self, size: int) -> None:
        self.recent, self.failures = deque(self.recent, maxlen=size), deque(self.failures, maxlen=size)

    def shown(self) -> list[tuple[object, ...]]:
        seen = {id(r) for r in self.recent}
        merged = list(self.recent) + [r for r in self.failures if id(r) not in seen]
        merged.sort(key=lambda r: r.started, reverse=True)
        return [(round(r.started, 3), round(r.duration, 4), r.outcome.cls, r.outcome.code, r.outcome.message,
                 r.outcome.http_status, r.outcome.retry_after, r.attempts, r.request_line, r.excerpt) for r in merged]


def _shown(ts: TargetState) -> list[tuple[object, ...]]:
    return [(round(e.started, 3), round(e.duration, 4), e.cls, e.code, e.message, e.http_status, e.retry_after,
             e.attempts, e.request_line, e.excerpt) for e in ts.history()]


@pytest.mark.parametrize("seed", range(8))
@pytest.mark.parametrize("size", [1, 2, 5, 50])
def test_history_shows_the_last_probes_and_the_last_failures(seed: int, size: int) -> None:
    state, ref = State(history=size), _Reference(size)
    target = _target(size)
    state.sync([target])
    for result in _stream(size * 6 + 7, seed):
        state.record(result, 0, 0)
        ref.record(result)
        ts = state.get("a")
        assert ts is not None and _shown(ts) == ref.shown()


@pytest.mark.parametrize("seed", range(6))
def test_a_reload_that_resizes_the_history_keeps_what_was_shown(seed: int) -> None:
    rng = random.Random(seed)
    size = 10
    state, ref = State(history=size), _Reference(size)
    target = _target(size)
    state.sync([target])
    for step, result in enumerate(_stream(400, seed, fail_share=rng.choice([0.1, 0.5, 0.9]))):
        if step % 37 == 36:
            size = rng.choice([1, 3, 10, 25])
            state.sync([target], history=size)
            ref.resize(size)
        state.record(result, 0, 0)
        ref.record(result)
        ts = state.get("a")
        assert ts is not None and _shown(ts) == ref.shown(), f"step {step}, size {size}"


def test_history_memory_stays_bounded_when_every_answer_differs() -> None:
    state = State(history=20)
    state.sync([_target(20)])
    # only what this test and the exporter allocate: threads left behind by other tests in the same
    # process (a timed-out file read) must not count
    # and not the interpreter's table of interned text either: it grows in steps at any time (a new block
    # of megabytes, charged to the line that calls sys.intern), and keeps no text of its own
    intern_line = state_module._intern.__code__.co_firstlineno + 1
    mine = [tracemalloc.Filter(True, "*/exporter/*"), tracemalloc.Filter(True, __file__),
            tracemalloc.Filter(False, state_module.__file__, intern_line)]
    tracemalloc.start()
    try:
        for result in _stream(400, 1, bodies=10**9):
            state.record(result, 0, 0)
        gc.collect()
        before = tracemalloc.take_snapshot().filter_traces(mine)
        for result in _stream(2000, 2, bodies=10**9):
            state.record(result, 0, 0)
        gc.collect()
        after = tracemalloc.take_snapshot().filter_traces(mine)
        grown = sum(stat.size_diff for stat in after.compare_to(before, "filename"))
    finally:
        tracemalloc.stop()
    ts = state.get("a")
    assert ts is not None and 20 <= len(ts.history()) <= 40
    # 2,000 more distinct answers of ~60 bytes each would be well over 100 KB if any were kept
    assert grown < 16_000, grown


def test_a_full_history_costs_a_few_dozen_bytes_an_entry() -> None:
    from bench.memory import history_bytes_per_entry

    (same,) = history_bytes_per_entry(50, cases=("same answer",))
    assert same.entries == 50 and same.bytes_per_entry <= 48, same
