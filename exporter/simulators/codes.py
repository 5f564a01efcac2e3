"""The ``code`` control setting read as an HTTP status: every simulator lets a test force any code, and
a code that is not an HTTP status (a vendor's own error code, a word) gets the vendor's default."""

from __future__ import annotations

__all__ = ["http_status"]


def http_status(code: str, default: int) -> int:
    """``code`` as an HTTP status when it is one (digits, 100 to 599), else ``default``."""
    return int(code) if code.isascii() and code.isdigit() and 100 <= int(code) <= 599 else default
