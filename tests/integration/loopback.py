"""Run the real HAProxy binary on loopback with compiled route tables (tests and bench).

Backends are tiny in-process HTTP servers on 127.0.0.1 that answer every request with
their own name. HAProxy runs in the foreground (``-db``) from a temporary directory with
short health-check intervals; its stats socket tells when servers are UP or DOWN, so
tests poll state (bounded in time) instead of sleeping. Only loopback addresses are used.

With ``tls=True`` the frontend gets a second bind, over TLS, as the haproxy_l7 role writes it
(``ssl crt ... alpn h2,http/1.1`` in the same frontend, so the same compiled rules serve both;
``ssl_fc`` tells them apart), with a self-signed certificate for ``localhost`` generated into
the working directory; ``request(..., scheme="https")`` trusts exactly that certificate.

The backends echo what reached them (request target and headers, in response headers) and,
like the Gateway API conformance suite's echo server, add the response headers a request
names in ``X-Echo-Set-Header`` and wait as long as its ``delay`` query parameter says.
"""

from __future__ import annotations

import contextlib
import datetime
import http.client
import json
import os
import pathlib
import random
import re
import shutil
import socket
import ssl
import subprocess
import sys
import threading
import time
import urllib.parse
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from ansible_collections.lay7.ha.plugins.module_utils._haproxy_admin import exchange
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

HAPROXY = shutil.which("haproxy") or "/usr/sbin/haproxy"
LOOPBACK = "127.0.0.1"


def _port_block() -> range:
    """The listening ports this process may hand out.

    Asking the kernel for port 0 and closing the socket is racy: until HAProxy binds it, the
    same number can be given to another test process running in parallel (pytest-xdist) or
    taken as the local end of an outgoing connection (the kernel picks those from
    ip_local_port_range). So the ports come from below that range, in a block of its own per
    xdist worker, and are handed out in turn."""
    try:
        low = int(pathlib.Path("/proc/sys/net/ipv4/ip_local_port_range").read_text().split()[0])
    except (OSError, ValueError, IndexError):
        low = 32768
    worker = os.environ.get("PYTEST_XDIST_WORKER", "gw0").removeprefix("gw")
    index = int(worker) if worker.isdigit() else 0
    count = max(int(os.environ.get("PYTEST_XDIST_WORKER_COUNT", "1")), index + 1)
    # Up to 1000 ports each (a full integration run uses a few hundred per worker), all above
    # the privileged ports.
    size = min(1000, (low - 1024) // count)
    start = low - size * (index + 1)
    return range(start, start + size)


_PORTS = _port_block()
# Where in the block this process starts: two test sessions run at once (by two people on one
# host) have workers of the same numbers, hence the same blocks; starting both at the block's
# first port, they would hand out the same ports in the same order, and the one that checks a
# port free just before the other binds it gets "Address already in use".
_next_port = random.randrange(len(_PORTS))
_port_lock = threading.Lock()


def offline_role_paths(tmp) -> dict:
    """The haproxy_l7 variables that keep a render of the role inside the directory `tmp` and away
    from this machine's HAProxy service: every file it writes, and no reload."""
    return {
        "haproxy_l7_config_file": str(tmp / "haproxy.cfg"),
        "haproxy_l7_map_dir": str(tmp / "maps"),
        "haproxy_l7_errors_dir": str(tmp / "errors"),
        "haproxy_l7_tls_dir": str(tmp / "certs"),
        "haproxy_l7_path_parents": [str(tmp)],
        "haproxy_l7_service_managed": False,
    }


def free_port() -> int:
    """A loopback port nothing listens on, from this process's own block (see _port_block)."""
    global _next_port
    with _port_lock:
        for _ in range(len(_PORTS)):
            port = _PORTS[_next_port % len(_PORTS)]
            _next_port += 1
            # A port still held (a listener of this process, or a connection in TIME_WAIT) fails
            # this bind without SO_REUSEADDR; the next one is tried.
            with socket.socket() as s:
                try:
                    s.bind((LOOPBACK, port))
                except OSError:
                    continue
            return port
    raise RuntimeError(f"no free loopback port in {_PORTS.start}-{_PORTS.stop - 1}")


# The name the test certificate is issued for; clients send it as SNI and check it.
TLS_HOSTNAME = "localhost"


def write_self_signed(workdir: pathlib.Path) -> tuple:
    """A self-signed certificate for ``localhost`` (P-256: a cheap handshake) into ``workdir``.

    Returns (path of the PEM file HAProxy loads, certificate then key; the certificate alone
    in PEM, for the client's trust store)."""
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, TLS_HOSTNAME)])
    now = datetime.datetime.now(datetime.timezone.utc)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(x509.SubjectAlternativeName([x509.DNSName(TLS_HOSTNAME)]), critical=False)
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
        .sign(key, hashes.SHA256())
    )
    cert_pem = cert.public_bytes(serialization.Encoding.PEM)
    key_pem = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())
    path = pathlib.Path(workdir) / "localhost.pem"
    path.write_bytes(cert_pem + key_pem)
    path.chmod(0o600)
    return path, cert_pem.decode()


def client_context(cert_pem: str) -> ssl.SSLContext:
    """A client context that trusts only ``cert_pem`` and checks the host name, offering
    HTTP/1.1 by ALPN (the bind offers h2 too; http.client speaks HTTP/1.1 only)."""
    ctx = ssl.create_default_context(cadata=cert_pem)
    ctx.set_alpn_protocols(["http/1.1"])
    return ctx


class _LoopbackHTTPS(http.client.HTTPSConnection):
    """HTTPS to 127.0.0.1 with SNI and certificate check for ``localhost`` (resolving
    ``localhost`` may yield ::1 first, which HAProxy does not listen on).

    ``session``: a TLS session of an earlier connection to resume (HAProxy issues session
    tickets), which halves the cost of a request: the certificate was checked when that
    session was made. ``tls_session`` holds this connection's session once it is closed."""

    def __init__(self, port: int, context: ssl.SSLContext, timeout: float, session: ssl.SSLSession | None = None):
        super().__init__(LOOPBACK, port, timeout=timeout, context=context)
        self._tls_context = context
        self.tls_session = session

    def connect(self) -> None:
        http.client.HTTPConnection.connect(self)
        self.sock = self._tls_context.wrap_socket(self.sock, server_hostname=TLS_HOSTNAME, session=self.tls_session)

    def close(self) -> None:
        # getresponse() closes the connection once the headers are read (Connection: close);
        # by then the server's session ticket, sent right after the handshake, has arrived.
        if self.sock is not None:
            self.tls_session = self.sock.session
        super().close()


# Response headers of NamedBackend: the request target and the request headers it received.
SEEN_TARGET = "X-Lay7-Seen-Target"
SEEN_HEADERS = "X-Lay7-Seen-Headers"
# H2cBackend's: the HTTP version the request reached it with.
SEEN_VERSION = "X-Lay7-Seen-Version"
# A request header naming headers NamedBackend adds to its response ("Name:value,Name:value"),
# as the Gateway API conformance suite's echo server reads it: tests of response header edits
# need a backend that sends the headers being edited.
ECHO_SET_HEADER = "X-Echo-Set-Header"
_DURATION_PART = re.compile(r"([0-9]+(?:\.[0-9]+)?)(ms|s|m)")
_UNIT_SECONDS = {"ms": 0.001, "s": 1.0, "m": 60.0}


def _delay_seconds(target: str) -> float:
    """The ``delay`` query parameter of ``target`` (a duration: 1s, 500ms), in seconds; 0 without it.
    The conformance suite's echo server answers that much later, as .../slow/<seconds> does here."""
    values = urllib.parse.parse_qs(urllib.parse.urlsplit(target).query).get("delay") or [""]
    return sum(float(n) * _UNIT_SECONDS[unit] for n, unit in _DURATION_PART.findall(values[0]))


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    # The headers and the body go out in two writes: with Nagle's algorithm the body then
    # waits for the ACK of the headers, which the peer delays (40 ms on Linux), so every
    # request on a kept-alive connection, and a health check on a busy host, took that long.
    disable_nagle_algorithm = True

    def _answer(self) -> None:
        # .../slow/<seconds>: a request that keeps its server session open that long.
        if "/slow/" in self.path:
            time.sleep(float(self.path.rsplit("/slow/", 1)[1]))
        time.sleep(_delay_seconds(self.path))
        length = int(self.headers.get("Content-Length") or 0)
        if length:
            self.rfile.read(length)
        body = self.server.name.encode()  # type: ignore[attr-defined]
        self.send_response(200)
        self.send_header("Content-Type", "text/plain")
        self.send_header("Content-Length", str(len(body)))
        # What reached the server, for tests of rewrites and header edits: the request target
        # and every header as received, in order (JSON, one response header).
        self.send_header(SEEN_TARGET, self.path)
        self.send_header(SEEN_HEADERS, json.dumps(list(self.headers.items())))
        for item in (self.headers.get(ECHO_SET_HEADER) or "").split(","):
            name, sep, value = item.partition(":")
            if sep and name.strip():
                self.send_header(name.strip(), value.strip())
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(body)

    do_GET = do_POST = do_PUT = do_DELETE = do_OPTIONS = do_HEAD = do_PATCH = _answer
    # An extension method and a lower-case one (HAProxy compares methods case-sensitively).
    do_PURGE = do_get = _answer

    def log_message(self, *args) -> None:  # keep test output quiet
        pass


class _QuietServer(ThreadingHTTPServer):
    """Health checks close their connections abruptly; the resets are not errors worth a
    traceback on stderr (which a module-scoped proxy would print outside any test)."""

    daemon_threads = True

    def handle_error(self, request, client_address) -> None:
        if not isinstance(sys.exc_info()[1], (ConnectionResetError, BrokenPipeError)):
            super().handle_error(request, client_address)


class NamedBackend:
    """An HTTP server on a loopback port answering with ``name``; stop() and start() again."""

    def __init__(self, name: str, port: int | None = None):
        self.name = name
        self.port = port or free_port()
        self._server = None
        self._thread = None

    def start(self) -> None:
        server = _QuietServer((LOOPBACK, self.port), _Handler)
        server.name = self.name  # type: ignore[attr-defined]
        self._server = server
        self._thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
        self._thread.start()

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._thread.join(timeout=5)
            self._server = None


def render_config(compiled: dict, server_ports: dict, frontend_port: int, sock: pathlib.Path, nbthread: int = 1,
                  fallback_servers: bool = False, fall: int = 1, tls_bind: tuple | None = None,
                  more_ports: tuple = ()) -> str:
    """A minimal haproxy.cfg around the compiled frontend lines.

    ``server_ports`` maps (backend, server) to the loopback port that server listens on.
    With ``fallback_servers``, each backend also gets its fallback's stand-ins (backup
    servers tracking the fallback's servers), as the haproxy_l7 role writes them. ``fall``:
    failed checks before a server is marked down. ``tls_bind``: (port, PEM file) of a second
    bind, over TLS, in the same frontend. ``more_ports``: further plain HTTP binds in the same
    frontend (for tables whose listeners name more ports). When the compiled table names an
    ``https_redirect_backend``, that backend redirects to https with code 301."""
    lines = [
        "global",
        f"  stats socket {sock} level admin",
        f"  nbthread {nbthread}",
        # Without it HAProxy binds with SO_REUSEPORT, and a port another test session (whose
        # workers take ports from the same blocks) is listening on is silently shared: the
        # kernel spreads the requests over both HAProxies. Then it fails to start instead.
        "  noreuseport",
        "  log stderr format raw local0 emerg",
        "defaults",
        "  mode http",
        "  log global",
        "  timeout connect 1s",
        "  timeout client 10s",
        "  timeout server 10s",
        f"  default-server check inter 100ms fastinter 100ms downinter 100ms fall {fall} rise 1",
        "frontend fe_lay7",
        f"  bind {LOOPBACK}:{frontend_port}",
    ]
    if tls_bind is not None:
        tls_port, pem = tls_bind
        lines.append(f"  bind {LOOPBACK}:{tls_port} ssl crt {pem} alpn h2,http/1.1")
    lines += [f"  bind {LOOPBACK}:{port}" for port in more_ports]
    lines += [f"  {line}" for line in compiled["frontend"]]
    if compiled.get("https_redirect_backend"):
        # What the haproxy_l7 role's template writes: no server, only the redirect to the
        # HTTPS listener's port (the Host header's own port dropped; path and query kept).
        https_port = tls_bind[0] if tls_bind is not None else 443
        lines.append(f"backend {compiled['https_redirect_backend']}")
        lines.append("  http-request redirect location https://%[req.hdr(host),regsub(:[0-9]+$,)]"
                     f"{'' if https_port == 443 else f':{https_port}'}%[pathq] code 301")
    for be in compiled["backends"]:
        lines.append(f"backend {be['name']}")
        lines.append(f"  balance {be['balance']}")
        lines.append("  option httpchk GET /")
        # As the role writes them: a route's timeouts arrive through variables.
        lines += [f"  {line}" for line in compiled.get("backend_rules", [])]
        cookie = be["persistence"] == "cookie"
        if cookie:
            lines.append(f"  cookie {be['cookie_name']} insert indirect nocache httponly")
        for srv in be["servers"]:
            port = server_ports[(be["name"], srv["name"])]
            backup = " backup" if srv["backup"] else ""
            sticky = f" cookie {srv['name']}" if cookie else ""
            # As the role writes them: HTTP/2 without TLS to h2c backends, checks too.
            h2c = " proto h2 check-proto h2" if be.get("protocol") == "h2c" else ""
            lines.append(f"  server {srv['name']} {LOOPBACK}:{port} id {srv['id']} weight {srv['weight']}{sticky}{backup}{h2c}")
        if fallback_servers and be.get("fallback_servers"):
            lines.append("  option allbackups")
            for srv in be["fallback_servers"]:
                port = server_ports[tuple(srv["track"].split("/"))]
                lines.append(
                    f"  server {srv['name']} {LOOPBACK}:{port} id {srv['id']} weight {srv['weight']} backup no-check track {srv['track']}"
                    + (" proto h2" if srv.get("protocol") == "h2c" else "")
                )
    return "\n".join(lines) + "\n"


class HAProxy:
    """Write the config and maps into ``workdir``, validate with ``haproxy -c``, run it."""

    def __init__(self, compiled: dict, server_ports: dict, workdir: pathlib.Path, nbthread: int = 1,
                 fallback_servers: bool = False, fall: int = 1, tls: bool = False, ports: tuple | None = None,
                 more_ports: tuple = ()):
        """``ports``: (HTTP port, TLS port) chosen beforehand (see free_ports), for a table whose
        listeners name them; otherwise free ports are taken here. ``more_ports``: further plain
        HTTP binds (chosen beforehand too), for tables with more listeners."""
        self.workdir = pathlib.Path(workdir)
        self.port = ports[0] if ports else free_port()
        self.more_ports = tuple(more_ports)
        self.tls_port = None
        self._tls_context = None
        self._tls_session = None
        tls_bind = None
        if tls:
            pem, cert_pem = write_self_signed(self.workdir)
            self.tls_port = ports[1] if ports else free_port()
            self._tls_context = client_context(cert_pem)
            tls_bind = (self.tls_port, pem)
        self.sock = self.workdir / "admin.sock"
        for m in compiled["maps"]:
            path = pathlib.Path(m["path"])
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(m["content"])
        self.cfg = self.workdir / "haproxy.cfg"
        self.cfg.write_text(render_config(compiled, server_ports, self.port, self.sock, nbthread, fallback_servers, fall, tls_bind,
                                          self.more_ports))
        self.proc = None

    def check(self) -> str:
        res = subprocess.run([HAPROXY, "-c", "-f", str(self.cfg)], capture_output=True, text=True, timeout=60, check=False)
        if res.returncode != 0:
            raise RuntimeError(f"haproxy -c failed:\n{res.stdout}{res.stderr}\n{self.cfg.read_text()}")
        return res.stdout + res.stderr

    def start(self, timeout: float = 10.0) -> None:
        self.check()
        self.log = open(self.workdir / "haproxy.log", "w")
        self.proc = subprocess.Popen([HAPROXY, "-db", "-f", str(self.cfg)], stdout=self.log, stderr=subprocess.STDOUT)
        # Ready when the HTTP bind, the admin socket and the TLS bind (if any) all accept. The admin
        # socket's file appears when HAProxy binds it, a moment before it listens (it binds every
        # socket first, then listens on each): its existence is not enough.
        ready = [(LOOPBACK, self.port), str(self.sock)] + ([(LOOPBACK, self.tls_port)] if self.tls_port else [])
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"haproxy exited: {(self.workdir / 'haproxy.log').read_text()}")
            if all(self._accepts(address) for address in ready):
                return
            time.sleep(0.02)
        raise TimeoutError("haproxy did not start listening")

    @staticmethod
    def _accepts(address) -> bool:
        """Whether a connection to ``address`` (a loopback (host, port) or a Unix socket path) is accepted."""
        family = socket.AF_UNIX if isinstance(address, str) else socket.AF_INET
        with socket.socket(family, socket.SOCK_STREAM) as s:
            s.settimeout(0.2)
            try:
                s.connect(address)
                return True
            except OSError:
                return False

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=5)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(timeout=5)
        if self.proc is not None:
            self.log.close()
        self.proc = None

    def command(self, cmd: str) -> str:
        try:
            return exchange(str(self.sock), cmd + "\n", 5)
        except ConnectionRefusedError as exc:
            # Say whether HAProxy is still there and what it logged, not only "refused".
            state = "running" if self.proc is not None and self.proc.poll() is None else "exited"
            log = (self.workdir / "haproxy.log").read_text(errors="replace")[-2000:]
            raise ConnectionRefusedError(f"{exc}; haproxy {state}; its log ends:\n{log}") from exc

    def server_states(self) -> dict:
        """(backend, server) -> 'UP' / 'DOWN' / ... from ``show stat``."""
        out = {}
        rows = self.command("show stat").splitlines()
        header = rows[0].lstrip("# ").split(",")
        for row in rows[1:]:
            if not row:
                continue
            rec = dict(zip(header, row.split(",")))
            if rec["svname"] not in ("FRONTEND", "BACKEND"):
                out[(rec["pxname"], rec["svname"])] = rec["status"].split(" ")[0]
        return out

    def wait_states(self, want: dict, timeout: float = 10.0) -> None:
        """Poll until every (backend, server) in ``want`` has the wanted state."""
        deadline = time.monotonic() + timeout
        states = {}
        while time.monotonic() < deadline:
            states = self.server_states()
            if all(states.get(k) == v for k, v in want.items()):
                return
            time.sleep(0.05)
        raise TimeoutError(f"servers did not reach {want}; last seen {states}")

    def wire_host(self, scheme: str = "http") -> str:
        """The Host header a request without an explicit host sends (``127.0.0.1:<port>``)."""
        return f"{LOOPBACK}:{self.tls_port if scheme == 'https' else self.port}"

    def exchange(self, target: str, host: str | None = None, method: str = "GET", scheme: str = "http",
                 headers: list | None = None, port: int | None = None) -> tuple:
        """Send one request with a raw request target over ``scheme`` (``https`` needs
        ``tls=True``) and extra ``headers`` ((name, value) pairs, sent in order), over plain HTTP
        to ``port`` if given (one of ``more_ports``); return (status, headers as an
        ``http.client.HTTPMessage``, body)."""
        if scheme == "https":
            if self._tls_context is None:
                raise ValueError("this HAProxy has no TLS bind (start it with tls=True)")
            conn = _LoopbackHTTPS(self.tls_port, self._tls_context, timeout=5, session=self._tls_session)
        elif scheme == "http":
            conn = http.client.HTTPConnection(LOOPBACK, port or self.port, timeout=5)
        else:
            raise ValueError(f"scheme {scheme!r} is neither http nor https")
        try:
            conn.putrequest(method, target, skip_host=True, skip_accept_encoding=True)
            conn.putheader("Host", host or (f"{LOOPBACK}:{port}" if port else self.wire_host(scheme)))
            conn.putheader("Connection", "close")
            for name, value in headers or ():
                conn.putheader(name, value)
            if method in ("POST", "PUT", "PATCH"):
                conn.putheader("Content-Length", "0")
            conn.endheaders()
            resp = conn.getresponse()
            return resp.status, resp.headers, resp.read().decode(errors="replace")
        finally:
            conn.close()
            if scheme == "https" and conn.tls_session is not None:
                self._tls_session = conn.tls_session

    def request(self, target: str, host: str | None = None, method: str = "GET", scheme: str = "http") -> tuple:
        """Send one request with a raw request target; return (status, body)."""
        status, _headers, body = self.exchange(target, host, method, scheme)
        return status, body


class H2cBackend:
    """A server that speaks only HTTP/2 without TLS (h2c, prior knowledge) on a loopback port:
    a small HAProxy of its own answering every request with ``name``, the request target in
    SEEN_TARGET and the HTTP version it received in SEEN_VERSION. Python's standard library
    has no HTTP/2 server."""

    def __init__(self, name: str, workdir: pathlib.Path):
        self.name = name
        self.port = free_port()
        self.workdir = pathlib.Path(workdir)
        self.proc = None
        self.cfg = self.workdir / f"h2c-{self.port}.cfg"
        self.cfg.write_text("\n".join([
            "defaults",
            "  mode http",
            "  timeout connect 1s",
            "  timeout client 10s",
            "  timeout server 10s",
            "frontend h2c",
            f"  bind {LOOPBACK}:{self.port} proto h2",
            f"  http-request return status 200 content-type text/plain hdr {SEEN_TARGET} %[pathq] "
            f"hdr {SEEN_VERSION} %[req.ver] string {name}",
        ]) + "\n")

    def start(self) -> None:
        self.proc = subprocess.Popen([HAPROXY, "-db", "-f", str(self.cfg)], stdout=subprocess.DEVNULL, stderr=subprocess.STDOUT)
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            with contextlib.suppress(OSError), socket.create_connection((LOOPBACK, self.port), timeout=0.2):
                return
            time.sleep(0.05)
        raise RuntimeError(f"the h2c backend {self.name} did not listen on {self.port}")

    def stop(self) -> None:
        if self.proc is not None:
            self.proc.terminate()
            self.proc.wait(timeout=10)
            self.proc = None


@contextlib.contextmanager
def running(compiled: dict, workdir: pathlib.Path, nbthread: int = 1, tls: bool = False, ports: tuple | None = None,
            more_ports: tuple = ()):
    """Start one NamedBackend per server (named after its backend) and HAProxy (with a second,
    TLS bind when ``tls``, and plain binds on ``more_ports``) on ``ports`` if given; always
    clean up."""
    backends = {}
    server_ports = {}
    for be in compiled["backends"]:
        for srv in be["servers"]:
            nb = H2cBackend(be["name"], workdir) if be.get("protocol") == "h2c" else NamedBackend(be["name"])
            backends[(be["name"], srv["name"])] = nb
            server_ports[(be["name"], srv["name"])] = nb.port
    proxy = HAProxy(compiled, server_ports, workdir, nbthread=nbthread, tls=tls, ports=ports, more_ports=more_ports)
    try:
        for nb in backends.values():
            nb.start()
        proxy.start()
        proxy.wait_states({key: "UP" for key in backends})
        yield proxy, backends
    finally:
        proxy.stop()
        for nb in backends.values():
            nb.stop()
