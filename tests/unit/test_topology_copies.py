"""The topology is written once (inventory/lab/hosts.yml); the Molecule platform lists are
the one copy a molecule.yml cannot avoid. tools/check_topology.py compares them."""

from __future__ import annotations

import re
import shutil
import sys
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "tools"))
try:
    import check_topology
finally:
    sys.path.remove(str(ROOT / "tools"))


def test_every_platform_list_matches_the_inventory():
    assert check_topology.problems() == []


def test_both_scenarios_are_checked():
    checked = {p.parent.name for p in (ROOT / "molecule").glob("*/molecule.yml")
               if "platforms" in (yaml.safe_load(p.read_text()) or {})}
    assert checked == {"lab", "vagrant"}


@pytest.fixture
def tree(tmp_path):
    """A copy of the files the check reads."""
    (tmp_path / "inventory" / "lab").mkdir(parents=True)
    shutil.copy(ROOT / check_topology.SOURCE, tmp_path / check_topology.SOURCE)
    for scenario in ("lab", "vagrant"):
        (tmp_path / "molecule" / scenario).mkdir(parents=True)
        shutil.copy(ROOT / "molecule" / scenario / "molecule.yml", tmp_path / "molecule" / scenario)
    return tmp_path


def _edit(path: Path, change) -> None:
    data = yaml.safe_load(path.read_text())
    change(data)
    path.write_text(yaml.safe_dump(data, sort_keys=False))


@pytest.mark.parametrize(("scenario", "change", "message"), [
    ("vagrant", lambda d: d["platforms"][3]["interfaces"][0].update(ip="192.168.56.14"),
     r"molecule/vagrant/molecule.yml: platform web2: private_network ip \['192.168.56.14'\] != \['192.168.56.12'\]"),
    ("lab", lambda d: d["platforms"][0].update(groups=["webservers"]),
     r"molecule/lab/molecule.yml: platform hap1: groups \['webservers'\] != \['loadbalancers'\]"),
    ("lab", lambda d: d["platforms"].pop(),
     r"molecule/lab/molecule.yml: platforms \['hap1', 'hap2', 'web1', 'web2'\] != inventory/lab/hosts.yml hosts"),
    ("vagrant", lambda d: d["platforms"].reverse(),
     r"molecule/vagrant/molecule.yml: platforms \['web3', .*\(same names, same order\)"),
])
def test_a_drifted_platform_list_is_named(tree, scenario, change, message):
    _edit(tree / "molecule" / scenario / "molecule.yml", change)
    found = check_topology.problems(tree)
    assert found and all(f"molecule/{scenario}/" in line for line in found)
    assert any(re.search(message, line) for line in found), found


def test_a_changed_inventory_address_is_named(tree):
    _edit(tree / check_topology.SOURCE,
          lambda d: d["all"]["children"]["webservers"]["hosts"]["web1"].update(lay7_node_address="192.168.56.31"))
    assert check_topology.problems(tree) == [
        "molecule/vagrant/molecule.yml: platform web1: private_network ip ['192.168.56.11'] != ['192.168.56.31']"]


def test_the_command_exits_non_zero_on_drift(tree, capsys):
    assert check_topology.main(tree) == 0
    _edit(tree / "molecule" / "lab" / "molecule.yml", lambda d: d["platforms"].pop())
    assert check_topology.main(tree) == 1
    assert "check_topology: molecule/lab/molecule.yml: platforms" in capsys.readouterr().err
