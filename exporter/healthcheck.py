"""``python -m exporter.healthcheck``: the container image's HEALTHCHECK. It reads the flags the
exporter runs with (PID 1's command line in a container, or the arguments given after ``--``), so it
asks ``/-/healthy`` at whatever ``--web.listen-address``, ``--web.route-prefix`` and TLS setting the
user chose, not at a port written into the image. Exit 0 when the server answers, else 1.
"""

from __future__ import annotations

import ssl
import sys
import urllib.error
import urllib.request
from pathlib import Path

__all__ = ["health_url", "main"]


def health_url(argv: list[str]) -> tuple[str, bool]:
    """(URL of /-/healthy, whether it is HTTPS) for an exporter started with ``argv`` (without the program)."""
    from .__main__ import build_parser, listen_addresses, route_prefix

    demo = argv[:1] == ["demo"]
    args, _ = build_parser(demo).parse_known_args(argv[1:] if demo else argv)
    host, port = listen_addresses(args)[0]
    host = "127.0.0.1" if host in ("0.0.0.0", "") else ("::1" if host == "::" else host)
    tls = False
    if args.web_config is not None:
        try:
            from .webconfig import load_web_config

            tls = load_web_config(args.web_config).tls.enabled
        except Exception:  # noqa: BLE001 - the exporter itself refuses a bad file; here: try plain HTTP
            tls = False
    shown = f"[{host}]" if ":" in host else host
    return f"{'https' if tls else 'http'}://{shown}:{port}{route_prefix(args)}/-/healthy", tls


def _argv_of_pid1() -> list[str]:
    try:
        raw = Path("/proc/1/cmdline").read_bytes()
    except OSError:
        return []
    parts = [p.decode("utf-8", "replace") for p in raw.split(b"\0") if p]
    # "apistatus-exporter ARGS" or "python -m exporter ARGS"
    for i, part in enumerate(parts):
        if part.endswith("apistatus-exporter") or (part == "exporter" and i > 0 and parts[i - 1] == "-m"):
            return parts[i + 1:]
    return []


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    flags = argv[1:] if argv[:1] == ["--"] else _argv_of_pid1()
    url, tls = health_url(flags)
    context = None
    if tls:  # loopback: the certificate names the public host, not 127.0.0.1
        context = ssl.create_default_context()
        context.check_hostname, context.verify_mode = False, ssl.CERT_NONE
    try:
        with urllib.request.urlopen(url, timeout=4, context=context):
            return 0
    except urllib.error.HTTPError as exc:
        return 0 if exc.code in (401, 403, 429) else 1  # basic auth or a rate limit: the server runs
    except (OSError, ValueError) as exc:
        print(f"unhealthy: {url}: {exc}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
