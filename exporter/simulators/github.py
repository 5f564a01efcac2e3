"""GitHub REST: ``GET /rate_limit`` with ``Authorization: Bearer`` (or ``token``); the status is the
HTTP status; the primary limit is an hourly quota per token (5,000) reported in the body and in the
``x-ratelimit-*`` headers, a spent one refused with 403 and ``x-ratelimit-remaining: 0``; the
secondary limit (points a minute) is refused with 429 and ``retry-after`` (403 for other traffic's, whose
``retry-after`` GitHub may leave out: ``retry_after: 0`` leaves it out). ``/rate_limit`` itself uses no
primary quota but counts toward the secondary limit, as documented. ``enterprise`` is GitHub Enterprise
Server with rate limiting off (its default): ``/rate_limit`` answers 404 "Rate limiting is not enabled.",
and no answer carries ``x-ratelimit-*`` headers.
"""

from __future__ import annotations

import math

from aiohttp import web

from .base import WindowedSimulator, json_answer
from .codes import http_status

__all__ = ["GithubSimulator"]

CORE_LIMIT = 5000
#: the primary limit of unauthenticated requests, per address and hour
ANONYMOUS_LIMIT = 60
SEARCH_LIMIT, GRAPHQL_LIMIT = 30, 5000
_DOCS = "https://docs.github.com/rest"


class GithubSimulator(WindowedSimulator, vendor="github"):
    def on_control(self, key: str) -> None:
        super().on_control(key)
        if key == "core_used":
            self.settings[key] = max(0, min(CORE_LIMIT, int(self.settings[key])))
        elif key == "rate_limited" and self.settings[key]:
            self.settings["core_used"] = CORE_LIMIT

    def routes(self, app: web.Application) -> None:
        app.router.add_get("/rate_limit", self.handle)
        app.router.add_get("/user", self.handle)
        app.router.add_route("*", "/{tail:.*}", self.not_found)

    def reset_at(self) -> int:
        return int(math.floor(self.now() / 3600) + 1) * 3600

    def quota_headers(self, anonymous: bool = False) -> dict[str, str]:
        if self.settings["enterprise"]:
            return {}  # no rate limiting, no figures
        limit, used = (ANONYMOUS_LIMIT, 0) if anonymous else (CORE_LIMIT, int(self.settings["core_used"]))
        return {"x-ratelimit-limit": str(limit), "x-ratelimit-remaining": str(limit - used),
                "x-ratelimit-used": str(used), "x-ratelimit-reset": str(self.reset_at()),
                "x-ratelimit-resource": "core"}

    def error(self, status: int, message: str, headers: dict[str, str] | None = None) -> web.Response:
        return json_answer({"message": message, "documentation_url": _DOCS, "status": str(status)}, status, headers)

    async def not_found(self, request: web.Request) -> web.Response:
        return self.error(404, "Not Found")

    async def handle(self, request: web.Request) -> web.Response:
        forced = self.health_check()
        if forced is not None:
            return self.error(http_status(forced, 500), "forced")
        if self.settings["server_error"]:
            return web.Response(status=500, text="<html><body>Server Error</body></html>", content_type="text/html")
        auth = request.headers.get("Authorization", "")
        scheme, _, token = auth.partition(" ")
        if auth and (scheme.lower() not in ("bearer", "token") or token != self.secret(self.creds["token"])):
            return self.error(401, "Bad credentials")
        retry = {"retry-after": str(int(self.settings["retry_after"]))} if self.settings["retry_after"] else {}
        if self.settings["secondary"]:
            return self.error(403, "You have exceeded a secondary rate limit. Please wait a few minutes.",
                              {**self.quota_headers(), **retry})
        if not self.settings["enterprise"] and not self.booked():
            return self.error(429, "You have exceeded a secondary rate limit.", {**self.quota_headers(), **retry})
        if self.settings["disabled"]:
            return self.error(403, "Resource protected by organization SAML enforcement.", self.quota_headers())
        if request.path == "/user":
            # a call that spends primary quota (a check a user may choose instead of /rate_limit)
            if not auth:
                return self.error(401, "Requires authentication")
            if self.settings["core_used"] >= CORE_LIMIT and not self.settings["enterprise"]:
                return self.error(403, "API rate limit exceeded for user ID 1.", self.quota_headers())
            self.settings["core_used"] += 1
            return json_answer({"login": "apistatus", "id": 1, "type": "User"}, 200, self.quota_headers())
        if self.settings["enterprise"]:
            return self.error(404, "Rate limiting is not enabled.")
        if not auth:
            # unauthenticated: the documented 60 an hour per address, and no other quota
            limits = {"core": (ANONYMOUS_LIMIT, 0), "search": (10, 0), "graphql": (0, 0)}
        else:
            limits = {"core": (CORE_LIMIT, int(self.settings["core_used"])), "search": (SEARCH_LIMIT, 0),
                      "graphql": (GRAPHQL_LIMIT, 0)}
        # /rate_limit spends no primary quota: a spent one shows in the figures, the call still succeeds
        resources = {name: {"limit": lim, "used": used, "remaining": lim - used, "reset": self.reset_at()}
                     for name, (lim, used) in limits.items()}
        return json_answer({"resources": resources, "rate": resources["core"]}, 200,
                           self.quota_headers(anonymous=not auth))
