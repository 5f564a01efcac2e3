"""The engine (libcurl) against the field's own servers and proxies, started by the tests on loopback:
Debian's nginx, squid and dante (SOCKS5), Node.js' ``http`` and ``http2`` servers. What a new user
meets in the field, with no false failure: the keep-alive race (a server closing idle connections
just as the next probe goes out, over a path with latency), Node's trailers, 103 Early Hints and
brotli, ALPN, nginx over TLS (gzip, SNI vhosts, TLS 1.2-only and 1.3-only, an intermediate chain),
a squid in front with CONNECT, proxy auth, a denied port and an upstream that is down, a SOCKS5 proxy.

The races run for a bounded time (a fixed list of idle times around the server's keep-alive timeout)."""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import shutil
import subprocess
import tempfile
import time
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest
import trustme

from exporter.clock import FakeClock
from exporter.engine import Session, new_session
from exporter.httpconfig import HttpClient, Proxy, TLSConfig
from exporter.model import Answer
from exporter.probe import Prober

from ..conftest import free_port
from ..egress_support import TLSVendor, running, server_ctx
from ..integration.test_engine import send
from ..relay import Relay
from .test_route_prefix_nginx import nginx, nginx_servers

#: one-way latency of the path in the race tests: the server's close reaches the client this much later
LATENCY = 0.04


async def race(url: str, method: str, idles: list[float]) -> list[str]:
    """A request, then each idle time and the next request on the same session: what each got."""
    got: list[str] = []
    async with new_session() as session:
        prober = Prober(session, FakeClock())
        for idle in [0.0, *idles]:
            await asyncio.sleep(idle)
            answer = await send(prober, url, method)
            got.append(str(answer.status) if isinstance(answer, Answer) else answer)
    return got


async def closes_idle_after(port: int) -> float:
    """How long the server keeps an idle keep-alive connection, measured: a request, its answer (any
    framing), then the time from the answer's last byte until the server closes (bounded)."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    try:
        writer.write(b"GET / HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n")
        last = time.monotonic()
        while data := await asyncio.wait_for(reader.read(65536), 20):
            assert data
            last = time.monotonic()
        return time.monotonic() - last
    finally:
        writer.close()


def around(timeout: float, spread: float, steps: int) -> list[float]:
    """Idle times from ``timeout - spread`` to ``timeout + spread``: the requests land on both sides of
    the server's close, and some in the window where it is on its way (the race)."""
    return [round(timeout - spread + 2 * spread * i / (steps - 1), 4) for i in range(steps)]


async def race_over_latency(port: int, get_path: str, post_path: str,
                            idles: list[float]) -> tuple[list[str], list[str], int]:
    """A GET race and a POST race at once against ``port``, through a relay that adds LATENCY each way:
    what each got, and how many requests the relay saw go out on a connection the server had closed.
    The server's idle clock starts when it sends the answer, the client's when the answer arrives:
    LATENCY later, so the close is on its way when the client's idle time is keep - 2 * LATENCY .. keep."""
    relay = await Relay("127.0.0.1", port, delay=LATENCY).start()
    try:
        gets, posts = await asyncio.gather(race(relay.url + get_path, "GET", idles),
                                           race(relay.url + post_path, "POST", idles))
    finally:
        await relay.close()
    return gets, posts, relay.raced


async def test_nginx_keepalive_timeout_race_gives_no_false_failure(tmp_path: Path) -> None:
    locations = """
    keepalive_timeout 2s;
    location / { default_type application/json; return 200 '{"code":20}'; }
    """
    async with nginx(tmp_path, locations) as url:
        port = int(url.rsplit(":", 1)[1])
        keep = await closes_idle_after(port)
        assert 1.5 < keep < 3  # keepalive_timeout 2s
        idles = around(keep - LATENCY, 0.08, 9)
        gets, posts, raced = await race_over_latency(port, "/health", "/login", idles)
    assert gets == posts == ["200"] * (len(idles) + 1), (gets, posts)
    assert raced > 0  # requests did go out on connections nginx had closed: the race happened


NODE_SERVER = r"""
const http = require('http');
const zlib = require('zlib');
const body = JSON.stringify({code: 20});
const server = http.createServer((req, res) => {
  let n = 0;
  req.on('data', (c) => { n += c.length; });
  req.on('end', () => {
    if (req.url === '/br') {
      const packed = zlib.brotliCompressSync(Buffer.from(body));
      res.writeHead(200, {'Content-Type': 'application/json', 'Content-Encoding': 'br',
                          'Content-Length': packed.length});
      return res.end(packed);
    }
    if (req.url === '/trailers') {
      res.writeHead(200, {'Content-Type': 'application/json', 'Trailer': 'X-Checksum'});
      res.write(body.slice(0, 5));
      res.write(body.slice(5));
      res.addTrailers({'X-Checksum': 'abc'});
      return res.end();
    }
    if (req.url === '/early') {
      res.writeEarlyHints({link: '</style.css>; rel=preload; as=style'});
    }
    res.writeHead(200, {'Content-Type': 'application/json'});
    res.end(body);
  });
});
server.listen(0, '127.0.0.1', () => { console.log(server.address().port); });
"""


NODE_HTTP2 = r"""
const http2 = require('http2');
const fs = require('fs');
const options = {key: fs.readFileSync(process.argv[2]), cert: fs.readFileSync(process.argv[3]), allowHTTP1: true};
const server = http2.createSecureServer(options, (req, res) => {
  res.writeHead(200, {'content-type': 'application/json'});
  res.end(JSON.stringify({code: 20, version: req.httpVersion}));
});
server.listen(0, '127.0.0.1', () => { console.log(server.address().port); });
"""


@contextlib.asynccontextmanager
async def node_server(tmp_path: Path, source: str = NODE_SERVER, *args: str) -> AsyncIterator[str]:
    binary = shutil.which("node") or shutil.which("nodejs")
    assert binary, "Node.js is required (Debian package nodejs; make deps)"
    script = tmp_path / "server.js"
    script.write_text(source)
    proc = await asyncio.create_subprocess_exec(binary, str(script), *args, stdout=asyncio.subprocess.PIPE)
    try:
        assert proc.stdout is not None
        line = await asyncio.wait_for(proc.stdout.readline(), 20)
        yield f"http://127.0.0.1:{int(line)}"
    finally:
        proc.terminate()
        await asyncio.wait_for(proc.wait(), 10)


async def test_node_default_keepalive_trailers_early_hints_and_brotli(tmp_path: Path) -> None:
    async with node_server(tmp_path) as url:
        async with new_session() as session:
            prober = Prober(session, FakeClock())
            for path in ("/br", "/trailers", "/early"):
                got = await send(prober, url + path)
                assert isinstance(got, Answer) and (got.status, json.loads(got.body)) == (200, {"code": 20}), path
                if path == "/early":
                    assert "link" not in got.headers  # the 103's header is not the answer's
        port = int(url.rsplit(":", 1)[1])
        keep = await closes_idle_after(port)  # Node's default keepAliveTimeout (5 s, and its own slack)
        assert 4 < keep < 8
        idles = around(keep - LATENCY, 0.08, 5)
        gets, posts, raced = await race_over_latency(port, "/", "/", idles)
    assert gets == posts == ["200"] * (len(idles) + 1), (gets, posts)
    assert raced > 0  # requests did go out on connections Node had closed: the race happened


async def test_enable_http2_lets_alpn_choose_and_false_keeps_http11(tmp_path: Path) -> None:
    ca = trustme.CA()
    leaf = ca.issue_cert("127.0.0.1")
    leaf.private_key_pem.write_to_path(str(tmp_path / "key.pem"))
    leaf.cert_chain_pems[0].write_to_path(str(tmp_path / "cert.pem"))
    tls = TLSConfig(ca_file="ca.pem", pems=(ca.cert_pem.bytes(), None, None))
    async with node_server(tmp_path, NODE_HTTP2, str(tmp_path / "key.pem"), str(tmp_path / "cert.pem")) as url:
        url = url.replace("http:", "https:") + "/"
        versions = []
        for http2 in (True, False):
            async with new_session(HttpClient(tls=tls, enable_http2=http2)) as session:
                got = await send(Prober(session, FakeClock()), url)
            assert isinstance(got, Answer) and got.status == 200, got
            versions.append(json.loads(got.body)["version"])
    assert versions == ["2.0", "1.1"]


# --- nginx over TLS: gzip, SNI vhosts, TLS 1.2-only and 1.3-only, an intermediate chain -----------


class Names:
    """The test's names, all on 127.0.0.1 (given to curl as its RESOLVE entries)."""

    async def resolve(self, host: str, port: int = 0, family: object = None) -> list[dict[str, object]]:
        if not host.endswith(".test"):
            raise OSError(f"{host}: not a test name")
        return [{"host": "127.0.0.1", "port": port}]

    async def close(self) -> None:
        return None


async def test_nginx_tls_gzip_sni_vhosts_versions_and_the_chain_expiry(tmp_path: Path) -> None:
    from ..integration.test_engine import _chain  # the root, an intermediate that expires first, a leaf

    (tmp_path / "a").mkdir()
    _, root_pem, intermediate_expiry = _chain(tmp_path / "a", "a.test")
    ca = trustme.CA()
    other = ca.issue_cert("b.test")
    other.private_key_pem.write_to_path(str(tmp_path / "b-key.pem"))
    other.cert_chain_pems[0].write_to_path(str(tmp_path / "b-cert.pem"))
    body = '{"code":20,"pad":"' + "x" * 2000 + '"}'
    sni, tls12, tls13 = free_port(), free_port(), free_port()
    a = f"ssl_certificate {tmp_path}/a/chain.pem; ssl_certificate_key {tmp_path}/a/key.pem;"
    b = f"ssl_certificate {tmp_path}/b-cert.pem; ssl_certificate_key {tmp_path}/b-key.pem;"
    answer = f"location / {{ default_type application/json; return 200 '{body}'; }}"
    servers = f"""
  gzip on; gzip_types application/json; gzip_min_length 0;
  server {{ listen 127.0.0.1:{sni} ssl; server_name a.test; {a} {answer} }}
  server {{ listen 127.0.0.1:{sni} ssl; server_name b.test; {b} {answer} }}
  server {{ listen 127.0.0.1:{tls12} ssl; server_name a.test; {a} ssl_protocols TLSv1.2; {answer} }}
  server {{ listen 127.0.0.1:{tls13} ssl; server_name a.test; {a} ssl_protocols TLSv1.3; {answer} }}
"""
    trust = root_pem + ca.cert_pem.bytes()

    async def get(url: str, **tls: str) -> Answer | str:
        config = TLSConfig(ca_file="roots.pem", pems=(trust, None, None), **tls)  # type: ignore[arg-type]
        async with new_session(config, resolver=Names()) as session:  # type: ignore[arg-type]
            return await send(Prober(session, FakeClock()), url)

    async def version(url: str) -> tuple[str, str]:
        """A debug trace's request: the TLS version curl told, that of a plain request (none read)."""
        config = TLSConfig(ca_file="roots.pem", pems=(trust, None, None))
        async with new_session(config, resolver=Names()) as session:  # type: ignore[arg-type]
            told = [(await session.request("GET", url, {}, None, time.monotonic() + 5, 1 << 16, detail=detail)).tls
                    for detail in (True, False)]
        return told[0], told[1]

    async with nginx_servers(tmp_path, servers, [sni, tls12, tls13]):
        for name in ("a.test", "b.test"):  # one address and port, the certificate chosen by SNI
            got = await get(f"https://{name}:{sni}/")
            assert isinstance(got, Answer) and got.body == body.encode(), (name, got)
            assert got.headers.get("content-encoding") == "gzip"  # inflated by curl, as it came
        got = await get(f"https://a.test:{sni}/")
        assert isinstance(got, Answer) and got.tls_cert_expiry == intermediate_expiry  # the chain's earliest
        assert isinstance(await get(f"https://a.test:{tls12}/"), Answer)
        assert await get(f"https://a.test:{tls12}/", min_version="TLS13") == "tls"
        assert isinstance(await get(f"https://a.test:{tls13}/"), Answer)
        assert await get(f"https://a.test:{tls13}/", max_version="TLS12") == "tls"
        # what `probe --debug` tells of each: read from curl's verbose text, for a detail request only
        assert (await version(f"https://a.test:{tls12}/"))[0].startswith("1.2 ")
        detailed, plain = await version(f"https://a.test:{tls13}/")
        assert detailed.startswith("1.3 TLS_") and plain == ""


# --- squid ---------------------------------------------------------------------------------------

USER, PASSWORD = "prober", "pr0xy-pass.word"


@contextlib.contextmanager
def squid(allowed_port: int) -> Iterator[str]:
    """squid on loopback with basic auth; CONNECT only to ``allowed_port``."""
    binary = shutil.which("squid") or next((p for p in ("/usr/sbin/squid",) if Path(p).exists()), None)
    helper = Path("/usr/lib/squid/basic_ncsa_auth")
    assert binary and helper.exists(), "squid is required (Debian package squid; make deps)"
    openssl = shutil.which("openssl")
    assert openssl, "openssl is required to write squid's password file"
    # squid and its auth helper run as the proxy user: pytest's own folders (0700) are closed to it
    holder = tempfile.TemporaryDirectory(prefix="apistatus-squid-")
    home = Path(holder.name)
    hashed = subprocess.run([openssl, "passwd", "-apr1", PASSWORD], capture_output=True, text=True,
                            check=True, timeout=30).stdout.strip()
    (home / "passwd").write_text(f"{USER}:{hashed}\n")
    port = free_port()
    conf = home / "squid.conf"
    conf.write_text(f"""
http_port 127.0.0.1:{port}
pid_filename {home}/squid.pid
cache_log {home}/cache.log
access_log none
cache deny all
cache_mem 8 MB
coredump_dir {home}
shutdown_lifetime 0 seconds
dns_nameservers 127.0.0.1
hosts_file /etc/hosts
auth_param basic program {helper} {home}/passwd
auth_param basic children 1
acl authenticated proxy_auth REQUIRED
acl allowed_port port {allowed_port}
acl CONNECT method CONNECT
http_access deny !authenticated
http_access deny CONNECT !allowed_port
http_access allow authenticated
http_access deny all
""")
    for path in (home, home / "passwd", conf):
        os.chmod(path, 0o777 if path.is_dir() else 0o644)
    def why(_: subprocess.Popen[bytes]) -> str:
        log = (home / "cache.log").read_text() if (home / "cache.log").exists() else ""
        return f"squid did not start: {log[-2000:]}"

    try:
        with running([binary, "-N", "-f", str(conf)], port, 30, why):  # squid starts in about a second
            yield f"http://127.0.0.1:{port}"
    finally:
        holder.cleanup()


def through(proxy: str, ca: trustme.CA, user: str = USER, password: str = PASSWORD) -> Session:
    p = Proxy(proxy, user, password)
    return new_session(HttpClient(http_proxy=p, https_proxy=p,
                                  tls=TLSConfig(ca_file="ca.pem", pems=(ca.cert_pem.bytes(), None, None))))


async def code_of(session: Session, url: str) -> str:
    prober = Prober(session, FakeClock())
    try:
        got = await send(prober, url, timeout=10)
    finally:
        await session.close()
    return str(got.status) if isinstance(got, Answer) else got


async def test_squid_connect_proxy_auth_denied_port_and_upstream_down() -> None:
    ca = trustme.CA()
    vendor = TLSVendor(server_ctx(ca.issue_cert("localhost")))
    try:
        with squid(vendor.port) as proxy:
            url = vendor.url()
            assert await code_of(through(proxy, ca), url) == "200"
            assert await code_of(through(proxy, ca, password="wrong"), url) == "proxy_auth"
            assert await code_of(through(proxy, ca, user="", password=""), url) == "proxy_auth"
            # a port squid does not tunnel to
            other = url.replace(f":{vendor.port}", f":{free_port()}")
            assert await code_of(through(proxy, ca), other) == "proxy_error"
            vendor.close()  # the allowed port with the vendor gone: squid cannot connect and says so
            assert await code_of(through(proxy, ca), url) == "proxy_error"
    finally:
        vendor.close()


# --- a SOCKS5 proxy (Debian's dante) -------------------------------------------------------------


@contextlib.contextmanager
def danted() -> Iterator[str]:
    """dante's SOCKS server on loopback, no authentication, CONNECT to loopback (both families: it
    resolves ``localhost`` itself)."""
    binary = shutil.which("danted") or next((p for p in ("/usr/sbin/danted",) if Path(p).exists()), None)
    assert binary, "dante is required (Debian package dante-server; make deps)"
    holder = tempfile.TemporaryDirectory(prefix="apistatus-danted-")  # read by its unprivileged user
    home = Path(holder.name)
    os.chmod(home, 0o755)
    port = free_port()
    conf = home / "danted.conf"
    conf.write_text(f"""
logoutput: {home}/danted.log
internal: 127.0.0.1 port = {port}
external: 127.0.0.1
external: ::1
clientmethod: none
socksmethod: none
user.privileged: root
user.unprivileged: nobody
client pass {{ from: 127.0.0.0/8 to: 0.0.0.0/0 }}
socks pass {{ from: 127.0.0.0/8 to: 0/0 command: connect }}
""")
    try:
        with running([binary, "-f", str(conf), "-p", str(home / "danted.pid"), "-N", "1"], port, 30,
                     lambda proc: f"danted did not start: {proc.stderr.read().decode() if proc.stderr else ''}"):
            yield f"socks5://127.0.0.1:{port}"
    finally:
        holder.cleanup()


class NoNames:
    """Resolves nothing: a vendor reached by name went through the proxy, which resolved it."""

    async def resolve(self, host: str, port: int = 0, family: object = None) -> list[dict[str, object]]:
        raise OSError(f"{host}: no DNS in this test")

    async def close(self) -> None:
        return None


async def _dual_stack_vendor() -> tuple[list[asyncio.Server], int]:
    """A plain-HTTP vendor answering on ``localhost`` in both families (127.0.0.1 and ::1, one port):
    whichever address the proxy picks for the name reaches it."""
    async def answer(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        with contextlib.suppress(OSError, asyncio.IncompleteReadError):
            await reader.readuntil(b"\r\n\r\n")
            writer.write(b'HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: 11\r\n\r\n{"code":20}')
            await writer.drain()
        writer.close()

    for _ in range(20):  # a port free in both families
        six = await asyncio.start_server(answer, "::1", 0)
        port = six.sockets[0].getsockname()[1]
        try:
            four = await asyncio.start_server(answer, "127.0.0.1", port)
        except OSError:
            six.close()
            continue
        return [six, four], port
    pytest.fail("no port free on both 127.0.0.1 and ::1")


async def test_a_socks5_proxy_is_handed_the_vendors_name() -> None:
    servers, port = await _dual_stack_vendor()
    try:
        with danted() as proxy:
            p = Proxy(proxy)
            client = HttpClient(http_proxy=p, https_proxy=p)
            async with new_session(client, resolver=NoNames()) as session:  # type: ignore[arg-type]
                prober = Prober(session, FakeClock())
                got = await send(prober, f"http://localhost:{port}/ok")
                assert isinstance(got, Answer) and got.status == 200, got
                # a port nobody listens on: the proxy reports it could not connect
                assert await send(prober, f"http://localhost:{free_port()}/ok") == "proxy_error"
            async with new_session(resolver=NoNames()) as direct:  # type: ignore[arg-type]
                # without the proxy the name goes nowhere: the proxy did resolve it above
                assert await send(Prober(direct, FakeClock()), f"http://localhost:{port}/ok") == "dns"
    finally:
        for srv in servers:
            srv.close()
