"""Slack Web API: ``auth.test`` with the token as ``Authorization: Bearer`` (or a ``token`` form field);
every answer is HTTP 200 with ``{"ok": ..., "error": ...}`` except a rate limit, which is HTTP 429 with
``Retry-After``. The method's calls are counted per token on the simulator's clock.
"""

from __future__ import annotations

from aiohttp import web

from .base import WindowedSimulator, json_answer

__all__ = ["SlackSimulator"]


class SlackSimulator(WindowedSimulator, vendor="slack"):
    def routes(self, app: web.Application) -> None:
        app.router.add_route("*", self.prefix + "/auth.test", self.handle)
        app.router.add_route("*", self.prefix + "/{method}", self.unknown_method)

    def answer(self, error: str | None) -> web.Response:
        if error is None:
            return json_answer({"ok": True, "url": "https://demo.slack.com/", "team": "Demo", "user": "apistatus",
                                "team_id": "T0DEMO0001", "user_id": "U0DEMO0001", "bot_id": "B0DEMO0001",
                                "is_enterprise_install": False})
        if error == "ratelimited":
            return json_answer({"ok": False, "error": error}, 429,
                               {"Retry-After": str(int(self.settings["retry_after"]))})
        return json_answer({"ok": False, "error": error})

    async def unknown_method(self, request: web.Request) -> web.Response:
        return json_answer({"ok": False, "error": "unknown_method"}, 404)

    async def handle(self, request: web.Request) -> web.Response:
        forced = self.health_check()
        if forced is not None:
            return self.answer(forced)
        if self.settings["server_error"]:
            return json_answer({"ok": False, "error": "fatal_error"}, 500)
        if self.settings["maintenance"]:
            return self.answer("org_login_required")
        auth = request.headers.get("Authorization", "")
        token = auth.removeprefix("Bearer ") if auth.startswith("Bearer ") else None
        if token is None and request.method == "POST":
            form = await request.post()
            value = form.get("token")
            token = value if isinstance(value, str) else None
        if not token:
            return self.answer("not_authed")
        if token != self.secret(self.creds["token"]):
            return self.answer("invalid_auth")
        if self.settings["disabled"]:
            return self.answer("account_inactive")
        if self.settings["revoked"]:
            return self.answer("token_revoked")
        if self.settings["expired"]:
            return self.answer("token_expired")
        if self.settings["rate_limited"] or not self.booked():
            return self.answer("ratelimited")
        return self.answer(None)
