"""Every role's public interface is written down three times: defaults/main.yml (the
values), meta/argument_specs.yml (types, choices, documentation) and README.md (for
people). These tests keep the three in step, for every role in roles/."""

from __future__ import annotations

import re
import sys
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[2]
ROLES = sorted(p for p in (ROOT / "roles").iterdir() if (p / "tasks" / "main.yml").is_file())


def _load(path: Path) -> dict:
    with path.open(encoding="utf-8") as handle:
        return yaml.safe_load(handle) or {}


def _defaults(role: Path) -> dict:
    return _load(role / "defaults" / "main.yml")


def _spec_options(role: Path) -> dict:
    specs = _load(role / "meta" / "argument_specs.yml")
    return specs["argument_specs"]["main"]["options"]


def test_roles_are_found():
    assert {"apache_web", "haproxy_l7", "keepalived_vip"} <= {r.name for r in ROLES}


@pytest.mark.parametrize("role", ROLES, ids=lambda r: r.name)
def test_defaults_and_argument_specs_have_the_same_keys(role: Path):
    """Every optional input has its default in defaults/main.yml; required ones have none."""
    defaults = set(_defaults(role))
    options = {name for name, opt in _spec_options(role).items() if not opt.get("required")}
    assert not defaults - options, f"{role.name}: in defaults/main.yml but not an optional input of argument_specs: {sorted(defaults - options)}"
    assert not options - defaults, f"{role.name}: in argument_specs but not in defaults/main.yml: {sorted(options - defaults)}"


@pytest.mark.parametrize("role", ROLES, ids=lambda r: r.name)
def test_required_inputs_have_no_default(role: Path):
    """One convention: a required input is `required: true` with no default anywhere, so
    ansible-doc shows it as required and a run missing several names them all at once."""
    for name, opt in _spec_options(role).items():
        if opt.get("required"):
            assert "default" not in opt, f"{role.name}: {name} is required but has a default in argument_specs"
            assert name not in _defaults(role), f"{role.name}: {name} is required but has a default in defaults/main.yml"
        text = " ".join(opt.get("description") if isinstance(opt.get("description"), list) else [str(opt.get("description", ""))])
        assert not text.startswith("Required"), f"{role.name}: {name} says 'Required' in prose; use required: true"


@pytest.mark.parametrize("role", ROLES, ids=lambda r: r.name)
def test_public_variables_carry_the_role_prefix(role: Path):
    bad = [k for k in _defaults(role) if not k.startswith(f"{role.name}_")]
    assert not bad, f"{role.name}: defaults without the '{role.name}_' prefix: {bad}"


@pytest.mark.parametrize("role", ROLES, ids=lambda r: r.name)
def test_internal_variables_are_double_underscored(role: Path):
    path = role / "vars" / "main.yml"
    if not path.is_file():
        pytest.skip(f"{role.name} has no vars/main.yml")
    bad = [k for k in _load(path) if not k.startswith(f"__{role.name}_")]
    assert not bad, f"{role.name}: vars/main.yml keys without the '__{role.name}_' prefix: {bad}"


@pytest.mark.parametrize("role", ROLES, ids=lambda r: r.name)
def test_spec_defaults_match_defaults_file(role: Path):
    """A default documented in argument_specs must be the value defaults/main.yml sets."""
    defaults = _defaults(role)
    wrong = {
        name: (opt["default"], defaults.get(name))
        for name, opt in _spec_options(role).items()
        if "default" in opt and opt["default"] != defaults.get(name)
        # YAML reads 1 and 1.0 differently; compare numbers as numbers.
        and not (isinstance(opt["default"], (int, float)) and opt["default"] == defaults.get(name))
    }
    assert not wrong, f"{role.name}: argument_specs default != defaults/main.yml (spec, file): {wrong}"


@pytest.mark.parametrize("role", ROLES, ids=lambda r: r.name)
def test_readme_mentions_every_variable(role: Path):
    readme = role / "README.md"
    assert readme.is_file(), f"{role.name}: README.md is missing"
    text = readme.read_text(encoding="utf-8")
    missing = [k for k in _spec_options(role) if not re.search(rf"\b{re.escape(k)}\b", text)]
    assert not missing, f"{role.name}: README.md does not mention {missing}"


@pytest.mark.parametrize("role", ROLES, ids=lambda r: r.name)
def test_readme_variable_table_is_generated_from_argument_specs(role: Path):
    """The README's table is what tools/role_tables.py writes (`make role-docs` updates it)."""
    sys.path.insert(0, str(ROOT / "tools"))
    try:
        import role_tables
    finally:
        sys.path.remove(str(ROOT / "tools"))
    readme = (role / "README.md").read_text(encoding="utf-8")
    assert readme == role_tables.render(role), f"{role.name}: README variable table is out of date; run `make role-docs`"


@pytest.mark.parametrize("role", ROLES, ids=lambda r: r.name)
def test_choice_rules_offer_the_argument_specs_choices(role: Path):
    """A choice is listed in argument_specs (for ansible-doc and validate_argument_spec) and in the
    input-guard rule (for the typed check); the two lists must be the same."""
    rules = _load(role / "vars" / "main.yml").get(f"__{role.name}_input_rules", {})
    for name, opt in _spec_options(role).items():
        rule = rules.get(name) or {}
        spec_choices = {str(c) for c in opt.get("choices") or []}
        rule_choices = {str(c) for c in rule.get("choices") or []} if rule.get("kind") == "choice" else set()
        assert spec_choices == rule_choices or not (spec_choices or rule_choices), \
            f"{role.name}: {name} choices differ: argument_specs {sorted(spec_choices)}, input rule {sorted(rule_choices)}"
