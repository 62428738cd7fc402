"""vagrant/e2e.py, `make vagrant-e2e`'s checks and report: the parts that need no VM (the log
parser, the results file, the VIP reading over fake SSH)."""

import inspect
import json
import subprocess
import sys
from pathlib import Path

import pytest

from lab.substrate import Substrate

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO / "vagrant"))  # not `import vagrant`: python-vagrant owns that name
import e2e  # noqa: E402

# vagrant/e2e.sh's stamped log as `vagrant up` of the root Vagrantfile writes it (vagrant-libvirt,
# one machine after another; shortened to three machines).
LOG = """\
[   40s] ### vagrant up --no-color
[   42s] Bringing machine 'hap1' up with 'libvirt' provider...
[   42s] Bringing machine 'hap2' up with 'libvirt' provider...
[   42s] Bringing machine 'web3' up with 'libvirt' provider...
[   43s] ==> web3: a stray early line
[   44s] ==> hap1: Checking if box 'lay7/bookworm-0123456789ab' version '0' is up to date...
[   45s] ==> hap1: Creating image (snapshot of base box volume).
[   99s] ==> hap1: Waiting for machine to boot. This may take a few minutes...
[  100s]     hap1: SSH address: 192.168.121.10:22
[  130s] ==> hap1: Machine booted and ready!
[  140s] ==> hap1: Running provisioner: ifup-dropin (shell)...
[  141s]     hap1: Running: inline script
[  150s] ==> hap2: Checking if box 'lay7/bookworm-0123456789ab' version '0' is up to date...
[  230s] ==> hap2: Machine booted and ready!
[  240s] ==> web3: Checking if box 'lay7/bookworm-0123456789ab' version '0' is up to date...
[  320s] ==> web3: Machine booted and ready!
[  330s] ==> web3: Running provisioner: ansible...
[  331s]     web3: Running ansible-playbook...
[  332s] PLAY [Check every host's inputs before changing anything] ******
[ 1200s] PLAY RECAP *********************************************************************
[ 1200s] hap1                       : ok=61   changed=27   unreachable=0    failed=0    skipped=14   rescued=0    ignored=0
[ 1200s] web3                       : ok=30   changed=12   unreachable=0    failed=1    skipped=3    rescued=0    ignored=0
[ 1300s] ### vagrant destroy -f --no-color
[ 1301s] ==> web3: Removing domain...
"""


def test_sections_cut_the_log_at_each_command():
    found = e2e.sections(LOG)
    assert [command for command, _ in found] == ["vagrant up --no-color", "vagrant destroy -f --no-color"]
    assert found[1][1] == [(1301, "==> web3: Removing domain...")]


def test_vagrant_up_times_each_machine_and_site_yml():
    up = e2e.vagrant_up(e2e.sections(LOG)[0][1], end=1210)
    assert up["providers"] == {"hap1": "libvirt", "hap2": "libvirt", "web3": "libvirt"}
    assert up["machines"] == {
        "hap1": {"start_s": 44, "boot_s": 86, "up_s": 106},
        "hap2": {"start_s": 150, "boot_s": 80, "up_s": 90},
        "web3": {"start_s": 240, "boot_s": 80, "up_s": 90},  # the stray line at 43 s is not its run
    }
    assert up["five_vms_s"] == 330 - 44
    assert up["site_yml_s"] == 1210 - 330
    assert up["recap"]["hap1"] == {"ok": 61, "changed": 27, "unreachable": 0, "failed": 0, "skipped": 14,
                                   "rescued": 0, "ignored": 0}
    assert up["recap"]["web3"]["failed"] == 1


def test_vagrant_up_of_a_run_cut_before_ansible():
    lines = [(s, line) for s, line in e2e.sections(LOG)[0][1] if s < 300]
    up = e2e.vagrant_up(lines, end=300)
    assert up["site_yml_s"] is None and up["five_vms_s"] is None
    assert up["machines"]["hap2"]["up_s"] == 90 and "web3" not in up["machines"]


def test_report_writes_the_results_file(tmp_path, capsys):
    log, checks, out = tmp_path / "run.log", tmp_path / "checks.json", tmp_path / "results.json"
    log.write_text(LOG)
    checks.write_text(json.dumps({"routing": True, "https": True, "vip": True, "vip_holders": ["hap1"]}))
    steps = ["packages", "0", "1", "box", "1", "30", "vagrant up", "40", "1170", "checks", "1210", "60"]
    assert e2e.main(["report", "--out", str(out), "--log", str(log), "--checks", str(checks), "--exit", "0",
                     "--started", "2026-11-29T01:00:00+00:00", "--total", "1400", "--box", "lay7/bookworm-x",
                     "--steps", *steps]) == 0
    result = json.loads(out.read_text())
    assert result["passed"] is True and result["failed_step"] is None
    assert result["total"] == "23 min 20 s"
    assert [s["step"] for s in result["steps"]] == ["packages", "box", "vagrant up", "checks"]
    assert result["vagrant_up"]["site_yml_s"] == 40 + 1170 - 330
    assert result["checks"]["vip_holders"] == ["hap1"]
    printed = capsys.readouterr().out
    assert "vagrant-e2e: passed in 23 min 20 s" in printed and "then site.yml 14 min 40 s" in printed
    assert "hap1: SSH after 1 min 26 s, done after 1 min 46 s" in printed


def test_report_of_a_failed_run_without_log_or_checks(tmp_path):
    out = tmp_path / "results.json"
    assert e2e.main(["report", "--out", str(out), "--log", str(tmp_path / "none.log"), "--checks",
                     str(tmp_path / "none.json"), "--exit", "1", "--failed-step", "box", "--started", "x",
                     "--total", "5", "--steps", "packages", "0", "1"]) == 0
    result = json.loads(out.read_text())
    assert result["passed"] is False and result["failed_step"] == "box" and result["checks"] is None


def test_e2e_sh_names_the_step_the_report_reads():
    assert 'step "vagrant up"' in (REPO / "vagrant" / "e2e.sh").read_text()


@pytest.mark.parametrize("verb", ["exec", "is_running"])
def test_the_ssh_adapter_offers_observes_verbs_with_the_protocols_signature(verb):
    want = inspect.signature(getattr(Substrate, verb))
    got = inspect.signature(getattr(e2e.VagrantSsh, verb))
    assert [(p.name, p.kind, p.annotation) for p in got.parameters.values()] == \
        [(p.name, p.kind, p.annotation) for p in want.parameters.values()]


def _fake_ssh(holder: str, states: dict[str, str]):
    def fake_exec(self, name, argv, check=False, timeout=60, input=None):  # noqa: A002
        if argv[:2] == ["ip", "-j"]:
            addrs = [{"local": f"192.168.56.2{name[-1]}"}] + ([{"local": "192.168.56.100"}] if name == holder else [])
            out = json.dumps([{"ifname": "eth1", "addr_info": addrs}])
        elif "--grep" in argv:
            out = f"(VI_1) Entering {states[name]} STATE\n"
        else:
            out = "lay7-keepalived: VI_1 entered state MASTER\n" if name == holder else ""
        return subprocess.CompletedProcess(argv, 0, out, "")
    return fake_exec


@pytest.mark.parametrize(("holder", "states", "ok"), [
    ("hap1", {"hap1": "MASTER", "hap2": "BACKUP"}, True),
    ("hap1", {"hap1": "MASTER", "hap2": "MASTER"}, False),   # the other one thinks it holds it too
    ("nobody", {"hap1": "FAULT", "hap2": "BACKUP"}, False),
])
def test_prove_vip_wants_one_holder_and_the_other_backup(monkeypatch, tmp_path, holder, states, ok):
    monkeypatch.setattr(e2e, "SSH_CONFIG", tmp_path / "ssh_config")
    monkeypatch.setattr(e2e, "VIP_SETTLE_BOUND", 0.0)
    monkeypatch.setattr(e2e.time, "sleep", lambda seconds: None)
    monkeypatch.setattr(e2e.subprocess, "run",
                        lambda argv, **kw: subprocess.CompletedProcess(argv, 0, "Host hap1\n", ""))
    monkeypatch.setattr(e2e.VagrantSsh, "exec", _fake_ssh(holder, states))
    got, facts = e2e.prove_vip(["hap1", "hap2"], "192.168.56.100", "eth1")
    assert got is ok
    assert facts["vrrp_states"] == states
    assert facts["vip_holders"] == ([] if holder == "nobody" else [holder])
    assert (tmp_path / "ssh_config").read_text() == "Host hap1\n"


def test_prove_vip_reads_again_while_the_holder_settles(monkeypatch, tmp_path):
    monkeypatch.setattr(e2e, "SSH_CONFIG", tmp_path / "ssh_config")
    monkeypatch.setattr(e2e.time, "sleep", lambda seconds: None)
    monkeypatch.setattr(e2e.subprocess, "run", lambda argv, **kw: subprocess.CompletedProcess(argv, 0, "", ""))
    settling = _fake_ssh("hap2", {"hap1": "BACKUP", "hap2": "BACKUP"})
    settled = _fake_ssh("hap2", {"hap1": "BACKUP", "hap2": "MASTER"})
    readings = []

    def fake_exec(self, name, argv, check=False, timeout=60, input=None):  # noqa: A002
        readings.append(name)
        return (settling if len(readings) <= 4 else settled)(self, name, argv, check, timeout, input)

    monkeypatch.setattr(e2e.VagrantSsh, "exec", fake_exec)
    got, facts = e2e.prove_vip(["hap1", "hap2"], "192.168.56.100", "eth1")
    assert got is True and facts["vrrp_states"] == {"hap1": "BACKUP", "hap2": "MASTER"}
    assert facts["master_transitions_since_boot"] == 1
