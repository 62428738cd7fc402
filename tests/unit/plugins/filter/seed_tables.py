"""The seed topology's route table (addresses in the documentation range), shared by the
unit tests and the loopback integration test, which points every server at a loopback port,
a table of regex routes at the edges of the regex subset (docs/routing.md), and the large
mixed tables whose compile time the unit tests bound and bench/bench_routes.py measures."""

LONG = "x" * 6000


def server(name: str, last: int) -> dict:
    return {"name": name, "address": f"192.0.2.{last}", "port": 80}


SEED_BACKENDS = {
    "main": {"servers": [server("web1", 11)], "fallback": "a_pool"},
    "a_pool": {"servers": [server("web2", 12)], "fallback": "main"},
    "b_pool": {"servers": [server("web3", 13)], "fallback": "main"},
}
SEED_ROUTES = [
    {"name": "a", "path": "/a", "match": "prefix", "backend": "a_pool"},
    {"name": "b", "path": "/b", "match": "prefix", "backend": "b_pool"},
]


# Regexes at the edges of the subset and what they route (backends r1..r4, default main): the
# reference matcher runs them as bytes, like PCRE2; tests/integration sends the same table
# through the real HAProxy.
REGEX_ROUTES = [
    {"name": "digits", "path": "/d/\\d+", "match": "regex", "backend": "r1"},
    {"name": "word", "path": "/w/\\w{2,3}", "match": "regex", "backend": "r2"},
    {"name": "dot", "path": "/u/.", "match": "regex", "backend": "r3"},
    {"name": "lazy", "path": "/l/a+?b*?", "match": "regex", "backend": "r1"},
    {"name": "count", "path": "/c/x{0,3}", "match": "regex", "backend": "r2"},
    {"name": "open", "path": "/o/(ab){2,}", "match": "regex", "backend": "r3"},
    {"name": "cls", "path": "/k/[-a-c\\]\\\\.]+", "match": "regex", "backend": "r4"},
    {"name": "neg", "path": "/n/[^/]+\\.html", "match": "regex", "backend": "r1"},
    {"name": "hex", "path": "/x/\\x41\\x2f", "match": "regex", "backend": "r2"},
    {"name": "alt", "path": "(/v1|/v2)/(?:users|groups)(/[0-9]+)?", "match": "regex", "backend": "r3"},
    {"name": "brace", "path": "/b/\\{id\\}", "match": "regex", "backend": "r4"},
    {"name": "punct", "path": "/p/[!$&'()*+,;=:@~]+", "match": "regex", "backend": "r1"},
    {"name": "nonspace", "path": "/s/\\S+\\W\\D", "match": "regex", "backend": "r2"},
]
REGEX_REQUESTS = [
    ("/d/123", "r1"), ("/d/", "main"), ("/d/12a", "main"), ("/d/\u0663", "main"), ("/d/%D9%A3", "main"),
    ("/w/ab", "r2"), ("/w/a_1", "r2"), ("/w/abcd", "main"), ("/w/\u00e9\u00e9", "main"), ("/w/a", "main"),
    ("/u/a", "r3"), ("/u/\u00fc", "main"), ("/u/", "main"), ("/u/ab", "main"),
    ("/l/ab", "r1"), ("/l/aab", "r1"), ("/l/b", "main"),
    ("/c/", "r2"), ("/c/xxx", "r2"), ("/c/xxxx", "main"), ("/c/x{,3}", "main"),
    ("/o/abab", "r3"), ("/o/ab", "main"), ("/o/ababab", "r3"),
    ("/k/a-c]", "r4"), ("/k/\\.", "r4"), ("/k/d", "main"),
    ("/n/x.html", "r1"), ("/n/a/x.html", "main"), ("/n/x.htm", "main"),
    ("/x/A/", "r2"), ("/x/a/", "main"),
    ("/v1/users", "r3"), ("/v2/groups/1", "r3"), ("/v2/groups/1/22", "main"), ("/v3/users", "main"), ("/v1/users/", "main"),
    ("/b/{id}", "r4"), ("/b/id", "main"),
    ("/p/!$&'()*+,;=:@~", "r1"), ("/p/a", "main"),
    ("/s/ab-x", "r2"), ("/s/a-1", "main"), ("/s/ab/", "main"),
]  # fmt: skip


# Large tables of the compile-time target (10,000 routes of any mix). The unit tests bound their compile time
# loosely and bench/bench_routes.py records it, so both build exactly these routes.
def realistic_mix_routes(n: int, backends: list) -> list:
    """n routes over ``backends``: 40% with an exact host (prefix and exact), 10% with methods,
    5% regex, 5% wildcard host, the rest exact and prefix paths."""
    routes = []
    for i in range(n):
        route = {"name": f"r{i}", "backend": backends[i % len(backends)]}
        kind = i % 20
        if kind < 8:
            route.update(host=f"app{i % 997}.example.com", path=f"/h{i}" + "/sub" * (i % 3))
            if kind == 1:
                route["match"] = "exact"
        elif kind < 10:
            route.update(path=f"/m{i}/x", methods=["POST", "PUT"])
        elif kind == 10:
            route.update(path=f"/rx{i}/[0-9]+(/[a-z]+)?", match="regex")
        elif kind == 11:
            route.update(path=f"/w{i}", host=f"*.t{i % 50}.example.com")
        elif kind % 3 == 0:
            route.update(path=f"/api/v{i % 7}/item{i}", match="exact")
        else:
            route.update(path=f"/svc{i}" + "/sub" * (i % 4))
        routes.append(route)
    return routes


def issue_mix_routes(n: int, backends: list) -> list:
    """n routes of the "any mix" over ``backends``: 30% with methods (half with an exact
    host), 10% regex, 40% with an exact host, 5% with a wildcard host, the rest exact and prefix
    paths."""
    routes = []
    for i in range(n):
        route = {"name": f"r{i}", "backend": backends[i % len(backends)]}
        kind = i % 20
        if kind < 8:
            route.update(host=f"app{i % 997}.example.com", path=f"/h{i}" + "/sub" * (i % 3))
            if kind < 3:
                route["methods"] = [["GET"], ["POST", "PUT"], ["DELETE"]][kind]
            if kind in (2, 3):
                route["match"] = "exact"
        elif kind < 11:
            route.update(path=f"/m{i}/x", methods=["POST", "PUT"] if kind < 10 else ["GET", "HEAD"])
            if kind == 8:
                route["match"] = "exact"
        elif kind < 13:
            route.update(path=f"/rx{i}/[0-9]+(/[a-z]+)?", match="regex")
        elif kind == 13:
            route.update(path=f"/w{i}", host=f"*.t{i % 50}.example.com")
        elif kind % 2:
            route.update(path=f"/api/v{i % 7}/item{i}", match="exact")
        else:
            route.update(path=f"/svc{i}" + "/sub" * (i % 4))
        routes.append(route)
    return routes
