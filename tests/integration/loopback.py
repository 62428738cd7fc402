"""Run the real HAProxy binary on loopback with compiled route tables (tests and bench).

Backends are tiny in-process HTTP servers on 127.0.0.1 that answer every request with
their own name. HAProxy runs in the foreground (``-db``) from a temporary directory with
short health-check intervals; its stats socket tells when servers are UP or DOWN, so
tests poll state (bounded in time) instead of sleeping. Only loopback addresses are used.
"""

from __future__ import annotations

import contextlib
import http.client
import pathlib
import shutil
import socket
import subprocess
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

HAPROXY = shutil.which("haproxy") or "/usr/sbin/haproxy"
LOOPBACK = "127.0.0.1"


def free_port() -> int:
    with socket.socket() as s:
        s.bind((LOOPBACK, 0))
        return s.getsockname()[1]


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def _answer(self) -> None:
        # .../slow/<seconds>: a request that keeps its server session open that long.
        if "/slow/" in self.path:
            time.sleep(float(self.path.rsplit("/slow/", 1)[1]))
        length = int(self.headers.get("Content-Length") or 0)
        if length:
            self.rfile.read(length)
        body = self.server.name.encode()  # type: ignore[attr-defined]
        self.send_response(200)
        self.send_header("Content-Type", "text/plain")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(body)

    do_GET = do_POST = do_PUT = do_DELETE = do_OPTIONS = do_HEAD = do_PATCH = _answer
    # An extension method and a lower-case one (HAProxy compares methods case-sensitively).
    do_PURGE = do_get = _answer

    def log_message(self, *args) -> None:  # keep test output quiet
        pass


class NamedBackend:
    """An HTTP server on a loopback port answering with ``name``; stop() and start() again."""

    def __init__(self, name: str, port: int | None = None):
        self.name = name
        self.port = port or free_port()
        self._server = None
        self._thread = None

    def start(self) -> None:
        server = ThreadingHTTPServer((LOOPBACK, self.port), _Handler)
        server.daemon_threads = True
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
                  fallback_servers: bool = False, fall: int = 1) -> str:
    """A minimal haproxy.cfg around the compiled frontend lines.

    ``server_ports`` maps (backend, server) to the loopback port that server listens on.
    With ``fallback_servers``, each backend also gets its fallback's stand-ins (backup
    servers tracking the fallback's servers), as the haproxy_l7 role writes them. ``fall``:
    failed checks before a server is marked down."""
    lines = [
        "global",
        f"  stats socket {sock} level admin",
        f"  nbthread {nbthread}",
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
    lines += [f"  {line}" for line in compiled["frontend"]]
    for be in compiled["backends"]:
        lines.append(f"backend {be['name']}")
        lines.append(f"  balance {be['balance']}")
        lines.append("  option httpchk GET /")
        for srv in be["servers"]:
            port = server_ports[(be["name"], srv["name"])]
            backup = " backup" if srv["backup"] else ""
            lines.append(f"  server {srv['name']} {LOOPBACK}:{port} id {srv['id']} weight {srv['weight']}{backup}")
        if fallback_servers and be.get("fallback_servers"):
            lines.append("  option allbackups")
            for srv in be["fallback_servers"]:
                port = server_ports[tuple(srv["track"].split("/"))]
                lines.append(
                    f"  server {srv['name']} {LOOPBACK}:{port} id {srv['id']} weight {srv['weight']} backup no-check track {srv['track']}"
                )
    return "\n".join(lines) + "\n"


class HAProxy:
    """Write the config and maps into ``workdir``, validate with ``haproxy -c``, run it."""

    def __init__(self, compiled: dict, server_ports: dict, workdir: pathlib.Path, nbthread: int = 1,
                 fallback_servers: bool = False, fall: int = 1):
        self.workdir = pathlib.Path(workdir)
        self.port = free_port()
        self.sock = self.workdir / "admin.sock"
        for m in compiled["maps"]:
            path = pathlib.Path(m["path"])
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(m["content"])
        self.cfg = self.workdir / "haproxy.cfg"
        self.cfg.write_text(render_config(compiled, server_ports, self.port, self.sock, nbthread, fallback_servers, fall))
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
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"haproxy exited: {(self.workdir / 'haproxy.log').read_text()}")
            with contextlib.suppress(OSError), socket.create_connection((LOOPBACK, self.port), timeout=0.2):
                if self.sock.exists():
                    return
            time.sleep(0.02)
        raise TimeoutError("haproxy did not start listening")

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
        with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as s:
            s.settimeout(5)
            s.connect(str(self.sock))
            s.sendall(cmd.encode() + b"\n")
            chunks = []
            while chunk := s.recv(65536):
                chunks.append(chunk)
        return b"".join(chunks).decode()

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

    def request(self, target: str, host: str | None = None, method: str = "GET") -> tuple:
        """Send one request with a raw request target; return (status, body)."""
        conn = http.client.HTTPConnection(LOOPBACK, self.port, timeout=5)
        try:
            conn.putrequest(method, target, skip_host=True, skip_accept_encoding=True)
            conn.putheader("Host", host or f"{LOOPBACK}:{self.port}")
            conn.putheader("Connection", "close")
            if method in ("POST", "PUT", "PATCH"):
                conn.putheader("Content-Length", "0")
            conn.endheaders()
            resp = conn.getresponse()
            return resp.status, resp.read().decode(errors="replace")
        finally:
            conn.close()


@contextlib.contextmanager
def running(compiled: dict, workdir: pathlib.Path, nbthread: int = 1):
    """Start one NamedBackend per server (named after its backend) and HAProxy; always clean up."""
    backends = {}
    ports = {}
    for be in compiled["backends"]:
        for srv in be["servers"]:
            nb = NamedBackend(be["name"])
            backends[(be["name"], srv["name"])] = nb
            ports[(be["name"], srv["name"])] = nb.port
    proxy = HAProxy(compiled, ports, workdir, nbthread=nbthread)
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
