"""Both substrates offer the verbs of lab.substrate.Substrate with the same parameters (no hosts)."""

import inspect
import sys
from pathlib import Path

import pytest

from lab import Lab
from lab.substrate import Substrate

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO / "vagrant"))  # not `import vagrant`: python-vagrant owns that name
from lay7_vagrant_lab import VagrantLab  # noqa: E402

VERBS = sorted(n for n, v in vars(Substrate).items() if inspect.isfunction(v) and not n.startswith("_"))


def test_the_protocol_names_the_verbs_the_verify_suite_uses():
    assert VERBS == ["boot", "cut", "exec", "heal", "is_running", "is_up", "kill", "wait_ssh"]


@pytest.mark.parametrize("cls", [Lab, VagrantLab], ids=lambda c: c.__name__)
@pytest.mark.parametrize("verb", VERBS)
def test_substrate_offers_the_verb_with_the_protocols_signature(cls, verb):
    want = inspect.signature(getattr(Substrate, verb))
    got = inspect.signature(getattr(cls, verb))
    # Same names, kinds, order and annotations (strings: both modules postpone annotations).
    assert [(p.name, p.kind, p.annotation) for p in got.parameters.values()] == \
        [(p.name, p.kind, p.annotation) for p in want.parameters.values()], f"{cls.__name__}.{verb}"
    assert got.return_annotation == want.return_annotation, f"{cls.__name__}.{verb}"
    for p in want.parameters.values():
        have = got.parameters[p.name].default
        if p.default is inspect.Parameter.empty:
            assert have is inspect.Parameter.empty, f"{cls.__name__}.{verb}: {p.name} must be required"
        elif p.default is Ellipsis:  # the substrate chooses the value
            assert have is not inspect.Parameter.empty, f"{cls.__name__}.{verb}: {p.name} needs a default"
        else:
            assert have == p.default, f"{cls.__name__}.{verb}: {p.name} defaults to {have!r}, not {p.default!r}"


@pytest.mark.parametrize("cls", [Lab, VagrantLab], ids=lambda c: c.__name__)
def test_an_instance_is_a_substrate(cls):
    assert isinstance(object.__new__(cls), Substrate)
