"""The unit tier touches no socket, subprocess or real clock (docs/development.md): here each of them
fails the test that reaches for it, saying why, so such a test is seen and moved to tests/integration
instead of slowing the fast tier down or making it depend on the machine."""

from __future__ import annotations

import asyncio
import socket
import subprocess
import time
from collections.abc import Callable
from typing import Any

import pytest

from exporter.clock import SystemClock

_real_asyncio_sleep = asyncio.sleep


def _refused(what: str) -> Callable[..., Any]:
    def refuse(*_args: Any, **_kw: Any) -> Any:
        raise AssertionError(f"tests/unit uses no {what}: move this test to tests/integration "
                             "(or use exporter.clock.FakeClock)")
    return refuse


async def _sleep(delay: float, result: Any = None) -> Any:
    if delay > 0:
        _refused("real clock (asyncio.sleep)")()
    return await _real_asyncio_sleep(delay, result)


@pytest.fixture(autouse=True)
def _no_socket_subprocess_or_real_clock(monkeypatch: pytest.MonkeyPatch) -> None:
    # the event loop's own wake-up pipe is a socketpair: only reaching out or listening is refused
    for method in ("connect", "connect_ex", "bind", "listen"):
        monkeypatch.setattr(socket.socket, method, _refused(f"socket (socket.{method})"))
    # asyncio's subprocesses start through Popen too
    monkeypatch.setattr(subprocess.Popen, "_execute_child", _refused("subprocess"))
    monkeypatch.setattr(time, "sleep", _refused("real clock (time.sleep)"))
    monkeypatch.setattr(asyncio, "sleep", _sleep)
    for method in ("time", "monotonic", "sleep", "call_at"):
        monkeypatch.setattr(SystemClock, method, _refused(f"real clock (SystemClock.{method})"))
