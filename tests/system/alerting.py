"""What the system tests that run a whole alerting stack (exporters, Prometheus, Alertmanager) share:
a loopback-only HTTP client and Alertmanager's webhook receiver (``python3 -m bench detect`` uses the
receiver too)."""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import threading
import time
import urllib.error
import urllib.request
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

__all__ = ["Webhook", "http", "stop_processes"]

# urllib honours *_proxy variables; these requests must stay on loopback, so no proxy handler at all.
_http = urllib.request.build_opener(urllib.request.ProxyHandler({}))


def http(url: str, data: bytes | None = None, timeout: float = 5.0) -> tuple[int, bytes]:
    """(status, body) of a GET, or of a POST of ``data`` (JSON when not empty), to a loopback URL."""
    assert url.startswith("http://127.0.0.1:"), url
    req = urllib.request.Request(url, data=data, headers={"Content-Type": "application/json"} if data else {})
    try:
        with _http.open(req, timeout=timeout) as r:
            return int(r.status), r.read()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read()


def stop_processes(procs: list[subprocess.Popen[bytes]]) -> None:
    """Stop processes started in their own process group: SIGTERM to every group first (they shut down
    side by side), then wait for each, SIGKILL for one that is not gone within 10 s."""
    for proc in procs:
        if proc.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGTERM)
    for proc in procs:
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(5)
        if proc.stdout is not None:
            proc.stdout.close()


class Webhook:
    """Alertmanager's webhook receiver: every notification, with the receiver it went to (the URL's
    path: give each receiver its own, ``{url}/NAME``), and when it came."""

    def __init__(self) -> None:
        self.got: list[tuple[str, dict[str, Any]]] = []
        self.at: list[float] = []  # time.monotonic() of each of ``got``
        self.lock = threading.Lock()
        hook = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = json.loads(self.rfile.read(int(self.headers.get("Content-Length", "0"))))
                with hook.lock:
                    hook.got.append((self.path.strip("/"), body))
                    hook.at.append(time.monotonic())
                self.send_response(200)
                self.end_headers()

            def log_message(self, format: str, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def groups(self) -> dict[str, list[tuple[str, dict[str, Any]]]]:
        """The notifications by Alertmanager's group key, each with its receiver."""
        with self.lock:
            out: dict[str, list[tuple[str, dict[str, Any]]]] = {}
            for receiver, n in self.got:
                out.setdefault(n["groupKey"], []).append((receiver, n))
            return out

    def since(self, t0: float) -> list[tuple[float, str, dict[str, Any]]]:
        """(time.monotonic() it came, receiver, notification) of each that came at ``t0`` or later."""
        with self.lock:
            return [(t, receiver, n) for t, (receiver, n) in zip(self.at, self.got, strict=True) if t >= t0]

    def alerts(self) -> list[dict[str, Any]]:
        """Every alert of every notification, in the order they came."""
        with self.lock:
            return [a for _, n in self.got for a in n.get("alerts", [])]

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()
        self.thread.join(5)
