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
    assert VERBS == ["boot", "cut", "exec", "heal", "is_running", "is_up", "kill", "partition", "partitions",
                     "unpartition", "wait_ssh"]


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


def _pairs(argv):
    """ssh's options as (flag, value) pairs: their order does not matter to ssh (no option twice)."""
    pairs = list(zip(argv[1:-1:2], argv[2:-1:2]))
    keys = [v.split("=")[0] if f == "-o" else f for f, v in pairs]
    assert len(keys) == len(set(keys)), f"an option given twice: {argv}"
    return set(pairs)


def test_vagrant_ssh_logs_in_with_the_shared_batch_options(tmp_path):
    from lay7_vagrant_lab import Instance

    lab = VagrantLab({"web1": Instance("web1", "192.168.121.11", 22, "vagrant", "/k/id")}, tmp_path,
                     provider="libvirt", control_dir=Path("/c"))
    argv = lab._ssh_argv("web1")
    assert argv[0] == "ssh" and argv[-1] == "192.168.121.11"
    assert _pairs(argv) == {
        ("-p", "22"), ("-i", "/k/id"), ("-l", "vagrant"),
        ("-o", "BatchMode=yes"), ("-o", "IdentitiesOnly=yes"), ("-o", "LogLevel=ERROR"),
        ("-o", "StrictHostKeyChecking=no"), ("-o", "UserKnownHostsFile=/dev/null"), ("-o", "ConnectTimeout=5"),
        ("-o", "ServerAliveInterval=2"), ("-o", "ServerAliveCountMax=3"), ("-o", "ControlMaster=auto"),
        ("-o", "ControlPath=/c/lay7-vagrant-%C"), ("-o", "ControlPersist=120")}


def _vagrant_lab_with_fakes(tmp_path, monkeypatch, provider="libvirt"):
    """A VagrantLab over three recorded libvirt domains; virsh answers from a table and the
    nft scripts it would load are collected instead of run."""
    import subprocess

    import lay7_vagrant_lab as vl

    names = ("hap1", "hap2", "web1")
    for i, name in enumerate(names):
        record = tmp_path / name / provider / "id"
        record.parent.mkdir(parents=True)
        record.write_text(f"uuid-{name}\n")
    domiflist = {f"uuid-{name}": (
        " Interface   Type      Source          Model    MAC\n"
        "-----------------------------------------------------------\n"
        f" vnet{2 * i}       network   mgmt            virtio   52:54:00:00:00:0{2 * i}\n"
        f" vnet{2 * i + 1}       bridge    lay7-vag0       virtio   52:54:00:00:00:0{2 * i + 1}\n")
        for i, name in enumerate(names)}
    scripts = []

    def fake_run(argv, timeout=60, check=True):
        assert argv[:4] == ["virsh", "-c", "qemu:///system", "domiflist"], argv
        return subprocess.CompletedProcess(argv, 0, domiflist[argv[4]], "")

    def fake_subprocess_run(argv, input=None, **_kw):  # noqa: A002 - subprocess.run's name
        assert argv == ["nft", "-f", "-"], argv
        scripts.append(input)
        return subprocess.CompletedProcess(argv, 0, "", "")

    monkeypatch.setattr(vl, "_run", fake_run)
    monkeypatch.setattr(vl.subprocess, "run", fake_subprocess_run)
    instances = {n: vl.Instance(n, "192.168.121.1", 22, "vagrant", "/k") for n in names}
    return VagrantLab(instances, tmp_path, provider=provider), scripts


def test_vagrant_partition_filters_the_private_ports_of_the_pair_only(tmp_path, monkeypatch):
    lab, scripts = _vagrant_lab_with_fakes(tmp_path, monkeypatch)
    lab.partition("hap1", "hap2")
    lab.partition("hap2", "hap1")  # the same pair: nothing added
    assert lab.partitions() == [("hap1", "hap2")]
    rules = scripts[-1]
    assert rules.startswith("add table bridge lay7_vagrant_partition\ndelete table bridge lay7_vagrant_partition\n")
    # hap1's private NIC is vnet1, hap2's vnet3 (the second NIC; the first is management).
    assert 'iifname "vnet1" oifname "vnet3" drop' in rules and 'iifname "vnet3" oifname "vnet1" drop' in rules
    assert rules.count(" drop") == 2 and "vnet0" not in rules and "vnet2" not in rules
    # The same row gives cut/heal the NIC's MAC.
    assert lab._private_nic("hap1") == "52:54:00:00:00:01"
    lab.unpartition()
    assert lab.partitions() == []
    assert scripts[-1] == "add table bridge lay7_vagrant_partition\ndelete table bridge lay7_vagrant_partition\n"


def test_vagrant_partition_refuses_what_it_cannot_do(tmp_path, monkeypatch):
    import lay7_vagrant_lab as vl

    lab, scripts = _vagrant_lab_with_fakes(tmp_path, monkeypatch)
    with pytest.raises(vl.VagrantLabError, match="two different hosts"):
        lab.partition("hap1", "hap1")
    with pytest.raises(vl.VagrantLabError, match="unknown host 'db1'"):
        lab.partition("hap1", "db1")
    assert scripts == [] and lab.partitions() == []
    vbox, scripts = _vagrant_lab_with_fakes(tmp_path / "vbox", monkeypatch, provider="virtualbox")
    with pytest.raises(vl.VagrantLabError, match="libvirt"):
        vbox.partition("hap1", "hap2")
    assert scripts == []
