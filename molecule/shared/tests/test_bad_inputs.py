"""Invalid and hostile inventories fail in preflight, naming the field (never showing a
secret), and no host's running configuration changes.

Each case runs the real site playbook against the deployed lab with one bad value
given as extra vars (the highest precedence, exactly as if the inventory held it).
Before the first and after every case the managed files, the firewall table and the
service processes of every host are fingerprinted; the journal must show no reload.
"""

from __future__ import annotations

import hashlib
import time
from concurrent.futures import ThreadPoolExecutor

import pytest

from conftest import VERIFY_DEPTH, run_site

PLAYBOOK_BOUND = 300  # seconds per run; a preflight failure takes ~20 s alone
PARALLEL_RUNS = 3

CASES = {
    "unknown_backend": (
        {"haproxy_l7_routes": [{"name": "a", "path": "/a", "backend": "nope_pool"}]},
        ["backend 'nope_pool'", "route 'a'"]),
    "shadowed_route": (
        {"haproxy_l7_routes": [{"name": "a", "path": "/a", "backend": "a_pool"},
                               {"name": "a_again", "path": "/a/", "backend": "b_pool"}]},
        ["'a_again'"]),
    "typo_in_route_key": (
        {"haproxy_l7_routes": [{"name": "a", "path": "/a", "bakend": "a_pool"}]},
        ["unknown key 'bakend'"]),
    "vip_outside_subnet": (
        {"keepalived_vip_address": "10.99.0.100"},
        ["keepalived_vip_address: 10.99.0.100/24"]),
    "missing_stats_password": (
        {"haproxy_l7_stats_password": ""},
        ["haproxy_l7_stats_password"]),
    "duplicate_vrid": (
        {"keepalived_vip_reserved_router_ids": [51]},
        ["keepalived_vip_router_id: 51"]),
    "priority_tie": (
        {"keepalived_vip_priority": 150},
        ["keepalived_vip_priority: 150"]),
    "tracker_weight_below_gap": (
        {"keepalived_vip_track_weight": -1},
        ["keepalived_vip_track_weight: -1"]),
    "subsecond_adverts_with_vrrp2": (
        {"keepalived_vip_vrrp_version": 2, "keepalived_vip_advert_interval": 0.1},
        ["keepalived_vip_advert_interval: 0.1", "needs version 3"]),
    "process_tracking_in_container": (
        {"keepalived_vip_track_method": "process"},
        ["keepalived_vip_track_method: process"]),
    "untrusted_proxy_hostname": (
        {"apache_web_trusted_proxies": ["lb.example.invalid"]},
        ["apache_web_trusted_proxies", "lb.example.invalid"]),
    # Hostile values that used to reach a configuration file (docs/security.md).
    "newline_injects_admin_socket": (
        {"haproxy_l7_hard_stop_after": "5m\n    stats socket ipv4@0.0.0.0:9999 level admin"},
        ["haproxy_l7_hard_stop_after: '5m\\n", "control character"]),
    "apache_log_pipe_runs_a_command": (
        {"apache_web_error_log": "|/bin/sh -c id"},
        ["apache_web_error_log: '|/bin/sh -c id' must be an absolute path"]),
    "keepalived_name_injects_a_block": (
        {"keepalived_vip_instance_name": "VI_LAY7\n}\nglobal_defs {"},
        ["keepalived_vip_instance_name", "control character"]),
    "weak_password_named_not_shown": (
        {"haproxy_l7_stats_password": "qqqqqqqqqqqqqqqq"},
        ["haproxy_l7_stats_password: (secret, not shown)"]),
    "trusted_proxies_cover_everyone": (
        {"apache_web_trusted_proxies": ["0.0.0.0/1", "128.0.0.0/1"]},
        ["apache_web_trusted_proxies", "0.0.0.0/1"]),
    "document_root_is_slash": (
        {"apache_web_document_root": "/"},
        ["apache_web_document_root: '/'"]),
    "map_dir_is_etc": (
        {"haproxy_l7_map_dir": "/etc"},
        ["haproxy_l7_map_dir: '/etc'"]),
    # Relations only a real host can check: its interface's prefix and its addresses.
    "vip_prefix_wider_than_subnet": (
        {"keepalived_vip_prefix": 1},
        ["keepalived_vip_prefix: 1 must be 32 or the prefix"]),
    "unicast_src_not_on_host": (
        {"keepalived_vip_unicast_src": "192.168.56.99"},
        ["keepalived_vip_unicast_src: 192.168.56.99 is not an address of"]),
    "timeout_without_unit": (
        {"haproxy_l7_timeout_client": 30},
        ["haproxy_l7_timeout_client: 30", "milliseconds"]),
}

# Secrets a refusal must name without showing.
NEVER_SHOWN = {"weak_password_named_not_shown": ["qqqqqqqqqqqqqqqq"]}

# Bad only inside containers (no proc connector); on VMs the preflight rightly accepts it.
CONTAINER_ONLY = {"process_tracking_in_container"}
# The core verification runs one case per kind of check: the route compiler, the VIP's
# subnet, the web servers' trusted proxies, a value that would inject a directive, a command
# smuggled into a log setting, a weak secret never shown. The others go through the same
# preflight tasks with other values (each check is also unit-tested); they run here with
# LAY7_VERIFY=all. Each case is one site.yml run (about 40 s, three at a time).
CORE_CASES = {"unknown_backend", "vip_outside_subnet", "untrusted_proxy_hostname", "newline_injects_admin_socket",
              "apache_log_pipe_runs_a_command", "weak_password_named_not_shown"}

WEB_FILES = ["/etc/apache2/sites-available/lay7.conf", "/etc/nftables.d/lay7-web.nft", "/etc/nftables.conf",
             "/var/www/lay7/index.html"]
LB_FILES = ["/etc/haproxy/haproxy.cfg", "/etc/keepalived/keepalived.conf", "/usr/local/sbin/lay7-keepalived-notify"]
WEB_UNITS = ["apache2.service"]
LB_UNITS = ["haproxy.service", "keepalived.service"]


def _fingerprint(nodes, inventory) -> dict:
    state = {}
    for name in inventory.webservers + inventory.loadbalancers:
        node = nodes[name]
        is_web = name in inventory.webservers
        files = WEB_FILES if is_web else LB_FILES + [
            f"/etc/haproxy/maps/{m}" for m in node.check_output("ls /etc/haproxy/maps 2>/dev/null || true").split()]
        entry = {p: (node.file(p).sha256sum if node.file(p).exists else None) for p in files}
        for unit in WEB_UNITS if is_web else LB_UNITS:
            entry[unit] = node.check_output(f"systemctl show -p MainPID -p ActiveEnterTimestamp --value {unit}")
        if is_web:
            ruleset = node.check_output("nft -s list table inet lay7_web")
            entry["nft lay7_web"] = hashlib.sha256(ruleset.encode()).hexdigest()
        state[name] = entry
    return state


@pytest.fixture(scope="module")
def baseline(nodes, inventory):
    return _fingerprint(nodes, inventory), time.time()


@pytest.fixture(scope="module")
def cases(nodes, inventory) -> dict:
    """The cases that are bad on this substrate (container-only ones on containers only), all
    of them or the core ones (LAY7_VERIFY)."""
    in_container = nodes[inventory.master].run("systemd-detect-virt --container").rc == 0
    return {c: v for c, v in CASES.items()
            if (in_container or c not in CONTAINER_ONLY) and (VERIFY_DEPTH == "all" or c in CORE_CASES)}


@pytest.fixture(scope="module")
def runs(baseline, cases):
    """Every case's playbook run, three at a time (they only read the hosts if the
    preflight works; the fingerprints prove it)."""
    with ThreadPoolExecutor(max_workers=PARALLEL_RUNS) as pool:
        futures = {case: pool.submit(run_site, extra, None, PLAYBOOK_BOUND) for case, (extra, _expected) in cases.items()}
        return {case: future.result() for case, future in futures.items()}


@pytest.fixture(scope="module")
def after(runs, nodes, inventory):
    return _fingerprint(nodes, inventory)


@pytest.mark.parametrize("case", sorted(CASES))
def test_bad_input_fails_in_preflight_naming_the_field(case, runs):
    if case not in runs:
        pytest.skip(f"{case} is only bad inside containers; these hosts are VMs" if case in CORE_CASES or VERIFY_DEPTH == "all"
                    else "extended verification: make test-extended (LAY7_VERIFY=all)")
    extra, expected = CASES[case]
    result = runs[case]
    out = result.stdout + result.stderr
    assert result.returncode != 0, f"{case}: the playbook succeeded with {extra}"
    for text in expected:
        assert text in out, f"{case}: the failure does not name {text!r}:\n{out[-3000:]}"
    for secret in NEVER_SHOWN.get(case, []):
        assert secret not in out, f"{case}: the output shows the secret"
    assert "PLAY [Deploy the web servers]" not in out, f"{case}: the run went past the preflight play"


def test_no_host_changed(baseline, after, nodes, inventory):
    before, since = baseline
    changed = {host: {k: (v, after[host].get(k)) for k, v in entry.items() if after[host].get(k) != v}
               for host, entry in before.items()}
    assert not any(changed.values()), f"configuration or services changed: {changed}"
    for name in inventory.webservers + inventory.loadbalancers:
        log = nodes[name].check_output(
            f"journalctl --no-pager -q --since @{int(since)} -u apache2 -u haproxy -u keepalived"
            " | grep -Ei 'reload|restart|stopp' || true")
        assert not log, f"{name} reloaded or restarted a service:\n{log}"
