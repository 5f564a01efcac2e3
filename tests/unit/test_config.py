"""Config loading: the example is valid; each broken fixture gives exactly its one-line error."""

from __future__ import annotations

from pathlib import Path

import pytest

from exporter.config import ConfigError, load_config

from ..conftest import ROOT, assert_refused_as_written, broken_files, config_from

BROKEN = broken_files("", "*.yml")
EXAMPLE_ENV = {
    "BANNERSNACK_CLIENT_ID": "cid", "BANNERSNACK_SECRET": "s", "BANNERSNACK_BANNER_HASH": "h",
    "RUBIQ_APP_KEY": "32767", "RUBIQ_APP_SECRET": "x", "RUBIQ_MONITORING_ENTITY": "1",
    "FLIPSNACK_API_KEY": "k", "FLIPSNACK_SECRET": "s", "MOVINGIMAGE_USER": "u",
}


@pytest.mark.parametrize("path", BROKEN, ids=[p.stem for p in BROKEN])
def test_each_broken_config_names_file_key_and_value(path: Path) -> None:
    assert_refused_as_written(path, lambda path: load_config(path, env={}))


def example_copy(tmp_path: Path) -> Path:
    """config/example.yml with its secret files made in tmp_path."""
    secrets = tmp_path / "secrets"
    secrets.mkdir()
    (secrets / "bizwebs_token").write_text("t" * 32 + "\n")
    (secrets / "movingimage_password").write_text("pw\n")
    good = tmp_path / "example.yml"
    good.write_text((ROOT / "config" / "example.yml").read_text().replace("/run/secrets/", f"{secrets}/"))
    return good


def test_example_config_is_valid_with_its_environment(tmp_path: Path) -> None:
    cfg = load_config(example_copy(tmp_path), env=EXAMPLE_ENV)
    assert [t.vendor for t in cfg.targets] == ["bannersnack", "bizwebs", "rubiq", "flipsnack", "movingimage"]
    crm = cfg.target("crm")
    assert crm is not None and crm.check.path == "/entity/id/1/data"
    assert cfg.catalogs["flipsnack"].codes["50"].cls == "server_error"
    videos = cfg.target("videos")
    assert videos is not None and videos.credentials["password"] == "pw"


def test_secret_files_env_vars_and_path_prefix(tmp_path: Path) -> None:
    (tmp_path / "tok").write_text("from-a-file\n")
    cfg = config_from({"targets": [
        {"name": "a", "vendor": "bizwebs", "base_url": "https://${HOST}/prefix/",
         "credentials": {"token_file": "tok"}},
    ]}, base=tmp_path, env={"HOST": "shop.example"})
    t = cfg.targets[0]
    assert t.credentials["token"] == "from-a-file"
    assert t.base_url == "https://shop.example/prefix"
    assert "from-a-file" not in repr(t)  # a stray log of the target never shows a secret


def test_secret_values_never_appear_in_errors() -> None:
    with pytest.raises(ConfigError) as err:
        config_from({"targets": [{"name": "a", "vendor": "flipsnack", "base_url": "https://x.example",
                                  "credentials": {"api_key": "SUPERSECRET", "secrit": "SUPERSECRET2"}}]})
    assert "SUPERSECRET" not in str(err.value)


def test_user_defined_vendor_and_catalog_file(tmp_path: Path) -> None:
    (tmp_path / "acme.yaml").write_text(
        "vendor: acme\ncredentials: [token]\nsigner: {name: header, options: {header: X-Key, template: '{token}'}}\n"
        "check: {path: /health}\ncode_from: [{body: status}]\n"
        "codes:\n  '1': {class: ok}\n  '2': {class: maintenance}\n")
    cfg = config_from({"catalog_files": ["acme.yaml"], "targets": [
        {"name": "a", "vendor": "acme", "base_url": "http://127.0.0.1:1", "credentials": {"token": "t"}}]},
        base=tmp_path)
    assert cfg.targets[0].catalog.codes["2"].cls == "maintenance"
    assert cfg.targets[0].check.path == "/health"


def test_looking_a_target_up_by_name_does_not_scan_the_targets() -> None:
    class Counted(tuple):  # type: ignore[type-arg]
        scans = 0

        def __iter__(self):  # type: ignore[no-untyped-def]
            Counted.scans += 1
            return super().__iter__()

    cfg = config_from({"targets": [{"name": f"t{i}", "vendor": "flipsnack", "base_url": "http://127.0.0.1:9",
                                    "credentials": {"api_key": "k", "secret": "s"}} for i in range(50)]})
    from dataclasses import replace
    counted = replace(cfg, targets=Counted(cfg.targets))
    before = Counted.scans
    assert [counted.target(f"t{i}") for i in (0, 49)] == [cfg.targets[0], cfg.targets[49]]
    assert counted.target("nope") is None
    assert Counted.scans == before


def test_credentials_read_like_a_mapping_and_never_show_a_value() -> None:
    from exporter.config import Credentials

    creds = Credentials({"api_key": "k-123", "secret": "s-456"})
    assert creds["api_key"] == "k-123" and creds["secret"] == "s-456"
    assert list(creds) == ["api_key", "secret"] and len(creds) == 2
    assert dict(creds.items()) == {"api_key": "k-123", "secret": "s-456"}
    assert "secret" in creds and "token" not in creds and creds.get("token") is None
    with pytest.raises(KeyError):
        creds["token"]
    with pytest.raises(KeyError):
        creds["k-123"]  # a value is not a name
    same = Credentials({"secret": "s-456", "api_key": "k-123"})
    assert creds == same and hash(creds) == hash(same)
    assert creds != Credentials({"api_key": "k-123", "secret": "other"})
    assert "k-123" not in repr(creds) and "s-456" not in repr(creds) and "api_key" in repr(creds)
    assert len(Credentials({})) == 0 and list(Credentials({})) == []


def test_a_variable_spelt_with_an_escape_is_expanded_too(tmp_path: Path) -> None:
    """``\\x24{VAR}`` in a double-quoted string is ``${VAR}`` once parsed: found though the text has no ``${``."""
    path = tmp_path / "config.yml"
    path.write_text('targets:\n- name: a\n  vendor: flipsnack\n  base_url: https://api.example.com\n'
                    '  credentials: {api_key: k, secret: s}\n  labels: {team: "\\x24{TEAM}"}\n')
    assert load_config(path, {"TEAM": "payments"}).targets[0].labels == (("team", "payments"),)
    with pytest.raises(ConfigError, match=r"targets\[0\]\.labels\.team: environment variable TEAM is not set"):
        load_config(path, {})
