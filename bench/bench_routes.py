#!/usr/bin/env python3
"""Routing cost of the compiled route table on the real HAProxy: ACL form vs map form.

For each table size and form, HAProxy (1 thread) runs on 127.0.0.1 with the compiled
frontend; every backend answers by itself (``http-request return``), so the number measured
is HAProxy's per-request cost, dominated by routing, not a backend's speed. wrk (1 thread,
32 keep-alive connections, bounded duration) drives two request kinds:

* ``miss``: a path no route matches, so the ACL form evaluates every rule (worst case);
* ``hit``:  a path matching the lowest-precedence route (the last ``use_backend``).

Results go to bench/results/routes.json; docs/routing.md records them and the map_threshold
they justify.

Two more measurements go to bench/results/routes-compile.json (``--only compile,check``):

* ``compile``: seconds route_compile takes for 1,000 to 10,000 routes of several mixes;
* ``check``: seconds ``haproxy -c`` takes for the acl form (seed-style backends, every pool
  with a fallback) and for the map form with many rule routes (wildcard host and methods), by the
  number of frontend lines; they justify MAX_FRONTEND_LINES in plugin_utils/_routes.py. Then
  the same for what route_compile emits for 10,000 routes of each kind (exact-host routes,
  which the map form keeps in host maps, a realistic mix and the issue's mix of methods,
  regexes, exact and wildcard hosts).

One more goes to bench/results/routes-headers.json (``--only headers``): HAProxy's CPU per
request for 5,000 routes of which 500 match a header (``X-Tenant``, inside the path of a plain
route), in the map form, where those 500 stay HAProxy rules evaluated on every request, next to
the same 5,000 routes without the header matches (all map keys); the acl form of either table
is recorded as refused when it passes MAX_FRONTEND_LINES. Request kinds: a miss, a hit on a plain
route and a hit on a header route (the header sent).

Only loopback is used. Run: ``make bench`` or ``python bench/bench_routes.py``.
"""

from __future__ import annotations

import argparse
import json
import os
import pathlib
import platform
import re
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time

ROOT = pathlib.Path(__file__).resolve().parents[1]
RESULTS = ROOT / "bench" / "results" / "routes.json"
COMPILE_RESULTS = ROOT / "bench" / "results" / "routes-compile.json"
HEADERS_RESULTS = ROOT / "bench" / "results" / "routes-headers.json"
HAPROXY = shutil.which("haproxy") or "/usr/sbin/haproxy"
WRK = shutil.which("wrk") or "/usr/bin/wrk"
TASKSET = shutil.which("taskset")
CLK_TCK = os.sysconf("SC_CLK_TCK")
LOOPBACK = "127.0.0.1"


def _import_compiler():
    coll = ROOT / ".collections"
    if not (coll / "ansible_collections" / "lay7" / "ha").exists():
        coll = pathlib.Path(tempfile.mkdtemp(prefix="lay7-ha-bench-"))
        (coll / "ansible_collections" / "lay7").mkdir(parents=True)
        (coll / "ansible_collections" / "lay7" / "ha").symlink_to(ROOT)
    sys.path.insert(0, str(coll))
    from ansible_collections.lay7.ha.plugins.plugin_utils import _routes

    return _routes


def free_port() -> int:
    with socket.socket() as s:
        s.bind((LOOPBACK, 0))
        return s.getsockname()[1]


def table(n: int) -> tuple:
    """n routes over 8 backends: two thirds prefixes of varied depth, one third exact paths,
    a realistic mix for a path-routed site. Every backend has a fallback, as in the seed."""
    names = [f"pool{i}" for i in range(8)]
    backends = {
        name: {"servers": [{"name": "s1", "address": "192.0.2.1"}], "fallback": names[(i + 1) % len(names)]}
        for i, name in enumerate(names)
    }
    backends["main"] = {"servers": [{"name": "s1", "address": "192.0.2.1"}], "fallback": "pool0"}
    routes = []
    for i in range(n):
        if i % 3 == 2:
            routes.append({"name": f"e{i}", "path": f"/api/v{i % 7}/item{i}", "match": "exact", "backend": names[i % 8]})
        else:
            depth = "/sub" * (i % 3)
            routes.append({"name": f"p{i}", "path": f"/svc{i}{depth}", "backend": names[i % 8]})
    return routes, backends


def mixed_table(n: int, conditioned_every: int = 8) -> tuple:
    """n routes of every kind (as in the unit test): exact paths and prefixes, and every
    ``conditioned_every``-th route with a host, a wildcard host and methods, methods, or a regex."""
    routes, backends = table(0)
    names = sorted(b for b in backends if b != "main")
    for i in range(n):
        route = {"name": f"r{i}", "backend": names[i % 8]}
        if conditioned_every and i % conditioned_every == 0:
            kind = (i // conditioned_every) % 4
            if kind == 0:
                route.update(path=f"/h{i % 50}", host=f"h{i}.example.com")
            elif kind == 1:
                route.update(path=f"/w{i}", host=f"*.t{i}.example.com", methods=["GET", "HEAD"])
            elif kind == 2:
                route.update(path=f"/m{i}/x", methods=["POST", "PUT"])
            else:
                route.update(path=f"/rx{i}/[0-9]+(/[a-z]+)?", match="regex")
        elif i % 3 == 0:
            route.update(path=f"/api/v{i % 7}/item{i}", match="exact")
        else:
            route.update(path=f"/svc{i}" + "/sub" * (i % 4))
        routes.append(route)
    return routes, backends


def _host_methods_table(n: int, name: str, host: str) -> tuple:
    """n routes named ``name`` + index with a host (``host`` formatted with the index), two methods and a
    prefix: four ACL lines and a rule each, over the same backends."""
    backends = table(0)[1]
    names = sorted(b for b in backends if b != "main")
    routes = [
        {"name": f"{name}{i}", "host": host.format(i), "path": f"/p{i % 7}/x", "methods": ["GET", "POST"], "backend": names[i % 8]}
        for i in range(n)
    ]
    return routes, backends


def conditioned_table(n: int) -> tuple:
    """The costliest shape per route in the acl form: an exact host, two methods and a prefix."""
    return _host_methods_table(n, "h", "h{}.example.com")


def wildcard_conditioned_table(n: int) -> tuple:
    """The costliest shape that stays a rule in the map form: a wildcard host, two methods and
    a prefix (with an exact host the map form keys it instead)."""
    return _host_methods_table(n, "w", "*.t{}.example.com")


def host_table(n: int) -> tuple:
    """n exact-host routes, one host on / each (the issue's shape: 24 s to compile, then refused)."""
    return [{"name": f"h{i}", "host": f"h{i}.example.com", "path": "/", "backend": f"pool{i % 8}"} for i in range(n)], table(0)[1]


def host_sites_table(n: int) -> tuple:
    """n exact-host routes, four per host: / and /api prefixes, /api/v1/status and /login exact."""
    shapes = [("/", "prefix"), ("/api", "prefix"), ("/api/v1/status", "exact"), ("/login", "exact")]
    routes = []
    for i in range(n):
        path, match = shapes[i % 4]
        routes.append({"name": f"h{i}", "host": f"site{i // 4}.example.com", "path": path, "match": match, "backend": f"pool{i % 8}"})
    return routes, table(0)[1]


def _seed_tables():
    """The unit tests' table generators (tests/unit/plugins/filter/seed_tables.py), so the
    tables measured here are exactly the ones the unit tests bound."""
    tables = str(ROOT / "tests" / "unit" / "plugins" / "filter")
    if tables not in sys.path:
        sys.path.insert(0, tables)
    import seed_tables  # noqa: E402 - found through the path just added

    return seed_tables


def realistic_mix(n: int) -> tuple:
    """n routes of the unit tests' realistic mix (40% exact host, 10% methods, 5% regex, 5%
    wildcard host, the rest paths) over the benchmark's backends."""
    backends = table(0)[1]
    return _seed_tables().realistic_mix_routes(n, sorted(b for b in backends if b != "main")), backends


def issue_mix(n: int) -> tuple:
    """n routes of the "any mix" (30% methods, 10% regex, 40% exact host, 5% wildcard
    host), as the unit tests build it, over the benchmark's backends."""
    backends = table(0)[1]
    return _seed_tables().issue_mix_routes(n, sorted(b for b in backends if b != "main")), backends


def method_table(n: int) -> tuple:
    """n routes with methods: half with an exact host, exact and prefix paths."""
    routes, backends = table(0)
    names = sorted(b for b in backends if b != "main")
    verbs = [["GET"], ["POST", "PUT"], ["GET", "HEAD"], ["DELETE"]]
    for i in range(n):
        route = {"name": f"m{i}", "path": f"/m{i}" + "/sub" * (i % 3), "methods": verbs[i % 4], "backend": names[i % 8]}
        if i % 2:
            route["host"] = f"app{i % 997}.example.com"
        if i % 3 == 0:
            route["match"] = "exact"
        routes.append(route)
    return routes, backends


def regex_table(n: int) -> tuple:
    """n regex routes without methods, one in four with an exact host."""
    routes, backends = table(0)
    names = sorted(b for b in backends if b != "main")
    for i in range(n):
        route = {"name": f"x{i}", "path": f"/rx{i}/[0-9]+(/[a-z]+)?", "match": "regex", "backend": names[i % 8]}
        if i % 4 == 0:
            route["host"] = f"app{i % 997}.example.com"
        routes.append(route)
    return routes, backends


# Tables compiled exactly as route_compile emits them (mode auto), for compile and haproxy -c.
COMPILED_KINDS = {
    "prefix+exact": table,
    "mixed (1 in 8 host/methods/regex)": lambda n: mixed_table(n, 8),
    "exact-host routes on /": host_table,
    "exact-host sites (4 routes per host)": host_sites_table,
    "realistic mix (40% host, 10% methods, 5% regex, 5% wildcard)": realistic_mix,
    "issue mix (30% methods, 10% regex, 40% exact host, 5% wildcard)": issue_mix,
    "methods only (half with an exact host)": method_table,
    "regex only (a quarter with an exact host)": regex_table,
}


def measure_compile(routes_mod, sizes: list, repeat: int) -> list:
    """Seconds route_compile takes (median of ``repeat``), by table kind and size."""
    kinds = COMPILED_KINDS
    out = []
    for kind, make in kinds.items():
        for n in sizes:
            routes, backends = make(n)
            times, verdict = [], "compiled"
            for _run in range(repeat):
                start = time.perf_counter()
                try:
                    mode = routes_mod.compile_routes(routes, backends, "main")["mode"]
                    verdict = f"compiled ({mode} form)"
                except Exception as exc:  # noqa: BLE001 - a refusal is a result here
                    verdict = f"refused: {str(exc)[:90]}"
                times.append(time.perf_counter() - start)
            res = {"kind": kind, "routes": n, "seconds": round(statistics.median(times), 4), "verdict": verdict}
            print(f"compile {kind:<45} {n:>6} routes  {res['seconds']:>7.3f} s  {verdict[:60]}", flush=True)
            out.append(res)
    return out


def haproxy_check_seconds(frontend: list, maps: list, backends: dict, workdir: pathlib.Path, repeat: int) -> float:
    compiled = {"frontend": frontend, "maps": maps, "backends": [b.as_dict() for b in backends.values()]}
    for m in maps:
        path = pathlib.Path(m["path"])
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(m["content"])
    cfg = workdir / "haproxy.cfg"
    cfg.write_text(render(compiled, free_port()))
    times = []
    for _run in range(repeat):
        start = time.monotonic()
        subprocess.run([HAPROXY, "-c", "-q", "-f", str(cfg)], check=True, timeout=600)
        times.append(time.monotonic() - start)
    return statistics.median(times)


def measure_check(routes_mod, acl_sizes: list, map_sizes: list, repeat: int, workdir: pathlib.Path) -> list:
    """``haproxy -c`` seconds by frontend lines, emitting past the compiler's limit on purpose
    (normalise + emit_*, not compile_routes, which refuses those tables)."""
    cases = [("acl", "prefix+exact, fallbacks", table, n) for n in acl_sizes]
    cases += [("acl", "host+methods+prefix, fallbacks", conditioned_table, n) for n in acl_sizes if n <= 3000]
    cases += [("map", "wildcard host+methods+prefix (all rules)", wildcard_conditioned_table, n) for n in map_sizes]
    out = []
    for form, kind, make, n in cases:
        routes, backends = make(n)
        ordered, norm = routes_mod.normalise(routes, backends, "main")
        sub = workdir / f"check-{form}-{n}-{len(out)}"
        sub.mkdir()
        if form == "acl":
            frontend, maps = routes_mod.emit_acl(ordered, norm, "main"), []
        else:
            frontend, maps = routes_mod.emit_map(ordered, norm, "main", str(sub / "maps"))
        seconds = haproxy_check_seconds(frontend, maps, norm, sub, repeat)
        res = {"form": form, "kind": kind, "routes": n, "frontend_lines": len(frontend), "haproxy_check_s": round(seconds, 3),
               "accepted_by_compiler": len(frontend) <= routes_mod.MAX_FRONTEND_LINES}
        print(f"haproxy -c {form:<3} {kind:<40} {n:>6} routes {len(frontend):>7} lines  {seconds:>7.3f} s", flush=True)
        out.append(res)
    return out


def measure_compiled_check(routes_mod, sizes: list, repeat: int, workdir: pathlib.Path) -> list:
    """``haproxy -c`` seconds on what compile_routes emits (mode auto) for every table kind."""
    out = []
    for kind, make in COMPILED_KINDS.items():
        for n in sizes:
            routes, backends = make(n)
            sub = workdir / f"compiled-{n}-{len(out)}"
            sub.mkdir()
            compiled = routes_mod.compile_routes(routes, backends, "main", map_dir=str(sub / "maps"))
            _ordered, norm = routes_mod.normalise(routes, backends, "main")
            seconds = haproxy_check_seconds(compiled["frontend"], compiled["maps"], norm, sub, repeat)
            res = {"form": compiled["mode"], "kind": kind, "routes": n, "frontend_lines": len(compiled["frontend"]),
                   "map_entries": sum(m["content"].count("\n") for m in compiled["maps"]), "haproxy_check_s": round(seconds, 3)}
            print(f"haproxy -c compiled {compiled['mode']:<3} {kind:<60} {n:>6} routes {len(compiled['frontend']):>6} lines "
                  f"{res['map_entries']:>6} map entries {seconds:>7.3f} s", flush=True)
            out.append(res)
    return out


def render(compiled: dict, port: int) -> str:
    lines = [
        "global",
        "  nbthread 1",
        "  maxconn 4096",
        "defaults",
        "  mode http",
        "  timeout connect 1s",
        "  timeout client 10s",
        "  timeout server 10s",
        "frontend fe_bench",
        f"  bind {LOOPBACK}:{port}",
    ]
    lines += [f"  {line}" for line in compiled["frontend"]]
    for be in compiled["backends"]:
        lines.append(f"backend {be['name']}")
        # Servers without "check" count as usable for nbsrv(); the backend answers itself,
        # so no connection is ever made to them.
        lines += [f"  server {s['name']} {LOOPBACK}:9 id {s['id']}" for s in be["servers"]]
        lines.append(f"  http-request return status 200 content-type text/plain string {be['name']}")
    return "\n".join(lines) + "\n"


def pinned(cmd: list, cpu: int) -> list:
    """Pin HAProxy and wrk to different CPUs (when there are two) so they do not compete."""
    if TASKSET and (os.cpu_count() or 1) >= 2:
        return [TASKSET, "-c", str(cpu), *cmd]
    return cmd


def cpu_seconds(pid: int) -> float:
    """User + system CPU time the process has used so far (from /proc)."""
    fields = pathlib.Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / CLK_TCK


def wrk(url: str, seconds: int, connections: int, haproxy_pid: int, headers: tuple = ()) -> dict:
    """``headers``: "Name: value" lines wrk adds to every request."""
    cpu_before = cpu_seconds(haproxy_pid)
    extra = [arg for header in headers for arg in ("-H", header)]
    out = subprocess.run(
        pinned([WRK, "-t1", f"-c{connections}", f"-d{seconds}s", "--latency", *extra, url], 1),
        capture_output=True,
        text=True,
        timeout=seconds + 30,
        check=True,
    ).stdout
    cpu_used = cpu_seconds(haproxy_pid) - cpu_before
    rps = float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1))
    total = int(re.search(r"(\d+) requests in", out).group(1))
    errors = re.search(r"Non-2xx or 3xx responses: (\d+)", out)

    def ms(label: str) -> float:
        m = re.search(rf"{label}\s+([\d.]+)(us|ms|s)\b", out)
        value, unit = float(m.group(1)), m.group(2)
        return value / 1000 if unit == "us" else value * 1000 if unit == "s" else value

    return {
        "rps": rps,
        "requests": total,
        # HAProxy's own CPU per request: insensitive to what else runs on the machine
        "cpu_us_per_request": round(cpu_used / total * 1e6, 2) if total else None,
        "latency_avg_ms": round(ms("Latency"), 3),
        "latency_p99_ms": round(ms("99%"), 3),
        "non_2xx": int(errors.group(1)) if errors else 0,
    }


def measure(routes_mod, n: int, form: str, seconds: int, connections: int, workdir: pathlib.Path) -> list:
    routes, backends = table(n)
    # The compiler refuses an acl form of more than MAX_FRONTEND_LINES lines (HAProxy's
    # configuration check takes seconds there); the request cost past that limit is measured
    # anyway, with the limit lifted for this call only, to show where the map form pays off.
    limit = routes_mod.MAX_FRONTEND_LINES
    routes_mod.MAX_FRONTEND_LINES = 10**9
    try:
        compiled = routes_mod.compile_routes(routes, backends, "main", map_dir=str(workdir / "maps"), mode=form)
    finally:
        routes_mod.MAX_FRONTEND_LINES = limit
    accepted = len(compiled["frontend"]) <= limit
    cfg, port, check_s = write_config(compiled, workdir)
    proc = start_haproxy(cfg, port)
    try:
        last = compiled["routes"][-1]  # lowest precedence: the last rule the ACL form reaches
        hit_path = last["path"] + ("/x" if last["match"] == "prefix" else "")
        results = []
        for kind, path in (("miss", "/nothing/here"), ("hit", hit_path)):
            expected = "main" if kind == "miss" else last["backend"]
            check_routed(port, path, (), expected, f"{form}/{n}")
            res = wrk(f"http://{LOOPBACK}:{port}{path}", seconds, connections, proc.pid)
            res.update({"routes": n, "form": form, "request": kind, "path": path, "config_check_s": round(check_s, 3),
                        "accepted_by_compiler": accepted})
            results.append(res)
            print(
                f"{n:>6} routes  {form:<3}  {kind:<4}  {res['rps']:>10.0f} req/s  "
                f"cpu {res['cpu_us_per_request']:>8.2f} us/req  "
                f"avg {res['latency_avg_ms']:.3f} ms  p99 {res['latency_p99_ms']:.3f} ms",
                flush=True,
            )
        return results
    finally:
        stop_haproxy(proc)


def write_config(compiled: dict, workdir: pathlib.Path) -> tuple:
    """Write the maps and haproxy.cfg of a compiled table; (cfg path, port, haproxy -c seconds)."""
    for m in compiled["maps"]:
        path = pathlib.Path(m["path"])
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(m["content"])
    port = free_port()
    cfg = workdir / "haproxy.cfg"
    cfg.write_text(render(compiled, port))
    t0 = time.monotonic()
    subprocess.run([HAPROXY, "-c", "-q", "-f", str(cfg)], check=True, timeout=120)
    return cfg, port, time.monotonic() - t0


def start_haproxy(cfg: pathlib.Path, port: int) -> subprocess.Popen:
    """HAProxy on its pinned CPU, returned once it accepts connections."""
    proc = subprocess.Popen(pinned([HAPROXY, "-db", "-f", str(cfg)], 0), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 30
    while True:
        try:
            socket.create_connection((LOOPBACK, port), timeout=0.2).close()
            return proc
        except OSError:
            if time.monotonic() > deadline or proc.poll() is not None:
                stop_haproxy(proc)
                raise RuntimeError("haproxy did not start") from None
            time.sleep(0.02)


def stop_haproxy(proc: subprocess.Popen) -> None:
    proc.terminate()
    try:
        proc.wait(timeout=5)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait(timeout=5)


def check_routed(port: int, path: str, headers: tuple, expected: str, where: str) -> None:
    """Every backend answers its own name: a request measured must reach the backend the
    table says, or the numbers would be those of another route."""
    cmd = ["curl", "-s", *[arg for header in headers for arg in ("-H", header)], f"http://{LOOPBACK}:{port}{path}"]
    body = subprocess.run(cmd, capture_output=True, text=True, timeout=10).stdout
    if body != expected:
        raise RuntimeError(f"{where}: {path} {list(headers)} answered {body!r}, expected {expected!r}")


def header_table(n_plain: int, n_header: int, with_headers: bool = True) -> tuple:
    """``n_plain`` plain prefix routes /svc<i> and ``n_header`` routes on /svc<k>/tenant (k = j
    times n_plain // n_header), inside a plain route's prefix, each for the tenant whose X-Tenant
    header is t<j> (exact; one in ten a regex that also takes a region suffix, t<j>-eu). A request
    on /svc<k>/tenant/... without the header goes to the plain route /svc<k>, so in the map form
    the header routes must be tried after the map lookup and win over its result.
    ``with_headers=False``: the same routes without the header match, all plain prefixes (the
    comparison: what the headers cost)."""
    if not 10 <= n_header <= n_plain:
        raise ValueError("every header route lies inside a plain route, and the requests need 10 tenants: 10 <= header routes <= plain routes")
    stride = n_plain // n_header
    backends = table(0)[1]
    routes = [{"name": f"p{i}", "path": f"/svc{i}", "backend": f"pool{i % 8}"} for i in range(n_plain)]
    for j in range(n_header):
        # Another pool than the plain route around it, so the routing check tells them apart.
        route = {"name": f"t{j}", "path": f"/svc{stride * j}/tenant", "backend": f"pool{(stride * j + 1) % 8}"}
        if with_headers:
            if j % 10 == 5:
                route["headers"] = [{"name": "X-Tenant", "value": f"t{j}(-[a-z]+)?", "match": "regex"}]
            else:
                route["headers"] = [{"name": "X-Tenant", "value": f"t{j}"}]
        routes.append(route)
    return routes, backends


def header_requests(n_plain: int, n_header: int, with_headers: bool) -> list:
    """(kind, path, headers, expected backend) for header_table: the three kinds measured,
    then requests only checked (a regex tenant, the header name in lower case, a wrong
    tenant). All go to the last tenant's path, /svc<k>/tenant/x; the same requests are sent to
    both tables."""
    stride = n_plain // n_header
    j = n_header - 1
    if j % 10 == 5:  # the measured header hit is an exact match, the common case
        j -= 1
    plain_backend, tenant_backend = f"pool{stride * j % 8}", f"pool{(stride * j + 1) % 8}"
    rx = j - (j - 5) % 10  # the last regex tenant at or before j
    path, rx_path = f"/svc{stride * j}/tenant/x", f"/svc{stride * rx}/tenant/x"
    return [
        ("miss", "/nothing/here", (), "main"),
        ("plain", path, (), plain_backend if with_headers else tenant_backend),
        ("header", path, (f"X-Tenant: t{j}",), tenant_backend),
        # Both tables send /svc<k>/tenant/... to the tenant's pool when the header matches.
        (None, rx_path, (f"X-Tenant: t{rx}-eu",), f"pool{(stride * rx + 1) % 8}"),
        (None, rx_path, (f"x-tenant: t{rx}",), f"pool{(stride * rx + 1) % 8}"),
        (None, path, (f"X-Tenant: t{j - 1}",), plain_backend if with_headers else tenant_backend),
    ]


def measure_headers(routes_mod, n_plain: int, n_header: int, seconds: int, connections: int, repeat: int,
                    workdir: pathlib.Path) -> dict:
    """CPU per request of header_table in the map form, with and without the header matches,
    median of ``repeat`` runs; the acl form is measured only if the compiler accepts it."""
    variants = [("headers", True), ("no headers", False)]
    refused, compiled_by, runs = [], {}, []
    for label, with_headers in variants:
        routes, backends = header_table(n_plain, n_header, with_headers)
        for form in ("map", "acl"):
            sub = workdir / f"{label.replace(' ', '-')}-{form}"
            start = time.perf_counter()
            try:
                compiled = routes_mod.compile_routes(routes, backends, "main", map_dir=str(sub / "maps"), mode=form)
            except Exception as exc:  # noqa: BLE001 - a refusal is a result here
                ordered, norm = routes_mod.normalise(routes, backends, "main")
                if form == "acl":
                    lines = routes_mod.emit_acl(ordered, norm, "main")
                else:  # too many header routes: the rules alone pass the limit
                    lines = routes_mod.emit_map(ordered, norm, "main", str(sub / "maps"))[0]
                refused.append({"table": label, "form": form, "frontend_lines": len(lines),
                                "max_frontend_lines": routes_mod.MAX_FRONTEND_LINES, "refused": str(exc)})
                print(f"headers {label:<10} {form}: refused ({refused[-1]['frontend_lines']} frontend lines)", flush=True)
                continue
            compile_s = time.perf_counter() - start
            compiled_by[(label, form)] = (compiled, compile_s, with_headers)
    for rep in range(repeat):
        for (label, form), (compiled, _compile_s, with_headers) in compiled_by.items():
            sub = workdir / f"{label.replace(' ', '-')}-{form}"
            sub.mkdir(exist_ok=True)
            cfg, port, check_s = write_config(compiled, sub)
            proc = start_haproxy(cfg, port)
            try:
                requests = header_requests(n_plain, n_header, with_headers)
                for _kind, path, headers, expected in requests:
                    check_routed(port, path, headers, expected, f"{label}/{form}")
                for kind, path, headers, _expected in requests:
                    if kind is None:
                        continue
                    res = wrk(f"http://{LOOPBACK}:{port}{path}", seconds, connections, proc.pid, headers)
                    res.update({"table": label, "form": form, "request": kind, "run": rep, "config_check_s": check_s})
                    runs.append(res)
                    print(f"headers {label:<10} {form}  {kind:<6}  {res['rps']:>9.0f} req/s  "
                          f"cpu {res['cpu_us_per_request']:>6.2f} us/req  haproxy -c {check_s:.3f} s", flush=True)
            finally:
                stop_haproxy(proc)
    results = []
    for (label, form), (compiled, compile_s, with_headers) in compiled_by.items():
        for kind, path, headers, expected in header_requests(n_plain, n_header, with_headers):
            pts = [r for r in runs if (r["table"], r["form"], r["request"]) == (label, form, kind)]
            if kind is None or not pts:
                continue
            cpu_us = statistics.median(p["cpu_us_per_request"] for p in pts)
            checks = {p["run"]: p["config_check_s"] for p in pts}  # one haproxy -c per run
            results.append({
                "table": label,
                "form": form,
                "request": kind,
                "path": path,
                "headers": list(headers),
                "backend": expected,
                # 1e6 / the median CPU per request: requests one HAProxy CPU-second serves
                "requests_per_cpu_second": round(1e6 / cpu_us),
                "cpu_us_per_request": round(cpu_us, 3),
                "cpu_us_runs": [p["cpu_us_per_request"] for p in pts],
                "rps": round(statistics.median(p["rps"] for p in pts), 1),
                "rps_runs": [p["rps"] for p in pts],
                "latency_avg_ms": statistics.median(p["latency_avg_ms"] for p in pts),
                "latency_p99_ms": statistics.median(p["latency_p99_ms"] for p in pts),
                "non_2xx": sum(p["non_2xx"] for p in pts),
                "haproxy_check_s": round(statistics.median(checks.values()), 3),
                "haproxy_check_s_runs": [round(checks[run], 3) for run in sorted(checks)],
                "compile_s": round(compile_s, 3),
                "frontend_lines": len(compiled["frontend"]),
                "rules": sum(1 for r in compiled["routes"] if r["headers"]),
                "map_entries": sum(m["content"].count("\n") for m in compiled["maps"]),
            })
    return {"results": results, "refused": refused}


def linear_fit(points: list) -> tuple:
    """Least-squares a + b*n over (n, y) points."""
    n_mean = statistics.fmean(n for n, _ in points)
    y_mean = statistics.fmean(y for _, y in points)
    var = sum((n - n_mean) ** 2 for n, _ in points)
    b = sum((n - n_mean) * (y - y_mean) for n, y in points) / var
    return y_mean - b * n_mean, b


def cpu_model(results: list, slack: float = 0.10, fit_up_to: int = 100) -> dict:
    """Fit the ACL form's CPU per request as a + b*routes over small tables (up to
    ``fit_up_to`` routes; larger ACL lists grow faster than linearly as they fall out of the
    CPU caches) on worst-case miss requests, take the map form's cost as constant (median of
    all sizes), and derive the break-even table size and the largest size at which the ACL
    form costs at most ``slack`` more CPU than the map form."""
    miss = [r for r in results if r["request"] == "miss"]
    acl = [(r["routes"], r["cpu_us_per_request"]) for r in miss if r["form"] == "acl"]
    small = [p for p in acl if p[0] <= fit_up_to]
    if len({n for n, _ in small}) < 2:  # e.g. --sizes 500,1000: fit what was measured
        small, fit_up_to = acl, max(n for n, _ in acl)
    if len({n for n, _ in small}) < 2:
        return {"note": "need at least two table sizes for a cost model"}
    a, b = linear_fit(small)
    c = statistics.median(r["cpu_us_per_request"] for r in miss if r["form"] == "map")
    return {
        "fit_routes_up_to": fit_up_to,
        "acl_cpu_us": {"base": round(a, 3), "per_route": round(b, 4)},
        "map_cpu_us": round(c, 3),
        "break_even_routes": round((c - a) / b, 1) if b > 0 else None,
        "acl_within_10pct_up_to_routes": int(((1 + slack) * c - a) // b) if b > 0 else None,
    }


def crossover(results: list) -> int | None:
    """Smallest measured size from which the map form is at least as fast as the ACL form
    on the worst-case (miss) request at every larger size too."""
    sizes = sorted({r["routes"] for r in results})
    rps = {(r["routes"], r["form"]): r["rps"] for r in results if r["request"] == "miss"}
    for i, n in enumerate(sizes):
        if all(rps[(m, "map")] >= rps[(m, "acl")] for m in sizes[i:]):
            return n
    return None


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sizes", default="10,25,50,100,500,1000,5000")
    parser.add_argument("--seconds", type=int, default=3)
    parser.add_argument("--connections", type=int, default=32)
    parser.add_argument("--repeat", type=int, default=2, help="runs per point; the median is kept")
    parser.add_argument("--output", default=str(RESULTS))
    parser.add_argument("--only", default="rps,compile,check,headers", help="comma-separated: rps, compile, check, headers")
    parser.add_argument("--compile-sizes", default="1000,5000,10000")
    parser.add_argument("--check-acl-sizes", default="500,1000,2000,3000,4000,5000")
    parser.add_argument("--check-map-sizes", default="1000,2000,3000,4000")
    parser.add_argument("--check-compiled-sizes", default="10000")
    parser.add_argument("--compile-output", default=str(COMPILE_RESULTS))
    parser.add_argument("--header-table", default="4500,500", help="plain routes,header routes (--only headers)")
    parser.add_argument("--headers-output", default=str(HEADERS_RESULTS))
    args = parser.parse_args()
    routes_mod = _import_compiler()
    only = set(args.only.split(","))
    if only & {"compile", "check"}:
        doc = {
            "benchmark": "routes-compile",
            "method": "route_compile wall time (median of 3) and haproxy -c -q wall time (median of 3) on the configs bench_routes renders",
            "haproxy": subprocess.run([HAPROXY, "-v"], capture_output=True, text=True).stdout.splitlines()[0],
            "host": {"cpus": os.cpu_count(), "machine": platform.machine(), "python": platform.python_version()},
            "date_utc": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
            "max_frontend_lines": routes_mod.MAX_FRONTEND_LINES,
        }
        if "compile" in only:
            doc["compile"] = measure_compile(routes_mod, [int(s) for s in args.compile_sizes.split(",")], 3)
        if "check" in only:
            with tempfile.TemporaryDirectory(prefix="lay7-bench-check-") as tmp:
                doc["haproxy_check"] = measure_check(
                    routes_mod,
                    [int(s) for s in args.check_acl_sizes.split(",")],
                    [int(s) for s in args.check_map_sizes.split(",")],
                    3,
                    pathlib.Path(tmp),
                )
                doc["haproxy_check_compiled"] = measure_compiled_check(
                    routes_mod, [int(s) for s in args.check_compiled_sizes.split(",")], 3, pathlib.Path(tmp)
                )
        out = pathlib.Path(args.compile_output)
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_text(json.dumps(doc, indent=2) + "\n")
        print(f"wrote {out}")
    if "headers" in only:
        n_plain, n_header = (int(s) for s in args.header_table.split(","))
        load_before = os.getloadavg()
        with tempfile.TemporaryDirectory(prefix="lay7-bench-headers-") as tmp:
            measured = measure_headers(routes_mod, n_plain, n_header, args.seconds, args.connections, args.repeat, pathlib.Path(tmp))
        doc = {
            "benchmark": "routes-headers",
            "method": (
                "HAProxy nbthread 1 on loopback, backends answer via http-request return; "
                f"wrk -t1 -c{args.connections} -d{args.seconds}s keep-alive, median of {args.repeat} runs; "
                "requests_per_cpu_second = 1e6 / cpu_us_per_request; haproxy_check_s: haproxy -c -q wall time, "
                "median of one per run"
            ),
            "haproxy": subprocess.run([HAPROXY, "-v"], capture_output=True, text=True).stdout.splitlines()[0],
            "wrk": subprocess.run([WRK, "-v"], capture_output=True, text=True).stdout.split(" Copyright")[0],
            "host": {"cpus": os.cpu_count(), "machine": platform.machine(), "python": platform.python_version()},
            # Other jobs on the machine raise HAProxy's CPU per request too (shared caches and
            # cores): the 1-minute load average before and after says how busy it was.
            "load_average_1m": {"before": round(load_before[0], 2), "after": round(os.getloadavg()[0], 2)},
            "date_utc": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
            "parameters": {
                "plain_routes": n_plain,
                "header_routes": n_header,
                "table": (
                    f"plain prefix routes /svc<i> on pool<i mod 8>; header routes on /svc<{n_plain // n_header}j>/tenant "
                    "(inside a plain prefix) with X-Tenant: t<j>, exact, one in ten a regex t<j>(-[a-z]+)?; 'no headers': the same "
                    "routes without the header match; every pool has a fallback"
                ),
                "requests": {
                    "miss": "a path no route matches",
                    "plain": "the last tenant's path without the header: the plain route around it "
                             "(the tenant's route, a map key, in the 'no headers' table)",
                    "header": "the same path with that tenant's X-Tenant header (exact match)",
                },
                "seconds": args.seconds,
                "connections": args.connections,
                "repeat": args.repeat,
                "max_frontend_lines": routes_mod.MAX_FRONTEND_LINES,
            },
            **measured,
        }
        out = pathlib.Path(args.headers_output)
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_text(json.dumps(doc, indent=2) + "\n")
        print(f"wrote {out}")
    if "rps" not in only:
        return 0
    sizes = [int(s) for s in args.sizes.split(",")]
    runs = []
    with tempfile.TemporaryDirectory(prefix="lay7-bench-routes-") as tmp:
        for rep in range(args.repeat):
            for n in sizes:
                for form in ("acl", "map"):
                    workdir = pathlib.Path(tmp) / f"{rep}-{n}-{form}"
                    workdir.mkdir()
                    runs += measure(routes_mod, n, form, args.seconds, args.connections, workdir)
    merged = []
    for n in sizes:
        for form in ("acl", "map"):
            for kind in ("miss", "hit"):
                pts = [r for r in runs if (r["routes"], r["form"], r["request"]) == (n, form, kind)]
                best = dict(pts[0])
                best["rps"] = round(statistics.median(p["rps"] for p in pts), 1)
                best["rps_runs"] = [p["rps"] for p in pts]
                best["cpu_us_per_request"] = statistics.median(p["cpu_us_per_request"] for p in pts)
                best["cpu_us_runs"] = [p["cpu_us_per_request"] for p in pts]
                best["latency_avg_ms"] = statistics.median(p["latency_avg_ms"] for p in pts)
                best["latency_p99_ms"] = statistics.median(p["latency_p99_ms"] for p in pts)
                best["non_2xx"] = sum(p["non_2xx"] for p in pts)
                merged.append(best)
    version = subprocess.run([HAPROXY, "-v"], capture_output=True, text=True).stdout.splitlines()[0]
    doc = {
        "benchmark": "routes",
        "method": (
            "HAProxy nbthread 1 on loopback, backends answer via http-request return; "
            f"wrk -t1 -c{args.connections} -d{args.seconds}s keep-alive, median of {args.repeat} runs"
        ),
        "haproxy": version,
        "host": {"cpus": os.cpu_count(), "machine": platform.machine(), "python": platform.python_version()},
        "date_utc": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "results": merged,
        "map_faster_from_routes": crossover(merged),
        "cpu_model": cpu_model(merged),
    }
    out = pathlib.Path(args.output)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(doc, indent=2) + "\n")
    print(f"map form at least as fast as acl (req/s) from {doc['map_faster_from_routes']} routes")
    print(f"cpu model: {json.dumps(doc['cpu_model'])}")
    print(f"wrote {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
