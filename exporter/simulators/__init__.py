"""The vendor simulators, each a small aiohttp app on 127.0.0.1 that answers the way its vendor
documents (docs/vendors.md, and the official pages cited in each SaaS catalog): it checks
signatures, tokens and timestamps, enforces limits on its own (injectable) clock, and can be switched
into any condition through a control API.

Control settings (``await sims.control(vendor, **settings)``, or ``POST /_control`` with a JSON
object on the simulator): ``reset`` (back to healthy), ``code`` (answer with this code),
``maintenance``, ``rotated`` (the vendor now expects other credentials), ``disabled``,
``rate_limited``, ``quota_exceeded``, ``server_error``, ``delay`` (seconds), ``down`` (close the
connection without an answer), ``clock_offset`` (seconds), ``retry_after`` (seconds),
``status_incident``, ``status_maintenance`` and ``status_component`` (what the vendor declares on its
own status page, for the vendors that have one: its status_page in vendors.yaml); and each vendor's own, its
``extra_settings`` in vendors.yaml (e.g. bannersnack ``banner_missing``, slack ``revoked``, ``burst``).
A condition the vendor has no documented signal for (no code for it in its ``condition_codes``, e.g.
rubiq maintenance) is refused with a ControlError.
"""

from __future__ import annotations

import asyncio
from collections import Counter
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from .._yamlnode import parse_duration
from ..clock import Clock
from .anthropic import AnthropicSimulator
from .aws_sts import AwsStsSimulator
from .bannersnack import BannersnackSimulator
from .base import ControlError, Simulator
from .bizwebs import BizwebsSimulator
from .cloudflare import CloudflareSimulator
from .datadog import DatadogSimulator
from .flipsnack import FlipsnackSimulator
from .github import GithubSimulator
from .movingimage import MovingimageSimulator
from .msgraph import MsgraphSimulator
from .openai import OpenaiSimulator
from .pagerduty import PagerdutySimulator
from .rubiq import RubiqSimulator
from .sendgrid import SendgridSimulator
from .slack import SlackSimulator
from .stripe import StripeSimulator
from .twilio import TwilioSimulator

__all__ = ["SIMULATORS", "ControlError", "Simulator", "SimulatorSet", "start_simulators"]

SIMULATORS: tuple[type[Simulator], ...] = (
    BannersnackSimulator, BizwebsSimulator, RubiqSimulator, FlipsnackSimulator, MovingimageSimulator,
    SlackSimulator, GithubSimulator, StripeSimulator, OpenaiSimulator, TwilioSimulator,
    AwsStsSimulator, MsgraphSimulator, CloudflareSimulator, DatadogSimulator, SendgridSimulator, PagerdutySimulator,
    AnthropicSimulator,
)


@dataclass
class SimulatorSet:
    sims: dict[str, Simulator]

    @property
    def base_urls(self) -> dict[str, str]:
        return {v: s.base_url for v, s in self.sims.items()}

    @property
    def control_urls(self) -> dict[str, str]:
        return {v: s.url + "/_control" for v, s in self.sims.items()}

    @property
    def credentials(self) -> dict[str, dict[str, str]]:
        return {v: s.credentials() for v, s in self.sims.items()}

    @property
    def checks(self) -> dict[str, dict[str, Any]]:
        return {v: s.check() for v, s in self.sims.items() if s.check()}

    def counts(self, vendor: str) -> Counter[str]:
        """Requests the simulator received, by kind (requests, health, login, refresh, usage...)."""
        return self.sims[vendor].counts

    async def control(self, vendor: str, **settings: Any) -> dict[str, Any]:
        """Switch a condition on or off (see the module docs); returns the simulator's status."""
        if vendor not in self.sims:
            raise ControlError(f"unknown simulator {vendor!r} (known: {', '.join(self.sims)})")
        return self.sims[vendor].control(**settings)

    def status_pages(self) -> dict[str, dict[str, Any]]:
        """``vendors:`` overrides that point each catalog's status_page at its simulator's own."""
        return {v: {"status_page": {"url": s.url + s.status_page.path, "format": s.status_page.format,
                                    "hosts": ["127.0.0.1"]}}
                for v, s in self.sims.items() if s.status_page is not None}

    def targets_config(self, interval: str = "5s", status_pages: bool = False, **kw: Any) -> dict[str, Any]:
        """A config dict with one target per vendor, named after the vendor. ``kw`` goes into
        ``global`` (e.g. ``timeout="2s"``); the timeout defaults to the interval, capped at 10s.
        ``status_pages``: the vendors' status pages are read from the simulators too."""
        seconds = parse_duration(interval)
        if seconds is None:
            raise ValueError(f"interval must be a duration like 5s, got {interval!r}")
        glob: dict[str, Any] = {"interval": interval, "timeout": interval if seconds <= 10 else "10s", **kw}
        targets: list[dict[str, Any]] = []
        for vendor, sim in self.sims.items():
            target: dict[str, Any] = {"name": vendor, "vendor": vendor, "base_url": sim.base_url,
                                      "credentials": sim.credentials()}
            if check := sim.check():
                target["check"] = check
            # a simulator carries no production traffic: the probes may use the vendor's whole budget
            target["probe_share"] = 1
            targets.append(target)
        vendors: dict[str, dict[str, Any]] = {
            vendor: dict(over) for vendor, sim in self.sims.items() if (over := sim.catalog_override())}
        if status_pages:
            for vendor, page in self.status_pages().items():
                vendors.setdefault(vendor, {}).update(page)
        return {"global": glob, "targets": targets, **({"vendors": vendors} if vendors else {})}

    def describe(self) -> Mapping[str, Mapping[str, Any]]:
        return {v: {"base_url": s.base_url, "control_url": s.url + "/_control", "credentials": s.credentials(),
                    **({"check": s.check()} if s.check() else {}),
                    **({"catalog_override": s.catalog_override()} if s.catalog_override() else {})}
                for v, s in self.sims.items()}

    async def close(self) -> None:
        await asyncio.gather(*(s.close() for s in self.sims.values()), return_exceptions=True)


async def start_simulators(host: str = "127.0.0.1", clock: Clock | None = None) -> SimulatorSet:
    """Start every simulator on an OS-assigned port of ``host``, sharing ``clock``."""
    sims = {cls.vendor: cls(clock) for cls in SIMULATORS}
    started = SimulatorSet(sims)
    try:
        for sim in sims.values():
            await sim.start(host)
    except BaseException:
        await started.close()
        raise
    return started
