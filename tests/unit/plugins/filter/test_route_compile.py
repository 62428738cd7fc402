"""Unit tests for lay7.ha.route_compile: compiled rules, routing decisions, errors, determinism.

Routing decisions are checked three ways for every case: the reference matcher (semantics
written from docs/routing.md), and the compiled ACL and map forms run by haproxy_sim.
"""

from __future__ import annotations

import copy
import json
import os
import random
import re
import subprocess
import sys

import haproxy_sim
import pytest
import reference_matcher as ref
import yaml
from seed_tables import (LONG, REGEX_REQUESTS, REGEX_ROUTES, SEED_BACKENDS, SEED_ROUTES, issue_mix_routes,
                         realistic_mix_routes, server)
from ansible.errors import AnsibleFilterError
from ansible_collections.lay7.ha.plugins.filter import route_compile as plugin
from ansible_collections.lay7.ha.plugins.plugin_utils._routes import DEFAULT_MAP_THRESHOLD, compile_routes

MODES = ("acl", "map")


def simulate(routes, backends, default, mode, target, host=None, method="GET", up=None, scheme="http"):
    compiled = compile_routes(routes, backends, default, mode=mode)
    assert compiled["mode"] == mode
    frontend = haproxy_sim.Frontend(compiled["frontend"], compiled["maps"], compiled["https_redirect_backend"])
    return frontend.route(target, host, method, set(backends) if up is None else set(up), scheme)


def assert_routes(routes, backends, default, target, expected, host=None, method="GET", up=None, scheme="http"):
    got_ref = ref.choose_backend(routes, backends, default, target, host, method, up, scheme)
    assert got_ref == expected, f"reference matcher: {scheme} {target!r} -> {got_ref}, expected {expected}"
    for mode in MODES:
        got = simulate(routes, backends, default, mode, target, host, method, up, scheme)
        assert got == expected, f"{mode} form: {scheme} {target!r} host={host} {method} -> {got}, expected {expected}"


# ------------------------------------------------------------------ tricky paths


@pytest.mark.parametrize(
    ("target", "expected"),
    [
        ("/a", "a_pool"),
        ("/a/", "a_pool"),
        ("/a/x", "a_pool"),
        ("/a/x/y", "a_pool"),
        ("/ab", "main"),
        ("/abc", "main"),
        ("/x/a/", "main"),
        ("/A", "main"),
        ("/A/x", "main"),
        ("/a?x=1", "a_pool"),
        ("/a?", "a_pool"),
        ("/ab?x=/a/", "main"),
        ("/?/a/", "main"),
        ("//a", "main"),
        ("/a%2Fb", "main"),
        ("/a/%2F", "a_pool"),
        ("/", "main"),
        ("", "main"),
        ("*", "main"),
        ("/a/" + LONG, "a_pool"),
        ("/a" + LONG, "main"),
        ("/b/" + LONG + "?q=" + LONG, "b_pool"),
        ("/a/ü", "a_pool"),
        ("/ü/a", "main"),
        ("/a%C3%BC", "main"),
        ("/a/%C3%BC", "a_pool"),
        ("/b", "b_pool"),
        ("/b/", "b_pool"),
        ("/bb", "main"),
        ("/b/a", "b_pool"),
    ],
)
def test_seed_table_tricky_paths(target, expected):
    assert_routes(SEED_ROUTES, SEED_BACKENDS, "main", target, expected)


# ------------------------------------------------------------------ compiled rules

ONE_BACKEND = {"main": {"servers": [server("web1", 11)]}, "x": {"servers": [server("web2", 12)]}}


@pytest.mark.parametrize(
    ("routes", "backends", "expected"),
    [
        pytest.param(
            SEED_ROUTES,
            SEED_BACKENDS,
            [
                "acl route_a_path path -m str /a",
                "acl route_a_path path -m beg /a/",
                "use_backend main if !{ nbsrv(a_pool) gt 0 } { nbsrv(main) gt 0 } route_a_path",
                "use_backend a_pool if route_a_path",
                "acl route_b_path path -m str /b",
                "acl route_b_path path -m beg /b/",
                "use_backend main if !{ nbsrv(b_pool) gt 0 } { nbsrv(main) gt 0 } route_b_path",
                "use_backend b_pool if route_b_path",
                "use_backend a_pool if !{ nbsrv(main) gt 0 } { nbsrv(a_pool) gt 0 }",
                "default_backend main",
            ],
            id="seed",
        ),
        pytest.param(
            [{"name": "r", "path": "/r/[0-9]+", "match": "regex", "backend": "x"}],
            ONE_BACKEND,
            [
                "acl route_r_path path -m reg '^(?:/r/[0-9]+)$'",
                "use_backend x if route_r_path",
                "default_backend main",
            ],
            id="regex-anchored",
        ),
        pytest.param(
            [{"name": "e", "path": "/it's", "match": "exact", "backend": "x"}],
            ONE_BACKEND,
            ["acl route_e_path path -m str '/it'\\''s'", "use_backend x if route_e_path", "default_backend main"],
            id="quote-escaped",
        ),
        pytest.param(
            [
                {"name": "w", "host": "*.Example.com", "path": "/", "backend": "x"},
                {"name": "h", "host": "api.example.com", "path": "/v1/", "methods": ["post", "GET"], "backend": "x"},
            ],
            ONE_BACKEND,
            [
                "acl route_h_host req.fhdr(host),field(1,:),lower -m str api.example.com",
                "acl route_h_path path -m str /v1",
                "acl route_h_path path -m beg /v1/",
                "acl route_h_method method GET POST",
                "use_backend x if route_h_host route_h_path route_h_method",
                "acl route_w_host req.fhdr(host),field(1,:),lower -m end .example.com",
                "acl route_w_path path -m beg /",
                "use_backend x if route_w_host route_w_path",
                "default_backend main",
            ],
            id="host-exact-before-wildcard",
        ),
    ],
)
def test_compiled_acl_lines(routes, backends, expected):
    assert compile_routes(routes, backends, "main", mode="acl")["frontend"] == expected


def test_servers_are_listed_flat_without_stand_ins():
    backends = {
        "main": {"servers": [{"name": "web1", "address": "192.0.2.11"}], "fallback": "spare"},
        "spare": {"servers": [{"name": "web2", "address": "192.0.2.12", "port": 8080}], "check_path": "/up"},
    }
    compiled = compile_routes([], backends, "main")
    assert compiled["servers"] == [
        {"key": "main/web1", "backend": "main", "name": "web1", "address": "192.0.2.11", "port": 80, "check_path": None},
        {"key": "spare/web2", "backend": "spare", "name": "web2", "address": "192.0.2.12", "port": 8080, "check_path": "/up"},
    ]


def test_compiled_map_form_of_seed():
    compiled = compile_routes(SEED_ROUTES, SEED_BACKENDS, "main", mode="map", map_dir="/etc/haproxy/maps")
    assert compiled["frontend"] == [
        "http-request set-var(txn.lay7_hit) path,map_str(/etc/haproxy/maps/lay7_routes_exact.map)",
        "http-request set-var(txn.lay7_hit) path,map_beg(/etc/haproxy/maps/lay7_routes_prefix.map,999999999:main)"
        " if !{ var(txn.lay7_hit) -m found }",
        "http-request set-var(txn.lay7_be) var(txn.lay7_hit),field(2,:)",
        "use_backend main if { var(txn.lay7_be) -m str a_pool } !{ nbsrv(a_pool) gt 0 } { nbsrv(main) gt 0 }",
        "use_backend main if { var(txn.lay7_be) -m str b_pool } !{ nbsrv(b_pool) gt 0 } { nbsrv(main) gt 0 }",
        "use_backend a_pool if { var(txn.lay7_be) -m str main } !{ nbsrv(main) gt 0 } { nbsrv(a_pool) gt 0 }",
        "use_backend %[var(txn.lay7_be)] if { var(txn.lay7_be) -m found }",
        "use_backend a_pool if !{ nbsrv(main) gt 0 } { nbsrv(a_pool) gt 0 }",
        "default_backend main",
    ]
    assert compiled["maps"] == [
        {
            "name": "lay7_routes_exact.map",
            "path": "/etc/haproxy/maps/lay7_routes_exact.map",
            "content": "/a 0:a_pool\n/b 1:b_pool\n",
        },
        {
            "name": "lay7_routes_prefix.map",
            "path": "/etc/haproxy/maps/lay7_routes_prefix.map",
            "content": "/a/ 0:a_pool\n/b/ 1:b_pool\n",
        },
    ]


HOST_MAP_ROUTES = [
    {"name": "api", "host": "api.example.com", "path": "/", "backend": "r1"},
    {"name": "apiv1", "host": "API.example.com", "path": "/v1/", "backend": "r2"},
    {"name": "health", "host": "api.example.com", "path": "/healthz", "match": "exact", "backend": "main"},
    {"name": "post", "host": "api.example.com", "path": "/v1", "methods": ["POST"], "backend": "main"},
    {"name": "tenants", "host": "*.example.com", "path": "/", "backend": "r2"},
    {"name": "a", "path": "/a", "backend": "r2"},
]


def test_compiled_map_form_with_exact_hosts():
    """Exact-host routes without methods become "<host>:<path>" keys looked up before the path
    maps, routes with methods "<METHOD>:<host>:<path>" keys whose hit replaces that result only
    with a lower rank; the wildcard route stays a rule with its precedence rank."""
    backends = {name: {"servers": [server(name, i + 10)]} for i, name in enumerate(["main", "r1", "r2"])}
    compiled = compile_routes(HOST_MAP_ROUTES, backends, "main", mode="map", map_dir="/etc/haproxy/maps")
    assert compiled["frontend"] == [
        "http-request set-var(txn.lay7_path) path",
        "http-request set-var(txn.lay7_hostpath) req.fhdr(host),field(1,:),lower,concat(:,txn.lay7_path) if { var(txn.lay7_path) -m found }",
        "http-request set-var(txn.lay7_hit) var(txn.lay7_hostpath),map_str(/etc/haproxy/maps/lay7_routes_host_exact.map)",
        "http-request set-var(txn.lay7_hit) var(txn.lay7_hostpath),map_beg(/etc/haproxy/maps/lay7_routes_host_prefix.map)"
        " if !{ var(txn.lay7_hit) -m found }",
        "http-request set-var(txn.lay7_hit) path,map_str(/etc/haproxy/maps/lay7_routes_exact.map) if !{ var(txn.lay7_hit) -m found }",
        "http-request set-var(txn.lay7_hit) path,map_beg(/etc/haproxy/maps/lay7_routes_prefix.map,999999999:main) if !{ var(txn.lay7_hit) -m found }",
        "http-request set-var(txn.lay7_mhostpath) method,concat(:,txn.lay7_hostpath) if { var(txn.lay7_hostpath) -m found }",
        "http-request set-var(txn.lay7_rank) var(txn.lay7_hit),field(1,:)",
        "http-request set-var(txn.lay7_cand) var(txn.lay7_mhostpath),map_str(/etc/haproxy/maps/lay7_routes_method_exact.map)",
        "http-request set-var(txn.lay7_hit) var(txn.lay7_cand) if { var(txn.lay7_cand),field(1,:),sub(txn.lay7_rank) -m int lt 0 }",
        "http-request set-var(txn.lay7_rank) var(txn.lay7_hit),field(1,:)",
        "http-request set-var(txn.lay7_cand) var(txn.lay7_mhostpath),map_beg(/etc/haproxy/maps/lay7_routes_method_prefix.map)",
        "http-request set-var(txn.lay7_hit) var(txn.lay7_cand) if { var(txn.lay7_cand),field(1,:),sub(txn.lay7_rank) -m int lt 0 }",
        "acl route_tenants_host req.fhdr(host),field(1,:),lower -m end .example.com",
        "acl route_tenants_path path -m beg /",
        "http-request set-var(txn.lay7_hit) str(4:r2) if route_tenants_host route_tenants_path { var(txn.lay7_hit),field(1,:) -m int gt 4 }",
        "http-request set-var(txn.lay7_be) var(txn.lay7_hit),field(2,:)",
        "use_backend %[var(txn.lay7_be)] if { var(txn.lay7_be) -m found }",
        "default_backend main",
    ]
    assert [(m["name"], m["content"]) for m in compiled["maps"]] == [
        ("lay7_routes_exact.map", "/a 5:r2\n"),
        ("lay7_routes_prefix.map", "/a/ 5:r2\n"),
        ("lay7_routes_host_exact.map", "api.example.com:/healthz 0:main\napi.example.com:/v1 2:r2\n"),
        ("lay7_routes_host_prefix.map", "api.example.com:/ 3:r1\napi.example.com:/v1/ 2:r2\n"),
        ("lay7_routes_method_exact.map", "POST:api.example.com:/v1 1:main\n"),
        ("lay7_routes_method_prefix.map", "POST:api.example.com:/v1/ 1:main\n"),
    ]
    for target, host, method, expected in [
        ("/healthz", "API.EXAMPLE.COM:443", "GET", "main"),
        ("/healthz/x", "api.example.com", "GET", "r1"),
        ("/v1", "api.example.com", "POST", "main"),
        ("/v1/x", "api.example.com", "POST", "main"),
        ("/v1", "api.example.com", "GET", "r2"),
        ("/v10", "api.example.com", "POST", "r1"),
        ("/a", "api.example.com", "GET", "r1"),
        ("/a", "www.example.com", "GET", "r2"),
        ("/a", "api.example.com,www.example.com", "GET", "r2"),
        ("/b", "api.example.com.", "GET", "main"),
        ("*", "api.example.com", "OPTIONS", "main"),
    ]:
        assert_routes(HOST_MAP_ROUTES, backends, "main", target, expected, host=host, method=method)


REGEX_MAP_ROUTES = [
    {"name": "any", "path": "/o/.*", "match": "regex", "backend": "r1"},
    {"name": "digits", "path": "/o/[0-9]+", "match": "regex", "backend": "r2"},
    {"name": "post", "path": "/o/[0-9]+", "match": "regex", "methods": ["POST"], "backend": "r2"},
    {"name": "h", "host": "api.example.com", "path": "(/a|/b)/x", "match": "regex", "backend": "main"},
    {"name": "w", "host": "*.example.com", "path": "/w/.+", "match": "regex", "backend": "r1"},
]


def test_compiled_map_form_with_regex_maps():
    """Regex routes without methods, with an exact host or none, become map_reg keys in rank
    order (first match wins), anchored as in the acl form; a host key starts with the escaped
    host and ':'. Regex routes with methods or a wildcard host stay rules."""
    backends = {name: {"servers": [server(name, i + 10)]} for i, name in enumerate(["main", "r1", "r2"])}
    compiled = compile_routes(REGEX_MAP_ROUTES, backends, "main", mode="map", map_dir="/m")
    maps = {m["name"]: m["content"] for m in compiled["maps"]}
    assert maps["lay7_routes_regex.map"] == "^(?:/o/.*)$ 3:r1\n^(?:/o/[0-9]+)$ 4:r2\n"
    assert maps["lay7_routes_host_regex.map"] == "^api\\.example\\.com:(?:(/a|/b)/x)$ 0:main\n"
    assert [line for line in compiled["frontend"] if "map_reg" in line or " -m reg " in line] == [
        "http-request set-var(txn.lay7_cand) var(txn.lay7_hostpath),map_reg(/m/lay7_routes_host_regex.map)",
        "http-request set-var(txn.lay7_cand) var(txn.lay7_path),map_reg(/m/lay7_routes_regex.map)",
        "acl route_w_path path -m reg '^(?:/w/.+)$'",
        "acl route_post_path path -m reg '^(?:/o/[0-9]+)$'",
    ]
    for target, host, method, expected in [
        ("/o/12", None, "GET", "r1"),
        ("/o/12", None, "POST", "r2"),
        ("/a/x", "api.example.com:8443", "GET", "main"),
        ("/a/x", "apixexample.com", "GET", "main"),
        ("/w/1", "apixexample.com", "GET", "main"),
        ("/w/1", "w.example.com", "GET", "r1"),
        ("/o/1", "api.example.com", "GET", "r1"),
    ]:
        assert_routes(REGEX_MAP_ROUTES, backends, "main", target, expected, host=host, method=method)


def test_contract_shape_and_defaults():
    backends = {
        "main": {"servers": [{"name": "web1", "address": "192.0.2.11"}]},
        "app": {
            "servers": [
                {"name": "s2", "address": "192.0.2.22", "port": "8080", "weight": 10},
                {"name": "s1", "address": "192.0.2.21", "backup": True},
            ],
            "persistence": "cookie",
            "balance": "leastconn",
            "check_path": "/healthz?full=1",
        },
    }
    routes = [{"name": "app", "path": "/app/", "backend": "app"}]
    compiled = compile_routes(routes, backends, "main")
    assert list(compiled) == ["mode", "default_backend", "frontend", "maps", "backends", "servers", "routes",
                              "https_redirect_backend", "unmatched", "listeners", "backend_rules"]
    assert compiled["mode"] == "acl"
    assert compiled["default_backend"] == "main"
    assert compiled["backends"] == [
        {
            "name": "app",
            "balance": "leastconn",
            "fallback": None,
            "persistence": "cookie",
            "cookie_name": "LAY7_APP",
            "check_path": "/healthz?full=1",
            "protocol": "http1",
            "servers": [
                {"name": "s2", "id": 1, "address": "192.0.2.22", "port": 8080, "weight": 10, "backup": False},
                {"name": "s1", "id": 2, "address": "192.0.2.21", "port": 80, "weight": 100, "backup": True},
            ],
            "fallback_servers": [],
        },
        {
            "name": "main",
            "balance": "roundrobin",
            "fallback": None,
            "persistence": "none",
            "cookie_name": None,
            "check_path": None,
            "protocol": "http1",
            "servers": [{"name": "web1", "id": 1, "address": "192.0.2.11", "port": 80, "weight": 100, "backup": False}],
            "fallback_servers": [],
        },
    ]
    assert compiled["routes"] == [
        {"name": "app", "index": 0, "match": "prefix", "path": "/app", "host": None, "methods": [], "scheme": None,
         "require_https": False, "backend": "app", "listener": None, "headers": [], "query": [], "filters": [], "backends": [],
         "timeout_ms": None, "retries": True}
    ]
    assert compiled["https_redirect_backend"] is None
    assert compiled["unmatched"] == "default"
    assert compiled["backend_rules"] == []


def test_fallback_servers_stand_in_as_tracking_backups():
    """A request retried after its server died can only go to a server of the same backend."""
    backends = {
        "main": {"servers": [{"name": "web1", "address": "192.0.2.11"}], "fallback": "spare"},
        "a_pool": {"servers": [{"name": "web2", "address": "192.0.2.12", "port": 8080}], "fallback": "main"},
        "spare": {"servers": [{"name": "web2", "address": "192.0.2.12"}, {"name": "web3", "address": "192.0.2.13", "weight": 5},
                              {"name": "web4", "address": "192.0.2.14", "backup": True}]},
    }
    compiled = {b["name"]: b for b in compile_routes([], backends, "main")["backends"]}
    assert compiled["a_pool"]["fallback_servers"] == [
        {"name": "fallback_web1", "id": 2, "address": "192.0.2.11", "port": 80, "weight": 100, "track": "main/web1",
         "protocol": "http1"},
    ]
    assert [(s["name"], s["id"], s["track"]) for s in compiled["main"]["fallback_servers"]] == [
        ("fallback_web2", 2, "spare/web2"), ("fallback_web3", 3, "spare/web3"),
    ]
    assert compiled["main"]["fallback_servers"][1]["weight"] == 5   # web4, spare's own backup, does not stand in
    assert compiled["spare"]["fallback_servers"] == []


def test_fallback_server_name_clash_names_the_backend():
    backends = {
        "main": {"servers": [{"name": "web1", "address": "192.0.2.11"}]},
        "a_pool": {"servers": [{"name": "fallback_web1", "address": "192.0.2.12"}], "fallback": "main"},
    }
    with pytest.raises(AnsibleFilterError, match="backend 'a_pool': server name 'fallback_web1' is reserved"):
        compile_routes([], backends, "main")


@pytest.mark.parametrize(
    ("count", "threshold", "mode"),
    [(0, 0, "acl"), (3, 2, "map"), (3, 3, "acl"), (DEFAULT_MAP_THRESHOLD, None, "acl"), (DEFAULT_MAP_THRESHOLD + 1, None, "map")],
)
def test_auto_mode_threshold(count, threshold, mode):
    routes = [{"name": f"r{i}", "path": f"/p{i}", "backend": "x"} for i in range(count)]
    kwargs = {} if threshold is None else {"map_threshold": threshold}
    assert compile_routes(routes, ONE_BACKEND, "main", **kwargs)["mode"] == mode


def test_map_form_rule_count_does_not_grow_with_routes():
    def frontend_lines(n: int) -> list:
        routes = [{"name": f"r{i}", "path": f"/p{i}", "backend": "x"} for i in range(n)]
        routes += [{"name": f"e{i}", "path": f"/e/{i}", "match": "exact", "backend": "main"} for i in range(n)]
        return compile_routes(routes, ONE_BACKEND, "main", mode="map")["frontend"]

    small, large = frontend_lines(10), frontend_lines(2000)
    assert len(small) == len(large)
    assert not any(line.startswith("acl ") for line in large)


# ------------------------------------------------------------------ precedence

BE = {name: {"servers": [server(name, i + 10)]} for i, name in enumerate(["main", "r1", "r2", "r3", "r4"])}

PRECEDENCE_CASES = [
    # (routes, request target, host, method, expected backend)
    ([{"name": "s", "path": "/a", "backend": "r1"}, {"name": "l", "path": "/a/b", "backend": "r2"}], "/a/b/c", None, "GET", "r2"),
    ([{"name": "s", "path": "/a", "backend": "r1"}, {"name": "l", "path": "/a/b", "backend": "r2"}], "/a/bc", None, "GET", "r1"),
    (
        [{"name": "p", "path": "/a/b", "backend": "r1"}, {"name": "e", "path": "/a/b", "match": "exact", "backend": "r2"}],
        "/a/b",
        None,
        "GET",
        "r2",
    ),
    (
        [{"name": "p", "path": "/a/b", "backend": "r1"}, {"name": "e", "path": "/a/b", "match": "exact", "backend": "r2"}],
        "/a/b/",
        None,
        "GET",
        "r1",
    ),
    (
        [{"name": "x", "path": "/a/.*", "match": "regex", "backend": "r1"}, {"name": "p", "path": "/a", "backend": "r2"}],
        "/a/x",
        None,
        "GET",
        "r2",
    ),
    (
        [{"name": "x", "path": "/a/.*", "match": "regex", "backend": "r1"}, {"name": "p", "path": "/b", "backend": "r2"}],
        "/a/x",
        None,
        "GET",
        "r1",
    ),
    (
        [{"name": "x", "path": "/a", "match": "regex", "backend": "r1"}],
        "/x/a",
        None,
        "GET",
        "main",
    ),
    (
        [{"name": "x", "path": "/a", "match": "regex", "backend": "r1"}],
        "/ab",
        None,
        "GET",
        "main",
    ),
    # regexes overlap: declaration order decides
    (
        [
            {"name": "x1", "path": "/[a-z]+", "match": "regex", "backend": "r1"},
            {"name": "x2", "path": "/a[a-z]*", "match": "regex", "backend": "r2"},
        ],
        "/ab",
        None,
        "GET",
        "r1",
    ),
    (
        [
            {"name": "x2", "path": "/a[a-z]*", "match": "regex", "backend": "r2"},
            {"name": "x1", "path": "/[a-z]+", "match": "regex", "backend": "r1"},
        ],
        "/ab",
        None,
        "GET",
        "r2",
    ),
    # hosts: exact before wildcard before none, whatever the path length
    (
        [
            {"name": "n", "path": "/a/b/c", "backend": "r1"},
            {"name": "w", "host": "*.example.com", "path": "/a", "backend": "r2"},
            {"name": "h", "host": "www.example.com", "path": "/", "backend": "r3"},
        ],
        "/a/b/c",
        "www.example.com",
        "GET",
        "r3",
    ),
    (
        [
            {"name": "n", "path": "/a/b/c", "backend": "r1"},
            {"name": "w", "host": "*.example.com", "path": "/a", "backend": "r2"},
            {"name": "h", "host": "www.example.com", "path": "/", "backend": "r3"},
        ],
        "/a/b/c",
        "api.example.com:8080",
        "GET",
        "r2",
    ),
    (
        [
            {"name": "n", "path": "/a/b/c", "backend": "r1"},
            {"name": "w", "host": "*.example.com", "path": "/a", "backend": "r2"},
            {"name": "h", "host": "www.example.com", "path": "/", "backend": "r3"},
        ],
        "/a/b/c",
        "WWW.EXAMPLE.ORG",
        "GET",
        "r1",
    ),
    (
        [{"name": "w", "host": "*.example.com", "path": "/", "backend": "r2"}],
        "/",
        "example.com",
        "GET",
        "main",
    ),
    (
        [{"name": "w", "host": "*.example.com", "path": "/", "backend": "r2"}],
        "/",
        "a.b.EXAMPLE.com",
        "GET",
        "r2",
    ),
    (
        [{"name": "w", "host": "*.example.com", "path": "/", "backend": "r2"}],
        "/",
        None,
        "GET",
        "main",
    ),
    # longer wildcard first
    (
        [
            {"name": "w1", "host": "*.example.com", "path": "/", "backend": "r1"},
            {"name": "w2", "host": "*.eu.example.com", "path": "/", "backend": "r2"},
        ],
        "/",
        "x.eu.example.com",
        "GET",
        "r2",
    ),
    # methods: a method route wins a tie on the same path...
    (
        [{"name": "p", "path": "/a", "backend": "r1"}, {"name": "m", "path": "/a", "methods": ["POST"], "backend": "r2"}],
        "/a/x",
        None,
        "POST",
        "r2",
    ),
    (
        [{"name": "p", "path": "/a", "backend": "r1"}, {"name": "m", "path": "/a", "methods": ["POST"], "backend": "r2"}],
        "/a/x",
        None,
        "GET",
        "r1",
    ),
    (
        [{"name": "m", "path": "/a", "methods": ["POST"], "backend": "r2"}],
        "/a/x",
        None,
        "post",
        "main",
    ),
    # ...but never beats a longer or exact unconditioned route (map form keeps this too)
    (
        [{"name": "m", "path": "/a", "methods": ["GET"], "backend": "r2"}, {"name": "l", "path": "/a/b", "backend": "r1"}],
        "/a/b/c",
        None,
        "GET",
        "r1",
    ),
    (
        [{"name": "m", "path": "/a", "methods": ["GET"], "backend": "r2"}, {"name": "l", "path": "/a/b", "backend": "r1"}],
        "/a/c",
        None,
        "GET",
        "r2",
    ),
    (
        [
            {"name": "m", "path": "/a", "methods": ["GET"], "backend": "r2"},
            {"name": "e", "path": "/a/x", "match": "exact", "backend": "r1"},
        ],
        "/a/x",
        None,
        "GET",
        "r1",
    ),
    (
        [
            {"name": "m", "path": "/a/x", "match": "exact", "methods": ["GET"], "backend": "r2"},
            {"name": "e", "path": "/a/x", "match": "exact", "backend": "r1"},
            {"name": "p", "path": "/a/x", "backend": "r3"},
        ],
        "/a/x",
        None,
        "GET",
        "r2",
    ),
    (
        [
            {"name": "m", "path": "/a/x", "match": "exact", "methods": ["GET"], "backend": "r2"},
            {"name": "e", "path": "/a/x", "match": "exact", "backend": "r1"},
            {"name": "p", "path": "/a/x", "backend": "r3"},
        ],
        "/a/x",
        None,
        "PUT",
        "r1",
    ),
    # a method prefix beats a shorter unconditioned prefix, a regex never beats a prefix
    (
        [
            {"name": "root", "path": "/", "backend": "r1"},
            {"name": "m", "path": "/a", "methods": ["GET"], "backend": "r2"},
        ],
        "/a/b",
        None,
        "GET",
        "r2",
    ),
    (
        [
            {"name": "mroot", "path": "/", "methods": ["DELETE"], "backend": "r1"},
            {"name": "rx", "path": "/a/.*", "match": "regex", "backend": "r3"},
        ],
        "/a/b",
        None,
        "DELETE",
        "r1",
    ),
    (
        [
            {"name": "mroot", "path": "/", "methods": ["DELETE"], "backend": "r1"},
            {"name": "rx", "path": "/a/.*", "match": "regex", "backend": "r3"},
        ],
        "/a/b",
        None,
        "GET",
        "r3",
    ),
    # the regex is matched against the path only, never the query string
    (
        [{"name": "rx", "path": "/s.*q=1", "match": "regex", "backend": "r1"}],
        "/search?q=1",
        None,
        "GET",
        "main",
    ),
    # case-sensitive paths
    ([{"name": "p", "path": "/API", "backend": "r1"}], "/api", None, "GET", "main"),
    ([{"name": "p", "path": "/API", "backend": "r1"}], "/API/v1", None, "GET", "r1"),
    # trailing slash in a prefix is ignored; in an exact path it is significant
    ([{"name": "p", "path": "/a/", "backend": "r1"}], "/a", None, "GET", "r1"),
    ([{"name": "e", "path": "/a/", "match": "exact", "backend": "r1"}], "/a", None, "GET", "main"),
    ([{"name": "e", "path": "/a/", "match": "exact", "backend": "r1"}], "/a/", None, "GET", "r1"),
    ([{"name": "root", "path": "/", "backend": "r1"}], "//", None, "GET", "r1"),
    ([{"name": "root", "path": "/", "backend": "r1"}], "*", None, "OPTIONS", "main"),
]


@pytest.mark.parametrize(("routes", "target", "host", "method", "expected"), PRECEDENCE_CASES)
def test_precedence(routes, target, host, method, expected):
    assert_routes(routes, BE, "main", target, expected, host=host, method=method)


@pytest.mark.parametrize(("routes", "target", "host", "method", "expected"), PRECEDENCE_CASES)
def test_precedence_ignores_declaration_order_except_ties(routes, target, host, method, expected):
    """Reversing the table changes nothing unless two routes tie (overlapping regexes, or
    method routes on the same path), which the reference resolves by declaration order."""
    reversed_routes = list(reversed(routes))
    want = ref.choose_backend(reversed_routes, BE, "main", target, host, method)
    regexes = [r for r in routes if r.get("match") == "regex" and not r.get("methods")]
    if len(regexes) < 2:
        assert want == expected
    assert_routes(reversed_routes, BE, "main", target, want, host=host, method=method)


def test_emitted_order_is_independent_of_declaration_order():
    routes = [
        {"name": "a", "path": "/a", "backend": "r1"},
        {"name": "ab", "path": "/a/b", "backend": "r2"},
        {"name": "e", "path": "/e", "match": "exact", "backend": "r3"},
        {"name": "h", "host": "x.example.com", "path": "/", "backend": "r4"},
        {"name": "w", "host": "*.example.com", "path": "/z", "methods": ["GET"], "backend": "r4"},
        {"name": "rx", "path": "/r[0-9]", "match": "regex", "backend": "r1"},
    ]
    expected = {mode: compile_routes(routes, BE, "main", mode=mode) for mode in MODES}
    rng = random.Random(7)
    for _attempt in range(20):
        shuffled = copy.deepcopy(routes)
        rng.shuffle(shuffled)
        for mode in MODES:
            got = compile_routes(shuffled, BE, "main", mode=mode)
            assert got["frontend"] == expected[mode]["frontend"]
            assert got["maps"] == expected[mode]["maps"]
            assert [r["name"] for r in got["routes"]] == [r["name"] for r in expected[mode]["routes"]]


# ------------------------------------------------------------------ fallback

FALLBACK_BACKENDS = {
    "main": {"servers": [server("web1", 11)], "fallback": "a_pool"},
    "a_pool": {"servers": [server("web2", 12)], "fallback": "main"},
    "b_pool": {"servers": [server("web3", 13)], "fallback": "main"},
    "c_pool": {"servers": [server("web4", 14)], "fallback": "b_pool"},
    "lone": {"servers": [server("web5", 15)]},
}
FALLBACK_ROUTES = SEED_ROUTES + [
    {"name": "c", "path": "/c", "backend": "c_pool"},
    {"name": "l", "path": "/l", "match": "exact", "backend": "lone"},
]


@pytest.mark.parametrize(
    ("target", "up", "expected"),
    [
        ("/a", {"main", "a_pool", "b_pool"}, "a_pool"),
        ("/a", {"main", "b_pool"}, "main"),
        ("/a", {"b_pool"}, "a_pool"),  # neither has servers: the original answers 503
        ("/b", {"main", "a_pool"}, "main"),
        ("/b", {"a_pool"}, "b_pool"),  # one hop only: b_pool -> main, never main -> a_pool
        ("/x", {"a_pool"}, "a_pool"),  # the default backend falls back too
        ("/x", set(), "main"),
        ("*", {"a_pool"}, "a_pool"),
        ("/c", {"b_pool"}, "b_pool"),
        ("/c", {"main"}, "c_pool"),  # never chained c -> b -> main
        ("/l", {"main", "a_pool"}, "lone"),  # no fallback: 503 from lone
    ],
)
def test_fallback(target, up, expected):
    assert_routes(FALLBACK_ROUTES, FALLBACK_BACKENDS, "main", target, expected, up=up)


# ------------------------------------------------------------------ randomised agreement


def _random_table(
    rng: random.Random,
    host_rate: float = 0.25,
    hosts: tuple = ("x.example.com", "*.example.com", "y.example.com"),
    method_rate: float = 0.3,
    methods: tuple = ("GET", "POST", "PUT"),
    scheme_rate: float = 0.0,
    require_https_rate: float = 0.0,
) -> tuple:
    segs = ["a", "b", "ab", "c"]
    names = ["main", "r1", "r2", "r3"]
    backends = {n: {"servers": [server(n, i + 10)]} for i, n in enumerate(names)}
    for n in names:
        if rng.random() < 0.5:
            backends[n]["fallback"] = rng.choice([m for m in names if m != n])
    routes = []
    for i in range(rng.randint(1, 9)):
        match = rng.choice(["exact", "prefix", "prefix", "regex"])
        depth = rng.randint(0 if match == "prefix" else 1, 3)
        path = "/" + "/".join(rng.choice(segs) for _seg in range(depth))
        if match == "prefix" and rng.random() < 0.3:
            path += "/"
        if match == "regex":
            path = path.replace("/b", "/b+") + rng.choice(["", "/.*", "(/c)?"])
        route = {"name": f"r{i}", "path": path, "match": match, "backend": rng.choice(names)}
        if rng.random() < host_rate:
            route["host"] = rng.choice(hosts)
        if rng.random() < method_rate:
            route["methods"] = rng.sample(list(methods), rng.randint(1, 2))
        # Drawn only when asked for, so the tables of the tests without schemes stay the same.
        if scheme_rate and rng.random() < scheme_rate:
            route["scheme"] = rng.choice(["http", "https"])
        if require_https_rate and route.get("scheme") is None and rng.random() < require_https_rate:
            route["require_https"] = True
        routes.append(route)
    return routes, backends


def test_random_tables_agree_across_reference_acl_and_map():
    rng = random.Random(20261125)
    targets = ["/", "", "/a", "/a/", "/ab", "/a/b", "/a/b/c", "/b", "/bb/c", "/c", "/ab/c?x", "/a//b", "/A"]
    hosts = [None, "x.example.com", "z.example.com:81", "example.com"]
    compiled_tables = 0
    for _table in range(400):
        routes, backends = _random_table(rng)
        try:
            frontends = {mode: _frontend(routes, backends, mode) for mode in MODES}
        except AnsibleFilterError as exc:
            assert "shadowed" in str(exc) or "duplicates" in str(exc), exc
            continue
        compiled_tables += 1
        for _request in range(25):
            target, host = rng.choice(targets), rng.choice(hosts)
            method = rng.choice(["GET", "POST", "PUT"])
            up = {n for n in backends if rng.random() < 0.7}
            want = ref.choose_backend(routes, backends, "main", target, host, method, up)
            for mode, frontend in frontends.items():
                got = frontend.route(target, host, method, up)
                assert got == want, (mode, routes, backends, target, host, method, sorted(up))
    assert compiled_tables > 200  # the generator mostly produces valid tables


# Host headers as clients send them: any case, with a port, and malformed ones that must match
# no host route in either form (a comma list, a trailing dot, an IPv6 literal, a '/').
HOST_HEADERS = [
    None, "", "x.example.com", "X.Example.COM:8080", "y.example.com:81", "a.x.example.com", "example.com",
    "x.example.com.", "x.example.com,y.example.com", "y.example.com, x.example.com", "[::1]:80", "x.example.com/a",
    "z.example.com", "xxexample.com",
]  # fmt: skip


def test_random_host_tables_agree_across_reference_acl_and_map():
    """Tables where most routes have a host: exact hosts go to the host, method and regex maps
    in the map form, wildcards stay rules, and every form picks the same backend."""
    rng = random.Random(20261128)
    targets = ["/", "", "*", "/a", "/a/", "/ab", "/a/b", "/a/b/c", "/b", "/bb/c", "/c", "/ab/c?x", "/a//b", "/A", "/a:b"]
    hosts = ("x.example.com", "y.example.com", "a.x.example.com", "*.example.com", "*.x.example.com")
    compiled_tables = host_mapped = host_regex_mapped = 0
    for _table in range(500):
        routes, backends = _random_table(rng, host_rate=0.8, hosts=hosts)
        try:
            frontends = {mode: _frontend(routes, backends, mode) for mode in MODES}
        except AnsibleFilterError as exc:
            assert "shadowed" in str(exc) or "duplicates" in str(exc), exc
            continue
        compiled_tables += 1
        host_mapped += any(m["name"] == "lay7_routes_host_exact.map" for m in frontends["map"].maps_list)
        host_regex_mapped += any(m["name"] == "lay7_routes_host_regex.map" for m in frontends["map"].maps_list)
        for _request in range(30):
            target, host = rng.choice(targets), rng.choice(HOST_HEADERS)
            method = rng.choice(["GET", "POST", "PUT"])
            up = {n for n in backends if rng.random() < 0.7}
            want = ref.choose_backend(routes, backends, "main", target, host, method, up)
            for mode, frontend in frontends.items():
                got = frontend.route(target, host, method, up)
                assert got == want, (mode, routes, backends, target, host, method, sorted(up))
    assert compiled_tables > 250
    assert host_mapped > 200  # most tables exercise the host maps
    assert host_regex_mapped > 50  # many the host regex map


def test_random_method_tables_agree_across_reference_acl_and_map():
    """Tables where most routes have methods, with an exact host, a wildcard host or none:
    the map form looks exact-host and host-less ones up in the method maps (wildcard and regex
    ones stay rules), and every form picks the same backend, for methods no route names and
    lower-case ones (HAProxy compares methods case-sensitively) too."""
    rng = random.Random(20261127)
    targets = ["/", "", "*", "/a", "/a/", "/ab", "/a/b", "/a/b/c", "/b", "/bb/c", "/c", "/ab/c?x", "/a//b", "/A", "/a:b"]
    hosts = ("x.example.com", "y.example.com", "a.x.example.com", "*.example.com", "*.x.example.com")
    route_methods = ("GET", "POST", "PUT", "HEAD", "PURGE")
    request_methods = route_methods + ("DELETE", "get", "Post")
    compiled_tables = method_mapped = regex_mapped = 0
    for _table in range(600):
        routes, backends = _random_table(rng, host_rate=rng.choice([0.0, 0.5, 0.8]), hosts=hosts, method_rate=0.7, methods=route_methods)
        try:
            frontends = {mode: _frontend(routes, backends, mode) for mode in MODES}
        except AnsibleFilterError as exc:
            assert "shadowed" in str(exc) or "duplicates" in str(exc), exc
            continue
        compiled_tables += 1
        method_mapped += any(m["name"] == "lay7_routes_method_exact.map" for m in frontends["map"].maps_list)
        regex_mapped += any(m["name"] in ("lay7_routes_regex.map", "lay7_routes_host_regex.map") for m in frontends["map"].maps_list)
        for _request in range(30):
            target, host = rng.choice(targets), rng.choice(HOST_HEADERS)
            method = rng.choice(request_methods)
            up = {n for n in backends if rng.random() < 0.7}
            want = ref.choose_backend(routes, backends, "main", target, host, method, up)
            for mode, frontend in frontends.items():
                got = frontend.route(target, host, method, up)
                assert got == want, (mode, routes, backends, target, host, method, sorted(up))
    assert compiled_tables > 300
    assert method_mapped > 250  # most tables exercise the method maps
    assert regex_mapped > 50  # and many the regex maps


def _frontend(routes, backends, mode):
    compiled = compile_routes(routes, backends, "main", mode=mode)
    frontend = haproxy_sim.Frontend(compiled["frontend"], compiled["maps"], compiled["https_redirect_backend"])
    frontend.maps_list = compiled["maps"]
    return frontend


# ------------------------------------------------------------------ errors


def _err(routes=None, backends=None, default="main", **kwargs):
    routes = SEED_ROUTES if routes is None else routes
    backends = SEED_BACKENDS if backends is None else backends
    return compile_routes(routes, backends, default, **kwargs)


def _with_backend(name, **changes):
    backends = copy.deepcopy(SEED_BACKENDS)
    backends[name].update(changes)
    return backends


ERROR_CASES = [
    pytest.param(
        dict(routes=[{"name": "api", "path": "/api", "backend": "apii"}]),
        r"route 'api' \(index 0\): backend 'apii' is not defined; known: a_pool, b_pool, main",
        id="unknown-backend",
    ),
    pytest.param(
        dict(routes=[{"name": "a", "path": "/a", "bakend": "a_pool"}]),
        r"route 'a' \(index 0\): unknown key 'bakend' \(did you mean 'backend'\?\)",
        id="unknown-route-key",
    ),
    pytest.param(
        dict(routes=[{"name": "a", "path": "/a", "backend": "a_pool"}, {"name": "a", "path": "/z", "backend": "a_pool"}]),
        r"route 'a' \(index 1\): name 'a' duplicates route index 0",
        id="duplicate-name",
    ),
    pytest.param(
        dict(routes=[{"name": "a", "path": "/a/", "backend": "a_pool"}, {"name": "a2", "path": "/a", "backend": "b_pool"}]),
        r"route 'a2' \(index 1\): path '/a' \(prefix\) duplicates route 'a' \(index 0",
        id="duplicate-route",
    ),
    pytest.param(
        dict(routes=[{"name": "all", "path": "/", "backend": "a_pool"}, {"name": "rx", "path": "/r.*", "match": "regex", "backend": "b_pool"}]),
        r"route 'rx' \(index 1\): path '/r\.\*' \(regex\) is fully shadowed by route 'all' \(index 0, prefix '/'\)",
        id="shadowed-regex",
    ),
    pytest.param(
        dict(
            routes=[
                {"name": "gp", "path": "/a", "methods": ["GET", "POST"], "backend": "a_pool"},
                {"name": "g", "path": "/a/b", "methods": ["GET"], "backend": "b_pool"},
                {"name": "g2", "path": "/a", "methods": ["get"], "backend": "b_pool"},
            ]
        ),
        r"route 'g2' \(index 2\): path '/a' \(prefix, methods GET\) is fully shadowed by route 'gp' \(index 0",
        id="shadowed-methods",
    ),
    pytest.param(
        dict(
            routes=[
                {"name": "w", "host": "*.example.com", "path": "/", "backend": "a_pool"},
                {"name": "w2", "host": "*.eu.example.com", "path": "/x", "methods": ["GET"], "backend": "b_pool"},
                {"name": "w3", "host": "*.EXAMPLE.com", "path": "/y.*", "match": "regex", "backend": "b_pool"},
            ]
        ),
        r"route 'w3' \(index 2\): path '/y\.\*' \(regex, host \*\.example\.com\) is fully shadowed by route 'w' \(index 0",
        id="shadowed-host",
    ),
    pytest.param(
        dict(routes=[{"name": "rx", "path": "/a(", "match": "regex", "backend": "a_pool"}]),
        r"route 'rx' \(index 0\): path '/a\(' is not a valid regex",
        id="invalid-regex",
    ),
    pytest.param(
        dict(routes=[{"name": "rel", "path": "a/b", "backend": "a_pool"}]),
        r"route 'rel' \(index 0\): path 'a/b' must be a string starting with '/'",
        id="path-without-slash",
    ),
    pytest.param(
        dict(routes=[{"name": "rx", "path": "a/b", "match": "regex", "backend": "a_pool"}]),
        r"route 'rx' \(index 0\): path 'a/b' must be a string starting with '/'",
        id="regex-path-without-slash",
    ),
    pytest.param(
        dict(routes=[{"name": "q", "path": "/a?x=1", "match": "exact", "backend": "a_pool"}]),
        r"route 'q' \(index 0\): path '/a\?x=1' contains characters not allowed",
        id="query-in-path",
    ),
    pytest.param(
        dict(routes=[{"name": "sp", "path": "/a b", "backend": "a_pool"}]),
        r"route 'sp' \(index 0\): path '/a b' contains characters not allowed",
        id="space-in-path",
    ),
    pytest.param(
        dict(routes=[{"name": "u", "path": "/café", "backend": "a_pool"}]),
        r"route 'u' \(index 0\): path '/café' contains non-ASCII characters; percent-encode",
        id="unicode-path",
    ),
    pytest.param(
        dict(routes=[{"name": "d", "path": "/a/../b", "backend": "a_pool"}]),
        r"route 'd' \(index 0\): path '/a/\.\./b' contains a '\.' or '\.\.' segment",
        id="dot-segment",
    ),
    pytest.param(
        dict(routes=[{"name": "d", "path": "/a//b", "backend": "a_pool"}]),
        r"route 'd' \(index 0\): path '/a//b' contains an empty segment",
        id="empty-segment",
    ),
    pytest.param(
        dict(routes=[{"name": "g", "path": "/a", "match": "glob", "backend": "a_pool"}]),
        r"route 'g' \(index 0\): match 'glob' is not one of exact, prefix, regex",
        id="bad-match-type",
    ),
    pytest.param(
        dict(routes=[{"name": "h", "path": "/a", "host": "example.com:8080", "backend": "a_pool"}]),
        r"route 'h' \(index 0\): host 'example.com:8080' is not a host name",
        id="bad-host",
    ),
    pytest.param(
        dict(routes=[{"name": "h", "path": "/a", "host": "a.*.com", "backend": "a_pool"}]),
        r"route 'h' \(index 0\): host 'a.\*.com' is not a host name",
        id="bad-wildcard",
    ),
    pytest.param(
        dict(routes=[{"name": "m", "path": "/a", "methods": ["GET", "GE T"], "backend": "a_pool"}]),
        r"route 'm' \(index 0\): methods\[1\] 'GE T' is not an HTTP method name",
        id="bad-method",
    ),
    pytest.param(
        dict(routes=[{"name": "m", "path": "/a", "methods": "GET", "backend": "a_pool"}]),
        r"route 'm' \(index 0\): methods must be a list, got 'GET'",
        id="methods-not-list",
    ),
    pytest.param(
        dict(routes=[{"path": "/a", "backend": "a_pool"}]),
        r"route index 0: name is required",
        id="missing-name",
    ),
    pytest.param(
        dict(routes=[{"name": "a b", "path": "/a", "backend": "a_pool"}]),
        r"route index 0: name 'a b' is not a valid name",
        id="bad-name",
    ),
    pytest.param(
        dict(routes=[{"name": "a", "backend": "a_pool"}]),
        r"route 'a' \(index 0\): path is required",
        id="missing-path",
    ),
    pytest.param(
        dict(routes=[{"name": "a", "path": "/a"}]),
        r"route 'a' \(index 0\): backend is required",
        id="missing-backend",
    ),
    pytest.param(
        dict(routes={"name": "a"}),
        r"routes: expected a list of route mappings, got dict",
        id="routes-not-list",
    ),
    pytest.param(
        dict(backends=_with_backend("main", fallback="main")),
        r"backend 'main': fallback 'main' names the backend itself \(a fallback cycle\)",
        id="fallback-cycle",
    ),
    pytest.param(
        dict(backends=_with_backend("b_pool", fallback="c_pool")),
        r"backend 'b_pool': fallback 'c_pool' is not defined; known: a_pool, b_pool, main",
        id="unknown-fallback",
    ),
    pytest.param(
        dict(backends=_with_backend("a_pool", servers=[])),
        r"backend 'a_pool': servers is empty",
        id="empty-backend",
    ),
    pytest.param(
        dict(backends={**SEED_BACKENDS, "x": {"fallback": "main"}}),
        r"backend 'x': servers is required",
        id="backend-without-servers",
    ),
    pytest.param(
        dict(backends=_with_backend("a_pool", fallbak="main")),
        r"backend 'a_pool': unknown key 'fallbak' \(did you mean 'fallback'\?\)",
        id="unknown-backend-key",
    ),
    pytest.param(
        dict(backends=_with_backend("a_pool", balance="random")),
        r"backend 'a_pool': balance 'random' is not one of",
        id="bad-balance",
    ),
    pytest.param(
        dict(backends=_with_backend("a_pool", persistence="sticky")),
        r"backend 'a_pool': persistence 'sticky' is not one of",
        id="bad-persistence",
    ),
    pytest.param(
        dict(backends=_with_backend("a_pool", cookie_name="X")),
        r"backend 'a_pool': cookie_name 'X' is set but persistence is 'none'",
        id="cookie-without-persistence",
    ),
    pytest.param(
        dict(backends=_with_backend("a_pool", check_path="health")),
        r"backend 'a_pool': check_path 'health' must be a URI path",
        id="bad-check-path",
    ),
    pytest.param(
        dict(backends=_with_backend("a_pool", servers=[{"name": "w", "address": "192.0.2.1", "prot": 80}])),
        r"backend 'a_pool' servers\[0\]: unknown key 'prot' \(did you mean 'port'\?\)",
        id="unknown-server-key",
    ),
    pytest.param(
        dict(backends=_with_backend("a_pool", servers=[{"name": "w", "address": "192.0.2.1", "port": 0}])),
        r"backend 'a_pool' server 'w' \(index 0\): port 0 is out of range 1..65535",
        id="bad-port",
    ),
    pytest.param(
        dict(backends=_with_backend("a_pool", servers=[{"name": "w", "address": "192.0.2.1", "weight": True}])),
        r"backend 'a_pool' server 'w' \(index 0\): weight must be an integer, got True",
        id="bad-weight",
    ),
    pytest.param(
        dict(backends=_with_backend("a_pool", servers=[{"name": "w", "address": "192.0.2.1", "backup": "yes"}])),
        r"backend 'a_pool' server 'w' \(index 0\): backup must be true or false, got 'yes'",
        id="bad-backup",
    ),
    pytest.param(
        dict(backends=_with_backend("a_pool", servers=[{"name": "w", "address": "192.0.2.1"}, {"name": "w", "address": "192.0.2.2"}])),
        r"backend 'a_pool' server 'w' \(index 1\): name 'w' duplicates servers\[0\]",
        id="duplicate-server",
    ),
    pytest.param(
        dict(backends=_with_backend("a_pool", servers=[{"name": "w"}])),
        r"backend 'a_pool' server 'w' \(index 0\): address None must be an IP address or host name",
        id="missing-address",
    ),
    pytest.param(dict(default="nope"), r"default_backend 'nope' is not defined; known: a_pool, b_pool, main", id="unknown-default"),
    pytest.param(dict(mode="tree"), r"mode 'tree' is not one of auto, acl, map", id="bad-mode"),
    pytest.param(dict(map_threshold=-1), r"map_threshold -1 is out of range", id="bad-threshold"),
    pytest.param(dict(map_dir="maps"), r"map_dir 'maps' must be an absolute path", id="bad-map-dir"),
]


@pytest.mark.parametrize(("kwargs", "message"), ERROR_CASES)
def test_errors_name_the_field_and_value(kwargs, message):
    with pytest.raises(AnsibleFilterError, match=message):
        _err(**kwargs)


def test_prefix_under_a_longer_prefix_is_not_shadowed():
    # /a/b is more specific than /a: both are reachable, in either declaration order
    for routes in (
        [{"name": "a", "path": "/a", "backend": "r1"}, {"name": "ab", "path": "/a/b", "backend": "r2"}],
        [{"name": "ab", "path": "/a/b", "backend": "r2"}, {"name": "a", "path": "/a", "backend": "r1"}],
    ):
        assert len(compile_routes(routes, BE, "main")["routes"]) == 2


# ------------------------------------------------------------------ determinism, plugin


@pytest.mark.parametrize("mode", MODES)
def test_output_is_deterministic(mode):
    routes = FALLBACK_ROUTES + [
        {"name": "h", "host": "x.example.com", "path": "/", "backend": "b_pool"},
        {"name": "m", "path": "/m", "methods": ["PUT", "GET"], "backend": "a_pool"},
        {"name": "rx", "path": "/r[0-9]+", "match": "regex", "backend": "c_pool"},
    ]
    first = json.dumps(compile_routes(copy.deepcopy(routes), copy.deepcopy(FALLBACK_BACKENDS), "main", mode=mode))
    backends_reordered = dict(reversed(list(copy.deepcopy(FALLBACK_BACKENDS).items())))
    for _attempt in range(3):
        again = json.dumps(compile_routes(copy.deepcopy(routes), backends_reordered, "main", mode=mode))
        assert again == first


def test_filter_plugin_exposes_route_compile():
    filters = plugin.FilterModule().filters()
    assert list(filters) == ["route_compile"]
    out = filters["route_compile"](SEED_ROUTES, SEED_BACKENDS, "main")
    assert out == compile_routes(SEED_ROUTES, SEED_BACKENDS, "main")
    with pytest.raises(AnsibleFilterError, match="bakend"):
        filters["route_compile"]([{"name": "a", "path": "/a", "bakend": "a_pool"}], SEED_BACKENDS, "main")


def test_plugin_documentation_is_valid_yaml_and_matches_defaults():
    doc = yaml.safe_load(plugin.DOCUMENTATION)
    assert doc["name"] == "route_compile"
    assert doc["options"]["map_threshold"]["default"] == DEFAULT_MAP_THRESHOLD
    assert doc["options"]["mode"]["choices"] == ["auto", "acl", "map"]
    examples = yaml.safe_load(plugin.EXAMPLES)
    assert all("lay7.ha.route_compile" in json.dumps(task) or "loop" in task for task in examples)
    assert "_value" in yaml.safe_load(plugin.RETURN)


def test_output_is_identical_across_processes_and_hash_seeds():
    """hap1 and hap2 compile in different processes: nothing may depend on hash order."""
    script = (
        "import json, sys\n"
        "from ansible_collections.lay7.ha.plugins.plugin_utils._routes import compile_routes\n"
        "routes, backends = json.loads(sys.stdin.read())\n"
        "out = [compile_routes(routes, backends, 'main', mode=m) for m in ('acl', 'map')]\n"
        "sys.stdout.write(json.dumps(out))\n"
    )
    routes = FALLBACK_ROUTES + [
        {"name": "m", "path": "/m", "methods": ["PUT", "GET", "DELETE", "POST"], "backend": "a_pool"},
        {"name": "w", "host": "*.example.com", "path": "/", "methods": ["GET", "HEAD"], "backend": "b_pool"},
    ]
    payload = json.dumps([routes, FALLBACK_BACKENDS])
    outputs = set()
    for seed in ("0", "1", "12345"):
        env = dict(os.environ, PYTHONHASHSEED=seed, PYTHONPATH=os.pathsep.join(sys.path))
        res = subprocess.run([sys.executable, "-c", script], input=payload, capture_output=True, text=True, env=env, check=True)
        outputs.add(res.stdout)
    assert len(outputs) == 1


# ------------------------------------------------------------------ regex subset

# Every regex here is refused, with the reason: each is read differently by Python's re and
# HAProxy's PCRE2, or is outside what the subset needs (docs/routing.md, "Regex subset").
REGEX_REJECTED = [
    pytest.param("/a{,3}", "{,n} is a repetition in Python 3.11 but literal text in PCRE2", id="brace-no-min"),
    pytest.param("/[[:digit:]]+", "'[' inside [...] must be escaped", id="posix-class"),
    pytest.param("/[:alpha:]", "looks like a POSIX class", id="posix-class-bare"),
    pytest.param("/[[.a.]]", "'[' inside [...] must be escaped", id="posix-collating"),
    pytest.param("/\\u0041", "\\u is a Unicode escape", id="escape-u"),
    pytest.param("/\\U00000041", "\\U is a Unicode escape", id="escape-U"),
    pytest.param("/\\N{DIGIT_ONE}", "\\N{...} is a Unicode name escape", id="escape-N"),
    pytest.param("/\\x{41}", "\\x{...} is PCRE2 syntax", id="escape-x-brace"),
    pytest.param("/\\x4", "exactly two hex digits", id="escape-x-short"),
    pytest.param("/\\xZZ", "exactly two hex digits", id="escape-x-nonhex"),
    pytest.param("/\\p{L}", "\\p{...} is a Unicode property", id="escape-p"),
    pytest.param("/(?P<id>[0-9]+)", "named groups are not in the subset", id="named-group-python"),
    pytest.param("/(?<id>[0-9]+)", "named groups are not in the subset", id="named-group-pcre"),
    pytest.param("/(?'id'[0-9]+)", "named groups are not in the subset", id="named-group-quote"),
    pytest.param("/(a)(?P=a)", "named back references", id="named-backref"),
    pytest.param("/(a)\\1", "back references and octal escapes", id="backref"),
    pytest.param("/\\0", "back references and octal escapes", id="octal"),
    pytest.param("/(a)\\k<a>", "named back references", id="backref-k"),
    pytest.param("/(?<=a)b", "lookbehind is not in the subset", id="lookbehind"),
    pytest.param("/(?<!a)b", "lookbehind is not in the subset", id="neg-lookbehind"),
    pytest.param("/a(?=b)b", "lookahead is not in the subset", id="lookahead"),
    pytest.param("/a(?!b)", "lookahead is not in the subset", id="neg-lookahead"),
    pytest.param("/(?i)a", "inline flags", id="flag-i"),
    pytest.param("/(?s:.)", "inline flags", id="flag-scoped"),
    pytest.param("/(?x)a b", "whitespace, control or non-ASCII", id="flag-x-space"),
    pytest.param("/(?u)a", "inline flags", id="flag-u"),
    pytest.param("/a*+", "possessive quantifiers", id="possessive"),
    pytest.param("/a{2}+", "possessive quantifiers", id="possessive-count"),
    pytest.param("/(?>a+)b", "atomic groups", id="atomic"),
    pytest.param("/(?#comment)a", "comments are not in the subset", id="comment"),
    pytest.param("/(?(1)a|b)", "conditional groups", id="conditional"),
    pytest.param("/(?|a|b)", "branch reset", id="branch-reset"),
    pytest.param("/(*UTF)a", "PCRE2 verb", id="verb"),
    pytest.param("/a\\Z", "\\Z means end of string in Python", id="anchor-Z"),
    pytest.param("/a\\z", "\\z is PCRE2 syntax", id="anchor-z"),
    pytest.param("/\\Aa", "\\A is not in the subset", id="anchor-A"),
    pytest.param("/a\\b", "word boundaries", id="word-boundary"),
    pytest.param("/a\\G", "\\G is PCRE2 syntax", id="anchor-G"),
    pytest.param("/a$", "'$' is not in the subset", id="dollar"),
    pytest.param("/a|/b$", "'$' is not in the subset", id="dollar-alt"),
    pytest.param("/(^/a)", "'^' is not in the subset", id="caret-inner"),
    pytest.param("/\\Qa.b\\E", "\\Q...\\E quoting", id="quote-QE"),
    pytest.param("/\\h", "\\h and \\H are PCRE2 syntax", id="escape-h"),
    pytest.param("/\\R", "\\R is PCRE2 syntax", id="escape-R"),
    pytest.param("/\\K", "\\K is PCRE2 syntax", id="escape-K"),
    pytest.param("/\\v", "\\v means a vertical tab in Python", id="escape-v"),
    pytest.param("/\\t", "the escape \\t is not in the subset", id="escape-t"),
    pytest.param("/\\n", "the escape \\n is not in the subset", id="escape-n"),
    pytest.param("/\\q", "the escape \\q is not in the subset", id="escape-unknown"),
    pytest.param("/a\\", "ends with a lone backslash", id="trailing-backslash"),
    pytest.param("/[\\b]", "\\b inside [...]", id="class-backspace"),
    pytest.param("/a**", "a repetition of a repetition", id="double-star"),
    pytest.param("/a{2}{3}", "a repetition of a repetition", id="double-count"),
    pytest.param("/a??*", "a repetition of a repetition", id="lazy-then-star"),
    pytest.param("/*a", "every match must start with '/'", id="slash-star-a"),
    pytest.param("(/|*a)", "'*' has nothing to repeat", id="star-first"),
    pytest.param("/(+a)", "'+' has nothing to repeat", id="plus-in-group"),
    pytest.param("/a|?", "'?' has nothing to repeat", id="question-alt"),
    pytest.param("/a{", "a literal '{' must be escaped", id="lone-brace"),
    pytest.param("/a{x}", "a literal '{' must be escaped", id="brace-text"),
    pytest.param("/a{1,x}", "a repetition must be {n}, {n,} or {n,m}", id="brace-bad-max"),
    pytest.param("/a{3,1}", "minimum above its maximum", id="brace-backwards"),
    pytest.param("/a{1001}", "repetition counts above 1000", id="count-too-big"),
    pytest.param("/a{99999999999}", "repetition counts above 1000", id="count-huge"),
    pytest.param("/(/{2}", "missing ')'", id="unclosed-group"),
    pytest.param("/a)", "this ')' closes no group", id="stray-paren"),
    pytest.param("/a]", "a literal ']' must be escaped", id="stray-bracket"),
    pytest.param("/a}", "a literal '}' must be escaped", id="stray-brace"),
    pytest.param("/[a", "missing ']'", id="unclosed-class"),
    pytest.param("/[]a]", "a ']' right after '['", id="class-bracket-first"),
    pytest.param("/[^]a]", "a ']' right after '['", id="class-neg-bracket-first"),
    pytest.param("/[a-z-0]", "a literal '-' inside [...]", id="class-dash-middle"),
    pytest.param("/[!--]", "a range cannot end with an unescaped '-'", id="class-dash-range"),
    pytest.param("/[\\d-z]", "a range cannot start with a class escape", id="class-range-escape"),
    pytest.param("/[a-\\d]", "a range cannot end with a class escape", id="class-range-escape-end"),
    pytest.param("/[z-a]", "is backwards", id="class-range-backwards"),
    pytest.param("/[a&&b]", "set operation", id="class-set-op"),
    pytest.param("/[a||b]", "set operation", id="class-set-or"),
    pytest.param("/?", "can match an empty path", id="empty-match"),
    pytest.param("/a|", "can match an empty path", id="empty-alternative"),
    pytest.param("/*", "can match an empty path", id="slash-star"),
    pytest.param("/a|b", "every match must start with '/'", id="alt-without-slash"),
    pytest.param("/?a", "every match must start with '/'", id="optional-slash"),
    pytest.param("/({1,2})", "'{' has nothing to repeat", id="count-first"),
    pytest.param("(/a)|b", "every match must start with '/'", id="group-then-alt"),
    pytest.param("(a)/", "every match must start with '/'", id="group-without-slash"),
    pytest.param("^/a", "starts with '^': regex routes are anchored by the compiler", id="caret-first"),
    pytest.param("/" + "(" * 33 + "a" + ")" * 33, "nested more than 32 deep", id="too-deep"),
    pytest.param("/" + "a" * 1000, "is 1001 characters long; at most 1000", id="too-long"),
    pytest.param("/" + "x" * 100000, "is 100001 characters long", id="very-long"),
    pytest.param("/([a-z]){600}", "compiled regex too large", id="pcre2-too-large"),
    pytest.param("/((ab){99}){99}", "compiled regex too large", id="pcre2-nested-counts"),
    pytest.param("/(a+)+", "a repeated group that itself holds a repetition", id="redos-plus-plus"),
    pytest.param("/(/[a-z]+)*", "a repeated group that itself holds a repetition", id="redos-segments"),
    pytest.param("/((a|b)*)+c", "a repeated group that itself holds a repetition", id="redos-nested-star"),
    pytest.param("/(a?){20}a{20}", "a repeated group that itself holds a repetition", id="redos-optional-count"),
    pytest.param("/(\\w+\\s?)*", "a repeated group that itself holds a repetition", id="redos-words"),
    pytest.param("/a\u00e9", "whitespace, control or non-ASCII", id="non-ascii"),
    pytest.param("/a\n", "whitespace, control or non-ASCII", id="trailing-newline"),
    pytest.param("/a\tb", "whitespace, control or non-ASCII", id="tab"),
]


@pytest.mark.parametrize(("regex", "reason"), REGEX_REJECTED)
def test_regex_outside_the_subset_is_refused_with_the_reason(regex, reason):
    routes = [{"name": "ok", "path": "/ok", "backend": "a_pool"}, {"name": "rx", "path": regex, "match": "regex", "backend": "b_pool"}]
    with pytest.raises(AnsibleFilterError) as err:
        compile_routes(routes, SEED_BACKENDS, "main")
    msg = str(err.value)
    assert msg.startswith(f"route 'rx' (index 1): path {repr(regex)[:60]}"), msg
    assert reason in msg, msg
    assert len(msg) < 600, msg  # a 100,000-character regex is cut in the message


@pytest.mark.parametrize(("target", "expected"), REGEX_REQUESTS)
def test_regex_subset_routes_as_bytes(target, expected):
    assert_routes(REGEX_ROUTES, BE, "main", target, expected)


def test_regex_subset_at_its_limits_is_accepted():
    for regex in ("/" + "a" * 999, "/" + "(" * 32 + "a" + ")" * 32, "/([a-z]){400}", "/a{1000}", "/(a{1000}){10}", "/((ab){30}){20}"):
        compile_routes([{"name": "rx", "path": regex, "match": "regex", "backend": "r1"}], BE, "main")


# ------------------------------------------------------------------ server addresses and ports


def _server_backends(**server) -> dict:
    backends = copy.deepcopy(SEED_BACKENDS)
    backends["b_pool"]["servers"] = [dict({"name": "web3", "address": "192.0.2.13"}, **server)]
    return backends


BAD_ADDRESSES = [
    pytest.param("0.0.0.0", "unspecified (wildcard)", id="v4-any"),
    pytest.param("::", "unspecified (wildcard)", id="v6-any"),
    pytest.param("::0", "unspecified (wildcard)", id="v6-any-long"),
    pytest.param("0:0:0:0:0:0:0:0", "unspecified (wildcard)", id="v6-any-full"),
    pytest.param("0", "not a valid IPv4 address", id="zero"),
    pytest.param("000.000.000.000", "not a valid IPv4 address", id="v4-any-zeros"),
    pytest.param("0.1.2.3", "0.0.0.0/8", id="this-network"),
    pytest.param("224.0.0.18", "multicast", id="v4-multicast"),
    pytest.param("239.255.255.250", "multicast", id="v4-multicast-ssdp"),
    pytest.param("ff02::12", "multicast", id="v6-multicast"),
    pytest.param("255.255.255.255", "the broadcast address", id="broadcast"),
    pytest.param("240.0.0.1", "reserved range 240.0.0.0/4", id="reserved"),
    pytest.param("192.0.2.31:8080", "includes a port", id="with-port"),
    pytest.param("web1:80", "includes a port", id="name-with-port"),
    pytest.param("[2001:db8::1]", "without brackets", id="v6-brackets"),
    pytest.param("[2001:db8::1]:80", "without brackets", id="v6-brackets-port"),
    pytest.param("]]]", "without brackets", id="brackets"),
    pytest.param("2001:db8::g", "not a valid IPv6 address", id="v6-bad"),
    pytest.param("fe80::1%eth0", "zone index", id="v6-zone"),
    pytest.param("fe80::1", "link-local", id="v6-link-local"),
    pytest.param("::ffff:192.0.2.1", "IPv6 form of an IPv4 address", id="v4-mapped"),
    pytest.param("::ffff:0:0", "IPv6 form of an IPv4 address", id="v4-mapped-any"),
    pytest.param("64:ff9b::c000:201", "IPv6 form of an IPv4 address", id="nat64"),
    pytest.param("0x0", "numeric (hex, octal or short) IPv4 spelling", id="hex-zero"),
    pytest.param("0x7f000001", "numeric (hex, octal or short) IPv4 spelling", id="hex-loopback"),
    pytest.param("0x7f.0.0.0x1", "numeric (hex, octal or short) IPv4 spelling", id="hex-dotted"),
    pytest.param("999.999.999.999", "not a valid IPv4 address", id="v4-out-of-range"),
    pytest.param("192.000.002.031", "not a valid IPv4 address", id="v4-leading-zeros"),
    pytest.param("192.0.2", "not a valid IPv4 address", id="v4-three-parts"),
    pytest.param("192.0.2.1.", "not a valid IPv4 address", id="v4-trailing-dot"),
    pytest.param("3232235777", "not a valid IPv4 address", id="v4-as-integer"),
    pytest.param("0x7f.1", "not a valid IPv4 address", id="v4-hex"),
    pytest.param("192.0.2.31\n", "whitespace, control or non-ASCII", id="trailing-newline"),
    pytest.param("192.0.2.31\r", "whitespace, control or non-ASCII", id="trailing-cr"),
    pytest.param("web1\nserver evil 203.0.113.9:80", "whitespace, control or non-ASCII", id="injection"),
    pytest.param(" 192.0.2.31", "whitespace, control or non-ASCII", id="leading-space"),
    pytest.param("192.0.2.31\x00", "whitespace, control or non-ASCII", id="nul"),
    pytest.param("web\u00e9.example.com", "whitespace, control or non-ASCII", id="non-ascii"),
    pytest.param("", "must be an IP address or host name", id="empty"),
    pytest.param(None, "must be an IP address or host name", id="none"),
    pytest.param(3232235777, "must be an IP address or host name", id="integer"),
    pytest.param(["192.0.2.1"], "must be an IP address or host name", id="list"),
    pytest.param("-web1", "neither an IP address nor an RFC 1123 host name", id="leading-hyphen"),
    pytest.param("web_1.example.com", "neither an IP address nor an RFC 1123 host name", id="underscore"),
    pytest.param("a..example.com", "neither an IP address nor an RFC 1123 host name", id="empty-label"),
    pytest.param("x" * 64 + ".example.com", "neither an IP address nor an RFC 1123 host name", id="label-too-long"),
    pytest.param(".".join(["abcdefgh"] * 30) + ".com", "neither an IP address nor an RFC 1123 host name", id="name-too-long"),
    pytest.param("ipv6@::1", "not a valid IPv6 address", id="haproxy-prefix"),
    pytest.param("ipv4@192.0.2.1", "not a valid IPv4 address", id="haproxy-prefix-v4"),
    pytest.param("unix@/run/x.sock", "neither an IP address nor an RFC 1123 host name", id="haproxy-unix"),
    pytest.param("/run/x.sock", "neither an IP address nor an RFC 1123 host name", id="socket-path"),
    pytest.param("${HOST}", "neither an IP address nor an RFC 1123 host name", id="env-var"),
    pytest.param("http://web1", "not a valid IPv6 address", id="url"),
]


@pytest.mark.parametrize(("address", "reason"), BAD_ADDRESSES)
def test_bad_server_address_names_backend_server_field_and_value(address, reason):
    with pytest.raises(AnsibleFilterError) as err:
        compile_routes(SEED_ROUTES, _server_backends(address=address), "main")
    msg = str(err.value)
    assert msg.startswith(f"backend 'b_pool' server 'web3' (index 0): address {repr(address)[:50]}"), msg
    assert reason in msg, msg


@pytest.mark.parametrize(
    ("address", "emitted"),
    [
        ("192.0.2.31", "192.0.2.31"),
        ("127.0.0.1", "127.0.0.1"),
        ("2001:DB8:0::1", "2001:db8::1"),
        ("::1", "::1"),
        ("web1", "web1"),
        ("web-1.example.com", "web-1.example.com"),
        ("Web1.Example.COM.", "Web1.Example.COM."),
        ("1.example.com", "1.example.com"),
        ("123abc", "123abc"),
    ],
)
def test_good_server_address(address, emitted):
    compiled = compile_routes(SEED_ROUTES, _server_backends(address=address), "main")
    assert [b for b in compiled["backends"] if b["name"] == "b_pool"][0]["servers"][0]["address"] == emitted


@pytest.mark.parametrize(
    ("route", "message"),
    [
        ({"path": "^/api/v[0-9]+/users", "match": "regex"}, "drop the '^'"),
        ({"path": "/caf%c3%a9", "match": "exact"}, "lower-case percent-encoding"),
        ({"path": "/caf%C3%a9", "match": "prefix"}, "lower-case percent-encoding"),
    ],
)
def test_anchor_and_lower_case_escapes_are_refused_clearly(route, message):
    routes = [{"name": "r", "backend": "b_pool", **route}]
    with pytest.raises(AnsibleFilterError, match=re.escape(message)):
        compile_routes(routes, copy.deepcopy(SEED_BACKENDS), "main")


def test_regex_with_a_fragment_never_matches_and_is_refused():
    routes = [{"name": "app", "path": "/app#/settings", "match": "regex", "backend": "b_pool"}]
    with pytest.raises(AnsibleFilterError, match="never contains '#'"):
        compile_routes(routes, copy.deepcopy(SEED_BACKENDS), "main")


@pytest.mark.parametrize(
    ("spec", "message"),
    [
        ({"check_path": "//evil.example/x"}, "must not contain '//'"),
        ({"check_path": "/../../etc"}, "'..' segments"),
        ({"check_path": "/h%41"}, "percent-encoding"),
        ({"check_path": "/h'z"}, "must be a URI path"),
        ({"persistence": "cookie", "cookie_name": "A" * 5000}, "at most 64 characters"),
        ({"persistence": "cookie", "cookie_name": "."}, "must start with a letter"),
        ({"persistence": "cookie", "cookie_name": "1SESSION"}, "must start with a letter"),
    ],
)
def test_bad_check_path_and_cookie_name(spec, message):
    backends = copy.deepcopy(SEED_BACKENDS)
    backends["b_pool"].update(spec)
    with pytest.raises(AnsibleFilterError, match=re.escape(message)):
        compile_routes(SEED_ROUTES, backends, "main")


BAD_PORTS = [
    pytest.param("5" * 5000, "port must be an integer 1..65535, got '55555555555555555555555555555555555555555555555555555555555...", id="5000-digits"),
    pytest.param(10**5000, "port an integer of about", id="5000-digit-int"),
    pytest.param(0, "port 0 is out of range 1..65535", id="zero"),
    pytest.param(65536, "port 65536 is out of range 1..65535", id="too-big"),
    pytest.param(-80, "port -80 is out of range 1..65535", id="negative"),
    pytest.param("-80", "port must be an integer 1..65535, got '-80'", id="negative-string"),
    pytest.param("+80", "port must be an integer 1..65535, got '+80'", id="plus-string"),
    pytest.param("80 ", "port must be an integer 1..65535, got '80 '", id="trailing-space"),
    pytest.param("80\n", "port must be an integer 1..65535, got '80\\n'", id="trailing-newline"),
    pytest.param("8_080", "port must be an integer 1..65535, got '8_080'", id="underscore"),
    pytest.param("0x50", "port must be an integer 1..65535, got '0x50'", id="hex"),
    pytest.param("\u0668\u0660", "port must be an integer 1..65535, got '\u0668\u0660'", id="arabic-digits"),
    pytest.param("", "port must be an integer 1..65535, got ''", id="empty"),
    pytest.param(80.0, "port must be an integer 1..65535, got 80.0", id="float"),
    pytest.param(None, "port must be an integer 1..65535, got None", id="none"),
    pytest.param(True, "port must be an integer, got True", id="bool"),
    pytest.param([80], "port must be an integer 1..65535, got [80]", id="list"),
    pytest.param({"p": 80}, "port must be an integer 1..65535, got {'p': 80}", id="dict"),
    pytest.param("99999", "port 99999 is out of range 1..65535", id="string-too-big"),
    pytest.param("100000", "port must be an integer 1..65535, got '100000'", id="string-six-digits"),
]


@pytest.mark.parametrize(("port", "message"), BAD_PORTS)
def test_bad_port_names_backend_server_and_field(port, message):
    with pytest.raises(AnsibleFilterError) as err:
        compile_routes(SEED_ROUTES, _server_backends(port=port), "main")
    msg = str(err.value)
    assert msg.startswith("backend 'b_pool' server 'web3' (index 0): "), msg
    assert message in msg, msg
    assert len(msg) < 300, msg


@pytest.mark.parametrize(
    ("weight", "message"),
    [
        ("1" * 5000, "weight must be an integer 0..256"),
        (257, "weight 257 is out of range 0..256"),
        ("12\n", "weight must be an integer 0..256, got '12\\n'"),
    ],
)
def test_bad_weight_names_backend_server_and_field(weight, message):
    with pytest.raises(AnsibleFilterError, match=r"^backend 'b_pool' server 'web3' \(index 0\): ") as err:
        compile_routes(SEED_ROUTES, _server_backends(weight=weight), "main")
    assert message in str(err.value)


# ------------------------------------------------------------------ fuzz: nothing crashes

_HOSTILE = [
    "", " ", "\n", "/a\n", "/a\r\nX: y", "\x00", "\u2028", "\ufeff/a", "/\udcff", "'", '"', "\\", "#", "%",
    "/a{,3}", "/[[:digit:]]", "/" + "x" * 5000, "5" * 5000, "999.999.999.999", "]]]", "0", "::",
    "192.0.2.31:8080", "*", "*.", "*.*.com", "a" * 300, "${x}", "{{ x }}", "%[src]", "\u0663",
]  # fmt: skip
_HOSTILE_VALUES = _HOSTILE + [None, True, 0, -1, 2**70, 10**5000, 1.5, float("nan"), [], [1], {}, {"a": 1}, b"/a", ("/a",)]


def _mutate(rng: random.Random, table: dict) -> None:
    """Replace one value (or key) somewhere in the table with a hostile one."""
    kind = rng.choice(["route", "backend", "server", "key", "top"])
    value = rng.choice(_HOSTILE_VALUES)
    routes = table["routes"] if isinstance(table["routes"], list) else []
    routes = [r for r in routes if isinstance(r, dict)]
    backends = table["backends"] if isinstance(table["backends"], dict) else {}
    backends = [b for _name, b in sorted(backends.items(), key=lambda kv: kv[0] if isinstance(kv[0], str) else type(kv[0]).__name__) if isinstance(b, dict)]
    if kind == "route" and routes:
        rng.choice(routes)[rng.choice(["name", "path", "match", "host", "methods", "scheme", "require_https", "backend"])] = value
    elif kind == "backend" and backends:
        rng.choice(backends)[rng.choice(["fallback", "balance", "persistence", "cookie_name", "check_path", "servers"])] = value
    elif kind == "server" and backends:
        servers = rng.choice(backends).get("servers")
        if isinstance(servers, list) and servers and isinstance(servers[0], dict):
            servers[0][rng.choice(["name", "address", "port", "weight", "backup"])] = value
    elif kind == "key" and routes:
        rng.choice(routes)[value if isinstance(value, (str, int)) else "x"] = "/a"
    else:
        key = rng.choice(["routes", "backends", "default", "mode", "map_threshold", "map_dir"])
        table[key] = value


def test_fuzzed_tables_never_crash_and_messages_stay_short():
    rng = random.Random(10)
    refused = 0
    for _table in range(3000):
        routes, backends = _random_table(rng)
        table = {"routes": routes, "backends": backends, "default": "main", "mode": "auto", "map_threshold": 6, "map_dir": "/m"}
        for _mutation in range(rng.randint(1, 3)):
            _mutate(rng, table)
        try:
            plugin.route_compile(
                table["routes"], table["backends"], table["default"],
                map_dir=table["map_dir"], map_threshold=table["map_threshold"], mode=table["mode"],
            )  # fmt: skip
        except AnsibleFilterError as exc:
            refused += 1
            msg = str(exc)
            assert exc.__cause__ is None, msg  # not the filter's defensive catch-all, which names nothing
            assert len(msg) < 1000, msg
            assert "\n" not in msg and "\r" not in msg, msg
    assert refused > 2000


# ------------------------------------------------------------------ scale


def mixed_table(n: int, conditioned_every: int = 8) -> tuple:
    """n routes of every kind: prefixes of varied depth, exact paths, and every
    ``conditioned_every``-th route with a host, methods or a regex (the wildcard-host ones stay
    rules in the map form, whose frontend size is bounded by MAX_FRONTEND_LINES)."""
    names = [f"pool{i}" for i in range(8)]
    backends = {name: {"servers": [server("s1", 1)], "fallback": names[(i + 1) % 8]} for i, name in enumerate(names)}
    backends["main"] = {"servers": [server("s1", 1)], "fallback": "pool0"}
    routes = []
    for i in range(n):
        route = {"name": f"r{i}", "backend": names[i % 8]}
        if i % conditioned_every == 0:
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


def test_ten_thousand_mixed_routes_compile_quickly():
    """Measured about 0.3 s (bench/bench_routes.py --only compile); 5 s so a loaded CI does not flake."""
    import time

    routes, backends = mixed_table(10000)
    start = time.perf_counter()
    compiled = compile_routes(routes, backends, "main")
    assert time.perf_counter() - start < 5
    assert compiled["mode"] == "map" and len(compiled["routes"]) == 10000


def test_ten_thousand_host_routes_compile_quickly_into_host_maps():
    """The shadow check was quadratic (24 s for these), and as rules they were more than the
    frontend line cap; now they are host map keys and the frontend does not grow with them."""
    import time

    routes = [{"name": f"h{i}", "host": f"h{i}.example.com", "path": "/", "backend": "r1"} for i in range(10000)]
    routes += [{"name": f"e{i}", "host": f"h{i}.example.com", "path": f"/x{i}", "match": "exact", "backend": "r2"} for i in range(0, 10000, 7)]
    start = time.perf_counter()
    compiled = compile_routes(routes, BE, "main")
    assert time.perf_counter() - start < 5
    assert compiled["mode"] == "map"
    assert len(compiled["frontend"]) < 20
    assert not any(line.startswith("acl ") for line in compiled["frontend"])
    maps = {m["name"]: m["content"].splitlines() for m in compiled["maps"]}
    assert len(maps["lay7_routes_host_prefix.map"]) == 10000
    assert len(maps["lay7_routes_host_exact.map"]) == len(range(0, 10000, 7))
    assert maps["lay7_routes_exact.map"] == [] and maps["lay7_routes_prefix.map"] == []
    frontend = haproxy_sim.Frontend(compiled["frontend"], compiled["maps"])
    assert frontend.route("/x7", "H7.Example.COM:8443", "GET", set(BE)) == "r2"
    assert frontend.route("/x7/y", "h7.example.com", "GET", set(BE)) == "r1"
    assert frontend.route("/x7", "h8.example.com", "GET", set(BE)) == "r1"
    assert frontend.route("/x7", "h10000.example.com", "GET", set(BE)) == "main"


def test_ten_thousand_routes_of_a_realistic_mix_compile_quickly():
    """40% exact-host, 10% methods, 5% regex, 5% wildcard-host routes (the rest exact and
    prefix paths): the wildcard routes are the only rules left, within the frontend line cap."""
    import time

    routes, backends = realistic_mix(10000)
    start = time.perf_counter()
    compiled = compile_routes(routes, backends, "main")
    assert time.perf_counter() - start < 5
    from ansible_collections.lay7.ha.plugins.plugin_utils._routes import MAX_FRONTEND_LINES

    assert compiled["mode"] == "map" and len(compiled["frontend"]) <= MAX_FRONTEND_LINES


def _mix_backends() -> dict:
    names = [f"pool{i}" for i in range(8)]
    backends = {name: {"servers": [server("s1", 1)], "fallback": names[(i + 1) % 8]} for i, name in enumerate(names)}
    backends["main"] = {"servers": [server("s1", 1)], "fallback": "pool0"}
    return backends


def realistic_mix(n: int) -> tuple:
    return realistic_mix_routes(n, [f"pool{i}" for i in range(8)]), _mix_backends()


def issue_mix(n: int) -> tuple:
    return issue_mix_routes(n, [f"pool{i}" for i in range(8)]), _mix_backends()


def test_ten_thousand_routes_of_any_mix_compile_quickly_into_maps():
    """The compile-time target: 10,000 routes of any mix (30% methods, 10% regex, 40% exact host, 5% wildcard
    host) compile in under a second (measured about 0.3 s by bench/bench_routes.py; 5 s here so
    a loaded CI does not flake); only the 500 wildcard-host routes stay rules."""
    import time

    from ansible_collections.lay7.ha.plugins.plugin_utils._routes import MAX_FRONTEND_LINES

    routes, backends = issue_mix(10000)
    start = time.perf_counter()
    compiled = compile_routes(routes, backends, "main")
    assert time.perf_counter() - start < 5
    assert compiled["mode"] == "map" and len(compiled["frontend"]) <= MAX_FRONTEND_LINES
    assert sum(line.startswith("http-request set-var(txn.lay7_hit) str(") for line in compiled["frontend"]) == 500
    frontend = haproxy_sim.Frontend(compiled["frontend"], compiled["maps"])
    for target, host, method in [("/m8/x", None, "POST"), ("/h0", "app0.example.com", "GET"), ("/rx11/7", None, "GET"),
                                 ("/w13/a", "a.t13.example.com", "GET"), ("/m10/x/y", "x.example.com", "HEAD"), ("/nope", None, "GET")]:
        assert frontend.route(target, host, method, set(backends)) == ref.choose_backend(routes, backends, "main", target, host, method)


def test_shadowing_found_in_a_large_table():
    routes = [{"name": f"h{i}", "host": f"h{i}.example.com", "path": "/", "backend": "r1"} for i in range(1500)]
    routes.append({"name": "dup", "host": "*.example.com", "path": "/", "backend": "r2"})
    routes.append({"name": "late", "host": "h7.example.com", "path": "/x", "match": "regex", "backend": "r2"})
    with pytest.raises(AnsibleFilterError, match=r"route 'late' \(index 1501\): path '/x' \(regex, host h7.example.com\) is fully shadowed by route 'h7'"):
        compile_routes(routes, BE, "main", mode="map")


def test_acl_mode_refuses_tables_above_the_limit_and_auto_switches_to_maps():
    from ansible_collections.lay7.ha.plugins.plugin_utils._routes import MAX_FRONTEND_LINES

    n = MAX_FRONTEND_LINES // 2 + 1  # two lines per prefix route (str and beg) plus one rule
    routes = [{"name": f"p{i}", "path": f"/p{i}", "backend": "r1"} for i in range(n)]
    with pytest.raises(AnsibleFilterError, match=rf"^mode 'acl': {n} routes compile to \d+ frontend lines in the acl form, more than {MAX_FRONTEND_LINES}"):
        compile_routes(routes, BE, "main", mode="acl")
    assert compile_routes(routes, BE, "main", mode="auto", map_threshold=10**9)["mode"] == "map"
    small = routes[: MAX_FRONTEND_LINES // 3]
    assert compile_routes(small, BE, "main", mode="auto", map_threshold=10**9)["mode"] == "acl"
    assert len(compile_routes(small, BE, "main", mode="acl")["frontend"]) <= MAX_FRONTEND_LINES


def test_map_form_refuses_too_many_conditioned_routes():
    routes = [{"name": f"w{i}", "host": f"*.t{i}.example.com", "path": f"/w{i}", "backend": "r1"} for i in range(2500)]
    routes += [{"name": f"h{i}", "host": f"h{i}.example.com", "path": "/", "backend": "r1"} for i in range(100)]
    with pytest.raises(AnsibleFilterError, match=r"^route table: 2500 of 2600 routes have a wildcard host, a regex with methods, a scheme, "
                                                 r"require_https, a listener or header or query matches, which stay HAProxy rules"):
        compile_routes(routes, BE, "main", mode="map")
    assert compile_routes(routes[:1500], BE, "main")["mode"] == "map"


def test_method_routes_are_method_map_keys_not_rules():
    """2,500 method routes (with an exact host or none) were refused as rules; now they are
    "<METHOD>:<host>:<path>" keys, one per method, and the frontend does not grow with them."""
    routes = [{"name": f"m{i}", "path": f"/m{i}", "methods": ["GET", "HEAD"], "backend": "r1"} for i in range(2500)]
    routes += [{"name": f"h{i}", "host": f"h{i}.example.com", "path": f"/x{i}", "match": "exact", "methods": ["POST"], "backend": "r2"}
               for i in range(2500)]
    compiled = compile_routes(routes, BE, "main", mode="map")
    assert len(compiled["frontend"]) < 30
    assert not any(line.startswith("acl ") for line in compiled["frontend"])
    maps = {m["name"]: m["content"].splitlines() for m in compiled["maps"]}
    assert len(maps["lay7_routes_method_exact.map"]) == 2500 * 2 + 2500
    assert len(maps["lay7_routes_method_prefix.map"]) == 2500 * 2
    assert any(re.fullmatch(r"HEAD::/m7/ [0-9]+:r1", line) for line in maps["lay7_routes_method_prefix.map"])
    assert any(re.fullmatch(r"POST:h7.example.com:/x7 [0-9]+:r2", line) for line in maps["lay7_routes_method_exact.map"])
    frontend = haproxy_sim.Frontend(compiled["frontend"], compiled["maps"])
    assert frontend.route("/m7/x", "h7.example.com", "HEAD", set(BE)) == "r1"
    assert frontend.route("/m7/x", None, "POST", set(BE)) == "main"
    assert frontend.route("/x7", "H7.example.com:80", "POST", set(BE)) == "r2"
    assert frontend.route("/x7", "h8.example.com", "POST", set(BE)) == "main"
    assert frontend.route("/x7", "h7.example.com", "get", set(BE)) == "main"


# ------------------------------------------------------------------ hostile strings elsewhere

HOSTILE_FIELDS = [
    pytest.param(dict(routes=[{"name": "h", "path": "/", "host": "\u212aelvin.example.com", "backend": "a_pool"}]),
                 r"^route 'h' \(index 0\): host '\u212aelvin.example.com' is not a host name", id="host-kelvin-sign"),
    pytest.param(dict(routes=[{"name": "h", "path": "/", "host": "example.com\n", "backend": "a_pool"}]),
                 r"^route 'h' \(index 0\): host 'example.com\\n' is not a host name", id="host-newline"),
    pytest.param(dict(routes=[{"name": "m", "path": "/", "methods": ["\ufb00"], "backend": "a_pool"}]),
                 r"^route 'm' \(index 0\): methods\[0\] '\ufb00' is not an HTTP method name", id="method-ligature"),
    pytest.param(dict(routes=[{"name": "m", "path": "/", "methods": ["GET\n"], "backend": "a_pool"}]),
                 r"^route 'm' \(index 0\): methods\[0\] 'GET\\n' is not an HTTP method name", id="method-newline"),
    pytest.param(dict(routes=[{"name": "e", "path": "/a\n", "match": "exact", "backend": "a_pool"}]),
                 r"^route 'e' \(index 0\): path '/a\\n' contains characters not allowed", id="exact-newline"),
    pytest.param(dict(routes=[{"name": "a\n", "path": "/a", "backend": "a_pool"}]),
                 r"^route index 0: name 'a\\n' is not a valid name", id="name-newline"),
    pytest.param(dict(routes=[{"name": "a", "path": "/a", "backend": "a_pool\n"}]),
                 r"^route 'a' \(index 0\): backend 'a_pool\\n' is not defined", id="backend-ref-newline"),
    pytest.param(dict(routes=[{"name": "a", "path": "/a", "path\n": "/b", "backend": "a_pool"}]),
                 r"^route 'a' \(index 0\): unknown key 'path\\n'", id="key-newline"),
    pytest.param(dict(routes=[{"name": "a", "path": "/a", "x" * 5000: 1, "backend": "a_pool"}]),
                 r"^route 'a' \(index 0\): unknown key 'xxxx.*\.\.\..*\(5000 characters\)", id="key-huge"),
    pytest.param(dict(routes=[{"name": "a", "path": "/a", 10**5000: 1, "backend": "a_pool"}]),
                 r"^route 'a' \(index 0\): unknown key an integer of about 5001 digits", id="key-huge-int"),
    pytest.param(dict(default="main\n"), r"^default_backend 'main\\n' is not defined", id="default-newline"),
    pytest.param(dict(backends=_with_backend("b_pool", fallback="main\n")),
                 r"^backend 'b_pool': fallback 'main\\n' is not defined", id="fallback-newline"),
    pytest.param(dict(backends=_with_backend("b_pool", fallback="m" * 5000)),
                 r"^backend 'b_pool': fallback 'mmm.*\(5000 characters\) is not defined", id="fallback-huge"),
    pytest.param(dict(backends=_with_backend("b_pool", balance="roundrobin\n")),
                 r"^backend 'b_pool': balance 'roundrobin\\n' is not one of", id="balance-newline"),
    pytest.param(dict(backends=_with_backend("b_pool", check_path="/health\n")),
                 r"^backend 'b_pool': check_path '/health\\n' must be a URI path", id="check-path-newline"),
    pytest.param(dict(backends=_with_backend("b_pool", persistence="cookie", cookie_name="SID\nX")),
                 r"^backend 'b_pool': cookie_name 'SID\\nX' must start with a letter and contain only", id="cookie-newline"),
    pytest.param(dict(backends={**SEED_BACKENDS, "x\n": {"servers": [server("w", 1)]}}),
                 r"^backends: backend name 'x\\n' is not a valid name", id="backend-name-newline"),
    pytest.param(dict(backends={**SEED_BACKENDS, 10**5000: {"servers": [server("w", 1)]}}),
                 r"^backends: backend name an integer of about 5001 digits must be a string, got a number", id="backend-name-huge-int"),
    pytest.param(dict(map_dir="/etc/haproxy/maps\n"), r"^map_dir '/etc/haproxy/maps\\n' must be an absolute path", id="map-dir-newline"),
    pytest.param(dict(map_threshold="6\n"), r"^route_compile: map_threshold must be an integer 0..1000000000, got '6\\n'", id="threshold-newline"),
    pytest.param(dict(mode="acl\n"), r"^mode 'acl\\n' is not one of", id="mode-newline"),
]


@pytest.mark.parametrize(("kwargs", "message"), HOSTILE_FIELDS)
def test_hostile_strings_are_refused_by_field(kwargs, message):
    with pytest.raises(AnsibleFilterError, match=message):
        _err(**kwargs)


# ------------------------------------------------------------------ scheme and require_https

REDIRECT = ref.REDIRECT_HTTPS
R_A_REQ = {"name": "a", "path": "/a", "require_https": True, "backend": "r1"}
R_PUBLIC = {"name": "public", "path": "/a/public", "backend": "r2"}

SCHEME_CASES = [
    # (routes, request target, host, method, scheme, expected backend or REDIRECT)
    pytest.param([{"name": "s", "path": "/s", "scheme": "https", "backend": "r1"}], "/s/x", None, "GET", "https", "r1", id="https-only-over-https"),
    pytest.param([{"name": "s", "path": "/s", "scheme": "https", "backend": "r1"}], "/s/x", None, "GET", "http", "main", id="https-only-over-http"),
    pytest.param([{"name": "s", "path": "/s", "scheme": "http", "backend": "r1"}], "/s", None, "GET", "http", "r1", id="http-only-over-http"),
    pytest.param([{"name": "s", "path": "/s", "scheme": "http", "backend": "r1"}], "/s", None, "GET", "https", "main", id="http-only-over-https"),
    *[
        pytest.param(
            [{"name": "sh", "path": "/s", "scheme": "http", "backend": "r1"}, {"name": "ss", "path": "/s", "scheme": "https", "backend": "r2"}],
            "/s", None, "GET", scheme, want, id=f"http-and-https-routes-{scheme}",
        )
        for scheme, want in (("http", "r1"), ("https", "r2"))
    ],
    # a scheme condition is more specific than none, on the same host, path and methods
    *[
        pytest.param(
            [{"name": "any", "path": "/a", "backend": "r1"}, {"name": "tls", "path": "/a", "scheme": "https", "backend": "r2"}],
            "/a/x", None, "GET", scheme, want, id=f"scheme-beats-no-scheme-{scheme}",
        )
        for scheme, want in (("http", "r1"), ("https", "r2"))
    ],
    # but the path (and the host) come first
    pytest.param([{"name": "tls", "path": "/a", "scheme": "https", "backend": "r1"}, {"name": "ab", "path": "/a/b", "backend": "r2"}],
                 "/a/b", None, "GET", "https", "r2", id="longer-path-beats-scheme"),
    pytest.param([{"name": "tls", "path": "/a", "scheme": "https", "backend": "r1"}, {"name": "ab", "path": "/a/b", "backend": "r2"}],
                 "/a/c", None, "GET", "https", "r1", id="scheme-route-below-its-path"),
    pytest.param([{"name": "h", "host": "x.example.com", "path": "/", "backend": "r1"}, {"name": "tls", "path": "/a", "scheme": "https", "backend": "r2"}],
                 "/a", "x.example.com", "GET", "https", "r1", id="host-beats-scheme"),
    pytest.param([{"name": "e", "path": "/a", "match": "exact", "backend": "r1"}, {"name": "tls", "path": "/a", "scheme": "https", "backend": "r2"}],
                 "/a", None, "GET", "https", "r1", id="exact-beats-prefix-with-scheme"),
    # methods come before the scheme
    *[
        pytest.param(
            [{"name": "post", "path": "/a", "methods": ["POST"], "backend": "r1"}, {"name": "tls", "path": "/a", "scheme": "https", "backend": "r2"}],
            "/a", None, method, scheme, want, id=f"methods-beat-scheme-{method}-{scheme}",
        )
        for method, scheme, want in (("POST", "https", "r1"), ("GET", "https", "r2"), ("POST", "http", "r1"), ("GET", "http", "main"))
    ],
    *[
        pytest.param(
            [{"name": "post", "path": "/a", "methods": ["POST"], "backend": "r1"},
             {"name": "posttls", "path": "/a", "methods": ["POST"], "scheme": "https", "backend": "r2"}],
            "/a", None, "POST", scheme, want, id=f"methods-and-scheme-beat-methods-{scheme}",
        )
        for scheme, want in (("http", "r1"), ("https", "r2"))
    ],
    # scheme routes (rules in the map form) against exact-host, method and regex map entries
    *[
        pytest.param(
            [{"name": "v1", "host": "api.example.com", "path": "/v1", "backend": "r3"},
             {"name": "v1tls", "host": "api.example.com", "path": "/v1", "scheme": "https", "backend": "r1"},
             {"name": "root", "host": "api.example.com", "path": "/", "backend": "r2"}],
            target, "API.example.com:443", "GET", scheme, want, id=f"host-map-vs-scheme-rule-{target}-{scheme}",
        )
        for target, scheme, want in (("/v1/x", "https", "r1"), ("/v1/x", "http", "r3"), ("/v2", "https", "r2"), ("/v2", "http", "r2"))
    ],
    *[
        pytest.param(
            [{"name": "get", "path": "/v1", "methods": ["GET"], "backend": "r1"}, {"name": "tls", "path": "/v1", "scheme": "https", "backend": "r2"}],
            "/v1", None, method, scheme, want, id=f"method-map-vs-scheme-rule-{method}-{scheme}",
        )
        for method, scheme, want in (("GET", "https", "r1"), ("POST", "https", "r2"), ("POST", "http", "main"), ("GET", "http", "r1"))
    ],
    *[
        pytest.param(
            [{"name": "any", "path": "/o/.*", "match": "regex", "backend": "r1"},
             {"name": "digits", "path": "/o/[0-9]+", "match": "regex", "scheme": "https", "backend": "r2"}],
            target, None, "GET", scheme, want, id=f"regex-map-vs-scheme-regex-{target}-{scheme}",
        )
        for target, scheme, want in (("/o/1", "https", "r2"), ("/o/x", "https", "r1"), ("/o/1", "http", "r1"))
    ],
    # require_https: a more specific route without it still wins over plain HTTP
    pytest.param([R_A_REQ, R_PUBLIC], "/a/public", None, "GET", "http", "r2", id="require-https-more-specific-route-wins"),
    pytest.param([R_A_REQ, R_PUBLIC], "/a/public/x?q=1", None, "GET", "http", "r2", id="require-https-more-specific-prefix-wins"),
    pytest.param([R_A_REQ, R_PUBLIC], "/a/x", None, "GET", "http", REDIRECT, id="require-https-redirects-http"),
    pytest.param([R_A_REQ, R_PUBLIC], "/a?q=1", None, "POST", "http", REDIRECT, id="require-https-redirects-any-method"),
    pytest.param([R_A_REQ, R_PUBLIC], "/a/x", None, "GET", "https", "r1", id="require-https-over-https-goes-to-backend"),
    pytest.param([R_A_REQ, R_PUBLIC], "/a/public", None, "GET", "https", "r2", id="require-https-public-over-https"),
    pytest.param([R_A_REQ, R_PUBLIC], "/ab", None, "GET", "http", "main", id="require-https-unrouted-stays"),
    pytest.param([R_A_REQ, R_PUBLIC], "*", None, "OPTIONS", "http", "main", id="require-https-no-path"),
    *[
        pytest.param(
            [{"name": "all", "path": "/", "require_https": True, "backend": "r1"}, {"name": "api", "path": "/api", "backend": "r2"},
             {"name": "health", "path": "/health", "match": "exact", "backend": "r3"}],
            target, None, "GET", scheme, want, id=f"require-https-catch-all-{target}-{scheme}",
        )
        for target, scheme, want in (("/x", "http", REDIRECT), ("/api/v", "http", "r2"), ("/health", "http", "r3"),
                                     ("/health/x", "http", REDIRECT), ("/x", "https", "r1"))
    ],
    # an http-only route on the same path is more specific than a require_https route
    *[
        pytest.param(
            [{"name": "a", "path": "/a", "require_https": True, "backend": "r1"}, {"name": "ah", "path": "/a", "scheme": "http", "backend": "r2"}],
            "/a", None, "GET", scheme, want, id=f"http-route-beats-require-https-{scheme}",
        )
        for scheme, want in (("http", "r2"), ("https", "r1"))
    ],
    *[
        pytest.param(
            [{"name": "a", "path": "/a", "require_https": True, "backend": "r1"}, {"name": "as", "path": "/a", "scheme": "https", "backend": "r2"}],
            "/a", None, "GET", scheme, want, id=f"https-route-and-require-https-{scheme}",
        )
        for scheme, want in (("http", REDIRECT), ("https", "r2"))
    ],
    # require_https with a host and methods (method map neighbours), a wildcard host, a regex
    *[
        pytest.param(
            [{"name": "post", "host": "api.example.com", "path": "/", "methods": ["POST"], "require_https": True, "backend": "r1"},
             {"name": "get", "host": "api.example.com", "path": "/", "methods": ["GET"], "backend": "r2"}],
            "/v1", "Api.Example.com", method, scheme, want, id=f"require-https-host-methods-{method}-{scheme}",
        )
        for method, scheme, want in (("POST", "http", REDIRECT), ("GET", "http", "r2"), ("POST", "https", "r1"), ("PUT", "http", "main"))
    ],
    *[
        pytest.param([{"name": "w", "host": "*.example.com", "path": "/", "require_https": True, "backend": "r1"}],
                     "/", host, "GET", "http", want, id=f"require-https-wildcard-{host}")
        for host, want in (("a.example.com", REDIRECT), ("example.com", "main"))
    ],
    *[
        pytest.param([{"name": "rx", "path": "/r/[0-9]+", "match": "regex", "require_https": True, "backend": "r1"},
                      {"name": "rxm", "path": "/r/.*", "match": "regex", "methods": ["PUT"], "backend": "r2"}],
                     target, None, method, scheme, want, id=f"require-https-regex-{target}-{method}-{scheme}")
        for target, method, scheme, want in (("/r/1", "GET", "http", REDIRECT), ("/r/1", "GET", "https", "r1"), ("/r/x", "GET", "http", "main"),
                                             ("/r/1", "PUT", "http", "r2"))
    ],
]  # fmt: skip


@pytest.mark.parametrize(("routes", "target", "host", "method", "scheme", "expected"), SCHEME_CASES)
def test_scheme_and_require_https_precedence(routes, target, host, method, scheme, expected):
    assert_routes(routes, BE, "main", target, expected, host=host, method=method, scheme=scheme)
    # No two routes of these tables tie: declaration order changes nothing.
    assert_routes(list(reversed(routes)), BE, "main", target, expected, host=host, method=method, scheme=scheme)


@pytest.mark.parametrize(
    ("target", "scheme", "up", "expected"),
    [
        ("/a/x", "http", set(), REDIRECT),  # the redirect needs no server
        ("/a/x", "http", {"main"}, REDIRECT),
        ("/a/x", "https", {"main"}, "main"),  # over https the route's fallback applies
        ("/a/x", "https", {"a_pool", "main"}, "a_pool"),
        ("/a/x", "https", set(), "a_pool"),  # 503 from the route's backend
        ("/b", "http", {"main"}, "main"),
    ],
)
def test_require_https_redirects_whatever_the_backends_state(target, scheme, up, expected):
    routes = [dict(SEED_ROUTES[0], require_https=True), SEED_ROUTES[1]]
    assert_routes(routes, SEED_BACKENDS, "main", target, expected, up=up, scheme=scheme)


def test_compiled_lines_with_scheme_and_require_https():
    routes = [
        {"name": "a", "path": "/a", "require_https": True, "backend": "a_pool"},
        {"name": "pub", "path": "/a/public", "backend": "b_pool"},
        {"name": "s", "path": "/s", "match": "exact", "scheme": "https", "backend": "b_pool"},
        {"name": "sh", "path": "/s", "match": "exact", "scheme": "http", "backend": "main"},
    ]
    acl = compile_routes(routes, SEED_BACKENDS, "main", mode="acl")
    assert acl["https_redirect_backend"] == "lay7_https_redirect"
    assert acl["frontend"] == [
        "acl route_sh_path path -m str /s",
        "use_backend a_pool if !{ nbsrv(main) gt 0 } { nbsrv(a_pool) gt 0 } !{ ssl_fc } route_sh_path",
        "use_backend main if !{ ssl_fc } route_sh_path",
        "acl route_s_path path -m str /s",
        "use_backend main if !{ nbsrv(b_pool) gt 0 } { nbsrv(main) gt 0 } { ssl_fc } route_s_path",
        "use_backend b_pool if { ssl_fc } route_s_path",
        "acl route_pub_path path -m str /a/public",
        "acl route_pub_path path -m beg /a/public/",
        "use_backend main if !{ nbsrv(b_pool) gt 0 } { nbsrv(main) gt 0 } route_pub_path",
        "use_backend b_pool if route_pub_path",
        "acl route_a_path path -m str /a",
        "acl route_a_path path -m beg /a/",
        # before the route's own lines, its fallback line included
        "use_backend lay7_https_redirect if !{ ssl_fc } route_a_path",
        "use_backend main if !{ nbsrv(a_pool) gt 0 } { nbsrv(main) gt 0 } route_a_path",
        "use_backend a_pool if route_a_path",
        "use_backend a_pool if !{ nbsrv(main) gt 0 } { nbsrv(a_pool) gt 0 }",
        "default_backend main",
    ]
    mapped = compile_routes(routes, SEED_BACKENDS, "main", mode="map")
    assert mapped["https_redirect_backend"] == "lay7_https_redirect"
    hit = "{ var(txn.lay7_hit),field(1,:) -m int gt %d }"
    rules = [line for line in mapped["frontend"] if " str(" in line]
    assert rules == [
        f"http-request set-var(txn.lay7_hit) str(0:main) if !{{ ssl_fc }} route_sh_path {hit % 0}",
        f"http-request set-var(txn.lay7_hit) str(1:b_pool) if {{ ssl_fc }} route_s_path {hit % 1}",
        f"http-request set-var(txn.lay7_hit) str(3:lay7_https_redirect) if !{{ ssl_fc }} route_a_path {hit % 3}",
        f"http-request set-var(txn.lay7_hit) str(3:a_pool) if route_a_path {hit % 3}",
    ]
    # Only the plain route is a map key; the scheme-bound ones are rules.
    assert {m["name"]: m["content"] for m in mapped["maps"]} == {
        "lay7_routes_exact.map": "/a/public 2:b_pool\n",
        "lay7_routes_prefix.map": "/a/public/ 2:b_pool\n",
    }
    # The redirect backend is the template's: never a user backend, never a fallback target.
    assert "lay7_https_redirect" not in {be["name"] for be in mapped["backends"]}
    assert not any("nbsrv(lay7_https_redirect)" in line for line in acl["frontend"] + mapped["frontend"])


@pytest.mark.parametrize("mode", MODES)
def test_https_redirect_backend_is_null_without_require_https(mode):
    routes = SEED_ROUTES + [{"name": "s", "path": "/s", "scheme": "https", "backend": "b_pool"},
                            {"name": "n", "path": "/n", "require_https": False, "scheme": None, "backend": "b_pool"}]
    compiled = compile_routes(routes, SEED_BACKENDS, "main", mode=mode)
    assert compiled["https_redirect_backend"] is None
    assert not any("lay7_https_redirect" in line for line in compiled["frontend"])
    by_name = {r["name"]: r for r in compiled["routes"]}
    assert (by_name["s"]["scheme"], by_name["s"]["require_https"]) == ("https", False)
    assert (by_name["n"]["scheme"], by_name["n"]["require_https"]) == (None, False)


SCHEME_SHADOW_ERRORS = [
    pytest.param(
        [{"name": "s1", "path": "/a", "scheme": "https", "backend": "r1"}, {"name": "s2", "path": "/a/", "scheme": "https", "backend": "r2"}],
        r"route 's2' \(index 1\): path '/a' \(prefix, scheme https\) duplicates route 's1' \(index 0, prefix '/a', scheme https\)",
        id="same-scheme-duplicate",
    ),
    pytest.param(
        [{"name": "all", "path": "/", "scheme": "https", "backend": "r1"}, {"name": "rx", "path": "/r.*", "match": "regex", "scheme": "https", "backend": "r2"}],
        r"route 'rx' \(index 1\): path '/r\.\*' \(regex, scheme https\) is fully shadowed by route 'all' \(index 0, prefix '/', scheme https\)",
        id="same-scheme-shadowed",
    ),
    pytest.param(
        [{"name": "all", "path": "/", "backend": "r1"}, {"name": "rx", "path": "/r.*", "match": "regex", "scheme": "http", "backend": "r2"}],
        r"route 'rx' \(index 1\): path '/r\.\*' \(regex, scheme http\) is fully shadowed by route 'all' \(index 0, prefix '/'\)",
        id="no-scheme-covers-scheme",
    ),
    pytest.param(
        [{"name": "gp", "path": "/a", "methods": ["GET", "POST"], "scheme": "https", "backend": "r1"},
         {"name": "g", "path": "/a", "methods": ["GET"], "scheme": "https", "backend": "r2"}],
        r"route 'g' \(index 1\): path '/a' \(prefix, methods GET, scheme https\) is fully shadowed by route 'gp' \(index 0, prefix '/a', "
        r"methods GET,POST, scheme https\)",
        id="methods-with-scheme-shadowed",
    ),
    pytest.param(
        [{"name": "w", "host": "*.example.com", "path": "/", "scheme": "http", "backend": "r1"},
         {"name": "w2", "host": "*.example.com", "path": "/y.*", "match": "regex", "scheme": "http", "backend": "r2"}],
        r"route 'w2' \(index 1\): path '/y\.\*' \(regex, host \*\.example\.com, scheme http\) is fully shadowed by route 'w'",
        id="wildcard-host-with-scheme-shadowed",
    ),
    pytest.param(
        [{"name": "a", "path": "/a", "require_https": True, "backend": "r1"}, {"name": "a2", "path": "/a", "backend": "r2"}],
        r"route 'a2' \(index 1\): path '/a' \(prefix\) duplicates route 'a' \(index 0, prefix '/a'\)",
        id="require-https-is-no-condition",
    ),
]  # fmt: skip


@pytest.mark.parametrize(("routes", "message"), SCHEME_SHADOW_ERRORS)
def test_scheme_shadowing_is_refused(routes, message):
    with pytest.raises(AnsibleFilterError, match=message):
        compile_routes(routes, BE, "main")


@pytest.mark.parametrize(
    "routes",
    [
        pytest.param([{"name": "h", "path": "/a", "scheme": "http", "backend": "r1"}, {"name": "s", "path": "/a", "scheme": "https", "backend": "r2"}],
                     id="http-and-https-never-shadow"),
        pytest.param([{"name": "h", "path": "/", "scheme": "http", "backend": "r1"}, {"name": "s", "path": "/r.*", "match": "regex", "scheme": "https", "backend": "r2"}],
                     id="http-catch-all-leaves-https-regex"),
        pytest.param([{"name": "any", "path": "/a", "backend": "r1"}, {"name": "s", "path": "/a", "scheme": "https", "backend": "r2"}],
                     id="scheme-route-is-more-specific"),
        pytest.param([{"name": "g", "path": "/a", "methods": ["GET"], "backend": "r1"}, {"name": "gs", "path": "/a", "methods": ["GET"], "scheme": "https", "backend": "r2"}],
                     id="methods-and-scheme-more-specific"),
        pytest.param([{"name": "a", "path": "/a", "require_https": True, "backend": "r1"}, {"name": "s", "path": "/a", "scheme": "http", "backend": "r2"},
                      {"name": "t", "path": "/a", "scheme": "https", "backend": "r3"}],
                     id="both-schemes-over-require-https"),
    ],
)  # fmt: skip
def test_scheme_routes_that_are_not_shadowed(routes):
    for table in (routes, list(reversed(routes))):
        for mode in MODES:
            assert len(compile_routes(table, BE, "main", mode=mode)["routes"]) == len(routes)


SCHEME_ERRORS = [
    pytest.param(dict(routes=[{"name": "s", "path": "/a", "scheme": "HTTPS", "backend": "a_pool"}]),
                 r"^route 's' \(index 0\): scheme 'HTTPS' is not one of http, https \(leave it out for both\)", id="scheme-upper-case"),
    pytest.param(dict(routes=[{"name": "s", "path": "/a", "scheme": "ftp", "backend": "a_pool"}]),
                 r"^route 's' \(index 0\): scheme 'ftp' is not one of http, https", id="scheme-unknown"),
    pytest.param(dict(routes=[{"name": "s", "path": "/a", "scheme": ["https"], "backend": "a_pool"}]),
                 r"^route 's' \(index 0\): scheme \['https'\] is not one of http, https", id="scheme-list"),
    pytest.param(dict(routes=[{"name": "s", "path": "/a", "scheme": "https\n", "backend": "a_pool"}]),
                 r"^route 's' \(index 0\): scheme 'https\\n' is not one of http, https", id="scheme-newline"),
    pytest.param(dict(routes=[{"name": "s", "path": "/a", "schema": "https", "backend": "a_pool"}]),
                 r"^route 's' \(index 0\): unknown key 'schema' \(did you mean 'scheme'\?\)", id="scheme-typo"),
    pytest.param(dict(routes=[{"name": "r", "path": "/a", "require_https": "yes", "backend": "a_pool"}]),
                 r"^route 'r' \(index 0\): require_https must be true or false, got 'yes'", id="require-https-string"),
    pytest.param(dict(routes=[{"name": "r", "path": "/a", "require_https": 1, "backend": "a_pool"}]),
                 r"^route 'r' \(index 0\): require_https must be true or false, got 1", id="require-https-int"),
    pytest.param(dict(routes=[{"name": "r", "path": "/a", "require_https": None, "backend": "a_pool"}]),
                 r"^route 'r' \(index 0\): require_https must be true or false, got None", id="require-https-null"),
    pytest.param(dict(routes=[{"name": "r", "path": "/a", "require_http": True, "backend": "a_pool"}]),
                 r"^route 'r' \(index 0\): unknown key 'require_http' \(did you mean 'require_https'\?\)", id="require-https-typo"),
    pytest.param(dict(routes=[{"name": "r", "path": "/a", "scheme": "http", "require_https": True, "backend": "a_pool"}]),
                 r"^route 'r' \(index 0\): require_https is true but scheme is 'http': the route would redirect every request", id="http-and-require-https"),
    pytest.param(dict(routes=[{"name": "r", "path": "/a", "scheme": "https", "require_https": True, "backend": "a_pool"}]),
                 r"^route 'r' \(index 0\): require_https is true but scheme is 'https': the route never sees a plain HTTP request",
                 id="https-and-require-https"),
    pytest.param(dict(backends={**SEED_BACKENDS, "lay7_https_redirect": {"servers": [server("w", 1)]}}),
                 r"^backends: backend name 'lay7_https_redirect' is reserved for the redirect of require_https routes", id="reserved-backend-name"),
    pytest.param(dict(routes=[{"name": "r", "path": "/a", "require_https": True, "backend": "lay7_https_redirect"}]),
                 r"^route 'r' \(index 0\): backend 'lay7_https_redirect' is not defined; known: a_pool, b_pool, main", id="reserved-backend-as-route-backend"),
    pytest.param(dict(backends=_with_backend("b_pool", fallback="lay7_https_redirect")),
                 r"^backend 'b_pool': fallback 'lay7_https_redirect' is not defined", id="reserved-backend-as-fallback"),
    pytest.param(dict(default="lay7_https_redirect"),
                 r"^default_backend 'lay7_https_redirect' is not defined", id="reserved-backend-as-default"),
]  # fmt: skip


@pytest.mark.parametrize(("kwargs", "message"), SCHEME_ERRORS)
def test_scheme_and_require_https_errors_name_route_and_field(kwargs, message):
    with pytest.raises(AnsibleFilterError, match=message):
        _err(**kwargs)


def test_scheme_routes_are_ordered_independently_of_declaration():
    routes = [
        {"name": "sh", "path": "/s", "scheme": "http", "backend": "r1"},
        {"name": "ss", "path": "/s", "scheme": "https", "backend": "r2"},
        {"name": "s", "path": "/s", "backend": "r3"},
        {"name": "q", "path": "/q", "require_https": True, "backend": "r4"},
        {"name": "qm", "path": "/q", "methods": ["POST"], "scheme": "https", "backend": "r1"},
        {"name": "w", "host": "*.example.com", "path": "/s", "scheme": "https", "backend": "r4"},
        {"name": "rx", "path": "/r[0-9]", "match": "regex", "scheme": "http", "backend": "r1"},
        {"name": "rxs", "path": "/r[0-9]", "match": "regex", "scheme": "https", "backend": "r2"},
    ]
    expected = {mode: compile_routes(routes, BE, "main", mode=mode) for mode in MODES}
    assert [r["name"] for r in expected["acl"]["routes"]] == ["w", "qm", "q", "sh", "ss", "s", "rx", "rxs"]
    rng = random.Random(11)
    for _attempt in range(20):
        shuffled = copy.deepcopy(routes)
        rng.shuffle(shuffled)
        for mode in MODES:
            got = compile_routes(shuffled, BE, "main", mode=mode)
            assert got["frontend"] == expected[mode]["frontend"]
            assert got["maps"] == expected[mode]["maps"]


def test_random_scheme_tables_agree_across_reference_acl_and_map_over_both_schemes():
    """Tables where many routes have a scheme or require_https (rules in the map form) among
    exact-host, method and regex routes (map keys) and wildcard ones (rules): every form picks
    the same backend or redirect as the reference, over http and over https."""
    rng = random.Random(20261201)
    targets = ["/", "", "*", "/a", "/a/", "/ab", "/a/b", "/a/b/c", "/b", "/bb/c", "/c", "/ab/c?x", "/a//b", "/A", "/a:b"]
    hosts = ("x.example.com", "y.example.com", "a.x.example.com", "*.example.com", "*.x.example.com")
    compiled_tables = scheme_bound = 0
    outcomes = {"http": set(), "https": set()}
    for _table in range(500):
        routes, backends = _random_table(
            rng, host_rate=rng.choice([0.0, 0.4]), hosts=hosts, method_rate=rng.choice([0.0, 0.4]),
            scheme_rate=0.4, require_https_rate=0.3,
        )  # fmt: skip
        try:
            frontends = {mode: _frontend(routes, backends, mode) for mode in MODES}
        except AnsibleFilterError as exc:
            assert "shadowed" in str(exc) or "duplicates" in str(exc), exc
            continue
        compiled_tables += 1
        scheme_bound += any(r.get("scheme") or r.get("require_https") for r in routes)
        for _request in range(30):
            target, host = rng.choice(targets), rng.choice(HOST_HEADERS)
            method = rng.choice(["GET", "POST", "PUT", "get"])
            up = {n for n in backends if rng.random() < 0.7}
            for scheme in ("http", "https"):
                want = ref.choose_backend(routes, backends, "main", target, host, method, up, scheme)
                outcomes[scheme].add(want == REDIRECT)
                for mode, frontend in frontends.items():
                    got = frontend.route(target, host, method, up, scheme)
                    assert got == want, (mode, scheme, routes, backends, target, host, method, sorted(up))
    assert compiled_tables > 250
    assert scheme_bound > 200
    assert outcomes == {"http": {True, False}, "https": {False}}  # redirects happen, and only over http


def test_plugin_documents_scheme_require_https_and_the_redirect_backend():
    doc = yaml.safe_load(plugin.DOCUMENTATION)
    route_doc = " ".join(doc["options"]["_input"]["description"])
    assert "C(scheme)" in route_doc and "C(require_https)" in route_doc
    returned = yaml.safe_load(plugin.RETURN)["_value"]["contains"]
    assert "lay7_https_redirect" in " ".join(returned["https_redirect_backend"]["description"])
