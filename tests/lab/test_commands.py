"""Command construction and image recipe: pure functions, no root needed."""

import json
from pathlib import Path

import pytest

from lab import image, machine, network, ssh, topology
from lab.cgroups import cgroup_roots


@pytest.fixture(scope="module")
def topo():
    return topology.load()


def test_nspawn_boots_systemd_in_the_host_namespace(topo):
    h = topo.host("hap1")
    argv = machine.nspawn_argv(Path("/x/hap1/root"), h)
    assert argv[0] == "systemd-nspawn"
    assert argv[argv.index("-D") + 1] == "/x/hap1/root"
    assert argv[argv.index("-M") + 1] == "hap1"
    for flag in ("--register=no", "--keep-unit", "--boot", "--network-namespace-path=/run/netns/lay7-hap1",
                 "--capability=CAP_NET_ADMIN,CAP_NET_RAW"):
        assert flag in argv
    assert machine.NSPAWN_ENV == {"SYSTEMD_NSPAWN_API_VFS_WRITABLE": "network"}


def test_host_network_is_set_before_boot(topo):
    h = topo.host("web2")
    argvs = network.host_net_argvs(topo, h)
    assert argvs[0] == ["ip", "netns", "add", "lay7-web2"]
    joined = [" ".join(a) for a in argvs]
    assert "ip -n lay7-br link add lay7-web2 type veth peer name eth1 netns lay7-web2" in joined
    assert "ip -n lay7-br link set lay7-web2 master br0 up" in joined
    assert "ip -n lay7-web2 addr add 192.168.56.12/24 dev eth1" in joined
    assert joined.index("ip -n lay7-web2 addr add 192.168.56.12/24 dev eth1") < joined.index(
        "ip -n lay7-web2 link set eth1 up")


def test_control_node_gets_its_address_on_the_bridge(topo):
    joined = [" ".join(a) for a in network.control_argvs(topo)]
    assert "ip addr add 192.168.56.1/24 dev lay7-ctl" in joined
    assert f"ip -n lay7-br link set {network.CONTROL_PORT} master br0 up" in joined
    assert len(network.CONTROL_PORT) <= 15


def test_bridge_lives_in_its_own_namespace():
    for argv in network.bridge_argvs()[1:]:
        assert argv[:3] == ["ip", "-n", "lay7-br"]


def test_safety_route_is_unreachable_with_high_metric(topo):
    assert network.safety_route_argv(topo) == ["ip", "route", "replace", "unreachable", "192.168.56.0/24",
                                         "metric", str(network.SAFETY_METRIC)]
    assert network.SAFETY_METRIC > 0


@pytest.mark.parametrize(("up", "state"), [(False, "down"), (True, "up")])
def test_cut_and_heal_toggle_the_bridge_side(topo, up, state):
    assert network.link_argv(topo.host("web3"), up) == ["ip", "-n", "lay7-br", "link", "set", "lay7-web3", state]


def test_partition_drops_both_directions_between_the_pair_only(topo):
    rules = network.partition_ruleset([(topo.host("hap1").bridge_port, topo.host("hap2").bridge_port)])
    assert "table bridge lay7_partition" in rules
    assert "hook forward" in rules
    assert 'iifname "lay7-hap1" oifname "lay7-hap2" drop' in rules
    assert 'iifname "lay7-hap2" oifname "lay7-hap1" drop' in rules
    assert rules.count(" drop") == 2
    assert "web" not in rules


def test_partition_reset_is_safe_when_absent():
    assert network.partition_reset_script().splitlines() == [
        "add table bridge lay7_partition", "delete table bridge lay7_partition"]


def test_ssh_uses_lab_key_and_known_hosts(topo):
    argv = ssh.ssh_argv(topo, topo.host("web1"), ["echo", "a b"])
    assert argv[0] == "ssh"
    assert argv[argv.index("-i") + 1] == "/var/lib/lay7-lab/id_ed25519"
    assert "UserKnownHostsFile=/var/lib/lay7-lab/known_hosts" in argv
    assert "BatchMode=yes" in argv
    assert argv[-3:] == ["vagrant@192.168.56.11", "--", "echo 'a b'"]


def test_nsenter_enters_the_host_namespaces():
    argv = machine.nsenter_argv(4242, ["hostname"])
    assert argv[:3] == ["nsenter", "-t", "4242"]
    for ns in ("-m", "-u", "-i", "-n", "-p"):
        assert ns in argv
    assert argv[-1] == "hostname"


def test_debootstrap_argv(topo):
    argv = image.debootstrap_argv(topo.image, Path("/c/build"))
    assert argv[:2] == ["debootstrap", "--variant=minbase"]
    included = argv[2].split("=", 1)[1].split(",")
    for pkg in ("python3", "python3-apt", "openssh-server", "sudo", "apache2", "haproxy", "keepalived",
                "nftables", "iproute2", "curl", "procps", "ca-certificates", "systemd-sysv"):
        assert pkg in included
    assert argv[-3:] == ["bookworm", "/c/build", "http://deb.debian.org/debian"]
    assert image.debootstrap_argv(topo.image, Path("/c/build"), "trixie")[-3] == "trixie"


def test_each_release_has_its_own_image(topo):
    paths = {image.image_path(topo, s) for s in ("bookworm", "trixie")}
    assert len(paths) == 2
    assert image.image_path(topo) == image.image_path(topo, "bookworm")
    assert image.image_path(topo, "trixie").name.startswith("base-trixie-")
    assert image.recipe(topo, "trixie")["suite"] == "trixie"


def test_a_build_step_says_it_is_alive(tmp_path):
    # A silent minute-long debootstrap looks hung: the lab logs progress while it runs.
    logfile = tmp_path / "build.log"
    lines = []
    t0 = __import__("time").monotonic()
    rc = image.run_with_heartbeat(["sh", "-c", "echo fetching base; sleep 0.55; echo done; exit 3"],
                                  logfile, lines.append, "debootstrap trixie", every=0.1)
    assert rc == 3
    assert __import__("time").monotonic() - t0 < 5
    assert len(lines) >= 3, lines
    assert all(ln.startswith("debootstrap trixie: ") for ln in lines)
    assert any("fetching base" in ln for ln in lines)
    assert logfile.read_text() == "fetching base\ndone\n"


def test_recipe_hash_follows_the_recipe(raw_topology, raw_inventory):
    base = topology.parse(raw_topology, *raw_inventory)
    h0 = image.recipe_hash(image.recipe(base))
    assert h0 == image.recipe_hash(image.recipe(topology.parse(raw_topology, *raw_inventory)))
    raw_topology["image"]["packages"].append("tcpdump")
    assert image.recipe_hash(image.recipe(topology.parse(raw_topology, *raw_inventory))) != h0
    # host addresses are not part of the image
    raw_topology["image"]["packages"].pop()
    raw_inventory[0]["all"]["children"]["webservers"]["hosts"]["web3"]["lay7_node_address"] = "192.168.56.14"
    assert image.recipe_hash(image.recipe(topology.parse(raw_topology, *raw_inventory))) == h0


def test_recipe_includes_the_setup_script(topo, monkeypatch, tmp_path):
    h0 = image.recipe_hash(image.recipe(topo))
    script = tmp_path / "setup.sh"
    script.write_text(image.SETUP_SCRIPT.read_text() + "\necho changed\n")
    monkeypatch.setattr(image, "SETUP_SCRIPT", script)
    assert image.recipe_hash(image.recipe(topo)) != h0


MOUNTINFO = """\
25 30 0:22 / /sys rw,nosuid - sysfs sysfs rw
31 25 0:26 / /sys/fs/cgroup rw - tmpfs tmpfs rw,mode=755
32 31 0:27 / /sys/fs/cgroup/unified rw,relatime - cgroup2 cgroup2 rw
33 31 0:28 / /sys/fs/cgroup/systemd rw,relatime - cgroup cgroup rw,xattr,name=systemd
34 31 0:29 / /sys/fs/cgroup/memory rw,relatime - cgroup cgroup rw,memory
"""


def test_cgroup_roots_are_the_ones_systemd_writes():
    assert cgroup_roots(MOUNTINFO) == [Path("/sys/fs/cgroup/unified"), Path("/sys/fs/cgroup/systemd")]
    assert cgroup_roots("40 1 0:30 / /sys/fs/cgroup rw - cgroup2 cgroup2 rw,nsdelegate\n") == [
        Path("/sys/fs/cgroup")]
    assert cgroup_roots("") == []


def test_subnet_holders_are_other_links_in_the_lab_subnet(topo):
    addrs = json.dumps([
        {"ifname": "lo", "addr_info": [{"local": "127.0.0.1", "prefixlen": 8}]},
        {"ifname": network.CONTROL_LINK, "addr_info": [{"local": str(topo.control), "prefixlen": 24}]},
        {"ifname": "lay7-vag0", "addr_info": [{"local": "192.168.56.1", "prefixlen": 24}]},
        {"ifname": "eth0", "addr_info": [{"local": "10.0.0.5", "prefixlen": 24}]},
    ])
    assert network.subnet_holders(topo, addrs) == ["lay7-vag0 (192.168.56.1/24)"]
    assert network.subnet_holders(topo, "[]") == []
