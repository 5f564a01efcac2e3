"""Pure signature functions (md5 over sorted parameters, Rubiq's HMAC token, AWS SigV4), shared by the
signer plug-ins (signers.py) and by the simulators that check them.

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
from urllib.parse import quote, quote_plus, urlsplit

from yarl import URL

from .model import HttpRequest

__all__ = ["SIGV4_ALGORITHM", "md5_of_sorted", "md5_signature", "rubiq_issued_at", "rubiq_token",
           "sigv4_canonical_request", "sigv4_headers", "sigv4_signature", "sigv4_timestamp", "wire_url"]


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


# --- AWS Signature Version 4 -----------------------------------------------------------------------
# As botocore.auth.SigV4Auth computes it (the unit tests compare byte for byte on a table of requests):
# https://docs.aws.amazon.com/IAM/latest/UserGuide/reference_sigv-create-signed-request.html

SIGV4_ALGORITHM = "AWS4-HMAC-SHA256"
#: headers a proxy or the client may change on the way: botocore never signs them, nor do we
_SIGV4_UNSIGNED = frozenset({"connection", "expect", "keep-alive", "proxy-authenticate", "proxy-authorization", "te",
                             "trailer", "transfer-encoding", "upgrade", "user-agent", "x-amzn-trace-id"})
#: headers the signer sets itself: a request's own copies of them are dropped first (a retry re-signs)
_SIGV4_SET = frozenset({"authorization", "x-amz-date", "x-amz-security-token"})


def sigv4_timestamp(now: float) -> str:
    """``X-Amz-Date``: the UTC time as ``YYYYmmddTHHMMSSZ``."""
    return datetime.fromtimestamp(int(now), UTC).strftime("%Y%m%dT%H%M%SZ")


def _sigv4_path(path: str) -> str:
    # RFC 3986 dot segments removed, empty segments dropped (AWS services want no '//'), then
    # every byte but unreserved ones and '/' percent-encoded, as botocore does for every service but S3
    segments: list[str] = []
    for segment in path.split("/"):
        if segment == "..":
            if segments:
                segments.pop()
        elif segment and segment != ".":
            segments.append(segment)
    normal = "/" + "/".join(segments) if segments else "/"
    if segments and path.endswith("/"):
        normal += "/"
    return quote(normal, safe="/~")


def _sigv4_query(url_query: str, params: Sequence[tuple[str, str]]) -> str:
    """Parameters sorted by encoded name, then value; from ``params`` when given, else the URL's own
    query as it stands (botocore's two cases)."""
    if params:
        pairs = [(quote(key, safe="-_.~"), quote(value, safe="-_.~")) for key, value in params]
    else:
        pairs = [(key, value) for key, _, value in (part.partition("=") for part in url_query.split("&"))
                 ] if url_query else []
    return "&".join(f"{key}={value}" for key, value in sorted(pairs))


def _sigv4_host(url: str) -> str:
    parts = urlsplit(url)
    host = parts.hostname or ""
    if ":" in host:
        host = f"[{host}]"
    port = parts.port
    if port is not None and port != {"http": 80, "https": 443}.get(parts.scheme):
        host = f"{host}:{port}"
    return host


def sigv4_canonical_request(method: str, url: str, params: Sequence[tuple[str, str]],
                            headers: Sequence[tuple[str, str]], body: bytes | None) -> tuple[str, str]:
    """The canonical request and its signed-headers list, for headers already chosen (lower-case
    names; one name may repeat: its values are joined with commas in the order given)."""
    parts = urlsplit(url)
    grouped: dict[str, list[str]] = {}
    for name, value in headers:
        grouped.setdefault(name, []).append(" ".join(value.split()))
    if "host" not in grouped:
        grouped["host"] = [_sigv4_host(url)]
    names = sorted(grouped)
    canonical_headers = "".join(f"{name}:{','.join(grouped[name])}\n" for name in names)
    signed = ";".join(names)
    given_hash = grouped.get("x-amz-content-sha256")
    payload = given_hash[0] if given_hash else hashlib.sha256(body or b"").hexdigest()
    request = "\n".join([method.upper(), _sigv4_path(parts.path), _sigv4_query(parts.query, params),
                         canonical_headers, signed, payload])
    return request, signed


def sigv4_signature(secret_key: str, timestamp: str, region: str, service: str, canonical_request: str) -> str:
    """The hex signature of a canonical request (the key derived from the secret, date, region and service)."""
    scope = f"{timestamp[:8]}/{region}/{service}/aws4_request"
    to_sign = "\n".join([SIGV4_ALGORITHM, timestamp, scope,
                         hashlib.sha256(canonical_request.encode()).hexdigest()])
    key = ("AWS4" + secret_key).encode()
    for part in (timestamp[:8], region, service, "aws4_request"):
        key = hmac.new(key, part.encode(), hashlib.sha256).digest()
    return hmac.new(key, to_sign.encode(), hashlib.sha256).hexdigest()


def sigv4_headers(request: HttpRequest, *, access_key: str, secret_key: str, session_token: str, region: str,
                  service: str, now: float) -> dict[str, str]:
    """``request``'s headers signed with SigV4: ``X-Amz-Date``, ``X-Amz-Security-Token`` (with a session
    token) and ``Authorization`` added, any earlier copies of them dropped; every other header but the
    hop-by-hop ones is signed, and the host as the URL names it."""
    timestamp = sigv4_timestamp(now)
    out = {name: value for name, value in request.headers.items() if name.lower() not in _SIGV4_SET}
    out["X-Amz-Date"] = timestamp
    if session_token:
        out["X-Amz-Security-Token"] = session_token
    chosen = [(name.lower(), value) for name, value in out.items() if name.lower() not in _SIGV4_UNSIGNED]
    canonical, signed = sigv4_canonical_request(request.method, request.url, request.params, chosen, request.body)
    signature = sigv4_signature(secret_key, timestamp, region, service, canonical)
    out["Authorization"] = (f"{SIGV4_ALGORITHM} Credential={access_key}/{timestamp[:8]}/{region}/{service}/"
                            f"aws4_request, SignedHeaders={signed}, Signature={signature}")
    return out
