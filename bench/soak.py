"""Soak: 1,000 targets against a mix of hostile answers for N minutes (``python3 -m bench.soak``).

The fault server (exporter/simulators/faults.py) runs in a child process on 127.0.0.1; the exporter
runs in this process with a loopback-only resolver, so the ``*.invalid`` targets fail DNS without a
query leaving the machine. Every minute the exporter's RSS, open file descriptors and asyncio tasks
are sampled from /proc, /metrics is scraped throughout, and a Markdown table is printed (and written
to ``--out``). Flat means: the last sample is within a small margin of the one after warm-up.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import signal
import subprocess
import sys
import tempfile
import time
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

import aiohttp
from aiohttp import web

from exporter._yamlnode import Node
from exporter.app import Exporter
from exporter.config import Config, parse_config
from exporter.simulators.faults import LoopbackResolver
from exporter.web import make_app

#: fault -> share of the targets (the rest answer normally)
MIX: dict[str, float] = {
    "no_answer": 0.04, "slow_headers": 0.04, "trickle": 0.04, "reset": 0.04, "big_body": 0.03, "gzip_bomb": 0.03,
    "invalid_json": 0.04, "invalid_utf8": 0.03, "wrong_content_type": 0.03, "proxy_502": 0.04,
    "code_as_string": 0.03, "huge_header": 0.03, "redirect_loop": 0.03, "invent": 0.04, "dns": 0.04,
    "refused": 0.03, "tls": 0.03,
}


@dataclass
class Sample:
    minute: float
    rss_mb: float
    fds: int
    tasks: int
    probes: int
    scrapes: int
    scrape_ms_max: float
    lag_p99: float


def _rss_mb() -> float:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return 0.0


def _fds() -> int:
    return len(os.listdir("/proc/self/fd"))


def build_config(n: int, http_port: int, https_port: int | None, interval: int, timeout: int) -> Config:
    faults: list[str] = []
    for fault, share in MIX.items():
        if fault == "tls" and https_port is None:
            continue
        faults.extend([fault] * round(n * share))
    faults.extend(["ok"] * (n - len(faults)))
    targets = []
    for i, fault in enumerate(faults[:n]):
        if fault == "dns":
            url = f"http://soak-{i}.invalid:{http_port}/ok"
        elif fault == "refused":
            url = "http://127.0.0.1:1/ok"
        elif fault == "tls":
            url = f"https://127.0.0.1:{https_port}/ok"
        else:
            url = f"http://127.0.0.1:{http_port}/{fault}"
        targets.append({"name": f"t{i:04d}-{fault}", "vendor": "flipsnack", "base_url": url,
                        "credentials": {"api_key": f"key{i}", "secret": f"secret{i}"}})
    # probe_share 1: the fault server carries no production traffic, so the budget never throttles
    raw = {"global": {"interval": f"{interval}s", "timeout": f"{timeout}s", "max_concurrency": 300,
                      "probe_share": 1},
           "targets": targets}
    return parse_config(Node(raw, "soak.yml", ""), Path("."), {})


def start_faults(tmp: Path, max_seconds: float) -> tuple[subprocess.Popen[str], dict[str, int]]:
    args = [sys.executable, "-m", "exporter.simulators.faults", "--max-seconds", str(max_seconds),
            "--max-stall", "30"]
    try:
        import trustme

        ca = trustme.CA()
        cert = ca.issue_cert("wrong.example")  # a name the targets never use: the certificate does not match
        cert.private_key_and_cert_chain_pem.write_to_path(str(tmp / "tls.pem"))
        args += ["--tls-cert", str(tmp / "tls.pem"), "--tls-key", str(tmp / "tls.pem")]
    except ImportError:
        print("trustme is not installed: the soak runs without the tls fault", file=sys.stderr)
    proc = subprocess.Popen(args, stdout=subprocess.PIPE, text=True, start_new_session=True)
    assert proc.stdout is not None
    line = proc.stdout.readline()
    if not line:
        proc.wait(10)
        raise SystemExit(f"the fault server did not start (exit {proc.returncode})")
    return proc, json.loads(line)


async def soak(minutes: float, n: int, interval: int, timeout: int, sample_every: float) -> list[Sample]:
    with tempfile.TemporaryDirectory() as tmpdir:
        proc, ports = start_faults(Path(tmpdir), minutes * 60 + 120)
        try:
            return await _run(minutes, build_config(n, ports["http"], ports.get("https"), interval, timeout),
                              sample_every)
        finally:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGTERM)
            try:
                proc.wait(10)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait(10)


async def _run(minutes: float, config: Config, sample_every: float) -> list[Sample]:
    exp = Exporter(config, resolver=LoopbackResolver())
    await exp.start()
    runner = web.AppRunner(make_app(exp), access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = runner.addresses[0][1]
    samples: list[Sample] = []
    scrape_ms: list[float] = []
    scrapes = 0
    t0 = time.monotonic()
    end = t0 + minutes * 60
    try:
        async with aiohttp.ClientSession() as client:
            next_sample = t0
            while (now := time.monotonic()) < end:
                s0 = time.perf_counter()
                async with client.get(f"http://127.0.0.1:{port}/metrics") as r:
                    await r.read()
                    assert r.status == 200, r.status
                scrape_ms.append((time.perf_counter() - s0) * 1000)
                scrapes += 1
                if now >= next_sample:
                    assert exp.scheduler is not None
                    lags = sorted(exp.scheduler.lag.recent) or [0.0]
                    exp.scheduler.lag.recent.clear()
                    samples.append(Sample((now - t0) / 60, _rss_mb(), _fds(), len(asyncio.all_tasks()),
                                          exp.scheduler.completed, scrapes, max(scrape_ms or [0.0]),
                                          lags[int(len(lags) * 0.99) - 1 if len(lags) > 1 else 0]))
                    scrape_ms.clear()
                    print(_row(samples[-1]), flush=True)
                    next_sample += sample_every
                await asyncio.sleep(min(5.0, max(0.0, end - time.monotonic())))
            classes = Counter(ts.last.outcome.cls for ts in exp.state if ts.last is not None)
            print("last class per target:", dict(sorted(classes.items())), flush=True)
    finally:
        await runner.cleanup()
        await exp.close()
    return samples


HEADER = ("| minute | RSS MB | open fds | asyncio tasks | probes done | scrapes | slowest scrape ms "
          "| start lag p99 s |\n|---:|---:|---:|---:|---:|---:|---:|---:|")


def _row(s: Sample) -> str:
    return (f"| {s.minute:.1f} | {s.rss_mb:.1f} | {s.fds} | {s.tasks} | {s.probes} | {s.scrapes} | "
            f"{s.scrape_ms_max:.1f} | {s.lag_p99:.3f} |")


def report(samples: list[Sample], args: argparse.Namespace) -> str:
    lines = [f"{args.targets} targets, interval {args.interval}s, timeout {args.timeout}s, "
             f"{args.minutes:g} minutes; fault mix: "
             + ", ".join(f"{k} {v:.0%}" for k, v in MIX.items()) + ", the rest ok.", "", HEADER]
    lines += [_row(s) for s in samples]
    # warm-up ends when every target's history ring (global.history, 50 probes) is full
    full_at = 50 * args.interval / 60 + 1
    warm = next((s for s in samples if s.minute >= full_at), samples[-1])
    last = samples[-1]
    lines += ["", f"After warm-up (minute {warm.minute:.1f}, history rings full) to the end: "
              f"RSS {warm.rss_mb:.1f} -> "
              f"{last.rss_mb:.1f} MB ({last.rss_mb - warm.rss_mb:+.1f}), open fds {warm.fds} -> {last.fds}, "
              f"asyncio tasks {warm.tasks} -> {last.tasks}."]
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python3 -m bench.soak", description=__doc__.splitlines()[0])
    p.add_argument("--minutes", type=float, default=30.0)
    p.add_argument("--targets", type=int, default=1000)
    # 10 s: every target's history ring (50 probes) is full after ~8 minutes, so the rest of the run
    # shows whether memory is flat once all bounded structures have reached their size
    p.add_argument("--interval", type=int, default=10, help="probe interval of every target, seconds")
    p.add_argument("--timeout", type=int, default=5, help="probe timeout, seconds")
    p.add_argument("--sample-seconds", type=float, default=60.0, help="seconds between samples")
    p.add_argument("--out", type=Path, help="also write the Markdown report here")
    args = p.parse_args(argv)
    samples = asyncio.run(soak(args.minutes, args.targets, args.interval, args.timeout, args.sample_seconds))
    text = report(samples, args)
    print(text)
    if args.out:
        args.out.write_text(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
