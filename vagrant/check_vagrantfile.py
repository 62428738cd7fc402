"""Check the topology the root Vagrantfile booted and provisioned (`make test-vagrantfile`).

Run from the repository root after `vagrant up`. Checks, from this machine, only lab
addresses (192.168.56.0/24 on the bridge vagrant/libvirt.sh made):
- the routing proof through the VIP (every path of the seed table served by its host);
- the VIP on the first load balancer only;
- web servers refuse this machine on port 80 (only the load balancers may reach them);
- every VM's systemd is "running" (nothing failed, e.g. Vagrant's ifup@eth1 restart).
Waits are bounded; exits non-zero naming each failure.
"""

from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "molecule" / "shared" / "tests"))
from conftest import EXPECTED_ROUTES, INTERFACE, HttpClient, tcp_connects  # noqa: E402 - path set above

VIP_BOUND = 120.0


def topology() -> tuple[dict[str, str], dict[str, list[str]], str]:
    inv = yaml.safe_load((ROOT / "inventory" / "lab" / "hosts.yml").read_text())
    groups = {g: list(body["hosts"]) for g, body in inv["all"]["children"].items()}
    addresses = {h: str(v["ansible_host"]) for body in inv["all"]["children"].values()
                 for h, v in body["hosts"].items()}
    lb_vars = yaml.safe_load((ROOT / "inventory" / "lab" / "group_vars" / "loadbalancers.yml").read_text())
    return addresses, groups, str(lb_vars["keepalived_vip_address"])


def vagrant_ssh(name: str, command: str) -> str:
    proc = subprocess.run(["vagrant", "ssh", name, "-c", command], capture_output=True, text=True,
                          timeout=120, check=False, stdin=subprocess.DEVNULL)
    return proc.stdout


def main() -> int:
    addresses, groups, vip_address = topology()
    vip = HttpClient(vip_address)
    errors: list[str] = []

    t0 = time.monotonic()
    while vip.try_get("/") is None:
        if time.monotonic() - t0 > VIP_BOUND:
            print(f"check_vagrantfile: the VIP {vip_address} did not answer within {VIP_BOUND:.0f} s", file=sys.stderr)
            return 1
        time.sleep(1)

    for path, want in EXPECTED_ROUTES.items():
        reply = vip.try_get(path)
        got = (reply.status, reply.served_by) if reply else None
        if got != (200, want):
            errors.append(f"GET {path} via the VIP: want (200, {want!r}), got {got}")

    holders = []
    for lb in groups["loadbalancers"]:
        out = vagrant_ssh(lb, f"ip -j -4 addr show dev {INTERFACE}")
        try:
            local = [a["local"] for link in json.loads(out) for a in link.get("addr_info", [])]
        except json.JSONDecodeError:
            errors.append(f"{lb}: cannot read {INTERFACE}'s addresses: {out[-200:]!r}")
            continue
        if vip_address in local:
            holders.append(lb)
    if holders != groups["loadbalancers"][:1]:
        errors.append(f"VIP holders {holders}, want [{groups['loadbalancers'][0]!r}]")

    for web in groups["webservers"]:
        if tcp_connects(addresses[web], 80):
            errors.append(f"{web}: port 80 accepts this machine (only the load balancers may connect)")

    for name in addresses:
        state = vagrant_ssh(name, "systemctl is-system-running").strip()
        if state != "running":
            failed = vagrant_ssh(name, "systemctl --failed --no-legend --plain").strip()
            errors.append(f"{name}: systemd {state!r}; failed units: {failed or 'none listed'}")

    for error in errors:
        print(f"check_vagrantfile: {error}", file=sys.stderr)
    if not errors:
        print(f"check_vagrantfile: {len(EXPECTED_ROUTES)} routes through the VIP, VIP on "
              f"{groups['loadbalancers'][0]}, web servers closed to this machine, {len(addresses)} VMs running")
    return 1 if errors else 0


if __name__ == "__main__":
    sys.exit(main())
