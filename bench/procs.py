"""The processes a benchmark runs: nginx as the target, blackbox_exporter as the baseline and the
exporter itself, each in its own process group so that stopping it stops all of its children.

CPU and memory are read from /proc, the same figures ``top`` shows, never estimated.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

__all__ = ["BODY", "Proc", "ProcError", "binary", "blackbox", "cpu_seconds", "exporter", "free_port", "get", "nginx",
           "peak_rss_mb", "rss_mb"]

#: what every target answers: a Flipsnack-like envelope, small like a real health-check answer
BODY = '{"code":20,"status":"OK","data":{"api_uploads_left":900}}'
_TICKS = os.sysconf("SC_CLK_TCK")
ROOT = Path(__file__).resolve().parent.parent


class ProcError(RuntimeError):
    """A benchmark process is missing or did not start; the message says which and why."""


def free_port() -> int:
    with contextlib.closing(socket.socket()) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def cpu_seconds(pid: int) -> float:
    """User + system CPU seconds of a process so far (its threads included)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / _TICKS  # utime, stime (fields 14 and 15 of stat)


def _status_kb(pid: int, key: str) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(key + ":"):
            return float(line.split()[1])
    raise ProcError(f"/proc/{pid}/status has no {key}")


def rss_mb(pid: int) -> float:
    return _status_kb(pid, "VmRSS") / 1024


def peak_rss_mb(pid: int) -> float:
    return _status_kb(pid, "VmHWM") / 1024


def get(url: str, timeout: float = 10.0, headers: dict[str, str] | None = None) -> tuple[int, bytes]:
    req = urllib.request.Request(url, headers=headers or {})
    try:
        with urllib.request.urlopen(req, timeout=timeout) as resp:
            return int(resp.status), bytes(resp.read())
    except urllib.error.HTTPError as exc:
        return int(exc.code), bytes(exc.read())


@dataclass
class Proc:
    name: str
    popen: subprocess.Popen[bytes]
    port: int
    log: Path

    @property
    def pid(self) -> int:
        return self.popen.pid

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def alive(self) -> bool:
        return self.popen.poll() is None

    def log_tail(self, lines: int = 5) -> str:
        try:
            return " | ".join(self.log.read_text(errors="replace").strip().splitlines()[-lines:])
        except OSError:
            return ""


def binary(name: str) -> str:
    path = shutil.which(name) or (f"/usr/sbin/{name}" if Path(f"/usr/sbin/{name}").exists() else None)
    if path is None:
        raise ProcError(f"{name} is not installed (make deps installs it)")
    return path


def _stop(proc: Proc) -> None:
    if proc.popen.poll() is None:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.popen.wait(5)
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGKILL)
            proc.popen.wait(5)


@contextlib.contextmanager
def _spawn(name: str, argv: Sequence[str], port: int, workdir: Path, ready_path: str,
           env: dict[str, str] | None = None, wait: float = 20.0) -> Iterator[Proc]:
    log = workdir / f"{name}.log"
    with log.open("wb") as out:
        popen = subprocess.Popen(list(argv), stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                 start_new_session=True, cwd=workdir, env=env)
    proc = Proc(name, popen, port, log)
    try:
        if ready_path:
            _wait_ready(proc, ready_path, wait)
        yield proc
    finally:
        _stop(proc)


def _wait_ready(proc: Proc, path: str, wait: float) -> None:
    end = time.monotonic() + wait
    while time.monotonic() < end:
        if not proc.alive():
            raise ProcError(f"{proc.name} exited with {proc.popen.returncode}: {proc.log_tail()}")
        with contextlib.suppress(OSError):
            if get(proc.url + path, timeout=1)[0] == 200:
                return
        time.sleep(0.02)
    raise ProcError(f"{proc.name} did not answer {path} within {wait:g}s: {proc.log_tail()}")


@contextlib.contextmanager
def workdir(prefix: str = "apistatus-bench-") -> Iterator[Path]:
    # APISTATUS_BENCH_TMPDIR: where the work directories go, so a test can find any process left behind
    with tempfile.TemporaryDirectory(prefix=prefix, dir=os.environ.get("APISTATUS_BENCH_TMPDIR")) as d:
        yield Path(d)


@contextlib.contextmanager
def nginx(dir_: Path, ports: int = 4) -> Iterator[list[str]]:
    """nginx answering BODY on ``ports`` loopback ports; yields their base URLs."""
    nginx_bin = binary("nginx")
    chosen = [free_port() for _ in range(ports)]
    listens = "\n".join(f"    listen 127.0.0.1:{p} backlog=4096;" for p in chosen)
    conf = f"""worker_processes 1;
error_log {dir_}/nginx-error.log warn;
events {{ worker_connections 4096; }}
http {{
  access_log off;
  client_body_temp_path {dir_}/tmp; proxy_temp_path {dir_}/tmp; fastcgi_temp_path {dir_}/tmp;
  uwsgi_temp_path {dir_}/tmp; scgi_temp_path {dir_}/tmp;
  keepalive_requests 1000000;
  keepalive_timeout 120s;
  server {{
{listens}
    default_type application/json;
    location / {{ return 200 '{BODY}'; }}
  }}
}}
"""
    (dir_ / "tmp").mkdir(exist_ok=True)
    (dir_ / "nginx.conf").write_text(conf)
    argv = [nginx_bin, "-p", str(dir_), "-c", str(dir_ / "nginx.conf"), "-g", f"daemon off; pid {dir_}/nginx.pid;"]
    with _spawn("nginx", argv, chosen[0], dir_, "/") as _:
        yield [f"http://127.0.0.1:{p}" for p in chosen]


BLACKBOX_MODULE = "http_json"


@contextlib.contextmanager
def blackbox(dir_: Path) -> Iterator[Proc]:
    """blackbox_exporter with one http module that checks the same body code the exporter reads."""
    bb_bin = binary("prometheus-blackbox-exporter")
    (dir_ / "blackbox.yml").write_text(
        f"modules:\n  {BLACKBOX_MODULE}:\n    prober: http\n    timeout: 5s\n    http:\n"
        "      valid_status_codes: [200]\n      method: GET\n      preferred_ip_protocol: ip4\n"
        "      fail_if_body_not_matches_regexp: ['\"code\":20[,}]']\n")
    port = free_port()
    argv = [bb_bin, f"--config.file={dir_ / 'blackbox.yml'}", f"--web.listen-address=127.0.0.1:{port}",
            "--log.level=warn"]
    with _spawn("blackbox_exporter", argv, port, dir_, "/-/healthy") as proc:
        yield proc


def exporter_argv(config: Path, port: int) -> list[str]:
    return [sys.executable, "-m", "exporter", "--config", str(config), "--listen", f"127.0.0.1:{port}",
            "--log-level", "warning"]


def exporter_env(root: Path | None = None) -> dict[str, str]:
    """The environment that runs the exporter package found under ``root`` (default: this checkout)."""
    env = dict(os.environ)
    env["PYTHONPATH"] = str(root or ROOT) + os.pathsep + env.get("PYTHONPATH", "")
    return env


@contextlib.contextmanager
def exporter(dir_: Path, config: Path, ready: bool = True, root: Path | None = None) -> Iterator[Proc]:
    """The exporter as a user runs it: its own process, its own config file, one loopback port."""
    port = free_port()
    with _spawn("exporter", exporter_argv(config, port), port, dir_, "/metrics" if ready else "",
                env=exporter_env(root)) as proc:
        yield proc
