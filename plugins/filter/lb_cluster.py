# -*- coding: utf-8 -*-
# Copyright: lay7.ha maintainers
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""The lay7.ha.lb_cluster filter: the load-balancer cluster derived from the inventory."""

from __future__ import annotations

DOCUMENTATION = r"""
name: lb_cluster
short_description: Derive VRRP priorities, peers, router ids and the rollout order of the load balancers
version_added: 0.2.0
author: lay7.ha maintainers
description:
  - Takes the load balancers (usually C(groups['loadbalancers'])) and C(hostvars), and returns
    everything the keepalived_vip and haproxy_l7 roles need to know about the other load
    balancers, per host, so a playbook passes one value instead of computing it in Jinja.
  - Reads, per load balancer, C(lay7_node_address) (required, its IPv4 address on the private
    network), and when set C(keepalived_vip_address), C(keepalived_vip_priority) and
    C(keepalived_vip_router_id). Nothing else, and no facts.
  - Load balancers with the same C(keepalived_vip_address) form a VRRP cluster; they are each
    other's peers. A load balancer without a VIP has no peers.
  - The priority is C(keepalived_vip_priority) where the inventory sets it; otherwise host
    order decides, the first highest (254, 253, ...). High and adjacent priorities make a
    backup's skew time about a millisecond.
  - Router ids of load balancers that run a different VIP on the segment are listed, so the
    keepalived_vip preflight can refuse a clash.
  - The rollout rank orders all load balancers by ascending priority (host order among equal
    ones), as a zero-padded string that sorts as text (the site playbook deploys backups first).
  - Errors (a missing or malformed address, a priority or router id that is not an integer in its range,
    a host missing from C(hostvars)) name the host and the variable.
positional: hostvars
options:
  _input:
    description: The load balancers' inventory names, in inventory order.
    type: list
    elements: str
    required: true
  hostvars:
    description: Ansible's C(hostvars) (or any mapping of host name to its variables).
    type: dict
    required: true
"""

EXAMPLES = r"""
- name: Run the VIP with priorities and peers derived from the group
  hosts: loadbalancers
  become: true
  vars:
    lay7_node: "{{ (groups['loadbalancers'] | lay7.ha.lb_cluster(hostvars)).nodes[inventory_hostname] }}"
  roles:
    - role: lay7.ha.keepalived_vip
      vars:
        keepalived_vip_priority: "{{ lay7_node.priority }}"
        keepalived_vip_peer_priorities: "{{ lay7_node.peer_priorities }}"
        keepalived_vip_unicast_peers: "{{ lay7_node.peer_addresses }}"
# With hap1 (192.168.56.21) and hap2 (192.168.56.22) sharing one VIP, on hap1:
# lay7_node == {priority: 254, peers: [hap2], peer_addresses: [192.168.56.22],
#               peer_priorities: [253], foreign_router_ids: [], rollout_rank: "001",
#               haproxy_peers: [{name: hap1, address: 192.168.56.21},
#                               {name: hap2, address: 192.168.56.22}], ...}
"""

RETURN = r"""
_value:
  description: The cluster.
  type: dict
  contains:
    addresses:
      description: Every load balancer's C(lay7_node_address), in host order (the web servers' trusted proxies).
      type: list
      elements: str
    nodes:
      description: Per load balancer (keyed by inventory name), what it needs to know.
      type: dict
      contains:
        address: {description: Its own C(lay7_node_address)., type: str}
        vip: {description: "Its C(keepalived_vip_address), empty when unset.", type: str}
        priority: {description: Its VRRP priority., type: int}
        peers: {description: "The other members of its VRRP cluster, in host order.", type: list, elements: str}
        peer_addresses: {description: "The peers' addresses, in the order of C(peers).", type: list, elements: str}
        peer_priorities: {description: "The peers' priorities, in the order of C(peers).", type: list, elements: int}
        foreign_router_ids:
          description: Sorted router ids of load balancers serving a different VIP.
          type: list
          elements: int
        rollout_rank: {description: "Position by ascending priority, zero-padded (C(000) first).", type: str}
        haproxy_peers:
          description: The HAProxy peers section for it (itself and its peers), sorted by name.
          type: list
          elements: dict
"""

from collections.abc import Mapping

from ansible.errors import AnsibleFilterError

from ansible_collections.lay7.ha.plugins.plugin_utils import _guard

TOP_PRIORITY = 254


def _fail(host: str, name: str, value, why: str):
    return AnsibleFilterError(f"lb_cluster: load balancer {host!r}: {name} = {_guard.show(value)} {why}")


def _read(host: str, variables: Mapping) -> dict:
    if "lay7_node_address" not in variables:
        raise AnsibleFilterError(
            f"lb_cluster: load balancer {host!r} has no lay7_node_address: set it in the inventory to the "
            "host's IPv4 address on the network the load balancers and web servers share")
    address = variables["lay7_node_address"]
    try:
        address = str(_guard.check_ip(address, {"version": 4}))
    except _guard.InputError as exc:
        raise _fail(host, "lay7_node_address", address, str(exc)) from None
    node = {"address": address, "vip": "", "priority": None, "router_id": None}
    if variables.get("keepalived_vip_address") not in (None, ""):
        node["vip"] = str(variables["keepalived_vip_address"])
    # The ranges the keepalived_vip role accepts (1-254: 255 is the address owner's priority).
    for name, key, rule in (("keepalived_vip_priority", "priority", {"min": 1, "max": 254}),
                            ("keepalived_vip_router_id", "router_id", {"min": 1, "max": 255})):
        if variables.get(name) in (None, ""):
            continue
        try:
            node[key] = _guard.check_int(variables[name], rule)
        except _guard.InputError as exc:
            raise _fail(host, name, variables[name], str(exc)) from None
    return node


def lb_cluster(hosts, hostvars) -> dict:
    """The load-balancer cluster; see DOCUMENTATION."""
    if isinstance(hosts, (str, bytes)) or not isinstance(hosts, (list, tuple)):
        raise AnsibleFilterError(f"lb_cluster: expected a list of host names (groups['loadbalancers']), got {type(hosts).__name__}")
    if not isinstance(hostvars, Mapping):
        raise AnsibleFilterError(f"lb_cluster: expected hostvars (a mapping), got {type(hostvars).__name__}")
    names = [str(h) for h in hosts]
    if len(set(names)) != len(names):
        raise AnsibleFilterError(f"lb_cluster: a load balancer is listed twice: {names}")

    nodes = {}
    for index, host in enumerate(names):
        if host not in hostvars:
            raise AnsibleFilterError(f"lb_cluster: load balancer {host!r} is not in hostvars")
        node = _read(host, hostvars[host])
        if node["priority"] is None:
            node["priority"] = TOP_PRIORITY - index
        nodes[host] = node

    seen: dict = {}
    for host, node in nodes.items():
        if node["address"] in seen:
            raise _fail(host, "lay7_node_address", node["address"], f"is also {seen[node['address']]!r}'s address")
        seen[node["address"]] = host

    # Stable sort: equal priorities keep host order.
    ranks = {host: rank for rank, host in enumerate(sorted(names, key=lambda h: nodes[h]["priority"]))}
    width = max(3, len(str(len(names))))

    result = {}
    for host, node in nodes.items():
        peers = [h for h in names if h != host and node["vip"] and nodes[h]["vip"] == node["vip"]]
        foreign = sorted({n["router_id"] for n in nodes.values()
                          if n["vip"] and n["vip"] != node["vip"] and n["router_id"] is not None})
        result[host] = {
            "address": node["address"],
            "vip": node["vip"],
            "priority": node["priority"],
            "peers": peers,
            "peer_addresses": [nodes[h]["address"] for h in peers],
            "peer_priorities": [nodes[h]["priority"] for h in peers],
            "foreign_router_ids": foreign,
            "rollout_rank": str(ranks[host]).zfill(width),
            "haproxy_peers": [{"name": h, "address": nodes[h]["address"]} for h in sorted([host] + peers)],
        }
    return {"addresses": [nodes[h]["address"] for h in names], "nodes": result}


class FilterModule:
    """lay7.ha cluster filter."""

    def filters(self) -> dict:
        return {"lb_cluster": lb_cluster}
