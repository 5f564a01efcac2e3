"""Logging for the process: one setup, the formats, and the filters that keep the log readable when
the exporter is attacked or a vendor sends garbage.

- Every text line is one line: control characters (ESC, BEL, NUL, CR, LF ... from a vendor's answer or
  a hostile request) are written as ``\\xNN`` escapes, never raw, so they cannot forge lines or drive a
  terminal.
- The chatty loggers (the HTTP server's, asyncio's) are rate-limited: per kind of message, one line
  per interval, the next one saying how many were left out; an exception is named by its kind, never
  written as a traceback (a flood of broken connections would otherwise write thousands).
Formats are looked up in ``FORMATTERS``, so adding one is adding an entry there.
"""

from __future__ import annotations

import json
import logging
import re
import sys
import time
from collections.abc import Callable, Iterable

from .model import UP, ProbeResult

__all__ = ["FORMATTERS", "LEVELS", "NOISY_LOGGERS", "EscapingFormatter", "JsonFormatter", "LogfmtFormatter",
           "RateLimitFilter", "escape_control", "log_probe", "setup_logging"]

_CONTROL = re.compile(r"[\x00-\x1f\x7f-\x9f]")
#: loggers that can be made to write a line per connection or per request by anyone who reaches the port
NOISY_LOGGERS = ("asyncio", "aiohttp", "exporter.web")


def escape_control(text: str) -> str:
    """``text`` with every C0/C1 control character (newlines included) as a visible ``\\xNN``."""
    return _CONTROL.sub(lambda m: f"\\x{ord(m.group()):02x}", text)


class EscapingFormatter(logging.Formatter):
    """The usual text format, on one line, with control characters escaped."""

    def format(self, record: logging.LogRecord) -> str:
        return escape_control(super().format(record))


#: the record attributes (``extra=``) written as fields of their own, after ``msg``
FIELDS = ("target", "vendor", "old", "new", "code", "http_status", "duration")


def _ts(record: logging.LogRecord) -> str:
    """RFC 3339 in UTC with milliseconds, as Prometheus' own binaries write it."""
    whole = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(record.created))
    return f"{whole}.{int(record.msecs):03d}Z"


def _level(record: logging.LogRecord) -> str:
    return "warn" if record.levelno == logging.WARNING else record.levelname.lower()


def _fields(record: logging.LogRecord) -> list[tuple[str, object]]:
    out: list[tuple[str, object]] = [("ts", _ts(record)), ("level", _level(record)), ("msg", record.getMessage()),
                                     ("logger", record.name)]
    out += [(k, getattr(record, k)) for k in FIELDS if getattr(record, k, None) is not None]
    if record.exc_info and record.exc_info[1] is not None:  # the kind only: a traceback is many lines
        out.append(("err", record.exc_info[1].__class__.__name__))
    return out


_BARE = re.compile(r"[^\s\"=\\\x00-\x1f\x7f-\x9f]+")


def logfmt_value(value: object) -> str:
    """A logfmt value: bare when it can be, else quoted with ``\\``, ``\\"`` and control characters escaped."""
    text = str(value)
    if _BARE.fullmatch(text):
        return text
    return '"' + escape_control(text.replace("\\", "\\\\").replace('"', '\\"')) + '"'


class LogfmtFormatter(logging.Formatter):
    """``ts=... level=info logger=exporter msg="..." target=... vendor=...``: one line, as go-kit's logfmt."""

    def format(self, record: logging.LogRecord) -> str:
        return " ".join(f"{k}={logfmt_value(v)}" for k, v in _fields(record))


class JsonFormatter(logging.Formatter):
    """One JSON object a line; ``json.dumps`` escapes every control character itself."""

    def format(self, record: logging.LogRecord) -> str:
        return json.dumps(dict(_fields(record)), default=str)


FORMATTERS: dict[str, Callable[[], logging.Formatter]] = {
    "logfmt": LogfmtFormatter,
    "json": JsonFormatter,
    "text": LogfmtFormatter,  # the old default's name, kept as an alias
}
#: --log.level values and the logging level of each (``warning`` is the old spelling)
LEVELS = {"debug": logging.DEBUG, "info": logging.INFO, "warn": logging.WARNING, "warning": logging.WARNING,
          "error": logging.ERROR}

_probe_log = logging.getLogger("exporter.probe")


def log_probe(old: str | None, result: ProbeResult, vendor: str) -> None:
    """One info line when a target's class changes, one debug line per probe. A target's first result
    is an info line only when it is not up: 20,000 targets starting healthy need no 20,000 lines."""
    out = result.outcome
    extra = {"target": result.target, "vendor": vendor, "code": out.code, "http_status": out.http_status,
             "duration": f"{result.duration:.3f}s"}
    if old != out.cls and (old is not None or out.cls not in UP):
        _probe_log.info("class changed: %s -> %s: %s", old or "none", out.cls, out.message,
                        extra={**extra, "old": old or "none", "new": out.cls})
    elif _probe_log.isEnabledFor(logging.DEBUG):
        _probe_log.debug("probe: %s: %s", out.cls, out.message, extra=extra)


class RateLimitFilter(logging.Filter):
    """For records of ``loggers`` (and their children): an exception becomes its kind's name on the
    same line, and each kind of message (logger, message template, exception kind) passes once per
    ``interval`` seconds; the next one to pass says how many were dropped meanwhile."""

    MAX_KINDS = 1000  # distinct kinds remembered; past that the oldest are forgotten

    def __init__(self, interval: float = 10.0, loggers: Iterable[str] = NOISY_LOGGERS,
                 clock: Callable[[], float] = time.monotonic) -> None:
        super().__init__()
        self.interval, self._clock = interval, clock
        self._prefixes = tuple(loggers)
        self._seen: dict[tuple[str, str, str], list[float]] = {}  # kind -> [window start, dropped]

    def _covers(self, name: str) -> bool:
        return any(name == p or name.startswith(p + ".") for p in self._prefixes)

    def filter(self, record: logging.LogRecord) -> bool:
        if not self._covers(record.name):
            return True
        # the template, not the formatted text: "... from 10.0.0.7:51234" is one kind for all clients
        template = str(getattr(record, "rate_key", record.msg))
        kind = ""
        if record.exc_info and record.exc_info[1] is not None:
            kind = record.exc_info[1].__class__.__name__
            record.msg, record.args = f"{record.getMessage()}: {kind}", None
            record.exc_info, record.exc_text = None, None
        key = (record.name, template, kind)
        now = self._clock()
        entry = self._seen.get(key)
        if entry is not None and now - entry[0] < self.interval:
            entry[1] += 1
            return False
        dropped = int(entry[1]) if entry is not None else 0
        if len(self._seen) >= self.MAX_KINDS and entry is None:
            del self._seen[next(iter(self._seen))]
        self._seen[key] = [now, 0]
        if dropped:
            record.msg, record.args = (f"{record.getMessage()} ({dropped} more like this in the last "
                                       f"{self.interval:g}s)"), None
        return True


def setup_logging(level: str, fmt: str, interval: float = 10.0) -> None:
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(FORMATTERS[fmt]())
    handler.addFilter(RateLimitFilter(interval))
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(LEVELS[level])
    # aiohttp's access log at debug would print every scrape; keep it at warning
    logging.getLogger("aiohttp.access").setLevel(logging.WARNING)
