"""The exporter's endpoints over real HTTP: /metrics (checked by promtool), /probe, reload, health."""

from __future__ import annotations

import asyncio
import shutil
import subprocess
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from aiohttp import web

from exporter.config import load_config

from ..conftest import config_from, running_exporter, sample, serve


class Flip:
    """A Flipsnack-like loopback server whose body code can be switched."""

    def __init__(self) -> None:
        self.code = 20
        self.hits = 0

    async def handle(self, request: web.Request) -> web.Response:
        self.hits += 1
        return web.json_response({"code": self.code, "data": {"api_uploads_left": 900}},
                                 headers={"Retry-After": "30"} if self.code == 22 else {})


@pytest.fixture
async def flip() -> AsyncIterator[tuple[Flip, str]]:
    f = Flip()
    async with serve(f.handle) as url:
        yield f, url


def targets(url: str, *names: str) -> dict[str, object]:
    # probe_share 1: these targets share one Flipsnack key, whose default 5% share (3/min) would
    # rightly hold back a 1 s interval
    return {"global": {"interval": "1s", "timeout": "1s", "probe_share": 1},
            "targets": [{"name": n, "vendor": "flipsnack", "base_url": url, "labels": {"team": "a\"b\\c"},
                         "credentials": {"api_key": "k", "secret": "s"}} for n in names]}


async def wait_for(pred, timeout: float = 10.0) -> None:  # type: ignore[no-untyped-def]
    """Poll a condition about real probes; bounded, never a fixed sleep standing in for an assertion."""
    loop = asyncio.get_running_loop()
    end = loop.time() + timeout
    while not await pred():
        assert loop.time() < end, "condition not reached in time"
        await asyncio.sleep(0.05)


def promtool_check(text: str) -> subprocess.CompletedProcess[str]:
    promtool = shutil.which("promtool")
    assert promtool, "promtool (Debian package prometheus) is required"
    return subprocess.run([promtool, "check", "metrics"], input=text, capture_output=True, text=True, timeout=60)


async def test_metrics_pass_promtool_and_carry_every_family(flip: tuple[Flip, str]) -> None:
    f, url = flip
    async with running_exporter(config_from(targets(url, "a", "b"))) as ex:
        async def both_probed() -> bool:
            text = await ex.metrics()
            return sample(text, "apistatus_up", target="a") == 1 and sample(text, "apistatus_up", target="b") == 1
        await wait_for(both_probed)
        f.code = 22
        async def maint() -> bool:
            return sample(await ex.metrics(), "apistatus_maintenance", target="a") == 1
        await wait_for(maint)
        text = await ex.metrics()
    check = promtool_check(text)
    assert check.returncode == 0 and check.stdout == "" and check.stderr == "", check.stdout + check.stderr
    assert sample(text, "apistatus_outcome", target="a", **{"class": "maintenance"}) == 1
    assert sample(text, "apistatus_outcome", target="a", **{"class": "ok"}) == 0
    assert sample(text, "apistatus_up", target="a") == 0
    assert sample(text, "apistatus_retry_after_seconds", target="a") == 30
    assert sample(text, "apistatus_quota_remaining", target="a", quota="uploads") == 900
    assert sample(text, "apistatus_quota_limit", target="a", quota="uploads") == 1000
    assert sample(text, "apistatus_http_status_code", target="a") == 200
    assert (sample(text, "apistatus_responses_total", target="a", code="22", **{"class": "maintenance"}) or 0) >= 1
    assert (sample(text, "apistatus_request_duration_seconds_count", target="a") or 0) >= 2
    assert sample(text, "apistatus_targets") == 2
    assert sample(text, "apistatus_config_last_reload_successful") == 1
    assert sample(text, "apistatus_build_info", version="0.1.0") == 1
    assert sample(text, "apistatus_up", target="a", team='a"b\\c') == 0  # label values escaped correctly
    # the exporter's own figures: every probe start was measured, and the config load is stamped
    probes = sum(sample(text, "apistatus_request_duration_seconds_count", target=n) or 0 for n in "ab")
    assert (sample(text, "apistatus_probe_start_lag_seconds_count") or 0) >= probes
    assert sample(text, "apistatus_probe_start_lag_seconds", quantile="0.99") is not None
    assert (sample(text, "apistatus_config_last_reload_success_timestamp_seconds") or 0) > 1e9


async def test_reload_removes_a_target_and_its_series_and_a_bad_config_keeps_the_old(
        flip: tuple[Flip, str], tmp_path: Path) -> None:
    import yaml

    _, url = flip
    path = tmp_path / "c.yml"
    path.write_text(yaml.safe_dump(targets(url, "keep", "drop")))
    async with running_exporter(load_config(path), config_path=path) as ex:
        async def both() -> bool:
            text = await ex.metrics()
            return sample(text, "apistatus_up", target="drop") is not None and \
                sample(text, "apistatus_up", target="keep") is not None
        await wait_for(both)
        path.write_text(yaml.safe_dump(targets(url, "keep")))
        async with ex.session.post(ex.url + "/-/reload") as r:
            assert r.status == 200
        text = await ex.metrics()
        assert 'target="drop"' not in text
        assert sample(text, "apistatus_up", target="keep") == 1
        assert sample(text, "apistatus_targets") == 1

        path.write_text("targets: [{name: x}]\n")
        async with ex.session.post(ex.url + "/-/reload") as r:
            assert r.status == 500
            assert "targets[0].vendor: is required" in await r.text()
        text = await ex.metrics()
        assert sample(text, "apistatus_config_last_reload_successful") == 0
        assert sample(text, "apistatus_up", target="keep") == 1  # the running config stays


async def test_probe_endpoint_probes_a_configured_target_and_refuses_anything_else(flip: tuple[Flip, str]) -> None:
    f, url = flip
    cfg = config_from(targets(url, "a"))
    async with running_exporter(cfg) as ex:
        before = f.hits
        status, text = await ex.get("/probe", params={"target": "a"})
        assert status == 200
        assert sample(text, "apistatus_up", target="a") == 1
        assert sample(text, "apistatus_request_duration_seconds_count", target="a") == 1  # one probe so far
        assert "process_cpu_seconds_total" not in text
        assert f.hits >= before + 1
        for bad in ({"target": url}, {"target": "nope"}, {}):
            hits = f.hits
            status, text = await ex.get("/probe", params=bad)
            assert status == 400 and "Traceback" not in text
            assert f.hits == hits  # no request left the exporter for a refused /probe


async def test_health_ready_and_landing(flip: tuple[Flip, str]) -> None:
    _, url = flip
    async with running_exporter(config_from(targets(url, "a"))) as ex:
        assert (await ex.get("/-/healthy"))[0] == 200
        assert (await ex.get("/-/ready"))[0] == 200
        status, page = await ex.get("/")
        assert status == 200 and "metrics" in page
        status, _ = await ex.get("/metrics", headers={"Accept-Encoding": "gzip"})
        assert status == 200


def test_a_reload_resizes_the_history_of_kept_targets() -> None:
    from exporter.classify import Outcome
    from exporter.probe import ProbeResult
    from exporter.state import State

    cfg = config_from(targets("http://127.0.0.1:9", "a"))
    state = State(history=5)
    state.sync(cfg.targets)
    for i in range(5):
        state.record(ProbeResult("a", float(i), 0.1, Outcome("ok", "20", "OK", 200), "GET /", ""), 0, 0)
    state.sync(cfg.targets, history=2)
    ts = state.get("a")
    assert ts is not None and [result.started for result in ts.history()] == [4.0, 3.0]


@pytest.mark.parametrize(("header", "gzipped"), [
    ("gzip", True), ("GZip", True), ("x-gzip", True), ("deflate, gzip", True), ("br;q=1.0, gzip;q=0.5", True),
    ("*", True), ("br, *;q=0.1", True), ("*;q=0, gzip", True), ("gzip ; q=1", True),
    ("gzip;q=0", False), ("gzip; Q=0.000", False), ("gzip;q=0, *", False), ("*;q=0", False),
    ("deflate", False), ("identity", False), ("", False), ("gzipped", False), ("deflate;x=gzip", False),
    ("gzip;q=abc", False), ("gzip;q=2", False),
])
def test_gzip_negotiation_honours_q_values(header: str, gzipped: bool) -> None:
    from exporter.web import accepts_gzip

    assert accepts_gzip(header) is gzipped


async def test_every_endpoint_compresses_only_when_the_client_accepts_gzip(flip: tuple[Flip, str]) -> None:
    from exporter.web import GZIP_MIN_BYTES

    _, url = flip
    paths = ["/metrics", "/probe?target=a", "/", "/targets/a", "/api/v1/targets", "/api/v1/targets/a"]
    async with running_exporter(config_from(targets(url, "a", "b"))) as ex:
        async def probed() -> bool:
            return all((ts := ex.exporter.state.get(n)) is not None and ts.probes > 0 for n in "ab")
        await wait_for(probed)
        for path in paths:
            for header, expected in (("gzip", "gzip"), ("gzip;q=0", None), ("*", "gzip"), ("identity", None),
                                     ("deflate, gzip;q=0", None)):
                async with ex.session.get(ex.url + path, headers={"Accept-Encoding": header}) as r:
                    text = await r.text()  # the client decodes what it was sent
                    assert r.status == 200, (path, text)
                    assert r.headers.get("Content-Encoding") == expected, (path, header)
                    assert r.headers.get("Vary") == "Accept-Encoding", path
                    assert len(text.encode()) > GZIP_MIN_BYTES, path  # large enough for gzip to be used


def test_a_lone_surrogate_in_a_label_value_neither_breaks_the_metrics_nor_the_pages() -> None:
    # YAML accepts "\\ud800" in a double-quoted string; no text with it can be encoded as UTF-8
    from exporter import views
    from exporter.classify import Outcome
    from exporter.collector import render_exposition, render_target
    from exporter.probe import ProbeResult
    from exporter.state import State

    cfg = targets("http://127.0.0.1:9", "a")
    cfg["targets"][0]["labels"] = {"team": "x\ud800"}  # type: ignore[index]
    state = State(render_target)
    state.sync(config_from(cfg).targets)
    state.record(ProbeResult("a", 1.0, 0.1, Outcome("ok", "20", "OK", 200), "GET /", ""), 2.0, 0.0)
    text = render_exposition(state, None, process=False).decode()
    assert sample(text, "apistatus_up", target="a", team="x?") == 1
    assert promtool_check(text).returncode == 0
    page = views.status_page(state, 2.0, views.Refresh(0, 30)).decode()
    assert "x\\ud800" in page
