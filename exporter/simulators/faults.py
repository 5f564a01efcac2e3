"""A hostile vendor on loopback: one raw asyncio server that answers each request with a fault.

The fault is chosen by the first path segment, so a target's ``base_url`` picks it:
``http://127.0.0.1:PORT/gzip_bomb`` makes every probe of that target meet a gzip bomb. A raw server
(not aiohttp) is used because most faults are things a well-behaved HTTP server refuses to do:
headers that never end, a body cut by a reset, a header of a megabyte.

The server counts what it did per fault (requests seen, body bytes handed to the kernel), so a test
can check from the outside that the exporter stopped reading a 100 MB body at its cap. Every endless
fault also ends by itself after ``max_stall`` seconds, so nothing outlives a test.

``LoopbackResolver`` resolves only loopback names and fails every other lookup locally: with it, a
``*.invalid`` target exercises the DNS-failure path without a packet leaving the machine.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import signal
import socket
import ssl
import struct
import sys
import zlib
from collections import Counter
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from functools import cache

import aiohttp.abc

__all__ = ["FAULTS", "FaultServer", "LoopbackResolver", "Request", "gzip_bomb"]

_HEAD_LIMIT = 65536


@dataclass(frozen=True, slots=True)
class Request:
    method: str
    path: str
    headers: dict[str, str]

    @property
    def fault(self) -> str:
        return self.path.lstrip("/").split("/", 1)[0].split("?", 1)[0]


class LoopbackResolver(aiohttp.abc.AbstractResolver):
    """Resolves ``localhost`` and loopback literals; every other name fails as a DNS error would."""

    _LOCAL = {"localhost": "127.0.0.1", "127.0.0.1": "127.0.0.1"}

    async def resolve(self, host: str, port: int = 0,
                      family: socket.AddressFamily = socket.AF_INET) -> list[aiohttp.abc.ResolveResult]:
        addr = self._LOCAL.get(host.lower().rstrip("."))
        if addr is None:
            raise OSError(socket.EAI_NONAME, f"{host}: name not resolved (loopback-only resolver)")
        return [{"hostname": host, "host": addr, "port": port, "family": socket.AF_INET, "proto": 0,
                 "flags": socket.AI_NUMERICHOST}]

    async def close(self) -> None:
        return None


@cache
def gzip_bomb(decompressed_mb: int = 256) -> bytes:
    """A valid gzip stream of ``decompressed_mb`` MiB (an envelope start, then zeros), ~1000 times smaller.

    Each MiB is deflated once and ended with a full flush, which resets the compressor, so the same
    bytes stand for every MiB: the bomb is built in milliseconds instead of deflating 256 MiB.
    """
    comp = zlib.compressobj(9, zlib.DEFLATED, -zlib.MAX_WBITS)
    block = b'{"code": 20, "pad": "'.ljust(1 << 20, b"\0")
    first = comp.compress(block) + comp.flush(zlib.Z_FULL_FLUSH)
    zeros = b"\0" * (1 << 20)
    rest = comp.compress(zeros) + comp.flush(zlib.Z_FULL_FLUSH)
    crc = zlib.crc32(block)
    for _ in range(decompressed_mb - 1):
        crc = zlib.crc32(zeros, crc)
    header = b"\x1f\x8b\x08\x00\x00\x00\x00\x00\x02\xff"  # gzip, deflate, no name, max compression, unix
    trailer = struct.pack("<II", crc, (decompressed_mb << 20) & 0xFFFFFFFF)
    return header + first + rest * (decompressed_mb - 1) + comp.flush() + trailer


@dataclass(slots=True)
class Ctx:
    """What a fault handler may use: the server's counters and limits, for its own fault."""

    server: FaultServer
    fault: str

    def count(self, n: int) -> None:
        self.server.body_bytes[self.fault] += n


Handler = Callable[[Ctx, Request, asyncio.StreamReader, asyncio.StreamWriter], Awaitable[None]]


def _head(status: str, headers: dict[str, str] | None = None, length: int | None = None) -> bytes:
    lines = [f"HTTP/1.1 {status}", "Connection: close"]
    if length is not None:
        lines.append(f"Content-Length: {length}")
    lines.extend(f"{k}: {v}" for k, v in (headers or {}).items())
    return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1")


async def _simple(w: asyncio.StreamWriter, status: str, body: bytes, ctype: str = "application/json",
                  extra: dict[str, str] | None = None) -> None:
    w.write(_head(status, {"Content-Type": ctype, **(extra or {})}, len(body)) + body)
    await w.drain()


def _json_answer(doc: object, status: str = "200 OK") -> Handler:
    async def h(srv: Ctx, req: Request, r: asyncio.StreamReader, w: asyncio.StreamWriter) -> None:
        await _simple(w, status, json.dumps(doc).encode())
    return h


def _raw(status: str, body: bytes, ctype: str) -> Handler:
    async def h(srv: Ctx, req: Request, r: asyncio.StreamReader, w: asyncio.StreamWriter) -> None:
        await _simple(w, status, body, ctype)
    return h


async def _no_answer(srv: Ctx, req: Request, r: asyncio.StreamReader, w: asyncio.StreamWriter) -> None:
    # read until the client gives up (EOF) or the stall limit: never a byte back
    with contextlib.suppress(TimeoutError, ConnectionError):
        await asyncio.wait_for(r.read(), srv.server.max_stall)


async def _slow_headers(srv: Ctx, req: Request, r: asyncio.StreamReader, w: asyncio.StreamWriter) -> None:
    w.write(b"HTTP/1.1 200 OK\r\n")
    w.write(b"X-Slow: ")
    await _drip(srv, w, b"a", 10_000)


async def _trickle(srv: Ctx, req: Request, r: asyncio.StreamReader, w: asyncio.StreamWriter) -> None:
    w.write(_head("200 OK", {"Content-Type": "application/json"}, 10**9) + b'{"code": 20, "pad": "')
    await _drip(srv, w, b"x", 10**6)


async def _drip(srv: Ctx, w: asyncio.StreamWriter, byte: bytes, count: int) -> None:
    """``count`` times ``byte``, one every ``drip_interval`` seconds, until the client or max_stall ends it."""
    loop = asyncio.get_running_loop()
    end = loop.time() + srv.server.max_stall
    for _ in range(count):
        if w.is_closing() or loop.time() > end:
            return
        w.write(byte)
        srv.count(1)
        await w.drain()
        await asyncio.sleep(srv.server.drip_interval)


async def _reset(srv: Ctx, req: Request, r: asyncio.StreamReader, w: asyncio.StreamWriter) -> None:
    w.write(_head("200 OK", {"Content-Type": "application/json"}, 100_000) + b'{"code": 20, "pad": "' + b"x" * 1000)
    await w.drain()
    sock = w.get_extra_info("socket")
    if sock is not None:
        # linger 0: close sends RST instead of FIN, a reset in the middle of the body
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    w.transport.abort()


async def _big_body(srv: Ctx, req: Request, r: asyncio.StreamReader, w: asyncio.StreamWriter) -> None:
    size = 100 * 1024 * 1024
    w.write(_head("200 OK", {"Content-Type": "application/json"}, size))
    chunk = b'{"code": 20, "pad": "'.ljust(65536, b"x")
    sent = 0
    while sent < size and not w.is_closing():
        w.write(chunk)
        await w.drain()
        sent += len(chunk)
        srv.count(len(chunk))


async def _gzip_bomb(srv: Ctx, req: Request, r: asyncio.StreamReader, w: asyncio.StreamWriter) -> None:
    bomb = gzip_bomb()
    w.write(_head("200 OK", {"Content-Type": "application/json", "Content-Encoding": "gzip"}, len(bomb)))
    for i in range(0, len(bomb), 16384):
        if w.is_closing():
            return
        w.write(bomb[i:i + 16384])
        await w.drain()
        srv.count(min(16384, len(bomb) - i))


async def _huge_header(srv: Ctx, req: Request, r: asyncio.StreamReader, w: asyncio.StreamWriter) -> None:
    w.write(b"HTTP/1.1 200 OK\r\nConnection: close\r\nX-Huge: " + b"h" * (1 << 20) + b"\r\n"
            b"Content-Length: 12\r\n\r\n{\"code\": 20}")
    await w.drain()


async def _redirect_loop(srv: Ctx, req: Request, r: asyncio.StreamReader, w: asyncio.StreamWriter) -> None:
    await _simple(w, "302 Found", b"", "text/plain", {"Location": req.path})


async def _invent(srv: Ctx, req: Request, r: asyncio.StreamReader, w: asyncio.StreamWriter) -> None:
    # a vendor that makes up a new code on every answer: the label set must stay bounded anyway
    await _simple(w, "200 OK", json.dumps({"code": 100_000 + srv.server.requests["invent"]}).encode())


FAULTS: dict[str, Handler] = {
    "ok": _json_answer({"code": 20, "status": "OK", "data": {"api_uploads_left": 900}}),
    "no_answer": _no_answer,
    "slow_headers": _slow_headers,
    "trickle": _trickle,
    "reset": _reset,
    "big_body": _big_body,
    "gzip_bomb": _gzip_bomb,
    "invalid_json": _raw("200 OK", b'{"code": 20, "data": ', "application/json"),
    "invalid_utf8": _raw("200 OK", b'{"code": 20, "message": "\xff\xfe\xfd"}', "application/json"),
    "wrong_content_type": _raw("200 OK", b"<html><body>Service is fine, honest</body></html>", "text/html"),
    "proxy_502": _raw("502 Bad Gateway", b"<html><body><h1>502 Bad Gateway</h1></body></html>", "text/html"),
    "code_as_string": _json_answer({"code": "20", "status": "OK"}),
    "huge_header": _huge_header,
    "redirect_loop": _redirect_loop,
    "invent": _invent,
}


@dataclass
class FaultServer:
    """``await FaultServer.start()``; ``url(fault)``; ``await close()``. Loopback only."""

    ssl_context: ssl.SSLContext | None = None
    max_stall: float = 60.0
    drip_interval: float = 0.2
    requests: Counter[str] = field(default_factory=Counter)
    body_bytes: Counter[str] = field(default_factory=Counter)
    connections: int = 0
    open_connections: int = 0
    _server: asyncio.Server | None = None
    _tasks: set[asyncio.Task[None]] = field(default_factory=set)
    port: int = 0

    @classmethod
    async def start(cls, ssl_context: ssl.SSLContext | None = None, max_stall: float = 60.0,
                    drip_interval: float = 0.2) -> FaultServer:
        srv = cls(ssl_context=ssl_context, max_stall=max_stall, drip_interval=drip_interval)
        await asyncio.to_thread(gzip_bomb)  # built once per process, off the loop, never inside an answer
        srv._server = await asyncio.start_server(srv._on_connect, "127.0.0.1", 0, ssl=ssl_context,
                                                 limit=_HEAD_LIMIT, backlog=1024)
        srv.port = srv._server.sockets[0].getsockname()[1]
        return srv

    def url(self, fault: str, host: str = "127.0.0.1") -> str:
        scheme = "https" if self.ssl_context is not None else "http"
        return f"{scheme}://{host}:{self.port}/{fault}"

    async def _on_connect(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        self._tasks.add(task)
        self.connections += 1
        self.open_connections += 1
        try:
            req = await asyncio.wait_for(self._read_request(reader), 10)
            if req is None:
                return
            handler = FAULTS.get(req.fault)
            self.requests[req.fault] += 1
            if handler is None:
                await _simple(writer, "404 Not Found", b"no such fault\n", "text/plain")
                return
            await handler(Ctx(self, req.fault), req, reader, writer)
        except (ConnectionError, TimeoutError, asyncio.IncompleteReadError, asyncio.LimitOverrunError,
                ssl.SSLError, OSError):
            pass  # the client hung up or spoke garbage: that is the point of most faults
        except asyncio.CancelledError:
            # only close() cancels these; ending normally keeps Python 3.11's stream callback from
            # reporting the cancellation as an error
            return
        finally:
            self.open_connections -= 1
            self._tasks.discard(task)
            writer.transport.abort()

    @staticmethod
    async def _read_request(reader: asyncio.StreamReader) -> Request | None:
        head = await reader.readuntil(b"\r\n\r\n")
        lines = head.decode("latin-1").split("\r\n")
        parts = lines[0].split(" ")
        if len(parts) != 3:
            return None
        headers = {}
        for line in lines[1:]:
            if ":" in line:
                k, v = line.split(":", 1)
                headers[k.strip().lower()] = v.strip()
        length = int(headers.get("content-length", "0") or 0)
        if length:
            await reader.readexactly(min(length, _HEAD_LIMIT))
        return Request(parts[0], parts[1], headers)

    async def close(self) -> None:
        if self._server is not None:
            self._server.close()
        for t in list(self._tasks):
            t.cancel()
        if self._tasks:
            await asyncio.gather(*self._tasks, return_exceptions=True)
        if self._server is not None:
            await self._server.wait_closed()


async def _serve(args: argparse.Namespace) -> None:
    servers = [await FaultServer.start(max_stall=args.max_stall)]
    ports = {"http": servers[0].port}
    if args.tls_cert:
        ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        ctx.load_cert_chain(args.tls_cert, args.tls_key)
        servers.append(await FaultServer.start(ctx, max_stall=args.max_stall))
        ports["https"] = servers[1].port
    print(json.dumps(ports), flush=True)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    # bounded even when nobody stops it: a forgotten fault server must not live forever
    with contextlib.suppress(TimeoutError):
        await asyncio.wait_for(stop.wait(), args.max_seconds)
    for s in servers:
        await s.close()


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python3 -m exporter.simulators.faults",
                                description="Serve every fault on 127.0.0.1; prints the ports as JSON.")
    p.add_argument("--tls-cert", help="PEM certificate for a second, TLS listener (for the tls fault)")
    p.add_argument("--tls-key", help="PEM key of --tls-cert")
    p.add_argument("--max-stall", type=float, default=60.0, help="endless faults end after this many seconds")
    p.add_argument("--max-seconds", type=float, default=7200.0, help="stop by itself after this many seconds")
    args = p.parse_args(argv)
    if bool(args.tls_cert) != bool(args.tls_key):
        p.error("--tls-cert and --tls-key go together")
    asyncio.run(_serve(args))
    return 0


if __name__ == "__main__":
    sys.exit(main())
