"""The watcher's promise, whatever goes wrong in a re-read: the running settings stay (basic auth stays
on), the failure is counted, and requests get the old settings, not a 500. Three inputs (a number past
int64, deep nesting, a lone surrogate) once raised something other than WebConfigError in the re-read;
each is fixed where it arose, and the watcher keeps its promise for the next one nobody has found yet:
here a fault put into the read itself."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from exporter.webconfig import watcher as watcher_module
from exporter.webconfig.watcher import Watcher, read_snapshot

HASH = "$2y$04$AGQ2hL2f0zVfqk6UzgNqLe3iuKVvYvC0mJg8Nn7T3s0h8nH5bC9xW"


async def test_a_reread_that_raises_anything_keeps_the_running_settings(tmp_path: Path,
                                                                       monkeypatch: pytest.MonkeyPatch) -> None:
    path = tmp_path / "web.yml"
    path.write_text(f"basic_auth_users:\n  prometheus: {HASH}\n")
    watcher = Watcher(path, read_snapshot(path))
    path.write_text(f"basic_auth_users:\n  prometheus: {HASH}\n  other: {HASH}\n")
    os.utime(path, ns=(1, 1))  # a change the stat sees, whatever the clock's resolution

    def broken(*args: object, **kwargs: object) -> object:
        raise RuntimeError("a bug in the re-read")

    monkeypatch.setattr(watcher_module, "read_snapshot", broken)
    snapshot = await watcher.snapshot()  # must not raise: the middleware would answer 500
    assert set(snapshot.config.users) == {"prometheus"}
    assert watcher.failures == 1 and watcher.last_successful is False
    again = await watcher.snapshot()  # the same files: not read again, not counted again
    assert again is snapshot and watcher.failures == 1
