"""Where a request goes out: one HTTP session (``engine.Session``: a libcurl multi handle with its
connection pool) per distinct ``http_client`` setting.

Targets without ``http_client`` use the exporter's shared session; targets with equal settings share
one session (and its connection pool), so a thousand targets behind one corporate proxy cost one
pool, not a thousand. The session itself applies the settings (proxy or direct, CONNECT headers, TLS
name) to each request.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Iterable

from .engine import Session
from .httpconfig import HttpClient

__all__ = ["Egress", "SessionFactory"]

#: builds a session for one setting (None: the exporter's defaults)
SessionFactory = Callable[[HttpClient | None], Session]


class Egress:
    """The sessions by settings. ``retire`` after a reload closes those no target uses any more, once
    requests still in flight on them have had time to finish."""

    def __init__(self, default: Session, factory: SessionFactory) -> None:
        self.default = default
        self._factory = factory
        self._sessions: dict[HttpClient, Session] = {}
        #: sessions of settings a reload dropped, until they close: a probe still in flight on one
        #: (its quota call, auth retry or login) goes on with it instead of building it again
        self._retired: dict[HttpClient, Session] = {}
        #: the settings of the config applied last
        self._kept: set[HttpClient | None] = set()
        self._closing: set[asyncio.Task[None]] = set()

    def session(self, client: HttpClient | None) -> Session:
        if client is None:
            return self.default
        session = self._sessions.get(client)
        if session is None:
            retiring = self._retired.get(client)
            if retiring is not None and client not in self._kept and not retiring.closed:
                return retiring
            # the files were checked while the config loaded: nothing is read from disk here
            session = self._sessions[client] = self._factory(client)
        return session

    def retire(self, keep: Iterable[HttpClient | None], grace: float) -> None:
        """Close, after ``grace`` seconds, the sessions of settings no target has any more."""
        keep_set = self._kept = set(keep)
        for client in [c for c in self._sessions if c not in keep_set]:
            session = self._retired[client] = self._sessions.pop(client)
            self._close_after(session, grace, client)

    def replace_default(self, session: Session, grace: float) -> None:
        """New connection-pool settings: ``session`` becomes the default, and every session built with
        the old ones (the old default too) closes after ``grace``; the others are built again as needed."""
        old, self.default = self.default, session
        kept = self._kept
        self.retire((), grace)
        self._kept = kept
        self._close_after(old, grace)

    def _close_after(self, session: Session, grace: float, client: HttpClient | None = None) -> None:
        task = asyncio.create_task(self._close_later(session, grace), name="egress:retire")
        self._closing.add(task)

        def closed(done: asyncio.Task[None]) -> None:
            self._closing.discard(done)
            if client is not None and self._retired.get(client) is session:
                del self._retired[client]

        task.add_done_callback(closed)

    @staticmethod
    async def _close_later(session: Session, grace: float) -> None:
        try:
            await asyncio.sleep(grace)
        finally:
            await session.close()

    async def close(self) -> None:
        """Close every session of its own (not the default one, which its owner closes)."""
        for task in list(self._closing):
            task.cancel()
        sessions, self._sessions = list(self._sessions.values()), {}
        await asyncio.gather(*self._closing, *(s.close() for s in sessions), return_exceptions=True)
