"""Each host's root filesystem: an overlay of the base image with the host's identity written into
its upper layer; the mounts under the hosts directory."""

from __future__ import annotations

import os
import secrets
import shutil
from pathlib import Path

from . import procfs
from .cmd import run
from .errors import LabError
from .topology import Host, Topology


def prepare_root(topo: Topology, base: Path, image: Path, h: Host) -> str:
    """Overlay the base image in `base`, give the host its identity; return its known_hosts line."""
    if base.exists():
        shutil.rmtree(base)
    for d in ("upper", "work", "root"):
        (base / d).mkdir(parents=True)
    run(["mount", "-t", "overlay", f"lay7-{h.name}", "-o",
         f"lowerdir={image},upperdir={base / 'upper'},workdir={base / 'work'}", str(base / "root")])
    root = base / "root"
    (root / "etc/hostname").write_text(h.name + "\n")
    (root / "etc/machine-id").write_text(secrets.token_hex(16) + "\n")
    hosts = ["127.0.0.1\tlocalhost", f"127.0.1.1\t{h.name}", "::1\tlocalhost ip6-localhost ip6-loopback",
             f"{topo.control}\tcontrol"]
    hosts += [f"{o.address}\t{o.name}" for o in topo.hosts]
    (root / "etc/hosts").write_text("\n".join(hosts) + "\n")
    hostkey = root / "etc/ssh/ssh_host_ed25519_key"
    run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", f"root@{h.name}", "-f", str(hostkey)])
    uid, gid = user_ids(topo, root)
    ssh_dir = root / "home" / topo.user / ".ssh"
    ssh_dir.mkdir(mode=0o700, exist_ok=True)
    auth = ssh_dir / "authorized_keys"
    auth.write_text(Path(str(topo.key_path) + ".pub").read_text())
    auth.chmod(0o600)
    os.chown(ssh_dir, uid, gid)
    os.chown(auth, uid, gid)
    pub = Path(str(hostkey) + ".pub").read_text().split()
    return f"{h.address},{h.name} {pub[0]} {pub[1]}\n"


def user_ids(topo: Topology, root: Path) -> tuple[int, int]:
    for line in (root / "etc/passwd").read_text().splitlines():
        f = line.split(":")
        if f[0] == topo.user:
            return int(f[2]), int(f[3])
    raise LabError(f"user {topo.user!r} missing from the base image; rebuild it "
                   f"(remove {topo.cache_dir})")


def mounts(hosts_dir: Path) -> list[str]:
    """Mount points under the hosts directory."""
    prefix = str(hosts_dir) + "/"
    out = []
    for line in procfs.mountinfo().splitlines():
        mnt = line.split()[4].encode().decode("unicode_escape")
        if mnt.startswith(prefix):
            out.append(mnt)
    return out


def unmount_all(hosts_dir: Path) -> None:
    """Every mount under the hosts directory, deepest first."""
    for mnt in sorted(mounts(hosts_dir), key=len, reverse=True):
        if run(["umount", mnt], check=False).returncode != 0:
            run(["umount", "-l", mnt], check=False)
    left = mounts(hosts_dir)
    if left:
        raise LabError(f"could not unmount: {', '.join(left)}")
