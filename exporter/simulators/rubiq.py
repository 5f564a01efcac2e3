"""Rubiq REST: the ``Signature`` header (JSON AppKey, IssuedAt, HMAC-SHA256 Token over AppKey + METHOD +
full URL + IssuedAt), HTTP status plus an ``ApiStatusSubCode`` header, and the optional non-standard
mode with the real status in the body (docs/vendors.md, "Rubiq").

Illegal-access prevention is simulated too: requests for unknown entities are counted per key, and
after a few misses the key is denied (403.30) for a while. That is why a target must name a real
monitoring entity.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import Any

from aiohttp import web

from ..signatures import rubiq_token
from .base import Simulator, json_answer
from .codes import http_status

__all__ = ["RubiqSimulator"]

ENTITY = "424242"
#: IssuedAt must be within this many seconds of the server's time
WINDOW = 3600.0
#: misses (unknown entity ids) before illegal-access prevention denies the key, and for how long
IAP_MISSES = 5
IAP_BLOCK = 900.0
_TEXT = {
    "200": "OK", "202": "Accepted", "400": "Bad Request", "401": "Unauthorized", "403": "Forbidden",
    "404": "Not Found", "409": "Conflict", "412": "Precondition Failed", "500": "Internal Server Error",
    "501": "Not Implemented",
}


def _nonstandard_status(main: int) -> int:
    """Non-standard mode sends only 200, 401, 404 and 500 on the wire."""
    if main in (401, 404):
        return main
    return 500 if main >= 500 else 200


class RubiqSimulator(Simulator, vendor="rubiq"):
    def on_reset(self) -> None:
        self.misses = 0
        self.blocked_until = 0.0

    def on_control(self, key: str) -> None:
        if key == "rate_limited" and self.settings[key]:
            self.blocked_until = self.now() + IAP_BLOCK
        elif key == "rate_limited":
            self.blocked_until, self.misses = 0.0, 0

    def check(self) -> dict[str, Any]:
        return {"path": f"/entity/id/{ENTITY}/data"}

    def routes(self, app: web.Application) -> None:
        app.router.add_route("*", "/entity/id/{entity}/data", self.handle)
        app.router.add_route("*", "/{tail:.*}", self.handle)

    def answer(self, code: str, data: Any = None) -> web.Response:
        main_text, _, _sub = code.partition(".")
        main = http_status(main_text, 500)
        headers = {"ApiStatusSubCode": code} if "." in code else {}
        if self.settings["nonstandard"]:
            body = {"status": {"statusCode": main, "statusText": _TEXT.get(str(main), "Error")}, "data": data or {}}
            return json_answer(body, _nonstandard_status(main), headers)
        if main == 204:
            return web.Response(status=204, headers=headers)
        return json_answer(data if data is not None else {"message": _TEXT.get(str(main), "Error")}, main, headers)

    def verify(self, request: web.Request) -> str | None:
        """The 401 sub-code for a request whose Signature header is not right, else None."""
        values = request.headers.getall("Signature", [])
        if not values:
            return "401.1"
        if len(values) > 1:
            return "401.2"
        try:
            sig = json.loads(values[0])
        except (ValueError, RecursionError):  # hostile nesting is bad JSON too
            return "401.3"
        if not isinstance(sig, dict):
            return "401.3"
        app_key = sig.get("AppKey")
        if not isinstance(app_key, int | str) or isinstance(app_key, bool) or not str(app_key).isdigit():
            return "401.4"
        issued = sig.get("IssuedAt")
        try:
            when = datetime.strptime(str(issued), "%Y%m%d%H%M%S").replace(tzinfo=UTC).timestamp()
        except ValueError:
            return "401.5"
        if abs(when - self.now()) > WINDOW:
            return "401.6"
        if str(app_key) != self.creds["app_key"]:
            return "401.7"
        token = sig.get("Token")
        if not isinstance(token, str) or not token:
            return "401.8"
        expected = rubiq_token(self.creds["app_key"], self.secret(self.creds["app_secret"]), request.method,
                               str(request.url), str(issued))
        if token != expected:
            return "401.9"
        return None

    async def handle(self, request: web.Request) -> web.Response:
        if (early := self.before_credentials()) is not None:
            return self.answer(early)
        if (err := self.verify(request)) is not None:
            return self.answer(err)
        if self.blocked_until > self.now():
            return self.answer("403.30")
        if self.settings["disabled"]:
            return self.answer("401.10")
        entity = request.match_info.get("entity")
        if entity != ENTITY:
            self.misses += 1
            if self.misses >= IAP_MISSES:
                self.blocked_until = self.now() + IAP_BLOCK
            return self.answer("404")
        if request.method != "GET":
            return self.answer("501")
        if self.settings["busy"]:
            return self.answer("409.1")
        return self.answer("200", {"id": int(ENTITY), "name": "monitoring", "email": "monitor@example.invalid"})
