"""Shared fixtures: real servers on 127.0.0.1 only."""

from __future__ import annotations

import asyncio
import contextlib
import io
import logging
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Callable, Collection, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

import aiohttp
import pytest
import trustme
import yaml
from aiohttp import web
from aiohttp.typedefs import Handler

from exporter._yamlnode import ConfigError, Node
from exporter.app import Exporter
from exporter.clock import Clock, FakeClock
from exporter.config import Config, parse_config
from exporter.simulators import SimulatorSet, start_simulators
from exporter.simulators.faults import FaultServer
from exporter.web import make_app

ROOT = Path(__file__).resolve().parent.parent
ARTIFACTS = ROOT / "artifacts"
TIERS = ("unit", "integration", "system")


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Each test carries the marker of its tier directory, so ``-m "not system"`` selects by cost;
    a test outside the tiers would escape ``make test-fast`` and every marker, so it is refused."""
    tests = Path(__file__).resolve().parent
    untiered = set()
    for item in items:
        path = item.path.resolve()
        if not path.is_relative_to(tests):
            continue
        parts = path.relative_to(tests).parts
        if parts[0] in TIERS:
            item.add_marker(parts[0])
        else:
            untiered.add(str(Path("tests", *parts)))
    if untiered:
        raise pytest.UsageError(f"{', '.join(sorted(untiered))}: move into tests/unit, tests/integration or "
                                "tests/system (see docs/development.md)")


def config_from(data: Mapping[str, Any], base: Path | None = None, env: Mapping[str, str] | None = None) -> Config:
    """A Config from a Python dict, validated exactly like a file."""
    return parse_config(Node(dict(data), "test-config.yml", ""), base or Path("."), env or {})


@contextlib.asynccontextmanager
async def serve_app(app: web.Application) -> AsyncIterator[str]:
    """``app`` on 127.0.0.1 at a port the OS picks; yields its base URL."""
    runner = web.AppRunner(app)
    await runner.setup()
    try:
        await web.TCPSite(runner, "127.0.0.1", 0).start()
        host, port = runner.addresses[0][:2]
        yield f"http://{host}:{port}"
    finally:
        await runner.cleanup()


def serve(handler: Handler) -> contextlib.AbstractAsyncContextManager[str]:
    """One handler for every method and path, on loopback (a vendor-like test server)."""
    app = web.Application()
    app.router.add_route("*", "/{tail:.*}", handler)
    return serve_app(app)


@pytest.fixture
async def faults() -> AsyncIterator[FaultServer]:
    """The fault simulator on loopback (one path per fault); a stalled answer ends by itself in 30 s."""
    srv = await FaultServer.start(max_stall=30)
    try:
        yield srv
    finally:
        await srv.close()


def flipsnack_config_file(path: Path, url: str, name: str, interval: str, timeout: str) -> Path:
    """``path``, written as the config of one flipsnack target at ``url`` (probe_share 1: a test probes
    more often than a real key's budget share would allow)."""
    path.write_text(yaml.safe_dump({"global": {"interval": interval, "timeout": timeout, "probe_share": 1},
                                    "targets": [{"name": name, "vendor": "flipsnack", "base_url": url,
                                                 "credentials": {"api_key": "k", "secret": "s"}}]}))
    return path


def broken_files(folder: str, pattern: str = "*.yaml") -> list[Path]:
    """The files of tests/broken/``folder`` ("" for the configs themselves): each starts with the line
    ``# error: {file}: ...`` (the exact refusal) or ``# error starts: {file}: ...`` (its start)."""
    return sorted((ROOT / "tests" / "broken" / folder).glob(pattern))


def written_refusal(path: Path) -> tuple[str, bool]:
    """The refusal a broken file states on its first line, and whether it is exact (else its start)."""
    first = path.read_text(encoding="utf-8").splitlines()[0]
    exact = first.startswith("# error: ")
    assert exact or first.startswith("# error starts: "), f"{path} must start with '# error: ' or '# error starts: '"
    return first.split(": ", 1)[1].replace("{file}", str(path)).replace("{dir}", str(path.parent)), exact


def assert_refused_as_written(path: Path, load: Callable[[Path], object]) -> None:
    """Loading ``path`` is refused with the one line its first line states, naming the file."""
    expected, exact = written_refusal(path)
    with pytest.raises(ConfigError) as caught:
        load(path)
    message = str(caught.value)
    assert "\n" not in message, message
    assert message == expected if exact else message.startswith(expected), message


def run_cli_here(*args: str) -> subprocess.CompletedProcess[str]:
    """``apistatus-exporter ARGS`` through the command line's own entry point, in this process, for a
    command that ends by itself (a config check): what it prints (its log lines too) and the code it
    returns are the program's, without a fresh interpreter to start. The logging it sets up is undone
    after it. A test of the program as a process runs it as one (tests/integration/test_check_config_cli.py)."""
    from exporter.__main__ import main

    root = logging.getLogger()
    level, handlers = root.level, root.handlers[:]
    out, err = io.StringIO(), io.StringIO()
    try:
        with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
            code = main(list(args))
    finally:
        root.setLevel(level)
        root.handlers[:] = handlers
    return subprocess.CompletedProcess(["apistatus-exporter", *args], code, out.getvalue(), err.getvalue())


def free_port() -> int:
    with contextlib.closing(socket.socket()) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def need(binary: str) -> str:
    """An external binary the test cannot do without: missing means failed, never skipped."""
    path = shutil.which(binary) or (f"/usr/sbin/{binary}" if Path(f"/usr/sbin/{binary}").exists() else None)
    assert path, f"{binary} is not installed (make deps installs it)"
    return path


_T = TypeVar("_T")
#: how long a system test waits for a real server (Prometheus, Alertmanager) to get somewhere
SYSTEM_WAIT = 90.0


def wait_for(what: str, probe: Callable[[], _T | None], timeout: float = SYSTEM_WAIT) -> _T:
    """Poll ``probe`` until it returns something truthy; fail naming ``what`` after ``timeout``."""
    end = time.monotonic() + timeout
    while True:
        with contextlib.suppress(OSError):
            if got := probe():
                return got
        if time.monotonic() > end:
            pytest.fail(f"timed out after {timeout:.0f}s waiting for {what}")
        time.sleep(0.25)


@contextlib.asynccontextmanager
async def spawn_exporter(*args: str, **kw: Any) -> AsyncIterator[tuple[asyncio.subprocess.Process, list[str]]]:
    """``python3 -m exporter ARGS`` from this checkout, with its stderr read line by line into the
    yielded list (a full pipe would block it). At the end a process still running gets SIGTERM and
    must exit within 10 s (it is killed and the test fails otherwise); the list is then complete."""
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "exporter", *args, cwd=ROOT, stdout=asyncio.subprocess.DEVNULL,
        stderr=asyncio.subprocess.PIPE, **kw)
    lines: list[str] = []

    async def pump() -> None:
        # chunks, not readline(): a line longer than the stream's limit must not stop the reading
        assert proc.stderr is not None
        pending = b""
        while chunk := await proc.stderr.read(65536):
            *done, pending = (pending + chunk).split(b"\n")
            lines.extend(line.decode("utf-8", "replace") + "\n" for line in done)
        if pending:
            lines.append(pending.decode("utf-8", "replace"))

    pumping = asyncio.create_task(pump())
    try:
        yield proc, lines
    finally:
        hung = False
        if proc.returncode is None:
            proc.send_signal(signal.SIGTERM)
            try:
                await asyncio.wait_for(proc.wait(), 10)
            except TimeoutError:
                hung = True
                proc.kill()
                await proc.wait()
        await asyncio.wait_for(pumping, 10)
        assert not hung, "the exporter did not exit within 10 s of SIGTERM: " + "".join(lines[-20:])


@dataclass
class Running:
    exporter: Exporter
    url: str
    session: aiohttp.ClientSession

    async def get(self, path: str, **kw: Any) -> tuple[int, str]:
        async with self.session.get(self.url + path, **kw) as r:
            return r.status, await r.text()

    async def metrics(self) -> str:
        status, text = await self.get("/metrics")
        assert status == 200
        return text


@contextlib.asynccontextmanager
async def running_exporter(config: Config, clock: Clock | None = None, **kw: Any) -> AsyncIterator[Running]:
    """The exporter and its HTTP endpoints on 127.0.0.1, as a user runs them."""
    exp = Exporter(config, clock=clock, **kw)
    await exp.start()
    runner = web.AppRunner(make_app(exp))
    await runner.setup()
    port = free_port()
    site = web.TCPSite(runner, "127.0.0.1", port)
    await site.start()
    try:
        async with aiohttp.ClientSession() as session:
            yield Running(exp, f"http://127.0.0.1:{port}", session)
    finally:
        await runner.cleanup()
        await exp.close()


async def idle(run: Running) -> None:
    """Wait (bounded, real time) until no probe is in flight: a few turns of the loop first, so a probe
    just woken (FakeClock.advance lets woken tasks run) has started, then a real wait only while one is
    in flight (most steps of a fake clock start none)."""
    sched = run.exporter.scheduler
    assert sched is not None
    for _ in range(5):
        await asyncio.sleep(0)
    for _ in range(1000):
        if sched.in_flight() == 0:
            return
        await asyncio.sleep(0.005)
    raise AssertionError("probes still in flight")


async def probe_text(run: Running, name: str) -> str:
    """The /probe answer for target ``name``, which must be a 200."""
    status, text = await run.get("/probe", params={"target": name})
    assert status == 200, text
    return text


async def next_probe_text(run: Running, clock: FakeClock, name: str) -> str:
    """/probe once the target's next probe may run: the clock moved to when the schedule lets it
    start (before that, /probe answers the latest result and sends nothing)."""
    ts = run.exporter.state.get(name)
    assert ts is not None
    await clock.advance(max(0.0, ts.next_probe_at - clock.time()) + 0.01)
    await idle(run)
    return await probe_text(run, name)


@dataclass(frozen=True)
class Sight:
    """One target's latest answer at one second of a demo walk, and its vendor's word then (the status
    page's summary, None before the page is first read)."""

    target: str
    vendor: str
    cls: str
    code: str
    word: str | None


@dataclass(frozen=True)
class DemoWalk:
    """The demo run for two cycles on a fake clock, one second at a time, with an exporter probing it."""

    vendors: frozenset[str]  # the vendors the demo configures
    seconds: tuple[tuple[Sight, ...], ...]  # [n]: every probed target at second n + 1 of the walk
    metrics_at_120: str  # /metrics two minutes in
    metrics: str  # /metrics at the end
    page: str  # the status page at the end
    alive_after_cycle: bool  # the scenario still running a few seconds into its second cycle
    uploads_after_cycle: int  # Flipsnack's uploads left then (the scenario's start sets them again)

    def outcomes(self, vendors: Collection[str], upto: int) -> dict[str, set[tuple[str, str]]]:
        """Every (class, code) each of ``vendors`` showed in the first ``upto`` seconds."""
        seen: dict[str, set[tuple[str, str]]] = {v: set() for v in vendors}
        for sights in self.seconds[:upto]:
            for sight in sights:
                if sight.vendor in seen:
                    seen[sight.vendor].add((sight.cls, sight.code))
        return seen


_DEMO_WALKS: dict[int, DemoWalk] = {}


async def demo_walk(late: int = 0) -> DemoWalk:
    """The demo walked for two cycles by an exporter that started ``late`` seconds into it. The walk costs
    seconds, so it is made once per process and ``late`` (its tests are in one module, run by one worker)."""
    if late not in _DEMO_WALKS:
        _DEMO_WALKS[late] = await _walk_demo(late)
    return _DEMO_WALKS[late]


async def _walk_demo(late: int) -> DemoWalk:
    from exporter.demo import CYCLE, start_demo

    clock = FakeClock()
    # the shipped scenario; only the timeout is short, so its slow spell costs little real time
    demo = await start_demo(clock=clock, timeout="200ms")
    try:
        await clock.advance(late)
        async with running_exporter(demo.config, clock=clock) as run:
            seconds: list[tuple[Sight, ...]] = []
            at_120, alive, uploads = "", False, -1
            for second in range(1, 2 * int(CYCLE) + 1):
                await clock.advance(1.0)
                await idle(run)
                sights = []
                for ts in run.exporter.state:
                    if ts.last is None:
                        continue
                    view = run.exporter.vendor_view(ts.target.name)
                    word = view.summary() if view is not None and view.as_of else None
                    sights.append(Sight(ts.target.name, ts.target.vendor, ts.last.outcome.cls,
                                        ts.last.outcome.code, word))
                seconds.append(tuple(sights))
                if second == 120:
                    at_120 = await run.metrics()
                if second == int(CYCLE) + 6:
                    alive = demo.task is not None and not demo.task.done()
                    uploads = int(demo.simulators.sims["flipsnack"].settings["uploads_left"])
            metrics, page = await run.metrics(), (await run.get("/"))[1]
    finally:
        await demo.close()
    return DemoWalk(frozenset(t.vendor for t in demo.config.targets), tuple(seconds), at_120, metrics, page,
                    alive, uploads)


@pytest.fixture
async def sims() -> AsyncIterator[tuple[SimulatorSet, FakeClock]]:
    """Every vendor simulator, on loopback, with the FakeClock they share with the exporter under test."""
    clock = FakeClock()
    started = await start_simulators(clock=clock)
    try:
        yield started, clock
    finally:
        await started.close()


def sample(text: str, name: str, /, **labels: str) -> float | None:
    """The value of the first sample of ``name`` whose labels include ``labels`` (which may hold a
    ``name`` label: the metric's name is positional)."""
    from prometheus_client.parser import text_string_to_metric_families

    for fam in text_string_to_metric_families(text):
        for s in fam.samples:
            if s.name == name and all(s.labels.get(k) == v for k, v in labels.items()):
                return float(s.value)
    return None


@pytest.fixture(scope="module")
def ca() -> trustme.CA:
    """A private CA (trustme) for a module's TLS servers; none of the tests trusts it unless told to."""
    return trustme.CA()


@pytest.fixture
def ca_file(ca: trustme.CA, tmp_path: Path) -> str:
    """``ca``'s certificate as a PEM file: what a ``tls_config``'s ``ca_file`` names to trust it."""
    path = tmp_path / "ca.pem"
    ca.cert_pem.write_to_path(str(path))
    return str(path)


@pytest.fixture
def artifacts() -> Path:
    ARTIFACTS.mkdir(exist_ok=True)
    return ARTIFACTS
