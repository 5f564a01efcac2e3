"""Start-up: from process start (exec of ``python3 -m exporter``) to the first 200 on /metrics."""

from __future__ import annotations

import statistics
import subprocess
import time
from dataclasses import dataclass

from .configs import write_config
from .procs import ProcError, exporter_argv, exporter_env, free_port, get, nginx, workdir

__all__ = ["StartupResult", "run_startup"]


@dataclass(frozen=True)
class StartupResult:
    targets: int
    runs: list[float]  # seconds

    @property
    def median(self) -> float:
        return statistics.median(self.runs)


def _once(argv: list[str], url: str, limit: float = 60.0) -> float:
    t0 = time.monotonic()
    popen = subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, stdin=subprocess.DEVNULL,
                             start_new_session=True, env=exporter_env())
    try:
        while time.monotonic() - t0 < limit:
            if popen.poll() is not None:
                raise ProcError(f"exporter exited with {popen.returncode} before answering /metrics")
            try:
                if get(url, timeout=2)[0] == 200:
                    return time.monotonic() - t0
            except OSError:
                pass
            time.sleep(0.005)
        raise ProcError(f"exporter did not answer /metrics within {limit:g}s")
    finally:
        popen.terminate()
        try:
            popen.wait(5)
        except subprocess.TimeoutExpired:
            popen.kill()
            popen.wait(5)


def run_startup(sizes: tuple[int, ...] = (5, 10000), runs: int = 5) -> list[StartupResult]:
    out = []
    with workdir() as dir_, nginx(dir_) as urls:
        for n in sizes:
            cfg = write_config(dir_ / f"startup-{n}.yml", urls, n, 60.0, 5.0)
            times = []
            for _ in range(runs):
                port = free_port()
                times.append(_once(exporter_argv(cfg, port), f"http://127.0.0.1:{port}/metrics"))
            out.append(StartupResult(n, times))
    return out
