"""The ``xml`` code source (AWS's query APIs answer XML): dotted element paths, namespaces ignored, and
hostile documents read as "no code here" without expanding anything."""

from __future__ import annotations

from exporter._xmlpath import parse_xml, xml_path
from exporter.catalog import builtin_catalogs
from exporter.classify import Answer, classify

STS = (b'<ErrorResponse xmlns="https://sts.amazonaws.com/doc/2011-06-15/">\n <Error>\n  <Type>Sender</Type>\n'
       b'  <Code> InvalidClientTokenId </Code>\n </Error>\n <RequestId>1</RequestId>\n</ErrorResponse>')


def test_a_dotted_path_from_the_root_with_namespaces_ignored() -> None:
    root = parse_xml(STS)
    assert xml_path(root, "ErrorResponse.Error.Code") == "InvalidClientTokenId"
    assert xml_path(root, "ErrorResponse.RequestId") == "1"
    assert xml_path(root, "ErrorResponse.Error.Nope") is None
    assert xml_path(root, "Other.Error.Code") is None  # the first step names the root
    assert xml_path(parse_xml(b"<a><b/></a>"), "a.b") == ""


def test_what_is_not_a_plain_xml_document_is_no_document() -> None:
    for body in (b"", b"{}", b"<a>", b"<a></b>", b"\xff\xfe<a/>", b"text <a/>"):
        assert parse_xml(body) is None, body
    bomb = (b'<?xml version="1.0"?><!DOCTYPE lolz [<!ENTITY lol "lol"><!ENTITY lol2 "&lol;&lol;&lol;&lol;">]>'
            b"<ErrorResponse><Error><Code>&lol2;</Code></Error></ErrorResponse>")
    assert parse_xml(bomb) is None
    external = b'<!DOCTYPE x [<!ENTITY e SYSTEM "file:///etc/passwd">]><x>&e;</x>'
    assert parse_xml(external) is None


def test_deep_nesting_within_the_body_cap_is_read_without_recursion() -> None:
    depth = 65536 // 7
    body = b"<a>" * depth + b"x" + b"</a>" * depth
    root = parse_xml(body)
    assert root is not None and xml_path(root, "a.a.a") is not None


def test_signature_does_not_match_is_clock_skew_only_with_a_clock_difference() -> None:
    sts = builtin_catalogs()["aws-sts"]
    body = b"<ErrorResponse><Error><Code>SignatureDoesNotMatch</Code></Error></ErrorResponse>"
    now = 1_750_000_000.0

    def at(date: str | None) -> tuple[str, str]:
        got = classify(sts, Answer(403, {"date": date} if date else {}, body), now)
        return got.cls, got.code

    assert at(None) == ("auth", "SignatureDoesNotMatch")  # no Date: nothing says the clocks differ
    assert at("Sun, 15 Jun 2025 15:10:00 GMT") == ("auth", "SignatureDoesNotMatch")  # 200 s: within 5 minutes
    assert at("Sun, 15 Jun 2025 15:12:00 GMT") == ("clock_skew", "SignatureDoesNotMatch")  # 320 s ahead
    assert at("Sun, 15 Jun 2025 15:01:00 GMT") == ("clock_skew", "SignatureDoesNotMatch")  # 340 s behind
    assert at("not a date") == ("auth", "SignatureDoesNotMatch")
    behind = classify(sts, Answer(403, {"date": "Sun, 15 Jun 2025 15:01:00 GMT"}, body), now)
    assert "-340 s" in behind.message and "clock" in behind.message
