"""Review of the egress re-check hold and the connection guard (review7): what the field would hit."""

from __future__ import annotations

import asyncio

from exporter.clock import FakeClock
from exporter.egresscheck import EgressBook
from exporter.engine import new_session
from exporter.probe import Prober

from ..conftest import config_from
from .test_egress_recheck import canary_url


async def test_a_recheck_asked_for_just_before_stop_sends_nothing_after_it() -> None:
    """A transport failure seen as the exporter closes: its re-check is called off with the rest, and
    no check goes out after close (stop used to cancel only the runs already planned)."""
    clock = FakeClock()
    async with canary_url() as (canary, url), new_session() as session:
        cfg = config_from({"targets": [{"name": "t0", "vendor": "flipsnack", "base_url": "http://127.0.0.1:9",
                                        "credentials": {"api_key": "k", "secret": "s"}}],
                           "egress_checks": [{"name": "corp-canary", "url": url}]})
        book = EgressBook(Prober(session, clock), clock)
        book.apply(cfg.egress_checks, cfg.targets, 60.0, 2.0)
        wait = book.recheck("t0")  # a transport failure seen as the exporter closes
        assert isinstance(wait, asyncio.Future)
        await book.stop()
        for _ in range(50):
            await asyncio.sleep(0.005)
        leftover = [t for t in asyncio.all_tasks() if t.get_name().startswith("egress-check:")]
        try:
            assert canary.requests == 0 and not leftover, (canary.requests, leftover)
        finally:
            for t in [*leftover, wait]:
                t.cancel()
            await asyncio.gather(*leftover, wait, return_exceptions=True)
