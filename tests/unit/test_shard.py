"""Shard placement (pure): one shard per target, credential groups together, keys without secrets,
the --shard spec and its environment fallback, the config check's per-shard counts and skew warning."""

from __future__ import annotations

import base64
import hashlib
from pathlib import Path
from typing import Any

import pytest
import yaml

from exporter.__main__ import main
from exporter.collector import render_exposition
from exporter.config import Config
from exporter.model import ExporterStatus
from exporter.shard import (
    ALL,
    ENV_VAR,
    AllShards,
    Shard,
    ShardError,
    distribution,
    parse_shard,
    resolve,
    select,
    shard_key,
    shard_of,
    skew_warnings,
)
from tests.conftest import config_from, sample

SECRET = "s3cr3t-Value_42"


def targets(n: int, groups: int, interval: str = "60s") -> list[dict[str, Any]]:
    """``n`` flipsnack targets over ``groups`` credentials (target i uses credential i % groups)."""
    return [{"name": f"t{i:04d}", "vendor": "flipsnack", "base_url": "http://127.0.0.1:9/v1", "interval": interval,
             "credentials": {"api_key": f"key-{i % groups}", "secret": f"{SECRET}-{i % groups}"}}
            for i in range(n)]


def fleet(n: int = 300, groups: int = 120) -> Config:
    return config_from({"targets": targets(n, groups)})


@pytest.mark.parametrize("count", [1, 2, 3, 5, 8])
def test_every_target_runs_on_exactly_one_shard(count: int) -> None:
    cfg = fleet()
    kept = [t.name for i in range(count) for t in select(cfg, Shard(i, count)).targets]
    assert sorted(kept) == sorted(t.name for t in cfg.targets)
    if count > 1:  # and the work is actually split: no shard holds everything
        assert all(len(select(cfg, Shard(i, count)).targets) < len(cfg.targets) for i in range(count))


@pytest.mark.parametrize("count", [2, 3, 5, 8])
def test_targets_sharing_a_credential_share_a_shard(count: int) -> None:
    cfg = fleet()
    by_credential: dict[str, set[int]] = {}
    for t in cfg.targets:
        by_credential.setdefault(t.credentials["api_key"], set()).add(shard_of(t, count))
    assert all(len(shards) == 1 for shards in by_credential.values()), by_credential


def test_the_key_is_the_budget_key_not_the_name() -> None:
    a, renamed, other_host, other_cred = config_from({"targets": [
        {"name": "a", "vendor": "flipsnack", "base_url": "http://127.0.0.1:9/v1",
         "credentials": {"api_key": "k", "secret": SECRET}},
        {"name": "b", "vendor": "flipsnack", "base_url": "http://127.0.0.1:9/v2",
         "credentials": {"api_key": "k", "secret": SECRET}},
        {"name": "c", "vendor": "flipsnack", "base_url": "http://127.0.0.2:9/v1",
         "credentials": {"api_key": "k", "secret": SECRET}},
        {"name": "d", "vendor": "flipsnack", "base_url": "http://127.0.0.1:9/v1",
         "credentials": {"api_key": "k", "secret": SECRET + "x"}},
    ]}).targets
    assert shard_key(a) == shard_key(renamed)  # another name and path, same host and credential
    assert shard_key(a) != shard_key(other_host) and shard_key(a) != shard_key(other_cred)


def test_the_key_shows_no_credential_value_in_any_encoding() -> None:
    (t,) = config_from({"targets": targets(1, 1)}).targets
    key = shard_key(t)
    secret = t.credentials["secret"].encode()
    for form in (secret, base64.b64encode(secret), secret.hex().encode(), hashlib.md5(secret).hexdigest().encode(),
                 hashlib.sha256(secret).hexdigest().encode(), b"key-0"):
        assert form.decode() not in key, form
    assert key.startswith("flipsnack|127.0.0.1:9|")


@pytest.mark.parametrize("spec", ["3/3", "-1/3", "1/0", "0/0", "a/b", "", "1/3/4", "1", "all", "all/3", " 1 /3x",
                                  "9999999/99999999", "\u0661/\u0663", "all/0"])
def test_a_bad_spec_is_one_line_naming_the_flag_and_value(spec: str) -> None:
    with pytest.raises(ShardError) as err:
        parse_shard(spec)
    assert str(err.value).startswith("--shard: expected I/N") and "\n" not in str(err.value)
    assert repr(spec[:40]) in str(err.value)


def test_the_flag_wins_over_the_environment_which_wins_over_nothing() -> None:
    assert resolve("1/4", {ENV_VAR: "2/4"}) == Shard(1, 4)
    assert resolve(None, {ENV_VAR: "2/4"}) == Shard(2, 4)
    assert resolve(None, {}) == ALL and resolve(None, {ENV_VAR: ""}) == ALL
    with pytest.raises(ShardError, match=f"^{ENV_VAR}: expected"):
        resolve(None, {ENV_VAR: "4/4"})
    assert resolve("all", {}, allow_all=True) == AllShards()
    assert resolve(None, {ENV_VAR: "all/5"}, allow_all=True) == AllShards(5)
    for bad in ("all/0", "all/x", "all/", "alll"):
        with pytest.raises(ShardError, match='or "all"'):
            parse_shard(bad, allow_all=True)


def test_skew_is_reported_when_one_credential_holds_most_targets() -> None:
    # 200 targets on one credential and 40 on their own: whichever shard gets the big group is busiest
    cfg = config_from({"targets": targets(200, 1) + [
        {**t, "name": f"x{i}"} for i, t in enumerate(targets(40, 40)[:40])]})
    loads = distribution(cfg.targets, 4)
    warnings = skew_warnings(loads)
    assert len(warnings) == 1 and "largest credential group alone has" in warnings[0], warnings
    even = distribution(fleet(400, 400).targets, 2)
    assert skew_warnings(even) == [], [(s.targets, s.probes_per_s) for s in even]


def test_skew_weighs_probes_per_second_not_only_target_counts() -> None:
    # equal counts per credential, but one credential's targets are probed 10x as often
    fast = [{**t, "name": f"f{i}", "interval": "6s", "timeout": "5s"} for i, t in enumerate(targets(20, 1))]
    cfg = config_from({"targets": fast + [{**t, "name": f"s{i}"} for i, t in enumerate(targets(20, 20))]})
    loads = distribution(cfg.targets, 2)
    assert sum(s.targets for s in loads) == 40
    busiest = max(loads, key=lambda s: s.probes_per_s)
    assert busiest.probes_per_s == pytest.approx(20 / 6 + sum(1 / 60 for t in cfg.targets
                                                             if t.name.startswith("s") and
                                                             shard_of(t, 2) == busiest.shard.index))
    assert any(str(busiest.shard) in w for w in skew_warnings(loads))


def test_an_empty_shard_is_reported() -> None:
    loads = distribution(fleet(6, 1).targets, 3)
    assert any("get no targets" in w or "gets no targets" in w for w in skew_warnings(loads))


def test_the_shard_info_metric_names_index_and_count() -> None:
    text = render_exposition([], ExporterStatus(targets=7, shard=Shard(2, 5)), process=False).decode()
    assert sample(text, "apistatus_shard_info", index="2", count="5") == 1
    assert sample(text, "apistatus_targets") == 7
    unsharded = render_exposition([], ExporterStatus(), process=False).decode()
    assert sample(unsharded, "apistatus_shard_info", index="0", count="1") == 1


def _config_file(tmp_path: Path, n: int, groups: int) -> Path:
    path = tmp_path / "fleet.yml"
    path.write_text(yaml.safe_dump({"targets": targets(n, groups)}))
    return path


def test_config_check_prints_each_shards_share(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = _config_file(tmp_path, 90, 45)
    cfg = config_from({"targets": targets(90, 45)})
    assert main(["--config", str(path), "--check-config", "--shard", "1/3"]) == 0
    out = capsys.readouterr().out.splitlines()
    for i in range(3):
        n = len(select(cfg, Shard(i, 3)).targets)
        line = next(x for x in out if x.startswith(f"shard {i}/3:"))
        assert int(line.split()[2]) == n
        assert line.endswith("<- this replica") == (i == 1)
    assert main(["--config", str(path), "--check-config", "--shard", "all"]) == 0
    out = capsys.readouterr().out.splitlines()
    three = next(x for x in out if x.startswith("3 shards:"))
    assert three.split(":")[1].split("targets")[0].split() == [str(len(select(cfg, Shard(i, 3)).targets))
                                                                for i in range(3)]


def test_config_check_warns_on_skew_and_refuses_a_bad_spec(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = _config_file(tmp_path, 30, 1)
    assert main(["--config", str(path), "--check-config", "--shard", "all/3"]) == 0
    err = capsys.readouterr().err
    assert "shards get no targets" in err  # one line for all the empty ones
    assert main(["--config", str(path), "--shard", "all"]) == 2  # "all" only makes sense for the check
    assert "expected I/N" in capsys.readouterr().err


def test_changing_the_shard_count_moves_most_targets() -> None:
    """What docs/scaling.md says N -> N+1 costs: hashmod is not consistent hashing, a target stays
    on its replica only when key mod N == key mod N+1, about 1 in N+1."""
    cfg = config_from({"targets": targets(3000, 3000)})
    for n in (2, 3, 5):
        kept = sum(1 for t in cfg.targets if shard_of(t, n) == shard_of(t, n + 1))
        assert abs(kept / 3000 - 1 / (n + 1)) < 0.05, (n, kept)
