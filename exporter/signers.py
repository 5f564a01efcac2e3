"""Request signing, one small plug-in per scheme, chosen by name in a vendor catalog.

Every signer has the same shape: it is built once per target from the target's credentials and the
catalog's ``signer.options``, and ``sign()`` turns an unsigned request into one the vendor accepts.
Schemes that hold state (a login token) keep it on the instance; ``invalidate()`` drops it after the
vendor refused our credentials, and says whether one more attempt could succeed.

The pure functions (``md5_signature``, ``rubiq_token``) are shared with the simulators, which verify
what the exporter signs; the documented test vectors pin them down in the tests.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from typing import Any, Protocol
from urllib.parse import urlencode

import aiohttp
from yarl import URL

from ._jsonpath import json_path

__all__ = [
    "SIGNERS",
    "HttpRequest",
    "SignError",
    "Signer",
    "SignerContext",
    "make_signer",
    "md5_signature",
    "rubiq_issued_at",
    "rubiq_token",
]


class SignError(Exception):
    """Signing failed (e.g. the login call was refused); carries a class and a short code."""

    def __init__(self, cls: str, code: str, message: str, http_status: int = 0) -> None:
        super().__init__(message)
        self.cls = cls
        self.code = code
        self.message = message
        self.http_status = http_status


@dataclass(frozen=True, slots=True)
class HttpRequest:
    """One request before it is sent. ``url`` has no query string; ``params`` become it."""

    method: str
    url: str
    params: tuple[tuple[str, str], ...] = ()
    headers: Mapping[str, str] = field(default_factory=dict)
    body: bytes | None = None

    def full_url(self) -> str:
        """The URL exactly as it goes on the wire (the prober sends this string unchanged): a signature
        over the URL (Rubiq) must cover the bytes the vendor receives, and yarl's own query encoding
        differs from urlencode's (it leaves ``/`` and ``?`` unescaped)."""
        url = str(URL(self.url))
        return f"{url}?{urlencode(self.params)}" if self.params else url


@dataclass(frozen=True, slots=True)
class SignerContext:
    credentials: Mapping[str, str]
    options: Mapping[str, Any]
    base_url: str
    session: aiohttp.ClientSession | None
    timeout: float
    clock: Callable[[], float] = time.time


class Signer(Protocol):
    #: HTTP requests the signer itself has made so far (logins, refreshes): they cost budget too
    calls: int

    #: credential values a signer derives (tokens) that must be redacted like the credentials.
    def secrets(self) -> Sequence[str]: ...

    async def sign(self, request: HttpRequest, now: float) -> HttpRequest: ...

    def invalidate(self) -> bool: ...

    def variables(self) -> Mapping[str, str]: ...


# --- pure signing functions ------------------------------------------------------------------------


def md5_signature(secret: str, params: Sequence[tuple[str, str]], exclude: Sequence[str] = ("signature",)) -> str:
    """Flipsnack's documented scheme: md5(secret + concat(k + v for sorted params))."""
    material = "".join(k + v for k, v in sorted(p for p in params if p[0] not in exclude))
    return hashlib.md5((secret + material).encode(), usedforsecurity=False).hexdigest()


def rubiq_issued_at(now: float) -> str:
    return datetime.fromtimestamp(now, UTC).strftime("%Y%m%d%H%M%S")


def rubiq_token(app_key: str, app_secret: str, method: str, url: str, issued_at: str) -> str:
    """Rubiq's documented scheme: base64(HMAC-SHA256(secret, AppKey + METHOD + URL + IssuedAt))."""
    msg = (app_key + method.upper() + url + issued_at).encode()
    return base64.b64encode(hmac.new(app_secret.encode(), msg, hashlib.sha256).digest()).decode()


# --- plug-ins --------------------------------------------------------------------------------------


class _Stateless:
    def __init__(self, ctx: SignerContext) -> None:
        self.ctx = ctx
        self.calls = 0

    def secrets(self) -> Sequence[str]:
        return ()

    def invalidate(self) -> bool:
        return False

    def variables(self) -> Mapping[str, str]:
        return {}

    def cred(self, option: str, default: str) -> str:
        return self.ctx.credentials[str(self.ctx.options.get(option, default))]


class NoSigner(_Stateless):
    async def sign(self, request: HttpRequest, now: float) -> HttpRequest:
        return request


class HeaderSigner(_Stateless):
    """A static header built from a template, e.g. ``BW-API-Key: Token {token}``."""

    async def sign(self, request: HttpRequest, now: float) -> HttpRequest:
        name = str(self.ctx.options.get("header", "Authorization"))
        value = str(self.ctx.options.get("template", "Bearer {token}")).format_map(dict(self.ctx.credentials))
        return replace(request, headers={**request.headers, name: value})


class BasicSigner(_Stateless):
    """HTTP Basic authentication (RFC 7617) from two credentials, options ``username_credential`` and
    ``password_credential`` (Twilio: account SID and auth token); the header signer's template cannot
    base64-encode. Credentials named in option ``path_variables`` (default: the user name's) are also
    ``{name}`` variables of the request path, because REST APIs such as Twilio's put the account in it
    (with an API key as the user, the account SID is another credential)."""

    def _header(self) -> str:
        pair = f"{self.cred('username_credential', 'username')}:{self.cred('password_credential', 'password')}"
        return "Basic " + base64.b64encode(pair.encode()).decode()

    def secrets(self) -> Sequence[str]:
        # the encoded pair is the password in another encoding: redact it like the credentials
        header = self._header()
        return [header, header.removeprefix("Basic ")]

    def variables(self) -> Mapping[str, str]:
        names = self.ctx.options.get("path_variables") or [self.ctx.options.get("username_credential", "username")]
        # a name that is no credential stays unfilled in the path: the vendor answers 404, which shows
        return {str(n): self.ctx.credentials[str(n)] for n in names if str(n) in self.ctx.credentials}

    async def sign(self, request: HttpRequest, now: float) -> HttpRequest:
        return replace(request, headers={**request.headers, "Authorization": self._header()})


class Md5ParamsSigner(_Stateless):
    """Key, optional unix timestamp and md5 signature as query parameters (Flipsnack, Bannersnack)."""

    async def sign(self, request: HttpRequest, now: float) -> HttpRequest:
        opts = self.ctx.options
        sig_param = str(opts.get("signature_param", "signature"))
        params = [p for p in request.params if p[0] != sig_param]
        params.append((str(opts.get("key_param", "apiKey")), self.cred("key_credential", "api_key")))
        if ts := opts.get("timestamp_param"):
            params.append((str(ts), str(int(now))))
        exclude = [sig_param, *opts.get("exclude", ["file"])]
        params.append((sig_param, md5_signature(self.cred("secret_credential", "secret"), params, exclude)))
        return replace(request, params=tuple(params))


class RubiqSigner(_Stateless):
    """The ``Signature`` header: JSON with AppKey, IssuedAt (UTC) and an HMAC-SHA256 token."""

    async def sign(self, request: HttpRequest, now: float) -> HttpRequest:
        app_key = self.cred("app_key_credential", "app_key")
        issued = rubiq_issued_at(now)
        token = rubiq_token(app_key, self.cred("app_secret_credential", "app_secret"), request.method,
                            request.full_url(), issued)
        key: int | str = int(app_key) if app_key.isdigit() else app_key
        header = json.dumps({"AppKey": key, "IssuedAt": issued, "Token": token}, separators=(",", ":"))
        return replace(request, headers={**request.headers, str(self.ctx.options.get("header", "Signature")): header})


class BearerLoginSigner(_Stateless):
    """Log in for a short-lived access token, refresh it before it expires, log in again once on 401.

    Options: ``login_path``, ``refresh_path`` (may use ``{name}`` variables, see ``_learn``, taken
    from the login answer), ``access_ttl``/``refresh_ttl`` seconds, ``renew_before`` seconds.
    """

    def __init__(self, ctx: SignerContext) -> None:
        super().__init__(ctx)
        self._access: str | None = None
        self._refresh: str | None = None
        self._access_until = 0.0
        self._refresh_until = 0.0
        self._vars: dict[str, str] = {}
        self.logins = 0
        self.refreshes = 0

    def secrets(self) -> Sequence[str]:
        return [t for t in (self._access, self._refresh) if t]

    def variables(self) -> Mapping[str, str]:
        return self._vars

    def invalidate(self) -> bool:
        had = self._access is not None
        self._access = self._refresh = None
        self._access_until = self._refresh_until = 0.0
        return had

    async def _token_call(self, url: str, token_field: str, **body: Any) -> Mapping[str, Any]:
        """POST to a token endpoint (``json=`` or ``data=``); the answer must carry ``token_field``."""
        session = self.ctx.session
        if session is None:
            raise SignError("network_error", "no_session", "no HTTP session for the login call")
        self.calls += 1
        timeout = aiohttp.ClientTimeout(total=self.ctx.timeout)
        async with session.post(url, timeout=timeout, allow_redirects=False, **body) as resp:
            raw = await resp.content.read(65536)
            if resp.status != 200:
                cls = "auth" if resp.status in (400, 401, 403) else "server_error"
                raise SignError(cls, f"login_{resp.status}", f"token endpoint answered HTTP {resp.status}",
                                resp.status)
        try:
            data = json.loads(raw)
        except (ValueError, RecursionError) as exc:
            raise SignError("server_error", "login_body", "token endpoint answered invalid JSON") from exc
        if not isinstance(data, dict) or not isinstance(data.get(token_field), str):
            raise SignError("server_error", "login_body", f"token endpoint answered without {token_field}")
        return data

    async def _post(self, path: str, payload: Mapping[str, str]) -> Mapping[str, Any]:
        return await self._token_call(self.ctx.base_url.rstrip("/") + path, "accessToken", json=dict(payload))

    def _take(self, data: Mapping[str, Any], now: float) -> None:
        opts = self.ctx.options
        self._access = data["accessToken"]
        self._access_until = now + float(opts.get("access_ttl", 300))
        if isinstance(data.get("refreshToken"), str):
            self._refresh = data["refreshToken"]
            self._refresh_until = now + float(opts.get("refresh_ttl", 3600))
        self._learn(data)

    def _learn(self, data: Mapping[str, Any]) -> None:
        """Variables for request paths (``{name}``): option ``variables`` maps each name to a dotted path
        in the login answer (movingimage: ``videoManagerList.0.id``); a credential of the same name wins."""
        for name, path in dict(self.ctx.options.get("variables") or {}).items():
            value = json_path(data, str(path))
            if isinstance(value, str | int) and not isinstance(value, bool):
                self._vars.setdefault(str(name), str(value))
            if given := self.ctx.credentials.get(str(name)):
                self._vars[str(name)] = given

    async def sign(self, request: HttpRequest, now: float) -> HttpRequest:
        margin = float(self.ctx.options.get("renew_before", 30))
        if self._access is None or now >= self._access_until - margin:
            data: Mapping[str, Any] | None = None
            refresh_path = _fill(str(self.ctx.options.get("refresh_path", "/auth/refresh")), self._vars)
            if self._refresh and now < self._refresh_until - margin and refresh_path is not None:
                try:
                    data = await self._post(refresh_path, {"refreshToken": self._refresh})
                    self.refreshes += 1
                except SignError:
                    data = None  # a refused refresh is not an outage: fall through to a fresh login
            if data is None:
                data = await self._post(
                    str(self.ctx.options.get("login_path", "/auth/login")),
                    {"username": self.cred("username_credential", "username"),
                     "password": self.cred("password_credential", "password")},
                )
                self.logins += 1
            self._take(data, now)
        return replace(request, headers={**request.headers, "Authorization": f"Bearer {self._access}"})


class OidcPasswordSigner(BearerLoginSigner):
    """OpenID Connect password grant (movingimage's newer login): a form POST to ``token_url`` (absolute,
    or a path under the base URL) for an access token, renewed with the refresh-token grant; lifetimes
    come from the answer's ``expires_in`` / ``refresh_expires_in``. Option ``client_id``."""

    async def _grant(self, form: Mapping[str, str]) -> Mapping[str, Any]:
        url = str(self.ctx.options.get("token_url", "/protocol/openid-connect/token"))
        if url.startswith("/"):
            url = self.ctx.base_url.rstrip("/") + url
        return await self._token_call(url, "access_token", data=dict(form))

    def _lifetime(self, data: Mapping[str, Any], key: str, option: str, default: float) -> float:
        value = data.get(key)
        if isinstance(value, int | float) and not isinstance(value, bool) and value > 0:
            return float(value)
        return float(self.ctx.options.get(option, default))

    async def sign(self, request: HttpRequest, now: float) -> HttpRequest:
        margin = float(self.ctx.options.get("renew_before", 30))
        if self._access is None or now >= self._access_until - margin:
            client = str(self.ctx.options.get("client_id", "anonymous"))
            data: Mapping[str, Any] | None = None
            if self._refresh and now < self._refresh_until - margin:
                try:
                    data = await self._grant({"grant_type": "refresh_token", "client_id": client,
                                              "refresh_token": self._refresh})
                    self.refreshes += 1
                except SignError:
                    data = None  # a refused refresh is not an outage: fall through to a fresh login
            if data is None:
                data = await self._grant({
                    "grant_type": "password", "client_id": client,
                    "username": self.cred("username_credential", "username"),
                    "password": self.cred("password_credential", "password")})
                self.logins += 1
            self._access = data["access_token"]
            self._access_until = now + self._lifetime(data, "expires_in", "access_ttl", 300)
            if isinstance(data.get("refresh_token"), str):
                self._refresh = data["refresh_token"]
                self._refresh_until = now + self._lifetime(data, "refresh_expires_in", "refresh_ttl", 3600)
            self._learn(data)
        return replace(request, headers={**request.headers, "Authorization": f"Bearer {self._access}"})


def _fill(template: str, variables: Mapping[str, str]) -> str | None:
    """``template`` with its ``{name}`` variables filled in, or None while one is still unknown."""
    try:
        return template.format_map(dict(variables))
    except (KeyError, ValueError):
        return None


SIGNERS: dict[str, Callable[[SignerContext], Signer]] = {
    "none": NoSigner,
    "header": HeaderSigner,
    "basic": BasicSigner,
    "md5_sorted_params": Md5ParamsSigner,
    "rubiq_hmac": RubiqSigner,
    "bearer_login": BearerLoginSigner,
    "oidc_password": OidcPasswordSigner,
}


def make_signer(name: str, ctx: SignerContext) -> Signer:
    return SIGNERS[name](ctx)
