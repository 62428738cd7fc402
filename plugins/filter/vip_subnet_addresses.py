# -*- coding: utf-8 -*-
# Copyright: lay7.ha maintainers
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""The lay7.ha.vip_subnet_addresses filter: a host's IPv4 addresses on a VIP's subnet."""

from __future__ import annotations

DOCUMENTATION = r"""
name: vip_subnet_addresses
short_description: A host's IPv4 addresses that share a subnet with a virtual IP
version_added: 0.1.0
author: lay7.ha maintainers
description:
  - Reads Ansible's network facts and returns every IPv4 address (primary and secondary) of
    every interface whose subnet contains the VIP, under the longer of the VIP's prefix and the
    address's own prefix. This is the interface a VRRP instance for that VIP must run on and
    the address it should send its adverts from.
  - The VIP itself is skipped (a node that already holds it has it as a secondary address).
  - The result is sorted by interface name, primary address first, so every run on the same
    host picks the same interface and address.
  - The keepalived_vip role uses it to resolve C(keepalived_vip_interface=auto) and the unicast
    source address; hosts need no default route for it (Vagrant management networks without
    NAT have none).
positional: vip, prefix
options:
  _input:
    description: The host's facts, C(ansible_facts) (needs the C(network) subset).
    type: dict
    required: true
  vip:
    description: The virtual IPv4 address.
    type: str
    required: true
  prefix:
    description: The VIP's prefix length (1-32).
    type: int
    required: true
"""

EXAMPLES = r"""
- name: Interface and source address for the VIP 192.168.56.100/24
  ansible.builtin.set_fact:
    vip_addresses: "{{ ansible_facts | lay7.ha.vip_subnet_addresses('192.168.56.100', 24) }}"
# On a host with eth0 192.168.121.7/24 and eth1 192.168.56.21/24:
# vip_addresses == [{interface: eth1, address: 192.168.56.21, prefix: 24}]
"""

RETURN = r"""
_value:
  description: The matching addresses, sorted by interface, primary first; empty when none.
  type: list
  elements: dict
  contains:
    interface: {description: Interface name as in C(ansible_facts.interfaces)., type: str}
    address: {description: The IPv4 address., type: str}
    prefix: {description: The address's prefix length., type: int}
"""

import ipaddress

from ansible.errors import AnsibleFilterError


def _ipv4(value, what: str) -> ipaddress.IPv4Address:
    try:
        return ipaddress.IPv4Address(str(value))
    except ValueError:
        raise AnsibleFilterError(f"vip_subnet_addresses: {what} {value!r} is not an IPv4 address") from None


def vip_subnet_addresses(facts, vip, prefix) -> list[dict]:
    """Addresses of the host on the VIP's subnet; see DOCUMENTATION."""
    if not isinstance(facts, dict):
        raise AnsibleFilterError(f"vip_subnet_addresses: expected ansible_facts (a dict), got {type(facts).__name__}")
    vip_addr = _ipv4(vip, "vip")
    try:
        vip_prefix = int(prefix)
    except (TypeError, ValueError):
        raise AnsibleFilterError(f"vip_subnet_addresses: prefix {prefix!r} is not an integer") from None
    if not 1 <= vip_prefix <= 32:
        raise AnsibleFilterError(f"vip_subnet_addresses: prefix {vip_prefix} is outside 1-32")

    found = []
    for name in sorted(facts.get("interfaces") or []):
        # Facts name interfaces with '-' and '.' replaced by '_' (eth0.10 -> ansible_eth0_10).
        iface = facts.get(str(name).replace("-", "_").replace(".", "_")) or {}
        addresses = ([iface["ipv4"]] if isinstance(iface.get("ipv4"), dict) else []) + list(iface.get("ipv4_secondaries") or [])
        for entry in addresses:
            if not isinstance(entry, dict) or "address" not in entry:
                continue
            address = _ipv4(entry["address"], f"interface {name} address")
            if address == vip_addr:
                continue
            own_prefix = int(entry.get("prefix", 32))
            subnet = ipaddress.IPv4Network(f"{address}/{max(own_prefix, vip_prefix)}", strict=False)
            if vip_addr in subnet:
                found.append({"interface": str(name), "address": str(address), "prefix": own_prefix})
    return found


class FilterModule:
    """lay7.ha VIP filters."""

    def filters(self) -> dict:
        return {"vip_subnet_addresses": vip_subnet_addresses}
