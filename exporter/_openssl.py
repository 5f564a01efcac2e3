"""The two OpenSSL server settings Python's ``ssl`` module does not expose, reached through ctypes.

exporter-toolkit (Go) can ask for a client certificate without verifying it (``RequestClientCert``,
``RequireAnyClientCert``) and can list several ECDHE curves in preference order. Python 3.11's ssl
has neither a certificate-verify callback nor a group list (only ``set_ecdh_curve``, one curve).
Both are one libssl call on the context's ``SSL_CTX``. The pointer is found where CPython keeps it
(right after the object header) and is *checked* against the context's options before any use, so
a Python build laid out differently gets ``None``/``False`` and the caller refuses the setting with a
one-line error instead of writing to a wrong address.
"""

from __future__ import annotations

import ctypes
import ssl
from functools import cache
from typing import Any

__all__ = ["accept_any_client_certificate", "available", "set_groups"]

_SSL_CTRL_SET_GROUPS_LIST = 92
#: int (*)(X509_STORE_CTX *, void *): the chain check OpenSSL runs on a client certificate
_VERIFY_CB = ctypes.CFUNCTYPE(ctypes.c_int, ctypes.c_void_p, ctypes.c_void_p)


def _accept(_store: int | None, _arg: int | None) -> int:
    return 1  # as Go's RequestClientCert/RequireAnyClientCert: the certificate is taken unverified


_ACCEPT = _VERIFY_CB(_accept)  # kept alive for the life of the process: libssl holds the pointer


@cache
def _lib() -> Any:
    import _ssl

    for name in (getattr(_ssl, "__file__", None), None):
        try:
            lib = ctypes.CDLL(name)
            lib.SSL_CTX_get_options.restype = ctypes.c_uint64
            lib.SSL_CTX_get_options.argtypes = [ctypes.c_void_p]
            lib.SSL_CTX_ctrl.restype = ctypes.c_long
            lib.SSL_CTX_ctrl.argtypes = [ctypes.c_void_p, ctypes.c_int, ctypes.c_long, ctypes.c_void_p]
            lib.SSL_CTX_set_cert_verify_callback.restype = None
            lib.SSL_CTX_set_cert_verify_callback.argtypes = [ctypes.c_void_p, _VERIFY_CB, ctypes.c_void_p]
            lib.ERR_clear_error.restype = None
            lib.ERR_clear_error.argtypes = []
        except (OSError, AttributeError, TypeError):
            continue
        return lib
    return None


def _pointer(ctx: ssl.SSLContext) -> int | None:
    lib = _lib()
    if lib is None:
        return None
    ptr = ctypes.c_void_p.from_address(id(ctx) + ctypes.sizeof(ctypes.c_ssize_t) * 2).value
    if not ptr or int(lib.SSL_CTX_get_options(ptr)) != int(ctx.options):
        return None
    return int(ptr)


def available() -> bool:
    return _pointer(ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)) is not None


def set_groups(ctx: ssl.SSLContext, groups: list[str]) -> bool:
    """OpenSSL group names in preference order (``P-256:X25519``); False if it cannot be done."""
    ptr = _pointer(ctx)
    if ptr is None:
        return False
    lib = _lib()
    ok = lib.SSL_CTX_ctrl(ptr, _SSL_CTRL_SET_GROUPS_LIST, 0, ctypes.c_char_p(":".join(groups).encode()))
    if ok != 1:
        lib.ERR_clear_error()  # leave no stale error for the next ssl call to report
        return False
    return True


def accept_any_client_certificate(ctx: ssl.SSLContext) -> bool:
    """Ask for a client certificate (per ``verify_mode``) but take it without checking its chain."""
    ptr = _pointer(ctx)
    if ptr is None:
        return False
    _lib().SSL_CTX_set_cert_verify_callback(ptr, _ACCEPT, None)
    return True
