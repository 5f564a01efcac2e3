"""The faster safe loader (exporter/_yamlfast.py) gives exactly what PyYAML's own safe loader gives:
the same values for every document, the same error for every broken one."""

from __future__ import annotations

import gc
from pathlib import Path
from typing import Any

import pytest
import yaml

from exporter._yamlfast import FAST_SAFE_LOADER, gc_paused

ROOT = Path(__file__).resolve().parents[2]
REFERENCE = getattr(yaml, "CSafeLoader", yaml.SafeLoader)

DOCS = [
    # YAML 1.1 scalars: booleans, nulls, ints in every base, sexagesimal, floats, specials
    "a: [yes, no, on, off, y, n, true, false, True, FALSE, Yes, NO]",
    "a: [~, null, Null, '', \"\"]\nb:\nc: !!null ''",
    "a: [0x1F, 0o17, 017, 0b101, 1_000, -12, +3, 190:20:30, 0]",
    "a: [1.5, -.5, 6.8523015e+5, 685.230_15e+03, 190:20:30.15, .inf, -.Inf, .NaN, 1e3, 1.]",
    "a: [2001-12-14t21:59:43.10-05:00, 2002-12-14, !!binary aGVsbG8=]",
    "a: !!str 12\nb: !!int '7'\nc: !!float '3'\nd: !!bool 'yes'\ne: '012'\nf: \"0x10\"",
    # anchors, aliases, merge keys (single, list, overridden), the value key
    "base: &b {x: 1, y: [1, 2]}\nuse: *b\nlist: &l [a, b]\nagain: *l",
    "d: &d {interval: 15s, timeout: 5s}\nt:\n  <<: *d\n  timeout: 2s\n  name: t1",
    "a: &a {x: 1}\nb: &b {y: 2}\nc:\n  <<: [*a, *b]\n  z: 3",
    "a: {=: 1, b: 2}",
    "a: {1: one, 2.5: x, true: t, null: n, 2001-01-01: d}",
    "recursive: &r [1, *r]",
    "m: &m {a: 1}\nn: {k: *m}\no: *m",
    # other tags PyYAML's safe loader knows
    "s: !!set {a, b}\no: !!omap [{a: 1}, {b: 2}]\np: !!pairs [{a: 1}, {a: 2}]",
    # duplicate keys: the last wins, as in PyYAML
    "a: 1\na: 2",
    # documents that are not mappings
    "- 1\n- two\n- [3]", "just text", "", "# only a comment\n", "42",
    # containers in every position: empty, nested in lists and mappings, null keys and values
    "a:\n- {b: [], c: {}}\n- - x\n  - {~: 1, k: }\n-\nd: {e: [[], [{}], [[1, [2]]]]}\nf: {g: {h: {i: []}}}\nj: last",
    "[[], {}, [{a: [b, {c: d}]}], {e: [f]}]", "- - - deep\n    - er\n  - back\n- out",
    "long: |\n  line one\n  line two\nfolded: >\n  a\n  b\nq: 'it''s'\ndq: \"tab\\there \\u00e9\"",
]

BROKEN = [
    "a: [1, 2", "a: *missing", "a: !!int abc", "a: !!float x", "a: !!bool maybe", "a: !unknown 1",
    "? [a]\n: 1", "? {a: 1}\n: 2", "a:\n  <<: 5", "a:\n  <<: [1]", "a: !!str {b: 1}", "a: !!map [1]",
    "a: b: c", "a: 1\n b: 2", "- a\nb: c", "a: !!binary '#$%'", "a: !!timestamp nope", "a: &x 1\n  &y b",
]


def _load(text: str, loader: Any) -> tuple[str, Any]:
    try:
        return "ok", yaml.load(text, Loader=loader)
    except Exception as exc:  # noqa: BLE001 - PyYAML raises ValueError, KeyError... for some bad tags too
        return "error", (type(exc).__name__, str(exc))


def _files() -> list[Path]:
    found = [p for pattern in ("exporter/catalogs/*.yaml", "tests/broken/*.yml", "config/**/*.yml",
                               "examples/**/*.yml", "deploy/**/*.yaml", "*.yml")
             for p in ROOT.glob(pattern)]
    assert len(found) > 10, "the repository's YAML files were not found"
    # the alias bomb expands to billions of values: the careful loader refuses it before either YAML
    # loader expands it (tests/integration/test_config_files.py), so comparing the expansions is moot
    return sorted(p for p in found if p.name != "alias_bomb.yml")


def _same(a: Any, b: Any) -> bool:
    # repr tells 1 from 1.0 from True, keeps key order, writes NaN and a recursive list ([1, [...]])
    return repr(a) == repr(b)


@pytest.mark.parametrize("text", DOCS + BROKEN)
def test_same_value_or_same_error_as_pyyaml(text: str) -> None:
    want, got = _load(text, REFERENCE), _load(text, FAST_SAFE_LOADER)
    assert got[0] == want[0], (got, want)
    assert _same(got[1], want[1])


def test_aliases_stay_one_object_and_recursion_is_kept() -> None:
    doc = yaml.load("base: &b {x: [1]}\nuse: *b\nr: &r [1, *r]", Loader=FAST_SAFE_LOADER)
    assert doc["use"] is doc["base"] and doc["r"][1] is doc["r"]


@pytest.mark.parametrize("path", _files(), ids=lambda p: str(p.relative_to(ROOT)))
def test_every_yaml_file_of_the_repository_loads_the_same(path: Path) -> None:
    text = path.read_text(encoding="utf-8")
    want, got = _load(text, REFERENCE), _load(text, FAST_SAFE_LOADER)
    assert got[0] == want[0] and _same(got[1], want[1])


def test_a_large_config_loads_the_same(tmp_path: Path) -> None:
    from bench.configs import write_config

    path = write_config(tmp_path / "big.yml", ["http://127.0.0.1:1", "http://127.0.0.1:2"], 2000, 15.0)
    text = path.read_text(encoding="utf-8")
    assert yaml.load(text, Loader=FAST_SAFE_LOADER) == yaml.load(text, Loader=REFERENCE)


def test_the_collector_is_paused_only_inside_and_resumes_as_it_was() -> None:
    assert gc.isenabled()
    with gc_paused():
        assert not gc.isenabled()
        with gc_paused():
            assert not gc.isenabled()
        assert not gc.isenabled()
    assert gc.isenabled()
    gc.disable()
    try:
        with gc_paused():
            pass
        assert not gc.isenabled()  # it was off before: left off
    finally:
        gc.enable()
    with pytest.raises(ValueError), gc_paused():
        raise ValueError
    assert gc.isenabled()


def test_deep_nesting_of_plain_data_loads_without_recursion() -> None:
    # libyaml's own composer recurses once a level (stock PyYAML crashes the process at some tens of
    # thousands): plain data is built from events, iteratively
    depth = 50_000
    doc = yaml.load("a: " + "[" * depth + "]" * depth, Loader=FAST_SAFE_LOADER)
    level, seen = doc["a"], 1
    while level:
        (level,) = level
        seen += 1
    assert seen == depth


def test_the_value_bound_counts_every_value_of_a_plain_document() -> None:
    from exporter._yamlfast import load_counted

    data, values = load_counted("a: [1, 2, {b: x}]\nc: d\n")
    assert data == {"a": [1, 2, {"b": "x"}], "c": "d"}
    # the walk counts 7 values (the root, a, its three items, b's value, c's value); keys add to the bound
    assert values is not None and values >= 7
    assert load_counted("a: &x [1]\nb: *x\n")[1] is None  # PyYAML's way: the tree must be walked


@pytest.mark.parametrize("doc", ["- 0\n" * 300, "[" + "0, " * 300 + "]",
                                 "{" + ", ".join(f"k{i}: 0" for i in range(300)) + "}"])
def test_a_plain_document_with_too_many_values_is_still_refused(doc: str, monkeypatch: pytest.MonkeyPatch) -> None:
    """No alias means no walk is needed for cycles, but the size cap still holds."""
    from exporter import _yamlnode
    from exporter.model import ConfigError

    monkeypatch.setattr(_yamlnode, "MAX_VALUES", 200)
    with pytest.raises(ConfigError, match="expands to more than 200 values"):
        _yamlnode._safe_load(doc, "big.yml")
    monkeypatch.setattr(_yamlnode, "MAX_VALUES", 400)
    assert len(_yamlnode._safe_load(doc, "big.yml")) == 300
