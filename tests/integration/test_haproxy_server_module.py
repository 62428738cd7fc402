"""lay7.ha.haproxy_server run by Ansible against the real HAProxy on loopback.

The backends are laid out as the lab inventory has them: web2 and web3 are servers of their own
pool and of spare_pool, and the fallback stand-ins (backup servers tracking the fallback's
servers) are there too. Every case the community module got wrong is here: drain with wait on a
server that is up and idle, maintenance on a server that is already down, drain then maint.
"""

from __future__ import annotations

import http.client
import json
import os
import pathlib
import subprocess
import sys
import threading
import time

import pytest
from ansible_collections.lay7.ha.plugins.plugin_utils._routes import compile_routes
from ansible_collections.lay7.ha.plugins.plugin_utils import _routes
from loopback import HAProxy, NamedBackend

# .../ansible_collections/lay7/ha/plugins/plugin_utils/_routes.py: where the collection is importable from.
COLLECTIONS_ROOT = pathlib.Path(_routes.__file__).parents[5]
COLLECTION = pathlib.Path(_routes.__file__).parents[2]

ROUTES = [
    {"name": "a", "path": "/a", "match": "prefix", "backend": "a_pool"},
    {"name": "b", "path": "/b", "match": "prefix", "backend": "b_pool"},
]


def _server(name):
    return {"name": name, "address": "127.0.0.1", "port": 80}


BACKENDS = {
    "main": {"servers": [_server("web1")], "fallback": "spare_pool"},
    "a_pool": {"servers": [_server("web2")], "fallback": "main"},
    "b_pool": {"servers": [_server("web3")], "fallback": "main"},
    "spare_pool": {"servers": [_server("web2"), _server("web3")]},
}


@pytest.fixture
def lb(tmp_path):
    """HAProxy with one HTTP server per web host (shared by every backend naming it)."""
    compiled = compile_routes(ROUTES, BACKENDS, "main", map_dir=str(tmp_path / "maps"))
    hosts = {name: NamedBackend(name) for name in ("web1", "web2", "web3")}
    ports = {(be["name"], srv["name"]): hosts[srv["name"]].port for be in compiled["backends"] for srv in be["servers"]}
    # Two failed checks mark a server down, as the role's default does: a check passed since a
    # server left maintenance is then visible in its check health.
    proxy = HAProxy(compiled, ports, tmp_path, fallback_servers=True, fall=2)
    try:
        for host in hosts.values():
            host.start()
        proxy.start()
        proxy.wait_states({key: "UP" for key in ports})
        yield proxy, hosts
    finally:
        proxy.stop()
        for host in hosts.values():
            host.stop()


def run_module(proxy, tmp_path, check=False, diff=False, module="lay7.ha.haproxy_server", via_ansible=False, **args) -> dict:
    """Run a module on localhost; its result. With ``via_ansible``, through ansible-playbook
    (the packaging Ansible really uses, about 2.5 s a run); else the module file run the way
    Ansible's own module tests do, with its arguments as JSON (a fraction of a second)."""
    args = {"socket": str(proxy.sock), **args}
    if via_ansible:
        out = tmp_path / f"result-{time.monotonic_ns()}.json"
        play = tmp_path / "play.yml"
        play.write_text(json.dumps([{
            "hosts": "localhost", "connection": "local", "gather_facts": False,
            "tasks": [
                {module: args, "register": "result", "ignore_errors": True},
                {"ansible.builtin.copy": {"content": "{{ result | to_json }}", "dest": str(out)}, "check_mode": False, "diff": False},
            ],
        }]))
        cmd = ["ansible-playbook", "-i", "localhost,", "-e", f"ansible_python_interpreter={sys.executable}", str(play)]
        cmd += (["--check"] if check else []) + (["--diff"] if diff else [])
        res = subprocess.run(cmd, capture_output=True, text=True, timeout=300, check=False)
        assert res.returncode == 0, res.stdout + res.stderr
        return json.loads(out.read_text())
    source = COLLECTION / "plugins" / "modules" / f"{module.rsplit('.', 1)[1]}.py"
    argfile = tmp_path / f"args-{time.monotonic_ns()}.json"
    argfile.write_text(json.dumps({"ANSIBLE_MODULE_ARGS": {**args, "_ansible_check_mode": check, "_ansible_diff": diff}}))
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(COLLECTIONS_ROOT), os.environ.get("PYTHONPATH", "")]))
    res = subprocess.run([sys.executable, str(source), str(argfile)], capture_output=True, text=True, timeout=300, env=env, check=False)
    try:
        return json.loads(res.stdout)
    except json.JSONDecodeError as exc:
        raise AssertionError(f"no JSON from {module}: {res.stdout}{res.stderr}") from exc


def admin_states(proxy) -> dict:
    """(backend/server) -> (srv_admin_state, srv_uweight) as HAProxy has them."""
    out = {}
    for line in proxy.command("show servers state").splitlines():
        fields = line.split()
        if len(fields) > 8 and not line.startswith("#"):
            out[f"{fields[1]}/{fields[3]}"] = (int(fields[6]), int(fields[7]))
    return out


def statuses(proxy) -> dict:
    return {f"{be}/{srv}": status for (be, srv), status in proxy.server_states().items()}


def hold_request(proxy, seconds: float, answers: list) -> threading.Thread:
    """A request to /a (web2) that keeps its server session open for ``seconds``; its
    status and body go to ``answers``."""
    def send():
        conn = http.client.HTTPConnection("127.0.0.1", proxy.port, timeout=seconds + 10)
        try:
            conn.request("GET", f"/a/slow/{seconds}")
            resp = conn.getresponse()
            answers.append((resp.status, resp.read().decode()))
        finally:
            conn.close()

    thread = threading.Thread(target=send, daemon=True)
    thread.start()
    return thread


def wait_sessions(proxy, key: str, want: int, timeout: float = 5.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        rows = proxy.command("show stat").splitlines()
        header = rows[0].lstrip("# ").split(",")
        for row in rows[1:]:
            rec = dict(zip(header, row.split(",")))
            if f"{rec.get('pxname')}/{rec.get('svname')}" == key and int(rec["scur"] or 0) == want:
                return
        time.sleep(0.05)
    raise TimeoutError(f"{key} never had {want} sessions")


def test_drain_changes_every_backend_once_and_check_mode_changes_nothing(lb, tmp_path):
    proxy, _hosts = lb
    checked = run_module(proxy, tmp_path, check=True, diff=True, via_ansible=True, name="web2", state="drain")
    assert checked["changed"] and not checked.get("failed")
    assert admin_states(proxy)["a_pool/web2"][0] == 0, "check mode changed HAProxy"
    assert "a_pool/web2 (127.0.0.1:" in checked["diff"]["before"] and "state=ready" in checked["diff"]["before"]
    assert "state=drain" in checked["diff"]["after"]

    drained = run_module(proxy, tmp_path, via_ansible=True, name="web2", state="drain")
    assert drained["changed"]
    assert sorted(s["backend"] for s in drained["servers"]) == ["a_pool", "spare_pool"]
    states = admin_states(proxy)
    assert states["a_pool/web2"][0] & 0x08 and states["spare_pool/web2"][0] & 0x08
    # The stand-in tracking spare_pool/web2 inherits the drain instead of being forced.
    assert states["main/fallback_web2"][0] & 0x10 and not states["main/fallback_web2"][0] & 0x08
    assert states["main/web1"][0] == 0
    # Drained: /a goes to the fallback's stand-ins (web1, web3), never web2.
    answers = {proxy.request("/a/x")[1] for _ in range(20)}
    assert answers and "web2" not in answers, answers

    again = run_module(proxy, tmp_path, name="web2", state="drain")
    assert not again["changed"], "a second drain reported a change"


def test_drain_with_wait_on_an_idle_server_returns_at_once(lb, tmp_path):
    """The community module could wait forever here (community.general issue 12286)."""
    proxy, _hosts = lb
    result = run_module(proxy, tmp_path, name="web3", state="drain", wait=True, wait_timeout=30)
    assert result["changed"] and not result.get("failed")
    assert result["waited"] < 2, result


def test_drain_waits_for_the_open_session_and_fails_when_the_bound_is_reached(lb, tmp_path):
    proxy, _hosts = lb
    answers = []
    held = hold_request(proxy, 6, answers)
    wait_sessions(proxy, "a_pool/web2", 1)
    short = run_module(proxy, tmp_path, name="web2", state="drain", wait=True, wait_timeout=1, wait_interval=0.2)
    assert short.get("failed") and short["changed"]
    assert "a_pool/web2 (1)" in short["msg"], short["msg"]
    assert admin_states(proxy)["a_pool/web2"][0] & 0x08, "the drain must stay set after a failed wait"

    long = run_module(proxy, tmp_path, name="web2", state="drain", wait=True, wait_timeout=30, wait_interval=0.2)
    held.join(timeout=10)
    assert not long.get("failed") and not long["changed"], long
    assert long["waited"] > 0.2, "returned before the held request ended"
    assert answers == [(200, "web2")], "the drain cut the session it was waiting for"
    assert all(s["sessions"] == 0 for s in long["servers"])


def test_maint_on_a_server_that_is_already_down(lb, tmp_path):
    """The community module's "already down" guard never worked (community.general issue 8092)."""
    proxy, hosts = lb
    hosts["web3"].stop()
    proxy.wait_states({("b_pool", "web3"): "DOWN", ("spare_pool", "web3"): "DOWN"})
    result = run_module(proxy, tmp_path, name="web3", state="maint", wait=True, wait_timeout=10)
    assert result["changed"] and not result.get("failed")
    assert all(s["status"].startswith("MAINT") for s in result["servers"]), result["servers"]
    assert not run_module(proxy, tmp_path, name="web3", state="maint")["changed"]


def test_drain_then_maint_then_ready_waits_for_health(lb, tmp_path):
    """DRAIN followed by MAINT (ansible issue 37591), then back once checks pass."""
    proxy, _hosts = lb
    assert run_module(proxy, tmp_path, name="web1", state="drain")["changed"]
    maint = run_module(proxy, tmp_path, name="web1", state="maint")
    assert maint["changed"] and maint["servers"][0]["state_before"] == "drain"
    assert statuses(proxy)["main/web1"] == "MAINT"
    ready = run_module(proxy, tmp_path, name="web1", state="ready", wait=True, wait_timeout=10)
    assert ready["changed"] and not ready.get("failed")
    assert ready["servers"][0]["status"].startswith("UP"), ready["servers"]
    assert proxy.request("/")[1] == "web1"


def test_ready_with_wait_fails_while_the_server_is_down(lb, tmp_path):
    proxy, hosts = lb
    hosts["web1"].stop()
    proxy.wait_states({("main", "web1"): "DOWN"})
    result = run_module(proxy, tmp_path, name="web1", state="ready", wait=True, wait_timeout=1, wait_interval=0.2)
    assert result.get("failed") and not result["changed"]
    assert "failing their health checks" in result["msg"] and "main/web1" in result["msg"]


def test_ready_from_maint_is_left_drained_when_the_server_stays_down(lb, tmp_path):
    proxy, hosts = lb
    assert run_module(proxy, tmp_path, name="web3", state="maint")["changed"]
    hosts["web3"].stop()
    result = run_module(proxy, tmp_path, name="web3", state="ready", wait=True, wait_timeout=2, wait_interval=0.2)
    assert result.get("failed") and result["changed"] and "failing their health checks" in result["msg"], result
    assert {s["state"] for s in result["servers"]} == {"drain"}, "the result must say where the server was left"
    states = admin_states(proxy)
    assert states["b_pool/web3"][0] == 0x08 and states["spare_pool/web3"][0] == 0x08, "not left drained"
    hosts["web3"].start()
    back = run_module(proxy, tmp_path, name="web3", state="ready", wait=True, wait_timeout=10)
    assert back["changed"] and not back.get("failed")
    assert {s["status"] for s in back["servers"]} == {"UP"}, back["servers"]


def test_health_is_awaited_while_the_server_stays_drained(lb, tmp_path):
    """The rolling update's order: drained, updated, proven healthy, only then ready."""
    proxy, hosts = lb
    assert run_module(proxy, tmp_path, name="web2", state="drain")["changed"]
    hosts["web2"].stop()
    proxy.wait_states({("a_pool", "web2"): "DOWN"})
    down = run_module(proxy, tmp_path, name="web2", wait=True, wait_for="health", wait_timeout=1, wait_interval=0.2)
    assert down.get("failed") and "a_pool/web2" in down["msg"] and "spare_pool/web2" in down["msg"], down
    hosts["web2"].start()
    up = run_module(proxy, tmp_path, name="web2", wait=True, wait_for="health", wait_timeout=10)
    assert not up.get("failed") and not up["changed"], up
    assert {s["status"] for s in up["servers"]} == {"DRAIN"}, up["servers"]
    maint = run_module(proxy, tmp_path, name="web2", state="maint", wait=True, wait_for="health")
    assert maint.get("failed") and "checks are stopped" in maint["msg"]


def test_weight_by_address_and_port_in_one_backend(lb, tmp_path):
    proxy, hosts = lb
    args = {"address": "127.0.0.1", "port": hosts["web3"].port, "backends": ["spare_pool"], "weight": 25}
    result = run_module(proxy, tmp_path, **args)
    assert result["changed"] and [s["server"] for s in result["servers"]] == ["web3"]
    states = admin_states(proxy)
    assert states["spare_pool/web3"][1] == 25 and states["b_pool/web3"][1] == 100
    assert not run_module(proxy, tmp_path, **args)["changed"]


@pytest.mark.parametrize(
    ("args", "message"),
    [
        ({"name": "web9", "state": "drain"}, "no server with name web9"),
        ({"name": "web2", "weight": 300}, "weight must be between 0 and 256"),
        ({"name": "web2"}, "nothing to do"),
        ({"name": "web2", "backends": ["b_pool"], "state": "drain"}, "in backends"),
    ],
)
def test_refusals_name_the_problem_and_change_nothing(lb, tmp_path, args, message):
    proxy, _hosts = lb
    before = admin_states(proxy)
    result = run_module(proxy, tmp_path, **args)
    assert result.get("failed") and message in result["msg"], result
    assert admin_states(proxy) == before
