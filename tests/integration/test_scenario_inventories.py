"""What each inventory built from inventory/lab gives every host, through real Ansible.

The topology is written once (inventory/lab/hosts.yml) and linked into both Molecule
scenarios, whose generated ansible_inventory.yml sets each host's connection as host vars.
This rebuilds Molecule's inventory directory for each scenario (the generated file plus the
scenario's `inventory.links`) and reads the variables with ansible-inventory and the debug
module (on the controller: no host is contacted).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from conftest import ROOT

BIN = Path(sys.executable).parent
TOPOLOGY = {"hap1": "192.168.56.21", "hap2": "192.168.56.22",
            "web1": "192.168.56.11", "web2": "192.168.56.12", "web3": "192.168.56.13"}
LAB_KEY = "/var/lib/lay7-lab/id_ed25519"


def _env(tmp_path: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("ANSIBLE_")}
    env.update({"PATH": f"{BIN}{os.pathsep}{env.get('PATH', '')}", "ANSIBLE_LOCAL_TEMP": str(tmp_path / "tmp"),
                "ANSIBLE_NOCOLOR": "1", "ANSIBLE_INVENTORY_UNPARSED_WARNING": "false"})
    return env


def _hostvars(tmp_path: Path, inventory: Path) -> dict[str, dict]:
    res = subprocess.run([str(BIN / "ansible-inventory"), "-i", str(inventory), "--list"], env=_env(tmp_path),
                         capture_output=True, text=True, timeout=120, check=True)
    return json.loads(res.stdout)["_meta"]["hostvars"]


def _templated(tmp_path: Path, inventory: Path, var: str) -> dict[str, str]:
    """The value each host gets for var once templated (the debug module runs on the controller)."""
    res = subprocess.run([str(BIN / "ansible"), "-i", str(inventory), "all", "-o", "-m", "ansible.builtin.debug",
                          "-a", f"var={var}"], env=_env(tmp_path), capture_output=True, text=True, timeout=120,
                         check=True)
    values = {}
    for line in res.stdout.splitlines():
        host, _, rest = line.partition(" | SUCCESS => ")
        values[host] = json.loads(rest)[var]
    return values


def _molecule_inventory(tmp_path: Path, scenario: str) -> Path:
    """Molecule's inventory directory for a scenario: ansible_inventory.yml (connection
    options per host, as the driver writes them) and the scenario's links."""
    scenario_dir = ROOT / "molecule" / scenario
    config = yaml.safe_load((scenario_dir / "molecule.yml").read_text())
    inv = tmp_path / scenario
    inv.mkdir()
    hosts = {}
    for i, platform in enumerate(config["platforms"]):
        hosts[platform["name"]] = {
            "ansible_host": f"198.51.100.{10 + i}", "ansible_port": 2200 + i, "ansible_user": "vagrant",
            "ansible_private_key_file": f"/molecule/{platform['name']}/private_key", "ansible_connection": "ssh",
            "ansible_ssh_common_args": "-o UserKnownHostsFile=/dev/null",
        }
    generated = {"all": {"hosts": hosts, "vars": {}}, "ungrouped": {"vars": {}}}
    for platform in config["platforms"]:
        for group in platform["groups"]:
            generated.setdefault(group, {"hosts": {}})["hosts"][platform["name"]] = hosts[platform["name"]]
    (inv / "ansible_inventory.yml").write_text(yaml.safe_dump(generated))
    for name, source in config["provisioner"]["inventory"]["links"].items():
        (inv / name).symlink_to((scenario_dir / source).resolve())
    return inv


def test_the_lab_inventory_reaches_each_host_at_its_topology_address(tmp_path):
    inv = ROOT / "inventory" / "lab"
    hostvars = _hostvars(tmp_path, inv)
    assert {h: v["lay7_node_address"] for h, v in hostvars.items()} == TOPOLOGY
    assert all(v["ansible_ssh_private_key_file"] == LAB_KEY for v in hostvars.values())
    assert _templated(tmp_path, inv, "ansible_host") == TOPOLOGY


@pytest.mark.parametrize("scenario", ["lab", "vagrant"])
def test_molecule_connection_wins_and_the_topology_address_stays(tmp_path, scenario):
    inv = _molecule_inventory(tmp_path, scenario)
    hostvars = _hostvars(tmp_path, inv)
    assert set(hostvars) == set(TOPOLOGY)
    # Molecule's per-host ansible_host outranks the topology's `all: vars:` default ...
    assert _templated(tmp_path, inv, "ansible_host") == {
        h: f"198.51.100.{10 + i}" for i, h in enumerate(TOPOLOGY)}
    # ... and the topology address is the one the site playbook builds peers and backends from.
    assert _templated(tmp_path, inv, "lay7_node_address") == TOPOLOGY
    lb = hostvars["hap1"]
    assert lb["keepalived_vip_address"] == "192.168.56.100"
    if scenario == "vagrant":
        # Not the lab's key: ansible_ssh_private_key_file would beat Molecule's
        # ansible_private_key_file whatever the precedence.
        assert not any("ansible_ssh_private_key_file" in v for v in hostvars.values())
        # The VMs' looser VRRP timings (vagrant/inventory/vms.yml), on the load balancers only.
        assert (lb["keepalived_vip_advert_interval"], lb["keepalived_vip_watchdog_timeout"],
                lb["keepalived_vip_watchdog_fall"]) == (0.5, 3, 3)
        assert "keepalived_vip_advert_interval" not in hostvars["web1"]
    else:
        assert all(v["ansible_ssh_private_key_file"] == LAB_KEY for v in hostvars.values())
        assert "keepalived_vip_advert_interval" not in lb
