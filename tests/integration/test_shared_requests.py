"""Targets with the same base URL and check share one prepared request and one copy of a remembered
body (probe.py): each probe still carries only its own target's credentials and signature, and shows
only its own target's secrets redacted."""

from __future__ import annotations

from aiohttp import web

from exporter.clock import FakeClock
from exporter.engine import new_session
from exporter.probe import Prober
from exporter.signatures import md5_signature
from tests.conftest import config_from, serve


async def test_targets_sharing_a_request_each_sign_with_their_own_credentials() -> None:
    seen: list[dict[str, str]] = []

    async def handler(request: web.Request) -> web.Response:
        seen.append(dict(request.query))
        # the same body for every target, naming one target's key: only that target knows it is a secret
        return web.json_response({"code": 20, "status": "OK", "echo": "key-aaaa-1111"})

    async with serve(handler) as url, new_session() as session:
        cfg = config_from({"targets": [
            {"name": "a", "vendor": "flipsnack", "base_url": url,
             "credentials": {"api_key": "key-aaaa-1111", "secret": "secret-aaaa"}},
            {"name": "b", "vendor": "flipsnack", "base_url": url,
             "credentials": {"api_key": "key-bbbb-2222", "secret": "secret-bbbb"}}]})
        prober = Prober(session, FakeClock())
        results = {}
        for _ in range(2):  # the second round uses what the first one prepared and remembered
            for target in cfg.targets:
                results[target.name] = await prober.probe(target)
        assert results["a"].outcome.cls == results["b"].outcome.cls == "ok"
    keys = [q["apiKey"] for q in seen]
    assert keys == ["key-aaaa-1111", "key-bbbb-2222"] * 2
    for query, secret in zip(seen, ["secret-aaaa", "secret-bbbb"] * 2, strict=True):
        signed = [(k, v) for k, v in query.items()]
        assert query["signature"] == md5_signature(secret, signed)
    # a's excerpt hides a's key; b never knew it as a secret, so b's shows the body as sent
    assert "key-aaaa-1111" not in results["a"].excerpt
    assert "key-aaaa-1111" in results["b"].excerpt
