"""Where the VIP goes when a failed load balancer recovers.

nopreempt (the inventory's setting, and the role default): the VIP stays where it is, since
every move resets the clients' keep-alive connections on the node it leaves. With preemption
deployed on purpose (site.yml --tags keepalived_vip, rolling, reload), the highest-priority
node takes the VIP back as soon as its HAProxy serves again. The finalizer deploys the
inventory's setting again.
"""

import time

import pytest

from conftest import holder_and_other, journal, run_site, vip_holders, wait_for

FAILOVER_BOUND = 30.0
# Longer than any preemption takes: master-down timer (3 x 0.1 s) plus the HAProxy start.
OBSERVE = 5.0


def test_nopreempt_leaves_the_vip_where_it_went(faults, vip, inventory, lab, nodes):
    if not inventory.nopreempt:
        pytest.skip("the inventory deploys preemption")
    holder, other = holder_and_other(lab, inventory)
    faults.stop_service(holder, "haproxy.service")
    wait_for(lambda: vip_holders(lab, inventory) == [other], FAILOVER_BOUND, f"VIP on {other}")

    recovered = time.time()
    faults.start_service(holder, "haproxy.service")
    wait_for(lambda: "entered state BACKUP" in journal(nodes[holder], recovered, "-t", "lay7-keepalived"),
             FAILOVER_BOUND, f"{holder} back in BACKUP")
    t_end = time.monotonic() + OBSERVE
    while time.monotonic() < t_end:
        assert vip_holders(lab, inventory) == [other], f"the VIP left {other} although nopreempt is set"
        reply = vip.try_get("/")
        assert reply is not None and reply.status == 200, f"VIP request failed: {reply}"
        time.sleep(0.5)
    assert "entered state MASTER" not in journal(nodes[holder], recovered, "-t", "lay7-keepalived")


@pytest.fixture
def preemption(faults, steady):
    """Preemption deployed on both load balancers. Requests `faults` first, so this finalizer
    (the inventory's setting back) runs before the fault finalizer waits for the steady state."""
    steady.wait()
    result = run_site({"keepalived_vip_nopreempt": False}, tags="keepalived_vip", limit="loadbalancers")
    assert result.returncode == 0, f"deploying preemption failed:\n{result.stdout[-3000:]}"
    yield
    restored = run_site({}, tags="keepalived_vip", limit="loadbalancers")
    assert restored.returncode == 0, f"restoring the inventory's keepalived config failed:\n{restored.stdout[-3000:]}"


@pytest.mark.extended
def test_preemption_hands_the_vip_back_to_the_master(preemption, faults, vip, inventory, lab, nodes):
    master, backup = inventory.master, inventory.backup
    # With preemption the highest priority holds the VIP whenever it is eligible.
    wait_for(lambda: vip_holders(lab, inventory) == [master], FAILOVER_BOUND, f"VIP on {master}")
    faults.stop_service(master, "haproxy.service")
    wait_for(lambda: vip_holders(lab, inventory) == [backup], FAILOVER_BOUND, f"VIP on {backup}")

    recovered = time.time()
    faults.start_service(master, "haproxy.service")
    wait_for(lambda: vip_holders(lab, inventory) == [master], OBSERVE, f"VIP back on {master} (preemption)", 0.05)
    wait_for(lambda: "entered state MASTER" in journal(nodes[master], recovered, "-t", "lay7-keepalived"),
             10, f"notify hook line on {master}")
    assert vip.get("/").status == 200
