"""Validation while loading: a YAML value that knows its file and key path.

Config files and vendor catalogs are read through ``Node`` so that every error is one line naming
the file, the key path and (unless the key holds a secret) the offending value.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any, NoReturn
from urllib.parse import urlsplit

import yaml

from ._yamlfast import FAST_SAFE_LOADER

__all__ = ["ConfigError", "Node", "load_yaml", "parse_duration"]

_UNSET: Any = object()


class ConfigError(Exception):
    """A bad config or catalog value. ``str()`` is the one line a user sees."""

    def __init__(self, file: str, path: str, reason: str, value: Any = _UNSET) -> None:
        self.file, self.path, self.reason = file, path, reason
        self.value = None if value is _UNSET else value
        shown = "" if value is _UNSET else f" (got {_short(value)})"
        where = f"{file}: {path}" if path else file
        super().__init__(f"{where}: {reason}{shown}")


def _short(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 80 else text[:77] + "..."


_DURATION = re.compile(r"(\d+)(ms|s|m|h|d|w|y)")
_UNIT = {"ms": 0.001, "s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800, "y": 31536000}


def parse_duration(text: str) -> float | None:
    """Prometheus duration syntax (``30s``, ``1h30m``, ``250ms``); ``None`` if it is not one."""
    if not isinstance(text, str) or not text:
        return None
    pos, total = 0, 0.0
    for m in _DURATION.finditer(text):
        if m.start() != pos:
            return None
        total += int(m.group(1)) * _UNIT[m.group(2)]
        pos = m.end()
    return total if pos == len(text) else None


#: libyaml's safe loader when PyYAML was built with it: a 10,000-target config then loads in well under
#: a second instead of several (same safe constructor, so the same documents are accepted; _yamlfast)
_SAFE_LOADER = FAST_SAFE_LOADER


def _safe_load(text: str) -> Any:
    try:
        return yaml.load(text, Loader=_SAFE_LOADER)
    except yaml.YAMLError:
        # parse a broken file again with the Python loader: its messages are the documented ones
        return yaml.load(text, Loader=yaml.SafeLoader)


def load_yaml(path: Path) -> Node:
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ConfigError(str(path), "", "file not found") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(str(path), "", f"cannot read: {exc.__class__.__name__}") from None
    try:
        data = _safe_load(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        line = f"line {mark.line + 1}: " if mark is not None else ""
        problem = getattr(exc, "problem", None) or "invalid YAML"
        raise ConfigError(str(path), "", f"{line}{problem}") from None
    return Node(data if data is not None else {}, str(path), "")


class Node:
    """A YAML value plus where it came from."""

    __slots__ = ("file", "path", "secret", "value")

    def __init__(self, value: Any, file: str, path: str, secret: bool = False) -> None:
        self.value, self.file, self.path, self.secret = value, file, path, secret

    def fail(self, reason: str, show: bool = True) -> NoReturn:
        if show and not self.secret:
            raise ConfigError(self.file, self.path, reason, self.value)
        raise ConfigError(self.file, self.path, reason)

    def _sub(self, key: str | int, value: Any) -> Node:
        path = f"{self.path}[{key}]" if isinstance(key, int) else (f"{self.path}.{key}" if self.path else key)
        return Node(value, self.file, path, self.secret)

    def is_missing(self) -> bool:
        return self.value is None

    # containers -----------------------------------------------------------------------------
    def mapping(self, allowed: Iterable[str] | None = None, required: Iterable[str] = ()) -> dict[str, Node]:
        if self.value is None:
            self.value = {}
        if not isinstance(self.value, dict):
            self.fail("must be a mapping")
        out: dict[str, Node] = {}
        allowed_set = set(allowed) if allowed is not None else None
        for key, val in self.value.items():
            if not isinstance(key, str | int) or isinstance(key, bool):
                self.fail(f"key {key!r} must be a string")
            skey = str(key)
            if allowed_set is not None and skey not in allowed_set:
                hint = ", ".join(sorted(allowed_set))
                self._sub(skey, val).fail(f"unknown key (allowed: {hint})", show=False)
            out[skey] = self._sub(skey, val)
        for key in required:
            if key not in out or out[key].value is None:
                self._sub(key, None).fail("is required", show=False)
        return out

    def seq(self) -> list[Node]:
        if self.value is None:
            return []
        if not isinstance(self.value, list):
            self.fail("must be a list")
        return [self._sub(i, v) for i, v in enumerate(self.value)]

    def __iter__(self) -> Iterator[Node]:
        return iter(self.seq())

    # scalars --------------------------------------------------------------------------------
    def text(self, pattern: str | None = None, what: str = "") -> str:
        if isinstance(self.value, bool) or not isinstance(self.value, str | int | float):
            self.fail("must be a string")
        text = str(self.value)
        if pattern is not None and not re.fullmatch(pattern, text):
            self.fail(f"must be {what or 'of the form ' + pattern}")
        return text

    def choice(self, options: Iterable[str]) -> str:
        opts = list(options)
        text = self.text()
        if text not in opts:
            self.fail(f"must be one of {', '.join(opts)}")
        return text

    def number(self, minimum: float | None = None, maximum: float | None = None) -> float:
        if isinstance(self.value, bool) or not isinstance(self.value, int | float):
            self.fail("must be a number")
        val = float(self.value)
        if (minimum is not None and val < minimum) or (maximum is not None and val > maximum):
            self.fail(f"must be between {minimum} and {maximum}")
        return val

    def integer(self, minimum: int | None = None, maximum: int | None = None) -> int:
        if isinstance(self.value, bool) or not isinstance(self.value, int):
            self.fail("must be a whole number")
        if (minimum is not None and self.value < minimum) or (maximum is not None and self.value > maximum):
            self.fail(f"must be between {minimum} and {maximum}")
        return int(self.value)

    def boolean(self) -> bool:
        if not isinstance(self.value, bool):
            self.fail("must be true or false")
        return self.value

    def duration(self, minimum: float = 0.0) -> float:
        seconds = parse_duration(self.value)
        if seconds is None:
            self.fail("must be a duration like 30s, 5m or 1h30m")
        if seconds < minimum:
            self.fail(f"must be at least {minimum:g}s")
        return seconds

    def url(self) -> str:
        text = self.text()
        try:
            parts = urlsplit(text)
            parts.port  # noqa: B018 - raises ValueError on a bad port
        except ValueError:
            self.fail("must be an http:// or https:// URL")
        if parts.scheme not in ("http", "https") or not parts.hostname or parts.query or parts.fragment:
            self.fail("must be an http:// or https:// URL without query or fragment")
        return text.rstrip("/")

    def str_map(self) -> dict[str, str]:
        return {k: v.text() for k, v in self.mapping().items()}
