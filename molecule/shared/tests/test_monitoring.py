"""Monitoring as an operator's Prometheus sees it (docs/monitoring.md).

For this module a Prometheus server runs on the control node (the host's binary, not a service:
lab/prometheus.py), listening on 127.0.0.1 only. It scrapes both load balancers' metrics endpoints
at their own addresses (lay7_node_address) with the stats credentials of the inventory, every
second, evaluates the collection's alert rules every second, and keeps its data in a temporary
directory. Checked through its HTTP API: every server of every backend of the route table UP on
both load balancers; exactly one VIP holder in the metrics, the node that holds the VIP; no alert
on the healthy topology (none fired since Prometheus started, none pending). Then Apache stopped on web3 is seen as web3 DOWN
within a bound, and b_pool, whose only server web3 is, raises Lay7BackendNoServerUp once its
`for:` has passed (a warning: its fallback's servers stand in); with Apache back the server is UP
again and the alert resolves. The `faults` fixture starts Apache again whatever happens. About
40 s on the lab.
"""

from __future__ import annotations

import time
from pathlib import Path

import pytest
import yaml
from conftest import ROOT, holder_and_other, inventory_path, wait_for
from lab.prometheus import RULES, PrometheusServer
from testinfra.utils.ansible_runner import AnsibleRunner

APACHE = "apache2"
WEB = "web3"
# Its backend of one server, and the alert that has to say so.
EMPTIED_BACKEND = "b_pool"
ALERT = "Lay7BackendNoServerUp"
ROLE_DEFAULTS = ROOT / "roles" / "haproxy_l7" / "defaults" / "main.yml"
# A stopped Apache refuses the checks' connections: HAProxy marks the server DOWN after
# haproxy_l7_health_check_fall (2) failed checks, 1 s then 250 ms apart, so 1.25-2 s; Prometheus
# scrapes every second. About 3 s in all: 15 s leaves room for a two-core machine busy with the lab.
SEEN_DOWN_BOUND = 15.0
SEEN_UP_BOUND = 15.0
# After the alert's `for:` (read from the rules): the first scrape and evaluation to see the backend
# empty (up to 2 s after HAProxy did), the rule's state in the API, and the same room as above.
FIRING_MARGIN = 10.0
# The alerts' state follows each evaluation (every second) once its condition is gone.
RESOLVED_BOUND = 10.0


def _wait(predicate, timeout: float, what: str, last: object, interval: float = 0.2) -> float:
    """wait_for, with what was last seen (``last``, which the predicate updates) in its failure."""
    try:
        return wait_for(predicate, timeout, what, interval=interval)
    except AssertionError as exc:
        raise AssertionError(f"{exc}; last seen: {last}") from None


def _for_seconds(alert: str) -> float:
    rules = [rule for group in yaml.safe_load(RULES.read_text())["groups"] for rule in group["rules"]
             if rule.get("alert") == alert]
    units = {"s": 1, "m": 60}
    return max(float(rule["for"][:-1]) * units[rule["for"][-1]] for rule in rules)


@pytest.fixture(scope="module")
def lb_settings(inventory) -> dict:
    """What a scraper needs from the inventory: the stats port, the metrics path, the credentials,
    and the route table's backends with their servers' names."""
    lb_vars = AnsibleRunner(inventory_path()).get_variables(inventory.loadbalancers[0])
    defaults = yaml.safe_load(ROLE_DEFAULTS.read_text())
    # haproxy_l7_stats_password is a lookup of this git-ignored file (inventory/lab/group_vars);
    # resolved the same way, so Molecule's linked inventory finds the same file.
    secret = (Path(inventory_path()) / "group_vars").resolve().parent / ".secrets" / "stats_password"
    return {
        "port": int(lb_vars.get("haproxy_l7_stats_port", defaults["haproxy_l7_stats_port"])),
        "path": lb_vars.get("haproxy_l7_prometheus_path", defaults["haproxy_l7_prometheus_path"]),
        "auth": (lb_vars["haproxy_l7_stats_user"], secret.read_text(encoding="utf-8").split()[0]),
        "servers": {(backend, server["name"]) for backend, spec in lb_vars["haproxy_l7_backends"].items()
                    for server in spec["servers"]},
    }


@pytest.fixture(scope="module")
def prometheus(inventory, lb_settings, tmp_path_factory):
    """The running server and {instance label: load balancer}."""
    instances = {f"{inventory.addresses[lb]}:{lb_settings['port']}": lb for lb in inventory.loadbalancers}
    server = PrometheusServer(list(instances), tmp_path_factory.mktemp("prometheus"), auth=lb_settings["auth"],
                              metrics_path=lb_settings["path"])
    with server:
        health: dict = {}

        def all_scraped() -> bool:
            health.update(server.targets_health())
            return set(health) == set(instances) and set(health.values()) == {"up"}

        _wait(all_scraped, 30, "Prometheus scraping both load balancers", health)
        yield server, instances


def _alerts(server) -> set[tuple]:
    return {(a["labels"]["alertname"], a["labels"].get("proxy", a["labels"].get("server")),
             a["labels"].get("instance", ""), a["labels"]["severity"], a["state"]) for a in server.alerts()}


def _up(server, instances: dict, selector: str) -> dict:
    """{(load balancer, backend, server): 1 or 0}: whether each server matching the selector is UP."""
    return {(instances[labels["instance"]], labels["proxy"], labels["server"]): int(value)
            for labels, value in server.query(f'haproxy_server_status{{state="UP",{selector}}}')}


def test_every_server_is_up_and_one_node_holds_the_vip(prometheus, lb_settings, lab, inventory):
    server, instances = prometheus
    wanted = {(lb, backend, name) for lb in inventory.loadbalancers for backend, name in lb_settings["servers"]}
    not_up: set = set()

    def every_server_up() -> bool:
        seen = _up(server, instances, 'proxy!="lay7_vip"')
        not_up.clear()
        not_up.update(key for key in wanted if seen.get(key) != 1)
        return not not_up

    _wait(every_server_up, 15, "every server UP on both load balancers", not_up)
    holder, other = holder_and_other(lab, inventory)
    vip = {}

    def one_holder() -> bool:
        vip.clear()
        vip.update(_up(server, instances, 'proxy="lay7_vip"'))
        return vip == {(holder, "lay7_vip", inventory.vip): 1, (other, "lay7_vip", inventory.vip): 0}

    _wait(one_holder, 10, f"the VIP check UP on {holder} (the holder) only", vip)


def test_no_alert_on_the_healthy_topology(prometheus, steady):
    server, _instances = prometheus
    steady.wait()
    evaluated = server.evaluations()
    wait_for(lambda: server.evaluations() >= evaluated + 3, 15, "three rule evaluations")
    active: set = set()

    def quiet() -> bool:
        active.clear()
        active.update(_alerts(server))
        return not active

    # None active now (a scrape lost on the busy machine can make one pending for a second) ...
    _wait(quiet, 10, "no alert pending or firing", active)
    # ... and none has fired since Prometheus started (ALERTS has a sample for every evaluation
    # that found an alert active; this module runs for less than ten minutes).
    fired = server.query('max_over_time(ALERTS{alertstate="firing"}[10m])')
    assert fired == [], f"alerts fired on the healthy topology: {[labels for labels, _ in fired]}"


def test_a_stopped_web_server_is_seen_down_and_its_empty_backend_alerts(prometheus, faults, inventory, lb_settings,
                                                                       timings):
    server, instances = prometheus
    backends = sorted(backend for backend, name in lb_settings["servers"] if name == WEB)
    assert EMPTIED_BACKEND in backends, f"{WEB} is not in {EMPTIED_BACKEND}: {sorted(lb_settings['servers'])}"
    assert [name for backend, name in lb_settings["servers"] if backend == EMPTIED_BACKEND] == [WEB]
    web_everywhere = {(lb, backend, WEB) for lb in inventory.loadbalancers for backend in backends}
    seen: dict = {}

    def web_is(state: int) -> bool:
        seen.clear()
        seen.update({key: value for key, value in _up(server, instances, f'server="{WEB}"').items() if key in web_everywhere})
        return seen == dict.fromkeys(web_everywhere, state)

    faults.stop_service(WEB, APACHE)
    t0 = time.monotonic()
    down_s = _wait(lambda: web_is(0), SEEN_DOWN_BOUND, f"{WEB} DOWN in {backends} on both load balancers", seen)
    timings["monitoring_server_down_seen_s"] = round(down_s, 2)
    # Not before its `for:` has passed since then.
    assert not {a for a in _alerts(server) if a[4] == "firing"}, server.alerts()

    for_s = _for_seconds(ALERT)
    firing = {(ALERT, EMPTIED_BACKEND, f"{inventory.addresses[lb]}:{lb_settings['port']}", "warning", "firing")
              for lb in inventory.loadbalancers}
    active: set = set()

    def alert_firing() -> bool:
        active.clear()
        active.update(_alerts(server))
        return firing <= active

    _wait(alert_firing, for_s + FIRING_MARGIN, f"{ALERT} firing for {EMPTIED_BACKEND} on both load balancers", active,
          interval=0.5)
    timings["monitoring_backend_alert_firing_s"] = round(time.monotonic() - t0, 2)
    # Only that: spare_pool keeps web2, and b_pool's fallback stands in (no critical alert).
    assert {alert for alert in active if alert[4] == "firing"} == firing, sorted(active)
    assert not {alert for alert in active if alert[3] == "critical"}, sorted(active)

    faults.start_service(WEB, APACHE)
    _wait(lambda: web_is(1), SEEN_UP_BOUND, f"{WEB} UP again in {backends} on both load balancers", seen)

    def resolved() -> bool:
        active.clear()
        active.update(alert for alert in _alerts(server) if alert[1] == EMPTIED_BACKEND)
        return not active

    _wait(resolved, RESOLVED_BOUND, f"{ALERT} for {EMPTIED_BACKEND} resolved", active)
