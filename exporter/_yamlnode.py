"""Loading and validation: the one YAML loader, careful file reading, and a YAML value that knows its
file and key path.

Config files and vendor catalogs are read here (``load_yaml``; ``parse_yaml`` for text read
elsewhere) and through ``Node``, so that every error is one line naming the file, the key path and
(unless the key holds a secret) the offending value. The loader is PyYAML's documented safe loader,
on libyaml where PyYAML has it, with the exporter's own checks around it: no control characters, no
alias bomb, no lone surrogate, and the same error message whether or not libyaml is there.
"""

from __future__ import annotations

import math
import os
import queue
import re
import stat
import threading
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path
from typing import Any, NoReturn
from urllib.parse import urlsplit

import yaml

from .model import ConfigError

__all__ = ["CONFIG_FILE_LIMIT", "MAX_DEPTH", "MAX_VALUES", "READ_TIMEOUT", "SECRET_FILE_LIMIT", "ConfigError",
           "FileReadError", "Node", "decode_utf8", "load_document", "load_yaml", "parse_duration", "parse_yaml",
           "read_regular_file"]

_DURATION = re.compile(r"(\d{1,300})(ms|s|m|h|d|w|y)")
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
    # digits beyond any float (1e400s) are no duration: one line from the caller, not an OverflowError
    return total if pos == len(text) and math.isfinite(total) else None


#: PyYAML's documented safe loader: libyaml's (``yaml.CSafeLoader``) where PyYAML was built with it, a
#: large config loading several times faster, else the pure-Python one; the same safe types either way
_SAFE_LOADER: type = getattr(yaml, "CSafeLoader", yaml.SafeLoader)


# --- careful file reading ---------------------------------------------------------------------------
#: a secret is a token, a key or a password: anything larger is a mistake (a log file, an image)
SECRET_FILE_LIMIT = 64 * 1024
#: a config of tens of thousands of targets is a few MB
CONFIG_FILE_LIMIT = 32 << 20
#: a read that takes longer (a hung network file system, a FUSE mount) fails instead of hanging
READ_TIMEOUT = 5.0


class FileReadError(Exception):
    """Why a file could not be read, as the end of one line: ``cannot read PATH: <reason>``."""


_NOT_REGULAR = ((stat.S_ISDIR, "a directory"), (stat.S_ISFIFO, "a FIFO"), (stat.S_ISCHR, "a character device"),
                (stat.S_ISBLK, "a block device"), (stat.S_ISSOCK, "a socket"))


def _kind(mode: int) -> str | None:
    return None if stat.S_ISREG(mode) else next((what for test, what in _NOT_REGULAR if test(mode)), "not a file")


def _read_fd(path: Path, limit: int) -> bytes:
    # O_NONBLOCK: should the path be swapped for a FIFO after the stat, the open does not wait for a writer
    fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | os.O_CLOEXEC | getattr(os, "O_NOCTTY", 0))
    try:
        if (kind := _kind(os.fstat(fd).st_mode)) is not None:
            raise FileReadError(f"is {kind}, not a regular file")
        chunks, total = [], 0
        while chunk := os.read(fd, min(1 << 20, limit + 1 - total)):
            chunks.append(chunk)
            total += len(chunk)
            if total > limit:
                raise FileReadError(f"is larger than {_size(limit)}")
        return b"".join(chunks)
    finally:
        os.close(fd)


def _size(n: int) -> str:
    return f"{n >> 20} MiB" if n >= 1 << 20 else f"{n >> 10} KiB"


class _Reader:
    """One daemon thread that does the reads, so that a read that never returns can be abandoned
    (the next read gets a fresh thread) and never holds up a reload, a shutdown or the interpreter's exit."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._jobs: queue.SimpleQueue[tuple[Callable[[], bytes], queue.SimpleQueue[Any]]] | None = None

    @staticmethod
    def _work(jobs: queue.SimpleQueue[tuple[Callable[[], bytes], queue.SimpleQueue[Any]]]) -> None:
        while True:
            job, out = jobs.get()
            try:
                out.put(job())
            except BaseException as exc:  # noqa: BLE001 - handed to the caller, who raises it
                out.put(exc)

    def run(self, job: Callable[[], bytes], timeout: float) -> bytes:
        with self._lock:
            if self._jobs is None:
                self._jobs = queue.SimpleQueue()
                threading.Thread(target=self._work, args=(self._jobs,), name="file-reader", daemon=True).start()
            jobs = self._jobs
        out: queue.SimpleQueue[Any] = queue.SimpleQueue()
        jobs.put((job, out))
        try:
            result = out.get(timeout=timeout)
        except queue.Empty:
            with self._lock:
                if self._jobs is jobs:
                    self._jobs = None  # that thread is stuck: leave it, start another next time
            raise FileReadError(f"read timed out after {timeout:g}s") from None
        if isinstance(result, BaseException):
            raise result
        return bytes(result)


_READER = _Reader()


def read_regular_file(path: Path, limit: int, timeout: float = READ_TIMEOUT) -> bytes:
    """The bytes of a regular file of at most ``limit`` bytes, read within ``timeout`` seconds. A FIFO,
    a device (``/dev/zero``), a directory or a socket is refused from its ``stat``, before any open
    that could block or any read that could never end. Errors are FileReadError with a short reason."""
    try:
        st = os.stat(path)
        if (kind := _kind(st.st_mode)) is not None:
            raise FileReadError(f"is {kind}, not a regular file")
        if st.st_size > limit:
            raise FileReadError(f"is larger than {_size(limit)}")
        return _READER.run(lambda: _read_fd(path, limit), timeout)
    except OSError as exc:
        raise FileReadError(exc.strerror or exc.__class__.__name__) from None


def decode_utf8(data: bytes) -> str:
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise FileReadError(f"is not valid UTF-8 (byte {exc.start})") from None


# --- YAML ----------------------------------------------------------------------------------------------
#: a document may not expand (aliases counted as often as they are used) to more values than this;
#: an alias bomb of a few hundred bytes would otherwise expand to billions while it is validated
MAX_VALUES = 2_000_000
#: deeper nesting is refused: a config or catalog needs a handful of levels, and code that walks the
#: values (the variables, an error showing one) must not run out of stack. PyYAML's own bounds depend on
#: its version and build (libyaml refuses some depth, the pure-Python loader recurses): this one does not.
MAX_DEPTH = 100
_TOO_DEEP = f"values are nested more than {MAX_DEPTH} levels deep"
#: characters YAML 1.1 does not allow in a stream; the Python loader checks these, libyaml a different
#: set: both loaders are given only streams this accepts, so they refuse the same documents
_NON_PRINTABLE = re.compile("[^\x09\x0A\x0D\x20-\x7E\x85\xA0-\uD7FF\uE000-\uFFFD\U00010000-\U0010FFFF]")
_SURROGATE = re.compile("[\ud800-\udfff]")


def _check_stream(text: str, file: str) -> None:
    if (m := _NON_PRINTABLE.search(text)) is not None:
        line = text.count("\n", 0, m.start()) + 1
        raise ConfigError(file, "", f"line {line}: control character U+{ord(m.group()):04X} is not allowed")


def _check_tree(data: Any, file: str) -> None:
    """Refuse, without expanding anything, a tree that aliases would blow up (or make circular) and any
    string no encoder can write (a lone UTF-16 surrogate from a ``\\ud800`` escape, which libyaml refuses
    and the Python loader accepts)."""
    sizes: dict[int, int] = {}
    open_: set[int] = set()

    def walk(value: Any, path: str, depth: int) -> int:
        if isinstance(value, str):
            if _SURROGATE.search(value):
                raise ConfigError(file, path, "holds an invalid \\u escape (a lone UTF-16 surrogate)")
            return 1
        if not isinstance(value, dict | list):
            return 1
        if depth > MAX_DEPTH:
            raise ConfigError(file, "", _TOO_DEEP)
        key = id(value)
        if key in sizes:
            return sizes[key]
        if key in open_:
            raise ConfigError(file, path, "a YAML alias refers to a value that contains it")
        open_.add(key)
        total = 1
        items = value.items() if isinstance(value, dict) else enumerate(value)
        for k, v in items:
            if isinstance(k, str) and _SURROGATE.search(k):
                raise ConfigError(file, path, "a key holds an invalid \\u escape (a lone UTF-16 surrogate)")
            sub = f"{path}[{k}]" if isinstance(value, list) else (f"{path}.{k}" if path else str(k))
            total += walk(v, sub, depth + 1)
            if total > MAX_VALUES:
                raise ConfigError(file, "", f"the document expands to more than {MAX_VALUES:,} values "
                                            "(YAML aliases used too often?)")
        open_.discard(key)
        sizes[key] = total
        return total

    walk(data, "", 1)


def _check_depth(data: Any, file: str) -> None:
    """MAX_DEPTH for a tree without aliases (no value reached twice): its containers, without a stack."""
    todo: list[tuple[Any, int]] = [(data, 1)]
    while todo:
        value, depth = todo.pop()
        if depth > MAX_DEPTH:
            raise ConfigError(file, "", _TOO_DEEP)
        depth += 1
        todo.extend((v, depth) for v in (value.values() if isinstance(value, dict) else value)
                    if type(v) is dict or type(v) is list)


def parse_yaml(text: str, file: str) -> Any:
    """The one YAML loader of the exporter: ``text`` (read from ``file``) as plain data, through PyYAML's
    safe loader. Every refusal is a ConfigError of one line naming the file (and the line): a broken
    document, a control character, a lone surrogate escape, nesting deeper than the loader takes, and a
    document whose aliases would expand it beyond MAX_VALUES, refused before anything expands it."""
    _check_stream(text, file)
    try:
        # an anchor (&) makes values shared: PyYAML's constructor keeps them one object
        data = _UNUSUAL if "&" in text else _load_plain(text, file)
        if data is _UNUSUAL:
            data = yaml.load(text, Loader=_SAFE_LOADER)
    except yaml.YAMLError as exc:
        raise _refusal(text, file, exc) from None
    except RecursionError:
        raise ConfigError(file, "", _TOO_DEEP) from None
    except (ValueError, KeyError, AttributeError, TypeError):
        # PyYAML's safe constructor converts an explicitly tagged scalar (!!int abc, !!bool maybe,
        # !!timestamp nope) without checking it first; the value is not shown: it may be a secret
        raise ConfigError(file, "", "a value does not fit its explicit YAML tag (!!int, !!float, !!bool, "
                                    "!!timestamp)") from None
    # an alias needs an anchor (&), a lone surrogate an escape (\\u, \\U), and without aliases a
    # document has fewer values than half its characters: most files need only the depth checked
    if "&" in text or "\\u" in text or "\\U" in text or len(text) >= 2 * MAX_VALUES:
        _check_tree(data, file)
    elif isinstance(data, dict | list):
        _check_depth(data, file)
    return data


_STR, _SEQ, _MAP = "tag:yaml.org,2002:str", "tag:yaml.org,2002:seq", "tag:yaml.org,2002:map"


class _Unusual(Exception):
    """What ``_load_plain`` leaves to ``yaml.load``: a merge key, a complex key, a tagged collection, more
    distinct numbers (booleans, dates) than a config has."""


#: what ``_load_plain`` returns for a document it leaves to ``yaml.load`` (its node tree already gone)
_UNUSUAL: Any = object()


def _load_plain(text: str, file: str) -> Any:
    """``yaml.load(text)`` for a document without anchors, faster on a large config: PyYAML's documented
    parser events (what ``yaml.parse`` yields), every tag resolved as its composer resolves it, without
    the constructor's dispatch per node. Strings, mappings and sequences are built here, without
    recursion; any other scalar (a number, a boolean, null, a date) is what ``yaml.load`` makes of that
    node (``yaml.serialize``d back), once per distinct tag and text. _UNUSUAL for anything else;
    ConfigError past MAX_DEPTH. No node tree is made: each event is dropped once read, so a large
    config leaves no tree's worth of freed small blocks between the values the exporter keeps."""
    loader = _SAFE_LOADER(text)
    try:
        return _build_plain(loader, file)
    except _Unusual:
        return _UNUSUAL
    finally:
        loader.dispose()


_NO_KEY: Any = object()


def _build_plain(loader: Any, file: str) -> Any:
    others: dict[tuple[str, str], Any] = {}

    def scalar(event: yaml.ScalarEvent) -> Any:
        tag = event.tag
        if tag is None or tag == "!":  # as PyYAML's composer resolves a scalar's tag
            tag = loader.resolve(yaml.ScalarNode, event.value, event.implicit)
        if tag == _STR:
            return event.value
        key = (tag, event.value)
        if key not in others:
            # a merge key; or more distinct numbers than a config has (each costs a yaml.load here)
            if tag in ("tag:yaml.org,2002:merge", "tag:yaml.org,2002:value") or len(others) >= 256:
                raise _Unusual
            # inside a sequence: an empty scalar (null) cannot stand alone as a document
            node = yaml.ScalarNode(tag, event.value, style=event.style)
            alone = yaml.serialize(yaml.SequenceNode(_SEQ, [node]), Dumper=yaml.SafeDumper)
            others[key] = yaml.load(alone, Loader=_SAFE_LOADER)[0]
        return others[key]

    #: the open collections, innermost last: [the list or dict, the key read whose value comes next]
    open_: list[list[Any]] = []
    root: Any = None
    documents = 0
    while loader.check_event():
        event = loader.get_event()
        kind = type(event)
        if kind is yaml.ScalarEvent or kind is yaml.SequenceStartEvent or kind is yaml.MappingStartEvent:
            if event.anchor is not None:
                raise _Unusual
            if kind is yaml.ScalarEvent:
                value = scalar(event)
            else:
                tag = event.tag
                if tag is None or tag == "!":
                    node_kind = yaml.SequenceNode if kind is yaml.SequenceStartEvent else yaml.MappingNode
                    tag = loader.resolve(node_kind, None, event.implicit)
                if len(open_) + 1 > MAX_DEPTH:
                    raise ConfigError(file, "", _TOO_DEEP)
                if tag not in (_SEQ, _MAP):
                    raise _Unusual  # !!set, !!omap, !!pairs, an unknown tag: PyYAML's constructor and errors
                value = [] if tag == _SEQ else {}
        elif kind is yaml.SequenceEndEvent or kind is yaml.MappingEndEvent:
            open_.pop()
            continue
        elif kind is yaml.DocumentStartEvent:
            documents += 1
            if documents > 1:
                raise _Unusual  # more than one document: PyYAML's error says so
            continue
        elif kind is yaml.AliasEvent:
            raise _Unusual  # an alias without its anchor: PyYAML's error
        else:  # the stream's start and end, a document's end
            continue
        if not open_:
            root = value
        else:
            top = open_[-1]
            out = top[0]
            if type(out) is list:
                out.append(value)
            elif top[1] is _NO_KEY:
                if type(value) is list or type(value) is dict:
                    raise _Unusual  # a complex key: PyYAML's error says it is unhashable
                top[1] = value
            else:
                out[top[1]] = value
                top[1] = _NO_KEY
        if kind is not yaml.ScalarEvent:  # a collection opened: what follows goes into it
            open_.append([value, _NO_KEY])
    return root


def _refusal(text: str, file: str, exc: yaml.YAMLError) -> ConfigError:
    """The one-line error for a document PyYAML refused. libyaml words its errors differently from the
    pure-Python loader, whose messages are the documented ones: a broken file is parsed again by that
    one, so the message does not depend on how PyYAML was built. Should it accept what libyaml refused,
    the tree check says why (a lone surrogate); failing that, libyaml's own message stands. Too deep for
    either is MAX_DEPTH's message, whichever refused it first."""
    problem = getattr(exc, "problem", None) or "invalid YAML"
    if "nesting depth" in problem:
        return ConfigError(file, "", _TOO_DEEP)  # libyaml's own bound (PyYAML 6.0.4), beyond MAX_DEPTH
    if _SAFE_LOADER is not yaml.SafeLoader:
        try:
            data = yaml.load(text, Loader=yaml.SafeLoader)
        except (ValueError, KeyError, AttributeError, TypeError):
            data = None  # libyaml refused it first: its message
        except yaml.YAMLError as python_exc:
            exc = python_exc
        except RecursionError:
            return ConfigError(file, "", _TOO_DEEP)  # it recurses once a level: far deeper than MAX_DEPTH
        else:
            _check_tree(data, file)
    mark = getattr(exc, "problem_mark", None)
    line = f"line {mark.line + 1}: " if mark is not None else ""
    problem = getattr(exc, "problem", None) or "invalid YAML"
    return ConfigError(file, "", f"{line}{problem}")


def load_yaml(path: Path) -> Node:
    """A config or catalog file, read the careful way secret files are (a regular file, capped in size,
    within a timeout, strict UTF-8) and loaded with the same rules whether or not libyaml is present."""
    return load_document(path)[0]


def load_document(path: Path) -> tuple[Node, bool]:
    """``load_yaml``, and whether a string of the document may hold ``${``: False when its text has
    none and no escape that could make one, so the tree need not be searched for variables."""
    file = str(path)
    try:
        text = decode_utf8(read_regular_file(path, CONFIG_FILE_LIMIT))
    except FileReadError as exc:
        if not path.exists() and not path.is_symlink():
            raise ConfigError(file, "", "file not found") from None
        raise ConfigError(file, "", f"cannot read: {exc}") from None
    data = parse_yaml(text, file)
    return Node(data if data is not None else {}, file, ""), "${" in text or "\\" in text


#: base URLs that passed ``Node.url``, and what it returned: the check depends on the text alone
_GOOD_URLS: dict[str, str] = {}
_GOOD_URLS_MAX = 4096


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
        allowed_set = allowed if allowed is None or isinstance(allowed, set | frozenset) else set(allowed)
        file, path, secret = self.file, self.path, self.secret
        plain = type(self) is Node  # a subclass makes its own children (_sub)
        for key, val in self.value.items():
            if type(key) is not str:  # nearly every key is one: the general checks only for the others
                if not isinstance(key, str | int) or isinstance(key, bool):
                    self.fail(f"key {key!r} must be a string")
                key = str(key)
            if allowed_set is not None and key not in allowed_set:
                hint = ", ".join(sorted(allowed_set))
                self._sub(key, val).fail(f"unknown key (allowed: {hint})", show=False)
            # what _sub does for a string key, inline: a large config has hundreds of thousands
            out[key] = Node(val, file, f"{path}.{key}" if path else key, secret) if plain else self._sub(key, val)
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
        text = self.value
        if type(text) is not str and not isinstance(text, str):  # an Expanded string stays one (model.py)
            if isinstance(text, bool) or not isinstance(text, int | float):
                self.fail("must be a string")
            text = str(text)
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
        try:
            val = float(self.value)
        except OverflowError:  # an integer of hundreds of digits
            val = math.inf
        if not math.isfinite(val):
            # NaN passes every range check (its comparisons are all false) and then breaks arithmetic
            self.fail("must be a finite number")
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
        good = _GOOD_URLS.get(text)  # the same few base URLs recur across thousands of targets
        if good is not None:
            return good
        if "@" in re.split(r"[/?#]", text.split("://", 1)[-1], maxsplit=1)[0]:
            # checked first and the value never shown, by this error or any other: it holds a password
            # (which the status page and the API would show too)
            self.fail("must not hold a user name or password (user:password@): put them in credentials",
                      show=False)
        try:
            parts = urlsplit(text)
            parts.port  # noqa: B018 - raises ValueError on a bad port
        except ValueError:
            self.fail("must be an http:// or https:// URL")
        if parts.scheme not in ("http", "https") or not parts.hostname or parts.query or parts.fragment:
            self.fail("must be an http:// or https:// URL without query or fragment")
        if len(_GOOD_URLS) >= _GOOD_URLS_MAX:
            _GOOD_URLS.clear()
        good = _GOOD_URLS[text] = text.rstrip("/")
        return good

    def str_map(self) -> dict[str, str]:
        return {k: v.text() for k, v in self.mapping().items()}
