#!/usr/bin/env python3
"""Failover benchmark: what clients see through the VIP while faults are injected on the lab.

Each fault is repeated (default 5 times). A trial: wait for the steady state (one VIP holder,
the routes answering), start the open-loop probe (lab/probe.py: a request every 5 ms from a
new-connection client and, beside it, from 16 keep-alive connections), inject the fault, keep
probing while the topology reacts, stop the probe, undo the fault outside the measurement and
wait for the steady state again. Reported per fault and client kind, worst trial kept: failed
requests, failure window (first to last failed request start), p99 and max latency, plus how
often the VIP moved. Then a soak: both cores saturated by busy loops for 10 minutes while the
VRRP transitions are counted on both load balancers.

Results: bench/results/failover.json; a timeline picture per fault kind: docs/failover-timeline.png.
Only lab addresses inside the lab's own network namespaces are probed; every loop is bounded.

    python bench/bench_failover.py                 # fresh lab: up, converge, measure, down
    python bench/bench_failover.py --reuse         # a lab already up and converged
    python bench/bench_failover.py --faults haproxy_kill,reloads_20 --repeat 2 --soak 0
"""

from __future__ import annotations

import argparse
import contextlib
import fcntl
import json
import os
import pathlib
import subprocess
import sys
import time
from dataclasses import dataclass
from typing import Callable

ROOT = pathlib.Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from lab import Lab, observe, site  # noqa: E402
from lab.probe import Probe, ProbeResult  # noqa: E402
from lab.topology import load  # noqa: E402
from lab.vrrp import VRRP_MULTICAST, sender_argv  # noqa: E402

_TOPOLOGY = load()

RESULTS = ROOT / "bench" / "results" / "failover.json"
PICTURE = ROOT / "docs" / "failover-timeline.png"
LOCK = "/run/lay7-lab.lock"
INVENTORY = ROOT / "inventory" / "lab"
LBS = tuple(_TOPOLOGY.groups["loadbalancers"])
IFACE = _TOPOLOGY.interface
STEADY_TIMEOUT = 120.0


# --------------------------------------------------------------------------- topology state
def vip_address(lab: Lab) -> str:
    return str(lab.topo.vip)


def holders(lab: Lab) -> list[str]:
    return observe.vip_holders(lab, list(LBS), vip_address(lab), IFACE)


def http_ok(address: str, path: str, timeout: float = 1.0) -> bool:
    import http.client
    try:
        conn = http.client.HTTPConnection(address, 80, timeout=timeout)
        conn.request("GET", path, headers={"Connection": "close"})
        ok = conn.getresponse().status == 200
        conn.close()
        return ok
    except (OSError, http.client.HTTPException):
        return False


def wait_steady(lab: Lab, timeout: float = STEADY_TIMEOUT) -> str:
    """One holder, every host running, HAProxy active on both load balancers, all three web
    servers answering through the VIP and their servers UP in HAProxy."""
    t0 = time.monotonic()
    while time.monotonic() - t0 < timeout:
        held = holders(lab)
        if len(held) == 1 and all(lab.is_running(h) for h in lab.topo.host_names):
            active = all(lab.exec(lb, ["systemctl", "is-active", "--quiet", "haproxy", "keepalived"],
                                  timeout=10).returncode == 0 for lb in LBS)
            vip = vip_address(lab)
            # The other node must be ready to take over (BACKUP), not still booting (FAULT).
            ready = all(observe.vrrp_state(lab, lb) == ("MASTER" if lb == held[0] else "BACKUP") for lb in LBS)
            if active and ready and all(http_ok(vip, p) for p in ("/", "/a/", "/b/")) and servers_up(lab, held[0]):
                return held[0]
        time.sleep(0.5)
    raise RuntimeError(f"no steady state within {timeout:.0f} s (holders: {holders(lab)})")


def servers_up(lab: Lab, lb: str) -> bool:
    out = lab.exec(lb, ["sh", "-c", "echo 'show servers state' | socat - UNIX-CONNECT:/run/haproxy/admin.sock"],
                   timeout=10).stdout
    # After the format version line: "be_id be_name srv_id srv_name srv_addr srv_op_state ..."
    rows = [line.split() for line in out.splitlines()[1:] if line[:1].isdigit()]
    states = [row[5] for row in rows if len(row) > 5]
    return bool(states) and all(s == "2" for s in states)


# --------------------------------------------------------------------------- faults
@dataclass
class Fault:
    name: str
    what: str
    inject: Callable[[Lab, str, Probe], None]      # (lab, holder, probe)
    restore: Callable[[Lab, str], None]            # (lab, holder)
    path: str = "/"
    timeout: float = 1.0                           # client timeout of the probe
    settle: float = 3.0                            # probing after the injection returned
    planned: bool = False


def _sh(lab: Lab, host: str, command: str, timeout: float = 60) -> None:
    lab.exec(host, ["sh", "-c", command], timeout=timeout)


def _other(holder: str) -> str:
    return LBS[1] if holder == LBS[0] else LBS[0]


# A runtime drop-in (gone at the next boot) that keeps systemd from restarting HAProxy.
_NO_RESTART = "/run/systemd/system/haproxy.service.d/lay7-bench-no-restart.conf"


def _kill_for_good(lab: Lab, host: str) -> None:
    """SIGKILL HAProxy with systemd's restart switched off first: the load balancer stays down."""
    _sh(lab, host, f"mkdir -p {_NO_RESTART.rsplit('/', 1)[0]} && printf '[Service]\\nRestart=no\\n' > {_NO_RESTART}"
                   " && systemctl daemon-reload")
    _sh(lab, host, "kill -9 $(cat /run/haproxy.pid)")


def _restart_allowed(lab: Lab, host: str) -> None:
    _sh(lab, host, f"rm -f {_NO_RESTART} && systemctl daemon-reload && systemctl start haproxy")


def _boot_if_down(lab: Lab, host: str) -> None:
    if not lab.is_running(host):
        lab.boot(host)


def _poweroff(lab: Lab, host: str) -> None:
    """systemctl poweroff inside the host: a clean shutdown, then the container exits."""
    with contextlib.suppress(subprocess.TimeoutExpired):
        lab.exec(host, ["systemctl", "poweroff"], timeout=10)
    deadline = time.monotonic() + 60
    while lab.is_running(host) and time.monotonic() < deadline:
        time.sleep(0.1)


def _reloads(lab: Lab, host: str, count: int = 20) -> None:
    for _reload in range(count):
        lab.exec(host, ["systemctl", "reload", "haproxy"], timeout=30)
        time.sleep(0.25)


_ROUTE_TOGGLE = {"n": 0}


def _deploy_routes(lab: Lab, holder: str) -> None:
    """A real site.yml run that changes the route table (adds /c, then removes it again)."""
    _ROUTE_TOGGLE["n"] += 1
    routes = site.seed_routes()
    if _ROUTE_TOGGLE["n"] % 2:
        routes.append({"name": "c", "path": "/c", "match": "prefix", "backend": "b_pool"})
    run_site({"haproxy_l7_routes": routes}, tags="haproxy_l7", limit="loadbalancers")


def _forge(lab: Lab, holder: str) -> None:
    """8 s of adverts with our router id and priority 254 from web1, to both load balancers and
    to the VRRP multicast group."""
    topo = lab.topo
    src = str(topo.host("web1").address)
    targets = [str(topo.host(lb).address) for lb in LBS] + [VRRP_MULTICAST]
    vrid = int(lab.exec(holder, ["sed", "-n", "s/^ *virtual_router_id //p", "/etc/keepalived/keepalived.conf"],
                        timeout=10).stdout)
    lab.exec("web1", sender_argv(src, vrid, 254, 8.0, str(topo.vip), targets), timeout=30)


def _partition_and_heal(lab: Lab, holder: str, probe: Probe) -> None:
    """The load balancers stop hearing each other for 2 s (both take the VIP), then hear each
    other again: what the split and the heal cost clients."""
    lab.partition(*LBS)
    time.sleep(2.0)
    probe.mark("heal")
    lab.unpartition()


FAULTS = [
    Fault("haproxy_kill", "HAProxy SIGKILLed on the VIP holder (systemd restarts it)",
          lambda lab, h, p: _sh(lab, h, "kill -9 $(cat /run/haproxy.pid)"),
          lambda lab, h: None),
    Fault("haproxy_kill_stays_down", "HAProxy SIGKILLed on the VIP holder, not restarted",
          lambda lab, h, p: _kill_for_good(lab, h), lambda lab, h: _restart_allowed(lab, h)),
    Fault("holder_poweroff", "VIP holder powered off (PID 1 SIGKILLed)",
          lambda lab, h, p: lab.kill(h), lambda lab, h: _boot_if_down(lab, h)),
    Fault("holder_link_cut", "VIP holder's cable pulled",
          lambda lab, h, p: lab.cut(h), lambda lab, h: lab.heal(h)),
    Fault("haproxy_stop", "systemctl stop haproxy on the holder (planned)",
          lambda lab, h, p: lab.exec(h, ["systemctl", "stop", "haproxy"], timeout=60),
          lambda lab, h: lab.exec(h, ["systemctl", "start", "haproxy"], timeout=60), planned=True),
    Fault("holder_poweroff_planned", "systemctl poweroff on the holder, then booted again (planned)",
          lambda lab, h, p: (_poweroff(lab, h), p.mark("boot"), lab.boot(h)),
          lambda lab, h: _boot_if_down(lab, h), planned=True),
    Fault("reloads_20", "20 systemctl reload haproxy on the holder, 0.25 s apart (planned)",
          lambda lab, h, p: _reloads(lab, h), lambda lab, h: None, planned=True),
    Fault("route_deploy", "site.yml --tags haproxy_l7 changing the route table (planned)",
          lambda lab, h, p: _deploy_routes(lab, h), lambda lab, h: None, planned=True, settle=1.0),
    Fault("keepalived_reload", "systemctl reload keepalived on both (planned)",
          lambda lab, h, p: [lab.exec(lb, ["systemctl", "reload", "keepalived"], timeout=30) for lb in LBS],
          lambda lab, h: None, planned=True),
    Fault("keepalived_restart_backup", "systemctl restart keepalived on the backup (planned)",
          lambda lab, h, p: lab.exec(_other(h), ["systemctl", "restart", "keepalived"], timeout=60),
          lambda lab, h: None, planned=True),
    Fault("keepalived_restart_holder", "systemctl restart keepalived on the holder (planned)",
          lambda lab, h, p: lab.exec(h, ["systemctl", "restart", "keepalived"], timeout=60),
          lambda lab, h: None, planned=True),
    Fault("backup_poweroff_planned", "systemctl poweroff on the backup, then booted (planned)",
          lambda lab, h, p: (_poweroff(lab, _other(h)), p.mark("boot"), lab.boot(_other(h))),
          lambda lab, h: _boot_if_down(lab, _other(h)), planned=True),
    Fault("lb_partition", "the load balancers cannot hear each other for 2 s, then can again",
          _partition_and_heal, lambda lab, h: lab.unpartition()),
    Fault("forged_adverts", "8 s of forged adverts (priority 254, our router id) from web1",
          lambda lab, h, p: _forge(lab, h), lambda lab, h: None),
    Fault("apache_kill", "Apache SIGKILLed on web2 while /a/ is probed",
          lambda lab, h, p: lab.exec("web2", ["systemctl", "kill", "-s", "KILL", "apache2"], timeout=30),
          lambda lab, h: lab.exec("web2", ["systemctl", "start", "apache2"], timeout=60),
          path="/a/", timeout=10.0, settle=4.0),
    Fault("apache_restart", "systemctl restart apache2 on web2 while /a/ is probed",
          lambda lab, h, p: lab.exec("web2", ["systemctl", "restart", "apache2"], timeout=60),
          lambda lab, h: None, path="/a/", timeout=10.0, settle=4.0, planned=True),
    Fault("web_link_cut", "web2's cable pulled while /a/ is probed",
          lambda lab, h, p: lab.cut("web2"), lambda lab, h: lab.heal("web2"),
          path="/a/", timeout=10.0, settle=8.0),
    Fault("web_poweroff", "web2 powered off while /a/ is probed",
          lambda lab, h, p: lab.kill("web2"), lambda lab, h: _boot_if_down(lab, "web2"),
          path="/a/", timeout=10.0, settle=4.0),
]


# --------------------------------------------------------------------------- running
def run_site(extra: dict, tags: str | None = None, limit: str | None = None) -> None:
    done = site.run_site(INVENTORY, extra, tags=tags, limit=limit, timeout=900)
    if done.returncode != 0:
        raise RuntimeError(f"site.yml failed ({done.returncode}):\n{done.stdout[-3000:]}")


@contextlib.contextmanager
def lab_session(reuse: bool):
    """The lab for one benchmark run, under the lab lock: booted and converged here (and taken
    down at the end) unless ``reuse`` says one is up and converged already."""
    lock = open(LOCK, "w")  # noqa: SIM115 - held for the whole run
    fcntl.flock(lock, fcntl.LOCK_EX)
    lab = Lab()
    started_here = False
    try:
        if not reuse:
            lab.up()
            started_here = True
            run_site({})
        yield lab
    finally:
        if started_here:
            lab.down()
        lock.close()


def trial(lab: Lab, fault: Fault) -> tuple[dict, ProbeResult]:
    holder = wait_steady(lab)
    since = time.time()
    probe = Probe(vip_address(lab), 80, fault.path, timeout=fault.timeout, max_duration=300).start()
    try:
        time.sleep(1.0)
        probe.mark(fault.name)
        fault.inject(lab, holder, probe)
        probe.mark("injected")
        time.sleep(fault.settle)
    except BaseException:
        try:
            probe.stop()
        finally:
            restore_and_wait(lab, fault, holder)   # never leave a fault behind on a reused lab
        raise
    result = probe.stop()
    new_holder = restore_and_wait(lab, fault, holder)
    out = {"holder_before": holder, "holder_after": new_holder, "vip_moves": observe.masters_since(lab, list(LBS), since)}
    for kind in ("new", "keepalive"):
        s = result.summary(kind)
        out[kind] = {k: s[k] for k in ("requests", "failed", "failure_window_s", "first_failure_s",
                                       "p99_latency_s", "max_latency_s", "max_start_lag_s")}
        out[kind]["errors"] = dict(s["errors"])
    return out, result


def restore_and_wait(lab: Lab, fault: Fault, holder: str) -> str:
    """Undo the fault, then wait for the steady state; returns the VIP holder."""
    try:
        fault.restore(lab, holder)
    finally:
        new_holder = wait_steady(lab)
    return new_holder


def worst(trials: list[dict]) -> dict:
    """Each figure's worst value over the trials (not necessarily all from one trial)."""
    agg: dict = {"vip_moves_max": max(t["vip_moves"] for t in trials)}
    for kind in ("new", "keepalive"):
        rows = [t[kind] for t in trials]
        agg[kind] = {
            "failed_max": max(r["failed"] for r in rows),
            "failed_total": sum(r["failed"] for r in rows),
            "failure_window_max_s": max(r["failure_window_s"] for r in rows),
            "p99_latency_max_s": max(r["p99_latency_s"] or 0 for r in rows),
            "max_latency_s": max(r["max_latency_s"] or 0 for r in rows),
            "probe_max_start_lag_s": max(r["max_start_lag_s"] or 0 for r in rows),
        }
    return agg


def soak(lab: Lab, seconds: float) -> dict:
    """Both cores busy with lowest-priority-free busy loops (nice 0, like any workload) for the
    whole time; the VRRP transitions on both load balancers are counted."""
    holder = wait_steady(lab)
    since = time.time()
    loops = [subprocess.Popen(["timeout", str(int(seconds)), sys.executable, "-c", "while True: pass"])
             for _ in range(os.cpu_count() or 2)]
    try:
        for p in loops:
            p.wait(timeout=seconds + 30)
    finally:
        for p in loops:
            if p.poll() is None:
                p.kill()
    return {"seconds": seconds, "busy_loops": len(loops), "holder_before": holder,
            "holder_after": holders(lab), "vrrp_transitions": observe.masters_since(lab, list(LBS), since)}


def picture(samples: dict[str, ProbeResult], path: pathlib.Path) -> None:
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    names = list(samples)
    fig, axes = plt.subplots(len(names), 1, figsize=(10, 2.2 * len(names)), sharex=False)
    for ax, name in zip(axes if len(names) > 1 else [axes], names):
        res = samples[name]
        t_fault = next((m.offset_s for m in res.marks if m.label == name), 0.0)
        for kind, colour in (("new", "tab:blue"), ("keepalive", "tab:green")):
            ok = [(r.scheduled_s - t_fault, r.latency_s * 1000) for r in res.records
                  if r.kind == kind and r.ok and r.latency_s is not None]
            if ok:
                ax.scatter(*zip(*ok), s=2, color=colour, label=f"{kind}: answered")
            bad = [r.scheduled_s - t_fault for r in res.records if r.kind == kind and not r.ok]
            if bad:
                ax.scatter(bad, [res.timeout * 1000] * len(bad), s=12, marker="x", color="tab:red",
                           label=f"{kind}: failed ({len(bad)})")
        for m in res.marks:
            ax.axvline(m.offset_s - t_fault, color="grey", lw=0.8, ls="--")
        ax.set_yscale("log")
        ax.set_ylabel("latency ms")
        ax.set_title(name, fontsize=9, loc="left")
        ax.legend(fontsize=7, loc="upper right", markerscale=3)
    axes_list = axes if len(names) > 1 else [axes]
    axes_list[-1].set_xlabel("seconds from the fault (dashed: fault, end of injection)")
    fig.tight_layout()
    fig.savefig(path, dpi=110)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--reuse", action="store_true", help="use the lab that is up (already converged)")
    ap.add_argument("--faults", default="", help="comma-separated fault names (default: all)")
    ap.add_argument("--repeat", type=int, default=5)
    ap.add_argument("--soak", type=float, default=600.0, help="soak seconds (0: none)")
    ap.add_argument("--no-picture", action="store_true")
    ap.add_argument("--output", type=pathlib.Path, default=RESULTS,
                    help="results file (a partial run should not replace the full one)")
    args = ap.parse_args()
    chosen = [f for f in FAULTS if not args.faults or f.name in args.faults.split(",")]

    with lab_session(args.reuse) as lab:
        report: dict = {"measured_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
                        "machine": {"cpus": os.cpu_count()}, "repeat": args.repeat,
                        "probe": {"interval_s": 0.005, "keepalive_connections": 16}, "faults": {}}
        samples: dict[str, ProbeResult] = {}
        for fault in chosen:
            trials = []
            for i in range(args.repeat):
                out, result = trial(lab, fault)
                trials.append(out)
                print(f"{fault.name} #{i + 1}: new {out['new']['failed']} failed "
                      f"(window {out['new']['failure_window_s']:.3f} s), keep-alive {out['keepalive']['failed']} "
                      f"failed (window {out['keepalive']['failure_window_s']:.3f} s), VIP moves {out['vip_moves']}",
                      flush=True)
                worst_so_far = max(trials, key=lambda t: t["new"]["failed"] + t["keepalive"]["failed"])
                if out is worst_so_far:
                    samples[fault.name] = result
            report["faults"][fault.name] = {"what": fault.what, "planned": fault.planned, "path": fault.path,
                                            "client_timeout_s": fault.timeout, "worst": worst(trials),
                                            "trials": trials}
        if args.soak > 0:
            report["soak"] = soak(lab, args.soak)
            print(f"soak: {report['soak']}", flush=True)
        args.output.parent.mkdir(parents=True, exist_ok=True)
        args.output.write_text(json.dumps(report, indent=2, sort_keys=True) + "\n")
        if samples and not args.no_picture:
            picture(samples, PICTURE)
        print(f"wrote {args.output}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
