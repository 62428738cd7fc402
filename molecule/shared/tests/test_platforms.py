"""Every host runs a tested Debian release, and what differs between releases is chosen by the
version found on the host.

`make test` runs these on the mixed lab (hap1, web1, web3 Debian 12; hap2, web2 Debian 13), so
each release's side of every version-specific choice is asserted on a host that has it:
the HAProxy reload whose outcome is read from the master CLI's synchronous answer (HAProxy 3.0)
or from `show proc` (HAProxy 2.6)."""

from __future__ import annotations

import os

import pytest
from conftest import DEBIAN_RELEASES, debian_release
from testinfra.modules.ansible import AnsibleException

MASTER_SOCKET = "/run/haproxy-master.sock"
CONFIG = "/etc/haproxy/haproxy.cfg"


def test_every_host_runs_a_tested_release(nodes):
    releases = {name: debian_release(host) for name, host in nodes.items()}
    assert set(releases.values()) <= set(DEBIAN_RELEASES), releases
    wanted = os.environ.get("LAY7_LAB_RELEASE")
    if wanted and os.environ.get("LAY7_SUBSTRATE", "lab") == "lab":
        from lab.topology import load
        topo = load(release=wanted)
        codenames = {name: DEBIAN_RELEASES[v][0] for name, v in releases.items()}
        assert codenames == {name: topo.suite_of(name) for name in nodes}, "the lab booted other releases"


def test_each_release_runs_its_own_haproxy_and_keepalived(nodes, inventory):
    for name in inventory.loadbalancers:
        host = nodes[name]
        _, haproxy, keepalived = DEBIAN_RELEASES[debian_release(host)]
        assert host.run("haproxy -v").stdout.startswith(f"HAProxy version {haproxy}."), name
        assert f"Keepalived v{keepalived}." in host.run("keepalived --version").stderr + host.run(
            "keepalived --version").stdout, name


def test_the_configuration_loads_without_a_warning_on_each_release(nodes, inventory):
    for name in inventory.loadbalancers:
        res = nodes[name].run(f"haproxy -c -f {CONFIG}")
        assert res.rc == 0, res.stdout + res.stderr
        assert "[WARNING]" not in res.stdout + res.stderr, (name, res.stdout + res.stderr)
        assert "[ALERT]" not in res.stdout + res.stderr, (name, res.stdout + res.stderr)


def _reload(host, expect_failure: bool = False) -> dict:
    """The module's result. testinfra raises on a result marked failed; its ad-hoc runs do not
    always mark a module's failure, so a failure is also told by the module's message."""
    try:
        got = host.ansible("lay7.ha.haproxy_reload", f"master_socket={MASTER_SOCKET} timeout=60",
                           check=False, become=True)
    except AnsibleException as exc:
        got = dict(exc.result, failed=True)
    failed = got.get("failed") is True or "method" not in got
    assert failed == expect_failure, got
    return got


@pytest.mark.parametrize("which", [0, 1])
def test_a_reload_is_confirmed_the_way_the_running_haproxy_allows(which, nodes, inventory, vip):
    name = inventory.loadbalancers[which]
    host = nodes[name]
    _, haproxy, _ = DEBIAN_RELEASES[debian_release(host)]
    got = _reload(host)
    assert got["changed"] is True and got["version"].startswith(haproxy + ".")
    if haproxy == "2.6":
        assert got["method"] == "master CLI reload, outcome read from show proc"
        assert got["startup_messages"] == []
    else:
        assert got["method"] == "master CLI reload (synchronous)"
    assert got["workers"] and set(got["workers"]).isdisjoint(got["previous_workers"])
    assert vip.routes_ok()


@pytest.mark.parametrize("which", [0, 1])
def test_a_reload_that_cannot_load_fails_and_the_old_configuration_serves(which, nodes, inventory, vip):
    """A configuration `haproxy -c` accepts but HAProxy cannot start with (a port sshd holds):
    `systemctl reload` would report success; the role's reload fails, naming the cause where the
    version tells it, and HAProxy keeps serving with the configuration it had."""
    name = inventory.loadbalancers[which]
    host = nodes[name]
    _, haproxy, _ = DEBIAN_RELEASES[debian_release(host)]
    try:
        host.run_expect([0], f"cp -p {CONFIG} /root/haproxy.cfg.platform-test")
        host.run_expect([0], f"printf '\\nfrontend lay7_test_port_clash\\n    bind 127.0.0.1:22\\n' >> {CONFIG}")
        assert "lay7_test_port_clash" in host.file(CONFIG).content_string
        host.run_expect([0], f"haproxy -c -q -f {CONFIG}")
        failed = _reload(host, expect_failure=True)
        assert failed["changed"] is False
        text = failed["msg"]
        assert "the new configuration did not load; HAProxy keeps serving with the old one" in text
        if haproxy == "2.6":
            assert "failed reloads" in text and "journalctl -u haproxy" in text
        else:
            assert "cannot bind socket" in text and "127.0.0.1:22" in text
        assert vip.routes_ok()
    finally:
        host.run_expect([0], f"cp -p /root/haproxy.cfg.platform-test {CONFIG}")
        host.run("rm -f /root/haproxy.cfg.platform-test")
    got = _reload(host)
    assert got["changed"] is True
    assert vip.routes_ok()

