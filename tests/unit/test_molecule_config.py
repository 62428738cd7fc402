"""Molecule's base config (.config/molecule/config.yml) holds what every scenario shares;
each molecule/<scenario>/molecule.yml only what differs. Checked on the files as Molecule
merges them (molecule.util.merge_dicts, before interpolation): no hosts, nothing written."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml
from molecule.util import lookup_config_file, merge_dicts

ROOT = Path(__file__).resolve().parents[2]
BASE = ROOT / ".config" / "molecule" / "config.yml"
SCENARIOS = sorted(p.parent.name for p in (ROOT / "molecule").glob("*/molecule.yml"))


def _load(path: Path) -> dict:
    return yaml.safe_load(path.read_text()) or {}


def _leaves(data: dict, prefix: str = ""):
    for key, value in data.items():
        if isinstance(value, dict) and value:
            yield from _leaves(value, f"{prefix}{key}.")
        else:
            yield f"{prefix}{key}", value


def test_molecule_finds_the_base_config(monkeypatch):
    monkeypatch.chdir(ROOT)
    assert Path(lookup_config_file(".config/molecule/config.yml")) == BASE


def test_the_scenarios():
    assert SCENARIOS == ["lab", "vagrant"]


@pytest.mark.parametrize("scenario", SCENARIOS)
def test_a_scenario_does_not_repeat_the_base(scenario):
    base = dict(_leaves(_load(BASE)))
    repeated = [key for key, value in _leaves(_load(ROOT / "molecule" / scenario / "molecule.yml"))
                if key in base and base[key] == value]
    assert repeated == [], f"molecule/{scenario}/molecule.yml repeats .config/molecule/config.yml: {repeated}"


@pytest.mark.parametrize("scenario", SCENARIOS)
def test_the_merged_scenario(scenario):
    """Paths in the base config are relative to each scenario's directory, as in molecule.yml."""
    directory = ROOT / "molecule" / scenario
    config = merge_dicts(_load(BASE), _load(directory / "molecule.yml"))
    sequence = config["scenario"]["test_sequence"]
    assert "idempotence" in sequence and sequence.index("idempotence") > sequence.index("converge")
    assert sequence[0] == sequence[-1] == "destroy"
    provisioner = config["provisioner"]
    assert (directory / provisioner["playbooks"]["converge"]).resolve() == ROOT / "molecule" / "shared" / "converge.yml"
    for name, playbook in provisioner["playbooks"].items():
        assert (directory / playbook).is_file(), f"{scenario}: playbooks.{name}: {playbook} not found"
    assert config["verifier"]["name"] == "testinfra"
    assert (directory / config["verifier"]["directory"]).resolve() == ROOT / "molecule" / "shared" / "tests"
    for name, source in provisioner["inventory"]["links"].items():
        assert (directory / source).exists(), f"{scenario}: inventory.links.{name}: {source} not found"
    assert provisioner["env"]["ANSIBLE_COLLECTIONS_PATH"] == "${MOLECULE_PROJECT_DIRECTORY}/.collections"
