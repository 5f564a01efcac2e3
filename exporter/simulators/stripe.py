"""Stripe: ``GET /v1/balance`` with the secret key as ``Authorization: Bearer`` (or as the basic-auth
user name); the status is the HTTP status with an error object ``{"error": {"type", "code",
"message"}}``; requests a second per key are limited on the simulator's clock (429, code
``rate_limit``), and a locked object answers 429 ``lock_timeout``. A ``Stripe-Version`` header that is
not an API version (``YYYY-MM-DD``, optionally with a release name) is refused with 400, as Stripe does.
"""

from __future__ import annotations

import base64
import binascii
import re
from typing import Any

from aiohttp import web

from .base import WindowedSimulator, json_answer
from .codes import http_status

__all__ = ["StripeSimulator"]

#: what an API version looks like: 2024-06-20, 2025-03-31.basil
_VERSION = re.compile(r"[0-9]{4}-[0-9]{2}-[0-9]{2}(\.[a-z]+)?")


class StripeSimulator(WindowedSimulator, vendor="stripe"):
    def routes(self, app: web.Application) -> None:
        app.router.add_get("/v1/balance", self.handle)
        app.router.add_route("*", "/{tail:.*}", self.not_found)

    def error(self, status: int, kind: str, message: str, code: str | None = None) -> web.Response:
        err: dict[str, Any] = {"type": kind, "message": message}
        if code is not None:
            err["code"] = code
            err["doc_url"] = f"https://docs.stripe.com/error-codes/{code.replace('_', '-')}"
        return json_answer({"error": err}, status, {"Request-Id": "req_demo"})

    def key(self, request: web.Request) -> str | None:
        auth = request.headers.get("Authorization", "")
        if auth.startswith("Bearer "):
            return auth[7:]
        if auth.startswith("Basic "):
            try:
                return base64.b64decode(auth[6:], validate=True).decode().partition(":")[0]
            except (binascii.Error, UnicodeDecodeError):
                return ""
        return None

    async def not_found(self, request: web.Request) -> web.Response:
        return self.error(404, "invalid_request_error", f"Unrecognized request URL ({request.method}: {request.path})")

    async def handle(self, request: web.Request) -> web.Response:
        forced = self.health_check()
        if forced is not None:
            if forced.isdigit():
                return self.error(http_status(forced, 500), "api_error", "forced")
            return self.error(400, "invalid_request_error", "forced", forced)
        if self.settings["server_error"]:
            return self.error(500, "api_error", "An unknown error occurred")
        version = request.headers.get("Stripe-Version")
        if version is not None and not _VERSION.fullmatch(version):
            return self.error(400, "invalid_request_error", f"Invalid Stripe API version: {version[:40]}")
        key = self.key(request)
        if not key:
            return self.error(401, "invalid_request_error", "You did not provide an API key.")
        if key.startswith("pk_"):
            return self.error(401, "invalid_request_error", "This API call cannot be made with a publishable API key.",
                              "secret_key_required")
        if key != self.secret(self.creds["secret_key"]):
            # Stripe shows only the key's last four characters
            return self.error(401, "invalid_request_error", f"Invalid API Key provided: {key[:8]}****{key[-4:]}")
        if self.settings["disabled"]:
            return self.error(401, "invalid_request_error", "Expired API Key provided.", "api_key_expired")
        if self.settings["restricted"]:
            return self.error(403, "invalid_request_error",
                              "The provided key does not have the required permissions for this endpoint.")
        if self.settings["rate_limited"] or not self.booked():
            return self.error(429, "invalid_request_error", "Request rate limit exceeded.", "rate_limit")
        if self.settings["locked"]:
            return self.error(429, "invalid_request_error",
                              "This object cannot be accessed right now because another API request is using it.",
                              "lock_timeout")
        live = key.startswith("sk_live_")
        return json_answer({"object": "balance", "livemode": live,
                            "available": [{"amount": 123456, "currency": "usd", "source_types": {"card": 123456}}],
                            "pending": [{"amount": 0, "currency": "usd", "source_types": {"card": 0}}]},
                           200, {"Request-Id": "req_demo"})
