"""`molecule test -s lab` leaves nothing behind even when a step fails midway."""

import os
import subprocess
import sys
from pathlib import Path

import pytest

from lab import Lab

REPO = Path(__file__).resolve().parents[2]
pytestmark = pytest.mark.skipif(os.geteuid() != 0, reason="the lab needs root")


def test_failed_converge_still_destroys_the_lab():
    lab = Lab()
    if lab.is_up():
        pytest.fail("a lab is already up; hold /run/lay7-lab.lock and run `python -m lab down` first")
    env = dict(os.environ)
    env["PATH"] = f"{Path(sys.executable).parent}:{env.get('PATH', '')}"
    env.setdefault("ANSIBLE_COLLECTIONS_PATH", str(REPO / ".collections"))
    env["NO_COLOR"] = "1"
    # A user no host has: create succeeds, converge cannot connect, molecule must still destroy.
    proc = subprocess.run(["molecule", "test", "-s", "lab", "--", "-e", "ansible_user=nobody-lab-test"],
                          cwd=REPO, env=env, capture_output=True, text=True, timeout=900, check=False)
    out = proc.stdout + proc.stderr
    try:
        assert proc.returncode != 0, "converge as a missing user must fail"
        assert "create: Executed: Successful" in out, out[-3000:]
        assert "converge: Executed: Failed" in out, out[-3000:]
        assert out.count("destroy: Executed: Successful") >= 2, out[-3000:]
        assert lab.leftovers() == []
    finally:
        lab.down()
