"""The base images: debootstrap once per release and recipe, cached under paths.cache."""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess
import threading
import time
from pathlib import Path

from .errors import LabError, tail
from .topology import Image, Topology

SETUP_SCRIPT = Path(__file__).with_name("image") / "setup.sh"
# Bump when the build procedure in this module changes in a way the recipe does not show.
BUILD_VERSION = 1
# A build takes a minute or more per release; say that it is alive at least this often.
HEARTBEAT_SECONDS = 5.0


def recipe(topo: Topology, suite: str | None = None) -> dict:
    """Everything that determines the content of the image of release `suite` (default: the
    topology's default release)."""
    img: Image = topo.image
    return {
        "build_version": BUILD_VERSION,
        "suite": suite or img.suite,
        "mirror": img.mirror,
        "packages": sorted(img.packages),
        "disabled_units": sorted(img.disabled_units),
        "user": topo.user,
        "setup_sh": SETUP_SCRIPT.read_text(),
    }


def recipe_hash(rec: dict) -> str:
    blob = json.dumps(rec, sort_keys=True, separators=(",", ":")).encode()
    return hashlib.sha256(blob).hexdigest()[:16]


def debootstrap_argv(img: Image, target: Path, suite: str | None = None) -> list[str]:
    return [
        "debootstrap",
        "--variant=minbase",
        "--include=" + ",".join(sorted(img.packages)),
        suite or img.suite,
        str(target),
        img.mirror,
    ]


def image_path(topo: Topology, suite: str | None = None) -> Path:
    suite = suite or topo.image.suite
    return topo.cache_dir / f"base-{suite}-{recipe_hash(recipe(topo, suite))}"


def last_line(path: Path) -> str:
    """The last non-empty line of a (growing) log file, shortened; '' when there is none."""
    try:
        with open(path, "rb") as fh:
            fh.seek(0, os.SEEK_END)
            fh.seek(max(0, fh.tell() - 4096))
            lines = [ln.strip() for ln in fh.read().decode(errors="replace").splitlines() if ln.strip()]
    except OSError:
        return ""
    return lines[-1][:100] if lines else ""


def run_with_heartbeat(argv: list[str], logfile: Path, log, what: str, every: float = HEARTBEAT_SECONDS,
                       **kwargs) -> int:
    """Run argv with its output appended to logfile; while it runs, log a line at least every
    `every` seconds (elapsed time and the log's last line), so a long build is never silent."""
    t0 = time.monotonic()
    with open(logfile, "a") as out:
        proc = subprocess.Popen(argv, stdout=out, stderr=subprocess.STDOUT, **kwargs)
        done = threading.Event()

        def beat() -> None:
            while not done.wait(every):
                log(f"{what}: {time.monotonic() - t0:.0f}s, {last_line(logfile) or 'starting'}")

        ticker = threading.Thread(target=beat, daemon=True)
        ticker.start()
        try:
            return proc.wait()
        finally:
            done.set()
            ticker.join()


def ensure_image(topo: Topology, log=print, suite: str | None = None) -> Path:
    """Return the path of the base image of release `suite` (default: the topology's default
    release) for the current recipe, building it if needed."""
    suite = suite or topo.image.suite
    rec = recipe(topo, suite)
    digest = recipe_hash(rec)
    final = image_path(topo, suite)
    if (final / ".lab-image-complete").is_file():
        return final
    topo.cache_dir.mkdir(parents=True, exist_ok=True)
    work = topo.cache_dir / f"build-{digest}"
    logfile = topo.cache_dir / f"build-{digest}.log"
    if work.exists():
        shutil.rmtree(work)
    if final.exists():
        shutil.rmtree(final)
    log(f"building base image {final.name} ({suite}, {len(topo.image.packages)} packages); "
        f"log: {logfile}")
    t0 = time.monotonic()
    logfile.write_text("")
    returncode = run_with_heartbeat(debootstrap_argv(topo.image, work, suite), logfile, log,
                                    f"debootstrap {suite}", stdin=subprocess.DEVNULL)
    if returncode != 0:
        inner = work / "debootstrap" / "debootstrap.log"
        detail = tail(inner, 25) if inner.exists() else tail(logfile, 25)
        raise LabError(
            f"base image build failed: debootstrap exited {returncode} (mirror {topo.image.mirror}).\n"
            f"full log: {logfile}\n--- debootstrap log tail ---\n{detail}"
        )
    env = {
        "PATH": "/usr/sbin:/usr/bin:/sbin:/bin",
        "LAB_USER": topo.user,
        "LAB_DISABLED_UNITS": " ".join(topo.image.disabled_units),
        "LAB_MIRROR": topo.image.mirror,
        "LAB_SUITE": suite,
        "DEBIAN_FRONTEND": "noninteractive",
    }
    with open(logfile, "a") as out:
        out.write("\n--- setup.sh ---\n")
    with open(SETUP_SCRIPT, "rb") as script:
        returncode = run_with_heartbeat(["chroot", str(work), "/bin/sh", "-s"], logfile, log,
                                        f"image setup {suite}", stdin=script, env=env)
    if returncode != 0:
        raise LabError(f"base image setup (lab/image/setup.sh) failed with exit {returncode}.\n"
                       f"full log: {logfile}\n--- log tail ---\n{tail(logfile, 25)}")
    (work / ".lab-recipe.json").write_text(json.dumps(rec, indent=2, sort_keys=True))
    (work / ".lab-image-complete").write_text(f"{time.monotonic() - t0:.1f}\n")
    os.rename(work, final)
    # Older images of this release are stale once a new recipe built (the lab is down while we
    # build); the other releases' images stay. "base-<hash>" is the name before releases.
    for old in [*topo.cache_dir.glob(f"base-{suite}-*"), *topo.cache_dir.glob("base-" + "[0-9a-f]" * 16)]:
        if old != final and old.is_dir():
            shutil.rmtree(old, ignore_errors=True)
    log(f"base image {suite} built in {time.monotonic() - t0:.0f}s")
    return final
