"""lay7.ha.haproxy_reload against the real HAProxy (this machine's 2.6, Debian 12) in
master-worker mode on loopback: a reload that works, and one whose new configuration cannot
load - which `haproxy -c` passes and `systemctl reload` would not notice.

HAProxy 3.0's synchronous answer is exercised on the lab's Debian 13 load balancer
(molecule/shared/tests/test_platforms.py) and against a fake master in the unit tests."""

from __future__ import annotations

import json
import os
import pathlib
import socket
import subprocess
import sys
import time
import urllib.request

import pytest
from ansible_collections.lay7.ha.plugins.plugin_utils import _routes
from loopback import HAPROXY, LOOPBACK, free_port

COLLECTIONS_ROOT = pathlib.Path(_routes.__file__).parents[5]
MODULE = pathlib.Path(_routes.__file__).parents[2] / "plugins" / "modules" / "haproxy_reload.py"

CONFIG = """global
    log stderr format raw local0 notice
defaults
    mode http
    timeout connect 1s
    timeout client 5s
    timeout server 5s
frontend web
    bind {addr}:{port}
    http-request return status 200 content-type text/plain string "{body}"
{extra}"""


def run_module(tmp_path, **args) -> dict:
    argfile = tmp_path / f"args-{time.monotonic_ns()}.json"
    argfile.write_text(json.dumps({"ANSIBLE_MODULE_ARGS": args}))
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(COLLECTIONS_ROOT), os.environ.get("PYTHONPATH", "")]))
    res = subprocess.run([sys.executable, str(MODULE), str(argfile)], capture_output=True, text=True,
                         timeout=120, env=env, check=False)
    return json.loads(res.stdout)


def body(port: int) -> str:
    with urllib.request.urlopen(f"http://{LOOPBACK}:{port}/", timeout=2) as resp:
        return resp.read().decode()


@pytest.fixture
def master(tmp_path):
    port = free_port()
    cfg = tmp_path / "haproxy.cfg"
    cfg.write_text(CONFIG.format(addr=LOOPBACK, port=port, body="one", extra=""))
    sock = tmp_path / "master.sock"
    log = open(tmp_path / "haproxy.log", "w")
    proc = subprocess.Popen([HAPROXY, "-W", "-db", "-S", str(sock), "-f", str(cfg)], stdout=log, stderr=subprocess.STDOUT)
    deadline = time.monotonic() + 10
    while True:
        try:
            if sock.exists() and body(port) == "one":
                break
        except OSError:
            pass
        assert time.monotonic() < deadline, (tmp_path / "haproxy.log").read_text()
        time.sleep(0.05)
    try:
        yield {"cfg": cfg, "sock": sock, "port": port}
    finally:
        proc.terminate()
        proc.wait(timeout=10)
        log.close()


def test_a_reload_reports_the_new_workers(master, tmp_path):
    master["cfg"].write_text(CONFIG.format(addr=LOOPBACK, port=master["port"], body="two", extra=""))
    got = run_module(tmp_path, master_socket=str(master["sock"]), timeout=30)
    assert got.get("failed") is not True, got
    assert got["changed"] is True
    assert got["method"] == "master CLI reload, outcome read from show proc"  # 2.6 on this machine
    assert got["version"].startswith("2.6.")
    assert got["reloads"] >= 1 and got["failed_reloads"] == 0
    assert got["workers"] and set(got["workers"]).isdisjoint(got["previous_workers"])
    assert body(master["port"]) == "two"


def test_a_reload_that_cannot_load_fails_and_the_old_config_serves(master, tmp_path):
    # Valid for `haproxy -c`, fatal at start: the port is held by another socket.
    holder = socket.socket()
    holder.bind((LOOPBACK, 0))
    holder.listen(1)
    busy = holder.getsockname()[1]
    try:
        broken = CONFIG.format(addr=LOOPBACK, port=master["port"], body="three",
                               extra=f"frontend clash\n    bind {LOOPBACK}:{busy}\n")
        master["cfg"].write_text(broken)
        assert subprocess.run([HAPROXY, "-c", "-f", str(master["cfg"])], capture_output=True, check=False).returncode == 0
        got = run_module(tmp_path, master_socket=str(master["sock"]), timeout=30)
        assert got.get("failed") is True, got
        assert got["msg"].startswith("the new configuration did not load; HAProxy keeps serving with the old one")
        assert "failed reloads 0 -> 1" in got["msg"]
        assert body(master["port"]) == "one"
    finally:
        holder.close()
    # Fixed, the next reload works again.
    master["cfg"].write_text(CONFIG.format(addr=LOOPBACK, port=master["port"], body="four", extra=""))
    got = run_module(tmp_path, master_socket=str(master["sock"]), timeout=30)
    assert got.get("failed") is not True, got
    assert body(master["port"]) == "four"


def test_check_mode_reads_the_version_and_does_not_reload(master, tmp_path):
    master["cfg"].write_text(CONFIG.format(addr=LOOPBACK, port=master["port"], body="five", extra=""))
    args = {"master_socket": str(master["sock"]), "_ansible_check_mode": True}
    got = run_module(tmp_path, **args)
    assert got["changed"] is True and got["version"].startswith("2.6.")
    assert body(master["port"]) == "one"


def test_no_master_socket_fails_clearly(tmp_path):
    got = run_module(tmp_path, master_socket=str(tmp_path / "none.sock"), timeout=5)
    assert got["failed"] is True
    assert "cannot use the HAProxy master CLI" in got["msg"] and "none.sock" in got["msg"]
