"""Reading the exporter's own figures back from its /metrics text (a few families, cheaply)."""

from __future__ import annotations

from collections.abc import Iterable

from .procs import get

__all__ = ["family_sum", "fetch", "samples"]


def fetch(base_url: str) -> str:
    status, body = get(base_url + "/metrics", timeout=30)
    if status != 200:
        raise RuntimeError(f"{base_url}/metrics answered HTTP {status}")
    return body.decode()


def samples(text: str, name: str) -> Iterable[tuple[str, float]]:
    """(labels text, value) of every sample named exactly ``name``."""
    for line in text.splitlines():
        if line.startswith(name) and not line.startswith("#"):
            head, _, value = line.rpartition(" ")
            metric, brace, labels = head.partition("{")
            if metric == name:
                yield (brace + labels, float(value))


def family_sum(text: str, name: str) -> float:
    return sum(v for _, v in samples(text, name))
