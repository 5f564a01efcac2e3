"""Taking secrets out of text a person or a scraper will see; pure, stdlib only.

Vendors echo what we sent, in whatever encoding their stack produces: percent-encoded (either hex
case, ``+`` for a space), JSON-escaped (``\\/``, ``\\uXXXX`` for any character, surrogate pairs),
base64 (standard or URL-safe, the secret at any byte offset of the encoded text, e.g. inside a Basic
``user:password``). So each secret becomes one pattern in which every character may appear in any
of the first two forms, plus its base64 renderings; matching works on the whole text, which callers
hand over before they cut an excerpt (a secret straddling the cut would otherwise leak its start).
"""

from __future__ import annotations

import base64
import functools
import re
from collections.abc import Iterable

__all__ = ["MIN_SECRET", "REDACTED", "redact"]

REDACTED = "<redacted>"
#: shorter values are not secrets worth the false positives (an empty or one-letter credential)
MIN_SECRET = 4


def _char(c: str) -> str:
    """A pattern for one character of a secret in any of the text forms a vendor may echo it in."""
    forms = [re.escape(c)]
    escapes = [f"%{b:02x}" for b in c.encode("utf-8", "surrogatepass")]
    hexed = ["".join(escapes)]
    code = ord(c)
    if code > 0xFFFF:  # JSON writes astral characters as a surrogate pair
        code -= 0x10000
        hexed.append(f"\\\\u{0xD800 + (code >> 10):04x}\\\\u{0xDC00 + (code & 0x3FF):04x}")
    else:
        hexed.append(f"\\\\u{code:04x}")
    if c == " ":
        forms.append(r"\+")
    if c == "/":
        forms.append(r"\\/")
    return "(?:" + "|".join(forms) + "|(?i:" + "|".join(hexed) + "))"


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


@functools.lru_cache(maxsize=4096)
def _text_pattern(secret: str) -> str:
    return "".join(_char(c) for c in secret)


@functools.lru_cache(maxsize=1024)
def _compiled(secrets: tuple[str, ...]) -> re.Pattern[str]:
    """One pattern for the text forms of all the secrets, longest first (where one secret contains
    another, the whole of the longer one goes). The lookahead on the characters a match can start
    with lets the engine skip most positions of a large body."""
    ordered = sorted(secrets, key=len, reverse=True)
    starts = {"%", "\\", "+"} | {s[0] for s in ordered}
    lead = "[" + "".join(re.escape(c) for c in sorted(starts)) + "]"
    return re.compile(f"(?={lead})(?:" + "|".join(f"(?:{_text_pattern(s)})" for s in ordered) + ")")


@functools.lru_cache(maxsize=1024)
def _plain_forms(secrets: tuple[str, ...]) -> tuple[str, ...]:
    """Forms that are plain substrings: the base64 renderings, and the literal text (with ``+`` for
    its spaces), longest first."""
    forms: set[str] = set()
    for secret in secrets:
        forms.update(_base64_forms(secret))
    return tuple(sorted(forms, key=len, reverse=True))


def redact(text: str, secrets: Iterable[str]) -> str:
    """``text`` with every form of every secret (of at least ``MIN_SECRET`` characters) replaced."""
    kept = tuple(sorted({s for s in secrets if len(s) >= MIN_SECRET}))
    if not kept or not text:
        return text
    if "%" in text or "\\" in text:
        text = _compiled(kept).sub(REDACTED, text)
    else:
        # without an escape character only the literal form (spaces maybe as "+") can be there:
        # plain replacement, done in C, is much faster than the pattern
        for secret in sorted(kept, key=len, reverse=True):
            text = text.replace(secret, REDACTED)
            if " " in secret:
                text = text.replace(secret.replace(" ", "+"), REDACTED)
    for form in _plain_forms(kept):
        text = text.replace(form, REDACTED)
    return text
