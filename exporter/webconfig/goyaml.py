"""Go's yaml.v2 as exporter-toolkit's typed fields see a web config: a string field takes the scalar's
source text (``X-XSS-Protection: 1`` is the string ``1``), booleans are YAML 1.1's (``y``/``on`` too),
a duration is Go's (a bare number is nanoseconds), unknown and duplicate keys are errors."""

from __future__ import annotations

import math
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any, NoReturn

import yaml

from .._yamlnode import ConfigError, Node

__all__ = ["GoNode", "Scalar", "WebConfigError", "as_bool", "as_duration", "as_int", "as_str", "as_strs",
           "parse_yaml"]


class WebConfigError(ConfigError):
    """A bad web config file: one line naming the file, the key path and the reason."""


class GoNode(Node):
    """The project's validating ``Node``, failing with a WebConfigError."""

    __slots__ = ()

    def fail(self, reason: str, show: bool = True) -> NoReturn:
        if show and not self.secret:
            raise WebConfigError(self.file, self.path, reason, self.value)
        raise WebConfigError(self.file, self.path, reason)

    def _sub(self, key: str | int, value: Any) -> Node:
        sub = super()._sub(key, value)
        return GoNode(sub.value, sub.file, sub.path, sub.secret)


_PLAIN = "!go-plain"  # an untagged plain scalar: what it means depends on the field it fills
_NULLS = {"", "~", "null", "Null", "NULL"}
_TRUE = {"y", "Y", "yes", "Yes", "YES", "true", "True", "TRUE", "on", "On", "ON"}
_FALSE = {"n", "N", "no", "No", "NO", "false", "False", "FALSE", "off", "Off", "OFF"}
_YAML_FLOAT = re.compile(r"[-+]?(\.[0-9]+|[0-9]+(\.[0-9]*)?)([eE][-+]?[0-9]+)?")
_MAX_NODES = 100_000  # alias expansion beyond this is an attack, not a web config


class _GoLoader(yaml.SafeLoader):
    def resolve(self, kind: Any, value: Any, implicit: Any) -> Any:
        if kind is yaml.ScalarNode and implicit[0]:
            return _PLAIN
        return super().resolve(kind, value, implicit)  # type: ignore[no-untyped-call]


@dataclass(frozen=True, slots=True)
class Scalar:
    text: str
    tag: str  # _PLAIN, or the explicit/quoted tag (quoted scalars are strings)

    def __repr__(self) -> str:
        return repr(self.text)


_SURROGATE = re.compile("[\ud800-\udfff]")


def _no_surrogate(file: str, path: str, text: str, what: str = "") -> None:
    """YAML's ``"\\ud800"`` escape makes a string no encoder can write (bcrypt, a header, a path would
    raise on it): refused here, as the main config's loader refuses it."""
    if _SURROGATE.search(text):
        raise WebConfigError(file, path, f"{what + ' ' if what else ''}holds an invalid \\u escape "
                             "(a lone UTF-16 surrogate)")


def _tree(file: str, root: yaml.Node) -> Any:
    """The composed document as dicts, lists and ``Scalar``; nulls as None; duplicate keys refused."""
    count = 0

    def conv(node: yaml.Node, path: str, stack: tuple[int, ...]) -> Any:
        nonlocal count
        count += 1
        if count > _MAX_NODES or id(node) in stack:
            raise WebConfigError(file, path, "too many or recursive YAML aliases")
        stack = (*stack, id(node))
        if isinstance(node, yaml.ScalarNode):
            if (node.tag == _PLAIN and node.value in _NULLS) or node.tag == "tag:yaml.org,2002:null":
                return None
            _no_surrogate(file, path, node.value)
            return Scalar(node.value, node.tag)
        if isinstance(node, yaml.SequenceNode):
            return [conv(child, f"{path}[{index}]", stack) for index, child in enumerate(node.value)]
        assert isinstance(node, yaml.MappingNode)
        out: dict[str, Any] = {}
        merged: list[tuple[str, Any]] = []
        for key_node, child in node.value:
            if isinstance(key_node, yaml.ScalarNode) and key_node.tag == _PLAIN and key_node.value == "<<":
                sources = child.value if isinstance(child, yaml.SequenceNode) else [child]
                for src in sources:
                    sub = conv(src, path, stack)
                    if not isinstance(sub, dict):
                        raise WebConfigError(file, path, "a YAML merge (<<) needs a mapping")
                    merged.extend(sub.items())
                continue
            if not isinstance(key_node, yaml.ScalarNode):
                raise WebConfigError(file, path, "a key must be a string, not a list or mapping")
            _no_surrogate(file, path, key_node.value, "a key")
            key = "" if key_node.tag == _PLAIN and key_node.value in _NULLS else key_node.value
            sub_path = f"{path}.{key}" if path else key
            if key in out:
                raise WebConfigError(file, sub_path, "is given twice")
            out[key] = conv(child, sub_path, stack)
        for key, val in merged:
            out.setdefault(key, val)
        return out

    return conv(root, "", ())


def parse_yaml(file: Path, text: str) -> Any:
    try:
        # yaml.v2 reads the first document of a stream; so does this
        root = next(iter(yaml.compose_all(text, Loader=_GoLoader)), None)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        line = f"line {mark.line + 1}: " if mark is not None else ""
        raise WebConfigError(str(file), "", f"invalid YAML: {line}{getattr(exc, 'problem', None) or 'syntax error'}"
                             ) from None
    except RecursionError:  # the composer recurses per level, as the main config's loader does
        raise WebConfigError(str(file), "", "values are nested too deeply") from None
    if root is None:
        return None
    try:
        return _tree(str(file), root)
    except RecursionError:
        raise WebConfigError(str(file), "", "values are nested too deeply") from None


def _scalar(node: Node) -> Scalar | None:
    if isinstance(node.value, list | dict):
        node.fail("must be a single value, not a list or mapping", show=False)
    return node.value if isinstance(node.value, Scalar) else None


def as_str(node: Node) -> str:
    """A Go string field: the scalar's source text, whatever YAML would read it as."""
    scalar = _scalar(node)
    return "" if scalar is None else scalar.text


def as_bool(node: Node) -> bool:
    scalar = _scalar(node)
    if scalar is None:
        return False
    if scalar.tag in (_PLAIN, "tag:yaml.org,2002:bool"):
        if scalar.text in _TRUE:
            return True
        if scalar.text in _FALSE:
            return False
    node.fail("must be true or false")


#: Go's int and time.Duration (nanoseconds) are int64: yaml.v2 refuses a value outside
_INT64 = range(-(1 << 63), 1 << 63)


def _go_int(text: str) -> int | None:
    plain = text.replace("_", "")
    match = re.fullmatch(r"([-+]?)(0[xX][0-9a-fA-F]+|0[oO][0-7]+|0[bB][01]+|0[0-7]*|[1-9][0-9]*)", plain)
    if match is None:
        return None
    digits = match.group(2)
    if len(digits) > 70:  # past int64 in any base, and short of Python's limit on digits it converts
        return 1 << 63
    base = 8 if len(digits) > 1 and digits[0] == "0" and digits[1] in "01234567" else 0
    value = int(digits, base)
    return -value if match.group(1) == "-" else value


def _truncated_float(text: str) -> int | None:
    """A YAML float truncated into an int field, as yaml.v2 does; None past int64 (inf included)."""
    value = float(text.replace("_", ""))
    return int(value) if math.isfinite(value) and int(value) in _INT64 else None


def as_int(node: Node) -> int:
    scalar = _scalar(node)
    if scalar is None:
        return 0
    if scalar.tag in (_PLAIN, "tag:yaml.org,2002:int", "tag:yaml.org,2002:float"):
        value = _go_int(scalar.text)
        if value is None and _YAML_FLOAT.fullmatch(scalar.text.replace("_", "")):
            value = _truncated_float(scalar.text)  # yaml.v2 truncates a float into an int field
            if value is None:
                node.fail("is out of range (Go's int64)")
        if value is not None:
            if value not in _INT64:
                node.fail("is out of range (Go's int64)")
            return value
    node.fail("must be a whole number")


_GO_DURATION = re.compile(r"([0-9]*(?:\.[0-9]*)?)(ns|us|\u00b5s|\u03bcs|ms|s|m|h)")
_GO_UNIT = {"ns": 1e-9, "us": 1e-6, "\u00b5s": 1e-6, "\u03bcs": 1e-6, "ms": 1e-3, "s": 1.0, "m": 60.0, "h": 3600.0}


def _go_duration(text: str) -> float | None:
    """Go's time.ParseDuration (``1h30m``, ``1.5s``, ``300ms``, ``-2s``), in seconds."""
    sign, body = (-1.0, text[1:]) if text[:1] == "-" else (1.0, text[1:] if text[:1] == "+" else text)
    if body == "0":
        return 0.0
    if not body:
        return None
    pos, total = 0, 0.0
    for match in _GO_DURATION.finditer(body):
        if match.start() != pos or match.group(1) in ("", "."):
            return None
        total += float(match.group(1)) * _GO_UNIT[match.group(2)]
        pos = match.end()
    return sign * total if pos == len(body) else None


def as_duration(node: Node) -> float:
    """A Go time.Duration field, in seconds: a Go duration string, or a number of nanoseconds."""
    scalar = _scalar(node)
    if scalar is None:
        return 0.0
    if scalar.tag == _PLAIN:
        nanos = _go_int(scalar.text)
        if nanos is None and _YAML_FLOAT.fullmatch(scalar.text.replace("_", "")):
            nanos = _truncated_float(scalar.text)
            if nanos is None:
                node.fail("is out of range (Go's time.Duration: int64 nanoseconds, about 292 years)")
        if nanos is not None:
            if nanos not in _INT64:
                node.fail("is out of range (Go's time.Duration: int64 nanoseconds, about 292 years)")
            return nanos * 1e-9
    seconds = _go_duration(scalar.text)
    if seconds is None:
        node.fail("must be a duration like 1s, 500ms or 1m30s (Go syntax)")
    if not math.isfinite(seconds) or abs(seconds) * 1e9 >= 1 << 63:
        node.fail("is out of range (Go's time.Duration: int64 nanoseconds, about 292 years)")
    return seconds


def as_strs(node: Node) -> tuple[str, ...] | None:
    """A Go []string field; None when absent or null (Go's nil), () for an explicit empty list."""
    if node.value is None:
        return None
    if not isinstance(node.value, list):
        node.fail("must be a list")
    return tuple(as_str(item) for item in node.seq())
