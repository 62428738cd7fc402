"""The compiled route table on the real HAProxy binary, on loopback, in both forms.

Every request is sent over real HTTP; the backend that answers (each backend answers with
its own name) must be the one the reference matcher predicts. Fallback and 503 are checked
by stopping backends and waiting (bounded) until HAProxy's health checks see them DOWN.
"""

from __future__ import annotations

import itertools

import pytest
import reference_matcher as ref
from ansible_collections.lay7.ha.plugins.plugin_utils._routes import compile_routes
from loopback import running
from seed_tables import LONG, REGEX_REQUESTS, REGEX_ROUTES, SEED_BACKENDS, SEED_ROUTES, server


# The tricky paths as they go on the wire (non-ASCII percent-encoded, since HAProxy
# rejects raw UTF-8 in a request line; the empty path cannot be sent, "*" has no path either).
TRICKY = [
    "/a", "/a/", "/a/x", "/a/x/y", "/ab", "/abc", "/x/a/", "/A", "/a?x=1", "/ab?x=/a/", "//a",
    "/a%2Fb", "/a/%2F", "/", "*", "/a/" + LONG, "/a" + LONG, "/a/%C3%BC", "/%C3%BC/a",
    "/a%C3%BC", "/b", "/b/", "/bb", "/b/a",
]  # fmt: skip

COMPLEX_BACKENDS = {
    "main": {"servers": [server("web1", 11)], "fallback": "a_pool"},
    "a_pool": {"servers": [server("web2", 12)], "fallback": "main"},
    "b_pool": {"servers": [server("web3", 13)]},
    "exact_be": {"servers": [server("e1", 14)], "fallback": "b_pool"},
    "regex_be": {"servers": [server("r1", 15)]},
    "meth_be": {"servers": [server("m1", 16)]},
    "api": {"servers": [server("api1", 17)]},
    "wild_be": {"servers": [server("w1", 18)]},
}
COMPLEX_ROUTES = [
    {"name": "wget", "host": "*.example.com", "path": "/", "methods": ["GET"], "backend": "wild_be"},
    {"name": "rx", "path": "/r/[0-9]+", "match": "regex", "backend": "regex_be"},
    {"name": "rxa", "path": "/a.*", "match": "regex", "backend": "regex_be"},
    {"name": "a", "path": "/a", "backend": "a_pool"},
    {"name": "m", "path": "/a", "methods": ["POST"], "backend": "meth_be"},
    {"name": "deep", "path": "/a/b/c/", "backend": "b_pool"},
    {"name": "ex", "path": "/a/x", "match": "exact", "backend": "exact_be"},
    {"name": "quote", "path": "/it's", "match": "exact", "backend": "exact_be"},
    {"name": "mroot", "path": "/", "methods": ["DELETE"], "backend": "meth_be"},
    {"name": "b", "path": "/b/", "backend": "b_pool"},
    {"name": "api", "host": "api.example.com", "path": "/", "backend": "api"},
    {"name": "wv1", "host": "*.example.com", "path": "/v1", "backend": "wild_be"},
]
COMPLEX_TARGETS = [
    "/", "/a", "/a/", "/a/x", "/a/x/", "/a/b/c", "/a/b/cd", "/a/b/c/d", "/ab", "/abc", "/A",
    "/b", "/b/x", "/bb", "/r/12", "/r/", "/r/1x", "/x/r/1", "/it's", "/it%27s", "/v1", "/v1/x",
    "/v10", "*", "//a",
]  # fmt: skip
HOSTS = [None, "api.example.com", "API.Example.COM:8080", "x.example.com", "example.com"]
METHODS = ["GET", "POST", "DELETE"]

# Exact hosts (the map form's host maps) overlapping host-less, method, wildcard and regex routes.
HOST_BACKENDS = dict(COMPLEX_BACKENDS, shop={"servers": [server("shop1", 19)], "fallback": "main"})
HOST_ROUTES = [
    {"name": "api", "host": "api.example.com", "path": "/", "backend": "api"},
    {"name": "apiv1", "host": "api.example.com", "path": "/v1/", "backend": "b_pool"},
    {"name": "apiusers", "host": "API.example.com", "path": "/v1/users", "match": "exact", "backend": "exact_be"},
    {"name": "apipost", "host": "api.example.com", "path": "/v1", "methods": ["POST"], "backend": "meth_be"},
    {"name": "wwwrx", "host": "www.example.com", "path": "/s/[0-9]+", "match": "regex", "backend": "regex_be"},
    {"name": "wwwroot", "host": "www.example.com", "path": "/", "match": "exact", "backend": "main"},
    {"name": "wwwstatic", "host": "www.example.com", "path": "/static", "backend": "a_pool"},
    {"name": "cart", "host": "shop.example.org", "path": "/cart", "match": "exact", "backend": "shop"},
    {"name": "cartp", "host": "shop.example.org", "path": "/cart", "backend": "exact_be"},
    {"name": "wv1", "host": "*.example.com", "path": "/v1", "backend": "wild_be"},
    {"name": "v1", "path": "/v1", "backend": "a_pool"},
    {"name": "users", "path": "/v1/users", "match": "exact", "backend": "exact_be"},
    {"name": "static", "path": "/static", "methods": ["GET"], "backend": "meth_be"},
    {"name": "mroot", "path": "/", "methods": ["DELETE"], "backend": "meth_be"},
    {"name": "rx", "path": "/r/[0-9]+", "match": "regex", "backend": "regex_be"},
]
HOST_TARGETS = [
    "/", "/v1", "/v1/", "/v1/users", "/v1/users/", "/v1/7", "/v10", "/V1", "/static", "/static/x", "/cart",
    "/cart/x", "/carts", "/r/1", "/s/12", "*", "/v1:x",
]  # fmt: skip
HOST_HEADERS = [
    None, "api.example.com", "API.Example.COM:8080", "www.example.com", "WWW.EXAMPLE.COM:80", "x.example.com",
    "shop.example.org:443", "Shop.Example.Org", "api.example.com,www.example.com", "api.example.com.", "[::1]:80",
]  # fmt: skip

# Methods on exact hosts and on none (the map form's method maps) against method-less routes
# of the same and other specificity, wildcard-host and regex routes with methods (rules).
METHOD_ROUTES = [
    {"name": "apiget", "host": "api.example.com", "path": "/v1", "methods": ["GET"], "backend": "meth_be"},
    {"name": "apiwrite", "host": "api.example.com", "path": "/v1", "methods": ["POST", "PUT"], "backend": "b_pool"},
    {"name": "apiv1", "host": "api.example.com", "path": "/v1", "backend": "api"},
    {"name": "apiusers", "host": "api.example.com", "path": "/v1/users", "match": "exact", "methods": ["DELETE"], "backend": "exact_be"},
    {"name": "apiusersp", "host": "api.example.com", "path": "/v1/users", "methods": ["PURGE"], "backend": "regex_be"},
    {"name": "apiroot", "host": "api.example.com", "path": "/", "methods": ["PUT"], "backend": "wild_be"},
    {"name": "wwwexact", "host": "www.example.com", "path": "/v1", "match": "exact", "backend": "main"},
    {"name": "wwwpost", "host": "www.example.com", "path": "/", "methods": ["POST"], "backend": "b_pool"},
    {"name": "wildget", "host": "*.example.com", "path": "/v1", "methods": ["GET"], "backend": "wild_be"},
    {"name": "wildrx", "host": "*.example.com", "path": "/r/[0-9]+", "match": "regex", "methods": ["POST"], "backend": "regex_be"},
    {"name": "rxput", "path": "/r/[0-9]+", "match": "regex", "methods": ["PUT"], "backend": "regex_be"},
    {"name": "v1", "path": "/v1", "backend": "a_pool"},
    {"name": "v1get", "path": "/v1", "methods": ["GET"], "backend": "meth_be"},
    {"name": "v1users", "path": "/v1/users", "match": "exact", "methods": ["POST", "PURGE"], "backend": "exact_be"},
    {"name": "v1deep", "path": "/v1/a/b", "methods": ["DELETE"], "backend": "b_pool"},
    {"name": "mroot", "path": "/", "methods": ["DELETE"], "backend": "meth_be"},
]
METHOD_TARGETS = [
    "/", "/v1", "/v1/", "/v1/users", "/v1/users/", "/v1/users/x", "/v1/a/b", "/v1/a/b/c", "/v1/a", "/v10", "/V1",
    "/r/1", "/r/x", "*", "/v1:x",
]  # fmt: skip
METHOD_HOSTS = [None, "api.example.com", "API.Example.COM:8080", "www.example.com", "x.example.com", "api.example.com,www.example.com"]
# HEAD is left out: its answer has no body to tell the backend by.
METHOD_METHODS = ["GET", "POST", "PUT", "DELETE", "PURGE", "get"]


def _large_table(n: int) -> tuple:
    backends = {f"be{i}": {"servers": [server(f"s{i}", 10 + i)]} for i in range(4)}
    backends["be0"]["fallback"] = "be1"
    routes = []
    for i in range(n):
        be = f"be{i % 4}"
        if i % 3 == 0:
            routes.append({"name": f"e{i}", "path": f"/svc/{i}/exact", "match": "exact", "backend": be})
        else:
            routes.append({"name": f"p{i}", "path": f"/svc/{i}", "backend": be})
    routes.append({"name": "svc", "path": "/svc", "backend": "be3"})
    routes.append({"name": "post", "path": "/svc/7", "methods": ["POST"], "backend": "be0"})
    return routes, backends


LARGE_ROUTES, LARGE_BACKENDS = _large_table(400)

# The regex subset's edge cases (seed_tables.REGEX_ROUTES) plus a few more, on the real PCRE2.
# Non-ASCII targets cannot be sent (HAProxy answers 400 to raw UTF-8 in a request line), so
# their percent-encoded forms stand in; the unit tests cover the raw forms.
REGEX_BACKENDS = {name: {"servers": [server(name, 10 + i)]} for i, name in enumerate(["main", "r1", "r2", "r3", "r4"])}
REGEX_EDGE_ROUTES = REGEX_ROUTES + [
    {"name": "ws", "path": "/sp/\\s*x\\x20?", "match": "regex", "backend": "r4"},
    {"name": "anydot", "path": "/any/.+", "match": "regex", "backend": "r1"},
    {"name": "maxcount", "path": "/mc/a{1000}", "match": "regex", "backend": "r2"},
    {"name": "deep", "path": "/" + "(" * 32 + "q" + ")" * 32 + "[0-9]{1,3}", "match": "regex", "backend": "r3"},
    {"name": "lazyalt", "path": "/z/(a|ab)(c|bcd)(d*)", "match": "regex", "backend": "r4"},
]
REGEX_TARGETS = [target for target, _expected in REGEX_REQUESTS if target.isascii()] + [
    "/sp/x", "/sp/%20x", "/any/%0A", "/any/a%00", "/mc/" + "a" * 1000, "/mc/" + "a" * 999, "/mc/" + "a" * 1001,
    "/q7", "/q123", "/q1234", "/z/abcd", "/z/abcdd", "/z/acd", "/d/%30", "/w/%41b", "/c/x%7B,3%7D",
    "/u/%C3%BC", "/k/a-c%5D",
]  # fmt: skip
# Overlapping regexes (the map form's regex maps try them in rank order, first match wins), with
# and without an exact host (escaped: "apixexample.com" must not match "api.example.com"), against
# exact, prefix and method routes that outrank them.
REGEX_ORDER_ROUTES = [
    {"name": "any", "path": "/o/.*", "match": "regex", "backend": "r1"},
    {"name": "digits", "path": "/o/[0-9]+", "match": "regex", "backend": "r2"},
    {"name": "ox", "path": "(/o|/p)/x", "match": "regex", "backend": "r3"},
    {"name": "postdigits", "path": "/o/[0-9]+", "match": "regex", "methods": ["POST"], "backend": "r4"},
    {"name": "seven", "path": "/o/7", "backend": "r3"},
    {"name": "hletters", "host": "api.example.com", "path": "/o/[a-z]+", "match": "regex", "backend": "r4"},
    {"name": "hany", "host": "api.example.com", "path": "/o/.+", "match": "regex", "backend": "r2"},
    {"name": "hx", "host": "api.example.com", "path": "/o/x", "match": "exact", "backend": "main"},
    {"name": "wild", "host": "*.example.com", "path": "/o/[0-9]", "match": "regex", "backend": "r3"},
]
REGEX_ORDER_REQUESTS = list(itertools.product(
    ["/o/1", "/o/12", "/o/x", "/o/abc", "/o/a1", "/p/x", "/o/7", "/o/7/x", "/o/", "/o", "/q", "*"],
    [None, "api.example.com", "apixexample.com", "API.example.com:80", "x.example.com"],
    ["GET", "POST"],
))
LARGE_TARGETS = [
    "/svc", "/svc/", "/svc/0/exact", "/svc/0/exactly", "/svc/3/exact/", "/svc/1", "/svc/1/x", "/svc/10",
    "/svc/100/a", "/svc/7", "/svc/7/x", "/svc/399", "/svc/3999", "/other",
]  # fmt: skip


def _check(proxy, routes, backends, default, requests, up) -> list:
    """Send every request; return a list of mismatches (empty when all agree)."""
    problems = []
    for target, host, method in requests:
        wire_host = host or f"127.0.0.1:{proxy.port}"
        want = ref.choose_backend(routes, backends, default, target, wire_host, method, up)
        status, body = proxy.request(target, host, method)
        got = body if status == 200 else status
        expected = want if want in up else 503
        if got != expected:
            problems.append(f"{method} {target[:60]!r} host={host}: got {got!r}, expected {expected!r}")
    return problems


@pytest.mark.parametrize("mode", ["acl", "map"])
@pytest.mark.parametrize(
    ("table", "routes", "backends", "requests"),
    [
        ("seed", SEED_ROUTES, SEED_BACKENDS, [(t, None, "GET") for t in TRICKY]),
        ("complex", COMPLEX_ROUTES, COMPLEX_BACKENDS, list(itertools.product(COMPLEX_TARGETS, HOSTS, METHODS))),
        ("large", LARGE_ROUTES, LARGE_BACKENDS, list(itertools.product(LARGE_TARGETS, [None], ["GET", "POST"]))),
        ("hosts", HOST_ROUTES, HOST_BACKENDS, list(itertools.product(HOST_TARGETS, HOST_HEADERS, METHODS))),
        ("regex", REGEX_EDGE_ROUTES, REGEX_BACKENDS, [(t, None, "GET") for t in REGEX_TARGETS]),
        ("methods", METHOD_ROUTES, COMPLEX_BACKENDS, list(itertools.product(METHOD_TARGETS, METHOD_HOSTS, METHOD_METHODS))),
        ("regex-order", REGEX_ORDER_ROUTES, REGEX_BACKENDS, REGEX_ORDER_REQUESTS),
    ],
)
def test_every_request_reaches_the_predicted_backend(tmp_path, mode, table, routes, backends, requests):
    compiled = compile_routes(routes, backends, "main" if "main" in backends else "be3", map_dir=str(tmp_path / "maps"), mode=mode)
    if table == "hosts" and mode == "map":
        assert {m["name"] for m in compiled["maps"]} >= {"lay7_routes_host_exact.map", "lay7_routes_host_prefix.map"}
    if table == "regex-order" and mode == "map":
        assert {m["name"] for m in compiled["maps"]} >= {"lay7_routes_regex.map", "lay7_routes_host_regex.map"}
        assert sum(" -m reg " in line for line in compiled["frontend"]) == 2  # the method and wildcard routes
    if table == "methods" and mode == "map":
        assert {m["name"] for m in compiled["maps"]} >= {"lay7_routes_method_exact.map", "lay7_routes_method_prefix.map"}
        assert not any(line.startswith("acl route_api") or line.startswith("acl route_v1") for line in compiled["frontend"])
    default = compiled["default_backend"]
    with running(compiled, tmp_path) as (proxy, _servers):
        problems = _check(proxy, routes, backends, default, requests, set(backends))
    assert not problems, f"{len(problems)} of {len(requests)} requests misrouted:\n" + "\n".join(problems[:30])


@pytest.mark.parametrize("mode", ["acl", "map"])
def test_fallback_and_503_when_backends_stop(tmp_path, mode):
    compiled = compile_routes(SEED_ROUTES, SEED_BACKENDS, "main", map_dir=str(tmp_path / "maps"), mode=mode)
    requests = [(t, None, "GET") for t in ["/a", "/a/x", "/b", "/b/x", "/", "/x", "*", "/ab"]]
    scenarios = [
        {"main", "a_pool", "b_pool"},
        {"main", "b_pool"},  # a_pool down: /a falls back to main
        {"a_pool", "b_pool"},  # main down: default traffic falls back to a_pool
        {"a_pool"},  # b_pool and main down: /b -> main (its fallback) is down too -> 503
        {"b_pool"},  # a_pool and main down: mutual fallbacks both down -> 503, never chained
        set(),
        {"main", "a_pool", "b_pool"},  # everything recovers
    ]
    with running(compiled, tmp_path) as (proxy, servers):
        for up in scenarios:
            for (backend, name), nb in servers.items():
                if backend in up and nb._server is None:
                    nb.start()
                elif backend not in up and nb._server is not None:
                    nb.stop()
            proxy.wait_states({key: ("UP" if key[0] in up else "DOWN") for key in servers})
            problems = _check(proxy, SEED_ROUTES, SEED_BACKENDS, "main", requests, up)
            assert not problems, f"with {sorted(up)} up:\n" + "\n".join(problems)


def test_haproxy_accepts_config_without_warnings(tmp_path):
    """haproxy -c must not warn about the emitted rules (e.g. rule ordering)."""
    from loopback import HAProxy

    for mode in ("acl", "map"):
        workdir = tmp_path / mode
        workdir.mkdir()
        compiled = compile_routes(COMPLEX_ROUTES, COMPLEX_BACKENDS, "main", map_dir=str(workdir / "maps"), mode=mode)
        ports = {(be["name"], s["name"]): 1 for be in compiled["backends"] for s in be["servers"]}
        out = HAProxy(compiled, ports, workdir).check()
        assert "WARNING" not in out, out
