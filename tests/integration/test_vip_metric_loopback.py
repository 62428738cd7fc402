"""Which load balancer holds the VIP, in the metrics: the haproxy_l7 role's VIP check on the real
HAProxy, on loopback, scraped directly and through a real Prometheus with the shipped alert rules.

The role renders haproxy.cfg for two load balancers, hap1 and hap2 (its template, offline, as in
test_haproxy_role_render.py, both in one ansible-playbook run, once per session), with
documentation addresses (the role refuses loopback ones: other hosts could not reach them) and
fixed ports, which are then mapped to loopback ones and ports of this test's own, nothing else
changed: the VIP to 127.0.0.100, each node's own address to 127.0.0.1 (its stats listener has a
port of its own), the web server of the backend main to a loopback HTTP server. Each node runs as
a HAProxy process of its own.

On loopback every 127.0.0.0/8 address is this host's, so holding the VIP is modelled by which
process listens on it: the holder's sockets on the VIP are bound as rendered, the other node's are
bound to 127.0.0.101 instead, where nothing connects (as a standby's sockets, bound to the VIP with
ip_nonlocal_bind, receive nothing). Both check the VIP as rendered. What loopback cannot show is the
kernel's source address for a node's connection to an address it holds (the VIP itself, which the
probe frontend accepts): here every connection comes from 127.0.0.1, each node's own stats address,
which it accepts as well; then the answering node's name is what tells the holder's own check from
the other node's. The lab's verification (molecule/shared/tests/test_monitoring.py) checks the
real thing on two hosts. Only loopback addresses are used.
"""

from __future__ import annotations

import base64
import contextlib
import fcntl
import http.client
import json
import os
import pathlib
import re
import shutil
import socket
import subprocess
import time

import pytest
import yaml
from lab.prometheus import PrometheusServer
from loopback import HAPROXY, LOOPBACK, NamedBackend, free_port, offline_role_paths

REPO = pathlib.Path(__file__).resolve().parents[2]
# What the role renders (documentation addresses) and what they stand for here.
VIP_RENDERED = "192.0.2.100"
OWN_RENDERED = {"hap1": "192.0.2.21", "hap2": "192.0.2.22"}
WEB_RENDERED = "192.0.2.11"
# The ports it renders, each standing for one this test process takes (loopback.free_port): the
# render does not depend on them, so one render serves every pytest-xdist worker.
PORTS_RENDERED = {"frontend": 60080, "vip_check": 60406, "web": 60011,
                  "stats": {"hap1": 60404, "hap2": 60414}, "monitor": {"hap1": 60405, "hap2": 60415}}
VIP = "127.0.0.100"
# Where the node that does not hold the VIP binds its VIP sockets: an address nothing connects to.
ELSEWHERE = "127.0.0.101"
USER = "lay7stats"
PASSWORD = "k3Q-uv9_Zt41pLmx"
NODES = ("hap1", "hap2")
# The check's interval here; the role's default is 1 s.
INTERVAL = "100ms"
# Bounds for the state to follow a change: 100 ms checks, one result decides.
SETTLE = 5.0

pytestmark = pytest.mark.skipif(not pathlib.Path(HAPROXY).exists(), reason="haproxy binary not installed (make deps)")

PLAYBOOK = """\
- name: Render lay7.ha.haproxy_l7 offline for two load balancers
  hosts: all
  gather_facts: true
  gather_subset: [min]
  roles:
    - role: lay7.ha.haproxy_l7
"""


def _node_vars(node: str, tmp: pathlib.Path) -> dict:
    return {
        "ansible_connection": "local",
        "ansible_python_interpreter": shutil.which("python3"),
        "haproxy_l7_frontend_address": VIP_RENDERED,
        "haproxy_l7_frontend_port": PORTS_RENDERED["frontend"],
        "haproxy_l7_vip_check_port": PORTS_RENDERED["vip_check"],
        "haproxy_l7_vip_check_interval": INTERVAL,
        "haproxy_l7_stats_address": OWN_RENDERED[node],
        "haproxy_l7_stats_port": PORTS_RENDERED["stats"][node],
        "haproxy_l7_monitor_port": PORTS_RENDERED["monitor"][node],
        "haproxy_l7_stats_user": USER,
        "haproxy_l7_stats_password": PASSWORD,
        "haproxy_l7_backends": {"main": {"servers": [{"name": "web1", "address": WEB_RENDERED, "port": PORTS_RENDERED["web"]}]}},
        "haproxy_l7_routes": [],
        "haproxy_l7_default_backend": "main",
        "haproxy_l7_health_check_inter": "100ms",
        "haproxy_l7_health_check_fastinter": "100ms",
        "haproxy_l7_health_check_downinter": "100ms",
        "haproxy_l7_health_check_fall": 1,
        "haproxy_l7_health_check_rise": 1,
        **offline_role_paths(tmp),
    }


def render(workdir: pathlib.Path) -> dict:
    """Render both nodes' haproxy.cfg with the role; {node: config text}."""
    hosts = {}
    for node in NODES:
        (workdir / node).mkdir(parents=True)
        hosts[node] = _node_vars(node, workdir / node)
    (workdir / "inventory.yml").write_text(yaml.safe_dump({"all": {"hosts": hosts}}))
    (workdir / "render.yml").write_text(PLAYBOOK)
    env = dict(os.environ, ANSIBLE_NOCOLOR="1", ANSIBLE_RETRY_FILES_ENABLED="0")
    env.setdefault("ANSIBLE_CONFIG", str(REPO / "ansible.cfg"))
    env.setdefault("ANSIBLE_COLLECTIONS_PATH", str(REPO / ".collections"))
    result = subprocess.run(
        ["ansible-playbook", "-i", str(workdir / "inventory.yml"),
         # The role's real entry point minus what would touch this machine (package, sysctl, service).
         "--tags", "haproxy_l7_preflight,haproxy_l7_configure", str(workdir / "render.yml")],
        cwd=REPO, env=env, capture_output=True, text=True, timeout=300, check=False)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    return {node: (workdir / node / "haproxy.cfg").read_text() for node in NODES}


def rendered_once(tmp_path_factory) -> dict:
    """render(), once per test session: pytest-xdist workers share the result (an ansible-playbook
    run costs seconds of CPU), the first to come renders under a lock, the others read it."""
    base = tmp_path_factory.getbasetemp()
    shared = (base.parent if os.environ.get("PYTEST_XDIST_WORKER") else base) / "vip-metric-render"
    shared.mkdir(exist_ok=True)
    with (shared / "lock").open("w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        done = shared / "rendered.json"
        if not done.exists():
            rendered = render(shared / "work")
            done.write_text(json.dumps(rendered))
        return json.loads(done.read_text())


def _replace_once(text: str, old: str, new: str) -> str:
    assert text.count(old) == 1, f"expected {old!r} once in the rendered haproxy.cfg"
    return text.replace(old, new)


def _address(rendered: str) -> re.Pattern:
    return re.compile(rf"(?<![0-9.]){re.escape(rendered)}(?![0-9])")


def runnable(node: str, text: str, ports: dict, workdir: pathlib.Path, holds_vip: bool) -> str:
    """A node's rendered configuration with its addresses and ports mapped to this test's and what
    running it here needs, nothing the VIP check depends on: the admin socket in the test's
    directory (two processes, and maybe the host's own HAProxy, cannot share
    /run/haproxy/admin.sock), no chroot and no change of user (the test's process runs it). On the
    node that does not hold the VIP, its sockets on the VIP are bound elsewhere."""
    text = _replace_once(text, "stats socket /run/haproxy/admin.sock ", f"stats socket {workdir}/admin.sock ")
    for line in ("    chroot /var/lib/haproxy\n", "    user haproxy\n", "    group haproxy\n"):
        text = _replace_once(text, line, "")
    if not holds_vip:
        binds = re.findall(rf"^    bind {re.escape(VIP_RENDERED)}:", text, re.MULTILINE)
        assert len(binds) == 2, f"expected the frontend's and the VIP check's bind on the VIP, got {binds}"
        text = text.replace(f"    bind {VIP_RENDERED}:", f"    bind {ELSEWHERE}:")
    for rendered, here in ((VIP_RENDERED, VIP), (OWN_RENDERED[node], LOOPBACK), (WEB_RENDERED, LOOPBACK)):
        text = _address(rendered).sub(here, text)
    for name in ("frontend", "vip_check", "web", "stats", "monitor"):
        rendered = PORTS_RENDERED[name][node] if isinstance(PORTS_RENDERED[name], dict) else PORTS_RENDERED[name]
        # Ports appear after an address and a colon (binds, servers); nowhere else in the file.
        text, count = re.subn(rf":{rendered}(?![0-9])", f":{ports[name]}", text)
        assert count > 0, f"port {rendered} ({name}) not in {node}'s rendered haproxy.cfg"
    return text


class Node:
    """One load balancer: its rendered configuration, run as a HAProxy process (holding the VIP or not)."""

    def __init__(self, name: str, rendered: str, ports: dict, workdir: pathlib.Path):
        self.name = name
        self.rendered = rendered
        self.ports = ports
        self.workdir = workdir
        self.proc = None
        self.holds_vip = False

    def start(self, holds_vip: bool) -> None:
        self.holds_vip = holds_vip
        cfg = self.workdir / "run.cfg"
        cfg.write_text(runnable(self.name, self.rendered, self.ports, self.workdir, holds_vip))
        check = subprocess.run([HAPROXY, "-c", "-f", str(cfg)], capture_output=True, text=True, timeout=60, check=False)
        assert check.returncode == 0, check.stdout + check.stderr
        self.log = open(self.workdir / "haproxy.log", "a")  # noqa: SIM115 - closed by stop()
        self.proc = subprocess.Popen([HAPROXY, "-db", "-f", str(cfg)], stdout=self.log, stderr=subprocess.STDOUT)
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            assert self.proc.poll() is None, (self.workdir / "haproxy.log").read_text()
            with contextlib.suppress(OSError), socket.create_connection((LOOPBACK, self.ports["stats"]), timeout=0.2):
                return
            time.sleep(0.02)
        raise TimeoutError(f"{self.name}: the stats listener did not open")

    def stop(self) -> None:
        if self.proc is not None:
            self.proc.terminate()
            self.proc.wait(timeout=10)
            self.log.close()
            self.proc = None

    @property
    def target(self) -> str:
        return f"{LOOPBACK}:{self.ports['stats']}"

    def metrics(self) -> str:
        conn = http.client.HTTPConnection(LOOPBACK, self.ports["stats"], timeout=5)
        try:
            auth = base64.b64encode(f"{USER}:{PASSWORD}".encode()).decode()
            conn.request("GET", "/metrics", headers={"Authorization": f"Basic {auth}"})
            resp = conn.getresponse()
            body = resp.read().decode()
            assert resp.status == 200, f"{self.name}: /metrics answered {resp.status}"
            return body
        finally:
            conn.close()

    def vip_server_up(self) -> bool:
        """What this node's exporter says of lay7_vip/<VIP> (its check of the VIP): UP or not."""
        body = self.metrics()
        up = re.search(rf'^haproxy_server_status\{{proxy="lay7_vip",server="{re.escape(VIP)}",state="UP"\}} ([01])$',
                       body, re.MULTILINE)
        active = re.search(r'^haproxy_backend_active_servers\{proxy="lay7_vip"\} ([01])$', body, re.MULTILINE)
        assert up and active, f"{self.name}: no lay7_vip series in /metrics"
        # The backend's count agrees with its one server.
        assert up.group(1) == active.group(1), (up.group(0), active.group(0))
        return up.group(1) == "1"


@pytest.fixture(scope="module")
def cluster(tmp_path_factory):
    workdir = tmp_path_factory.mktemp("vip-metric")
    web = NamedBackend("web1")
    # The VIP's ports are the same on both nodes, as on the lab; each node has its own stats and
    # monitor listeners.
    shared = {"frontend": free_port(), "vip_check": free_port(), "web": web.port}
    nodes = {}
    for name, text in rendered_once(tmp_path_factory).items():
        (workdir / name).mkdir()
        nodes[name] = Node(name, text, dict(shared, stats=free_port(), monitor=free_port()), workdir / name)
    web.start()
    try:
        yield nodes, web
    finally:
        for node in nodes.values():
            node.stop()
        web.stop()


@pytest.fixture
def hap1_holds(cluster):
    """hap1 holds the VIP and hap2 does not: the state every test starts from and leaves behind
    (a node is restarted only when a test changed it)."""
    nodes, web = cluster

    def reset():
        for name, holds in (("hap1", True), ("hap2", False)):
            node = nodes[name]
            if node.proc is None or node.holds_vip != holds:
                node.stop()
                node.start(holds_vip=holds)

    reset()
    yield nodes, web
    reset()


def settled(nodes: dict, want: dict, timeout: float = SETTLE) -> None:
    """Wait until each running node's VIP server is UP or not as ``want`` says, then check it
    stays so for a further second (ten checks)."""
    def seen():
        return {name: nodes[name].vip_server_up() for name in want}

    deadline = time.monotonic() + timeout
    while seen() != want:
        assert time.monotonic() < deadline, f"VIP check: expected {want}, seen {seen()}"
        time.sleep(0.05)
    until = time.monotonic() + 1.0
    while time.monotonic() < until:
        assert seen() == want, f"VIP check: {want} did not hold; seen {seen()}"
        time.sleep(0.1)


def test_exactly_the_holder_reports_the_vip_up(hap1_holds):
    nodes, _web = hap1_holds
    settled(nodes, {"hap1": True, "hap2": False})


def test_with_the_holder_gone_no_node_reports_the_vip(hap1_holds):
    nodes, _web = hap1_holds
    settled(nodes, {"hap1": True, "hap2": False})
    nodes["hap1"].stop()
    # The standby's check now finds nothing on the VIP: still DOWN, and nothing reports it UP.
    settled(nodes, {"hap2": False})


def test_the_vip_moved_to_the_other_node_is_reported_there(hap1_holds):
    nodes, _web = hap1_holds
    settled(nodes, {"hap1": True, "hap2": False})
    nodes["hap1"].stop()
    nodes["hap2"].stop()
    nodes["hap2"].start(holds_vip=True)
    nodes["hap1"].start(holds_vip=False)
    settled(nodes, {"hap1": False, "hap2": True})


def _probe(source: str, port: int) -> tuple[int, str, str]:
    """GET the VIP check's path on the VIP from a given loopback source address."""
    with socket.create_connection((VIP, port), timeout=5, source_address=(source, 0)) as sock:
        sock.sendall(f"GET /lay7-vip HTTP/1.1\r\nHost: {VIP}\r\nConnection: close\r\n\r\n".encode())
        data = b""
        while chunk := sock.recv(65536):
            data += chunk
    head, _, body = data.decode().partition("\r\n\r\n")
    status_line, *header_lines = head.split("\r\n")
    headers = dict(line.split(": ", 1) for line in header_lines)
    return int(status_line.split(" ", 2)[1]), headers.get("x-lay7-node", ""), body


def test_the_holder_answers_with_its_name_to_itself_only(hap1_holds):
    nodes, _web = hap1_holds
    port = nodes["hap1"].ports["vip_check"]
    # From this node's own address (on loopback, where the checks come from): its name.
    assert _probe(LOOPBACK, port) == (200, "hap1", f"hap1 holds {VIP}\n")
    # From any other address (a client of the VIP): refused, no name.
    status, node, _body = _probe("127.0.0.9", port)
    assert (status, node) == (403, "")


def test_client_traffic_is_not_routed_to_the_vip_check(hap1_holds):
    """The VIP check's backend is the role's own: no route leads there, whatever the path."""
    nodes, _web = hap1_holds
    conn = http.client.HTTPConnection(VIP, nodes["hap1"].ports["frontend"], timeout=5)
    try:
        for path in ("/", "/lay7-vip", "/lay7_vip"):
            conn.request("GET", path)
            resp = conn.getresponse()
            assert (resp.status, resp.read().decode()) == (200, "web1"), path
    finally:
        conn.close()


# --------------------------------------------------------------------------- through Prometheus
def _wait(predicate, timeout: float, what: str):
    deadline = time.monotonic() + timeout
    last = None
    while time.monotonic() < deadline:
        last = predicate()
        if last:
            return last
        time.sleep(0.2)
    raise AssertionError(f"{what}: not within {timeout:.0f} s (last: {last!r})")


def _active(prometheus: PrometheusServer) -> list[tuple]:
    return sorted((a["labels"]["alertname"], a["labels"].get("proxy", a["labels"].get("server")), a["state"])
                  for a in prometheus.alerts())


def test_prometheus_with_the_shipped_rules_reads_the_real_metrics(hap1_holds, tmp_path):
    """The shipped rules against the series real HAProxies export (the promtool tests use
    synthetic ones): quiet on the healthy pair, and the conditions of two alerts met (pending;
    their `for:` is left to promtool and the lab) when the web server, then the holder, stops."""
    nodes, web = hap1_holds
    settled(nodes, {"hap1": True, "hap2": False})
    targets = {nodes[name].target: name for name in NODES}
    with PrometheusServer(list(targets), tmp_path / "prometheus", auth=(USER, PASSWORD), port=free_port()) as prometheus:
        _wait(lambda: set(prometheus.targets_health().values()) == {"up"}, 30, "both targets scraped")
        evaluated = prometheus.evaluations()
        _wait(lambda: prometheus.evaluations() >= evaluated + 3, 30, "three rule evaluations")
        holders = prometheus.query('haproxy_server_status{proxy="lay7_vip",state="UP"} == 1')
        assert [(targets[labels["instance"]], labels["server"]) for labels, _ in holders] == [("hap1", VIP)]
        assert _active(prometheus) == [], json.dumps(prometheus.alerts(), indent=1)

        web.stop()
        try:
            # main has no server left, and no fallback: critical, pending for its `for:`, on both nodes.
            _wait(lambda: _active(prometheus) == [("Lay7BackendNoServerUp", "main", "pending")] * 2, 30,
                  "Lay7BackendNoServerUp pending for main on both load balancers")
            assert {a["labels"]["severity"] for a in prometheus.alerts()} == {"critical"}
        finally:
            web.start()
        _wait(lambda: _active(prometheus) == [], 30, "no alert once web1 is back")

        nodes["hap1"].stop()
        _wait(lambda: _active(prometheus) == [("Lay7VipNotHeld", VIP, "pending")], 30, "Lay7VipNotHeld pending")
