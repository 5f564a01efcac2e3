"""Taking secrets out of text a person or a scraper will see; pure, stdlib only.

Vendors echo what we sent, in whatever encoding their stack produces: percent-encoded (either hex
case, ``+`` for a space), JSON-escaped (``\\/``, ``\\uXXXX`` for any character, surrogate pairs),
base64 (standard or URL-safe, the secret at any byte offset of the encoded text, e.g. inside a Basic
``user:password``), hex (either case: a debug echo of the bytes), UTF-16 (a .NET stack's body, read as
UTF-8: every other byte NUL). The first two are found by decoding every escape run of the text and
searching the decoded text, in any mix of escaped and literal characters (an escape run that holds part
of a secret goes whole); the other renderings are plain substrings. Matching works on the whole text, which
callers hand over before they cut an excerpt (a secret straddling the cut would leak its start).
"""

from __future__ import annotations

import base64
import bisect
import functools
import re
from collections.abc import Iterable

__all__ = ["MIN_SECRET", "REDACTED", "Redactor", "redact"]

REDACTED = "<redacted>"
#: shorter values are not secrets worth the false positives (an empty or one-letter credential)
MIN_SECRET = 4


def _base64_forms(secret: str) -> list[str]:
    """The characters of the secret's base64 that depend on the secret alone, at each of the three
    byte offsets it may have in the encoded text, in the standard and the URL-safe alphabet."""
    raw = secret.encode("utf-8", "surrogatepass")
    out: list[str] = []
    for offset in range(3):
        encoded = base64.b64encode(b"\0" * offset + raw).decode()
        # character i carries bits [6i, 6i + 6); keep those that lie inside the secret's bits
        start = -(-8 * offset // 6)
        end = 8 * (offset + len(raw)) // 6
        inner = encoded[start:end]
        if len(inner) >= MIN_SECRET:
            out.append(inner)
            out.append(inner.translate(str.maketrans("+/", "-_")))
    return out


#: escape runs a vendor's stack may write: percent-encoded bytes, JSON \uXXXX units, JSON one-letter escapes
_ESCAPES = re.compile(r"(?:%[0-9A-Fa-f]{2})+|(?:\\u[0-9A-Fa-f]{4})+|\\[\\\"/bfnrt]")
_JSON_SHORT = {"b": "\b", "f": "\f", "n": "\n", "r": "\r", "t": "\t"}


def _decode_run(run: str) -> str:
    if run[0] == "%":
        return bytes.fromhex(run.replace("%", "")).decode("utf-8", "replace")
    if run[1] == "u":
        units = b"".join(int(run[i + 2:i + 6], 16).to_bytes(2, "little") for i in range(0, len(run), 6))
        return units.decode("utf-16-le", "replace")  # surrogate pairs become one character
    return _JSON_SHORT.get(run[1], run[1])


#: the short runs (one character's escape) recur, and are remembered; a long one is decoded each time,
#: so a vendor sending long runs cannot fill the cache with them
_decode_short = functools.lru_cache(maxsize=4096)(_decode_run)


def _decode_match(match: re.Match[str]) -> str:
    run = match.group()
    return _decode_short(run) if len(run) <= 12 else _decode_run(run)


def _decoded(text: str) -> tuple[str, str, list[tuple[int, int, int, int]]]:
    """The text with every escape run decoded; the same with each raw ``+`` read as a space (a
    form's ``+`` for a space); and per run (decoded start, decoded end, raw start, raw end)."""
    plain: list[str] = []
    spaced: list[str] = []
    runs: list[tuple[int, int, int, int]] = []
    pos = at = 0
    for m in _ESCAPES.finditer(text):
        between = text[pos:m.start()]
        plain.append(between)
        spaced.append(between.replace("+", " "))
        at += len(between)
        decoded = _decode_run(m.group())
        plain.append(decoded)
        spaced.append(decoded)
        runs.append((at, at + len(decoded), m.start(), m.end()))
        at += len(decoded)
        pos = m.end()
    plain.append(text[pos:])
    spaced.append(text[pos:].replace("+", " "))
    return "".join(plain), "".join(spaced), runs


def _raw(position: int, runs: list[tuple[int, int, int, int]], starts: list[int], end: bool) -> int:
    """A decoded position in the raw text; inside an escape run, the run's start (or its end, for
    the end of a match): a run is redacted whole."""
    i = bisect.bisect_right(starts, position) - 1
    if i < 0:
        return position
    d0, d1, r0, r1 = runs[i]
    if position >= d1:
        return r1 + position - d1
    if position == d0:
        return r0
    return r1 if end else r0


def _escaped_forms(text: str, secrets: tuple[str, ...]) -> str:
    """Every percent-encoded or JSON-escaped form of the secrets, in any mix of escaped and literal
    characters: found in the decoded text (str.find, no pattern to build) and mapped back."""
    # first only whether any form is there (the usual answer: no), without the position map
    spacy = any(" " in secret for secret in secrets)
    plain = _ESCAPES.sub(_decode_match, text)
    spaced = _ESCAPES.sub(_decode_match, text.replace("+", " ")) if spacy else plain
    if not any(secret in plain or (" " in secret and secret in spaced) for secret in secrets):
        return text
    plain, spaced, runs = _decoded(text)
    starts = [r[0] for r in runs]
    spans: list[tuple[int, int]] = []
    for secret in secrets:
        for haystack in (plain, spaced) if " " in secret else (plain,):
            at = haystack.find(secret)
            while at >= 0:
                spans.append((_raw(at, runs, starts, False), _raw(at + len(secret), runs, starts, True)))
                at = haystack.find(secret, at + 1)
    if not spans:
        return text
    out: list[str] = []
    pos = 0
    for lo, hi in sorted(spans):
        if hi <= pos:
            continue
        if lo >= pos:
            out.append(text[pos:lo])
            out.append(REDACTED)
        pos = max(pos, hi)
    out.append(text[pos:])
    return "".join(out)


def _byte_forms(secret: str) -> list[str]:
    """The secret's hex, and its UTF-16 (either byte order) as a body is shown: decoded as UTF-8, an
    invalid byte replaced; kept when enough of it is the secret's own (not replacement characters and NULs)."""
    raw = secret.encode("utf-8", "surrogatepass")
    out = [raw.hex(), raw.hex().upper()]
    for codec in ("utf-16-le", "utf-16-be"):
        shown = secret.encode(codec, "surrogatepass").decode("utf-8", "replace")
        if len(shown.replace("\ufffd", "").replace("\0", "")) >= MIN_SECRET:
            out.append(shown)
    return out


@functools.lru_cache(maxsize=1024)
def _plain_forms(secrets: tuple[str, ...]) -> tuple[str, ...]:
    """The base64, hex and UTF-16 renderings of the secrets, longest first."""
    forms: set[str] = set()
    for secret in secrets:
        forms.update(_base64_forms(secret))
        forms.update(_byte_forms(secret))
    return tuple(sorted(forms, key=len, reverse=True))


def _kept(secrets: Iterable[str]) -> tuple[str, ...]:
    """The secrets worth redacting, longest first."""
    return tuple(sorted({s for s in secrets if len(s) >= MIN_SECRET}, key=len, reverse=True))


def redact(text: str, secrets: Iterable[str]) -> str:
    """``text`` with every form of every secret (of at least ``MIN_SECRET`` characters) replaced."""
    kept = _kept(secrets)
    if not kept or not text:
        return text
    return _redact(text, kept, _plain_forms(kept))


class Redactor:
    """``redact`` for one fixed list of secrets (a target's), sorted and filtered once instead of on
    every call. (The base64 forms are looked up when needed rather than held: one set per target at
    thousands of targets costs more memory than the cached lookup costs time.)"""

    __slots__ = ("_kept",)

    def __init__(self, secrets: Iterable[str]) -> None:
        self._kept = _kept(secrets)

    def __repr__(self) -> str:
        return f"Redactor({len(self._kept)} secrets: <redacted>)"

    def __call__(self, text: str) -> str:
        return _redact(text, self._kept, _plain_forms(self._kept)) if self._kept and text else text


def _redact(text: str, kept: tuple[str, ...], forms: tuple[str, ...]) -> str:
    for secret in kept:  # literal first: a secret that itself holds "%41" or "\\n" stays as it is
        text = text.replace(secret, REDACTED)
        if " " in secret:
            text = text.replace(secret.replace(" ", "+"), REDACTED)
    if "%" in text or "\\" in text:
        text = _escaped_forms(text, kept)
    for form in forms:
        text = text.replace(form, REDACTED)
    return text
