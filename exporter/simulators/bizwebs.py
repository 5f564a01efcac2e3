"""BizWebs GraphQL: POST ``/api/graphql`` with ``BW-API-Key: Token <32 characters>``; the status is the
HTTP status, and 429, 509 and 501 come with ``Retry-After`` (docs/vendors.md, "Bizwebs").
"""

from __future__ import annotations

import json

from aiohttp import web

from .base import Simulator, json_answer
from .codes import http_status

__all__ = ["BizwebsSimulator"]

PATH = "/api/graphql"
#: answers that tell the client when to come back
_RETRY = {"429", "501", "503", "509"}
_TEXT = {
    "206": "Partial content", "400": "Bad request", "401": "Unauthorized", "403": "Forbidden",
    "412": "Partner token missing or invalid", "429": "Too many requests", "500": "Internal server error",
    "501": "Maintenance", "503": "Service unavailable", "509": "Quota exceeded",
}


class BizwebsSimulator(Simulator, vendor="bizwebs"):
    def routes(self, app: web.Application) -> None:
        app.router.add_route("*", PATH, self.handle)

    def answer(self, code: str) -> web.Response:
        status = http_status(code, 500)
        headers = {"Retry-After": str(int(self.settings["retry_after"]))} if code in _RETRY else {}
        if status in (301, 302, 307, 308):
            headers["Location"] = "/moved" + PATH  # relative: a followed redirect stays here
        if status >= 400:
            return json_answer({"error": _TEXT.get(code, "Error")}, status, headers)
        return json_answer({"data": {"getOrderList": {"pageInfo": {"totalPages": 3}}}}, status, headers)

    async def handle(self, request: web.Request) -> web.Response:
        if (early := self.before_credentials()) is not None:
            return self.answer(early)
        if request.method != "POST":
            return self.answer("400")
        if request.headers.get("BW-API-Key", "") != "Token " + self.secret(self.creds["token"]):
            return self.answer("401")
        if self.settings["partner_required"]:
            return self.answer("412")
        if (refused := self.account_condition()) is not None:
            return self.answer(refused)
        try:
            doc = json.loads(await request.read())
        except (ValueError, RecursionError):  # hostile nesting is bad JSON too
            return web.Response(status=400, text="Bad request")  # the real API sends no JSON here either
        query = doc.get("query") if isinstance(doc, dict) else None
        if not isinstance(query, str) or not query.strip():
            return json_answer({"errors": [{"message": "query is missing"}]}, 400)
        if "getOrderList" not in query:
            # a GraphQL error travels in an HTTP 200 answer
            return json_answer({"errors": [{"message": "this simulator knows only getOrderList"}]})
        return self.answer("206" if self.settings["partial"] else "200")
