"""Session persistence through the VIP, also across a VIP move.

The seed inventory has no multi-server pool with persistence, so this module
re-deploys the load balancers (site.yml, --limit loadbalancers) with two extra pools
of web1-web3 — `persist_cookie` (cookie insert) behind /persist/cookie and
`persist_stick` (stick-table replicated through peers) behind /persist/stick — added
to the inventory's own route table through extra vars. The finalizer re-deploys
without them and checks they are gone, so later tests see the seed configuration.

The VIP is moved by stopping keepalived on its holder (the `faults` fixture starts it
again and waits for the VIP to come back).

The same multi-server pool also shows the failure handling of a pool (retries with
redispatch): a server that stops while requests flow costs the clients no request.
"""

from __future__ import annotations

import copy
import json
import os
import re
import subprocess
import time
from pathlib import Path

import pytest
import yaml
from conftest import ROOT, HttpClient, inventory_path, vip_holders, wait_for

CONFIG = "/etc/haproxy/haproxy.cfg"
SOCKET = "/run/haproxy/admin.sock"
REQUESTS = 20
CONVERGE_TIMEOUT = 600


def _inventory_dir() -> Path:
    path = Path(inventory_path())
    return path if path.is_dir() else path.parent


def _converge(extra_vars: Path | None) -> None:
    # Only the load balancer role changes (its backends and routes): its tag alone, as a
    # route-table deploy would run it (half the time of every role on both nodes).
    cmd = ["ansible-playbook", "-i", str(_inventory_dir()), str(ROOT / "site.yml"), "--limit", "loadbalancers",
           "--tags", "haproxy_l7"]
    if extra_vars:
        cmd += ["-e", f"@{extra_vars}"]
    env = dict(os.environ)
    env.setdefault("ANSIBLE_CONFIG", str(ROOT / "ansible.cfg"))
    env.setdefault("ANSIBLE_COLLECTIONS_PATH", str(ROOT / ".collections"))
    result = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True,
                            timeout=CONVERGE_TIMEOUT, check=False)
    assert result.returncode == 0, f"converge failed:\n{result.stdout[-4000:]}\n{result.stderr[-2000:]}"


def _extra_vars(tmp: Path) -> Path:
    """The inventory's route table plus the two persistence pools (templates kept as they are)."""
    group_vars = yaml.safe_load((ROOT / "inventory" / "lab" / "group_vars" / "loadbalancers.yml").read_text())
    backends = copy.deepcopy(group_vars["haproxy_l7_backends"])
    routes = copy.deepcopy(group_vars["haproxy_l7_routes"])
    servers = [{"name": web, "address": f"{{{{ hostvars['{web}']['lay7_node_address'] }}}}", "port": 80}
               for web in ("web1", "web2", "web3")]
    backends["persist_cookie"] = {"persistence": "cookie", "servers": copy.deepcopy(servers)}
    backends["persist_stick"] = {"persistence": "stick-table", "servers": copy.deepcopy(servers)}
    routes += [
        {"name": "persist_cookie", "path": "/persist/cookie", "match": "prefix", "backend": "persist_cookie"},
        {"name": "persist_stick", "path": "/persist/stick", "match": "prefix", "backend": "persist_stick"},
    ]
    out = tmp / "persistence-pools.json"
    out.write_text(json.dumps({"haproxy_l7_backends": backends, "haproxy_l7_routes": routes}))
    return out


@pytest.fixture(scope="module")
def persistence_pools(tmp_path_factory, inventory, nodes):
    _converge(_extra_vars(tmp_path_factory.mktemp("persistence")))
    for name in inventory.loadbalancers:
        assert "backend persist_stick" in nodes[name].file(CONFIG).content_string, name
    try:
        yield
    finally:
        _converge(None)
        for name in inventory.loadbalancers:
            assert "persist_" not in nodes[name].file(CONFIG).content_string, f"{name}: extra pools left behind"


def _server_ids(node, backend: str) -> dict[str, str]:
    """server id -> server name of a backend, as deployed."""
    text = node.file(CONFIG).content_string
    block = text.split(f"\nbackend {backend}\n", 1)[1].split("\nbackend ", 1)[0]
    return {m.group(2): m.group(1) for m in re.finditer(r"^\s*server (\S+) \S+ id (\d+)\b", block, re.MULTILINE)}


def _same_server(vip: HttpClient, path: str, headers: dict[str, str] | None = None) -> set[str | None]:
    servers = set()
    for _request in range(REQUESTS):
        reply = vip.get(path, headers)
        assert reply.status == 200, f"{path}: {reply.status}"
        servers.add(reply.served_by)
    return servers


def _move_vip(faults, lab, inventory) -> str:
    holders = vip_holders(lab, inventory)
    assert len(holders) == 1, f"VIP holders: {holders}"
    other = next(n for n in inventory.loadbalancers if n != holders[0])
    faults.stop_service(holders[0], "keepalived")
    wait_for(lambda: vip_holders(lab, inventory) == [other], 20, f"VIP moved to {other}")
    return other


def test_cookie_keeps_a_client_on_one_server_across_a_vip_move(
        persistence_pools, faults, lab, inventory, vip: HttpClient):
    # Without the cookie the pool round-robins: persistence is what the rest observes.
    without = {vip.get("/persist/cookie").served_by for _request in range(6)}
    assert len(without) >= 2, f"pool did not balance without a cookie: {without}"

    first = vip.get("/persist/cookie")
    assert first.status == 200
    set_cookie = first.headers.get("set-cookie", "")
    match = re.match(r"([^=;\s]+)=([^;]+)", set_cookie)
    assert match, f"no persistence cookie inserted: {set_cookie!r}"
    cookie = {"Cookie": f"{match.group(1)}={match.group(2)}"}
    # The cookie value names the server, identically on both load balancers.
    assert match.group(2) == first.served_by

    assert _same_server(vip, "/persist/cookie", cookie) == {first.served_by}
    new_holder = _move_vip(faults, lab, inventory)
    assert _same_server(vip, "/persist/cookie", cookie) == {first.served_by}, f"after the VIP moved to {new_holder}"


def test_stick_table_is_replicated_and_survives_a_vip_move(
        persistence_pools, faults, lab, inventory, nodes, vip: HttpClient):
    servers = _same_server(vip, "/persist/stick")
    assert len(servers) == 1, f"stick-table pool spread one client over {servers}"
    server = servers.pop()

    # The entry for the control node's address is on both load balancers (peers), with
    # the server id that means the same server on both.
    def entry(node) -> str | None:
        table = node.check_output(f"echo 'show table persist_stick' | socat stdio {SOCKET}")
        match = re.search(rf"key={re.escape(inventory.control)} .*?server_id=(\d+)", table)
        return match.group(1) if match else None

    for name in inventory.loadbalancers:
        node = nodes[name]
        wait_for(lambda node=node: entry(node) is not None, 10, f"stick entry replicated to {name}")
        assert _server_ids(node, "persist_stick")[entry(node)] == server, f"{name} maps the client elsewhere"

    new_holder = _move_vip(faults, lab, inventory)
    assert _same_server(vip, "/persist/stick") == {server}, f"after the VIP moved to {new_holder}"


def test_a_server_stopping_under_traffic_costs_no_request(persistence_pools, faults, vip: HttpClient, timings):
    """retry-on conn-failure + option redispatch: requests that hit the dying server are replayed elsewhere."""
    statuses: list[int | None] = []
    served: list[str | None] = []
    deadline = time.monotonic() + 15  # bounded in time and count
    stopped_at = None
    while time.monotonic() < deadline and len(statuses) < 150:
        if len(statuses) == 30:
            faults.stop_service("web3", "apache2")
            stopped_at = len(statuses)
        reply = vip.try_get("/persist/cookie")
        statuses.append(reply.status if reply else None)
        served.append(reply.served_by if reply else None)
    assert stopped_at is not None and len(statuses) >= 60, f"only {len(statuses)} requests sent"
    failed = [s for s in statuses if s != 200]
    timings["pool_server_stop_failed_requests"] = len(failed)
    timings["pool_server_stop_requests"] = len(statuses)
    assert not failed, f"{len(failed)} of {len(statuses)} requests failed while web3 stopped: {failed[:10]}"
    assert "web3" in served[:stopped_at], "web3 served nothing before it stopped: the test proves nothing"
    assert "web3" not in served[stopped_at:], "a stopped server answered"
