"""AWS STS: ``POST /`` with ``Action=GetCallerIdentity`` signed with Signature Version 4, verified the way
AWS does (signatures.py computes the same canonical request from what arrived): the access key must
exist, the signature must match the secret, and the request's X-Amz-Date must be within five minutes of
the simulator's clock (its Date header says what that clock reads). Answers are XML, as STS's query API
sends them, or JSON when the request asks for it with ``Accept: application/json``.
"""

from __future__ import annotations

import calendar
import json
import secrets
import time
from email.utils import formatdate
from typing import ClassVar
from urllib.parse import parse_qsl
from xml.sax.saxutils import escape

from aiohttp import web

from ..signatures import SIGV4_ALGORITHM, sigv4_canonical_request, sigv4_signature, sigv4_timestamp
from .base import Simulator

__all__ = ["AwsStsSimulator"]

ACCOUNT = "123456789012"
#: how far a request's date may be from AWS's clock
TOLERANCE = 300.0
NS = "https://sts.amazonaws.com/doc/2011-06-15/"


class AwsStsSimulator(Simulator, vendor="aws-sts"):
    region: ClassVar[str] = "us-east-1"

    def routes(self, app: web.Application) -> None:
        app.router.add_route("*", "/{tail:.*}", self.handle)

    def _headers(self, as_json: bool) -> dict[str, str]:
        # the vendor's clock, as a client's clock-skew check reads it
        return {"Date": formatdate(self.now(), usegmt=True), "x-amzn-RequestId": secrets.token_hex(16),
                "Content-Type": "application/json" if as_json else "text/xml"}

    def error(self, status: int, code: str, message: str, as_json: bool, kind: str = "Sender") -> web.Response:
        request_id = secrets.token_hex(16)
        if as_json:
            body = json.dumps({"Error": {"Code": code, "Message": message, "Type": kind}, "RequestId": request_id})
        else:
            body = (f'<ErrorResponse xmlns="{NS}">\n  <Error>\n    <Type>{kind}</Type>\n    <Code>{code}</Code>\n'
                    f"    <Message>{escape(message)}</Message>\n  </Error>\n  <RequestId>{request_id}</RequestId>\n"
                    "</ErrorResponse>\n")
        return web.Response(status=status, text=body, headers=self._headers(as_json))

    def _verify(self, request: web.Request, body: bytes, as_json: bool) -> web.Response | None:
        """None when the signature is good; else the refusal AWS sends."""
        auth = request.headers.get("Authorization", "")
        if not auth:
            return self.error(403, "MissingAuthenticationToken", "Request is missing Authentication Token", as_json)
        fields: dict[str, str] = {}
        algorithm, _, rest = auth.partition(" ")
        for part in rest.split(","):
            key, _, value = part.strip().partition("=")
            fields[key] = value
        stamp = request.headers.get("X-Amz-Date", "")
        if algorithm != SIGV4_ALGORITHM or not {"Credential", "SignedHeaders", "Signature"} <= set(fields) or not stamp:
            return self.error(400, "IncompleteSignature", "Authorization header requires 'Credential', "
                              "'Signature', 'SignedHeaders' and an X-Amz-Date.", as_json)
        key_id, _, scope = fields["Credential"].partition("/")
        if key_id != self.creds["access_key_id"] or self.settings["disabled"]:
            return self.error(403, "InvalidClientTokenId", "The security token included in the request is invalid.",
                              as_json)
        token = self.creds.get("session_token")
        if token is not None and request.headers.get("X-Amz-Security-Token") != token:
            return self.error(403, "InvalidClientTokenId", "The security token included in the request is invalid.",
                              as_json)
        if self.settings["token_expired"]:
            return self.error(403, "ExpiredToken", "The security token included in the request is expired", as_json)
        date, region, service, terminal = [*scope.split("/"), "", "", "", ""][:4]
        if (date, region, service, terminal) != (stamp[:8], self.region, "sts", "aws4_request"):
            return self.error(403, "SignatureDoesNotMatch", f"Credential should be scoped to a valid region, "
                              f"not '{region[:20]}'.", as_json)
        try:
            sent = calendar.timegm(time.strptime(stamp, "%Y%m%dT%H%M%SZ"))
        except ValueError:
            return self.error(400, "IncompleteSignature", "X-Amz-Date is not a valid date.", as_json)
        now = self.now()
        if sent < now - TOLERANCE:
            return self.error(403, "SignatureDoesNotMatch", f"Signature expired: {stamp} is now earlier than "
                              f"{sigv4_timestamp(now - TOLERANCE)} ({sigv4_timestamp(now)} - 5 min.)", as_json)
        if sent > now + TOLERANCE:
            return self.error(403, "SignatureDoesNotMatch", f"Signature not yet current: {stamp} is still later "
                              f"than {sigv4_timestamp(now + TOLERANCE)} ({sigv4_timestamp(now)} + 5 min.)", as_json)
        signed = fields["SignedHeaders"].split(";")
        headers = [(name, request.headers.get(name, "")) for name in signed]
        canonical, _ = sigv4_canonical_request(request.method, "http://sts" + request.raw_path, (), headers, body)
        expected = sigv4_signature(self.secret(self.creds["secret_access_key"]), stamp, region, service, canonical)
        if not secrets.compare_digest(expected, fields["Signature"]):
            return self.error(403, "SignatureDoesNotMatch", "The request signature we calculated does not match the "
                              "signature you provided. Check your AWS Secret Access Key and signing method. Consult "
                              "the service documentation for details.", as_json)
        return None

    async def handle(self, request: web.Request) -> web.Response:
        forced = self.health_check()
        as_json = "application/json" in request.headers.get("Accept", "")
        body = await request.read()
        if forced is not None:
            return self.error(400, forced, "forced", as_json)
        if self.settings["server_error"]:
            return self.error(503, "ServiceUnavailable", "Service is unavailable.", as_json, "Receiver")
        refused = self._verify(request, body, as_json)
        if refused is not None:
            return refused
        if self.settings["rate_limited"]:
            return self.error(400, "Throttling", "Rate exceeded", as_json)
        if self.settings["region_disabled"]:
            return self.error(403, "RegionDisabledException", f"STS is not activated in this region for account:"
                              f"{ACCOUNT}. Your account administrator can activate STS in this region using the IAM "
                              "Console.", as_json)
        form = dict(parse_qsl(body.decode("utf-8", "replace")))
        if form.get("Action") != "GetCallerIdentity":
            return self.error(400, "InvalidAction", f"Could not find operation {form.get('Action', '')[:40]} for "
                              "version 2011-06-15", as_json)
        request_id = secrets.token_hex(16)
        arn, user_id = f"arn:aws:iam::{ACCOUNT}:user/apistatus-monitor", "AIDACKCEVSQ6C2EXAMPLE"
        if as_json:
            text = json.dumps({"GetCallerIdentityResponse": {"GetCallerIdentityResult": {
                "Account": ACCOUNT, "Arn": arn, "UserId": user_id}, "ResponseMetadata": {"RequestId": request_id}}})
        else:
            text = (f'<GetCallerIdentityResponse xmlns="{NS}">\n  <GetCallerIdentityResult>\n    <Arn>{arn}</Arn>\n'
                    f"    <UserId>{user_id}</UserId>\n    <Account>{ACCOUNT}</Account>\n  </GetCallerIdentityResult>\n"
                    f"  <ResponseMetadata>\n    <RequestId>{request_id}</RequestId>\n  </ResponseMetadata>\n"
                    "</GetCallerIdentityResponse>\n")
        return web.Response(status=200, text=text, headers=self._headers(as_json))
