"""A certificate or CA file of the web config that is not what it should be, read in time linear in its
size. The PEM scan used to retry from every BEGIN line that no END line follows, so a file of such lines
(within the 4 MiB cap) took hours, holding the interpreter: the exporter would not start, and a re-read
of a changed file would freeze /-/healthy and every probe."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
import trustme

ROOT = Path(__file__).resolve().parents[2]
BEGINS = b"-----BEGIN CERTIFICATE-----\n" * 100_000  # 2.8 MB, under the 4 MiB cap


def check(tmp_path: Path, web: str) -> subprocess.CompletedProcess[str]:
    config = tmp_path / "config.yml"
    config.write_text("targets: []\n")
    (tmp_path / "web.yml").write_text(web)
    try:
        # a watchdog, not a measurement: the old scan needs hours for this file, the new one milliseconds
        return subprocess.run([sys.executable, "-m", "exporter", "--config.file", str(config), "--config.check",
                               "--web.config.file", str(tmp_path / "web.yml")],
                              capture_output=True, text=True, timeout=60, cwd=ROOT)
    except subprocess.TimeoutExpired:
        pytest.fail("the web config's PEM file was not read in time: the scan is not linear")


def test_a_cert_file_of_begin_lines_only_is_refused_at_once(tmp_path: Path) -> None:
    ca = trustme.CA()
    cert = ca.issue_cert("localhost")
    (tmp_path / "bad.pem").write_bytes(BEGINS)
    cert.private_key_pem.write_to_path(str(tmp_path / "key.pem"))
    done = check(tmp_path, "tls_server_config: {cert_file: bad.pem, key_file: key.pem}\n")
    assert done.returncode == 1
    assert "tls_server_config.cert_file: holds no PEM certificate" in done.stderr


def test_a_client_ca_file_of_begin_lines_then_one_ca_is_read_at_once(tmp_path: Path) -> None:
    ca = trustme.CA()
    cert = ca.issue_cert("localhost")
    cert.cert_chain_pems[0].write_to_path(str(tmp_path / "cert.pem"))
    cert.private_key_pem.write_to_path(str(tmp_path / "key.pem"))
    # the CA comes first: one END early, then the BEGIN lines no END follows
    (tmp_path / "ca.pem").write_bytes(ca.cert_pem.bytes() + BEGINS)
    done = check(tmp_path, "tls_server_config: {cert_file: cert.pem, key_file: key.pem, client_ca_file: ca.pem,\n"
                           "  client_auth_type: RequireAndVerifyClientCert}\n")
    assert done.returncode == 0, done.stderr
