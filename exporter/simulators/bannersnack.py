"""Bannersnack wapi 2.0: GET with ``client_id``, ``t``, ``action``, ``signature`` in the query string;
the code lives in a JSON body sent with HTTP 200 (docs/vendors.md, "Bannersnack").

The signature is checked with the decided default scheme (md5 over the sorted params, like
Flipsnack), and ``t`` must be within 300 s of the simulator's clock (510 otherwise).
"""

from __future__ import annotations

from typing import Any

from aiohttp import web

from ..signatures import md5_signature
from .base import Simulator, json_answer

__all__ = ["BannersnackSimulator"]

BANNER_HASH = "b4nn3rd3m0"
#: [decided] the window a ``t`` timestamp must fall in
WINDOW = 300.0
MESSAGES = {
    "200": "OK", "510": "Request expired", "511": "Maintenance mode", "512": "Client id not found",
    "513": "Invalid signature", "516": "User disabled", "520": "Missing mandatory parameter",
    "521": "Internal server error", "531": "Banner not found", "532": "Banner not generated yet",
}


class BannersnackSimulator(Simulator, vendor="bannersnack"):
    def check(self) -> dict[str, Any]:
        return {"params": {"hash": BANNER_HASH}}

    def routes(self, app: web.Application) -> None:
        app.router.add_get(self.prefix + "/", self.handle)
        app.router.add_get(self.prefix, self.handle)

    def answer(self, code: str, **extra: Any) -> web.Response:
        body: dict[str, Any] = {"code": int(code) if code.isdigit() else code,
                                "message": MESSAGES.get(code, "Error")}
        body.update(extra)
        return json_answer(body)

    def verify(self, query: list[tuple[str, str]]) -> str | None:
        """The error code for a request that is not well formed and signed, else None."""
        params = dict(query)
        if any(not params.get(k) for k in ("client_id", "signature", "action", "t")):
            return "520"
        if params["client_id"] != self.creds["client_id"]:
            return "512"
        if md5_signature(self.secret(self.creds["secret"]), query, ("signature",)) != params["signature"]:
            return "513"
        try:
            t = int(params["t"])
        except ValueError:
            return "514"
        if abs(t - self.now()) > WINDOW:
            return "510"
        return None

    async def handle(self, request: web.Request) -> web.Response:
        if (early := self.before_credentials()) is not None:
            return self.answer(early)
        query = list(request.query.items())
        if (err := self.verify(query) or self.account_condition()) is not None:
            return self.answer(err)
        params = dict(query)
        if params["action"] != "get-banner-urls":
            return self.answer("514")
        if params.get("hash") != BANNER_HASH or self.settings["banner_missing"]:
            return self.answer("531")
        if self.settings["banner_pending"]:
            return self.answer("532")
        base = f"https://cdn.bannersnack.example/banners/{BANNER_HASH}"
        return self.answer("200", data={"image": base + "/image.png", "html": base + "/embed.html"},
                           url=base + "/")
