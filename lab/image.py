"""The base image: debootstrap once per recipe, cached under paths.cache."""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess
import time
from pathlib import Path

from .errors import LabError, tail
from .topology import Image, Topology

SETUP_SCRIPT = Path(__file__).with_name("image") / "setup.sh"
# Bump when the build procedure in this module changes in a way the recipe does not show.
BUILD_VERSION = 1


def recipe(topo: Topology) -> dict:
    """Everything that determines the image's content."""
    img: Image = topo.image
    return {
        "build_version": BUILD_VERSION,
        "suite": img.suite,
        "mirror": img.mirror,
        "packages": sorted(img.packages),
        "disabled_units": sorted(img.disabled_units),
        "user": topo.user,
        "setup_sh": SETUP_SCRIPT.read_text(),
    }


def recipe_hash(rec: dict) -> str:
    blob = json.dumps(rec, sort_keys=True, separators=(",", ":")).encode()
    return hashlib.sha256(blob).hexdigest()[:16]


def debootstrap_argv(img: Image, target: Path) -> list[str]:
    return [
        "debootstrap",
        "--variant=minbase",
        "--include=" + ",".join(sorted(img.packages)),
        img.suite,
        str(target),
        img.mirror,
    ]


def image_path(topo: Topology) -> Path:
    return topo.cache_dir / f"base-{recipe_hash(recipe(topo))}"


def ensure_image(topo: Topology, log=print) -> Path:
    """Return the path of the base image for the current recipe, building it if needed."""
    rec = recipe(topo)
    digest = recipe_hash(rec)
    final = topo.cache_dir / f"base-{digest}"
    if (final / ".lab-image-complete").is_file():
        return final
    topo.cache_dir.mkdir(parents=True, exist_ok=True)
    work = topo.cache_dir / f"build-{digest}"
    logfile = topo.cache_dir / f"build-{digest}.log"
    if work.exists():
        shutil.rmtree(work)
    if final.exists():
        shutil.rmtree(final)
    log(f"building base image {final.name} ({topo.image.suite}, {len(topo.image.packages)} packages); "
        f"log: {logfile}")
    t0 = time.monotonic()
    with open(logfile, "w") as out:
        proc = subprocess.run(debootstrap_argv(topo.image, work), stdout=out, stderr=subprocess.STDOUT,
                              stdin=subprocess.DEVNULL, check=False)
    if proc.returncode != 0:
        inner = work / "debootstrap" / "debootstrap.log"
        detail = tail(inner, 25) if inner.exists() else tail(logfile, 25)
        raise LabError(
            f"base image build failed: debootstrap exited {proc.returncode} (mirror {topo.image.mirror}).\n"
            f"full log: {logfile}\n--- debootstrap log tail ---\n{detail}"
        )
    env = {
        "PATH": "/usr/sbin:/usr/bin:/sbin:/bin",
        "LAB_USER": topo.user,
        "LAB_DISABLED_UNITS": " ".join(topo.image.disabled_units),
        "LAB_MIRROR": topo.image.mirror,
        "LAB_SUITE": topo.image.suite,
        "DEBIAN_FRONTEND": "noninteractive",
    }
    with open(logfile, "a") as out, open(SETUP_SCRIPT, "rb") as script:
        out.write("\n--- setup.sh ---\n")
        out.flush()
        proc = subprocess.run(["chroot", str(work), "/bin/sh", "-s"], stdin=script, stdout=out,
                              stderr=subprocess.STDOUT, env=env, check=False)
    if proc.returncode != 0:
        raise LabError(f"base image setup (lab/image/setup.sh) failed with exit {proc.returncode}.\n"
                       f"full log: {logfile}\n--- log tail ---\n{tail(logfile, 25)}")
    (work / ".lab-recipe.json").write_text(json.dumps(rec, indent=2, sort_keys=True))
    (work / ".lab-image-complete").write_text(f"{time.monotonic() - t0:.1f}\n")
    os.rename(work, final)
    # Older images are stale once a new recipe built; the lab is down while we build.
    for old in topo.cache_dir.glob("base-*"):
        if old != final and old.is_dir():
            shutil.rmtree(old, ignore_errors=True)
    log(f"base image built in {time.monotonic() - t0:.0f}s")
    return final
