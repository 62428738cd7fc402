"""Command lines the lab runs, built by pure functions so they can be unit tested."""

from __future__ import annotations

from pathlib import Path

from .topology import Host, Topology

BRIDGE_NS = "lay7-br"
BRIDGE = "br0"
CONTROL_LINK = "lay7-ctl"          # control node's end, root namespace
CONTROL_PORT = "lay7-ctlp"         # its peer, plugged into the bridge
SAFETY_METRIC = 4242               # above the lab link's connected route (metric 0)
PARTITION_TABLE = "lay7_partition"
CGROUP_DIR = "lay7-lab"            # per host: <hierarchy>/lay7-lab/<host>
NSPAWN_ENV = {"SYSTEMD_NSPAWN_API_VFS_WRITABLE": "network"}
NSPAWN_CAPS = ("CAP_NET_ADMIN", "CAP_NET_RAW")


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


def nspawn_argv(root: Path, host: Host) -> list[str]:
    # This machine's PID 1 is not systemd: no machined registration, no scope unit.
    return [
        "systemd-nspawn",
        "--quiet",
        "-D", str(root),
        "-M", host.name,
        "--register=no",
        "--keep-unit",
        "--boot",
        f"--network-namespace-path=/run/netns/{host.netns}",
        "--capability=" + ",".join(NSPAWN_CAPS),
        "--console=read-only",
    ]


def nsenter_argv(init_pid: int, argv: list[str]) -> list[str]:
    """Run argv inside a host (its mount, UTS, IPC, network and PID namespaces)."""
    return [
        "nsenter", "-t", str(init_pid), "-m", "-u", "-i", "-n", "-p", "--",
        "/usr/bin/env", "-i", "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
        "LANG=C.UTF-8", "TERM=dumb", *argv,
    ]


def ssh_options(topo: Topology, connect_timeout: int = 3) -> list[str]:
    return [
        "-i", str(topo.key_path),
        "-o", "IdentitiesOnly=yes",
        "-o", "BatchMode=yes",
        "-o", f"UserKnownHostsFile={topo.known_hosts}",
        "-o", "StrictHostKeyChecking=yes",
        "-o", f"ConnectTimeout={connect_timeout}",
        "-o", "LogLevel=ERROR",
    ]


def ssh_argv(topo: Topology, host: Host, command: list[str] | str, connect_timeout: int = 3) -> list[str]:
    cmd = command if isinstance(command, str) else " ".join(_quote(c) for c in command)
    return ["ssh", *ssh_options(topo, connect_timeout), f"{topo.user}@{host.address}", "--", cmd]


def _quote(s: str) -> str:
    import shlex

    return shlex.quote(s)


def partition_ruleset(pairs: list[tuple[Host, Host]]) -> str:
    """nft script for the bridge namespace: drop frames between each pair, both directions."""
    lines = [
        f"table bridge {PARTITION_TABLE} {{",
        "  chain forward {",
        "    type filter hook forward priority 0; policy accept;",
    ]
    for a, b in pairs:
        lines.append(f'    iifname "{a.bridge_port}" oifname "{b.bridge_port}" drop')
        lines.append(f'    iifname "{b.bridge_port}" oifname "{a.bridge_port}" drop')
    lines += ["  }", "}"]
    return "\n".join(lines) + "\n"


def partition_reset_script() -> str:
    """Flush-then-delete idiom: `add table` makes deletion succeed even if it does not exist."""
    return f"add table bridge {PARTITION_TABLE}\ndelete table bridge {PARTITION_TABLE}\n"
