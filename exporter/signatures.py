"""Pure signing functions, shared by the signer plug-ins and by the simulators that check them.

No I/O, no clock of their own: the vendors' documented test vectors pin them down in the unit tests
(docs/vendors.md describes each scheme).
"""

from __future__ import annotations

import base64
import functools
import hashlib
import hmac
import re
from collections.abc import Sequence
from datetime import UTC, datetime
from urllib.parse import quote_plus

from yarl import URL

from .model import HttpRequest

__all__ = ["md5_of_sorted", "md5_signature", "rubiq_issued_at", "rubiq_token", "wire_url"]


def md5_signature(secret: str, params: Sequence[tuple[str, str]], exclude: Sequence[str] = ("signature",)) -> str:
    """Flipsnack's scheme: md5(secret + concat(k + v for the sorted params not excluded))."""
    return md5_of_sorted(secret, sorted(pair for pair in params if pair[0] not in exclude))


def md5_of_sorted(secret: str, signed: Sequence[tuple[str, str]]) -> str:
    """``md5_signature`` of params already chosen and sorted (a signer keeps its constant ones so)."""
    material = "".join([key + value for key, value in signed])
    return hashlib.md5((secret + material).encode(), usedforsecurity=False).hexdigest()


def rubiq_issued_at(now: float) -> str:
    """Rubiq's IssuedAt: the UTC time as ``YYYYmmddHHMMSS``."""
    return datetime.fromtimestamp(now, UTC).strftime("%Y%m%d%H%M%S")


def rubiq_token(app_key: str, app_secret: str, method: str, url: str, issued_at: str) -> str:
    """Rubiq's scheme: base64(HMAC-SHA256(secret, AppKey + METHOD + URL + IssuedAt))."""
    msg = (app_key + method.upper() + url + issued_at).encode()
    return base64.b64encode(hmac.new(app_secret.encode(), msg, hashlib.sha256).digest()).decode()


def wire_url(request: HttpRequest) -> str:
    """The URL exactly as it goes on the wire (the prober sends this string unchanged): a signature
    over the URL (Rubiq) must cover the bytes the vendor receives, and yarl's own query encoding
    differs from urlencode's (it leaves ``/`` and ``?`` unescaped)."""
    url = _normal_url(request.url)
    if not request.params:
        return url
    return url + "?" + "&".join([_quoted(key) + "=" + _quoted(value) for key, value in request.params])


@functools.lru_cache(maxsize=1024)
def _normal_url(url: str) -> str:
    # a target's URL is the same on every probe: yarl parses it once
    return str(URL(url))


#: what urlencode (quote_plus) leaves as it is: most keys and values, which then need no quoting call
_UNQUOTED = re.compile(r"[A-Za-z0-9_.~-]*")


def _quoted(text: str) -> str:
    """``text`` as urlencode writes it."""
    return text if _UNQUOTED.fullmatch(text) else quote_plus(text)
