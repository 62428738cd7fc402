"""Check that the Vagrant scenario describes the same topology as inventory/lab.

inventory/lab/hosts.yml is the source (the root Vagrantfile reads it directly). Molecule's
molecule.yml cannot read files, and vagrant/inventory/hosts.yml carries each host's
topology address, so both repeat names, groups and addresses: this keeps them in step.
Run by `make test-vagrant` before anything boots; exits non-zero naming the difference.
"""

from __future__ import annotations

import sys
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[1]


def lab_topology() -> tuple[dict[str, str], dict[str, list[str]]]:
    inv = yaml.safe_load((ROOT / "inventory" / "lab" / "hosts.yml").read_text())
    groups = {g: list(body["hosts"]) for g, body in inv["all"]["children"].items()}
    addresses = {h: str(v["ansible_host"]) for body in inv["all"]["children"].values()
                 for h, v in body["hosts"].items()}
    return addresses, groups


def problems() -> list[str]:
    addresses, groups = lab_topology()
    errors: list[str] = []

    vinv = yaml.safe_load((ROOT / "vagrant" / "inventory" / "hosts.yml").read_text())
    vgroups = {g: list(body["hosts"]) for g, body in vinv["all"]["children"].items()}
    if vgroups != groups:
        errors.append(f"vagrant/inventory/hosts.yml groups {vgroups} != inventory/lab {groups}")
    for body in vinv["all"]["children"].values():
        for host, hvars in body["hosts"].items():
            if str(hvars.get("lay7_node_address")) != addresses.get(host):
                errors.append(f"vagrant/inventory/hosts.yml: {host}.lay7_node_address "
                              f"{hvars.get('lay7_node_address')!r} != inventory/lab {addresses.get(host)!r}")

    mol = yaml.safe_load((ROOT / "molecule" / "vagrant" / "molecule.yml").read_text())
    seen = set()
    for platform in mol["platforms"]:
        name = platform["name"]
        seen.add(name)
        want_groups = sorted(g for g, hosts in groups.items() if name in hosts)
        if sorted(platform.get("groups", [])) != want_groups:
            errors.append(f"molecule/vagrant platform {name}: groups {platform.get('groups')} != {want_groups}")
        ips = [i.get("ip") for i in platform.get("interfaces", []) if i.get("network_name") == "private_network"]
        if ips != [addresses.get(name)]:
            errors.append(f"molecule/vagrant platform {name}: private_network ip {ips} != [{addresses.get(name)!r}]")
    if seen != set(addresses):
        errors.append(f"molecule/vagrant platforms {sorted(seen)} != inventory/lab hosts {sorted(addresses)}")
    return errors


def main() -> int:
    errors = problems()
    for line in errors:
        print(f"check_topology: {line}", file=sys.stderr)
    if not errors:
        print("check_topology: molecule/vagrant and vagrant/inventory match inventory/lab")
    return 1 if errors else 0


if __name__ == "__main__":
    sys.exit(main())
