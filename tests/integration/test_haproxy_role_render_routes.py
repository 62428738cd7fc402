"""Render lay7.ha.haproxy_l7 with the route table's HTTPRoute features and check the result
with the real HAProxy: extra listeners bound (with and without TLS), routes that act, a 404 for
unmatched requests, the per-route timeout rules in every backend; and the role's refusals of
listeners it cannot bind. The role runs offline on localhost, as in test_haproxy_role_render.py.
"""

from __future__ import annotations

import copy

from test_haproxy_role_render import backend_block, base_vars, haproxy_check, run_role

ROUTES = [
    {"name": "split", "path": "/split", "backends": [{"name": "a_pool", "weight": 90}, {"name": "b_pool", "weight": 10}],
     "timeouts": {"backend": "2s"}},
    {"name": "moved", "path": "/moved", "filters": [{"type": "request_redirect", "path": {"type": "prefix", "value": "/a"}}]},
    {"name": "admin", "path": "/", "listener": "admin", "backend": "b_pool", "headers": [{"name": "X-Admin", "value": "1"}]},
    {"name": "internal", "path": "/", "listener": "internal", "backend": "a_pool"},
]


def _features(tmp_path) -> dict:
    extra = base_vars(tmp_path)
    extra["haproxy_l7_routes"] = copy.deepcopy(extra["haproxy_l7_routes"]) + copy.deepcopy(ROUTES)
    extra["haproxy_l7_unmatched"] = "not_found"
    # A backend that speaks HTTP/2 without TLS (h2c), such as a gRPC service.
    extra["haproxy_l7_backends"]["grpc_pool"] = {
        "servers": [{"name": "g1", "address": "192.168.56.31", "port": 50051}], "protocol": "h2c"}
    extra["haproxy_l7_routes"].append({"name": "grpc", "path": "/grpc", "backend": "grpc_pool"})
    extra["haproxy_l7_listeners"] = [
        {"name": "admin", "port": 8080, "hostnames": ["admin.example.com"]},
        {"name": "internal", "port": 8081},
    ]
    return extra


def test_route_features_render_and_haproxy_accepts_them(tmp_path):
    result = run_role(tmp_path, _features(tmp_path))
    assert result.returncode == 0, result.stdout + result.stderr
    cfg = tmp_path / "haproxy.cfg"
    check = haproxy_check(cfg)
    assert check.returncode == 0, check.stdout + check.stderr
    assert "[WARNING]" not in check.stdout + check.stderr, check.stdout + check.stderr
    text = cfg.read_text()
    # The extra listeners, bound on the VIP after the HTTP bind.
    assert "    bind 192.168.56.100:8080\n" in text
    assert "    bind 192.168.56.100:8081\n" in text
    assert "http-request set-var(txn.lay7_hit) str(999999999:@) if { dst_port 8080 } !listener_admin_host" in text
    assert "{ dst_port 8081 }" in text
    assert 'http-request return status 404 content-type text/plain string "no route for this request\\n"' in text
    assert "rand(100)" in text
    assert "server g1 192.168.56.31:50051 id 1 weight 100 proto h2 check-proto h2\n" in backend_block(text, "grpc_pool")
    for name in ("a_pool", "b_pool", "main", "grpc_pool"):
        block = backend_block(text, name)
        # After the role's own timeout rule, so a route's timeout wins.
        own = block.index("http-request set-timeout server ")
        assert not block[own:].startswith("http-request set-timeout server var("), block
        assert block.index("http-request set-timeout server var(txn.lay7_timeout)") > own, block
        assert "http-request disable-l7-retry if { var(txn.lay7_no_retry) -m found }" in block


def test_a_tls_listener_is_bound_with_the_https_certificates(tmp_path):
    extra = _features(tmp_path)
    extra["haproxy_l7_listeners"].append({"name": "alt_tls", "port": 8443, "tls": True})
    # HTTPS off: the listener has no certificates to serve.
    result = run_role(tmp_path, extra)
    output = result.stdout + result.stderr
    assert result.returncode != 0, output
    assert "a listener with tls needs haproxy_l7_https_enabled" in output, output
    assert not (tmp_path / "haproxy.cfg").exists()


def test_listeners_named_like_the_roles_own_ports_are_refused(tmp_path):
    extra = _features(tmp_path)
    extra["haproxy_l7_listeners"].append({"name": "http", "port": 8082})
    result = run_role(tmp_path, extra)
    output = result.stdout + result.stderr
    assert result.returncode != 0, output
    # The compiler sees two listeners called http (the role's and this one) first.
    assert "listener 'http'" in output and "already used" in output, output
    assert not (tmp_path / "haproxy.cfg").exists()


def test_a_listener_on_the_http_port_is_refused(tmp_path):
    extra = _features(tmp_path)
    extra["haproxy_l7_listeners"].append({"name": "again", "port": 80})
    result = run_role(tmp_path, extra)
    output = result.stdout + result.stderr
    assert result.returncode != 0, output
    assert "listener 'again'" in output and "port 80 is already the port of listener 'http'" in output, output
