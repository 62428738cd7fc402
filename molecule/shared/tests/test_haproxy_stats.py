"""lay7.ha.haproxy_l7 on the load balancers: stats, Prometheus, runtime API, hitless reloads.

The stats page answers 401 without credentials and 200 with them, lists
web1-web3 UP, is not served on the VIP; the Prometheus endpoint answers. Also checked here:
the VIP is bound on both nodes (ip_nonlocal_bind), the runtime API socket, logging to the
journal, and that a reload under traffic drops no request and keeps the master process.
"""

from __future__ import annotations

import base64
import csv
import http.client
import io
import re
import threading
import time
import uuid
from pathlib import Path

import pytest
from conftest import DEBIAN_RELEASES, HttpClient, Reply, debian_release, inventory_path, tcp_connects, vip_holders, wait_for

STATS_PORT = 8404
STATS_URI = "/stats"
METRICS_URI = "/metrics"
CONFIG = "/etc/haproxy/haproxy.cfg"
SOCKET = "/run/haproxy/admin.sock"


def _credentials(node) -> tuple[str, str]:
    """The stats user and password as deployed. haproxy.cfg holds only a crypt hash of
    the password, so the password comes from the inventory's git-ignored secret file
    (inventory/lab/.secrets/stats_password, which the lab and Vagrant inventories read);
    it must not appear anywhere in the deployed file."""
    text = node.file(CONFIG).content_string
    match = re.search(r"^\s*user (\S+) password (\$6\$[./0-9A-Za-z]{1,16}\$[./0-9A-Za-z]{86})$", text, re.MULTILINE)
    assert match, f"no stats user with a SHA-512 crypt hash in {CONFIG}"
    secret = (Path(inventory_path()) / "group_vars").resolve().parent / ".secrets" / "stats_password"
    password = secret.read_text(encoding="utf-8").split()[0]
    assert password not in text, f"the stats password appears in clear in {CONFIG}"
    assert "insecure-password" not in text
    return match.group(1), password


def _get(address: str, path: str, auth: tuple[str, str] | None = None, timeout: float = 3.0) -> Reply:
    headers = {"Connection": "close"}
    if auth:
        headers["Authorization"] = "Basic " + base64.b64encode(f"{auth[0]}:{auth[1]}".encode()).decode()
    conn = http.client.HTTPConnection(address, STATS_PORT, timeout=timeout)
    try:
        conn.request("GET", path, headers=headers)
        resp = conn.getresponse()
        headers_in = {k.lower(): v for k, v in resp.getheaders()}
        return Reply(resp.status, headers_in, resp.read().decode("utf-8", "replace"))
    finally:
        conn.close()


@pytest.fixture(scope="module")
def lbs(inventory, nodes):
    """(name, own address, credentials) of every load balancer."""
    return [(name, inventory.addresses[name], _credentials(nodes[name])) for name in inventory.loadbalancers]


def test_stats_refuses_requests_without_valid_credentials(lbs):
    for name, address, (user, password) in lbs:
        reply = _get(address, STATS_URI)
        assert reply.status == 401, f"{name}: stats without credentials answered {reply.status}"
        assert reply.headers.get("www-authenticate", "").startswith("Basic"), f"{name}: {reply.headers}"
        reply = _get(address, STATS_URI, (user, password + "x"))
        assert reply.status == 401, f"{name}: stats with a wrong password answered {reply.status}"
        reply = _get(address, STATS_URI, ("admin", "admin"))
        assert reply.status == 401, f"{name}: stats accepted admin:admin"


def _servers(address: str, creds: tuple[str, str]) -> list[dict]:
    reply = _get(address, STATS_URI + ";csv", creds)
    assert reply.status == 200
    rows = list(csv.DictReader(io.StringIO(reply.body.lstrip("# "))))
    return [r for r in rows if r["svname"] not in ("FRONTEND", "BACKEND")]


def test_stats_page_with_credentials_lists_every_web_server_up(lbs, inventory):
    for name, address, creds in lbs:
        reply = _get(address, STATS_URI, creds)
        assert reply.status == 200, f"{name}: stats with credentials answered {reply.status}"
        assert "Statistics Report" in reply.body
        seen = {r["svname"] for r in _servers(address, creds)}
        assert set(inventory.webservers) <= seen, f"{name}: stats lists {sorted(seen)}"
        # A single failed check shows as "UP 1/2" (still UP, going down after `fall`);
        # on this 2-core machine a check can miss its 1 s timeout under the suite's own
        # load. Every server must settle at plain UP within a few check intervals, and
        # the failure message carries the last check result of any that does not.
        not_up: list = []

        # Not the VIP check's server (lay7_vip), which is UP only on the node holding the VIP
        # (test_monitoring.py checks it).
        def all_up(address=address, creds=creds) -> bool:
            not_up[:] = [(r["pxname"], r["svname"], r["status"], r.get("check_status"), r.get("last_chk"))
                         for r in _servers(address, creds) if r["status"] != "UP" and r["pxname"] != "lay7_vip"]
            return not not_up

        try:
            wait_for(all_up, timeout=10, what=f"{name}: every server UP", interval=0.5)
        except AssertionError as exc:
            raise AssertionError(f"{name}: servers not UP: {not_up}") from exc


def test_stats_listener_is_not_on_the_vip(inventory, vip: HttpClient):
    assert not tcp_connects(inventory.vip, STATS_PORT), f"something listens on {inventory.vip}:{STATS_PORT}"
    reply = vip.get(STATS_URI)
    # Routed like any other path (to the default backend), never the stats page.
    assert reply.status != 401 and "Statistics Report" not in reply.body
    assert reply.served_by in inventory.webservers


def test_stats_listener_binds_only_the_node_address(inventory, nodes):
    for name in inventory.loadbalancers:
        listeners = nodes[name].check_output(f"ss -Htln 'sport = :{STATS_PORT}'")
        bound = sorted({line.split()[3] for line in listeners.splitlines() if line.strip()})
        assert bound == [f"{inventory.addresses[name]}:{STATS_PORT}"], f"{name}: {bound}"


def test_prometheus_endpoint_answers_with_credentials_only(lbs, inventory):
    for name, address, creds in lbs:
        reply = _get(address, METRICS_URI)
        assert reply.status == 401, f"{name}: /metrics without credentials answered {reply.status}"
        reply = _get(address, METRICS_URI, creds, timeout=10)
        assert reply.status == 200, f"{name}: /metrics answered {reply.status}"
        assert reply.headers.get("content-type", "").startswith("text/plain")
        body = reply.body
        assert "haproxy_process_nbthread" in body
        for web in inventory.webservers:
            assert re.search(rf'^haproxy_server_status\{{proxy="[^"]+",server="{web}",state="UP"\}} 1$',
                             body, re.MULTILINE), f"{name}: no UP status metric for {web}"


def test_vip_is_bound_on_both_load_balancers(inventory, nodes):
    """ip_nonlocal_bind lets the standby listen on the VIP before it holds it."""
    for name in inventory.loadbalancers:
        node = nodes[name]
        assert node.check_output("sysctl -n net.ipv4.ip_nonlocal_bind") == "1", name
        assert "net.ipv4.ip_nonlocal_bind = 1" in node.file("/etc/sysctl.d/60-lay7-haproxy-l7.conf").content_string
        listeners = node.check_output("ss -Htln 'sport = :80'")
        assert f"{inventory.vip}:80" in listeners, f"{name} does not listen on the VIP: {listeners!r}"


def test_runtime_api_socket_answers(inventory, nodes):
    for name in inventory.loadbalancers:
        node = nodes[name]
        sock = node.file(SOCKET)
        assert sock.is_socket and sock.mode == 0o660 and sock.group == "haproxy", name
        info = node.check_output(f"echo 'show info' | socat stdio {SOCKET}")
        # The running process is the release's HAProxy: 2.6 on Debian 12, 3.0 on Debian 13.
        _, haproxy, _ = DEBIAN_RELEASES[debian_release(node)]
        assert "Name: HAProxy" in info and re.search(rf"^Version: {re.escape(haproxy)}\.", info, re.MULTILINE), info[:300]
        servers = node.check_output(f"echo 'show servers state' | socat stdio {SOCKET}")
        for web in inventory.webservers:
            assert f" {web} " in servers, f"{name}: runtime API does not know {web}"


def test_deployed_config_is_valid_and_runs_master_worker(inventory, nodes):
    for name in inventory.loadbalancers:
        node = nodes[name]
        check = node.run(f"haproxy -c -f {CONFIG}")
        assert check.rc == 0, f"{name}: {check.stdout}{check.stderr}"
        assert "[WARNING]" not in check.stdout + check.stderr, check.stdout + check.stderr
        assert node.service("haproxy").is_running and node.service("haproxy").is_enabled
        pid = node.check_output("systemctl show -p MainPID --value haproxy")
        cmdline = node.file(f"/proc/{pid}/cmdline").content_string.replace("\0", " ")
        assert " -Ws " in f" {cmdline} ", f"{name}: master not in master-worker mode: {cmdline}"


def test_requests_are_logged_to_the_journal(lab, inventory, nodes, vip: HttpClient):
    holder = vip_holders(lab, inventory)
    assert len(holder) == 1, f"VIP holders: {holder}"
    probe = f"/lay7-log-probe-{uuid.uuid4().hex[:12]}"
    since = time.time()
    vip.get(probe)
    node = nodes[holder[0]]
    wait_for(lambda: probe in node.check_output(
        f"journalctl --no-pager --since @{int(since) - 1} -t haproxy"), 15, f"{probe} in {holder[0]}'s journal")


def test_reload_under_traffic_drops_nothing(lab, inventory, nodes, vip: HttpClient):
    """systemctl reload (master-worker, SIGUSR2) keeps the master and loses no request."""
    holder = vip_holders(lab, inventory)
    assert len(holder) == 1, f"VIP holders: {holder}"
    node = nodes[holder[0]]
    pid_before = node.check_output("systemctl show -p MainPID --value haproxy")
    results: list[int | None] = []
    stop = threading.Event()

    def load() -> None:
        deadline = time.monotonic() + 20  # bounded in time and count
        while not stop.is_set() and time.monotonic() < deadline and len(results) < 2000:
            reply = vip.try_get("/")
            results.append(reply.status if reply else None)

    worker = threading.Thread(target=load)
    worker.start()
    try:
        time.sleep(0.5)
        for _reload in range(3):
            node.run_expect([0], "systemctl reload haproxy")
            time.sleep(0.7)
    finally:
        stop.set()
        worker.join(timeout=30)
    failed = [r for r in results if r != 200]
    assert len(results) > 20, f"too few requests sent during the reloads: {len(results)}"
    assert not failed, f"{len(failed)} of {len(results)} requests failed during reloads: {failed[:10]}"
    assert node.check_output("systemctl show -p MainPID --value haproxy") == pid_before
