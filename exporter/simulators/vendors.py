"""The vendor simulators' settings: vendors.yaml beside this module, one entry per vendor (the path a
target's base_url carries, the code of each condition, the vendor's own control settings, the demo
credentials, request windows, a header-key vendor's path, header and codes, the vendor's own status
page).

Vendor knowledge lives in data: a simulator class names its entry (``class XSimulator(Simulator,
vendor="x")``) and keeps only how its vendor behaves. The file is read once, through the exporter's one
YAML loader, and every key is checked when it is read: a typo is a one-line ConfigError naming the
file and the key path, as a bad config is, not a simulator that misbehaves in some test later.
"""

from __future__ import annotations

import functools
import math
import re
from collections.abc import Callable, Collection, Mapping
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from types import MappingProxyType
from typing import Any

from .._yamlnode import ConfigError, Node, load_yaml
from ..statuspage import FORMATS

__all__ = ["VENDORS_FILE", "StatusPageSim", "load_vendors", "vendor_settings"]

#: the simulators' settings as shipped
VENDORS_FILE = Path(str(resources.files(__package__).joinpath("vendors.yaml")))

#: a vendor's code as its answers carry it (a status, a number, a word, 401.10): the control API's rule
_CODE = r"[A-Za-z0-9_.-]{1,32}"
_NAME = r"[a-z][a-z0-9_]{0,63}"
_VENDOR = r"[a-z][a-z0-9-]{0,63}"
_CREDENTIAL = r"[A-Za-z_][A-Za-z0-9_]{0,63}"
#: an HTTP header name (RFC 9110 token)
_HEADER = r"[!#$%&'*+.^_`|~0-9A-Za-z-]{1,64}"
_PATH = r"/[^\s?#]{0,200}"


@dataclass(frozen=True, slots=True)
class StatusPageSim:
    """A vendor's public status page as the simulator serves it: where, in which format
    (exporter/statuspage.py), and the components it lists, (id, name) each."""

    path: str
    format: str
    components: tuple[tuple[str, str], ...]


def _status_page(node: Node) -> StatusPageSim:
    fields = node.mapping(allowed=("path", "format", "components"), required=("path", "format", "components"))
    components: list[tuple[str, str]] = []
    for item in fields["components"].seq():
        pair = item.seq()
        if len(pair) != 2:
            item.fail("must be [id, name]")
        components.append((_string(pair[0], r"[!-~]{1,64}", "an id of printable ASCII characters"),
                           _string(pair[1], r"[^\n]{1,200}", "a name of 1 to 200 characters")))
    if not components:
        fields["components"].fail("must list at least one component")
    return StatusPageSim(_string(fields["path"], _PATH, "a path starting with /"), fields["format"].choice(FORMATS),
                         tuple(components))


def _string(node: Node, pattern: str = r"[^\n]{0,200}", what: str = "") -> str:
    """A text as written: a code or a credential YAML reads as a number (401.10 is 401.1, 0123 is 83)
    would not be the one the vendor sends, so only a quoted or plain text will do."""
    if not isinstance(node.value, str):
        node.fail("must be a text (quote a code or a credential that looks like a number)")
    return node.text(pattern, what)


def _code(node: Node) -> str:
    return _string(node, _CODE, "a code of letters, digits, '.', '_' or '-'")


def _healthy_value(node: Node) -> bool | int | float | str:
    """A setting's healthy value; its kind is what the control API then takes for the setting."""
    value = node.value
    if isinstance(value, bool | int):
        return value
    if isinstance(value, float):
        if not math.isfinite(value):
            node.fail("must be a finite number")
        return value
    if not isinstance(value, str):
        node.fail("must be true or false, a number or a text")
    return _string(node)


def _readers(conditions: Collection[str], reserved: Collection[str]) -> dict[str, Callable[[Node], Any]]:
    """How each key of an entry is read and checked, given the condition names and the settings every
    simulator has (base.py's, passed in: this module is what base.py imports, not the other way)."""

    def condition_codes(node: Node) -> Mapping[str, str]:
        return MappingProxyType({key: _code(value) for key, value in node.mapping(allowed=conditions).items()})

    def extra_settings(node: Node) -> Mapping[str, Any]:
        out: dict[str, Any] = {}
        for key, value in node.mapping().items():
            if not re.fullmatch(_NAME, key):
                value.fail("must be a setting name of lower case letters, digits and '_'", show=False)
            if key in reserved:
                value.fail("is a setting every simulator has (base.COMMON_SETTINGS): choose another name",
                           show=False)
            out[key] = _healthy_value(value)
        return MappingProxyType(out)

    def default_credentials(node: Node) -> Mapping[str, str]:
        out: dict[str, str] = {}
        for key, value in node.mapping().items():
            if not re.fullmatch(_CREDENTIAL, key):  # a name the catalogs' credentials could have
                value.fail("must be a credential name of letters, digits and '_'", show=False)
            out[key] = _string(value, r".{1,200}", "a text of 1 to 200 characters")
        return MappingProxyType(out)

    return {
        "prefix": lambda node: _string(node, f"({_PATH})?", "empty or a path starting with /"),
        "condition_codes": condition_codes,
        "extra_settings": extra_settings,
        "default_credentials": default_credentials,
        "window_limit": lambda node: node.integer(1, 10_000_000),
        "window_seconds": lambda node: node.number(0.001, 86400.0),
        "path": lambda node: _string(node, _PATH, "a path starting with /"),
        "key_header": lambda node: _string(node, _HEADER, "an HTTP header name"),
        "key_scheme": lambda node: _string(node, r"[!-~][ -~]{0,31}|", "up to 32 printable ASCII characters"),
        "key_credential": lambda node: _string(node, _CREDENTIAL, "a credential name"),
        "missing_key_code": _code,
        "wrong_key_code": _code,
        "status_page": _status_page,
    }


def load_vendors(path: Path, conditions: Collection[str], reserved: Collection[str]) -> dict[str, Mapping[str, Any]]:
    """Every entry of a simulators' vendors file, each key read and checked (ConfigError otherwise):
    ``conditions`` are the condition names a ``condition_codes`` key may be, ``reserved`` the settings
    every simulator has, which ``extra_settings`` may not name again."""
    readers = _readers(conditions, reserved)
    out: dict[str, Mapping[str, Any]] = {}
    for vendor, entry in load_yaml(path).mapping().items():
        if not re.fullmatch(_VENDOR, vendor):
            entry.fail("must be a vendor name of lower case letters, digits and '-'", show=False)
        fields = entry.mapping(allowed=readers)
        out[vendor] = MappingProxyType({key: readers[key](node) for key, node in fields.items()})
    return out


@functools.cache
def _shipped(conditions: tuple[str, ...], reserved: frozenset[str]) -> Mapping[str, Mapping[str, Any]]:
    return MappingProxyType(load_vendors(VENDORS_FILE, conditions, reserved))


def vendor_settings(vendor: str, reads: Collection[str], needs: Collection[str], conditions: Collection[str],
                    reserved: Collection[str]) -> Mapping[str, Any]:
    """The shipped entry of ``vendor`` (the file is read on the first call), for a simulator of a kind that
    ``reads`` these keys and ``needs`` those: a key it would not read (a typo in the kind, say a window
    for a simulator without one) or one it lacks is a ConfigError naming the file and the key."""
    entries = _shipped(tuple(conditions), frozenset(reserved))
    file = str(VENDORS_FILE)
    entry = entries.get(vendor)
    if entry is None:
        raise ConfigError(file, vendor, f"no such vendor entry (a simulator class names it; entries: "
                                        f"{', '.join(entries)})")
    for key in entry:
        if key not in reads:
            raise ConfigError(file, f"{vendor}.{key}", f"is not read by this vendor's simulator (it reads: "
                                                       f"{', '.join(reads)})")
    for key in needs:
        if key not in entry:
            raise ConfigError(file, f"{vendor}.{key}", "is required by this vendor's simulator")
    return entry
