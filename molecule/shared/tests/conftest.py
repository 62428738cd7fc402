"""Shared fixtures for verifying the deployed topology from the control node.

Every request goes to the VIP from the control node (never to anything but lab
addresses). Fault injection wraps the lab tool (`lab.Lab`: power a host off and on,
cut its cable) and testinfra (stop/start a service); every fault a test injects is
undone by the fixture's finalizer, which then waits, bounded in time, until the
topology is healthy again.

Fixtures: `inventory` (host names, groups, addresses, VIP), `nodes` (testinfra host
per name, sudo), `vip` (HTTP client to the VIP), `lab` (lab.Lab or skip), `faults`
(function scoped: injection + restore), `steady` (waits for the healthy state),
`timings` (session: failover numbers written to build/failover-timings.json).
Helpers: `wait_for`, `vip_holders`, `holder_and_other`, `journal`, `run_site`, `tcp_connects`
(the VRRP observations themselves are in lab/observe.py, shared with the benchmark).
"""

from __future__ import annotations

import http.client
import json
import os
import socket
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import pytest
import testinfra
import yaml
from testinfra.utils.ansible_runner import AnsibleRunner

ROOT = Path(__file__).resolve().parents[3]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from lab import observe, site  # noqa: E402  (the repository root is on sys.path only from here)
from lab.substrate import Substrate  # noqa: E402

INTERFACE = "eth1"
# The seed topology's routing contract: path -> host that must serve it (one copy, shared
# with the demo and a unit test that checks it against the inventory's route table).
EXPECTED_ROUTES = site.seed_contract()
# The page the lab inventory's web servers serve.
PAGE_TEXT = yaml.safe_load((ROOT / "inventory" / "lab" / "group_vars" / "webservers.yml").read_text())["apache_web_page_text"]
SERVED_BY = "X-Served-By"
STEADY_TIMEOUT = 120.0
# The tests run on the nspawn lab (native speed) or on the Vagrant VMs (molecule/vagrant sets
# LAY7_SUBSTRATE=vagrant), which are emulated in software: a few bounds below differ there.
ON_VAGRANT = os.environ.get("LAY7_SUBSTRATE") == "vagrant"
# The open-loop probe's schedule: one request every PROBE_INTERVAL per client kind (new
# connection, keep-alive). On the lab, 5 ms: 400 requests/s through the VIP. The Vagrant VMs
# are software-emulated, five one-CPU VMs on two host cores, and what they can serve depends
# on how many of them are busy at once. With no fault, 400 requests/s already queued for 5-7 s
# (p99), 100/s for 0.09 s. With Ansible gathering facts on both load balancers at once (the
# start of every site.yml run in these tests) 100 requests/s gave 532-738 new-connection
# timeouts (3 s) per run and 40/s none (p99 0.12 s); a whole route-table deploy at 40/s: 0
# failed, p99 0.46 s. (On all five VMs at once even 40/s fails; the tests limit their runs to
# the load balancers.) The fault tests check failover, not throughput: on Vagrant they probe
# at 40 requests/s (50 ms).
PROBE_INTERVAL = 0.05 if ON_VAGRANT else 0.005
# The load-balancer fault tests' client timeout: a request not answered within it counts as
# failed. 1 s on the lab. On the emulated VMs a reload makes HAProxy parse its configuration
# on the holder's one emulated CPU (about 10 s per `systemctl reload` there), and requests
# queue meanwhile: 20 reloads at 100 requests/s measured 0 errors but p99 0.82 s and a
# maximum of 0.98 s, so a 1 s timeout turned slowness into "failures". 3 s there.
PROBE_TIMEOUT = 3.0 if ON_VAGRANT else 1.0
# How long one tagged site.yml run from a test may take before it counts as hung. On the lab a
# run limited to the load balancers takes 20-40 s; on the emulated VMs every task costs seconds
# (fact gathering and the preflight on all five hosts, then the two load balancers one after
# the other): about 5 minutes measured, so three times that.
SITE_RUN_BOUND = 900.0 if ON_VAGRANT else 300.0
# How deep the verify step goes. "core" (the default: `make test`, a plain `molecule test`)
# checks every feature on the real hosts at least once: routing over HTTP and HTTPS (with
# the TLS scanner, the browser and a certificate rotation under load), the web servers'
# view, stats and metrics, backend failures, the VIP on a dead, stopped, hung or powered-off
# load balancer, a partition, forged adverts, keepalived restarts, reloads under load,
# persistence, the drain, rolling-update and maintenance playbooks, one bad input of each
# kind. "all" (`make test-extended`, `make test-vagrant`) adds the tests marked `extended`:
# multicast adverts, preemption, the rollout order, route-table deploys in both forms,
# password rotation, servers removed and added, the operations playbooks' refusals, and
# every bad input - each minutes of lab time (site.yml runs), which would put `make test`
# past its 25-minute budget on a two-core machine.
VERIFY_DEPTHS = ("core", "all")
VERIFY_DEPTH = os.environ.get("LAY7_VERIFY", "core")


def pytest_configure(config):
    if VERIFY_DEPTH not in VERIFY_DEPTHS:
        raise pytest.UsageError(f"LAY7_VERIFY must be one of {', '.join(VERIFY_DEPTHS)}, got {VERIFY_DEPTH!r}")
    config.addinivalue_line("markers", "extended: run only with LAY7_VERIFY=all (make test-extended)")


def pytest_collection_modifyitems(config, items):
    if VERIFY_DEPTH == "all":
        return
    # Skipped, not deselected: the summary says how many were left to the extended run.
    skip = pytest.mark.skip(reason="extended verification: make test-extended (LAY7_VERIFY=all)")
    for item in items:
        if "extended" in item.keywords:
            item.add_marker(skip)


def inventory_path() -> str:
    """The inventory the converge saw. Under Molecule that is the whole inventory
    *directory* (its generated file plus the scenario's linked hosts and group_vars):
    MOLECULE_INVENTORY_FILE alone lacks the linked files, e.g. the topology's lay7_node_address."""
    generated = os.environ.get("MOLECULE_INVENTORY_FILE")
    return str(Path(generated).parent) if generated else str(ROOT / "inventory" / "lab")


def run_site(extra: dict, tags: str | None = None, timeout: float = SITE_RUN_BOUND,
             limit: str | None = None) -> subprocess.CompletedProcess:
    """Run the real site playbook from the control node against the inventory under test
    (limit: e.g. "loadbalancers" for a change that only concerns them; every task on a
    software-emulated VM costs seconds)."""
    return site.run_site(inventory_path(), extra, tags=tags, limit=limit, timeout=timeout)


# --------------------------------------------------------------------------- waiting
def wait_for(predicate: Callable[[], object], timeout: float, what: str, interval: float = 0.2) -> float:
    """Poll predicate until truthy; return the seconds it took. Bounded: fails after timeout."""
    t0 = time.monotonic()
    last_error = ""
    while True:
        try:
            if predicate():
                return time.monotonic() - t0
        except Exception as exc:  # noqa: BLE001 - a host may be rebooting; report the last error
            last_error = f" (last error: {exc!r})"
        if time.monotonic() - t0 > timeout:
            raise AssertionError(f"{what}: not reached within {timeout:.0f} s{last_error}")
        time.sleep(interval)


# --------------------------------------------------------------------------- inventory
@dataclass(frozen=True)
class Inventory:
    groups: dict[str, list[str]]
    addresses: dict[str, str]
    vip: str
    nopreempt: bool
    control: str
    advert_interval: float

    @property
    def webservers(self) -> list[str]:
        return self.groups["webservers"]

    @property
    def loadbalancers(self) -> list[str]:
        return self.groups["loadbalancers"]

    @property
    def master(self) -> str:
        """The load balancer with the highest VRRP priority (first in host order)."""
        return self.loadbalancers[0]

    @property
    def backup(self) -> str:
        return self.loadbalancers[1]


@pytest.fixture(scope="session")
def inventory() -> Inventory:
    runner = AnsibleRunner(inventory_path())
    # Inventory order: the first load balancer has the highest derived VRRP priority.
    groups = {g: list(runner.get_hosts(g)) for g in ("webservers", "loadbalancers")}
    # The topology address (inventory/lab/hosts.yml), not ansible_host: Vagrant reaches its
    # VMs over another network.
    addresses = {h: str(runner.get_variables(h)["lay7_node_address"]) for h in runner.get_hosts("all")}
    lb_vars = runner.get_variables(groups["loadbalancers"][0])
    try:
        from lab.topology import load
        control = str(load().control)
    except Exception:  # noqa: BLE001 - not the lab substrate
        control = ""
    defaults = yaml.safe_load((ROOT / "roles" / "keepalived_vip" / "defaults" / "main.yml").read_text())
    return Inventory(groups=groups, addresses=addresses, vip=str(lb_vars["keepalived_vip_address"]),
                     nopreempt=bool(lb_vars.get("keepalived_vip_nopreempt", defaults["keepalived_vip_nopreempt"])),
                     control=control,
                     advert_interval=float(lb_vars.get("keepalived_vip_advert_interval",
                                                       defaults["keepalived_vip_advert_interval"])))


@pytest.fixture(scope="session")
def nodes(inventory: Inventory) -> dict[str, testinfra.host.Host]:
    inv = inventory_path()
    # testinfra connects to ansible_host as the inventory writes it, untemplated. Molecule's
    # inventory gives it per host; inventory/lab alone has only `{{ lay7_node_address }}`.
    hostvars = AnsibleRunner.get_runner(inv).inventory["_meta"]["hostvars"]
    for name, address in inventory.addresses.items():
        if "{{" in str(hostvars.get(name, {}).get("ansible_host", "")):
            hostvars[name]["ansible_host"] = address
    return {name: testinfra.get_host(f"ansible://{name}", ansible_inventory=inv, sudo=True)
            for name in inventory.addresses}


# --------------------------------------------------------------------------- HTTP
@dataclass
class Reply:
    status: int
    headers: dict[str, str]
    body: str

    @property
    def served_by(self) -> str | None:
        return self.headers.get(SERVED_BY.lower())


@dataclass
class HttpClient:
    """One new TCP connection per request, so every request sees the current VIP holder."""

    address: str
    port: int = 80

    def get(self, path: str, headers: dict[str, str] | None = None, timeout: float = 2.0) -> Reply:
        conn = http.client.HTTPConnection(self.address, self.port, timeout=timeout)
        try:
            conn.request("GET", path, headers={"Connection": "close", **(headers or {})})
            resp = conn.getresponse()
            body = resp.read().decode("utf-8", "replace")
            return Reply(resp.status, {k.lower(): v for k, v in resp.getheaders()}, body)
        finally:
            conn.close()

    def try_get(self, path: str, headers: dict[str, str] | None = None, timeout: float = 2.0) -> Reply | None:
        try:
            return self.get(path, headers, timeout)
        except (OSError, http.client.HTTPException):
            return None

    def routes_ok(self) -> bool:
        """Every path of the routing proof reaches its expected host."""
        for path, want in EXPECTED_ROUTES.items():
            r = self.try_get(path)
            if r is None or r.status != 200 or r.served_by != want:
                return False
        return True


# The tested Debian releases, by VERSION_ID: (codename, HAProxy major.minor, keepalived
# major.minor) the distribution ships - what a host of each release is expected to run.
DEBIAN_RELEASES = {"12": ("bookworm", "2.6", "2.2"), "13": ("trixie", "3.0", "2.3")}


def debian_release(host) -> str:
    """The host's Debian release, VERSION_ID of /etc/os-release ("12", "13")."""
    return host.run("sh -c '. /etc/os-release; echo $VERSION_ID'").stdout.strip()


def tcp_connects(address: str, port: int, timeout: float = 2.0) -> bool:
    try:
        with socket.create_connection((address, port), timeout=timeout):
            return True
    except OSError:
        return False


@pytest.fixture(scope="session")
def vip(inventory: Inventory) -> HttpClient:
    return HttpClient(inventory.vip)


# --------------------------------------------------------------------------- lab and faults
@pytest.fixture(scope="session")
def lab() -> Substrate:
    """The substrate's fault tool (power, cable): the nspawn lab, or the Vagrant VMs
    (LAY7_SUBSTRATE=vagrant, set by molecule/vagrant; vagrant/lay7_vagrant_lab.py). Both implement
    lab.substrate.Substrate; tests use no other method of it."""
    lab: Substrate
    if ON_VAGRANT:
        sys.path.insert(0, str(ROOT / "vagrant"))  # not `import vagrant`: python-vagrant owns that name
        from lay7_vagrant_lab import VagrantLab
        lab = VagrantLab.from_env()
    else:
        try:
            from lab import Lab
        except ImportError:
            pytest.skip("the lab tool is not available (not the nspawn substrate)")
        lab = Lab()
    if not lab.is_up():
        pytest.skip("the lab is not up")
    return lab


def vip_holders(lab: Substrate, inventory: Inventory) -> list[str]:
    """Load balancers that currently hold the VIP (read through namespaces: no network needed)."""
    return observe.vip_holders(lab, inventory.loadbalancers, inventory.vip, INTERFACE)


def holder_and_other(lab: Substrate, inventory: Inventory) -> tuple[str, str]:
    """The one VIP holder and the load balancer that would take over from it."""
    held = vip_holders(lab, inventory)
    assert len(held) == 1, f"expected one VIP holder, found {held}"
    return held[0], next(lb for lb in inventory.loadbalancers if lb != held[0])


def journal(host, since_epoch: float, *selectors: str) -> str:
    """Journal lines of a host logged at or after a wall-clock time (to the microsecond: a
    transition just before the time must not count), e.g. selectors ('-t', 'lay7-keepalived').
    Each line starts with its epoch timestamp (journalctl -o short-unix)."""
    args = " ".join(selectors)
    out = host.check_output(f"journalctl --no-pager -q -o short-unix --since @{int(since_epoch)} {args}")
    kept, keep = [], False
    for line in out.splitlines():
        try:
            keep = float(line.split(" ", 1)[0]) >= since_epoch
        except ValueError:  # a continuation line: goes with the message it continues
            pass
        if keep:
            kept.append(line)
    return "\n".join(kept)


@dataclass
class Steady:
    """Waits until the topology is healthy: the expected VIP holder, every other load balancer
    in BACKUP (ready to take over) and every route right."""

    lab: Substrate
    inventory: Inventory
    vip: HttpClient

    def wait(self, holder: str | None = None, timeout: float = STEADY_TIMEOUT) -> float:
        # With nopreempt any single holder is healthy; with preemption it is the master.
        if holder is None and self.inventory.nopreempt:
            wanted = [[lb] for lb in self.inventory.loadbalancers]
        else:
            wanted = [[holder or self.inventory.master]]
        return wait_for(lambda: self._healthy(wanted), timeout,
                        f"healthy topology with the VIP on one of {wanted} and the other load balancers in BACKUP",
                        interval=0.5)

    def _healthy(self, wanted: list) -> bool:
        held = vip_holders(self.lab, self.inventory)
        if held not in wanted:
            return False
        # Every other load balancer ready to take over, not still booting or failed.
        ready = all(observe.vrrp_state(self.lab, lb) == ("MASTER" if lb in held else "BACKUP")
                    for lb in self.inventory.loadbalancers)
        return ready and self.vip.routes_ok()


@pytest.fixture(scope="session")
def steady(lab: Substrate, inventory: Inventory, vip: HttpClient) -> Steady:
    return Steady(lab, inventory, vip)


@dataclass
class Faults:
    """Fault injection that remembers what it broke; restore() undoes it all."""

    lab: Substrate
    nodes: dict
    steady: Steady
    killed: list[str] = field(default_factory=list)
    stopped: list[tuple[str, str]] = field(default_factory=list)
    cut_links: list[str] = field(default_factory=list)

    def stop_service(self, name: str, unit: str) -> None:
        self.stopped.append((name, unit))
        self.nodes[name].run_expect([0], f"systemctl stop {unit}")

    def kill_service(self, name: str, unit: str) -> None:
        """SIGKILL every process of a unit (a crash, not a stop); restore() starts it again."""
        self.stopped.append((name, unit))
        self.nodes[name].run_expect([0], f"systemctl kill -s KILL {unit}")

    def start_service(self, name: str, unit: str) -> None:
        self.nodes[name].run_expect([0], f"systemctl start {unit}")
        if (name, unit) in self.stopped:
            self.stopped.remove((name, unit))

    def kill(self, name: str) -> None:
        self.killed.append(name)
        self.lab.kill(name)

    def boot(self, name: str, wait: bool = True) -> None:
        self.lab.boot(name, wait=wait)
        if name in self.killed:
            self.killed.remove(name)

    def cut(self, name: str) -> None:
        self.cut_links.append(name)
        self.lab.cut(name)

    def heal(self, name: str) -> None:
        self.lab.heal(name)
        if name in self.cut_links:
            self.cut_links.remove(name)

    def restore(self) -> None:
        # The substrate keeps its partitions itself: nothing to remember here.
        if self.lab.partitions():
            self.lab.unpartition()
        for name in list(self.cut_links):
            self.heal(name)
        for name in list(self.killed):
            if not self.lab.is_running(name):
                self.lab.boot(name, wait=True)
            self.killed.remove(name)
        for name, unit in list(self.stopped):
            self.start_service(name, unit)
        self.steady.wait()


@pytest.fixture
def faults(lab: Substrate, nodes, steady: Steady):
    steady.wait()  # start every fault test from the healthy state
    f = Faults(lab, nodes, steady)
    yield f
    f.restore()


@pytest.fixture(scope="session")
def timings():
    """Failover measurements (seconds) collected by the tests, written for docs/failover.md."""
    data: dict[str, float | int | str] = {}
    yield data
    if data:
        out = ROOT / "build" / "failover-timings.json"
        out.parent.mkdir(parents=True, exist_ok=True)
        data["measured_at"] = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
        out.write_text(json.dumps(data, indent=2, sort_keys=True) + "\n")
