"""Memory of the probe history: deep size per entry (in process), and RSS over time while a real
exporter fills its history ring at 10,000 targets with a short interval.

The deep size counts every object reachable from the history (rows, the table of distinct answers and
their strings) and nothing shared with the rest of the process (the target's config, types, modules).
"""

from __future__ import annotations

import gc
import os
import random
import statistics
import sys
import time
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from types import FunctionType, ModuleType
from typing import Any

from .configs import write_config
from .procs import Proc, exporter, get, nginx, rss_mb, workdir

__all__ = ["DeepSize", "MemoryRun", "deep_size", "history_bytes_per_entry", "run_memory"]


def deep_size(roots: Iterable[Any], exclude: Iterable[Any] = ()) -> int:
    """Bytes of ``roots`` and everything they reach, each object counted once; types, modules,
    functions, ``exclude`` and everything it reaches are not counted."""
    seen: set[int] = set()
    _walk(exclude, seen)
    return _walk(roots, seen)


def _walk(roots: Iterable[Any], seen: set[int]) -> int:
    stack = list(roots)
    total = 0
    while stack:
        obj = stack.pop()
        if id(obj) in seen or isinstance(obj, type | ModuleType | FunctionType):
            continue
        seen.add(id(obj))
        total += sys.getsizeof(obj)
        stack.extend(gc.get_referents(obj))
    return total


@dataclass(frozen=True)
class DeepSize:
    case: str
    entries: int
    bytes_per_entry: float


def _results(n: int, varied: bool, failures: float, seed: int = 1) -> list[Any]:
    """A flipsnack-like stream: the redacted request line and body excerpt of a real probe, durations
    and start times that differ each probe; ``varied``: every body differs (a request id in it)."""
    from exporter.classify import Outcome, QuotaReading
    from exporter.probe import ProbeResult

    rng = random.Random(seed)
    line = ("GET http://127.0.0.1:8080/?action=user.getStats&apiKey=<redacted>&timestamp=<redacted>"
            "&signature=<redacted>")
    out = []
    for i in range(n):
        failed = rng.random() < failures
        body = '{"code":20,"status":"OK","data":{"api_uploads_left":900}}'
        if varied:
            body = body[:-1] + f',"request_id":"{rng.getrandbits(64):016x}"}}'
        quota = (QuotaReading("uploads", 900.0 - (i % 3), None),)
        outcome = (Outcome("server_error", "50", "internal error", 500, retry_after=30.0) if failed
                   else Outcome("ok", "20", "OK", 200, quotas=quota))
        # fresh strings each probe, as the prober makes them
        out.append(ProbeResult("t00001", 1.7e9 + 15 * i, rng.uniform(0.001, 0.2), outcome, "".join(line),
                               "".join(body), 1, 1))
    return out


def history_bytes_per_entry(history: int = 50, cases: tuple[str, ...] = ("same answer", "5% failures",
                                                                          "every body differs")) -> list[DeepSize]:
    """Deep size of a full history divided by the entries it shows (probes plus older failures)."""
    from exporter._yamlnode import Node
    from exporter.config import parse_config
    from exporter.state import State

    cfg = parse_config(Node({"global": {"history": history}, "targets": [
        {"name": "t00001", "vendor": "flipsnack", "base_url": "http://127.0.0.1:8080",
         "credentials": {"api_key": "k" * 12, "secret": "s" * 12}}]}, "bench.yml", ""), Path("."), {})
    out = []
    for case in cases:
        state = State(history=history)
        state.sync(cfg.targets)
        ts = state.get("t00001")
        assert ts is not None
        shared = [ts.target]
        for result in _results(history * 4, varied=case == "every body differs",
                               failures=0.05 if case == "5% failures" else 0.0):
            state.record(result, 0.0, 0.0)
        entries = len(ts.history())
        # what the history holds, apart from the config and the latest result (kept for /metrics anyway)
        held = [getattr(ts, name) for name in ("_answers", "_recent", "_older_failures")]
        out.append(DeepSize(case, entries, deep_size(held, exclude=shared) / entries))
    return out


@dataclass
class MemoryRun:
    targets: int
    interval: float
    history: int
    seconds: float
    #: (seconds since start, RSS MB, probes done) every sample
    samples: list[tuple[float, float, int]] = field(default_factory=list)
    deep: list[DeepSize] = field(default_factory=list)

    @property
    def full_at(self) -> float:
        """Seconds after start when every target had probed ``history`` times (the ring full)."""
        need = self.targets * self.history
        return next((t for t, _, done in self.samples if done >= need), float("nan"))

    @property
    def end_rss(self) -> float:
        return statistics.median(rss for _, rss, _ in self.samples[-3:]) if self.samples else float("nan")


def _probes_done(port: int) -> int:
    status, body = get(f"http://127.0.0.1:{port}/metrics", timeout=30)
    if status != 200:
        return 0
    total = 0
    for line in body.decode().splitlines():
        if line.startswith("apistatus_request_duration_seconds_count{"):
            total += int(float(line.rsplit(" ", 1)[1]))
    return total


def run_memory(targets: int = 10000, interval: float = 2.0, history: int = 50, seconds: float = 480.0,
               every: float = 10.0, root: Path | None = None) -> MemoryRun:
    """A real exporter process probes ``targets`` every ``interval`` until the ring is full, sampling
    RSS (and, from /metrics, the probes done) every ``every`` seconds. The interval is shorter than
    the exporter can keep at 10,000 targets: it then probes as fast as it can, filling the ring in
    minutes. ``root``: run the exporter package found there (another revision's, see bench.versus)
    instead of this checkout's."""
    run = MemoryRun(targets, interval, history, seconds)
    run.deep = history_bytes_per_entry(history)
    with workdir() as dir_, nginx(dir_) as urls:
        cfg = write_config(dir_ / "memory.yml", urls, targets, interval, min(5.0, interval),
                           max_concurrency=max(100, targets // 20))
        text = cfg.read_text().replace("global:\n", f"global:\n  history: {history}\n", 1)
        cfg.write_text(text, encoding="utf-8")
        with exporter(dir_, cfg, root=root) as proc:
            _sample(run, proc, seconds, every)
    return run


def _sample(run: MemoryRun, proc: Proc, seconds: float, every: float) -> None:
    t0 = time.monotonic()
    need = run.targets * run.history
    while (elapsed := time.monotonic() - t0) < seconds:
        done = _probes_done(proc.port)
        run.samples.append((round(elapsed, 1), rss_mb(proc.pid), done))
        # two samples after the ring is full: the figure at "full", not while it fills
        if len([s for s in run.samples if s[2] >= need]) >= 3:
            break
        time.sleep(max(0.0, every - (time.monotonic() - t0 - elapsed)))


if __name__ == "__main__":
    for row in history_bytes_per_entry(int(os.environ.get("HISTORY", "50"))):
        print(f"{row.case}: {row.entries} entries, {row.bytes_per_entry:.1f} B per entry")
    if len(sys.argv) > 1:
        print(run_memory(int(sys.argv[1]), seconds=float(sys.argv[2]) if len(sys.argv) > 2 else 90.0))
