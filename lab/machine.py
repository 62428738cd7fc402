"""A host's machine: its systemd-nspawn process, the processes of the booted system, powering it
off, and entering its namespaces."""

from __future__ import annotations

import functools
import os
import signal
import subprocess
import time
from pathlib import Path

from . import cgroups, procfs
from .errors import LabError
from .topology import Host

STOP_TIMEOUT = 15       # seconds for a killed host's processes to disappear
NSPAWN_ENV = {"SYSTEMD_NSPAWN_API_VFS_WRITABLE": "network"}
NSPAWN_CAPS = ("CAP_NET_ADMIN", "CAP_NET_RAW")


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


def start(root: Path, h: Host, console_log: Path) -> int:
    """Boot the host: nspawn in the host's own cgroups, console appended to console_log."""
    console_log.parent.mkdir(parents=True, exist_ok=True)
    env = dict(os.environ, **NSPAWN_ENV)
    procs = cgroups.create(h.name)
    with open(console_log, "ab") as out:
        out.write(f"\n=== lab: booting {h.name} at {time.strftime('%H:%M:%S')} ===\n".encode())
        out.flush()
        proc = subprocess.Popen(nspawn_argv(root, h), stdin=subprocess.DEVNULL,
                                stdout=out, stderr=subprocess.STDOUT, env=env, start_new_session=True,
                                preexec_fn=functools.partial(cgroups.enter, procs))
    return proc.pid


def nspawn_pids(root: Path) -> list[int]:
    """Live systemd-nspawn processes booting `root`."""
    want = str(root)
    out = []
    for pid in procfs.pids():
        argv = procfs.cmdline(pid)
        if argv and argv[0].endswith("systemd-nspawn") and "-D" in argv:
            i = argv.index("-D")
            if i + 1 < len(argv) and argv[i + 1] == want and procfs.alive(pid):
                out.append(pid)
    return out


def host_pids(root: Path, h: Host) -> list[int]:
    """Processes living in the host's network namespace (the booted system)."""
    nspawn = set(nspawn_pids(root))
    found = {p for p in cgroups.pids(h.name) if p not in nspawn}
    ino = procfs.netns_inode(f"/run/netns/{h.netns}")
    if ino is not None and ino != procfs.netns_inode("/proc/self/ns/net"):
        found |= {p for p in procfs.pids()
                  if procfs.netns_inode(f"/proc/{p}/ns/net") == ino and procfs.alive(p)}
    return sorted(found)


def init_pid(root: Path) -> int | None:
    """PID (in our namespace) of the host's PID 1, or None when the host is off."""
    for ns_pid in nspawn_pids(root):
        for pid in procfs.pids():
            if procfs.ppid(pid) == ns_pid and procfs.alive(pid):
                status = procfs.read(f"/proc/{pid}/status") or ""
                for line in status.splitlines():
                    if line.startswith("NSpid:") and line.split()[-1] == "1" and len(line.split()) > 2:
                        return pid
    return None


def power_off(root: Path, h: Host) -> None:
    # SIGKILL to the host's PID 1 ends its whole PID namespace at once, like pulling the plug;
    # killing only nspawn would leave the booted system running.
    for _ in range(3):
        victims = host_pids(root, h)
        init = init_pid(root) if nspawn_pids(root) else None
        if init:
            victims.insert(0, init)
        for pid in victims:
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        deadline = time.monotonic() + STOP_TIMEOUT
        while time.monotonic() < deadline and (host_pids(root, h) or
                                               (init and procfs.alive(init))):
            time.sleep(0.05)
        # nspawn notices its child died and exits; make sure of it
        nspawn = nspawn_pids(root)
        deadline = time.monotonic() + 5
        while nspawn and time.monotonic() < deadline:
            time.sleep(0.05)
            nspawn = nspawn_pids(root)
        for pid in nspawn:
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        if not host_pids(root, h) and not nspawn_pids(root):
            cgroups.remove_host(h.name)
            return
        time.sleep(0.2)
    raise LabError(f"{h.name}: processes survive SIGKILL: {host_pids(root, h) + nspawn_pids(root)}")
