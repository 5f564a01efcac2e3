"""CPU per probe: the exporter (defaults, and with connection reuse off) against blackbox_exporter
driven through /probe at the same rate, on the same nginx target, measured from /proc.

The subjects run interleaved in rounds (exporter, exporter without keep-alive, blackbox, wrk; then
again), each a fresh process, and each round starts with the next of the first three: on a shared
machine, load that comes and goes, and what one run leaves behind for the next (sockets in
TIME_WAIT), then hit every subject alike; each ratio is taken within one round. ``wrk`` (C, epoll)
against the same nginx is the physical floor: the client CPU one HTTP request costs on this machine,
keep-alive and with a fresh connection each."""

from __future__ import annotations

import asyncio
import dataclasses
import os
import re
import subprocess
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import aiohttp

from .configs import write_config
from .procs import BLACKBOX_MODULE, ProcError, binary, blackbox, cpu_seconds, exporter, nginx, workdir
from .scrapes import family_sum, fetch

__all__ = ["CpuResult", "run_cpu"]


@dataclass(frozen=True)
class CpuResult:
    subject: str
    rate: float  # probes/s asked for
    probes: int  # completed in the measured window
    cpu: float  # CPU seconds in the window
    window: float  # seconds
    ok_share: float  # share of probes that came back ok / probe_success 1
    round: int = 0

    @property
    def cpu_per_probe_ms(self) -> float:
        return 1000 * self.cpu / self.probes if self.probes else float("nan")


def _exporter_run(dir_: Path, urls: list[str], rate: int, warmup: float, window: float,
                  keepalive: bool | None, label: str, root: Path | None = None) -> CpuResult:
    # interval 1 s with ``rate`` targets: ``rate`` probes a second, steady once the first spread is over
    cfg = write_config(dir_ / f"cpu-keepalive-{keepalive}.yml", urls, rate, 1.0, 1.0, keepalive=keepalive)
    with exporter(dir_, cfg, root=root) as proc:
        time.sleep(warmup)
        before = fetch(proc.url)
        cpu0, t0 = cpu_seconds(proc.pid), time.monotonic()
        time.sleep(window)
        cpu1, t1 = cpu_seconds(proc.pid), time.monotonic()
        after = fetch(proc.url)
    total = family_sum(after, "apistatus_responses_total") - family_sum(before, "apistatus_responses_total")
    ok = sum(v for labels, v in _ok(after)) - sum(v for labels, v in _ok(before))
    return CpuResult(label, rate, int(total), cpu1 - cpu0, t1 - t0, ok / total if total else 0.0)


def _ok(text: str) -> list[tuple[str, float]]:
    from .scrapes import samples

    return [(lab, v) for lab, v in samples(text, "apistatus_responses_total") if 'class="ok"' in lab]


async def _drive(probe_url: str, targets: list[str], rate: int, seconds: float,
                 results: list[bool], concurrency: int = 64) -> None:
    """Ask blackbox for ``rate`` probes a second, spread evenly, like Prometheus scraping /probe."""
    sem = asyncio.Semaphore(concurrency)
    loop = asyncio.get_running_loop()
    start = loop.time()
    total = int(rate * seconds)
    connector = aiohttp.TCPConnector(limit=concurrency)
    async with aiohttp.ClientSession(connector=connector) as session:

        async def one(i: int) -> None:
            async with sem:
                params = {"target": targets[i % len(targets)], "module": BLACKBOX_MODULE}
                try:
                    async with session.get(probe_url, params=params, timeout=aiohttp.ClientTimeout(total=10)) as r:
                        text = await r.text()
                    results.append("probe_success 1" in text)
                except (aiohttp.ClientError, TimeoutError):
                    results.append(False)

        tasks: list[asyncio.Task[None]] = []
        for i in range(total):
            delay = start + i / rate - loop.time()
            if delay > 0:
                await asyncio.sleep(delay)
            tasks.append(asyncio.create_task(one(i)))
        await asyncio.gather(*tasks)


def _blackbox_run(dir_: Path, urls: list[str], rate: int, warmup: float, window: float) -> CpuResult:
    with blackbox(dir_) as proc:
        results: list[bool] = []
        measured: dict[str, float] = {}

        async def main() -> None:
            driver = asyncio.create_task(_drive(proc.url + "/probe", [u + "/" for u in urls], rate,
                                                warmup + window + 0.5, results))
            await asyncio.sleep(warmup)
            n0, c0, t0 = len(results), cpu_seconds(proc.pid), time.monotonic()
            await asyncio.sleep(window)
            n1, c1, t1 = len(results), cpu_seconds(proc.pid), time.monotonic()
            measured.update(n0=n0, c0=c0, t0=t0, n1=n1, c1=c1, t1=t1)
            await driver

        asyncio.run(main())
    done = int(measured["n1"] - measured["n0"])
    ok = sum(results[int(measured["n0"]):int(measured["n1"])])
    return CpuResult("blackbox_exporter", rate, done, measured["c1"] - measured["c0"],
                     measured["t1"] - measured["t0"], ok / done if done else 0.0)


WRK_KEEPALIVE, WRK_FRESH = "wrk (keep-alive)", "wrk (new connection each)"


def _wrk_run(url: str, seconds: float, fresh: bool) -> CpuResult:
    """wrk, one thread and one connection, as fast as it goes; its CPU from the kernel's rusage."""
    argv = [binary("wrk"), "-t1", "-c1", f"-d{max(1, round(seconds))}s", url + "/"]
    if fresh:
        argv[1:1] = ["-H", "Connection: close"]
    popen = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, start_new_session=True)
    assert popen.stdout is not None
    out = popen.stdout.read().decode(errors="replace")
    _, status, usage = os.wait4(popen.pid, 0)
    popen.returncode = os.waitstatus_to_exitcode(status)
    if popen.returncode != 0:
        raise ProcError(f"wrk exited with {popen.returncode}: {out[-300:]}")
    m = re.search(r"(\d+) requests in ([\d.]+)(m?s)", out)
    if m is None:
        raise ProcError(f"wrk printed no request count: {out[-300:]}")
    done = int(m.group(1))
    errors = sum(int(n) for n in re.findall(r"(?:Non-2xx or 3xx responses|connect|read|write|timeout) (\d+)", out))
    elapsed = float(m.group(2)) / (1000 if m.group(3) == "ms" else 1)
    return CpuResult(WRK_FRESH if fresh else WRK_KEEPALIVE, done / elapsed if elapsed else 0.0, done,
                     usage.ru_utime + usage.ru_stime, elapsed, 1 - errors / done if done else 0.0)


def run_cpu(rate: int = 200, warmup: float = 6.0, window: float = 20.0, rounds: int = 1,
            floor: float = 3.0) -> list[CpuResult]:
    """``rounds`` rounds of every subject, in the same order each round; results carry their round."""
    out: list[CpuResult] = []
    subjects: list[Callable[[], CpuResult]] = [
        lambda: _exporter_run(dir_, urls, rate, warmup, window, None, "exporter (defaults)"),
        lambda: _exporter_run(dir_, urls, rate, warmup, window, False, "exporter (keepalive: false)"),
        lambda: _blackbox_run(dir_, urls, rate, warmup, window),
    ]
    with workdir() as dir_, nginx(dir_) as urls:
        for n in range(rounds):
            # each round starts with the next subject: what one run leaves behind (sockets in
            # TIME_WAIT, a warm nginx) falls on every subject in turn, not always on the same one
            turn = n % len(subjects)
            for run in subjects[turn:] + subjects[:turn]:
                out.append(dataclasses.replace(run(), round=n))
            for fresh in (False, True):
                out.append(dataclasses.replace(_wrk_run(urls[0], floor, fresh=fresh), round=n))
    return out
