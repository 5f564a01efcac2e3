"""One vendor simulator served over HTTPS on 127.0.0.1 with a certificate from a trustme CA, in a
thread of its own (an event loop of its own), for the system tests whose other simulators run as
``apistatus-exporter simulate`` subprocesses. The exporter trusts the CA through the target's
``http_client.tls_config.ca_file``, as a user with a private CA or a TLS-inspecting proxy does."""

from __future__ import annotations

import asyncio
import datetime as dt
import ssl
import threading
from pathlib import Path
from typing import Any

import trustme

from exporter.simulators import SIMULATORS, Simulator


class TLSSimulator:
    def __init__(self, vendor: str, directory: Path, valid_for: dt.timedelta = dt.timedelta(days=365)) -> None:
        now = dt.datetime.now(dt.UTC)
        self.ca = trustme.CA()
        self.leaf = self.ca.issue_cert("127.0.0.1", not_before=now - dt.timedelta(days=1), not_after=now + valid_for)
        self.ca_file = directory / f"{vendor}-ca.pem"
        self.ca.cert_pem.write_to_path(str(self.ca_file))
        ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        self.leaf.configure_cert(ctx)
        cls = {c.vendor: c for c in SIMULATORS}[vendor]
        self.sim: Simulator = cls()
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, name=f"tls-{vendor}", daemon=True)
        self.thread.start()
        self._call(self.sim.start("127.0.0.1", ssl_context=ctx))

    def _call(self, coro: Any) -> Any:
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result(10)

    def control(self, **settings: Any) -> dict[str, Any]:
        """Switch a condition, in the simulator's own thread."""
        async def switch() -> dict[str, Any]:
            return self.sim.control(**settings)

        result: dict[str, Any] = self._call(switch())
        return result

    def target(self, name: str, **extra: Any) -> dict[str, Any]:
        """A config target probing this simulator, trusting its CA."""
        t: dict[str, Any] = {"name": name, "vendor": self.sim.vendor, "base_url": self.sim.base_url,
                             "credentials": self.sim.credentials(), "probe_share": 1,
                             "http_client": {"tls_config": {"ca_file": str(self.ca_file)}}, **extra}
        if check := self.sim.check():
            t["check"] = check
        return t

    def not_after(self) -> float:
        from cryptography import x509

        cert = x509.load_pem_x509_certificate(self.leaf.cert_chain_pems[0].bytes())
        return cert.not_valid_after_utc.timestamp()

    def close(self) -> None:
        try:
            self._call(self.sim.close())
        finally:
            self.loop.call_soon_threadsafe(self.loop.stop)
            self.thread.join(5)
            self.loop.close()
