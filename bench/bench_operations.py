#!/usr/bin/env python3
"""Day-2 operations benchmark: what clients see through the VIP while each routine operation runs.

Every operation runs the collection's own playbook (or site.yml for a route or server change)
against the lab, as an operator would, while the open-loop probe sends requests through the VIP
on the paths of all three web servers (a request every 15 ms per path and client kind: new
connections and 16 keep-alive connections). Each operation is repeated (default 3 times); the
worst trial is kept. Reported: failed requests, failure window and p99 latency per client kind,
and how long the operation took. The live route change also reports whether HAProxy's workers
changed (a reload), the stats rotation how many scrapes failed.

Results: bench/results/operations.json (docs/operations.md quotes them).
Only lab addresses inside the lab's own network namespaces are probed; every loop is bounded.

    python bench/bench_operations.py                   # fresh lab: up, converge, measure, down
    python bench/bench_operations.py --reuse           # a lab already up and converged
    python bench/bench_operations.py --ops drain_undrain --repeat 1
"""

from __future__ import annotations

import argparse
import base64
import http.client
import json
import os
import pathlib
import secrets
import sys
import threading
import time

ROOT = pathlib.Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import yaml  # noqa: E402
from bench_failover import INVENTORY, LBS, holders, lab_session, run_site, vip_address, wait_steady  # noqa: E402

from lab import Lab, site  # noqa: E402
from lab.probe import Probe  # noqa: E402
from lab.topology import load  # noqa: E402

RESULTS = ROOT / "bench" / "results" / "operations.json"
WORK = ROOT / "build" / "bench-operations"
PATHS = ("/", "/a/ops", "/b/ops")
INTERVAL = 0.015
ADDRESSES = {host.name: str(host.address) for host in load().hosts}


def playbook(name: str, extra: dict, options: tuple = ()) -> None:
    done = site.run_playbook(INVENTORY, name, extra, timeout=900, options=options)
    if done.returncode != 0:
        raise RuntimeError(f"{name} failed ({done.returncode}):\n{done.stdout[-3000:]}")


def tasks_file(name: str, text: str) -> str:
    WORK.mkdir(parents=True, exist_ok=True)
    path = WORK / name
    path.write_text(text)
    return str(path)


def workers(lab: Lab, settle: float = 30.0) -> dict:
    """(pid, start time) of HAProxy's workers per load balancer, once each has one: after a
    reload the old worker stays until its connections are done (seconds under the probe),
    which is not a reload happening now."""
    deadline = time.monotonic() + settle
    while True:
        out = _workers(lab)
        if all(len(pids) == 2 for pids in out.values()) or time.monotonic() > deadline:
            return out
        time.sleep(0.5)


def _workers(lab: Lab) -> dict:
    out = {}
    for lb in LBS:
        out[lb] = lab.exec(lb, ["sh", "-c", "for p in $(pgrep -P $(systemctl show -p MainPID --value haproxy) haproxy); "
                                            "do echo $p $(cut -d' ' -f22 /proc/$p/stat); done"], timeout=10).stdout.split()
    return out


def lab_backends(**changes) -> dict:
    group_vars = INVENTORY / "group_vars" / "loadbalancers.yml"
    backends = yaml.safe_load(group_vars.read_text())["haproxy_l7_backends"]
    for name, backend in backends.items():
        hosts = changes.get(name, [server["name"] for server in backend["servers"]])
        backend["servers"] = [{"name": host, "address": ADDRESSES[host], "port": 80} for host in hosts]
    return backends


# --------------------------------------------------------------------------- operations
# Each: (lab, holder) -> {step: seconds, ...extra facts}; setup and restore steps that are not
# the operation itself run outside the timed steps but inside the probe (they must cost nothing
# either).
def op_drain_undrain(lab, holder):
    t0 = time.monotonic()
    playbook("lay7.ha.web_drain", {"lay7_web_host": "web2"})
    t1 = time.monotonic()
    time.sleep(2.0)
    t2 = time.monotonic()
    playbook("lay7.ha.web_drain", {"lay7_web_host": "web2", "lay7_web_action": "ready"})
    return {"drain_s": t1 - t0, "undrain_s": time.monotonic() - t2}


def op_rolling_update(lab, holder):
    tasks = tasks_file("restart_apache.yml", "- name: Restart Apache\n  ansible.builtin.systemd_service:\n"
                                             "    name: apache2\n    state: restarted\n")
    t0 = time.monotonic()
    playbook("lay7.ha.web_rolling_update", {"lay7_web_update_tasks": tasks})
    return {"rolling_update_s": time.monotonic() - t0}


def op_lb_maintenance(lab, holder):
    tasks = tasks_file("restart_haproxy.yml", "- name: Restart HAProxy\n  ansible.builtin.systemd_service:\n"
                                              "    name: haproxy\n    state: restarted\n")
    t0 = time.monotonic()
    playbook("lay7.ha.lb_maintenance", {"lay7_lb_host": holder, "lay7_lb_update_tasks": tasks})
    seconds = time.monotonic() - t0
    if holders(lab) != [holder]:
        raise RuntimeError(f"the VIP did not come back to {holder}: {holders(lab)}")
    return {"lb_maintenance_s": seconds}


def op_live_route_change(lab, holder):
    seed = yaml.safe_load((INVENTORY / "group_vars" / "loadbalancers.yml").read_text())["haproxy_l7_routes"]
    run_site({"haproxy_l7_routes": seed, "haproxy_l7_routing_mode": "map"}, tags="haproxy_l7", limit="loadbalancers")
    changed = seed + [{"name": "live", "path": "/live", "match": "prefix", "backend": "b_pool"}]
    before = workers(lab)
    t0 = time.monotonic()
    run_site({"haproxy_l7_routes": changed, "haproxy_l7_routing_mode": "map"}, tags="haproxy_l7", limit="loadbalancers")
    seconds = time.monotonic() - t0
    reloaded = workers(lab) != before
    run_site({}, tags="haproxy_l7", limit="loadbalancers")
    return {"live_route_change_s": seconds, "reloaded": reloaded}


def op_server_remove_add(lab, holder):
    t0 = time.monotonic()
    run_site({"haproxy_l7_backends": lab_backends(spare_pool=["web3"])}, tags="haproxy_l7", limit="loadbalancers")
    t1 = time.monotonic()
    run_site({}, tags="haproxy_l7", limit="loadbalancers")
    return {"remove_server_s": t1 - t0, "add_server_s": time.monotonic() - t1}


def _scrape(address: str, user: str, password: str) -> int:
    conn = http.client.HTTPConnection(address, 8404, timeout=2)
    try:
        token = base64.b64encode(f"{user}:{password}".encode()).decode()
        conn.request("GET", "/metrics", headers={"Authorization": "Basic " + token, "Connection": "close"})
        resp = conn.getresponse()
        resp.read()
        return resp.status
    except (OSError, http.client.HTTPException):
        return 0
    finally:
        conn.close()


def op_stats_rotation(lab, holder):
    user = yaml.safe_load((INVENTORY / "group_vars" / "loadbalancers.yml").read_text())["haproxy_l7_stats_user"]
    old = (INVENTORY / ".secrets" / "stats_password").read_text().split()[0]
    new = "Rot-" + secrets.token_urlsafe(18)
    creds = {"now": old}
    failed, scrapes = [], [0]
    done = threading.Event()

    def loop():
        while not done.is_set():
            for lb in LBS:
                status = _scrape(ADDRESSES[lb], user, creds["now"])
                scrapes[0] += 1
                if status != 200:
                    failed.append(status)
            done.wait(0.1)

    thread = threading.Thread(target=loop, daemon=True)
    thread.start()
    try:
        t0 = time.monotonic()
        run_site({"haproxy_l7_stats_password": new, "haproxy_l7_stats_previous_password": old}, tags="haproxy_l7", limit="loadbalancers")
        t1 = time.monotonic()
        creds["now"] = new
        run_site({"haproxy_l7_stats_password": new}, tags="haproxy_l7", limit="loadbalancers")
        t2 = time.monotonic()
    finally:
        done.set()
        thread.join(timeout=10)
        run_site({}, tags="haproxy_l7", limit="loadbalancers")
    return {"rotation_step1_s": t1 - t0, "rotation_step2_s": t2 - t1, "scrapes": scrapes[0], "scrapes_failed": len(failed)}


OPERATIONS = {
    "drain_undrain": ("lay7.ha.web_drain: drain web2, 2 s, ready again", op_drain_undrain),
    "rolling_update": ("lay7.ha.web_rolling_update restarting Apache on each web server", op_rolling_update),
    "lb_maintenance": ("lay7.ha.lb_maintenance on the VIP holder, restarting its HAProxy", op_lb_maintenance),
    "live_route_change": ("site.yml adding /live to a map-form table (applied live), then restored", op_live_route_change),
    "server_remove_add": ("site.yml removing web2 from spare_pool, then adding it back", op_server_remove_add),
    "stats_rotation": ("site.yml twice: new password with the old one accepted, then the new one only", op_stats_rotation),
}


def trial(lab: Lab, name: str) -> dict:
    holder = wait_steady(lab)
    probes = [Probe(vip_address(lab), 80, path, interval=INTERVAL, timeout=1.0, max_duration=900).start() for path in PATHS]
    try:
        time.sleep(1.0)
        facts = OPERATIONS[name][1](lab, holder)
        time.sleep(1.0)
    finally:
        results = [probe.stop() for probe in probes]
    out = {"holder": holder, **{k: (round(v, 2) if isinstance(v, float) else v) for k, v in facts.items()}}
    for kind in ("new", "keepalive"):
        sums = [r.summary(kind) for r in results]
        out[kind] = {
            "requests": sum(s["requests"] for s in sums),
            "failed": sum(s["failed"] for s in sums),
            "failure_window_s": max(s["failure_window_s"] for s in sums),
            "p99_latency_s": max(s["p99_latency_s"] or 0 for s in sums),
            "errors": {k: v for s in sums for k, v in s["errors"].items()},
        }
    return out


def worst(trials: list[dict]) -> dict:
    agg: dict = {}
    for kind in ("new", "keepalive"):
        agg[kind] = {
            "failed_max": max(t[kind]["failed"] for t in trials),
            "failure_window_max_s": max(t[kind]["failure_window_s"] for t in trials),
            "p99_latency_max_s": round(max(t[kind]["p99_latency_s"] for t in trials), 4),
        }
    for key in trials[0]:
        if key.endswith("_s") and key not in ("new", "keepalive"):
            agg[f"{key[:-2]}_max_s"] = max(t[key] for t in trials)
    for key in ("reloaded", "scrapes_failed"):
        if key in trials[0]:
            agg[key] = max(t[key] for t in trials)
    return agg


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--reuse", action="store_true", help="use the lab that is up (already converged)")
    ap.add_argument("--ops", default="", help="comma-separated operation names (default: all)")
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--output", type=pathlib.Path, default=RESULTS)
    args = ap.parse_args()
    chosen = [name for name in OPERATIONS if not args.ops or name in args.ops.split(",")]

    with lab_session(args.reuse) as lab:
        report: dict = {"measured_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
                        "machine": {"cpus": os.cpu_count()}, "repeat": args.repeat,
                        "probe": {"paths": list(PATHS), "interval_s": INTERVAL, "keepalive_connections": 16},
                        "operations": {}}
        for name in chosen:
            trials = []
            for i in range(args.repeat):
                out = trial(lab, name)
                trials.append(out)
                print(f"{name} #{i + 1}: new {out['new']['failed']} failed, keep-alive {out['keepalive']['failed']} failed, "
                      + ", ".join(f"{k} {v}" for k, v in out.items() if k not in ("new", "keepalive", "holder")), flush=True)
            report["operations"][name] = {"what": OPERATIONS[name][0], "worst": worst(trials), "trials": trials}
        args.output.parent.mkdir(parents=True, exist_ok=True)
        args.output.write_text(json.dumps(report, indent=2, sort_keys=True) + "\n")
        print(f"wrote {args.output}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
