"""The hosts' cgroups: one per host in each hierarchy a booted systemd writes to."""

from __future__ import annotations

import os
from pathlib import Path

from . import procfs

CGROUP_DIR = "lay7-lab"            # per host: <hierarchy>/lay7-lab/<host>


def cgroup_roots(mountinfo: str) -> list[Path]:
    """Hierarchies a booted systemd writes to: cgroup2 and the v1 name=systemd one."""
    roots = []
    for line in mountinfo.splitlines():
        left, _, right = line.partition(" - ")
        fields, rfields = left.split(), right.split()
        if len(fields) < 5 or len(rfields) < 3:
            continue
        fstype, options = rfields[0], rfields[2].split(",")
        if fstype == "cgroup2" or (fstype == "cgroup" and "name=systemd" in options):
            roots.append(Path(fields[4]))
    return roots


def rmdir_tree(top: Path) -> None:
    """Remove an (empty of processes) cgroup tree, deepest first."""
    if not top.is_dir():
        return
    for dirpath, _dirs, _files in os.walk(top, topdown=False):
        try:
            os.rmdir(dirpath)
        except OSError:
            pass


def lab_dirs() -> list[Path]:
    """The lab's directory in each hierarchy (holding one cgroup per host)."""
    return [root / CGROUP_DIR for root in cgroup_roots(procfs.mountinfo())]


def of_host(name: str) -> list[Path]:
    """The host's own cgroup in each hierarchy: nspawn runs there, so booted systemds never share
    a cgroup tree (with --keep-unit they would all use the caller's and break each other's units)."""
    return [top / name for top in lab_dirs()]


def create(name: str) -> list[str]:
    """Make the host's cgroups; return their cgroup.procs files, for `enter`."""
    procs = []
    for cg in of_host(name):
        cg.mkdir(parents=True, exist_ok=True)
        procs.append(str(cg / "cgroup.procs"))
    return procs


def enter(procs: list[str]) -> None:
    """Move the calling process into the cgroups (runs in the child between fork and exec)."""
    for path in procs:
        with open(path, "w") as fh:
            fh.write(str(os.getpid()))


def pids(name: str) -> list[int]:
    """Live processes in the host's cgroups."""
    found = set()
    for top in of_host(name):
        for dirpath, _dirs, files in os.walk(top):
            if "cgroup.procs" in files:
                for line in (procfs.read(os.path.join(dirpath, "cgroup.procs")) or "").split():
                    found.add(int(line))
    return sorted(p for p in found if procfs.alive(p))


def remove_host(name: str) -> None:
    for cg in of_host(name):
        rmdir_tree(cg)


def remove_all() -> None:
    for top in lab_dirs():
        rmdir_tree(top)
