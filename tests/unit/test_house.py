"""The docs stay true to the tree: the README's module table names every module of exporter/, and
every relative link in README.md and docs/*.md leads to a file (and heading) that exists."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from ..conftest import ROOT

README = ROOT / "README.md"
DOCS = [README, *sorted((ROOT / "docs").glob("*.md"))]
#: [text](target): a link; images and absolute URLs are left alone
LINK = re.compile(r"(?<!!)\[[^\]]*\]\(([^)\s]+)\)")
HEADING = re.compile(r"^#{1,6} (.+?)\s*$", re.M)


def _modules() -> list[str]:
    package = ROOT / "exporter"
    files = [p.name for p in package.glob("*.py")]
    packages = [p.name + "/" for p in package.iterdir() if (p / "__init__.py").exists()]
    return sorted(files + packages)


def _module_table() -> set[str]:
    text = README.read_text(encoding="utf-8")
    assert "| module | owns |" in text, "README.md has no module table"
    table = text.split("| module | owns |", 1)[1].split("\n\n", 1)[0]
    return {name for row in table.splitlines()[1:] for name in re.findall(r"`([^`]+)`", row.split("|")[1])}


@pytest.mark.parametrize("module", _modules())
def test_every_module_is_in_the_readmes_module_table(module: str) -> None:
    assert module in _module_table(), f"README.md's module table does not say what exporter/{module} owns"


def test_the_module_table_names_no_module_that_is_gone() -> None:
    gone = {name for name in _module_table() if not list((ROOT / "exporter").glob(name.rstrip("/")))}
    assert not gone, f"README.md's module table names modules exporter/ no longer has: {sorted(gone)}"


def _slug(heading: str) -> str:
    """The anchor GitHub gives a heading: lower case, punctuation dropped, spaces to hyphens."""
    return re.sub(r"[^\w\- ]", "", heading.strip().lower()).replace(" ", "-")


def _anchors(path: Path) -> set[str]:
    return {_slug(h) for h in HEADING.findall(path.read_text(encoding="utf-8"))}


def _links() -> list[tuple[Path, str]]:
    found = [(doc, target) for doc in DOCS for target in LINK.findall(doc.read_text(encoding="utf-8"))
             if not re.match(r"[a-z][a-z0-9+.-]*:", target)]
    assert len(found) > 20, "the docs' relative links were not found"
    return found


@pytest.mark.parametrize(("doc", "target"), _links(),
                         ids=lambda v: str(v.relative_to(ROOT)) if isinstance(v, Path) else v)
def test_every_relative_doc_link_resolves(doc: Path, target: str) -> None:
    file, _, anchor = target.partition("#")
    dest = (doc.parent / file).resolve() if file else doc
    where = f"{doc.relative_to(ROOT)}: ({target})"
    assert dest.exists(), f"{where}: no such file"
    if anchor:
        assert dest.suffix == ".md" and anchor in _anchors(dest), f"{where}: no such heading"


def _checklist_items() -> list[str]:
    text = (ROOT / "docs" / "development.md").read_text(encoding="utf-8")
    checklists = text.split("## Checklists", 1)[1].split("\n## ", 1)[0]
    items = re.split(r"\n(?=\d+\. |Steps )", checklists)
    assert len(items) >= 12, "docs/development.md's checklists were not found"
    return items


@pytest.mark.parametrize("item", _checklist_items(), ids=lambda item: item.strip().splitlines()[0][:50])
def test_every_test_a_checklist_names_exists(item: str) -> None:
    """docs/development.md's checklists name the test that catches each missed step: each must exist
    in the file named with it (a test renamed or moved breaks the checklist, and this says so)."""
    text = item.replace("\n", " ")
    files = re.findall(r"`(tests/[\w/]+\.py)(?:::\w+)?`", text)
    sources = {f: (ROOT / f).read_text(encoding="utf-8") for f in files if (ROOT / f).exists()}
    assert set(sources) == set(files), f"no such file: {sorted(set(files) - set(sources))}"
    for name in re.findall(r"`(?:tests/[\w/]+\.py::)?(test_\w+)`", text):
        assert any(f"def {name}(" in source for source in sources.values()), \
            f"docs/development.md names {name}, which is in none of {files}"
