#!/usr/bin/env python3
"""HTTPS benchmark: requests per HAProxy CPU-second over TLS, and a certificate rotation under load.

Throughput: wrk (16 connections, 10 s per trial, 3 trials, the lowest kept) sends requests
through the VIP; the HAProxy worker of the VIP holder is charged the CPU time it used (utime +
stime from /proc), so the figure is requests per second of one HAProxy core even though the
load generator and the lab share this machine's two cores. Scenarios:

* http_keepalive: plain HTTP, connections reused (the baseline);
* https_keepalive: HTTPS, connections reused (TLS costs only the record encryption);
* https_new_resumed: HTTPS, a new TLS connection per request (``Connection: close``) resuming
  the session from HAProxy's cache (wrk offers the previous session; HAProxy's own counters
  confirm the share of resumed handshakes).

Rotation: the default certificate (a new key too) is replaced through site.yml while the
open-loop probe sends HTTPS (new-connection and keep-alive) and HTTP requests; failed requests
and p99 latency per client kind, repeated, the worst kept.

Results: bench/results/tls.json (docs/tls.md quotes them).
Only lab addresses inside the lab's own network namespaces are contacted; every loop is bounded.

    python bench/bench_tls.py                  # fresh lab: up, converge, measure, down
    python bench/bench_tls.py --reuse          # a lab already up and converged
"""

from __future__ import annotations

import argparse
import json
import os
import pathlib
import re
import ssl
import subprocess
import sys
import tempfile
import time

ROOT = pathlib.Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import yaml  # noqa: E402
from bench_failover import INVENTORY, holders, lab_session, vip_address, wait_steady  # noqa: E402

from lab import Lab, pki, site  # noqa: E402
from lab.probe import Probe  # noqa: E402

RESULTS = ROOT / "bench" / "results" / "tls.json"
SOCKET = "/run/haproxy/admin.sock"
NAME = "www.lay7.test"
SCENARIOS = {
    "http_keepalive": ("http", []),
    "https_keepalive": ("https", []),
    "https_new_resumed": ("https", ["-H", "Connection: close"]),
}


def worker_cpu(lab: Lab, lb: str) -> float:
    """CPU seconds (user + system) the current HAProxy worker(s) of a load balancer used so far."""
    out = lab.exec(lb, ["sh", "-c", "for p in $(pgrep -P $(systemctl show -p MainPID --value haproxy) haproxy); "
                                    "do cut -d' ' -f14,15 /proc/$p/stat; done"], timeout=10).stdout.split()
    ticks = os.sysconf("SC_CLK_TCK")
    return sum(int(v) for v in out) / ticks


def ssl_counters(lab: Lab, lb: str) -> dict:
    out = lab.exec(lb, ["sh", "-c", f"echo 'show info' | socat stdio {SOCKET}"], timeout=10).stdout
    wanted = ("CumSslConns", "SslCacheLookups", "SslCacheMisses")
    return {k: int(v) for k, v in re.findall(r"^(\w+): (\d+)$", out, re.MULTILINE) if k in wanted}


def wrk(vip: str, scheme: str, options: list[str], seconds: int) -> dict:
    url = f"{scheme}://{vip}/"
    out = subprocess.run(["wrk", "-t2", "-c16", f"-d{seconds}s", "-H", f"Host: {NAME}", *options, url],
                         capture_output=True, text=True, timeout=seconds + 30, check=True).stdout
    requests = int(re.search(r"(\d+) requests in", out).group(1))
    errors = re.search(r"Socket errors: (.*)", out)
    non2xx = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
    return {"requests": requests, "socket_errors": errors.group(1) if errors else "",
            "non_2xx": int(non2xx.group(1)) if non2xx else 0}


def throughput(lab: Lab, name: str, seconds: int) -> dict:
    scheme, options = SCENARIOS[name]
    holder = wait_steady(lab)
    vip = vip_address(lab)
    cpu0, ssl0 = worker_cpu(lab, holder), ssl_counters(lab, holder)
    t0 = time.monotonic()
    load = wrk(vip, scheme, options, seconds)
    elapsed = time.monotonic() - t0
    cpu = worker_cpu(lab, holder) - cpu0
    ssl1 = ssl_counters(lab, holder)
    out = {"holder": holder, **load, "seconds": round(elapsed, 2), "haproxy_cpu_s": round(cpu, 2),
           "requests_per_s": round(load["requests"] / elapsed),
           "requests_per_haproxy_cpu_s": round(load["requests"] / cpu) if cpu > 0 else None}
    conns = ssl1.get("CumSslConns", 0) - ssl0.get("CumSslConns", 0)
    if scheme == "https":
        lookups = ssl1.get("SslCacheLookups", 0) - ssl0.get("SslCacheLookups", 0)
        misses = ssl1.get("SslCacheMisses", 0) - ssl0.get("SslCacheMisses", 0)
        out.update(tls_connections=conns, resumed_share=round((lookups - misses) / conns, 3) if conns else None)
    return out


def rotation(lab: Lab, work: pathlib.Path) -> dict:
    """Replace the default certificate through site.yml under the probe, then put the
    inventory's back the same way (both are rotations; each is measured)."""
    group_vars = yaml.safe_load((INVENTORY / "group_vars" / "loadbalancers.yml").read_text())
    new = pki.issue("www", [NAME, "lay7.test"], work)

    def certificates(cert: pathlib.Path, key: pathlib.Path) -> list[dict]:
        out = []
        for entry in group_vars["haproxy_l7_tls_certificates"]:
            entry = dict(entry)
            mine = entry["name"] == "www"
            entry.update(certificate_file=str(cert if mine else pki.TLS_DIR / f"{entry['name']}.crt"),
                         key_file=str(key if mine else pki.TLS_DIR / f"{entry['name']}.key"))
            out.append(entry)
        return out

    report = {}
    for step, extra in (("rotate", {"haproxy_l7_tls_certificates": certificates(new.cert, new.key)}), ("restore", {})):
        wait_steady(lab)
        vip = vip_address(lab)
        ctx = ssl.create_default_context(cafile=str(pki.TLS_DIR / "ca.crt"))
        probes = {
            "https": Probe(vip, 443, "/", interval=0.025, timeout=1.0, max_duration=900, tls=ctx,
                           server_name=NAME, host_header=NAME).start(),
            "http": Probe(vip, 80, "/a/rotation", interval=0.01, timeout=1.0, max_duration=900).start(),
        }
        t0 = time.monotonic()
        try:
            time.sleep(1.0)
            done = site.run_site(INVENTORY, extra, tags="haproxy_l7_configure", limit="loadbalancers", timeout=900)
            if done.returncode != 0:
                raise RuntimeError(f"site.yml failed:\n{done.stdout[-3000:]}")
            time.sleep(1.0)
        finally:
            results = {name: probe.stop() for name, probe in probes.items()}
        report[step] = {"seconds": round(time.monotonic() - t0, 1),
                        **{f"{name} {kind}": results[name].summary(kind) for name in results for kind in ("new", "keepalive")}}
    return report


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--reuse", action="store_true", help="use the lab that is up (already converged)")
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--seconds", type=int, default=10)
    ap.add_argument("--output", type=pathlib.Path, default=RESULTS)
    args = ap.parse_args()
    with lab_session(args.reuse) as lab:
        report: dict = {"measured_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
                        "machine": {"cpus": os.cpu_count()}, "repeat": args.repeat,
                        "load": {"tool": "wrk", "connections": 16, "seconds": args.seconds}, "throughput": {},
                        "rotation": {}}
        for name in SCENARIOS:
            trials = [throughput(lab, name, args.seconds) for _ in range(args.repeat)]
            for t in trials:
                print(f"{name}: {t}", flush=True)
            lowest = min(trials, key=lambda t: t["requests_per_haproxy_cpu_s"] or 0)
            report["throughput"][name] = {"worst": lowest, "trials": trials}
        with tempfile.TemporaryDirectory() as tmp:
            trials = [rotation(lab, pathlib.Path(tmp) / str(i)) for i in range(args.repeat)]
        for t in trials:
            print("rotation: " + ", ".join(f"{step} {k} {v['failed']} failed p99 {v['p99_latency_s']:.3f}s"
                                            for step, r in t.items() for k, v in r.items() if isinstance(v, dict)),
                  flush=True)
        report["rotation"] = {"worst": max(trials, key=lambda t: sum(v["failed"] for r in t.values()
                                                                      for v in r.values() if isinstance(v, dict))),
                              "trials": trials}
        report["holders"] = holders(lab)
        args.output.parent.mkdir(parents=True, exist_ok=True)
        args.output.write_text(json.dumps(report, indent=2, sort_keys=True) + "\n")
        print(f"wrote {args.output}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
