"""Start-up: from process start (exec of ``python3 -m exporter``) to the first 200 on /metrics.

Runs are interleaved (each size once, then again), with a floor measured alongside: the same
interpreter importing the exporter's modules and exiting, which no start-up can beat.

Every run finds its modules' bytecode compiled, as an installed exporter does (pip compiles it at
install): the exporter runs from a checkout here, and an environment with PYTHONDONTWRITEBYTECODE
would otherwise have it compile its own modules again at every start. The bytecode goes to a cache
inside the benchmark's work directory (PYTHONPYCACHEPREFIX), filled by one untimed run first."""

from __future__ import annotations

import statistics
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

from .configs import write_config
from .procs import ProcError, exporter_argv, exporter_env, free_port, get, nginx, workdir

__all__ = ["StartupResult", "run_startup"]


@dataclass(frozen=True)
class StartupResult:
    targets: int  # 0: the floor (imports only)
    runs: list[float]  # seconds

    @property
    def median(self) -> float:
        return statistics.median(self.runs)


def _env(cwd: Path, root: Path | None = None) -> dict[str, str]:
    """The exporter's environment with bytecode cached under ``cwd`` (see the module's docstring)."""
    env = exporter_env(root)
    env.pop("PYTHONDONTWRITEBYTECODE", None)
    env["PYTHONPYCACHEPREFIX"] = str(cwd / "pycache")
    return env


def _once(argv: list[str], url: str, cwd: Path, limit: float = 60.0, root: Path | None = None) -> float:
    # cwd: ``python3 -m`` puts it first on the path, so it must not hold an ``exporter`` package of its own
    _warm(cwd, root)
    t0 = time.monotonic()
    popen = subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, stdin=subprocess.DEVNULL,
                             start_new_session=True, env=_env(cwd, root), cwd=cwd)
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


IMPORTS = "import exporter.app, exporter.web, exporter.config, exporter.__main__"


def _floor(cwd: Path, root: Path | None = None) -> float:
    t0 = time.monotonic()
    subprocess.run([sys.executable, "-c", IMPORTS], check=True, env=_env(cwd, root), stdin=subprocess.DEVNULL,
                   timeout=60, cwd=cwd)
    return time.monotonic() - t0


_WARMED: set[tuple[Path, Path | None]] = set()


def _warm(cwd: Path, root: Path | None = None) -> None:
    """Compile the bytecode of every module the exporter imports into the cache, untimed."""
    if (cwd, root) not in _WARMED:
        _floor(cwd, root)
        _WARMED.add((cwd, root))


def run_startup(sizes: tuple[int, ...] = (5, 10000), runs: int = 5) -> list[StartupResult]:
    times: dict[int, list[float]] = {0: [], **{n: [] for n in sizes}}
    with workdir() as dir_, nginx(dir_) as urls:
        configs = {n: write_config(dir_ / f"startup-{n}.yml", urls, n, 60.0, 5.0) for n in sizes}
        _warm(dir_)
        for _ in range(runs):
            times[0].append(_floor(dir_))
            for n in sizes:
                port = free_port()
                times[n].append(_once(exporter_argv(configs[n], port), f"http://127.0.0.1:{port}/metrics", dir_))
    return [StartupResult(n, t) for n, t in times.items()]
