"""keepalived_vip_nopreempt: a recovered master does not take the VIP back.

With preemption (the inventory's setting) hap1 takes the VIP back about 3.6 s after its
tracker rises and it enters BACKUP (test_lb_failover.py measures it). With nopreempt the
same recovery must leave the VIP where it is. The change is deployed the real way
(site.yml --tags keepalived_vip, rolling, reload); the finalizer deploys the inventory's
setting again, which also hands the VIP back to the master.
"""

import time

import pytest

from conftest import journal, run_site, vip_holders, wait_for

FAILOVER_BOUND = 30.0
# Longer than the master-down timer (3 adverts + skew = 3.6 s) a preempting master waits.
OBSERVE = 10.0


@pytest.fixture
def nopreempt(faults, steady):
    """nopreempt deployed on both load balancers. Requests `faults` first, so this finalizer
    (preemption back) runs before the fault finalizer waits for the VIP on the master."""
    steady.wait()
    result = run_site({"keepalived_vip_nopreempt": True}, tags="keepalived_vip", limit="loadbalancers")
    assert result.returncode == 0, f"deploying nopreempt failed:\n{result.stdout[-3000:]}"
    yield
    restored = run_site({}, tags="keepalived_vip", limit="loadbalancers")
    assert restored.returncode == 0, f"restoring the inventory's keepalived config failed:\n{restored.stdout[-3000:]}"


def test_nopreempt_leaves_the_vip_on_the_backup_after_recovery(nopreempt, faults, vip, inventory, lab, nodes):
    master, backup = inventory.master, inventory.backup
    assert vip_holders(lab, inventory) == [master], "the nopreempt deploy moved the VIP"

    faults.stop_service(master, "haproxy.service")
    wait_for(lambda: vip_holders(lab, inventory) == [backup], FAILOVER_BOUND, f"VIP on {backup}")

    recovered = time.time()
    faults.start_service(master, "haproxy.service")
    # The tracker rises: the master leaves FAULT for BACKUP (the notify hook journals it).
    wait_for(lambda: "entered state BACKUP" in journal(nodes[master], recovered, "-t", "lay7-keepalived"),
             FAILOVER_BOUND, f"{master} back in BACKUP")
    # With preemption it would now take the VIP back within 3.6 s; with nopreempt it must not.
    t_end = time.monotonic() + OBSERVE
    while time.monotonic() < t_end:
        assert vip_holders(lab, inventory) == [backup], f"the VIP left {backup} although nopreempt is set"
        reply = vip.try_get("/")
        assert reply is not None and reply.status == 200, f"VIP request failed: {reply}"
        time.sleep(0.5)
    assert "entered state MASTER" not in journal(nodes[master], recovered, "-t", "lay7-keepalived")
