"""The lab: boot, tear down and disturb the hosts described by lab/topology.yml (and the inventory it names)."""

from __future__ import annotations

import fcntl
import json
import os
import secrets
import shutil
import signal
import socket
import subprocess
import time
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from pathlib import Path

from . import commands as C
from .errors import LabError, tail
from .image import ensure_image
from .topology import Host, Topology, load

REQUIRED_BINARIES = ("ip", "nft", "systemd-nspawn", "debootstrap", "chroot", "nsenter", "mount",
                     "umount", "ssh", "ssh-keygen")
SSH_TIMEOUT = 90        # seconds a host has to answer SSH after boot
STOP_TIMEOUT = 15       # seconds for a killed host's processes to disappear


def _run(argv: list[str], *, input: str | None = None, check: bool = True) -> subprocess.CompletedProcess:
    proc = subprocess.run(argv, input=input, capture_output=True, text=True, check=False)
    if check and proc.returncode != 0:
        raise LabError(f"`{' '.join(argv)}` failed (exit {proc.returncode}): "
                       f"{(proc.stderr or proc.stdout).strip()}")
    return proc


def _pids() -> list[int]:
    return [int(p) for p in os.listdir("/proc") if p.isdigit()]


def _read(path: str) -> str | None:
    try:
        with open(path) as fh:
            return fh.read()
    except OSError:
        return None


def _cmdline(pid: int) -> list[str]:
    try:
        with open(f"/proc/{pid}/cmdline", "rb") as fh:
            return [a.decode("utf-8", "replace") for a in fh.read().split(b"\0") if a]
    except OSError:
        return []


def _ppid(pid: int) -> int | None:
    status = _read(f"/proc/{pid}/status")
    if not status:
        return None
    for line in status.splitlines():
        if line.startswith("PPid:"):
            return int(line.split()[1])
    return None


def _alive(pid: int) -> bool:
    status = _read(f"/proc/{pid}/status")
    if status is None:
        return False
    for line in status.splitlines():
        if line.startswith("State:"):
            return "Z" not in line.split()[1]
    return True


def _netns_inode(path: str) -> int | None:
    try:
        return os.stat(path).st_ino
    except OSError:
        return None


def cgroup_roots(mountinfo: str) -> list[Path]:
    """Hierarchies a booted systemd writes to: cgroup2 and the v1 name=systemd one."""
    roots = []
    for line in mountinfo.splitlines():
        left, _, right = line.partition(" - ")
        fields, rfields = left.split(), right.split()
        if len(fields) < 5 or len(rfields) < 3:
            continue
        fstype, options = rfields[0], rfields[2].split(",")
        if fstype == "cgroup2" or (fstype == "cgroup" and "name=systemd" in options):
            roots.append(Path(fields[4]))
    return roots


def _rmdir_tree(top: Path) -> None:
    """Remove an (empty of processes) cgroup tree, deepest first."""
    if not top.is_dir():
        return
    for dirpath, _dirs, _files in os.walk(top, topdown=False):
        try:
            os.rmdir(dirpath)
        except OSError:
            pass


class Lab:
    """Operate the lab. Every method needs root; all state lives under the topology's paths."""

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

    @contextmanager
    def _oplock(self):
        """Serialise lab operations of concurrent `python -m lab` processes (not the user's lock)."""
        self.topo.state_dir.mkdir(parents=True, exist_ok=True)
        with open(self.topo.state_dir / ".op.lock", "w") as fh:
            fcntl.flock(fh, fcntl.LOCK_EX)
            try:
                yield
            finally:
                fcntl.flock(fh, fcntl.LOCK_UN)

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
        filesystems = _read("/proc/filesystems") or ""
        if "overlay" not in filesystems:
            _run(["modprobe", "overlay"], check=False)
            if "overlay" not in (_read("/proc/filesystems") or ""):
                raise LabError("kernel without overlayfs (`modprobe overlay` failed): hosts need it for "
                               "their root filesystems")

    def is_up(self) -> bool:
        """Anything of a lab exists: its bridge namespace, a host namespace or a state file."""
        if os.path.exists(f"/run/netns/{C.BRIDGE_NS}") or self.state_file.exists():
            return True
        return any(os.path.exists(f"/run/netns/{h.netns}") for h in self.topo.hosts)

    # ---------------------------------------------------------------- up / down
    def ensure_safety_route(self) -> None:
        _run(C.safety_route_argv(self.topo))

    def safety_route_present(self) -> bool:
        out = _run(["ip", "-j", "route", "show", "type", "unreachable", str(self.topo.subnet)]).stdout
        routes = json.loads(out or "[]")
        return any(r.get("metric") == C.SAFETY_METRIC for r in routes)

    def ensure_key(self) -> Path:
        key = self.topo.key_path
        if not key.exists():
            key.parent.mkdir(parents=True, exist_ok=True)
            _run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", "lay7-lab", "-f", str(key)])
        return key

    def up(self, ssh_timeout: int = SSH_TIMEOUT) -> None:
        self.preflight()
        with self._oplock():
            if self.is_up():
                raise LabError("a lab is already up (namespace lay7-br or state file "
                               f"{self.state_file} exists); run `python -m lab down` first "
                               "(and hold `flock /run/lay7-lab.lock` while you use the lab)")
            # Before anything else: lab addresses must never leave through the default route.
            self.ensure_safety_route()
            t0 = time.monotonic()
            image = ensure_image(self.topo, log=self.log)
            self.ensure_key()
            try:
                self._create_network()
                t1 = time.monotonic()
                known = []
                for h in self.topo.hosts:
                    known.append(self._prepare_root(image, h))
                self.topo.known_hosts.write_text("".join(known))
                state = {"image": str(image), "hosts": {}, "partitions": []}
                for h in self.topo.hosts:
                    state["hosts"][h.name] = {"nspawn_pid": self._start(h)}
                self._write_state(state)
                with ThreadPoolExecutor(max_workers=len(self.topo.hosts)) as pool:
                    list(pool.map(lambda h: self.wait_ssh(h.name, ssh_timeout), self.topo.hosts))
                self.log(f"lab up: {len(self.topo.hosts)} hosts booted and answering SSH in "
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
        for mnt in sorted(self._our_mounts(), key=len, reverse=True):
            if _run(["umount", mnt], check=False).returncode != 0:
                _run(["umount", "-l", mnt], check=False)
        left = self._our_mounts()
        if left:
            raise LabError(f"could not unmount: {', '.join(left)}")
        for root in cgroup_roots(_read("/proc/self/mountinfo") or ""):
            _rmdir_tree(root / C.CGROUP_DIR)
        # 3. links and namespaces (deleting a namespace deletes the veth ends inside it)
        if os.path.exists(f"/sys/class/net/{C.CONTROL_LINK}"):
            _run(["ip", "link", "del", C.CONTROL_LINK], check=False)
        for ns in [h.netns for h in self.topo.hosts] + [C.BRIDGE_NS]:
            if os.path.exists(f"/run/netns/{ns}"):
                _run(["ip", "netns", "del", ns])
        # 4. writable layers and state; the key and the safety route stay
        if self.hosts_dir.exists():
            shutil.rmtree(self.hosts_dir)
        self.state_file.unlink(missing_ok=True)

    def leftovers(self) -> list[str]:
        """What of a lab exists on this machine (empty after a clean `down`)."""
        found = []
        for ns in [h.netns for h in self.topo.hosts] + [C.BRIDGE_NS]:
            if os.path.exists(f"/run/netns/{ns}"):
                found.append(f"netns {ns}")
        for link in os.listdir("/sys/class/net"):
            if link.startswith("lay7-"):
                found.append(f"link {link}")
        found += [f"mount {m}" for m in self._our_mounts()]
        for h in self.topo.hosts:
            found += [f"process {pid} ({' '.join(_cmdline(pid))[:60]})" for pid in self._host_pids(h)]
            found += [f"nspawn {pid} of {h.name}" for pid in self._nspawn_pids(h)]
        if self.hosts_dir.exists():
            found.append(f"dir {self.hosts_dir}")
        for root in cgroup_roots(_read("/proc/self/mountinfo") or ""):
            if (root / C.CGROUP_DIR).exists():
                found.append(f"cgroup {root / C.CGROUP_DIR}")
        if self.state_file.exists():
            found.append(f"file {self.state_file}")
        return found

    def _our_mounts(self) -> list[str]:
        prefix = str(self.hosts_dir) + "/"
        out = []
        for line in (_read("/proc/self/mountinfo") or "").splitlines():
            mnt = line.split()[4].encode().decode("unicode_escape")
            if mnt.startswith(prefix):
                out.append(mnt)
        return out

    def _create_network(self) -> None:
        for argv in C.bridge_argvs():
            _run(argv)
        for argv in C.control_argvs(self.topo):
            _run(argv)
        for h in self.topo.hosts:
            for argv in C.host_net_argvs(self.topo, h):
                _run(argv)

    def _prepare_root(self, image: Path, h: Host) -> str:
        """Overlay the base image, give the host its identity; return its known_hosts line."""
        base = self.hosts_dir / h.name
        if base.exists():
            shutil.rmtree(base)
        for d in ("upper", "work", "root"):
            (base / d).mkdir(parents=True)
        _run(["mount", "-t", "overlay", f"lay7-{h.name}", "-o",
              f"lowerdir={image},upperdir={base / 'upper'},workdir={base / 'work'}", str(base / "root")])
        root = base / "root"
        (root / "etc/hostname").write_text(h.name + "\n")
        (root / "etc/machine-id").write_text(secrets.token_hex(16) + "\n")
        hosts = ["127.0.0.1\tlocalhost", f"127.0.1.1\t{h.name}", "::1\tlocalhost ip6-localhost ip6-loopback",
                 f"{self.topo.control}\tcontrol"]
        hosts += [f"{o.address}\t{o.name}" for o in self.topo.hosts]
        (root / "etc/hosts").write_text("\n".join(hosts) + "\n")
        hostkey = root / "etc/ssh/ssh_host_ed25519_key"
        _run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", f"root@{h.name}", "-f", str(hostkey)])
        uid, gid = self._user_ids(root)
        ssh_dir = root / "home" / self.topo.user / ".ssh"
        ssh_dir.mkdir(mode=0o700, exist_ok=True)
        auth = ssh_dir / "authorized_keys"
        auth.write_text(Path(str(self.topo.key_path) + ".pub").read_text())
        auth.chmod(0o600)
        os.chown(ssh_dir, uid, gid)
        os.chown(auth, uid, gid)
        pub = Path(str(hostkey) + ".pub").read_text().split()
        return f"{h.address},{h.name} {pub[0]} {pub[1]}\n"

    def _user_ids(self, root: Path) -> tuple[int, int]:
        for line in (root / "etc/passwd").read_text().splitlines():
            f = line.split(":")
            if f[0] == self.topo.user:
                return int(f[2]), int(f[3])
        raise LabError(f"user {self.topo.user!r} missing from the base image; rebuild it "
                       f"(remove {self.topo.cache_dir})")

    # ---------------------------------------------------------------- processes
    def _start(self, h: Host) -> int:
        self.topo.run_dir.mkdir(parents=True, exist_ok=True)
        env = dict(os.environ, **C.NSPAWN_ENV)
        procs = []
        for cg in self.cgroups(h.name):
            cg.mkdir(parents=True, exist_ok=True)
            procs.append(str(cg / "cgroup.procs"))

        def enter_cgroups() -> None:  # runs in the child between fork and exec
            for path in procs:
                with open(path, "w") as fh:
                    fh.write(str(os.getpid()))

        with open(self.console_log(h.name), "ab") as out:
            out.write(f"\n=== lab: booting {h.name} at {time.strftime('%H:%M:%S')} ===\n".encode())
            out.flush()
            proc = subprocess.Popen(C.nspawn_argv(self.root(h.name), h), stdin=subprocess.DEVNULL,
                                    stdout=out, stderr=subprocess.STDOUT, env=env, start_new_session=True,
                                    preexec_fn=enter_cgroups)
        return proc.pid

    def cgroups(self, name: str) -> list[Path]:
        """The host's own cgroup in each hierarchy: nspawn runs there, so booted systemds never share
        a cgroup tree (with --keep-unit they would all use the caller's and break each other's units)."""
        return [root / C.CGROUP_DIR / name for root in cgroup_roots(_read("/proc/self/mountinfo") or "")]

    def _cgroup_pids(self, name: str) -> list[int]:
        pids = set()
        for top in self.cgroups(name):
            for dirpath, _dirs, files in os.walk(top):
                if "cgroup.procs" in files:
                    for line in (_read(os.path.join(dirpath, "cgroup.procs")) or "").split():
                        pids.add(int(line))
        return sorted(p for p in pids if _alive(p))

    def _nspawn_pids(self, h: Host) -> list[int]:
        want = str(self.root(h.name))
        out = []
        for pid in _pids():
            argv = _cmdline(pid)
            if argv and argv[0].endswith("systemd-nspawn") and "-D" in argv:
                i = argv.index("-D")
                if i + 1 < len(argv) and argv[i + 1] == want and _alive(pid):
                    out.append(pid)
        return out

    def _host_pids(self, h: Host) -> list[int]:
        """Processes living in the host's network namespace (the booted system)."""
        nspawn = set(self._nspawn_pids(h))
        found = {p for p in self._cgroup_pids(h.name) if p not in nspawn}
        ino = _netns_inode(f"/run/netns/{h.netns}")
        if ino is not None and ino != _netns_inode("/proc/self/ns/net"):
            found |= {p for p in _pids() if _netns_inode(f"/proc/{p}/ns/net") == ino and _alive(p)}
        return sorted(found)

    def init_pid(self, name: str) -> int | None:
        """PID (in our namespace) of the host's PID 1, or None when the host is off."""
        h = self.host(name)
        for ns_pid in self._nspawn_pids(h):
            for pid in _pids():
                if _ppid(pid) == ns_pid and _alive(pid):
                    status = _read(f"/proc/{pid}/status") or ""
                    for line in status.splitlines():
                        if line.startswith("NSpid:") and line.split()[-1] == "1" and len(line.split()) > 2:
                            return pid
        return None

    def is_running(self, name: str) -> bool:
        return bool(self._nspawn_pids(self.host(name)))

    def _power_off(self, h: Host) -> None:
        # SIGKILL to the host's PID 1 ends its whole PID namespace at once, like pulling the plug;
        # killing only nspawn would leave the booted system running.
        for _ in range(3):
            victims = self._host_pids(h)
            init = self.init_pid(h.name) if self._nspawn_pids(h) else None
            if init:
                victims.insert(0, init)
            for pid in victims:
                try:
                    os.kill(pid, signal.SIGKILL)
                except ProcessLookupError:
                    pass
            deadline = time.monotonic() + STOP_TIMEOUT
            while time.monotonic() < deadline and (self._host_pids(h) or
                                                   (init and _alive(init))):
                time.sleep(0.05)
            # nspawn notices its child died and exits; make sure of it
            nspawn = self._nspawn_pids(h)
            deadline = time.monotonic() + 5
            while nspawn and time.monotonic() < deadline:
                time.sleep(0.05)
                nspawn = self._nspawn_pids(h)
            for pid in nspawn:
                try:
                    os.kill(pid, signal.SIGKILL)
                except ProcessLookupError:
                    pass
            if not self._host_pids(h) and not self._nspawn_pids(h):
                for cg in self.cgroups(h.name):
                    _rmdir_tree(cg)
                return
            time.sleep(0.2)
        raise LabError(f"{h.name}: processes survive SIGKILL: {self._host_pids(h) + self._nspawn_pids(h)}")

    # ---------------------------------------------------------------- fault injection
    def _require_up(self) -> None:
        if not os.path.exists(f"/run/netns/{C.BRIDGE_NS}"):
            raise LabError("the lab is not up; run `python -m lab up`")

    def kill(self, name: str) -> None:
        """Power the host off (its disk, the overlay, is kept for `boot`)."""
        h = self.host(name)
        self._require_up()
        with self._oplock():
            self._power_off(h)

    def boot(self, name: str, wait: bool = True, ssh_timeout: int = SSH_TIMEOUT) -> None:
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
        _run(C.link_argv(self.host(name), up=False))

    def heal(self, name: str) -> None:
        self._require_up()
        _run(C.link_argv(self.host(name), up=True))

    def link_up(self, name: str) -> bool:
        out = _run(["ip", "-j", "-n", C.BRIDGE_NS, "link", "show", self.host(name).bridge_port]).stdout
        return "UP" in json.loads(out)[0].get("flags", [])

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
        script = C.partition_reset_script()
        if pairs:
            script += C.partition_ruleset([(self.host(a), self.host(b)) for a, b in pairs])
        _run(["ip", "netns", "exec", C.BRIDGE_NS, "nft", "-f", "-"], input=script)

    # ---------------------------------------------------------------- access
    def exec(self, name: str, argv: list[str], check: bool = False, timeout: float | None = 60,
             input: str | None = None) -> subprocess.CompletedProcess:
        """Run argv inside the host through its namespaces (works without network or sshd)."""
        pid = self.init_pid(name)
        if pid is None:
            raise LabError(f"{name} is not running")
        proc = subprocess.run(C.nsenter_argv(pid, list(argv)), capture_output=True, text=True,
                              timeout=timeout, input=input, check=False)
        if check and proc.returncode != 0:
            raise LabError(f"{name}: `{' '.join(argv)}` exited {proc.returncode}: {proc.stderr.strip()}")
        return proc

    def ssh(self, name: str, command: list[str] | str, timeout: float | None = 60,
            connect_timeout: int = 3) -> subprocess.CompletedProcess:
        """Run a command on the host over SSH from the control node, as the lab user."""
        return subprocess.run(C.ssh_argv(self.topo, self.host(name), command, connect_timeout),
                              capture_output=True, text=True, timeout=timeout, stdin=subprocess.DEVNULL,
                              check=False)

    def wait_ssh(self, name: str, timeout: float = SSH_TIMEOUT) -> float:
        """Block until the host runs a command over SSH; return the seconds it took."""
        h = self.host(name)
        t0 = time.monotonic()
        last = ""
        while time.monotonic() - t0 < timeout:
            if not self.is_running(name):
                raise LabError(f"{name} stopped while booting; console log {self.console_log(name)}:\n"
                               f"{tail(self.console_log(name))}")
            if self._port_open(h, 22):
                proc = self.ssh(name, ["true"], timeout=15)
                if proc.returncode == 0:
                    return time.monotonic() - t0
                last = proc.stderr.strip()
            time.sleep(0.2)
        raise LabError(f"{name} ({h.address}) did not answer SSH within {timeout:.0f}s"
                       f"{' (last error: ' + last + ')' if last else ''}; console log "
                       f"{self.console_log(name)}:\n{tail(self.console_log(name))}")

    @staticmethod
    def _port_open(h: Host, port: int, timeout: float = 0.5) -> bool:
        try:
            with socket.create_connection((str(h.address), port), timeout=timeout):
                return True
        except OSError:
            return False

    def molecule_instances(self) -> list[dict]:
        """Molecule's instance config for a managed delegated driver: how to log in to each host."""
        return [
            {"instance": h.name, "address": str(h.address), "user": self.topo.user, "port": 22,
             "identity_file": str(self.topo.key_path)}
            for h in self.topo.hosts
        ]

    # ---------------------------------------------------------------- status
    def _read_state(self) -> dict:
        try:
            return json.loads(self.state_file.read_text())
        except FileNotFoundError:
            return {}
        except json.JSONDecodeError as exc:
            raise LabError(f"state file {self.state_file} is corrupt ({exc}); run `python -m lab down`") from None

    def _write_state(self, state: dict) -> None:
        tmp = self.state_file.with_suffix(".tmp")
        tmp.write_text(json.dumps(state, indent=2, sort_keys=True))
        os.replace(tmp, self.state_file)

    def status(self) -> dict:
        up = os.path.exists(f"/run/netns/{C.BRIDGE_NS}")
        hosts = {}
        for h in self.topo.hosts:
            entry = {"address": str(h.address), "running": False, "link": None}
            if up:
                entry["running"] = self.is_running(h.name)
                entry["init_pid"] = self.init_pid(h.name)
                if os.path.exists(f"/run/netns/{h.netns}"):
                    entry["link"] = "up" if self.link_up(h.name) else "down"
            hosts[h.name] = entry
        return {
            "up": up,
            "hosts": hosts,
            "partitions": [list(p) for p in self.partitions()] if up else [],
            "safety_route": self.safety_route_present(),
            "leftovers": [] if up else self.leftovers(),
        }
