"""OpenAI: ``GET /v1/models`` with ``Authorization: Bearer <key>``; the status is the HTTP status with an
error object ``{"error": {"message", "type", "param", "code"}}``. HTTP 429 means either "slow down"
(``rate_limit_exceeded``, type ``requests``) or "the credit is gone" (``insufficient_quota``); requests
a minute per key are limited on the simulator's clock and reported in ``x-ratelimit-*`` headers.
"""

from __future__ import annotations

from aiohttp import web

from .base import WindowedSimulator, json_answer
from .codes import http_status

__all__ = ["OpenaiSimulator"]

TPM = 200_000
_MODELS = ("gpt-4o-mini", "gpt-4.1", "text-embedding-3-small")


class OpenaiSimulator(WindowedSimulator, vendor="openai"):
    def routes(self, app: web.Application) -> None:
        app.router.add_get("/v1/models", self.handle)
        app.router.add_route("*", "/{tail:.*}", self.not_found)

    def limit_headers(self) -> dict[str, str]:
        limit = self.window_limit  # requests a minute per key
        remaining = max(0, limit - self.window())
        return {"x-ratelimit-limit-requests": str(limit), "x-ratelimit-remaining-requests": str(remaining),
                "x-ratelimit-reset-requests": "120ms" if remaining < limit else "0s",
                "x-ratelimit-limit-tokens": str(TPM), "x-ratelimit-remaining-tokens": str(TPM),
                "x-ratelimit-reset-tokens": "0s"}

    def error(self, status: int, kind: str, message: str, code: str | None = None,
              headers: dict[str, str] | None = None) -> web.Response:
        return json_answer({"error": {"message": message, "type": kind, "param": None, "code": code}}, status,
                           headers)

    async def not_found(self, request: web.Request) -> web.Response:
        return self.error(404, "invalid_request_error", f"Invalid URL ({request.method} {request.path})")

    async def handle(self, request: web.Request) -> web.Response:
        forced = self.health_check()
        if forced is not None:
            if forced.isdigit():
                return self.error(http_status(forced, 500), "server_error", "forced")
            return self.error(429 if forced == "insufficient_quota" else 400, "invalid_request_error", "forced", forced)
        if self.settings["server_error"]:
            return self.error(500, "server_error", "The server had an error while processing your request.")
        if self.settings["overloaded"]:
            return self.error(503, "server_error", "The engine is currently overloaded, please try again later.")
        if self.settings["region_blocked"]:
            return self.error(403, "request_forbidden", "Country, region, or territory not supported",
                              "unsupported_country_region_territory")
        auth = request.headers.get("Authorization", "")
        if not auth.startswith("Bearer ") or not auth[7:]:
            return self.error(401, "invalid_request_error", "You didn't provide an API key.")
        key = auth[7:]
        if key != self.secret(self.creds["api_key"]):
            return self.error(401, "invalid_request_error", f"Incorrect API key provided: {key[:3]}****{key[-4:]}.",
                              "invalid_api_key")
        if self.settings["quota_exceeded"]:
            return self.error(429, "insufficient_quota", "You exceeded your current quota, please check your plan "
                              "and billing details.", "insufficient_quota")
        if self.settings["rate_limited"] or not self.booked():
            return self.error(429, "requests", f"Rate limit reached for requests: limit {self.window_limit}, "
                              f"used {self.window_limit}.",
                              "rate_limit_exceeded", {**self.limit_headers(), "retry-after": "1"})
        data = [{"id": m, "object": "model", "created": 1_700_000_000, "owned_by": "system"} for m in _MODELS]
        return json_answer({"object": "list", "data": data}, 200, self.limit_headers())
