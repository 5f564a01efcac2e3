"""BENCHMARKS.md: every figure of one run, the command that produced it, the machine, and each goal
with whether it was met. A "Soak" section already in the file (written by the soak benchmark) is kept."""

from __future__ import annotations

import os
import platform
import re
import statistics
import subprocess
from collections.abc import Sequence
from dataclasses import dataclass, field
from importlib import metadata
from pathlib import Path

from .cpu import CpuResult
from .memory import MemoryRun
from .scale import ScaleResult
from .scrape import ScrapeResult
from .startup import StartupResult

__all__ = ["Run", "machine", "render", "write"]

SOAK_PLACEHOLDER = ("## Soak\n\nNot run by `python3 -m bench`: see `python3 -m bench.soak --help` "
                    "(issue 7); its table goes here.\n")


@dataclass
class Run:
    command: str
    started: str  # UTC
    quick: bool
    durations: dict[str, float] = field(default_factory=dict)  # part -> seconds
    #: part -> 1-minute load average before and after it: other work on the machine skews figures
    load: dict[str, tuple[float, float]] = field(default_factory=dict)
    cpu: list[CpuResult] | None = None
    scale: ScaleResult | None = None
    scrape: list[ScrapeResult] | None = None
    startup: list[StartupResult] | None = None
    memory: MemoryRun | None = None


def _version(argv: Sequence[str], pattern: str) -> str:
    try:
        out = subprocess.run(list(argv), capture_output=True, text=True, timeout=10)
    except (OSError, subprocess.TimeoutExpired):
        return "?"
    m = re.search(pattern, out.stdout + out.stderr)
    return m.group(1) if m else "?"


def machine() -> str:
    model = "?"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    cores = os.cpu_count() or 0
    mem = "?"
    try:
        kb = int(Path("/proc/meminfo").read_text().split()[1])
        mem = f"{kb / 1024 / 1024:.1f} GiB"
    except (OSError, ValueError, IndexError):
        pass
    libs = ", ".join(f"{p} {_dist(p)}" for p in ("aiohttp", "prometheus-client", "PyYAML"))
    nginx = _version(["nginx", "-v"], r"nginx/(\S+)")
    bb = _version(["prometheus-blackbox-exporter", "--version"], r"version (\S+)")
    return (f"{cores} cores ({model}), {mem} RAM, {platform.system()} {platform.release()}; "
            f"Python {platform.python_version()}, {libs}; nginx {nginx}, blackbox_exporter {bb}")


def _dist(name: str) -> str:
    try:
        return metadata.version(name)
    except metadata.PackageNotFoundError:
        return "?"


def _verdict(ok: bool) -> str:
    return "met" if ok else "**not met**"


#: CPU per probe goals against blackbox_exporter, by subject (issue 15)
CPU_GOALS = {"exporter (defaults)": 0.33, "exporter (keepalive: false)": 0.50}
FLOORS = {"exporter (defaults)": "wrk (keep-alive)", "exporter (keepalive: false)": "wrk (new connection each)"}


def _spread(values: list[float], fmt: str = "{:.3f}") -> str:
    if len(values) < 2:
        return ""
    return f" ({fmt.format(min(values))}-{fmt.format(max(values))})"


def _cpu(results: list[CpuResult]) -> list[str]:
    """Per subject: the median over the rounds (min-max in brackets); ratios are taken within a round."""
    subjects = list(dict.fromkeys(r.subject for r in results))
    rounds = sorted({r.round for r in results})
    by = {(r.subject, r.round): r for r in results}

    def ratios(subject: str, other: str) -> list[float]:
        return [by[subject, n].cpu_per_probe_ms / by[other, n].cpu_per_probe_ms for n in rounds
                if (subject, n) in by and (other, n) in by and by[other, n].probes and by[subject, n].probes]

    lines = [f"{len(rounds)} round(s), subjects interleaved ({', '.join(subjects)}), each round starting "
             "with the next of the first three, the wrk floor last.",
             "", "| subject | probes/s | probes per round | ok | CPU per probe (median, min-max) | vs blackbox "
             "| vs the wrk floor |", "|---|---:|---:|---:|---:|---:|---:|"]
    for subject in subjects:
        rows = [by[subject, n] for n in rounds if (subject, n) in by]
        per = [r.cpu_per_probe_ms for r in rows]
        vs_bb = ratios(subject, "blackbox_exporter")
        floor = FLOORS.get(subject)
        vs_floor = ratios(subject, floor) if floor else []
        ok = min(r.ok_share for r in rows)
        lines.append(
            f"| {subject} | {statistics.median(r.rate for r in rows):.0f} | "
            f"{statistics.median(r.probes for r in rows):.0f} | {ok:.0%} | "
            f"{statistics.median(per) * 1000:.0f} us{_spread([v * 1000 for v in per], '{:.0f}')} | "
            + (f"{statistics.median(vs_bb):.2f}x{_spread(vs_bb, '{:.2f}')}" if vs_bb and subject != "blackbox_exporter"
               else "") + " | "
            + (f"{statistics.median(vs_floor):.1f}x" if vs_floor else "") + " |")
    lines.append("")
    for subject, goal in CPU_GOALS.items():
        vs_bb = ratios(subject, "blackbox_exporter")
        if vs_bb:
            ratio = statistics.median(vs_bb)
            lines.append(f"- Goal, {subject}: at most {goal:.2f}x blackbox's CPU per probe: {ratio:.2f}x "
                         f"(median of {len(vs_bb)} rounds), {_verdict(ratio <= goal)}.")
    return lines


def _scale(r: ScaleResult) -> list[str]:
    return [
        "| targets | interval | measured | probes/s planned | probes/s achieved | ok | start lag p50 | "
        "start lag p99 (worst) | mean lag | CPU (share of one core) | peak RSS | RSS at end | scrapes |",
        "|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
        f"| {r.targets} | {r.interval:g} s | {r.window:.0f} s | {r.planned_rate:.0f} | {r.probes_per_s:.0f} | "
        f"{r.ok_share:.0%} | {r.lag_p50 * 1000:.1f} ms | {r.lag_p99 * 1000:.1f} ms | {r.lag_mean * 1000:.1f} ms | "
        f"{r.cpu_share:.1%} | {r.peak_rss_mb:.0f} MB | {r.end_rss_mb:.0f} MB | {r.scrapes} |",
        "",
        f"- Goal: p99 start lag under 1 s: {r.lag_p99:.3f} s, {_verdict(r.lag_p99 < 1)}.",
        f"- Goal: CPU under a quarter of one core: {r.cpu_share:.1%}, {_verdict(r.cpu_share < 0.25)}.",
        f"- Goal: RSS under 150 MB: peak {r.peak_rss_mb:.0f} MB, {_verdict(r.peak_rss_mb < 150)}.",
        f"- Probes/s achieved vs planned: {r.probes_per_s:.0f} / {r.planned_rate:.0f}.",
    ]


def _scrape(results: list[ScrapeResult]) -> list[str]:
    lines = ["| targets | series | body | gzip body | /metrics median | p90 | gzip median | exporter CPU "
             "per scrape (gzip) | generate_latest median | speed-up |",
             "|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|"]
    for r in results:
        lines.append(f"| {r.targets} | {r.series} | {r.bytes_plain / 1e6:.2f} MB | {r.bytes_gzip / 1e6:.2f} MB | "
                     f"{r.plain_ms:.1f} ms | {r.plain_p90_ms:.1f} ms | {r.gzip_ms:.1f} ms | {r.cpu_ms:.0f} ms "
                     f"({r.cpu_gzip_ms:.0f} ms) | "
                     f"{r.baseline_ms:.1f} ms | {r.speedup:.1f}x |")
    big = max(results, key=lambda r: r.targets)
    lines += ["", f"- Goal at {big.targets} targets: median under 100 ms: {big.plain_ms:.1f} ms, "
                  f"{_verdict(big.plain_ms < 100)}; with gzip {big.gzip_ms:.1f} ms.",
              f"- Goal at {big.targets} targets: at least 10x faster than generate_latest: {big.speedup:.1f}x, "
              f"{_verdict(big.speedup >= 10)}.",
              f"- Goal at {big.targets} targets: median at most 40 ms plain, 70 ms gzip: {big.plain_ms:.1f} / "
              f"{big.gzip_ms:.1f} ms, {_verdict(big.plain_ms <= 40 and big.gzip_ms <= 70)}."]
    if big.families:
        total = sum(size for _, _, size in big.families) or 1
        per = big.targets or 1
        lines += ["", f"What each family costs at {big.targets} targets (series and bytes of the plain answer, "
                      f"per target; {big.series / per:.1f} series per target in all):", "",
                  "| family | series per target | bytes per target | share of the answer |", "|---|---:|---:|---:|"]
        lines += [f"| `{name}` | {n / per:.2f} | {size / per:.0f} | {size / total:.1%} |"
                  for name, n, size in big.families]
    return lines


def _startup(results: list[StartupResult]) -> list[str]:
    floor = next((r for r in results if r.targets == 0), None)
    lines = ["| what | runs | median | min | max | vs the floor (median of runs) |", "|---|---:|---:|---:|---:|---:|"]
    for r in results:
        what = "floor: interpreter + the exporter's imports, exit" if r.targets == 0 else f"{r.targets} targets"
        vs = ""
        if floor is not None and r is not floor and len(floor.runs) == len(r.runs):
            vs = f"{statistics.median(a / b for a, b in zip(r.runs, floor.runs, strict=True)):.1f}x"
        lines.append(f"| {what} | {len(r.runs)} | {r.median:.2f} s | {min(r.runs):.2f} s | {max(r.runs):.2f} s "
                     f"| {vs} |")
    lines.append("")
    # issue 15: a small config under 1 s; issue 27 (documented YAML loader only): 10,000 targets under 2 s
    lines += [f"- Goal: under {goal:g} s ({r.targets} targets): {r.median:.2f} s, {_verdict(r.median <= goal)}."
              for r in results if r.targets for goal in [2.0 if r.targets >= 10000 else 1.0]]
    return lines


def _memory(m: MemoryRun) -> list[str]:
    lines = ["Deep size of one target's full history (in process), per entry shown:", "",
             "| answers | entries shown | bytes per entry |", "|---|---:|---:|"]
    lines += [f"| {d.case} | {d.entries} | {d.bytes_per_entry:.1f} B |" for d in m.deep]
    lines += ["", f"A real exporter with {m.targets} targets every {m.interval:g} s and `history: {m.history}` "
              f"(ring full after {m.targets * m.history} probes, at {m.full_at:.0f} s):", "",
              "| seconds | RSS | probes done | history filled |", "|---:|---:|---:|---:|"]
    need = m.targets * m.history
    lines += [f"| {t:.0f} | {rss:.0f} MB | {done} | {min(1.0, done / need):.0%} |" for t, rss, done in m.samples]
    same = next((d for d in m.deep if d.case == "same answer"), None)
    lines.append("")
    if same is not None:
        lines.append(f"- Goal: at most 48 B per history entry: {same.bytes_per_entry:.1f} B, "
                     f"{_verdict(same.bytes_per_entry <= 48)}.")
    full = m.full_at == m.full_at  # not NaN: the ring was filled within the run
    if m.history == 50 and full:
        lines.append(f"- Goal: RSS at most 150 MB once the default history (50) is full: {m.end_rss:.0f} MB, "
                     f"{_verdict(m.end_rss <= 150 * 1e6 / 2**20)}.")
    elif not full:
        lines.append(f"- The ring was not full when the run ended ({m.seconds:.0f} s): no RSS goal verdict.")
    return lines


def render(run: Run, notes: dict[str, str] | None = None, kept: Sequence[str] = (SOAK_PLACEHOLDER,)) -> str:
    notes = notes or {}
    total = sum(run.durations.values())
    out = [
        "# Benchmarks",
        "",
        "Generated by `python3 -m bench` (bench/); do not edit the tables by hand, run the command again.",
        "",
        f"- Command: `{run.command}`{' (quick smoke run: figures are not meaningful)' if run.quick else ''}",
        f"- Run: {run.started} UTC, {total:.0f} s in all ("
        + ", ".join(f"{k} {v:.0f} s" for k, v in run.durations.items()) + ")",
        "- Load average (1 min) before -> after each part: "
        + (", ".join(f"{k} {a:.2f} -> {b:.2f}" for k, (a, b) in run.load.items()) or "not recorded"),
        f"- Machine: {machine()}",
        "- Targets: Debian nginx on 4 loopback ports answering a Flipsnack-like `{\"code\":20,...}` body; the "
        "exporter probes them as the built-in `flipsnack` vendor (md5 signer, body-code classifier, quota "
        "reading all run), with the vendor's request budget lifted. CPU is utime+stime from /proc/PID/stat, "
        "RSS from /proc/PID/status (VmHWM is the peak).",
        "",
    ]
    sections = [
        ("cpu", "CPU per probe", run.cpu, _cpu, "python3 -m bench cpu"),
        ("scale", "Scale", run.scale, _scale, "python3 -m bench scale"),
        ("scrape", "Scrape cost", run.scrape, _scrape, "python3 -m bench scrape"),
        ("startup", "Start-up", run.startup, _startup, "python3 -m bench startup"),
        ("memory", "Memory with a full history", run.memory, _memory, "python3 -m bench memory"),
    ]
    for key, title, data, fmt, cmd in sections:
        out += [f"## {title}", "", f"Alone: `{cmd}`. " + notes.get(key + "_how", ""), ""]
        out += fmt(data) if data else ["Not run in this run."]  # type: ignore[operator]
        if notes.get(key):
            out += ["", notes[key]]
        out.append("")
    out += [section.rstrip() + "\n" for section in kept]
    return "\n".join(out)


#: hand-written sections of BENCHMARKS.md that a new run keeps as they are
KEPT = ("Notes", "Soak", "Fleet", "Detection")


def kept_sections(path: Path) -> list[str]:
    """The hand-written sections of an existing BENCHMARKS.md (each up to the next level-2 heading)."""
    text = path.read_text(encoding="utf-8") if path.exists() else ""
    out = []
    for title in KEPT:
        m = re.search(rf"^## {title}\b.*?(?=^## |\Z)", text, re.S | re.M)
        if m:
            out.append(m.group(0))
        elif title == "Soak":
            out.append(SOAK_PLACEHOLDER)
    return out


def write(path: Path, run: Run, notes: dict[str, str] | None = None) -> None:
    path.write_text(render(run, notes, kept_sections(path)), encoding="utf-8")
