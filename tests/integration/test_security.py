"""Secrets never leave the exporter except towards their own vendor.

Every credential of every vendor gets a unique marker value, the vendor simulators are told to
accept exactly those, and then everything a person or a program can read is collected: every
endpoint and page, /probe, failure excerpts while credentials are refused, login failures, bad
config errors, ``--check-config``, failed reloads, basic-auth failures, debug logs (in process and
from a ``--log-level debug`` process) and object reprs. No marker may appear in any of it.

The markers are also proven to be in use: every vendor answers ok with them first, so the test
cannot pass by never sending a credential.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import logging
import os
import secrets
import signal
import sys
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiohttp
import bcrypt
import pytest
import yaml

from exporter.clock import Clock, FakeClock
from exporter.config import ConfigError, load_config
from exporter.simulators import ControlError, SimulatorSet, start_simulators

from ..conftest import ROOT, Running, free_port, idle, run_cli_here, running_exporter

_RUN = secrets.token_hex(4)


def _marker(vendor: str, key: str) -> str:
    if key == "app_key":  # Rubiq's AppKey is a number
        return str(secrets.randbelow(9 * 10**11) + 10**11)
    return f"MK{vendor[:4]}{key.replace('_', '')}{_RUN}{secrets.token_hex(3)}"


def markers_for(sims: SimulatorSet) -> dict[str, dict[str, str]]:
    return {v: {k: _marker(v, k) for k in sim.creds} for v, sim in sims.sims.items()}


@contextlib.asynccontextmanager
async def marked_simulators(
        clock: Clock | None = None) -> AsyncIterator[tuple[SimulatorSet, dict[str, dict[str, str]]]]:
    sims = await start_simulators(clock=clock)
    try:
        creds = markers_for(sims)
        for vendor, sim in sims.sims.items():
            sim.creds = dict(creds[vendor])  # the simulators now accept exactly the markers
        yield sims, creds
    finally:
        await sims.close()


def all_markers(sims: SimulatorSet, creds: dict[str, dict[str, str]], *extra: str) -> list[str]:
    out = [v for c in creds.values() for v in c.values()] + list(extra)
    # tokens a login handed out are credentials too
    mi = sims.sims["movingimage"]
    out += [*getattr(mi, "access", {}), *getattr(mi, "refresh", {})]
    return out


def assert_clean(blob: str, markers: list[str]) -> None:
    leaked = [m for m in markers if m in blob]
    if leaked:
        at = blob.index(leaked[0])
        pytest.fail(f"{len(leaked)} secret(s) leaked, e.g. ...{blob[max(0, at - 200):at + 40]!r}")


def write_config(path: Path, sims: SimulatorSet, creds: dict[str, dict[str, str]],
                 secret_file: bool = True) -> None:
    cfg = sims.targets_config("1s")
    for t in cfg["targets"]:
        t["credentials"] = dict(creds[t["vendor"]])
    if secret_file:
        # one secret read from a file, the way a Kubernetes secret is mounted
        (path.parent / "flipsnack.secret").write_text(creds["flipsnack"]["secret"] + "\n")
        flip = next(t for t in cfg["targets"] if t["vendor"] == "flipsnack")
        del flip["credentials"]["secret"]
        flip["credentials"]["secret_file"] = "flipsnack.secret"
    path.write_text(yaml.safe_dump(cfg))


async def fetch(session: aiohttp.ClientSession, method: str, url: str, **kw: Any) -> str:
    async with session.request(method, url, **kw) as r:
        return f"{method} {url} -> {r.status} {dict(r.headers)}\n{await r.text(errors='replace')}\n"


async def advance_until(clock: FakeClock, run: Running, pred: Any, what: Any = None) -> None:
    """Move the clock on a second at a time (bounded: ten minutes of it), each probe that lets start run
    to its end, until ``pred`` holds."""
    for _ in range(600):
        if pred():
            return
        await clock.advance(1.0)
        await idle(run)
    raise AssertionError(f"condition not reached: {what() if what else ''}")


ENDPOINTS = ["/metrics", "/", "/-/healthy", "/-/ready", "/api/v1/targets", "/targets/nope", "/api/v1/targets/nope",
             "/probe", "/probe?target=nope", "/nope"]


async def test_no_secret_in_any_endpoint_page_log_or_error(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)
    cfg_path = tmp_path / "config.yml"
    out: list[str] = []
    clock = FakeClock()
    async with marked_simulators(clock) as (sims, creds):
        write_config(cfg_path, sims, creds)
        config = load_config(cfg_path)
        out += [repr(config), str(config.targets), repr(config.targets[0].credentials)]
        async with running_exporter(config, clock=clock, config_path=cfg_path) as ex:
            state = ex.exporter.state
            names = [t.name for t in config.targets]

            def all_are(cls: str) -> bool:
                return all((ts := state.get(n)) is not None and ts.last is not None
                           and ts.last.outcome.cls == cls for n in names)

            def classes() -> dict[str, str | None]:
                return {ts.target.name: ts.last.outcome.cls if ts.last else None for ts in state}

            # the markers work: every vendor accepted them
            await advance_until(clock, ex, lambda: all_are("ok"), what=classes)

            async def read_everything() -> None:
                for path in ENDPOINTS + [f"/targets/{n}" for n in names] + [f"/api/v1/targets/{n}" for n in names]:
                    out.append(await fetch(ex.session, "GET", ex.url + path))
                for n in names:
                    out.append(await fetch(ex.session, "GET", ex.url + f"/probe?target={n}"))

            await read_everything()
            # refused credentials and failed logins: the failure paths keep excerpts and messages
            for vendor in sims.sims:
                await sims.control(vendor, rotated=True)
            await advance_until(clock, ex, lambda: all_are("auth"), what=classes)
            await read_everything()
            # a login again after revoked tokens, and maintenance where the vendor has a signal for it
            before = {n: state.get(n).probes for n in names}  # type: ignore[union-attr]
            for vendor in sims.sims:
                await sims.control(vendor, reset=True)
                with contextlib.suppress(ControlError):
                    await sims.control(vendor, maintenance=True)
            await sims.control("movingimage", revoke_tokens=True)
            await advance_until(clock, ex, lambda: all(state.get(n).probes > before[n]  # type: ignore[union-attr]
                                                       for n in names))
            await read_everything()
            # failed reloads: a broken value next to the credentials, and an unknown credential key
            good = cfg_path.read_text()
            broken = yaml.safe_load(good)
            broken["targets"][0]["credentials"]["passwrd"] = creds["bannersnack"]["secret"]
            cfg_path.write_text(yaml.safe_dump(broken))
            out.append(await fetch(ex.session, "POST", ex.url + "/-/reload"))
            broken = yaml.safe_load(good)
            broken["targets"][1]["credentials"]["token"] = [creds["bizwebs"]["token"]]
            cfg_path.write_text(yaml.safe_dump(broken))
            out.append(await fetch(ex.session, "POST", ex.url + "/-/reload"))
            cfg_path.write_text(good.replace(creds["rubiq"]["app_secret"], creds["rubiq"]["app_secret"] + '"x'))
            out.append(await fetch(ex.session, "POST", ex.url + "/-/reload"))
            cfg_path.write_text(good)
            out.append(await fetch(ex.session, "POST", ex.url + "/-/reload"))
            out.append(repr(ex.exporter.config))
            out.append(repr([ts.last for ts in state]))
        markers = all_markers(sims, creds)
    assert any("reload" in o and "-> 500" in o for o in out)
    out.append(caplog.text)
    out += [repr(r.__dict__) for r in caplog.records]
    assert_clean("\n".join(out), markers)


BROKEN_CONFIGS = {
    "unknown credential key": lambda c: c["targets"][0]["credentials"].update(extra=c["targets"][0]["credentials"]
                                                                              ["secret"]),
    "credential as a list": lambda c: c["targets"][1]["credentials"].update(token=[c["targets"][1]["credentials"]
                                                                                   ["token"]]),
    "credential as a mapping": lambda c: c["targets"][1]["credentials"].update(
        token={c["targets"][1]["credentials"]["token"]: 1}),
    "missing credential": lambda c: c["targets"][2]["credentials"].pop("app_key"),
    "credentials not a mapping": lambda c: c["targets"][3].update(credentials=list(c["targets"][3]["credentials"]
                                                                                   .values())),
    "bad url beside secrets": lambda c: c["targets"][4].update(base_url="not a url"),
    "unknown target key": lambda c: c["targets"][4].update(password=c["targets"][4]["credentials"]["password"]),
    "secret in a bad label": lambda c: c["targets"][4].update(labels={"bad-name": c["targets"][4]["credentials"]
                                                                       ["password"]}),
}


async def test_config_errors_and_check_config_show_no_secret(tmp_path: Path) -> None:
    out: list[str] = []
    async with marked_simulators() as (sims, creds):
        for name, breaker in BROKEN_CONFIGS.items():
            path = tmp_path / f"{name.replace(' ', '_')}.yml"
            write_config(path, sims, creds, secret_file=False)
            cfg = yaml.safe_load(path.read_text())
            breaker(cfg)
            path.write_text(yaml.safe_dump(cfg))
            try:
                load_config(path)
            except ConfigError as err:
                out.append(f"{name}: {err}")
            else:
                pytest.fail(f"{name}: the config loaded")
        # YAML that does not parse, on the very line that holds a secret
        path = tmp_path / "unparsable.yml"
        write_config(path, sims, creds, secret_file=False)
        secret = creds["bizwebs"]["token"]
        path.write_text(path.read_text().replace(secret, f'"{secret}\n  - [{secret}'))
        with pytest.raises(ConfigError) as err:
            load_config(path)
        out.append(str(err.value))
        # the command line's check, for a good and a broken file, logging at debug (a process of its own
        # logging at debug: test_a_debug_logging_process_with_basic_auth_leaks_nothing)
        good = tmp_path / "good.yml"
        write_config(good, sims, creds)
        for file in (good, tmp_path / "unknown_credential_key.yml", path):
            run = run_cli_here("--config", str(file), "--check-config", "--log-level", "debug")
            out.append(f"{file}: rc={run.returncode}\n{run.stdout}{run.stderr}")
        markers = all_markers(sims, creds)
    assert "rc=0" in out[-3] and "rc=1" in out[-2] and "rc=1" in out[-1], out[-3:]
    assert all(len(o.strip().splitlines()) == 1 for o in out[:len(BROKEN_CONFIGS) + 1]), out
    assert_clean("\n".join(out), markers)


async def test_a_debug_logging_process_with_basic_auth_leaks_nothing(tmp_path: Path) -> None:
    password = f"MKbasicpw{_RUN}{secrets.token_hex(3)}"
    wrong_password = f"MKwrongpw{_RUN}{secrets.token_hex(3)}"
    hashed = bcrypt.hashpw(password.encode(), bcrypt.gensalt(rounds=4)).decode()
    (tmp_path / "web.yml").write_text(yaml.safe_dump({"basic_auth_users": {"prometheus": hashed}}))
    cfg_path = tmp_path / "config.yml"
    out: list[str] = []
    async with marked_simulators() as (sims, creds):
        write_config(cfg_path, sims, creds)
        # one secret through the environment, as ${VAR}
        env_secret = creds["bizwebs"]["token"]
        cfg_path.write_text(cfg_path.read_text().replace(env_secret, "${BIZWEBS_TOKEN}"))
        port = free_port()
        proc = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "exporter", "--config", str(cfg_path), "--listen", f"127.0.0.1:{port}",
            "--log-level", "debug", "--web.config.file", str(tmp_path / "web.yml"),
            cwd=ROOT, env={**os.environ, "PYTHONPATH": str(ROOT), "BIZWEBS_TOKEN": env_secret,
                           "PYTHONASYNCIODEBUG": "1"},
            stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE)
        try:
            url = f"http://127.0.0.1:{port}"
            right = {"Authorization": "Basic " + base64.b64encode(f"prometheus:{password}".encode()).decode()}
            wrong = {"Authorization": "Basic " + base64.b64encode(f"prometheus:{wrong_password}".encode()).decode()}
            async with aiohttp.ClientSession() as s:
                async def healthy_everywhere() -> bool:
                    with contextlib.suppress(aiohttp.ClientError):
                        async with s.get(url + "/api/v1/targets", headers=right) as r:
                            text = await r.text()
                            return r.status == 200 and text.count('"ok"') >= len(sims.sims)
                    return False

                loop = asyncio.get_running_loop()
                end = loop.time() + 30
                while not await healthy_everywhere():
                    assert proc.returncode is None and loop.time() < end, "the exporter did not get healthy"
                    await asyncio.sleep(0.1)
                pages = [f"/probe?target={v}" for v in sims.sims] + [f"/targets/{v}" for v in sims.sims]
                for path in ENDPOINTS + pages:
                    out.append(await fetch(s, "GET", url + path, headers=right))
                    out.append(await fetch(s, "GET", url + path, headers=wrong))
                    out.append(await fetch(s, "GET", url + path))
                for vendor in sims.sims:
                    await sims.control(vendor, rotated=True)
                await asyncio.sleep(0)
                for v in sims.sims:
                    out.append(await fetch(s, "GET", url + f"/probe?target={v}", headers=right))
                cfg_path.write_text(cfg_path.read_text().replace("${BIZWEBS_TOKEN}", "${NOT_SET_ANYWHERE}"))
                out.append(await fetch(s, "POST", url + "/-/reload", headers=right))
                out.append(await fetch(s, "POST", url + "/-/reload", headers=wrong))
        finally:
            if proc.returncode is None:
                proc.send_signal(signal.SIGTERM)
            stdout, stderr = await asyncio.wait_for(proc.communicate(), 30)
        out += [stdout.decode(), stderr.decode()]
        markers = all_markers(sims, creds, password, wrong_password, hashed)
    assert any("-> 200" in o for o in out) and any("-> 401" in o for o in out)
    assert "NOT_SET_ANYWHERE" in "".join(out)  # the failed reload was reported...
    assert_clean("\n".join(out), markers)  # ...and nothing secret was
