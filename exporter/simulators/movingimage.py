"""movingimage VideoManager Pro: log in for a bearer token that lives 5 minutes (refresh tokens 1 hour,
both on the simulator's clock), list the VideoManagers as the health check, and read storage and
traffic figures from the usage endpoint (docs/vendors.md, "movingimage").
"""

from __future__ import annotations

import json
import secrets
from typing import Any

from aiohttp import web

from .base import Simulator, json_answer

__all__ = ["MovingimageSimulator"]

VIDEO_MANAGER_ID = 4711
ACCESS_TTL, REFRESH_TTL = 300.0, 3600.0
#: the OpenID Connect token endpoint (the newer login route; really on login.movingimage.com)
OIDC_PATH = "/oidc/token"


class MovingimageSimulator(Simulator, vendor="movingimage"):
    def on_reset(self) -> None:
        self.access: dict[str, float] = {}
        self.refresh: dict[str, float] = {}

    def on_control(self, key: str) -> None:
        if key in ("revoke_tokens", "rotated", "disabled") and self.settings[key]:
            # a changed password or a disabled user ends every session
            self.access.clear()
            self.refresh.clear()
        if key == "revoke_tokens":
            self.settings[key] = False
        if key == "quota_exceeded" and self.settings[key]:
            self.settings["storage_used"] = self.settings["storage_max"]

    def routes(self, app: web.Application) -> None:
        p = self.prefix
        app.router.add_post(p + "/auth/login", self.login)
        app.router.add_post(OIDC_PATH, self.oidc_token)
        app.router.add_post(p + "/auth/refresh/{vm}", self.renew)
        app.router.add_get(p, self.health)
        app.router.add_get(p + "/", self.health)
        app.router.add_get(p + "/{vm}/usage", self.usage)

    def answer(self, code: str) -> web.Response:
        """[decided] a vendor error code travels as ``{"code": N}`` with HTTP 400; others are statuses."""
        num = int(code) if code.isdigit() else 500
        if num >= 1000:
            return json_answer({"code": num, "message": "storage limit reached" if num == 1101 else "error"}, 400)
        status = num if 100 <= num <= 599 else 500
        if status == 204:
            return web.Response(status=204)
        return json_answer({"message": "error"} if status >= 400 else [], status)

    def _issue(self, refresh: bool) -> dict[str, Any]:
        now = self.now()
        out: dict[str, Any] = {"accessToken": secrets.token_urlsafe(24)}
        self.access[out["accessToken"]] = now + ACCESS_TTL
        if refresh:
            out["refreshToken"] = secrets.token_urlsafe(24)
            self.refresh[out["refreshToken"]] = now + REFRESH_TTL
        return out

    async def _json(self, request: web.Request) -> dict[str, Any] | None:
        try:
            doc = json.loads(await request.read())
        except (ValueError, RecursionError):  # hostile nesting is bad JSON too
            return None
        return doc if isinstance(doc, dict) else None

    async def login(self, request: web.Request) -> web.Response:
        self.counts["login"] += 1
        if self.settings["server_error"]:
            return self.answer("500")
        doc = await self._json(request)
        if doc is None:
            return self.answer("400")
        if doc.get("username") != self.creds["username"] or doc.get("password") != self.secret(self.creds["password"]):
            return json_answer({"message": "bad credentials"}, 401)
        if self.settings["disabled"]:
            return self.answer("403")
        return json_answer({**self._issue(refresh=True),
                            "videoManagerList": [{"id": VIDEO_MANAGER_ID, "name": "Demo VideoManager"}],
                            "validForVideoManager": [VIDEO_MANAGER_ID]})

    async def oidc_token(self, request: web.Request) -> web.Response:
        """Password and refresh-token grants, form-encoded, answered the OAuth 2 way."""
        form = await request.post()
        grant = str(form.get("grant_type", ""))
        self.counts[f"oidc_{grant}" if grant in ("password", "refresh_token") else "oidc_other"] += 1
        if self.settings["server_error"]:
            return self.answer("500")
        if grant == "password":
            if form.get("username") != self.creds["username"] or form.get("password") != self.secret(
                    self.creds["password"]):
                return json_answer({"error": "invalid_grant", "error_description": "Invalid user credentials"}, 401)
            if self.settings["disabled"]:
                return json_answer({"error": "invalid_grant", "error_description": "Account disabled"}, 400)
            issued = self._issue(refresh=True)
        elif grant == "refresh_token":
            token = form.get("refresh_token")
            if not isinstance(token, str) or self.refresh.get(token, 0.0) <= self.now():
                return json_answer({"error": "invalid_grant", "error_description": "Token is not active"}, 400)
            issued = self._issue(refresh=True)
            del self.refresh[token]  # refresh tokens rotate: the old one is spent
        else:
            return json_answer({"error": "unsupported_grant_type"}, 400)
        return json_answer({"access_token": issued["accessToken"], "expires_in": int(ACCESS_TTL),
                            "refresh_token": issued["refreshToken"], "refresh_expires_in": int(REFRESH_TTL),
                            "token_type": "Bearer"})

    async def renew(self, request: web.Request) -> web.Response:
        self.counts["refresh"] += 1
        doc = await self._json(request)
        token = doc.get("refreshToken") if doc else None
        if not isinstance(token, str) or self.refresh.get(token, 0.0) <= self.now():
            return json_answer({"message": "refresh token invalid or expired"}, 401)
        if request.match_info["vm"] != str(VIDEO_MANAGER_ID):
            return self.answer("403")
        return json_answer(self._issue(refresh=False))

    def _authorized(self, request: web.Request) -> bool:
        scheme, _, token = request.headers.get("Authorization", "").partition(" ")
        return scheme == "Bearer" and self.access.get(token, 0.0) > self.now()

    async def health(self, request: web.Request) -> web.Response:
        if (early := self.before_credentials()) is not None:
            return self.answer(early)
        if not self._authorized(request):
            return json_answer({"message": "token invalid or expired"}, 401)
        if (refused := self.account_condition()) is not None:
            return self.answer(refused)
        return json_answer([{"id": VIDEO_MANAGER_ID, "name": "Demo VideoManager"}])

    async def usage(self, request: web.Request) -> web.Response:
        self.counts["usage"] += 1
        if not self._authorized(request):
            return json_answer({"message": "token invalid or expired"}, 401)
        if request.match_info["vm"] != str(VIDEO_MANAGER_ID):
            return self.answer("403")
        s = self.settings
        return json_answer({
            "videoStorageInfo": {"currentValue": s["storage_used"], "maxValue": s["storage_max"]},
            "trafficInfo": {"currentValue": s["traffic_used"], "maxValue": s["traffic_max"]},
        })
