"""site.yml rolls a change out to the load balancers one at a time, the VIP holder last,
and a keepalived reload keeps the VRRP state: the VIP never moves during a deploy.

A harmless real change (the watchdog's timeout, one second longer than the inventory's)
is deployed with --tags keepalived_vip while the VIP holder is sampled every 0.2 s; the finalizer deploys the inventory's value again.
Sampling alone could miss a short flap (and a sample can fail on a slow VM), so the VRRP
state transitions keepalived's notify script journals during the run are checked too.
"""

from __future__ import annotations

import re
import threading
import time

import pytest
import yaml
from testinfra.utils.ansible_runner import AnsibleRunner

from conftest import ROOT, inventory_path, journal, run_site, vip_holders
WRITE_TASK = re.compile(r"TASK \[lay7\.ha\.keepalived_vip : Write keepalived\.conf[^\]]*\][^\n]*\n(?:[^\n]*\n)*?changed: \[(\w+)\]")
RELOAD = re.compile(r"RUNNING HANDLER \[lay7\.ha\.keepalived_vip : Reload keepalived\][^\n]*\n(?:[^\n]*\n)*?changed: \[(\w+)\]")
MIN_SAMPLES = 5


def _longer_timeout(inventory) -> dict:
    """The watchdog timeout the inventory deploys (else the role default), plus one second:
    a real change that only makes the watchdog more lenient."""
    hostvars = AnsibleRunner(inventory_path()).get_variables(inventory.master)
    defaults = yaml.safe_load((ROOT / "roles" / "keepalived_vip" / "defaults" / "main.yml").read_text())
    current = int(hostvars.get("keepalived_vip_watchdog_timeout", defaults["keepalived_vip_watchdog_timeout"]))
    return {"keepalived_vip_watchdog_timeout": current + 1}


@pytest.fixture
def changed_run(lab, inventory, steady):
    change = _longer_timeout(inventory)
    steady.wait()
    holder = vip_holders(lab, inventory)[0]
    seen: list[list[str]] = []
    errors: list[str] = []
    stop = threading.Event()

    def sample():
        while not stop.is_set():
            try:
                seen.append(vip_holders(lab, inventory))
            except Exception as exc:  # noqa: BLE001 - a failed probe is not a VIP move; reported below
                errors.append(repr(exc))
            stop.wait(0.2)

    started = time.time()
    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()
    try:
        result = run_site(change, tags="keepalived_vip", limit="loadbalancers")
    finally:
        stop.set()
        sampler.join(timeout=15)
    yield result, seen, errors, started, holder
    restored = run_site({}, tags="keepalived_vip", limit="loadbalancers")
    assert restored.returncode == 0, f"restoring the inventory's keepalived config failed:\n{restored.stdout[-3000:]}"
    steady.wait()


@pytest.mark.extended
def test_change_reaches_backup_first_and_the_vip_stays(changed_run, inventory, nodes):
    result, seen, errors, started, holder = changed_run
    other = next(lb for lb in inventory.loadbalancers if lb != holder)
    out = result.stdout
    assert result.returncode == 0, out[-3000:]
    writes = [(m.start(), m.group(1)) for m in WRITE_TASK.finditer(out)]
    reloads = [(m.start(), m.group(1)) for m in RELOAD.finditer(out)]
    assert [host for _pos, host in writes] == [other, holder], f"keepalived.conf written in order {writes}"
    assert [host for _pos, host in reloads] == [other, holder], f"reloads in order {reloads}"
    # The backup is reloaded before the holder's config is even written.
    assert reloads[0][0] < writes[1][0]
    # keepalived's own lines (tracker results, state changes) explain any failure below.
    log = {lb: journal(nodes[lb], started, "-t", "Keepalived_vrrp") for lb in inventory.loadbalancers}
    assert len(seen) >= MIN_SAMPLES, f"only {len(seen)} VIP samples during the rollout; probe errors: {errors[-3:]}"
    assert all(h == [holder] for h in seen), (
        f"the VIP left {holder} during the rollout: {sorted({tuple(h) for h in seen})}; "
        f"samples {seen}; keepalived: {log}")
    # No VRRP transition that would move the VIP (the notify script journals each one).
    transitions = {lb: [line for line in journal(nodes[lb], started, "-t", "lay7-keepalived").splitlines()
                        if "entered state" in line]
                   for lb in inventory.loadbalancers}
    assert not [t for t in transitions[holder] if "entered state MASTER" not in t], (transitions, log)
    assert not [t for t in transitions[other] if "entered state MASTER" in t], (transitions, log)
