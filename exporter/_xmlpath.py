"""Dotted paths into an XML answer (``ErrorResponse.Error.Code``, the way AWS's query APIs such as STS
put their error code): the classifier's ``xml`` code source. Element names are matched without their
namespace, from the root element down; the value is the element's text.

Only plain documents are read: an answer with a document type declaration (where entities live) is no
vendor's error answer, and is not parsed at all, so no entity is ever expanded."""

from __future__ import annotations

import xml.etree.ElementTree as ET

__all__ = ["parse_xml", "xml_path"]


def parse_xml(body: bytes) -> ET.Element | None:
    """The root element, or None for a body that is not a plain XML document."""
    head = body.lstrip()[:1]
    if head != b"<" or b"<!DOCTYPE" in body or b"<!ENTITY" in body:
        return None
    try:
        return ET.fromstring(body)
    except (ET.ParseError, ValueError, RecursionError):
        return None


def _local(tag: str) -> str:
    return tag.rsplit("}", 1)[-1]


def xml_path(root: ET.Element | None, dotted: str) -> str | None:
    """The stripped text at ``dotted`` (the first step names the root), or None when a step is missing."""
    if root is None:
        return None
    first, *rest = dotted.split(".")
    if _local(root.tag) != first:
        return None
    node = root
    for part in rest:
        found = next((child for child in node if _local(child.tag) == part), None)
        if found is None:
            return None
        node = found
    return (node.text or "").strip()
