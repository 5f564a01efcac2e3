"""``basic_auth_users``: bcrypt hashes as Go's golang.org/x/crypto/bcrypt reads them, checked against
``Authorization: Basic`` (docs/security.md, "The exporter's own endpoints").

The rules that keep one request from costing more than it should:

* a hash whose cost is above MAX_COST is refused when the file is read (cost 31 would take days);
* bcrypt runs in daemon threads, off the event loop, at most MAX_CHECKS at a time; a request that
  cannot start its check within CHECK_DEADLINE seconds gets 503, and a process asked to stop does not
  wait for a check still running;
* an unknown user is checked against a dummy hash of the configured users' cost, so a wrong name costs
  what a wrong password costs and timing does not tell which users exist;
* a password longer than bcrypt's 72 bytes is refused, as Go's bcrypt refuses it (bcrypt would
  otherwise compare only its first 72 bytes).
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import hashlib
import hmac
import re
import secrets
from collections import OrderedDict
from collections.abc import Callable, Mapping

from ..offloop import in_daemon_thread
from .goyaml import WebConfigError
from .schema import WebConfig

__all__ = ["CHECK_DEADLINE", "MAX_CHECKS", "MAX_COST", "MAX_PASSWORD_BYTES", "AuthBusy", "BasicAuth",
           "bcrypt_parts", "validate_users"]

#: bcrypt's cost is a power of two: each step above 10 (Go's default) doubles the time of every check,
#: so 14 is sixteen times Go's default and anything above is a mistake or a way to stall the exporter
MAX_COST = 14
#: bcrypt checks running at once (each holds a core for its whole duration)
MAX_CHECKS = 1
#: seconds a request may wait for a check to start; then it gets 503
CHECK_DEADLINE = 5.0
#: bcrypt reads at most this many bytes of a password; Go's bcrypt refuses longer ones
MAX_PASSWORD_BYTES = 72
_HINT = "make one with htpasswd -nBC 10 \"\" | tr -d ':\\n'"


class AuthBusy(Exception):
    """No bcrypt check could start within CHECK_DEADLINE: the request gets 503, not a verdict."""


def bcrypt_parts(hashed: str) -> tuple[int, bytes] | str:
    """(cost, canonical ``$2b$`` hash for Python's bcrypt), or why Go's bcrypt.Cost refuses it."""
    raw = hashed.encode("utf-8", "surrogateescape")
    if len(raw) < 59:
        return "is too short to be a bcrypt hash"
    if raw[0:1] != b"$":
        return "must start with '$' (a bcrypt hash, $2y$...)"
    if raw[1] > ord("2"):
        return "is a newer bcrypt version than supported"
    rest = raw[3:] if raw[2:3] == b"$" else raw[4:]
    cost_text = rest[:2].decode("ascii", "replace")
    if not re.fullmatch(r"[-+]?[0-9]+", cost_text) or not 4 <= int(cost_text) <= 31:
        return "has a bcrypt cost outside 4..31"
    salt_and_hash = rest[3:]
    return int(cost_text), b"$2b$%02d$" % int(cost_text) + salt_and_hash[:53]


def validate_users(cfg: WebConfig) -> None:
    """Every hash readable, and none costlier than MAX_COST. The hash itself is never echoed: it is a
    secret of its own (or a password given by mistake)."""
    for user, hashed in cfg.users.items():
        parts = bcrypt_parts(hashed)
        key = f"basic_auth_users.{user}"
        if isinstance(parts, str):
            raise WebConfigError(str(cfg.file), key, f"{parts}; {_HINT}")
        if parts[0] > MAX_COST:
            raise WebConfigError(str(cfg.file), key, f"bcrypt cost {parts[0]} is above the maximum of {MAX_COST} "
                                 f"(each step doubles the time of every check); {_HINT}")


class BasicAuth:
    """``Authorization: Basic`` checked against bcrypt hashes, with the toolkit's cache.

    As in the toolkit, each answer (right or wrong) for a (user, hash, password) is remembered, so a
    scrape every 15 s or a client retrying the same wrong password costs no bcrypt. Unlike the toolkit,
    right and wrong answers are kept apart, so a flood of new wrong passwords cannot evict the
    scraper's entry. Keys are salted digests: no password is kept.
    """

    _CACHE = 100

    def __init__(self, checkpw: Callable[[bytes, bytes], bool] | None = None,
                 hashpw: Callable[[bytes, bytes], bytes] | None = None) -> None:
        import bcrypt

        self._checkpw = checkpw or bcrypt.checkpw
        self._hashpw = hashpw or bcrypt.hashpw
        self._gensalt = bcrypt.gensalt
        self._salt = secrets.token_bytes(32)
        self._ok: OrderedDict[bytes, None] = OrderedDict()
        self._bad: OrderedDict[bytes, None] = OrderedDict()
        self._slots = asyncio.Semaphore(MAX_CHECKS)
        self._dummies: dict[int, bytes] = {}  # cost -> a hash no password matches (in practice)

    @staticmethod
    def credentials(header: str) -> tuple[bytes, bytes] | None:
        """Go's Request.BasicAuth: "Basic " (any case), standard base64, user and password split at ':'."""
        if len(header) < 6 or header[:6].lower() != "basic ":
            return None
        try:
            raw = base64.b64decode(header[6:], validate=True)
        except (binascii.Error, ValueError):
            return None
        user, sep, password = raw.partition(b":")
        return (user, password) if sep else None

    def _key(self, user: bytes, hashed: bytes, password: bytes) -> bytes:
        msg = b"".join(len(part).to_bytes(4, "big") + part for part in (user, hashed, password))
        return hmac.new(self._salt, msg, hashlib.sha256).digest()

    @staticmethod
    def dummy_cost(users: Mapping[str, str]) -> int:
        """The cost an unknown user pays: the highest of the configured users' (all share one, mostly)."""
        costs = [parts[0] for parts in map(bcrypt_parts, users.values()) if isinstance(parts, tuple)]
        return min(max(costs, default=10), MAX_COST)

    async def _dummy(self, cost: int) -> bytes:
        dummy = self._dummies.get(cost)
        if dummy is None:
            salt = self._gensalt(cost)
            dummy = await in_daemon_thread(lambda: self._hashpw(secrets.token_bytes(16), salt), "bcrypt-dummy")
            self._dummies[cost] = dummy
        return dummy

    async def check(self, users: Mapping[str, str], header: str) -> bool:
        """Whether the header names a configured user with the right password; AuthBusy when no check
        could start in time."""
        creds = self.credentials(header)
        if creds is None:
            return False
        user, password = creds
        if len(password) > MAX_PASSWORD_BYTES:
            return False  # as Go's bcrypt: never compared on its first 72 bytes only
        try:
            name: str | None = user.decode("utf-8")
        except UnicodeDecodeError:
            name = None
        hashed = users.get(name) if name is not None else None
        parts = bcrypt_parts(hashed) if hashed is not None else None
        # a hash too costly (refused at load; here should a caller skip that check) is never run
        valid = isinstance(parts, tuple) and parts[0] <= MAX_COST
        key_target = parts[1] if isinstance(parts, tuple) else b""
        key = self._key(user, key_target, password)
        if key in self._ok:
            self._ok.move_to_end(key)
            return valid
        if key in self._bad:
            return False
        try:
            async with asyncio.timeout(CHECK_DEADLINE):
                await self._slots.acquire()
        except TimeoutError:
            raise AuthBusy from None
        try:
            if key in self._ok:  # a request with the same credentials got here first
                return valid
            if key in self._bad:
                return False
            target = key_target if valid else await self._dummy(self.dummy_cost(users))
            matched = await in_daemon_thread(lambda: self._verify(password, target), "bcrypt")
            good = valid and matched
            cache = self._ok if good else self._bad
            cache[key] = None
            if len(cache) > self._CACHE:
                cache.popitem(last=False)
        finally:
            self._slots.release()
        return good

    def _verify(self, password: bytes, hashed: bytes) -> bool:
        try:
            return bool(self._checkpw(password, hashed))
        except ValueError:
            return False
