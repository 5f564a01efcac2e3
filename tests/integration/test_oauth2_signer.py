"""The oauth2 signer (client credentials) against real loopback servers: Microsoft Graph's simulator
with its Entra ID token endpoint, and a bare token endpoint for what the simulator cannot show. One
FakeClock drives the prober and the simulator, so token lifetimes pass without sleeping.

Covered: the token is cached until shortly before expires_in; one fetch however many targets share the
credential (single flight); a 401 with a cached token fetches a new one once; the token endpoint down
or unreachable; an expired or wrong client secret classified by the catalog (auth, not unknown), with
neither the secret nor the token shown anywhere."""

from __future__ import annotations

import asyncio
import base64
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any
from urllib.parse import parse_qsl

import pytest
from aiohttp import web

from exporter.clock import FakeClock
from exporter.config import Config, Target, secrets_of
from exporter.engine import new_session
from exporter.model import ProbeResult
from exporter.probe import Prober
from exporter.simulators.msgraph import TOKEN_TTL, MsgraphSimulator

from ..conftest import config_from, serve


@dataclass(frozen=True)
class Graph:
    """The Graph simulator on a fake clock, a prober (with its own session) on the same clock, and a
    target of the simulator."""

    sim: MsgraphSimulator
    clock: FakeClock
    prober: Prober
    target: Target

    async def probe_when(self, **settings: Any) -> ProbeResult:
        """One probe of ``target``, the simulator switched to ``settings`` first (none: as it is)."""
        self.sim.control(**settings)
        return await self.prober.probe(self.target)


@pytest.fixture
async def graph() -> AsyncIterator[Graph]:
    clock = FakeClock()
    sim = MsgraphSimulator(clock)
    await sim.start()
    try:
        async with new_session() as session:
            yield Graph(sim, clock, Prober(session, clock), graph_config(sim).targets[0])
    finally:
        await sim.close()


#: a token endpoint on a port nobody listens on
NOWHERE = "http://127.0.0.1:1/{tenant_id}/oauth2/v2.0/token"


def graph_config(sim: MsgraphSimulator, n: int = 1, token_url: str | None = None, name: str = "graph",
                 **credentials: str) -> Config:
    """``n`` targets of the simulator; with ``token_url``, the signer fetches its tokens there instead."""
    vendor = sim.catalog_override() if token_url is None else {"signer": {"options": {"token_url": token_url}}}
    return config_from({
        "vendors": {"msgraph": vendor},
        "targets": [{"name": f"{name}{i}", "vendor": "msgraph", "base_url": sim.base_url,
                     "credentials": {**sim.credentials(), **credentials}} for i in range(n)]})


def shown(result: ProbeResult) -> str:
    return " ".join([result.outcome.message, result.outcome.code, result.request_line, result.excerpt])


async def test_the_token_is_fetched_once_and_kept_until_shortly_before_it_expires(
        graph: Graph) -> None:
    sim, clock, prober, target = graph.sim, graph.clock, graph.prober, graph.target
    first = await prober.probe(target)
    assert (first.outcome.cls, first.requests) == ("ok", 2)  # the token request counts as a request
    for _ in range(3):
        await clock.advance(600)
        again = await prober.probe(target)
        assert (again.outcome.cls, again.requests) == ("ok", 1)
    assert sim.counts["token"] == 1
    # renew_before (30 s) ahead of expires_in: a new token before the vendor would refuse the old one
    await clock.advance(TOKEN_TTL - 1800 - 30)
    renewed = await prober.probe(target)
    assert (renewed.outcome.cls, renewed.requests) == ("ok", 2)
    assert sim.counts["token"] == 2
    assert sim.counts["health"] == 5


async def test_targets_sharing_a_credential_share_one_token_fetch(graph: Graph) -> None:
    sim, clock, prober = graph.sim, graph.clock, graph.prober
    targets = graph_config(sim, 20).targets
    results = await asyncio.gather(*(prober.probe(t) for t in targets))
    assert [r.outcome.cls for r in results] == ["ok"] * 20
    assert sim.counts["token"] == 1  # single flight: nineteen probes waited for the first one's fetch
    assert sorted(r.requests for r in results) == [1] * 19 + [2]
    await clock.advance(TOKEN_TTL)
    await asyncio.gather(*(prober.probe(t) for t in targets))
    assert sim.counts["token"] == 2


async def test_a_refused_token_is_replaced_once_then_the_answer_counts(
        graph: Graph) -> None:
    sim = graph.sim
    assert (await graph.probe_when()).outcome.cls == "ok"
    recovered = await graph.probe_when(revoke_tokens=True)  # the vendor ends every session: ours is refused
    assert (recovered.outcome.cls, recovered.attempts, recovered.requests) == ("ok", 2, 3)
    assert sim.counts["token"] == 2
    # a token the vendor refuses even fresh: one new fetch, then the 401 counts
    sim.control(revoke_tokens=True)
    sim.tokens = _Forgetful()  # issued tokens are never accepted
    refused = await graph.probe_when()
    assert (refused.outcome.cls, refused.outcome.code, refused.attempts) == ("auth", "InvalidAuthenticationToken", 2)
    assert sim.counts["token"] == 3


class _Forgetful(dict[str, float]):
    def __setitem__(self, key: str, value: float) -> None:
        pass


async def test_an_expired_client_secret_is_auth_with_the_aadsts_code_and_shows_no_secret(
        graph: Graph) -> None:
    prober, target = graph.prober, graph.target
    expired = await graph.probe_when(secret_expired=True)
    wrong = await graph.probe_when(reset=True, rotated=True)
    ok = await graph.probe_when(reset=True)
    token = prober.signer(target).secrets()[0]
    assert (expired.outcome.cls, expired.outcome.code, expired.outcome.http_status) == ("auth", "7000222", 401)
    assert "expired" in expired.outcome.message
    assert (wrong.outcome.cls, wrong.outcome.code) == ("auth", "7000215")
    assert expired.attempts == 1  # no token was sent, so there is nothing to fetch again
    assert "AADSTS7000222" in expired.excerpt  # the token endpoint's answer is what on call reads
    secret = target.credentials["client_secret"]
    for result in (expired, wrong, ok):
        assert secret not in shown(result)
    assert ok.outcome.cls == "ok" and token and token in secrets_of(target, prober.signer(target))
    assert token not in shown(ok)


async def test_the_token_endpoint_down_or_unreachable_is_not_the_apis_fault(
        graph: Graph) -> None:
    sim = graph.sim
    down = await graph.probe_when(token_down=True)
    assert sim.counts["health"] == 0  # no token, no call to Graph
    unreachable = await graph.prober.probe(graph_config(sim, token_url=NOWHERE, name="gone").targets[0])
    assert (down.outcome.cls, down.outcome.code, down.outcome.http_status) == (
        "server_error", "temporarily_unavailable", 503)
    assert (unreachable.outcome.cls, unreachable.outcome.code) == ("network_error", "refused")


class TokenEndpoint:
    """A bare RFC 6749 token endpoint and API: records how the client authenticated."""

    def __init__(self) -> None:
        self.seen: list[tuple[str, dict[str, str]]] = []
        self.expires_in: Any = 120
        self.status = 200
        self.headers: dict[str, str] = {}
        self.body: bytes | None = None  # a token answer of its own
        self.echo = False  # refusals repeat the form sent (a careless token endpoint)

    async def handle(self, request: web.Request) -> web.Response:
        if request.path == "/token":
            form = dict(parse_qsl((await request.read()).decode()))
            self.seen.append((request.headers.get("Authorization", ""), form))
            if self.status != 200:
                echoed = {"form": form} if self.echo else {}
                return web.json_response({"error": "slow_down", **echoed}, status=self.status, headers=self.headers)
            if self.body is not None:
                return web.Response(body=self.body, content_type="application/json")
            return web.json_response({"access_token": f"tok{len(self.seen)}", "token_type": "Bearer",
                                      **({"expires_in": self.expires_in} if self.expires_in is not None else {})})
        ok = request.headers.get("Authorization", "").startswith("Bearer tok")
        return web.json_response({}, status=200 if ok else 401)


def acme(url: str, client_auth: str, **options: Any) -> Target:
    return config_from({
        "vendors": {"acme": {
            "credentials": ["client_id", "client_secret"],
            "signer": {"name": "oauth2", "options": {"token_url": "/token", "client_auth": client_auth,
                                                     "scopes": ["read", "write"],
                                                     "endpoint_params": {"audience": "https://api.example"},
                                                     **options}},
            "check": {"path": "/health"},
            "codes": {"200": {"class": "ok"}, "401": {"class": "auth"}, "429": {"class": "rate_limited"}}}},
        "targets": [{"name": "a", "vendor": "acme", "base_url": url,
                     "credentials": {"client_id": "app:1", "client_secret": "s3cr&t+/ü"}}]}).targets[0]


async def test_client_authentication_by_http_basic_or_in_the_form() -> None:
    endpoint = TokenEndpoint()
    async with serve(endpoint.handle) as url, new_session() as session:
        prober = Prober(session, FakeClock())
        basic = await prober.probe(acme(url, "basic"))
        form = await Prober(session, FakeClock()).probe(acme(url, "form"))
    assert basic.outcome.cls == form.outcome.cls == "ok"
    (basic_auth, basic_form), (form_auth, form_form) = endpoint.seen
    # RFC 6749 section 2.3.1: each part form-encoded, then the pair base64-encoded
    assert base64.b64decode(basic_auth.removeprefix("Basic ")).decode() == "app%3A1:s3cr%26t%2B%2F%C3%BC"
    assert basic_form == {"grant_type": "client_credentials", "scope": "read write", "audience": "https://api.example"}
    assert form_auth == ""
    assert form_form == {"grant_type": "client_credentials", "scope": "read write", "audience": "https://api.example",
                         "client_id": "app:1", "client_secret": "s3cr&t+/ü"}


async def test_the_lifetime_comes_from_expires_in_else_from_the_options() -> None:
    endpoint = TokenEndpoint()
    clock = FakeClock()
    async with serve(endpoint.handle) as url, new_session() as session:
        prober = Prober(session, clock)
        target = acme(url, "basic", access_ttl=1000)

        async def fetched_after(seconds: float) -> int:
            """A probe ``seconds`` after the last one: how many tokens have been fetched by its end."""
            await clock.advance(seconds)
            await prober.probe(target)
            return len(endpoint.seen)

        # the endpoint's expires_in (120 s), renewed 30 s before it ends
        assert [await fetched_after(s) for s in (0, 120 - 30 - 1, 1)] == [1, 1, 2]
        endpoint.expires_in = "3600"  # some token endpoints send it as a string of digits
        assert [await fetched_after(s) for s in (120, 3000)] == [3, 3]
        endpoint.expires_in = None  # none at all: access_ttl
        assert [await fetched_after(s) for s in (600, 1000 - 30 - 1, 1)] == [4, 4, 5]


async def test_a_rate_limited_token_endpoint_is_classified_with_its_retry_after() -> None:
    endpoint = TokenEndpoint()
    endpoint.status, endpoint.headers = 429, {"Retry-After": "42"}
    async with serve(endpoint.handle) as url, new_session() as session:
        result = await Prober(session, FakeClock()).probe(acme(url, "basic"))
    assert (result.outcome.cls, result.outcome.code, result.outcome.retry_after) == ("rate_limited", "429", 42.0)
    assert result.request_line == "GET (not sent)"


async def test_a_failed_fetch_answers_every_probe_that_waited_for_it(
        graph: Graph) -> None:
    sim, prober = graph.sim, graph.prober
    targets = graph_config(sim, 20).targets
    sim.control(secret_expired=True)
    refused = await asyncio.gather(*(prober.probe(t) for t in targets))
    assert sim.counts["token"] == 1  # one request to the token endpoint, not one per target
    assert {(r.outcome.cls, r.outcome.code) for r in refused} == {("auth", "7000222")}
    assert sorted(r.requests for r in refused) == [0] * 19 + [1]
    # the next round asks again (once), and once the secret is renewed every target is up
    sim.control(reset=True)
    recovered = await asyncio.gather(*(prober.probe(t) for t in targets))
    assert [r.outcome.cls for r in recovered] == ["ok"] * 20
    assert sim.counts["token"] == 2


async def test_an_unreachable_token_endpoint_is_one_attempt_for_all_waiting_probes(
        graph: Graph) -> None:
    sim, prober = graph.sim, graph.prober
    targets = graph_config(sim, 5, token_url=NOWHERE, name="t").targets
    shared = await asyncio.gather(*(prober.probe(t) for t in targets))
    # the waiting probes get the same failure, mapped the same way (a refused connection, not "other")
    assert [(r.outcome.cls, r.outcome.code) for r in shared] == [("network_error", "refused")] * 5
    assert sim.counts["health"] == 0


async def test_token_endpoint_answers_without_a_usable_token() -> None:
    endpoint = TokenEndpoint()
    async with serve(endpoint.handle) as url, new_session() as session:
        target = acme(url, "basic")
        seen = []
        for body in (b"not json", b"[]", b'{"token_type": "Bearer"}', b'{"access_token": ""}',
                     b'{"access_token": 42}'):
            endpoint.body = body
            result = await Prober(session, FakeClock()).probe(target)
            seen.append((result.outcome.cls, result.outcome.code))
    assert seen == [("server_error", "token_body")] * 5


async def test_an_echoed_client_secret_is_redacted_from_what_is_shown() -> None:
    endpoint = TokenEndpoint()
    endpoint.status = 401
    endpoint.echo = True
    async with serve(endpoint.handle) as url, new_session() as session:
        result = await Prober(session, FakeClock()).probe(acme(url, "form"))
    assert result.outcome.cls == "auth"
    assert "s3cr&t+/ü" not in result.excerpt and "redacted" in result.excerpt


async def test_an_expired_secret_is_counted_and_no_page_or_metric_shows_a_secret(
        graph: Graph) -> None:
    from ..conftest import idle, running_exporter, sample

    sim, clock = graph.sim, graph.clock
    config = graph_config(sim)
    target = config.targets[0]
    async with running_exporter(config, clock=clock) as run:
        await clock.advance(1)
        await idle(run)
        token = run.exporter.prober.signer(target).secrets()[0]  # type: ignore[union-attr]
        sim.control(secret_expired=True)
        for _ in range(3):
            await clock.advance(60)
            await idle(run)
        texts = [await run.metrics()]
        for path in ("/", f"/targets/{target.name}", "/api/v1/targets", f"/api/v1/targets/{target.name}"):
            status, text = await run.get(path)
            assert status == 200, path
            texts.append(text)
    metrics = texts[0]
    assert (sample(metrics, "apistatus_auth_failures_total", target=target.name, code="7000222") or 0) >= 1
    assert (sample(metrics, "apistatus_responses_total", target=target.name, code="7000222",
                   **{"class": "auth"}) or 0) >= 1
    secret = target.credentials["client_secret"]
    for text in texts:
        assert secret not in text and token not in text
    assert any("AADSTS7000222" in text for text in texts[1:])  # the token endpoint's answer is shown


async def test_a_cached_token_serves_while_the_token_endpoint_is_down(
        graph: Graph) -> None:
    sim, clock, prober, target = graph.sim, graph.clock, graph.prober, graph.target
    assert (await prober.probe(target)).outcome.cls == "ok"
    sim.control(token_down=True)
    await clock.advance(600)
    cached = await prober.probe(target)
    await clock.advance(TOKEN_TTL)  # now the token is due: the endpoint's outage shows
    due = await prober.probe(target)
    assert (cached.outcome.cls, cached.requests) == ("ok", 1)
    assert (due.outcome.cls, due.outcome.code) == ("server_error", "temporarily_unavailable")
    assert sim.counts["token"] == 2
