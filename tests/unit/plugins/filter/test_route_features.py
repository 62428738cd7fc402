"""Unit tests for the route compiler's HTTPRoute features: header and query matches, filters,
weighted backends, timeouts and the unmatched 404 (docs/dev-notes/route-features.md).

Every routing decision is checked three ways: the reference matcher (written from the design
notes, independently of the compiler) and the compiled acl and map forms run by haproxy_sim.
For routes that edit the request or the response, what the backend receives and the response
header edits are compared as well.
"""

from __future__ import annotations

import random
import re

import haproxy_sim
import pytest
import reference_matcher as ref
from ansible.errors import AnsibleFilterError
from ansible_collections.lay7.ha.plugins.plugin_utils import _route_actions as actions
from ansible_collections.lay7.ha.plugins.plugin_utils._routes import NOT_FOUND_BODY, compile_routes

MODES = ("acl", "map")


def server(name: str, last: int) -> dict:
    return {"name": name, "address": f"192.0.2.{last}", "port": 80}


def backends_named(*names) -> dict:
    return {n: {"servers": [server(n, 10 + i)]} for i, n in enumerate(names)}


BE = backends_named("main", "a", "b", "c")


def frontends(routes, backends=BE, unmatched="default") -> dict:
    out = {}
    for mode in MODES:
        compiled = compile_routes(routes, backends, "main", mode=mode, unmatched=unmatched)
        assert compiled["mode"] == mode
        out[mode] = haproxy_sim.Frontend(compiled["frontend"], compiled["maps"], compiled["https_redirect_backend"])
    return out


def cookie_header(cookies: dict | None) -> list:
    return [("Cookie", "; ".join(f"{k}={v}" for k, v in cookies.items()))] if cookies else []


def check(routes, target, expected, backends=BE, headers=None, host=None, method="GET", scheme="http",
          unmatched="default", up=None, pick=None, cookies=None, port=None) -> dict:
    """The outcome of one request is ``expected`` in the reference and in both compiled forms;
    returns the simulator's Results by mode."""
    up = set(backends) if up is None else set(up)
    headers = list(headers or []) + cookie_header(cookies)
    got = ref.choose_backend(routes, backends, "main", target, host, method, up, scheme, headers, unmatched,
                             pick, cookies, port=port)
    assert got == expected, f"reference: {scheme} {method} {target!r} {headers} -> {got}, expected {expected}"
    results = {}
    for mode, fe in frontends(routes, backends, unmatched).items():
        res = fe.run(target, host, method, up, scheme, headers=headers, pick=pick, port=port)
        assert res.outcome == expected, f"{mode} form: {scheme} {method} {target!r} {headers} -> {res.outcome}"
        results[mode] = res
    return results


def hdr(name, value, match="exact") -> dict:
    return {"name": name, "value": value, "match": match}


# ------------------------------------------------------------------ precedence

# One backend per route, so the outcome names the route that won.
PRECEDENCE_ROUTES = [
    {"name": "plain", "path": "/api"},
    {"name": "q1", "path": "/api", "query": [hdr("q", "1")]},
    {"name": "h1q1", "path": "/api", "headers": [hdr("X-A", "1")], "query": [hdr("q", "1")]},
    {"name": "sch", "path": "/api", "scheme": "https"},
    {"name": "h2", "path": "/api", "headers": [hdr("X-A", "1"), hdr("X-B", "1")]},
    {"name": "h1q2", "path": "/api", "headers": [hdr("X-A", "1")], "query": [hdr("q", "1"), hdr("r", "1")]},
    {"name": "meth", "path": "/api", "methods": ["GET"]},
    {"name": "path", "path": "/api/v1"},
    {"name": "host", "host": "x.example.com", "path": "/"},
]
for _route in PRECEDENCE_ROUTES:
    _route["backend"] = _route["name"]
PRECEDENCE_BACKENDS = backends_named("main", *(r["name"] for r in PRECEDENCE_ROUTES))
# Gateway API order: host, path, methods, more header matches, more query matches, then ours:
# the scheme, then declaration order.
PRECEDENCE_ORDER = ["host", "path", "meth", "h2", "h1q2", "h1q1", "q1", "sch", "plain"]
ALL_HEADERS = [("X-A", "1"), ("X-B", "1")]


@pytest.mark.parametrize(("target", "headers", "method", "scheme", "host", "expected"), [
    ("/api?q=1&r=1", ALL_HEADERS, "GET", "https", "x.example.com", "host"),
    ("/api/v1/x?q=1&r=1", ALL_HEADERS, "GET", "https", None, "path"),
    ("/api?q=1&r=1", ALL_HEADERS, "GET", "https", None, "meth"),
    ("/api?q=1&r=1", ALL_HEADERS, "POST", "https", None, "h2"),
    ("/api?q=1&r=1", [("X-A", "1")], "POST", "https", None, "h1q2"),
    ("/api?r=1;q=1", [("X-A", "1"), ("X-B", "2")], "POST", "https", None, "h1q2"),
    ("/api?q=1", [("X-A", "1")], "POST", "https", None, "h1q1"),
    ("/api?q=1", [("X-B", "1")], "POST", "https", None, "q1"),
    ("/api?q=2", [("X-B", "1")], "POST", "https", None, "sch"),
    ("/api?q=2", [("X-B", "1")], "POST", "http", None, "plain"),
    ("/apix?q=1", ALL_HEADERS, "POST", "https", "y.example.com", "main"),
])
def test_precedence_with_headers_and_query(target, headers, method, scheme, host, expected):
    for routes in (PRECEDENCE_ROUTES, PRECEDENCE_ROUTES[::-1]):
        check(routes, target, expected, PRECEDENCE_BACKENDS, headers, host, method, scheme)


def test_compiled_order_follows_precedence_whatever_the_declaration_order():
    rng = random.Random(5)
    for _ in range(5):
        routes = rng.sample(PRECEDENCE_ROUTES, len(PRECEDENCE_ROUTES))
        compiled = compile_routes(routes, PRECEDENCE_BACKENDS, "main", mode="acl")
        assert [r["name"] for r in compiled["routes"]] == PRECEDENCE_ORDER


def test_declaration_order_breaks_ties_between_equally_specific_conditions():
    first = {"name": "first", "path": "/", "headers": [hdr("X-A", "1")], "backend": "a"}
    second = {"name": "second", "path": "/", "headers": [hdr("X-B", "1")], "backend": "b"}
    both = [("X-B", "1"), ("X-A", "1")]
    check([first, second], "/x", "a", headers=both)
    check([second, first], "/x", "b", headers=both)
    # The same with query conditions, and one header against one query condition: the header wins.
    qa = {"name": "qa", "path": "/", "query": [hdr("a", "1")], "backend": "a"}
    qb = {"name": "qb", "path": "/", "query": [hdr("b", "1")], "backend": "b"}
    check([qa, qb], "/?b=1&a=1", "a")
    check([qb, qa], "/?b=1&a=1", "b")
    check([qa, second], "/?a=1", "b", headers=[("X-B", "1")])


def test_conditioned_routes_stay_rules_in_the_map_form():
    routes = [{"name": "plain", "path": "/p", "backend": "a"},
              {"name": "cond", "path": "/c", "headers": [hdr("X-A", "1")], "backend": "b"}]
    compiled = compile_routes(routes, BE, "main", mode="map")
    assert re.search(r"^/p [0-9]+:a$", compiled["maps"][0]["content"], re.M)
    assert all("/c" not in m["content"] for m in compiled["maps"])
    assert "acl route_cond_hdr0 req.fhdr(x-a) -m str -- 1" in compiled["frontend"]


# ------------------------------------------------------------------ match semantics

CANARY = [{"name": "canary", "path": "/", "headers": [hdr("X-Canary", "yes")], "backend": "a"}]


@pytest.mark.parametrize(("headers", "expected"), [
    ([("X-Canary", "yes")], "a"),
    ([("x-CANARY", "yes")], "a"),  # header names without case
    ([("X-Canary", "Yes")], "main"),  # values with case
    ([("X-Canary", "yes, no")], "main"),  # the whole line, commas included
    ([("X-Canary", "no"), ("X-Canary", "yes")], "a"),  # any occurrence
    ([("X-Canary", "yes"), ("X-Canary", "no")], "a"),
    ([("X-Canary", "yess")], "main"),
    ([("X-Canary-2", "yes")], "main"),
    ([], "main"),
])
def test_header_exact_match(headers, expected):
    check(CANARY, "/x", expected, headers=headers)


UA = [{"name": "ff", "path": "/", "headers": [hdr("User-Agent", "Fire[a-z]+", "regex")], "backend": "a"}]


@pytest.mark.parametrize(("value", "expected"), [
    ("Firefox", "a"),
    ("Mozilla Firefox", "main"),  # anchored at the start
    ("Firefox/115", "main"),  # and at the end
    ("firefox", "main"),  # case-sensitive
    ("Fire\u00e9", "main"),  # [a-z] is one ASCII byte
])
def test_header_regex_is_anchored(value, expected):
    check(UA, "/", expected, headers=[("user-agent", value)])


def test_header_regex_alternation_is_anchored_as_a_whole():
    routes = [{"name": "alt", "path": "/", "headers": [hdr("X-E", "a|b", "regex")], "backend": "a"}]
    check(routes, "/", "a", headers=[("X-E", "b")])
    check(routes, "/", "main", headers=[("X-E", "ab")])
    check(routes, "/", "main", headers=[("X-E", "xa")])


def test_header_regex_may_match_an_empty_value_but_not_an_absent_header():
    routes = [{"name": "e", "path": "/", "headers": [hdr("X-E", ".*", "regex")], "backend": "a"}]
    check(routes, "/", "a", headers=[("X-E", "")])
    check(routes, "/", "main", headers=[("X-F", "")])


def test_header_values_starting_with_a_dash_are_patterns():
    routes = [{"name": "d", "path": "/", "headers": [hdr("X-D", "-i")], "backend": "a"},
              {"name": "r", "path": "/", "headers": [hdr("X-R", "-[0-9]", "regex")], "backend": "b"}]
    check(routes, "/", "a", headers=[("X-D", "-i")])
    check(routes, "/", "main", headers=[("X-D", "I")])
    check(routes, "/", "b", headers=[("X-R", "-7")])
    check(routes, "/", "main", headers=[("X-R", "7")])


VERSION = [{"name": "v2", "path": "/api", "query": [hdr("version", "2")], "backend": "a"}]


@pytest.mark.parametrize(("target", "expected"), [
    ("/api?version=2", "a"),
    ("/api/x?a=1&version=2&b=3", "a"),
    ("/api?version=1&version=2", "a"),  # repeated: any occurrence
    ("/api?version=2&version=1", "a"),
    ("/api?Version=2", "main"),  # names with case
    ("/api?version=20", "main"),
    ("/api?version=2=2", "main"),  # split at the first '=' only
    ("/api?version", "main"),  # a piece without '=' has no value
    ("/api?version=", "main"),
    ("/api?version=%32", "main"),  # raw: not percent-decoded
    ("/api?a=1;version=2", "a"),  # HAProxy ends a parameter at ';' too
    ("/api?a=1?version=2", "a"),  # and at a later '?'
    ("/api?xversion=2", "main"),
    ("/api?a=version=2", "main"),  # a name inside a value is not a name
    ("/version=2", "main"),  # no query at all
    ("/api", "main"),
    ("/other?version=2", "main"),  # the path still has to match
])
def test_query_exact_match(target, expected):
    check(VERSION, target, expected)


def test_query_raw_values_and_regex():
    routes = [{"name": "raw", "path": "/r", "query": [hdr("q", "a%2Fb")], "backend": "a"},
              {"name": "id", "path": "/i", "query": [hdr("id", "[0-9]*", "regex")], "backend": "b"}]
    check(routes, "/r?q=a%2Fb", "a")
    check(routes, "/r?q=a/b", "main")  # the decoded form is another value
    check(routes, "/i?id=42", "b")
    check(routes, "/i?id=", "b")  # the regex matches the empty value
    check(routes, "/i?id", "main")  # a piece without '=' has none
    check(routes, "/i?id=4a", "main")  # anchored
    check(routes, "/i?id=x&id=7", "b")  # any occurrence
    check(routes, "/i?id&id=7", "b")


def test_all_conditions_must_hold():
    routes = [{"name": "all", "path": "/", "backend": "a",
               "headers": [hdr("X-A", "1"), hdr("X-B", "[0-9]", "regex")],
               "query": [hdr("p", "1"), hdr("q", "x", "regex")]}]
    full = [("X-A", "1"), ("X-B", "2")]
    check(routes, "/?p=1&q=x", "a", headers=full)
    check(routes, "/?p=1&q=x", "main", headers=full[:1])
    check(routes, "/?p=1&q=x", "main", headers=full[1:])
    check(routes, "/?p=1", "main", headers=full)
    check(routes, "/?q=x", "main", headers=full)
    check(routes, "/?p=1&q=xx", "main", headers=full)


# ------------------------------------------------------------------ randomised agreement

# Conditions by name: a route takes at most one per name (the compiler refuses two).
HEADER_CONDITIONS = {
    "x-canary": [hdr("X-Canary", "yes"), hdr("x-canary", "no"), hdr("X-CANARY", "(yes|no)", "regex")],
    "x-env": [hdr("X-Env", "st[a-z]+", "regex"), hdr("X-Env", "stage")],
    "user-agent": [hdr("User-Agent", ".*Firefox.*", "regex")],
    "x-dash": [hdr("X-Dash", "-1")],
    "x-q": [hdr("X-Q", "it's 100%"), hdr("X-Q", ".*'.*", "regex")],
}
QUERY_CONDITIONS = {
    "v": [hdr("v", "2"), hdr("v", "[0-9]+", "regex")],
    "id": [hdr("id", "a%2Fb"), hdr("id", "a/b")],
    "debug": [hdr("debug", ".*", "regex")],
    "lang": [hdr("lang", "en"), hdr("lang", "-x")],
    "V": [hdr("V", "2")],
}
REQUEST_HEADERS = [
    ("X-Canary", "yes"), ("x-canary", "no"), ("X-CANARY", "yes, no"), ("X-Env", "stage"), ("X-Env", "Stage"),
    ("User-Agent", "Mozilla/5.0 Firefox/1"), ("X-Dash", "-1"), ("X-Q", "it's 100%"), ("X-Remove", "r"),
    ("X-Set", "old"), ("X-Add", "0"), ("x-set", "older"),
]  # fmt: skip
PATHS = ["/", "/a", "/a/", "/a/b", "/a/12", "/a/b/c", "/b", "/b/c", "/b/x", "/c"]
QUERIES = ["", "?v=2", "?v=3&id=a%2Fb", "?debug", "?debug=&lang=en", "?x=1;v=2", "?lang=-x?v=12", "?id=a/b", "?V=2",
           "?v=2&V=3&lang=en&debug=1"]
# Host headers as clients send them, and "h:" (an empty port, which a Location must drop).
HOSTS = [None, "x.example.com", "X.Example.com:8080", "a.example.com", "other.org:81", "h:"]
# The header lines a modifier may touch, and the values it may give.
EDITED_NAMES = ["X-Set", "X-Canary", "X-Add", "X-Env", "X-Remove", "User-Agent", "Server", "X-Resp"]
EDIT_VALUES = ["v 100%", "-a", "it's", "x", "a\"b"]
# The response a backend sends, for the response header modifier.
RESPONSE = [("Server", "s"), ("X-Resp", "1"), ("Set-Cookie", "a=1"), ("x-resp", "2")]
BACKEND_NAMES = ("main", "a", "b", "c", "d")


def _random_backends(rng: random.Random) -> dict:
    backends = {}
    for i, name in enumerate(BACKEND_NAMES):
        spec = {"servers": [server(name, 10 + i)]}
        spec["persistence"] = rng.choice(["none", "none", "cookie", "cookie", "source", "stick-table"])
        if spec["persistence"] == "cookie" and rng.random() < 0.4:
            spec["cookie_name"] = f"SRV_{name.upper()}"
        if rng.random() < 0.3:
            spec["fallback"] = rng.choice([n for n in BACKEND_NAMES if n != name])
        backends[name] = spec
    return backends


def _conditions(rng: random.Random, pool: dict) -> list:
    names = rng.sample(sorted(pool), rng.randint(1, 2))
    return [dict(rng.choice(pool[n])) for n in names]


def _modifier(rng: random.Random, kind: str) -> dict:
    spec = {"type": kind}
    for name in rng.sample(EDITED_NAMES, rng.randint(1, 4)):
        op = rng.choice(["set", "add", "remove"])
        spec.setdefault(op, []).append(name if op == "remove" else {"name": name, "value": rng.choice(EDIT_VALUES)})
    return spec


def _path_spec(rng: random.Random, match: str) -> dict:
    kinds = ["full", "prefix"] if match == "prefix" else ["full"]
    return {"type": rng.choice(kinds), "value": rng.choice(["/", "/n", "/n/", "/v2/x", "/100%25"])}


def _random_route(rng: random.Random, i: int) -> dict:
    match = rng.choice(["prefix", "prefix", "exact", "regex"])
    path = rng.choice({"prefix": ["/", "/a", "/a/b", "/b", "/a/"], "exact": ["/a", "/a/b", "/b/c", "/"],
                       "regex": ["/a/[0-9]+", "/(a|b)/.*", "/b/c"]}[match])
    route = {"name": f"r{i}", "path": path, "match": match}
    if rng.random() < 0.2:
        route["host"] = rng.choice(["x.example.com", "*.example.com"])
    if rng.random() < 0.2:
        route["methods"] = rng.choice([["GET"], ["POST", "PUT"]])
    if rng.random() < 0.5:
        route["headers"] = _conditions(rng, HEADER_CONDITIONS)
    if rng.random() < 0.4:
        route["query"] = _conditions(rng, QUERY_CONDITIONS)
    if rng.random() < 0.1:
        route["scheme"] = rng.choice(["http", "https"])
    kind = rng.choice(["plain", "plain", "split", "split", "edit", "edit", "redirect", "fixed"])
    filters = []
    if kind == "redirect":
        spec = {"type": "request_redirect"}
        for key, values in (("scheme", ["http", "https"]), ("host", ["new.example.com"]), ("port", [80, 443, 8443]),
                            ("status", [301, 302, 308])):
            if rng.random() < 0.35:
                spec[key] = rng.choice(values)
        if rng.random() < 0.5:
            spec["path"] = _path_spec(rng, match)
        filters.append(spec)
    elif kind == "fixed":
        spec = {"type": "fixed_response", "status": rng.choice([200, 404, 503])}
        if rng.random() < 0.6:
            spec["body"] = rng.choice(["down\n", "say \"hi\" to $HOME\t100%\n", "#x"])
        filters.append(spec)
    else:
        if rng.random() < 0.5:
            route["backends"] = [{"name": n, "weight": rng.choice([0, 1, 3, 10, 90])}
                                 for n in rng.sample(BACKEND_NAMES, rng.randint(1, 3))]
        else:
            route["backend"] = rng.choice(BACKEND_NAMES)
        if kind == "edit":
            if rng.random() < 0.6:
                filters.append(_modifier(rng, "request_header_modifier"))
            if rng.random() < 0.6:
                rewrite = {"type": "url_rewrite"}
                if rng.random() < 0.5:
                    rewrite["host"] = "internal.example.com"
                if "host" not in rewrite or rng.random() < 0.5:
                    rewrite["path"] = _path_spec(rng, match)
                filters.append(rewrite)
        if rng.random() < 0.3:
            route["timeouts"] = rng.choice([{"request": "10s"}, {"backend": "500ms"}, {"request": "1m", "backend": "1m"}])
        if rng.random() < 0.1 and "scheme" not in route:
            route["require_https"] = True
    if kind != "plain" and rng.random() < 0.4:
        filters.append(_modifier(rng, "response_header_modifier"))
    if filters:
        route["filters"] = rng.sample(filters, len(filters))
    return route


def _filter(route: dict | None, kind: str) -> dict | None:
    for spec in (route or {}).get("filters") or []:
        if spec["type"] == kind:
            return spec
    return None


def _haproxy_edits(headers: list, edits: list) -> list:
    """HAProxy's header actions on a header list: set-header deletes every line with the name
    and appends one, add-header appends, del-header deletes every line."""
    out = list(headers)
    for op, name, value in edits:
        if op in ("set-header", "del-header"):
            out = [(n, v) for n, v in out if n.lower() != name.lower()]
        if op in ("set-header", "add-header"):
            out.append((name, value))
    return out


def _split_host(headers: list) -> tuple:
    """(the Host values, the other lines with lower-case names), both in order: header names
    have no case, and where the Host line sits does not matter."""
    hosts = [v for n, v in headers if n.lower() == "host"]
    return hosts, [(n.lower(), v) for n, v in headers if n.lower() != "host"]


def _expected_request(route, target: str, host, headers: list) -> tuple:
    """(target, headers) the backend receives, from the reference: the request header
    modifier, then the url_rewrite (its host replaces every Host line)."""
    sent = ([("Host", host)] if host is not None else []) + list(headers)
    if route is None:
        return target, sent
    modifier = _filter(route, "request_header_modifier")
    if modifier is not None:
        sent = ref.header_edits(sent, modifier)
    new_host, new_target = ref.rewrite_effects(route, target, host)
    if new_host is not None:
        sent = [(n, v) for n, v in sent if n.lower() != "host"] + [("host", new_host)]
    return new_target, sent


def _is_backend(outcome: str) -> bool:
    return ":" not in outcome and outcome != ref.NOT_FOUND


def test_random_feature_tables_agree_across_reference_acl_and_map():
    rng = random.Random(20261129)
    compiled = requests = edited = redirects = fixed = weighted = response_checked = 0
    outcomes = set()
    for _table in range(260):
        backends = _random_backends(rng)
        routes = [_random_route(rng, i) for i in range(rng.randint(1, 7))]
        unmatched = rng.choice(["default", "not_found"])
        try:
            fes = frontends(routes, backends, unmatched)
        except AnsibleFilterError as exc:
            assert "shadowed" in str(exc) or "duplicates" in str(exc), (exc, routes)
            continue
        compiled += 1
        cookie_names = sorted({ref.persistence_cookie(n, b) for n, b in backends.items()} - {None}) + ["OTHER"]
        for _request in range(30):
            path = rng.choice(PATHS + ["*", ""])
            target = path + rng.choice(QUERIES) if path.startswith("/") else path
            host = rng.choice(HOSTS)
            method = rng.choice(["GET", "POST", "PUT", "get"])
            scheme = rng.choice(["http", "https"])
            port = rng.choice([None, 80, 443, 8080, 8443])
            up = {n for n in backends if rng.random() < 0.8}
            cookies = {n: rng.choice(["1", ""]) for n in rng.sample(cookie_names, rng.randint(0, min(2, len(cookie_names))))}
            headers = rng.sample(REQUEST_HEADERS, rng.randint(0, 4)) + cookie_header(cookies)
            drawn = rng.random()

            def pick(total, drawn=drawn):
                return int(drawn * total)

            want = ref.choose_backend(routes, backends, "main", target, host, method, up, scheme, headers, unmatched,
                                      pick, cookies, port=port)
            route = ref.select_route(routes, target, host, method, scheme, headers)
            requests += 1
            outcomes.add(want.split(":")[0] if not _is_backend(want) else "backend")
            context = (routes, backends, unmatched, scheme, method, target, host, headers, port, sorted(up), drawn)
            for mode, fe in fes.items():
                res = fe.run(target, host, method, up, scheme, headers=headers, pick=pick, port=port)
                assert res.outcome == want, (mode, res.outcome, want, context)
                if _is_backend(want):
                    exp_target, exp_headers = _expected_request(route, target, host, headers)
                    assert res.target == exp_target, (mode, res.target, exp_target, context)
                    assert _split_host(res.headers) == _split_host(exp_headers), (mode, res.headers, exp_headers, context)
                if want.startswith("fixed:") and _filter(route, "fixed_response") is not None:
                    assert res.body == (_filter(route, "fixed_response").get("body") or None), (mode, context)
                if want == ref.NOT_FOUND:
                    assert res.body == NOT_FOUND_BODY
                # The response edits of the chosen route: on its backend's response (when a server
                # answers: HAProxy's own 503 skips http-response rules) and on the route's own
                # redirect or fixed response; never on a 404, a require_https redirect or the 500
                # of a split whose weights are all 0.
                if _is_backend(want) and want not in up:
                    continue
                modifier = _filter(route, "response_header_modifier")
                answers = _filter(route, "request_redirect") or _filter(route, "fixed_response")
                applies = modifier is not None and (_is_backend(want) or (answers is not None and want != ref.REDIRECT_HTTPS))
                expected = ref.header_edits(RESPONSE, modifier) if applies else RESPONSE
                assert _haproxy_edits(RESPONSE, res.response_edits) == expected, (mode, res.response_edits, context)
                response_checked += applies
            edited += _is_backend(want) and route is not None and bool(
                _filter(route, "url_rewrite") or _filter(route, "request_header_modifier"))
            redirects += want.startswith("redirect:") and want != ref.REDIRECT_HTTPS
            fixed += want.startswith("fixed:")
            weighted += _is_backend(want) and route is not None and "backends" in route
    # The generator reaches every feature often enough to mean something.
    assert compiled > 200, compiled
    assert outcomes == {"backend", "redirect", "fixed", "notfound"}, outcomes
    assert min(edited, redirects, fixed, weighted, response_checked) > 100, (edited, redirects, fixed, weighted,
                                                                              response_checked)
    assert requests > 6000


# ------------------------------------------------------------------ shadowing

SHADOW_CASES = [
    pytest.param(
        [{"name": "outer", "path": "/", "headers": [hdr("X-A", "1")], "backend": "a"},
         {"name": "inner", "path": "/api/.*", "match": "regex", "headers": [hdr("X-A", "1"), hdr("X-B", "2")],
          "backend": "b"}],
        r"route 'inner' \(index 1\): path '/api/\.\*' \(regex, header x-a exact '1', header x-b exact '2'\) is fully "
        r"shadowed by route 'outer' \(index 0, prefix '/', header x-a exact '1'\)",
        id="header-subset",
    ),
    pytest.param(
        [{"name": "inner", "path": "/api/.*", "match": "regex", "query": [hdr("q", "1")],
          "headers": [hdr("X-A", "1")], "backend": "b"},
         {"name": "outer", "path": "/", "query": [hdr("q", "1")], "backend": "a"}],
        r"route 'inner' \(index 0\).* is fully shadowed by route 'outer' \(index 1, prefix '/', query q exact '1'\)",
        id="query-subset-declared-later",
    ),
    pytest.param(
        [{"name": "outer", "path": "/", "backend": "a"},
         {"name": "inner", "path": "/x.*", "match": "regex", "headers": [hdr("X-A", "1")], "scheme": "https",
          "backend": "b"}],
        r"route 'inner' \(index 1\).* is fully shadowed by route 'outer' \(index 0, prefix '/'\)",
        id="no-conditions-cover-all",
    ),
    pytest.param(
        [{"name": "one", "path": "/a", "headers": [hdr("X-A", "1"), hdr("X-B", "x", "regex")], "backend": "a"},
         {"name": "two", "path": "/a/", "headers": [hdr("x-b", "x", "regex"), hdr("x-a", "1")], "backend": "b"}],
        r"route 'two' \(index 1\): .* duplicates route 'one' \(index 0",
        id="duplicate-header-order-and-case",
    ),
    pytest.param(
        [{"name": "one", "path": "/a", "query": [hdr("q", "1")], "filters": [{"type": "fixed_response"}]},
         {"name": "two", "path": "/a", "query": [hdr("q", "1")], "backend": "b"}],
        r"route 'two' \(index 1\): .* duplicates route 'one' \(index 0",
        id="duplicate-query",
    ),
]


@pytest.mark.parametrize(("routes", "message"), SHADOW_CASES)
def test_shadowed_and_duplicate_conditioned_routes_are_refused(routes, message):
    with pytest.raises(AnsibleFilterError, match=message):
        compile_routes(routes, BE, "main")


@pytest.mark.parametrize("routes", [
    # more conditions than an earlier, broader route: it ranks first
    [{"name": "broad", "path": "/api", "backend": "a"},
     {"name": "narrow", "path": "/api", "headers": [hdr("X-A", "1")], "backend": "b"}],
    [{"name": "broad", "path": "/", "headers": [hdr("X-A", "1")], "backend": "a"},
     {"name": "narrow", "path": "/", "headers": [hdr("X-A", "1")], "query": [hdr("q", "1")], "backend": "b"}],
    # other conditions, other values, other names, another match kind
    [{"name": "one", "path": "/", "headers": [hdr("X-A", "1")], "backend": "a"},
     {"name": "two", "path": "/x.*", "match": "regex", "headers": [hdr("X-A", "2")], "backend": "b"}],
    [{"name": "one", "path": "/", "query": [hdr("q", "1")], "backend": "a"},
     {"name": "two", "path": "/x.*", "match": "regex", "query": [hdr("Q", "1")], "backend": "b"}],
    [{"name": "one", "path": "/", "headers": [hdr("X-A", "1", "regex")], "backend": "a"},
     {"name": "two", "path": "/x.*", "match": "regex", "headers": [hdr("X-A", "1")], "backend": "b"}],
    # a header and a query parameter of the same name are different conditions
    [{"name": "one", "path": "/a", "headers": [hdr("q", "1")], "backend": "a"},
     {"name": "two", "path": "/a", "query": [hdr("q", "1")], "backend": "b"}],
])
def test_routes_with_more_or_other_conditions_are_not_shadowed(routes):
    for table in (routes, routes[::-1]):
        assert len(compile_routes(table, BE, "main")["routes"]) == 2


def test_the_narrower_route_wins_where_both_match():
    routes = [{"name": "broad", "path": "/api", "backend": "a"},
              {"name": "narrow", "path": "/api", "headers": [hdr("X-A", "1")], "backend": "b"}]
    check(routes, "/api/x", "b", headers=[("X-A", "1")])
    check(routes, "/api/x", "a", headers=[("X-A", "2")])


# ------------------------------------------------------------------ validation


def _route(**changes) -> dict:
    route = {"name": "bad", "path": "/p", "backend": "a"}
    route.update(changes)
    return {k: v for k, v in route.items() if v is not None}


def _f(kind: str, **spec) -> dict:
    return dict({"type": kind}, **spec)


HUGE = 10**5000  # str() of it raises in Python 3.11; messages must not try
R = r"route 'bad' \(index 0\): "
RHM = R + r"filters\[0\] \(request_header_modifier\): "
RW = R + r"filters\[0\] \(url_rewrite\): "
RR = R + r"filters\[0\] \(request_redirect\): "
FR = R + r"filters\[0\] \(fixed_response\): "
SPLIT_AB = [{"name": "a", "weight": 1}, {"name": "b", "weight": 1}]

VALIDATION_CASES = [
    # header and query conditions
    (_route(headers="X-A: 1"), R + r"headers must be a list of \{name, value, match\} mappings, got 'X-A: 1'"),
    (_route(headers=[hdr(f"X-{i}", "1") for i in range(17)]), R + r"headers has 17 entries; at most 16 are allowed"),
    (_route(query=["v=2"]), R + r"query\[0\]: expected a mapping with name and value, got 'v=2'"),
    (_route(headers=[{"name": "X-A", "value": "1", "flags": "i"}]), R + r"headers\[0\]: unknown key 'flags'"),
    (_route(headers=[hdr("X A", "1")]), R + r"headers\[0\]: name 'X A' is not a header name"),
    (_route(headers=[hdr("X-A\n", "1")]), R + r"headers\[0\]: name 'X-A\\n' is not a header name"),
    (_route(headers=[hdr(5, "1")]), R + r"headers\[0\]: name 5 is not a header name"),
    (_route(headers=[hdr("HOST", "x")]), R + r"headers\[0\]: the Host header is matched with the route's host key"),
    (_route(query=[hdr("a,b", "1")]), R + r"query\[0\]: name 'a,b' is not a query parameter name"),
    (_route(query=[hdr("a;b", "1")]), R + r"query\[0\]: name 'a;b' is not a query parameter name"),
    (_route(query=[hdr("a'b", "1")]), R + r"query\[0\]: name \"a'b\" is not a query parameter name"),
    (_route(query=[hdr("f(x)", "1")]), R + r"query\[0\]: name 'f\(x\)' is not a query parameter name"),
    (_route(query=[hdr("a=b", "1")]), R + r"query\[0\]: name 'a=b' is not a query parameter name"),
    (_route(query=[hdr("a%2f", "1")]), R + r"query\[0\]: name 'a%2f' is not a query parameter name"),
    (_route(query=[hdr("", "1")]), R + r"query\[0\]: name '' is not a query parameter name"),
    (_route(headers=[hdr("X-A", "1"), hdr("x-a", "2")]),
     R + r"headers\[1\]: name 'x-a' is already matched by headers\[0\]; give one condition per name"),
    (_route(query=[hdr("v", "1"), hdr("v", "2")]), R + r"query\[1\]: name 'v' is already matched by query\[0\]"),
    (_route(headers=[hdr("X-A", "1", "prefix")]), R + r"headers\[0\]: match 'prefix' is not one of exact, regex"),
    (_route(headers=[{"name": "X-A"}]), R + r"headers\[0\]: value is required"),
    (_route(headers=[hdr("X-A", "a(", "regex")]), R + r"headers\[0\]: value 'a\(' is not a valid regex in the subset"),
    (_route(query=[hdr("v", "^1", "regex")]), R + r"query\[0\]: value '\^1' is not a valid regex in the subset"),
    (_route(headers=[hdr("X-A", 12)]), R + r"headers\[0\]: value 12 must be a string, got a number \(quote it in YAML\)"),
    (_route(headers=[hdr("X-A", HUGE)]), R + r"headers\[0\]: value an integer of about 5001 digits must be a string"),
    (_route(headers=[hdr("X-A", "")]), R + r"headers\[0\]: value must be a non-empty string, got ''"),
    (_route(headers=[hdr("X-A", None)]), R + r"headers\[0\]: value must be a non-empty string, got None"),
    (_route(headers=[hdr("X-A", ["1"])]), R + r"headers\[0\]: value must be a non-empty string, got \['1'\]"),
    (_route(headers=[hdr("X-A", "x" * 1025)]), R + r"headers\[0\]: value is 1025 characters long; at most 1024"),
    (_route(headers=[hdr("X-A", "a\nb")]), R + r"headers\[0\]: value 'a\\nb' contains control or non-ASCII characters$"),
    (_route(headers=[hdr("X-A", "caf\u00e9")]), R + r"headers\[0\]: value 'caf\u00e9' contains control or non-ASCII"),
    (_route(headers=[hdr("X-A", "a\tb", "regex")]),
     R + r"headers\[0\]: value 'a\\tb' contains control or non-ASCII characters; use escapes such as \\x09"),
    (_route(headers=[hdr("X-A", " yes")]), R + r"headers\[0\]: value ' yes' starts or ends with a space"),
    (_route(query=[hdr("v", "a&b")]), R + r"query\[0\]: value 'a&b' is not a query value as sent"),
    (_route(query=[hdr("v", "1;2")]), R + r"query\[0\]: value '1;2' is not a query value as sent"),
    (_route(query=[hdr("v", "a?b")]), R + r"query\[0\]: value 'a\?b' is not a query value as sent"),
    (_route(query=[hdr("v", "a%2fb")]), R + r"query\[0\]: value 'a%2fb' is not a query value as sent"),
    (_route(query=[hdr("v", "a b")]), R + r"query\[0\]: value 'a b' is not a query value as sent"),
    # timeouts
    (_route(timeouts="10s"), R + r"timeouts must be a mapping \{request: 10s, backend: 2s\}, got '10s'"),
    (_route(timeouts={"idle": "1s"}), R + r"timeouts: unknown key 'idle'"),
    (_route(timeouts={}), R + r"timeouts is empty; give request, backend or both"),
    (_route(backend=None, timeouts={"request": "1s"}, filters=[_f("fixed_response")]),
     R + r"timeouts have no effect on a route with fixed_response"),
    (_route(timeouts={"request": "10"}), R + r"timeouts.request '10' is not a duration such as 10s"),
    (_route(timeouts={"request": 10}), R + r"timeouts.request 10 is not a duration"),
    (_route(timeouts={"backend": "1.5s"}), R + r"timeouts.backend '1.5s' is not a duration"),
    (_route(timeouts={"backend": "1s\n"}), R + r"timeouts.backend '1s\\n' is not a duration"),
    (_route(timeouts={"backend": HUGE}), R + r"timeouts.backend an integer of about 5001 digits is not a duration"),
    (_route(timeouts={"request": "0s"}), R + r"timeouts.request '0s' must be between 1ms and 24h"),
    (_route(timeouts={"request": "25h"}), R + r"timeouts.request '25h' must be between 1ms and 24h"),
    (_route(timeouts={"request": "1s", "backend": "2s"}),
     R + r"timeouts.backend '2s' is longer than timeouts.request '1s'; a try cannot outlast the whole request"),
    # header modifiers
    (_route(filters=[_f("request_header_modifier", set="X-A")]), RHM + r"set must be a list, got 'X-A'"),
    (_route(filters=[_f("request_header_modifier", set=["X-A"])]),
     RHM + r"set\[0\]: expected a mapping with name and value, got 'X-A'"),
    (_route(filters=[_f("request_header_modifier", add=[{"name": "X-A", "value": "1", "op": "x"}])]),
     RHM + r"add\[0\]: unknown key 'op'"),
    (_route(filters=[_f("request_header_modifier", set=[{"name": "X A", "value": "1"}])]),
     RHM + r"set\[0\]: 'X A' is not a header name"),
    (_route(filters=[_f("request_header_modifier", remove=[None])]), RHM + r"remove\[0\]: None is not a header name"),
    (_route(filters=[_f("response_header_modifier", remove=["Transfer-Encoding"])]),
     R + r"filters\[0\] \(response_header_modifier\): remove\[0\]: Transfer-Encoding frames the HTTP message"),
    (_route(filters=[_f("request_header_modifier", remove=["HOST"])]),
     RHM + r"remove\[0\]: the Host header is changed with a url_rewrite filter's host"),
    (_route(filters=[_f("request_header_modifier", add=[{"name": "X-A"}])]), RHM + r"add\[0\]: value is required"),
    (_route(filters=[_f("request_header_modifier", set=[{"name": "X-A", "value": 5}])]),
     RHM + r"set\[0\]: value 5 must be a string, got a number"),
    (_route(filters=[_f("request_header_modifier", set=[{"name": "X-A", "value": "a\r\nX-Evil: 1"}])]),
     RHM + r"set\[0\]: value 'a\\r\\nX-Evil: 1' contains control or non-ASCII characters"),
    (_route(filters=[_f("request_header_modifier")]), RHM + r"set, add or remove must list at least one header"),
    (_route(filters=[_f("request_header_modifier", set=[], add=[], remove=[])]),
     RHM + r"set, add or remove must list at least one header"),
    (_route(filters=[_f("request_header_modifier", set=[{"name": "X-A", "value": "1"}], remove=["x-a"])]),
     RHM + r"header 'x-a' appears in set and remove; give each header one operation"),
    (_route(filters=[_f("response_header_modifier", sett=[])]),
     R + r"filters\[0\] \(response_header_modifier\): unknown key 'sett' \(did you mean 'set'\?\)"),
    # url_rewrite, paths and hosts
    (_route(filters=[_f("url_rewrite", path="/x")]), RW + r"path must be a mapping \{type: full\|prefix, value: /...\}, got '/x'"),
    (_route(filters=[_f("url_rewrite", path={"type": "full", "value": "/x", "extra": 1})]),
     RW + r"path: unknown key 'extra'"),
    (_route(filters=[_f("url_rewrite", path={"type": "regex", "value": "/x"})]),
     RW + r"path type 'regex' is not one of full, prefix"),
    (_route(filters=[_f("url_rewrite", path={"type": "full", "value": "x"})]),
     RW + r"path value 'x' must be a URI path starting with '/'"),
    (_route(filters=[_f("url_rewrite", path={"type": "full", "value": "/a b"})]), RW + r"path value '/a b' must be a URI path"),
    (_route(filters=[_f("url_rewrite", path={"type": "full", "value": "/a?b"})]), RW + r"path value '/a\?b' must be a URI path"),
    (_route(filters=[_f("url_rewrite", path={"type": "full", "value": "/%zz"})]), RW + r"path value '/%zz' must be a URI path"),
    (_route(filters=[_f("url_rewrite", path={"type": "full", "value": 7})]), RW + r"path value 7 must be a URI path"),
    (_route(filters=[_f("url_rewrite", path={"type": "full", "value": "/a//b"})]),
     RW + r"path value '/a//b' must not contain '//', '\.' or '\.\.' segments"),
    (_route(filters=[_f("url_rewrite", path={"type": "prefix", "value": "/a/../b"})]),
     RW + r"path value '/a/\.\./b' must not contain"),
    (_route(match="exact", filters=[_f("url_rewrite", path={"type": "prefix", "value": "/b"})]),
     RW + r"path type prefix replaces the matched prefix, so the route must have match: prefix \(it has exact\)"),
    (_route(filters=[_f("url_rewrite", host="a b")]), RW + r"host 'a b' must be a host name"),
    (_route(filters=[_f("url_rewrite", host="*.example.com")]), RW + r"host '\*.example.com' must be a host name"),
    (_route(filters=[_f("url_rewrite", host="h:8080")]), RW + r"host 'h:8080' must be a host name"),
    (_route(filters=[_f("url_rewrite", host=HUGE)]), RW + r"host an integer of about 5001 digits must be a host name"),
    (_route(filters=[_f("url_rewrite")]), RW + r"give host, path or both"),
    # filters
    (_route(filters="url_rewrite"), R + r"filters must be a list of \{type: ...\} mappings, got 'url_rewrite'"),
    (_route(filters=["url_rewrite"]), R + r"filters\[0\]: expected a mapping with a type, got 'url_rewrite'"),
    (_route(filters=[_f("mirror")]), R + r"filters\[0\]: type 'mirror' is not one of request_header_modifier, "
                                         r"response_header_modifier, url_rewrite, request_redirect, fixed_response"),
    (_route(filters=[{"host": "x"}]), R + r"filters\[0\]: type None is not one of"),
    (_route(filters=[_f("url_rewrite", host="x"), _f("url_rewrite", host="y")]),
     R + r"filters\[1\]: a second url_rewrite; give each filter type once"),
    (_route(backend=None, filters=[_f("request_redirect"), _f("fixed_response")]),
     R + r"filters: request_redirect and fixed_response both answer the request; keep one"),
    (_route(backend=None, filters=[_f("fixed_response"), _f("url_rewrite", host="x")]),
     R + r"filters: url_rewrite cannot change a fixed_response"),
    (_route(backend=None, filters=[_f("request_redirect"), _f("request_header_modifier", remove=["X-A"])]),
     R + r"filters: request_redirect cannot be combined with request_header_modifier"),
    (_route(filters=[_f("request_redirect")]),
     R + r"a route with request_redirect answers the request itself; drop backend"),
    (_route(backend=None, backends=SPLIT_AB, filters=[_f("fixed_response")]),
     R + r"a route with fixed_response answers the request itself; drop backends"),
    (_route(filters=[_f("request_redirect", scheme="ftp")]), RR + r"scheme 'ftp' is not one of http, https"),
    (_route(backend=None, filters=[_f("request_redirect", scheme="HTTPS")]), RR + r"scheme 'HTTPS' is not one of"),
    (_route(backend=None, filters=[_f("request_redirect", port=0)]), RR + r"port 0 must be an integer 1\.\.65535"),
    (_route(backend=None, filters=[_f("request_redirect", port=65536)]), RR + r"port 65536 must be an integer"),
    (_route(backend=None, filters=[_f("request_redirect", port="8080")]), RR + r"port '8080' must be an integer"),
    (_route(backend=None, filters=[_f("request_redirect", port=True)]), RR + r"port True must be an integer"),
    (_route(backend=None, filters=[_f("request_redirect", port=HUGE)]),
     RR + r"port an integer of about 5001 digits must be an integer 1\.\.65535"),
    (_route(backend=None, filters=[_f("request_redirect", status=200)]),
     RR + r"status 200 is not one of 301, 302, 303, 307, 308"),
    (_route(backend=None, filters=[_f("request_redirect", status="301")]), RR + r"status '301' is not one of"),
    (_route(backend=None, filters=[_f("request_redirect", status=True)]), RR + r"status True is not one of"),
    (_route(backend=None, filters=[_f("request_redirect", status=HUGE)]),
     RR + r"status an integer of about 5001 digits is not one of"),
    (_route(backend=None, filters=[_f("request_redirect", code=301)]), RR + r"unknown key 'code'"),
    (_route(backend=None, filters=[_f("request_redirect", host="new.example.com:8080")]),
     RR + r"host 'new.example.com:8080' must be a host name"),
    (_route(backend=None, match="regex", path="/r.*", filters=[_f("request_redirect", path={"type": "prefix", "value": "/"})]),
     RR + r"path type prefix replaces the matched prefix, so the route must have match: prefix \(it has regex\)"),
    (_route(backend=None, filters=[_f("fixed_response", status=100)]),
     FR + r"status 100 must be an integer 200\.\.599 \(HAProxy answers these itself\)"),
    (_route(backend=None, filters=[_f("fixed_response", status=600)]), FR + r"status 600 must be an integer 200\.\.599"),
    (_route(backend=None, filters=[_f("fixed_response", status="503")]), FR + r"status '503' must be an integer"),
    (_route(backend=None, filters=[_f("fixed_response", status=False)]), FR + r"status False must be an integer"),
    (_route(backend=None, filters=[_f("fixed_response", status=HUGE)]),
     FR + r"status an integer of about 5001 digits must be an integer 200\.\.599"),
    (_route(backend=None, filters=[_f("fixed_response", body=5)]), FR + r"body must be a string, got 5"),
    (_route(backend=None, filters=[_f("fixed_response", body=HUGE)]),
     FR + r"body must be a string, got an integer of about 5001 digits"),
    (_route(backend=None, filters=[_f("fixed_response", body="x" * 16385)]),
     FR + r"body is 16385 characters long; at most 16384 are allowed"),
    (_route(backend=None, filters=[_f("fixed_response", body="a\r\nb")]),
     FR + r"body contains control or non-ASCII characters \(line breaks and tabs are fine\)"),
    (_route(backend=None, filters=[_f("fixed_response", body="caf\u00e9")]), FR + r"body contains control or non-ASCII"),
    (_route(backend=None, filters=[_f("fixed_response", status=204, body="x")]),
     FR + r"status 204 responses have no body; drop body"),
    (_route(backend=None, filters=[_f("fixed_response", body="x", content_type="text")]),
     FR + r"content_type 'text' must be a media type such as text/html"),
    (_route(backend=None, filters=[_f("fixed_response", body="x", content_type="text/html\nX: 1")]),
     FR + r"content_type 'text/html\\nX: 1' must be a media type"),
    (_route(backend=None, filters=[_f("fixed_response", content_type="text/html")]),
     FR + r"content_type is set but there is no body"),
    (_route(backend=None, filters=[_f("fixed_response", headers=[])]), FR + r"unknown key 'headers'"),
    # backend, backends
    (_route(backends=SPLIT_AB), R + r"give backend \(one\) or backends \(a weighted split\), not both"),
    (_route(backend=None), R + r"backend is required \(or backends, a weighted split, or a request_redirect or fixed_response"),
    (_route(backend="zz"), R + r"backend 'zz' is not defined; known: a, b, c, main"),
    (_route(backend=HUGE), R + r"backend an integer of about 5001 digits is not defined"),
    (_route(backend=None, backends=[]), R + r"backends must be a non-empty list of \{name, weight\} mappings, got \[\]"),
    (_route(backend=None, backends="a"), R + r"backends must be a non-empty list .* got 'a'"),
    (_route(backend=None, backends=[{"name": "a"}] * 17), R + r"backends lists 17; at most 16 are allowed"),
    (_route(backend=None, backends=["a"]), R + r"backends\[0\]: expected a mapping with name and weight, got 'a'"),
    (_route(backend=None, backends=[{"name": "a", "weigth": 1}]),
     R + r"backends\[0\]: unknown key 'weigth' \(did you mean 'weight'\?\)"),
    (_route(backend=None, backends=[{"name": "zz", "weight": 1}]),
     R + r"backends\[0\]: name 'zz' is not a defined backend; known: a, b, c, main"),
    (_route(backend=None, backends=[{"name": "a"}, {"name": "b"}, {"name": "a"}]),
     R + r"backends\[2\]: backend 'a' is already listed at backends\[0\]"),
    (_route(backend=None, backends=[{"name": "a", "weight": -1}]), R + r"backends\[0\]: weight -1 must be an integer 0\.\.1000"),
    (_route(backend=None, backends=[{"name": "a", "weight": 1001}]), R + r"backends\[0\]: weight 1001 must be an integer"),
    (_route(backend=None, backends=[{"name": "a", "weight": "5"}]), R + r"backends\[0\]: weight '5' must be an integer"),
    (_route(backend=None, backends=[{"name": "a", "weight": 1.5}]), R + r"backends\[0\]: weight 1\.5 must be an integer"),
    (_route(backend=None, backends=[{"name": "a", "weight": True}]), R + r"backends\[0\]: weight True must be an integer"),
    (_route(backend=None, backends=[{"name": "a", "weight": HUGE}]),
     R + r"backends\[0\]: weight an integer of about 5001 digits must be an integer 0\.\.1000"),
    # the compiler's own new checks
    (_route(backend=None, require_https=True, filters=[_f("fixed_response")]),
     R + r"require_https is true but the route answers every request itself"),
    (_route(header=[]), R + r"unknown key 'header' \(did you mean 'headers'\?\)"),
]


@pytest.mark.parametrize(("route", "message"), VALIDATION_CASES)
def test_errors_name_the_route_the_field_and_the_value(route, message):
    with pytest.raises(AnsibleFilterError, match=message) as err:
        compile_routes([route], BE, "main")
    assert len(str(err.value)) < 600


@pytest.mark.parametrize(("unmatched", "message"), [
    ("none", r"unmatched 'none' is not one of default, not_found"),
    (None, r"unmatched None is not one of default, not_found"),
    pytest.param(HUGE, r"unmatched an integer of about 5001 digits is not one of", id="huge"),
    (["default"], r"unmatched \['default'\] is not one of"),
])
def test_bad_unmatched_is_refused(unmatched, message):
    with pytest.raises(AnsibleFilterError, match=message):
        compile_routes([], BE, "main", unmatched=unmatched)


class _BadRepr:
    def __repr__(self):
        raise RuntimeError("no repr")


HOSTILE = [HUGE, -HUGE, -1, 0, 1.5, float("nan"), True, None, "", "a\nb", "%", "%[src]", "'", '"', "\\", "$HOME",
           "-i", "x" * 100000, "caf\u00e9", "\x00", [], {}, ["a"], {"name": "a"}, _BadRepr()]
# Where a hostile value goes: a function from the value to a route.
HOSTILE_SLOTS = {
    "headers": lambda v: _route(headers=v),
    "headers[0]": lambda v: _route(headers=[v]),
    "headers[0].name": lambda v: _route(headers=[hdr(v, "1")]),
    "headers[0].value": lambda v: _route(headers=[hdr("X-A", v)]),
    "headers[0].value regex": lambda v: _route(headers=[hdr("X-A", v, "regex")]),
    "headers[0].match": lambda v: _route(headers=[hdr("X-A", "1", v)]),
    "query[0].name": lambda v: _route(query=[hdr(v, "1")]),
    "query[0].value": lambda v: _route(query=[hdr("v", v)]),
    "query[0].value regex": lambda v: _route(query=[hdr("v", v, "regex")]),
    "backends": lambda v: _route(backend=None, backends=v),
    "backends[0].name": lambda v: _route(backend=None, backends=[{"name": v, "weight": 1}]),
    "backends[0].weight": lambda v: _route(backend=None, backends=[{"name": "a", "weight": v}]),
    "filters": lambda v: _route(filters=v),
    "filters[0]": lambda v: _route(filters=[v]),
    "filters[0].type": lambda v: _route(filters=[{"type": v}]),
    "set[0].name": lambda v: _route(filters=[_f("request_header_modifier", set=[{"name": v, "value": "1"}])]),
    "set[0].value": lambda v: _route(filters=[_f("response_header_modifier", set=[{"name": "X-A", "value": v}])]),
    "add[0].value": lambda v: _route(filters=[_f("request_header_modifier", add=[{"name": "X-A", "value": v}])]),
    "remove": lambda v: _route(filters=[_f("request_header_modifier", remove=v)]),
    "remove[0]": lambda v: _route(filters=[_f("request_header_modifier", remove=[v])]),
    "url_rewrite.host": lambda v: _route(filters=[_f("url_rewrite", host=v)]),
    "url_rewrite.path": lambda v: _route(filters=[_f("url_rewrite", path=v)]),
    "url_rewrite.path.value": lambda v: _route(filters=[_f("url_rewrite", path={"type": "full", "value": v})]),
    "url_rewrite.path.type": lambda v: _route(filters=[_f("url_rewrite", path={"type": v, "value": "/x"})]),
    "redirect.scheme": lambda v: _route(backend=None, filters=[_f("request_redirect", scheme=v)]),
    "redirect.host": lambda v: _route(backend=None, filters=[_f("request_redirect", host=v)]),
    "redirect.port": lambda v: _route(backend=None, filters=[_f("request_redirect", port=v)]),
    "redirect.status": lambda v: _route(backend=None, filters=[_f("request_redirect", status=v)]),
    "redirect.path.value": lambda v: _route(backend=None, filters=[_f("request_redirect", path={"type": "prefix", "value": v})]),
    "fixed.status": lambda v: _route(backend=None, filters=[_f("fixed_response", status=v)]),
    "fixed.body": lambda v: _route(backend=None, filters=[_f("fixed_response", body=v)]),
    "fixed.content_type": lambda v: _route(backend=None, filters=[_f("fixed_response", body="x", content_type=v)]),
    "timeouts": lambda v: _route(timeouts=v),
    "timeouts.request": lambda v: _route(timeouts={"request": v}),
    "timeouts.backend": lambda v: _route(timeouts={"request": "1h", "backend": v}),
}


def test_hostile_values_are_refused_by_name_or_compile_to_lines_the_simulator_reads():
    """Whatever lands in a new field, the compiler either refuses it with a short message that
    names the route, or emits lines that parse (quoting, '%', '$' and '--' right)."""
    accepted = 0
    for slot, make in HOSTILE_SLOTS.items():
        for value in HOSTILE:
            route = make(value)
            try:
                fes = frontends([route], BE)
            except AnsibleFilterError as exc:
                assert str(exc).startswith("route 'bad' (index 0): "), (slot, exc)
                assert len(str(exc)) < 600, (slot, len(str(exc)))
                continue
            accepted += 1
            for fe in fes.values():
                fe.run("/p", "h", headers=[("X-A", "1")], up=set(BE))
    assert accepted > 10  # '%', quotes, '$' and '-i' are fine in several fields


# ------------------------------------------------------------------ emitted text


def _acl_lines(routes, **kwargs) -> list:
    return compile_routes(routes, BE, "main", mode="acl", **kwargs)["frontend"]


def test_percent_in_header_values_is_written_twice():
    routes = [_route(filters=[_f("request_header_modifier", set=[{"name": "X-P", "value": "100%"}],
                                 add=[{"name": "X-Q", "value": "%[src]"}]),
                              _f("response_header_modifier", set=[{"name": "X-R", "value": "50% off"}])])]
    lines = _acl_lines(routes)
    assert "http-request set-header X-P 100%% if { var(txn.lay7_be) -m str @bad }" in lines
    assert "http-request add-header X-Q '%%[src]' if { var(txn.lay7_be) -m str @bad }" in lines
    assert "http-response set-header X-R '50%% off' if { var(txn.lay7_route) -m str bad }" in lines
    for res in check(routes, "/p", "a").values():
        assert ("X-P", "100%") in res.headers and ("X-Q", "%[src]") in res.headers
        assert res.response_edits == [("set-header", "X-R", "50% off")]


def test_percent_in_redirect_and_rewrite_paths_is_written_twice():
    routes = [_route(name="w", path="/w", filters=[_f("url_rewrite", path={"type": "full", "value": "/a%20b"})]),
              _route(backend=None, path="/r", filters=[_f("request_redirect", path={"type": "full", "value": "/c%2Fd"})])]
    lines = _acl_lines(routes)
    assert "http-request set-path /a%%20b if { var(txn.lay7_be) -m str @w }" in lines
    assert any(line.startswith("http-request redirect location 'http://%[req.hdr(host),regsub(:[0-9]*$,)]/c%%2Fd%[")
               for line in lines)
    assert {r.target for r in check(routes, "/w/x?q=%41", "a").values()} == {"/a%20b?q=%41"}
    check(routes, "/r?q", "redirect:301:http://h/c%2Fd?q", host="h:8080", port=80)


def test_fixed_response_body_is_escaped_in_double_quotes():
    body = 'line one\n"quoted" $HOME \\n 100%\ttab #not-a-comment'
    routes = [_route(backend=None, filters=[_f("fixed_response", status=503, body=body, content_type="text/plain; charset=utf-8")])]
    lines = _acl_lines(routes)
    assert ("http-request return status 503 content-type 'text/plain; charset=utf-8' string "
            '"line one\\n\\"quoted\\" \\$HOME \\\\n 100%\\ttab #not-a-comment" if { var(txn.lay7_be) -m str @bad }') in lines
    for res in check(routes, "/p", "fixed:503").values():
        assert res.body == body
    # The simulator refuses a '$' HAProxy would expand, so the escape is what makes it pass.
    with pytest.raises(haproxy_sim.Unsupported):
        haproxy_sim.split_words('http-request return status 200 string "$HOME"')


def test_fixed_response_without_body_has_no_content_type():
    lines = _acl_lines([_route(backend=None, filters=[_f("fixed_response", status=204)])])
    assert "http-request return status 204 if { var(txn.lay7_be) -m str @bad }" in lines


def test_match_values_starting_with_a_dash_follow_the_end_of_flags():
    routes = [_route(headers=[hdr("X-A", "-i"), hdr("X-B", "-m reg", "regex")], query=[hdr("v", "-1")])]
    lines = _acl_lines(routes)
    assert "acl route_bad_hdr0 req.fhdr(x-a) -m str -- -i" in lines
    assert "acl route_bad_hdr1 req.fhdr(x-b) -m reg -- '^(?:-m reg)$'" in lines
    assert "acl route_bad_query0 url_param(v) -m str -- -1" in lines
    check(routes, "/p?v=-1", "a", headers=[("X-A", "-i"), ("X-B", "-m reg")])
    check(routes, "/p?v=-1", "main", headers=[("X-A", "I"), ("X-B", "-m reg")])


def test_quotes_in_match_values_are_quoted():
    routes = [_route(headers=[hdr("X-A", "it's \"x\"")])]
    assert "acl route_bad_hdr0 req.fhdr(x-a) -m str -- 'it'\\''s \"x\"'" in _acl_lines(routes)
    check(routes, "/p", "a", headers=[("X-A", "it's \"x\"")])


# ------------------------------------------------------------------ compiled output


def test_backend_rules_only_when_a_route_has_timeouts():
    plain = [_route()]
    assert compile_routes(plain, BE, "main")["backend_rules"] == []
    others = [_route(filters=[_f("request_header_modifier", remove=["X-A"])]),
              _route(name="w", path="/w", backend=None, backends=SPLIT_AB)]
    assert compile_routes(others, BE, "main", unmatched="not_found")["backend_rules"] == []
    timed = others + [_route(name="t", path="/t", timeouts={"backend": "2s"})]
    for mode in MODES:
        compiled = compile_routes(timed, BE, "main", mode=mode)
        assert compiled["backend_rules"] == [
            "http-request set-timeout server var(txn.lay7_timeout) if { var(txn.lay7_timeout) -m found }",
            "http-request disable-l7-retry if { var(txn.lay7_no_retry) -m found }",
        ]


@pytest.mark.parametrize(("timeouts", "lines"), [
    ({"backend": "2s"}, ["http-request set-var(txn.lay7_timeout) int(2000) if { var(txn.lay7_be) -m str @t }"]),
    ({"request": "1m30s"}, ["http-request set-var(txn.lay7_timeout) int(90000) if { var(txn.lay7_be) -m str @t }",
                            "http-request set-var(txn.lay7_no_retry) bool(1) if { var(txn.lay7_be) -m str @t }"]),
    ({"request": "10s", "backend": "500ms"},
     ["http-request set-var(txn.lay7_timeout) int(500) if { var(txn.lay7_be) -m str @t }",
      "http-request set-var(txn.lay7_no_retry) bool(1) if { var(txn.lay7_be) -m str @t }"]),
])
def test_timeout_lines(timeouts, lines):
    compiled = _acl_lines([_route(name="t", path="/t", timeouts=timeouts)])
    emitted = [line for line in compiled if "lay7_timeout" in line or "lay7_no_retry" in line]
    assert emitted == lines
    check([_route(name="t", path="/t", timeouts=timeouts)], "/t", "a")


@pytest.mark.parametrize("unmatched", ["default", "not_found"])
@pytest.mark.parametrize("mode", MODES)
def test_unmatched_is_echoed_and_routes_as_asked(unmatched, mode):
    compiled = compile_routes([_route()], BE, "main", mode=mode, unmatched=unmatched)
    assert compiled["unmatched"] == unmatched
    assert compiled["backend_rules"] == []
    expected = "main" if unmatched == "default" else ref.NOT_FOUND
    results = check([_route()], "/q", expected, unmatched=unmatched)
    check([_route()], "/p", "a", unmatched=unmatched)
    # A request without a path ("OPTIONS *") matches no route either: the map form's path
    # lookups fail on it and must still end in the 404.
    check([_route()], "*", expected, method="OPTIONS", unmatched=unmatched)
    if unmatched == "not_found":
        assert results[mode].body == NOT_FOUND_BODY


def test_unmatched_not_found_ignores_the_default_backends_state_but_default_keeps_its_fallback():
    backends = backends_named("main", "a", "b")
    backends["main"]["fallback"] = "b"
    check([_route()], "/q", "b", backends=backends, up={"a", "b"})
    check([_route()], "/q", ref.NOT_FOUND, backends=backends, up=set(), unmatched="not_found")


# A table without any new feature: the acl form must stay what it was before them, line for
# line (use_backend in precedence order, no variables), so existing deployments see no change.
PLAIN_ROUTES = [
    {"name": "api", "host": "api.example.com", "path": "/v1", "methods": ["post", "GET"], "backend": "a"},
    {"name": "static", "path": "/static/", "backend": "b"},
    {"name": "re", "path": "/r/[0-9]+", "match": "regex", "backend": "c"},
    {"name": "tls", "path": "/login", "match": "exact", "require_https": True, "backend": "a"},
]
PLAIN_BACKENDS = dict(backends_named("main", "a", "b", "c"))
PLAIN_BACKENDS["b"]["fallback"] = "main"
PLAIN_ACL_LINES = [
    "acl route_api_host req.fhdr(host),field(1,:),lower -m str api.example.com",
    "acl route_api_path path -m str /v1",
    "acl route_api_path path -m beg /v1/",
    "acl route_api_method method GET POST",
    "use_backend a if route_api_host route_api_path route_api_method",
    "acl route_tls_path path -m str /login",
    "use_backend lay7_https_redirect if !{ ssl_fc } route_tls_path",
    "use_backend a if route_tls_path",
    "acl route_static_path path -m str /static",
    "acl route_static_path path -m beg /static/",
    "use_backend main if !{ nbsrv(b) gt 0 } { nbsrv(main) gt 0 } route_static_path",
    "use_backend b if route_static_path",
    "acl route_re_path path -m reg '^(?:/r/[0-9]+)$'",
    "use_backend c if route_re_path",
    "default_backend main",
]


PLAIN_MAP_LINES = [
    'http-request set-var(txn.lay7_path) path',
    'http-request set-var(txn.lay7_hostpath) req.fhdr(host),field(1,:),lower,concat(:,txn.lay7_path) if { var(txn.lay7_path) -m found }',
    'http-request set-var(txn.lay7_hit) path,map_str(/etc/haproxy/maps/lay7_routes_exact.map)',
    'http-request set-var(txn.lay7_hit) path,map_beg(/etc/haproxy/maps/lay7_routes_prefix.map,999999999:main) if !{ var(txn.lay7_hit) -m found }',
    'http-request set-var(txn.lay7_mhostpath) method,concat(:,txn.lay7_hostpath) if { var(txn.lay7_hostpath) -m found }',
    'http-request set-var(txn.lay7_rank) var(txn.lay7_hit),field(1,:)',
    'http-request set-var(txn.lay7_cand) var(txn.lay7_mhostpath),map_str(/etc/haproxy/maps/lay7_routes_method_exact.map)',
    'http-request set-var(txn.lay7_hit) var(txn.lay7_cand) if { var(txn.lay7_cand),field(1,:),sub(txn.lay7_rank) -m int lt 0 }',
    'http-request set-var(txn.lay7_rank) var(txn.lay7_hit),field(1,:)',
    'http-request set-var(txn.lay7_cand) var(txn.lay7_mhostpath),map_beg(/etc/haproxy/maps/lay7_routes_method_prefix.map)',
    'http-request set-var(txn.lay7_hit) var(txn.lay7_cand) if { var(txn.lay7_cand),field(1,:),sub(txn.lay7_rank) -m int lt 0 }',
    'http-request set-var(txn.lay7_rank) var(txn.lay7_hit),field(1,:)',
    'http-request set-var(txn.lay7_cand) var(txn.lay7_path),map_reg(/etc/haproxy/maps/lay7_routes_regex.map)',
    'http-request set-var(txn.lay7_hit) var(txn.lay7_cand) if { var(txn.lay7_cand),field(1,:),sub(txn.lay7_rank) -m int lt 0 }',
    'acl route_tls_path path -m str /login',
    'http-request set-var(txn.lay7_hit) str(1:lay7_https_redirect) if !{ ssl_fc } route_tls_path { var(txn.lay7_hit),field(1,:) -m int gt 1 }',
    'http-request set-var(txn.lay7_hit) str(1:a) if route_tls_path { var(txn.lay7_hit),field(1,:) -m int gt 1 }',
    'http-request set-var(txn.lay7_be) var(txn.lay7_hit),field(2,:)',
    'use_backend main if { var(txn.lay7_be) -m str b } !{ nbsrv(b) gt 0 } { nbsrv(main) gt 0 }',
    'use_backend %[var(txn.lay7_be)] if { var(txn.lay7_be) -m found }',
    'default_backend main',
]


def test_plain_table_compiles_as_before_new_features():
    compiled = compile_routes(PLAIN_ROUTES, PLAIN_BACKENDS, "main", mode="acl")
    assert compiled["frontend"] == PLAIN_ACL_LINES
    # The map form as well (it already decided through variables before).
    assert compile_routes(PLAIN_ROUTES, PLAIN_BACKENDS, "main", mode="map")["frontend"] == PLAIN_MAP_LINES
    assert compiled["unmatched"] == "default"
    assert compiled["backend_rules"] == []
    assert not any("set-var" in line for line in compiled["frontend"])
    # Each route reports the new keys empty.
    assert {(r["name"], tuple(r["headers"]), tuple(r["query"]), tuple(r["filters"]), tuple(r["backends"]),
             r["timeout_ms"], r["retries"]) for r in compiled["routes"]} == {
        (n, (), (), (), (), None, True) for n in ("api", "static", "re", "tls")}


def test_unmatched_not_found_makes_a_plain_table_decide_with_variables():
    lines = compile_routes(PLAIN_ROUTES, PLAIN_BACKENDS, "main", mode="acl", unmatched="not_found")["frontend"]
    assert not any(line.startswith("use_backend a if") for line in lines)
    assert ("http-request return status 404 content-type text/plain string \"no route for this request\\n\" "
            "if { var(txn.lay7_be) -m str @ }") in lines
    for target, scheme, expected in (("/login", "http", ref.REDIRECT_HTTPS), ("/login", "https", "a"),
                                     ("/r/12", "http", "c"), ("/static/x", "http", "b"), ("/x", "http", "notfound")):
        check(PLAIN_ROUTES, target, expected, PLAIN_BACKENDS, scheme=scheme, unmatched="not_found")


# ------------------------------------------------------------------ weighted splits

SPLIT_BACKENDS = backends_named("main", "a", "b", "c", "z")
SPLIT = [{"name": "a", "weight": 3}, {"name": "z", "weight": 0}, {"name": "b", "weight": 1}, {"name": "c", "weight": 6}]


def _split_route(split=SPLIT, **changes) -> list:
    return [dict({"name": "w", "path": "/", "backends": split}, **changes)]


def _acl_lines_for(routes, backends) -> list:
    """The split's lines (the pick and the backend choice) of the acl form."""
    lines = compile_routes(routes, backends, "main", mode="acl")["frontend"]
    return [line for line in lines if "lay7_pick" in line or ("str(" in line and "@w }" in line and "set-var(txn.lay7_be)" in line)]


def test_weighted_ranges_follow_the_weights():
    routes = _split_route()
    lines = _acl_lines_for(routes, SPLIT_BACKENDS)
    assert lines == [
        "http-request set-var(txn.lay7_pick) rand(10) if { var(txn.lay7_be) -m str @w }",
        "http-request set-var(txn.lay7_be) str(a) if { var(txn.lay7_be) -m str @w } { var(txn.lay7_pick) -m int lt 3 }",
        "http-request set-var(txn.lay7_be) str(b) if { var(txn.lay7_be) -m str @w } { var(txn.lay7_pick) -m int lt 4 }",
        "http-request set-var(txn.lay7_be) str(c) if { var(txn.lay7_be) -m str @w }",
    ]
    seen = {}
    for drawn in range(10):
        totals = []

        def pick(total, drawn=drawn, totals=totals):
            totals.append(total)
            return drawn

        expected = "a" if drawn < 3 else "b" if drawn < 4 else "c"
        check(routes, "/x", expected, SPLIT_BACKENDS, pick=pick)
        assert set(totals) == {10}
        seen[expected] = seen.get(expected, 0) + 1
    # every draw lands somewhere, in proportion to the weights, and never on weight 0
    assert seen == {"a": 3, "b": 1, "c": 6}


def test_weight_zero_is_never_chosen_even_with_its_cookie():
    backends = dict(SPLIT_BACKENDS, z={"servers": [server("z", 40)], "persistence": "cookie"})
    for drawn in range(10):
        expected = "a" if drawn < 3 else "b" if drawn < 4 else "c"
        check(_split_route(), "/", expected, backends, pick=lambda total, drawn=drawn: drawn, cookies={"LAY7_Z": "1"})
    assert "LAY7_Z" not in " ".join(compile_routes(_split_route(), backends, "main")["frontend"])


def test_all_weights_zero_answer_500():
    backends = dict(SPLIT_BACKENDS, a={"servers": [server("a", 41)], "persistence": "cookie"})
    split = [{"name": "a", "weight": 0}, {"name": "b", "weight": 0}]
    check(_split_route(split), "/x", "fixed:500", backends)
    check(_split_route(split), "/x", "fixed:500", backends, cookies={"LAY7_A": "1"}, up=set())
    lines = compile_routes(_split_route(split), backends, "main", mode="acl")["frontend"]
    assert "http-request return status 500 if { var(txn.lay7_be) -m str @w }" in lines
    assert not any("lay7_pick" in line or "req.cook" in line for line in lines)


def test_cookie_stickiness_for_cookie_persistent_backends():
    backends = dict(
        SPLIT_BACKENDS,
        a={"servers": [server("a", 41)], "persistence": "cookie"},
        b={"servers": [server("b", 42)], "persistence": "cookie", "cookie_name": "SRV_B"},
        z={"servers": [server("z", 43)], "persistence": "cookie"},
    )

    def go(cookies, drawn, expected, up=None):
        check(_split_route(), "/", expected, backends, cookies=cookies, pick=lambda total: drawn, up=up)

    go({"SRV_B": "s"}, 0, "b")  # held: wherever the draw points
    go({"SRV_B": ""}, 9, "b")  # any value, even empty
    go({"LAY7_B": "s"}, 9, "c")  # b's cookie has its own name
    go({"LAY7_A": "s", "SRV_B": "s"}, 9, "a")  # both held: the first in list order
    go({"SRV_B": "s", "LAY7_A": "s"}, 9, "a")
    go({"LAY7_Z": "s"}, 3, "b")  # weight 0: its cookie is ignored
    go({"LAY7_C": "s"}, 0, "a")  # c has no cookie persistence: the draw decides
    go({"lay7_a": "s"}, 9, "c")  # cookie names have case
    go({}, 3, "b")
    backends["b"]["fallback"] = "c"
    go({"SRV_B": "s"}, 0, "c", up={"a", "c", "main"})  # the sticky backend is down: its fallback
    lines = compile_routes(_split_route(), backends, "main", mode="acl")["frontend"]
    assert [line for line in lines if "req.cook" in line] == [
        "http-request set-var(txn.lay7_sticky) str(a) if { var(txn.lay7_be) -m str @w } !{ var(txn.lay7_sticky) -m found } "
        "{ req.cook(LAY7_A) -m found }",
        "http-request set-var(txn.lay7_sticky) str(b) if { var(txn.lay7_be) -m str @w } !{ var(txn.lay7_sticky) -m found } "
        "{ req.cook(SRV_B) -m found }",
    ]
    # The client's cookies decide, read before the route's own header edits could change them.
    assert "http-request set-var(txn.lay7_be) var(txn.lay7_sticky) if { var(txn.lay7_be) -m str @w } " \
        "{ var(txn.lay7_sticky) -m found }" in lines


@pytest.mark.parametrize(("persistence", "pick"), [
    ({}, "rand(10)"),
    ({"a": "cookie"}, "rand(10)"),
    ({"c": "source"}, "src,crc32(1),mod(10)"),
    ({"b": "stick-table"}, "src,crc32(1),mod(10)"),
    ({"a": "cookie", "c": "source"}, "src,crc32(1),mod(10)"),
    # only the backends that get traffic count
    ({"z": "source"}, "rand(10)"),
    ({"main": "source"}, "rand(10)"),
])
def test_address_hash_pick_when_a_split_backend_persists_by_address(persistence, pick):
    backends = {n: dict(spec, persistence=persistence.get(n, "none")) for n, spec in SPLIT_BACKENDS.items()}
    lines = compile_routes(_split_route(), backends, "main", mode="acl")["frontend"]
    picks = [line for line in lines if "set-var(txn.lay7_pick)" in line]
    assert picks == [f"http-request set-var(txn.lay7_pick) {pick} if {{ var(txn.lay7_be) -m str @w }}"]
    # The simulator runs both picks through the same injected draw.
    check(_split_route(), "/", "b", backends, pick=lambda total: 3)


def test_a_single_live_backend_needs_no_pick():
    split = [{"name": "z", "weight": 0}, {"name": "b", "weight": 7}]
    lines = compile_routes(_split_route(split), SPLIT_BACKENDS, "main", mode="acl")["frontend"]
    assert not any("lay7_pick" in line for line in lines)
    assert "http-request set-var(txn.lay7_be) str(b) if { var(txn.lay7_be) -m str @w }" in lines
    check(_split_route(split), "/", "b", SPLIT_BACKENDS)


def test_weighted_split_in_the_map_form_is_a_map_key():
    compiled = compile_routes(_split_route(), SPLIT_BACKENDS, "main", mode="map")
    assert compiled["maps"][1]["content"] == "/ 0:@w\n"
    check(_split_route(), "/", "c", SPLIT_BACKENDS, pick=lambda total: 9)


def test_redirect_keeps_the_arrival_port():
    routes = [_route(backend=None, filters=[_f("request_redirect", host="n.example.com")])]
    for scheme, port, location in (("http", 80, "http://n.example.com/p"), ("http", 8080, "http://n.example.com:8080/p"),
                                   ("https", 443, "https://n.example.com/p"), ("https", 80, "https://n.example.com:80/p"),
                                   ("http", None, "http://n.example.com/p")):
        check(routes, "/p", f"redirect:301:{location}", host="h:9999", scheme=scheme, port=port)


def test_lines_use_no_unknown_variables():
    # Every variable the new lines set or read is one the module names (a typo would be a silent
    # "not found" in HAProxy).
    routes = [_route(timeouts={"request": "1s"}, filters=[_f("response_header_modifier", remove=["X-A"])],
                     backend=None, backends=SPLIT_AB)]
    text = "\n".join(compile_routes(routes, BE, "main", mode="acl", unmatched="not_found")["frontend"])
    known = {actions.VAR_ROUTE, actions.VAR_PICK, actions.VAR_TIMEOUT, actions.VAR_NO_RETRY, "txn.lay7_hit", "txn.lay7_be"}
    assert set(re.findall(r"txn\.lay7_[a-z_]+", text)) <= known


def test_map_form_refuses_too_many_lines_from_conditions_or_actions():
    # Header conditions keep a route a rule even in the map form; actions add lines of their
    # own even to routes that are map keys. Either way the frontend's line limit holds.
    conditioned = [{"name": f"h{i}", "path": f"/h{i}", "headers": [hdr("X-A", str(i))], "backend": "a"}
                   for i in range(2100)]
    with pytest.raises(AnsibleFilterError, match=r"^route table: 2100 of 2100 routes have .* header or query matches, "
                                                 r"which stay HAProxy rules even in the map form"):
        compile_routes(conditioned, BE, "main", mode="map")
    acting = [{"name": f"t{i}", "path": f"/t{i}", "timeouts": {"request": "1s"}, "backend": "a"} for i in range(3000)]
    with pytest.raises(AnsibleFilterError, match=r"^route table: 0 of 3000 routes .* \(and routes with filters, weighted "
                                                 r"backends or timeouts add lines of their own\): 9\d{3} frontend lines"):
        compile_routes(acting, BE, "main", mode="map")
    assert compile_routes(conditioned[:1000] + acting[:1000], BE, "main")["mode"] == "map"


@pytest.mark.parametrize(("host", "authority"), [
    ("h", "h"),
    ("h:8080", "h"),  # the Host header's port never counts: the arrival port does
    ("h:", "h"),  # an empty port (valid in a URI) leaves no stray ':'
    ("H.Example.COM:80", "H.Example.COM"),  # case kept, as sent
    ("[2001:db8::1]:8080", "[2001:db8::1]"),
    ("[2001:db8::1]", "[2001:db8::1]"),
    (None, ""),
])
def test_redirect_host_comes_from_the_host_header_without_its_port(host, authority):
    routes = [_route(backend=None, filters=[_f("request_redirect")])]
    check(routes, "/p?x", f"redirect:301:http://{authority}/p?x", host=host)
    check(routes, "/p?x", f"redirect:301:https://{authority}:8443/p?x", host=host, scheme="https", port=8443)


# ------------------------------------------------------------------------ listeners

LISTENERS = [
    {"name": "http", "port": 80},
    {"name": "https", "port": 443},
    {"name": "admin", "port": 8443, "hostnames": ["admin.example.com", "*.ops.example.com"]},
]


def listener_outcomes(routes, target, host, port, scheme="http", unmatched="default") -> set:
    """The outcome in the reference and both forms (asserted equal); one value."""
    got = {ref.choose_backend(routes, BE, "main", target, host, "GET", set(BE), scheme, None, unmatched,
                              port=port, listeners=LISTENERS)}
    for mode in MODES:
        compiled = compile_routes(routes, BE, "main", mode=mode, unmatched=unmatched, listeners=LISTENERS)
        fe = haproxy_sim.Frontend(compiled["frontend"], compiled["maps"], compiled["https_redirect_backend"])
        got.add(fe.run(target, host, "GET", set(BE), scheme, port=port).outcome)
    assert len(got) == 1, got
    return got


@pytest.mark.parametrize(("target", "host", "port", "expected"), [
    ("/x", "www.example.com", 80, "b"),  # the route bound to http
    ("/x", "www.example.com", 443, "a"),  # not on http: the unbound route
    ("/x", "admin.example.com", 8443, "c"),  # the admin listener's own route
    ("/x", "a.ops.example.com", 8443, "c"),  # its wildcard name
    ("/x", "ops.example.com", 8443, "main"),  # not a name it serves: no route at all
    ("/x", "www.example.com", 8443, "main"),  # ... not even the unbound route
    ("/y", "admin.example.com", 8443, "a"),  # unbound routes serve every listener's names
    ("/y", "admin.example.com", 80, "a"),
])
def test_routes_bound_to_listeners(target, host, port, expected):
    routes = [
        {"name": "any", "path": "/", "backend": "a"},
        {"name": "plain", "path": "/x", "listener": "http", "backend": "b"},
        {"name": "adm", "path": "/x", "listener": "admin", "backend": "c"},
    ]
    assert listener_outcomes(routes, target, host, port) == {expected}


def test_a_request_for_a_host_the_listener_does_not_serve_gets_the_unmatched_answer():
    routes = [{"name": "any", "path": "/", "backend": "a"}]
    assert listener_outcomes(routes, "/x", "www.example.com", 8443, unmatched="not_found") == {"notfound"}
    assert listener_outcomes(routes, "/x", "Admin.Example.com:8443", 8443, unmatched="not_found") == {"a"}
    assert listener_outcomes(routes, "/x", None, 8443) == {"main"}


def test_listener_routes_rank_before_unbound_ones_and_shadowing_respects_listeners():
    routes = [
        {"name": "unbound", "path": "/x", "backend": "a"},
        {"name": "bound", "path": "/x", "listener": "https", "backend": "b"},
    ]
    assert listener_outcomes(routes, "/x", "h", 443, "https") == {"b"}
    assert listener_outcomes(routes, "/x", "h", 80) == {"a"}
    # Two listeners never shadow each other; the same listener twice does.
    compile_routes([dict(routes[1], name="one"), dict(routes[1], name="two", listener="http")], BE, "main",
                   listeners=LISTENERS)
    with pytest.raises(AnsibleFilterError, match=r"route 'two' \(index 1\): .*duplicates route 'one'.*listener https"):
        compile_routes([dict(routes[1], name="one"), dict(routes[1], name="two")], BE, "main", listeners=LISTENERS)


@pytest.mark.parametrize(("kwargs", "message"), [
    ({"routes": [{"name": "r", "path": "/", "listener": "nope", "backend": "a"}]},
     r"route 'r' \(index 0\): listener 'nope' is not defined; known: admin, http, https"),
    ({"routes": [{"name": "r", "path": "/", "listener": "admin", "host": "www.example.com", "backend": "a"}]},
     r"route 'r' \(index 0\): host www.example.com is none of the hostnames of listener 'admin'"),
    ({"listeners": [{"name": "a", "port": 80}, {"name": "b", "port": 80}]},
     r"listener 'b' \(listeners\[1\]\): port 80 is already the port of listener 'a'"),
    ({"listeners": [{"name": "a", "port": 80}, {"name": "a", "port": 81}]},
     r"listener 'a' \(listeners\[1\]\): name 'a' is already used"),
    ({"listeners": [{"name": "a", "port": 0}]}, r"listener 'a' \(listeners\[0\]\): port 0 is out of range"),
    ({"listeners": [{"name": "a", "port": 80, "hostnames": ["bad host"]}]},
     r"listener 'a' \(listeners\[0\]\): hostnames\[0\] 'bad host' is not a host name"),
    ({"listeners": [{"name": "a", "port": 80, "tls": "yes"}]}, r"listener 'a' \(listeners\[0\]\): tls must be true or false"),
    ({"listeners": [{"name": "a", "port": 80, "prot": 1}]}, r"listeners\[0\]: unknown key 'prot' \(did you mean 'port'\?\)"),
    ({"listeners": "http"}, r"listeners: expected a list"),
])
def test_listener_errors_name_the_listener_and_field(kwargs, message):
    routes = kwargs.get("routes", [{"name": "r", "path": "/", "backend": "a"}])
    with pytest.raises(AnsibleFilterError, match=message):
        compile_routes(routes, BE, "main", listeners=kwargs.get("listeners", LISTENERS))


def test_listener_routes_stay_rules_in_the_map_form_and_the_guard_is_emitted_once():
    routes = [{"name": "adm", "path": "/x", "listener": "admin", "backend": "c"}, {"name": "p", "path": "/p", "backend": "a"}]
    compiled = compile_routes(routes, BE, "main", mode="map", listeners=LISTENERS)
    assert "/x" not in "".join(m["content"] for m in compiled["maps"])
    assert [line for line in compiled["frontend"] if "listener_admin_host" in line] == [
        "acl listener_admin_host req.fhdr(host),field(1,:),lower -m str admin.example.com",
        "acl listener_admin_host req.fhdr(host),field(1,:),lower -m end .ops.example.com",
        "http-request set-var(txn.lay7_hit) str(999999999:main) if { dst_port 8443 } !listener_admin_host",
    ]
    assert compiled["listeners"][2] == {"name": "admin", "port": 8443, "hostnames": ["admin.example.com", "*.ops.example.com"],
                                        "tls": False, "builtin": False}


# ------------------------------------------------------------ filters of a split's entries

# Gateway API's filters on a backendRef: header modifiers on an entry of a weighted split,
# applied after the route's own filters and only when the split picks that entry.


def _rhm(**ops) -> dict:
    return _f("request_header_modifier", **ops)


def _xhm(**ops) -> dict:
    return _f("response_header_modifier", **ops)


def _hv(name: str, value: str) -> dict:
    return {"name": name, "value": value}


BF_BACKENDS = backends_named("main", "a", "b", "c", "z")
BF_BACKENDS["a"]["fallback"] = "c"
BF_BACKENDS["b"]["persistence"] = "cookie"
BF_BACKENDS["z"]["persistence"] = "cookie"
# The route's own edits and each entry's touch the same headers, so the order shows: the
# entry's come last.
BF_ROUTE = {
    "name": "w", "path": "/w",
    "filters": [_rhm(set=[_hv("X-Both", "route"), _hv("X-Route", "r")], remove=["X-Gone"]),
                _xhm(set=[_hv("X-Resp", "route")], add=[_hv("X-Trail", "route")])],
    "backends": [
        {"name": "a", "weight": 2, "filters": [
            _rhm(set=[_hv("X-Both", "a")], add=[_hv("X-Gone", "back")]),
            _xhm(set=[_hv("X-Resp", "a")], add=[_hv("X-Picked", "a")])]},
        # Only a response modifier; listed before the request one.
        {"name": "b", "weight": 1, "filters": [_xhm(remove=["X-Trail", "Server"]), _rhm(remove=["X-Route"])]},
        {"name": "c", "weight": 1},
        {"name": "z", "weight": 0, "filters": [_rhm(set=[_hv("X-Zero", "z")]), _xhm(set=[_hv("X-Zero", "z")])]},
    ],
}
BF_SENT = [("X-Gone", "1"), ("X-Both", "client"), ("X-Keep", "k")]


def _bf_request(route: dict, picked: str | None, target: str, host, headers: list) -> tuple:
    """(target, headers) the backend receives from the reference: the route's own edits, then
    the picked entry's request_header_modifier."""
    new_target, sent = _expected_request(route, target, host, headers)
    modifier = ref.backend_filter(route, picked, "request_header_modifier")
    return new_target, ref.header_edits(sent, modifier) if modifier is not None else sent


def _bf_response(route: dict, picked: str | None) -> list:
    """RESPONSE after the route's response_header_modifier, then the picked entry's."""
    out = RESPONSE
    for modifier in (_filter(route, "response_header_modifier"),
                     ref.backend_filter(route, picked, "response_header_modifier")):
        if modifier is not None:
            out = ref.header_edits(out, modifier)
    return out


def _check_bf(route: dict, target: str, expected: str, drawn: int, backends=BF_BACKENDS, up=None, cookies=None,
              headers=BF_SENT, host="h") -> str:
    """Check outcome, request and response edits of one request to the split route in the
    reference and both forms; return the entry the split picked."""
    pick = lambda total: drawn  # noqa: E731
    results = check([route], target, expected, backends, headers=headers, host=host, up=up, pick=pick, cookies=cookies)
    picked = ref.pick_weighted(route["backends"], backends, cookies, pick)
    want_target, want_headers = _bf_request(route, picked, target, host, list(headers) + cookie_header(cookies))
    for mode, res in results.items():
        assert res.target == want_target, (mode, res.target, want_target)
        assert _split_host(res.headers) == _split_host(want_headers), (mode, res.headers, want_headers)
        assert _haproxy_edits(RESPONSE, res.response_edits) == _bf_response(route, picked), (mode, res.response_edits)
    return picked


def test_the_picked_entrys_header_modifiers_apply_after_the_routes_own():
    # Weights a 2, b 1, c 1 (z 0): draws 0-1 pick a, 2 b, 3 c.
    assert [_check_bf(BF_ROUTE, "/w/x", want, drawn) for drawn, want in enumerate("aabc")] == list("aabc")
    # Spelled out for a: its set wins over the route's, its add brings back what the route removed.
    res = check([BF_ROUTE], "/w", "a", BF_BACKENDS, headers=BF_SENT, pick=lambda total: 1)["acl"]
    assert [(n, v) for n, v in res.headers if n.lower().startswith("x-")] == [
        ("X-Keep", "k"), ("X-Route", "r"), ("X-Both", "a"), ("X-Gone", "back")]
    assert _haproxy_edits(RESPONSE, res.response_edits) == [
        ("Server", "s"), ("Set-Cookie", "a=1"), ("X-Trail", "route"), ("X-Resp", "a"), ("X-Picked", "a")]
    # b removes the header the route set and the response header the route added.
    res = check([BF_ROUTE], "/w", "b", BF_BACKENDS, headers=BF_SENT, pick=lambda total: 2)["map"]
    assert [(n, v) for n, v in res.headers if n.lower().startswith("x-")] == [("X-Keep", "k"), ("X-Both", "route")]
    assert _haproxy_edits(RESPONSE, res.response_edits) == [("Set-Cookie", "a=1"), ("X-Resp", "route")]
    # c has no filters of its own: the route's alone.
    res = check([BF_ROUTE], "/w", "c", BF_BACKENDS, headers=BF_SENT, pick=lambda total: 3)["acl"]
    assert _haproxy_edits(RESPONSE, res.response_edits) == ref.header_edits(RESPONSE, BF_ROUTE["filters"][1])


def test_the_fallback_does_not_change_whose_filters_applied():
    # a is down: its fallback c answers, with a's edits (c's entry has none; were it to have
    # some, they would not apply either).
    up = set(BF_BACKENDS) - {"a"}
    assert _check_bf(BF_ROUTE, "/w", "c", 0, up=up) == "a"
    route = dict(BF_ROUTE, backends=[dict(BF_ROUTE["backends"][0]),
                                     {"name": "c", "weight": 1, "filters": [_rhm(set=[_hv("X-C", "c")])]}])
    assert _check_bf(route, "/w", "c", 0, up=up) == "a"
    res = check([route], "/w", "c", BF_BACKENDS, up=up, pick=lambda total: 0)["map"]
    assert ("X-C", "c") not in res.headers and ("X-Both", "a") in res.headers
    # Picked and down without a fallback: HAProxy answers 503 itself, skipping the http-response
    # edits (the simulator lists them all the same); the request edits are made as for a.
    assert _check_bf(BF_ROUTE, "/w", "b", 2, up=up - {"b"}) == "b"


def test_a_cookie_that_keeps_the_client_in_an_entry_brings_its_filters():
    # b has cookie persistence: its cookie wins over a draw pointing at a.
    assert _check_bf(BF_ROUTE, "/w", "b", 0, cookies={"LAY7_B": "1"}) == "b"
    # z's cookie pins nothing (weight 0), so neither do z's filters.
    assert _check_bf(BF_ROUTE, "/w", "a", 0, cookies={"LAY7_Z": "1"}) == "a"


def test_a_weight_0_entrys_filters_never_apply():
    lines = compile_routes([BF_ROUTE], BF_BACKENDS, "main", mode="acl")["frontend"]
    assert not any("X-Zero" in line for line in lines)
    for drawn in range(4):
        for res in check([BF_ROUTE], "/w", "aabc"[drawn], BF_BACKENDS, pick=lambda total, d=drawn: d,
                         cookies={"LAY7_Z": "1"}).values():
            assert "X-Zero" not in {n for n, _v in res.headers} | {n for _op, n, _v in res.response_edits}
    # Only one live entry: no pick, its filters still apply.
    solo = dict(BF_ROUTE, filters=[], backends=[BF_ROUTE["backends"][3], dict(BF_ROUTE["backends"][0], weight=5)])
    assert not any("lay7_pick" in line for line in compile_routes([solo], BF_BACKENDS, "main")["frontend"])
    assert _check_bf(solo, "/w", "a", 0) == "a"
    # Every weight 0: the route answers 500 itself, untouched by any entry's filters.
    dead = dict(solo, backends=[dict(e, weight=0) for e in solo["backends"]])
    for res in check([dead], "/w", "fixed:500", BF_BACKENDS).values():
        assert res.response_edits == []


def test_an_entrys_filters_belong_to_its_route_not_to_its_backend():
    # Other routes to the same backends, with and without actions, see none of w's entry filters.
    routes = [BF_ROUTE,
              {"name": "direct", "path": "/d", "backend": "a"},
              {"name": "timed", "path": "/t", "backend": "z", "timeouts": {"backend": "1s"}},
              {"name": "other", "path": "/o", "backends": [{"name": "a", "weight": 1}, {"name": "b", "weight": 1}]},
              {"name": "edits", "path": "/e", "backend": "b", "filters": [_xhm(add=[_hv("X-E", "e")])]}]
    for target, expected in (("/d", "a"), ("/t", "z"), ("/o", "a"), ("/e", "b")):
        for mode, res in check(routes, target, expected, BF_BACKENDS, headers=BF_SENT).items():
            assert [(n, v) for n, v in res.headers if n != "Host"] == BF_SENT, (mode, target, res.headers)
            assert [n for _op, n, _v in res.response_edits] == (["X-E"] if target == "/e" else []), (mode, target)
    assert _check_bf(BF_ROUTE, "/w", "a", 0) == "a"


def test_entry_filter_lines_follow_the_pick():
    route = {"name": "w", "path": "/", "backends": [
        {"name": "a", "weight": 1, "filters": [_rhm(set=[_hv("X-Backend", "a")]), _xhm(add=[_hv("X-Picked", "a 100%")])]},
        {"name": "b", "weight": 1, "filters": [_rhm(remove=["X-Drop"])]},
    ]}
    guard = "{ var(txn.lay7_be) -m str @w }"
    lines = [line for line in compile_routes([route], BE, "main", mode="acl")["frontend"]
             if "@w" in line or "(txn.lay7_route)" in line]
    assert lines == [
        "http-request set-var(txn.lay7_hit) str(0:@w) if !{ var(txn.lay7_hit) -m found } route_w_path",
        # Marked before the split replaces @w with the backend it picks.
        f"http-request set-var(txn.lay7_route) str(w) if {guard}",
        f"http-request set-var(txn.lay7_pick) rand(2) if {guard}",
        f"http-request set-var(txn.lay7_be) str(a) if {guard} {{ var(txn.lay7_pick) -m int lt 1 }}",
        f"http-request set-var(txn.lay7_be) str(b) if {guard}",
        "http-request set-header X-Backend a if { var(txn.lay7_route) -m str w } { var(txn.lay7_be) -m str a }",
        "http-request del-header X-Drop if { var(txn.lay7_route) -m str w } { var(txn.lay7_be) -m str b }",
        "http-response add-header X-Picked 'a 100%%' if { var(txn.lay7_route) -m str w } { var(txn.lay7_be) -m str a }",
    ]
    # Both forms emit the same action lines.
    mapped = compile_routes([route], BE, "main", mode="map")["frontend"]
    assert [line for line in mapped if "(txn.lay7_route)" in line] == lines[1:2] + lines[5:]
    # A split without entry filters (and no response modifier) marks no route, as before.
    plain = {"name": "w", "path": "/", "backends": SPLIT_AB}
    assert not any("(txn.lay7_route)" in line for line in compile_routes([plain], BE, "main")["frontend"])


def test_compiled_routes_show_each_entrys_filters():
    compiled = compile_routes([BF_ROUTE, {"name": "p", "path": "/p", "backends": SPLIT_AB}], BF_BACKENDS, "main")
    routes = {r["name"]: r for r in compiled["routes"]}
    assert routes["p"]["backends"] == [{"name": "a", "weight": 1, "filters": []}, {"name": "b", "weight": 1, "filters": []}]
    assert routes["w"]["backends"] == [
        {"name": "a", "weight": 2, "filters": [
            {"type": "request_header_modifier", "set": [["X-Both", "a"]], "add": [["X-Gone", "back"]], "remove": []},
            {"type": "response_header_modifier", "set": [["X-Resp", "a"]], "add": [["X-Picked", "a"]], "remove": []}]},
        # In type order, whatever the order given.
        {"name": "b", "weight": 1, "filters": [
            {"type": "request_header_modifier", "set": [], "add": [], "remove": ["X-Route"]},
            {"type": "response_header_modifier", "set": [], "add": [], "remove": ["X-Trail", "Server"]}]},
        {"name": "c", "weight": 1, "filters": []},
        # Kept in the compiled table though it never applies.
        {"name": "z", "weight": 0, "filters": [
            {"type": "request_header_modifier", "set": [["X-Zero", "z"]], "add": [], "remove": []},
            {"type": "response_header_modifier", "set": [["X-Zero", "z"]], "add": [], "remove": []}]},
    ]
    # The route's own filters are unchanged by its entries'.
    assert [f["type"] for f in routes["w"]["filters"]] == ["request_header_modifier", "response_header_modifier"]


def test_random_split_entry_filters_agree_across_reference_acl_and_map():
    rng = random.Random(20260704)
    checked = edited = responses = fell_back = 0
    for _table in range(150):
        backends = _random_backends(rng)
        routes = []
        for i in range(rng.randint(1, 4)):
            route = {"name": f"s{i}", "path": rng.choice(["/", "/a", "/a/b", "/b"])}
            if rng.random() < 0.4:
                route["headers"] = _conditions(rng, HEADER_CONDITIONS)
            entries = []
            for name in rng.sample(BACKEND_NAMES, rng.randint(1, 3)):
                entry = {"name": name, "weight": rng.choice([0, 1, 1, 3])}
                filters = [_modifier(rng, kind) for kind in ("request_header_modifier", "response_header_modifier")
                           if rng.random() < 0.6]
                if filters:
                    entry["filters"] = rng.sample(filters, len(filters))
                entries.append(entry)
            route["backends"] = entries
            own = [_modifier(rng, kind) for kind in ("request_header_modifier", "response_header_modifier")
                   if rng.random() < 0.4]
            if rng.random() < 0.3:
                own.append({"type": "url_rewrite", "host": "internal.example.com"})
            if own:
                route["filters"] = own
            routes.append(route)
        try:
            fes = frontends(routes, backends)
        except AnsibleFilterError as exc:
            assert "shadowed" in str(exc) or "duplicates" in str(exc), (exc, routes)
            continue
        cookie_names = sorted({ref.persistence_cookie(n, b) for n, b in backends.items()} - {None}) + ["OTHER"]
        for _request in range(20):
            target = rng.choice(PATHS) + rng.choice(["", "?v=2"])
            host = rng.choice(HOSTS)
            up = {n for n in backends if rng.random() < 0.8}
            cookies = {n: "1" for n in rng.sample(cookie_names, rng.randint(0, min(2, len(cookie_names))))}
            headers = rng.sample(REQUEST_HEADERS, rng.randint(0, 4)) + cookie_header(cookies)
            drawn = rng.random()

            def pick(total, drawn=drawn):
                return int(drawn * total)

            want = ref.choose_backend(routes, backends, "main", target, host, "GET", up, "http", headers, pick=pick,
                                      cookies=cookies)
            route = ref.select_route(routes, target, host, "GET", "http", headers)
            picked = ref.pick_weighted(route["backends"], backends, cookies, pick) if route is not None else None
            context = (routes, backends, target, host, headers, sorted(up), drawn)
            for mode, fe in fes.items():
                res = fe.run(target, host, "GET", up, "http", headers=headers, pick=pick)
                assert res.outcome == want, (mode, res.outcome, want, context)
                if route is None or not _is_backend(want):
                    continue
                want_target, want_headers = _bf_request(route, picked, target, host, headers)
                assert res.target == want_target, (mode, context)
                assert _split_host(res.headers) == _split_host(want_headers), (mode, res.headers, want_headers, context)
                if want in up:
                    assert _haproxy_edits(RESPONSE, res.response_edits) == _bf_response(route, picked), (
                        mode, res.response_edits, context)
            if route is not None and _is_backend(want):
                checked += 1
                edited += ref.backend_filter(route, picked, "request_header_modifier") is not None
                responses += want in up and ref.backend_filter(route, picked, "response_header_modifier") is not None
                fell_back += want != picked
    # The generator reaches each case often enough to mean something (1086, 616, 551, 55 with this seed).
    assert checked > 800 and min(edited, responses) > 300 and fell_back > 30, (checked, edited, responses, fell_back)


BFR = R + r"backends\[1\]: filters\[1\]"
BF_VALIDATION_CASES = [
    ("x", R + r"backends\[1\]: filters must be a list of \{type: \.\.\.\} mappings, got 'x'"),
    ({"type": "request_header_modifier"}, R + r"backends\[1\]: filters must be a list .*, got \{'type': "),
    ([_rhm(remove=["X-A"]), "request_header_modifier"],
     BFR + r": a backend's filter is one of request_header_modifier, response_header_modifier \(the route's filters "
           r"hold the others\), got 'request_header_modifier'"),
    ([_rhm(remove=["X-A"]), _f("url_rewrite", host="x.example.com")], BFR + r": a backend's filter is one of .* got 'url_rewrite'"),
    ([_rhm(remove=["X-A"]), _f("request_redirect")], BFR + r": a backend's filter is one of .* got 'request_redirect'"),
    ([_rhm(remove=["X-A"]), _f("fixed_response")], BFR + r": a backend's filter is one of .* got 'fixed_response'"),
    ([_rhm(remove=["X-A"]), _f("RequestHeaderModifier")], BFR + r": a backend's filter is one of .* got 'RequestHeaderModifier'"),
    ([_rhm(remove=["X-A"]), {"set": []}], BFR + r": a backend's filter is one of .* got None"),
    ([_rhm(remove=["X-A"]), _rhm(remove=["X-B"])], BFR + r": a second request_header_modifier; give each filter type once"),
    ([_xhm(remove=["X-A"]), _xhm(set=[_hv("X-B", "1")])], BFR + r": a second response_header_modifier"),
    ([_rhm(remove=["X-A"]), _xhm(sett=[])], BFR + r" \(response_header_modifier\): unknown key 'sett' \(did you mean 'set'\?\)"),
    ([_rhm(remove=["X-A"]), _rhm()], BFR + r" \(request_header_modifier\): set, add or remove must list at least one header"),
    ([_xhm(remove=["X-A"]), _rhm(set="X-A")], BFR + r" \(request_header_modifier\): set must be a list, got 'X-A'"),
    ([_xhm(remove=["X-A"]), _rhm(set=["X-A"])],
     BFR + r" \(request_header_modifier\): set\[0\]: expected a mapping with name and value, got 'X-A'"),
    ([_xhm(remove=["X-A"]), _rhm(set=[_hv("X A", "1")])], BFR + r" \(request_header_modifier\): set\[0\]: 'X A' is not a header name"),
    ([_xhm(remove=["X-A"]), _rhm(add=[_hv("X-A", "a\r\nX-Evil: 1")])],
     BFR + r" \(request_header_modifier\): add\[0\]: value 'a\\r\\nX-Evil: 1' contains control or non-ASCII characters"),
    ([_xhm(remove=["X-A"]), _rhm(add=[_hv("X-A", 5)])],
     BFR + r" \(request_header_modifier\): add\[0\]: value 5 must be a string, got a number"),
    ([_xhm(remove=["X-A"]), _rhm(add=[{"name": "X-A"}])], BFR + r" \(request_header_modifier\): add\[0\]: value is required"),
    ([_xhm(remove=["X-A"]), _rhm(remove=["Host"])],
     BFR + r" \(request_header_modifier\): remove\[0\]: the Host header is changed with a url_rewrite filter's host"),
    ([_rhm(remove=["X-A"]), _xhm(remove=["Content-Length"])],
     BFR + r" \(response_header_modifier\): remove\[0\]: Content-Length frames the HTTP message"),
    ([_rhm(remove=["X-A"]), _xhm(set=[_hv("X-A", "1")], remove=["x-a"])],
     BFR + r" \(response_header_modifier\): header 'x-a' appears in set and remove; give each header one operation"),
]


@pytest.mark.parametrize(("filters", "message"), BF_VALIDATION_CASES)
def test_entry_filter_errors_name_the_route_the_entry_the_filter_and_the_value(filters, message):
    route = _route(backend=None, backends=[{"name": "a", "weight": 1}, {"name": "b", "weight": 0, "filters": filters}])
    with pytest.raises(AnsibleFilterError, match=message) as err:
        compile_routes([route], BE, "main")
    assert len(str(err.value)) < 600
    # Refused whatever the entry's weight, and the route's own filters do not change that.
    route["backends"][1]["weight"] = 5
    route["filters"] = [_rhm(remove=["X-Z"])]
    with pytest.raises(AnsibleFilterError, match=message):
        compile_routes([route], BE, "main")


BF_HOSTILE_SLOTS = {
    "filters": lambda v: {"name": "a", "filters": v},
    "filters[0]": lambda v: {"name": "a", "filters": [v]},
    "filters[0].type": lambda v: {"name": "a", "filters": [{"type": v, "remove": ["X-A"]}]},
    "set": lambda v: {"name": "a", "filters": [_rhm(set=v)]},
    "set[0].name": lambda v: {"name": "a", "filters": [_xhm(set=[{"name": v, "value": "1"}])]},
    "set[0].value": lambda v: {"name": "a", "filters": [_xhm(set=[{"name": "X-A", "value": v}])]},
    "add[0].value": lambda v: {"name": "a", "filters": [_rhm(add=[{"name": "X-A", "value": v}])]},
    "remove[0]": lambda v: {"name": "a", "filters": [_rhm(remove=[v])]},
}


def test_hostile_entry_filter_values_are_refused_by_name_or_compile_to_lines_the_simulator_reads():
    accepted = 0
    for slot, make in BF_HOSTILE_SLOTS.items():
        for value in HOSTILE:
            route = _route(backend=None, backends=[make(value), {"name": "b", "weight": 1}])
            try:
                fes = frontends([route], BE)
            except AnsibleFilterError as exc:
                assert str(exc).startswith("route 'bad' (index 0): backends[0]: filters"), (slot, exc)
                assert len(str(exc)) < 600, (slot, len(str(exc)))
                continue
            accepted += 1
            for fe in fes.values():
                res = fe.run("/p", "h", headers=[("X-A", "1")], up=set(BE), pick=lambda total: 0)
                assert res.outcome == "a"
    assert accepted > 5  # '%', quotes, '$' and '-i' are fine as values


# ------------------------------------------------------------------------ backend protocol


def test_h2c_backends_and_their_fallback_stand_ins_speak_http2():
    backends = {
        "main": {"servers": [server("web1", 11)], "fallback": "grpc"},
        "grpc": {"servers": [server("g1", 21), server("g2", 22)], "protocol": "h2c"},
    }
    compiled = compile_routes([{"name": "g", "path": "/g", "backend": "grpc"}], backends, "main")
    by_name = {b["name"]: b for b in compiled["backends"]}
    assert by_name["grpc"]["protocol"] == "h2c"
    assert by_name["main"]["protocol"] == "http1"
    # main's stand-ins are grpc's servers: they speak what those speak.
    assert [(s["name"], s["protocol"]) for s in by_name["main"]["fallback_servers"]] == [
        ("fallback_g1", "h2c"), ("fallback_g2", "h2c")]


@pytest.mark.parametrize("protocol", ["h2", "HTTP2", "grpc", 2, None, ["h2c"]])
def test_unknown_backend_protocol_is_refused_naming_the_backend(protocol):
    backends = dict(BE, x={"servers": [server("x1", 30)], "protocol": protocol})
    with pytest.raises(AnsibleFilterError, match=r"^backend 'x': protocol .* is not one of http1, h2c$"):
        compile_routes([], backends, "main")
