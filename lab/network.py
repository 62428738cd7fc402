"""The lab's network: the bridge namespace, one namespace and veth per host, the control node's
link, cables (link up/down), partitions (nftables in the bridge namespace) and the safety route.

The command lines are built by pure functions so they can be unit tested."""

from __future__ import annotations

import ipaddress
import json
import os

from .cmd import run
from .topology import Host, Topology

BRIDGE_NS = "lay7-br"
BRIDGE = "br0"
CONTROL_LINK = "lay7-ctl"          # control node's end, root namespace
CONTROL_PORT = "lay7-ctlp"         # its peer, plugged into the bridge
SAFETY_METRIC = 4242               # above the lab link's connected route (metric 0)
PARTITION_TABLE = "lay7_partition"


# ---------------------------------------------------------------- command lines
def safety_route_argv(topo: Topology) -> list[str]:
    """The route that keeps lab-bound packets on this machine once the lab link is gone."""
    return ["ip", "route", "replace", "unreachable", str(topo.subnet), "metric", str(SAFETY_METRIC)]


def bridge_argvs() -> list[list[str]]:
    return [
        ["ip", "netns", "add", BRIDGE_NS],
        ["ip", "-n", BRIDGE_NS, "link", "set", "lo", "up"],
        # No STP and no forwarding delay: ports forward as soon as they come up.
        ["ip", "-n", BRIDGE_NS, "link", "add", BRIDGE, "type", "bridge", "stp_state", "0",
         "forward_delay", "0"],
        ["ip", "-n", BRIDGE_NS, "link", "set", BRIDGE, "up"],
    ]


def control_argvs(topo: Topology) -> list[list[str]]:
    return [
        ["ip", "link", "add", CONTROL_LINK, "type", "veth", "peer", "name", CONTROL_PORT,
         "netns", BRIDGE_NS],
        ["ip", "-n", BRIDGE_NS, "link", "set", CONTROL_PORT, "master", BRIDGE, "up"],
        ["ip", "addr", "add", f"{topo.control}/{topo.prefixlen}", "dev", CONTROL_LINK],
        ["ip", "link", "set", CONTROL_LINK, "up"],
    ]


def host_net_argvs(topo: Topology, host: Host) -> list[list[str]]:
    """Namespace, veth into the bridge, address on `interface` — set before the host boots."""
    ns = host.netns
    return [
        ["ip", "netns", "add", ns],
        ["ip", "-n", ns, "link", "set", "lo", "up"],
        ["ip", "-n", BRIDGE_NS, "link", "add", host.bridge_port, "type", "veth", "peer", "name",
         topo.interface, "netns", ns],
        ["ip", "-n", BRIDGE_NS, "link", "set", host.bridge_port, "master", BRIDGE, "up"],
        ["ip", "-n", ns, "addr", "add", f"{host.address}/{topo.prefixlen}", "dev", topo.interface],
        ["ip", "-n", ns, "link", "set", topo.interface, "up"],
    ]


def link_argv(host: Host, up: bool) -> list[str]:
    """Cut or heal a host's cable: the bridge-side end goes down, so the host sees no carrier."""
    return ["ip", "-n", BRIDGE_NS, "link", "set", host.bridge_port, "up" if up else "down"]


def partition_ruleset(pairs: list[tuple[str, str]], table: str = PARTITION_TABLE) -> str:
    """nft script for a Linux bridge: drop frames between each pair of bridge ports (the hosts'
    cables), both directions. Shared with the Vagrant VMs' partition (their libvirt bridge)."""
    lines = [
        f"table bridge {table} {{",
        "  chain forward {",
        "    type filter hook forward priority 0; policy accept;",
    ]
    for a, b in pairs:
        lines.append(f'    iifname "{a}" oifname "{b}" drop')
        lines.append(f'    iifname "{b}" oifname "{a}" drop')
    lines += ["  }", "}"]
    return "\n".join(lines) + "\n"


def partition_reset_script(table: str = PARTITION_TABLE) -> str:
    """Flush-then-delete idiom: `add table` makes deletion succeed even if it does not exist."""
    return f"add table bridge {table}\ndelete table bridge {table}\n"


# ---------------------------------------------------------------- operations
def netns_exists(ns: str) -> bool:
    return os.path.exists(f"/run/netns/{ns}")


def bridge_exists() -> bool:
    """The lab's network is up (its bridge namespace exists)."""
    return netns_exists(BRIDGE_NS)


def subnet_holders(topo: Topology, addr_json: str) -> list[str]:
    """Links of this machine (`ip -j -4 addr` output) holding an address in the lab's subnet
    that are not the lab's own: e.g. the Vagrant scenario's bridge, which uses the same
    addresses. Booting the lab beside it would put two routes to one subnet on the machine."""
    held = []
    for link in json.loads(addr_json or "[]"):
        for a in link.get("addr_info", []):
            if link.get("ifname") != CONTROL_LINK and ipaddress.ip_address(a["local"]) in topo.subnet:
                held.append(f"{link.get('ifname')} ({a['local']}/{a.get('prefixlen')})")
    return held


def foreign_subnet_holders(topo: Topology) -> list[str]:
    return subnet_holders(topo, run(["ip", "-j", "-4", "addr", "show"]).stdout)


def ensure_safety_route(topo: Topology) -> None:
    run(safety_route_argv(topo))


def safety_route_present(topo: Topology) -> bool:
    out = run(["ip", "-j", "route", "show", "type", "unreachable", str(topo.subnet)]).stdout
    routes = json.loads(out or "[]")
    return any(r.get("metric") == SAFETY_METRIC for r in routes)


def create(topo: Topology) -> None:
    for argv in bridge_argvs():
        run(argv)
    for argv in control_argvs(topo):
        run(argv)
    for h in topo.hosts:
        for argv in host_net_argvs(topo, h):
            run(argv)


def namespaces(topo: Topology) -> list[str]:
    return [h.netns for h in topo.hosts] + [BRIDGE_NS]


def remove(topo: Topology) -> None:
    """Links and namespaces (deleting a namespace deletes the veth ends inside it)."""
    if os.path.exists(f"/sys/class/net/{CONTROL_LINK}"):
        run(["ip", "link", "del", CONTROL_LINK], check=False)
    for ns in namespaces(topo):
        if netns_exists(ns):
            run(["ip", "netns", "del", ns])


def leftovers(topo: Topology) -> list[str]:
    found = [f"netns {ns}" for ns in namespaces(topo) if netns_exists(ns)]
    for link in os.listdir("/sys/class/net"):
        if link.startswith("lay7-"):
            found.append(f"link {link}")
    return found


def set_link(host: Host, up: bool) -> None:
    run(link_argv(host, up))


def link_up(host: Host) -> bool:
    out = run(["ip", "-j", "-n", BRIDGE_NS, "link", "show", host.bridge_port]).stdout
    return "UP" in json.loads(out)[0].get("flags", [])


def apply_partitions(pairs: list[tuple[Host, Host]]) -> None:
    script = partition_reset_script()
    if pairs:
        script += partition_ruleset([(a.bridge_port, b.bridge_port) for a, b in pairs])
    run(["ip", "netns", "exec", BRIDGE_NS, "nft", "-f", "-"], input=script)
