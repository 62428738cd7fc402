"""playbooks/vars/topology.yml through real Ansible: the role inputs the site playbook passes.

The unit tests check lay7.ha.lb_cluster on plain dicts; this runs ansible-playbook with the
site playbook's vars file against the lab inventory (and variants of it) and reads the
values each host would get. Only `debug` tasks run, on the controller: no host is contacted.
"""

from __future__ import annotations

import json
import os
import pathlib
import subprocess
import sys

import yaml

from conftest import ROOT

BIN = pathlib.Path(sys.executable).parent
SHOWN = [
    "apache_web_trusted_proxies", "apache_web_http_allowed_sources",
    "keepalived_vip_priority", "keepalived_vip_peer_priorities", "keepalived_vip_unicast_src",
    "keepalived_vip_unicast_peers", "keepalived_vip_vrrp_allowed_sources", "keepalived_vip_reserved_router_ids",
    "haproxy_l7_peers", "haproxy_l7_stats_address", "haproxy_l7_frontend_address",
]


def _collections_root() -> str:
    for path in sys.path:
        if (pathlib.Path(path) / "ansible_collections" / "lay7" / "ha" / "galaxy.yml").is_file():
            return path
    raise AssertionError("the lay7.ha collection is not importable (tests/conftest.py)")


def _inventory(tmp_path: pathlib.Path, lb_vars: dict | None = None, lbs: dict | None = None) -> pathlib.Path:
    """The lab inventory's hosts and group_vars, with extra per-load-balancer variables."""
    lbs = lbs or {"hap1": "192.168.56.21", "hap2": "192.168.56.22"}
    group_vars = {p.stem: yaml.safe_load(p.read_text()) for p in (ROOT / "inventory" / "lab" / "group_vars").glob("*.yml")}
    hosts = {
        "all": {
            "vars": group_vars.get("all") or {},
            "children": {
                "loadbalancers": {
                    "vars": group_vars.get("loadbalancers") or {},
                    "hosts": {h: {"lay7_node_address": a, **(lb_vars or {}).get(h, {})} for h, a in lbs.items()},
                },
                "webservers": {
                    "vars": group_vars.get("webservers") or {},
                    "hosts": {"web1": {"lay7_node_address": "192.168.56.11"},
                              "web2": {"lay7_node_address": "192.168.56.12"}},
                },
            },
        }
    }
    path = tmp_path / "hosts.yml"
    path.write_text(yaml.safe_dump(hosts))
    return path


def _render(tmp_path: pathlib.Path, inventory: pathlib.Path) -> tuple[int, dict, str]:
    play = [{
        "name": "Show the role inputs",
        "hosts": "webservers:loadbalancers",
        "gather_facts": False,
        "vars_files": [str(ROOT / "playbooks" / "vars" / "topology.yml")],
        "tasks": [{
            "name": "Write what each host gets",
            "ansible.builtin.copy": {
                "content": "{{ shown | to_json }}",
                "dest": str(tmp_path / "{{ inventory_hostname }}.json"),
                "mode": "0600",
            },
            "delegate_to": "localhost",
            "vars": {
                "ansible_connection": "local",
                "ansible_python_interpreter": "{{ ansible_playbook_python }}",
                "shown": {name: f"{{{{ {name} }}}}" for name in SHOWN} | {
                    "rollout_rank": "{{ lay7_node['rollout_rank'] | default('') }}"},
            },
        }],
    }]
    playbook = tmp_path / "show.yml"
    playbook.write_text(yaml.safe_dump(play))
    env = {k: v for k, v in os.environ.items() if not k.startswith("ANSIBLE_")}
    env.update({
        "PATH": f"{BIN}{os.pathsep}{env.get('PATH', '')}",
        "ANSIBLE_COLLECTIONS_PATH": _collections_root(),
        "ANSIBLE_LOCAL_TEMP": str(tmp_path / "tmp"),
        "ANSIBLE_NOCOLOR": "1",
    })
    res = subprocess.run([str(BIN / "ansible-playbook"), "-i", str(inventory), str(playbook)],
                         env=env, capture_output=True, text=True, timeout=180, check=False)
    shown = {p.stem: json.loads(p.read_text()) for p in tmp_path.glob("*.json")}
    return res.returncode, shown, res.stdout + res.stderr


def test_the_lab_inventory(tmp_path):
    rc, shown, out = _render(tmp_path, _inventory(tmp_path))
    assert rc == 0, out
    lbs = ["192.168.56.21", "192.168.56.22"]
    for web in ("web1", "web2"):
        assert shown[web]["apache_web_trusted_proxies"] == lbs
        assert shown[web]["apache_web_http_allowed_sources"] == lbs
    hap1, hap2 = shown["hap1"], shown["hap2"]
    assert (int(hap1["keepalived_vip_priority"]), int(hap2["keepalived_vip_priority"])) == (254, 253)
    assert hap1["keepalived_vip_peer_priorities"] == [253]
    assert hap2["keepalived_vip_peer_priorities"] == [254]
    assert hap1["keepalived_vip_unicast_src"] == "192.168.56.21"
    assert hap1["keepalived_vip_unicast_peers"] == ["192.168.56.22"]
    assert hap2["keepalived_vip_vrrp_allowed_sources"] == ["192.168.56.21"]
    assert hap1["keepalived_vip_reserved_router_ids"] == []
    peers = [{"name": "hap1", "address": "192.168.56.21"}, {"name": "hap2", "address": "192.168.56.22"}]
    assert hap1["haproxy_l7_peers"] == peers
    assert hap2["haproxy_l7_peers"] == peers
    assert hap1["haproxy_l7_stats_address"] == "192.168.56.21"
    assert hap1["haproxy_l7_frontend_address"] == hap2["haproxy_l7_frontend_address"] != ""
    # Backups first: hap2 (253) before hap1 (254).
    assert (hap2["rollout_rank"], hap1["rollout_rank"]) == ("000", "001")


def test_inventory_values_win(tmp_path):
    lb_vars = {
        "hap1": {"keepalived_vip_priority": 120, "keepalived_vip_unicast_peers": ["192.168.56.99"],
                 "keepalived_vip_reserved_router_ids": [7]},
        "hap2": {"keepalived_vip_priority": 180},
    }
    rc, shown, out = _render(tmp_path, _inventory(tmp_path, lb_vars))
    assert rc == 0, out
    assert int(shown["hap1"]["keepalived_vip_priority"]) == 120
    assert shown["hap2"]["keepalived_vip_peer_priorities"] == [120]
    assert shown["hap1"]["keepalived_vip_unicast_peers"] == ["192.168.56.99"]
    # The override does not leak into the firewall sources, which still come from the cluster.
    assert shown["hap1"]["keepalived_vip_vrrp_allowed_sources"] == ["192.168.56.22"]
    assert shown["hap1"]["keepalived_vip_reserved_router_ids"] == [7]
    assert (shown["hap1"]["rollout_rank"], shown["hap2"]["rollout_rank"]) == ("000", "001")


def test_a_second_vip_reserves_its_router_id(tmp_path):
    lbs = {"hap1": "192.168.56.21", "hap2": "192.168.56.22", "hap3": "192.168.56.23"}
    lb_vars = {"hap3": {"keepalived_vip_address": "192.168.56.200", "keepalived_vip_router_id": 52}}
    rc, shown, out = _render(tmp_path, _inventory(tmp_path, lb_vars, lbs))
    assert rc == 0, out
    assert shown["hap1"]["keepalived_vip_reserved_router_ids"] == [52]
    assert shown["hap1"]["keepalived_vip_unicast_peers"] == ["192.168.56.22"]
    assert shown["hap3"]["keepalived_vip_unicast_peers"] == []
    assert shown["hap3"]["haproxy_l7_peers"] == [{"name": "hap3", "address": "192.168.56.23"}]


def test_a_missing_node_address_is_named(tmp_path):
    inventory = _inventory(tmp_path)
    data = yaml.safe_load(inventory.read_text())
    # The lab's inventory gives it on every host; a consumer's inventory may not.
    data["all"]["children"]["loadbalancers"]["hosts"]["hap2"].pop("lay7_node_address")
    inventory.write_text(yaml.safe_dump(data))
    rc, _, out = _render(tmp_path, inventory)
    assert rc != 0
    assert "load balancer 'hap2' has no lay7_node_address" in out, out


def test_the_example_inventory_of_the_readme(tmp_path):
    rc, shown, out = _render(tmp_path, ROOT / "inventory" / "example")
    assert rc == 0, out
    assert shown["web3"]["apache_web_trusted_proxies"] == ["10.20.0.21", "10.20.0.22"]
    assert (int(shown["lb1"]["keepalived_vip_priority"]), shown["lb1"]["keepalived_vip_unicast_peers"]) == (254, ["10.20.0.22"])
    assert shown["lb2"]["keepalived_vip_peer_priorities"] == [254]
    assert shown["lb2"]["haproxy_l7_frontend_address"] == "10.20.0.100"
    assert shown["lb1"]["haproxy_l7_stats_address"] == "10.20.0.21"
