"""The little DER and PEM handling the exporter needs, in one place: walking a certificate's elements
(its expiry for the egress metric, its SANs for the web config's checks) and refusing encrypted keys.

Every read is bounds-checked, so a truncated or hostile certificate raises ValueError, never
IndexError or a huge allocation."""

from __future__ import annotations

from collections.abc import Iterator
from typing import NoReturn

__all__ = ["EncryptedKey", "children", "no_password", "tlv"]

#: DER lengths longer than this many bytes describe more than any certificate holds
_MAX_LENGTH_BYTES = 4


class EncryptedKey(Exception):
    """A private key that asks for a pass phrase: the exporter has none to give."""


def no_password() -> NoReturn:
    """The ``password`` callback of ``load_cert_chain``: an encrypted key must never make OpenSSL
    prompt on the terminal, so it is refused instead."""
    raise EncryptedKey


def tlv(der: bytes, pos: int) -> tuple[int, int, int]:
    """One DER element at ``pos``: (tag, start of content, end of content)."""
    if pos < 0 or pos + 2 > len(der):
        raise ValueError("truncated DER")
    tag, length = der[pos], der[pos + 1]
    pos += 2
    if length & 0x80:
        count = length & 0x7F
        if not 1 <= count <= _MAX_LENGTH_BYTES or pos + count > len(der):
            raise ValueError("bad DER length")
        length = int.from_bytes(der[pos:pos + count], "big")
        pos += count
    if pos + length > len(der):
        raise ValueError("truncated DER")
    return tag, pos, pos + length


def children(der: bytes, start: int, end: int) -> Iterator[tuple[int, int, int]]:
    """The elements between ``start`` and ``end`` (a constructed element's content), in order."""
    while start < end:
        item = tlv(der, start)
        yield item
        start = item[2]
