"""Hostile and broken vendors: every fault of the fault simulator, through the real prober.

Each fault gets its class and code; faulty targets never hold up the schedule of healthy ones;
/metrics answers while slow probes hang; a 100 MB body and a gzip bomb are read only up to the cap;
thousands of probes leave no task, connection or file descriptor behind; a vendor that invents a
new code on every answer keeps its series bounded. Everything listens on 127.0.0.1, and DNS goes
through a loopback-only resolver, so the ``.invalid`` target never sends a query anywhere.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import tracemalloc
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import pytest
import trustme

from exporter.clock import FakeClock
from exporter.engine import new_session
from exporter.httpconfig import TLSConfig
from exporter.probe import Prober, ProbeResult
from exporter.simulators.faults import FaultServer, LoopbackResolver
from exporter.state import MAX_FOREIGN_CODES

from ..conftest import Running, config_from, running_exporter, sample
from ..egress_support import server_ctx

CREDS = {"flipsnack": {"api_key": "fault-key", "secret": "fault-secret"}, "bizwebs": {"token": "fault-token"}}


def target(name: str, url: str, vendor: str = "flipsnack", timeout: str = "1s",
           interval: str = "10s") -> dict[str, Any]:
    # a credential of its own per target: targets sharing one also share the vendor's request budget
    creds = {k: f"{v}-{name}" for k, v in CREDS[vendor].items()}
    return {"name": name, "vendor": vendor, "base_url": url, "credentials": creds,
            "timeout": timeout, "interval": interval}


async def wait_until(pred: Callable[[], Awaitable[bool] | bool], limit: float = 15.0) -> None:
    """Bounded wait for something real (a probe over loopback) to happen; fails, never hangs."""
    loop = asyncio.get_running_loop()
    end = loop.time() + limit
    while True:
        got = pred()
        if isinstance(got, Awaitable):
            got = await got
        if got:
            return
        assert loop.time() < end, "condition not reached"
        await asyncio.sleep(0.02)


@contextlib.asynccontextmanager
async def exporter_on(targets: list[dict[str, Any]], clock: FakeClock | None = None,
                      **glob: Any) -> AsyncIterator[Running]:
    # A FakeClock that is never advanced means the scheduler never probes on its own: only the
    # probes a test asks for are sent.
    # probe_share 1: these tests probe more often than a real vendor's budget share would allow
    cfg = config_from({"global": {"interval": "10s", "timeout": "1s", "probe_share": 1, **glob},
                       "targets": targets})
    async with running_exporter(cfg, clock=clock or FakeClock(), resolver=LoopbackResolver()) as ex:
        yield ex


async def probe(ex: Running, name: str) -> ProbeResult:
    assert ex.exporter.scheduler is not None
    t = ex.exporter.config.target(name)
    assert t is not None
    return await ex.exporter.scheduler.probe_once(t)


# (fault, vendor, class, code): the flipsnack code lives in the JSON body, the bizwebs code is the
# HTTP status, so a broken body hurts one and not the other.
MATRIX = [
    ("ok", "flipsnack", "ok", "20"),
    ("no_answer", "flipsnack", "timeout", "timeout"),
    ("slow_headers", "flipsnack", "timeout", "timeout"),
    ("trickle", "flipsnack", "timeout", "timeout"),
    ("reset", "flipsnack", "network_error", "reset"),
    ("big_body", "flipsnack", "unknown", "http_200"),  # the envelope is cut at the cap: never ok
    ("big_body", "bizwebs", "unknown", "200"),  # the status says 200, but not all of the answer was read
    ("gzip_bomb", "flipsnack", "unknown", "http_200"),
    ("gzip_bomb", "bizwebs", "unknown", "200"),
    ("invalid_json", "flipsnack", "unknown", "http_200"),
    ("invalid_utf8", "flipsnack", "unknown", "http_200"),
    ("wrong_content_type", "flipsnack", "unknown", "http_200"),
    ("proxy_502", "flipsnack", "server_error", "http_502"),
    ("proxy_502", "bizwebs", "server_error", "502"),
    ("code_as_string", "flipsnack", "unknown", "http_200"),
    ("huge_header", "flipsnack", "network_error", "protocol"),
    ("redirect_loop", "flipsnack", "client_error", "http_302"),
    ("redirect_loop", "bizwebs", "client_error", "302"),
    ("invent", "flipsnack", "unknown", "100001"),
]


@pytest.mark.parametrize(("fault", "vendor", "cls", "code"), MATRIX, ids=[f"{m[0]}-{m[1]}" for m in MATRIX])
async def test_each_fault_gets_its_class_and_code(faults: FaultServer, fault: str, vendor: str, cls: str,
                                                  code: str) -> None:
    # a fault that ends in a timeout waits it out in real time: a short one, still far beyond loopback's
    timeout = "300ms" if cls == "timeout" else "1s"
    async with exporter_on([target("t", faults.url(fault), vendor, timeout=timeout)]) as ex:
        result = await probe(ex, "t")
        assert (result.outcome.cls, result.outcome.code) == (cls, code), result.outcome
        assert len(result.excerpt) <= 512 * 4  # an excerpt, never the body
    # redirects are not followed: the loop costs the vendor exactly one request per probe
    assert faults.requests[fault] == 1


@pytest.mark.parametrize(("url", "code"), [("http://vendor.invalid:{port}/ok", "dns"),
                                           ("http://127.0.0.1:1/ok", "refused")])
async def test_unreachable_vendor_is_a_network_error(faults: FaultServer, url: str, code: str) -> None:
    async with exporter_on([target("t", url.format(port=faults.port))]) as ex:
        result = await probe(ex, "t")
    assert (result.outcome.cls, result.outcome.code) == ("network_error", code)
    assert faults.connections == 0


async def test_certificate_for_another_name_is_a_tls_error(ca: trustme.CA, ca_file: str) -> None:
    wrong = await FaultServer.start(server_ctx(ca.issue_cert("wrong.example")))
    right = await FaultServer.start(server_ctx(ca.issue_cert("localhost")))
    try:
        # the exporter as shipped: the test CA is not trusted at all
        async with exporter_on([target("t", wrong.url("ok", host="localhost"))]) as ex:
            assert (await probe(ex, "t")).outcome.code == "tls"
        # a client that trusts the CA still refuses a certificate issued for another name
        cfg = config_from({"targets": [target("wrong", wrong.url("ok", host="localhost")),
                                       target("right", right.url("ok", host="localhost"))]})
        async with new_session(TLSConfig(ca_file=ca_file), resolver=LoopbackResolver()) as session:
            prober = Prober(session, FakeClock())
            bad = await prober.probe(cfg.targets[0])
            good = await prober.probe(cfg.targets[1])
        assert (bad.outcome.cls, bad.outcome.code) == ("network_error", "tls")
        assert (good.outcome.cls, good.outcome.code) == ("ok", "20")  # the same setup works with the right name
    finally:
        await wrong.close()
        await right.close()


async def test_big_body_and_gzip_bomb_are_read_only_up_to_the_cap(faults: FaultServer) -> None:
    async with exporter_on([target("big", faults.url("big_body"), "bizwebs"),
                            target("bomb", faults.url("gzip_bomb"), "bizwebs")]) as ex:
        tracemalloc.start()
        try:
            big = await probe(ex, "big")
            bomb = await probe(ex, "bomb")
            _, peak = tracemalloc.get_traced_memory()
        finally:
            tracemalloc.stop()
    # a body cut at the cap is never ok, and the message says why
    assert big.outcome.cls == bomb.outcome.cls == "unknown"
    assert "cut at max_body_bytes" in big.outcome.message and "cut at max_body_bytes" in bomb.outcome.message
    await wait_until(lambda: faults.open_connections == 0)
    # 100 MiB offered; what left the server is the cap plus what the kernel's socket buffers held
    assert 0 < faults.body_bytes["big_body"] < 16 * 2**20, faults.body_bytes
    # the bomb inflates to 256 MiB; the exporter's Python heap stays far below that
    assert peak < 24 * 2**20, f"peak traced memory {peak / 2**20:.1f} MiB"


async def test_healthy_targets_keep_their_schedule_while_others_hang(faults: FaultServer) -> None:
    hanging = ["no_answer", "slow_headers", "trickle"]
    quick = ["reset", "big_body", "gzip_bomb", "invalid_json", "huge_header", "redirect_loop"]
    healthy = [f"ok{i}" for i in range(4)]
    # proxy_502 is a server error: that target backs off, as it should, and is not counted per interval
    targets = ([target(f, faults.url(f), timeout="10s") for f in [*hanging, *quick, "proxy_502"]]
               + [target(h, faults.url("ok"), timeout="10s") for h in healthy]
               + [target("dns", "http://vendor.invalid/ok", timeout="10s")])
    clock = FakeClock()
    async with exporter_on(targets, clock=clock, max_concurrency=50) as ex:
        state = ex.exporter.state

        def probes(name: str) -> int:
            ts = state.get(name)
            return ts.probes if ts is not None else 0

        await clock.advance(6)  # every target's first probe is due within the start-up spread
        await wait_until(lambda: all(probes(n) >= 1 for n in healthy + quick + ["dns"]))
        for rounds in range(2, 6):
            # the hanging probes are still in flight (their 10 s timeout is real time, never reached)
            # and the healthy targets are probed again at each interval all the same
            await clock.advance(10.6)
            await wait_until(lambda r=rounds: all(probes(n) >= r for n in healthy + quick))
            assert all(probes(n) == 0 for n in hanging)
            assert faults.open_connections >= len(hanging)
            status, text = await ex.get("/metrics")  # answers while the slow probes are pending
            assert status == 200
            assert all(sample(text, "apistatus_up", target=h) == 1 for h in healthy)
        assert sample(text, "apistatus_outcome", target="trickle", **{"class": "timeout"}) is None
        assert sample(text, "apistatus_responses_total", target="reset", **{"class": "network_error",
                                                                             "code": "reset"}) == probes("reset")
        # the schedule never doubles up on a target: one probe per interval, not a burst
        assert all(probes(n) <= 6 for n in healthy)


async def test_hundreds_of_probes_leak_no_task_connection_or_fd(faults: FaultServer) -> None:
    mix = ["ok", "reset", "invalid_json", "invalid_utf8", "huge_header", "redirect_loop", "proxy_502",
           "code_as_string", "gzip_bomb", "wrong_content_type"]
    targets = [target(f, faults.url(f)) for f in mix] + [target("dns", "http://vendor.invalid/ok"),
                                                         target("refused", "http://127.0.0.1:1/ok")]
    async with exporter_on(targets) as ex:
        names = [t["name"] for t in targets]
        await asyncio.gather(*(probe(ex, n) for n in names))  # warm up: the pools and caches exist now
        await wait_until(lambda: faults.open_connections == 0)
        tasks_before = len(asyncio.all_tasks())
        fds_before = len(os.listdir("/proc/self/fd"))
        results: list[ProbeResult] = []
        # a leak of one task or fd per probe of any kind shows as dozens: the counts are exact
        for _ in range(600 // 50):
            results += await asyncio.gather(*(probe(ex, names[i % len(names)]) for i in range(50)))
        await wait_until(lambda: faults.open_connections == 0)
        tasks_after = len(asyncio.all_tasks())
        fds_after = len(os.listdir("/proc/self/fd"))
    assert len(results) == 600
    assert {r.outcome.cls for r in results} >= {"ok", "network_error", "unknown", "client_error", "server_error"}
    assert tasks_after <= tasks_before, (tasks_before, tasks_after)
    assert fds_after <= fds_before + 2, (fds_before, fds_after)
    assert sum(faults.requests.values()) >= 600 * 10 // 12


async def test_invented_codes_keep_the_series_bounded(faults: FaultServer) -> None:
    async with exporter_on([target("inventive", faults.url("invent"))]) as ex:
        exp = ex.exporter
        for _ in range(200 // 50):
            for result in await asyncio.gather(*(probe(ex, "inventive") for _ in range(50))):
                exp.state.record(result, 0.0, 0.0)
        text = await ex.metrics()
    series = [line for line in text.splitlines()
              if line.startswith("apistatus_responses_total{") and 'target="inventive"' in line]
    assert len(series) == MAX_FOREIGN_CODES + 1, series
    assert sample(text, "apistatus_responses_total", target="inventive", code="other") == 200 - MAX_FOREIGN_CODES
    total = sum(float(line.rsplit(" ", 1)[1]) for line in series)
    assert total == 200  # nothing lost: the overflow is counted, just not labelled
