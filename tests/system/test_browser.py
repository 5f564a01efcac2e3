"""The status page in a real headless Chromium (Debian's /usr/bin/chromium driven by playwright) against
the exporter probing the five vendor simulators on loopback. Screenshots land in artifacts/."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

from playwright.async_api import Browser, Page, async_playwright

from exporter.simulators import SimulatorSet, start_simulators

from ..conftest import Running, config_from, running_exporter

CHROMIUM = "/usr/bin/chromium"
ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
        "--disable-component-update", "--disable-sync", "--no-first-run"]
VENDORS = ["bannersnack", "bizwebs", "rubiq", "flipsnack", "movingimage",
           "slack", "github", "stripe", "openai", "twilio",
           "aws-sts", "msgraph", "cloudflare", "datadog", "sendgrid", "pagerduty", "anthropic"]


@contextlib.asynccontextmanager
async def chromium() -> AsyncIterator[Browser]:
    """Debian's Chromium; a launch failure fails the test (never a skip, never a downloaded browser)."""
    async with async_playwright() as pw:
        browser = await pw.chromium.launch(executable_path=CHROMIUM, args=ARGS, headless=True)
        try:
            yield browser
        finally:
            await browser.close()


@contextlib.asynccontextmanager
async def demo() -> AsyncIterator[tuple[SimulatorSet, Running]]:
    """The simulators and the exporter probing each of them every second, all on 127.0.0.1."""
    sims = await start_simulators()
    try:
        async with running_exporter(config_from(sims.targets_config(interval="1s"))) as ex:
            loop = asyncio.get_running_loop()
            end = loop.time() + 15
            while not all((ts := ex.exporter.state.get(v)) is not None and ts.last is not None
                          and ts.last.outcome.cls == "ok" for v in VENDORS):
                assert loop.time() < end, "not every healthy simulator was probed ok"
                await asyncio.sleep(0.05)
            yield sims, ex
    finally:
        await sims.close()


def watch_console(page: Page) -> list[str]:
    """Console errors and page errors, e.g. a stylesheet the page's own CSP refuses."""
    problems: list[str] = []
    page.on("console", lambda m: problems.append(m.text) if m.type == "error" else None)
    page.on("pageerror", lambda exc: problems.append(str(exc)))
    return problems


async def no_horizontal_scroll(page: Page) -> bool:
    return bool(await page.evaluate("document.documentElement.scrollWidth <= window.innerWidth"))


async def cards(page: Page) -> dict[str, Any]:
    return dict(await page.eval_on_selector_all(
        "article[data-target]", "els => els.map(e => [e.dataset.target, e.dataset.class])"))


async def test_page_shows_every_vendor_and_a_maintenance_after_the_next_probe(artifacts: Path) -> None:
    async with demo() as (sims, ex), chromium() as browser:
        page = await browser.new_page(viewport={"width": 1280, "height": 900})
        problems = watch_console(page)
        response = await page.goto(ex.url + "/")
        assert response is not None and response.status == 200
        assert await page.title() == "API status"
        sections = await page.eval_on_selector_all("section[data-vendor]", "els => els.map(e => e.dataset.vendor)")
        assert sections == VENDORS
        for vendor in VENDORS:
            # each vendor's section is visible with its catalog title and its target's card
            assert await page.locator(f'section[data-vendor="{vendor}"] h2').is_visible()
        assert await cards(page) == dict.fromkeys(VENDORS, "ok")
        assert await page.locator('article[data-target="flipsnack"] .badge').inner_text() == "OK"
        # the stylesheet is applied, so the page's CSP hash matches it
        width = await page.eval_on_selector('article[data-target="flipsnack"]',
                                            "e => getComputedStyle(e).borderLeftWidth")
        assert width == "6px"
        await page.screenshot(path=str(artifacts / "status-page.png"), full_page=True)

        await sims.control("bizwebs", maintenance=True, retry_after=120)
        # no reload from the test: the page refreshes itself and shows the next probe's answer
        card = page.locator('article[data-target="bizwebs"][data-class="maintenance"]')
        await card.wait_for(timeout=15000)
        assert await card.locator(".badge").inner_text() == "maintenance"
        note = await card.locator(".note").first.inner_text()
        assert note == "The vendor says it is in maintenance; retry after 2m 00s."
        assert "501 maintenance" in " ".join((await card.inner_text()).split())
        others = await cards(page)
        assert others.pop("bizwebs") == "maintenance" and "maintenance" not in others.values()
        assert "bizwebs" in await page.locator("#summary").inner_text()  # listed as needing attention
        await page.screenshot(path=str(artifacts / "status-page-maintenance.png"), full_page=True)

        await card.locator("h3 a").click()
        await page.wait_for_url("**/targets/bizwebs")
        first = page.locator("ol.history li").first
        assert await first.get_attribute("data-class") == "maintenance"
        assert "retry after 2m 00s" in await first.inner_text()
        await page.screenshot(path=str(artifacts / "target-page.png"), full_page=True)
        assert problems == []


async def test_page_is_readable_on_a_phone(artifacts: Path) -> None:
    async with demo() as (sims, ex), chromium() as browser:
        # a used-up quota and a nearly used-up one, so the notes, the summary list and the bars show too
        await sims.control("bizwebs", quota_exceeded=True)
        await sims.control("flipsnack", uploads_left=37)
        biz, flip = ex.exporter.state.get("bizwebs"), ex.exporter.state.get("flipsnack")
        assert biz is not None and flip is not None
        loop = asyncio.get_running_loop()
        end = loop.time() + 15
        while (biz.last is None or biz.last.outcome.cls != "quota_exceeded"
               or flip.quotas["uploads"].remaining != 37):
            assert loop.time() < end, "the quota conditions never showed in the probes"
            await asyncio.sleep(0.05)
        context = await browser.new_context(viewport={"width": 390, "height": 844}, device_scale_factor=2,
                                            is_mobile=True, has_touch=True)
        page = await context.new_page()
        problems = watch_console(page)
        await page.goto(ex.url + "/?refresh=0")
        assert await no_horizontal_scroll(page)
        # cards stack into one column: each is at most as wide as the screen
        widths = await page.eval_on_selector_all("article[data-target]",
                                                 "els => els.map(e => e.getBoundingClientRect().right)")
        assert len(widths) == len(VENDORS) and max(widths) <= 390
        font = await page.eval_on_selector("body", "e => parseFloat(getComputedStyle(e).fontSize)")
        assert font >= 14
        bar = page.locator('article[data-target="flipsnack"] meter')
        assert await bar.get_attribute("value") == "37" and await bar.is_visible()
        await page.screenshot(path=str(artifacts / "status-page-phone.png"), full_page=True)
        await page.goto(ex.url + "/targets/bizwebs")
        # the failure's answer is unfolded; long request lines and excerpts wrap instead of widening the page
        first = page.locator("ol.history li").first
        assert await first.get_attribute("data-class") == "quota_exceeded"
        assert await first.locator("details pre").is_visible()
        assert "Quota exceeded" in await first.locator("details pre").inner_text()
        assert await no_horizontal_scroll(page)
        await page.screenshot(path=str(artifacts / "target-page-phone.png"), full_page=True)
        await context.close()
        assert problems == []
