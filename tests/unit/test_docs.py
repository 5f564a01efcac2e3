"""The repository stands on its own, and docs/vendors.md says what the shipped catalogs and the signer
plug-ins do: a code table per vendor equal to its catalog, a worked example catalog that passes its
own examples, overrides that are valid config, and every signer option with its kind and default."""

from __future__ import annotations

import re
import subprocess
from typing import Any

import pytest
import yaml

from exporter._yamlnode import Node
from exporter.catalog import builtin_catalogs, parse_catalog
from exporter.classify import example_failures
from exporter.signers import SIGNERS, OptionSpec, option_specs

from ..conftest import ROOT, config_from

#: references to vendor material kept outside this repository (the brackets keep this file from matching)
OUTSIDE = re.compile(r"vendor[-]docs|shared[/]vendors|[.][.][/]shared\b|/work[/]shared")
BUILTIN = sorted(p.stem for p in (ROOT / "exporter" / "catalogs").glob("*.yaml"))
ROW = re.compile(r"^\| `([^`]+)` \| `([a-z_]+)` \| (.*) \|$", re.M)
DOC = ROOT / "docs" / "vendors.md"
NUMBERS = ["zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine", "ten", "eleven",
           "twelve", "thirteen", "fourteen", "fifteen", "sixteen", "seventeen", "eighteen", "nineteen", "twenty"]


def tracked_files() -> list[str]:
    out = subprocess.run(["git", "ls-files", "-z"], cwd=ROOT, capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, f"git ls-files failed: {out.stderr.strip()}"
    files = [f for f in out.stdout.split("\0") if f]
    assert "exporter/catalog.py" in files, "not run from a git checkout of the project"
    return files


def test_no_tracked_file_refers_to_material_outside_the_repository() -> None:
    assert OUTSIDE.search("see " + "vendor-" + "docs/flipsnack.txt"), "the pattern itself is broken"
    hits = []
    for name in tracked_files():
        path = ROOT / name
        if not path.is_file():
            continue  # deleted in the work tree, not yet committed
        text = path.read_bytes().decode("utf-8", "replace")
        hits += [f"{name}:{text.count(chr(10), 0, m.start()) + 1}: {m.group(0)}" for m in OUTSIDE.finditer(text)]
    assert not hits, "point these at docs/vendors.md instead:\n" + "\n".join(hits)


def vendor_section(vendor: str) -> str:
    text = DOC.read_text(encoding="utf-8")
    sections = [s for s in re.split(r"^## ", text, flags=re.M) if s.lower().startswith(vendor)]
    assert len(sections) == 1, f"docs/vendors.md needs exactly one '## {vendor}' section"
    return sections[0]


@pytest.mark.parametrize("vendor", BUILTIN)
def test_each_vendors_code_table_is_its_catalog(vendor: str) -> None:
    """Every code of the shipped catalog, with its class and message, and nothing else."""
    catalog = yaml.safe_load((ROOT / "exporter" / "catalogs" / f"{vendor}.yaml").read_text(encoding="utf-8"))
    shipped = {str(code): (info["class"], info["message"]) for code, info in catalog["codes"].items()}
    documented = {code: (cls, message) for code, cls, message in ROW.findall(vendor_section(vendor))}
    assert documented == shipped


@pytest.mark.parametrize("vendor", BUILTIN)
def test_each_vendor_section_covers_calls_checks_status_budget_and_decisions(vendor: str) -> None:
    section = vendor_section(vendor)
    for part in ("Calling and signing", "Health check", "Status", "Quotas and budget", "Our decisions"):
        assert f"**{part}.**" in section, f"docs/vendors.md, {vendor}: no '{part}' paragraph"


def test_the_introduction_counts_the_built_in_vendors() -> None:
    intro = " ".join(DOC.read_text(encoding="utf-8").split("\n## ", 1)[0].split())
    count = NUMBERS[len(BUILTIN)] if len(BUILTIN) < len(NUMBERS) else str(len(BUILTIN))
    assert f"{count} built-in vendors" in intro, (
        f"docs/vendors.md: the introduction should say '{count} built-in vendors'")
    for vendor in BUILTIN:
        assert vendor in intro.lower(), f"docs/vendors.md: the introduction does not name {vendor}"


def yaml_blocks(text: str) -> list[str]:
    return re.findall(r"```yaml\n(.*?)```", text, re.S)


def test_the_contributed_example_catalog_passes_its_examples() -> None:
    section = DOC.read_text(encoding="utf-8").split("\n## Contributing a vendor in YAML, with examples\n", 1)[1]
    text = next(b for b in yaml_blocks(section) if re.search(r"^vendor: acme$", b, re.M))
    catalog = parse_catalog("acme", Node(yaml.safe_load(text), "docs/vendors.md", ""))
    assert len(catalog.examples) >= len(catalog.codes)
    assert example_failures(catalog) == []
    assert {ex.code for ex in catalog.examples} == set(catalog.codes)


def _check_for(requires: tuple[str, ...]) -> dict[str, Any]:
    """A target's check that sets every key its vendor requires (Rubiq's path, Bannersnack's params.hash)."""
    check: dict[str, Any] = {}
    for key in requires:
        if key == "path":
            check["path"] = "/entity/id/1/data"
        else:
            section, _, name = key.partition(".")
            check.setdefault(section, {})[name] = "x"
    return check


def test_every_override_shown_is_valid_config_with_a_target_of_each_vendor() -> None:
    """Each ``vendors:`` block loads, merged with the built-in catalogs, and a target of every vendor it
    names (with the credentials the merged catalog asks for) is accepted."""
    builtin = builtin_catalogs()
    blocks = [yaml.safe_load(b) for b in yaml_blocks(DOC.read_text(encoding="utf-8"))]
    overrides = [b for b in blocks if isinstance(b, dict) and "vendors" in b]
    assert len(overrides) >= len(BUILTIN)
    for block in overrides:
        targets = []
        for vendor, over in block["vendors"].items():
            base = builtin.get(vendor)
            creds = over.get("credentials") or (base.credentials if base else ())
            check = _check_for(base.check.requires if base else ())
            targets.append({"name": vendor, "vendor": vendor, "base_url": "http://127.0.0.1:1",
                            "credentials": {c: "x" * 8 for c in creds}, **({"check": check} if check else {})})
        raw = {key: value for key, value in block.items() if key != "targets"}
        config = config_from({**raw, "targets": targets})
        assert [t.catalog.vendor for t in config.targets] == list(block["vendors"])


# --- signer plug-ins --------------------------------------------------------------------------------

OPTION_ROW = re.compile(r"^\| `(\w+)` \| (\w+) \| (.+?) \| (.+) \|$", re.M)


def documented_default(spec: OptionSpec) -> str:
    """How docs/vendors.md writes an option's default."""
    if spec.required:
        return "required"
    value = spec.default
    if isinstance(value, bool):
        return f"`{str(value).lower()}`"
    if isinstance(value, float) and value.is_integer():
        return f"`{int(value)}`"
    if value == ():
        return "`{}`" if spec.kind == "mapping" else "`[]`"
    if value == "":
        return '`""`'
    return f"`{value}`"


def signer_section(name: str) -> str:
    text = DOC.read_text(encoding="utf-8")
    parts = text.split(f"\n#### `{name}`\n")
    assert len(parts) == 2, f"docs/vendors.md needs exactly one '#### `{name}`' section under Signers"
    return re.split(r"\n#{2,4} ", parts[1], maxsplit=1)[0]


@pytest.mark.parametrize("signer", sorted(SIGNERS))
def test_every_signer_option_is_documented_with_its_kind_and_default(signer: str) -> None:
    declared = {spec.name: spec for spec in option_specs(SIGNERS[signer].Options)}
    found = OPTION_ROW.findall(signer_section(signer))
    rows = {name: (kind, default, meaning) for name, kind, default, meaning in found}
    assert set(rows) == set(declared), f"docs/vendors.md, signer {signer}: options documented vs declared"
    for name, spec in declared.items():
        kind, default, meaning = rows[name]
        assert kind == spec.kind, f"docs/vendors.md, signer {signer}, option {name}: kind"
        assert default == documented_default(spec), f"docs/vendors.md, signer {signer}, option {name}: default"
        assert meaning.strip(), f"docs/vendors.md, signer {signer}, option {name}: no meaning"


def test_every_option_kind_is_explained() -> None:
    text = DOC.read_text(encoding="utf-8").split("\n### Signers and their options\n", 1)[1]
    kinds = {spec.kind for plugin in SIGNERS.values() for spec in option_specs(plugin.Options)}
    explained = set(re.findall(r"^\| ([a-z_]+) \| ", text, re.M))
    assert kinds <= explained


def test_the_start_lag_help_and_the_docs_name_the_same_window() -> None:
    from exporter.collector import _start_lag
    from exporter.model import ExporterStatus, StartLag
    from exporter.scheduler import LagStats

    window = LagStats().recent.maxlen
    helps = {_start_lag(ExporterStatus(start_lag=StartLag(tuple([0.01] * n), 0.01 * n, n))).splitlines()[0]
             for n in (1, 37)}
    assert len(helps) == 1, "the HELP text must not change from scrape to scrape"
    assert f"latest {window} probes" in helps.pop()
    metrics = (ROOT / "docs" / "metrics.md").read_text(encoding="utf-8")
    row = next(line for line in metrics.splitlines() if line.startswith("| `apistatus_probe_start_lag_seconds`"))
    assert f"latest {window:,} probes" in row
