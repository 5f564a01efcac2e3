"""Placement is reproducible with Prometheus relabelling: a real Prometheus' ``hashmod`` of each
target's shard key gives the shard the exporter puts it on."""

from __future__ import annotations

import json
import shutil
import tempfile
import urllib.parse
from pathlib import Path

import yaml

from exporter.shard import hashmod, shard_key, shard_of
from tests.conftest import config_from
from tests.system.test_prometheus_e2e import Stack, _spawn_ready, http, need, wait_for

MODULI = (2, 3, 5, 7, 1000)


def test_prometheus_hashmod_of_the_shard_key_is_the_exporters_shard() -> None:
    binary = need("prometheus")
    cfg = config_from({"targets": [
        {"name": f"t{i}", "vendor": "flipsnack", "base_url": f"http://127.0.0.{1 + i % 3}:9/v1",
         "credentials": {"api_key": f"key-{i}", "secret": f"secret-{i}"}} for i in range(60)]})
    keys = {t.name: shard_key(t) for t in cfg.targets}
    # odd strings too: the relabel action hashes the label value's bytes, whatever they are
    extra = {f"odd{i}": v for i, v in enumerate(["", "ä/ß|€", "a;b", " ", "x" * 500])}
    values = {**keys, **extra}
    # one fake scrape address per value (nothing listens there; scrapes are an hour apart anyway)
    static = [{"targets": [f"127.0.0.1:{10000 + i}"], "labels": {"name": name, "key": value}}
              for i, (name, value) in enumerate(values.items())]
    jobs = [{"job_name": f"mod{m}", "scrape_interval": "1h", "static_configs": static, "relabel_configs": [
        {"source_labels": ["key"], "modulus": m, "target_label": "__tmp_shard", "action": "hashmod"},
        {"source_labels": ["__tmp_shard"], "target_label": "shard"}]} for m in MODULI]
    stack = Stack(Path(tempfile.mkdtemp(prefix="apistatus-hashmod-")))
    try:
        path = stack.tmp / "prometheus.yml"
        path.write_text(yaml.safe_dump({"scrape_configs": jobs}))
        url = _spawn_ready(stack, "prometheus", [binary, f"--config.file={path}",
                                                 f"--storage.tsdb.path={stack.tmp / 'tsdb'}", "--log.level=warn"])

        def placed() -> dict[tuple[str, str], int] | None:
            _, body = http(url + "/api/v1/targets?" + urllib.parse.urlencode({"state": "active"}))
            active = json.loads(body)["data"]["activeTargets"]
            got = {(t["labels"]["job"], t["labels"]["name"]): int(t["labels"]["shard"]) for t in active}
            return got if len(got) == len(values) * len(MODULI) else None

        got = wait_for("Prometheus to list every relabelled target", placed)
    finally:
        stack.close()
        shutil.rmtree(stack.tmp, ignore_errors=True)
    for m in MODULI:
        for name, value in values.items():
            assert got[(f"mod{m}", name)] == hashmod(value, m), (m, name)
    for t in cfg.targets:
        assert all(got[(f"mod{m}", t.name)] == shard_of(t, m) for m in MODULI)
    assert len({got[("mod5", n)] for n in keys}) == 5  # the keys do spread over the shards
