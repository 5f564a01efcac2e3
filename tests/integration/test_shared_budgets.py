"""Targets that share one credential but differ in probe_share keep, together, within the strictest
share: taking turns must not start the window afresh. Simulated time against a loopback vendor."""

from __future__ import annotations

from exporter.budget import budget_warnings

from ..conftest import config_from
from .test_scheduler import Sim, run, sim  # noqa: F401 - the fixture


async def test_targets_on_one_key_with_different_shares_keep_the_strictest(sim: Sim) -> None:  # noqa: F811
    # Flipsnack allows 60 a minute per key: shares 0.2 and 0.1 allow 12 and 6; the pair gets 6.
    cfg = config_from({"global": {"interval": "1s", "timeout": "1s"}, "targets": [
        {"name": f"t{i}", "vendor": "flipsnack", "base_url": sim.url, "probe_share": share,
         "credentials": {"api_key": "shared", "secret": "s"}} for i, share in enumerate((0.2, 0.1))]})
    warnings = budget_warnings(cfg.targets)
    assert any("probes may spend 6 (10% of 60 per 60s)" in w for w in warnings), warnings
    task = await run(sim, cfg)
    await sim.step(600, every=1)
    times = [t for t, _ in sim.vendor.log]
    worst = max(sum(1 for u in times if t <= u < t + 60) for t in times)
    assert worst <= 6
    assert len(times) >= 50  # and the budget is used: about 6 a minute
    task.cancel()
