"""Fleet: one config split over N shards (``--shard I/N``), all started at once on this machine
against nginx on loopback, each scraped like Prometheus does (gzip, every ``scrape_every`` seconds).

``python3 -m bench.fleet [--targets 100000] [--interval 60] [--shards 5] [--seconds 120]``
Per shard: targets, start-up (process start to /-/ready, all shards starting together), probes/s
planned and achieved, start lag, CPU share of one core, RSS, scrape time and size. The results go
to the "Fleet" section of BENCHMARKS.md (``--out``), which ``python3 -m bench`` keeps.
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import gzip
import json
import os
import re
import statistics
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

from .configs import write_config
from .procs import (
    ROOT,
    Proc,
    ProcError,
    _spawn,
    cpu_seconds,
    exporter_argv,
    exporter_env,
    free_port,
    get,
    nginx,
    peak_rss_mb,
    rss_mb,
    workdir,
)
from .scrapes import family_sum, samples

__all__ = ["FleetResult", "ShardResult", "run_fleet"]

LAG = "apistatus_probe_start_lag_seconds"
HEADERS = {"Accept-Encoding": "gzip"}


@dataclass(frozen=True)
class ShardResult:
    index: int
    targets: int
    startup_s: float  # process start to the first 200 on /-/ready
    planned: float  # probes/s its targets' intervals ask for
    achieved: float  # probes/s completed in the window
    lag_p50: float  # median over the scrapes of the recent-window median, seconds
    lag_p99: float  # worst recent-window p99 seen at any scrape
    cpu_share: float  # CPU seconds per second over the window: 1.0 is one whole core
    peak_rss_mb: float
    end_rss_mb: float
    scrape_ms: float  # median time of a gzip scrape, request to last byte
    scrape_mb: float  # uncompressed size of one scrape
    scrape_gzip_mb: float


@dataclass(frozen=True)
class FleetResult:
    command: str
    started: str
    targets: int
    interval: float
    shards: int
    window: float
    load: tuple[float, float]  # 1-minute load average before and after the run
    per_shard: list[ShardResult]

    @property
    def planned(self) -> float:
        return self.targets / self.interval


def _scrape(url: str) -> tuple[str, float, int, int]:
    t0 = time.monotonic()
    status, body = get(url + "/metrics", timeout=60, headers=HEADERS)
    elapsed = time.monotonic() - t0
    if status != 200:
        raise ProcError(f"{url}/metrics answered HTTP {status}")
    plain = gzip.decompress(body) if body[:2] == b"\x1f\x8b" else body
    return plain.decode(), elapsed, len(plain), len(body)


@contextlib.contextmanager
def _replicas(dir_: Path, config: Path, shards: int, indices: list[int]) -> Iterator[tuple[list[Proc], list[float]]]:
    """The shards started at once, as a StatefulSet with parallel pod management does."""
    with contextlib.ExitStack() as stack:
        procs, t0 = [], time.monotonic()
        for i in indices:
            port = free_port()
            argv = [*exporter_argv(config, port), "--shard", f"{i}/{shards}"]
            procs.append(stack.enter_context(_spawn(f"shard{i}", argv, port, dir_, "", env=exporter_env())))
        ready: list[float | None] = [None] * len(indices)
        while None in ready:
            if time.monotonic() - t0 > 300:
                raise ProcError(f"shards {[i for i, r in enumerate(ready) if r is None]} not ready in 300 s")
            for i, proc in enumerate(procs):
                if ready[i] is None:
                    if not proc.alive():
                        raise ProcError(f"shard {i} exited with {proc.popen.returncode}: {proc.log_tail()}")
                    with contextlib.suppress(OSError):
                        if get(proc.url + "/-/ready", timeout=1)[0] == 200:
                            ready[i] = time.monotonic() - t0
            time.sleep(0.05)
        yield procs, [r for r in ready if r is not None]


def run_fleet(targets: int = 100000, interval: float = 60.0, shards: int = 5, seconds: float = 120.0,
              scrape_every: float = 30.0, warmup: float | None = None, command: str = "",
              only: int | None = None) -> FleetResult:
    """``only``: run that one shard alone (a replica's own cost, without its siblings on the machine)."""
    indices = list(range(shards)) if only is None else [only]
    load0 = os.getloadavg()[0]
    started = datetime.now(UTC).strftime("%Y-%m-%d %H:%M")
    with workdir() as dir_, nginx(dir_) as urls:
        cfg = write_config(dir_ / "fleet.yml", urls, targets, interval, min(5.0, interval))
        with _replicas(dir_, cfg, shards, indices) as (procs, startup):
            # every target probed once (first probes are spread over a few seconds), then steady
            time.sleep(interval + 5.0 if warmup is None else warmup)
            first = [_scrape(p.url)[0] for p in procs]
            cpu0, t0 = [cpu_seconds(p.pid) for p in procs], time.monotonic()
            p50s: list[list[float]] = [[] for _ in procs]
            p99s: list[list[float]] = [[] for _ in procs]
            times: list[list[float]] = [[] for _ in procs]
            sizes: list[tuple[int, int]] = [(0, 0)] * len(procs)
            last = first
            while (now := time.monotonic()) < t0 + seconds:
                time.sleep(min(scrape_every, t0 + seconds - now))
                last = []
                for i, p in enumerate(procs):
                    text, took, plain, zipped = _scrape(p.url)
                    last.append(text)
                    times[i].append(took)
                    sizes[i] = (plain, zipped)
                    q = dict(samples(text, LAG))
                    p50s[i].append(q.get('{quantile="0.5"}', 0.0))
                    p99s[i].append(q.get('{quantile="0.99"}', 0.0))
            cpu1, t1 = [cpu_seconds(p.pid) for p in procs], time.monotonic()
            peaks, ends = [peak_rss_mb(p.pid) for p in procs], [rss_mb(p.pid) for p in procs]
    window = t1 - t0
    per_shard = []
    for i, index in enumerate(indices):
        n = int(family_sum(last[i], "apistatus_targets"))
        done = family_sum(last[i], "apistatus_responses_total") - family_sum(first[i], "apistatus_responses_total")
        per_shard.append(ShardResult(
            index, n, startup[i], n / interval, done / window if window else 0.0,
            statistics.median(p50s[i]) if p50s[i] else float("nan"), max(p99s[i], default=float("nan")),
            (cpu1[i] - cpu0[i]) / window if window else 0.0, peaks[i], ends[i],
            statistics.median(times[i]) * 1000 if times[i] else float("nan"), sizes[i][0] / 1e6, sizes[i][1] / 1e6))
    return FleetResult(command, started, targets, interval, shards, window, (load0, os.getloadavg()[0]), per_shard)


def render(r: FleetResult) -> str:
    who = ("all started at once" if len(r.per_shard) == r.shards else
           f"only shard {r.per_shard[0].index} running (its own cost, no siblings on the machine)")
    rows = [
        "## Fleet",
        "",
        f"`{r.command}`: {r.targets} targets at {r.interval:g} s over {r.shards} shards (`--shard I/{r.shards}`),"
        f" {who} on this machine against nginx on loopback, each scraped with gzip; measured"
        f" {r.window:.0f} s after every target had been probed once. Run {r.started} UTC; load average"
        f" (1 min) {r.load[0]:.2f} before, {r.load[1]:.2f} after (the machine is shared).",
        "",
        "| shard | targets | start-up | probes/s planned | achieved | start lag p50 | p99 (worst) | CPU (share of"
        " one core) | peak RSS | scrape (gzip) median | scrape size | gzip |",
        "|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for s in r.per_shard:
        rows.append(f"| {s.index}/{r.shards} | {s.targets} | {s.startup_s:.1f} s | {s.planned:.0f} | {s.achieved:.0f}"
                    f" | {s.lag_p50 * 1000:.1f} ms | {s.lag_p99 * 1000:.0f} ms | {s.cpu_share:.1%}"
                    f" | {s.peak_rss_mb:.0f} MB | {s.scrape_ms:.0f} ms | {s.scrape_mb:.1f} MB"
                    f" | {s.scrape_gzip_mb:.2f} MB |")
    total_planned = sum(s.planned for s in r.per_shard)
    total = sum(s.achieved for s in r.per_shard)
    rows += [
        "",
        f"- Fleet: {sum(s.targets for s in r.per_shard)} targets, {total:.0f} of {total_planned:.0f} planned probes/s"
        f" achieved; CPU {sum(s.cpu_share for s in r.per_shard):.0%} of one core in all, peak RSS"
        f" {sum(s.peak_rss_mb for s in r.per_shard):.0f} MB in all.",
        f"- Busiest shard: {max(s.targets for s in r.per_shard)} targets against a mean of"
        f" {r.targets / r.shards:.0f} (placement hashes each credential).",
        "",
    ]
    return "\n".join(rows)


def write(path: Path, r: FleetResult) -> None:
    """Replace the Fleet section of ``path`` (or append one); nothing else in the file changes."""
    text = path.read_text(encoding="utf-8") if path.exists() else "# Benchmarks\n"
    section = render(r)
    m = re.search(r"^## Fleet\b.*?(?=^## |\Z)", text, re.S | re.M)
    if m:
        text = text[:m.start()] + section + ("\n" if text[m.end():] else "") + text[m.end():]
    else:
        text = text.rstrip("\n") + "\n\n" + section
    path.write_text(text, encoding="utf-8")


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python3 -m bench.fleet", description=__doc__.splitlines()[0])
    p.add_argument("--targets", type=int, default=100000)
    p.add_argument("--interval", type=float, default=60.0)
    p.add_argument("--shards", type=int, default=5)
    p.add_argument("--seconds", type=float, default=120.0, help="measured window after the warm-up")
    p.add_argument("--scrape-every", type=float, default=30.0)
    p.add_argument("--warmup", type=float, default=None, help="seconds before measuring (default interval + 5)")
    p.add_argument("--only", type=int, default=None, metavar="I",
                   help="run shard I alone (its own cost); its figures then go to --out only if given")
    p.add_argument("--out", type=Path, default=None, help="where the Fleet section goes (default BENCHMARKS.md)")
    p.add_argument("--json", type=Path, default=None, help="also write every figure as JSON here")
    args = p.parse_args(argv)
    command = "python3 -m bench.fleet " + " ".join(argv if argv is not None else sys.argv[1:])
    try:
        if args.only is not None and not 0 <= args.only < args.shards:
            p.error(f"--only must be a shard index below --shards {args.shards}, got {args.only}")
        result = run_fleet(args.targets, args.interval, args.shards, args.seconds, args.scrape_every, args.warmup,
                           command.strip(), args.only)
    except ProcError as exc:
        print(f"bench: {exc}", file=sys.stderr)
        return 1
    if args.json is not None:
        args.json.write_text(json.dumps(dataclasses.asdict(result), indent=1), encoding="utf-8")
    out = args.out or (None if args.only is not None else ROOT / "BENCHMARKS.md")
    if out is not None:
        write(out, result)
    print(render(result))
    return 0


if __name__ == "__main__":
    sys.exit(main())
