"""Reading /proc: process ids, command lines, parents, liveness, network namespaces."""

from __future__ import annotations

import os


def pids() -> list[int]:
    return [int(p) for p in os.listdir("/proc") if p.isdigit()]


def read(path: str) -> str | None:
    try:
        with open(path) as fh:
            return fh.read()
    except OSError:
        return None


def cmdline(pid: int) -> list[str]:
    try:
        with open(f"/proc/{pid}/cmdline", "rb") as fh:
            return [a.decode("utf-8", "replace") for a in fh.read().split(b"\0") if a]
    except OSError:
        return []


def ppid(pid: int) -> int | None:
    status = read(f"/proc/{pid}/status")
    if not status:
        return None
    for line in status.splitlines():
        if line.startswith("PPid:"):
            return int(line.split()[1])
    return None


def alive(pid: int) -> bool:
    status = read(f"/proc/{pid}/status")
    if status is None:
        return False
    for line in status.splitlines():
        if line.startswith("State:"):
            return "Z" not in line.split()[1]
    return True


def netns_inode(path: str) -> int | None:
    try:
        return os.stat(path).st_ino
    except OSError:
        return None


def mountinfo() -> str:
    """This process's mount table (empty when unreadable)."""
    return read("/proc/self/mountinfo") or ""
