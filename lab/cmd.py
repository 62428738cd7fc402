"""Running the lab's commands: a failure is a LabError that names the command and its output."""

from __future__ import annotations

import subprocess

from .errors import LabError


def run(argv: list[str], *, input: str | None = None, check: bool = True) -> subprocess.CompletedProcess:
    proc = subprocess.run(argv, input=input, capture_output=True, text=True, check=False)
    if check and proc.returncode != 0:
        raise LabError(f"`{' '.join(argv)}` failed (exit {proc.returncode}): "
                       f"{(proc.stderr or proc.stdout).strip()}")
    return proc
