"""The lab's state file (boot records, partitions) and the lock that serialises lab operations."""

from __future__ import annotations

import fcntl
import json
import os
from contextlib import contextmanager
from pathlib import Path

from .errors import LabError


@contextmanager
def oplock(state_dir: Path):
    """Serialise lab operations of concurrent `python -m lab` processes (not the user's lock)."""
    state_dir.mkdir(parents=True, exist_ok=True)
    with open(state_dir / ".op.lock", "w") as fh:
        fcntl.flock(fh, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(fh, fcntl.LOCK_UN)


def read_state(path: Path) -> dict:
    try:
        return json.loads(path.read_text())
    except FileNotFoundError:
        return {}
    except json.JSONDecodeError as exc:
        raise LabError(f"state file {path} is corrupt ({exc}); run `python -m lab down`") from None


def write_state(path: Path, state: dict) -> None:
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps(state, indent=2, sort_keys=True))
    os.replace(tmp, path)
