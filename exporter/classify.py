"""The classifier: a pure function from one vendor answer (or failed attempt) to an Outcome.

No I/O and no clock of its own: everything it needs, including "now" for an HTTP-date Retry-After,
is passed in, so every code of every vendor is covered by table-driven tests.
"""

from __future__ import annotations

import functools
import json
import math
import re
from collections.abc import Mapping
from datetime import UTC, datetime, timedelta
from email.utils import parsedate_to_datetime
from typing import Any

from ._jsonpath import json_path
from .catalog import Catalog, CodeInfo, CodeSource, QuotaSpec, ValueSource
from .model import Answer, Failure, Outcome, QuotaReading

__all__ = ["Answer", "Failure", "Outcome", "QuotaReading", "classify", "example_failures", "http_family_class",
           "next_reset", "read_quotas"]

#: a code label must look like this, or it is reported as ``other`` (bounded, printable)
_CODE_OK = re.compile(r"[A-Za-z0-9_.-]{1,32}")


def http_family_class(status: int, overrides: Mapping[str, str]) -> str:
    """The class of a bare HTTP status when the vendor's own code is missing."""
    if (cls := overrides.get(str(status)) or overrides.get(f"{status // 100}xx")) is not None:
        return cls
    if 200 <= status < 300:
        return "unknown"  # an answer, but not one we can read: never count it as ok
    if status in (401, 403, 407):
        return "auth"
    if status == 429:
        return "rate_limited"
    if 300 <= status < 500:
        return "client_error"
    if 500 <= status < 600:
        return "server_error"
    return "unknown"


def _json(answer: Answer) -> Any:
    try:
        return json.loads(answer.body)
    except (ValueError, RecursionError):
        # invalid JSON, invalid UTF-8 and hostile nesting all mean: no body code
        return None


def _body_code(value: Any, kind: str = "integer") -> str | None:
    # By default only a JSON integer is the vendor's code: a string or float is not the documented
    # envelope (docs/vendors.md), so the answer falls back to its HTTP status. A catalog whose vendor names
    # its errors (Slack's "invalid_auth") says ``type: string``.
    if kind != "string" and isinstance(value, int) and not isinstance(value, bool) and 0 <= value < 10**9:
        return str(value)
    if kind != "integer" and isinstance(value, str) and _CODE_OK.fullmatch(value):
        return value
    return None


def _same(value: Any, wanted: str | int | float | bool) -> bool:
    """JSON equality without Python's True == 1: a flag and a count are different answers."""
    if isinstance(value, bool) or isinstance(wanted, bool):
        return isinstance(value, bool) and isinstance(wanted, bool) and value is wanted
    return bool(value == wanted)


#: how much of a text value ``matches`` searches (a vendor's message fits many times over)
_MATCHED_CHARS = 1024


def _fixed_code(src: CodeSource, value: Any) -> str | None:
    """The fixed code of a nonempty, equals or matches source, when the value found qualifies."""
    if src.nonempty is not None:
        return src.nonempty if value else None
    if src.matches is not None:
        # the start of the text only: a vendor's long body must not make a catalog's pattern expensive
        return src.code if isinstance(value, str) and src.matches.search(value[:_MATCHED_CHARS]) else None
    if src.code is not None:
        if isinstance(value, str) and src.kind == "header":
            return src.code if any(value == str(wanted).lower() for wanted in src.equals) else None
        return src.code if any(_same(value, wanted) for wanted in src.equals) else None
    return None


def _lookup(catalog: Catalog, code: str) -> tuple[str, CodeInfo | None]:
    """Exact code, else its main code (Rubiq ``401.99`` -> ``401``), else unknown."""
    if (info := catalog.codes.get(code)) is not None:
        return code, info
    main = code.split(".", 1)[0]
    if main != code and (info := catalog.codes.get(main)) is not None:
        return main, CodeInfo(info.cls, f"{info.message} (sub-code {code})", info.retry_after)
    return code, None


def _by_status(catalog: Catalog, status: int, code: str) -> CodeInfo:
    """An unlisted code under an error status: the class that status has in the catalog (or its family)."""
    listed = catalog.codes.get(str(status))
    cls = listed.cls if listed is not None else http_family_class(status, catalog.http_fallback)
    return CodeInfo(cls, f"code {code} is not in the {catalog.vendor} catalog; HTTP {status} makes it {cls}")


def _enveloped(answer: Answer, doc: Any) -> bool:
    """The body is a JSON object or array: the shape of every answer of a JSON API. A body cut at the
    cap cannot parse, so its start decides."""
    if isinstance(doc, dict | list):
        return True
    return answer.truncated and answer.body.lstrip()[:1] in (b"{", b"[")


#: a Retry-After beyond this is taken as this: the scheduler caps every wait at ``max_backoff`` anyway,
#: and a cap here keeps absurd values (a 13-digit count, a date in the year 9999) finite and cheap
RETRY_AFTER_CEILING = 7 * 86400.0
_DELAY_SECONDS = re.compile(r"[0-9]+")  # RFC 9110 delay-seconds: 1*DIGIT, ASCII digits only
_MONTHS = {month: number for number, month in enumerate(("Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug",
                                                        "Sep", "Oct", "Nov", "Dec"), 1)}
_DAY = r"(?:Mon|Tue|Wed|Thu|Fri|Sat|Sun)"
_TIME = r"([0-9]{2}):([0-9]{2}):([0-9]{2})"
_MON = r"(Jan|Feb|Mar|Apr|May|Jun|Jul|Aug|Sep|Oct|Nov|Dec)"
#: the three HTTP-date forms of RFC 9110 section 5.6.7, as (pattern, group order day/month/year)
_HTTP_DATES = (
    re.compile(rf"{_DAY}, ([0-9]{{2}}) {_MON} ([0-9]{{4}}) {_TIME} GMT"),  # IMF-fixdate
    re.compile(r"(?:Monday|Tuesday|Wednesday|Thursday|Friday|Saturday|Sunday), "
               rf"([0-9]{{2}})-{_MON}-([0-9]{{2}}) {_TIME} GMT"),  # obsolete RFC 850 form
    re.compile(rf"{_DAY} {_MON} ([0-9 ][0-9]) {_TIME} ([0-9]{{4}})"),  # obsolete asctime form
)


def _http_date(value: str, now: float) -> float | None:
    for index, pattern in enumerate(_HTTP_DATES):
        if (match := pattern.fullmatch(value)) is None:
            continue
        parts = match.groups()
        if index == 2:
            mon, day, hh, mm, ss, year = parts[0], int(parts[1]), *map(int, parts[2:])
        else:
            day, mon, year, hh, mm, ss = int(parts[0]), parts[1], *map(int, parts[2:])
        if index == 1:
            # two-digit year: the RFC says a year more than 50 years ahead is in the past century
            this = datetime.fromtimestamp(now, UTC).year
            year += this - this % 100
            if year > this + 50:
                year -= 100
        try:
            return datetime(year, _MONTHS[mon], day, hh, mm, ss, tzinfo=UTC).timestamp()
        except ValueError:
            return None  # 31 February, hour 25 ...
    return None


def parse_retry_after(value: str | None, now: float) -> float | None:
    """Seconds to wait, exactly as RFC 9110 section 10.2.3 reads the header (ASCII digits or an
    HTTP-date, capped at ``RETRY_AFTER_CEILING``); ``None`` when absent or invalid."""
    if not value:
        return None
    value = value.strip(" \t")  # optional whitespace around a field value, and nothing else
    if _DELAY_SECONDS.fullmatch(value):
        digits = value.lstrip("0")
        # more digits than the ceiling has cannot be below it; int() is not even tried on them
        if len(digits) > len(str(int(RETRY_AFTER_CEILING))):
            return RETRY_AFTER_CEILING
        return min(float(int(digits or "0")), RETRY_AFTER_CEILING)
    when = _http_date(value, now)
    if when is None:
        return None
    return max(0.0, min(when - now, RETRY_AFTER_CEILING))


def _number(src: ValueSource, answer: Answer, doc: Any) -> float | None:
    if src.kind == "const":
        return src.const
    raw: Any = answer.headers.get(src.key.lower()) if src.kind == "header" else json_path(doc, src.key)
    if isinstance(raw, bool):
        return None
    if isinstance(raw, str):
        try:
            raw = float(raw.strip())
        except ValueError:
            return None
    if isinstance(raw, int | float) and math.isfinite(raw):
        return float(raw)
    return None


#: per period, (when the boundary below was worked out, the next boundary after that moment)
_RESETS: dict[str, tuple[float, float]] = {}


def next_reset(period: str | None, now: float) -> float | None:
    """The next calendar boundary (UTC) of a quota that resets hourly, daily or monthly."""
    if period is None:
        return None
    # no boundary lies between the moment one was worked out and that boundary: any ``now`` in
    # between has the same next one, so it is worked out about once per period, not per probe
    if (held := _RESETS.get(period)) is not None and held[0] <= now < held[1]:
        return held[1]
    nxt = _next_boundary(period, now)
    _RESETS[period] = (now, nxt)
    return nxt


def _next_boundary(period: str, now: float) -> float:
    moment = datetime.fromtimestamp(now, UTC)
    if period == "hourly":
        nxt = moment.replace(minute=0, second=0, microsecond=0) + timedelta(hours=1)
    elif period == "daily":
        nxt = moment.replace(hour=0, minute=0, second=0, microsecond=0) + timedelta(days=1)
    else:
        first = moment.replace(day=1, hour=0, minute=0, second=0, microsecond=0)
        nxt = (first.replace(year=moment.year + 1, month=1) if moment.month == 12
               else first.replace(month=moment.month + 1))
    return nxt.timestamp()


def read_quotas(specs: tuple[QuotaSpec, ...], answer: Answer, doc: Any = None,
                now: float | None = None) -> tuple[QuotaReading, ...]:
    """Quota figures named by the catalog, read from one answer (``now`` dates a periodic reset)."""
    out = []
    for quota in specs:
        remaining = _number(quota.remaining, answer, doc) if quota.remaining else None
        limit = _number(quota.limit, answer, doc) if quota.limit else None
        if remaining is None and quota.used is not None and limit is not None:
            used = _number(quota.used, answer, doc)
            remaining = None if used is None else max(0.0, limit - used)
        if remaining is not None or (limit is not None and quota.limit and quota.limit.kind != "const"):
            out.append(QuotaReading(quota.name, remaining, limit, next_reset(quota.reset, now) if now else None))
    return tuple(out)


_RL_PREFIXES = (("ratelimit-", "ratelimit"), ("x-ratelimit-", "ratelimit"), ("x-rate-limit-", "ratelimit"))
#: per prefix, the header names (remaining, limit, reset) and the quota's name, joined once
_RL_NAMES = tuple((prefix + "remaining", prefix + "limit", prefix + "reset", name) for prefix, name in _RL_PREFIXES)


def _ratelimit_headers(headers: Mapping[str, str], now: float) -> QuotaReading | None:
    """The common RateLimit-* / X-RateLimit-* headers, when a vendor sends them."""
    for remaining_key, limit_key, reset_key, name in _RL_NAMES:
        remaining, limit = headers.get(remaining_key), headers.get(limit_key)
        if remaining is None and limit is None:
            continue
        rem, lim, res = _to_float(remaining), _to_float(limit), _to_float(headers.get(reset_key))
        reset_at = None
        if res is not None:
            # RateLimit-Reset is delta-seconds; some X-RateLimit-Reset send an epoch instead
            reset_at = res if res > 1e9 else now + res
        return QuotaReading(name, rem, lim, reset_at)
    return None


def _to_float(value: str | None) -> float | None:
    if value is None:
        return None
    try:
        # "100, 100;w=60" (structured-field lists): the first item is the figure for the current window
        out = float(value.split(",")[0].split(";")[0].strip())
    except ValueError:
        return None
    return out if math.isfinite(out) else None


def _clock_skew(headers: Mapping[str, str], now: float) -> float | None:
    date = headers.get("date")
    if not date:
        return None
    stamp = _date_stamp(date)
    return None if stamp is None else stamp - now


@functools.lru_cache(maxsize=256)
def _date_stamp(date: str) -> float | None:
    # A Date header changes once a second, so at hundreds of probes a second nearly every answer
    # repeats one already parsed, and parsing a date is not free.
    try:
        return parsedate_to_datetime(date).timestamp()
    except (TypeError, ValueError, IndexError, OverflowError):
        return None


#: per catalog (by identity; the entry holds it, so its id is not reused meanwhile), its quotas read
#: from the check's own answer; cleared when full, so reloads that make new catalogs cannot grow it
_INLINE: dict[int, tuple[Catalog, tuple[QuotaSpec, ...]]] = {}


def _inline_quotas(catalog: Catalog) -> tuple[QuotaSpec, ...]:
    if (held := _INLINE.get(id(catalog))) is not None and held[0] is catalog:
        return held[1]
    specs = tuple(quota for quota in catalog.quota if quota.request is None)
    if len(_INLINE) >= 256:
        _INLINE.clear()
    _INLINE[id(catalog)] = (catalog, specs)
    return specs


def classify(catalog: Catalog, result: Answer | Failure, now: float) -> Outcome:
    """Class, code, message, Retry-After, quotas and clock skew of one answer."""
    if isinstance(result, Failure):
        return Outcome(result.cls, result.code, result.message, result.http_status)

    answer = result
    doc: Any = None
    parsed = False
    code: str | None = None
    info: CodeInfo | None = None
    for src in catalog.code_from:
        if src.when_status is not None and answer.status not in src.when_status:
            continue
        fixed = src.nonempty is not None or src.code is not None
        if src.kind == "status":
            code = str(answer.status)
        elif src.kind == "header":
            raw = answer.headers.get(src.key.lower(), "").strip()
            plain = raw if raw and _CODE_OK.fullmatch(raw) else None
            code = _fixed_code(src, raw if src.matches is not None else raw.lower()) if fixed else plain
        else:
            if not parsed:
                doc, parsed = _json(answer), True
            value = json_path(doc, src.key)
            code = _fixed_code(src, value) if fixed else _body_code(value, src.type)
        if code is not None:
            code, info = _lookup(catalog, code)
            if info is None and src.known_only:
                code = None  # not one of ours: the next source decides (its HTTP status, usually)
                continue
            if info is None and src.unlisted_by_status and answer.status >= 300:
                info = _by_status(catalog, answer.status, code)
            break

    if code is None:
        # The vendor's code is missing (HTML error page from a proxy, empty or invalid body, a code
        # sent as a string): classify by HTTP status, labelled so it cannot be mistaken for a body code.
        code = f"http_{answer.status}"
        cls = http_family_class(answer.status, catalog.http_fallback)
        message = f"HTTP {answer.status} without the vendor's status code"
    elif info is None:
        cls, message = "unknown", f"code {code} is not in the {catalog.vendor} catalog"
    else:
        cls, message = info.cls, info.message
    if catalog.envelope == "json" and 200 <= answer.status < 300 and answer.status not in (204, 205):
        if not parsed:
            doc, parsed = _json(answer), True
        enveloped = _enveloped(answer, doc)
    else:
        enveloped = True
    if not enveloped:
        # docs/vendors.md: an answer we cannot read never counts as ok; the SDKs fail to parse it too
        code, cls = f"http_{answer.status}", "unknown"
        message = (f"HTTP {answer.status} without the vendor's JSON answer (an HTML or empty body: a proxy, "
                   "captive portal or wrong base_url?)")

    quotas: list[QuotaReading] = []
    if catalog.quota and (inline := _inline_quotas(catalog)):
        if not parsed:
            doc = _json(answer)
        quotas.extend(read_quotas(inline, answer, doc, now))
    if catalog.ratelimit_headers and (rl := _ratelimit_headers(answer.headers, now)) is not None:
        quotas.append(rl)

    retry_after = parse_retry_after(answer.headers.get("retry-after"), now)
    if retry_after is None and info is not None and cls == info.cls:
        retry_after = info.retry_after  # the vendor documents a wait for this code when it names none
    return Outcome(
        cls=cls,
        code=code if _CODE_OK.fullmatch(code) else "other",
        message=message,
        http_status=answer.status,
        retry_after=retry_after,
        quotas=tuple(quotas),
        clock_skew=_clock_skew(answer.headers, now),
    )


#: the moment examples are classified at (a fixed one: an example must not pass today and fail tomorrow)
EXAMPLE_NOW = 1_750_000_000.0


def example_failures(catalog: Catalog) -> list[str]:
    """One line per example of ``catalog`` that does not get its documented class and code."""
    out = []
    for ex in catalog.examples:
        headers = {name.lower(): text for name, text in ex.headers}
        got = classify(catalog, Answer(ex.status, headers, ex.body), EXAMPLE_NOW)
        if (got.cls, got.code) != (ex.cls, ex.code):
            out.append(f"{ex.where}: expected class {ex.cls} code {ex.code}, got class {got.cls} code {got.code}"
                       f" ({got.message})")
    return out
