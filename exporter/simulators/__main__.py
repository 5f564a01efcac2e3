"""``apistatus-exporter simulate``: run the vendor simulators alone, print where they are."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import signal
import sys

from . import start_simulators

__all__ = ["main"]


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="apistatus-exporter simulate",
                                description="Run the vendor simulators until SIGINT/SIGTERM.")
    p.add_argument("--listen-host", default="127.0.0.1", metavar="HOST",
                   help="address the simulators listen on, each on its own free port (default 127.0.0.1)")
    p.add_argument("--json", action="store_true", help="print the addresses as one JSON object")
    return p


async def run(host: str, as_json: bool) -> int:
    try:
        sims = await start_simulators(host)
    except OSError as exc:
        print(f"error: cannot listen on {host}: {exc.strerror or exc}", file=sys.stderr)
        return 1
    try:
        info = sims.describe()
        if as_json:
            print(json.dumps(info), flush=True)
        else:
            for vendor, d in info.items():
                print(f"{vendor}: base_url {d['base_url']}  control {d['control_url']}")
                print(f"  credentials: {json.dumps(d['credentials'])}")
                if "check" in d:
                    print(f"  check: {json.dumps(d['check'])}")
                if "catalog_override" in d:
                    print(f"  vendors.{vendor}: {json.dumps(d['catalog_override'])}")
            print("switch a condition with e.g.: curl -X POST -d '{\"maintenance\": true}' <control url>",
                  flush=True)
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, stop.set)
        await stop.wait()
    finally:
        await sims.close()
    return 0


def main(argv: list[str]) -> int:
    args = build_parser().parse_args(argv)
    code = 0
    with contextlib.suppress(KeyboardInterrupt):
        code = asyncio.run(run(args.listen_host, args.json))
    return code


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
