"""A loopback TCP relay that hands every answer on in tiny pieces, as real networks do (TLS records,
small MSS, proxies): a reader that assumes one ``read()`` is one answer breaks behind it.

Requests go to the upstream unchanged; answers are cut into pieces of ``min_piece``..``max_piece``
bytes, each written on its own (TCP_NODELAY, so each is its own segment) after a small random pause.

With ``delay``, it is a network path with that one-way latency instead: every byte in both directions,
and each side's close, arrive ``delay`` seconds after they were sent, whole (the keep-alive race: a
server's close reaches the client only after the client may have sent its next request).
"""

from __future__ import annotations

import asyncio
import contextlib
import random
import socket

__all__ = ["Relay"]


class Relay:
    def __init__(self, upstream_host: str, upstream_port: int, *, min_piece: int = 1, max_piece: int = 7,
                 pause_every: int = 8, pause: float = 0.001, seed: int = 12, delay: float = 0.0) -> None:
        self.upstream = (upstream_host, upstream_port)
        self.min_piece, self.max_piece = min_piece, max_piece
        self.pause_every, self.pause = pause_every, pause
        self.delay = delay
        #: with ``delay``: requests that reached the relay's upstream side after the upstream had closed
        #: its side (the client sent them on a connection already dying: the keep-alive race, happening)
        self.raced = 0
        self.rng = random.Random(seed)
        self.connections = 0
        #: pieces written towards clients, and the largest one
        self.pieces = 0
        self.largest = 0
        self._server: asyncio.Server | None = None
        self._pipes: set[asyncio.Task[None]] = set()
        self._connections: set[asyncio.Task[None]] = set()
        self.host, self.port = "127.0.0.1", 0

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}"

    async def start(self) -> Relay:
        self._server = await asyncio.start_server(self._accept, "127.0.0.1", 0)
        self.port = self._server.sockets[0].getsockname()[1]
        return self

    async def close(self) -> None:
        if self._server is not None:
            self._server.close()
        # the pipes are cancelled, never the connection handlers: asyncio logs an error for a
        # cancelled handler; each handler then closes both sides and returns
        for task in list(self._pipes):
            task.cancel()
        await asyncio.gather(*self._connections, return_exceptions=True)
        if self._server is not None:
            await self._server.wait_closed()

    async def _accept(self, client_r: asyncio.StreamReader, client_w: asyncio.StreamWriter) -> None:
        self.connections += 1
        sock = client_w.get_extra_info("socket")
        if sock is not None:
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        try:
            up_r, up_w = await asyncio.open_connection(*self.upstream)
        except OSError:
            client_w.close()
            return
        task = asyncio.current_task()
        assert task is not None
        self._connections.add(task)
        if self.delay:
            closed = asyncio.Event()  # the upstream closed its side
            forward = asyncio.create_task(self._late(client_r, up_w, closed, forward=True))
            back = asyncio.create_task(self._late(up_r, client_w, closed, forward=False))
        else:
            forward = asyncio.create_task(self._pipe(client_r, up_w, tiny=False))
            back = asyncio.create_task(self._pipe(up_r, client_w, tiny=True))
        self._pipes.update((forward, back))
        try:
            await asyncio.wait({forward, back}, return_when=asyncio.FIRST_COMPLETED)
        finally:
            for t in (forward, back):
                t.cancel()
            await asyncio.gather(forward, back, return_exceptions=True)
            for w in (up_w, client_w):
                w.close()
            self._pipes.difference_update((forward, back))
            self._connections.discard(task)

    async def _pipe(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter, tiny: bool) -> None:
        with contextlib.suppress(ConnectionError):
            while data := await reader.read(65536):
                if not tiny:
                    writer.write(data)
                    await writer.drain()
                    continue
                at = 0
                while at < len(data):
                    size = self.rng.randint(self.min_piece, self.max_piece)
                    piece = data[at:at + size]
                    at += len(piece)
                    writer.write(piece)
                    await writer.drain()
                    self.pieces += 1
                    self.largest = max(self.largest, len(piece))
                    # mostly a bare yield (the piece still leaves as a segment of its own), now and
                    # then a real pause, so the reader sees partial answers without slowing the suite
                    await asyncio.sleep(self.pause if self.pieces % self.pause_every == 0 else 0)

    async def _late(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter, closed: asyncio.Event,
                    forward: bool) -> None:
        """Everything ``delay`` seconds late, in order; the end of the stream too."""
        loop = asyncio.get_running_loop()
        queue: asyncio.Queue[tuple[float, bytes]] = asyncio.Queue()

        async def feed() -> None:
            with contextlib.suppress(ConnectionError):
                while data := await reader.read(65536):
                    if forward and closed.is_set():
                        self.raced += 1
                    queue.put_nowait((loop.time() + self.delay, data))
            if not forward:
                closed.set()
            queue.put_nowait((loop.time() + self.delay, b""))

        async def drain() -> None:
            while True:
                due, data = await queue.get()
                await asyncio.sleep(max(0.0, due - loop.time()))
                if not data:
                    return
                if writer.is_closing():
                    continue  # (to an upstream that closed: lost, as on a real path)
                writer.write(data)
                with contextlib.suppress(ConnectionError):
                    await writer.drain()

        feeding = asyncio.create_task(feed())
        try:
            await drain()
        finally:
            feeding.cancel()
            await asyncio.gather(feeding, return_exceptions=True)
