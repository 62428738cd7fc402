"""Parse and validate the lab's description: lab/topology.yml and the inventory it names.

lab/topology.yml holds the substrate (subnet, control address, interface, login user, paths,
image recipe). The topology itself (host names, groups, each host's lay7_node_address) is
read from the inventory's hosts.yml and the VIP from its group_vars/loadbalancers.yml
(keepalived_vip_address): written once there, for Ansible, Vagrant and Molecule alike.
"""

from __future__ import annotations

import ipaddress
import os
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

DEFAULT_TOPOLOGY = Path(__file__).with_name("topology.yml")
# The inventory's files the lab reads (relative to the topology file's `inventory` directory).
HOSTS_FILE = "hosts.yml"
LB_VARS_FILE = "group_vars/loadbalancers.yml"

# Host names become network namespace and veth names ("lay7-<name>", at most 15 bytes).
_NAME_RE = re.compile(r"^[a-z][a-z0-9]{0,9}$")
_UNIT_RE = re.compile(r"^[A-Za-z0-9@._-]+\.(service|socket|timer|target)$")
_PKG_RE = re.compile(r"^[a-z0-9][a-z0-9+.-]+$")
_TOP_KEYS = {"subnet", "control", "interface", "user", "inventory", "paths", "image"}
_ALL_KEYS = {"vars", "children"}
_GROUP_KEYS = {"vars", "hosts"}
_PATH_KEYS = {"state", "run", "cache"}
_IMAGE_KEYS = {"suites", "mirror", "packages", "disabled_units"}
# Which Debian release(s) the hosts boot: one of image.suites for every host, or MIXED.
RELEASE_ENV = "LAY7_LAB_RELEASE"
MIXED = "mixed"


class TopologyError(ValueError):
    """The topology file is malformed; the message names the field."""


@dataclass(frozen=True)
class Host:
    name: str
    address: ipaddress.IPv4Address

    @property
    def netns(self) -> str:
        return f"lay7-{self.name}"

    @property
    def bridge_port(self) -> str:
        """Name of the veth end plugged into the bridge (in the bridge namespace)."""
        return f"lay7-{self.name}"


@dataclass(frozen=True)
class Image:
    """The base images' recipe: one image per Debian release (suite), same packages in each."""
    suites: tuple[str, ...]
    mirror: str
    packages: tuple[str, ...]
    disabled_units: tuple[str, ...]

    @property
    def suite(self) -> str:
        """The default release (the first listed)."""
        return self.suites[0]


@dataclass(frozen=True)
class Topology:
    subnet: ipaddress.IPv4Network
    control: ipaddress.IPv4Address
    vip: ipaddress.IPv4Address
    interface: str
    user: str
    hosts: tuple[Host, ...]
    groups: dict[str, tuple[str, ...]]
    state_dir: Path
    run_dir: Path
    cache_dir: Path
    image: Image
    source: Path | None = field(default=None, compare=False)
    # image.suites[k] for every host, or MIXED: the hosts of each group take the releases in
    # turn (hap1 the first, hap2 the second...), so one converge runs every role on every
    # release and the VRRP pair spans two releases, as it does in a rolling OS upgrade.
    release: str = ""

    def suite_of(self, name: str) -> str:
        """The Debian release host `name` boots."""
        release = self.release or self.image.suite
        if release != MIXED:
            return release
        for members in self.groups.values():
            if name in members:
                return self.image.suites[members.index(name) % len(self.image.suites)]
        raise TopologyError(f"unknown host {name!r}; known: {', '.join(self.host_names)}")

    @property
    def suites_used(self) -> list[str]:
        """The releases the hosts boot, in image.suites order."""
        used = {self.suite_of(h.name) for h in self.hosts}
        return [s for s in self.image.suites if s in used]

    def host(self, name: str) -> Host:
        for h in self.hosts:
            if h.name == name:
                return h
        raise TopologyError(f"unknown host {name!r}; known: {', '.join(self.host_names)}")

    @property
    def host_names(self) -> list[str]:
        return [h.name for h in self.hosts]

    @property
    def prefixlen(self) -> int:
        return self.subnet.prefixlen

    @property
    def key_path(self) -> Path:
        return self.state_dir / "id_ed25519"

    @property
    def known_hosts(self) -> Path:
        return self.state_dir / "known_hosts"


def _need(data: dict[str, Any], key: str, where: str) -> Any:
    if key not in data or data[key] is None:
        raise TopologyError(f"{where}{key}: required")
    return data[key]


def _addr(value: Any, field_name: str) -> ipaddress.IPv4Address:
    try:
        return ipaddress.IPv4Address(str(value))
    except ValueError:
        raise TopologyError(f"{field_name}: {value!r} is not an IPv4 address") from None


def _str(value: Any, field_name: str) -> str:
    if not isinstance(value, str) or not value:
        raise TopologyError(f"{field_name}: expected a non-empty string, got {value!r}")
    return value


def _unknown(data: dict[str, Any], allowed: set[str], where: str) -> None:
    extra = sorted(set(data) - allowed)
    if extra:
        raise TopologyError(f"{where}{extra[0]}: unknown key; allowed: {', '.join(sorted(allowed))}")


def _inventory_topology(
    inventory: Any, inside: Any, used: dict[ipaddress.IPv4Address, str]
) -> tuple[list[Host], dict[str, tuple[str, ...]]]:
    """Hosts (in inventory order) and groups from the inventory's hosts.yml document."""
    where = f"{HOSTS_FILE}: all"
    if not isinstance(inventory, dict) or not isinstance(inventory.get("all"), dict):
        raise TopologyError(f"{where}: expected a mapping under the top-level key 'all'")
    top = inventory["all"]
    _unknown(top, _ALL_KEYS, f"{where}.")
    children = top.get("children")
    if not isinstance(children, dict) or not children:
        raise TopologyError(f"{where}.children: expected a non-empty mapping of group: {{hosts: ...}}")

    addresses: dict[str, ipaddress.IPv4Address] = {}
    groups: dict[str, tuple[str, ...]] = {}
    for group, body in children.items():
        gwhere = f"{where}.children.{group}"
        if not isinstance(group, str) or not re.match(r"^[a-z_][a-z0-9_]*$", group):
            raise TopologyError(f"{gwhere}: invalid group name")
        if group in ("all", "ungrouped"):
            raise TopologyError(f"{gwhere}: clashes with a built-in group name")
        if not isinstance(body, dict):
            raise TopologyError(f"{gwhere}: expected a mapping with 'hosts'")
        _unknown(body, _GROUP_KEYS, f"{gwhere}.")
        members = body.get("hosts")
        if not isinstance(members, dict) or not members:
            raise TopologyError(f"{gwhere}.hosts: expected a non-empty mapping of host names")
        for name, hvars in members.items():
            hwhere = f"{gwhere}.hosts.{name}"
            if not isinstance(name, str) or not _NAME_RE.match(name):
                raise TopologyError(
                    f"{hwhere}: host names must match {_NAME_RE.pattern} (they name namespaces and veths)"
                )
            if hvars is None:
                hvars = {}
            if not isinstance(hvars, dict):
                raise TopologyError(f"{hwhere}: expected a mapping of host variables, got {hvars!r}")
            raw = hvars.get("lay7_node_address")
            if raw is None:
                if name in addresses:  # listed again in another group; the address was given once
                    continue
                raise TopologyError(f"{hwhere}.lay7_node_address: required")
            address = _addr(raw, f"{hwhere}.lay7_node_address")
            inside(address, f"{hwhere}.lay7_node_address")
            if name in addresses:
                if addresses[name] != address:
                    raise TopologyError(f"{hwhere}.lay7_node_address: {address} differs from "
                                        f"{addresses[name]} given for {name} in another group")
                continue
            if address in used:
                raise TopologyError(f"{hwhere}.lay7_node_address: address {address} already used by {used[address]}")
            used[address] = name
            addresses[name] = address
        groups[group] = tuple(members)
    for group in groups:
        if group in addresses:
            raise TopologyError(f"{where}.children.{group}: clashes with a host name")
    return [Host(name, address) for name, address in addresses.items()], groups


def parse(data: Any, inventory: Any, lb_vars: Any, source: Path | None = None,
          release: str | None = None) -> Topology:
    """Validate the loaded YAML documents (topology.yml, the inventory's hosts.yml and its
    group_vars/loadbalancers.yml) and return a Topology whose hosts boot `release` (one of
    image.suites, or MIXED; default: the first suite)."""
    if not isinstance(data, dict):
        raise TopologyError(f"topology: expected a mapping, got {type(data).__name__}")
    _unknown(data, _TOP_KEYS, "")

    raw_subnet = _need(data, "subnet", "")
    try:
        subnet = ipaddress.IPv4Network(str(raw_subnet), strict=True)
    except ValueError as exc:
        raise TopologyError(f"subnet: {raw_subnet!r} is not an IPv4 network ({exc})") from None

    def inside(addr: ipaddress.IPv4Address, field_name: str) -> None:
        if addr not in subnet or addr in (subnet.network_address, subnet.broadcast_address):
            raise TopologyError(f"{field_name}: {addr} is not a host address in subnet {subnet}")

    control = _addr(_need(data, "control", ""), "control")
    inside(control, "control")
    interface = _str(_need(data, "interface", ""), "interface")
    if len(interface) > 15 or not re.match(r"^[a-z][a-z0-9]*$", interface):
        raise TopologyError(f"interface: {interface!r} is not a valid interface name")
    user = _str(_need(data, "user", ""), "user")
    if not re.match(r"^[a-z_][a-z0-9_-]*$", user):
        raise TopologyError(f"user: {user!r} is not a valid user name")
    _str(_need(data, "inventory", ""), "inventory")

    # The VIP is a role input (keepalived_vip_address); the lab only checks it fits its subnet.
    if not isinstance(lb_vars, dict):
        raise TopologyError(f"{LB_VARS_FILE}: expected a mapping, got {type(lb_vars).__name__}")
    vip_field = f"{LB_VARS_FILE}: keepalived_vip_address"
    vip = _addr(_need(lb_vars, "keepalived_vip_address", f"{LB_VARS_FILE}: "), vip_field)
    inside(vip, vip_field)
    prefix = lb_vars.get("keepalived_vip_prefix", subnet.prefixlen)
    if prefix != subnet.prefixlen:
        raise TopologyError(f"{LB_VARS_FILE}: keepalived_vip_prefix: {prefix!r} is not the lab subnet's "
                            f"prefix length {subnet.prefixlen} (subnet {subnet})")

    if vip == control:
        raise TopologyError(f"{vip_field}: {vip} is the control node's address (control)")
    used: dict[ipaddress.IPv4Address, str] = {control: "control", vip: "the VIP"}
    hosts, groups = _inventory_topology(inventory, inside, used)

    raw_paths = _need(data, "paths", "")
    if not isinstance(raw_paths, dict):
        raise TopologyError("paths: expected a mapping")
    _unknown(raw_paths, _PATH_KEYS, "paths.")
    paths = {}
    for key in sorted(_PATH_KEYS):
        p = Path(_str(_need(raw_paths, key, "paths."), f"paths.{key}"))
        if not p.is_absolute() or p == Path("/"):
            raise TopologyError(f"paths.{key}: {str(p)!r} must be an absolute path below /")
        paths[key] = p

    raw_image = _need(data, "image", "")
    if not isinstance(raw_image, dict):
        raise TopologyError("image: expected a mapping")
    _unknown(raw_image, _IMAGE_KEYS, "image.")
    suites = _need(raw_image, "suites", "image.")
    if not isinstance(suites, list) or not suites:
        raise TopologyError("image.suites: expected a non-empty list of Debian release names")
    for name in suites:
        if not isinstance(name, str) or not re.match(r"^[a-z]+$", name) or name == MIXED:
            raise TopologyError(f"image.suites: {name!r} is not a Debian release name")
    if len(set(suites)) != len(suites):
        raise TopologyError("image.suites: a release is listed twice")
    if release is None:
        release = suites[0]
    if release != MIXED and release not in suites:
        raise TopologyError(f"{RELEASE_ENV}: {release!r} is not a release the lab can boot; "
                            f"choose one of {', '.join(suites)} or {MIXED!r} (image.suites)")
    mirror = _str(_need(raw_image, "mirror", "image."), "image.mirror")
    if not re.match(r"^(https?|file)://\S+$", mirror):
        raise TopologyError(f"image.mirror: {mirror!r} is not an http(s):// or file:// URL")
    packages = _need(raw_image, "packages", "image.")
    if not isinstance(packages, list) or not packages:
        raise TopologyError("image.packages: expected a non-empty list")
    for p in packages:
        if not isinstance(p, str) or not _PKG_RE.match(p):
            raise TopologyError(f"image.packages: {p!r} is not a Debian package name")
    units = raw_image.get("disabled_units") or []
    if not isinstance(units, list):
        raise TopologyError("image.disabled_units: expected a list")
    for u in units:
        if not isinstance(u, str) or not _UNIT_RE.match(u):
            raise TopologyError(f"image.disabled_units: {u!r} is not a unit name")

    return Topology(
        subnet=subnet,
        control=control,
        vip=vip,
        interface=interface,
        user=user,
        hosts=tuple(hosts),
        groups=groups,
        state_dir=paths["state"],
        run_dir=paths["run"],
        cache_dir=paths["cache"],
        image=Image(tuple(suites), mirror, tuple(packages), tuple(units)),
        source=source,
        release=release,
    )


def _read_yaml(path: Path, what: str) -> Any:
    try:
        text = path.read_text()
    except OSError as exc:
        raise TopologyError(f"cannot read {what} {path}: {exc.strerror}") from None
    try:
        return yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise TopologyError(f"{path}: invalid YAML: {exc}") from None


def inventory_dir(data: dict[str, Any], source: Path) -> Path:
    """The inventory directory a topology file names (relative to the file's directory)."""
    return (source.parent / _str(_need(data, "inventory", ""), "inventory")).resolve()


def load(path: Path | str | None = None, release: str | None = None) -> Topology:
    """The topology file `path` (default lab/topology.yml) with its inventory; the hosts boot
    `release`, else $LAY7_LAB_RELEASE, else the first of image.suites."""
    path = Path(path) if path else DEFAULT_TOPOLOGY
    release = release or os.environ.get(RELEASE_ENV) or None
    data = _read_yaml(path, "topology")
    if not isinstance(data, dict):
        raise TopologyError(f"topology: expected a mapping, got {type(data).__name__}")
    inv = inventory_dir(data, path)
    return parse(data, _read_yaml(inv / HOSTS_FILE, "inventory"), _read_yaml(inv / LB_VARS_FILE, "inventory"),
                 source=path, release=release)
