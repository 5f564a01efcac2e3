"""Microsoft Graph with its token endpoint (Microsoft Entra ID): ``POST /{tenant}/oauth2/v2.0/token``
answers the client credentials grant the way the identity platform documents it (an access token with
``expires_in``; refusals as ``{"error", "error_description", "error_codes"}`` with AADSTS numbers), and
``GET /v1.0/organization`` needs a token it issued and has not yet expired (on the simulator's clock).
Graph's own refusals are ``{"error": {"code", "message"}}``; throttling is 429 with Retry-After.

Both endpoints listen on one port here (really login.microsoftonline.com and graph.microsoft.com): the
simulator's ``catalog_override`` points the catalog's ``token_url`` at it.
"""

from __future__ import annotations

import base64
import secrets
from typing import Any
from urllib.parse import unquote_plus

from aiohttp import web

from .base import Simulator, json_answer

__all__ = ["MsgraphSimulator"]

#: what Entra ID issues app-only tokens for (seconds)
TOKEN_TTL = 3599
GRAPH_SCOPE = "https://graph.microsoft.com/.default"


class MsgraphSimulator(Simulator, vendor="msgraph"):
    def on_reset(self) -> None:
        self.tokens: dict[str, float] = {}

    def on_control(self, key: str) -> None:
        if key in ("revoke_tokens", "rotated", "disabled", "secret_expired") and self.settings[key]:
            self.tokens.clear()
        if key == "revoke_tokens":
            self.settings[key] = False

    def catalog_override(self) -> dict[str, Any]:
        return {"signer": {"options": {"token_url": self.url + "/{tenant_id}/oauth2/v2.0/token"}}}

    def routes(self, app: web.Application) -> None:
        app.router.add_post("/{tenant}/oauth2/v2.0/token", self.token)
        app.router.add_get("/{tenant}/v2.0/.well-known/openid-configuration", self.discovery)
        app.router.add_get("/v1.0/organization", self.organization)
        app.router.add_route("*", "/{tail:.*}", self.not_found)

    async def discovery(self, request: web.Request) -> web.Response:
        """Entra ID's OpenID Connect discovery document, which MSAL reads before asking for a token."""
        base = f"{self.url}/{request.match_info['tenant']}"
        return json_answer({"token_endpoint": f"{base}/oauth2/v2.0/token", "issuer": f"{base}/v2.0",
                            "authorization_endpoint": f"{base}/oauth2/v2.0/authorize"})

    # --- the token endpoint ------------------------------------------------------------------------
    def aadsts(self, status: int, error: str, number: int, text: str) -> web.Response:
        now = self.now()
        return json_answer({"error": error, "error_description": f"AADSTS{number}: {text}\r\nTrace ID: "
                            f"{secrets.token_hex(8)}", "error_codes": [number], "timestamp": f"{now:.0f}",
                            "trace_id": secrets.token_hex(8), "correlation_id": secrets.token_hex(8),
                            "error_uri": f"https://login.microsoftonline.com/error?code={number}"}, status)

    def _client(self, request: web.Request, form: Any) -> tuple[str, str]:
        """client_secret_post (the form) or client_secret_basic (RFC 6749 section 2.3.1)."""
        scheme, _, value = request.headers.get("Authorization", "").partition(" ")
        if scheme == "Basic":
            try:
                pair = base64.b64decode(value, validate=True).decode()
            except ValueError:
                return "", ""
            user, _, password = pair.partition(":")
            return unquote_plus(user), unquote_plus(password)
        return str(form.get("client_id", "")), str(form.get("client_secret", ""))

    async def token(self, request: web.Request) -> web.Response:
        self.counts["token"] += 1
        if self.settings["token_down"] or self.settings["server_error"]:
            return json_answer({"error": "temporarily_unavailable", "error_description": "AADSTS90033: A transient "
                                "error has occurred. Please try again.", "error_codes": [90033]}, 503)
        form = await request.post()
        if request.match_info["tenant"] != self.creds["tenant_id"]:
            return self.aadsts(400, "invalid_request", 90002, f"Tenant '{request.match_info['tenant'][:40]}' not "
                               "found.")
        if form.get("grant_type") != "client_credentials":
            return self.aadsts(400, "unsupported_grant_type", 70003, "The app requested an unsupported grant type.")
        client_id, secret = self._client(request, form)
        if client_id != self.creds["client_id"]:
            return self.aadsts(400, "unauthorized_client", 700016, f"Application with identifier '{client_id[:40]}'"
                               " was not found in the directory.")
        if not secret:
            return self.aadsts(401, "invalid_client", 7000218, "The request body must contain the following "
                               "parameter: 'client_assertion' or 'client_secret'.")
        if secret != self.secret(self.creds["client_secret"]):
            return self.aadsts(401, "invalid_client", 7000215, "Invalid client secret provided. Ensure the secret "
                               "being sent in the request is the client secret value, not the client secret ID.")
        if self.settings["secret_expired"]:
            return self.aadsts(401, "invalid_client", 7000222, f"The provided client secret keys for app "
                               f"'{client_id}' are expired.")
        if self.settings["disabled"]:
            return self.aadsts(400, "unauthorized_client", 7000112, "Application is disabled.")
        if form.get("scope") != GRAPH_SCOPE:
            return self.aadsts(400, "invalid_scope", 1002012, "The provided value for scope is not valid. Client "
                               "credential flows must have a scope value with /.default suffixed.")
        issued = secrets.token_urlsafe(32)
        self.tokens[issued] = self.now() + TOKEN_TTL
        return json_answer({"token_type": "Bearer", "expires_in": TOKEN_TTL, "ext_expires_in": TOKEN_TTL,
                            "access_token": issued})

    # --- Graph ---------------------------------------------------------------------------------------
    def graph_error(self, status: int, code: str, message: str, headers: dict[str, str] | None = None) -> web.Response:
        return json_answer({"error": {"code": code, "message": message, "innerError": {
            "request-id": secrets.token_hex(8), "client-request-id": secrets.token_hex(8)}}}, status, headers)

    async def not_found(self, request: web.Request) -> web.Response:
        return self.graph_error(400, "BadRequest", f"Resource not found for the segment '{request.path[:40]}'.")

    async def organization(self, request: web.Request) -> web.Response:
        forced = self.health_check()
        if forced is not None:
            return self.graph_error(400, forced, "forced")
        if self.settings["server_error"]:
            return self.graph_error(503, "serviceNotAvailable", "The service is temporarily unavailable.",
                                    {"Retry-After": str(self.settings["retry_after"])})
        scheme, _, token = request.headers.get("Authorization", "").partition(" ")
        if scheme != "Bearer" or self.tokens.get(token, 0.0) <= self.now():
            return self.graph_error(401, "InvalidAuthenticationToken", "Access token has expired or is not yet valid.")
        if self.settings["rate_limited"]:
            return self.graph_error(429, "activityLimitReached", "The app or user has been throttled.",
                                    {"Retry-After": str(self.settings["retry_after"])})
        if self.settings["no_permission"]:
            return self.graph_error(403, "Authorization_RequestDenied", "Insufficient privileges to complete the "
                                    "operation.")
        return json_answer({"@odata.context": "https://graph.microsoft.com/v1.0/$metadata#organization(id)",
                            "value": [{"id": self.creds["tenant_id"]}]})
