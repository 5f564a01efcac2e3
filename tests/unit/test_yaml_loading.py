"""The one YAML loader (exporter/_yamlnode.py ``parse_yaml``): YAML 1.1 values as PyYAML's safe loader
reads them, aliases kept as shared values, and every refusal one line naming the file, the same
whether PyYAML has libyaml or not and whichever PyYAML release is installed."""

from __future__ import annotations

import datetime
import time
from collections.abc import Iterator
from typing import Any

import pytest
import yaml

from exporter import _yamlnode
from exporter._yamlnode import MAX_DEPTH, parse_yaml
from exporter.model import ConfigError

from ..conftest import ROOT

UNFIT = "a value does not fit its explicit YAML tag (!!int, !!float, !!bool, !!timestamp)"
LOADERS = {"libyaml": getattr(yaml, "CSafeLoader", None), "python": yaml.SafeLoader}


def test_libyaml_is_there_so_both_loaders_are_really_compared() -> None:
    assert LOADERS["libyaml"] is not None, "PyYAML without libyaml: install a PyYAML wheel"
    assert _yamlnode._SAFE_LOADER is LOADERS["libyaml"]  # the documented C loader where there is one


@pytest.fixture(params=sorted(LOADERS))
def loader(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> Iterator[str]:
    monkeypatch.setattr(_yamlnode, "_SAFE_LOADER", LOADERS[request.param])
    yield request.param


#: every kind of YAML 1.1 document the safe loader reads (the fast path builds some, yaml.load the rest)
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


def _reference(text: str) -> Any:
    """What PyYAML's own safe loader makes of ``text`` (repr: tells 1 from 1.0 from True, keeps key order)."""
    return repr(yaml.load(text, Loader=_yamlnode._SAFE_LOADER))


@pytest.mark.parametrize("text", [d for d in DOCS if "*r" not in d])
def test_every_document_loads_as_pyyamls_safe_loader_reads_it(text: str, loader: str) -> None:
    assert repr(parse_yaml(text, "f.yml")) == _reference(text)


def _files() -> list[Any]:
    found = [p for pattern in ("exporter/catalogs/*.yaml", "tests/broken/*.yml", "config/**/*.yml", "deploy/**/*.yaml")
             for p in ROOT.glob(pattern)]
    assert len(found) > 10, "the repository's YAML files were not found"
    return sorted(p for p in found if p.name != "alias_bomb.yml")


@pytest.mark.parametrize("path", _files(), ids=lambda p: str(p.relative_to(ROOT)))
def test_every_yaml_file_of_the_repository_loads_as_pyyamls_safe_loader_reads_it(path: Any, loader: str) -> None:
    text = path.read_text(encoding="utf-8")
    try:
        got = repr(parse_yaml(text, str(path)))
    except ConfigError:
        assert path.parent.name == "broken"  # a broken fixture: its exact refusal is tests/unit/test_config.py's
        return
    assert got == _reference(text)


def test_a_large_config_loads_as_pyyamls_safe_loader_reads_it(tmp_path: Any) -> None:
    from bench.configs import write_config

    text = write_config(tmp_path / "big.yml", ["http://127.0.0.1:1"], 500, 15.0).read_text(encoding="utf-8")
    text += "extra: {flag: true, share: 0.5, n: 3, none: ~, when: 2001-12-14, '7': x, 7: y}\n"
    assert repr(parse_yaml(text, "big.yml")) == _reference(text)


def _refusal(text: str) -> str:
    with pytest.raises(ConfigError) as err:
        parse_yaml(text, "f.yml")
    message = str(err.value)
    assert "\n" not in message and message.startswith("f.yml: "), message
    return message


@pytest.mark.parametrize(("text", "value"), [
    ("a: [yes, no, on, off, true, False]", {"a": [True, False, True, False, True, False]}),
    ("a: [~, null, '', 12, 0x1F, 017, 0o17, 1_000, -3]", {"a": [None, None, "", 12, 31, 15, "0o17", 1000, -3]}),
    ("a: [1.5, 1.0e+3, '1.5', 15s, 2001-12-14]", {"a": [1.5, 1000.0, "1.5", "15s", datetime.date(2001, 12, 14)]}),
    ("d: &d {interval: 15s, timeout: 5s}\nt: {<<: *d, timeout: 2s}",
     {"d": {"interval": "15s", "timeout": "5s"}, "t": {"interval": "15s", "timeout": "2s"}}),
    ("- 1\n- two", [1, "two"]),
    ("", None),
    ("# only a comment\n", None),
])
def test_yaml_1_1_values_as_the_safe_loader_reads_them(text: str, value: Any, loader: str) -> None:
    assert parse_yaml(text, "f.yml") == value


def test_an_alias_is_the_same_value_not_a_copy(loader: str) -> None:
    doc = parse_yaml("base: &b {x: [1]}\nuse: *b\n", "f.yml")
    assert doc["use"] is doc["base"]


def test_a_circular_alias_is_refused(loader: str) -> None:
    assert _refusal("r: &r [1, *r]\n") == "f.yml: r[1]: a YAML alias refers to a value that contains it"


def test_the_alias_bomb_is_refused_before_anything_expands_it(loader: str) -> None:
    bomb = ROOT / "tests" / "broken" / "alias_bomb.yml"
    text = bomb.read_text(encoding="utf-8")
    expected = text.splitlines()[0][len("# error: "):].replace("{file}", "f.yml")
    started = time.process_time()
    assert _refusal(text) == expected
    assert time.process_time() - started < 5  # billions of values, had anything expanded them


@pytest.mark.parametrize("doc", ["- 0\n" * 300, "[" + "0, " * 300 + "]",
                                 "{" + ", ".join(f"k{i}: 0" for i in range(300)) + "}"])
def test_a_document_without_aliases_is_bounded_too(doc: str, monkeypatch: pytest.MonkeyPatch) -> None:
    """Without an alias no walk is needed for one; the bound on values holds all the same."""
    monkeypatch.setattr(_yamlnode, "MAX_VALUES", 200)
    assert _refusal(doc) == "f.yml: the document expands to more than 200 values (YAML aliases used too often?)"
    monkeypatch.setattr(_yamlnode, "MAX_VALUES", 400)
    assert len(parse_yaml(doc, "f.yml")) == 300


@pytest.mark.parametrize(("text", "message"), [
    ("a: [1, 2", "f.yml: line 1: expected ',' or ']', but got '<stream end>'"),
    ("a: *missing", "f.yml: line 1: found undefined alias 'missing'"),
    ("a: b: c", "f.yml: line 1: mapping values are not allowed here"),
    ("a: 1\n b: 2", "f.yml: line 2: mapping values are not allowed here"),
    ("a: !!int abc", f"f.yml: {UNFIT}"),
    ("a: !!bool maybe", f"f.yml: {UNFIT}"),
    ("a: !!timestamp nope", f"f.yml: {UNFIT}"),
    ("a: !!str {b: 1}", "f.yml: line 1: expected a scalar node, but found mapping"),
    ("a: !unknown 1", "f.yml: line 1: could not determine a constructor for the tag '!unknown'"),
    ("x: \"\\ud800\"", "f.yml: x: holds an invalid \\u escape (a lone UTF-16 surrogate)"),
    ("a: 1\x07", "f.yml: line 1: control character U+0007 is not allowed"),
])
def test_a_broken_document_is_one_line_whichever_loader(text: str, message: str, loader: str) -> None:
    assert _refusal(text) == message


def _flow(depth: int) -> str:
    """``depth`` lists, each inside the one before."""
    return "[" * depth + "]" * depth


def _block(depth: int) -> str:
    """``depth`` lists, each inside the one before, around a string."""
    return "- " * depth + "v\n"


@pytest.mark.parametrize("make", [_flow, _block], ids=["flow", "block"])
def test_nesting_up_to_the_bound_loads(make: Any, loader: str) -> None:
    doc = parse_yaml(make(MAX_DEPTH), "f.yml")
    levels = 0
    while isinstance(doc, list):
        doc = doc[0] if doc else None
        levels += 1
    assert levels == MAX_DEPTH and doc in (None, "v")


#: (loader, shape, depth); the pure-Python scanner takes seconds over deep flow nesting, and 400 levels
#: are past its recursion already
DEEPER = [(name, make, depth) for name in sorted(LOADERS) for make in (_flow, _block)
          for depth in (MAX_DEPTH + 1, 400, 1001, 50_000) if not (name == "python" and make is _flow and depth > 400)]


@pytest.mark.parametrize(("name", "make", "depth"), DEEPER,
                         ids=[f"{n}-{m.__name__[1:]}-{d}" for n, m, d in DEEPER])
def test_deeper_nesting_is_one_clear_line_whatever_pyyaml_allows(name: str, make: Any, depth: int,
                                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    """libyaml in PyYAML 6.0.4 refuses 1,000 levels, 6.0.3 crashed at tens of thousands, the pure-Python
    loader recurses (past some 300 levels): the exporter's own bound is what a user sees."""
    monkeypatch.setattr(_yamlnode, "_SAFE_LOADER", LOADERS[name])
    assert _refusal(make(depth)) == f"f.yml: values are nested more than {MAX_DEPTH} levels deep"


def test_a_document_of_many_distinct_numbers_loads_as_pyyamls_safe_loader_reads_it(loader: str) -> None:
    """More distinct numbers than a config has go to yaml.load whole (each would cost a load of its own)."""
    text = "".join(f"k{i}: [{i}, {i}.5, 0x{i:x}, {'yes' if i % 2 else 'off'}]\n" for i in range(600))
    assert repr(parse_yaml(text, "f.yml")) == _reference(text)
