"""The repository stands on its own, and docs/vendors.md says what the shipped catalogs do."""

from __future__ import annotations

import re
import subprocess

import pytest
import yaml

from ..conftest import ROOT

#: references to vendor material kept outside this repository (the brackets keep this file from matching)
OUTSIDE = re.compile(r"vendor[-]docs|shared[/]vendors|[.][.][/]shared\b|/work[/]shared")
BUILTIN = sorted(p.stem for p in (ROOT / "exporter" / "catalogs").glob("*.yaml"))
ROW = re.compile(r"^\| `([^`]+)` \| `([a-z_]+)` \| (.*) \|$", re.M)


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
    text = (ROOT / "docs" / "vendors.md").read_text(encoding="utf-8")
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
