"""The repository stands on its own: no tracked file refers to material kept outside it (``git ls-files``)."""

from __future__ import annotations

import re
import subprocess

from ..conftest import ROOT

#: references to vendor material kept outside this repository (the brackets keep this file from matching)
OUTSIDE = re.compile(r"vendor[-]docs|shared[/]vendors|[.][.][/]shared\b|/work[/]shared")


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
