"""The simulators themselves, spoken to directly over loopback with hand-built requests: they accept
what the vendor documents (the test vectors), refuse the rest with the vendor's own codes, and keep
time, limits and tokens on their own (here fake) clock."""

from __future__ import annotations

import asyncio
import json
import signal
import subprocess
import sys
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any, TypeVar
from urllib.parse import urlencode

import aiohttp
import pytest

from exporter.clock import FakeClock
from exporter.signers import md5_signature, rubiq_issued_at, rubiq_token
from exporter.simulators import ControlError, start_simulators
from exporter.simulators.bannersnack import BannersnackSimulator
from exporter.simulators.base import Simulator
from exporter.simulators.bizwebs import BizwebsSimulator
from exporter.simulators.flipsnack import UPLOAD_ACTION, FlipsnackSimulator
from exporter.simulators.movingimage import VIDEO_MANAGER_ID, MovingimageSimulator
from exporter.simulators.rubiq import ENTITY, IAP_MISSES, RubiqSimulator

S = TypeVar("S", bound=Simulator)
FLIP = {"api_key": "45FD-267-7SG7832", "secret": "123ABCDE-456-7890-FGH"}
RUBIQ = {"app_key": "32767", "app_secret": "RCL1EDAYOVHANLL3A51G"}
ROOT = Path(__file__).resolve().parents[2]


@asynccontextmanager
async def running(factory: Callable[[FakeClock], S]) -> AsyncIterator[tuple[S, FakeClock, aiohttp.ClientSession]]:
    clock = FakeClock()
    sim = factory(clock)
    await sim.start()
    try:
        async with aiohttp.ClientSession() as session:
            yield sim, clock, session
    finally:
        await sim.close()


async def get_json(session: aiohttp.ClientSession, method: str, url: str,
                   **kw: Any) -> tuple[int, dict[str, str], Any]:
    async with session.request(method, url, allow_redirects=False, **kw) as r:
        text = await r.text()
        return r.status, dict(r.headers), json.loads(text) if text.startswith(("{", "[")) else text


# --- Flipsnack ---------------------------------------------------------------------------------------

def flip_url(sim: Simulator, params: list[tuple[str, str]], secret: str = FLIP["secret"]) -> str:
    signed = [*params, ("signature", md5_signature(secret, params, ("signature", "file")))]
    return f"{sim.base_url}/?{urlencode(signed)}"


async def test_flipsnack_accepts_the_documented_vector_and_refuses_a_wrong_signature() -> None:
    async with running(lambda c: FlipsnackSimulator(c, FLIP)) as (sim, _, s):
        # the exact documented request: apiKey 45FD-267-7SG7832, action user.getStats
        vector = "8606359ca21901b323baf9d61e0ca899"
        url = f"{sim.base_url}/?action=user.getStats&apiKey={FLIP['api_key']}&signature={vector}"
        status, _, body = await get_json(s, "GET", url)
        assert status == 200 and body["code"] == 20 and body["data"]["api_uploads_left"] == 1000
        _, _, body = await get_json(s, "GET", url.replace("8606", "9606"))
        assert body == {"code": 44, "status": "Invalid signature"}
        _, _, body = await get_json(s, "GET", flip_url(sim, [("action", "user.getStats"), ("apiKey", "nope")]))
        assert body["code"] == 41
        _, _, body = await get_json(s, "GET", f"{sim.base_url}/?action=user.getStats")
        assert body["code"] == 30
        stats = [("action", "user.getStats"), ("apiKey", FLIP["api_key"])]
        _, _, body = await get_json(s, "POST", flip_url(sim, stats))
        assert body["code"] == 40  # only uploads are POST
        _, _, body = await get_json(s, "GET", flip_url(sim, [("action", "user.nope"), ("apiKey", FLIP["api_key"])]))
        assert body["code"] == 42


async def test_flipsnack_enforces_5_per_second_and_60_per_minute_on_its_clock() -> None:
    async with running(lambda c: FlipsnackSimulator(c, FLIP)) as (sim, clock, s):
        url = flip_url(sim, [("action", "user.getStats"), ("apiKey", FLIP["api_key"])])
        codes = [(await get_json(s, "GET", url))[2]["code"] for _ in range(6)]
        assert codes == [20, 20, 20, 20, 20, 31]  # the 6th within one simulated second
        await clock.advance(1.0)
        # 5 a second for 11 more seconds: 60 accepted calls within the minute
        for _ in range(11):
            codes = [(await get_json(s, "GET", url))[2]["code"] for _ in range(5)]
            assert codes == [20] * 5
            await clock.advance(1.0)
        assert (await get_json(s, "GET", url))[2]["code"] == 32  # the 61st within a minute
        await clock.advance(48.5)  # the first second's five calls leave the window
        codes = [(await get_json(s, "GET", url))[2]["code"] for _ in range(6)]
        assert codes == [20, 20, 20, 20, 20, 31]


async def test_flipsnack_upload_quota_counts_down_to_33() -> None:
    async with running(lambda c: FlipsnackSimulator(c, FLIP)) as (sim, clock, s):
        sim.control(uploads_left=2)
        upload = [("action", UPLOAD_ACTION), ("apiKey", FLIP["api_key"])]
        signed = [*upload, ("signature", md5_signature(FLIP["secret"], upload))]
        codes = []
        for _ in range(3):
            _, _, body = await get_json(s, "POST", f"{sim.base_url}/", data=dict(signed))
            codes.append(body["code"])
            await clock.advance(1.0)
        assert codes == [20, 20, 33]
        _, _, body = await get_json(s, "GET", flip_url(sim, [("action", "user.getStats"), ("apiKey", FLIP["api_key"])]))
        assert body["code"] == 20 and body["data"]["api_uploads_left"] == 0


# --- Bannersnack -------------------------------------------------------------------------------------

def banner_url(sim: Simulator, t: float, secret: str = "demo-bannersnack-secret", **extra: str) -> str:
    params = [("action", "get-banner-urls"), ("client_id", "demo-client"), ("hash", "b4nn3rd3m0"),
              ("t", str(int(t))), *extra.items()]
    return f"{sim.base_url}/?{urlencode([*params, ('signature', md5_signature(secret, params))])}"


async def test_bannersnack_checks_signature_client_and_a_300s_window() -> None:
    async with running(BannersnackSimulator) as (sim, clock, s):
        now = clock.time()
        status, _, body = await get_json(s, "GET", banner_url(sim, now))
        assert status == 200 and body["code"] == 200 and "image" in body["data"]
        assert (await get_json(s, "GET", banner_url(sim, now, "wrong")))[2] == {"code": 513,
                                                                                 "message": "Invalid signature"}
        assert (await get_json(s, "GET", banner_url(sim, now - 299)))[2]["code"] == 200
        assert (await get_json(s, "GET", banner_url(sim, now - 301)))[2]["code"] == 510
        assert (await get_json(s, "GET", banner_url(sim, now + 301)))[2]["code"] == 510
        url = banner_url(sim, now).replace("client_id=demo-client", "client_id=other")
        assert (await get_json(s, "GET", url))[2]["code"] == 512
        assert (await get_json(s, "GET", f"{sim.base_url}/?action=get-banner-urls"))[2]["code"] == 520
        sim.control(clock_offset=400)  # the vendor's clock runs ahead: our fresh t is now too old
        assert (await get_json(s, "GET", banner_url(sim, now)))[2]["code"] == 510


async def test_bannersnack_conditions_use_its_codes_and_http_200() -> None:
    async with running(BannersnackSimulator) as (sim, clock, s):
        for setting, code in [("maintenance", 511), ("disabled", 516), ("server_error", 521),
                              ("banner_missing", 531), ("banner_pending", 532)]:
            sim.control(reset=True, **{setting: True})
            status, _, body = await get_json(s, "GET", banner_url(sim, clock.time()))
            assert (status, body["code"]) == (200, code), setting
        with pytest.raises(ControlError, match="bannersnack: the vendor documents no signal for rate_limited"):
            sim.control(rate_limited=True)


# --- Rubiq -------------------------------------------------------------------------------------------

def rubiq_headers(url: str, now: float, method: str = "GET", secret: str = RUBIQ["app_secret"],
                  app_key: Any = 32767) -> dict[str, str]:
    issued = rubiq_issued_at(now)
    token = rubiq_token(str(app_key), secret, method, url, issued)
    return {"Signature": json.dumps({"AppKey": app_key, "IssuedAt": issued, "Token": token})}


async def test_rubiq_verifies_the_documented_signature_scheme_with_subcodes() -> None:
    async with running(lambda c: RubiqSimulator(c, RUBIQ)) as (sim, clock, s):
        url = f"{sim.base_url}/entity/id/{ENTITY}/data"
        now = clock.time()
        status, headers, body = await get_json(s, "GET", url, headers=rubiq_headers(url, now))
        assert status == 200 and body["id"] == int(ENTITY) and "ApiStatusSubCode" not in headers

        async def sub(**kw: Any) -> tuple[int, str]:
            st, hd, _ = await get_json(s, "GET", url, **kw)
            return st, hd.get("ApiStatusSubCode", "")

        assert await sub() == (401, "401.1")
        assert await sub(headers={"Signature": "{not json"}) == (401, "401.3")
        assert await sub(headers=rubiq_headers(url, now, secret="WRONGSECRET")) == (401, "401.9")
        assert await sub(headers=rubiq_headers(url, now, app_key=1234)) == (401, "401.7")
        assert await sub(headers=rubiq_headers(url, now - 3500)) == (200, "")
        assert await sub(headers=rubiq_headers(url, now - 3700)) == (401, "401.6")  # beyond 60 minutes
        assert await sub(headers=rubiq_headers(url, now + 3700)) == (401, "401.6")
        # the token covers the method and the full URL: the same header on another entity is refused
        other = f"{sim.base_url}/entity/id/1/data"
        assert await sub(headers=rubiq_headers(other, now)) == (401, "401.9")


async def test_rubiq_nonstandard_mode_puts_the_real_status_in_the_body() -> None:
    async with running(lambda c: RubiqSimulator(c, RUBIQ)) as (sim, clock, s):
        url = f"{sim.base_url}/entity/id/{ENTITY}/data"
        sim.control(nonstandard=True, busy=True)
        status, headers, body = await get_json(s, "GET", url, headers=rubiq_headers(url, clock.time()))
        assert status == 200 and body["status"]["statusCode"] == 409 and headers["ApiStatusSubCode"] == "409.1"
        status, headers, body = await get_json(s, "GET", url, headers=rubiq_headers(url, clock.time(), secret="x"))
        assert status == 401 and body["status"]["statusCode"] == 401 and headers["ApiStatusSubCode"] == "401.9"


async def test_rubiq_illegal_access_prevention_blocks_a_key_after_misses() -> None:
    async with running(lambda c: RubiqSimulator(c, RUBIQ)) as (sim, clock, s):
        good = f"{sim.base_url}/entity/id/{ENTITY}/data"
        for i in range(IAP_MISSES):
            miss = f"{sim.base_url}/entity/id/{1000 + i}/data"
            assert (await get_json(s, "GET", miss, headers=rubiq_headers(miss, clock.time())))[0] == 404
        status, headers, _ = await get_json(s, "GET", good, headers=rubiq_headers(good, clock.time()))
        assert (status, headers["ApiStatusSubCode"]) == (403, "403.30")
        await clock.advance(901)  # the block lifts by itself on the vendor's clock
        assert (await get_json(s, "GET", good, headers=rubiq_headers(good, clock.time())))[0] == 200


# --- Bizwebs -----------------------------------------------------------------------------------------

QUERY = {"query": "query{getOrderList(params:{limit:1}){pageInfo{totalPages}}}"}


async def test_bizwebs_token_header_graphql_and_retry_after() -> None:
    async with running(BizwebsSimulator) as (sim, _, s):
        url = sim.base_url + "/api/graphql"
        auth = {"BW-API-Key": "Token " + sim.credentials()["token"]}
        status, _, body = await get_json(s, "POST", url, json=QUERY, headers=auth)
        assert status == 200 and body["data"]["getOrderList"]["pageInfo"]["totalPages"] == 3
        assert (await get_json(s, "POST", url, json=QUERY))[0] == 401
        assert (await get_json(s, "POST", url, json=QUERY, headers={"BW-API-Key": "Token wrong"}))[0] == 401
        status, _, body = await get_json(s, "POST", url, json={"query": "query{nope}"}, headers=auth)
        assert status == 200 and body["errors"]
        sim.control(retry_after=42)
        for setting, code, retry in [("partial", 206, None), ("partner_required", 412, None),
                                     ("rate_limited", 429, "42"), ("quota_exceeded", 509, "42"),
                                     ("maintenance", 501, "42"), ("disabled", 403, None), ("server_error", 500, None)]:
            sim.control(reset=True, retry_after=42, **{setting: True})
            status, headers, _ = await get_json(s, "POST", url, json=QUERY, headers=auth)
            assert (status, headers.get("Retry-After")) == (code, retry), setting


# --- movingimage -------------------------------------------------------------------------------------

async def test_movingimage_tokens_expire_on_the_vendor_clock_and_refresh() -> None:
    async with running(MovingimageSimulator) as (sim, clock, s):
        base = sim.base_url
        status, _, _ = await get_json(s, "POST", base + "/auth/login", json={"username": "x", "password": "y"})
        assert status == 401
        status, _, login = await get_json(s, "POST", base + "/auth/login", json=sim.credentials())
        assert status == 200 and login["videoManagerList"][0]["id"] == VIDEO_MANAGER_ID

        def bearer(token: str) -> dict[str, str]:
            return {"Authorization": f"Bearer {token}"}

        status, _, body = await get_json(s, "GET", base, headers=bearer(login["accessToken"]))
        assert status == 200 and body[0]["id"] == VIDEO_MANAGER_ID
        status, _, usage = await get_json(s, "GET", f"{base}/{VIDEO_MANAGER_ID}/usage",
                                          headers=bearer(login["accessToken"]))
        assert usage["videoStorageInfo"]["maxValue"] > usage["videoStorageInfo"]["currentValue"] > 0
        assert usage["trafficInfo"]["maxValue"] > 0
        await clock.advance(301)  # access tokens live 5 minutes
        assert (await get_json(s, "GET", base, headers=bearer(login["accessToken"])))[0] == 401
        refresh = f"{base}/auth/refresh/{VIDEO_MANAGER_ID}"
        status, _, renewed = await get_json(s, "POST", refresh, json={"refreshToken": login["refreshToken"]})
        assert status == 200
        assert (await get_json(s, "GET", base, headers=bearer(renewed["accessToken"])))[0] == 200
        await clock.advance(3300)  # refresh tokens live 1 hour
        status, _, _ = await get_json(s, "POST", refresh, json={"refreshToken": login["refreshToken"]})
        assert status == 401
        assert dict(sim.counts) == {"requests": 8, "login": 2, "health": 3, "refresh": 2, "usage": 1}


async def test_movingimage_storage_full_answers_1101_in_a_body() -> None:
    async with running(MovingimageSimulator) as (sim, _, s):
        _, _, login = await get_json(s, "POST", sim.base_url + "/auth/login", json=sim.credentials())
        sim.control(quota_exceeded=True)
        status, _, body = await get_json(s, "GET", sim.base_url,
                                         headers={"Authorization": "Bearer " + login["accessToken"]})
        assert status == 400 and body["code"] == 1101


# --- the set and its control API ---------------------------------------------------------------------

async def test_control_api_over_http_switches_and_refuses_with_one_line() -> None:
    sims = await start_simulators()
    try:
        async with aiohttp.ClientSession() as s:
            curl = sims.control_urls["flipsnack"]
            status, _, body = await get_json(s, "POST", curl, json={"maintenance": True})
            assert status == 200 and body["settings"]["maintenance"] is True
            status, _, state = await get_json(s, "GET", curl)
            assert state["settings"]["maintenance"] is True
            for bad, message in [({"nope": 1}, "flipsnack: unknown control setting 'nope'"),
                                 ({"delay": "slow"}, "flipsnack: delay must be a number, got 'slow'"),
                                 ({"maintenance": "yes"}, "flipsnack: maintenance must be true or false"),
                                 ([1], "control body must be a JSON object")]:
                status, _, body = await get_json(s, "POST", curl, json=bad)
                assert status == 400 and body["error"].startswith(message) and "\n" not in body["error"]
            status, _, body = await get_json(s, "POST", sims.control_urls["rubiq"], json={"maintenance": True})
            assert (status, body["error"]) == (400, "rubiq: the vendor documents no signal for maintenance")
            await sims.control("flipsnack", reset=True)
            assert sims.sims["flipsnack"].settings["maintenance"] is False
            # a refused request changes nothing, and its error stays one short line whatever was sent
            status, _, body = await get_json(s, "POST", curl, json={"maintenance": True, "delay": "x" * 100_000})
            assert status == 400 and len(body["error"]) < 120
            assert sims.sims["flipsnack"].settings["maintenance"] is False
            status, _, body = await get_json(s, "POST", curl, json={"delay": 10**6})
            assert (status, body["error"]) == (400, "flipsnack: delay must be between 0 and 600, got 1000000")
        with pytest.raises(ControlError, match="unknown simulator 'acme'"):
            await sims.control("acme", maintenance=True)
        # every base URL is on loopback, with the vendor's path prefix
        assert all(u.startswith("http://127.0.0.1:") for u in sims.base_urls.values())
        assert sims.base_urls["bannersnack"].endswith("/wapi/2.0")
        assert sims.base_urls["flipsnack"].endswith("/v1")
        assert sims.base_urls["movingimage"].endswith("/v1/vms")
    finally:
        await sims.close()


async def test_simulate_command_prints_addresses_serves_and_stops_on_sigterm() -> None:
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "exporter", "simulate", "--listen-host", "127.0.0.1", "--json",
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE, cwd=ROOT)
    try:
        assert proc.stdout is not None
        line = await asyncio.wait_for(proc.stdout.readline(), 30)
        info = json.loads(line)
        assert set(info) == {"bannersnack", "bizwebs", "rubiq", "flipsnack", "movingimage",
                             "slack", "github", "stripe", "openai", "twilio"}
        async with aiohttp.ClientSession() as s:
            status, _, body = await get_json(s, "POST", info["flipsnack"]["control_url"], json={"maintenance": True})
            assert status == 200 and body["settings"]["maintenance"] is True
            creds = info["flipsnack"]["credentials"]
            params = [("action", "user.getStats"), ("apiKey", creds["api_key"])]
            signed = [*params, ("signature", md5_signature(creds["secret"], params))]
            _, _, body = await get_json(s, "GET", f"{info['flipsnack']['base_url']}/?{urlencode(signed)}")
            assert body["code"] == 22
        proc.send_signal(signal.SIGTERM)
        assert await asyncio.wait_for(proc.wait(), 30) == 0
        assert proc.stderr is not None
        assert b"Traceback" not in await proc.stderr.read()
    finally:
        if proc.returncode is None:
            proc.kill()
            await proc.wait()


def test_simulate_command_reports_a_bad_listen_host_in_one_line() -> None:
    out = subprocess.run([sys.executable, "-m", "exporter", "simulate", "--listen-host", "192.0.2.1"],
                         capture_output=True, text=True, timeout=60, cwd=ROOT)
    assert out.returncode == 1
    assert out.stderr.startswith("error: cannot listen on 192.0.2.1:") and out.stderr.count("\n") == 1


async def test_hostile_requests_get_the_vendors_error_never_a_crash() -> None:
    sims = await start_simulators()
    deep = b"[" * 100_000
    try:
        async with aiohttp.ClientSession() as s:
            url = sims.base_urls["rubiq"] + f"/entity/id/{ENTITY}/data"
            status, headers, _ = await get_json(s, "GET", url, headers={"Signature": "[" * 4000})
            assert (status, headers["ApiStatusSubCode"]) == (401, "401.3")
            status, headers, _ = await get_json(s, "GET", url, headers={"Signature": json.dumps(
                {"AppKey": 32767, "IssuedAt": "99999999999999", "Token": "x"})})
            assert (status, headers["ApiStatusSubCode"]) == (401, "401.5")
            biz = sims.sims["bizwebs"]
            auth = {"BW-API-Key": "Token " + biz.credentials()["token"]}
            assert (await get_json(s, "POST", biz.base_url + "/api/graphql", data=deep, headers=auth))[0] == 400
            mi = sims.base_urls["movingimage"]
            assert (await get_json(s, "POST", mi + "/auth/login", data=deep))[0] == 400
            assert (await get_json(s, "POST", mi + "/auth/refresh/4711", data=deep))[0] == 401
            assert (await get_json(s, "POST", sims.control_urls["bizwebs"], data=deep))[0] == 400
            params = [("action", "get-banner-urls"), ("client_id", "demo-client"), ("hash", "b4nn3rd3m0"),
                      ("t", "soon")]
            signed = [*params, ("signature", md5_signature("demo-bannersnack-secret", params))]
            status, _, body = await get_json(s, "GET", sims.base_urls["bannersnack"] + "/?" + urlencode(signed))
            assert (status, body["code"]) == (200, 514)  # a signed request with a `t` that is not a number
    finally:
        await sims.close()


# --- the SaaS simulators answer as the real APIs do --------------------------------------------------

async def test_github_anonymous_rate_limit_says_60_in_the_body_and_the_headers_alike() -> None:
    from exporter.simulators.github import GithubSimulator

    async with running(lambda clock: GithubSimulator(clock)) as (sim, _, session):
        status, headers, body = await get_json(session, "GET", sim.base_url + "/rate_limit")
        lower = {name.lower(): value for name, value in headers.items()}
        assert status == 200
        assert body["resources"]["core"]["limit"] == body["rate"]["limit"] == 60
        assert (lower["x-ratelimit-limit"], lower["x-ratelimit-remaining"]) == ("60", "60")
        auth = {"Authorization": "Bearer " + sim.credentials()["token"]}
        status, headers, body = await get_json(session, "GET", sim.base_url + "/rate_limit", headers=auth)
        lower = {name.lower(): value for name, value in headers.items()}
        assert body["resources"]["core"]["limit"] == 5000 and lower["x-ratelimit-limit"] == "5000"


async def test_github_enterprise_without_rate_limiting_and_a_secondary_limit_without_retry_after() -> None:
    from exporter.simulators.github import GithubSimulator

    async with running(lambda clock: GithubSimulator(clock)) as (sim, _, session):
        auth = {"Authorization": "Bearer " + sim.credentials()["token"]}
        sim.control(enterprise=True)
        status, headers, body = await get_json(session, "GET", sim.base_url + "/rate_limit", headers=auth)
        assert (status, body["message"]) == (404, "Rate limiting is not enabled.")
        assert not any(name.lower().startswith("x-ratelimit") for name in headers)
        sim.control(reset=True, secondary=True, retry_after=0)
        status, headers, body = await get_json(session, "GET", sim.base_url + "/rate_limit", headers=auth)
        assert status == 403 and "secondary rate limit" in body["message"]
        assert "retry-after" not in {name.lower() for name in headers}


async def test_stripe_refuses_a_stripe_version_that_is_not_one() -> None:
    from exporter.simulators.stripe import StripeSimulator

    async with running(lambda clock: StripeSimulator(clock)) as (sim, _, session):
        auth = {"Authorization": "Bearer " + sim.credentials()["secret_key"]}
        for version, want in (("2024-06-20", 200), ("2025-03-31.basil", 200), ("latest", 400)):
            status, _, body = await get_json(session, "GET", sim.base_url + "/v1/balance",
                                             headers={**auth, "Stripe-Version": version})
            assert status == want, (version, body)
        assert body["error"]["message"] == "Invalid Stripe API version: latest"


async def test_twilio_test_credentials_get_20008() -> None:
    from exporter.simulators.twilio import TwilioSimulator

    async with running(lambda clock: TwilioSimulator(clock)) as (sim, _, session):
        creds = sim.credentials()
        sim.control(test_credentials=True)
        status, _, body = await get_json(session, "GET", f"{sim.base_url}/2010-04-01/Accounts/"
                                         f"{creds['account_sid']}.json",
                                         headers={"Authorization": aiohttp.encode_basic_auth(
                                             creds["account_sid"], creds["auth_token"])})
        assert (status, body["code"], body["status"]) == (403, 20008, 403)
