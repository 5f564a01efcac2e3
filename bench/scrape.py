"""Scrape cost: /metrics at 100, 1,000 and 10,000 targets, plain and gzip as Prometheus asks for it,
against prometheus_client's ``generate_latest`` over the same series in the same run.

``python3 -m bench.scrape REV [--targets N] [--rounds N]`` instead compares this checkout's exporter
with the one at git revision REV (say ``main``): both run at once on the same nginx, and their scrapes
alternate (A plain, B plain, A gzip, B gzip, ...), so load coming and going hits both alike.

The targets are probed once (a long interval keeps probes from competing with the scrapes), then
/metrics is fetched repeatedly over loopback; the time is the client's, from request to last byte,
which on loopback is the server's time plus well under a millisecond.
"""

from __future__ import annotations

import argparse
import gzip
import multiprocessing
import socket
import statistics
import sys
import time
from collections.abc import Iterator
from contextlib import ExitStack
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.metrics_core import Metric
from prometheus_client.parser import text_string_to_metric_families
from prometheus_client.registry import Collector

from .configs import write_config
from .procs import ROOT, Proc, cpu_seconds, exporter, get, nginx, rss_mb, workdir
from .scrapes import samples

__all__ = ["ScrapeResult", "run_scrape"]

#: what Prometheus sends (scrape.go): it asks for gzip on every scrape
PROM_HEADERS = {"Accept-Encoding": "gzip", "Accept": "text/plain;version=0.0.4;q=0.5,*/*;q=0.1"}


@dataclass(frozen=True)
class ScrapeResult:
    targets: int
    series: int
    bytes_plain: int
    bytes_gzip: int
    plain_ms: float  # median
    plain_p90_ms: float
    gzip_ms: float  # median
    cpu_ms: float  # exporter CPU per plain scrape
    cpu_gzip_ms: float  # exporter CPU per gzip scrape
    baseline_ms: float  # median generate_latest over the same series
    #: (family, series, bytes) in the plain answer, the exporter's own families included
    families: list[tuple[str, int, int]] = field(default_factory=list)

    @property
    def speedup(self) -> float:
        return self.baseline_ms / self.plain_ms if self.plain_ms else float("nan")


class _Fixed(Collector):
    """The same families as the exporter served, handed to generate_latest ready-made: the cheapest
    possible use of prometheus_client, so the comparison favours the baseline."""

    def __init__(self, families: list[Metric]) -> None:
        self.families = families

    def collect(self) -> Iterator[Metric]:
        return iter(self.families)


#: the client's receive buffer, kept between scrapes and grown when an answer does not fit: a fresh
#: ``recv`` object per read (and a growing bytearray) cost the client more than the server spent
#: sending, so the figure was the client's speed, not the exporter's
_RECV = bytearray(1 << 20)


def _timed(port: int, headers: dict[str, str] | None) -> tuple[float, bytes]:
    """Request to last byte, read by a bare socket into a buffer it reuses, so that the client's own
    cost stays out of it (on loopback it then reads faster than any exporter writes)."""
    global _RECV
    head = "".join(f"{k}: {v}\r\n" for k, v in (headers or {}).items())
    request = f"GET /metrics HTTP/1.1\r\nHost: 127.0.0.1\r\n{head}Connection: close\r\n\r\n".encode()
    view, got = memoryview(_RECV), 0
    with socket.create_connection(("127.0.0.1", port), timeout=30) as sock:
        t0 = time.perf_counter()
        sock.sendall(request)
        while True:
            if got == len(view):  # full: a larger buffer, kept for the next scrape
                view.release()
                _RECV = _RECV + bytes(len(_RECV))
                view = memoryview(_RECV)
            n = sock.recv_into(view[got:])
            if not n:
                break
            got += n
        elapsed = time.perf_counter() - t0
    data = bytes(view[:got])
    view.release()
    header, _, body = data.partition(b"\r\n\r\n")
    if not header.startswith(b"HTTP/1.1 200"):
        raise RuntimeError(f"/metrics answered {header[:40]!r}")
    if b"transfer-encoding: chunked" in header.lower():
        body = _dechunk(body)
    return elapsed * 1000, body


def _dechunk(data: bytes) -> bytes:
    out, pos = bytearray(), 0
    while True:
        eol = data.index(b"\r\n", pos)
        size = int(data[pos:eol].split(b";")[0], 16)
        if size == 0:
            return bytes(out)
        out += data[eol + 2:eol + 2 + size]
        pos = eol + 2 + size + 2


def _wait_all_probed(url: str, targets: int, limit: float = 60.0) -> str:
    end = time.monotonic() + limit
    while True:
        _, body = get(url + "/metrics", timeout=30)
        text = body.decode()
        if sum(1 for _ in samples(text, "apistatus_up")) >= targets:
            return text
        if time.monotonic() > end:
            raise RuntimeError(f"not every one of {targets} targets was probed within {limit:g}s")
        time.sleep(0.5)


def _baseline(text: str, repeat: int) -> tuple[int, float]:
    families = [f for f in text_string_to_metric_families(text)
                if not f.name.startswith(("process_", "python_"))]
    registry = CollectorRegistry(auto_describe=False)
    registry.register(_Fixed(families))
    times = []
    for _ in range(repeat):
        t0 = time.perf_counter()
        out = generate_latest(registry)
        times.append((time.perf_counter() - t0) * 1000)
    series = sum(len(f.samples) for f in families)
    assert out, "generate_latest produced nothing"
    return series, statistics.median(times)


def series_lines(body: bytes) -> int:
    return body.count(b"\n") - body.count(b"\n#")


def family_costs(body: bytes) -> list[tuple[str, int, int]]:
    """Series and bytes of each family (by its ``# TYPE`` line; a histogram's _bucket/_sum/_count
    and a summary's quantiles counted under their family), largest first."""
    costs: dict[str, list[int]] = {}
    current = ""
    for line in body.split(b"\n"):
        if not line:
            continue
        if line.startswith(b"# TYPE "):
            current = line.split()[2].decode()
        elif not line.startswith(b"#"):
            entry = costs.setdefault(current, [0, 0])
            entry[0] += 1
            entry[1] += len(line) + 1
    return sorted(((name, n, size) for name, (n, size) in costs.items()), key=lambda c: -c[2])


def _one(targets: int, repeat: int) -> ScrapeResult:
    with workdir() as dir_, nginx(dir_) as urls:
        cfg = write_config(dir_ / f"scrape-{targets}.yml", urls, targets, 3600.0, 5.0)
        with exporter(dir_, cfg) as proc:
            text = _wait_all_probed(proc.url, targets)
            _timed(proc.port, None)  # warm the code paths once
            # plain and gzip interleaved, so that load coming and going hits both alike
            plain, zipped = [], []
            cpu_plain = cpu_gzip = 0.0
            for _ in range(repeat):
                cpu0 = cpu_seconds(proc.pid)
                plain.append(_timed(proc.port, None))
                cpu1 = cpu_seconds(proc.pid)
                zipped.append(_timed(proc.port, PROM_HEADERS))
                cpu2 = cpu_seconds(proc.pid)
                cpu_plain += cpu1 - cpu0
                cpu_gzip += cpu2 - cpu1
    if gzip.decompress(zipped[-1][1]).count(b"\n") < series_lines(plain[-1][1]):
        raise RuntimeError("the gzip answer holds less than the plain one")
    # the baseline takes seconds a run at 10,000 targets: fewer runs still give a stable median
    series, base = _baseline(text, repeat if targets < 10000 else min(repeat, 7))
    plain_ms = sorted(t for t, _ in plain)
    return ScrapeResult(targets, series, len(plain[-1][1]), len(zipped[-1][1]), statistics.median(plain_ms),
                        plain_ms[int(0.9 * (len(plain_ms) - 1))], statistics.median(t for t, _ in zipped),
                        cpu_plain * 1000 / repeat, cpu_gzip * 1000 / repeat, base, family_costs(plain[-1][1]))


def run_scrape(sizes: tuple[int, ...] = (100, 1000, 10000), repeat: int = 25) -> list[ScrapeResult]:
    return [_one(n, repeat) for n in sizes]


#: scrapes a CPU figure is taken over: /proc counts CPU in ticks of 10 ms, about a scrape's cost
CPU_BATCH = 5


def _ping(port: int, ready: Any, done: Any, slowest: Any) -> None:
    """``/-/healthy`` asked again and again on one kept-alive connection until ``done``: its slowest
    answer is how long the exporter's event loop (probes, other requests) waited at most."""
    request = b"GET /-/healthy HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n"
    with socket.create_connection(("127.0.0.1", port), timeout=30) as sock:
        while not done.is_set():
            t0 = time.perf_counter()
            sock.sendall(request)
            data = b""
            while b"Healthy." not in data:
                chunk = sock.recv(4096)
                if not chunk:
                    raise RuntimeError("/-/healthy: the connection closed")
                data += chunk
            took = time.perf_counter() - t0
            with slowest.get_lock():
                slowest.value = max(slowest.value, took)
            ready.set()


def _stall(port: int, headers: dict[str, str] | None) -> tuple[float, float]:
    """One scrape's time and the slowest /-/healthy answer while it ran, both in ms. The pinger is a
    process of its own: as a thread beside the reading client it waited for the GIL, which showed as
    a stall of the exporter that was not one."""
    ctx = multiprocessing.get_context("fork")
    ready, done, slowest = ctx.Event(), ctx.Event(), ctx.Value("d", 0.0)
    pinger = ctx.Process(target=_ping, args=(port, ready, done, slowest), daemon=True)
    pinger.start()
    try:
        if not ready.wait(30):  # connected and answered once before the scrape starts
            raise RuntimeError("/-/healthy did not answer")
        with slowest.get_lock():
            slowest.value = 0.0
        took, _ = _timed(port, headers)
    finally:
        done.set()
        pinger.join(30)
    if pinger.exitcode != 0:
        raise RuntimeError(f"the /-/healthy pinger failed (exit code {pinger.exitcode})")
    return took, slowest.value * 1000


def _ab_round(procs: dict[str, Proc], repeat: int, out: dict[str, dict[str, list[float]]]) -> None:
    for _ in range(0, repeat, CPU_BATCH):
        for headers, kind in ((None, "plain"), (PROM_HEADERS, "gzip")):
            for name, proc in procs.items():
                row = out.setdefault(name, {})
                cpu0 = cpu_seconds(proc.pid)
                for _ in range(CPU_BATCH):
                    took, body = _timed(proc.port, headers)
                    row.setdefault(f"{kind} ms", []).append(took)
                row.setdefault(f"{kind} CPU ms (mean of {CPU_BATCH})", []).append(
                    (cpu_seconds(proc.pid) - cpu0) * 1000 / CPU_BATCH)
                row.setdefault(f"{kind} bytes", []).append(float(len(body)))
                # apart from the timed scrapes: the pinger's requests cost the exporter CPU too
                row.setdefault(f"{kind}: slowest /-/healthy during it, ms", []).append(_stall(proc.port, headers)[1])


def versus(rev: str, targets: int = 10000, repeat: int = 25) -> dict[str, dict[str, list[float]]]:
    from .versus import _checkout

    out: dict[str, dict[str, list[float]]] = {}
    with workdir() as dir_, nginx(dir_) as urls, ExitStack() as stack:
        roots: dict[str, Path] = {rev: _checkout(rev, dir_ / "baseline"), "this checkout": ROOT}
        cfg = write_config(dir_ / f"scrape-{targets}.yml", urls, targets, 3600.0, 5.0)
        procs = {name: stack.enter_context(exporter(dir_, cfg, root=root)) for name, root in roots.items()}
        for name, proc in procs.items():
            _wait_all_probed(proc.url, targets)
            _timed(proc.port, None)
            out.setdefault(name, {})["RSS MB"] = [rss_mb(proc.pid)]
        _ab_round(procs, repeat, out)
    return out


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python3 -m bench.scrape", description="this checkout's /metrics vs REV's")
    p.add_argument("rev")
    p.add_argument("--targets", type=int, default=10000)
    p.add_argument("--rounds", type=int, default=25)
    args = p.parse_args(argv)
    out = versus(args.rev, args.targets, args.rounds)
    names = list(out)
    print(f"| figure ({args.targets} targets, {args.rounds} scrapes each) | " + " | ".join(
        f"{n} (median, min-max)" for n in names) + " |")
    print("|---|" + "---:|" * len(names))
    for what in out[names[0]]:
        cells = []
        for n in names:
            v = out[n][what]
            cells.append(f"{statistics.median(v):.1f} ({min(v):.1f}-{max(v):.1f})")
        print(f"| {what} | " + " | ".join(cells) + " |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
