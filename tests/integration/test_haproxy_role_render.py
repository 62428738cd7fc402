"""Render lay7.ha.haproxy_l7 for the seed topology and check it with the real HAProxy.

The role's preflight and configure tasks run on localhost (connection local) with
every path pointed at a temporary directory and the service left alone, so the
template's own ``validate: haproxy -c -f %s`` and a second ``haproxy -c`` here
both see exactly what a load balancer would get. Covered: every persistence mode
in both routing modes, preflight refusals, and the rollback of map files when a
candidate configuration is rejected.
"""

from __future__ import annotations

import copy
import json
import os
import shutil
import subprocess
import textwrap
from pathlib import Path

import pytest
from loopback import offline_role_paths
from seed_tables import SEED_ROUTES  # the lab inventory's route table (tests/unit/plugins/filter)

REPO = Path(__file__).resolve().parents[2]
HAPROXY = shutil.which("haproxy") or "/usr/sbin/haproxy"

pytestmark = pytest.mark.skipif(not Path(HAPROXY).exists(), reason="haproxy binary not installed (make deps)")

# The seed backends with the lab's addresses: /a -> web2, /b -> web3, rest -> web1, each pool
# falling back to another one.
SEED_BACKENDS = {
    "main": {"servers": [{"name": "web1", "address": "192.168.56.11", "port": 80}], "fallback": "a_pool"},
    "a_pool": {"servers": [{"name": "web2", "address": "192.168.56.12", "port": 80}], "fallback": "main"},
    "b_pool": {"servers": [{"name": "web3", "address": "192.168.56.13", "port": 80}], "fallback": "main"},
}
# A pool of several servers, as the persistence checks on the lab use.
MULTI_POOL = {
    "servers": [
        {"name": "web1", "address": "192.168.56.11", "port": 80},
        {"name": "web2", "address": "192.168.56.12", "port": 80},
        {"name": "web3", "address": "192.168.56.13", "port": 80},
    ],
}

PLAYBOOK = textwrap.dedent(
    """\
    - name: Render lay7.ha.haproxy_l7 offline
      hosts: hap1
      gather_facts: true
      gather_subset: [min]
      roles:
        - role: lay7.ha.haproxy_l7
    """
)


def base_vars(tmp: Path) -> dict:
    return {
        "haproxy_l7_frontend_address": "192.168.56.100",
        "haproxy_l7_frontend_port": 80,
        "haproxy_l7_stats_address": "192.168.56.21",
        "haproxy_l7_stats_port": 8404,
        "haproxy_l7_stats_user": "lay7stats",
        "haproxy_l7_stats_password": "k3Q-uv9_Zt41pLmx",
        "haproxy_l7_peers": [
            {"name": "hap1", "address": "192.168.56.21"},
            {"name": "hap2", "address": "192.168.56.22"},
        ],
        "haproxy_l7_backends": copy.deepcopy(SEED_BACKENDS),
        "haproxy_l7_routes": copy.deepcopy(SEED_ROUTES),
        "haproxy_l7_default_backend": "main",
        **offline_role_paths(tmp),
    }


def run_role(tmp: Path, extra: dict, host: str = "hap1", options: tuple = ()) -> subprocess.CompletedProcess:
    playbook = tmp / "render.yml"
    playbook.write_text(PLAYBOOK.replace("hosts: hap1", f"hosts: {host}"))
    varfile = tmp / "vars.json"
    varfile.write_text(json.dumps(extra))
    env = dict(os.environ)
    env.setdefault("ANSIBLE_CONFIG", str(REPO / "ansible.cfg"))
    env.setdefault("ANSIBLE_COLLECTIONS_PATH", str(REPO / ".collections"))
    env["ANSIBLE_NOCOLOR"] = "1"
    env["ANSIBLE_RETRY_FILES_ENABLED"] = "0"
    return subprocess.run(
        [
            "ansible-playbook",
            "-i", f"{host},",
            "-c", "local",
            "-e", "ansible_python_interpreter=" + shutil.which("python3"),
            "-e", f"@{varfile}",
            # The role's real entry point (argument_specs validation included), minus
            # the tasks that would touch this machine: package, sysctl, service.
            "--tags", "haproxy_l7_preflight,haproxy_l7_configure",
            *options,
            str(playbook),
        ],
        cwd=REPO, env=env, capture_output=True, text=True, timeout=180, check=False,
    )


def haproxy_check(cfg: Path) -> subprocess.CompletedProcess:
    return subprocess.run([HAPROXY, "-c", "-f", str(cfg)], capture_output=True, text=True, timeout=30, check=False)


def backend_block(cfg_text: str, name: str) -> str:
    block = cfg_text.split(f"\nbackend {name}\n", 1)[1]
    return block.split("\nbackend ", 1)[0]


@pytest.mark.parametrize("routing_mode", ["acl", "map"])
@pytest.mark.parametrize("persistence", ["none", "cookie", "source", "stick-table"])
def test_seed_renders_and_haproxy_accepts_it(tmp_path, routing_mode, persistence):
    extra = base_vars(tmp_path)
    extra["haproxy_l7_routing_mode"] = routing_mode
    extra["haproxy_l7_backends"]["sticky_pool"] = dict(copy.deepcopy(MULTI_POOL), persistence=persistence)
    extra["haproxy_l7_routes"].append({"name": "sticky", "path": "/sticky", "match": "prefix", "backend": "sticky_pool"})

    result = run_role(tmp_path, extra)
    assert result.returncode == 0, result.stdout + result.stderr

    cfg = tmp_path / "haproxy.cfg"
    check = haproxy_check(cfg)
    assert check.returncode == 0, check.stdout + check.stderr
    # `haproxy -c` passes on warnings too: the rendered config must have none.
    assert "[WARNING]" not in check.stdout + check.stderr, check.stdout + check.stderr

    text = cfg.read_text()
    assert text.startswith("#"), "managed-file marker must open haproxy.cfg"
    assert "bind 192.168.56.100:80" in text
    assert "bind 192.168.56.21:8404" in text
    assert "stats socket /run/haproxy/admin.sock mode 660 level admin expose-fd listeners" in text
    assert "http-request use-service prometheus-exporter if { path /metrics }" in text
    assert "localpeer hap1" in text
    assert "peer hap2 192.168.56.22:10000" in text
    assert f"errorfile 503 {tmp_path}/errors/lay7-503.http" in text
    # The VIP check (docs/monitoring.md): on the VIP's own port, its server named after the VIP.
    assert "bind 192.168.56.100:8406\n" in text
    vip_check = backend_block(text, "lay7_vip")
    assert "server 192.168.56.100 192.168.56.100:8406 check inter 1s fastinter 1s downinter 1s fall 1 rise 1\n" in vip_check
    # No routing rule of the public frontend (nor anything after it) names it.
    assert "lay7_vip" not in text.split("\nfrontend lay7_http\n", 1)[1]

    for name in ("a_pool", "b_pool", "main", "sticky_pool"):
        block = backend_block(text, name)
        assert "option httpchk" in block
        assert "http-check send meth GET uri /healthz ver HTTP/1.1 hdr Host localhost" in block
        assert "option forwardfor" in block
    sticky = backend_block(text, "sticky_pool")
    # Identical names and ids on every load balancer: persistence survives a VIP move.
    for idx, web in enumerate(("web1", "web2", "web3"), start=1):
        assert f"server {web} 192.168.56.1{idx}:80 id {idx} " in sticky
    if persistence == "cookie":
        assert "cookie LAY7_STICKY_POOL insert indirect nocache httponly" in sticky
        assert " cookie web2" in sticky
    elif persistence == "source":
        assert "balance source" in sticky and "hash-type consistent" in sticky
    elif persistence == "stick-table":
        assert "stick-table type ip size 100k expire 30m peers lay7_peers" in sticky
        assert "stick on src" in sticky
    else:
        assert "cookie " not in sticky and "stick" not in sticky.replace("sticky", "")

    maps = sorted((tmp_path / "maps").glob("*.map"))
    if routing_mode == "map":
        assert maps, "map mode must write map files"
        for m in maps:
            assert str(m) in text
    else:
        assert maps == []

    page = (tmp_path / "errors" / "lay7-503.http").read_text()
    assert page.startswith("HTTP/1.0 503 ")
    assert "lay7.ha: no-server-available" in page


def test_second_run_changes_nothing(tmp_path):
    extra = base_vars(tmp_path)
    extra["haproxy_l7_routing_mode"] = "map"
    first = run_role(tmp_path, extra)
    assert first.returncode == 0, first.stdout + first.stderr
    second = run_role(tmp_path, extra)
    assert second.returncode == 0, second.stdout + second.stderr
    recap = [line for line in second.stdout.splitlines() if line.startswith("hap1") and "ok=" in line]
    assert recap and "changed=0" in recap[-1], second.stdout


def test_switching_to_acl_mode_removes_stale_maps(tmp_path):
    extra = base_vars(tmp_path)
    extra["haproxy_l7_routing_mode"] = "map"
    assert run_role(tmp_path, extra).returncode == 0
    assert list((tmp_path / "maps").glob("*.map"))
    extra["haproxy_l7_routing_mode"] = "acl"
    result = run_role(tmp_path, extra)
    assert result.returncode == 0, result.stdout + result.stderr
    assert list((tmp_path / "maps").glob("*.map")) == []
    assert haproxy_check(tmp_path / "haproxy.cfg").returncode == 0


def test_rejected_config_keeps_previous_files(tmp_path):
    extra = base_vars(tmp_path)
    extra["haproxy_l7_routing_mode"] = "map"
    assert run_role(tmp_path, extra).returncode == 0
    cfg_before = (tmp_path / "haproxy.cfg").read_text()
    maps_before = {p.name: p.read_text() for p in (tmp_path / "maps").glob("*.map")}

    # New routes (new map content) together with a value only HAProxy can reject: a
    # well-formed server host name that does not resolve (the preflight cannot know).
    extra["haproxy_l7_routes"].append({"name": "c", "path": "/c", "match": "prefix", "backend": "b_pool"})
    extra["haproxy_l7_backends"]["b_pool"]["servers"][0]["address"] = "web3.lay7-unresolvable.invalid"
    result = run_role(tmp_path, extra)
    assert result.returncode != 0
    assert "rejected by" in result.stdout + result.stderr
    assert (tmp_path / "haproxy.cfg").read_text() == cfg_before
    assert {p.name: p.read_text() for p in (tmp_path / "maps").glob("*.map")} == maps_before
    leftovers = [p.name for p in (tmp_path / "maps").iterdir() if not p.name.endswith(".map")]
    assert leftovers == []


BAD_INPUTS = [
    ("haproxy_l7_stats_password", "", "haproxy_l7_stats_password"),
    ("haproxy_l7_stats_password", "admin", "haproxy_l7_stats_password"),
    ("haproxy_l7_stats_password", "Password", "haproxy_l7_stats_password"),
    ("haproxy_l7_stats_user", "", "haproxy_l7_stats_user"),
    ("haproxy_l7_stats_address", "192.168.56.100", "haproxy_l7_stats_address"),
    ("haproxy_l7_stats_address", "0.0.0.0", "haproxy_l7_stats_address"),
    ("haproxy_l7_frontend_address", "", "haproxy_l7_frontend_address"),
    ("haproxy_l7_frontend_address", "*", "haproxy_l7_frontend_address"),
    ("haproxy_l7_peers", [{"name": "hap2", "address": "192.168.56.22"}], "haproxy_l7_local_peer_name"),
    ("haproxy_l7_peers", [{"name": "hap1", "address": "192.168.56.21"}, {"name": "hap1", "address": "192.168.56.22"}],
     "haproxy_l7_peers"),
    ("haproxy_l7_retry_methods", ["GET", "POST"], "haproxy_l7_retry_methods"),
    ("haproxy_l7_routing_mode", "maps", "haproxy_l7_routing_mode"),
    # A server at the VIP is this load balancer: requests would loop.
    ("haproxy_l7_backends", {**SEED_BACKENDS, "b_pool": {"servers": [{"name": "web3", "address": "192.168.56.100", "port": 80}]}},
     "a server's address is haproxy_l7_frontend_address 192.168.56.100"),
    ("haproxy_l7_hard_stop_after", "5m\n    stats socket ipv4@0.0.0.0:9999 level admin", "haproxy_l7_hard_stop_after"),
    ("haproxy_l7_stats_password_hash", "$6$rounds=999999999$abcdefgh$" + "a" * 86, "haproxy_l7_stats_password_hash: (secret, not shown)"),
    # The VIP check binds the VIP too, and its backend's name is the role's own.
    ("haproxy_l7_vip_check_port", 80, "haproxy_l7_vip_check_port 80 must differ"),
    ("haproxy_l7_backends", {**SEED_BACKENDS, "lay7_vip": SEED_BACKENDS["main"]}, "must not name a backend 'lay7_vip'"),
]


@pytest.mark.parametrize(("field", "value", "named"), BAD_INPUTS, ids=[f"{case[0]}={case[1]!r}" for case in BAD_INPUTS])
def test_preflight_refuses_bad_input_before_writing(tmp_path, field, value, named):
    extra = base_vars(tmp_path)
    extra[field] = value
    result = run_role(tmp_path, extra)
    output = result.stdout + result.stderr
    assert result.returncode != 0, output
    assert named in output, output
    assert not (tmp_path / "haproxy.cfg").exists()


def test_preflight_surfaces_route_errors(tmp_path):
    extra = base_vars(tmp_path)
    extra["haproxy_l7_routes"][0]["backend"] = "a_pol"
    result = run_role(tmp_path, extra)
    output = result.stdout + result.stderr
    assert result.returncode != 0
    assert "a_pol" in output, output
    assert not (tmp_path / "haproxy.cfg").exists()


def test_both_load_balancers_get_the_same_routing_and_server_ids(tmp_path):
    """Only the node's own address (the stats bind, the VIP check's sources), localpeer and the name
    the VIP check answers and expects differ between hap1 and hap2."""
    rendered = {}
    for host, address in (("hap1", "192.168.56.21"), ("hap2", "192.168.56.22")):
        out = tmp_path / host
        out.mkdir()
        extra = base_vars(out)
        extra["haproxy_l7_stats_address"] = address
        extra["haproxy_l7_routing_mode"] = "map"
        extra["haproxy_l7_backends"]["sticky_pool"] = dict(copy.deepcopy(MULTI_POOL), persistence="stick-table")
        extra["haproxy_l7_routes"].append({"name": "sticky", "path": "/sticky", "backend": "sticky_pool"})
        result = run_role(out, extra, host=host)
        assert result.returncode == 0, result.stdout + result.stderr
        rendered[host] = (out / "haproxy.cfg").read_text().replace(str(out), "<tmp>").splitlines()
        assert haproxy_check(out / "haproxy.cfg").returncode == 0
    differing = [(a, b) for a, b in zip(rendered["hap1"], rendered["hap2"]) if a != b]
    assert len(rendered["hap1"]) == len(rendered["hap2"])
    assert differing == [
        ("    localpeer hap1", "    localpeer hap2"),
        ("    bind 192.168.56.21:8404", "    bind 192.168.56.22:8404"),
        ("    http-request deny unless { src 192.168.56.100 192.168.56.21 }",
         "    http-request deny unless { src 192.168.56.100 192.168.56.22 }"),
        ('    http-request return status 200 content-type text/plain hdr X-Lay7-Node hap1 string "hap1 holds 192.168.56.100\\n"',
         '    http-request return status 200 content-type text/plain hdr X-Lay7-Node hap2 string "hap2 holds 192.168.56.100\\n"'),
        ("    http-check expect hdr name X-Lay7-Node value hap1", "    http-check expect hdr name X-Lay7-Node value hap2"),
    ]


def test_stand_alone_node_without_peers_prometheus_or_vip_check(tmp_path):
    extra = base_vars(tmp_path)
    extra["haproxy_l7_peers"] = []
    extra["haproxy_l7_prometheus_enabled"] = False
    extra["haproxy_l7_vip_check_enabled"] = False
    extra["haproxy_l7_backends"]["sticky_pool"] = dict(copy.deepcopy(MULTI_POOL), persistence="stick-table")
    extra["haproxy_l7_routes"].append({"name": "sticky", "path": "/sticky", "backend": "sticky_pool"})
    result = run_role(tmp_path, extra)
    assert result.returncode == 0, result.stdout + result.stderr
    text = (tmp_path / "haproxy.cfg").read_text()
    check = haproxy_check(tmp_path / "haproxy.cfg")
    assert check.returncode == 0 and "[WARNING]" not in check.stdout + check.stderr, check.stdout + check.stderr
    directives = [line.strip() for line in text.splitlines() if line.strip() and not line.lstrip().startswith("#")]
    assert not [d for d in directives if d.startswith(("peers ", "peer ", "localpeer "))], directives
    assert not [d for d in directives if "prometheus-exporter" in d], directives
    assert not [d for d in directives if "lay7_vip" in d or ":8406" in d], directives
    assert "stick-table type ip size 100k expire 30m\n" in text
