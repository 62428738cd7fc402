"""Install a local `community.vagrant` collection for molecule-plugins' vagrant driver.

molecule-plugins 26.x's vagrant driver calls `community.vagrant.vagrant` in its create
and destroy playbooks. That collection comes from Galaxy, which this machine (and many
CI runners) cannot reach. molecule-plugins 25.8.12 is the last release whose wheel still
carries the very module (`molecule_plugins/vagrant/modules/vagrant.py`) the collection
was made from. This script fetches that wheel from PyPI (pinned by version and sha256),
takes the module out of it, builds a collection from it with `ansible-galaxy collection
build` and installs that tarball (offline) next to lay7.ha:

    .collections/ansible_collections/community/vagrant/plugins/modules/vagrant.py

The collection's version is the release it comes from, 25.8.12 (satisfies the driver's
declared `community.vagrant>=1.0.1`: the module has the interface the 26.x playbooks call).

Why this rather than pinning molecule-plugins[vagrant]==25.8.12 in requirements.txt and
pointing ANSIBLE_LIBRARY at its bundled module: the pin would hold the whole dev venv
(molecule, the other drivers) at an old release for one scenario, and a bare module on
ANSIBLE_LIBRARY does not answer to the FQCN `community.vagrant.vagrant` the 26.x driver
playbooks use. The collection does, and everything else stays on current releases.

Usage: python vagrant/community_vagrant.py [--collections DIR] [--cache DIR]
Idempotent; prints the module path.
"""

from __future__ import annotations

import argparse
import hashlib
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
WHEEL_VERSION = "25.8.12"
WHEEL_NAME = f"molecule_plugins-{WHEEL_VERSION}-py3-none-any.whl"
WHEEL_SHA256 = "c5b8ceb209a5ff87326631d60408f8d08b9431b2e339dad4c620130b50279ce0"
MODULE_IN_WHEEL = "molecule_plugins/vagrant/modules/vagrant.py"
COLLECTION_VERSION = WHEEL_VERSION

GALAXY_YML = f"""\
---
# Built by lay7.ha vagrant/community_vagrant.py: the vagrant module bundled in
# molecule-plugins {WHEEL_VERSION} (sha256 {WHEEL_SHA256[:16]}...), as a local collection.
namespace: community
name: vagrant
version: {COLLECTION_VERSION}
readme: README.md
authors: [molecule-plugins authors]
license: [MIT]
"""


def sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def fetch_wheel(cache: Path) -> Path:
    wheel = cache / WHEEL_NAME
    if not wheel.is_file() or sha256(wheel) != WHEEL_SHA256:
        cache.mkdir(parents=True, exist_ok=True)
        cmd = [sys.executable, "-m", "pip", "download", "--quiet", "--no-deps", "--only-binary=:all:",
               "--dest", str(cache), f"molecule-plugins=={WHEEL_VERSION}"]
        proc = subprocess.run(cmd, capture_output=True, text=True, check=False)
        if proc.returncode != 0 or not wheel.is_file():
            raise SystemExit(f"community_vagrant.py: cannot download {WHEEL_NAME} from PyPI "
                             f"(pip exit {proc.returncode}):\n{proc.stderr[-2000:]}")
    actual = sha256(wheel)
    if actual != WHEEL_SHA256:
        raise SystemExit(f"community_vagrant.py: {wheel} has sha256 {actual}, expected {WHEEL_SHA256}")
    return wheel


def _galaxy(args: list[str]) -> None:
    cmd = [str(Path(sys.executable).with_name("ansible-galaxy")), "collection", *args]
    proc = subprocess.run(cmd, capture_output=True, text=True, check=False)
    if proc.returncode != 0:
        raise SystemExit(f"community_vagrant.py: `{' '.join(cmd)}` failed:\n{proc.stdout[-1000:]}{proc.stderr[-2000:]}")


def install(collections: Path, cache: Path) -> Path:
    root = collections / "ansible_collections" / "community" / "vagrant"
    module = root / "plugins" / "modules" / "vagrant.py"
    manifest = root / "MANIFEST.json"
    if module.is_file() and manifest.is_file() and f'"version": "{COLLECTION_VERSION}"' in manifest.read_text():
        return module
    with zipfile.ZipFile(fetch_wheel(cache)) as zf:
        source = zf.read(MODULE_IN_WHEEL)
    src = cache / "community.vagrant"
    shutil.rmtree(src, ignore_errors=True)
    (src / "plugins" / "modules").mkdir(parents=True)
    (src / "plugins" / "modules" / "vagrant.py").write_bytes(source)
    (src / "meta").mkdir()
    (src / "meta" / "runtime.yml").write_text("---\nrequires_ansible: '>=2.15'\n")
    (src / "README.md").write_text(
        f"community.vagrant, built locally from molecule-plugins {WHEEL_VERSION}'s bundled module "
        "by lay7.ha's vagrant/community_vagrant.py (Galaxy is not reachable).\n")
    (src / "galaxy.yml").write_text(GALAXY_YML)
    _galaxy(["build", "--force", "--output-path", str(cache), str(src)])
    tarball = cache / f"community-vagrant-{COLLECTION_VERSION}.tar.gz"
    _galaxy(["install", "--offline", "--force", "-p", str(collections), str(tarball)])
    return module


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--collections", type=Path, default=REPO / ".collections",
                        help="collections path (the one ANSIBLE_COLLECTIONS_PATH names)")
    parser.add_argument("--cache", type=Path, default=Path("/var/cache/lay7-vagrant/wheels"),
                        help="where the pinned wheel is kept")
    args = parser.parse_args(argv)
    print(install(args.collections, args.cache))
    return 0


if __name__ == "__main__":
    sys.exit(main())
