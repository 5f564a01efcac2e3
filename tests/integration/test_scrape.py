"""/metrics at size: what a scrape gets (every sample once, the text format, its length declared, one
gzip member), that it is the snapshot taken when the scrape began, and that the event loop keeps
running while a large answer is compressed or goes out, to a slow reader or a fast one."""

from __future__ import annotations

import asyncio
import functools
import gzip
import logging
import random
import socket
import struct
import threading
import zlib
from collections.abc import AsyncIterator

import pytest
from aiohttp import web
from aiohttp.typedefs import Handler
from prometheus_client.parser import text_string_to_metric_families

from exporter import collector
from exporter import web as web_module
from exporter.app import Exporter
from exporter.collector import CHUNK_BYTES, FAMILIES, exposition, render_exposition
from exporter.config import Config
from exporter.model import CLASSES, Outcome, ProbeResult, QuotaReading
from exporter.state import DURATION_BUCKETS, State
from exporter.web import gzipped, make_app

from ..conftest import config_from, serve_app
from .test_endpoints import promtool_check

T0 = 1_764_590_000.0


@functools.cache  # a Config is frozen: the tests that read the same n targets share one load
def _config(n: int) -> Config:
    return config_from({
        "global": {"interval": "15s", "timeout": "5s"},
        "targets": [{"name": f"t{i:05d}", "vendor": "flipsnack", "base_url": "http://127.0.0.1:9",
                     "labels": {"team": f'a"b\\c{i % 3}'}, "credentials": {"api_key": "k", "secret": "s"}}
                    for i in range(n)]})


def _probe_all(state: State, config: Config, rounds: int, seed: int) -> None:
    """Varied results: every class, codes with characters to escape, quotas present or not, durations
    in every bucket; some targets never probed."""
    rng = random.Random(seed)
    for k in range(rounds):
        for i, target in enumerate(config.targets):
            if i % 11 == 3:
                continue
            quotas = () if i % 4 == 0 else (QuotaReading("uploads", rng.choice([None, 900.0, 1.5]),
                                                         rng.choice([None, 1000.0]), rng.choice([None, T0 + 60])),)
            outcome = Outcome(rng.choice(CLASSES), rng.choice(["20", "41", 'x"\n\\', "http_503"]), "m",
                              rng.choice([0, 200, 503]), rng.choice([None, 30.0]), quotas, rng.choice([None, -2.5]))
            started = T0 + k * 15 + i * 0.001
            result = ProbeResult(target.name, started, rng.choice([0.01, 0.3, 2.0, 40.0]), outcome, "GET /", "",
                                 tls_cert_expiry=rng.choice([None, T0 + 1e6]))
            state.record(result, started + 15, rng.choice([0.0, 30.0]))


def _exporter(n: int, rounds: int = 3, seed: int = 1) -> Exporter:
    config = _config(n)
    exp = Exporter(config)
    exp.state.sync(config.targets)
    _probe_all(exp.state, config, rounds, seed)
    return exp


@pytest.fixture
async def big() -> AsyncIterator[tuple[Exporter, int]]:
    """An exporter whose answer is many pieces and larger than any socket buffer (no probes run)."""
    exp = _exporter(3000, rounds=1)
    async with serve_app(make_app(exp)) as url:
        yield exp, int(url.rsplit(":", 1)[1])


def _request(port: int, method: str = "GET", headers: str = "") -> bytes:
    with socket.create_connection(("127.0.0.1", port), timeout=30) as sock:
        sock.sendall(f"{method} /metrics HTTP/1.1\r\nHost: x\r\n{headers}Connection: close\r\n\r\n".encode())
        data = bytearray()
        while chunk := sock.recv(1 << 16):
            data += chunk
    return bytes(data)


def _split(answer: bytes) -> tuple[dict[str, str], bytes]:
    head, _, body = answer.partition(b"\r\n\r\n")
    lines = head.decode().split("\r\n")
    assert lines[0].startswith("HTTP/1.1 200"), lines[0]
    return {k.lower(): v.strip() for k, _, v in (line.partition(":") for line in lines[1:])}, body


def _targets_only(text: bytes) -> bytes:
    """The targets' families: the exporter's own (process CPU, ...) move between two scrapes."""
    return b"".join(line for line in text.splitlines(keepends=True) if b"apistatus_" in line
                    and not any(own in line for own in (b"_build_info", b"_config_", b"apistatus_targets",
                                                        b"_shard_info", b"_start_lag", b"_in_flight",
                                                        b"_budget_delays")))


def test_every_sample_of_every_target_is_there_once_with_its_value() -> None:
    exp = _exporter(60)
    text = render_exposition(exp.state, exp.status()).decode()
    check = promtool_check(text)
    assert check.returncode == 0 and check.stdout == "" and check.stderr == "", check.stdout + check.stderr
    seen: dict[tuple[str, tuple[tuple[str, str], ...]], float] = {}
    for family in text_string_to_metric_families(text):
        for s in family.samples:
            key = (s.name, tuple(sorted(s.labels.items())))
            assert key not in seen, key
            seen[key] = s.value
    for ts in exp.state:
        base = {"target": ts.target.name, "vendor": "flipsnack", "team": ts.target.labels[0][1]}

        def value(name: str, **labels: str) -> float | None:
            return seen.get((name, tuple(sorted({**base, **labels}.items()))))  # noqa: B023

        if ts.last is None:
            assert value("apistatus_up") is None and value("apistatus_outcome", **{"class": "ok"}) is None
            continue
        for cls in CLASSES:
            assert value("apistatus_outcome", **{"class": cls}) == (1 if cls == ts.last.outcome.cls else 0)
        for le, count in zip(DURATION_BUCKETS, ts.bucket_counts, strict=True):
            shown = str(int(le)) if le.is_integer() else repr(le)
            assert value("apistatus_request_duration_seconds_bucket", le=shown) == count
        assert value("apistatus_request_duration_seconds_bucket", le="+Inf") == ts.probes
        assert value("apistatus_request_duration_seconds_count") == ts.probes
        assert value("apistatus_request_duration_seconds_sum") == pytest.approx(ts.duration_sum)
        assert value("apistatus_last_probe_timestamp_seconds") == ts.last.started
        assert value("apistatus_next_probe_timestamp_seconds") == ts.next_probe_at
        assert value("apistatus_consecutive_failures") == ts.consecutive_failures
        for (cls, code), n in ts.responses.items():
            assert value("apistatus_responses_total", **{"class": cls, "code": code}) == n
        for name, quota in ts.quotas.items():
            assert value("apistatus_quota_remaining", quota=name) == quota.remaining


def test_the_declared_size_is_the_answer_and_pieces_stay_small() -> None:
    for n, rounds in ((0, 0), (1, 0), (5, 1), (700, 2)):
        exp = _exporter(n, rounds)
        answer = exposition(exp.state, exp.status(), process=False)  # process figures move between calls
        pieces = list(answer)
        assert sum(map(len, pieces)) == answer.size
        assert b"".join(pieces) == render_exposition(exp.state, exp.status(), process=False)
        assert len(render_exposition(exp.state, exp.status())) > answer.size
        # no piece much above the target size, whatever the family (one target's lines at most beyond)
        assert max(map(len, pieces)) < 2 * CHUNK_BYTES
    empty = exposition(State(), None, process=False)
    assert empty.size == 0 and list(empty) == []


def test_an_answer_is_the_snapshot_taken_when_the_scrape_began() -> None:
    exp = _exporter(500)
    before = render_exposition(exp.state, None, process=False)
    answer = exposition(exp.state, None, process=False)
    _probe_all(exp.state, exp.config, 2, seed=2)  # every target changes while the answer goes out
    assert b"".join(answer) == before and answer.size == len(before)
    assert render_exposition(exp.state, None, process=False) != before


def _mostly_healthy(n: int, seed: int) -> Exporter:
    """Runs of healthy targets (whose shared lines a scrape writes from their label sets alone) cut
    by failing ones at random places, some of them in a row, some never probed, and quota values
    that change at other places."""
    config = _config(n)
    exp = Exporter(config)
    exp.state.sync(config.targets)
    rng = random.Random(seed)
    for i, target in enumerate(config.targets):
        if i % 97 == 5:
            continue
        failing = rng.random() < 0.08 or 300 <= i < 310
        # the quota's runs cut elsewhere than the status's: a limit per account, a reset that moves
        limit, reset = 1000.0 + i // 40 % 3, T0 + 60 + (rng.random() if rng.random() < 0.03 else 0)
        outcome = Outcome(rng.choice(["server_error", "timeout", "auth"]) if failing else "ok", "20", "m",
                          503 if failing else 200, 30.0 if failing and rng.random() < 0.5 else None,
                          (QuotaReading("uploads", 900.0 + i, limit, reset),), None)
        started = T0 + i * 0.001
        exp.state.record(ProbeResult(target.name, started, 0.3, outcome, "GET /", ""), started + 15,
                         rng.choice([0.0, 30.0]) if failing else 0.0)
    return exp


def _by_family(text: bytes) -> dict[str, bytes]:
    """Each family's lines, by its TYPE line (samples of one family are one group in the format)."""
    out: dict[str, list[bytes]] = {}
    name = ""
    for line in text.splitlines(keepends=True):
        if line.startswith(b"# TYPE "):
            name = line.split()[2].decode()
        if not line.startswith(b"#"):
            out.setdefault(name, []).append(line)
    return {name: b"".join(lines) for name, lines in out.items()}


@pytest.mark.parametrize("chunk", [1 << 10, 5000, CHUNK_BYTES])
def test_healthy_runs_and_failing_targets_give_each_target_its_own_lines(
        chunk: int, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(collector, "CHUNK_BYTES", chunk)  # pieces that start and end inside runs
    exp = _mostly_healthy(1200, seed=chunk)
    text = b"".join(exposition(exp.state, None, process=False))
    # the same lines as each target rendered alone, target after target within each family
    alone = [_by_family(render_exposition([ts], None, process=False)) for ts in exp.state]
    expected = b"".join(b"".join(one.get(f.name, b"") for one in alone) for f in FAMILIES)
    families = _by_family(text)
    assert b"".join(families.values()) == expected
    # the family read back by client_python's parser (the whole answer would take it many seconds)
    up = {s.labels["target"]: s.value for f in text_string_to_metric_families(families["apistatus_up"].decode())
          if f.name == "apistatus_up" for s in f.samples}
    assert len(up) > 1000
    for ts in exp.state:
        if ts.last is not None:
            assert up[ts.target.name] == (1 if ts.last.outcome.cls == "ok" else 0)


@pytest.mark.parametrize("slice_", [0.0, 3600.0])
async def test_the_event_loop_runs_while_an_answer_goes_out_without_waiting_on_the_reader(
        slice_: float, monkeypatch: pytest.MonkeyPatch) -> None:
    """A reader as fast as loopback never lets the socket fill, so write() never waits; here the
    socket's buffer holds the whole answer, which is the same from the server's side. The handler
    hands the loop back once it has held it for a slice: with none, after every piece; with one
    longer than the answer takes, never."""
    monkeypatch.setattr(web_module, "SLICE", slice_)
    exp = _exporter(500, rounds=1)
    ticks = 0
    stop = False
    during: list[int] = []

    async def ticker() -> None:  # stands in for the probes, which run on the same loop
        nonlocal ticks
        while not stop:
            ticks += 1
            await asyncio.sleep(0)

    @web.middleware
    async def counted(request: web.Request, handler: Handler) -> web.StreamResponse:
        sock = request.transport.get_extra_info("socket") if request.transport else None
        assert sock is not None
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 1 << 23)
        assert sock.getsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF) > 2 * len(body_now)
        before = ticks
        try:
            return await handler(request)  # /metrics returns once the whole answer is written
        finally:
            during.append(ticks - before)

    body_now = render_exposition(exp.state, exp.status())
    pieces = len(exposition(exp.state, exp.status()))
    app = make_app(exp)
    app.middlewares.append(counted)
    loop = asyncio.get_running_loop()
    async with serve_app(app) as url:
        task = asyncio.create_task(ticker())
        headers, body = _split(await loop.run_in_executor(None, _request, int(url.rsplit(":", 1)[1])))
        stop = True
        await task
    assert int(headers["content-length"]) == len(body) > 1 << 20
    if slice_ == 0:
        assert during[0] >= pieces // 2 > 10, (during, pieces)  # handed back between the pieces
    else:
        assert during[0] <= 2 and pieces > 10, (during, pieces)  # one stretch: the slice never ran out


async def test_plain_metrics_declare_their_length_and_head_sends_headers_only(big: tuple[Exporter, int]) -> None:
    exp, port = big
    loop = asyncio.get_running_loop()
    headers, body = _split(await loop.run_in_executor(None, _request, port))
    assert "transfer-encoding" not in headers and int(headers["content-length"]) == len(body)
    assert _targets_only(body) == _targets_only(render_exposition(exp.state, exp.status()))
    head, empty = _split(await loop.run_in_executor(None, _request, port, "HEAD"))
    assert empty == b"" and abs(int(head["content-length"]) - len(body)) < 100  # process figures move


async def test_gzip_metrics_are_one_gzip_member_of_the_plain_text(big: tuple[Exporter, int]) -> None:
    exp, port = big
    loop = asyncio.get_running_loop()
    headers, body = _split(await loop.run_in_executor(None, _request, port, "GET", "Accept-Encoding: gzip\r\n"))
    assert headers["content-encoding"] == "gzip" and int(headers["content-length"]) == len(body)
    member = zlib.decompressobj(16 + zlib.MAX_WBITS)
    text = member.decompress(body)
    assert member.eof and member.unused_data == b""  # one member, nothing after it
    assert gzip.decompress(body) == text
    assert _targets_only(text) == _targets_only(render_exposition(exp.state, exp.status()))
    check = promtool_check(text.decode())
    assert check.returncode == 0, check.stdout + check.stderr


async def test_the_event_loop_runs_while_a_large_answer_goes_to_a_slow_reader(big: tuple[Exporter, int]) -> None:
    _, port = big
    loop = asyncio.get_running_loop()
    ticks = 0
    stop = asyncio.Event()

    async def ticker() -> None:  # stands in for the probes, which run on the same loop
        nonlocal ticks
        while not stop.is_set():
            ticks += 1
            await asyncio.sleep(0.001)

    reading_paused = threading.Event()
    resume = threading.Event()

    def slow_client() -> bytes:
        with socket.create_connection(("127.0.0.1", port), timeout=30) as sock:
            sock.sendall(b"GET /metrics HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
            data = bytearray(sock.recv(1 << 14))
            reading_paused.set()
            assert resume.wait(30), "the loop did not run while the answer was half sent"
            while chunk := sock.recv(1 << 16):
                data += chunk
        return bytes(data)

    task = asyncio.create_task(ticker())
    client = loop.run_in_executor(None, slow_client)
    while not reading_paused.is_set():
        await asyncio.sleep(0.005)
    at_pause = ticks
    while ticks < at_pause + 20:  # the loop keeps running while the server waits on the reader
        await asyncio.sleep(0.001)
    resume.set()
    headers, body = _split(await client)
    stop.set()
    await task
    assert int(headers["content-length"]) == len(body) > 4 * (1 << 20)  # larger than the socket buffers
    assert body.count(b"# TYPE ") >= len(FAMILIES)


async def test_a_scraper_that_goes_away_mid_answer_is_no_error_and_the_next_scrape_is_whole(
        big: tuple[Exporter, int], caplog: pytest.LogCaptureFixture) -> None:
    _, port = big

    def cut_off() -> bytes:
        with socket.create_connection(("127.0.0.1", port), timeout=30) as sock:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
            sock.sendall(b"GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n")
            head = sock.recv(4096)
            # gone with a reset, as a scraper at its timeout or a restarted Prometheus
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        return head

    with caplog.at_level(logging.DEBUG, logger="exporter.web"):
        for _ in range(3):
            assert (await asyncio.to_thread(cut_off)).startswith(b"HTTP/1.1 200")
        for _ in range(1000):  # bounded: until the handler has met each closed connection
            if sum("mid-answer" in r.getMessage() for r in caplog.records) == 3:
                break
            await asyncio.sleep(0.005)
        headers, body = _split(await asyncio.to_thread(_request, port))
    assert [r.getMessage() for r in caplog.records if r.levelno >= logging.WARNING] == []
    assert sum("mid-answer" in r.getMessage() for r in caplog.records) == 3  # each one seen, quietly
    assert int(headers["content-length"]) == len(body) > 4 * (1 << 20)


async def test_the_event_loop_runs_while_a_large_answer_is_compressed(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(web_module, "SLICE", 0.0)  # a hand-back after every piece
    exp = _exporter(3000, rounds=1)
    answer = exposition(exp.state, exp.status())
    ticks = 0
    stop = False

    async def ticker() -> None:  # stands in for the probes, which run on the same loop
        nonlocal ticks
        while not stop:
            ticks += 1
            await asyncio.sleep(0)

    task = asyncio.create_task(ticker())
    await asyncio.sleep(0)
    start = ticks
    body = await gzipped(answer)
    stop = True
    await task
    assert gzip.decompress(body) == b"".join(answer)
    # the compressor hands the loop back after each piece: the ticker ran between the pieces
    assert ticks - start >= len(answer) - 1 > 20
