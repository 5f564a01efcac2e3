"""Anthropic: ``GET /v1/models`` with ``x-api-key`` (or ``Authorization: Bearer``, as the official Python
SDK sends it) and ``anthropic-version``; refusals are the envelope
``{"type": "error", "error": {"type", "message"}, "request_id"}``; overload is HTTP 529
``overloaded_error``; requests a minute per key are limited on the simulator's clock and reported in
``anthropic-ratelimit-requests-*`` headers, with ``retry-after`` on a 429."""

from __future__ import annotations

import secrets

from aiohttp import web

from .base import HeaderKeySimulator, json_answer
from .codes import http_status

__all__ = ["AnthropicSimulator"]

_TYPES = {"invalid_request_error": 400, "authentication_error": 401, "billing_error": 402, "permission_error": 403,
          "not_found_error": 404, "request_too_large": 413, "rate_limit_error": 429, "api_error": 500,
          "timeout_error": 504, "overloaded_error": 529}


class AnthropicSimulator(HeaderKeySimulator, vendor="anthropic"):
    def headers(self) -> dict[str, str]:
        return {"anthropic-ratelimit-requests-limit": str(self.window_limit),
                "anthropic-ratelimit-requests-remaining": str(max(0, self.window_limit - self.window())),
                "request-id": "req_" + secrets.token_hex(12)}

    def answer(self, code: str) -> web.Response:
        status = _TYPES.get(code) or http_status(code, 400)
        extra = {"retry-after": str(self.settings["retry_after"])} if status == 429 else {}
        return json_answer({"type": "error", "error": {"type": code, "message": code.replace("_", " ")},
                            "request_id": "req_" + secrets.token_hex(12)}, status, {**self.headers(), **extra})

    def key_of(self, request: web.Request) -> str | None:
        # the documented x-api-key, or Authorization: Bearer, which the official Python SDK sends a key in
        scheme, _, bearer = request.headers.get("Authorization", "").partition(" ")
        return super().key_of(request) or (bearer if scheme == "Bearer" and bearer else None)

    async def handle(self, request: web.Request) -> web.Response:
        if request.headers.get("anthropic-version") is None:
            return self.answer("invalid_request_error")
        if self.settings["overloaded"] and self.settings["code"] is None:
            self.counts["health"] += 1
            return self.answer("overloaded_error")
        return await super().handle(request)

    def healthy(self, request: web.Request) -> web.Response:
        data = [{"type": "model", "id": "claude-sonnet-4-5", "display_name": "Claude Sonnet 4.5",
                 "created_at": "2025-09-29T00:00:00Z"}]
        return json_answer({"data": data, "has_more": False, "first_id": data[0]["id"], "last_id": data[0]["id"]},
                           200, self.headers())
