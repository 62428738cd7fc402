"""What the VRRP cluster looks like right now, read through a lab's `exec` (no network needed).

Shared by the verify suite (molecule/shared/tests) and the failover benchmark, for the nspawn
lab and the Vagrant VMs alike: it uses `is_running` and `exec` of lab.substrate.Substrate.
"""

from __future__ import annotations

import json

from .substrate import Substrate

NOTIFY_TAG = "lay7-keepalived"   # the notify hook's syslog identifier (keepalived_vip_notify_log_tag)
VRRP_TAG = "Keepalived_vrrp"     # keepalived's own VRRP process


def vip_holders(lab: Substrate, loadbalancers: list[str], vip: str, interface: str) -> list[str]:
    """Load balancers whose `interface` holds the VIP (a VIP on lo during a release is not held)."""
    held = []
    for name in loadbalancers:
        if not lab.is_running(name):
            continue
        out = lab.exec(name, ["ip", "-j", "-4", "addr", "show", "dev", interface], timeout=10).stdout
        addrs = [a["local"] for link in json.loads(out or "[]") for a in link.get("addr_info", [])]
        if vip in addrs:
            held.append(name)
    return held


def vrrp_state(lab: Substrate, name: str) -> str:
    """The VRRP state keepalived's VRRP process journaled last on a load balancer (MASTER, BACKUP,
    FAULT). Not the notify hook's lines: keepalived starts one hook process per transition without
    waiting, so when it re-initialises an instance (a reload that changes it) the FAULT and BACKUP
    hooks run at once and their lines can land in either order.
    Filtered by journalctl itself (--grep), not from the last N lines: a busy VRRP process can
    log hundreds of other lines after its last transition (a watchdog check that outlasts its
    interval logs "already running ... skipping run" every interval: seen on the emulated VMs
    during 20 reloads, which hid the state and made the topology look unhealthy).
    Newest first (-r) and one line: Debian 12's journalctl (systemd 252) prints `-n` with
    `--grep` in reverse order, so "the last of -n 5" was the oldest; -r -n 1 is the newest
    whatever order a version uses."""
    out = lab.exec(name, ["journalctl", "--no-pager", "-q", "-o", "cat", "-r", "-n", "1", "-t", VRRP_TAG,
                          "--grep", "Entering [A-Z]+ STATE"], timeout=10).stdout
    states = [line.split("Entering ")[1].split()[0] for line in out.splitlines()
              if "Entering " in line and " STATE" in line.split("Entering ")[1]]
    return states[0] if states else "UNKNOWN"


def masters_since(lab: Substrate, loadbalancers: list[str], since_epoch: float) -> int:
    """Transitions to MASTER the notify hook journaled on the load balancers since a wall time:
    how often the VIP moved."""
    count = 0
    for name in loadbalancers:
        if lab.is_running(name):
            out = lab.exec(name, ["journalctl", "--no-pager", "-q", "-o", "cat", "--since", f"@{since_epoch:.6f}",
                                  "-t", NOTIFY_TAG], timeout=20).stdout
            count += sum("entered state MASTER" in line for line in out.splitlines())
    return count
