"""Scale: many targets at a short interval for minutes, scraped like Prometheus would (every 15 s,
gzip), measuring what the exporter achieves: probes/s, start lag, CPU share of one core, peak RSS."""

from __future__ import annotations

import gzip
import statistics
import time
from dataclasses import dataclass
from pathlib import Path

from .configs import write_config
from .procs import cpu_seconds, exporter, get, nginx, peak_rss_mb, rss_mb, workdir
from .scrapes import family_sum, samples

__all__ = ["ScaleResult", "run_scale"]

LAG = "apistatus_probe_start_lag_seconds"


@dataclass(frozen=True)
class ScaleResult:
    targets: int
    interval: float
    window: float  # seconds measured, after warm-up
    probes: int  # completed in the window
    ok_share: float
    lag_p50: float  # median over the scrapes of the recent-window median
    lag_p99: float  # worst recent-window p99 seen at any scrape
    lag_mean: float  # over every probe started in the window (from _sum/_count)
    cpu_share: float  # CPU seconds per second: 1.0 is one whole core
    peak_rss_mb: float
    end_rss_mb: float
    scrapes: int

    @property
    def planned_rate(self) -> float:
        return self.targets / self.interval

    @property
    def probes_per_s(self) -> float:
        return self.probes / self.window if self.window else 0.0


def _scrape(url: str) -> str:
    status, body = get(url + "/metrics", timeout=30, headers={"Accept-Encoding": "gzip"})
    if status != 200:
        raise RuntimeError(f"/metrics answered HTTP {status}")
    return (gzip.decompress(body) if body[:2] == b"\x1f\x8b" else body).decode()


def run_scale(targets: int = 10000, interval: float = 15.0, seconds: float = 120.0,
              scrape_every: float = 15.0, warmup: float | None = None, root: Path | None = None) -> ScaleResult:
    """``root``: run the exporter package found there (another revision's, see bench.versus)."""
    with workdir() as dir_, nginx(dir_) as urls:
        cfg = write_config(dir_ / "scale.yml", urls, targets, interval, min(5.0, interval))
        with exporter(dir_, cfg, root=root) as proc:
            # warm-up: every target probed once (first probes are spread over at most 5 s), then steady
            time.sleep(min(interval, 5.0) + 2.0 if warmup is None else warmup)
            first = _scrape(proc.url)
            cpu0, t0 = cpu_seconds(proc.pid), time.monotonic()
            p50s: list[float] = []
            p99s: list[float] = []
            scrapes = 0
            last = first
            while (now := time.monotonic()) < t0 + seconds:
                time.sleep(min(scrape_every, t0 + seconds - now))
                last = _scrape(proc.url)
                scrapes += 1
                quantiles = dict(samples(last, LAG))
                p50s.append(quantiles.get('{quantile="0.5"}', 0.0))
                p99s.append(quantiles.get('{quantile="0.99"}', 0.0))
            cpu1, t1 = cpu_seconds(proc.pid), time.monotonic()
            peak, end = peak_rss_mb(proc.pid), rss_mb(proc.pid)
    total = family_sum(last, "apistatus_responses_total") - family_sum(first, "apistatus_responses_total")
    ok = sum(v for lab, v in samples(last, "apistatus_responses_total") if 'class="ok"' in lab) - sum(
        v for lab, v in samples(first, "apistatus_responses_total") if 'class="ok"' in lab)
    lag_n = family_sum(last, LAG + "_count") - family_sum(first, LAG + "_count")
    lag_sum = family_sum(last, LAG + "_sum") - family_sum(first, LAG + "_sum")
    return ScaleResult(targets, interval, t1 - t0, int(total), ok / total if total else 0.0,
                       statistics.median(p50s) if p50s else float("nan"), max(p99s, default=float("nan")),
                       lag_sum / lag_n if lag_n else float("nan"), (cpu1 - cpu0) / (t1 - t0), peak, end, scrapes)
