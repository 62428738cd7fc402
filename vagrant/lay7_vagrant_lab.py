"""Fault injection on the Vagrant VMs of `molecule test -s vagrant`, with lab.Lab's interface.

The shared verification (molecule/shared/tests) powers hosts off and on, pulls their
cable and reads their state. On the nspawn lab that is `lab.Lab`; on Vagrant it is this
class, selected by LAY7_SUBSTRATE=vagrant. Both implement lab.substrate.Substrate (a unit
test, tests/lab/test_substrate.py, compares their signatures). Same methods, same meaning:

    is_up()                       Molecule has instances and at least one VM exists
    is_running(name)              the VM is powered on
    kill(name)                    power off (no shutdown: like pulling the plug); disk kept
    boot(name, wait=True)         power on; wait until SSH answers
    wait_ssh(name, timeout)       block until SSH answers; the seconds it took
    cut(name) / heal(name)        the private-network NIC (eth1) loses / regains its link
    partition(a, b) / unpartition()   drop / pass again all frames between two VMs on the private
                                  network (libvirt: nftables on its bridge); partitions() lists them
    exec(name, argv, ...)         run argv as root over SSH on the management network
                                  (works while eth1 is cut) -> subprocess.CompletedProcess

VMs are found through Vagrant's own records in Molecule's ephemeral directory
(.vagrant/machines/<name>/<provider>/id: the libvirt domain UUID or VirtualBox VM UUID);
SSH details come from Molecule's instance config. Providers: libvirt (virsh; what
`make test-vagrant` runs) and virtualbox (VBoxManage; written to the same contract but
not exercised on the test machine, which has no VirtualBox).

Importable as `lay7_vagrant_lab` with vagrant/ on sys.path (the name `vagrant` belongs to
python-vagrant, which Molecule's driver imports).
"""

from __future__ import annotations

import json
import os
import shlex
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from lab.network import partition_reset_script, partition_ruleset  # noqa: E402  (the root is on sys.path only from here)
from lab.ssh import batch_options  # noqa: E402

SSH_TIMEOUT = 300.0  # software-emulated VMs boot in 60-90 s on the test machine
PROVIDERS = ("libvirt", "virtualbox")
# The host's nftables table that partitions the VMs' private network (libvirt's bridge); its own
# name, so it never touches the lab's table or libvirt's rules.
PARTITION_TABLE = "lay7_vagrant_partition"
PARTITIONS_FILE = "lay7-partitions.json"


class VagrantLabError(RuntimeError):
    """A fault-injection step failed; the message names the host and the command."""


@dataclass(frozen=True)
class Instance:
    name: str
    address: str
    port: int
    user: str
    identity_file: str


def _run(argv: list[str], timeout: float = 60, check: bool = True) -> subprocess.CompletedProcess:
    proc = subprocess.run(argv, capture_output=True, text=True, timeout=timeout,
                          stdin=subprocess.DEVNULL, check=False)
    if check and proc.returncode != 0:
        raise VagrantLabError(f"`{shlex.join(argv)}` exited {proc.returncode}: {proc.stderr.strip()[-500:]}")
    return proc


class VagrantLab:
    def __init__(self, instances: dict[str, Instance], machines_dir: Path, provider: str | None = None,
                 control_dir: Path = Path("/tmp")) -> None:
        self.instances = instances
        self.machines_dir = machines_dir
        self.provider = provider or self._detect_provider()
        if self.provider not in PROVIDERS:
            raise VagrantLabError(f"provider {self.provider!r} is not supported for fault injection; "
                                  f"supported: {', '.join(PROVIDERS)}")
        self.control_dir = control_dir

    # ------------------------------------------------------------------ construction
    @classmethod
    def from_env(cls, env: dict[str, str] | None = None) -> VagrantLab:
        """Build from Molecule's environment (MOLECULE_INSTANCE_CONFIG, MOLECULE_EPHEMERAL_DIRECTORY)."""
        env = dict(os.environ if env is None else env)
        for var in ("MOLECULE_INSTANCE_CONFIG", "MOLECULE_EPHEMERAL_DIRECTORY"):
            if not env.get(var):
                raise VagrantLabError(f"{var} is not set: run under `molecule verify -s vagrant`")
        return cls(load_instances(Path(env["MOLECULE_INSTANCE_CONFIG"])),
                   Path(env["MOLECULE_EPHEMERAL_DIRECTORY"]) / ".vagrant" / "machines",
                   env.get("LAY7_VAGRANT_PROVIDER") or None)

    def _detect_provider(self) -> str:
        found = {p.name for p in self.machines_dir.glob("*/*") if (p / "id").is_file()}
        if len(found) != 1:
            raise VagrantLabError(f"cannot tell the provider from {self.machines_dir} (found {sorted(found)}); "
                                  "set LAY7_VAGRANT_PROVIDER")
        return found.pop()

    def instance(self, name: str) -> Instance:
        try:
            return self.instances[name]
        except KeyError:
            raise VagrantLabError(f"unknown host {name!r}; known: {', '.join(sorted(self.instances))}") from None

    def machine_id(self, name: str) -> str:
        self.instance(name)
        path = self.machines_dir / name / self.provider / "id"
        try:
            return path.read_text().strip()
        except FileNotFoundError:
            raise VagrantLabError(f"{name}: no Vagrant machine record at {path} (not created?)") from None

    # ------------------------------------------------------------------ state
    def is_up(self) -> bool:
        return bool(self.instances) and any(
            (self.machines_dir / n / self.provider / "id").is_file() for n in self.instances)

    def is_running(self, name: str) -> bool:
        mid = self.machine_id(name)
        if self.provider == "libvirt":
            return _run(["virsh", "-c", "qemu:///system", "domstate", mid]).stdout.strip() == "running"
        out = _run(["VBoxManage", "showvminfo", mid, "--machinereadable"]).stdout
        return 'VMState="running"' in out

    # ------------------------------------------------------------------ power
    def kill(self, name: str) -> None:
        """Power the VM off at once (its disk is kept for `boot`)."""
        mid = self.machine_id(name)
        self._close_master(name)
        if self.provider == "libvirt":
            _run(["virsh", "-c", "qemu:///system", "destroy", mid])
        else:
            _run(["VBoxManage", "controlvm", mid, "poweroff"])

    def boot(self, name: str, wait: bool = True, ssh_timeout: float = SSH_TIMEOUT) -> None:
        if self.is_running(name):
            raise VagrantLabError(f"{name} is already running")
        mid = self.machine_id(name)
        self._close_master(name)
        if self.provider == "libvirt":
            _run(["virsh", "-c", "qemu:///system", "start", mid])
        else:
            _run(["VBoxManage", "startvm", mid, "--type", "headless"])
        if wait:
            self.wait_ssh(name, ssh_timeout)

    def wait_ssh(self, name: str, timeout: float = SSH_TIMEOUT) -> float:
        """Block until the VM runs a command over SSH; return the seconds it took."""
        t0 = time.monotonic()
        last = ""
        while time.monotonic() - t0 < timeout:
            try:
                proc = self.exec(name, ["true"], timeout=20)
                if proc.returncode == 0:
                    return time.monotonic() - t0
                last = proc.stderr.strip()
            except subprocess.TimeoutExpired:
                last = "ssh timed out"
            time.sleep(2)
        raise VagrantLabError(f"{name} did not answer SSH within {timeout:.0f} s (last: {last[-300:]})")

    # ------------------------------------------------------------------ cable
    def _private_nic_row(self, name: str) -> list[str]:
        """libvirt: `virsh domiflist`'s row of the VM's second NIC, eth1 on the private network
        (the first is management): host device (vnetN), type, source, model, MAC."""
        rows = [r.split() for r in _run(["virsh", "-c", "qemu:///system", "domiflist",
                                         self.machine_id(name)]).stdout.splitlines()[2:]]
        nics = [r for r in rows if len(r) >= 5]
        if len(nics) < 2:
            raise VagrantLabError(f"{name}: expected two NICs (management, private), found {nics}")
        return nics[1]

    def _private_nic(self, name: str) -> str:
        """The private NIC as the provider names it for a link change: libvirt its MAC,
        VirtualBox its number (1 is NAT, management; 2 the private network)."""
        return self._private_nic_row(name)[-1] if self.provider == "libvirt" else "2"

    def _set_link(self, name: str, up: bool) -> None:
        mid, nic = self.machine_id(name), self._private_nic(name)
        if self.provider == "libvirt":
            _run(["virsh", "-c", "qemu:///system", "domif-setlink", mid, nic, "up" if up else "down"])
        else:
            _run(["VBoxManage", "controlvm", mid, f"setlinkstate{nic}", "on" if up else "off"])

    def cut(self, name: str) -> None:
        """Pull the VM's private-network cable: eth1 loses carrier (management stays)."""
        self._set_link(name, up=False)

    def heal(self, name: str) -> None:
        self._set_link(name, up=True)

    # ------------------------------------------------------------------ partition
    def _private_port(self, name: str) -> str:
        """libvirt: the host-side device (vnetN) of the VM's private NIC, a port of the private
        bridge. It changes when the VM is powered on again, so it is looked up at every change."""
        port = self._private_nic_row(name)[0]
        if port == "-":
            raise VagrantLabError(f"{name}: no host device for the private NIC (is the VM running?)")
        return port

    def partition(self, a: str, b: str) -> None:
        """Drop all frames between VMs a and b on the private network, both ways (broadcast and
        multicast included); everyone else still reaches both, and management is untouched."""
        if a == b:
            raise VagrantLabError(f"partition: needs two different hosts, got {a} twice")
        pairs = self.partitions()
        if (a, b) not in pairs and (b, a) not in pairs:
            pairs.append((a, b))
        self._apply_partitions(pairs)

    def unpartition(self) -> None:
        """Remove every partition."""
        self._apply_partitions([])

    def partitions(self) -> list[tuple[str, str]]:
        path = self.machines_dir / PARTITIONS_FILE
        return [(a, b) for a, b in json.loads(path.read_text())] if path.is_file() else []

    def _apply_partitions(self, pairs: list[tuple[str, str]]) -> None:
        if pairs and self.provider != "libvirt":
            # VirtualBox's private network has no bridge on the host that nftables could filter.
            raise VagrantLabError("partition needs the libvirt provider (VirtualBox has no host bridge to filter)")
        script = partition_reset_script(PARTITION_TABLE)
        if pairs:
            script += partition_ruleset([(self._private_port(a), self._private_port(b)) for a, b in pairs],
                                        PARTITION_TABLE)
        proc = subprocess.run(["nft", "-f", "-"], input=script, capture_output=True, text=True, timeout=30,
                              check=False)
        if proc.returncode != 0:
            raise VagrantLabError(f"nft refused the partition {pairs}: {proc.stderr.strip()[-500:]}")
        (self.machines_dir / PARTITIONS_FILE).write_text(json.dumps([list(p) for p in pairs]) + "\n")

    # ------------------------------------------------------------------ commands
    def _ssh_argv(self, name: str) -> list[str]:
        inst = self.instance(name)
        return ["ssh", "-p", str(inst.port), "-l", inst.user, *batch_options(inst.identity_file, None, 5),
                "-o", "ServerAliveInterval=2", "-o", "ServerAliveCountMax=3",
                # One connection per host, reused: each new SSH handshake costs seconds under emulation.
                "-o", "ControlMaster=auto", "-o", f"ControlPath={self.control_dir}/lay7-vagrant-%C",
                "-o", "ControlPersist=120", inst.address]

    def _close_master(self, name: str) -> None:
        subprocess.run([*self._ssh_argv(name)[:-1], "-O", "exit", self.instance(name).address],
                       capture_output=True, timeout=10, check=False, stdin=subprocess.DEVNULL)

    def exec(self, name: str, argv: list[str], check: bool = False, timeout: float | None = 60,
             input: str | None = None) -> subprocess.CompletedProcess:  # noqa: A002 - lab.Lab's signature
        """Run argv as root on the VM over the management network."""
        remote = "sudo -n -- " + shlex.join(list(argv))
        proc = subprocess.run([*self._ssh_argv(name), remote], capture_output=True, text=True,
                              timeout=timeout, input=input, check=False,
                              stdin=None if input is not None else subprocess.DEVNULL)
        if check and proc.returncode != 0:
            raise VagrantLabError(f"{name}: `{shlex.join(argv)}` exited {proc.returncode}: {proc.stderr.strip()}")
        return proc


def load_instances(path: Path) -> dict[str, Instance]:
    """Molecule's instance config (a YAML list written by the vagrant driver's create playbook)."""
    if not path.is_file():
        return {}
    data = yaml.safe_load(path.read_text()) or []
    if not isinstance(data, list):
        raise VagrantLabError(f"{path}: expected a list of instances, got {type(data).__name__}")
    out = {}
    for i, item in enumerate(data):
        try:
            out[item["instance"]] = Instance(item["instance"], item["address"], int(item["port"]),
                                             item["user"], item["identity_file"])
        except (KeyError, TypeError, ValueError) as exc:
            raise VagrantLabError(f"{path}: instance {i} lacks or has a bad {exc}") from None
    return out
