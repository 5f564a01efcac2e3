"""The DER walker (still used by webconfig) on truncated and hostile input: a clear ValueError, never
an IndexError, and the certificate reader built on it (SANs) stays well behaved."""

from __future__ import annotations

import ssl

import pytest
import trustme

from exporter._der import children, tlv
from exporter.webconfig import cert_sans


def _cert_der() -> bytes:
    pem = trustme.CA().issue_cert("probe.example", "127.0.0.1").cert_chain_pems[0].bytes().decode()
    return ssl.PEM_cert_to_DER_cert(pem)


@pytest.mark.parametrize("der", [
    b"",  # nothing at all
    b"\x30",  # a tag without a length
    b"\x30\x05abc",  # content shorter than its length
    b"\x30\x82\x01",  # a two-byte length cut after one byte
    b"\x30\x80",  # indefinite length: not DER
    b"\x30\x85\x01\x00\x00\x00\x00",  # five length bytes: more than any certificate needs
    b"\x30\xff" + b"\xff" * 127,  # 127 length bytes: a length far beyond memory
])
def test_truncated_or_hostile_element_is_a_value_error(der: bytes) -> None:
    with pytest.raises(ValueError):
        tlv(der, 0)


def test_an_element_past_the_end_is_a_value_error() -> None:
    assert tlv(b"\x04\x02hi", 0) == (4, 2, 4)
    with pytest.raises(ValueError):
        tlv(b"\x04\x02hi", 3)


def test_children_of_a_cut_sequence_stop_with_a_value_error() -> None:
    assert list(children(b"\x02\x01\x05\x02\x01\x06", 0, 6)) == [(2, 2, 3), (2, 5, 6)]
    with pytest.raises(ValueError):
        list(children(b"\x02\x01\x05\x02\x05\x06", 0, 6))


def test_every_prefix_of_a_certificate_fails_cleanly() -> None:
    der = _cert_der()
    assert sorted(cert_sans(der)) == ["127.0.0.1", "probe.example"]
    for cut in range(len(der)):
        prefix = der[:cut]
        assert isinstance(cert_sans(prefix), list)  # whatever was read before the cut, no exception
