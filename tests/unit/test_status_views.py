"""The status page's pure views (views.py): quota figures carry their age and turn stale once a later
answer failed or left them out; every class has its own colour and letter, readable without hover; the
wording (plurals, "HTTP no answer", clock skew in whole seconds)."""

from __future__ import annotations

import calendar
import re
from pathlib import Path

from exporter._yamlnode import Node
from exporter.classify import Outcome, QuotaReading
from exporter.config import Target, parse_config
from exporter.model import CLASSES
from exporter.probe import ProbeResult
from exporter.state import TargetState
from exporter.views import CLASS_GLYPHS, Refresh, _asset, history_view, render_status, render_target_page, target_view

T0 = float(calendar.timegm((2026, 5, 4, 14, 2, 30)))  # 14:02:30 UTC
REFRESH = Refresh(0, 30)


def _target(vendor: str = "openai") -> Target:
    creds = {"openai": {"api_key": "sk-1"}, "twilio": {"account_sid": "AC1", "auth_token": "t"}}[vendor]
    cfg = parse_config(Node({"targets": [{"name": "a", "vendor": vendor, "base_url": "http://127.0.0.1:9",
                                          "credentials": creds}]}, "t.yml", ""), Path("."), {})
    return cfg.targets[0]


def _result(at: float, outcome: Outcome) -> ProbeResult:
    return ProbeResult("a", at, 0.05, outcome, "GET http://127.0.0.1:9/v1/models", "{}")


TOKENS = QuotaReading("tokens", 20_000.0, 20_000.0)


def _quota_text(page: str) -> str:
    return re.sub(r"<[^>]+>", "", page.split('<div class="quota">', 1)[1].split("</div>", 1)[0])


def test_a_quota_figure_shows_its_age_and_turns_stale_after_a_failure() -> None:
    ts = TargetState(_target())
    ts.record(_result(T0, Outcome("ok", "200", "OK", 200, quotas=(TOKENS,))))
    fresh = render_status([target_view(ts)], T0 + 5, REFRESH)
    assert "tokens20k / 20k left (as of 14:02 UTC)" in _quota_text(fresh)
    assert 'class="qtext stale"' not in fresh and target_view(ts)["quotas"][0]["stale"] is False
    # OpenAI's insufficient_quota answer carries no rate-limit headers: the figure is from before it
    ts.record(_result(T0 + 60, Outcome("quota_exceeded", "insufficient_quota", "quota exceeded", 429)))
    view = target_view(ts)
    assert view["quotas"][0] | {} == {"name": "tokens", "remaining": 20000.0, "limit": 20000.0, "reset_at": None,
                                      "as_of": T0, "stale": True}
    page = render_status([view], T0 + 65, REFRESH)
    assert "20k / 20k left (stale: as of 14:02 UTC, before the failure)" in _quota_text(page)
    assert 'class="qtext stale"' in page and 'class="qbar stale"' in page


def test_a_quota_an_ok_answer_left_out_is_stale_too_and_a_new_report_is_fresh_again() -> None:
    ts = TargetState(_target())
    ts.record(_result(T0, Outcome("ok", "200", "OK", 200, quotas=(TOKENS,))))
    ts.record(_result(T0 + 120, Outcome("ok", "200", "OK", 200)))
    page = render_status([target_view(ts)], T0 + 125, REFRESH)
    assert "(stale: as of 14:02 UTC, not in the latest answer)" in _quota_text(page)
    ts.record(_result(T0 + 180, Outcome("ok", "200", "OK", 200, quotas=(QuotaReading("tokens", 5.0, 10.0),))))
    again = render_status([target_view(ts)], T0 + 185, REFRESH)
    assert "5 / 10 left (as of 14:05 UTC)" in _quota_text(again) and "stale" not in _quota_text(again)


def test_every_class_has_its_own_colour_and_its_own_letter() -> None:
    css = _asset("status.css")
    colours = {cls: re.search(rf"\.c-{cls}\{{--c:(#[0-9a-f]{{6}})\}}", css) for cls in (*CLASSES, "pending")}
    assert all(colours.values()), [cls for cls, found in colours.items() if not found]
    shown = [found.group(1) for found in colours.values() if found]
    assert len(set(shown)) == len(shown), "two classes share a colour"
    assert set(CLASS_GLYPHS) == set(CLASSES) and len(set(CLASS_GLYPHS.values())) == len(CLASSES)


def test_the_strip_reads_without_hover_letters_in_cells_and_a_legend() -> None:
    ts = TargetState(_target())
    for i, outcome in enumerate([Outcome("ok", "200", "OK", 200), Outcome("rate_limited", "429", "slow", 429),
                                 Outcome("auth", "401", "no", 401), Outcome("server_error", "500", "x", 500)]):
        ts.record(_result(T0 + i, outcome))
    page = render_status([target_view(ts)], T0 + 10, REFRESH)
    strip = page.split('<div class="strip"', 1)[1].split("</div>", 1)[0]
    assert re.findall(r'title="([a-z_]+)">([^<]+)</span>', strip) == [
        ("ok", "\u2713"), ("rate_limited", "R"), ("auth", "A"), ("server_error", "S")]
    legend = re.sub(r"<[^>]+>", "", page.split('<p class="legend">', 1)[1].split("</p>", 1)[0])
    assert legend == "\u2713 OK A credentials refused R rate limited S vendor error"


def test_plurals_http_no_answer_and_clock_skew_in_whole_seconds() -> None:
    ts = TargetState(_target())
    ts.record(_result(T0, Outcome("network_error", "refused", "connection refused", 0)))
    ts.record(_result(T0 + 1, Outcome("timeout", "timeout", "no answer", 0)))
    page = render_status([target_view(ts)], T0 + 5, REFRESH)
    assert "<strong>1 target: 0 up, 1 down</strong>" in page and "1 targets" not in page
    assert "<dt>HTTP</dt><dd>no answer</dd>" in page and "2 failed probes in a row" in page
    detail = render_target_page(target_view(ts), history_view(ts), T0 + 5, REFRESH)
    assert "HTTP no answer" in detail and "HTTP none" not in detail
    ts.record(_result(T0 + 2, Outcome("ok", "200", "OK", 200, clock_skew=3.4871)))
    view = target_view(ts)
    assert view["clock_skew_seconds"] == 3.0
    assert "+3&nbsp;s (vendor minus us, to the second of its Date header)" in render_status([view], T0 + 5, REFRESH)
    ts.record(_result(T0 + 3, Outcome("ok", "200", "OK", 200, clock_skew=-0.4)))
    assert "clock skew" not in render_status([target_view(ts)], T0 + 5, REFRESH)  # under the Date header's second


def test_large_figures_are_shortened_by_the_right_power() -> None:
    from exporter.views import fmt_num
    # 200,000 tokens a minute once showed as "20k"
    assert [fmt_num(v) for v in (4500, 20_000, 200_000, 1_070_000_000_000, 631e9)] == [
        "4500", "20k", "200k", "1.07T", "631G"]
