"""Header and query matches, HTTPRoute filters, weighted backends, timeouts and unmatched 404
on the real HAProxy binary, on loopback, in both compiled forms.

Each table is compiled in the acl and the map form and served by one HAProxy per form (plain
and TLS binds in one frontend, health checks off once it runs), started once per test module
and worker. What the client gets
back (status, Location, body, response headers) and what the backend received (request target
and headers, which the loopback backends echo) must be what the reference matcher predicts;
a few answers are also spelled out literally, so the reference is not the only oracle.
"""

from __future__ import annotations

import contextlib
import http.client
import itertools
import json
import math
import time
from collections import Counter
from concurrent.futures import ThreadPoolExecutor

import pytest
import reference_matcher as ref
from ansible_collections.lay7.ha.plugins.plugin_utils._routes import NOT_FOUND_BODY, compile_routes
from loopback import LOOPBACK, SEEN_HEADERS, SEEN_TARGET, running
from seed_tables import server

MODES = ["acl", "map"]
SCHEMES = ["http", "https"]


def _backends(*names, **extra) -> dict:
    out = {name: {"servers": [server(name, 10 + i)]} for i, name in enumerate(names)}
    for name, settings in extra.items():
        out[name].update(settings)
    return out


# ---------------------------------------------------------------- header and query matches

MATCH_BACKENDS = _backends(
    "main", "stable", "canary", "gold", "firefox", "v2", "hq", "items", "enc", "search", "multi", "hostbe",
    "methbe", "tlsbe", "wild", "rx", "rxh", "empty", "comma", "apiv1", "postc", "odd",
)
H_CANARY = {"name": "X-Canary", "value": "yes"}
Q_V2 = {"name": "version", "value": "2"}
MATCH_ROUTES = [
    {"name": "api", "path": "/api", "backend": "stable"},
    {"name": "canary", "path": "/api", "headers": [H_CANARY], "backend": "canary"},
    # Two header conditions outrank one; names compared without case.
    {"name": "gold", "path": "/api", "headers": [{"name": "x-canary", "value": "yes"},
                                                 {"name": "X-Tier", "value": "gold|silver", "match": "regex"}],
     "backend": "gold"},
    {"name": "firefox", "path": "/api", "headers": [{"name": "User-Agent", "value": ".*Firefox/[0-9]+.*", "match": "regex"}],
     "backend": "firefox"},
    # One header and one query condition: above the header-only routes, below two headers.
    {"name": "hq", "path": "/api", "headers": [H_CANARY], "query": [Q_V2], "backend": "hq"},
    {"name": "v2", "path": "/api", "query": [Q_V2], "backend": "v2"},
    # Plain routes that outrank the conditioned ones: a longer prefix, a method, an exact host
    # (a host map key in the map form, where the conditioned routes are rules), a wildcard host.
    {"name": "apiv1", "path": "/api/v1", "backend": "apiv1"},
    {"name": "post", "path": "/api", "methods": ["POST"], "backend": "methbe"},
    {"name": "postcanary", "path": "/api", "methods": ["POST"], "headers": [H_CANARY], "backend": "postc"},
    {"name": "hostapi", "host": "api.example.com", "path": "/api", "backend": "hostbe"},
    {"name": "hostcanary", "host": "api.example.com", "path": "/api", "headers": [H_CANARY], "backend": "canary"},
    {"name": "wildcanary", "host": "*.example.com", "path": "/", "headers": [H_CANARY], "backend": "wild"},
    # A scheme ranks after the header conditions: same headers plus https beat "canary" over TLS.
    {"name": "tls", "path": "/api", "scheme": "https", "headers": [H_CANARY], "backend": "tlsbe"},
    {"name": "items", "path": "/api/items", "query": [{"name": "id", "value": "[0-9]+", "match": "regex"}], "backend": "items"},
    {"name": "rxh", "path": "/r/[0-9]+", "match": "regex", "headers": [{"name": "X-Debug", "value": "1"}], "backend": "rxh"},
    {"name": "rx", "path": "/r/[0-9]+", "match": "regex", "backend": "rx"},
    # Raw query values: percent-encodings are compared as sent, never decoded.
    {"name": "enc", "path": "/search", "match": "exact", "query": [{"name": "q", "value": "a%20b"}], "backend": "enc"},
    {"name": "searchrx", "path": "/search", "query": [{"name": "q", "value": "x%2F.*", "match": "regex"}], "backend": "search"},
    {"name": "multi", "path": "/multi", "query": [{"name": "a", "value": "1"}, {"name": "b", "value": "[a-z]+", "match": "regex"}],
     "backend": "multi"},
    # Regexes that accept the empty value.
    {"name": "emptyh", "path": "/empty", "headers": [{"name": "X-Opt", "value": "[a-z]*", "match": "regex"}], "backend": "empty"},
    {"name": "emptyq", "path": "/emptyq", "query": [{"name": "e", "value": "[a-z]*", "match": "regex"}], "backend": "empty"},
    # The whole value, commas included; a name with '_' and '.'.
    {"name": "comma", "path": "/comma", "headers": [{"name": "X-List", "value": "a, b"}], "backend": "comma"},
    {"name": "odd", "path": "/odd", "headers": [{"name": "X-My_Header.v2", "value": "on"}], "backend": "odd"},
    # Values and names with characters HAProxy's configuration would otherwise read as quotes,
    # comments, variables or log-format expressions.
    {"name": "quote", "path": "/quote", "headers": [{"name": "X-Quote", "value": "it's \"#1\" \\o/ 100% $HOME"}],
     "backend": "odd"},
    {"name": "quoterx", "path": "/quote", "headers": [{"name": "X-Quote", "value": "'[^']*' #[0-9]", "match": "regex"}],
     "backend": "comma"},
    {"name": "qchars", "path": "/qchars", "query": [{"name": "k.~!$*+:@/-", "value": "o'k(1)*,+:@/=x"}], "backend": "odd"},
]
HEADER_SETS = [
    [],
    [("X-Canary", "yes")],
    [("x-CANARY", "yes")],
    [("X-Canary", "YES")],
    [("X-Canary", "yes ok")],
    [("X-Canary", "no"), ("X-Canary", "yes")],  # any occurrence
    [("X-Canary", "no, yes")],  # one line: the whole value must match
    [("X-Canary", "yes"), ("X-Tier", "silver")],
    [("X-Tier", "gold"), ("x-canary", "yes")],
    [("X-Canary", "yes"), ("X-Tier", "bronze")],
    [("X-Tier", "gold")],
    [("User-Agent", "Mozilla/5.0 (X11; Linux x86_64; rv:126.0) Gecko/20100101 Firefox/126.0")],
    [("User-Agent", "Firefox/")],
    [("User-Agent", "Firefox/1"), ("X-Canary", "yes")],
    [("X-Debug", "1")],
    [("X-Debug", "10")],
    [("X-Opt", "")],
    [("X-Opt", "abc")],
    [("X-Opt", "ABC")],
    [("X-List", "a, b")],
    [("X-List", "a"), ("X-List", "b")],
    [("x-my_header.v2", "on")],
    [("X-Quote", "it's \"#1\" \\o/ 100% $HOME")],
    [("X-Quote", "'a b' #7")],
    [("X-Quote", "it's")],
]
HEADER_TARGETS = ["/api", "/api/x", "/api/v1", "/r/1", "/r/x", "/empty", "/comma", "/odd", "/quote", "/other"]
QUERY_TARGETS = [
    "/api?version=2", "/api?version=20", "/api?Version=2", "/api?x=1&version=2", "/api?version=1&version=2",
    "/api?version=2&version=1", "/api?version", "/api?version=", "/api?version=2&x", "/api/x?version=2",
    "/api/version=2", "/api?a=1;version=2", "/api?x=1?version=2", "/api??version=2", "/api?version=2;x=1",
    "/api?version=2?", "/api?xversion=2", "/api?version=%32",
    "/api/items?id=42", "/api/items?id=4a", "/api/items?id=", "/api/items?ids=1", "/api/items?id=x&id=1",
    "/api/items?id=1&id=x", "/api/items", "/api/items?version=2",
    "/search?q=a%20b", "/search?q=a+b", "/search?q=a%20B", "/search?q=a%2520b", "/search/?q=a%20b",
    "/search?q=x%2Fy", "/search?q=x%2fy", "/search?q=x/y", "/search?q=x%2F", "/search/a?q=x%2Fz",
    "/multi?a=1&b=xyz", "/multi?b=xyz&a=1", "/multi?a=1", "/multi?a=1&b=XYZ", "/multi?a=1&b=", "/multi?a=2&b=x&a=1",
    "/multi?a=1;b=xyz",
    "/emptyq?e=", "/emptyq?e", "/emptyq", "/emptyq?e=abc", "/emptyq?e=ABC", "/emptyq?e=&e=X",
    "/qchars?k.~!$*+:@/-=o'k(1)*,+:@/=x", "/qchars?k.~!$*+:@/-=o'k(1)*,+:@/=", "/qchars?k=o'k(1)*,+:@/=x",
]  # fmt: skip
MATCH_REQUESTS = (
    # Header sets against plain, header and regex routes (host-less, GET).
    [(t, None, "GET", h) for t, h in itertools.product(HEADER_TARGETS, HEADER_SETS)]
    # Hosts and methods around /api: exact host, wildcard host, method routes.
    + [(t, host, m, h) for t, host, m, h in itertools.product(
        ["/api", "/api/x"], [None, "api.example.com", "WWW.example.com:8080"], ["GET", "POST"],
        [[], [("X-Canary", "yes")], [("X-Canary", "no")], [("X-Canary", "yes"), ("X-Tier", "gold")]])]
    # Query strings, with and without the header some of the routes also want.
    + [(t, None, "GET", h) for t, h in itertools.product(QUERY_TARGETS, [[], [("X-Canary", "yes")]])]
)

# ------------------------------------------------------------------------------- filters

ACTION_BACKENDS = _backends("main", "rw", "hdr")
ACTION_ROUTES = [
    # request_redirect, every status code and field.
    {"name": "r301", "path": "/r/301", "filters": [{"type": "request_redirect"}]},
    {"name": "r302", "path": "/r/302", "filters": [{"type": "request_redirect", "scheme": "https", "status": 302}]},
    {"name": "r303", "path": "/r/303", "filters": [
        {"type": "request_redirect", "host": "new.example.com", "port": 8443, "status": 303},
        {"type": "response_header_modifier", "set": [{"name": "X-Why", "value": "moved 100%"}]}]},
    {"name": "r307", "path": "/r/307", "filters": [
        {"type": "request_redirect", "scheme": "http", "port": 80, "path": {"type": "full", "value": "/moved/here"}, "status": 307}]},
    {"name": "r308", "path": "/r/308", "filters": [{"type": "request_redirect", "path": {"type": "prefix", "value": "/new"}, "status": 308}]},
    {"name": "rslash", "path": "/r/slash/", "filters": [{"type": "request_redirect", "path": {"type": "prefix", "value": "/"}}]},
    {"name": "rdeep", "path": "/r/deep", "filters": [
        {"type": "request_redirect", "scheme": "http", "port": 8080, "path": {"type": "prefix", "value": "/a/b/"}}]},
    {"name": "r443", "path": "/r/443", "filters": [{"type": "request_redirect", "port": 443}]},
    {"name": "rexact", "path": "/r/exact", "match": "exact", "filters": [
        {"type": "request_redirect", "host": "x.example.org", "path": {"type": "full", "value": "/"}, "status": 302}]},
    # The route "/" of an exact host: the matched prefix is empty, the whole path is the rest.
    {"name": "rroot", "host": "redir.example.com", "path": "/", "filters": [
        {"type": "request_redirect", "path": {"type": "prefix", "value": "/v2"}}]},
    # url_rewrite.
    {"name": "whost", "path": "/w/host", "filters": [{"type": "url_rewrite", "host": "internal.example.com"}], "backend": "rw"},
    {"name": "wfull", "path": "/w/full", "filters": [{"type": "url_rewrite", "path": {"type": "full", "value": "/replaced/p%20ath"}}],
     "backend": "rw"},
    {"name": "wpre", "path": "/w/pre", "filters": [{"type": "url_rewrite", "path": {"type": "prefix", "value": "/v2"}}], "backend": "rw"},
    {"name": "wslash", "path": "/w/slash", "filters": [{"type": "url_rewrite", "path": {"type": "prefix", "value": "/"}}], "backend": "rw"},
    {"name": "wboth", "path": "/w/both", "filters": [
        {"type": "url_rewrite", "host": "svc.internal", "path": {"type": "prefix", "value": "/x/y/"}}], "backend": "rw"},
    {"name": "wexact", "path": "/w/exact", "match": "exact", "filters": [
        {"type": "url_rewrite", "path": {"type": "full", "value": "/e"}}], "backend": "rw"},
    {"name": "wroot", "host": "rw.example.com", "path": "/", "filters": [
        {"type": "url_rewrite", "path": {"type": "prefix", "value": "/base"}}], "backend": "rw"},
    # Header modifiers, with values HAProxy would otherwise read as expressions or quotes.
    {"name": "hreq", "path": "/h/req", "filters": [{
        "type": "request_header_modifier",
        "set": [{"name": "X-Set", "value": "50% off, \"now\" $HOME %[src] 'q' \\n #x"},
                {"name": "X-Existing", "value": "new"}],
        "add": [{"name": "X-Add", "value": "a  b"}, {"name": "X-Multi", "value": "second"}],
        "remove": ["X-Remove", "x-gone"]}], "backend": "hdr"},
    {"name": "hresp", "path": "/h/resp", "filters": [{
        "type": "response_header_modifier",
        "set": [{"name": "X-Resp", "value": "100% sure $x"}, {"name": "Content-Type", "value": "text/x-set"}],
        "add": [{"name": "X-Resp-Add", "value": "one two"}],
        "remove": ["X-Lay7-Seen-Target"]}], "backend": "hdr"},
    {"name": "hboth", "path": "/h/both", "filters": [
        {"type": "request_header_modifier", "add": [{"name": "X-Req", "value": "1"}]},
        {"type": "response_header_modifier", "add": [{"name": "X-Resp", "value": "2"}]},
        {"type": "url_rewrite", "path": {"type": "prefix", "value": "/inner"}}], "backend": "hdr"},
    # fixed_response.
    {"name": "f503", "path": "/f/503", "filters": [
        {"type": "fixed_response", "status": 503, "body": "down \"for\" $maint 100%\nline\t2 \\ # end\n",
         "content_type": "text/plain"}]},
    {"name": "fhtml", "path": "/f/html", "filters": [
        {"type": "fixed_response", "status": 200, "body": "<p class='x'>it's ok</p>\n", "content_type": "text/html; charset=utf-8"},
        {"type": "response_header_modifier", "set": [{"name": "X-Fixed", "value": "50% yes"}], "add": [{"name": "Cache-Control", "value": "no-store"}]}]},
    {"name": "f204", "path": "/f/204", "match": "exact", "filters": [{"type": "fixed_response", "status": 204}]},
    {"name": "fplain", "path": "/f/plain", "filters": [{"type": "fixed_response", "status": 418, "body": "short and stout"}]},
    # Timeouts: the backend answers /slow/1 after one second.
    {"name": "tbe", "path": "/t/be", "timeouts": {"backend": "300ms"}, "backend": "main"},
    {"name": "treq", "path": "/t/req", "timeouts": {"request": "300ms"}, "backend": "main"},
    {"name": "tboth", "path": "/t/both", "timeouts": {"request": "2s", "backend": "250ms"}, "backend": "main"},
    {"name": "tplain", "path": "/t/plain", "backend": "main"},
    {"name": "tlong", "path": "/t/long", "timeouts": {"backend": "5s"}, "backend": "main"},
    {"name": "plain", "path": "/p", "backend": "main"},
]
REDIRECT_TARGETS = [
    "/r/301", "/r/301/a?x=1&y=%20", "/r/302/b?q", "/r/303", "/r/303/x?z=1", "/r/307", "/r/307/deep?keep=me",
    "/r/308", "/r/308/", "/r/308/a/b?c=d", "/r/308x", "/r/slash", "/r/slash/", "/r/slash/x/y?q=1", "/r/slash?q=1",
    "/r/deep", "/r/deep/z", "/r/443/x", "/r/exact?x=1", "/r/exact/", "/r/3010",
]  # fmt: skip
REWRITE_TARGETS = [
    "/w/host", "/w/host/a?b=c", "/w/full", "/w/full/x?keep=1", "/w/pre", "/w/pre?q=1", "/w/pre/", "/w/pre/a/b?c=%2F",
    "/w/prefix", "/w/slash", "/w/slash?z", "/w/slash/", "/w/slash/x/y", "/w/both/q?r=s", "/w/both", "/w/exact?y=2",
    "/h/both/deep?x", "/w/pre/a%20b/%2F?x=%25", "/r/308/a%2Fb?x=%25",
]  # fmt: skip
# The Host header's port never reaches a Location (the arrival port does); an empty port is
# no port; an IPv6 literal keeps its brackets.
ACTION_HOSTS = [None, "www.example.net", "Www.Example.NET:8080", "h.example:", "[::1]:8080"]
# Request headers for the header modifiers: ones they set, add and remove, in several spellings.
MODIFIER_HEADER_SETS = [
    [],
    [("X-Existing", "old"), ("X-Remove", "r"), ("X-Keep", "k")],
    [("x-gone", "1"), ("X-GONE", "2"), ("X-Multi", "first"), ("x-set", "old1"), ("X-Set", "old2"), ("x-existing", "e")],
]
ACTION_REQUESTS = (
    [(t, h, "GET") for t, h in itertools.product(REDIRECT_TARGETS + REWRITE_TARGETS, ACTION_HOSTS)]
    + [(t, "redir.example.com", "GET") for t in ["/", "/a/b?c=1", "/v2"]]
    + [(t, "rw.example.com", m) for t, m in itertools.product(["/", "/a/b?c=1"], ["GET", "POST"])]
    + [(t, None, "GET") for t in ["/f/503", "/f/html", "/f/204", "/f/204/x", "/f/plain/x", "/p", "/nothing", "/r", "/w", "*",
                                  "/t/plain"]]
    + [(t, None, m) for t, m in itertools.product(["/r/301", "/f/503", "/w/pre/x"], ["POST", "DELETE", "PURGE"])]
    + [(t, None, "GET", h) for t, h in itertools.product(["/h/req", "/h/req/x?y=1", "/h/resp", "/h/both/x", "/p"],
                                                         MODIFIER_HEADER_SETS)]
)

# ------------------------------------------------------------------------------ weights

WEIGHT_BACKENDS = _backends(
    "main", "stable", "canary", "alt", "ck_a", "ck_b", "ck_c", "src_a", "src_b", "pick_a", "pick_b",
    ck_a={"persistence": "cookie"}, ck_b={"persistence": "cookie"}, ck_c={"persistence": "cookie"},
    src_a={"persistence": "source"}, src_b={"persistence": "source"},
)
WEIGHT_ROUTES = [
    {"name": "split", "path": "/split", "backends": [{"name": "stable", "weight": 90}, {"name": "canary", "weight": 10},
                                                     {"name": "alt", "weight": 0}]},
    {"name": "all", "path": "/all", "backends": [{"name": "stable", "weight": 0}, {"name": "canary", "weight": 100}]},
    {"name": "zero", "path": "/zero", "backends": [{"name": "stable", "weight": 0}, {"name": "canary", "weight": 0}]},
    {"name": "sticky", "path": "/sticky", "backends": [{"name": "ck_a", "weight": 50}, {"name": "ck_b", "weight": 50},
                                                       {"name": "ck_c", "weight": 0}]},
    {"name": "src", "path": "/src", "backends": [{"name": "src_a", "weight": 50}, {"name": "src_b", "weight": 50}]},
    # Each entry's own header modifiers (Gateway API's backendRef filters) name the entry.
    {"name": "picked", "path": "/picked", "backends": [
        {"name": name, "weight": 50, "filters": [
            {"type": "request_header_modifier", "set": [{"name": "X-Backend", "value": name}]},
            {"type": "response_header_modifier", "add": [{"name": "X-Picked", "value": name}]}]}
        for name in ("pick_a", "pick_b")]},
]

# ------------------------------------------------------------------------------ retries

# Timeouts with L7 retries on, as the haproxy_l7 role configures them (its defaults section:
# retries, and retry-on with response-timeout), which the loopback configuration leaves out:
# a backend timeout bounds each attempt, a request timeout the one and only attempt. One
# backend each, so HAProxy's per-server request counts tell them apart.
RETRY_BACKENDS = _backends("main", "per_try", "whole", "plain")
RETRY_ROUTES = [
    {"name": "per_try", "path": "/per-try", "timeouts": {"backend": "300ms"}, "backend": "per_try"},
    {"name": "whole", "path": "/whole", "timeouts": {"request": "300ms"}, "backend": "whole"},
    {"name": "both", "path": "/both", "timeouts": {"request": "5s", "backend": "300ms"}, "backend": "whole"},
    {"name": "plain", "path": "/plain", "backend": "plain"},
]
RETRIES = 2
RETRY_LINES = [f"retries {RETRIES}", "retry-on conn-failure empty-response response-timeout"]

TABLES = {
    "match": (MATCH_ROUTES, MATCH_BACKENDS, "default"),
    "actions": (ACTION_ROUTES, ACTION_BACKENDS, "not_found"),
    "weights": (WEIGHT_ROUTES, WEIGHT_BACKENDS, "default"),
    "retries": (RETRY_ROUTES, RETRY_BACKENDS, "default"),
}


class _Proxies:
    """One running HAProxy (plain and TLS binds) per (table, form), started when first asked
    for and kept until the module ends: tests of one table in one form share it, whatever
    order pytest-xdist hands them to this worker in."""

    def __init__(self, tmp_path_factory):
        self._tmp = tmp_path_factory
        self._stack = contextlib.ExitStack()
        self._running = {}

    def get(self, table: str, mode: str):
        if (table, mode) not in self._running:
            routes, backends, unmatched = TABLES[table]
            workdir = self._tmp.mktemp(f"{table}-{mode}")
            compiled = compile_routes(routes, backends, "main", map_dir=str(workdir / "maps"), mode=mode, unmatched=unmatched)
            assert compiled["mode"] == mode
            if table == "retries":
                # Every backend section gets the compiled backend_rules: the role's retry
                # settings go there too.
                compiled = dict(compiled, backend_rules=compiled["backend_rules"] + RETRY_LINES)
            # running() checks the configuration with haproxy -c before starting it.
            proxy, servers = self._stack.enter_context(running(compiled, workdir, tls=True))
            # No test here stops a backend. Health checks (every 100 ms, of every server of
            # every HAProxy this worker runs, answered by this very process) would only compete
            # with the requests, and one answered late under that load marks a server down
            # (maybe already since running() saw it up: hence "health up" after the checks stop).
            for backend, name in servers:
                proxy.command(f"disable health {backend}/{name}")
                proxy.command(f"set server {backend}/{name} health up")
            # HAProxy then reports an up server as "no check" (a down one stays DOWN).
            proxy.wait_states({key: "no" for key in servers})
            self._running[(table, mode)] = (compiled, proxy)
        return self._running[(table, mode)]

    def close(self) -> None:
        self._stack.close()


@pytest.fixture(scope="module")
def proxies(tmp_path_factory):
    holder = _Proxies(tmp_path_factory)
    try:
        yield holder
    finally:
        holder.close()


def _arrival_port(proxy, scheme: str) -> int:
    return proxy.tls_port if scheme == "https" else proxy.port


def _parallel(fn, items, workers: int = 4) -> list:
    # A few requests in flight at once: each is still its own connection and request.
    with ThreadPoolExecutor(max_workers=workers) as pool:
        return list(pool.map(fn, items))


def _burst(proxy, target: str, n: int, headers: tuple = ()) -> Counter:
    """Send ``n`` requests one after the other on one kept-alive connection (HAProxy routes
    each on its own); count the (status, body) answers. Much cheaper than a connection per
    request, which matters for the thousands the weighted split needs."""
    counts = Counter()
    conn = http.client.HTTPConnection(LOOPBACK, proxy.port, timeout=5)
    try:
        for _ in range(n):
            conn.request("GET", target, headers=dict(headers))
            resp = conn.getresponse()
            counts[(resp.status, resp.read().decode(errors="replace"))] += 1
    finally:
        conn.close()
    return counts


def _filter(route: dict, kind: str) -> dict | None:
    """The route's filter of type ``kind`` as the table gives it, or None."""
    return next((f for f in route.get("filters") or [] if f["type"] == kind), None)


def _seen_headers(headers) -> list:
    """The request headers the backend received, names lower-cased."""
    return [(n.lower(), v) for n, v in json.loads(headers[SEEN_HEADERS])]


def _check_outcome(proxy, table: str, request: tuple, scheme: str) -> str | None:
    """Send one request; return a description of how it differs from the reference, or None.

    Beyond the outcome (backend, redirect, fixed response, 404), what the route's filters do
    is checked: the Location, the target and Host header the backend received (url_rewrite),
    its request headers (request_header_modifier) and the response headers the client gets
    (response_header_modifier)."""
    routes, backends, unmatched = TABLES[table]
    target, host, method, *rest = request
    sent = rest[0] if rest else []
    wire_host = host or proxy.wire_host(scheme)
    # The port the request arrives on, which a redirect without scheme and port keeps.
    want = ref.choose_backend(routes, backends, "main", target, wire_host, method, set(backends), scheme,
                              headers=sent, unmatched=unmatched, port=_arrival_port(proxy, scheme))
    route = ref.select_route(routes, target, wire_host, method, scheme, sent)
    status, headers, body = proxy.exchange(target, host, method, scheme, headers=sent)
    where = f"{scheme} {method} {target!r} host={host} headers={sent}"
    problems = []
    if want.startswith("redirect:") and want != ref.REDIRECT_HTTPS:
        _redirect, code, location = want.split(":", 2)
        code = int(code)
        if (status, headers.get("Location")) != (code, location):
            problems.append(f"got {status} {headers.get('Location')!r}, expected {code} {location!r}")
    elif want.startswith("fixed:"):
        code = int(want.split(":")[1])
        spec = _filter(route, "fixed_response")
        if status != code:
            problems.append(f"got status {status}, expected {code}")
        if spec is not None:
            if body != spec.get("body", ""):
                problems.append(f"got body {body!r}, expected {spec.get('body', '')!r}")
            content_type = spec.get("content_type") or "text/plain"
            if spec.get("body") and headers.get("Content-Type") != content_type:
                problems.append(f"got content-type {headers.get('Content-Type')!r}, expected {content_type!r}")
    elif want == ref.NOT_FOUND:
        if (status, body, headers.get("Content-Type")) != (404, NOT_FOUND_BODY, "text/plain"):
            problems.append(f"got {status} {body!r} {headers.get('Content-Type')!r}, expected 404 {NOT_FOUND_BODY!r}")
    else:
        if (status, body) != (200, want):
            problems.append(f"got {status} {body!r}, expected 200 {want!r}")
        elif route is not None:
            new_host, new_target = ref.rewrite_effects(route, target, wire_host)
            seen = _seen_headers(headers)
            seen_host = [v for n, v in seen if n == "host"]
            if (headers.get(SEEN_TARGET, new_target), seen_host) != (new_target, [new_host or wire_host]):
                problems.append(f"backend saw {headers.get(SEEN_TARGET)!r} host {seen_host}, "
                                f"expected {new_target!r} host {new_host or wire_host!r}")
            modifier = _filter(route, "request_header_modifier")
            if modifier is not None:
                names = {n.lower() for n, _v in sent} | {e["name"].lower() for op in ("set", "add") for e in modifier.get(op) or []}
                names |= {n.lower() for n in modifier.get("remove") or []}
                expected = [(n.lower(), v) for n, v in ref.header_edits(sent, modifier) if n.lower() in names]
                got = [(n, v) for n, v in seen if n in names]
                if got != expected:
                    problems.append(f"backend saw headers {got}, expected {expected}")
    modifier = _filter(route, "response_header_modifier") if route is not None else None
    if modifier is not None:
        for entry in (modifier.get("set") or []) + (modifier.get("add") or []):
            if headers.get_all(entry["name"]) != [entry["value"]]:
                problems.append(f"response header {entry['name']}: got {headers.get_all(entry['name'])}, "
                                f"expected [{entry['value']!r}]")
        for name in modifier.get("remove") or []:
            if headers.get_all(name):
                problems.append(f"response header {name} was not removed: {headers.get_all(name)}")
    return f"{where}: " + "; ".join(problems) if problems else None


def _check_all(proxy, table: str, requests: list, scheme: str) -> None:
    problems = [p for p in _parallel(lambda r: _check_outcome(proxy, table, r, scheme), requests) if p]
    assert not problems, f"{len(problems)} of {len(requests)} requests differ from the reference:\n" + "\n".join(problems[:30])


CASES = [pytest.param(m, s, id=f"{m}-{s}") for m, s in itertools.product(MODES, SCHEMES)]


# ------------------------------------------------------------------------------- tests


@pytest.mark.parametrize(("mode", "scheme"), CASES)
def test_header_and_query_matches_agree_with_the_reference(proxies, mode, scheme):
    compiled, proxy = proxies.get("match", mode)
    if mode == "map":
        # The plain exact-host route is a host map key, the conditioned ones are rules: the
        # rank comparison between the two is what this form adds.
        assert "lay7_routes_host_prefix.map" in {m["name"] for m in compiled["maps"]}
    _check_all(proxy, "match", MATCH_REQUESTS, scheme)


@pytest.mark.parametrize("mode", MODES)
def test_header_and_query_precedence_spelled_out(proxies, mode):
    """A few outcomes of the match table written out, as Gateway API orders them."""
    _compiled, proxy = proxies.get("match", mode)
    canary = [("X-Canary", "yes")]
    cases = [
        ("/api", None, "GET", [], "stable"),
        ("/api", None, "GET", canary, "canary"),
        ("/api", None, "GET", [("X-Canary", "no"), ("x-canary", "yes")], "canary"),
        ("/api", None, "GET", [("X-Canary", "yes, no")], "stable"),
        ("/api", None, "GET", canary + [("X-Tier", "silver")], "gold"),
        ("/api?version=2", None, "GET", canary, "hq"),
        ("/api?version=2", None, "GET", [], "v2"),
        ("/api/v1", None, "GET", canary, "apiv1"),
        ("/api", None, "POST", [], "methbe"),
        ("/api", None, "POST", canary, "postc"),
        ("/api", "api.example.com", "GET", [], "hostbe"),
        ("/api", "api.example.com", "GET", canary, "canary"),
        ("/api", "www.example.com", "GET", canary, "wild"),
        ("/search?q=a%20b", None, "GET", [], "enc"),
        ("/search?q=a+b", None, "GET", [], "main"),
        ("/r/7", None, "GET", [("X-Debug", "1")], "rxh"),
    ]
    got = [(t, h, m, hd, proxy.exchange(t, h, m, headers=hd)[2]) for t, h, m, hd, _want in cases]
    assert got == [(t, h, m, hd, want) for t, h, m, hd, want in cases]
    assert proxy.exchange("/api", headers=canary, scheme="https")[2] == "tlsbe"


@pytest.mark.parametrize(("mode", "scheme"), CASES)
def test_filters_agree_with_the_reference(proxies, mode, scheme):
    """Redirects, rewrites, header modifiers, fixed responses and the 404 of unmatched
    requests, over the scheme given (a redirect's scheme and port depend on it)."""
    _compiled, proxy = proxies.get("actions", mode)
    _check_all(proxy, "actions", ACTION_REQUESTS, scheme)


@pytest.mark.parametrize("mode", MODES)
def test_redirect_locations_spelled_out(proxies, mode):
    _compiled, proxy = proxies.get("actions", mode)
    port, tls_port = proxy.port, proxy.tls_port
    cases = [
        # (scheme, target, Host header) -> (status, Location)
        ("http", "/r/301/a?x=1", "h.example", 301, f"http://h.example:{port}/r/301/a?x=1"),
        ("https", "/r/301/a?x=1", "h.example", 301, f"https://h.example:{tls_port}/r/301/a?x=1"),
        ("http", "/r/302/b?q", "H.Example", 302, "https://H.Example/r/302/b?q"),
        ("http", "/r/303/x?z=1", "h.example", 303, "http://new.example.com:8443/r/303/x?z=1"),
        ("https", "/r/307/deep?keep=me", "h.example", 307, "http://h.example/moved/here?keep=me"),
        ("http", "/r/308", "h.example", 308, f"http://h.example:{port}/new"),
        ("http", "/r/308/a/b?c=d", "h.example", 308, f"http://h.example:{port}/new/a/b?c=d"),
        ("http", "/r/slash?q=1", "h.example", 301, f"http://h.example:{port}/?q=1"),
        ("http", "/r/slash/x/y", "h.example", 301, f"http://h.example:{port}/x/y"),
        ("https", "/r/deep/z", "h.example", 301, "http://h.example:8080/a/b/z"),
        ("http", "/r/443/x", "h.example", 301, "http://h.example:443/r/443/x"),
        ("https", "/r/443/x", "h.example", 301, "https://h.example/r/443/x"),
        ("http", "/r/exact?x=1", "h.example", 302, f"http://x.example.org:{port}/?x=1"),
        ("http", "/a/b?c=1", "redir.example.com", 301, f"http://redir.example.com:{port}/v2/a/b?c=1"),
    ]
    got = []
    for scheme, target, host, _status, _location in cases:
        status, headers, _body = proxy.exchange(target, host, scheme=scheme)
        got.append((scheme, target, host, status, headers.get("Location")))
    assert got == cases


@pytest.mark.parametrize("mode", MODES)
def test_redirect_port_is_the_arrival_port_not_the_host_headers(proxies, mode):
    """Gateway API: without a scheme or port in the filter, the Location names the port the
    request arrived on (the listener's), not a port in the Host header (which a client behind
    a port mapping may have written)."""
    _compiled, proxy = proxies.get("actions", mode)
    status, headers, _body = proxy.exchange("/r/301/x", "h.example:8081")
    assert (status, headers["Location"]) == (301, f"http://h.example:{proxy.port}/r/301/x")
    status, headers, _body = proxy.exchange("/r/301/x", "h.example:8081", scheme="https")
    assert (status, headers["Location"]) == (301, f"https://h.example:{proxy.tls_port}/r/301/x")


@pytest.mark.parametrize("mode", MODES)
def test_rewrites_and_header_edits_spelled_out(proxies, mode):
    _compiled, proxy = proxies.get("actions", mode)
    _status, headers, body = proxy.exchange("/w/pre/a/b?c=%2F", "www.example.net")
    assert (body, headers[SEEN_TARGET]) == ("rw", "/v2/a/b?c=%2F")
    assert proxy.exchange("/w/pre?q=1")[1][SEEN_TARGET] == "/v2?q=1"
    assert proxy.exchange("/w/slash?z")[1][SEEN_TARGET] == "/?z"
    assert proxy.exchange("/w/slash/x/y")[1][SEEN_TARGET] == "/x/y"
    assert proxy.exchange("/w/full/x?keep=1")[1][SEEN_TARGET] == "/replaced/p%20ath?keep=1"
    assert proxy.exchange("/a/b?c=1", "rw.example.com")[1][SEEN_TARGET] == "/base/a/b?c=1"
    _status, headers, _body = proxy.exchange("/w/both/q?r=s", "www.example.net:8080")
    assert headers[SEEN_TARGET] == "/x/y/q?r=s"
    assert [v for n, v in _seen_headers(headers) if n == "host"] == ["svc.internal"]

    sent = [("X-Existing", "old"), ("X-Remove", "r"), ("X-Keep", "k"), ("X-Multi", "first"), ("X-GONE", "g")]
    _status, headers, body = proxy.exchange("/h/req", headers=sent)
    seen = [(n, v) for n, v in _seen_headers(headers) if n.startswith("x-")]
    assert body == "hdr"
    # '%', quotes, '$', a backslash and '#' arrive literally; set moves the header to the end.
    assert seen == [
        ("x-keep", "k"), ("x-multi", "first"),
        ("x-set", "50% off, \"now\" $HOME %[src] 'q' \\n #x"), ("x-existing", "new"),
        ("x-add", "a  b"), ("x-multi", "second"),
    ]

    _status, headers, _body = proxy.exchange("/h/resp/x", scheme="https")
    assert (headers.get_all("X-Resp"), headers.get_all("Content-Type"), headers.get_all("X-Resp-Add")) == (
        ["100% sure $x"], ["text/x-set"], ["one two"])
    assert SEEN_TARGET not in headers


@pytest.mark.parametrize("mode", MODES)
def test_fixed_responses_spelled_out(proxies, mode):
    _compiled, proxy = proxies.get("actions", mode)
    for scheme in SCHEMES:
        status, headers, body = proxy.exchange("/f/503/x", scheme=scheme)
        assert (status, headers["Content-Type"], body) == (503, "text/plain", "down \"for\" $maint 100%\nline\t2 \\ # end\n")
        status, headers, body = proxy.exchange("/f/html", scheme=scheme)
        assert (status, headers["Content-Type"], body) == (200, "text/html; charset=utf-8", "<p class='x'>it's ok</p>\n")
        # The response header modifier applies to HAProxy's own answer too.
        assert (headers.get_all("X-Fixed"), headers.get_all("Cache-Control")) == (["50% yes"], ["no-store"])
        status, headers, body = proxy.exchange("/f/204", scheme=scheme)
        assert (status, body) == (204, "")
        status, headers, _body = proxy.exchange("/r/303", "h.example", scheme=scheme)
        assert (status, headers.get_all("X-Why")) == (303, ["moved 100%"])


@pytest.mark.parametrize("mode", MODES)
def test_unmatched_requests(proxies, mode):
    """not_found: a 404 with the compiler's body from HAProxy; default: the default backend."""
    _compiled, proxy = proxies.get("actions", mode)
    for scheme in SCHEMES:
        status, headers, body = proxy.exchange("/nothing/here?x=1", scheme=scheme)
        assert (status, headers["Content-Type"], body) == (404, "text/plain", NOT_FOUND_BODY)
    _compiled, proxy = proxies.get("weights", mode)
    assert proxy.request("/nothing/here?x=1") == (200, "main")
    _compiled, proxy = proxies.get("match", mode)
    assert proxy.request("/nothing", scheme="https") == (200, "main")


def _timed(proxy, target: str) -> tuple:
    start = time.monotonic()
    status, _headers, _body = proxy.exchange(target)
    return status, time.monotonic() - start


@pytest.mark.parametrize("mode", MODES)
def test_route_timeouts(proxies, mode):
    """The loopback backend answers .../slow/1 after one second; the configuration's server
    timeout is 10 s. A route's backend timeout cuts the wait (504); other routes wait."""
    _compiled, proxy = proxies.get("actions", mode)
    targets = ["/t/be/slow/1", "/t/req/slow/1", "/t/both/slow/1", "/t/plain/slow/1", "/t/long/slow/1"]
    (be, be_t), (req, req_t), (both, both_t), (plain, plain_t), (long, long_t) = _parallel(lambda t: _timed(proxy, t), targets, 5)
    assert (be, req, both, plain, long) == (504, 504, 504, 200, 200)
    # Well under the backend's one second; not before the route's own timeout.
    assert 0.29 <= be_t < 0.9 and 0.29 <= req_t < 0.9 and 0.24 <= both_t < 0.9, (be_t, req_t, both_t)
    assert plain_t >= 0.95 and long_t >= 0.95


def _attempts(proxy) -> dict:
    """Backend name -> how many requests its server was sent, attempts and retries alike (show
    stat's stot of the server; its wretr counts each L7 retry twice in HAProxy 2.6)."""
    rows = proxy.command("show stat").splitlines()
    header = rows[0].lstrip("# ").split(",")
    return {rec["pxname"]: int(rec["stot"] or 0) for rec in (dict(zip(header, row.split(","))) for row in rows[1:] if row)
            if rec["svname"] == rec["pxname"]}


@pytest.mark.parametrize("mode", MODES)
def test_request_timeout_is_not_retried(proxies, mode):
    """With L7 retries on response timeouts (the role's settings), a route's backend timeout
    is per attempt: the request is tried RETRIES + 1 times before the 504. A request timeout
    bounds the whole wait, so its route's requests are tried once, also when a shorter
    backend timeout is given."""
    _compiled, proxy = proxies.get("retries", mode)
    before = _attempts(proxy)
    targets = ["/per-try/slow/2", "/whole/slow/2", "/both/slow/2"]
    (per_try, per_try_t), (whole, whole_t), (both, both_t) = _parallel(lambda t: _timed(proxy, t), targets, 3)
    after = _attempts(proxy)
    assert (per_try, whole, both) == (504, 504, 504)
    # "whole" served two requests ("/whole" and "/both"), each once.
    assert {name: after[name] - before[name] for name in ("per_try", "whole")} == {"per_try": RETRIES + 1, "whole": 2}
    assert (RETRIES + 1) * 0.3 - 0.01 <= per_try_t < (RETRIES + 1) * 0.3 + 0.5, per_try_t
    assert 0.29 <= whole_t < 0.8 and 0.29 <= both_t < 0.8, (whole_t, both_t)
    # A route without timeouts waits for its slow answer as before.
    assert _timed(proxy, "/plain/slow/1")[0] == 200


@pytest.mark.parametrize("mode", MODES)
def test_weighted_split_follows_the_weights(proxies, mode):
    routes, backends, _unmatched = TABLES["weights"]
    _compiled, proxy = proxies.get("weights", mode)
    n = 2000
    results = _burst(proxy, "/split/x", n)
    possible = {ref.choose_backend(routes, backends, "main", "/split/x", pick=lambda _total, k=k: k) for k in range(100)}
    assert possible == {"stable", "canary"}
    assert set(results) <= {(200, name) for name in possible}, results
    ranges = {name: (hi - lo) / 100 for name, lo, hi in ref.weighted_ranges(WEIGHT_ROUTES[0]["backends"])}
    canary = results[(200, "canary")]
    sd = math.sqrt(n * ranges["canary"] * (1 - ranges["canary"]))
    assert abs(canary - n * ranges["canary"]) <= 4 * sd, (canary, results)

    assert _burst(proxy, "/all", 50) == {(200, "canary"): 50}
    assert ref.choose_backend(routes, backends, "main", "/zero") == "fixed:500"
    assert proxy.request("/zero")[0] == 500


@pytest.mark.parametrize("mode", MODES)
def test_weighted_split_persistence(proxies, mode):
    routes, backends, _unmatched = TABLES["weights"]
    _compiled, proxy = proxies.get("weights", mode)
    # A client without the cookie lands somewhere and gets that backend's cookie; with it, it
    # stays there.
    status, headers, first = proxy.exchange("/sticky")
    assert status == 200 and first in ("ck_a", "ck_b")
    cookie = headers["Set-Cookie"].split(";", 1)[0]
    name, value = cookie.split("=", 1)
    assert name == ref.persistence_cookie(first, backends[first])
    assert ref.choose_backend(routes, backends, "main", "/sticky", cookies={name: value}, pick=lambda total: total - 1) == first
    assert _burst(proxy, "/sticky", 40, [("Cookie", cookie)]) == {(200, first): 40}
    # Any value of the other backend's cookie (a server it no longer has, say) keeps it there.
    other = "ck_b" if first == "ck_a" else "ck_a"
    other_cookie = [("Cookie", f"x=1; {ref.persistence_cookie(other, backends[other])}=gone")]
    assert _burst(proxy, "/sticky", 40, other_cookie) == {(200, other): 40}
    # The cookie of a weight-0 backend pins nothing: the split goes on.
    dead = [("Cookie", f"{ref.persistence_cookie('ck_c', backends['ck_c'])}=x")]
    spread = _burst(proxy, "/sticky", 60, dead)
    assert set(spread) == {(200, "ck_a"), (200, "ck_b")}, spread

    # Source persistence: one client (127.0.0.1) always lands on the same backend.
    by_source = _burst(proxy, "/src", 40)
    assert len(by_source) == 1 and next(iter(by_source))[1] in ("src_a", "src_b"), by_source


@pytest.mark.parametrize("mode", MODES)
def test_weighted_split_entry_filters_follow_the_pick(proxies, mode):
    """Each entry of the /picked split sets X-Backend to its name on the request and adds
    X-Picked with its name to the response: over many requests, each answer's backend (its
    body) is the one both headers name, and both entries are picked."""
    _compiled, proxy = proxies.get("weights", mode)
    picked = Counter()
    problems = []
    conn = http.client.HTTPConnection(LOOPBACK, proxy.port, timeout=5)
    try:
        for i in range(200):
            # The client's own X-Backend is replaced (set), whatever it says.
            conn.request("GET", f"/picked/{i}", headers={"X-Backend": "client"})
            resp = conn.getresponse()
            body = resp.read().decode(errors="replace")
            seen = [v for n, v in _seen_headers(resp.msg) if n == "x-backend"]
            got = (resp.status, seen, resp.msg.get_all("X-Picked"))
            if got != (200, [body], [body]) or body not in ("pick_a", "pick_b"):
                problems.append((i, body, got))
            picked[body] += 1
    finally:
        conn.close()
    assert not problems, problems[:10]
    assert set(picked) == {"pick_a", "pick_b"}, picked
    # A split without entry filters adds nothing.
    _status, headers, body = proxy.exchange("/split", headers=[("X-Backend", "client")])
    assert body in ("stable", "canary") and headers.get_all("X-Picked") is None
    assert [v for n, v in _seen_headers(headers) if n == "x-backend"] == ["client"]


@pytest.mark.parametrize("mode", MODES)
def test_configs_have_no_warnings(proxies, mode):
    """haproxy -c passed before each HAProxy started; it must not warn either."""
    for table in TABLES:
        _compiled, proxy = proxies.get(table, mode)
        out = proxy.check()
        assert "WARNING" not in out and "ALERT" not in out, out
