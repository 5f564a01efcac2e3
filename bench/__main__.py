"""``python3 -m bench [cpu|scale|scrape|startup|memory|all] [--quick] [--out BENCHMARKS.md]``; ``python3 -m bench
detect [--factor 20] [--healthy-intervals N] [--no-egress-check]`` (how fast it pages, how rarely it lies:
bench/detect.py)

Runs the chosen benchmarks one after the other (each starts and stops its own nginx, exporter and
blackbox_exporter on loopback) and writes the results table. ``--quick`` is a smoke run of a few
seconds: it proves the machinery works; its figures mean nothing.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import sys
import time
from datetime import UTC, datetime
from pathlib import Path

from .procs import ROOT, ProcError
from .report import Run, write

PARTS = ("cpu", "scale", "scrape", "startup", "memory")


def run(parts: list[str], quick: bool, command: str) -> Run:
    result = Run(command, datetime.now(UTC).strftime("%Y-%m-%d %H:%M"), quick)
    for part in parts:
        t0, load0 = time.monotonic(), os.getloadavg()[0]
        print(f"bench: {part} ...", file=sys.stderr, flush=True)
        if part == "cpu":
            from .cpu import run_cpu

            result.cpu = (run_cpu(rate=40, warmup=1.0, window=0.8, rounds=1, floor=1.0) if quick
                          else run_cpu(rate=200, warmup=4.0, window=8.0, rounds=3))
        elif part == "scale":
            from .scale import run_scale

            result.scale = (run_scale(targets=200, interval=1.0, seconds=1.0, scrape_every=0.5, warmup=1.2) if quick
                            else run_scale(targets=10000, interval=15.0, seconds=120.0, scrape_every=15.0))
        elif part == "scrape":
            from .scrape import run_scrape

            result.scrape = run_scrape((20,), repeat=3) if quick else run_scrape((100, 1000, 10000), repeat=25)
        elif part == "startup":
            from .startup import run_startup

            result.startup = run_startup((5,), runs=1) if quick else run_startup((5, 10000), runs=5)
        elif part == "memory":
            from .memory import run_memory

            result.memory = (run_memory(targets=200, interval=1.0, history=3, seconds=10.0, every=1.0) if quick
                             else run_memory())
        result.durations[part] = time.monotonic() - t0
        result.load[part] = (load0, os.getloadavg()[0])
        print(f"bench: {part} done in {result.durations[part]:.0f} s", file=sys.stderr, flush=True)
    return result


def main(argv: list[str] | None = None) -> int:
    args_in = sys.argv[1:] if argv is None else argv
    if args_in[:1] == ["detect"]:  # its own options and report (bench/detect.py)
        from .detect import main as detect_main

        return detect_main(args_in[1:])
    p = argparse.ArgumentParser(prog="python3 -m bench", description=__doc__.splitlines()[0])
    p.add_argument("part", nargs="?", default="all", choices=[*PARTS, "all"])
    p.add_argument("--quick", action="store_true", help="a short smoke run; figures are not meaningful")
    p.add_argument("--out", type=Path, default=None,
                   help="where to write the table (default BENCHMARKS.md; with --quick, nowhere)")
    p.add_argument("--json", type=Path, default=None, help="also write every figure as JSON here")
    args = p.parse_args(argv)
    parts = list(PARTS) if args.part == "all" else [args.part]
    command = "python3 -m bench " + " ".join(a for a in (argv if argv is not None else sys.argv[1:]))
    try:
        result = run(parts, args.quick, command.strip())
    except ProcError as exc:
        print(f"bench: {exc}", file=sys.stderr)
        return 1
    if args.json is not None:
        args.json.write_text(json.dumps(dataclasses.asdict(result), indent=1), encoding="utf-8")
    out = args.out or (None if args.quick else ROOT / "BENCHMARKS.md")
    if out is not None:
        write(out, result)
        print(f"bench: wrote {out}", file=sys.stderr)
    else:
        from .report import render

        print(render(result))
    return 0


if __name__ == "__main__":
    sys.exit(main())
