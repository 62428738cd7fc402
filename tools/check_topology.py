"""Check the one copy of the topology Molecule cannot avoid against the one source.

inventory/lab/hosts.yml is the topology: host names, groups, each host's lay7_node_address.
The nspawn lab (lab/topology.py), the root Vagrantfile and both Molecule scenarios' inventories
read it as it is. A molecule.yml cannot read a file, so each scenario's `platforms` repeats
the names and groups (in inventory order: Molecule's generated inventory comes first, so its
order is the group order, and the first load balancer gets the highest VRRP priority), and
a platform with `interfaces` repeats its address as the private_network ip.

    python tools/check_topology.py     # exit 1 and name every difference

Run by the unit tests (tests/unit/test_topology_copies.py) and by `make test-vagrant`
before anything boots.
"""

from __future__ import annotations

import sys
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[1]
SOURCE = "inventory/lab/hosts.yml"


def topology(root: Path = ROOT) -> tuple[dict[str, str], dict[str, list[str]]]:
    """Addresses by host (inventory order) and members by group, from the source."""
    inv = yaml.safe_load((root / SOURCE).read_text())
    addresses: dict[str, str] = {}
    groups: dict[str, list[str]] = {}
    for group, body in inv["all"]["children"].items():
        groups[group] = list(body["hosts"])
        for host, hvars in body["hosts"].items():
            if (hvars or {}).get("lay7_node_address") is not None:
                addresses.setdefault(host, str(hvars["lay7_node_address"]))
    return addresses, groups


def platform_problems(scenario: str, platforms: list[dict], addresses: dict[str, str],
                      groups: dict[str, list[str]]) -> list[str]:
    """Differences between one scenario's platform list and the topology."""
    where = f"molecule/{scenario}/molecule.yml"
    errors: list[str] = []
    names = [p.get("name") for p in platforms]
    if names != list(addresses):
        errors.append(f"{where}: platforms {names} != {SOURCE} hosts {list(addresses)} (same names, same order)")
    with_interfaces = any("interfaces" in p for p in platforms)
    for platform in platforms:
        name = platform.get("name")
        want = sorted(g for g, members in groups.items() if name in members)
        if sorted(platform.get("groups") or []) != want:
            errors.append(f"{where}: platform {name}: groups {platform.get('groups')} != {want}")
        if with_interfaces:
            ips = [i.get("ip") for i in platform.get("interfaces") or [] if i.get("network_name") == "private_network"]
            if ips != [addresses.get(name)]:
                errors.append(f"{where}: platform {name}: private_network ip {ips} != [{addresses.get(name)!r}]")
    return errors


def problems(root: Path = ROOT) -> list[str]:
    addresses, groups = topology(root)
    errors: list[str] = []
    for molecule_yml in sorted((root / "molecule").glob("*/molecule.yml")):
        config = yaml.safe_load(molecule_yml.read_text()) or {}
        if "platforms" in config:
            errors += platform_problems(molecule_yml.parent.name, config["platforms"], addresses, groups)
    return errors


def main(root: Path = ROOT) -> int:
    errors = problems(root)
    for line in errors:
        print(f"check_topology: {line}", file=sys.stderr)
    if not errors:
        print(f"check_topology: every Molecule platform list matches {SOURCE}")
    return 1 if errors else 0


if __name__ == "__main__":
    sys.exit(main())
