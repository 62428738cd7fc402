"""lab/topology.yml parsing and validation, and the inventory kept in step with it."""

import copy
import ipaddress
from pathlib import Path

import pytest
import yaml

from lab import topology
from lab.topology import TopologyError

REPO = Path(__file__).resolve().parents[2]


def test_default_topology_is_the_contract():
    t = topology.load()
    assert str(t.subnet) == "192.168.56.0/24"
    assert str(t.control) == "192.168.56.1"
    assert str(t.vip) == "192.168.56.100"
    assert t.interface == "eth1"
    assert t.user == "vagrant"
    assert {h.name: str(h.address) for h in t.hosts} == {
        "hap1": "192.168.56.21",
        "hap2": "192.168.56.22",
        "web1": "192.168.56.11",
        "web2": "192.168.56.12",
        "web3": "192.168.56.13",
    }
    assert t.groups == {"loadbalancers": ("hap1", "hap2"), "webservers": ("web1", "web2", "web3")}
    assert t.key_path == Path("/var/lib/lay7-lab/id_ed25519")


def test_names_fit_kernel_interface_limit():
    for h in topology.load().hosts:
        assert len(h.netns) <= 15 and len(h.bridge_port) <= 15


def test_host_lookup_names_known_hosts():
    with pytest.raises(TopologyError, match="unknown host 'web9'; known: hap1, hap2, web1"):
        topology.load().host("web9")


def _set(data, dotted, value):
    keys = dotted.split(".")
    for k in keys[:-1]:
        data = data[k]
    if value is KeyError:
        del data[keys[-1]]
    else:
        data[keys[-1]] = value


@pytest.mark.parametrize(
    ("field", "value", "message"),
    [
        ("subnet", "192.168.56.1/24", r"subnet: '192.168.56.1/24' is not an IPv4 network"),
        ("subnet", KeyError, r"^subnet: required"),
        ("control", "10.0.0.1", r"control: 10.0.0.1 is not a host address in subnet 192.168.56.0/24"),
        ("control", "192.168.56.255", r"control: 192.168.56.255 is not a host address"),
        ("vip", "nope", r"vip: 'nope' is not an IPv4 address"),
        ("vip", "192.168.56.21", r"hosts.hap1: address 192.168.56.21 already used by vip"),
        ("interface", "eth1-too-long-name", r"interface: 'eth1-too-long-name' is not a valid interface name"),
        ("user", "Root!", r"user: 'Root!' is not a valid user name"),
        ("hosts", {}, r"hosts: expected a non-empty mapping"),
        ("hosts.web2", "192.168.56.11", r"hosts.web2: address 192.168.56.11 already used by web1"),
        ("hosts.web2", "192.168.57.12", r"hosts.web2: 192.168.57.12 is not a host address in subnet"),
        ("hosts.Web_2", "192.168.56.30", r"hosts.Web_2: host names must match"),
        ("hosts.averyverylongname", "192.168.56.30", r"hosts.averyverylongname: host names must match"),
        ("groups.webservers", ["web1", "web4"], r"groups.webservers: unknown host 'web4'"),
        ("groups.webservers", [], r"groups.webservers: expected a non-empty list"),
        ("groups.webservers", ["web1", "web1"], r"groups.webservers: lists a host twice"),
        ("groups.all", ["web1"], r"groups.all: clashes with a host or a built-in group name"),
        ("groups.web1", ["web1"], r"groups.web1: clashes with a host"),
        ("paths.state", "relative/dir", r"paths.state: 'relative/dir' must be an absolute path"),
        ("paths.cache", "/", r"paths.cache: '/' must be an absolute path below /"),
        ("paths.run", KeyError, r"paths.run: required"),
        ("paths.tmp", "/tmp", r"paths.tmp: unknown key"),
        ("image.mirror", "deb.debian.org", r"image.mirror: 'deb.debian.org' is not an http"),
        ("image.packages", [], r"image.packages: expected a non-empty list"),
        ("image.packages", ["apache2", "rm -rf"], r"image.packages: 'rm -rf' is not a Debian package name"),
        ("image.disabled_units", ["apache2"], r"image.disabled_units: 'apache2' is not a unit name"),
        ("image.kernel", "x", r"image.kernel: unknown key"),
        ("extra", 1, r"^extra: unknown key"),
    ],
)
def test_bad_topology_names_the_field(raw_topology, field, value, message):
    data = copy.deepcopy(raw_topology)
    _set(data, field, value)
    with pytest.raises(TopologyError, match=message):
        topology.parse(data)


def test_not_a_mapping():
    with pytest.raises(TopologyError, match="topology: expected a mapping, got list"):
        topology.parse([1, 2])


def test_unreadable_and_invalid_files(tmp_path):
    with pytest.raises(TopologyError, match="cannot read topology"):
        topology.load(tmp_path / "missing.yml")
    bad = tmp_path / "bad.yml"
    bad.write_text("hosts: [unclosed\n")
    with pytest.raises(TopologyError, match="invalid YAML"):
        topology.load(bad)


# ------------------------------------------------------------------ inventory/lab/hosts.yml


@pytest.fixture(scope="module")
def inventory():
    return yaml.safe_load((REPO / "inventory/lab/hosts.yml").read_text())


def test_inventory_hosts_and_groups_match_topology(inventory):
    t = topology.load()
    children = inventory["all"]["children"]
    assert set(children) == set(t.groups)
    for group, members in t.groups.items():
        assert list(children[group]["hosts"]) == list(members)
    addresses = {}
    for group in children.values():
        for name, hv in group["hosts"].items():
            addresses[name] = hv["ansible_host"]
    assert addresses == {h.name: str(h.address) for h in t.hosts}
    for addr in addresses.values():
        assert ipaddress.IPv4Address(addr) in t.subnet


def test_inventory_connection_vars_match_lab(inventory):
    t = topology.load()
    av = inventory["all"]["vars"]
    assert av["ansible_user"] == t.user
    assert av["ansible_ssh_private_key_file"] == str(t.key_path)
    assert f"UserKnownHostsFile={t.known_hosts}" in av["ansible_ssh_common_args"]
    assert av["ansible_become_method"] in ("sudo", "ansible.builtin.sudo")
    # role variables belong to group_vars/, never to the connection file
    assert all(k.startswith("ansible_") for k in av)


def test_molecule_platforms_match_topology():
    t = topology.load()
    mol = yaml.safe_load((REPO / "molecule/lab/molecule.yml").read_text())
    platforms = {p["name"]: p["groups"] for p in mol["platforms"]}
    assert set(platforms) == set(t.host_names)
    for group, members in t.groups.items():
        assert {n for n, g in platforms.items() if group in g} == set(members)
    assert "idempotence" in mol["scenario"]["test_sequence"]
    assert mol["scenario"]["test_sequence"][-1] == "destroy"
