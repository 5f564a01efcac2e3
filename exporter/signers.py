"""Request signing, one small plug-in per scheme, chosen by name in a vendor catalog.

Every plug-in declares its options as a frozen dataclass (``Options``): catalog.py reads and checks
``signer.options`` against it while the catalog loads, so a misspelt or mistyped option is a config
error, and the plug-in reads typed attributes. Every value that belongs to one vendor (paths, field
and parameter names) is an option set in that vendor's catalog; defaults here are neutral.

A plug-in never does I/O: ``sign()`` gets a ``send`` callable from the prober (the one request path)
for the calls it needs (logins, refreshes) and returns the signed request. Schemes that hold state (a
login token) keep it on the instance; ``invalidate(used)`` drops it after the vendor refused the
request ``used`` carried it, unless another probe has renewed it since, and says whether one more
attempt could succeed.
"""

from __future__ import annotations

import asyncio
import base64
import bisect
import copy
import dataclasses
import json
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import Any, ClassVar, Literal, Protocol
from urllib.parse import quote_plus, urlencode

from ._jsonpath import json_path
from .model import Answer, HttpRequest, SignError
from .signatures import md5_of_sorted, md5_signature, rubiq_issued_at, rubiq_token, sigv4_headers, wire_url

__all__ = [
    "SIGNERS",
    "BasicOptions",
    "BearerLoginOptions",
    "HeaderOptions",
    "HttpRequest",
    "Md5ParamsOptions",
    "NoOptions",
    "OAuth2Options",
    "OidcPasswordOptions",
    "OptionKind",
    "OptionSpec",
    "RubiqOptions",
    "Send",
    "SigV4Options",
    "SignError",
    "Signer",
    "SignerContext",
    "make_signer",
    "md5_signature",
    "option_specs",
    "rubiq_issued_at",
    "rubiq_token",
]

#: how the prober sends a request for a plug-in: the same path, cap and failure map as a probe
Send = Callable[[HttpRequest], Awaitable[Answer]]

#: what an option holds; catalog.py turns each kind into one Node check
OptionKind = Literal[
    "string",  # any text
    "path",  # a URL path starting with / (may hold {name} variables)
    "url_or_path",  # an absolute http(s) URL, or a path under the base URL
    "url_template",  # a url_or_path whose {name} fields must be credentials of the vendor
    "template",  # text whose {name} fields must be credentials of the vendor
    "seconds",  # a number of seconds, zero or more
    "boolean",
    "strings",  # a list of texts
    "mapping",  # text -> text
    "credential",  # the name of one of the vendor's credentials
]


@dataclass(frozen=True, slots=True)
class OptionSpec:
    name: str
    kind: OptionKind
    required: bool
    default: Any
    doc: str
    #: the texts a string option may take (empty: any)
    choices: tuple[str, ...] = ()


def _opt(kind: OptionKind, default: Any = dataclasses.MISSING, doc: str = "", choices: tuple[str, ...] = ()) -> Any:
    return field(default=default, metadata={"kind": kind, "doc": doc, "choices": choices})


def option_specs(options: type[Any]) -> tuple[OptionSpec, ...]:
    """The declared options of one plug-in (from its ``Options`` dataclass)."""
    return tuple(
        OptionSpec(f.name, f.metadata["kind"], f.default is dataclasses.MISSING,
                   None if f.default is dataclasses.MISSING else f.default, f.metadata.get("doc", ""),
                   f.metadata.get("choices", ()))
        for f in dataclasses.fields(options))


@dataclass(frozen=True, slots=True)
class SignerContext:
    credentials: Mapping[str, str]
    #: an instance of the plug-in's ``Options`` dataclass, checked when the catalog loaded
    options: Any
    base_url: str


class Signer(Protocol):
    #: credential values a signer derives (tokens) that must be redacted like the credentials.
    def secrets(self) -> Sequence[str]: ...

    async def sign(self, request: HttpRequest, now: float, send: Send) -> HttpRequest: ...

    def invalidate(self, used: HttpRequest | None) -> bool: ...

    def variables(self) -> Mapping[str, str]: ...


# --- options ---------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True, kw_only=True)
class NoOptions:
    pass


@dataclass(frozen=True, slots=True, kw_only=True)
class HeaderOptions:
    header: str = _opt("string", "Authorization", "the header name")
    template: str = _opt("template", doc="the header value; {name} is the credential of that name")


@dataclass(frozen=True, slots=True, kw_only=True)
class BasicOptions:
    username_credential: str = _opt("credential", "username", doc="the credential sent as the user name")
    password_credential: str = _opt("credential", "password", doc="the credential sent as the password")
    path_variables: tuple[str, ...] = _opt("strings", (), doc="credentials usable as {name} in the path; "
                                           "empty: the user name's")


@dataclass(frozen=True, slots=True, kw_only=True)
class Md5ParamsOptions:
    key_param: str = _opt("string", doc="the query parameter that carries the key")
    key_credential: str = _opt("credential", doc="the credential sent as the key")
    secret_credential: str = _opt("credential", doc="the credential the signature is keyed with")
    signature_param: str = _opt("string", doc="the query parameter that carries the signature")
    timestamp_param: str = _opt("string", "", doc="a parameter carrying the unix time; empty: none")
    exclude: tuple[str, ...] = _opt("strings", (), doc="parameters left out of the signature")


@dataclass(frozen=True, slots=True, kw_only=True)
class RubiqOptions:
    app_key_credential: str = _opt("credential", doc="the credential sent as AppKey")
    app_secret_credential: str = _opt("credential", doc="the credential the token is keyed with")
    header: str = _opt("string", doc="the header that carries the signature JSON")
    app_key_json_number: bool = _opt("boolean", False, doc="send an all-digit AppKey as a JSON number")


@dataclass(frozen=True, slots=True, kw_only=True)
class BearerLoginOptions:
    login_path: str = _opt("path", doc="POST username and password here (JSON) for a token")
    refresh_path: str = _opt("path", "", doc="POST the refresh token here; {name} variables; empty: none")
    username_credential: str = _opt("credential", "username")
    password_credential: str = _opt("credential", "password")
    username_field: str = _opt("string", "username", doc="login request field for the username")
    password_field: str = _opt("string", "password", doc="login request field for the password")
    access_token_field: str = _opt("string", doc="answer field with the access token")
    refresh_token_field: str = _opt("string", "", doc="answer and refresh request field of the refresh token")
    variables: tuple[tuple[str, str], ...] = _opt("mapping", (), doc="path variable -> dotted path in the login answer")
    access_ttl: float = _opt("seconds", doc="how long an access token lives")
    refresh_ttl: float = _opt("seconds", 0.0, doc="how long a refresh token lives; 0: never refresh")
    renew_before: float = _opt("seconds", 30.0, doc="renew a token this long before it expires")


@dataclass(frozen=True, slots=True, kw_only=True)
class OidcPasswordOptions:
    # The field names are OAuth 2's own (RFC 6749), so they are the defaults here.
    token_url: str = _opt("url_or_path", doc="the token endpoint")
    client_id: str = _opt("string")
    username_credential: str = _opt("credential", "username")
    password_credential: str = _opt("credential", "password")
    variables: tuple[tuple[str, str], ...] = _opt("mapping", (), doc="path variable -> dotted path in the token answer")
    access_ttl: float = _opt("seconds", 60.0, doc="access token lifetime when the answer has no expires_in")
    refresh_ttl: float = _opt("seconds", 0.0, doc="refresh token lifetime without refresh_expires_in; 0: never")
    renew_before: float = _opt("seconds", 30.0, doc="renew a token this long before it expires")


@dataclass(frozen=True, slots=True, kw_only=True)
class SigV4Options:
    # The names are those of Prometheus' own sigv4 block (region, access_key, secret_key); the credentials
    # themselves are the target's, named here.
    region: str = _opt("string", "", doc="the AWS region, e.g. us-east-1; empty: the region credential")
    service: str = _opt("string", doc="the signing name of the service, e.g. sts")
    region_credential: str = _opt("string", "region", doc="a credential that sets the region per target")
    access_key_credential: str = _opt("credential", "access_key_id", doc="the credential with the access key id")
    secret_key_credential: str = _opt("credential", "secret_access_key",
                                      doc="the credential with the secret access key")
    session_token_credential: str = _opt("string", "session_token",
                                         doc="an optional credential with a session token (temporary credentials)")


@dataclass(frozen=True, slots=True, kw_only=True)
class OAuth2Options:
    # Prometheus' own oauth2 block (token_url, scopes, endpoint_params; client_id and client_secret or
    # client_secret_file are the target's credentials), with the client authentication made explicit
    token_url: str = _opt("url_template", doc="the token endpoint; {name} is the credential of that name "
                          "(Entra ID: https://login.microsoftonline.com/{tenant_id}/oauth2/v2.0/token)")
    scopes: tuple[str, ...] = _opt("strings", (), doc="scopes asked for, sent space-separated as scope")
    endpoint_params: tuple[tuple[str, str], ...] = _opt("mapping", (), doc="more form fields for the token request")
    client_auth: str = _opt("string", "basic", doc="how the client authenticates: basic (HTTP basic, "
                            "client_secret_basic) or form (client_id and client_secret in the form, "
                            "client_secret_post)", choices=("basic", "form"))
    client_id_credential: str = _opt("credential", "client_id", doc="the credential with the client id")
    client_secret_credential: str = _opt("credential", "client_secret", doc="the credential with the client secret")
    access_ttl: float = _opt("seconds", 300.0, doc="token lifetime when the answer has no expires_in")
    renew_before: float = _opt("seconds", 30.0, doc="fetch a new token this long before it expires")


# --- plug-ins --------------------------------------------------------------------------------------


class _Stateless:
    Options: ClassVar[type[Any]] = NoOptions
    #: ``sign`` waits for nothing (no login, no lock): the prober need not bound it with a timeout
    offline: ClassVar[bool] = True

    def __init__(self, ctx: SignerContext) -> None:
        if not isinstance(ctx.options, self.Options):
            raise TypeError(f"{type(self).__name__} needs {self.Options.__name__}, not {type(ctx.options).__name__}")
        self.ctx = ctx

    def secrets(self) -> Sequence[str]:
        return ()

    def invalidate(self, used: HttpRequest | None) -> bool:
        return False

    def variables(self) -> Mapping[str, str]:
        return {}

    async def sign(self, request: HttpRequest, now: float, send: Send) -> HttpRequest:
        return request


class NoSigner(_Stateless):
    """No signature: the request goes out as the check describes it."""


class HeaderSigner(_Stateless):
    """A static header built from a template, e.g. ``BW-API-Key: Token {token}``."""

    Options = HeaderOptions

    async def sign(self, request: HttpRequest, now: float, send: Send) -> HttpRequest:
        opts: HeaderOptions = self.ctx.options
        value = opts.template.format_map(dict(self.ctx.credentials))
        return replace(request, headers={**request.headers, opts.header: value})


class BasicSigner(_Stateless):
    """HTTP Basic authentication (RFC 7617) from two credentials (Twilio: account SID and auth token); the
    header signer's template cannot base64-encode. Credentials named in ``path_variables`` (default: the
    user name's) are also ``{name}`` variables of the request path, because REST APIs such as Twilio's
    put the account in it (with an API key as the user, the account SID is another credential)."""

    Options = BasicOptions

    def _header(self) -> str:
        opts: BasicOptions = self.ctx.options
        creds = self.ctx.credentials
        pair = f"{creds[opts.username_credential]}:{creds[opts.password_credential]}"
        return "Basic " + base64.b64encode(pair.encode()).decode()

    def secrets(self) -> Sequence[str]:
        # the encoded pair is the password in another encoding: redact it like the credentials
        header = self._header()
        return [header, header.removeprefix("Basic ")]

    def variables(self) -> Mapping[str, str]:
        opts: BasicOptions = self.ctx.options
        names = opts.path_variables or (opts.username_credential,)
        # a name that is no credential stays unfilled in the path: the vendor answers 404, which shows
        return {n: self.ctx.credentials[n] for n in names if n in self.ctx.credentials}

    async def sign(self, request: HttpRequest, now: float, send: Send) -> HttpRequest:
        return replace(request, headers={**request.headers, "Authorization": self._header()})


class Md5ParamsSigner(_Stateless):
    """Key, optional unix timestamp and md5 signature as query parameters (Flipsnack, Bannersnack)."""

    Options = Md5ParamsOptions

    def __init__(self, ctx: SignerContext) -> None:
        super().__init__(ctx)
        #: for the request params last signed: the params sent before the timestamp and the signed
        #: ones (sorted) without it; only the timestamp changes from probe to probe
        self._made: tuple[tuple[tuple[str, str], ...], tuple[tuple[str, str], ...],
                          tuple[tuple[str, str], ...]] | None = None

    async def sign(self, request: HttpRequest, now: float, send: Send) -> HttpRequest:
        opts: Md5ParamsOptions = self.ctx.options
        made = self._made
        excluded = (opts.signature_param, *opts.exclude)
        if made is None or made[0] is not request.params:
            params = [p for p in request.params if p[0] != opts.signature_param]
            params.append((opts.key_param, self.ctx.credentials[opts.key_credential]))
            made = self._made = (request.params, tuple(params),
                                 tuple(sorted(p for p in params if p[0] not in excluded)))
        _, sent, signed = made
        if opts.timestamp_param:
            stamp = (opts.timestamp_param, str(int(now)))
            sent = (*sent, stamp)
            if stamp[0] not in excluded:
                with_stamp = list(signed)
                bisect.insort(with_stamp, stamp)  # where sorting all of them would put it
                signed = tuple(with_stamp)
        signature = md5_of_sorted(self.ctx.credentials[opts.secret_credential], signed)
        return HttpRequest(request.method, request.url, (*sent, (opts.signature_param, signature)),
                           request.headers, request.body)


class RubiqSigner(_Stateless):
    """A header with JSON: AppKey, IssuedAt (UTC) and an HMAC-SHA256 token over method and URL."""

    Options = RubiqOptions

    async def sign(self, request: HttpRequest, now: float, send: Send) -> HttpRequest:
        opts: RubiqOptions = self.ctx.options
        app_key = self.ctx.credentials[opts.app_key_credential]
        issued = rubiq_issued_at(now)
        token = rubiq_token(app_key, self.ctx.credentials[opts.app_secret_credential], request.method,
                            wire_url(request), issued)
        key: int | str = int(app_key) if opts.app_key_json_number and app_key.isdigit() else app_key
        header = json.dumps({"AppKey": key, "IssuedAt": issued, "Token": token}, separators=(",", ":"))
        return replace(request, headers={**request.headers, opts.header: header})


class SigV4Signer(_Stateless):
    """AWS Signature Version 4 (signatures.sigv4_headers): X-Amz-Date from the injected clock, the
    session token when the target has one, and the Authorization header over method, path, query,
    headers and body. Nothing is fetched: temporary credentials are the target's to give."""

    Options = SigV4Options

    def _region(self) -> str:
        opts: SigV4Options = self.ctx.options
        return self.ctx.credentials.get(opts.region_credential) or opts.region

    async def sign(self, request: HttpRequest, now: float, send: Send) -> HttpRequest:
        opts: SigV4Options = self.ctx.options
        creds = self.ctx.credentials
        region = self._region()
        if not region:
            raise SignError("client_error", "no_region",
                            f"sigv4 needs a region: set signer.options.region or the {opts.region_credential} "
                            "credential")
        headers = sigv4_headers(request, access_key=creds[opts.access_key_credential],
                                secret_key=creds[opts.secret_key_credential],
                                session_token=creds.get(opts.session_token_credential, ""),
                                region=region, service=opts.service, now=now)
        return replace(request, headers=headers)


class _TokenSigner(_Stateless):
    """Shared by the login schemes: the token pair, its lifetimes and the learnt path variables."""

    offline: ClassVar[bool] = False  # it logs in, refreshes, and waits for a renewal under way

    def __init__(self, ctx: SignerContext) -> None:
        super().__init__(ctx)
        self._access: str | None = None
        self._refresh: str | None = None
        self._access_until = 0.0
        self._refresh_until = 0.0
        self._vars: dict[str, str] = {}
        #: one renewal (login or refresh) at a time per credential: probes that find the token due
        #: while one is renewing it wait and use what it got, instead of spending the refresh token
        #: again (which a vendor that rotates refresh tokens would refuse)
        self._renewing = asyncio.Lock()

    def secrets(self) -> Sequence[str]:
        return [t for t in (self._access, self._refresh) if t]

    def variables(self) -> Mapping[str, str]:
        return self._vars

    def invalidate(self, used: HttpRequest | None) -> bool:
        """Compare and clear: only the token ``used`` carried is dropped. When targets share a login,
        the one another target got after it was refused must stand, or each of N targets would log in
        again once per round; a retry then uses it (or waits for the renewal under way). Nothing sent
        (the login failed) and no token now: nothing to retry."""
        if used is None:
            return self._access is not None
        if used.headers.get("Authorization") == self._bearer():
            self._access = self._refresh = None
            self._access_until = self._refresh_until = 0.0
        return True

    def _bearer(self) -> str:
        return f"Bearer {self._access}"

    async def sign(self, request: HttpRequest, now: float, send: Send) -> HttpRequest:
        renew_before: float = self.ctx.options.renew_before
        if self._due(now, renew_before):
            async with self._renewing:
                if self._due(now, renew_before):  # else a probe that held the lock renewed it
                    await self._renew(now, send)
        return self._authorized(request)

    async def _renew(self, now: float, send: Send) -> None:
        raise NotImplementedError

    def _due(self, now: float, renew_before: float) -> bool:
        return self._access is None or now >= self._access_until - renew_before

    def _can_refresh(self, now: float, renew_before: float) -> bool:
        return self._refresh is not None and now < self._refresh_until - renew_before

    @staticmethod
    def _token_answer(answer: Answer, code: str, catalog_reads: bool = False) -> Any:
        """The JSON of a token endpoint's answer; a refusal, a cut or invalid body is a SignError whose code
        starts with ``code``. With ``catalog_reads`` the refusal carries the answer, for the vendor's
        catalog to classify (AADSTS codes, OAuth's error field, Retry-After)."""
        if answer.status != 200:
            cls = "auth" if answer.status in (400, 401, 403) else "server_error"
            raise SignError(cls, f"{code}_{answer.status}", f"token endpoint answered HTTP {answer.status}",
                            answer.status, answer if catalog_reads else None)
        if answer.truncated:
            raise SignError("server_error", f"{code}_body", "token endpoint answer is larger than the body cap")
        try:
            return json.loads(answer.body)
        except (ValueError, RecursionError) as exc:
            raise SignError("server_error", f"{code}_body", "token endpoint answered invalid JSON") from exc

    async def _token_call(self, send: Send, request: HttpRequest, token_field: str) -> Mapping[str, Any]:
        """One call to a token endpoint; the answer must be JSON carrying ``token_field``."""
        data = self._token_answer(await send(request), "login")
        if not isinstance(data, dict) or not isinstance(data.get(token_field), str):
            raise SignError("server_error", "login_body", f"token endpoint answered without {token_field}")
        return data

    @staticmethod
    def _lifetime(data: Mapping[str, Any], key: str, fallback: float) -> float:
        """A lifetime in seconds from the token answer: a number, or digits in a string (as some token
        endpoints send ``expires_in``); else ``fallback``."""
        value = data.get(key)
        if isinstance(value, str) and value.isascii() and value.isdigit():
            value = int(value)
        if isinstance(value, int | float) and not isinstance(value, bool) and 0 < value < 10**9:
            return float(value)
        return fallback

    def _url(self, path_or_url: str) -> str:
        return self.ctx.base_url.rstrip("/") + path_or_url if path_or_url.startswith("/") else path_or_url

    def _learn(self, data: Mapping[str, Any], variables: Sequence[tuple[str, str]]) -> None:
        """Variables for request paths (``{name}``), each a dotted path in the token answer
        (movingimage: ``videoManagerList.0.id``); a credential of the same name wins."""
        for name, path in variables:
            value = json_path(data, path)
            if isinstance(value, str | int) and not isinstance(value, bool):
                self._vars.setdefault(name, str(value))
            if given := self.ctx.credentials.get(name):
                self._vars[name] = given

    def _authorized(self, request: HttpRequest) -> HttpRequest:
        return replace(request, headers={**request.headers, "Authorization": self._bearer()})


def _json_post(url: str, payload: Mapping[str, str]) -> HttpRequest:
    return HttpRequest("POST", url, headers={"Content-Type": "application/json"},
                       body=json.dumps(dict(payload)).encode())


def _form_post(url: str, form: Mapping[str, str]) -> HttpRequest:
    return HttpRequest("POST", url, headers={"Content-Type": "application/x-www-form-urlencoded"},
                       body=urlencode(dict(form)).encode())


class BearerLoginSigner(_TokenSigner):
    """Log in for a short-lived access token, refresh it before it expires, log in again once on 401."""

    Options = BearerLoginOptions

    async def _renew(self, now: float, send: Send) -> None:
        opts: BearerLoginOptions = self.ctx.options
        data: Mapping[str, Any] | None = None
        refresh_path = _fill(opts.refresh_path, self._vars) if opts.refresh_path else None
        if self._refresh and refresh_path is not None and self._can_refresh(now, opts.renew_before):
            try:
                data = await self._token_call(
                    send, _json_post(self._url(refresh_path), {opts.refresh_token_field: self._refresh}),
                    opts.access_token_field)
            except SignError:
                data = None  # a refused refresh is not an outage: fall through to a fresh login
        if data is None:
            creds = self.ctx.credentials
            data = await self._token_call(send, _json_post(self._url(opts.login_path), {
                opts.username_field: creds[opts.username_credential],
                opts.password_field: creds[opts.password_credential]}), opts.access_token_field)
        self._access = data[opts.access_token_field]
        self._access_until = now + opts.access_ttl
        refresh = data.get(opts.refresh_token_field) if opts.refresh_token_field else None
        if isinstance(refresh, str):
            self._refresh = refresh
            self._refresh_until = now + opts.refresh_ttl
        self._learn(data, opts.variables)


class OidcPasswordSigner(_TokenSigner):
    """OpenID Connect password grant (movingimage's newer login): a form POST to ``token_url`` for an
    access token, renewed with the refresh-token grant; lifetimes come from the answer's
    ``expires_in`` / ``refresh_expires_in``, else from the options."""

    Options = OidcPasswordOptions

    async def _renew(self, now: float, send: Send) -> None:
        opts: OidcPasswordOptions = self.ctx.options
        url = self._url(opts.token_url)
        data: Mapping[str, Any] | None = None
        if self._refresh and self._can_refresh(now, opts.renew_before):
            try:
                data = await self._token_call(send, _form_post(url, {
                    "grant_type": "refresh_token", "client_id": opts.client_id,
                    "refresh_token": self._refresh}), "access_token")
            except SignError:
                data = None  # a refused refresh is not an outage: fall through to a fresh login
        if data is None:
            creds = self.ctx.credentials
            data = await self._token_call(send, _form_post(url, {
                "grant_type": "password", "client_id": opts.client_id,
                "username": creds[opts.username_credential],
                "password": creds[opts.password_credential]}), "access_token")
        self._access = data["access_token"]
        self._access_until = now + self._lifetime(data, "expires_in", opts.access_ttl)
        if isinstance(data.get("refresh_token"), str):
            self._refresh = data["refresh_token"]
            self._refresh_until = now + self._lifetime(data, "refresh_expires_in", opts.refresh_ttl)
        self._learn(data, opts.variables)


class OAuth2Signer(_TokenSigner):
    """OAuth 2.0 client credentials (RFC 6749 section 4.4): a form POST to ``token_url`` for an access
    token, sent as ``Authorization: Bearer``. The token is kept until ``renew_before`` ahead of its
    ``expires_in`` (by the prober's clock); targets that share the credential share one signer, so one
    fetch serves them all, and probes that find it due meanwhile wait for that fetch. A refusal by the
    token endpoint is handed to the prober with its answer, which the vendor's catalog classifies
    (Entra ID's AADSTS codes: an expired client secret is ``auth``)."""

    Options = OAuth2Options

    def __init__(self, ctx: SignerContext) -> None:
        super().__init__(ctx)
        #: fetches started so far; how the last one failed (None: it got a token), and its number
        self._flights = 0
        self._failed: BaseException | None = None
        self._failed_flight = 0
        # RFC 6749 section 2.3.1: each part form-encoded before the pair is base64-encoded; made once,
        # as the credentials of a signer never change (secrets() is asked on every probe)
        client_id, secret = self._client()
        self._basic = "Basic " + base64.b64encode(f"{quote_plus(client_id)}:{quote_plus(secret)}".encode()).decode()

    async def sign(self, request: HttpRequest, now: float, send: Send) -> HttpRequest:
        renew_before: float = self.ctx.options.renew_before
        if self._due(now, renew_before):
            # the first fetch whose outcome this probe takes: the one under way, else the next
            accepted = self._flights if self._renewing.locked() else self._flights + 1
            async with self._renewing:
                if self._due(now, renew_before):
                    if self._failed is not None and self._failed_flight >= accepted:
                        # the fetch this probe waited for failed: its answer holds for every probe that
                        # waited, without another request each (a token endpoint down meets one, not N)
                        raise _again(self._failed)
                    self._flights += 1
                    try:
                        await self._renew(now, send)
                    except Exception as exc:
                        self._failed, self._failed_flight = exc, self._flights
                        raise
                    self._failed = None
        return self._authorized(request)

    def _client(self) -> tuple[str, str]:
        opts: OAuth2Options = self.ctx.options
        return self.ctx.credentials[opts.client_id_credential], self.ctx.credentials[opts.client_secret_credential]

    def secrets(self) -> Sequence[str]:
        return [*super().secrets(), self._basic, self._basic.removeprefix("Basic ")]

    def token_request(self) -> HttpRequest:
        """The token request, as sent: what the token endpoint documents for the client credentials grant."""
        opts: OAuth2Options = self.ctx.options
        form = {"grant_type": "client_credentials"}
        if opts.scopes:
            form["scope"] = " ".join(opts.scopes)
        form.update(dict(opts.endpoint_params))
        headers = {"Content-Type": "application/x-www-form-urlencoded", "Accept": "application/json"}
        if opts.client_auth == "basic":
            headers["Authorization"] = self._basic
        else:
            client_id, secret = self._client()
            form["client_id"], form["client_secret"] = client_id, secret
        url = self._url(opts.token_url.format_map(dict(self.ctx.credentials)))
        return HttpRequest("POST", url, headers=headers, body=urlencode(form).encode())

    async def _renew(self, now: float, send: Send) -> None:
        opts: OAuth2Options = self.ctx.options
        data = self._token_answer(await send(self.token_request()), "token", catalog_reads=True)
        token = data.get("access_token") if isinstance(data, dict) else None
        if not isinstance(token, str) or not token:
            raise SignError("server_error", "token_body", "token endpoint answered without access_token")
        self._access = token
        self._access_until = now + self._lifetime(data, "expires_in", opts.access_ttl)


def _again(failed: BaseException) -> BaseException:
    """A fresh exception like ``failed``, for another probe to raise (not the same object in two tasks)."""
    try:
        # its fields or args and attributes (a SignError or TransportError record, a refused connection's OSError)
        return copy.copy(failed)
    except Exception:  # noqa: BLE001 - one that cannot be copied is raised again as it is
        return failed


def _fill(template: str, variables: Mapping[str, str]) -> str | None:
    """``template`` with its ``{name}`` variables filled in, or None while one is still unknown."""
    try:
        return template.format_map(dict(variables))
    except (KeyError, ValueError):
        return None


SIGNERS: dict[str, type[_Stateless]] = {
    "none": NoSigner,
    "header": HeaderSigner,
    "basic": BasicSigner,
    "md5_sorted_params": Md5ParamsSigner,
    "rubiq_hmac": RubiqSigner,
    "bearer_login": BearerLoginSigner,
    "oidc_password": OidcPasswordSigner,
    "oauth2": OAuth2Signer,
    "sigv4": SigV4Signer,
}


def make_signer(name: str, ctx: SignerContext) -> Signer:
    return SIGNERS[name](ctx)
