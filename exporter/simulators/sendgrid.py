"""Twilio SendGrid: ``GET /v3/scopes`` with ``Authorization: Bearer <API key>`` lists the key's scopes;
refusals are ``{"errors": [{"field": null, "message"}]}`` by HTTP status; the X-RateLimit-* headers
count the endpoint's window (on the simulator's clock)."""

from __future__ import annotations

from aiohttp import web

from .base import HeaderKeySimulator, json_answer
from .codes import http_status

__all__ = ["SendgridSimulator"]

_MESSAGES = {400: "bad request", 401: "authorization required", 403: "access forbidden", 404: "not found",
             429: "too many requests", 500: "internal error", 503: "service not available"}


class SendgridSimulator(HeaderKeySimulator, vendor="sendgrid"):
    def headers(self) -> dict[str, str]:
        return {"X-RateLimit-Limit": str(self.window_limit),
                "X-RateLimit-Remaining": str(max(0, self.window_limit - self.window())),
                "X-RateLimit-Reset": str(int(self.now()) + 60)}

    def answer(self, code: str) -> web.Response:
        status = http_status(code, 400)
        return json_answer({"errors": [{"field": None, "message": _MESSAGES.get(status, code)}]}, status,
                           self.headers())

    def healthy(self, request: web.Request) -> web.Response:
        return json_answer({"scopes": ["mail.send", "scopes.read", "user.profile.read"]}, 200, self.headers())
