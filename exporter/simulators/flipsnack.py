"""Flipsnack API v1: GET with ``apiKey``, ``signature`` (md5 over the sorted params, secret first) and
``action``; codes in a JSON body sent with HTTP 200; 5 calls a second and 60 a minute per key (31,
32) on the simulator's clock; 1000 uploads a month (33) (docs/vendors.md, "Flipsnack").
"""

from __future__ import annotations

from collections import deque
from typing import Any

from aiohttp import web

from ..signatures import md5_signature
from .base import Simulator, json_answer

__all__ = ["FlipsnackSimulator"]

PER_SECOND, PER_MINUTE = 5, 60
#: uploads really go to upload.flipsnack.com as POST; the simulator takes them on its one address
UPLOAD_ACTION = "collection.uploadFile"
_TEXT = {
    "20": "OK", "22": "Maintenance mode", "30": "Missing mandatory parameter",
    "31": "Requests per second limit exceeded", "32": "Requests per minute limit exceeded",
    "33": "Uploads per month exceeded", "40": "Bad request", "41": "Invalid credentials", "42": "Invalid action",
    "44": "Invalid signature", "50": "Operation failed",
}


class FlipsnackSimulator(Simulator, vendor="flipsnack"):
    def on_reset(self) -> None:
        self.calls: deque[float] = deque()

    def on_control(self, key: str) -> None:
        if key == "burst":
            self.calls.extend([self.now()] * int(self.settings["burst"]))
            self.settings["burst"] = 0
        elif key == "quota_exceeded" and self.settings[key]:
            self.settings["uploads_left"] = 0
        elif key == "uploads_left":
            # between none and the month's whole allowance: the healthy value
            allowance = int(self.extra_settings[key])
            self.settings[key] = max(0, min(allowance, int(self.settings[key])))

    def routes(self, app: web.Application) -> None:
        app.router.add_route("*", self.prefix + "/", self.handle)
        app.router.add_route("*", self.prefix, self.handle)

    def answer(self, code: str, data: Any = None) -> web.Response:
        body: dict[str, Any] = {"code": int(code) if code.isdigit() else code,
                                "status": _TEXT.get(code, "Error")}
        if data is not None:
            body["data"] = data
        return json_answer(body)

    def rate_code(self) -> str | None:
        """31 or 32 when one more call would break a window; otherwise the call is booked."""
        now = self.now()
        while self.calls and self.calls[0] <= now - 60:
            self.calls.popleft()
        if sum(1 for t in self.calls if t > now - 1) >= PER_SECOND:
            return "31"
        if len(self.calls) >= PER_MINUTE:
            return "32"
        self.calls.append(now)
        return None

    async def handle(self, request: web.Request) -> web.Response:
        forced = self.health_check()
        if forced is not None:
            return self.answer(forced)
        if self.settings["maintenance"]:
            return self.answer("22")
        query = list(request.query.items())
        if request.method == "POST":
            form = await request.post()
            query += [(k, v) for k, v in form.items() if isinstance(v, str)]
        params = dict(query)
        if any(not params.get(k) for k in ("apiKey", "signature", "action")):
            return self.answer("30")
        is_upload = params["action"] == UPLOAD_ACTION
        if request.method != ("POST" if is_upload else "GET"):
            return self.answer("40")
        if params["apiKey"] != self.creds["api_key"] or self.settings["disabled"]:
            return self.answer("41")
        if md5_signature(self.secret(self.creds["secret"]), query, ("signature", "file")) != params["signature"]:
            return self.answer("44")
        if self.settings["server_error"]:
            return self.answer("50")
        if self.settings["rate_limited"]:
            return self.answer("32")
        if (limited := self.rate_code()) is not None:
            return self.answer(limited)
        if is_upload:
            self.counts["upload"] += 1
            if self.settings["uploads_left"] <= 0:
                return self.answer("33")
            self.settings["uploads_left"] -= 1
            return self.answer("20", {"hash": f"demo{self.counts['upload']:06d}"})
        if params["action"] != "user.getStats":
            return self.answer("42")
        # a quota that is used up shows in the figures; the read-only health check still succeeds
        return self.answer("20", {"impressions": 2945, "views": 3719, "time_spent": 154, "downloads": 12,
                                  "api_uploads_left": int(self.settings["uploads_left"])})
