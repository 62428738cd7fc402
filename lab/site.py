"""Run the collection's real site playbook from the control node, as an operator would.

Shared by the verify suite (against the inventory Molecule converged) and the failover
benchmark (against inventory/lab): one place knows how the repository's collection, config and
playbook are put together.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[1]


def seed_contract() -> dict[str, str]:
    """The seed topology's routing contract (molecule/shared/seed_contract.yml): request path ->
    the web server that must answer it, read by the verifier and the demo."""
    contract = ROOT / "molecule" / "shared" / "seed_contract.yml"
    return yaml.safe_load(contract.read_text(encoding="utf-8"))["routes"]


def seed_routes() -> list[dict]:
    """The lab inventory's route table (haproxy_l7_routes of its load balancers), for tests
    that deploy a changed table and then the inventory's again."""
    group_vars = ROOT / "inventory" / "lab" / "group_vars" / "loadbalancers.yml"
    return yaml.safe_load(group_vars.read_text(encoding="utf-8"))["haproxy_l7_routes"]


def run_site(inventory: str | Path, extra: dict, tags: str | None = None, limit: str | None = None,
             timeout: float = 300) -> subprocess.CompletedProcess:
    """ansible-playbook site.yml with `extra` as extra vars (the highest precedence); the
    result is returned, not checked: callers decide what a failure means."""
    return run_playbook(inventory, str(ROOT / "site.yml"), extra, tags=tags, limit=limit, timeout=timeout)


def run_playbook(inventory: str | Path, playbook: str, extra: dict, tags: str | None = None,
                 limit: str | None = None, timeout: float = 300, options: tuple = ()) -> subprocess.CompletedProcess:
    """ansible-playbook on a path or on a collection playbook's name (lay7.ha.web_drain), as
    an operator runs it (``options``: more arguments, e.g. ("--diff",)); the result is returned,
    not checked."""
    env = dict(os.environ, ANSIBLE_CONFIG=str(ROOT / "ansible.cfg"),
               ANSIBLE_COLLECTIONS_PATH=str(ROOT / ".collections"), ANSIBLE_NOCOLOR="1", ANSIBLE_FORCE_COLOR="0")
    binary = Path(sys.executable).with_name("ansible-playbook")
    argv = [str(binary), "-i", str(inventory), playbook, "-e", json.dumps(extra), *options]
    if tags:
        argv += ["--tags", tags]
    if limit:
        argv += ["--limit", limit]
    return subprocess.run(argv, cwd=ROOT, env=env, capture_output=True, text=True, timeout=timeout, check=False)
