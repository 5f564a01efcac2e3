"""Datadog: ``GET /api/v1/validate`` with the ``DD-API-KEY`` header answers ``{"valid": true}``, a wrong
key ``403 {"errors": ["Forbidden"]}``; every answer carries the X-RateLimit-* headers of the endpoint's
window (on the simulator's clock). One simulator stands for every site (the base URL is per target)."""

from __future__ import annotations

from aiohttp import web

from .base import HeaderKeySimulator, json_answer
from .codes import http_status

__all__ = ["DatadogSimulator"]

_MESSAGES = {400: "Bad Request", 401: "Unauthorized", 403: "Forbidden", 404: "Not Found", 429: "Too many requests",
             500: "Internal Server Error", 503: "Service Unavailable"}


class DatadogSimulator(HeaderKeySimulator, vendor="datadog"):
    def headers(self) -> dict[str, str]:
        used = self.window()
        return {"X-RateLimit-Limit": str(self.window_limit), "X-RateLimit-Period": str(int(self.window_seconds)),
                "X-RateLimit-Remaining": str(max(0, self.window_limit - used)), "X-RateLimit-Reset": "60",
                "X-RateLimit-Name": "validate"}

    def answer(self, code: str) -> web.Response:
        status = http_status(code, 400)
        return json_answer({"errors": [_MESSAGES.get(status, code)]}, status, self.headers())

    def healthy(self, request: web.Request) -> web.Response:
        return json_answer({"valid": True}, 200, self.headers())
