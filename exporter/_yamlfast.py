"""PyYAML's safe loader, faster on large documents, with the same results and the same errors.

A 10,000-target config has some 170,000 scalars. With libyaml the parse itself is quick; the time goes
to three things this module cuts, without changing what any document means:

- the cyclic garbage collector, which runs again and again over the growing node tree while nothing
  is garbage yet (``gc_paused``);
- tag resolution, which matches the same few regular expressions against the same keys and values
  over and over (cached per distinct plain scalar: resolution depends on the text alone);
- construction, which goes through generic per-node dispatch; the standard tags of plain data
  (map, seq, str, int, float, bool, null) are built directly here, anything else (merge keys, other
  tags, errors) by PyYAML's own constructor, so messages and edge cases stay PyYAML's.
"""

from __future__ import annotations

import gc
import threading
from collections.abc import Hashable, Iterator
from contextlib import contextmanager
from typing import Any

import yaml
from yaml.constructor import ConstructorError
from yaml.nodes import MappingNode, Node, ScalarNode, SequenceNode
from yaml.resolver import Resolver

__all__ = ["FAST_SAFE_LOADER", "gc_paused"]

_lock = threading.Lock()
_depth = 0
_was_enabled = False


@contextmanager
def gc_paused() -> Iterator[None]:
    """No cyclic collection inside (nested and thread-safe); it resumes as it was after the outermost.
    Reference counting still frees everything as usual: only cycles wait until the end."""
    global _depth, _was_enabled
    with _lock:
        if _depth == 0:
            _was_enabled = gc.isenabled()
            gc.disable()
        _depth += 1
    try:
        yield
    finally:
        with _lock:
            _depth -= 1
            if _depth == 0 and _was_enabled:
                gc.enable()


_STR, _MAP, _SEQ = "tag:yaml.org,2002:str", "tag:yaml.org,2002:map", "tag:yaml.org,2002:seq"
_INT, _FLOAT = "tag:yaml.org,2002:int", "tag:yaml.org,2002:float"
_BOOL, _NULL = "tag:yaml.org,2002:bool", "tag:yaml.org,2002:null"
#: keys that make PyYAML rewrite a mapping before building it
_SPECIAL_KEYS = frozenset({"tag:yaml.org,2002:merge", "tag:yaml.org,2002:value"})


class _Fast:
    """Mixed into a PyYAML safe loader: the resolver cache and the direct construction."""

    constructed_objects: dict[Node, Any]
    recursive_objects: dict[Node, Any]
    state_generators: list[Iterator[Any]]
    deep_construct: bool
    bool_values: dict[str, bool]

    def __init__(self, stream: Any) -> None:
        super().__init__(stream)  # type: ignore[call-arg]
        self._tags: dict[str, str] = {}

    def resolve(self, kind: type, value: Any, implicit: tuple[bool, bool]) -> str:
        if kind is ScalarNode and implicit[0]:
            tag = self._tags.get(value)
            if tag is None:
                tag = self._tags[value] = str(Resolver.resolve(self, kind, value, implicit))  # type: ignore[arg-type, no-untyped-call]
            return tag
        return str(Resolver.resolve(self, kind, value, implicit))  # type: ignore[arg-type, no-untyped-call]

    def get_single_data(self) -> Any:
        with gc_paused():  # composing the node tree is where the collector cost most
            node = self.get_single_node()  # type: ignore[attr-defined]
            data = None if node is None else self.construct_document(node)
            # the tree is garbage now: freed here, the first collection after the pause never sees it
            del node
        return data

    def construct_document(self, node: Node) -> Any:
        data = self._build(node)
        # what PyYAML's own construct_document does after the first object: run deferred fillers, reset
        generators = self.state_generators
        while generators:
            self.state_generators = []
            for generator in generators:
                for _ in generator:
                    pass
            generators = self.state_generators
        self.constructed_objects = {}
        self.recursive_objects = {}
        self.deep_construct = False
        return data

    def _build(self, node: Node) -> Any:
        done = self.constructed_objects
        if node in done:
            return done[node]
        tag, cls = node.tag, type(node)
        if cls is ScalarNode:
            value = node.value
            if tag == _STR:
                result: Any = value
            elif tag == _NULL:
                result = None
            elif tag == _BOOL:
                result = self.bool_values[value.lower()]
            elif tag == _INT:
                result = self.construct_yaml_int(node)  # type: ignore[attr-defined]
            elif tag == _FLOAT:
                result = self.construct_yaml_float(node)  # type: ignore[attr-defined]
            else:
                return self.construct_object(node, deep=True)  # type: ignore[attr-defined]
            done[node] = result
            return result
        if cls is MappingNode and tag == _MAP:
            if any(key.tag in _SPECIAL_KEYS for key, _ in node.value):
                self.flatten_mapping(node)  # type: ignore[attr-defined]  # PyYAML's merge, its errors
            mapping: dict[Any, Any] = {}
            done[node] = mapping  # before the values: an alias inside refers to this very dict
            for key_node, value_node in node.value:
                key = self._build(key_node)
                if not isinstance(key, Hashable):
                    raise ConstructorError("while constructing a mapping", node.start_mark,
                                           "found unhashable key", key_node.start_mark)
                mapping[key] = self._build(value_node)
            return mapping
        if cls is SequenceNode and tag == _SEQ:
            items: list[Any] = []
            done[node] = items
            items.extend(self._build(child) for child in node.value)
            return items
        return self.construct_object(node, deep=True)  # type: ignore[attr-defined]


def _loader() -> type:
    base = getattr(yaml, "CSafeLoader", None)
    if base is None:
        return yaml.SafeLoader  # no libyaml: the Python loader, unchanged
    return type("FastSafeLoader", (_Fast, base), {})


#: a drop-in for ``yaml.CSafeLoader`` (``yaml.SafeLoader`` where PyYAML lacks libyaml)
FAST_SAFE_LOADER: type = _loader()
