"""Catalog ``examples:`` and the format features the SaaS catalogs need, through the real parser and
classifier (``--check-config`` running them as a subprocess: tests/integration/test_check_config_cli.py)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from exporter._yamlnode import ConfigError, Node
from exporter.catalog import builtin_catalogs, parse_catalog
from exporter.classify import Answer, classify, example_failures

ROOT = Path(__file__).resolve().parents[2]
BUILTIN = builtin_catalogs()


@pytest.mark.parametrize("vendor", sorted(BUILTIN))
def test_every_example_of_every_builtin_catalog_passes(vendor: str) -> None:
    assert example_failures(BUILTIN[vendor]) == []


@pytest.mark.parametrize("vendor", sorted(BUILTIN))
def test_every_documented_code_has_an_example(vendor: str) -> None:
    catalog = BUILTIN[vendor]
    shown = {ex.code for ex in catalog.examples}
    assert set(catalog.codes) - shown == set(), f"{vendor}: codes without an example"


def test_the_seventeen_builtin_vendors() -> None:
    assert set(BUILTIN) == {"bannersnack", "bizwebs", "rubiq", "flipsnack", "movingimage",
                            "slack", "github", "stripe", "openai", "twilio",
                            "aws-sts", "msgraph", "cloudflare", "datadog", "sendgrid", "pagerduty", "anthropic"}


def catalog(extra: dict[str, Any], file: str = "acme.yaml") -> Any:
    base: dict[str, Any] = {"credentials": ["token"], "check": {"path": "/ping"},
                            "signer": {"name": "header", "options": {"template": "Bearer {token}"}},
                            "codes": {"200": {"class": "ok"}}}
    return parse_catalog("acme", Node({**base, **extra}, file, ""))


def outcome(cat: Any, status: int, body: Any = None, headers: dict[str, str] | None = None) -> tuple[str, str]:
    raw = b"" if body is None else (body.encode() if isinstance(body, str) else json.dumps(body).encode())
    got = classify(cat, Answer(status, {k.lower(): v for k, v in (headers or {}).items()}, raw), 0.0)
    return got.cls, got.code


def test_a_failing_example_is_one_line_naming_the_file_and_index() -> None:
    cat = catalog({"examples": [{"status": 200, "class": "ok", "code": "200"},
                                {"status": 500, "class": "ok", "code": "200"}]}, file="/x/acme.yaml")
    lines = example_failures(cat)
    assert len(lines) == 1 and "\n" not in lines[0]
    assert lines[0] == ("/x/acme.yaml: examples[1]: expected class ok code 200, got class unknown code 500"
                        " (code 500 is not in the acme catalog)")


# --- the format: string codes, fixed codes from a value, fall-through --------------------------------

def test_string_body_codes_only_when_the_catalog_says_so() -> None:
    codes = {"200": {"class": "ok"}, "invalid_auth": {"class": "auth"}}
    strict = catalog({"code_from": [{"body": "error"}, {"status": True}], "codes": {"200": {"class": "ok"},
                                                                                  "7": {"class": "auth"}}})
    assert outcome(strict, 200, {"error": "invalid_auth"}) == ("ok", "200")  # integers only, as before
    assert outcome(strict, 200, {"error": 7}) == ("auth", "7")
    named = catalog({"code_from": [{"body": "error", "type": "string"}, {"status": True}], "codes": codes})
    assert outcome(named, 200, {"error": "invalid_auth"}) == ("auth", "invalid_auth")
    assert outcome(named, 200, {"error": 7}) == ("ok", "200")
    # a string that cannot be a bounded label is no code: the status decides
    assert outcome(named, 200, {"error": "x" * 40}) == ("ok", "200")
    assert outcome(named, 200, {"error": "a b"}) == ("ok", "200")
    either = catalog({"code_from": [{"body": "error", "type": "any"}], "codes": {**codes, "7": {"class": "auth"}}})
    assert outcome(either, 200, {"error": 7}) == ("auth", "7")


def test_equals_yields_a_fixed_code_and_true_is_not_one() -> None:
    cat = catalog({"code_from": [{"body": "ok", "equals": True, "code": "fine"}, {"status": True}],
                   "codes": {"fine": {"class": "ok"}, "200": {"class": "unknown"}}})
    assert outcome(cat, 200, {"ok": True}) == ("ok", "fine")
    assert outcome(cat, 200, {"ok": 1}) == ("unknown", "200")
    assert outcome(cat, 200, {"ok": "true"}) == ("unknown", "200")
    assert outcome(cat, 200, {"ok": False}) == ("unknown", "200")


def test_a_header_value_decides_the_class_under_one_status() -> None:
    cat = catalog({"code_from": [{"header": "X-RateLimit-Remaining", "when_status": [403], "equals": ["0"],
                                  "code": "spent"},
                                 {"header": "Retry-After", "when_status": ["4xx"], "nonempty": "slow"},
                                 {"status": True}],
                   "codes": {"403": {"class": "auth"}, "spent": {"class": "rate_limited"},
                             "slow": {"class": "rate_limited"}, "200": {"class": "ok"}}})
    assert outcome(cat, 403, headers={"x-ratelimit-remaining": "0"}) == ("rate_limited", "spent")
    assert outcome(cat, 403, headers={"x-ratelimit-remaining": " 0 "}) == ("rate_limited", "spent")
    assert outcome(cat, 403, headers={"x-ratelimit-remaining": "10"}) == ("auth", "403")
    assert outcome(cat, 403, headers={"retry-after": "60"}) == ("rate_limited", "slow")
    assert outcome(cat, 403, headers={"retry-after": ""}) == ("auth", "403")
    assert outcome(cat, 200, headers={"x-ratelimit-remaining": "0"}) == ("ok", "200")


def test_known_only_falls_through_to_the_next_source() -> None:
    cat = catalog({"code_from": [{"body": "error.code", "type": "string", "known_only": True},
                                 {"body": "error.type", "type": "string", "when_status": [429], "known_only": True},
                                 {"status": True}],
                   "codes": {"429": {"class": "rate_limited"}, "401": {"class": "auth"},
                             "insufficient_quota": {"class": "quota_exceeded"}}})
    assert outcome(cat, 429, {"error": {"code": "insufficient_quota"}}) == ("quota_exceeded", "insufficient_quota")
    assert outcome(cat, 429, {"error": {"code": None, "type": "insufficient_quota"}}) == \
        ("quota_exceeded", "insufficient_quota")
    assert outcome(cat, 429, {"error": {"code": "new", "type": "new"}}) == ("rate_limited", "429")
    assert outcome(cat, 401, {"error": {"code": "new", "type": "insufficient_quota"}}) == ("auth", "401")
    # without known_only an unlisted code is reported as unknown, as before
    plain = catalog({"code_from": [{"body": "error.code", "type": "string"}, {"status": True}],
                     "codes": {"401": {"class": "auth"}}})
    assert outcome(plain, 401, {"error": {"code": "new"}}) == ("unknown", "new")


BAD: list[tuple[dict[str, Any], str]] = [
    ({"code_from": [{"body": "e", "type": "text"}]},
     "acme.yaml: code_from[0].type: must be one of integer, string, any"),
    ({"code_from": [{"header": "h", "type": "string"}]}, "code_from[0].type: only applies to a body source"),
    ({"code_from": [{"status": True, "nonempty": "x"}]}, "code_from[0].nonempty: only applies to a body or header"),
    ({"code_from": [{"body": "ok", "equals": True}]}, "code_from[0]: equals and code go together"),
    ({"code_from": [{"body": "ok", "code": "200"}]}, "code_from[0]: equals and code go together"),
    ({"code_from": [{"body": "ok", "equals": True, "code": "nope"}]}, "code_from[0].code: is not listed in codes"),
    ({"code_from": [{"body": "ok", "equals": {"a": 1}, "code": "200"}]}, "code_from[0].equals: must be a string"),
    ({"code_from": [{"body": "ok", "equals": [], "code": "200"}]}, "code_from[0].equals: needs a value"),
    ({"code_from": [{"body": "ok", "known_only": "yes"}]}, "code_from[0].known_only: must be true or false"),
    ({"examples": [{"status": 999, "class": "ok", "code": "200"}]}, "examples[0].status: must be between 100 and 599"),
    ({"examples": [{"status": 200, "class": "fine", "code": "200"}]}, "examples[0].class: must be one of ok"),
    ({"examples": [{"status": 200, "class": "ok"}]}, "examples[0].code: is required"),
    ({"examples": [{"status": 200, "class": "ok", "code": "a b"}]}, "examples[0].code: must be a code label"),
    ({"examples": [{"status": 200, "class": "ok", "code": "200", "hdrs": {}}]}, "examples[0].hdrs: unknown key"),
    ({"examples": [{"status": 200, "headers": ["x"], "class": "ok", "code": "200"}]},
     "examples[0].headers: must be a mapping"),
    ({"examples": {"status": 200}}, "examples: must be a list"),
    ({"examples": [{"status": "200", "class": "ok", "code": "200"}]}, "examples[0].status: must be a whole number"),
    ({"examples": [{"status": True, "class": "ok", "code": "200"}]}, "examples[0].status: must be a whole number"),
    ({"examples": [{"status": 200, "headers": {"a": [1]}, "class": "ok", "code": "200"}]},
     "examples[0].headers.a: must be a string"),
]


@pytest.mark.parametrize(("extra", "message"), BAD, ids=[m.split(": ", 1)[-1][:40] for _, m in BAD])
def test_bad_format_is_one_line_with_file_and_key_path(extra: dict[str, Any], message: str) -> None:
    with pytest.raises(ConfigError) as err:
        catalog(extra)
    assert message in str(err.value) and "\n" not in str(err.value)


# --- the text-code trap: a text code no source can read is refused at load ---------------------------


def test_a_text_code_read_as_a_number_is_a_load_time_error_naming_the_key() -> None:
    with pytest.raises(ConfigError) as caught:
        catalog({"code_from": [{"body": "error_code"}, {"status": True}],
                 "codes": {"200": {"class": "ok"}, "E_QUOTA": {"class": "quota_exceeded"}}}, file="/x/acme.yaml")
    assert str(caught.value) == ("/x/acme.yaml: codes.E_QUOTA: is a text code, but code_from[0] reads body "
                                 "error_code as a number (the default type): add type: string (or any) there")
    # said how the error asks, the catalog loads and the text code is read
    cat = catalog({"code_from": [{"body": "error_code", "type": "string"}, {"status": True}],
                   "codes": {"200": {"class": "ok"}, "E_QUOTA": {"class": "quota_exceeded"}}})
    assert outcome(cat, 200, {"error_code": "E_QUOTA"}) == ("quota_exceeded", "E_QUOTA")


def test_text_codes_are_fine_where_a_source_yields_them() -> None:
    # a fixed code (equals, nonempty, matches) and a header source both yield text
    catalog({"code_from": [{"body": "ok", "equals": False, "code": "refused"}, {"status": True}],
             "codes": {"200": {"class": "ok"}, "refused": {"class": "auth"}}})
    catalog({"code_from": [{"header": "X-Error"}, {"body": "code"}],
             "codes": {"200": {"class": "ok"}, "E_AUTH": {"class": "auth"}}})
    # dotted numeric codes (Rubiq's 401.10) are numbers
    catalog({"code_from": [{"body": "code"}], "codes": {"401.10": {"class": "auth"}}})
    with pytest.raises(ConfigError, match="no code_from source reads text"):
        catalog({"code_from": [{"status": True}], "codes": {"E_AUTH": {"class": "auth"}}})


# --- message matching, unlisted codes by status, the JSON envelope -----------------------------------


def test_matches_yields_its_code_when_the_pattern_is_found() -> None:
    cat = catalog({"code_from": [{"body": "message", "when_status": [403], "matches": "secondary rate limit",
                                  "code": "slow"}, {"status": True}],
                   "codes": {"403": {"class": "auth"}, "slow": {"class": "rate_limited"}, "200": {"class": "ok"}}})
    assert outcome(cat, 403, {"message": "You have exceeded a SECONDARY rate limit."}) == ("rate_limited", "slow")
    assert outcome(cat, 403, {"message": "Resource protected by SAML"}) == ("auth", "403")
    assert outcome(cat, 403, {"message": 7}) == ("auth", "403")  # not text: no match
    with pytest.raises(ConfigError, match=r"code_from\[0\]\.matches: is not an RE2 regular expression"):
        catalog({"code_from": [{"body": "m", "matches": "(", "code": "200"}]})
    with pytest.raises(ConfigError, match="matches and code go together"):
        catalog({"code_from": [{"body": "m", "matches": "x"}]})


def test_an_unlisted_code_takes_the_class_of_its_http_status_and_keeps_its_label() -> None:
    cat = catalog({"code_from": [{"body": "code", "unlisted": "status"}, {"status": True}],
                   "codes": {"200": {"class": "ok"}, "401": {"class": "auth"}, "20003": {"class": "auth"}}})
    assert outcome(cat, 401, {"code": 20008}) == ("auth", "20008")
    assert outcome(cat, 403, {"code": 20008}) == ("auth", "20008")  # 403 is not listed: its family says auth
    assert outcome(cat, 503, {"code": 20599}) == ("server_error", "20599")
    # under a 2xx an unlisted code never counts as ok
    assert outcome(cat, 200, {"code": 20008}) == ("unknown", "20008")
    with pytest.raises(ConfigError, match="contradicts known_only"):
        catalog({"code_from": [{"body": "code", "unlisted": "status", "known_only": True}]})


@pytest.mark.parametrize("body", ["<html><body>Captive portal</body></html>", "", "null", "\"ok\"", "{not json"])
def test_a_2xx_without_the_json_envelope_is_never_ok_for_a_body_coded_vendor(body: str) -> None:
    cat = catalog({"code_from": [{"body": "code"}, {"status": True}]})
    assert cat.envelope == "json"  # the default where a body source exists
    assert outcome(cat, 200, body) == ("unknown", "http_200")
    assert outcome(cat, 200, {"data": 1}) == ("ok", "200")
    assert outcome(cat, 200, [1]) == ("ok", "200")
    assert outcome(cat, 204, "") == ("unknown", "204")  # no body by definition: the catalog decides (unlisted)


def test_a_status_coded_vendor_takes_any_body_unless_it_says_json() -> None:
    plain = catalog({"code_from": [{"status": True}]})
    assert plain.envelope == "none" and outcome(plain, 200, "<html></html>") == ("ok", "200")
    strict = catalog({"code_from": [{"status": True}], "envelope": "json"})
    assert outcome(strict, 200, "<html></html>") == ("unknown", "http_200")


def test_a_body_cut_at_the_cap_still_counts_when_it_starts_like_json() -> None:
    cat = catalog({"code_from": [{"status": True}], "envelope": "json"})
    cut = classify(cat, Answer(200, {}, b'{"data": [1, 2, 3', truncated=True), 0.0)
    assert (cut.cls, cut.code) == ("ok", "200")
    html = classify(cat, Answer(200, {}, b"<html>" + b"x" * 100, truncated=True), 0.0)
    assert (html.cls, html.code) == ("unknown", "http_200")


def test_a_code_may_name_the_wait_its_vendor_documents_when_the_answer_names_none() -> None:
    github = BUILTIN["github"]
    message = json.dumps({"message": "You have exceeded a secondary rate limit."}).encode()
    bare = classify(github, Answer(403, {"x-ratelimit-remaining": "4000"}, message), 0.0)
    assert (bare.cls, bare.code, bare.retry_after) == ("rate_limited", "secondary_rate_limit", 60.0)
    told = classify(github, Answer(403, {"retry-after": "30"}, message), 0.0)
    assert told.retry_after == 30.0  # the vendor's own figure wins
    with pytest.raises(ConfigError, match=r"codes\.slow\.retry_after: must be a duration"):
        catalog({"codes": {"200": {"class": "ok"}, "slow": {"class": "rate_limited", "retry_after": "soon"}}})


def test_a_head_check_of_a_json_vendor_is_ok_on_its_empty_200(tmp_path: Path) -> None:
    # a HEAD answer never has a body (RFC 9110): the envelope rule cannot apply to it; before the rule a
    # GitHub target checked with HEAD was ok, and it must stay so, while a GET target still needs JSON
    from exporter.config import parse_config

    tree = {"targets": [{"name": "head", "vendor": "github", "base_url": "https://api.github.com",
                         "credentials": {"token": "t"}, "check": {"method": "HEAD"}},
                        {"name": "get", "vendor": "github", "base_url": "https://api.github.com",
                         "credentials": {"token": "t"}}]}
    head, get = parse_config(Node(tree, "config.yml", ""), tmp_path, {}).targets
    assert classify(head.catalog, Answer(200, {}, b""), 0.0).cls == "ok"
    assert classify(get.catalog, Answer(200, {}, b""), 0.0).cls == "unknown"
    assert classify(head.catalog, Answer(401, {}, b""), 0.0).cls == "auth"
