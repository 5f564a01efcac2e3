"""Helpers for the egress tests: certificates made with trustme, a real tinyproxy on loopback, the
exporter with a given ``http_client`` block. Everything listens on 127.0.0.1."""

from __future__ import annotations

import contextlib
import json
import shutil
import socket
import ssl
import subprocess
import threading
import time
from collections.abc import AsyncIterator, Callable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp
import trustme
from cryptography import x509

from exporter.clock import FakeClock
from exporter.model import ProbeResult

from .conftest import Running, config_from, free_port, running_exporter, sample

FLIP_CREDS = {"api_key": "egress-key", "secret": "egress-secret"}
#: the metric that carries the vendor certificate's notAfter
EXPIRY = "apistatus_tls_cert_expiry_timestamp_seconds"


def flip(name: str, url: str, **extra: Any) -> dict[str, Any]:
    """A flipsnack target against the fault server (its ``ok`` answer is flipsnack's code 20)."""
    return {"name": name, "vendor": "flipsnack", "base_url": url,
            "credentials": {k: f"{v}-{name}" for k, v in FLIP_CREDS.items()}, **extra}


class NoDNS(aiohttp.abc.AbstractResolver):
    """Resolves nothing: a request that reaches a vendor named by host name can only have gone
    through the proxy (IP literals never reach a resolver)."""

    async def resolve(self, host: str, port: int = 0,
                      family: socket.AddressFamily = socket.AF_INET) -> list[aiohttp.abc.ResolveResult]:
        raise OSError(socket.EAI_NONAME, f"{host}: no DNS in this test")

    async def close(self) -> None:
        return None


@contextlib.asynccontextmanager
async def exporter_with(targets: list[dict[str, Any]], http_client: Mapping[str, Any] | None = None,
                        base: Path | None = None, env: Mapping[str, str] | None = None,
                        resolver: aiohttp.abc.AbstractResolver | None = None) -> AsyncIterator[Running]:
    """The exporter with its endpoints; the FakeClock is never advanced, so only the probes a test
    asks for are sent."""
    glob: dict[str, Any] = {"interval": "10s", "timeout": "3s", "probe_share": 1}
    if http_client is not None:
        glob["http_client"] = dict(http_client)
    cfg = config_from({"global": glob, "targets": targets}, base=base, env=env)
    async with running_exporter(cfg, clock=FakeClock(), resolver=resolver) as ex:
        yield ex


async def probe(ex: Running, name: str) -> ProbeResult:
    """One probe now, recorded in the target's state as a scheduled one is (metrics, pages)."""
    assert ex.exporter.scheduler is not None
    target = ex.exporter.config.target(name)
    assert target is not None
    result = await ex.exporter.scheduler.probe_once(target)
    ex.exporter.state.record(result, 0.0, 0.0)
    return result


def outcome(result: ProbeResult) -> tuple[str, str]:
    return result.outcome.cls, result.outcome.code


# --- certificates ----------------------------------------------------------------------------------


def server_ctx(leaf: trustme.LeafCert, client_ca: trustme.CA | None = None,
               max_version: ssl.TLSVersion | None = None) -> ssl.SSLContext:
    ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    leaf.configure_cert(ctx)
    if client_ca is not None:  # mTLS: a client certificate from this CA is required
        ctx.verify_mode = ssl.CERT_REQUIRED
        client_ca.configure_trust(ctx)
    if max_version is not None:
        ctx.maximum_version = max_version
    return ctx


def not_after(leaf: trustme.LeafCert) -> float:
    """The certificate's notAfter as the cryptography package reads it (an independent parser)."""
    cert = x509.load_pem_x509_certificate(leaf.cert_chain_pems[0].bytes())
    return cert.not_valid_after_utc.timestamp()


def shows_expiry_of(metrics: str, leaf: trustme.LeafCert, **labels: str) -> bool:
    """Whether the expiry metric of ``labels`` in a /metrics text is the certificate's own notAfter."""
    return sample(metrics, EXPIRY, **labels) == not_after(leaf)


def write_ca(ca: trustme.CA, path: Path) -> str:
    ca.cert_pem.write_to_path(str(path))
    return str(path)


def write_client(leaf: trustme.LeafCert, directory: Path) -> tuple[str, str]:
    cert, key = directory / "client.pem", directory / "client.key"
    leaf.cert_chain_pems[0].write_to_path(str(cert))
    leaf.private_key_pem.write_to_path(str(key))
    return str(cert), str(key)


class TLSVendor:
    """A vendor over TLS on 127.0.0.1 whose handshake runs on a blocking OpenSSL socket, one thread per
    connection, so a refusal goes out as a real TLS alert (certificate required, protocol version), as
    from a real server; asyncio's memory-BIO servers drop the alert and the client sees only a reset.
    Every request gets Flipsnack's "OK" answer (code 20)."""

    BODY = json.dumps({"code": 20, "status": "OK", "data": {"api_uploads_left": 900}}).encode()

    def __init__(self, ctx: ssl.SSLContext) -> None:
        self.ctx = ctx
        self.sni: list[str | None] = []
        self.handshakes = 0
        self.refused: list[str] = []
        self._sock = socket.create_server(("127.0.0.1", 0))
        self._sock.settimeout(0.2)
        self.port = int(self._sock.getsockname()[1])
        self._stop = threading.Event()
        ctx.sni_callback = self._on_sni  # type: ignore[assignment]
        self._thread = threading.Thread(target=self._serve, name="tls-vendor", daemon=True)
        self._thread.start()

    def _on_sni(self, _sock: ssl.SSLObject, name: str | None, _ctx: ssl.SSLContext) -> None:
        self.sni.append(name)

    def url(self, host: str = "localhost") -> str:
        return f"https://{host}:{self.port}/ok"

    def _serve(self) -> None:
        while not self._stop.is_set():
            try:
                conn, _ = self._sock.accept()
            except TimeoutError:
                continue
            except OSError:
                return
            threading.Thread(target=self._one, args=(conn,), daemon=True).start()

    def _one(self, conn: socket.socket) -> None:
        conn.settimeout(5)
        tls = self.ctx.wrap_socket(conn, server_side=True, do_handshake_on_connect=False)
        try:
            try:
                tls.do_handshake()
            except (ssl.SSLError, OSError) as exc:
                self.refused.append(exc.__class__.__name__ + ": " + str(exc))
                # a lingering close, as real servers do: closing with the client's request unread
                # would send a TCP reset that can overtake the alert
                with contextlib.suppress(OSError):
                    tls.shutdown(socket.SHUT_WR)  # drops the TLS layer; plain reads from here on
                    tls.settimeout(1)
                    for _ in range(64):
                        if not tls.recv(65536):
                            break
                return
            self.handshakes += 1
            head = b""
            while b"\r\n\r\n" not in head and len(head) < 65536:
                chunk = tls.recv(4096)
                if not chunk:
                    return
                head += chunk
            tls.sendall(b"HTTP/1.1 200 OK\r\nConnection: close\r\nContent-Type: application/json\r\n"
                        + f"Content-Length: {len(self.BODY)}\r\n\r\n".encode() + self.BODY)
        except (ssl.SSLError, OSError):
            pass  # the client hung up
        finally:
            tls.close()

    def close(self) -> None:
        self._stop.set()
        self._sock.close()
        self._thread.join(5)


@contextlib.contextmanager
def tls_vendor(ctx: ssl.SSLContext) -> Iterator[TLSVendor]:
    vendor = TLSVendor(ctx)
    try:
        yield vendor
    finally:
        vendor.close()


# --- tinyproxy -------------------------------------------------------------------------------------


@dataclass
class Tinyproxy:
    """A real tinyproxy on 127.0.0.1 (Debian's package), its config and log in a temporary folder."""

    port: int
    log: Path
    proc: subprocess.Popen[bytes]
    auth: tuple[str, str] | None = None
    _lines: list[str] = field(default_factory=list)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def url_with(self, user: str, password: str) -> str:
        return f"http://{user}:{password}@127.0.0.1:{self.port}"

    def requests(self) -> list[str]:
        """The request lines tinyproxy logged, e.g. ``CONNECT localhost:4321 HTTP/1.1``."""
        text = self.log.read_text(errors="replace")
        return [line.split("): ", 1)[1] for line in text.splitlines() if "]: Request (file descriptor" in line]

    def connects(self) -> list[str]:
        return [r for r in self.requests() if r.startswith("CONNECT ")]


def tinyproxy_binary() -> str:
    found = shutil.which("tinyproxy") or shutil.which("tinyproxy", path="/usr/sbin:/usr/bin")
    assert found, "tinyproxy is not installed: `make deps` installs it (Debian package tinyproxy)"
    return found


@contextlib.contextmanager
def running(argv: list[str], port: int, seconds: float, why: Callable[[subprocess.Popen[bytes]], str],
            stderr: int = subprocess.PIPE) -> Iterator[subprocess.Popen[bytes]]:
    """A server started from ``argv``, once it accepts connections on 127.0.0.1:``port`` (bounded by
    ``seconds``; else the test fails with ``why(proc)``); stopped at the end, killed if it lingers."""
    proc = subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=stderr)
    try:
        deadline = time.monotonic() + seconds
        while True:
            with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), timeout=1):
                break
            if proc.poll() is not None or time.monotonic() > deadline:
                raise AssertionError(why(proc))
            time.sleep(0.05)
        yield proc
    finally:
        proc.terminate()
        try:
            proc.wait(15)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(5)


@contextlib.contextmanager
def tinyproxy(directory: Path, auth: tuple[str, str] | None = None,
              connect_ports: tuple[int, ...] = ()) -> Iterator[Tinyproxy]:
    """Start tinyproxy in the foreground; wait (bounded) until it accepts connections."""
    binary = tinyproxy_binary()
    port = free_port()
    log = directory / "tinyproxy.log"
    lines = [f"Port {port}", "Listen 127.0.0.1", "Timeout 20", "MaxClients 64", "Allow 127.0.0.1",
             "LogLevel Connect", f'LogFile "{log}"', "DisableViaHeader Yes"]
    # without a ConnectPort line CONNECT is allowed to any port (the simulators listen on random ones)
    lines += [f"ConnectPort {p}" for p in connect_ports]
    if auth is not None:
        lines.append(f"BasicAuth {auth[0]} {auth[1]}")
    conf = directory / "tinyproxy.conf"
    conf.write_text("\n".join(lines) + "\n")
    with running([binary, "-d", "-c", str(conf)], port, 10,
                 lambda proc: f"tinyproxy did not listen within 10 s (exit code {proc.returncode}); config {conf}",
                 stderr=subprocess.DEVNULL) as proc:
        yield Tinyproxy(port, log, proc, auth)
