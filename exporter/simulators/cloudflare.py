"""Cloudflare: ``GET /client/v4/user/tokens/verify`` with ``Authorization: Bearer <token>``, answered in
Cloudflare's envelope (``success``, ``errors: [{code, message}]``, ``messages``, ``result``); a verified
token's ``result.status`` says active, disabled or expired; 1200 requests per 5 minutes per user, then
429 with code 971 (on the simulator's clock)."""

from __future__ import annotations

import secrets

from aiohttp import web

from .base import HeaderKeySimulator, json_answer
from .codes import http_status

__all__ = ["CloudflareSimulator"]

_ERRORS = {"1000": (401, "Invalid API Token"), "9106": (400, "Missing X-Auth-Key, X-Auth-Email or Authorization "
                                                           "headers"),
           "10000": (403, "Authentication error"), "971": (429, "Please wait and consider throttling your request "
                                                                "speed"),
           "7003": (400, "Could not route to the URI, perhaps your object identifier is invalid?"),
           "1101": (500, "Internal error")}


class CloudflareSimulator(HeaderKeySimulator, vendor="cloudflare"):
    token_id = "f267e341f3dd4697bd3b9f71dd96247f"

    def answer(self, code: str) -> web.Response:
        if code in ("active", "disabled", "expired"):
            return json_answer({"result": {"id": self.token_id, "status": code}, "success": True, "errors": [],
                                "messages": []})
        status, message = _ERRORS.get(code, (http_status(code, 400), "error"))
        headers = {"Retry-After": str(self.settings["retry_after"])} if status == 429 else {}
        errors = [{"code": int(code), "message": message}] if code.isdigit() else [{"code": 1234, "message": code}]
        return json_answer({"success": False, "errors": errors, "messages": [], "result": None}, status,
                           {**headers, "cf-ray": secrets.token_hex(8)})

    def healthy(self, request: web.Request) -> web.Response:
        return json_answer({"result": {"id": self.token_id, "status": "active"}, "success": True, "errors": [],
                            "messages": [{"code": 10000, "message": "This API Token is valid and active",
                                          "type": None}]})
