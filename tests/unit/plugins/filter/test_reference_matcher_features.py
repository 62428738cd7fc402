"""Hand-computed examples for the reference matcher's HTTPRoute features.

The reference is what the compiler is checked against, so it is checked here on its own,
against answers worked out by hand from docs/routing.md and docs/dev-notes/route-features.md:
header and query conditions, their precedence, redirects, fixed responses, weighted splits,
cookie stickiness, unmatched requests and header modifiers.
"""

from __future__ import annotations

import pytest
import reference_matcher as ref

BE = {name: {"servers": [{"name": "s", "address": "192.0.2.1"}]} for name in ("main", "a", "b", "c")}


def outcome(routes, target, headers=None, **kw):
    return ref.choose_backend(routes, BE, "main", target, headers=headers, **kw)


# --- header conditions ---------------------------------------------------------------------

CANARY = [
    {"name": "canary", "path": "/", "headers": [{"name": "X-Canary", "value": "yes"}], "backend": "a"},
]


@pytest.mark.parametrize("headers, expected", [
    ([("X-Canary", "yes")], "a"),
    ([("x-canary", "yes")], "a"),               # names without case
    ([("X-CANARY", "yes")], "a"),
    ([("X-Canary", "Yes")], "main"),            # values with case
    ([("X-Canary", "yes, no")], "main"),        # the whole value, commas included
    ([("X-Canary", "no"), ("X-Canary", "yes")], "a"),   # any line is enough
    ([("X-Canary", "yess")], "main"),
    ([("X-Other", "yes")], "main"),
    ([], "main"),
    (None, "main"),
])
def test_header_exact(headers, expected):
    assert outcome(CANARY, "/x", headers) == expected


UA = [{"name": "ff", "path": "/", "headers": [{"name": "User-Agent", "value": "Fire[a-z]+", "match": "regex"}],
       "backend": "a"}]


@pytest.mark.parametrize("value, expected", [
    ("Firefox", "a"),
    ("Mozilla Firefox", "main"),   # anchored at the start
    ("Firefox/115", "main"),       # and at the end
    ("firefox", "main"),           # case-sensitive
    ("Fire\u00e9", "main"),       # [a-z] is one ASCII byte; é is two bytes, neither in it
])
def test_header_regex_anchored(value, expected):
    assert outcome(UA, "/", [("user-agent", value)]) == expected


def test_header_regex_may_match_empty_value():
    routes = [{"name": "e", "path": "/", "headers": [{"name": "X-E", "value": ".*", "match": "regex"}], "backend": "a"}]
    assert outcome(routes, "/", [("X-E", "")]) == "a"
    # present with any value, absent never
    assert outcome(routes, "/", []) == "main"


def test_regex_dot_is_one_byte():
    routes = [{"name": "d", "path": "/", "headers": [{"name": "X-D", "value": "..", "match": "regex"}], "backend": "a"}]
    assert outcome(routes, "/", [("X-D", "\u00e9")]) == "a"   # é is two bytes in UTF-8
    assert outcome(routes, "/", [("X-D", "e")]) == "main"


def test_all_header_conditions_must_hold():
    routes = [{"name": "two", "path": "/", "backend": "a",
               "headers": [{"name": "X-A", "value": "1"}, {"name": "X-B", "value": "2"}]}]
    assert outcome(routes, "/", [("X-A", "1"), ("X-B", "2")]) == "a"
    assert outcome(routes, "/", [("X-A", "1")]) == "main"
    assert outcome(routes, "/", [("X-B", "2")]) == "main"


def test_host_header_condition_is_refused():
    routes = [{"name": "h", "path": "/", "headers": [{"name": "Host", "value": "x"}], "backend": "a"}]
    with pytest.raises(ValueError):
        outcome(routes, "/", [("Host", "x")])


# --- query conditions ----------------------------------------------------------------------

VERSION = [{"name": "v2", "path": "/api", "query": [{"name": "version", "value": "2"}], "backend": "a"}]


@pytest.mark.parametrize("target, expected", [
    ("/api?version=2", "a"),
    ("/api/x?a=1&version=2&b=3", "a"),
    ("/api?version=1&version=2", "a"),     # any occurrence
    ("/api?version=2&version=1", "a"),
    ("/api?Version=2", "main"),            # names with case
    ("/api?version=20", "main"),           # the whole value
    ("/api?version=2=2", "main"),          # split at the first '=' only: the value is "2=2"
    ("/api?version", "main"),              # no '=', no value
    ("/api?version=", "main"),
    ("/api?version=%32", "main"),          # not percent-decoded
    ("/api", "main"),
    ("/api?", "main"),
    ("/other?version=2", "main"),          # the path still has to match
    ("/api?a=1;version=2", "a"),           # ';' ends a parameter too (HAProxy's url_param)
    ("/api?version=2;a=1", "a"),
    ("/api?a=1?version=2", "a"),           # and so does a later '?'
    ("/api?version=2?", "a"),
])
def test_query_exact(target, expected):
    assert outcome(VERSION, target) == expected


def test_query_raw_value_and_empty_name():
    routes = [{"name": "q", "path": "/", "query": [{"name": "q", "value": "a%20b"}], "backend": "a"}]
    assert outcome(routes, "/?q=a%20b") == "a"
    assert outcome(routes, "/?q=a b") == "main"
    assert ref.query_params("/p?=1&x&y=&z=a=b&&") == [("", "1"), ("x", None), ("y", ""), ("z", "a=b"), ("", None),
                                                      ("", None)]


def test_query_regex_and_value_without_equals():
    routes = [{"name": "id", "path": "/", "query": [{"name": "id", "value": "[0-9]*", "match": "regex"}],
               "backend": "a"}]
    assert outcome(routes, "/?id=42") == "a"
    assert outcome(routes, "/?id=") == "a"         # the regex matches the empty value
    assert outcome(routes, "/?id") == "main"       # but a piece without '=' has no value at all
    assert outcome(routes, "/?id=4a") == "main"
    assert outcome(routes, "/?id&id=7") == "a"


# --- precedence ----------------------------------------------------------------------------

def test_more_headers_first_regardless_of_order():
    one = {"name": "one", "path": "/", "headers": [{"name": "X-A", "value": "1"}], "backend": "a"}
    two = {"name": "two", "path": "/", "backend": "b",
           "headers": [{"name": "X-A", "value": "1"}, {"name": "X-B", "value": "1"}]}
    none = {"name": "none", "path": "/", "backend": "c"}
    both = [("X-A", "1"), ("X-B", "1")]
    for routes in ([none, one, two], [two, one, none], [one, none, two]):
        assert outcome(routes, "/", both) == "b"
        assert outcome(routes, "/", [("X-A", "1")]) == "a"
        assert outcome(routes, "/", []) == "c"


def test_headers_before_query_before_scheme():
    hdr = {"name": "hdr", "path": "/", "headers": [{"name": "X-A", "value": "1"}], "backend": "a"}
    qry = {"name": "qry", "path": "/", "query": [{"name": "q", "value": "1"}, {"name": "r", "value": "1"}],
           "backend": "b"}
    tls = {"name": "tls", "path": "/", "scheme": "https", "backend": "c"}
    routes = [tls, qry, hdr]
    # one header condition beats two query conditions
    assert outcome(routes, "/?q=1&r=1", [("X-A", "1")], scheme="https") == "a"
    # a query condition beats the scheme
    assert outcome(routes, "/?q=1&r=1", scheme="https") == "b"
    assert outcome(routes, "/?q=1", scheme="https") == "c"
    assert outcome(routes, "/?q=1&r=1", scheme="http") == "b"


def test_methods_before_headers_and_path_before_all():
    meth = {"name": "meth", "path": "/a", "methods": ["POST"], "backend": "a"}
    hdr = {"name": "hdr", "path": "/a", "backend": "b",
           "headers": [{"name": "X-A", "value": "1"}, {"name": "X-B", "value": "1"}]}
    longer = {"name": "longer", "path": "/a/b", "backend": "c"}
    routes = [hdr, longer, meth]
    h = [("X-A", "1"), ("X-B", "1")]
    assert outcome(routes, "/a/x", h, method="POST") == "a"
    assert outcome(routes, "/a/x", h, method="GET") == "b"
    assert outcome(routes, "/a/b", h, method="POST") == "c"


def test_precedence_tuple_orders_counts():
    plain = ref.precedence({"path": "/"}, 0)
    one_q = ref.precedence({"path": "/", "query": [{"name": "a", "value": "1"}]}, 1)
    one_h = ref.precedence({"path": "/", "headers": [{"name": "a", "value": "1"}]}, 2)
    scheme = ref.precedence({"path": "/", "scheme": "http"}, 3)
    assert sorted([plain, one_q, one_h, scheme]) == [one_h, one_q, scheme, plain]


def test_same_rank_declaration_order():
    first = {"name": "f", "path": "/", "headers": [{"name": "X-A", "value": "1"}], "backend": "a"}
    second = {"name": "s", "path": "/", "headers": [{"name": "X-B", "value": "1"}], "backend": "b"}
    h = [("X-A", "1"), ("X-B", "1")]
    assert outcome([first, second], "/", h) == "a"
    assert outcome([second, first], "/", h) == "b"


# --- unmatched -----------------------------------------------------------------------------

def test_unmatched_not_found():
    routes = [{"name": "a", "path": "/a", "backend": "a"}]
    assert outcome(routes, "/b", unmatched="not_found") == ref.NOT_FOUND == "notfound"
    assert outcome(routes, "*", unmatched="not_found") == "notfound"   # no path, no route
    assert outcome(routes, "/a", unmatched="not_found") == "a"
    assert outcome(routes, "/b") == "main"
    with pytest.raises(ValueError):
        outcome(routes, "/b", unmatched="404")


def test_unmatched_default_keeps_fallback():
    backends = dict(BE, main={"servers": [], "fallback": "b"})
    assert ref.choose_backend([], backends, "main", "/x", up={"b"}) == "b"
    assert ref.choose_backend([], backends, "main", "/x", up={"b"}, unmatched="not_found") == "notfound"


# --- request_redirect ----------------------------------------------------------------------

def redirect_route(route_path="/old", route_match="prefix", **filt):
    return {"name": "r", "path": route_path, "match": route_match,
            "filters": [dict({"type": "request_redirect"}, **filt)]}


@pytest.mark.parametrize("filt, target, host, scheme, location", [
    # nothing given: the same URL
    ({}, "/old/x?q=1", "www.example.com", "http", "http://www.example.com/old/x?q=1"),
    # the Host header's case is kept, its port is not: the port is the one the request arrived
    # on (here none given: the scheme's own)
    ({}, "/old", "WWW.Example.com:8080", "http", "http://WWW.Example.com/old"),
    ({}, "/old", "www.example.com:80", "http", "http://www.example.com/old"),
    ({}, "/old", "www.example.com:443", "http", "http://www.example.com/old"),
    ({}, "/old", "www.example.com:8443", "https", "https://www.example.com/old"),
    # a scheme without a port: the scheme's own port, the Host header's is dropped
    ({"scheme": "https"}, "/old?a=b", "www.example.com:8080", "http", "https://www.example.com/old?a=b"),
    # a port: kept unless it is the resulting scheme's well-known one
    ({"scheme": "https", "port": 8443}, "/old", "www.example.com", "http", "https://www.example.com:8443/old"),
    ({"scheme": "https", "port": 443}, "/old", "www.example.com:8080", "http", "https://www.example.com/old"),
    ({"scheme": "http", "port": 443}, "/old", "www.example.com", "https", "http://www.example.com:443/old"),
    ({"port": 80}, "/old", "www.example.com:8080", "http", "http://www.example.com/old"),
    ({"port": 80}, "/old", "www.example.com:8080", "https", "https://www.example.com:80/old"),
    # a host: replaces the Host header's host
    ({"host": "new.example.com"}, "/old", "www.example.com:8080", "http", "http://new.example.com/old"),
    ({"host": "new.example.com", "scheme": "https"}, "/old", "www.example.com:8080", "http",
     "https://new.example.com/old"),
    # IPv6 literal Host headers keep their brackets
    ({}, "/old", "[2001:db8::1]:8080", "http", "http://[2001:db8::1]/old"),
    ({}, "/old", "[2001:db8::1]", "http", "http://[2001:db8::1]/old"),
    # full path replacement, query kept
    ({"path": {"type": "full", "value": "/moved"}}, "/old/x/y?q=1&r", "h", "http", "http://h/moved?q=1&r"),
    ({"path": {"type": "full", "value": "/moved"}}, "/old?", "h", "http", "http://h/moved?"),
])
def test_redirect_target(filt, target, host, scheme, location):
    assert ref.redirect_target(redirect_route(**filt), target, host, scheme) == location


@pytest.mark.parametrize("route_path, value, path, expected", [
    # Gateway API's ReplacePrefixMatch table
    ("/foo", "/xyz", "/foo/bar", "/xyz/bar"),
    ("/foo", "/xyz/", "/foo/bar", "/xyz/bar"),
    ("/foo/", "/xyz", "/foo/bar", "/xyz/bar"),
    ("/foo/", "/xyz/", "/foo/bar", "/xyz/bar"),
    ("/foo", "/xyz", "/foo", "/xyz"),
    ("/foo", "/xyz", "/foo/", "/xyz/"),
    ("/foo", "/", "/foo/bar", "/bar"),
    ("/foo", "/", "/foo/", "/"),
    ("/foo", "/", "/foo", "/"),
    # a route on "/" replaces the empty prefix: the whole path follows the value
    ("/", "/xyz", "/bar", "/xyz/bar"),
    ("/", "/xyz", "/", "/xyz/"),
    ("/", "/", "/bar/", "/bar/"),
    ("/", "/", "/", "/"),
])
def test_redirect_prefix_replacement(route_path, value, path, expected):
    route = redirect_route(route_path, path={"type": "prefix", "value": value})
    assert ref.redirect_target(route, path, "h", "http") == f"http://h{expected}"
    assert ref.redirect_target(route, path + "?a=1&b", "h", "http") == f"http://h{expected}?a=1&b"


def test_redirect_prefix_needs_prefix_route():
    route = redirect_route("/a", "exact", path={"type": "prefix", "value": "/b"})
    with pytest.raises(ValueError):
        ref.redirect_target(route, "/a", "h", "http")


def test_redirect_keeps_the_port_the_request_arrived_on():
    route = redirect_route()
    assert ref.redirect_target(route, "/old", "h", "http", port=8080) == "http://h:8080/old"
    assert ref.redirect_target(route, "/old", "h", "http", port=80) == "http://h/old"
    assert ref.redirect_target(route, "/old", "h", "https", port=80) == "https://h:80/old"
    # the Host header's port does not count (Gateway API: the listener's port)
    assert ref.redirect_target(route, "/old", "h:9000", "http", port=8080) == "http://h:8080/old"
    assert ref.redirect_target(route, "/old", "h:9000", "http", port=80) == "http://h/old"
    # a filter scheme means that scheme's port
    route = redirect_route(scheme="https")
    assert ref.redirect_target(route, "/old", "h", "http", port=8080) == "https://h/old"
    # a filter port wins over the arrival port
    route = redirect_route(port=9000)
    assert ref.redirect_target(route, "/old", "h", "http", port=8080) == "http://h:9000/old"


def test_redirect_outcome():
    routes = [redirect_route(scheme="https", status=308), {"name": "rest", "path": "/", "backend": "a"},
              {"name": "moved", "path": "/m", "match": "exact",
               "filters": [{"type": "request_redirect", "path": {"type": "full", "value": "/n"}}]}]
    assert outcome(routes, "/old/x?q", host="h") == "redirect:308:https://h/old/x?q"
    assert outcome(routes, "/m?x=1", host="h:81") == "redirect:301:http://h/n?x=1"
    assert outcome(routes, "/m?x=1", host="h:81", port=8080) == "redirect:301:http://h:8080/n?x=1"
    assert outcome(routes, "/m?x=1", host="h", scheme="https", port=8443) == "redirect:301:https://h:8443/n?x=1"
    assert outcome(routes, "/other", host="h") == "a"


def test_redirect_needs_no_backend_up():
    routes = [redirect_route(host="x")]
    assert ref.choose_backend(routes, BE, "main", "/old", "h", up=set()) == "redirect:301:http://x/old"


def test_require_https_before_redirect_and_fixed():
    redirect = dict(redirect_route(host="x"), require_https=True)
    fixed = {"name": "f", "path": "/f", "require_https": True, "filters": [{"type": "fixed_response", "status": 503}]}
    routes = [redirect, fixed]
    assert outcome(routes, "/old", host="h") == ref.REDIRECT_HTTPS
    assert outcome(routes, "/old", host="h", scheme="https") == "redirect:301:https://x/old"
    assert outcome(routes, "/f", host="h") == ref.REDIRECT_HTTPS
    assert outcome(routes, "/f", host="h", scheme="https") == "fixed:503"


# --- fixed_response ------------------------------------------------------------------------

def test_fixed_response():
    routes = [{"name": "down", "path": "/down", "filters": [{"type": "fixed_response", "status": 503, "body": "x"}]},
              {"name": "ok", "path": "/ok", "filters": [{"type": "fixed_response"}]}]
    assert ref.choose_backend(routes, BE, "main", "/down/x", up=set()) == "fixed:503"
    assert outcome(routes, "/ok") == "fixed:200"
    assert outcome(routes, "/else") == "main"


# --- url_rewrite ---------------------------------------------------------------------------

def test_rewrite_effects():
    def rw(route_path="/api", **filt):
        return {"name": "w", "path": route_path, "backend": "a", "filters": [dict({"type": "url_rewrite"}, **filt)]}

    assert ref.rewrite_effects(rw(host="internal"), "/api/x?q=1", "www:8080") == ("internal", "/api/x?q=1")
    assert ref.rewrite_effects(rw(path={"type": "prefix", "value": "/v2"}), "/api/x?q=1", "www") == (None, "/v2/x?q=1")
    assert ref.rewrite_effects(rw(path={"type": "prefix", "value": "/"}), "/api?q", "www") == (None, "/?q")
    assert ref.rewrite_effects(rw(path={"type": "full", "value": "/z"}), "/api/x?q=1", "www") == (None, "/z?q=1")
    assert ref.rewrite_effects({"name": "p", "path": "/", "backend": "a"}, "/x?y", "www") == (None, "/x?y")
    # a rewrite does not change where the request goes
    assert outcome([rw(host="internal")], "/api/x") == "a"


# --- weighted splits -----------------------------------------------------------------------

SPLIT = [{"name": "a", "weight": 90}, {"name": "z0", "weight": 0}, {"name": "b", "weight": 10}]
SPLIT_BE = dict(BE, z0={"servers": []})


def test_weighted_ranges():
    assert ref.weighted_ranges(SPLIT) == [("a", 0, 90), ("b", 90, 100)]
    assert ref.weighted_ranges([{"name": "a", "weight": "3"}, {"name": "b", "weight": 1}]) == [("a", 0, 3), ("b", 3, 4)]
    assert ref.weighted_ranges([{"name": "a", "weight": 0}]) == []


@pytest.mark.parametrize("drawn, expected", [(0, "a"), (89, "a"), (90, "b"), (99, "b")])
def test_weighted_pick(drawn, expected):
    routes = [{"name": "w", "path": "/", "backends": SPLIT}]
    seen = []

    def pick(total):
        seen.append(total)
        return drawn

    assert ref.choose_backend(routes, SPLIT_BE, "main", "/", pick=pick) == expected
    assert seen == [100]


def test_weighted_default_pick_and_bad_pick():
    routes = [{"name": "w", "path": "/", "backends": [{"name": "z0", "weight": 0}] + SPLIT}]
    assert ref.choose_backend(routes, SPLIT_BE, "main", "/") == "a"
    with pytest.raises(ValueError):
        ref.choose_backend(routes, SPLIT_BE, "main", "/", pick=lambda total: total)


def test_weighted_fallback():
    backends = dict(SPLIT_BE, b={"servers": [], "fallback": "c"})
    routes = [{"name": "w", "path": "/", "backends": SPLIT}]
    assert ref.choose_backend(routes, backends, "main", "/", up={"a", "c"}, pick=lambda t: 95) == "c"
    # no usable fallback either: the picked backend answers 503, the split is not redrawn
    assert ref.choose_backend(routes, backends, "main", "/", up={"a"}, pick=lambda t: 95) == "b"


def test_all_weights_zero():
    routes = [{"name": "w", "path": "/", "backends": [{"name": "a", "weight": 0}, {"name": "b", "weight": 0}]}]
    backends = dict(BE, a=dict(BE["a"], persistence="cookie"))
    assert ref.choose_backend(routes, backends, "main", "/", cookies={"LAY7_A": "s"}) == "fixed:500"


def test_cookie_stickiness():
    backends = dict(
        SPLIT_BE,
        a=dict(BE["a"], persistence="cookie"),
        b=dict(BE["b"], persistence="cookie", cookie_name="SRV_B"),
        c=dict(BE["c"], persistence="source"),
        z0=dict(SPLIT_BE["z0"], persistence="cookie"),
    )
    backends["my-pool.2"] = dict(BE["a"], persistence="cookie")
    split = SPLIT + [{"name": "c", "weight": 5}, {"name": "my-pool.2", "weight": 5}]
    routes = [{"name": "w", "path": "/", "backends": split}]

    def go(cookies, drawn=0):
        return ref.choose_backend(routes, backends, "main", "/", cookies=cookies, pick=lambda t: drawn)

    assert go({"SRV_B": "s"}) == "b"
    assert go({"LAY7_B": "s"}) == "a"              # b's cookie has its own name
    assert go({"LAY7_A": ""}, drawn=95) == "a"      # any value, even empty
    assert go({"LAY7_MY_POOL_2": "s"}) == "my-pool.2"
    assert go({"LAY7_C": "s"}, drawn=101) == "c"    # c is not cookie-persistent: the draw decides
    assert go({"LAY7_C": "s"}) == "a"
    assert go({"LAY7_Z0": "s"}, drawn=95) == "b"    # weight 0 never gets traffic, cookie or not
    assert go({"SRV_B": "s", "LAY7_A": "s"}) == "a"  # both held: the first in list order
    assert go({"lay7_a": "s"}, drawn=95) == "b"     # cookie names with case
    assert ref.persistence_cookie("x", {"persistence": "stick-table"}) is None


def test_sticky_backend_down_falls_back():
    backends = dict(SPLIT_BE, b=dict(BE["b"], persistence="cookie", fallback="c"))
    routes = [{"name": "w", "path": "/", "backends": SPLIT}]
    assert ref.choose_backend(routes, backends, "main", "/", up={"a", "c"}, cookies={"LAY7_B": "1"}) == "c"


# --- header modifiers ----------------------------------------------------------------------

def test_header_edits_set_add_remove():
    headers = [("X-A", "old"), ("Accept", "*/*"), ("x-a", "older"), ("X-C", "gone")]
    modifier = {"set": [{"name": "X-a", "value": "1"}], "add": [{"name": "X-B", "value": "2"}], "remove": ["x-c"]}
    assert ref.header_edits(headers, modifier) == [("Accept", "*/*"), ("X-a", "1"), ("X-B", "2")]
    # the input is not changed
    assert headers[0] == ("X-A", "old") and len(headers) == 4


def test_header_edits_add_is_a_new_line():
    assert ref.header_edits([("X-B", "1")], {"add": [{"name": "x-b", "value": "2"}]}) == [("X-B", "1"), ("x-b", "2")]


def test_header_edits_order_set_then_add_then_remove():
    # remove runs last, so it wins over set and add of the same name
    modifier = {"remove": ["X-A"], "add": [{"name": "X-A", "value": "2"}], "set": [{"name": "X-A", "value": "1"}]}
    assert ref.header_edits([("X-A", "0"), ("Y", "y")], modifier) == [("Y", "y")]
    # add after set: the set line, then the added one
    modifier = {"add": [{"name": "X-A", "value": "2"}], "set": [{"name": "X-A", "value": "1"}]}
    assert ref.header_edits([("X-A", "0")], modifier) == [("X-A", "1"), ("X-A", "2")]
    # set of an absent header appends it
    assert ref.header_edits([], {"set": [{"name": "X-N", "value": ""}]}) == [("X-N", "")]
    assert ref.header_edits([("A", "1")], {}) == [("A", "1")]
