"""lab/topology.yml and the inventory it reads the topology from: parsing and validation, and
the lab's connection settings (inventory/lab/connection.yml) kept in step with the substrate."""

import copy
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


WEB = "all.children.webservers.hosts"
HOSTS_YML = "hosts.yml: all.children"


@pytest.mark.parametrize(
    ("document", "field", "value", "message"),
    [
        ("topology", "subnet", "192.168.56.1/24", r"subnet: '192.168.56.1/24' is not an IPv4 network"),
        ("topology", "subnet", KeyError, r"^subnet: required"),
        ("topology", "control", "10.0.0.1", r"control: 10.0.0.1 is not a host address in subnet 192.168.56.0/24"),
        ("topology", "control", "192.168.56.255", r"control: 192.168.56.255 is not a host address"),
        ("topology", "interface", "eth1-too-long-name", r"interface: 'eth1-too-long-name' is not a valid interface"),
        ("topology", "user", "Root!", r"user: 'Root!' is not a valid user name"),
        ("topology", "inventory", KeyError, r"^inventory: required"),
        ("topology", "paths.state", "relative/dir", r"paths.state: 'relative/dir' must be an absolute path"),
        ("topology", "paths.cache", "/", r"paths.cache: '/' must be an absolute path below /"),
        ("topology", "paths.run", KeyError, r"paths.run: required"),
        ("topology", "paths.tmp", "/tmp", r"paths.tmp: unknown key"),
        ("topology", "image.mirror", "deb.debian.org", r"image.mirror: 'deb.debian.org' is not an http"),
        ("topology", "image.packages", [], r"image.packages: expected a non-empty list"),
        ("topology", "image.packages", ["apache2", "rm -rf"], r"image.packages: 'rm -rf' is not a Debian package"),
        ("topology", "image.disabled_units", ["apache2"], r"image.disabled_units: 'apache2' is not a unit name"),
        ("topology", "image.kernel", "x", r"image.kernel: unknown key"),
        ("topology", "extra", 1, r"^extra: unknown key"),
        # The topology written once: names, groups and addresses in the inventory's hosts.yml.
        ("hosts", "all", KeyError, r"^hosts.yml: all: expected a mapping under the top-level key 'all'"),
        ("hosts", "all.hosts", {"web4": None}, r"^hosts.yml: all.hosts: unknown key; allowed: children, vars"),
        ("hosts", "all.children", {}, r"^hosts.yml: all.children: expected a non-empty mapping"),
        ("hosts", "all.children.webservers.hosts", {}, rf"^{HOSTS_YML}.webservers.hosts: expected a non-empty mapping"),
        ("hosts", "all.children.webservers.children", {"x": {}}, rf"^{HOSTS_YML}.webservers.children: unknown key"),
        ("hosts", f"{WEB}.web2.lay7_node_address", "192.168.56.11",
         rf"^{HOSTS_YML}.webservers.hosts.web2.lay7_node_address: address 192.168.56.11 already used by web1"),
        ("hosts", f"{WEB}.web2.lay7_node_address", "192.168.57.12",
         rf"^{HOSTS_YML}.webservers.hosts.web2.lay7_node_address: 192.168.57.12 is not a host address in subnet"),
        ("hosts", f"{WEB}.web2.lay7_node_address", "{{ ansible_host }}",
         rf"^{HOSTS_YML}.webservers.hosts.web2.lay7_node_address: '{{{{ ansible_host }}}}' is not an IPv4 address"),
        ("hosts", f"{WEB}.web2.lay7_node_address", "192.168.56.100",
         rf"^{HOSTS_YML}.webservers.hosts.web2.lay7_node_address: address 192.168.56.100 already used by the VIP"),
        ("hosts", f"{WEB}.web2.lay7_node_address", KeyError, rf"^{HOSTS_YML}.webservers.hosts.web2.lay7_node_address: required"),
        ("hosts", f"{WEB}.web2", "192.168.56.12", rf"^{HOSTS_YML}.webservers.hosts.web2: expected a mapping of host variables"),
        ("hosts", f"{WEB}.Web_2", {"lay7_node_address": "192.168.56.30"}, rf"^{HOSTS_YML}.webservers.hosts.Web_2: host names must"),
        ("hosts", f"{WEB}.averyverylongname", {"lay7_node_address": "192.168.56.30"}, r"hosts.averyverylongname: host names must"),
        ("hosts", "all.children.all", {"hosts": {"web1": None}}, rf"^{HOSTS_YML}.all: clashes with a built-in group name"),
        ("hosts", "all.children.web1", {"hosts": {"web1": None}}, rf"^{HOSTS_YML}.web1: clashes with a host name"),
        ("hosts", "all.children.Web-Servers", {"hosts": {"web1": None}}, rf"^{HOSTS_YML}.Web-Servers: invalid group name"),
        ("hosts", "all.children.spare", {"hosts": {"web1": {"lay7_node_address": "192.168.56.31"}}},
         rf"^{HOSTS_YML}.spare.hosts.web1.lay7_node_address: 192.168.56.31 differs from 192.168.56.11"),
        # The VIP: a role input in group_vars/loadbalancers.yml, checked against the lab's subnet.
        ("lb_vars", "keepalived_vip_address", "nope",
         r"^group_vars/loadbalancers.yml: keepalived_vip_address: 'nope' is not an IPv4 address"),
        ("lb_vars", "keepalived_vip_address", KeyError, r"^group_vars/loadbalancers.yml: keepalived_vip_address: required"),
        ("lb_vars", "keepalived_vip_address", "10.0.0.100",
         r"^group_vars/loadbalancers.yml: keepalived_vip_address: 10.0.0.100 is not a host address in subnet"),
        ("lb_vars", "keepalived_vip_address", "192.168.56.1",
         r"^group_vars/loadbalancers.yml: keepalived_vip_address: 192.168.56.1 is the control node's address"),
        ("lb_vars", "keepalived_vip_prefix", 16,
         r"^group_vars/loadbalancers.yml: keepalived_vip_prefix: 16 is not the lab subnet's prefix length 24"),
    ],
)
def test_bad_topology_names_the_field(raw_topology, raw_inventory, document, field, value, message):
    docs = {"topology": copy.deepcopy(raw_topology), "hosts": copy.deepcopy(raw_inventory[0]),
            "lb_vars": copy.deepcopy(raw_inventory[1])}
    _set(docs[document], field, value)
    with pytest.raises(TopologyError, match=message):
        topology.parse(docs["topology"], docs["hosts"], docs["lb_vars"])


def test_a_host_in_two_groups_needs_its_address_once(raw_topology, raw_inventory):
    hosts, lb_vars = raw_inventory
    hosts["all"]["children"]["spare"] = {"hosts": {"web2": None, "web3": {"lay7_node_address": "192.168.56.13"}}}
    t = topology.parse(raw_topology, hosts, lb_vars)
    assert t.groups["spare"] == ("web2", "web3")
    assert t.host_names == ["hap1", "hap2", "web1", "web2", "web3"]


def test_not_a_mapping(raw_inventory):
    with pytest.raises(TopologyError, match="topology: expected a mapping, got list"):
        topology.parse([1, 2], *raw_inventory)
    with pytest.raises(TopologyError, match="group_vars/loadbalancers.yml: expected a mapping, got NoneType"):
        topology.parse(yaml.safe_load(topology.DEFAULT_TOPOLOGY.read_text()), raw_inventory[0], None)


def test_unreadable_and_invalid_files(tmp_path):
    with pytest.raises(TopologyError, match="cannot read topology"):
        topology.load(tmp_path / "missing.yml")
    bad = tmp_path / "bad.yml"
    bad.write_text("hosts: [unclosed\n")
    with pytest.raises(TopologyError, match="invalid YAML"):
        topology.load(bad)
    # The inventory is found relative to the topology file.
    moved = tmp_path / "topology.yml"
    moved.write_text(topology.DEFAULT_TOPOLOGY.read_text())
    with pytest.raises(TopologyError, match=f"cannot read inventory {tmp_path.parent}/inventory/lab/hosts.yml"):
        topology.load(moved)


# ------------------------------------------------------------------ inventory/lab/connection.yml


@pytest.fixture(scope="module")
def connection():
    return yaml.safe_load((REPO / "inventory/lab/connection.yml").read_text())


def test_the_topology_is_read_from_the_inventory():
    t = topology.load()
    assert t.source == topology.DEFAULT_TOPOLOGY
    inv = yaml.safe_load((REPO / "inventory/lab/hosts.yml").read_text())
    assert list(inv["all"]["children"]) == list(t.groups)
    assert "hosts" not in yaml.safe_load(topology.DEFAULT_TOPOLOGY.read_text())


def test_connection_vars_match_lab(connection):
    t = topology.load()
    av = connection["all"]["vars"]
    assert set(connection) == {"all"} and set(connection["all"]) == {"vars"}
    assert av["ansible_user"] == t.user
    assert av["ansible_ssh_private_key_file"] == str(t.key_path)
    assert f"UserKnownHostsFile={t.known_hosts}" in av["ansible_ssh_common_args"]
    assert av["ansible_become_method"] in ("sudo", "ansible.builtin.sudo")
    # role variables belong to group_vars/, never to the connection file
    assert all(k.startswith("ansible_") for k in av)


def test_releases_default_to_the_first_suite(raw_topology, raw_inventory, monkeypatch):
    monkeypatch.delenv(topology.RELEASE_ENV, raising=False)
    t = topology.parse(raw_topology, *raw_inventory)
    assert t.image.suites == ("bookworm", "trixie")
    assert {t.suite_of(h.name) for h in t.hosts} == {"bookworm"}
    assert t.suites_used == ["bookworm"]


def test_one_release_for_every_host(raw_topology, raw_inventory):
    t = topology.parse(raw_topology, *raw_inventory, release="trixie")
    assert {t.suite_of(h.name) for h in t.hosts} == {"trixie"}
    assert t.suites_used == ["trixie"]


def test_mixed_releases_alternate_within_each_group(raw_topology, raw_inventory):
    t = topology.parse(raw_topology, *raw_inventory, release="mixed")
    assert {h.name: t.suite_of(h.name) for h in t.hosts} == {
        "hap1": "bookworm", "hap2": "trixie", "web1": "bookworm", "web2": "trixie", "web3": "bookworm",
    }
    assert t.suites_used == ["bookworm", "trixie"]


def test_release_from_the_environment(monkeypatch):
    monkeypatch.setenv(topology.RELEASE_ENV, "trixie")
    assert topology.load().suite_of("hap1") == "trixie"
    # an explicit choice wins over the environment
    assert topology.load(release="mixed").suite_of("hap1") == "bookworm"


@pytest.mark.parametrize(
    ("release", "suites", "message"),
    [
        ("buster", None, r"LAY7_LAB_RELEASE: 'buster' is not a release the lab can boot; "
                         r"choose one of bookworm, trixie or 'mixed'"),
        (None, [], r"image.suites: expected a non-empty list"),
        (None, ["bookworm", "bookworm"], r"image.suites: a release is listed twice"),
        (None, ["Bookworm 12"], r"image.suites: 'Bookworm 12' is not a Debian release name"),
        (None, ["mixed"], r"image.suites: 'mixed' is not a Debian release name"),
    ],
)
def test_bad_releases_are_named(raw_topology, raw_inventory, release, suites, message):
    if suites is not None:
        raw_topology["image"]["suites"] = suites
    with pytest.raises(TopologyError, match=message):
        topology.parse(raw_topology, *raw_inventory, release=release)
