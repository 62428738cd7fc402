"""Direct access cut by the firewall; real client address in
the access log even with a forged X-Forwarded-For; health checks never logged."""

import time
import uuid

import pytest

from conftest import tcp_connects, wait_for

ACCESS_LOG = "/var/log/apache2/lay7_access.log"


@pytest.mark.parametrize("web", ["web1", "web2", "web3"])
def test_direct_http_to_web_server_fails_from_control(inventory, web):
    assert not tcp_connects(inventory.addresses[web], 80, timeout=2.0), (
        f"{web}:80 accepted a connection from the control node; only the load balancers may reach it")


@pytest.mark.parametrize("web", ["web1", "web2", "web3"])
def test_ssh_stays_open_on_web_server(inventory, web):
    assert tcp_connects(inventory.addresses[web], 22, timeout=2.0), f"{web}:22 (SSH) is not reachable"


def test_same_page_works_through_the_vip(vip):
    reply = vip.get("/")
    assert reply.status == 200
    assert reply.served_by == "web1"


@pytest.mark.parametrize("lb", ["hap1", "hap2"])
def test_load_balancers_reach_web_servers_directly(nodes, inventory, lb):
    for web in inventory.webservers:
        code = nodes[lb].check_output(
            f"curl -s -m 3 -o /dev/null -w '%{{http_code}}' http://{inventory.addresses[web]}/")
        assert code == "200", f"{lb} -> {web}:80 gave HTTP {code}"


def _log_line(node, marker: str) -> str:
    def find():
        out = node.run(f"grep -F -- {marker} {ACCESS_LOG}")
        return out.stdout.strip() if out.rc == 0 else ""
    wait_for(find, 10, f"access log line for {marker}", interval=0.5)
    lines = find().splitlines()
    assert len(lines) == 1, f"expected one log line for {marker}, got {lines}"
    return lines[0]


def _field(line: str, name: str) -> str:
    """A name=value field of the lay7_client log format (after the quoted user agent)."""
    return line.rsplit(f" {name}=", 1)[-1].split(" ", 1)[0].strip()


@pytest.mark.parametrize("forged", [None, "203.0.113.7", "203.0.113.7, 198.51.100.9", "192.168.56.21"])
def test_access_log_shows_real_client_address(vip, nodes, inventory, forged):
    """%a must be the control node's address; a client-supplied X-Forwarded-For is ignored,
    even when it names a trusted load balancer."""
    marker = f"/logcheck-{uuid.uuid4().hex}"
    headers = {"X-Forwarded-For": forged} if forged else {}
    reply = vip.get(marker, headers=headers)
    assert reply.status == 200 and reply.served_by == "web1"
    line = _log_line(nodes["web1"], marker)
    client = line.split(" ", 1)[0]
    assert client == inventory.control, f"logged client {client!r}, expected the control node {inventory.control}: {line}"
    peer = _field(line, "peer")
    assert peer in [inventory.addresses[lb] for lb in inventory.loadbalancers], f"peer {peer!r} is not a load balancer"
    if forged:
        for address in forged.split(", "):
            if address not in (inventory.addresses[lb] for lb in inventory.loadbalancers):
                assert address not in line, f"forged address {address} reached the log: {line}"


def test_health_checks_are_not_logged(vip, nodes, inventory):
    """HAProxy checks every server each second; after at least a minute of checks no
    access log holds a /healthz line, while ordinary requests are logged."""
    lb = nodes[inventory.master]
    uptime = float(lb.check_output(
        "echo $(( $(date +%s) - $(date -d \"$(systemctl show -p ActiveEnterTimestamp --value haproxy)\" +%s) ))"))
    if uptime < 60:
        time.sleep(60 - uptime)  # bounded: at most one minute
    # A /healthz request of our own goes through the VIP (routed to web1) and is not logged either.
    marker = f"/after-healthz-{uuid.uuid4().hex}"
    assert vip.get("/healthz").status == 200
    assert vip.get(marker).status == 200
    _log_line(nodes["web1"], marker)
    for web in inventory.webservers:
        hits = nodes[web].run(f"grep -c ' /healthz' {ACCESS_LOG}")
        assert hits.stdout.strip() == "0", f"{web}: {hits.stdout.strip()} health-check lines in {ACCESS_LOG}"
