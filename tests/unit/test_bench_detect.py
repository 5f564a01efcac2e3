"""bench detect divides every duration of the shipped rules by one factor, ranges and offsets included."""

from __future__ import annotations

import pytest

from bench.detect import scale_rules, scaled, seconds


def test_durations_are_divided_exactly() -> None:
    assert seconds("1h30m") == 5400
    assert scaled("5m", 20) == "15000ms"
    assert scaled("30s", 20) == "1500ms"
    assert scaled("0s", 20) == "0s"  # not 1 ms: that for would wait for one more evaluation
    assert scaled("1s", 5000) == "1ms"
    with pytest.raises(ValueError, match="not a Prometheus duration"):
        seconds("5 minutes")


def test_rule_windows_fors_and_offsets_are_scaled() -> None:
    doc = {"groups": [{"name": "g", "rules": [
        {"alert": "A", "expr": "avg_over_time(x[15m]) > 0 and present_over_time(y[5m] offset 55m)",
         "for": "10m", "keep_firing_for": "15m"},
        {"record": "r", "expr": "rate(z[1d])"}]}]}
    out = scale_rules(doc, 20)
    a, r = out["groups"][0]["rules"]
    assert a["expr"] == "avg_over_time(x[45000ms]) > 0 and present_over_time(y[15000ms] offset 165000ms)"
    assert (a["for"], a["keep_firing_for"]) == ("30000ms", "45000ms")
    assert r["expr"] == "rate(z[4320000ms])"
