"""The lab: boot, tear down and disturb the hosts described by lab/topology.yml (and the
inventory it names).

`Lab` is the facade; each concern lives in a module of its own: procfs (reading /proc), cgroups,
overlay (host roots), machine (nspawn, host processes, power), network (bridge, links,
partitions, safety route), state (state file, operation lock), ssh (key, options, login)."""

from __future__ import annotations

import os
import shutil
import subprocess
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from . import cgroups, machine, network, overlay, pki, procfs, ssh
from .cmd import run
from .errors import LabError, tail
from .image import ensure_image
from .ssh import SSH_TIMEOUT
from .state import oplock, read_state, write_state
from .topology import Host, Topology, load

REQUIRED_BINARIES = ("ip", "nft", "systemd-nspawn", "debootstrap", "chroot", "nsenter", "mount",
                     "umount", "ssh", "ssh-keygen")


class Lab:
    """Operate the lab. Every method needs root; all state lives under the topology's paths.

    The verbs the verification suite uses are those of lab.substrate.Substrate."""

    def __init__(self, topology: Topology | str | Path | None = None, log=None):
        self.topo = topology if isinstance(topology, Topology) else load(topology)
        self.log = log or (lambda msg: None)

    # ---------------------------------------------------------------- paths and state
    @property
    def hosts_dir(self) -> Path:
        return self.topo.state_dir / "hosts"

    def root(self, name: str) -> Path:
        return self.hosts_dir / name / "root"

    def console_log(self, name: str) -> Path:
        return self.topo.run_dir / f"console-{name}.log"

    @property
    def state_file(self) -> Path:
        return self.topo.state_dir / "state.json"

    def host(self, name: str) -> Host:
        return self.topo.host(name)

    def _oplock(self):
        return oplock(self.topo.state_dir)

    def _read_state(self) -> dict:
        return read_state(self.state_file)

    def _write_state(self, state: dict) -> None:
        write_state(self.state_file, state)

    # ---------------------------------------------------------------- preflight
    def preflight(self) -> None:
        if os.geteuid() != 0:
            raise LabError("the lab needs root (namespaces, mounts, systemd-nspawn); run it as root")
        missing = [b for b in REQUIRED_BINARIES if shutil.which(b) is None]
        if missing:
            raise LabError(f"missing programs: {', '.join(missing)}; install them with `make deps` "
                           "(Debian packages iproute2 nftables systemd-container debootstrap openssh-client)")
        if not os.path.exists("/proc/self/ns/net") or not os.path.exists("/proc/self/ns/pid"):
            raise LabError("kernel without network/PID namespaces: the lab cannot run here")
        filesystems = procfs.read("/proc/filesystems") or ""
        if "overlay" not in filesystems:
            run(["modprobe", "overlay"], check=False)
            if "overlay" not in (procfs.read("/proc/filesystems") or ""):
                raise LabError("kernel without overlayfs (`modprobe overlay` failed): hosts need it for "
                               "their root filesystems")

    def is_up(self) -> bool:
        """Anything of a lab exists: its bridge namespace, a host namespace or a state file."""
        if network.bridge_exists() or self.state_file.exists():
            return True
        return any(network.netns_exists(h.netns) for h in self.topo.hosts)

    # ---------------------------------------------------------------- up / down
    def ensure_safety_route(self) -> None:
        network.ensure_safety_route(self.topo)

    def safety_route_present(self) -> bool:
        return network.safety_route_present(self.topo)

    def ensure_key(self) -> Path:
        return ssh.ensure_key(self.topo)

    def up(self, ssh_timeout: int = SSH_TIMEOUT) -> None:
        self.preflight()
        with self._oplock():
            if self.is_up():
                raise LabError("a lab is already up (namespace lay7-br or state file "
                               f"{self.state_file} exists); run `python -m lab down` first "
                               "(and hold `flock /run/lay7-lab.lock` while you use the lab)")
            holders = network.foreign_subnet_holders(self.topo)
            if holders:
                raise LabError(f"the lab's subnet {self.topo.subnet} is already in use on this machine: "
                               f"{', '.join(holders)} (the Vagrant scenario uses the same addresses: is "
                               "`make test-vagrant` running?); only one of them at a time, under "
                               "`flock /run/lay7-lab.lock`")
            # Before anything else: lab addresses must never leave through the default route.
            self.ensure_safety_route()
            t0 = time.monotonic()
            images = {suite: ensure_image(self.topo, log=self.log, suite=suite) for suite in self.topo.suites_used}
            self.ensure_key()
            # The certificates the lab inventory's load balancers serve (first use only).
            pki.ensure(log=self.log)
            try:
                self._create_network()
                t1 = time.monotonic()
                known = []
                for h in self.topo.hosts:
                    known.append(self._prepare_root(images[self.topo.suite_of(h.name)], h))
                self.topo.known_hosts.write_text("".join(known))
                state = {"images": {s: str(p) for s, p in images.items()}, "hosts": {}, "partitions": []}
                for h in self.topo.hosts:
                    state["hosts"][h.name] = {"nspawn_pid": self._start(h), "release": self.topo.suite_of(h.name)}
                self._write_state(state)
                with ThreadPoolExecutor(max_workers=len(self.topo.hosts)) as pool:
                    list(pool.map(lambda h: self.wait_ssh(h.name, ssh_timeout), self.topo.hosts))
                releases = ", ".join(f"{h.name} {self.topo.suite_of(h.name)}" for h in self.topo.hosts)
                self.log(f"lab up ({releases}): {len(self.topo.hosts)} hosts booted and answering SSH in "
                         f"{time.monotonic() - t1:.1f}s (total {time.monotonic() - t0:.1f}s)")
            except BaseException:
                self.log("lab up failed; tearing down what was created")
                self._down()
                raise

    def down(self) -> None:
        if os.geteuid() != 0:
            raise LabError("the lab needs root; run `python -m lab down` as root")
        with self._oplock():
            self._down()

    def _down(self) -> None:
        # 1. power off every host (also ones a half-failed `up` left without a state entry)
        for h in self.topo.hosts:
            self._power_off(h)
        # 2. mounts under our hosts directory, deepest first
        overlay.unmount_all(self.hosts_dir)
        cgroups.remove_all()
        # 3. links and namespaces (deleting a namespace deletes the veth ends inside it)
        network.remove(self.topo)
        # 4. writable layers and state; the key and the safety route stay
        if self.hosts_dir.exists():
            shutil.rmtree(self.hosts_dir)
        self.state_file.unlink(missing_ok=True)

    def leftovers(self) -> list[str]:
        """What of a lab exists on this machine (empty after a clean `down`)."""
        found = network.leftovers(self.topo)
        found += [f"mount {m}" for m in overlay.mounts(self.hosts_dir)]
        for h in self.topo.hosts:
            found += [f"process {pid} ({' '.join(procfs.cmdline(pid))[:60]})" for pid in self._host_pids(h)]
            found += [f"nspawn {pid} of {h.name}" for pid in self._nspawn_pids(h)]
        if self.hosts_dir.exists():
            found.append(f"dir {self.hosts_dir}")
        found += [f"cgroup {top}" for top in cgroups.lab_dirs() if top.exists()]
        if self.state_file.exists():
            found.append(f"file {self.state_file}")
        return found

    def _create_network(self) -> None:
        network.create(self.topo)

    def _prepare_root(self, image: Path, h: Host) -> str:
        """Overlay the base image, give the host its identity; return its known_hosts line."""
        return overlay.prepare_root(self.topo, self.hosts_dir / h.name, image, h)

    # ---------------------------------------------------------------- processes
    def _start(self, h: Host) -> int:
        return machine.start(self.root(h.name), h, self.console_log(h.name))

    def cgroups(self, name: str) -> list[Path]:
        """The host's own cgroup in each hierarchy (see cgroups.of_host)."""
        return cgroups.of_host(name)

    def _nspawn_pids(self, h: Host) -> list[int]:
        return machine.nspawn_pids(self.root(h.name))

    def _host_pids(self, h: Host) -> list[int]:
        """Processes living in the host's network namespace (the booted system)."""
        return machine.host_pids(self.root(h.name), h)

    def init_pid(self, name: str) -> int | None:
        """PID (in our namespace) of the host's PID 1, or None when the host is off."""
        return machine.init_pid(self.root(self.host(name).name))

    def is_running(self, name: str) -> bool:
        return bool(self._nspawn_pids(self.host(name)))

    def _power_off(self, h: Host) -> None:
        machine.power_off(self.root(h.name), h)

    # ---------------------------------------------------------------- fault injection
    def _require_up(self) -> None:
        if not network.bridge_exists():
            raise LabError("the lab is not up; run `python -m lab up`")

    def kill(self, name: str) -> None:
        """Power the host off (its disk, the overlay, is kept for `boot`)."""
        h = self.host(name)
        self._require_up()
        with self._oplock():
            self._power_off(h)

    def boot(self, name: str, wait: bool = True, ssh_timeout: float = SSH_TIMEOUT) -> None:
        h = self.host(name)
        self._require_up()
        with self._oplock():
            if self.is_running(name):
                raise LabError(f"{name} is already running")
            # A host's processes may outlive a crashed nspawn; nothing of the old boot may remain.
            self._power_off(h)
            pid = self._start(h)
            state = self._read_state()
            state.setdefault("hosts", {})[name] = {"nspawn_pid": pid}
            self._write_state(state)
        if wait:
            self.wait_ssh(name, ssh_timeout)

    def cut(self, name: str) -> None:
        """Pull the host's cable: its eth1 loses carrier."""
        self._require_up()
        network.set_link(self.host(name), up=False)

    def heal(self, name: str) -> None:
        self._require_up()
        network.set_link(self.host(name), up=True)

    def link_up(self, name: str) -> bool:
        return network.link_up(self.host(name))

    def partition(self, a: str, b: str) -> None:
        """Drop all frames between hosts a and b (both ways); everyone else still reaches both."""
        ha, hb = self.host(a), self.host(b)
        if ha == hb:
            raise LabError(f"partition: needs two different hosts, got {a} twice")
        self._require_up()
        with self._oplock():
            state = self._read_state()
            pairs = [tuple(p) for p in state.get("partitions", [])]
            if (a, b) not in pairs and (b, a) not in pairs:
                pairs.append((a, b))
            self._apply_partitions(pairs)
            state["partitions"] = [list(p) for p in pairs]
            self._write_state(state)

    def unpartition(self) -> None:
        self._require_up()
        with self._oplock():
            self._apply_partitions([])
            state = self._read_state()
            state["partitions"] = []
            self._write_state(state)

    def partitions(self) -> list[tuple[str, str]]:
        return [tuple(p) for p in self._read_state().get("partitions", [])]

    def _apply_partitions(self, pairs) -> None:
        network.apply_partitions([(self.host(a), self.host(b)) for a, b in pairs])

    # ---------------------------------------------------------------- access
    def exec(self, name: str, argv: list[str], check: bool = False, timeout: float | None = 60,
             input: str | None = None) -> subprocess.CompletedProcess:
        """Run argv inside the host through its namespaces (works without network or sshd)."""
        pid = self.init_pid(name)
        if pid is None:
            raise LabError(f"{name} is not running")
        proc = subprocess.run(machine.nsenter_argv(pid, list(argv)), capture_output=True, text=True,
                              timeout=timeout, input=input, check=False)
        if check and proc.returncode != 0:
            raise LabError(f"{name}: `{' '.join(argv)}` exited {proc.returncode}: {proc.stderr.strip()}")
        return proc

    def ssh(self, name: str, command: list[str] | str, timeout: float | None = 60,
            connect_timeout: int = 3) -> subprocess.CompletedProcess:
        """Run a command on the host over SSH from the control node, as the lab user."""
        return ssh.ssh(self.topo, self.host(name), command, timeout, connect_timeout)

    def wait_ssh(self, name: str, timeout: float = SSH_TIMEOUT) -> float:
        """Block until the host runs a command over SSH; return the seconds it took."""
        h = self.host(name)
        t0 = time.monotonic()
        last = ""
        while time.monotonic() - t0 < timeout:
            if not self.is_running(name):
                raise LabError(f"{name} stopped while booting; console log {self.console_log(name)}:\n"
                               f"{tail(self.console_log(name))}")
            if ssh.port_open(h, 22):
                proc = self.ssh(name, ["true"], timeout=15)
                if proc.returncode == 0:
                    return time.monotonic() - t0
                last = proc.stderr.strip()
            time.sleep(0.2)
        raise LabError(f"{name} ({h.address}) did not answer SSH within {timeout:.0f}s"
                       f"{' (last error: ' + last + ')' if last else ''}; console log "
                       f"{self.console_log(name)}:\n{tail(self.console_log(name))}")

    def molecule_instances(self) -> list[dict]:
        """Molecule's instance config for a managed delegated driver: how to log in to each host."""
        return [
            {"instance": h.name, "address": str(h.address), "user": self.topo.user, "port": 22,
             "identity_file": str(self.topo.key_path)}
            for h in self.topo.hosts
        ]

    # ---------------------------------------------------------------- status
    def status(self) -> dict:
        up = network.bridge_exists()
        hosts = {}
        for h in self.topo.hosts:
            entry = {"address": str(h.address), "running": False, "link": None}
            if up:
                entry["running"] = self.is_running(h.name)
                entry["init_pid"] = self.init_pid(h.name)
                if network.netns_exists(h.netns):
                    entry["link"] = "up" if self.link_up(h.name) else "down"
            hosts[h.name] = entry
        return {
            "up": up,
            "hosts": hosts,
            "partitions": [list(p) for p in self.partitions()] if up else [],
            "safety_route": self.safety_route_present(),
            "leftovers": [] if up else self.leftovers(),
        }
