"""Every host is a real, reachable system of its own (any substrate: lab or Vagrant).

Runs under Molecule's testinfra verifier: one test per host of the scenario's inventory.
"""

import json
import shlex
import socket

import pytest
from conftest import INTERFACE, inventory_path


@pytest.fixture(scope="module")
def addresses(inventory):
    """Inventory host name -> the host's address on the lab network (eth1), which on
    Vagrant is not the address Ansible connects to."""
    return inventory.addresses


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
            others.add(host.get_host(f"ansible://{other}", ansible_inventory=inventory_path())
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
