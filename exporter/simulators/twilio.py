"""Twilio REST: ``GET /2010-04-01/Accounts/{AccountSid}.json`` with HTTP basic auth (Account SID and Auth
Token); errors are ``{"code", "message", "more_info", "status"}`` with Twilio's own integer code
(20003 authentication, 20403 suspended or closed, 20404, 20429 too many concurrent requests, 20500),
and a 200 carries the account's ``status``. ``test_credentials``: the test Account SID and token, which
may not read the account resource (403, 20008, a code the catalog does not list).
"""

from __future__ import annotations

import base64
import binascii
from typing import Any

from aiohttp import web

from .base import ControlError, Simulator, json_answer
from .codes import http_status

__all__ = ["TwilioSimulator"]

#: concurrent requests an account may have in flight (the simulator's figure; Twilio sets it per account)
CONCURRENCY = 100
_STATUS = {"20003": 401, "20005": 401, "10001": 403, "20403": 403, "20404": 404, "20429": 429, "20500": 500,
           "20503": 503, "20008": 403}
_TEXT = {"20003": "Authenticate", "20005": "Account not active", "10001": "Account is not active",
         "20403": "Forbidden", "20404": "The requested resource was not found", "20429": "Too Many Requests",
         "20500": "Internal Server Error", "20503": "Service Unavailable",
         "20008": "Resource not accessible with Test Account Credentials"}


class TwilioSimulator(Simulator, vendor="twilio"):
    def _coerce(self, key: str, value: Any, default: Any) -> Any:
        if key == "account_status" and value not in ("active", "suspended", "closed"):
            raise ControlError(f"twilio: account_status must be active, suspended or closed, got {value!r}"[:120])
        return super()._coerce(key, value, default)

    def routes(self, app: web.Application) -> None:
        app.router.add_get("/2010-04-01/Accounts/{sid}.json", self.handle)
        app.router.add_route("*", "/{tail:.*}", self.not_found)

    def error(self, code: str) -> web.Response:
        status = _STATUS.get(code, http_status(code, 400))
        body: dict[str, Any] = {"code": int(code) if code.isdigit() else code, "message": _TEXT.get(code, "Error"),
                                "more_info": f"https://www.twilio.com/docs/errors/{code}", "status": status}
        return json_answer(body, status)

    def user(self, request: web.Request) -> tuple[str, str] | None:
        auth = request.headers.get("Authorization", "")
        if not auth.startswith("Basic "):
            return None
        try:
            user, sep, password = base64.b64decode(auth[6:], validate=True).decode().partition(":")
        except (binascii.Error, UnicodeDecodeError):
            return None
        return (user, password) if sep else None

    async def not_found(self, request: web.Request) -> web.Response:
        return self.error("20404")

    async def handle(self, request: web.Request) -> web.Response:
        if (early := self.before_credentials()) is not None:
            return self.error(early)
        pair = self.user(request)
        if pair is None or pair != (self.creds["account_sid"], self.secret(self.creds["auth_token"])):
            return self.error("20003")
        if self.settings["disabled"]:
            return self.error("20403")
        if self.settings["test_credentials"]:
            return self.error("20008")
        if self.settings["rate_limited"] or self.settings["in_flight"] + 1 > CONCURRENCY:
            return self.error("20429")
        sid = request.match_info["sid"]
        if sid != self.creds["account_sid"]:
            return self.error("20404")
        return json_answer({"sid": sid, "friendly_name": "apistatus demo", "status": self.settings["account_status"],
                            "type": "Full", "owner_account_sid": sid, "date_created": "Mon, 01 Dec 2025 00:00:00 +0000",
                            "uri": f"/2010-04-01/Accounts/{sid}.json"})
