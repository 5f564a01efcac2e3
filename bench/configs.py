"""Exporter configs for the benchmarks: N targets spread over the nginx ports.

The targets use the built-in Flipsnack vendor, so every probe runs what a real one does: the md5
signer, the body-code classifier and the quota reading. Its per-key request budget is lifted, since
here the "vendor" is our own nginx and the point is the exporter's cost, not the vendor's limits.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml

__all__ = ["write_config"]


def write_config(path: Path, urls: list[str], targets: int, interval: float, timeout: float = 5.0,
                 keepalive: bool | None = None, max_concurrency: int | None = None) -> Path:
    glob: dict[str, Any] = {"interval": f"{interval:g}s", "timeout": f"{min(timeout, interval):g}s"}
    if keepalive is not None:
        glob["keepalive"] = keepalive
    if max_concurrency is not None:
        glob["max_concurrency"] = max_concurrency
    doc = {
        "global": glob,
        "vendors": {"flipsnack": {"budget": None}},
        "targets": [
            {"name": f"t{i:05d}", "vendor": "flipsnack", "base_url": urls[i % len(urls)],
             "credentials": {"api_key": f"key-{i}", "secret": f"secret-{i}"}, "labels": {"team": f"team{i % 10}"}}
            for i in range(targets)
        ],
    }
    path.write_text(yaml.safe_dump(doc, sort_keys=False), encoding="utf-8")
    return path
