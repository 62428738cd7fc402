#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright: lay7.ha maintainers
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""The lay7.ha.vip_state module: whether this load balancer holds the VIP, and its VRRP state."""

from __future__ import annotations

DOCUMENTATION = r"""
module: vip_state
short_description: Whether this node holds the VIP and what VRRP state keepalived is in; wait for a change; announce the VIP
version_added: 0.3.0
author: lay7.ha maintainers (@lay7)
description:
  - Reads whether the host holds a virtual IP address on a network interface, and the VRRP state
    keepalived entered last in its current run (C(MASTER), C(BACKUP), C(FAULT)), or C(STOPPED).
  - Optionally waits, with a bound, until the host holds the VIP, has released it, or is ready to take
    it over (keepalived running in C(BACKUP) or C(MASTER)). The collection's load-balancer maintenance
    playbook uses it to move the VIP only by planned releases, never by a failover.
  - Optionally announces the VIP when this host holds it - gratuitous ARPs on the interface that holds
    it, like keepalived sends when it becomes master - so that every neighbour's ARP cache points at this
    host. lay7.ha.keepalived_vip does that after a reload, because a reload that re-initialises the VRRP instance
    (a change of how the load balancers hear each other, such as unicast to multicast) makes the node
    that held the VIP drop it without a word, and clients that last heard from it would keep sending to
    it until their ARP entries age out.
  - Changes nothing on the host; reports C(changed=false) always.
  - The VIP counts only on a network interface. During a planned release the old holder keeps the
    address on C(lo) for half a second (lay7.ha.keepalived_vip's handover), which is not holding it.
  - The state is read from the journal lines keepalived's VRRP process wrote in the unit's current
    invocation (C(_SYSTEMD_INVOCATION_ID)), so a state from before the last start never counts.
options:
  address:
    description: The VIP (an IPv4 address).
    type: str
    required: true
  unit:
    description: keepalived's systemd unit.
    type: str
    default: keepalived.service
  wait_for:
    description:
      - V(held) - until this host holds the VIP.
      - V(released) - until it does not.
      - V(ready) - until keepalived runs and entered C(BACKUP) or C(MASTER) (not C(FAULT)) in its current run.
      - Left out, nothing is waited for.
    type: str
    choices: [held, released, ready]
  timeout:
    description: Seconds to wait, at most (1-3600); the task then fails with what it saw last.
    type: int
    default: 30
  announce:
    description:
      - Number of gratuitous ARP requests (0-10) to broadcast for the VIP, back to back, after any wait,
        when this host holds it. 0 announces nothing. A host that does not hold the VIP never announces it.
    type: int
    default: 0
attributes:
  check_mode:
    support: full
    description: Reads and waits the same way; it never changes anything and announces nothing.
  diff_mode:
    support: none
    description: Nothing changes, so there is nothing to show.
notes:
  - Needs C(ip), C(systemctl) and C(journalctl), and read access to the system journal (root); announcing
    needs a raw packet socket (root).
"""

EXAMPLES = r"""
- name: Wait until this node has given the VIP away
  lay7.ha.vip_state:
    address: 192.168.56.100
    wait_for: released
    timeout: 10

- name: Make every neighbour send to this node, if it holds the VIP
  lay7.ha.vip_state:
    address: 192.168.56.100
    announce: 3

- name: Read where the VIP is
  lay7.ha.vip_state:
    address: "{{ keepalived_vip_address }}"
  register: vip
"""

RETURN = r"""
held:
  description: Whether this host holds the VIP on a network interface.
  returned: always
  type: bool
vrrp_state:
  description: The VRRP state keepalived entered last in its current run, C(STOPPED) when it does not run, C(UNKNOWN) before its first transition.
  returned: always
  type: str
  sample: BACKUP
waited:
  description: Seconds spent waiting.
  returned: always
  type: float
announced:
  description: Gratuitous ARPs sent for the VIP (0 unless O(announce) was asked for and this host holds it).
  returned: always
  type: int
interface:
  description: The network interface that holds the VIP here, empty when it is not held.
  returned: always
  type: str
  sample: eth1
"""

import ipaddress
import re
import socket
import struct
import time

from ansible.module_utils.basic import AnsibleModule

VRRP_TAG = "Keepalived_vrrp"
ENTERING = re.compile(r"Entering ([A-Z]+) STATE")


def holder_interface(ip_output: str, address: str) -> str:
    """The interface other than lo that holds the address in `ip -o -4 addr show`, or ''."""
    for line in ip_output.splitlines():
        fields = line.split()
        if len(fields) >= 4 and fields[1] != "lo" and fields[2] == "inet" and fields[3].split("/")[0] == address:
            # `ip -o` names a VLAN or veth interface "eth1@if5": the part before @ is its name.
            return fields[1].split("@")[0]
    return ""


ETH_BROADCAST = b"\xff" * 6
ETH_P_ARP = 0x0806


def gratuitous_arp(mac: bytes, address: str) -> bytes:
    """An Ethernet frame with a gratuitous ARP request for address from mac: sender and target
    address both the VIP, broadcast - what keepalived sends on becoming master. Receivers update
    an existing ARP entry for the address at once (a gratuitous ARP overrides the kernel's lock
    time); padded to the 60-byte Ethernet minimum."""
    if len(mac) != 6:
        raise ValueError(f"a MAC address has 6 bytes, got {len(mac)}")
    ip = socket.inet_aton(address)
    arp = struct.pack("!HHBBH", 1, 0x0800, 6, 4, 1) + mac + ip + ETH_BROADCAST + ip
    return (ETH_BROADCAST + mac + struct.pack("!H", ETH_P_ARP) + arp).ljust(60, b"\x00")


def announce(interface: str, address: str, count: int) -> int:
    """Broadcast count gratuitous ARPs for address on interface; returns how many were sent."""
    with socket.socket(socket.AF_PACKET, socket.SOCK_RAW, socket.htons(ETH_P_ARP)) as sock:
        sock.bind((interface, 0))
        frame = gratuitous_arp(sock.getsockname()[4], address)
        for _sent in range(count):
            sock.send(frame)
    return count


def last_state(journal: str) -> str:
    """The newest "Entering X STATE" of journal lines printed newest first."""
    for line in journal.splitlines():
        found = ENTERING.search(line)
        if found:
            return found.group(1)
    return "UNKNOWN"


def read(module: AnsibleModule, address: str, unit: str) -> tuple:
    """(interface holding the VIP or '', VRRP state)."""
    rc, out, err = module.run_command(["ip", "-o", "-4", "addr", "show"])
    if rc != 0:
        module.fail_json(msg=f"ip addr show failed: {err.strip()}")
    interface = holder_interface(out, address)
    rc, show, err = module.run_command(["systemctl", "show", "-p", "ActiveState,InvocationID", unit])
    if rc != 0:
        module.fail_json(msg=f"systemctl show {unit} failed: {err.strip()}")
    props = dict(line.split("=", 1) for line in show.splitlines() if "=" in line)
    if props.get("ActiveState") != "active" or not props.get("InvocationID"):
        return interface, "STOPPED"
    rc, journal, err = module.run_command([
        "journalctl", "--no-pager", "-q", "-o", "cat", "-r", "-n", "1", "-t", VRRP_TAG,
        f"_SYSTEMD_INVOCATION_ID={props['InvocationID']}", "--grep", "Entering [A-Z]+ STATE",
    ])
    # journalctl exits 1 when --grep matches nothing: keepalived has not changed state yet.
    if rc not in (0, 1):
        module.fail_json(msg=f"journalctl failed: {err.strip()}")
    return interface, last_state(journal)


def done(wait_for: str, is_held: bool, state: str) -> bool:
    if wait_for == "held":
        return is_held
    if wait_for == "released":
        return not is_held
    return state in ("BACKUP", "MASTER")


def main():
    module = AnsibleModule(
        argument_spec=dict(
            address=dict(type="str", required=True),
            unit=dict(type="str", default="keepalived.service"),
            wait_for=dict(type="str", choices=["held", "released", "ready"]),
            timeout=dict(type="int", default=30),
            announce=dict(type="int", default=0),
        ),
        supports_check_mode=True,
    )
    p = module.params
    try:
        address = str(ipaddress.IPv4Address(p["address"]))
    except ValueError:
        module.fail_json(msg=f"address must be an IPv4 address, got {p['address']!r}")
    if not 1 <= p["timeout"] <= 3600:
        module.fail_json(msg=f"timeout must be between 1 and 3600 seconds, got {p['timeout']}")
    if not 0 <= p["announce"] <= 10:
        module.fail_json(msg=f"announce must be between 0 and 10 gratuitous ARPs, got {p['announce']}")

    started = time.monotonic()
    while True:
        interface, state = read(module, address, p["unit"])
        is_held = bool(interface)
        waited = round(time.monotonic() - started, 2)
        if p["wait_for"] is None or done(p["wait_for"], is_held, state):
            sent = 0
            if is_held and p["announce"] and not module.check_mode:
                try:
                    sent = announce(interface, address, p["announce"])
                except OSError as exc:
                    module.fail_json(msg=f"announcing {address} on {interface} failed: {exc}", held=is_held,
                                     vrrp_state=state, waited=waited, interface=interface)
            module.exit_json(changed=False, held=is_held, vrrp_state=state, waited=waited,
                             announced=sent, interface=interface)
        if waited >= p["timeout"]:
            module.fail_json(
                msg=f"not {p['wait_for']} after {p['timeout']} s: VIP {address} "
                f"{'held' if is_held else 'not held'} here, VRRP state {state}",
                held=is_held, vrrp_state=state, waited=waited, announced=0, interface=interface,
            )
        time.sleep(0.2)


if __name__ == "__main__":
    main()
