"""PagerDuty REST API v2: ``GET /abilities`` with ``Authorization: Token token=<key>`` lists the account's
abilities; refusals are ``{"error": {"message", "code"}}`` (2006 authentication failed, 2008 account
locked, 2012 account expired); requests a minute per key are limited on the simulator's clock, and a
429 carries no error code."""

from __future__ import annotations

from typing import Any

from aiohttp import web

from .base import HeaderKeySimulator, json_answer
from .codes import http_status

__all__ = ["PagerdutySimulator"]

_ERRORS = {"2006": (401, "Authentication failed"), "2008": (403, "Account Locked"),
           "2012": (402, "Your account is expired and cannot use the API"), "2000": (500, "Internal Error"),
           "2100": (404, "Not Found"), "2010": (403, "Access Denied")}


class PagerdutySimulator(HeaderKeySimulator, vendor="pagerduty"):
    async def not_found(self, request: web.Request) -> web.Response:
        return self.answer("2100")

    def answer(self, code: str) -> web.Response:
        if code == "429":
            return json_answer({"error": {"message": "Rate Limit Exceeded"}}, 429)
        status, message = _ERRORS.get(code, (http_status(code, 400), "error"))
        error: dict[str, Any] = {"message": message}
        if code in _ERRORS or not code.isdigit():
            error["code"] = int(code) if code.isdigit() else code
        return json_answer({"error": error}, status)

    def healthy(self, request: web.Request) -> web.Response:
        return json_answer({"abilities": ["sso", "teams", "read_only_users", "urgencies"]})
