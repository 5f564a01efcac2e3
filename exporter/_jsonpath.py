"""Dotted paths into parsed JSON (``data.api_uploads_left``, ``videoManagerList.0.id``): used by the
classifier for codes and quotas and by signers for values learnt at login."""

from __future__ import annotations

from typing import Any

__all__ = ["json_path"]


def json_path(doc: Any, dotted: str) -> Any:
    """The value at ``dotted`` (list items by index), or None when any step is missing."""
    for part in dotted.split("."):
        if isinstance(doc, dict):
            doc = doc.get(part)
        elif isinstance(doc, list) and part.isdigit() and int(part) < len(doc):
            doc = doc[int(part)]
        else:
            return None
    return doc
