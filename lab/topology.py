"""Parse and validate lab/topology.yml: the one declarative description of the lab."""

from __future__ import annotations

import ipaddress
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

DEFAULT_TOPOLOGY = Path(__file__).with_name("topology.yml")

# Host names become network namespace and veth names ("lay7-<name>", at most 15 bytes).
_NAME_RE = re.compile(r"^[a-z][a-z0-9]{0,9}$")
_UNIT_RE = re.compile(r"^[A-Za-z0-9@._-]+\.(service|socket|timer|target)$")
_PKG_RE = re.compile(r"^[a-z0-9][a-z0-9+.-]+$")
_TOP_KEYS = {"subnet", "control", "vip", "interface", "user", "hosts", "groups", "paths", "image"}
_PATH_KEYS = {"state", "run", "cache"}
_IMAGE_KEYS = {"suite", "mirror", "packages", "disabled_units"}


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
    suite: str
    mirror: str
    packages: tuple[str, ...]
    disabled_units: tuple[str, ...]


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


def parse(data: Any, source: Path | None = None) -> Topology:
    """Validate the loaded YAML document and return a Topology."""
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
    vip = _addr(_need(data, "vip", ""), "vip")
    inside(vip, "vip")
    interface = _str(_need(data, "interface", ""), "interface")
    if len(interface) > 15 or not re.match(r"^[a-z][a-z0-9]*$", interface):
        raise TopologyError(f"interface: {interface!r} is not a valid interface name")
    user = _str(_need(data, "user", ""), "user")
    if not re.match(r"^[a-z_][a-z0-9_-]*$", user):
        raise TopologyError(f"user: {user!r} is not a valid user name")

    raw_hosts = _need(data, "hosts", "")
    if not isinstance(raw_hosts, dict) or not raw_hosts:
        raise TopologyError("hosts: expected a non-empty mapping of name: address")
    hosts: list[Host] = []
    used: dict[ipaddress.IPv4Address, str] = {control: "control", vip: "vip"}
    for name, raw in raw_hosts.items():
        if not isinstance(name, str) or not _NAME_RE.match(name):
            raise TopologyError(
                f"hosts.{name}: host names must match {_NAME_RE.pattern} (they name namespaces and veths)"
            )
        address = _addr(raw, f"hosts.{name}")
        inside(address, f"hosts.{name}")
        if address in used:
            raise TopologyError(f"hosts.{name}: address {address} already used by {used[address]}")
        used[address] = name
        hosts.append(Host(name, address))
    names = {h.name for h in hosts}

    raw_groups = data.get("groups") or {}
    if not isinstance(raw_groups, dict):
        raise TopologyError("groups: expected a mapping of group: [hosts]")
    groups: dict[str, tuple[str, ...]] = {}
    for group, members in raw_groups.items():
        if not isinstance(group, str) or not re.match(r"^[a-z_][a-z0-9_]*$", group):
            raise TopologyError(f"groups.{group}: invalid group name")
        if group in names or group in ("all", "ungrouped"):
            raise TopologyError(f"groups.{group}: clashes with a host or a built-in group name")
        if not isinstance(members, list) or not members:
            raise TopologyError(f"groups.{group}: expected a non-empty list of host names")
        for m in members:
            if m not in names:
                raise TopologyError(f"groups.{group}: unknown host {m!r}; known: {', '.join(sorted(names))}")
        if len(set(members)) != len(members):
            raise TopologyError(f"groups.{group}: lists a host twice")
        groups[group] = tuple(members)

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
    suite = _str(_need(raw_image, "suite", "image."), "image.suite")
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
        image=Image(suite, mirror, tuple(packages), tuple(units)),
        source=source,
    )


def load(path: Path | str | None = None) -> Topology:
    path = Path(path) if path else DEFAULT_TOPOLOGY
    try:
        text = path.read_text()
    except OSError as exc:
        raise TopologyError(f"cannot read topology {path}: {exc.strerror}") from None
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise TopologyError(f"{path}: invalid YAML: {exc}") from None
    return parse(data, source=path)
