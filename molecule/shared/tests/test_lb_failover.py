"""Issue 4, item 6: load balancer failures, measured from the control node.

Each test starts from the healthy state (VIP on the master, every route right), injects
one fault through the `faults` fixture, which restores everything afterwards, and
records what a client saw in `timings` (written to build/failover-timings.json and
summarised in docs/failover.md). Waits are bounded; the numbers are never asserted.
"""

import time

from conftest import journal, vip_holders, wait_for

FAILOVER_BOUND = 30.0   # seconds; generous bounds, the measured values are in docs/failover.md
BOOT_BOUND = 120.0


def _probe_until(vip, predicate, bound, what):
    """Send GET / every 50 ms until predicate(); return (seconds, failed requests, first good after)."""
    t0 = time.monotonic()
    failed = 0
    last_fail = None
    while True:
        reply = vip.try_get("/", timeout=0.5)
        now = time.monotonic() - t0
        if reply is None or reply.status != 200:
            failed += 1
            last_fail = now
        if predicate():
            return now, failed, last_fail
        assert now < bound, f"{what}: not reached within {bound:.0f} s"
        time.sleep(0.05)


def test_haproxy_stopped_on_master_moves_vip(faults, vip, inventory, lab, nodes, timings):
    master, backup = inventory.master, inventory.backup
    t_wall = time.time()
    faults.stop_service(master, "haproxy.service")
    took, failed, last_fail = _probe_until(
        vip, lambda: vip_holders(lab, inventory) == [backup] and vip.try_get("/") is not None,
        FAILOVER_BOUND, f"VIP on {backup} after haproxy stopped on {master}")
    timings["haproxy_stop_vip_moved_s"] = round(took, 2)
    timings["haproxy_stop_failed_requests"] = failed
    timings["haproxy_stop_last_failure_s"] = round(last_fail or 0, 2)
    reply = vip.get("/")
    assert reply.status == 200 and reply.served_by == "web1"

    # Transitions reach the journal: keepalived's own lines and the notify hook's.
    wait_for(lambda: "entered state MASTER" in journal(nodes[backup], t_wall, "-t", "lay7-keepalived"),
             10, f"notify hook line on {backup}")
    assert "entered state FAULT" in journal(nodes[master], t_wall, "-t", "lay7-keepalived")
    assert "Entering MASTER STATE" in journal(nodes[backup], t_wall, "-u", "keepalived")

    # HAProxy back: with preemption the VIP returns to the master once its tracker rises.
    faults.start_service(master, "haproxy.service")
    want = backup if inventory.nopreempt else master
    took, failed, _last = _probe_until(
        vip, lambda: vip_holders(lab, inventory) == [want], FAILOVER_BOUND, f"VIP back on {want}")
    timings["haproxy_start_vip_returned_s"] = round(took, 2)
    timings["haproxy_start_failed_requests"] = failed
    assert vip.get("/").status == 200


def test_master_powered_off_backup_holds_vip(faults, vip, inventory, lab, timings):
    master, backup = inventory.master, inventory.backup
    t0 = time.monotonic()
    faults.kill(master)
    killed = time.monotonic() - t0
    took, failed, last_fail = _probe_until(
        vip, lambda: vip_holders(lab, inventory) == [backup] and vip.try_get("/") is not None,
        FAILOVER_BOUND, f"VIP on {backup} after {master} powered off")
    timings["power_off_kill_call_s"] = round(killed, 2)
    timings["power_off_vip_moved_s"] = round(killed + took, 2)
    timings["power_off_failed_requests"] = failed
    timings["power_off_last_failure_s"] = round(killed + (last_fail or 0), 2)
    for _attempt in range(5):
        reply = vip.get("/")
        assert reply.status == 200 and reply.served_by == "web1"

    t0 = time.monotonic()
    faults.boot(master)
    booted = time.monotonic() - t0
    want = backup if inventory.nopreempt else master
    took = wait_for(lambda: vip_holders(lab, inventory) == [want], BOOT_BOUND, f"VIP on {want} after boot", 0.2)
    timings["power_on_boot_s"] = round(booted, 2)
    timings["power_on_vip_returned_after_ssh_s"] = round(took, 2)
    assert vip.get("/").status == 200


def test_both_load_balancers_down_then_restored(faults, vip, inventory, lab, timings):
    for lb in inventory.loadbalancers:
        faults.kill(lb)
    wait_for(lambda: not vip_holders(lab, inventory), 10, "no host holds the VIP")
    assert vip.try_get("/", timeout=2.0) is None, "a request through the VIP succeeded with both load balancers off"

    t0 = time.monotonic()
    for lb in inventory.loadbalancers:
        faults.boot(lb, wait=False)
    took = wait_for(lambda: vip.try_get("/", timeout=0.5) is not None, BOOT_BOUND, "service back through the VIP", 0.2)
    timings["both_restored_service_back_s"] = round(took, 2)
    # After both return, the election puts the VIP on the highest priority.
    if not inventory.nopreempt:
        wait_for(lambda: vip_holders(lab, inventory) == [inventory.master], FAILOVER_BOUND, "VIP on the master", 0.2)
    assert vip.get("/").status == 200
