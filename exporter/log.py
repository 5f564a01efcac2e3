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

__all__ = ["FORMATTERS", "NOISY_LOGGERS", "EscapingFormatter", "JsonFormatter", "RateLimitFilter",
           "escape_control", "setup_logging"]

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


class JsonFormatter(logging.Formatter):
    """One JSON object a line; ``json.dumps`` escapes every control character itself."""

    def format(self, record: logging.LogRecord) -> str:
        return json.dumps({"ts": self.formatTime(record, "%Y-%m-%dT%H:%M:%S%z"), "level": record.levelname.lower(),
                           "logger": record.name, "msg": record.getMessage()})


FORMATTERS: dict[str, Callable[[], logging.Formatter]] = {
    "text": lambda: EscapingFormatter("%(asctime)s %(levelname)s %(name)s: %(message)s"),
    "json": JsonFormatter,
}


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
    root.setLevel(level.upper())
    # aiohttp's access log at debug would print every scrape; keep it at warning
    logging.getLogger("aiohttp.access").setLevel(logging.WARNING)
