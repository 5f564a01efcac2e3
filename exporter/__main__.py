"""Command line: ``apistatus-exporter [--config PATH] ...`` or ``apistatus-exporter simulate``.

With no ``--config`` it runs the embedded demo: the five vendor simulators on loopback and the
exporter probing them with demo credentials, so it works on a fresh machine with nothing to set up.
"""

from __future__ import annotations

import signal

if __name__ == "__main__":
    # Before anything slow (imports, a config of 20,000 targets): a SIGHUP from a config manager that
    # is quicker than us must not kill the process. serve() installs the real handler soon after.
    signal.signal(signal.SIGHUP, signal.SIG_IGN)

import argparse
import asyncio
import contextlib
import logging
import os
import sys
from pathlib import Path
from typing import Any

from aiohttp import web

from . import __version__
from .budget import budget_warnings
from .config import Config, ConfigError, load_config
from .log import FORMATTERS, setup_logging
from .shard import ALL, AllShards, Shard, ShardError, compare, describe, distribution, resolve, select, skew_warnings

DEFAULT_PORT = 9798
log = logging.getLogger("exporter")


def parse_listen(value: str) -> tuple[str, int]:
    host, sep, port = value.rpartition(":")
    if not sep or not port.isdigit() or not 0 <= int(port) <= 65535:
        raise argparse.ArgumentTypeError(f"--listen must be HOST:PORT or :PORT, got {value!r}")
    return host.strip("[]") or "0.0.0.0", int(port)  # an exporter listens on all interfaces


def parse_seconds(value: str) -> float:
    from ._yamlnode import parse_duration

    seconds = parse_duration(value)
    if seconds is None or seconds <= 0:
        raise argparse.ArgumentTypeError(f"must be a duration like 10s or 500ms, got {value!r}")
    return seconds


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="apistatus-exporter", description=__doc__.splitlines()[0])
    p.add_argument("--config", type=Path, help="config file; without it, run the embedded demo")
    p.add_argument("--listen", type=parse_listen, default=("0.0.0.0", DEFAULT_PORT),
                   metavar="HOST:PORT", help=f"address to serve on (default :{DEFAULT_PORT})")
    # --config.check: the spelling issue 18 uses (Prometheus style), kept as an alias
    p.add_argument("--check-config", "--config.check", dest="check_config", action="store_true",
                   help="validate the config and run every catalog example, print problems and exit")
    p.add_argument("--log-level", default="info", choices=["debug", "info", "warning", "error"])
    p.add_argument("--log-format", default="text", choices=sorted(FORMATTERS))
    p.add_argument("--web.config.file", dest="web_config", type=Path,
                   help="exporter-toolkit web config (TLS, basic auth) for the exporter's own endpoints")
    p.add_argument("--shard", metavar="I/N",
                   help="run shard I of N: keep only the targets whose credential hashes to I (env APISTATUS_SHARD;"
                        " with --check-config also 'all/N' or 'all')")
    p.add_argument("--web.read-header-timeout", dest="header_timeout", type=parse_seconds, default=10.0,
                   metavar="DURATION", help="time a client has to send its request headers (default 10s)")
    p.add_argument("--web.idle-timeout", dest="idle_timeout", type=parse_seconds, default=30.0,
                   metavar="DURATION", help="idle keep-alive connections are closed after this (default 30s)")
    p.add_argument("--web.max-connections", dest="max_connections", type=int, default=0, metavar="N",
                   help="cap on client connections (default 0: RLIMIT_NOFILE - 2 x max_concurrency - 64)")
    p.add_argument("--version", action="version", version=f"apistatus-exporter {__version__}")
    return p


def check_config(path: Path, shard: Shard | AllShards = ALL) -> int:
    try:
        config = load_config(path)
    except ConfigError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    for w in budget_warnings(config.targets):
        print(f"warning: {w}", file=sys.stderr)
    # every example of every catalog, built-in (as shipped) and the config's own (as merged)
    from .catalog import builtin_catalogs
    from .classify import example_failures

    catalogs = [*builtin_catalogs().values(), *config.catalogs.values()]
    failed = list(dict.fromkeys(line for c in catalogs for line in example_failures(c)))
    for line in failed:
        print(f"error: {line}", file=sys.stderr)
    if failed:
        return 1
    print(f"{path}: OK, {len(config.targets)} targets, vendors: {', '.join(sorted(config.catalogs))}")
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
    from .app import Exporter, _in_daemon_thread
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
            config: Config | None = await unless_stopped(_in_daemon_thread(lambda: load_config(path)))
        except ConfigError as exc:
            log.error("%s", exc)
            return 1
        if config is None:
            return 0
        exp = Exporter(select(config, shard), path, loader=lambda: select(load_config(path), shard), shard=shard)
    else:
        from .demo import start_demo

        demo = await start_demo()
        cleanup.append(demo.close)
        exp = Exporter(select(demo.config, shard), loader=None, shard=shard)
    if shard.count > 1:
        log.info("shard %s: %d targets of this config hash to this replica", shard, len(exp.config.targets))
    for w in budget_warnings(exp.config.targets):
        log.warning("%s", w)
    app = make_app(exp)
    limits = ServerLimits(header_timeout=args.header_timeout, idle_timeout=args.idle_timeout,
                          body_timeout=args.header_timeout, max_connections=max(0, args.max_connections))
    app[BODY_TIMEOUT_KEY] = limits.body_timeout
    ssl_context = None
    if args.web_config is not None:
        from .webconfig import WebConfigError, apply_web_config

        try:
            ssl_context = apply_web_config(app, args.web_config)
        except WebConfigError as exc:
            log.error("%s", exc)
            return 1
    await exp.start()
    # in-flight requests get a moment at shutdown, then are cancelled (a /probe may wait on a vendor)
    runner = web.AppRunner(app, access_log=None, handle_signals=False, keepalive_timeout=limits.idle_timeout,
                           shutdown_timeout=0.5)
    await runner.setup()
    host, port = args.listen
    guard = ConnectionGuard(limits, lambda: exp.config.global_.max_concurrency)
    try:
        site = GuardedSite(runner, host, port, guard=guard, ssl_context=ssl_context)
        await site.start()
    except OSError as exc:
        log.error("cannot listen on %s:%d: %s", host, port, exc.strerror)
        await exp.close()
        return 1
    scheme = "https" if ssl_context else "http"
    shown = "localhost" if host in ("0.0.0.0", "::", "") else host
    log.info("apistatus-exporter %s: %d targets; metrics at %s://%s:%d/metrics, status page at %s://%s:%d/ "
             "(at most %d client connections)", __version__, len(exp.config.targets), scheme, shown, port, scheme,
             shown, port, guard.cap())
    exporter = exp
    if reload_queued:
        on_sighup()
    await stop.wait()
    log.info("stopping")

    async def shut_down() -> None:
        for task in reloads:
            task.cancel()
        await runner.cleanup()
        await exp.close()
        for close in cleanup:
            await close()

    try:
        async with asyncio.timeout(STOP_GRACE):
            await shut_down()
    except TimeoutError:
        log.warning("stopping: gave up waiting after %gs", STOP_GRACE)
    return 0


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if argv[:1] == ["simulate"]:
        from .simulators.__main__ import main as simulate

        return simulate(argv[1:])
    args = build_parser().parse_args(argv)
    setup_logging(args.log_level, args.log_format)
    try:
        shard = resolve(args.shard, os.environ, allow_all=args.check_config)
    except ShardError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    if args.check_config:
        if args.config is None:
            print("error: --check-config needs --config PATH", file=sys.stderr)
            return 2
        return check_config(args.config, shard)
    assert isinstance(shard, Shard)  # "all" is refused above outside the config check
    code = 0
    with contextlib.suppress(KeyboardInterrupt):
        code = asyncio.run(serve(args, shard))
    return code


if __name__ == "__main__":
    sys.exit(main())
