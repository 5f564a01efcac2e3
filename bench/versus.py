"""``python3 -m bench.versus REV [--rounds N]``: this checkout's exporter against the one at git
revision REV (say ``main``), interleaved in rounds on the same nginx: CPU per probe (defaults and
``keepalive: false``), start-up to the first /metrics with 10,000 targets, and the deep size of a
history entry. Prints a Markdown table; each ratio is taken within a round, then the median.

The other revision's ``exporter`` package is taken with ``git archive`` into a temporary directory
and run from there; the benchmark machinery is this checkout's.
"""

from __future__ import annotations

import argparse
import io
import os
import statistics
import subprocess
import sys
import tarfile
from pathlib import Path

from .configs import write_config
from .cpu import _exporter_run
from .procs import ROOT, exporter_argv, free_port, nginx, workdir
from .startup import _once


def _checkout(rev: str, into: Path) -> Path:
    data = subprocess.run(["git", "archive", rev, "exporter"], cwd=ROOT, capture_output=True, check=True).stdout
    with tarfile.open(fileobj=io.BytesIO(data)) as tar:
        tar.extractall(into, filter="data")
    return into


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python3 -m bench.versus", description=__doc__.splitlines()[0])
    p.add_argument("rev", help="the git revision to compare with, e.g. main")
    p.add_argument("--rounds", type=int, default=3)
    args = p.parse_args(argv)
    rows: dict[str, dict[str, list[float]]] = {}
    with workdir() as dir_, nginx(dir_) as urls:
        roots = {args.rev: _checkout(args.rev, dir_ / "baseline"), "this checkout": ROOT}
        big = write_config(dir_ / "startup-10000.yml", urls, 10000, 60.0, 5.0)
        for n in range(args.rounds):
            # the two alternate in which goes first: what one run leaves (sockets in TIME_WAIT) falls on both
            for name, root in (list(roots.items()) if n % 2 == 0 else list(roots.items())[::-1]):
                for keepalive, what in ((None, "CPU per probe, defaults (ms)"),
                                        (False, "CPU per probe, keepalive: false (ms)")):
                    r = _exporter_run(dir_, urls, 200, 4.0, 8.0, keepalive, name, root)
                    rows.setdefault(what, {}).setdefault(name, []).append(r.cpu_per_probe_ms)
                port = free_port()
                took = _once(exporter_argv(big, port), f"http://127.0.0.1:{port}/metrics", dir_, root=root)
                rows.setdefault("start-up, 10,000 targets (s)", {}).setdefault(name, []).append(took)
            print(f"round {n + 1} of {args.rounds} done, load {os.getloadavg()[0]:.2f}", file=sys.stderr)
    base, this = args.rev, "this checkout"
    print(f"| figure | {base} (median) | this checkout (median) | ratio (median of rounds) |")
    print("|---|---:|---:|---:|")
    for what, by in rows.items():
        ratios = [b / a for a, b in zip(by[base], by[this], strict=True) if a]
        print(f"| {what} | {statistics.median(by[base]):.3f} | {statistics.median(by[this]):.3f} | "
              f"{statistics.median(ratios):.2f}x |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
