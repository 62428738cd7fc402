"""SSH to the hosts from the control node: the lab key, the options (the batch ones shared with
the Vagrant substrate), running a command, and whether a port answers."""

from __future__ import annotations

import shlex
import socket
import subprocess
from pathlib import Path

from .cmd import run
from .topology import Host, Topology

SSH_TIMEOUT = 90        # seconds a host has to answer SSH after boot


def batch_options(identity_file: str, known_hosts: str | Path | None, connect_timeout: int) -> list[str]:
    """Non-interactive key-only login, for the lab and the Vagrant VMs alike. known_hosts None:
    host keys are not checked (a Vagrant VM makes its keys at first boot; no file knows them)."""
    return [
        "-i", identity_file,
        "-o", "IdentitiesOnly=yes",
        "-o", "BatchMode=yes",
        "-o", f"UserKnownHostsFile={'/dev/null' if known_hosts is None else known_hosts}",
        "-o", f"StrictHostKeyChecking={'no' if known_hosts is None else 'yes'}",
        "-o", f"ConnectTimeout={connect_timeout}",
        "-o", "LogLevel=ERROR",
    ]


def ssh_options(topo: Topology, connect_timeout: int = 3) -> list[str]:
    return batch_options(str(topo.key_path), topo.known_hosts, connect_timeout)


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
