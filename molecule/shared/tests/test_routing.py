"""The seed's routing through the VIP, observed by the X-Served-By header."""

import pytest

from conftest import EXPECTED_ROUTES, PAGE_TEXT


@pytest.mark.parametrize(("path", "expected"), sorted(EXPECTED_ROUTES.items()))
def test_path_is_served_by_expected_host(vip, path, expected):
    reply = vip.get(path)
    assert reply.status == 200, f"GET {path} via the VIP: HTTP {reply.status}"
    assert reply.served_by == expected, f"GET {path}: served by {reply.served_by!r}, expected {expected}"
    assert PAGE_TEXT in reply.body


def test_query_string_does_not_change_the_route(vip):
    assert vip.get("/a?x=1").served_by == "web2"
    assert vip.get("/?a").served_by == "web1"


def test_health_endpoint_answers_on_every_web_server(vip, nodes, inventory):
    # From each load balancer (the only hosts allowed to reach port 80 directly).
    lb = nodes[inventory.master]
    for web in inventory.webservers:
        out = lb.check_output(f"curl -s -m 3 -o /dev/null -w '%{{http_code}}' http://{inventory.addresses[web]}/healthz")
        assert out == "200", f"{web}/healthz from {inventory.master}: HTTP {out}"
