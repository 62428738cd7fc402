"""The compiled route table on the real HAProxy binary, on loopback, in both forms.

Every request is sent over real HTTP and over HTTPS (HAProxy listens on a plain and a TLS
bind in the same frontend, as the haproxy_l7 role configures it); the backend that answers
(each backend answers with its own name) must be the one the reference matcher predicts, and
a request it predicts a redirect for must get a 301 to the same URL over https. Fallback and
503 are checked by stopping backends and waiting (bounded) until HAProxy's health checks see
them DOWN.
"""

from __future__ import annotations

import contextlib
import itertools
from concurrent.futures import ThreadPoolExecutor

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
# Scheme-conditioned and require_https routes among plain, exact-host (host and method maps),
# wildcard and regex routes: the require_https routes' more specific neighbours must win over
# plain HTTP, the redirect must keep path and query, methods must outrank the scheme.
SCHEME_ROUTES = [
    {"name": "admin", "path": "/admin", "require_https": True, "backend": "a_pool"},
    {"name": "adminpub", "path": "/admin/public", "backend": "b_pool"},
    {"name": "adminstatus", "path": "/admin/status", "match": "exact", "scheme": "http", "backend": "exact_be"},
    {"name": "api", "path": "/api", "scheme": "https", "backend": "api"},
    {"name": "apiget", "path": "/api", "scheme": "http", "methods": ["GET"], "backend": "meth_be"},
    {"name": "apipost", "path": "/api", "methods": ["POST"], "backend": "b_pool"},
    {"name": "shop", "host": "shop.example.org", "path": "/", "require_https": True, "backend": "exact_be"},
    {"name": "shopimg", "host": "shop.example.org", "path": "/img", "backend": "wild_be"},
    {"name": "shopcart", "host": "shop.example.org", "path": "/cart", "methods": ["PUT"], "scheme": "https", "backend": "meth_be"},
    {"name": "wild", "host": "*.example.com", "path": "/secure", "require_https": True, "backend": "wild_be"},
    {"name": "wildtls", "host": "*.example.com", "path": "/v1", "scheme": "https", "backend": "api"},
    {"name": "rx", "path": "/r/[0-9]+", "match": "regex", "require_https": True, "backend": "regex_be"},
    {"name": "rxtls", "path": "/r/x.*", "match": "regex", "scheme": "https", "backend": "a_pool"},
    {"name": "rxany", "path": "/r/.*", "match": "regex", "backend": "main"},
    {"name": "plain", "path": "/p", "backend": "b_pool"},
]
SCHEME_TARGETS = [
    "/", "/admin", "/admin/x?q=1&next=/a", "/admin/public", "/admin/public/x", "/admin/status", "/admin/status?x",
    "/api", "/api/v1?x=%20y", "/img/a.png", "/cart", "/secure/x?y=1", "/v1", "/r/12", "/r/12?a=b", "/r/x1", "/r/y",
    "/p", "*",
]  # fmt: skip
SCHEME_HOSTS = [None, "shop.example.org", "Shop.Example.ORG:8443", "a.example.com", "example.com"]

LARGE_TARGETS = [
    "/svc", "/svc/", "/svc/0/exact", "/svc/0/exactly", "/svc/3/exact/", "/svc/1", "/svc/1/x", "/svc/10",
    "/svc/100/a", "/svc/7", "/svc/7/x", "/svc/399", "/svc/3999", "/other",
]  # fmt: skip


def _check(proxy, routes, backends, default, requests, up, scheme="http") -> list:
    """Send every request over ``scheme``; return a list of mismatches (empty when all agree).
    A predicted redirect must be a 301 to the same URL over https, the Host header as sent."""

    def one(request: tuple) -> str | None:
        target, host, method = request
        wire_host = host or proxy.wire_host(scheme)
        want = ref.choose_backend(routes, backends, default, target, wire_host, method, up, scheme)
        status, headers, body = proxy.exchange(target, host, method, scheme)
        if want == ref.REDIRECT_HTTPS:
            got = (status, headers.get("Location"))
            expected = (301, ref.redirect_location(target, wire_host, proxy.tls_port or 443))
        else:
            got = body if status == 200 else status
            expected = want if want in up else 503
        return None if got == expected else f"{scheme} {method} {target[:60]!r} host={host}: got {got!r}, expected {expected!r}"

    # A few requests in flight at once: each is still one connection and one request, and
    # HAProxy routes each on its own; most of a request's time is spent waiting (handshakes).
    with ThreadPoolExecutor(max_workers=4) as pool:
        return [problem for problem in pool.map(one, requests) if problem is not None]


TABLES = {
    "seed": (SEED_ROUTES, SEED_BACKENDS, [(t, None, "GET") for t in TRICKY]),
    "complex": (COMPLEX_ROUTES, COMPLEX_BACKENDS, list(itertools.product(COMPLEX_TARGETS, HOSTS, METHODS))),
    "large": (LARGE_ROUTES, LARGE_BACKENDS, list(itertools.product(LARGE_TARGETS, [None], ["GET", "POST"]))),
    "hosts": (HOST_ROUTES, HOST_BACKENDS, list(itertools.product(HOST_TARGETS, HOST_HEADERS, METHODS))),
    "regex": (REGEX_EDGE_ROUTES, REGEX_BACKENDS, [(t, None, "GET") for t in REGEX_TARGETS]),
    "methods": (METHOD_ROUTES, COMPLEX_BACKENDS, list(itertools.product(METHOD_TARGETS, METHOD_HOSTS, METHOD_METHODS))),
    "regex-order": (REGEX_ORDER_ROUTES, REGEX_BACKENDS, REGEX_ORDER_REQUESTS),
    "scheme": (SCHEME_ROUTES, COMPLEX_BACKENDS, list(itertools.product(SCHEME_TARGETS, SCHEME_HOSTS, METHODS))),
}


class _OneProxy:
    """The running HAProxy (plain and TLS binds) of the (table, mode) the current test asks for.

    The cases are listed with the scheme varying fastest, so the http and https cases of one
    table and form share one HAProxy, started once; asking for another table stops it."""

    def __init__(self, tmp_path_factory):
        self._tmp = tmp_path_factory
        self._key = None
        self._stack = contextlib.ExitStack()
        self.compiled = None
        self.proxy = None

    def get(self, table: str, mode: str):
        if (table, mode) != self._key:
            self.close()
            routes, backends, _requests = TABLES[table]
            workdir = self._tmp.mktemp(f"{table}-{mode}")
            default = "main" if "main" in backends else "be3"
            compiled = compile_routes(routes, backends, default, map_dir=str(workdir / "maps"), mode=mode)
            self.proxy, _servers = self._stack.enter_context(running(compiled, workdir, tls=True))
            self.compiled, self._key = compiled, (table, mode)
        return self.compiled, self.proxy

    def close(self) -> None:
        self._stack.close()
        self._key = self.compiled = self.proxy = None


@pytest.fixture(scope="module")
def one_proxy(tmp_path_factory):
    holder = _OneProxy(tmp_path_factory)
    try:
        yield holder
    finally:
        holder.close()


@pytest.mark.parametrize(
    ("table", "mode", "scheme"),
    [pytest.param(t, m, s, id=f"{t}-{m}-{s}") for t, m, s in itertools.product(TABLES, ["acl", "map"], ["http", "https"])],
)
def test_every_request_reaches_the_predicted_backend(one_proxy, table, mode, scheme):
    routes, backends, requests = TABLES[table]
    compiled, proxy = one_proxy.get(table, mode)
    if table == "hosts" and mode == "map":
        assert {m["name"] for m in compiled["maps"]} >= {"lay7_routes_host_exact.map", "lay7_routes_host_prefix.map"}
    if table == "regex-order" and mode == "map":
        assert {m["name"] for m in compiled["maps"]} >= {"lay7_routes_regex.map", "lay7_routes_host_regex.map"}
        assert sum(" -m reg " in line for line in compiled["frontend"]) == 2  # the method and wildcard routes
    if table == "methods" and mode == "map":
        assert {m["name"] for m in compiled["maps"]} >= {"lay7_routes_method_exact.map", "lay7_routes_method_prefix.map"}
        assert not any(line.startswith("acl route_api") or line.startswith("acl route_v1") for line in compiled["frontend"])
    assert compiled["https_redirect_backend"] == ("lay7_https_redirect" if table == "scheme" else None)
    if table == "scheme" and mode == "map":
        # The scheme-bound routes are rules, the plain exact-host one a host map key.
        assert "lay7_routes_host_prefix.map" in {m["name"] for m in compiled["maps"]}
        assert sum(" str(" in line for line in compiled["frontend"]) == 10 + 4  # 10 rules, 4 of them with a redirect rule
    problems = _check(proxy, routes, backends, compiled["default_backend"], requests, set(backends), scheme)
    assert not problems, f"{len(problems)} of {len(requests)} requests misrouted:\n" + "\n".join(problems[:30])


def test_redirect_keeps_path_and_query_and_names_the_host(one_proxy):
    """The redirect answer itself, beyond its Location: a 301 from HAProxy, no backend body."""
    _compiled, proxy = one_proxy.get("scheme", "acl")
    status, headers, body = proxy.exchange("/admin/a%20b/c?x=1&y=/z&", "www.example.net:8080", "GET", "http")
    # The HTTP port of the Host header is dropped; the HTTPS listener's own port is named.
    assert (status, headers["Location"], body) == (
        301, f"https://www.example.net:{proxy.tls_port}/admin/a%20b/c?x=1&y=/z&", "")
    assert proxy.exchange("/admin/a%20b/c?x=1", "www.example.net", "GET", "https")[::2] == (200, "a_pool")


@pytest.mark.parametrize("mode", ["acl", "map"])
def test_fallback_and_503_when_backends_stop(tmp_path, mode):
    """Over both schemes with one HAProxy (stopping backends and waiting for the health checks
    is this test's cost, not the requests)."""
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
    with running(compiled, tmp_path, tls=True) as (proxy, servers):
        for up in scenarios:
            for (backend, name), nb in servers.items():
                if backend in up and nb._server is None:
                    nb.start()
                elif backend not in up and nb._server is not None:
                    nb.stop()
            proxy.wait_states({key: ("UP" if key[0] in up else "DOWN") for key in servers})
            problems = [p for scheme in ("http", "https") for p in _check(proxy, SEED_ROUTES, SEED_BACKENDS, "main", requests, up, scheme)]
            assert not problems, f"with {sorted(up)} up:\n" + "\n".join(problems)


def test_haproxy_accepts_config_without_warnings(tmp_path):
    """haproxy -c must not warn about the emitted rules (e.g. rule ordering)."""
    from loopback import HAProxy

    for (name, routes), mode in itertools.product((("complex", COMPLEX_ROUTES), ("scheme", SCHEME_ROUTES)), ("acl", "map")):
        workdir = tmp_path / f"{name}-{mode}"
        workdir.mkdir()
        compiled = compile_routes(routes, COMPLEX_BACKENDS, "main", map_dir=str(workdir / "maps"), mode=mode)
        ports = {(be["name"], s["name"]): 1 for be in compiled["backends"] for s in be["servers"]}
        # With the TLS bind, and for the scheme table the redirect backend (it has no server).
        proxy = HAProxy(compiled, ports, workdir, tls=True)
        assert (" ssl crt " in proxy.cfg.read_text()) and (("backend lay7_https_redirect" in proxy.cfg.read_text()) == (name == "scheme"))
        out = proxy.check()
        assert "WARNING" not in out, out
