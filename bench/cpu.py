"""CPU per probe: the exporter (defaults, and with connection reuse off) against blackbox_exporter
driven through /probe at the same rate, on the same nginx target, measured from /proc."""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass
from pathlib import Path

import aiohttp

from .configs import write_config
from .procs import BLACKBOX_MODULE, blackbox, cpu_seconds, exporter, nginx, workdir
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

    @property
    def cpu_per_probe_ms(self) -> float:
        return 1000 * self.cpu / self.probes if self.probes else float("nan")


def _exporter_run(dir_: Path, urls: list[str], rate: int, warmup: float, window: float,
                  keepalive: bool | None, label: str) -> CpuResult:
    # interval 1 s with ``rate`` targets: ``rate`` probes a second, steady once the first spread is over
    cfg = write_config(dir_ / f"cpu-keepalive-{keepalive}.yml", urls, rate, 1.0, 1.0, keepalive=keepalive)
    with exporter(dir_, cfg) as proc:
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


def run_cpu(rate: int = 200, warmup: float = 6.0, window: float = 20.0) -> list[CpuResult]:
    with workdir() as dir_, nginx(dir_) as urls:
        return [
            _exporter_run(dir_, urls, rate, warmup, window, None, "exporter (defaults)"),
            _exporter_run(dir_, urls, rate, warmup, window, False, "exporter (keepalive: false)"),
            _blackbox_run(dir_, urls, rate, warmup, window),
        ]
