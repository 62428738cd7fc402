"""Route features beyond the seed, through the VIP: a weighted canary split, a header-matched
route, a redirect, a URL rewrite and header edits in both directions.

The routes are the lab inventory's /features routes (inventory/lab/group_vars/loadbalancers.yml).
The web servers copy the X-Lay7-* request headers they received back into the response
(apache_web_echo_request_headers), so a response shows what reached the backend; the rewritten
path is read from the backend's access log.
"""

from __future__ import annotations

import http.client
import time
import uuid
from collections import Counter

import pytest
import yaml

from conftest import ROOT, SERVED_BY, wait_for
from test_tls import curl

ACCESS_LOG = "/var/log/apache2/lay7_access.log"
ROUTES = {r["name"]: r for r in yaml.safe_load(
    (ROOT / "inventory" / "lab" / "group_vars" / "loadbalancers.yml").read_text())["haproxy_l7_routes"]}
# The split's requests: enough that a 2-point error is over six standard deviations of the
# binomial spread at 10 % (0.3 points), so a correct split never fails the bound.
SPLIT_REQUESTS = 10_000
SPLIT_TOLERANCE = 0.02
# The web servers behind each backend of the split (the lab inventory's pools).
POOL_SERVER = {"a_pool": "web2", "b_pool": "web3"}


def _keepalive_gets(vip: str, path: str, count: int, headers: dict | None = None) -> Counter:
    """``count`` GETs over one keep-alive connection (reopened if the server closes it);
    the X-Served-By values counted. Bounded: each request has a 5 s timeout."""
    served = Counter()
    conn = http.client.HTTPConnection(vip, 80, timeout=5)
    try:
        for _ in range(count):
            try:
                conn.request("GET", path, headers=headers or {})
                resp = conn.getresponse()
                resp.read()
            except (OSError, http.client.HTTPException):
                conn.close()
                conn = http.client.HTTPConnection(vip, 80, timeout=5)
                served["error"] += 1
                continue
            served[resp.getheader(SERVED_BY) if resp.status == 200 else f"HTTP {resp.status}"] += 1
            if resp.getheader("Connection", "").lower() == "close":
                conn.close()
                conn = http.client.HTTPConnection(vip, 80, timeout=5)
    finally:
        conn.close()
    return served


def test_canary_split_follows_the_weights(inventory):
    split = ROUTES["features_split"]["backends"]
    total = sum(b["weight"] for b in split)
    started = time.monotonic()
    served = _keepalive_gets(inventory.vip, "/features/split/x", SPLIT_REQUESTS)
    elapsed = time.monotonic() - started
    assert sum(served.values()) == SPLIT_REQUESTS
    assert set(served) <= set(POOL_SERVER.values()), f"requests failed or went elsewhere: {dict(served)}"
    for backend in split:
        seen = served[POOL_SERVER[backend["name"]]] / SPLIT_REQUESTS
        want = backend["weight"] / total
        print(f"split: {backend['name']} weight {want:.1%} seen {seen:.2%} ({SPLIT_REQUESTS} requests, {elapsed:.1f} s)")
        assert abs(seen - want) <= SPLIT_TOLERANCE, (
            f"{backend['name']}: {seen:.2%} of {SPLIT_REQUESTS} requests, configured {want:.0%} (±{SPLIT_TOLERANCE:.0%})")


def test_header_match_outranks_the_split(vip):
    """The testers' route (same path, one header match) ranks before the split: always web3."""
    served = Counter(vip.get("/features/split/x", headers={"X-Lay7-Canary": "always"}).served_by for _ in range(50))
    assert served == Counter({"web3": 50}), dict(served)
    # The header value is compared with case: any other value falls to the split.
    other = Counter(vip.get("/features/split/x", headers={"X-Lay7-Canary": "ALWAYS"}).served_by for _ in range(50))
    assert other["web2"] > 0, dict(other)


@pytest.mark.parametrize("scheme", ["http", "https"])
def test_redirect_keeps_the_rest_of_the_path_and_the_query(inventory, scheme):
    status, headers, _, _ = curl(inventory.vip, f"{scheme}://www.lay7.test/features/moved/x/y?q=1&r=2")
    assert status == 308, f"{scheme}: HTTP {status} {headers}"
    assert headers["location"] == f"{scheme}://www.lay7.test/a/moved/x/y?q=1&r=2"
    status, headers, _, _ = curl(inventory.vip, f"{scheme}://www.lay7.test/features/moved")
    assert (status, headers["location"]) == (308, f"{scheme}://www.lay7.test/a/moved")


def test_rewrite_reaches_the_backend_and_headers_are_edited_both_ways(vip, nodes):
    marker = uuid.uuid4().hex
    reply = vip.get(f"/features/rewrite/page?m={marker}",
                    headers={"X-Lay7-Drop": "client value", "X-Lay7-Set": "client value"})
    assert reply.status == 200 and reply.served_by == "web2", (reply.status, reply.headers)
    # What reached web2, echoed back by Apache: set replaced the client's value, add added,
    # remove removed; '%' arrives literally.
    assert reply.headers.get("x-lay7-set") == "set by the load balancer (100%)", reply.headers
    assert reply.headers.get("x-lay7-added") == "added", reply.headers
    assert "x-lay7-drop" not in reply.headers, reply.headers
    # The response header the route sets for the client.
    assert reply.headers.get("x-lay7-route") == "features_rewrite", reply.headers

    def logged():
        out = nodes["web2"].run(f"grep -F -- {marker} {ACCESS_LOG}")
        return out.stdout.strip() if out.rc == 0 else ""
    wait_for(logged, 10, f"web2's access log line for {marker}", interval=0.5)
    line = logged()
    assert f'"GET /a/rewritten/page?m={marker} HTTP/1.1"' in line, line


def test_every_backend_reads_the_route_timeouts(nodes, inventory):
    """A route's timeouts reach the backend through variables: every backend section of the
    deployed configuration carries the rules that read them (after its own timeout rule)."""
    cfg = nodes[inventory.master].check_output("cat /etc/haproxy/haproxy.cfg")
    sections = cfg.split("\nbackend ")[1:]
    assert sections, "no backend section"
    for section in sections:
        name = section.split(None, 1)[0]
        # No route leads to these two: the HTTP-to-HTTPS redirect answers itself, and lay7_vip
        # only health-checks the VIP for the metrics (docs/monitoring.md).
        if name in ("lay7_https_redirect", "lay7_vip"):
            continue
        assert "http-request set-timeout server var(txn.lay7_timeout)" in section, f"backend {name}"
        assert "http-request disable-l7-retry if { var(txn.lay7_no_retry) -m found }" in section, f"backend {name}"
