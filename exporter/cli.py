"""The subcommands besides serving: ``config example``, ``probe`` and the config check that lists
every problem (``--config.check``). Each prints plain text (or JSON) and returns an exit code."""

from __future__ import annotations

import argparse
import asyncio
import json
import re
import sys
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any, NoReturn

from ._yamlnode import Node, load_yaml
from .budget import budget_warnings
from .catalog import builtin_raw
from .config import Config, ConfigError, Target, load_config, parse_config
from .model import PHASES, UP, ProbeResult

__all__ = ["OneLineParser", "config_example", "config_main", "config_problems", "probe_main", "probe_report"]


class OneLineParser(argparse.ArgumentParser):
    """argparse, with a bad flag or value said in one line (no usage block), control characters escaped."""

    def error(self, message: str) -> NoReturn:
        from .log import escape_control

        # argparse quotes what was typed: 10,000 unknown flags would make one line of some 80 KB
        shown = escape_control(message)
        shown = shown if len(shown) <= _ERROR_SHOWN else shown[:_ERROR_SHOWN - 3] + "..."
        self.exit(2, f"{self.prog}: error: {shown} (see --help)\n")


#: characters of an argparse error shown
_ERROR_SHOWN = 400


def shown_names(names: list[str], limit: int = 5, width: int = 64) -> str:
    """Names a user typed, for an error line: control characters escaped, each cut at ``width``, at most
    ``limit`` of them: a newline cannot forge a second line, ESC or BEL never reach the terminal, and
    10,000 names do not make a line of 100 KB."""
    from .log import escape_control

    shown = [escape_control(name[:width]) + ("..." if len(name) > width else "") for name in names[:limit]]
    more = f" and {len(names) - limit} more" if len(names) > limit else ""
    return ", ".join(shown) + more

#: an error at or below one target of the config's list: ``FILE: targets[12].credentials...``
_TARGET_PATH = re.compile(r"targets\[(\d+)\]")
#: a file that is wrong throughout is not worth more lines than this
MAX_PROBLEMS = 100
#: targets parsed at a time after a problem (duplicate names across windows are found separately)
WINDOW = 256


# --- --config.check: every problem ------------------------------------------------------------------

def config_problems(path: Path, env: Mapping[str, str] | None = None) -> tuple[Config | None, list[str]]:
    """The config, or None and one line per problem found (every bad key of ``global`` and every bad
    field of a target, each on its own line; at most MAX_PROBLEMS). The loader stops at its first error,
    so on one the file is checked again part by part, noting each problem and going on: everything
    outside ``targets`` once, then the targets (after a problem the loader cannot go past, from the next
    target on, with the same ``global``, ``vendors`` and ``catalog_files``), then the names across
    targets. An error in ``vendors`` or ``catalog_files`` stops there: the targets would only repeat it."""
    try:
        return load_config(path, env), []
    except ConfigError as exc:
        first = str(exc)
    try:
        root = load_yaml(path)
    except ConfigError as exc:
        return None, [str(exc)]
    if not isinstance(root.value, dict) or not isinstance(root.value.get("targets"), list):
        return None, [first]
    targets: list[Any] = root.value["targets"]
    shared = {k: v for k, v in root.value.items() if k != "targets"}
    problems: list[str] = []
    noted: list[ConfigError] = []
    try:
        parse_config(Node({**shared, "targets": []}, root.file, ""), path.parent, env, problems=noted)
    except ConfigError as exc:
        problems += [str(e) for e in noted] + [str(exc)]
        if exc.path.split(".", 1)[0].split("[", 1)[0] != "global":
            return None, problems
        noted.append(exc)
    else:
        problems += [str(e) for e in noted]
    if noted:
        shared.pop("global", None)  # the targets are checked against the defaults
    prefix = f"{root.file}: "

    def rebased(line: str, offset: int) -> tuple[str, int | None]:
        """The line with its target's index in the whole list, and that index (None: not a target's)."""
        m = _TARGET_PATH.match(line[len(prefix):]) if line.startswith(prefix) else None
        if m is None:
            return line, None
        at = offset + int(m.group(1))
        return prefix + f"targets[{at}]" + line[len(prefix) + m.end():], at

    # The targets in windows from ``start`` on. Problems of a field are noted and the parse goes on; a
    # problem the loader cannot go past is noted and its target skipped. So each target is parsed about
    # once, and the catalogs once per such problem or window.
    start = 0
    while start < len(targets) and len(problems) < MAX_PROBLEMS:
        noted = []
        try:
            parse_config(Node({**shared, "targets": targets[start:start + WINDOW]}, root.file, ""), path.parent,
                         env, problems=noted)
        except ConfigError as exc:
            problems += [rebased(str(e), start)[0] for e in noted]
            line, at = rebased(str(exc), start)
            problems.append(line)
            if at is None:
                break
            start = at + 1
        else:
            problems += [rebased(str(e), start)[0] for e in noted]
            start += WINDOW
    if len(problems) >= MAX_PROBLEMS:
        problems = problems[:MAX_PROBLEMS]
        problems.append(f"{prefix}stopped after {MAX_PROBLEMS} problems")
        return None, problems
    seen: dict[str, int] = {}
    for i, raw in enumerate(targets):
        name = raw.get("name") if isinstance(raw, dict) else None
        if isinstance(name, str):
            if name in seen:
                problems.append(str(ConfigError(root.file, f"targets[{i}].name", "duplicate target name", name)))
            else:
                seen[name] = i
    return None, list(dict.fromkeys(problems)) or [first]


def check_problems(path: Path, web_config: Path | None) -> tuple[Config | None, list[str], list[str]]:
    """(config, errors, warnings) of ``--config.check``: the config, every catalog example, and the web
    config when one is given."""
    config, errors = config_problems(path)
    warnings: list[str] = []
    if config is not None:
        warnings = budget_warnings(config.targets)
        from .catalog import builtin_catalogs
        from .classify import example_failures

        catalogs = [*builtin_catalogs().values(), *config.catalogs.values()]
        errors += list(dict.fromkeys(line for c in catalogs for line in example_failures(c)))
    if web_config is not None:
        from .webconfig import WebConfigError, validate_web_config

        try:
            validate_web_config(web_config)
        except WebConfigError as exc:
            errors.append(str(exc))
    return (config if not errors else None), errors, warnings


# --- config example ---------------------------------------------------------------------------------

def _var(vendor: str, key: str) -> str:
    return re.sub(r"[^A-Z0-9_]", "_", f"{vendor}_{key}".upper())


def _yaml_str(value: str) -> str:
    return json.dumps(value)  # a JSON string is a YAML string, quoted, so ${VAR} in it stays text


def config_example(vendors: Iterable[str]) -> str:
    """A commented starter config with one target per vendor: every credential (required and optional),
    what the vendor's check needs, ``${VAR}`` placeholders for each. Vendor facts come from the catalogs."""
    raw = builtin_raw()
    names = list(dict.fromkeys(vendors))
    unknown = [v for v in names if v not in raw]
    if unknown:
        raise ValueError(f"unknown vendor {shown_names(unknown)} (built-in: {', '.join(sorted(raw))})")
    out = [
        f"# apistatus-exporter starter config for {', '.join(names)}.",
        "# Every ${VAR} is read from the environment when the config loads; instead of KEY: ${VAR} a",
        "# credential can also be read from a file: KEY_file: /run/secrets/NAME.",
        "# Set the variables, then check the file (exit 0 when it is ready to run):",
        "#   apistatus-exporter --config.file config.yml --config.check",
        "global:",
        "  interval: 60s   # how often each target is probed",
        "  timeout: 10s    # per probe, logins and retries included",
        "",
        "targets:",
    ]
    for vendor in names:
        m = raw[vendor].mapping()
        title = m["title"].text() if "title" in m else vendor
        docs = m["docs_url"].text() if "docs_url" in m else ""
        base = m["base_url"].text() if "base_url" in m else f"${{{_var(vendor, 'base_url')}}}"
        out.append(f"  # {title}" + (f" ({docs})" if docs else ""))
        out += [f"  - name: {vendor}", f"    vendor: {vendor}", f"    base_url: {_yaml_str(base)}",
                "    credentials:"]
        for c in m["credentials"]:
            out.append(f"      {c.text()}: {_yaml_str('${' + _var(vendor, c.text()) + '}')}")
        for c in m.get("optional_credentials", Node([], "", "")):
            out.append(f"      # {c.text()}: {_yaml_str('${' + _var(vendor, c.text()) + '}')}   # optional")
        check = m["check"].mapping() if "check" in m else {}
        requires = [r.text() for r in check.get("requires", Node([], "", ""))]
        if requires:
            hint = check["hint"].text() if "hint" in check else ""
            if hint:
                out.append(f"    # the check needs {', '.join(requires)}: {hint}")
            out.append("    check:")
            params = [r[7:] for r in requires if r.startswith("params.")]
            for r in requires:
                if r in ("path", "body"):
                    out.append(f"      {r}: {_yaml_str('${' + _var(vendor, 'check_' + r) + '}')}")
            if params:
                out.append("      params:")
                out += [f"        {p}: {_yaml_str('${' + _var(vendor, 'check_' + p) + '}')}" for p in params]
        out.append("")
    return "\n".join(out).rstrip("\n") + "\n"


def config_main(argv: list[str]) -> int:
    p = OneLineParser(prog="apistatus-exporter config", description="Config helpers.")
    sub = p.add_subparsers(dest="command", required=True, metavar="COMMAND")
    ex = sub.add_parser("example", help="print a commented starter config for the named vendors",
                        description="Print a commented starter config for the named built-in vendors.")
    ex.add_argument("vendors", nargs="+", metavar="VENDOR",
                    help=f"built-in vendor ({', '.join(sorted(builtin_raw()))})")
    args = p.parse_args(argv)
    try:
        sys.stdout.write(config_example(args.vendors))
    except ValueError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    return 0


# --- probe: one target, once -------------------------------------------------------------------------

def _fmt_seconds(value: float | None) -> str:
    return "-" if value is None else f"{value:g}s"


def probe_report(target: Target, result: ProbeResult) -> dict[str, Any]:
    out = result.outcome
    return {
        "target": target.name, "vendor": target.vendor, "up": out.cls in UP, "class": out.cls, "code": out.code,
        "message": out.message, "http_status": out.http_status, "duration_seconds": round(result.duration, 6),
        "attempts": result.attempts, "requests": result.requests, "retry_after_seconds": out.retry_after,
        "clock_skew_seconds": out.clock_skew,
        "quotas": [{"name": q.name, "remaining": q.remaining, "limit": q.limit, "reset_at": q.reset_at}
                   for q in out.quotas],
        "tls_cert_expiry": result.tls_cert_expiry, "request": result.request_line,
        # seconds per phase of the final request, as apistatus_http_duration_seconds (None: no answer)
        "phases": dict(zip(PHASES, result.phases, strict=True)) if result.phases is not None else None,
    }


def _plural(count: int, word: str) -> str:
    return f"{count} {word}{'' if count == 1 else 's'}"


def _text(report: dict[str, Any]) -> str:
    def num(v: float | None) -> str:
        return "?" if v is None else f"{v:g}"

    quotas = ", ".join(f"{q['name']} {num(q['remaining'])}/{num(q['limit'])} left" for q in report["quotas"])
    rows = [
        ("target", f"{report['target']} (vendor {report['vendor']})"),
        ("class", f"{report['class']} ({'up' if report['up'] else 'down'})"),
        ("code", report["code"]), ("message", report["message"]),
        ("http status", str(report["http_status"] or "no answer")),
        ("duration", f"{report['duration_seconds']:.3f}s ({_plural(report['attempts'], 'attempt')}, "
                     f"{_plural(report['requests'], 'request')})"),
        ("quotas", quotas or "-"),
        ("retry-after", _fmt_seconds(report["retry_after_seconds"])),
        ("clock skew", _fmt_seconds(report["clock_skew_seconds"])),
        ("phases", ", ".join(f"{p} {v * 1000:.1f}ms" for p, v in report["phases"].items())
         if report["phases"] else "-"),
        ("request", report["request"] or "-"),
    ]
    from .log import escape_control

    return "".join(f"{k + ':':13}{escape_control(str(v))}\n" for k, v in rows)


async def _probe_once(config: Config, target: Target, debug: bool = False) -> ProbeResult:
    from .app import Exporter
    from .egress import Egress
    from .probe import FORCE_TRACE, Prober

    FORCE_TRACE.set(debug)  # this run's own context (asyncio.run's): nothing else sees it

    exp = Exporter(config)
    exp.session = exp._new_session()
    try:
        exp.egress = Egress(exp.session, exp._new_session)
        prober = Prober(exp.session, exp.clock, config.global_.max_body_bytes, exp.egress)
        async with asyncio.timeout(target.timeout + 5):  # the prober keeps to the timeout; this is a backstop
            return await prober.probe(target)
    finally:
        await exp.close()


def probe_main(argv: list[str]) -> int:
    p = OneLineParser(
        prog="apistatus-exporter probe",
        description="Probe one configured target once and print what the exporter makes of the answer. "
                    "Exit 0 when the class counts as up (ok, degraded, processing), else 1.")
    p.add_argument("--config.file", "--config", dest="config", type=Path, required=True, metavar="PATH",
                   help="the config file (--config is an alias)")
    p.add_argument("--json", action="store_true", help="print one JSON object instead of text")
    p.add_argument("--debug", action="store_true",
                   help="print the probe's trace: every request and login, the answers (redacted), what decided "
                        "the class and what a running exporter would do next")
    p.add_argument("name", metavar="NAME", help="the target's name")
    args = p.parse_args(argv)
    try:
        config = load_config(args.config)
    except ConfigError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    target = config.target(args.name)
    if target is None:
        known = ", ".join(t.name for t in config.targets[:20]) + (", ..." if len(config.targets) > 20 else "")
        print(f"error: {args.config}: no target named {args.name[:128]!r} (targets: {known})", file=sys.stderr)
        return 2
    try:
        result = asyncio.run(_probe_once(config, target, args.debug))
    except KeyboardInterrupt:
        return 130
    report = probe_report(target, result)
    if args.debug:
        report["trace"] = debug_trace(target, result)
    sys.stdout.write(json.dumps(report) + "\n" if args.json else _text(report) + _debug_text(report))
    return 0 if report["up"] else 1


def debug_trace(target: Target, result: ProbeResult) -> str:
    """The probe's trace (redacted by the prober) and what a running exporter would do next: the
    scheduler's own policy (``next_delay``, ``confirm_failures``), with no state behind it."""
    import random

    from .backoff import next_delay
    from .trace import cap, decision

    out = result.outcome
    # a failure of any class is re-probed, unless its Retry-After is more than half the interval off
    confirming = target.confirm_failures and out.cls not in UP and (out.retry_after or 0) <= target.interval / 2
    delay, backoff = next_delay(target.interval, out, 1, random.Random(), target.max_backoff)
    follows = decision(out, target.interval, delay, backoff, confirming=confirming, requests=result.requests,
                       hypothetical=True)
    return cap(result.trace or "no trace was made\n", tail=follows)


def _debug_text(report: dict[str, Any]) -> str:
    if "trace" not in report:
        return ""
    from .log import escape_control

    return "\n" + "".join(escape_control(line) + "\n" for line in report["trace"].splitlines())
