"""SSH to the hosts from the control node: the lab key, the options, running a command, and
whether a port answers."""

from __future__ import annotations

import shlex
import socket
import subprocess
from pathlib import Path

from .cmd import run
from .topology import Host, Topology

SSH_TIMEOUT = 90        # seconds a host has to answer SSH after boot


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
    cmd = command if isinstance(command, str) else " ".join(shlex.quote(c) for c in command)
    return ["ssh", *ssh_options(topo, connect_timeout), f"{topo.user}@{host.address}", "--", cmd]


def ensure_key(topo: Topology) -> Path:
    key = topo.key_path
    if not key.exists():
        key.parent.mkdir(parents=True, exist_ok=True)
        run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", "lay7-lab", "-f", str(key)])
    return key


def ssh(topo: Topology, h: Host, command: list[str] | str, timeout: float | None = 60,
        connect_timeout: int = 3) -> subprocess.CompletedProcess:
    """Run a command on the host over SSH from the control node, as the lab user."""
    return subprocess.run(ssh_argv(topo, h, command, connect_timeout),
                          capture_output=True, text=True, timeout=timeout, stdin=subprocess.DEVNULL,
                          check=False)


def port_open(h: Host, port: int, timeout: float = 0.5) -> bool:
    try:
        with socket.create_connection((str(h.address), port), timeout=timeout):
            return True
    except OSError:
        return False
