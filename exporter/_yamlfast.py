"""PyYAML's safe loader, faster on large documents, with the same results and the same errors.

A 10,000-target config has some 170,000 scalars. With libyaml the parse itself is quick; the time goes
to three things this module cuts, without changing what any document means:

- the cyclic garbage collector, which runs again and again over the growing node tree while nothing
  is garbage yet (``gc_paused``);
- tag resolution, which matches the same few regular expressions against the same keys and values
  over and over (cached per distinct plain scalar: resolution depends on the text alone);
- the node tree itself: a document of plain data (mappings, sequences, untagged scalars, no anchors)
  is built straight from libyaml's events. Anything else (an anchor or alias, a tag, a merge key, a
  complex key, a second document) is parsed again PyYAML's own way, with a constructor that builds
  the standard tags directly and leaves the rest (merge keys, other tags, errors) to PyYAML's, so
  values, messages and edge cases stay PyYAML's.
"""

from __future__ import annotations

import gc
import threading
from collections.abc import Hashable, Iterator
from contextlib import contextmanager
from typing import Any

import yaml
from yaml.constructor import ConstructorError
from yaml.events import (
    DocumentEndEvent,
    MappingEndEvent,
    MappingStartEvent,
    ScalarEvent,
    SequenceEndEvent,
    SequenceStartEvent,
    StreamEndEvent,
)
from yaml.nodes import MappingNode, Node, ScalarNode, SequenceNode
from yaml.resolver import Resolver

__all__ = ["FAST_SAFE_LOADER", "gc_paused", "load_counted"]

_lock = threading.Lock()
_depth = 0
_was_enabled = False


@contextmanager
def gc_paused() -> Iterator[None]:
    """No cyclic collection inside (nested and thread-safe); it resumes as it was after the outermost.
    Reference counting still frees everything as usual: only cycles wait until the end. The switch is
    process-wide, so it is thrown only on the main thread (start-up, --check-config): a reload reads
    the config in a worker thread that may be given up while it still runs, and the event loop's
    cycles must not wait for it; there the pause does nothing."""
    global _depth, _was_enabled
    if threading.current_thread() is not threading.main_thread():
        yield
        return
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


_UNSET: Any = object()


class _Unusual(Exception):
    """What the direct construction from events leaves to PyYAML's general way."""


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
        #: the document, to parse it again the general way should the direct way meet anything unusual
        self._text: str | bytes | None = stream if isinstance(stream, str | bytes) else None
        #: when the document was built straight from events: how many values it has at most (no alias
        #: can make it any larger); None when it went PyYAML's way
        self.values: int | None = None

    def resolve(self, kind: type, value: Any, implicit: tuple[bool, bool]) -> str:
        if kind is ScalarNode and implicit[0]:
            tag = self._tags.get(value)
            if tag is None:
                tag = str(Resolver.resolve(self, kind, value, implicit))  # type: ignore[arg-type, no-untyped-call]
                # the very object _STR: the event path tells a string by identity
                tag = self._tags[value] = _STR if tag == _STR else tag
            return tag
        return str(Resolver.resolve(self, kind, value, implicit))  # type: ignore[arg-type, no-untyped-call]

    def get_single_data(self) -> Any:
        with gc_paused():  # composing a node tree is where the collector cost most
            if self._text is not None:
                try:
                    return self._from_events()
                except _Unusual:
                    pass
                # an anchor, a tag, a merge key, a complex key, a second document: PyYAML's own way,
                # from a fresh parser, so that its values and errors are exactly PyYAML's
                again = type(self)(self._text)
                again._text = None
                try:
                    return again.get_single_data()
                finally:
                    again.dispose()  # type: ignore[attr-defined]
            node = self.get_single_node()  # type: ignore[attr-defined]
            data = None if node is None else self.construct_document(node)
            # the tree is garbage now: freed here, the first collection after the pause never sees it
            del node
        return data

    def _from_events(self) -> Any:
        """The document built straight from the parser's events, without a node tree, for plain data:
        mappings, sequences and untagged scalars without anchors. Raises _Unusual on anything else."""
        get = self.get_event  # type: ignore[attr-defined]
        tags = self._tags
        shared: dict[str, str] = {}
        get()  # stream start
        if type(get()) is StreamEndEvent:
            return None  # an empty stream (or only comments)
        root: Any = _UNSET
        # the container being filled, whether it is a list, and for a mapping the key read last (_UNSET
        # while a key is due); the enclosing ones' on a stack. Kept in locals: this loop runs once per
        # event, a few hundred thousand times for a large config.
        top: Any = None
        in_list = False
        key: Any = _UNSET
        stack: list[tuple[Any, bool, Any]] = []
        count = 0  # events, keys included: a bound on the values
        while True:
            event = get()
            count += 1
            kind = type(event)
            if kind is ScalarEvent:
                if event.anchor is not None or event.tag is not None:
                    raise _Unusual
                value: Any = event.value
                # most scalars are keys and words that resolve to str: one dict look-up, no call
                if event.implicit[0] and tags.get(value) is not _STR:
                    value = self._plain(value)
                elif len(value) <= 64:
                    # one object for each repeated short string (keys, vendors, label values): a
                    # large config keeps its values for as long as it runs
                    value = shared.setdefault(value, value)
                if in_list:
                    top.append(value)
                elif key is not _UNSET:
                    top[key] = value
                    key = _UNSET
                elif top is not None:
                    key = value
                else:
                    root = value
                continue
            if kind is MappingStartEvent or kind is SequenceStartEvent:
                if event.anchor is not None or event.tag is not None:
                    raise _Unusual
                value = {} if kind is MappingStartEvent else []
                if in_list:
                    top.append(value)
                elif key is not _UNSET:
                    top[key] = value
                    key = _UNSET
                elif top is not None:
                    raise _Unusual  # a complex key: PyYAML's error says it is unhashable
                else:
                    root = value
                stack.append((top, in_list, key))
                top, in_list, key = value, kind is SequenceStartEvent, _UNSET
            elif kind is MappingEndEvent or kind is SequenceEndEvent:
                top, in_list, key = stack.pop()
            elif kind is DocumentEndEvent:
                break
            else:
                raise _Unusual  # an alias
        if type(get()) is not StreamEndEvent:
            raise _Unusual  # a second document: PyYAML's error
        self.values = count
        return root

    def _plain(self, text: str) -> Any:
        tag = self._tags.get(text)
        if tag is None:
            tag = self.resolve(ScalarNode, text, (True, False))
        if tag == _STR:
            return text
        if tag == _NULL:
            return None
        if tag == _BOOL:
            return self.bool_values[text.lower()]
        if tag == _INT:
            return self.construct_yaml_int(ScalarNode(tag, text))  # type: ignore[attr-defined]
        if tag == _FLOAT:
            return self.construct_yaml_float(ScalarNode(tag, text))  # type: ignore[attr-defined]
        raise _Unusual  # a timestamp, a merge or value key

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


def load_counted(text: str) -> tuple[Any, int | None]:
    """``yaml.load(text, Loader=FAST_SAFE_LOADER)``, and a bound on the number of values when the
    document was built straight from events (None otherwise): such a tree has no alias, so its size
    is known without walking it."""
    loader = FAST_SAFE_LOADER(text)
    try:
        return loader.get_single_data(), getattr(loader, "values", None)
    finally:
        loader.dispose()
