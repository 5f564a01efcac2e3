"""Signer plug-in options are checked while the config loads: a misspelt or mistyped option, in an
override of a built-in catalog (``vendors:``) or in a user catalog file (``catalog_files``), is one
line naming the file, the key path and the value, from ``--check-config`` and from a reload (which
keeps the running config), never a network fault at probe time."""

from __future__ import annotations

import subprocess
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import yaml

from exporter.app import Exporter
from exporter.config import load_config
from exporter.model import ConfigError

from ..conftest import ROOT, run_cli_here

#: per signer: the credentials and a valid set of options of a user catalog using it
VALID: dict[str, tuple[list[str], dict[str, Any]]] = {
    "header": (["token"], {"template": "Token {token}"}),
    "md5_sorted_params": (["api_key", "secret"], {"key_param": "apiKey", "key_credential": "api_key",
                                                  "secret_credential": "secret", "signature_param": "signature"}),
    "rubiq_hmac": (["app_key", "app_secret"], {"app_key_credential": "app_key", "app_secret_credential": "app_secret",
                                               "header": "Signature"}),
    "bearer_login": (["username", "password"], {"login_path": "/login", "access_token_field": "token",
                                                "access_ttl": 300}),
    "oidc_password": (["username", "password"], {"token_url": "/token", "client_id": "monitoring"}),
}
#: the built-in vendor whose catalog uses each signer (oidc_password: movingimage, renamed in the override)
BUILTIN = {"header": "bizwebs", "md5_sorted_params": "flipsnack", "rubiq_hmac": "rubiq",
           "bearer_login": "movingimage", "oidc_password": "movingimage"}


@dataclass(frozen=True)
class Case:
    kind: str
    signer: str
    option: str
    value: Any
    #: the reason, with {vendor} for the catalog's name
    reason: str


SECONDS = "must be a number of seconds, 0 or more"
CASES = [
    Case("unknown option", "bearer_login", "acess_ttl", 60,
         "unknown option for signer bearer_login (known: access_token_field, access_ttl, login_path, "
         "password_credential, password_field, refresh_path, refresh_token_field, refresh_ttl, renew_before, "
         "username_credential, username_field, variables)"),
    Case("seconds given a duration", "bearer_login", "refresh_ttl", "1h", "must be a number"),
    Case("seconds given a negative number", "oidc_password", "access_ttl", -5, SECONDS),
    Case("seconds given infinity", "bearer_login", "renew_before", float("inf"), "must be a finite number"),
    Case("string given a number", "md5_sorted_params", "key_param", 5, "must be a string"),
    Case("string left empty", "header", "header", "", "must not be empty"),
    Case("string given a mapping", "rubiq_hmac", "header", {"name": "Signature"}, "must be a string"),
    Case("boolean given text", "rubiq_hmac", "app_key_json_number", "yes", "must be true or false"),
    Case("mapping given text", "bearer_login", "variables", "videoManagerList.0.id", "must be a mapping"),
    Case("list given text", "md5_sorted_params", "exclude", "file", "must be a list"),
    Case("credential unknown", "md5_sorted_params", "secret_credential", "secrte",
         "names a credential not listed in {vendor}.credentials ({creds})"),
    Case("path without a slash", "bearer_login", "login_path", "auth/login", "must be a path starting with /"),
    Case("url of another scheme", "oidc_password", "token_url", "ftp://login.invalid/token",
         "must be an http:// or https:// URL without query or fragment"),
    Case("template naming no credential", "header", "template", "Token {tokn}",
         "{{tokn}} is not a credential listed in {vendor}.credentials"),
]


def _expected(file: Path, path: str, case: Case, vendor: str, creds: list[str]) -> str:
    reason = case.reason.format(vendor=vendor, creds=", ".join(creds))
    # the value as the error shows any value: as YAML, never a Python repr
    return str(ConfigError(str(file), path, reason, case.value))


def _override(tmp_path: Path, case: Case) -> tuple[Path, str]:
    """A config overriding one option of the built-in catalog that uses the signer."""
    vendor = BUILTIN[case.signer]
    signer: dict[str, Any] = {"options": {case.option: case.value}}
    if case.signer == "oidc_password":  # another plug-in than the built-in one: its options in full
        signer = {"name": "oidc_password", "options": {**VALID["oidc_password"][1], case.option: case.value}}
    config = tmp_path / "override.yml"
    config.write_text(yaml.safe_dump({"vendors": {vendor: {"signer": signer}}, "targets": []}))
    builtin_creds = yaml.safe_load((ROOT / "exporter" / "catalogs" / f"{vendor}.yaml").read_text())["credentials"]
    return config, _expected(config, f"vendors.{vendor}.signer.options.{case.option}", case, vendor, builtin_creds)


def _user_catalog(tmp_path: Path, case: Case) -> tuple[Path, str]:
    """A config reading a catalog file whose signer has the bad option."""
    creds, options = VALID[case.signer]
    signer = {"name": case.signer, "options": {**options, case.option: case.value}}
    catalog, config = _acme_catalog(tmp_path, creds, signer)
    return config, _expected(catalog, f"signer.options.{case.option}", case, "acme", creds)


def _acme_catalog(tmp_path: Path, credentials: list[str], signer: dict[str, Any]) -> tuple[Path, Path]:
    """A catalog file for a vendor ``acme`` with this signer, and a config that reads it: their paths."""
    catalog = tmp_path / "acme.yaml"
    catalog.write_text(yaml.safe_dump({
        "vendor": "acme", "credentials": credentials, "signer": signer,
        "check": {"path": "/health"}, "codes": {"200": {"class": "ok"}}}))
    config = tmp_path / "user.yml"
    config.write_text(yaml.safe_dump({"catalog_files": ["acme.yaml"], "targets": []}))
    return catalog, config


WHERE = {"override": _override, "catalog_file": _user_catalog}
PARAMS = [pytest.param(case, where, id=f"{where}-{case.kind}") for case in CASES for where in WHERE]


def _check_config(path: Path) -> subprocess.CompletedProcess[str]:
    return run_cli_here("--config", str(path), "--check-config")


@pytest.mark.parametrize(("case", "where"), PARAMS)
def test_check_config_names_file_key_and_value(tmp_path: Path, case: Case, where: str) -> None:
    config, expected = WHERE[where](tmp_path, case)
    run = _check_config(config)
    assert run.returncode == 1
    assert run.stderr.splitlines() == ["error: " + expected]


#: a reload refuses through the same loader that --check-config runs above for every case: what it adds
#: (the refusal is that one line, and the running config stays) does not depend on which option is wrong
RELOAD_PARAMS = [pytest.param(case, where, id=f"{where}-{case.kind}") for case in (CASES[0], CASES[10])
                 for where in WHERE]


@pytest.mark.parametrize(("case", "where"), RELOAD_PARAMS)
async def test_reload_rejects_the_option_and_keeps_the_running_config(tmp_path: Path, case: Case,
                                                                      where: str) -> None:
    config, expected = WHERE[where](tmp_path, case)
    good = config.read_text()
    config.write_text(yaml.safe_dump({"targets": []}))
    exporter = Exporter(load_config(config), config_path=config)
    running = exporter.config
    config.write_text(good)
    ok, message = await exporter.reload()
    assert (ok, message) == (False, expected)
    assert exporter.config is running


def test_a_required_option_missing_is_named_without_a_value(tmp_path: Path) -> None:
    catalog, config = _acme_catalog(tmp_path, ["username", "password"], {
        "name": "bearer_login", "options": {"login_path": "/login", "access_ttl": 60}})
    run = _check_config(config)
    assert (run.returncode, run.stderr.splitlines()) == (
        1, [f"error: {catalog}: signer.options.access_token_field: is required by signer bearer_login"])


def test_a_default_credential_the_catalog_lacks_is_named(tmp_path: Path) -> None:
    """The login signers read ``username`` unless told otherwise: a catalog calling it ``user`` must
    say so, and is told at load which option to set."""
    catalog, config = _acme_catalog(tmp_path, ["user", "password"], {
        "name": "oidc_password", "options": {"token_url": "https://login.invalid/token", "client_id": "x"}})
    run = _check_config(config)
    assert (run.returncode, run.stderr.splitlines()) == (
        1, [f"error: {catalog}: signer.options.username_credential: is required: acme.credentials has no 'username'"])


def test_an_override_keeping_the_signer_merges_options_per_key(tmp_path: Path) -> None:
    """Overriding one option of a built-in catalog keeps the others (the vendor's field names)."""
    config = tmp_path / "override.yml"
    config.write_text(yaml.safe_dump({"vendors": {"movingimage": {"signer": {"options": {"access_ttl": 120}}}},
                                      "targets": []}))
    options = load_config(config).catalogs["movingimage"].signer_options
    assert (options.access_ttl, options.access_token_field, options.login_path) == (120, "accessToken", "/auth/login")


@pytest.mark.parametrize(("signer", "expected"), [
    ({"options": "login_path=/x"}, "vendors.movingimage.signer.options: must be a mapping (got 'login_path=/x')"),
    # another plug-in starts from its own options: the built-in one's would all be unknown to it
    ({"name": "oidc_password"}, "vendors.movingimage.signer.options.token_url: is required by signer oidc_password"),
])
def test_an_override_of_the_whole_options_or_of_the_plugin(tmp_path: Path, signer: dict[str, Any],
                                                           expected: str) -> None:
    config = tmp_path / "override.yml"
    config.write_text(yaml.safe_dump({"vendors": {"movingimage": {"signer": signer}}, "targets": []}))
    run = _check_config(config)
    assert (run.returncode, run.stderr.splitlines()) == (1, [f"error: {config}: {expected}"])
