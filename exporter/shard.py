"""Sharding: N replicas read the same config and each keeps the targets whose shard key maps to it.

Placement is Prometheus' ``hashmod`` relabel action (md5 of the key, the last 8 bytes of the digest
as a big-endian integer, modulo N), so a user can reproduce it with relabelling. The key is the
target's request-budget key (vendor, API host, credential), not its name: targets that share a
credential share a budget, and on one replica that budget stays exact. Its string form carries a
SHA-256 digest of the credential values, never the values themselves:

    <vendor>|<host[:port]>|<sha256 hex of the JSON list of sorted [name, value] credential pairs>

Pure: no I/O, no clock.
"""

from __future__ import annotations

import hashlib
import json
import re
from collections import defaultdict
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, replace

from .config import Config, Target
from .model import ALL, Shard

__all__ = ["ALL", "CANDIDATES", "ENV_VAR", "AllShards", "Shard", "ShardError", "ShardLoad", "compare", "describe",
           "distribution", "hashmod", "parse_shard", "resolve", "select", "shard_key", "shard_of", "skew_warnings"]

#: the environment variable read when ``--shard`` is not given (a StatefulSet sets it per pod)
ENV_VAR = "APISTATUS_SHARD"
_SPEC = re.compile(r"([0-9]{1,6})/([0-9]{1,6})")
#: a shard whose planned probes/s exceed the mean by more than this factor is reported as skewed
SKEW_FACTOR = 1.5


class ShardError(ValueError):
    """A shard spec that cannot be used; the message is one line naming where it came from."""


@dataclass(frozen=True, slots=True)
class AllShards:
    """``all/N`` or ``all`` (the config check only): every shard's share, of N or of a few candidate N."""

    count: int | None = None


#: shard counts the config check compares when given ``--shard all``
CANDIDATES = range(2, 9)


def parse_shard(text: str, source: str = "--shard", allow_all: bool = False) -> Shard | AllShards:
    """``I/N`` with 0 <= I < N; ``all`` and ``all/N`` only where ``allow_all`` (the config check)."""
    value = text.strip()
    if allow_all and value == "all":
        return AllShards()
    if allow_all and (match := re.fullmatch(r"all/([0-9]{1,6})", value)) and int(match.group(1)) >= 1:
        return AllShards(int(match.group(1)))
    match = _SPEC.fullmatch(value)
    if match is None or not 0 <= int(match.group(1)) < int(match.group(2)):
        wanted = "I/N with 0 <= I < N (e.g. 0/3)" + (', "all/N" or "all"' if allow_all else "")
        raise ShardError(f"{source}: expected {wanted}, got {text[:40]!r}")
    return Shard(int(match.group(1)), int(match.group(2)))


def resolve(flag: str | None, env: Mapping[str, str], allow_all: bool = False) -> Shard | AllShards:
    """The flag wins over the environment; neither means one replica holding every target."""
    if flag is not None:
        return parse_shard(flag, "--shard", allow_all)
    if env.get(ENV_VAR):
        return parse_shard(env[ENV_VAR], ENV_VAR, allow_all)
    return ALL


def shard_key(target: Target) -> str:
    vendor, host, credentials = target.budget_key
    pairs = [list(pair) for pair in credentials]
    digest = hashlib.sha256(json.dumps(pairs, separators=(",", ":")).encode()).hexdigest()
    return f"{vendor}|{host}|{digest}"


def hashmod(value: str, modulus: int) -> int:
    """Prometheus' relabel ``hashmod`` of one source label value."""
    return int.from_bytes(hashlib.md5(value.encode()).digest()[8:], "big") % modulus


def shard_of(target: Target, count: int) -> int:
    return 0 if count == 1 else hashmod(shard_key(target), count)


def select(config: Config, shard: Shard) -> Config:
    """The config as this replica runs it: only its own targets (applied after every load)."""
    if shard.count == 1:
        return config
    mine = tuple(target for target in config.targets if shard_of(target, shard.count) == shard.index)
    return replace(config, targets=mine)


@dataclass(frozen=True, slots=True)
class ShardLoad:
    shard: Shard
    targets: int
    probes_per_s: float
    largest_group: int  # targets of the largest credential group placed here


#: shards listed one a line by the config check; the rest are summed up in one line
MAX_LISTED = 20


def distribution(targets: Iterable[Target], count: int) -> list[ShardLoad]:
    per_shard = [0] * count
    rate = [0.0] * count
    groups: dict[str, int] = defaultdict(int)
    for target in targets:
        key = shard_key(target)
        index = 0 if count == 1 else hashmod(key, count)
        per_shard[index] += 1
        rate[index] += 1 / target.interval
        groups[key] += 1
    largest = [0] * count
    for key, size in groups.items():
        index = 0 if count == 1 else hashmod(key, count)
        largest[index] = max(largest[index], size)
    return [ShardLoad(Shard(index, count), per_shard[index], rate[index], largest[index]) for index in range(count)]


def skew_warnings(loads: list[ShardLoad]) -> list[str]:
    """Shards whose planned probes/s exceed the mean by SKEW_FACTOR, and empty shards."""
    total = sum(load.probes_per_s for load in loads)
    if len(loads) < 2 or total == 0:
        return []
    mean = total / len(loads)
    out = []
    empty = [load.shard for load in loads if load.targets == 0]
    if len(empty) == 1:
        out.append(f"shard {empty[0]} gets no targets: fewer credential groups than shards, or an unlucky "
                   "hash; a smaller shard count would do")
    elif empty:  # one line, whatever the count: --shard 0/100000 must not print 100,000 warnings
        listed = ", ".join(str(shard.index) for shard in empty[:MAX_LISTED])
        more = f" and {len(empty) - MAX_LISTED} more" if len(empty) > MAX_LISTED else ""
        out.append(f"{len(empty)} of {len(loads)} shards get no targets (shards {listed}{more}): fewer credential "
                   "groups than shards, or an unlucky hash; a smaller shard count would do")
    skewed = [load for load in loads if load.targets > 1 and load.probes_per_s > SKEW_FACTOR * mean]
    for load in skewed[:MAX_LISTED]:
        why = (f"; its largest credential group alone has {load.largest_group} targets (targets sharing a "
               "credential always share a shard)" if load.largest_group * 2 > load.targets else "")
        out.append(f"shard {load.shard} is skewed: {load.targets} targets, {load.probes_per_s:.3g} probes/s, "
                   f"{load.probes_per_s / mean:.1f}x the mean{why}")
    if len(skewed) > MAX_LISTED:
        out.append(f"{len(skewed) - MAX_LISTED} more shards are skewed")
    return out


def describe(loads: list[ShardLoad], mine: Shard | None = None) -> list[str]:
    """One line per shard with targets (the MAX_LISTED busiest when there are more, and this replica's),
    then one line for the rest, so the output stays short whatever the shard count."""
    width = len(str(max(load.targets for load in loads)))
    busy = [load for load in loads if load.targets or load.shard == mine]
    if len(busy) > MAX_LISTED:
        keep = {id(load) for load in sorted(busy, key=lambda load: -load.probes_per_s)[:MAX_LISTED]}
        busy = [load for load in busy if id(load) in keep or load.shard == mine]
    out = [f"shard {load.shard}: {load.targets:{width}d} targets, {load.probes_per_s:.3g} probes/s"
           + ("  <- this replica" if load.shard == mine else "") for load in busy]
    with_targets = sum(1 for load in loads if load.targets)
    listed = sum(1 for load in busy if load.targets)
    if listed < with_targets:
        out.append(f"... {with_targets - listed} more shards with targets (the {listed} busiest are listed)")
    if (empty := len(loads) - with_targets):
        out.append(f"{empty} of {len(loads)} shards get no targets")
    return out


def compare(targets: Iterable[Target], counts: Iterable[int] = CANDIDATES) -> list[str]:
    """For choosing N: per candidate count, the targets per shard and the busiest shard against the mean."""
    listed = list(targets)
    out = []
    for shard_count in counts:
        loads = distribution(listed, shard_count)
        total = sum(load.probes_per_s for load in loads)
        ratio = max(load.probes_per_s for load in loads) * shard_count / total if total else 1.0
        counts_text = " ".join(str(load.targets) for load in loads)
        out.append(f"{shard_count} shards: {counts_text} targets; busiest {ratio:.2f}x the mean")
    return out
