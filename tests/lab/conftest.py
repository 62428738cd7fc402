"""tests/lab: the lab tool's pure parts (fast) and a real boot of the topology (root)."""

import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

from lab import topology  # noqa: E402


@pytest.fixture
def raw_topology():
    """The real topology file as a dict, for tests that break one field."""
    import yaml

    return yaml.safe_load(topology.DEFAULT_TOPOLOGY.read_text())


@pytest.fixture
def raw_inventory(raw_topology):
    """The documents the lab reads from the inventory the topology names: hosts.yml and
    group_vars/loadbalancers.yml, as dicts (``parse(raw_topology, *raw_inventory)``)."""
    import yaml

    inv = topology.inventory_dir(raw_topology, topology.DEFAULT_TOPOLOGY)
    return [yaml.safe_load((inv / name).read_text()) for name in (topology.HOSTS_FILE, topology.LB_VARS_FILE)]


@pytest.fixture
def tmp_topology(raw_topology, raw_inventory, tmp_path):
    """The real topology with every path moved into tmp_path."""
    raw_topology["paths"] = {k: str(tmp_path / k) for k in ("state", "run", "cache")}
    return topology.parse(raw_topology, *raw_inventory)
