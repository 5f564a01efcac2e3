"""The classifier's fallback rules (docs/vendors.md, "Rules for every vendor"), pure."""

from __future__ import annotations

from email.utils import formatdate

import pytest

from exporter._yamlnode import Node
from exporter.catalog import builtin_raw, parse_catalog
from exporter.classify import classify
from exporter.model import BACKOFF, CLASSES, FAILURE, UP, Answer, Failure, OutcomeClass

CATALOGS = {name: parse_catalog(name, node) for name, node in builtin_raw().items()}
NOW = 1_800_000_000.0


def ans(status: int, body: bytes = b"", **headers: str) -> Answer:
    return Answer(status, {k.lower().replace("_", "-"): v for k, v in headers.items()}, body)


@pytest.mark.parametrize("body", [
    b"<html><body>502 Bad Gateway</body></html>",  # a proxy's error page
    b"",  # empty
    b"{not json",  # invalid JSON
    b'{"code": "511"}',  # a code sent as a string is not the documented envelope
    b"\xff\xfe{\x00",  # invalid UTF-8
    b"[" * 100000 + b"]" * 100000,  # hostile nesting
    b'{"code": true}',
    b'{"code": 20.5}',
])
@pytest.mark.parametrize("vendor", ["bannersnack", "flipsnack"])
def test_body_vendor_without_a_readable_code_falls_back_to_http_and_is_never_ok(vendor: str, body: bytes) -> None:
    ok = classify(CATALOGS[vendor], ans(200, body), NOW)
    assert ok.cls == "unknown" and ok.code == "http_200"
    bad = classify(CATALOGS[vendor], ans(502, body), NOW)
    assert (bad.cls, bad.code, bad.http_status) == ("server_error", "http_502", 502)


def test_same_number_means_different_things_per_vendor() -> None:
    assert classify(CATALOGS["bizwebs"], ans(501), NOW).cls == "maintenance"
    assert classify(CATALOGS["rubiq"], ans(501), NOW).cls == "client_error"
    # Bannersnack's body code 511 is maintenance; an HTTP 511 is not
    assert classify(CATALOGS["bannersnack"], ans(200, b'{"code": 511}'), NOW).cls == "maintenance"
    assert classify(CATALOGS["bannersnack"], ans(511, b""), NOW).cls == "server_error"


def test_unknown_codes_are_unknown_with_a_bounded_printable_label() -> None:
    out = classify(CATALOGS["flipsnack"], ans(200, b'{"code": 99}'), NOW)
    assert (out.cls, out.code) == ("unknown", "99")
    assert classify(CATALOGS["bizwebs"], ans(418), NOW).cls == "unknown"
    weird = classify(CATALOGS["rubiq"], ans(401, **{"ApiStatusSubCode": "<script>" * 10}), NOW)
    assert weird.code == "401" and weird.cls == "auth"  # a garbage sub-code falls back to the status


def test_unlisted_rubiq_subcode_uses_its_main_code() -> None:
    out = classify(CATALOGS["rubiq"], ans(403, ApiStatusSubCode="403.99"), NOW)
    assert (out.cls, out.code) == ("auth", "403")
    assert "403.99" in out.message


def test_bizwebs_graphql_errors_in_a_200_are_client_error() -> None:
    out = classify(CATALOGS["bizwebs"], ans(200, b'{"errors": [{"message": "bad"}]}'), NOW)
    assert (out.cls, out.code) == ("client_error", "graphql_errors")
    assert classify(CATALOGS["bizwebs"], ans(200, b'{"errors": [], "data": {}}'), NOW).cls == "ok"


def test_movingimage_body_code_takes_precedence_on_4xx_only() -> None:
    assert classify(CATALOGS["movingimage"], ans(400, b'{"code": 1101}'), NOW).cls == "quota_exceeded"
    assert classify(CATALOGS["movingimage"], ans(200, b'{"code": 1101}'), NOW).cls == "ok"


@pytest.mark.parametrize(("header", "expected"), [
    ("120", 120.0),
    (formatdate(NOW + 90, usegmt=True), 90.0),
    (formatdate(NOW - 90, usegmt=True), 0.0),
    ("soon", None),
    ("", None),
])
def test_retry_after_seconds_or_http_date(header: str, expected: float | None) -> None:
    out = classify(CATALOGS["bizwebs"], ans(501, **{"Retry-After": header}), NOW)
    assert out.retry_after == expected


def test_quota_from_the_body_and_from_ratelimit_headers() -> None:
    out = classify(CATALOGS["flipsnack"], ans(200, b'{"code": 20, "data": {"api_uploads_left": 12}}'), NOW)
    assert [(q.name, q.remaining, q.limit) for q in out.quotas] == [("uploads", 12.0, 1000.0)]
    # Flipsnack's upload quota is monthly: it resets at the start of the next month, UTC
    from datetime import UTC, datetime
    assert out.quotas[0].reset_at == datetime(2027, 2, 1, tzinfo=UTC).timestamp()  # NOW is 2027-01-15
    hdr = classify(CATALOGS["bizwebs"], ans(200, b"{}", **{"RateLimit-Limit": "100", "RateLimit-Remaining": "7",
                                                          "RateLimit-Reset": "30"}), NOW)
    assert [(q.name, q.remaining, q.limit, q.reset_at) for q in hdr.quotas] == [("ratelimit", 7.0, 100.0, NOW + 30)]
    xhdr = classify(CATALOGS["bizwebs"], ans(200, b"{}", **{"X-RateLimit-Remaining": "3",
                                                           "X-RateLimit-Reset": str(int(NOW + 60))}), NOW)
    assert [(q.remaining, q.reset_at) for q in xhdr.quotas] == [(3.0, NOW + 60)]


def test_clock_skew_from_the_date_header() -> None:
    out = classify(CATALOGS["rubiq"], ans(401, ApiStatusSubCode="401.6", Date=formatdate(NOW + 3700, usegmt=True)),
                   NOW)
    assert out.cls == "clock_skew" and out.clock_skew == pytest.approx(3700, abs=1)


def test_failures_keep_their_class_and_code() -> None:
    out = classify(CATALOGS["flipsnack"], Failure("timeout", "timeout", "slow"), NOW)
    assert (out.cls, out.code, out.http_status) == ("timeout", "timeout", 0)


def test_a_user_override_corrects_a_code_in_yaml_alone() -> None:
    from exporter.catalog import merge_raw

    raw = builtin_raw()["flipsnack"]
    fixed = parse_catalog("flipsnack", merge_raw(raw, Node({"codes": {"50": {"class": "maintenance"}}}, "c.yml", "")))
    assert classify(fixed, ans(200, b'{"code": 50}'), NOW).cls == "maintenance"
    assert classify(fixed, ans(200, b'{"code": 22}'), NOW).cls == "maintenance"  # others untouched
    assert fixed.codes["50"].message == "operation failed (retry)"  # per field: the message is kept


@pytest.mark.parametrize(("period", "now", "expected"), [
    ("hourly", "2026-11-22T03:49:14", "2026-11-22T04:00:00"),
    ("daily", "2026-11-22T03:49:14", "2026-11-23T00:00:00"),
    ("monthly", "2026-11-22T03:49:14", "2026-12-01T00:00:00"),
    ("monthly", "2026-12-31T23:59:59", "2027-01-01T00:00:00"),
])
def test_periodic_quota_reset_is_the_next_calendar_boundary(period: str, now: str, expected: str) -> None:
    from datetime import UTC, datetime

    from exporter.classify import next_reset

    def ts(s: str) -> float:
        return datetime.fromisoformat(s).replace(tzinfo=UTC).timestamp()

    assert next_reset(period, ts(now)) == ts(expected)


def test_a_remembered_quota_reset_moves_on_at_the_boundary_and_when_the_clock_steps_back() -> None:
    from datetime import UTC, datetime

    from exporter.classify import next_reset

    def ts(s: str) -> float:
        return datetime.fromisoformat(s).replace(tzinfo=UTC).timestamp()

    steps = [("2026-11-30T23:00:00", "2026-12-01T00:00:00"), ("2026-11-30T23:59:59", "2026-12-01T00:00:00"),
             ("2026-12-01T00:00:00", "2027-01-01T00:00:00"),  # on the boundary: the next one
             ("2026-12-15T10:00:00", "2027-01-01T00:00:00"),
             ("2026-11-30T22:00:00", "2026-12-01T00:00:00")]  # the wall clock stepped back
    for now, expected in steps:
        assert next_reset("monthly", ts(now)) == ts(expected), now
    assert next_reset("hourly", ts("2026-12-15T10:00:00")) == ts("2026-12-15T11:00:00")  # per period


def test_every_class_a_catalog_names_is_in_the_vocabulary_and_the_sets_partition_it() -> None:
    named = {info.cls for cat in CATALOGS.values() for info in cat.codes.values()}
    named |= {cls for cat in CATALOGS.values() for cls in cat.http_fallback.values()}
    assert named <= set(OutcomeClass)
    assert set(CLASSES) == UP | FAILURE and not UP & FAILURE
    assert BACKOFF <= FAILURE and "auth" not in BACKOFF
    # a StrEnum: an outcome's class compares equal to the text in catalogs, labels and JSON
    assert OutcomeClass.RATE_LIMITED == "rate_limited" and f"{OutcomeClass.OK}" == "ok"

