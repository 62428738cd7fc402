"""The lab's error paths: each says what failed and what to do (no hosts booted)."""

import os
import json
import shutil
import subprocess

import pytest
import yaml

from lab import Lab, LabError, cli, core, image, network, procfs, ssh, topology

needs_root = pytest.mark.skipif(os.geteuid() != 0, reason="needs root")


def test_not_root(tmp_topology, monkeypatch):
    monkeypatch.setattr(os, "geteuid", lambda: 1000)
    lab = Lab(tmp_topology)
    with pytest.raises(LabError, match="the lab needs root"):
        lab.up()
    with pytest.raises(LabError, match="needs root"):
        lab.down()


def test_missing_program(tmp_topology, monkeypatch):
    monkeypatch.setattr(os, "geteuid", lambda: 0)
    real = shutil.which
    monkeypatch.setattr(shutil, "which", lambda b: None if b == "systemd-nspawn" else real(b))
    with pytest.raises(LabError, match=r"missing programs: systemd-nspawn; install them with `make deps`"):
        Lab(tmp_topology).preflight()


def test_missing_overlayfs(tmp_topology, monkeypatch):
    monkeypatch.setattr(os, "geteuid", lambda: 0)
    monkeypatch.setattr(procfs, "read", lambda p: "nodev\tproc\n" if p == "/proc/filesystems" else None)
    monkeypatch.setattr(core, "run", lambda *a, **k: None)
    with pytest.raises(LabError, match="kernel without overlayfs"):
        Lab(tmp_topology).preflight()


@needs_root
def test_up_refuses_when_a_lab_exists(tmp_topology):
    lab = Lab(tmp_topology)
    tmp_topology.state_dir.mkdir(parents=True)
    lab.state_file.write_text("{}")
    with pytest.raises(LabError, match=r"a lab is already up .* run `python -m lab down` first"):
        lab.up()


@needs_root
def test_up_refuses_while_another_link_holds_the_subnet(tmp_topology, monkeypatch):
    """The Vagrant scenario's bridge uses the lab's addresses: the lab must not boot beside it."""
    monkeypatch.setattr(network, "run", lambda argv, **k: subprocess.CompletedProcess(argv, 0, stdout=json.dumps(
        [{"ifname": "lay7-vag0", "addr_info": [{"local": "192.168.56.1", "prefixlen": 24}]}]), stderr=""))
    monkeypatch.setattr(core, "ensure_image", lambda *a, **k: pytest.fail("went on to build the image"))
    with pytest.raises(LabError, match=r"subnet 192\.168\.56\.0/24 is already in use .*lay7-vag0 \(192\.168\.56\.1/24\)"):
        Lab(tmp_topology).up()


@needs_root
def test_image_build_failure_shows_debootstrap_log(raw_topology, raw_inventory, tmp_path):
    from lab import topology

    raw_topology["paths"] = {k: str(tmp_path / k) for k in ("state", "run", "cache")}
    raw_topology["image"]["mirror"] = f"file://{tmp_path}/no-such-mirror"
    topo = topology.parse(raw_topology, *raw_inventory)
    with pytest.raises(LabError) as err:
        image.ensure_image(topo, log=lambda m: None)
    msg = str(err.value)
    assert "base image build failed: debootstrap exited" in msg
    assert "--- debootstrap log tail ---" in msg
    assert "no-such-mirror" in msg
    assert not list((tmp_path / "cache").glob("base-*")), "a failed build must not look cached"


def test_ssh_timeout_shows_console_tail(tmp_topology, monkeypatch):
    lab = Lab(tmp_topology)
    tmp_topology.run_dir.mkdir(parents=True)
    lab.console_log("web1").write_text("booting\n[FAILED] Failed to start ssh.service\n")
    monkeypatch.setattr(Lab, "is_running", lambda self, name: True)
    monkeypatch.setattr(ssh, "port_open", lambda h, port, timeout=0.5: False)
    with pytest.raises(LabError, match=r"web1 \(192.168.56.11\) did not answer SSH within 1s") as err:
        lab.wait_ssh("web1", timeout=1)
    assert "Failed to start ssh.service" in str(err.value)


def test_host_dying_during_boot_shows_console_tail(tmp_topology, monkeypatch):
    lab = Lab(tmp_topology)
    tmp_topology.run_dir.mkdir(parents=True)
    lab.console_log("hap2").write_text("Kernel panic - not syncing\n")
    monkeypatch.setattr(Lab, "is_running", lambda self, name: False)
    with pytest.raises(LabError, match="hap2 stopped while booting") as err:
        lab.wait_ssh("hap2", timeout=5)
    assert "Kernel panic" in str(err.value)


def test_cli_reports_errors_without_traceback(capsys):
    assert cli.main(["exec", "web9", "--", "true"]) == 1
    assert "lab: error: unknown host 'web9'" in capsys.readouterr().err
    assert cli.main(["exec", "web1"]) == 1
    assert "exec: give a command" in capsys.readouterr().err


def test_cli_bad_topology(tmp_path, capsys):
    bad = tmp_path / "t.yml"
    bad.write_text("subnet: 10.0.0.0/8\n")
    assert cli.main(["--topology", str(bad), "status"]) == 1
    assert "lab: error: inventory: required" in capsys.readouterr().err
    # The inventory the file names is read, and its VIP and addresses checked against the subnet.
    data = yaml.safe_load(topology.DEFAULT_TOPOLOGY.read_text())
    data.update(subnet="10.0.0.0/8", control="10.0.0.1",
                inventory=str(topology.inventory_dir(data, topology.DEFAULT_TOPOLOGY)))
    bad.write_text(yaml.safe_dump(data))
    assert cli.main(["--topology", str(bad), "status"]) == 1
    assert ("lab: error: group_vars/loadbalancers.yml: keepalived_vip_address: 192.168.56.100 is not a host "
            "address in subnet 10.0.0.0/8") in capsys.readouterr().err



def test_cli_instances_for_molecule(capsys):
    import json

    assert cli.main(["instances"]) == 0
    data = json.loads(capsys.readouterr().out)
    assert {d["instance"] for d in data} == {"hap1", "hap2", "web1", "web2", "web3"}
    web1 = next(d for d in data if d["instance"] == "web1")
    assert web1 == {"instance": "web1", "address": "192.168.56.11", "user": "vagrant", "port": 22,
                    "identity_file": "/var/lib/lay7-lab/id_ed25519"}
