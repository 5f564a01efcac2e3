"""One health-check call: build the request from the target's check, sign it, send it, time it,
read a capped body and hand the answer to the classifier.

This is the one request path: probes, quota calls and the logins and refreshes of signer plug-ins
(which get ``send`` from here and never do I/O of their own) all go through ``Prober._send``, with
the same body cap, decompression and timeout; libcurl does the sending (engine.py). Transport
failures (curl's error codes) are mapped to a short bounded code in exactly one place
(``_failure``). A signer that holds a token gets exactly one fresh login after an ``auth`` answer
before that answer counts.
"""

from __future__ import annotations

import asyncio
import contextlib
import contextvars
import errno
import json
import sys
import time
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, replace
from types import MappingProxyType
from urllib.parse import urlsplit

import pycurl

from .catalog import CheckSpec, QuotaSpec
from .classify import classify, explain, read_quotas
from .clock import Clock
from .config import Credentials, Target, secrets_of
from .egress import Egress
from .engine import (
    E_HTTP2_STREAM,
    E_HTTP3,
    E_PROXY,
    E_QUIC_CONNECT,
    E_SSL_CLIENTCERT,
    E_TOO_LARGE,
    E_WEIRD_SERVER_REPLY,
    TransportError,
    new_session,
)
from .engine import Session as Client
from .httpconfig import HttpClient
from .model import UP, Answer, Explanation, Failure, HttpRequest, Outcome, ProbeResult, QuotaReading, SignError
from .redact import REDACTED, Redactor, redact
from .signatures import wire_url
from .signers import Signer, SignerContext, make_signer
from .trace import TraceStep, render_trace

__all__ = ["ProbeResult", "Prober", "build_request", "redact"]

EXCERPT_BYTES = 512

#: one request of a probe, for its trace: (kind, request, answer or exception, the target's HTTP client)
_Step = tuple[str, HttpRequest, Answer | BaseException, HttpClient | None]
#: the requests of the probe under way in this task; None outside a probe. A context variable: a
#: signer's login goes through ``send`` without knowing it
_STEPS: contextvars.ContextVar[list[_Step] | None] = contextvars.ContextVar("apistatus_trace_steps", default=None)
#: set (to True) by a caller that wants the probe it starts traced whatever ``TRACE_EVERY`` says: the
#: CLI's ``probe --debug`` and ``/probe?debug=true`` (a task made meanwhile, the scheduler's on-demand
#: probe, inherits it)
FORCE_TRACE: contextvars.ContextVar[bool] = contextvars.ContextVar("apistatus_force_trace", default=False)
#: a probe is traced when its class or code differs from the target's last traced probe, else when that
#: trace is older than this (seconds; successes, failures): rendering a trace costs a large share of a
#: probe, and a repeat of the same answer tells little more (a fleet-wide outage must not pay it per probe)
TRACE_EVERY = (300.0, 60.0)
#: request headers whose values a trace shows (the whole trace is redacted too); any other header's value
#: is shown only when the catalog's check sets it, since a signer's headers carry keys and signatures
_PLAIN_HEADERS = frozenset({"accept", "accept-encoding", "content-type", "content-length", "user-agent"})


@dataclass(frozen=True, slots=True)
class _Attempt:
    """One signed request and what came of it."""

    request: HttpRequest | None  # None: signing failed, nothing of the check was sent
    result: Answer | Failure
    #: HTTP requests it cost, logins and refreshes of the signer included
    requests: int


class _Shown:
    """Per target, what its probes reuse while the target (config) and its secrets stay the same: the
    redactor for its secrets, the check's request when it is the same every time, and the last message,
    code, request line and small body with what was shown for each: a probe mostly repeats the last
    one, and a repeat is then one comparison instead of a redaction. Made anew when a secret changes,
    so what it remembers was redacted with the secrets in force."""

    __slots__ = ("body", "code", "code_shown", "excerpt", "learnt", "line", "line_shown", "message",
                 "message_shown", "redact", "request", "target")

    def __init__(self, target: Target, learnt: tuple[str, ...], secrets: list[str]) -> None:
        self.target = target
        self.learnt = learnt  # the signer's own secrets (learnt tokens) these were made with
        self.redact = Redactor(secrets)
        self.request: HttpRequest | None = None
        self.body: bytes | None = None
        self.excerpt = ""
        self.message = self.message_shown = self.code = self.code_shown = self.line = self.line_shown = ""

    def shown_message(self, message: str) -> str:
        if message != self.message:
            shown = sys.intern(self.redact(message))
            self.message, self.message_shown = (shown if shown == message else message), shown
        return self.message_shown

    def shown_code(self, code: str) -> str:
        if code != self.code:
            code = sys.intern(code)
            # a vendor echoing a secret as its error code: the code is a label in /metrics
            self.code, self.code_shown = code, ("redacted" if self.redact(code) != code else code)
        return self.code_shown

    def shown_line(self, line: str) -> str:
        if line != self.line:
            # interned: targets of one vendor and base URL mostly show the same line, kept once
            shown = sys.intern(self.redact(line))
            self.line, self.line_shown = (shown if shown == line else line), shown
        return self.line_shown


#: a body this long or shorter is remembered with its excerpt (per target, so memory stays bounded)
_REMEMBERED_BODY = EXCERPT_BYTES
_NO_HEADERS: Mapping[str, str] = MappingProxyType({})
#: distinct remembered bodies shared among targets before the table starts again
_SHARED_BODIES = 1024


def build_request(base_url: str, check: CheckSpec, variables: Mapping[str, str] | None = None) -> HttpRequest:
    """The base URL may carry a path prefix; the check's path is appended, never replaces it."""
    path = check.path
    if variables and "{" in path:
        # a variable the signer has not learnt yet: send as is, and the vendor answers 404
        with contextlib.suppress(KeyError, ValueError):
            path = path.format_map(dict(variables))
    headers = dict(check.headers)
    return HttpRequest(check.method, base_url + path, check.params, headers,
                       check.body.encode() if check.body is not None else None)


# curl's error codes (pycurl names most; the newer ones are numbers), grouped by what they mean here
_TIMEOUT = {pycurl.E_OPERATION_TIMEDOUT}
_DNS = {pycurl.E_COULDNT_RESOLVE_HOST}
_CONNECT = {pycurl.E_COULDNT_CONNECT, pycurl.E_INTERFACE_FAILED, E_QUIC_CONNECT}
_TLS = {pycurl.E_SSL_CONNECT_ERROR, pycurl.E_PEER_FAILED_VERIFICATION, pycurl.E_SSL_CERTPROBLEM,
        pycurl.E_SSL_CIPHER, pycurl.E_SSL_CACERT_BADFILE, pycurl.E_SSL_SHUTDOWN_FAILED, pycurl.E_SSL_ISSUER_ERROR,
        pycurl.E_SSL_PINNEDPUBKEYNOTMATCH, pycurl.E_SSL_INVALIDCERTSTATUS, pycurl.E_SSL_ENGINE_INITFAILED,
        pycurl.E_USE_SSL_FAILED, E_SSL_CLIENTCERT}
_RESET = {pycurl.E_GOT_NOTHING, pycurl.E_RECV_ERROR, pycurl.E_SEND_ERROR, pycurl.E_PARTIAL_FILE, E_HTTP2_STREAM,
          pycurl.E_SEND_FAIL_REWIND}
_PROTOCOL = {pycurl.E_UNSUPPORTED_PROTOCOL, E_WEIRD_SERVER_REPLY, pycurl.E_HTTP2, E_TOO_LARGE,
             pycurl.E_TOO_MANY_REDIRECTS, pycurl.E_CHUNK_FAILED, E_HTTP3}
#: what OpenSSL says when the bytes where a TLS handshake should be are no TLS at all
_NOT_TLS = ("wrong version number", "packet length too long", "record layer failure", "unexpected eof")


def _failure(exc: BaseException) -> Failure:
    """The one map of transport failures to a class and a short bounded code."""
    if isinstance(exc, TimeoutError):
        return Failure("timeout", "timeout", "no complete answer within the timeout")
    if not isinstance(exc, TransportError):
        return Failure("network_error", "other", f"{exc.__class__.__name__}")
    code = exc.code
    if code in _TIMEOUT:
        return Failure("timeout", "timeout", "no complete answer within the timeout")
    if code == pycurl.E_BAD_CONTENT_ENCODING:
        # an answer came, but its body cannot be read: what it means is unknown, not a network fault
        enc = exc.encoding[:40] or "unknown"
        return Failure("unknown", "undecodable_body",
                       f"the body could not be decoded (Content-Encoding: {enc})", exc.status)
    if exc.proxy is not None:
        # through a proxy: "our proxy is down" must not read as "the vendor is down"
        status = exc.proxy_status
        if status in (401, 407):  # 407 is the standard; some proxies (tinyproxy) say 401 to wrong ones
            return Failure("network_error", "proxy_auth", f"the proxy refused our proxy credentials ({status})")
        if status and not 200 <= status < 300:
            return Failure("network_error", "proxy_error", f"the proxy refused to connect us to the vendor ({status})")
        if code in _CONNECT or code == pycurl.E_COULDNT_RESOLVE_PROXY or (
                code in _TLS and exc.proxy.url.startswith("https:") and not status):
            # (TLS to an https:// proxy fails before any CONNECT is answered)
            return Failure("network_error", "proxy_connect", "could not connect to the proxy")
        if code == E_PROXY:  # a SOCKS proxy's refusal or failure
            return Failure("network_error", "proxy_error", "the proxy could not connect us to the vendor")
        if not status and code in _RESET | _PROTOCOL:
            # nothing usable came back to CONNECT: garbage, a close, a banner of another protocol
            return Failure("network_error", "proxy_error", "the proxy's answer to CONNECT was not HTTP")
        if code in _TLS and any(text in str(exc).lower() for text in _NOT_TLS):
            return Failure("network_error", "proxy_error", "the proxy sent bytes that are not TLS where the "
                           "vendor's TLS handshake should be")
    if code in _TLS or (code in _RESET and " alert " in str(exc).lower()):
        # a TLS alert read after the handshake is the server's refusal too (TLS 1.3's "certificate required")
        return Failure("network_error", "tls", "TLS handshake or certificate check failed")
    if code in _DNS:
        return Failure("network_error", "dns", "DNS lookup failed")
    if code in _CONNECT:
        if exc.os_errno == errno.ECONNREFUSED:
            return Failure("network_error", "refused", "connection refused")
        return Failure("network_error", "connect", "could not connect")
    if code in _RESET and "too large" not in str(exc).lower():  # curl says "Too large response headers"
        return Failure("network_error", "reset", "connection closed before a complete answer")
    if code in _RESET:
        return Failure("network_error", "protocol", "invalid HTTP answer (malformed or oversized headers)")
    if code in _PROTOCOL:
        return Failure("network_error", "protocol", "invalid HTTP answer (malformed or oversized headers)")
    return Failure("network_error", "other", f"curl error {code}")


def _cut(outcome: Outcome, max_body: int) -> Outcome:
    """A body cut at the cap: what it says is not all the vendor said, so it is never ok, and the
    message says why."""
    message = f"the body was cut at max_body_bytes ({max_body} bytes); {outcome.message}"
    return replace(outcome, cls="unknown" if outcome.cls in UP else outcome.cls, message=message)


class Prober:
    """Sends probes over one shared HTTP client (its session); keeps one signer per target."""

    def __init__(self, session: Client, clock: Clock, max_body: int = 1 << 20,
                 egress: Egress | None = None) -> None:
        self.session = session
        self.clock = clock
        self.max_body = max_body
        self._signers: dict[str, tuple[Target, Signer]] = {}
        #: one signer per credential (scheme, options, base URL, credentials): targets that share a
        #: login share its token and its single-flight renewal, so a refresh token is spent once
        self._by_credential: dict[tuple[str, str, str, Credentials], Signer] = {}
        #: the check's request per base URL and check (it holds nothing of a target's own): targets of
        #: one vendor and base URL share one, see ``_attempt``; emptied by ``forget`` (a reload)
        self._requests: dict[tuple[str, CheckSpec], HttpRequest] = {}
        #: the small bodies the targets remember (see ``_Shown``), one copy of each: many targets
        #: get the same answer. Bounded: emptied when full (a target then keeps its own copy).
        self._bodies: dict[bytes, bytes] = {}
        #: sessions by http_client settings; targets without the block use ``session``
        self.egress = egress or Egress(session, new_session)

    #: per target, see ``_Shown``; made on first use
    _shown_by_target: dict[str, _Shown]

    def signer(self, target: Target) -> Signer:
        held = self._signers.get(target.name)
        # the same Target object as last time is the usual case: no need to compare the whole config
        if held is not None and held[0] is target:
            return held[1]
        if held is None or held[0] != target:
            # the target's own Credentials compare by value: the key needs no copy of them
            key = (target.catalog.signer, sys.intern(repr(target.catalog.signer_options)), target.base_url,
                   target.credentials)
            signer = self._by_credential.get(key)
            if signer is None:
                ctx = SignerContext(target.credentials, target.catalog.signer_options, target.base_url)
                signer = self._by_credential[key] = make_signer(target.catalog.signer, ctx)
            held = (target, signer)
            self._signers[target.name] = held
        return held[1]

    def forget(self, keep: Iterable[str]) -> None:
        keep_set = set(keep)
        for name in [n for n in self._signers if n not in keep_set]:
            del self._signers[name]
        shown = self._shown_table()
        for name in [n for n in shown if n not in keep_set]:
            del shown[name]
        traced = self._traced_table()
        for name in [n for n in traced if n not in keep_set]:
            del traced[name]
        self._requests.clear()
        used = {id(signer) for _, signer in self._signers.values()}
        for key in [k for k, signer in self._by_credential.items() if id(signer) not in used]:
            del self._by_credential[key]

    # --- the one request path ------------------------------------------------------------------

    async def _send(self, req: HttpRequest, deadline: float, client: HttpClient | None = None, *,
                    detail: bool = False) -> Answer:
        """Send one request and read its whole body (decoded by curl) up to the cap; ``detail``: a debug
        trace's request, on a new connection and with its TLS version (engine.Session.request)."""
        session = self.egress.session(client)
        resp = await session.request(req.method, wire_url(req), req.headers, req.body,
                                     max(deadline, time.monotonic() + 0.05), self.max_body, detail=detail)
        return Answer(resp.status, resp.headers, resp.body, resp.truncated, resp.cert_expiry, resp.phases,
                      resp.tls, resp.cert_validity)

    # --- for the steps that are no probe: status pages and egress checks ------------------------

    async def fetch(self, req: HttpRequest, timeout: float, client: HttpClient | None = None) -> Answer | Failure:
        """One unsigned request through the one request path (its cap, decompression, egress routes and
        transport-failure map): exporter/vendorstatus.py and exporter/egresscheck.py call this."""
        try:
            async with asyncio.timeout(timeout):
                return await self._send(req, time.monotonic() + timeout, client)
        except Exception as exc:  # noqa: BLE001 - every transport failure is an outcome, never a crash
            return _failure(exc)

    # --- one probe, step by step ---------------------------------------------------------------

    def _shown_table(self) -> dict[str, _Shown]:
        try:
            return self._shown_by_target
        except AttributeError:  # made here, not in the constructor
            self._shown_by_target = {}
            return self._shown_by_target

    def _shown(self, target: Target, signer: Signer) -> _Shown:
        """The target's ``_Shown``, made afresh when its config or its signer's secrets changed."""
        table = self._shown_table()
        shown = table.get(target.name)
        learnt = tuple(signer.secrets())
        if shown is None or shown.target is not target or shown.learnt != learnt:
            shown = table[target.name] = _Shown(target, learnt, secrets_of(target, signer))
        return shown

    def _request(self, base_url: str, check: CheckSpec) -> HttpRequest:
        """The check's request when its path has no variables: the same for every target with this base
        URL, so one object serves them all (the signer adds what is the target's own to a copy)."""
        key = (base_url, check)
        request = self._requests.get(key)
        if request is None:
            made = build_request(base_url, check)
            # shared by every probe of these targets: its headers must not be changed in place
            headers = MappingProxyType(dict(made.headers)) if made.headers else _NO_HEADERS
            request = self._requests[key] = HttpRequest(made.method, made.url, made.params, headers, made.body)
        return request

    def _body(self, body: bytes) -> bytes:
        bodies = self._bodies
        if len(bodies) >= _SHARED_BODIES:
            bodies.clear()
        return bodies.setdefault(body, body)

    def _variables(self, target: Target, signer: Signer) -> Mapping[str, str]:
        """Path variables: what the signer learnt, and any optional credential the target gives."""
        given = {n: target.credentials[n] for n in target.catalog.optional_credentials if n in target.credentials}
        return {**signer.variables(), **given}

    async def _attempt(self, target: Target, signer: Signer, check: CheckSpec, deadline: float) -> _Attempt:
        """One signed request; the signer's own calls go through the same path and count too."""
        if "{" in check.path:  # path variables: what the signer learnt may change between probes
            request = build_request(target.base_url, check, self._variables(target, signer))
        elif check is target.check:  # the same request every time: made once per target (and config)
            shown = self._shown_table().get(target.name)
            if shown is None or shown.target is not target:
                shown = self._shown(target, signer)
            if shown.request is None:
                shown.request = self._request(target.base_url, check)
            request = shown.request
        else:
            request = build_request(target.base_url, check)
        sent = 0
        signing = True  # a request sent while signing is the signer's login or refresh (for the trace)

        async def send(req: HttpRequest) -> Answer:
            nonlocal sent
            sent += 1
            if (steps := _STEPS.get()) is not None:
                kind = "login" if signing else "check" if check is target.check else "quota"
                return await self._send_traced(steps, kind, req, deadline, target.http_client)
            return await self._send(req, deadline, target.http_client)

        try:
            if getattr(signer, "offline", False):  # it cannot hang: no timer to set and cancel
                signed = await signer.sign(request, self.clock.time(), send)
            else:
                # asyncio.timeout, not wait_for: wait_for wraps the coroutine in a task of its own
                async with asyncio.timeout(max(0.05, deadline - time.monotonic())):
                    signed = await signer.sign(request, self.clock.time(), send)
        except SignError as exc:  # a token endpoint's own answer is classified with the vendor's catalog
            return _Attempt(None, exc.answer or Failure(exc.cls, exc.code, exc.message, exc.http_status), sent)
        except Exception as exc:  # noqa: BLE001 - a login call failed in transport: the same map
            return _Attempt(None, _failure(exc), max(1, sent))
        signing = False
        try:
            answer: Answer | Failure = await send(signed)
        except Exception as exc:  # noqa: BLE001 - every transport failure is an outcome, never a crash
            answer = _failure(exc)
        return _Attempt(signed, answer, sent)

    async def _checked(self, target: Target, signer: Signer,
                       deadline: float) -> tuple[_Attempt, Outcome, int, int]:
        """The check, classified; after an ``auth`` answer a cached token may simply have expired,
        so the signer logs in again once before ``auth`` counts. Returns the last attempt, its
        outcome, the number of attempts and the requests they cost."""
        attempt = await self._attempt(target, signer, target.check, deadline)
        outcome = self._classify(target, attempt.result)
        if outcome.cls != "auth" or not signer.invalidate(attempt.request):
            return attempt, outcome, 1, attempt.requests
        retry = await self._attempt(target, signer, target.check, deadline)
        return retry, self._classify(target, retry.result), 2, attempt.requests + retry.requests

    def _classify(self, target: Target, result: Answer | Failure) -> Outcome:
        outcome = classify(target.catalog, result, self.clock.time())
        if isinstance(result, Answer) and result.truncated:
            return _cut(outcome, self.max_body)
        return outcome

    async def probe(self, target: Target) -> ProbeResult:
        steps = _STEPS.set([])  # this probe's requests, for its trace (see ``_trace``)
        try:
            return await self._probe(target)
        finally:
            _STEPS.reset(steps)

    async def _probe(self, target: Target) -> ProbeResult:
        signer = self.signer(target)
        started_wall = self.clock.time()
        t0 = time.perf_counter()
        deadline = time.monotonic() + target.timeout
        attempt, outcome, attempts, spent = await self._checked(target, signer, deadline)
        duration = time.perf_counter() - t0
        if outcome.cls in UP:
            extra, cost = await self._quota_calls(target, signer, deadline)
            spent += cost
            if extra:
                outcome = replace(outcome, quotas=outcome.quotas + tuple(extra))
        return self._result(target, signer, started_wall, duration, outcome, attempt, attempts, spent)

    def _result(self, target: Target, signer: Signer, started: float, duration: float, outcome: Outcome,
                attempt: _Attempt, attempts: int, spent: int) -> ProbeResult:
        """The record for state and views, every secret (credentials and learnt tokens) redacted."""
        shown = self._shown(target, signer)  # after the probe: with the tokens it may have learnt
        signed = attempt.request
        line = shown.shown_line(_request_line(signed, target.check)) if signed else f"{target.check.method} (not sent)"
        excerpt = ""
        if isinstance(attempt.result, Answer):
            body = attempt.result.body
            if body == shown.body:
                excerpt = shown.excerpt
            else:
                # interned (it is already redacted): targets with the same answer keep one copy
                excerpt = sys.intern(_excerpt(body, shown.redact))
                if len(body) <= _REMEMBERED_BODY:
                    shown.body, shown.excerpt = self._body(body), excerpt
        message, code = shown.shown_message(outcome.message), shown.shown_code(outcome.code)
        if message != outcome.message or code != outcome.code:
            outcome = replace(outcome, message=message, code=code)
        answer = attempt.result if isinstance(attempt.result, Answer) else None
        expiry = answer.tls_cert_expiry if answer is not None else None
        return ProbeResult(target.name, started, duration, outcome, line, excerpt, attempts, spent, expiry,
                           answer.phases if answer is not None else None,
                           self._trace(target, shown, started, duration, outcome, attempt, attempts, spent))

    async def _quota_calls(self, target: Target, signer: Signer,
                           deadline: float) -> tuple[list[QuotaReading], int]:
        """Separate read-only calls that carry quota figures, one per distinct request."""
        by_request: dict[CheckSpec, list[QuotaSpec]] = {}
        for quota in target.catalog.quota:
            if quota.request is not None:
                by_request.setdefault(quota.request, []).append(quota)
        readings: list[QuotaReading] = []
        spent = 0
        for check, specs in by_request.items():
            attempt = await self._attempt(target, signer, check, deadline)
            spent += attempt.requests
            result = attempt.result
            if isinstance(result, Answer) and 200 <= result.status < 300:
                try:
                    doc = json.loads(result.body)
                except (ValueError, RecursionError):
                    continue
                readings.extend(read_quotas(tuple(specs), result, doc, self.clock.time()))
        return readings, spent

    # --- the trace of a probe (exporter/trace.py renders it) ----------------------------------------

    def _traced_table(self) -> dict[str, tuple[Target, float, str, str]]:
        """Per target: its config, when its last traced probe was traced, and that one's class and code."""
        try:
            return self._traced_by_target
        except AttributeError:  # made here, not in the constructor
            self._traced_by_target: dict[str, tuple[Target, float, str, str]] = {}
            return self._traced_by_target

    async def _send_traced(self, steps: list[_Step],
                           kind: str, req: HttpRequest, deadline: float, client: HttpClient | None) -> Answer:
        try:
            answer = await self._send(req, deadline, client, detail=FORCE_TRACE.get())
        except BaseException as exc:
            if len(steps) < 16:
                steps.append((kind, req, exc, client))
            raise
        if len(steps) < 16:  # a signer looping on logins must not grow a trace without end
            steps.append((kind, req, answer, client))
        return answer

    def _trace(self, target: Target, shown: _Shown, started: float, duration: float, outcome: Outcome,
               attempt: _Attempt, attempts: int, spent: int) -> str | None:
        """The probe's trace, or None when it repeats the last traced one's class and code (``TRACE_EVERY``)."""
        steps = _STEPS.get()
        if steps is None:
            return None
        table = self._traced_table()
        now = self.clock.time()
        held = table.get(target.name)
        # (a reload makes new Target objects: the first probe after one is traced, its state may be new)
        if (held is not None and held[0] is target and held[2] == outcome.cls and held[3] == outcome.code
                and now - held[1] < TRACE_EVERY[outcome.cls not in UP] and not FORCE_TRACE.get()):
            return None
        table[target.name] = (target, now, outcome.cls, outcome.code)
        if attempt.request is None and isinstance(attempt.result, Failure):
            why = Explanation("the signer: the check was not sent", f"{attempt.result.code}: {attempt.result.message}",
                              outcome.cls, outcome.code)
        else:
            why = explain(target.catalog, attempt.result, now)
        public = set(target.check.headers) | {(k, v) for check in (q.request for q in target.catalog.quota) if check
                                              for k, v in check.headers}
        out = []
        for kind, req, result, client in steps:
            # the settings the request went out with (no session is looked up: that could make one)
            settings = client if client is not None else self.egress.default.client
            parts = urlsplit(req.url)
            proxy = settings.proxy_for(parts.scheme, (parts.hostname or "").lower(), parts.port)
            sent = tuple((name, value if (name, value) in public or name.lower() in _PLAIN_HEADERS else REDACTED)
                     for name, value in req.headers.items())
            if isinstance(result, BaseException):
                # cancelled: the probe's timeout ran out while signing (asyncio.timeout cancels the call)
                failed = _failure(TimeoutError() if isinstance(result, asyncio.CancelledError) else result)
                out.append(TraceStep(kind, _request_line(req, target.check), sent, failed,
                                     f"{result.__class__.__name__}: {result}", proxy.shown if proxy else ""))
            else:
                out.append(TraceStep(kind, _request_line(req, target.check), sent, result, "",
                                     proxy.shown if proxy else ""))
        return render_trace(target.name, target.vendor, started, duration, outcome, attempts, spent, out, why,
                            shown.redact, lambda body: _excerpt(body, shown.redact))


def _excerpt(body: bytes, secrets: Sequence[str] | Redactor) -> str:
    """The start of the body, redacted as a whole first: a secret straddling the cut must not leave
    its first part behind."""
    text = body.decode("utf-8", "replace")
    shown = (secrets(text) if isinstance(secrets, Redactor) else redact(text, secrets)).encode()
    return shown[:EXCERPT_BYTES].decode("utf-8", "ignore")


def _request_line(req: HttpRequest, check: CheckSpec, secrets: Sequence[str] | None = None) -> str:
    """Method and URL with every parameter the signer added (keys, timestamps, signatures) masked,
    then redacted with ``secrets`` (None: the caller redacts)."""
    public = {k for k, _ in check.params}
    shown = [(k, v if k in public else REDACTED) for k, v in req.params]
    query = "&".join(f"{k}={v}" for k, v in shown)
    line = f"{req.method} {req.url}{'?' + query if query else ''}"
    return line if secrets is None else redact(line, secrets)
