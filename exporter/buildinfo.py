"""What ``apistatus_build_info`` says: version, revision (when known) and the Python version.

The revision is the environment's ``APISTATUS_REVISION`` when set, else the first line of the package's
``REVISION`` file, which a build writes (the Dockerfile's ``REVISION`` build argument does); else empty,
as Prometheus exporters leave a revision they do not know.
"""

from __future__ import annotations

import os
import platform
from importlib import resources

from . import __version__

__all__ = ["REVISION_ENV", "build_labels", "revision"]

REVISION_ENV = "APISTATUS_REVISION"


def revision(env: dict[str, str] | None = None) -> str:
    env = dict(os.environ) if env is None else env
    if env.get(REVISION_ENV, "").strip():
        return env[REVISION_ENV].strip()[:64]
    try:
        text = resources.files(__package__).joinpath("REVISION").read_bytes().decode("utf-8", "replace")
    except OSError:
        return ""
    return (text.splitlines() or [""])[0].strip()[:64]


def build_labels(env: dict[str, str] | None = None) -> dict[str, str]:
    return {"version": __version__, "revision": revision(env), "pythonversion": platform.python_version()}
