"""Command line: ``apistatus-exporter --config.file PATH ...`` serves the exporter; the subcommands
``demo``, ``simulate``, ``config example`` and ``probe`` are dispatched from ``main``.

Without a config the exporter does not start (``demo`` is the explicit way to run the embedded demo):
a typo in a service unit must not ship dashboards of fake healthy targets.
"""

from __future__ import annotations

import signal

from .gcpolicy import GC

# Before anything slow (imports, a large config): a SIGHUP from a config manager that is quicker than
# us must not kill the process. This module is the entry point both as `python -m exporter` and as the
# installed `apistatus-exporter` script (which imports it), so it is done on import, not only under
# `__main__`; serve() installs the real handler soon after. A handler someone else set is left alone.
if signal.getsignal(signal.SIGHUP) is signal.SIG_DFL:
    signal.signal(signal.SIGHUP, signal.SIG_IGN)

# Run as the program (``python -m exporter``), the start-up's pause of the collector (gcpolicy) begins
# before the slow imports
if __name__ == "__main__":
    GC.pause()

import argparse
import asyncio
import contextlib
import logging
import os
import re
import sys
from pathlib import Path
from typing import Any

from aiohttp import web

from . import __version__
from .budget import budget_warnings
from .config import Config, ConfigError, load_config
from .log import FORMATTERS, LEVELS, setup_logging
from .shard import ALL, AllShards, Shard, ShardError, compare, describe, distribution, resolve, select, skew_warnings

DEFAULT_PORT = 9798
log = logging.getLogger("exporter")


def parse_listen(value: str) -> tuple[str, int]:
    host, sep, port = value.rpartition(":")
    if not sep or not port.isdigit() or not 0 <= int(port) <= 65535:
        raise argparse.ArgumentTypeError(f"--web.listen-address must be HOST:PORT or :PORT, got {value!r}")
    return host.strip("[]") or "0.0.0.0", int(port)  # an exporter listens on all interfaces


def parse_seconds(value: str) -> float:
    from ._yamlnode import parse_duration

    seconds = parse_duration(value)
    if seconds is None or seconds <= 0:
        raise argparse.ArgumentTypeError(f"must be a duration like 10s or 500ms, got {value!r}")
    return seconds


def _shown(value: str) -> str:
    from .log import escape_control

    return escape_control(repr(value[:200] + ("..." if len(value) > 200 else "")))


def parse_prefix(value: str) -> str:
    """``/a/b/`` -> ``/a/b``; ``/`` and empty -> ``""`` (served at the root). Refused: anything a browser
    or proxy would rewrite before it reaches us (``//``, ``.`` and ``..`` segments, escapes, controls),
    since the root redirects to the prefix and a rewritten prefix would redirect to itself forever."""
    original = value
    if not value.startswith("/") and value:
        value = "/" + value
    segments = value.strip("/").split("/")
    if (any(c in value for c in "?#%\\") or "//" in value or any(ord(c) < 0x21 or ord(c) >= 0x7F for c in value)
            or any(segment in (".", "..") for segment in segments)):
        raise argparse.ArgumentTypeError(f"must be a plain path like /apistatus (no '.' or '..' segments, '//', "
                                         f"'%', '?', '#' or spaces), got {_shown(original)}")
    return value.rstrip("/")


def parse_external_url(value: str) -> str:
    """An http(s) URL whose path (the default route prefix) passes ``parse_prefix``."""
    from urllib.parse import urlsplit

    try:
        parts = urlsplit(value)
        parts.port  # noqa: B018 - raises ValueError on a bad port
    except ValueError:
        parts = None
    if (parts is None or parts.scheme not in ("http", "https") or not parts.hostname or parts.query
            or parts.fragment or parts.username is not None or any(ord(c) < 0x21 or ord(c) >= 0x7F for c in value)):
        raise argparse.ArgumentTypeError(f"must be an http(s) URL like https://example.com/apistatus/, got "
                                         f"{_shown(value)}")
    try:
        parse_prefix(parts.path)  # the default route prefix
    except argparse.ArgumentTypeError as exc:
        raise argparse.ArgumentTypeError(f"its path {exc} (in {_shown(value)})") from None
    return value.rstrip("/")


def parse_connections(value: str) -> int:
    # ASCII digits only: str.isdigit() also takes '²' (int() then fails) and other scripts' digits
    if not re.fullmatch(r"[0-9]{1,7}", value.strip()) or int(value) > 1_000_000:
        raise argparse.ArgumentTypeError(f"must be a whole number from 0 (automatic) to 1000000, got {_shown(value)}")
    return int(value)


SUBCOMMANDS = """\
subcommands:
  demo [FLAGS]                      run the embedded demo: simulated vendors on loopback, fake data,
                                    listening on 127.0.0.1:9798 unless --web.listen-address says otherwise
  simulate [--listen-host HOST]     run the vendor simulators alone
  config example VENDOR...          print a commented starter config for the named built-in vendors
  probe --config.file PATH NAME [--json] [--debug]
                                    probe one target once; exit 0 when its class counts as up, else 1;
                                    --debug prints its trace (requests, logins, answers, the decision)

Old flag names stay accepted as aliases: --config, --check-config, --listen, --log-level,
--log-format (and the values warning and text).
"""


def build_parser(demo: bool = False) -> argparse.ArgumentParser:
    from .cli import OneLineParser

    p = OneLineParser(
        prog="apistatus-exporter demo" if demo else "apistatus-exporter",
        description=("Run the embedded demo: vendor simulators on loopback and the exporter probing them. "
                     "Fake data, for a first look only." if demo else
                     "A Prometheus exporter for the health of third-party SaaS APIs."),
        epilog=None if demo else SUBCOMMANDS, formatter_class=argparse.RawDescriptionHelpFormatter)
    if not demo:
        p.add_argument("--config.file", "--config", dest="config", type=Path, metavar="PATH",
                       help="the config file (required, unless the demo runs; alias --config)")
        p.add_argument("--config.check", "--check-config", dest="check_config", action="store_true",
                       help="check the config and every catalog example, print every problem found and "
                            "exit (1 when there is one); alias --check-config")
    default = "127.0.0.1" if demo else ""
    p.add_argument("--web.listen-address", "--listen", dest="listen", type=parse_listen, action="append",
                   metavar="[HOST]:PORT",
                   help=f"address to serve on, repeatable (default {default}:{DEFAULT_PORT}); alias --listen")
    p.add_argument("--web.config.file", dest="web_config", type=Path, metavar="PATH",
                   help="exporter-toolkit web config (TLS, basic auth) for the exporter's own endpoints")
    p.add_argument("--web.external-url", dest="external_url", type=parse_external_url, metavar="URL",
                   help="the URL users reach the exporter at (behind a reverse proxy); its path is the "
                        "default route prefix")
    p.add_argument("--web.route-prefix", dest="route_prefix", type=parse_prefix, metavar="PATH",
                   help="path prefix of every endpoint (default: the path of --web.external-url, else /)")
    p.add_argument("--log.level", "--log-level", dest="log_level", default="info", choices=sorted(LEVELS),
                   metavar="LEVEL", help="debug, info, warn or error (default info; warning is accepted; "
                                         "alias --log-level)")
    p.add_argument("--log.format", "--log-format", dest="log_format", default="logfmt",
                   choices=sorted(FORMATTERS), metavar="FORMAT",
                   help="logfmt or json (default logfmt; text is accepted as logfmt; alias --log-format)")
    p.add_argument("--shard", metavar="I/N",
                   help="run shard I of N: keep only the targets whose credential hashes to I (env APISTATUS_SHARD;"
                        " with --config.check also all/N or all)")
    p.add_argument("--web.read-header-timeout", dest="header_timeout", type=parse_seconds, default=10.0,
                   metavar="DURATION", help="time a client has to send its request headers (default 10s)")
    p.add_argument("--web.idle-timeout", dest="idle_timeout", type=parse_seconds, default=30.0,
                   metavar="DURATION", help="idle keep-alive connections are closed after this (default 30s)")
    p.add_argument("--web.max-connections", dest="max_connections", type=parse_connections, default=0, metavar="N",
                   help="cap on client connections (default 0: RLIMIT_NOFILE - 2 x max_concurrency - 64)")
    p.add_argument("--version", action="version", version=f"apistatus-exporter {__version__}")
    p.set_defaults(demo=demo, **({"config": None, "check_config": False} if demo else {}))
    return p


def listen_addresses(args: argparse.Namespace) -> list[tuple[str, int]]:
    """The flag's addresses, once each; by default all interfaces, the demo loopback only."""
    return list(dict.fromkeys(args.listen or [("127.0.0.1" if args.demo else "0.0.0.0", DEFAULT_PORT)]))


def route_prefix(args: argparse.Namespace) -> str:
    if args.route_prefix is not None:
        return str(args.route_prefix)
    if args.external_url:
        from urllib.parse import urlsplit

        return parse_prefix(urlsplit(args.external_url).path)
    return ""


def check_config(path: Path, shard: Shard | AllShards = ALL, web_config: Path | None = None) -> int:
    from .cli import check_problems

    config, errors, warnings = check_problems(path, web_config)
    for w in warnings:
        print(f"warning: {w}", file=sys.stderr)
    for line in errors:
        print(f"error: {line}", file=sys.stderr)
    if config is None:
        return 1
    # the vendors this file uses, not every catalog the exporter knows
    used = sorted({target.vendor for target in config.targets})
    how_many = len(config.targets)
    print(f"{path}: OK, {how_many} target{'' if how_many == 1 else 's'}"
          + (f", vendors: {', '.join(used)}" if used else ", no vendors used"))
    count = shard.count if shard != ALL else None
    if count is not None:
        loads = distribution(config.targets, count)
        print("\n".join(describe(loads, shard if isinstance(shard, Shard) else None)))
        for w in skew_warnings(loads):
            print(f"warning: {w}", file=sys.stderr)
    elif isinstance(shard, AllShards):
        print("\n".join(compare(config.targets)))
    return 0


#: SIGTERM or SIGINT: everything in flight is cancelled; the process exits well within 2 s
STOP_GRACE = 1.5


async def serve(args: argparse.Namespace, shard: Shard = ALL) -> int:
    GC.pause()
    try:
        return await _serve(args, shard)
    finally:
        GC.resume()  # a start-up that failed or was stopped


async def _serve(args: argparse.Namespace, shard: Shard) -> int:
    from .app import Exporter
    from .offloop import in_daemon_thread
    from .web import BODY_TIMEOUT_KEY, ConnectionGuard, GuardedSite, ServerLimits, make_app

    # Signals first: SIGTERM stops even a start-up that is still loading a large config, and a
    # SIGHUP before the exporter runs is remembered and done once it does.
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    loop.add_signal_handler(signal.SIGTERM, stop.set)
    loop.add_signal_handler(signal.SIGINT, stop.set)
    reloads: set[asyncio.Task[tuple[bool, str]]] = set()
    exporter: Exporter | None = None
    reload_queued = False

    def on_sighup() -> None:
        nonlocal reload_queued
        if exporter is None or not exporter.ready:
            reload_queued = True
            return
        task = asyncio.create_task(exporter.reload(), name="reload")
        reloads.add(task)  # hold a reference until it is done
        task.add_done_callback(reloads.discard)

    loop.add_signal_handler(signal.SIGHUP, on_sighup)

    async def unless_stopped(aw: Any) -> Any:
        """``aw``'s result, or None as soon as a stop signal arrives."""
        work, stopping = asyncio.ensure_future(aw), asyncio.ensure_future(stop.wait())
        await asyncio.wait({work, stopping}, return_when=asyncio.FIRST_COMPLETED)
        stopping.cancel()
        if not work.done():
            work.cancel()
            return None
        return work.result()

    cleanup: list[Any] = []
    if args.config is not None:
        path = args.config
        try:
            config: Config | None = await unless_stopped(in_daemon_thread(lambda: load_config(path), "config-load"))
        except ConfigError as exc:
            log.error("%s", exc)
            return 1
        if config is None:
            return 0
        exp = Exporter(select(config, shard), path, loader=lambda: select(load_config(path), shard), shard=shard)
    else:
        try:  # the demo's timetable and the simulators' settings are checked as they are imported
            from .demo import start_demo
        except ConfigError as exc:
            log.error("%s", exc)
            return 1
        demo = await start_demo()
        cleanup.append(demo.close)
        exp = Exporter(select(demo.config, shard), loader=None, shard=shard)
        log.warning("%s", DEMO_BANNER)
    if shard.count > 1:
        log.info("shard %s: %d targets of this config hash to this replica", shard, len(exp.config.targets))
    for w in budget_warnings(exp.config.targets):
        log.warning("%s", w)
    prefix = route_prefix(args)
    app = make_app(exp, prefix=prefix, banner=DEMO_BANNER if args.demo else "")
    limits = ServerLimits(header_timeout=args.header_timeout, idle_timeout=args.idle_timeout,
                          body_timeout=args.header_timeout, max_connections=max(0, args.max_connections))
    app[BODY_TIMEOUT_KEY] = limits.body_timeout
    ssl_context = None
    if args.web_config is not None:
        from .web import WEB_CONFIG_KEY
        from .webconfig import WATCHER_KEY, WebConfigError, apply_web_config

        try:
            ssl_context = apply_web_config(app, args.web_config)
        except WebConfigError as exc:
            log.error("%s", exc)
            return 1
        app[WEB_CONFIG_KEY] = app[WATCHER_KEY]  # its re-reads in the exporter's own metrics
    # the process follows gcpolicy: what start-up builds is frozen once it listens, the first round too
    exp.freeze_after_first_round = GC.paused
    await exp.start()
    # in-flight requests get a moment at shutdown, then are cancelled (a /probe may wait on a vendor)
    runner = web.AppRunner(app, access_log=None, handle_signals=False, keepalive_timeout=limits.idle_timeout,
                           shutdown_timeout=0.5)
    await runner.setup()
    listen = listen_addresses(args)
    guard = ConnectionGuard(limits, lambda: exp.config.global_.max_concurrency)
    sites: list[GuardedSite] = []

    async def close_all() -> None:
        for site in sites:
            site.stop()  # no new connection; the runner then ends those open
        await runner.cleanup()
        await exp.close()
        for close in cleanup:
            await close()

    for host, port in listen:
        try:
            site = GuardedSite(runner, host, port, guard=guard, ssl_context=ssl_context)
            await site.start()
            sites.append(site)
        except OSError as exc:
            # the system's words for the errno: asyncio's own text repeats the address as a Python tuple
            reason = os.strerror(exc.errno) if exc.errno else exc.strerror
            log.error("cannot listen on %s:%d: %s", host, port, reason)
            await close_all()
            return 1
    scheme = "https" if ssl_context else "http"
    for host, port in listen:
        shown = "localhost" if host in ("0.0.0.0", "::", "") else host
        base = args.external_url or f"{scheme}://{shown}:{port}{prefix}"
        log.info("apistatus-exporter %s: %d targets; metrics at %s/metrics, status page at %s/ "
                 "(at most %d client connections)", __version__, len(exp.config.targets), base, base, guard.cap())
    exporter = exp
    GC.resume(listening=True)
    if reload_queued:
        on_sighup()
    await stop.wait()
    log.info("stopping")

    async def shut_down() -> None:
        for task in reloads:
            task.cancel()
        await close_all()

    try:
        async with asyncio.timeout(STOP_GRACE):
            await shut_down()
    except TimeoutError:
        log.warning("stopping: gave up waiting after %gs", STOP_GRACE)
    return 0


#: on the console and on the status page of the demo
DEMO_BANNER = ("DEMO: simulated vendors and fake data, not your APIs. Run apistatus-exporter --config.file "
               "PATH for your own targets (apistatus-exporter config example VENDOR... writes a starter config).")
NO_CONFIG = ("error: no config: pass --config.file PATH (apistatus-exporter config example VENDOR... prints one), "
             "or run apistatus-exporter demo for the embedded demo")


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    command = argv[:1]
    if command in (["simulate"], ["config"], ["probe"]):
        GC.resume()  # only serving and the config check run paused (the simulators run for long)
    if command == ["simulate"]:
        try:  # the simulators' settings (vendors.yaml) are checked as they are imported
            from .simulators.__main__ import main as simulate
        except ConfigError as exc:
            print(f"error: {exc}", file=sys.stderr)
            return 1
        return simulate(argv[1:])
    if command == ["config"]:
        from .cli import config_main

        return config_main(argv[1:])
    if command == ["probe"]:
        from .cli import probe_main

        setup_logging("warn", "logfmt")
        return probe_main(argv[1:])
    demo = command == ["demo"]
    args = build_parser(demo).parse_args(argv[1:] if demo else argv)
    setup_logging(args.log_level, args.log_format)
    try:
        shard = resolve(args.shard, os.environ, allow_all=args.check_config)
    except ShardError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    if args.check_config:
        if args.config is None:
            GC.resume()
            print("error: --config.check needs --config.file PATH", file=sys.stderr)
            return 2
        GC.pause()  # building a config, then exiting
        try:
            return check_config(args.config, shard, args.web_config)
        finally:
            GC.resume()
    if args.config is None and not demo:
        GC.resume()
    if args.config is None and not demo:
        print(NO_CONFIG, file=sys.stderr)
        return 1
    assert isinstance(shard, Shard)  # "all" is refused above outside the config check
    code = 0
    with contextlib.suppress(KeyboardInterrupt):
        code = asyncio.run(serve(args, shard))
    return code


if __name__ == "__main__":
    sys.exit(main())
