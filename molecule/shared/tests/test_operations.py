"""Day-2 operations through the collection's playbooks, as clients see them through the VIP.

Each operation runs while the open-loop probe sends requests (new-connection and keep-alive
clients) on the paths of the servers it touches; the operation must cost 0 failed requests,
and what HAProxy reports on every load balancer must say the operation really happened (a
drained server gets no new request, a failed update leaves its server drained). The time each
operation took is written to build/operations-timings.json for docs/operations.md.
"""

from __future__ import annotations

import contextlib
import json
import secrets
import threading
import time

import pytest

from conftest import PROBE_INTERVAL, PROBE_TIMEOUT, ROOT, SITE_RUN_BOUND, holder_and_other, inventory_path, journal, run_site, vip_holders
from lab.observe import VRRP_TAG
from lab.probe import Probe
from lab.site import run_playbook, seed_routes
from test_haproxy_stats import _credentials, _get

# The seed routes of each web server: the probe asks for these paths.
PATHS = {"web1": "/", "web2": "/a/ops", "web3": "/b/ops"}
# srv_admin_state bits: drain forced on the server, or inherited by a fallback stand-in that
# tracks it.
DRAIN_BITS = 0x08 | 0x10
WORK_DIR = ROOT / "build" / "operations"


def run_ops(playbook: str, extra: dict, timeout: float = SITE_RUN_BOUND):
    return run_playbook(inventory_path(), f"lay7.ha.{playbook}", extra, timeout=timeout)


def admin_states(node, address: str) -> dict:
    """backend/server -> srv_admin_state of the servers at an address, on one load balancer."""
    out = node.check_output("echo 'show servers state' | socat stdio /run/haproxy/admin.sock")
    states = {}
    for line in out.splitlines():
        fields = line.split()
        if len(fields) > 6 and not line.startswith("#") and fields[4] == address:
            states[f"{fields[1]}/{fields[3]}"] = int(fields[6])
    assert states, f"no server at {address} in HAProxy: {out}"
    return states


@contextlib.contextmanager
def probing(inventory, paths: list[str]):
    """One probe per path, sharing the suite's request rate; yields {path: probe} and, after
    the block (plus a second to settle), {path: result} under "results"."""
    out: dict = {}
    probes = {path: Probe(inventory.vip, 80, path, interval=PROBE_INTERVAL * len(paths), timeout=PROBE_TIMEOUT,
                          max_duration=SITE_RUN_BOUND + 60).start() for path in paths}
    try:
        time.sleep(1.0)
        out["probes"] = probes
        yield out
        time.sleep(1.0)
    finally:
        out["results"] = {path: probe.stop() for path, probe in probes.items()}


def assert_nothing_failed(results: dict) -> None:
    for path, result in results.items():
        for kind in ("new", "keepalive"):
            s = result.summary(kind)
            assert s["requests"] > 0, f"{path} ({kind}): no request was sent"
            assert s["failed"] == 0, f"{path} ({kind}): {s['failed']} failed: {dict(s['errors'])}"


@pytest.fixture(scope="module")
def op_timings():
    data: dict = {}
    yield data
    if data:
        WORK_DIR.mkdir(parents=True, exist_ok=True)
        data["measured_at"] = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
        (ROOT / "build" / "operations-timings.json").write_text(json.dumps(data, indent=2, sort_keys=True) + "\n")


@pytest.fixture
def back_to_ready(inventory, nodes, steady):
    """Whatever a test drained is put back (and the topology is healthy) afterwards."""
    steady.wait()
    yield
    for web in inventory.webservers:
        # Only what a test left drained: each playbook run costs seconds.
        if any(state for lb in inventory.loadbalancers for state in admin_states(nodes[lb], inventory.addresses[web]).values()):
            run_ops("web_drain", {"lay7_web_host": web, "lay7_web_action": "ready"})
    steady.wait()


def test_drain_and_undrain_cost_no_request(inventory, nodes, back_to_ready, op_timings):
    web = "web2"
    address = inventory.addresses[web]
    with probing(inventory, [PATHS[web]]) as run:
        t0 = time.monotonic()
        drained = run_ops("web_drain", {"lay7_web_host": web})
        op_timings["drain_s"] = round(time.monotonic() - t0, 1)
        assert drained.returncode == 0, drained.stdout + drained.stderr
        mark = run["probes"][PATHS[web]].mark("drained")
        for lb in inventory.loadbalancers:
            states = admin_states(nodes[lb], address)
            assert all(state & DRAIN_BITS and not state & ~DRAIN_BITS for state in states.values()), f"{lb}: {states}"
        time.sleep(3.0)  # traffic while drained
        undrain = run["probes"][PATHS[web]].mark("undrain")
        t0 = time.monotonic()
        ready = run_ops("web_drain", {"lay7_web_host": web, "lay7_web_action": "ready"})
        op_timings["undrain_s"] = round(time.monotonic() - t0, 1)
        assert ready.returncode == 0, ready.stdout + ready.stderr
        back = run["probes"][PATHS[web]].mark("ready")
    for lb in inventory.loadbalancers:
        states = admin_states(nodes[lb], address)
        assert all(state == 0 for state in states.values()), f"{lb}: {states}"
    result = run["results"][PATHS[web]]
    assert_nothing_failed(run["results"])
    while_drained = [r for r in result.records if r.ok and mark + 0.5 <= r.scheduled_s < undrain]
    assert while_drained, "no request was answered while the server was drained"
    assert not [r for r in while_drained if r.served_by == web], f"{web} got requests while drained"
    assert any(r.served_by == web for r in result.records if r.ok and r.scheduled_s > back), f"{web} got nothing back"


def test_rolling_update_costs_no_request(inventory, nodes, back_to_ready, op_timings):
    """The update tasks restart Apache: without the drain that would reset requests."""
    WORK_DIR.mkdir(parents=True, exist_ok=True)
    tasks = WORK_DIR / "restart_apache.yml"
    tasks.write_text(
        "- name: Restart Apache (the update under test)\n"
        "  ansible.builtin.systemd_service:\n    name: apache2\n    state: restarted\n"
    )
    started = {web: int(nodes[web].check_output("systemctl show -p ActiveEnterTimestampMonotonic --value apache2"))
               for web in inventory.webservers}
    with probing(inventory, list(PATHS.values())) as run:
        t0 = time.monotonic()
        updated = run_ops("web_rolling_update", {"lay7_web_update_tasks": str(tasks)})
        op_timings["rolling_update_s"] = round(time.monotonic() - t0, 1)
        assert updated.returncode == 0, updated.stdout + updated.stderr
    assert_nothing_failed(run["results"])
    for web in inventory.webservers:
        now = int(nodes[web].check_output("systemctl show -p ActiveEnterTimestampMonotonic --value apache2"))
        assert now > started[web], f"Apache on {web} was not restarted by the update tasks"
        for lb in inventory.loadbalancers:
            assert set(admin_states(nodes[lb], inventory.addresses[web]).values()) == {0}


@pytest.mark.extended
def test_rolling_update_stops_at_the_first_failure_with_that_server_drained(inventory, nodes, back_to_ready):
    WORK_DIR.mkdir(parents=True, exist_ok=True)
    tasks = WORK_DIR / "fail_on_web2.yml"
    tasks.write_text(
        "- name: Fail the update on web2 (the failure under test)\n"
        "  ansible.builtin.fail:\n    msg: update failed on purpose\n"
        "  when: inventory_hostname == 'web2'\n"
    )
    updated = run_ops("web_rolling_update", {"lay7_web_update_tasks": str(tasks)})
    assert updated.returncode != 0, "a failed update must fail the run"
    assert "update failed on purpose" in updated.stdout
    for lb in inventory.loadbalancers:
        states = {web: admin_states(nodes[lb], inventory.addresses[web]) for web in inventory.webservers}
        assert all(state == 0 for web in ("web1", "web3") for state in states[web].values()), f"{lb}: {states}"
        assert all(state & DRAIN_BITS and not state & ~DRAIN_BITS for state in states["web2"].values()), f"{lb}: {states}"


def test_drain_refuses_a_host_that_is_not_a_web_server(inventory, nodes, back_to_ready):
    refused = run_ops("web_drain", {"lay7_web_host": inventory.master})
    assert refused.returncode != 0 and "lay7_web_host must name a host of the webservers group" in refused.stdout
    for lb in inventory.loadbalancers:
        for web in inventory.webservers:
            assert set(admin_states(nodes[lb], inventory.addresses[web]).values()) == {0}


def test_lb_maintenance_moves_the_vip_only_by_planned_releases(inventory, nodes, lab, steady, op_timings):
    """The VIP holder is maintained (its update restarts HAProxy, which would reset every client
    connection on it): the VIP leaves by a planned release, comes back by another, and the
    clients lose nothing."""
    steady.wait()
    holder, other = holder_and_other(lab, inventory)
    WORK_DIR.mkdir(parents=True, exist_ok=True)
    tasks = WORK_DIR / "restart_haproxy.yml"
    tasks.write_text(
        "- name: Restart HAProxy (the update under test)\n"
        "  ansible.builtin.systemd_service:\n    name: haproxy\n    state: restarted\n"
    )
    since = time.time()
    with probing(inventory, ["/"]) as run:
        t0 = time.monotonic()
        done = run_ops("lb_maintenance", {"lay7_lb_host": holder, "lay7_lb_update_tasks": str(tasks)})
        op_timings["lb_maintenance_s"] = round(time.monotonic() - t0, 1)
        assert done.returncode == 0, done.stdout + done.stderr
    assert_nothing_failed(run["results"])
    assert vip_holders(lab, inventory) == [holder], "the VIP did not come back"
    # A planned release makes its node ineligible (FAULT) and hands the VIP over with a
    # priority-0 advert; a failover is a FAULT without it (HAProxy died, the watchdog failed)
    # or a node taking the VIP without a release. One move away, one back.
    masters = 0
    for node in (holder, other):
        log = journal(nodes[node], since, "-t", "lay7-keepalived", "-t", VRRP_TAG)
        assert log.count("(planned") == 1, f"{node}: expected one planned release:\n{log}"
        assert log.count("Entering FAULT STATE") == 1, f"{node}: a FAULT other than its planned release:\n{log}"
        masters += log.count("Entering MASTER STATE")
    assert masters == 2, f"the VIP moved {masters} times, expected away and back"
    steady.wait()


@pytest.mark.extended
def test_lb_maintenance_refuses_when_no_peer_can_take_the_vip(inventory, nodes, lab, faults):
    holder, other = holder_and_other(lab, inventory)
    faults.stop_service(other, "keepalived")
    refused = run_ops("lb_maintenance", {"lay7_lb_host": holder})
    assert refused.returncode != 0 and "would leave nobody to serve it. Nothing was changed" in refused.stdout
    assert vip_holders(lab, inventory) == [holder]
    assert nodes[holder].service("keepalived").is_running


def haproxy_workers(node, settle: float = 30.0) -> list[tuple[str, str]]:
    """(pid, start time in clock ticks since boot) of every HAProxy worker on a node: a reload
    starts new workers, so an unchanged list proves there was none. Read once only one worker
    is left (bounded): after the previous reload the old one stays until its connections end."""
    deadline = time.monotonic() + settle
    while True:
        out = node.check_output(
            "for p in $(pgrep -P $(systemctl show -p MainPID --value haproxy) haproxy); do "
            "echo $p $(cut -d' ' -f22 /proc/$p/stat); done")
        workers = sorted(tuple(line.split()) for line in out.splitlines() if line.strip())
        if len(workers) == 1 or time.monotonic() > deadline:
            break
        time.sleep(0.5)
    assert workers, f"no HAProxy worker found: {out!r}"
    return workers


@pytest.fixture
def map_form(inventory, steady):
    """The inventory's routes compiled to the map form (deployed with a reload: haproxy.cfg
    changes); the finalizer deploys the inventory's own table again."""
    steady.wait()

    def deploy(routes):
        return run_site({"haproxy_l7_routes": routes, "haproxy_l7_routing_mode": "map"}, tags="haproxy_l7", limit="loadbalancers")

    first = deploy(seed_routes())
    assert first.returncode == 0, first.stdout[-3000:]
    yield deploy
    restored = run_site({}, tags="haproxy_l7", limit="loadbalancers")
    assert restored.returncode == 0, f"restoring the inventory's route table failed:\n{restored.stdout[-3000:]}"
    steady.wait()


@pytest.mark.extended
def test_a_path_route_change_goes_live_without_a_reload(map_form, inventory, nodes, vip, op_timings):
    """/live/ is added (to web3) and /b re-pointed (to web2): map entries only."""
    routes = [dict(r, backend="a_pool") if r["name"] == "b" else r for r in seed_routes()]
    routes.append({"name": "live", "path": "/live", "match": "prefix", "backend": "b_pool"})
    before = {lb: haproxy_workers(nodes[lb]) for lb in inventory.loadbalancers}
    assert vip.get("/live/x").served_by == "web1"
    with probing(inventory, ["/live/x", "/b/x"]) as run:
        t0 = time.monotonic()
        changed = map_form(routes)
        op_timings["live_route_change_s"] = round(time.monotonic() - t0, 1)
    assert changed.returncode == 0, changed.stdout[-3000:]
    assert "RUNNING HANDLER [lay7.ha.haproxy_l7 : Reload haproxy]" not in changed.stdout, "the change reloaded HAProxy"
    # Once per load balancer (site.yml deploys them one at a time).
    assert changed.stdout.count("TASK [lay7.ha.haproxy_l7 : Apply the changed route maps") == len(inventory.loadbalancers)
    assert {lb: haproxy_workers(nodes[lb]) for lb in inventory.loadbalancers} == before, "HAProxy workers changed"
    assert_nothing_failed(run["results"])
    assert vip.get("/live/x").served_by == "web3" and vip.get("/b/x").served_by == "web2"
    for lb in inventory.loadbalancers:
        listing = nodes[lb].check_output("cat /etc/haproxy/maps/lay7_routes_prefix.map")
        assert "/live/ " in listing, f"{lb}: the map file for the next start lacks the new route"


@contextlib.contextmanager
def scraping(addresses: list[str], path: str, creds: dict):
    """Scrape `path` on every load balancer every 0.1 s with creds["now"] (changeable while it
    runs), as Prometheus would; yields the list of (time, address, status) of failed scrapes."""
    failed: list = []
    done = threading.Event()
    count = [0]

    def loop():
        while not done.is_set():
            for address in addresses:
                try:
                    status = _get(address, path, creds["now"], timeout=2.0).status
                except OSError as exc:
                    status = repr(exc)
                count[0] += 1
                if status != 200:
                    failed.append((time.monotonic(), address, status))
            done.wait(0.1)

    thread = threading.Thread(target=loop, daemon=True)
    thread.start()
    try:
        yield failed
    finally:
        done.set()
        thread.join(timeout=10)
        assert count[0] > 10, "the scraper hardly ran"


@pytest.mark.extended
def test_stats_password_rotation_has_no_401_window(inventory, nodes, steady, op_timings):
    """New password with the old one still accepted; scrapers moved; old one removed. Neither
    password appears in the runs' output (with --diff)."""
    steady.wait()
    user, old = _credentials(nodes[inventory.master])
    new = "Rot-" + secrets.token_urlsafe(18)
    addresses = [inventory.addresses[lb] for lb in inventory.loadbalancers]
    metrics = "/metrics"

    def deploy(extra):
        return run_playbook(inventory_path(), str(ROOT / "site.yml"), extra, tags="haproxy_l7",
                            limit="loadbalancers", timeout=SITE_RUN_BOUND, options=("--diff",))

    try:
        creds = {"now": (user, old)}
        with scraping(addresses, metrics, creds) as failed_with_old:
            t0 = time.monotonic()
            both = deploy({"haproxy_l7_stats_password": new, "haproxy_l7_stats_previous_password": old})
            op_timings["rotation_step1_s"] = round(time.monotonic() - t0, 1)
        assert both.returncode == 0, both.stdout[-3000:]
        assert new not in both.stdout + both.stderr and old not in both.stdout + both.stderr, "a password was printed"
        assert failed_with_old == [], f"scrapes with the old password failed during step 1: {failed_with_old[:5]}"
        for address in addresses:
            assert _get(address, metrics, (user, new)).status == 200 and _get(address, metrics, (user, old)).status == 200

        creds["now"] = (user, new)
        with scraping(addresses, metrics, creds) as failed_with_new:
            t0 = time.monotonic()
            only_new = deploy({"haproxy_l7_stats_password": new})
            op_timings["rotation_step2_s"] = round(time.monotonic() - t0, 1)
        assert only_new.returncode == 0, only_new.stdout[-3000:]
        assert new not in only_new.stdout + only_new.stderr, "the password was printed"
        assert failed_with_new == [], f"scrapes with the new password failed during step 2: {failed_with_new[:5]}"
        for address in addresses:
            assert _get(address, metrics, (user, old)).status == 401, "the old password still works"
    finally:
        restored = run_site({}, tags="haproxy_l7", limit="loadbalancers")
        assert restored.returncode == 0, restored.stdout[-3000:]


def lab_backends(inventory, **changes) -> dict:
    """The lab inventory's haproxy_l7_backends with literal addresses, `changes` replacing
    backends' server lists: {backend: [web host, ...]}."""
    group_vars = ROOT / "inventory" / "lab" / "group_vars" / "loadbalancers.yml"
    import yaml  # noqa: PLC0415 - only these tests read the inventory's backends

    backends = yaml.safe_load(group_vars.read_text(encoding="utf-8"))["haproxy_l7_backends"]
    for name, backend in backends.items():
        hosts = changes.get(name, [server["name"] for server in backend["servers"]])
        backend["servers"] = [{"name": host, "address": inventory.addresses[host], "port": 80} for host in hosts]
    return backends


def running_servers(node) -> set[str]:
    out = node.check_output("echo 'show servers state' | socat stdio /run/haproxy/admin.sock")
    return {f"{f[1]}/{f[3]}" for f in (line.split() for line in out.splitlines()) if len(f) > 6 and not f[0].startswith("#")}


@pytest.mark.extended
def test_a_removed_server_is_drained_before_the_reload(inventory, nodes, steady, op_timings):
    steady.wait()
    backends = lab_backends(inventory, spare_pool=["web3"])
    restored = False
    try:
        with probing(inventory, ["/", "/a/x"]) as run:
            t0 = time.monotonic()
            removed = run_site({"haproxy_l7_backends": backends}, tags="haproxy_l7", limit="loadbalancers")
            op_timings["remove_server_s"] = round(time.monotonic() - t0, 1)
        assert removed.returncode == 0, removed.stdout[-3000:]
        assert_nothing_failed(run["results"])
        drains = [line for line in removed.stdout.splitlines() if "=> (item=spare_pool/web2)" in line and line.startswith("changed:")]
        assert len(drains) == len(inventory.loadbalancers), f"not drained on every load balancer first: {drains}"
        for lb in inventory.loadbalancers:
            assert "spare_pool/web2" not in running_servers(nodes[lb])
        # Added back: checked from each load balancer before the reload, then in service.
        with probing(inventory, ["/", "/a/x"]) as run:
            t0 = time.monotonic()
            added = run_site({}, tags="haproxy_l7", limit="loadbalancers")
            op_timings["add_server_s"] = round(time.monotonic() - t0, 1)
        assert added.returncode == 0, added.stdout[-3000:]
        restored = True
        assert_nothing_failed(run["results"])
        checks = [line for line in added.stdout.splitlines() if "(item=spare_pool/web2 (" in line and line.startswith("ok:")]
        assert len(checks) == len(inventory.loadbalancers), f"the added server was not checked first: {checks}"
    finally:
        if not restored:
            again = run_site({}, tags="haproxy_l7", limit="loadbalancers")
            assert again.returncode == 0, again.stdout[-3000:]


@pytest.mark.extended
def test_an_added_server_that_fails_its_check_is_not_added(inventory, nodes, faults):
    """web3 added to a_pool while its Apache is stopped: refused before any reload."""
    faults.stop_service("web3", "apache2")
    backends = lab_backends(inventory, a_pool=["web2", "web3"])
    before = {lb: running_servers(nodes[lb]) for lb in inventory.loadbalancers}
    refused = run_site({"haproxy_l7_backends": backends, "haproxy_l7_added_server_timeout": 3},
                       tags="haproxy_l7", limit="loadbalancers")
    if refused.returncode == 0:  # the bug under test: put the inventory's table back
        run_site({}, tags="haproxy_l7", limit="loadbalancers")
    assert refused.returncode != 0, "a server that fails its health check was added"
    assert "Wait until each added server passes its health check" in refused.stdout
    # Refused before anything was written: nothing to restore.
    assert {lb: running_servers(nodes[lb]) for lb in inventory.loadbalancers} == before
