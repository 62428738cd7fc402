"""Backend failures seen through the VIP.

Stop web2: /a is served by a_pool's fallback (main, web1). Stop all three web servers:
every path gets HAProxy's custom 503 page. Start them: routing is back to normal. Under
the open-loop probe (both client kinds, GET /a/), cutting web2's cable costs no request:
the first failed connection marks the server down and the request is retried on a backup
(the fallback's servers); a request stuck on the cut server is retried after
haproxy_l7_timeout_server_retryable. Restarting web2's Apache, or killing it, costs no
request either (a single-server pool; see below). The `faults` fixture undoes every fault
and waits for the healthy topology, also when an assertion fails. Every wait is bounded.
"""

from __future__ import annotations

import time

from conftest import EXPECTED_ROUTES, PROBE_INTERVAL, HttpClient, wait_for
from lab.probe import Probe

APACHE = "apache2"
MARK_DOWN_TIMEOUT = 15.0  # checks every 1 s, fastinter 250 ms, fall 2: DOWN in ~1.5 s
PAGE_503_MARKER = "lay7.ha: no-server-available"


def _served(vip: HttpClient, path: str, by: str) -> bool:
    reply = vip.try_get(path)
    return reply is not None and reply.status == 200 and reply.served_by == by


def test_stopped_web2_sends_a_to_the_fallback(faults, vip: HttpClient, timings):
    faults.stop_service("web2", APACHE)
    took = wait_for(lambda: _served(vip, "/a", "web1"), MARK_DOWN_TIMEOUT, "/a served by the fallback (web1)")
    timings["backend_fallback_s"] = round(took, 2)
    for path in ("/a", "/a/", "/a/inanzzz"):
        assert _served(vip, path, "web1"), path
    # Routes of other pools are untouched.
    for path, want in EXPECTED_ROUTES.items():
        if want != "web2":
            assert _served(vip, path, want), path

    faults.start_service("web2", APACHE)
    took = wait_for(lambda: _served(vip, "/a", "web2"), MARK_DOWN_TIMEOUT, "/a back on web2")
    timings["backend_recovery_s"] = round(took, 2)
    assert vip.routes_ok()


def test_all_web_servers_stopped_gives_the_custom_503(faults, inventory, vip: HttpClient, timings):
    for web in inventory.webservers:
        faults.stop_service(web, APACHE)

    def all_503() -> bool:
        replies = [vip.try_get(path) for path in ("/", "/a", "/b")]
        return all(r is not None and r.status == 503 for r in replies)

    took = wait_for(all_503, MARK_DOWN_TIMEOUT, "503 on every path")
    timings["backend_all_down_503_s"] = round(took, 2)
    for path in ("/", "/a/x", "/b/", "/hello"):
        reply = vip.get(path)
        assert reply.status == 503, path
        assert PAGE_503_MARKER in reply.body, reply.body[:300]
        assert reply.headers.get("x-lay7-error") == "no-server-available"
        assert reply.served_by is None

    for web in inventory.webservers:
        faults.start_service(web, APACHE)
    wait_for(vip.routes_ok, 30, "normal routing after the web servers started")


# A client that waits this long sees the retries as latency, not as a failure: a cut
# costs up to the connect timeout (2 s), a request stuck on the cut server up to 5 s.
CLIENT_TIMEOUT = 10.0
# With the old mechanics (no passive detection, a 30 s server timeout) an in-flight request
# on a cut server waited 30 s; the bound catches that.
STUCK_BOUND = 8.0


def _probe_a(inventory, fault, settle: float):
    probe = Probe(inventory.vip, 80, "/a/", interval=PROBE_INTERVAL, timeout=CLIENT_TIMEOUT, max_duration=120).start()
    try:
        time.sleep(1.0)
        fault()
        time.sleep(settle)
    finally:
        result = probe.stop()
    return {kind: result.summary(kind) for kind in ("new", "keepalive")}


# /a's pool has one server. A request caught on it when it dies is retried: on the connection
# it was using (a lost response does not mark the server down), then on a new connection the
# dead server refuses (which does), then on a backup (the fallback's server). Backend
# connections are not shared between clients (haproxy_l7_http_reuse: never), so a request
# meets no other client's dead connection: at most 3 retries in 160 deaths on the lab, 0 lost.
# With shared connections and the former 3 retries, 3 requests in 25 deaths were closed
# unanswered once every retry was spent. The bound is the target, 0, for both client kinds.
# The race is rare, so a regression fails this test only in about one run in eight; the
# benchmark repeats the deaths.


def _assert_no_loss(sums: dict, name: str, timings: dict) -> None:
    for kind, s in sums.items():
        timings[f"{name}_{kind}_failed"] = s["failed"]
        assert s["failed"] == 0, f"{kind}: {s['failed']} failed, errors {dict(s['errors'])}"


def test_apache_restart_on_web2_loses_no_request(faults, inventory, nodes, timings):
    sums = _probe_a(inventory, lambda: nodes["web2"].run_expect([0], f"systemctl restart {APACHE}"), 3.0)
    _assert_no_loss(sums, "apache_restart", timings)


def test_apache_killed_on_web2_loses_no_request(faults, inventory, timings):
    sums = _probe_a(inventory, lambda: faults.kill_service("web2", APACHE), 3.0)
    _assert_no_loss(sums, "apache_kill", timings)


def test_web2_cable_cut_loses_no_request(faults, inventory, timings):
    sums = _probe_a(inventory, lambda: faults.cut("web2"), 8.0)
    for kind, s in sums.items():
        timings[f"web_link_cut_{kind}_failed"] = s["failed"]
        timings[f"web_link_cut_{kind}_max_latency_s"] = round(s["max_latency_s"] or 0, 3)
        assert s["failed"] == 0, f"{kind}: {s['failed']} failed, errors {dict(s['errors'])}"
        assert s["max_latency_s"] < STUCK_BOUND, f"{kind}: a request waited {s['max_latency_s']:.1f} s"
