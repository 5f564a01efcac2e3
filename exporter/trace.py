"""A probe told as text: every request and login, its answer, what decided the class, and what the
scheduler does next. The prober hands the steps in (it alone sees the secrets, and redacts the whole
text with them); the state keeps the text of the last failure and the last success; the CLI, ``/probe``
with ``debug=true`` and the target page show it. Pure: records in, text out.

The engine reports, per answer, the phases' timings, the vendor's certificate's notBefore and notAfter
and the earliest notAfter of its chain; the TLS version only for a debug trace's requests (made on a new
connection, with curl's verbose text read): a trace kept from a scheduled probe says so rather than guess.
"""

from __future__ import annotations

import re
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass

from .model import BACKOFF, PHASES, TRACE_MAX_CHARS, UP, Answer, Explanation, Failure, Outcome

__all__ = ["TraceStep", "cap", "decision", "render_trace", "stamp"]

#: answer headers shown per request, and characters of each value
MAX_HEADERS = 24
MAX_HEADER_VALUE = 160
#: characters of one answer's header line in all (so several requests fit in ``TRACE_MAX_CHARS``)
MAX_HEADER_LINE = 1024
#: characters of a transport error's own words (curl's message)
MAX_ERROR = 240
#: answer headers whose values are credentials by nature, whoever's they are
_HIDDEN_HEADERS = frozenset({"set-cookie", "authorization", "proxy-authorization", "www-authenticate"})
_CUT = "\n[trace cut at {} characters]\n"
#: written out in a trace (a vendor's text, on a terminal or a page): C0 and C1 controls but the trace's
#: own line breaks, DEL, the invisible bidi and format controls, lone surrogates
_UNSEEN = re.compile("[\x00-\x09\x0b-\x1f\x7f-\x9f\u061c\u200b-\u200f\u202a-\u202e\u2060-\u2069\ufeff"
                     "\ud800-\udfff]")


def _written_out(match: re.Match[str]) -> str:
    code = ord(match.group())
    return f"\\x{code:02x}" if code < 0x100 else f"\\u{code:04x}"


@dataclass(frozen=True, slots=True)
class TraceStep:
    """One request of a probe: ``kind`` is login (a signer's call), check or quota."""

    kind: str
    line: str  # method and URL, parameters the signer added masked
    sent_headers: tuple[tuple[str, str], ...]  # (name, value shown): values the catalog does not set are masked
    result: Answer | Failure
    error: str = ""  # the transport's own words, when it failed
    proxy: str = ""  # the proxy's URL as shown (no password); "" for direct


def stamp(when: float) -> str:
    return time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime(when))


def _ms(seconds: float) -> str:
    return f"{seconds * 1000:.1f} ms"


def _answer_lines(step: TraceStep, now: float, excerpt: Callable[[bytes], str]) -> list[str]:
    result = step.result
    if isinstance(result, Failure):
        lines = [f"    no answer: {result.cls}/{result.code}: {result.message}"]
        if step.error:
            lines.append(f"    transport said: {step.error[:MAX_ERROR]}")
        return lines
    size = f"{len(result.body)} bytes" + (" (cut at max_body_bytes)" if result.truncated else "")
    lines = [f"    answer: HTTP {result.status}, {size}"]
    if result.phases is not None:
        lines.append("    timings: " + ", ".join(f"{name} {_ms(value)}" for name, value in zip(PHASES, result.phases,
                                                                                               strict=True)))
    if result.tls_cert_expiry is not None or result.tls_version or result.tls_cert_validity is not None:
        lines.append("    tls: " + _tls(result, now))
    lines.append("    headers: " + _headers(result.headers))
    if step.kind == "login":
        lines.append("    body: not shown (a login's answer carries tokens)")
    elif result.body:
        # the vendor's line breaks written out too: a body cannot forge a line of the trace
        lines.append("    body: " + excerpt(result.body).replace("\n", "\\n"))
    else:
        lines.append("    body: (empty)")
    return lines


def _tls(answer: Answer, now: float) -> str:
    """``TLS 1.3 (cipher), certificate valid 2026-01-01 .. 2027-01-01 (...)``: what on call checks first
    of a TLS failure."""
    version, _, cipher = answer.tls_version.partition(" ")
    named = f"TLS {version}" if version[:1].isdigit() else version  # "1.3", or SSLv3 as it is
    parts = [f"{named} ({cipher})" if version else
             "TLS version not recorded (a debug trace records it: probe --debug, /probe?debug=true)"]
    validity, chain = answer.tls_cert_validity, answer.tls_cert_expiry
    if validity is not None:
        start, end = validity
        when = (f"not valid for {(start - now) / 86400:.0f} more days" if start > now else
                f"expires in {(end - now) / 86400:.0f} days" if end >= now else
                f"expired {(now - end) / 86400:.0f} days ago")
        parts.append(f"certificate valid {_day(start)} .. {_day(end)} (notBefore {stamp(start)}, notAfter "
                     f"{stamp(end)}, {when})")
    if chain is not None and (validity is None or chain < validity[1]):
        # an intermediate that expires first is what breaks the chain
        parts.append(f"certificate chain expires {stamp(chain)} (in {(chain - now) / 86400:.0f} days, the "
                     "earliest notAfter)")
    return ", ".join(parts)


def _day(when: float) -> str:
    return time.strftime("%Y-%m-%d", time.gmtime(when))


def _headers(headers: Mapping[str, str]) -> str:
    shown = []
    for index, (name, value) in enumerate(headers.items()):
        if index == MAX_HEADERS:
            shown.append(f"... {len(headers) - MAX_HEADERS} more")
            break
        value = "<hidden>" if name in _HIDDEN_HEADERS else value[:MAX_HEADER_VALUE]
        shown.append(f"{name}: {value}")
    line = " | ".join(shown) or "(none)"
    return line if len(line) <= MAX_HEADER_LINE else line[:MAX_HEADER_LINE - 5] + " ..."


def render_trace(target: str, vendor: str, started: float, duration: float, outcome: Outcome,
                 attempts: int, requests: int, steps: Sequence[TraceStep], why: Explanation,
                 redact: Callable[[str], str], excerpt: Callable[[bytes], str]) -> str:
    """The probe's account, redacted as a whole with ``redact`` (a secret is never cut in two by a line
    break) and at most ``TRACE_MAX_CHARS``. ``excerpt`` gives a body's redacted start."""
    up = "up" if outcome.cls in UP else "down"
    lines = [f"trace of target {target} (vendor {vendor}), probe started {stamp(started)}",
             f"result: {outcome.cls} ({up}), code {outcome.code}, HTTP {outcome.http_status or 'no answer'}: "
             f"{outcome.message}",
             f"cost: {attempts} attempt{'s' * (attempts != 1)}, {requests} request{'s' * (requests != 1)}, "
             f"{_ms(duration)}",
             f"classified by: {why.source}",
             f"catalog entry: {why.entry}"]
    lines += [f"  note: {note}" for note in why.notes]
    if not steps:
        lines.append("requests: none sent")
    for number, step in enumerate(steps, 1):
        lines.append(f"[{number}] {step.kind}: {step.line}")
        if step.sent_headers:
            lines.append("    sent headers: " + ", ".join(f"{name}: {value}" for name, value in step.sent_headers))
        lines.append(f"    proxy: {step.proxy or 'none (direct)'}")
        lines += _answer_lines(step, started, excerpt)
    return cap(_UNSEEN.sub(_written_out, redact("\n".join(lines) + "\n")))


def cap(text: str, limit: int = TRACE_MAX_CHARS, tail: str = "") -> str:
    """``text`` cut so that with ``tail`` (kept whole) it has at most ``limit`` characters, saying so."""
    limit -= len(tail)
    if len(text) <= limit:
        return text + tail
    cut = _CUT.format(limit)
    return text[:limit - len(cut)] + cut + tail


def decision(outcome: Outcome, interval: float, next_in: float, backoff: float, *, confirming: bool = False,
             budget_wait: float = 0.0, requests: int = 1, hypothetical: bool = False) -> str:
    """What the scheduler does after this probe, in one or two lines."""
    would = "a running exporter would probe" if hypothetical else "next probe"
    if confirming:
        return (f"next: confirm_failures: the failure ({outcome.cls}) is re-probed as soon as the vendor's "
                "Retry-After and the budget allow, before it counts as the target's class\n")
    if backoff > 0:
        told = (f"the vendor's wait of {outcome.retry_after:g}s" if outcome.retry_after is not None
                else "exponential backoff")
        text = (f"next: backoff after {outcome.cls} ({told}): {would} in {next_in:.0f}s, not at the "
                f"{interval:g}s interval")
    elif outcome.cls in BACKOFF:
        text = f"next: {would} in {next_in:.0f}s"
    else:
        text = f"next: {would} in {next_in:.0f}s (the interval, {interval:g}s, with jitter)"
    text += f"; this probe cost {requests} request{'s' * (requests != 1)} of the credential's budget"
    if budget_wait > 0:
        text += f"; the budget has no room for another {budget_wait:.1f}s"
    return text + "\n"
