"""docs/vendors-saas.md says what the catalogs do: its code tables match the catalogs, its worked
example catalog loads and passes its own examples, its overrides are valid config."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
import yaml

from exporter._yamlnode import Node
from exporter.catalog import builtin_catalogs, parse_catalog
from exporter.classify import example_failures

from ..conftest import config_from

DOC = (Path(__file__).resolve().parents[2] / "docs" / "vendors-saas.md").read_text(encoding="utf-8")
SECTIONS = {"slack": "## Slack", "github": "## GitHub", "stripe": "## Stripe", "openai": "## OpenAI",
            "twilio": "## Twilio"}


def section(vendor: str) -> str:
    return DOC.split(SECTIONS[vendor], 1)[1].split("\n## ", 1)[0]


@pytest.mark.parametrize("vendor", sorted(SECTIONS))
def test_the_code_table_is_the_catalog(vendor: str) -> None:
    table: dict[str, str] = {}
    for cls, codes in re.findall(r"^\| (\w+) \| (.+) \|$", section(vendor), re.M):
        for code in re.findall(r"`([^`]+)`", codes):
            table[code] = cls
    catalog = builtin_catalogs()[vendor]
    assert table == {code: info.cls for code, info in catalog.codes.items()}


def blocks() -> list[str]:
    return re.findall(r"```yaml\n(.*?)```", DOC, re.S)


def test_the_worked_example_catalog_passes_its_examples() -> None:
    text = next(b for b in blocks() if "vendor: acme" in b)
    catalog = parse_catalog("acme", Node(yaml.safe_load(text), "docs/vendors-saas.md", ""))
    assert len(catalog.examples) >= len(catalog.codes)
    assert example_failures(catalog) == []
    assert {ex.code for ex in catalog.examples} == set(catalog.codes)


def test_the_overrides_shown_are_valid_config() -> None:
    overrides = [yaml.safe_load(b) for b in blocks() if b.startswith("vendors:")]
    assert overrides
    for block in overrides:
        for vendor, over in block["vendors"].items():
            creds = {c: "x" * 8 for c in over.get("credentials", builtin_catalogs()[vendor].credentials)}
            config = config_from({"vendors": block["vendors"], "targets": [
                {"name": vendor, "vendor": vendor, "base_url": "http://127.0.0.1:1", "credentials": creds}]})
            assert config.targets[0].catalog.vendor == vendor
