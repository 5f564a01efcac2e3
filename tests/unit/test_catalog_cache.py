"""The shipped catalogs are parsed once per process and shared by every config load: an override in one
load must not reach the next (a reload that drops it goes back to the shipped catalog), and a user's
catalog file is read again at every load (a reload sees it changed)."""

from __future__ import annotations

from pathlib import Path

from exporter.catalog import builtin_catalogs, builtin_raw, parse_catalog
from exporter.config import load_config

from ..conftest import config_from

SLACK = {"name": "s", "vendor": "slack", "base_url": "http://127.0.0.1:1", "credentials": {"token": "t"}}


def test_an_override_in_one_load_does_not_reach_the_next() -> None:
    assert config_from({"targets": [SLACK]}).targets[0].catalog.codes["ratelimited"].cls == "rate_limited"
    # a None value is filled in where the override's node is read (Node.mapping): on the merged copy only
    overridden = config_from({"vendors": {"slack": {"codes": {"ratelimited": {"class": "maintenance"}},
                                                    "http_fallback": None, "check": {"params": None}}},
                              "targets": [SLACK]})
    assert overridden.targets[0].catalog.codes["ratelimited"].cls == "maintenance"

    again = config_from({"targets": [SLACK]}).targets[0].catalog
    assert again.codes["ratelimited"].cls == "rate_limited"
    # every shipped catalog as a fresh read of its file makes it
    assert again == parse_catalog("slack", builtin_raw()["slack"])
    assert builtin_catalogs() == {name: parse_catalog(name, node) for name, node in builtin_raw().items()}


def test_a_reload_reads_a_changed_catalog_file_again(tmp_path: Path) -> None:
    acme = tmp_path / "acme.yaml"
    config = tmp_path / "config.yml"
    config.write_text("catalog_files: [acme.yaml, slack.yaml]\ntargets:\n"
                      "- {name: a, vendor: acme, base_url: 'http://127.0.0.1:1', credentials: {token: t}}\n"
                      "- {name: s, vendor: slack, base_url: 'http://127.0.0.1:1', credentials: {token: t}}\n")

    def write(cls: str) -> None:
        acme.write_text("vendor: acme\ncredentials: [token]\n"
                        "signer: {name: header, options: {header: X-Key, template: '{token}'}}\n"
                        f"check: {{path: /health}}\ncode_from: [{{body: status}}]\ncodes:\n  '2': {{class: {cls}}}\n")
        # a catalog file may also change a built-in vendor
        (tmp_path / "slack.yaml").write_text(f"vendor: slack\ncodes:\n  ratelimited: {{class: {cls}}}\n")

    write("maintenance")
    first = load_config(config, env={})
    write("auth")
    second = load_config(config, env={})
    assert [t.catalog.codes[code].cls for t, code in zip(first.targets, ("2", "ratelimited"), strict=True)] == [
        "maintenance", "maintenance"]
    assert [t.catalog.codes[code].cls for t, code in zip(second.targets, ("2", "ratelimited"), strict=True)] == [
        "auth", "auth"]
