"""Every host is a real, reachable system of its own (any substrate: lab or Vagrant).

Runs under Molecule's testinfra verifier: one test per host of the scenario's inventory.
"""

import json
import os
import shlex
import socket

import pytest
from testinfra.utils.ansible_runner import AnsibleRunner

INTERFACE = "eth1"  # the lab interface name on every substrate (docs/development.md)


@pytest.fixture(scope="module")
def addresses():
    """Inventory host name -> the host's address on the lab network (eth1)."""
    runner = AnsibleRunner(os.environ["MOLECULE_INVENTORY_FILE"])
    return {name: _topology_address(runner.get_variables(name)) for name in runner.get_hosts("all")}


def _topology_address(hostvars):
    """lay7_node_address when the inventory gives it literally (Vagrant: Ansible connects over
    the management network), else ansible_host (the lab: the template "{{ ansible_host }}")."""
    literal = str(hostvars.get("lay7_node_address", ""))
    return literal if literal and "{{" not in literal else hostvars["ansible_host"]


def _name(host):
    return host.backend.get_hostname()


def test_systemd_is_pid1_and_running(host):
    assert host.file("/proc/1/comm").content_string.strip() == "systemd"
    state = host.run("systemctl is-system-running")
    failed = host.run("systemctl --failed --no-legend --plain").stdout
    assert state.stdout.strip() == "running", f"system state {state.stdout.strip()!r}; failed units:\n{failed}"


def test_own_hostname(host):
    assert host.check_output("hostname") == _name(host)


def test_own_machine_id(host, addresses):
    # Overlays share one base image: each host must still be its own machine.
    mine = host.file("/etc/machine-id").content_string.strip()
    assert len(mine) == 32
    others = set()
    for other in addresses:
        if other != _name(host):
            others.add(host.get_host(f"ansible://{other}", ansible_inventory=os.environ["MOLECULE_INVENTORY_FILE"])
                       .file("/etc/machine-id").content_string.strip())
    assert mine not in others


def test_own_address_on_lab_interface(host, addresses):
    out = json.loads(host.check_output(f"ip -j -4 addr show dev {INTERFACE}"))
    assert out, f"{INTERFACE} missing"
    mine = [a["local"] for a in out[0]["addr_info"]]
    assert addresses[_name(host)] in mine
    assert "UP" in out[0]["flags"]


def test_reaches_every_other_host(host, addresses):
    unreachable = []
    for other, addr in sorted(addresses.items()):
        if other == _name(host):
            continue
        # TCP to sshd, not ICMP: proves the segment and the peer's stack, needs no extra tools.
        probe = f"timeout 3 bash -c {shlex.quote(f'exec 3<>/dev/tcp/{addr}/22')}"
        if host.run(probe).rc != 0:
            unreachable.append(f"{other} ({addr})")
    assert not unreachable, f"{_name(host)} cannot reach: {', '.join(unreachable)}"


def test_control_node_reaches_host(host, addresses):
    addr = addresses[_name(host)]
    with socket.create_connection((addr, 22), timeout=3) as sock:
        banner = sock.recv(64)
    assert banner.startswith(b"SSH-2.0-")
