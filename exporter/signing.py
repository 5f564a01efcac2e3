"""Pure signing functions, shared by the signer plug-ins and by the simulators that check them.

No I/O, no clock of their own: the vendors' documented test vectors pin them down in the unit tests
(docs/vendors.md describes each scheme).
"""

from __future__ import annotations

import base64
import hashlib
import hmac
from collections.abc import Sequence
from datetime import UTC, datetime
from urllib.parse import urlencode

from yarl import URL

from .model import HttpRequest

__all__ = ["md5_signature", "rubiq_issued_at", "rubiq_token", "wire_url"]


def md5_signature(secret: str, params: Sequence[tuple[str, str]], exclude: Sequence[str] = ("signature",)) -> str:
    """Flipsnack's scheme: md5(secret + concat(k + v for the sorted params not excluded))."""
    material = "".join(key + value for key, value in sorted(pair for pair in params if pair[0] not in exclude))
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
    url = str(URL(request.url))
    return f"{url}?{urlencode(request.params)}" if request.params else url
