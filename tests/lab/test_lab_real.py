"""Boot the real topology and prove what the lab promises (root, ~10 s after the image exists).

Hold `flock /run/lay7-lab.lock` around the run (make lab-tests does not take it itself, so
that `flock /run/lay7-lab.lock make test` does not deadlock).
"""

import errno
import json
import os
import socket
import subprocess
import time

import pytest

from lab import Lab, LabError
from lab import network

pytestmark = pytest.mark.skipif(os.geteuid() != 0, reason="the lab needs root")


@pytest.fixture(scope="module")
def lab():
    lab = Lab(log=print)
    if lab.is_up():
        pytest.fail("a lab is already up (someone else's?); hold /run/lay7-lab.lock and run "
                    "`python -m lab down` first")
    lab.up()
    yield lab
    lab.down()
    assert lab.leftovers() == []


def tcp(addr, port=22, timeout=2.0):
    """Connect from the control node; return the SSH banner or the errno."""
    try:
        with socket.create_connection((str(addr), port), timeout=timeout) as s:
            return s.recv(64)
    except socket.timeout:
        return errno.ETIMEDOUT
    except OSError as exc:
        return exc.errno


def reaches(lab, src, dst_addr, timeout=2):
    """Does host src open a TCP connection to dst_addr:22 over the bridge?"""
    probe = f"exec 3<>/dev/tcp/{dst_addr}/22"
    return lab.exec(src, ["timeout", str(timeout), "bash", "-c", probe]).returncode == 0


def test_every_host_is_a_running_systemd_host(lab):
    for h in lab.topo.hosts:
        proc = lab.exec(h.name, ["systemctl", "is-system-running", "--wait"], timeout=60)
        failed = lab.exec(h.name, ["systemctl", "--failed", "--no-legend"]).stdout
        assert proc.stdout.strip() == "running", f"{h.name}: {proc.stdout.strip()} failed units: {failed}"
        assert lab.exec(h.name, ["cat", "/proc/1/comm"]).stdout.strip() == "systemd"


def test_ssh_own_hostname_and_address(lab):
    machine_ids = set()
    for h in lab.topo.hosts:
        proc = lab.ssh(h.name, "hostname; cat /etc/machine-id; ip -j -4 addr show dev eth1; sudo -n id -u")
        assert proc.returncode == 0, proc.stderr
        lines = proc.stdout.splitlines()
        assert lines[0] == h.name
        machine_ids.add(lines[1])
        addrs = json.loads(lines[2])[0]["addr_info"]
        assert [(a["local"], a["prefixlen"]) for a in addrs] == [(str(h.address), 24)]
        assert lines[3] == "0", "passwordless sudo"
    assert len(machine_ids) == len(lab.topo.hosts)


def test_daemons_installed_but_left_to_the_roles(lab):
    proc = lab.exec("hap1", ["systemctl", "is-enabled", "apache2", "haproxy", "keepalived"])
    assert proc.stdout.split() == ["disabled", "disabled", "disabled"]
    proc = lab.exec("hap1", ["dpkg-query", "-W", "-f=${Package} ", "python3-apt", "haproxy", "keepalived",
                             "apache2", "nftables", "curl"])
    assert proc.returncode == 0, proc.stderr


def test_hosts_reach_each_other_over_the_bridge(lab):
    missing = [(a.name, b.name) for a in lab.topo.hosts for b in lab.topo.hosts
               if a != b and not reaches(lab, a.name, b.address)]
    assert missing == []


def test_control_node_reaches_every_host(lab):
    for h in lab.topo.hosts:
        assert tcp(h.address).startswith(b"SSH-2.0-"), h.name
    route = subprocess.run(["ip", "-j", "route", "get", str(lab.topo.host("web1").address)],
                           capture_output=True, text=True, check=True)
    assert json.loads(route.stdout)[0]["dev"] == network.CONTROL_LINK


def test_hosts_do_not_reach_the_outside(lab):
    # No default route inside: a guest can reach only the lab segment.
    proc = lab.exec("web1", ["ip", "-j", "route", "show", "default"])
    assert json.loads(proc.stdout or "[]") == []


def test_sysctls_are_per_host(lab):
    key = "/proc/sys/net/ipv4/ip_nonlocal_bind"
    assert lab.exec("hap1", ["sh", "-c", f"echo 1 > {key}"]).returncode == 0
    assert lab.exec("hap1", ["cat", key]).stdout.strip() == "1"
    assert lab.exec("hap2", ["cat", key]).stdout.strip() == "0"
    with open(key) as fh:
        assert fh.read().strip() == "0", "the control node's own sysctl must not change"


def test_safety_route_present_while_up(lab):
    assert lab.safety_route_present()


def test_up_refuses_a_second_lab(lab):
    with pytest.raises(LabError, match="a lab is already up"):
        Lab().up()


def test_killed_host_is_off_and_boots_back_with_its_disk(lab):
    assert lab.exec("web3", ["sh", "-c", "echo kept > /root/marker"]).returncode == 0
    lab.kill("web3")
    assert not lab.is_running("web3")
    assert lab._host_pids(lab.host("web3")) == [], "every process of the host must be gone"
    assert tcp(lab.topo.host("web3").address, timeout=1.5) in (
        errno.EHOSTUNREACH, errno.ETIMEDOUT, errno.ECONNREFUSED)
    assert not reaches(lab, "web1", lab.topo.host("web3").address, timeout=1)
    with pytest.raises(LabError, match="web3 is not running"):
        lab.exec("web3", ["true"])
    lab.boot("web3")
    assert tcp(lab.topo.host("web3").address).startswith(b"SSH-2.0-")
    assert lab.ssh("web3", "hostname").stdout.strip() == "web3"
    assert lab.exec("web3", ["cat", "/root/marker"]).stdout.strip() == "kept"
    with pytest.raises(LabError, match="web3 is already running"):
        lab.boot("web3")


def test_cut_host_is_unreachable_and_healed_one_is_back(lab):
    web2 = lab.topo.host("web2")
    lab.cut("web2")
    assert not lab.link_up("web2")
    assert tcp(web2.address, timeout=1.5) in (errno.EHOSTUNREACH, errno.ETIMEDOUT)
    assert not reaches(lab, "hap1", web2.address, timeout=1)
    link = json.loads(lab.exec("web2", ["ip", "-j", "link", "show", "eth1"]).stdout)[0]
    assert "NO-CARRIER" in link["flags"], "the host sees its cable pulled"
    assert lab.is_running("web2"), "cut is not power-off"
    lab.heal("web2")
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline and not isinstance(tcp(web2.address, timeout=1), bytes):
        time.sleep(0.2)
    assert tcp(web2.address).startswith(b"SSH-2.0-")
    assert reaches(lab, "hap1", web2.address)


def test_partition_blocks_hap1_hap2_only(lab):
    hap1, hap2 = lab.topo.host("hap1"), lab.topo.host("hap2")
    lab.partition("hap1", "hap2")
    assert lab.partitions() == [("hap1", "hap2")]
    assert not reaches(lab, "hap1", hap2.address, timeout=1)
    assert not reaches(lab, "hap2", hap1.address, timeout=1)
    for web in ("web1", "web2", "web3"):
        assert reaches(lab, "hap1", lab.topo.host(web).address)
        assert reaches(lab, web, hap2.address)
    assert tcp(hap1.address).startswith(b"SSH-2.0-")
    assert tcp(hap2.address).startswith(b"SSH-2.0-")
    lab.unpartition()
    assert lab.partitions() == []
    assert reaches(lab, "hap1", hap2.address)
    assert reaches(lab, "hap2", hap1.address)


def test_status_reports_the_lab(lab):
    st = lab.status()
    assert st["up"] and st["safety_route"]
    assert all(h["running"] and h["link"] == "up" for h in st["hosts"].values())


def test_down_leaves_nothing_and_lab_addresses_fail_locally(lab):
    lab.down()
    assert lab.leftovers() == []
    out = subprocess.run(["ip", "-o", "link", "show"], capture_output=True, text=True, check=True).stdout
    assert "lay7-" not in out
    assert not any(n.startswith("lay7-") for n in os.listdir("/run/netns")) if os.path.isdir("/run/netns") else True
    assert lab.safety_route_present(), "the unreachable route stays after down"
    # The kernel refuses locally: it never picks the default route for a lab address.
    for addr in (lab.topo.host("hap1").address, lab.topo.vip):
        got = subprocess.run(["ip", "route", "get", str(addr)], capture_output=True, text=True, check=False)
        assert got.returncode != 0 and "No route to host" in got.stderr, got.stdout
        # The route lookup above already fails in the kernel; a connect gets the same local refusal.
        assert tcp(addr, timeout=5) == errno.EHOSTUNREACH
    lab.down()  # idempotent
    assert lab.leftovers() == []


def test_down_after_a_half_failed_up(lab):
    """Runs after the lab is down: fail `up` midway, then check nothing is left."""
    assert not lab.is_up()
    # 1. up fails after the hosts booted: up tears everything down itself
    real_wait = Lab.wait_ssh

    def broken_wait(self, name, timeout=0):
        if name == "web2":
            raise LabError("web2 simulated SSH failure")
        return real_wait(self, name, timeout)

    Lab.wait_ssh = broken_wait
    try:
        with pytest.raises(LabError, match="web2 simulated SSH failure"):
            lab.up()
    finally:
        Lab.wait_ssh = real_wait
    assert lab.leftovers() == []
    # 2. a process died midway (only part of the network and one mounted, booted host exist)
    from lab.image import image_path

    lab._create_network()
    lab.ensure_key()
    lab._prepare_root(image_path(lab.topo), lab.host("hap1"))
    lab._start(lab.host("hap1"))
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline and lab.init_pid("hap1") is None:
        time.sleep(0.1)
    assert lab.leftovers() != []
    lab.down()
    assert lab.leftovers() == []
