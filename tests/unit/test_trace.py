"""The pure parts of a probe's trace: the classifier's decision told (``classify.explain``), the
scheduler's decision told (``trace.decision``), the text's cap, and the state keeping the last failure's
and the last success's trace apart and small."""

from __future__ import annotations

import calendar

from exporter.catalog import builtin_catalogs
from exporter.classify import EXAMPLE_NOW, classify, explain
from exporter.engine import chain_expiry, leaf_validity
from exporter.model import TRACE_MAX_CHARS, Answer, Explanation, Failure, Outcome, ProbeResult
from exporter.state import State
from exporter.trace import TraceStep, cap, decision, render_trace
from tests.conftest import config_from


def test_explain_tells_the_class_and_code_classify_gives_for_every_catalog_example() -> None:
    checked = 0
    for catalog in builtin_catalogs().values():
        for ex in catalog.examples:
            answer = Answer(ex.status, {name.lower(): text for name, text in ex.headers}, ex.body)
            got = classify(catalog, answer, EXAMPLE_NOW)
            why = explain(catalog, answer, EXAMPLE_NOW)
            assert (why.cls, why.code) == (got.cls, got.code), ex.where
            # a code the vendor's own field gave names its source and its catalog entry
            if not got.code.startswith("http_") and got.cls != "unknown":
                assert why.source.startswith("code_from["), (ex.where, why)
                entries = (f"codes[{got.code}]", f"codes[{got.code.split('.')[0]}]", "unlisted_by_status")
                assert any(entry in why.entry for entry in entries), (ex.where, why)
            checked += 1
    assert checked > 50


def test_explain_names_the_source_the_entry_and_the_sources_passed_over() -> None:
    slack = builtin_catalogs()["slack"]
    why = explain(slack, Answer(200, {}, b'{"ok": false, "error": "invalid_auth"}'), EXAMPLE_NOW)
    assert why.source == "code_from[0] (body error (type string)) gave code invalid_auth"
    assert why.entry.startswith("the catalog's codes[invalid_auth] -> auth: ")
    # no code anywhere: the HTTP status decides, and the trace says by which rule
    why = explain(slack, Answer(502, {}, b"<html>bad gateway</html>"), EXAMPLE_NOW)
    assert why.cls == classify(slack, Answer(502, {}, b"<html>bad gateway</html>"), EXAMPLE_NOW).cls
    assert "code_from[0]" in why.notes[0] and "no code there" in why.notes[0]
    # a wait the vendor asked for is told, with where it came from
    why = explain(slack, Answer(429, {"retry-after": "30"}, b'{"ok": false, "error": "ratelimited"}'), EXAMPLE_NOW)
    assert why.cls == "rate_limited" and "wait 30s before the next call (the Retry-After header)" in why.notes


def test_explain_says_when_the_json_envelope_overrules_the_code() -> None:
    enveloped = [c for c in builtin_catalogs().values() if c.envelope == "json"]
    assert enveloped
    why = explain(enveloped[0], Answer(200, {"content-type": "text/html"}, b"<html>captive portal</html>"),
                  EXAMPLE_NOW)
    assert why.cls == "unknown" and "envelope: json" in why.entry


def test_explain_of_a_transport_failure_is_the_failure_map() -> None:
    why = explain(builtin_catalogs()["slack"], Failure("network_error", "refused", "connection refused"), 0.0)
    assert (why.cls, why.code) == ("network_error", "refused") and "transport-failure map" in why.source


def test_decision_tells_backoff_interval_and_confirmation() -> None:
    wait = Outcome("rate_limited", "ratelimited", "slow down", 429, retry_after=120.0)
    text = decision(wait, 60.0, 120.0, 120.0, requests=2)
    assert "backoff after rate_limited (the vendor's wait of 120s): next probe in 120s" in text
    assert "cost 2 requests" in text
    fine = Outcome("ok", "ok", "fine", 200)
    assert "(the interval, 60s, with jitter)" in decision(fine, 60.0, 61.0, 0.0)
    assert "confirm_failures" in decision(Outcome("client_error", "404", "gone", 404), 60.0, 0.0, 0.0,
                                          confirming=True)
    assert "budget has no room for another 3.0s" in decision(fine, 60.0, 61.0, 0.0, budget_wait=3.0)


def test_cap_cuts_and_says_so() -> None:
    assert cap("short") == "short"
    cut = cap("x" * 10_000)
    assert len(cut) == TRACE_MAX_CHARS and cut.endswith(f"[trace cut at {TRACE_MAX_CHARS} characters]\n")


def _result(cls: str, started: float, trace: str | None) -> ProbeResult:
    return ProbeResult("t", started, 0.1, Outcome(cls, cls, cls, 200 if cls == "ok" else 503), "GET /", "", 1, 1,
                       trace=trace)


def test_state_keeps_the_last_failure_and_success_traces_apart_bounded_and_once() -> None:
    cfg = config_from({"targets": [{"name": "t", "vendor": "slack", "base_url": "http://127.0.0.1:9",
                                    "credentials": {"token": "xoxb-0123456789"}, "confirm_failures": True}]})
    state = State()
    state.sync(cfg.targets)
    state.record(_result("server_error", 100.0, "first failure\n"), 220.0, 120.0)
    state.record(_result("ok", 300.0, "a success\n" + "y" * 20_000), 360.0, 0.0)
    state.record(_result("ok", 360.0, None), 420.0, 0.0)  # a success the prober did not trace
    ts = state.get("t")
    assert ts is not None and ts.last is not None
    failure, success = ts.traces()["failure"], ts.traces()["success"]
    assert failure is not None and failure[0] == 100.0
    assert "first failure" in failure[1] and "backoff after server_error" in failure[1]
    assert success is not None and success[0] == 300.0 and success[1].startswith("a success\nyyy")
    assert len(success[1]) == TRACE_MAX_CHARS and "next: next probe in" in success[1]  # cut, the decision kept
    assert ts.last.trace is None  # the kept text is not held a second time by the latest result
    # confirm_failures: the first failure is re-probed (after a Retry-After or a budget wait, if any), and
    # the next trace says how that went
    state.record(_result("client_error", 500.0, "to confirm\n"), 500.1, 0.0)
    assert "confirm_failures: the failure (client_error) is re-probed as soon as" in str(ts.traces()["failure"])
    state.record(_result("ok", 500.2, "fine again\n"), 560.0, 0.0)
    assert "(confirm_failures): not confirmed, the target counts as up" in str(ts.traces()["success"])
    # a failure of a backoff class is confirmed first too (the backoff follows the confirmation)
    state.record(_result("server_error", 600.0, "a 503\n"), 600.1, 0.0)
    assert "confirm_failures: the failure (server_error) is re-probed" in str(ts.traces()["failure"])


def _day(text: str) -> float:
    return float(calendar.timegm((*map(int, text.split("-")), 0, 0, 0, 0, 0, 0)))


def _tls_line(answer: Answer, now: float) -> str:
    text = render_trace("t", "slack", now, 0.1, Outcome("ok", "ok", "fine", 200), 1, 1,
                        [TraceStep("check", "GET https://x/", (), answer)],
                        Explanation("s", "e", "ok", "ok"), lambda text: text, lambda body: "")
    return next(line for line in text.splitlines() if line.startswith("    tls: "))


def test_the_tls_line_tells_version_and_certificate_dates_and_what_is_wrong_with_them() -> None:
    # curl's CERTINFO of a leaf and an intermediate (OpenSSL's date text): the leaf is the first
    chain = [[("Subject", "CN=api.example"), ("Start date", "Jan  1 00:00:00 2026 GMT"),
              ("Expire date", "Jan  1 00:00:00 2027 GMT")],
             [("Subject", "CN=Intermediate"), ("Start date", "Jun  1 00:00:00 2020 GMT"),
              ("Expire date", "Sep 30 12:00:00 2026 GMT")]]
    validity, expiry = leaf_validity(chain), chain_expiry(chain)
    assert validity == (_day("2026-01-01"), _day("2027-01-01")) and expiry == _day("2026-09-30") + 43200
    line = _tls_line(Answer(200, {}, b"", tls_version="1.3 TLS_AES_256_GCM_SHA384", tls_cert_validity=validity,
                            tls_cert_expiry=expiry), _day("2026-03-01"))
    assert line.startswith("    tls: TLS 1.3 (TLS_AES_256_GCM_SHA384), certificate valid 2026-01-01 .. 2027-01-01 "
                           "(notBefore 2026-01-01 00:00:00 UTC, notAfter 2027-01-01 00:00:00 UTC, expires in 306 days)")
    assert line.endswith("certificate chain expires 2026-09-30 12:00:00 UTC (in 214 days, the earliest notAfter)")
    # a scheduled probe's answer: dates, and no version it did not read; the chain ends with the leaf
    line = _tls_line(Answer(200, {}, b"", tls_cert_validity=validity, tls_cert_expiry=validity[1]),
                     _day("2027-01-11"))
    assert "TLS version not recorded" in line and "expired 10 days ago" in line and "chain" not in line
    line = _tls_line(Answer(200, {}, b"", tls_version="1.2 ECDHE-RSA-AES128-GCM-SHA256", tls_cert_validity=validity),
                     _day("2025-12-27"))
    assert line.startswith("    tls: TLS 1.2 (ECDHE-RSA-AES128-GCM-SHA256)") and "not valid for 5 more days" in line
    assert _tls_line(Answer(200, {}, b"", tls_version="SSLv3 RC4-MD5"), 0.0) == "    tls: SSLv3 (RC4-MD5)"
    # plain HTTP: no tls line at all
    assert "tls:" not in render_trace("t", "slack", 0.0, 0.1, Outcome("ok", "ok", "fine", 200), 1, 1,
                                      [TraceStep("check", "GET http://x/", (), Answer(200, {}, b""))],
                                      Explanation("s", "e", "ok", "ok"), lambda text: text, lambda body: "")
    assert leaf_validity([]) is None and leaf_validity([[("Start date", "garbage")]]) is None
