"""Reference semantics of a lay7.ha route table, written independently of the compiler.

It works on the raw, user-facing route table (not the compiler's normalised output) and
implements docs/routing.md and docs/dev-notes/route-features.md directly: match types, host,
method, scheme, header and query conditions, Gateway API precedence, require_https redirects,
request_redirect and fixed_response filters, weighted backend splits with cookie stickiness,
and one-hop fallback. Tests compare what the compiled HAProxy rules do (simulated in
haproxy_sim.py, and for real in tests/integration) with what this module says.

The outcome of a request (:func:`choose_backend`) is one of:

- a backend name: the backend that answers;
- :data:`REDIRECT_HTTPS`, when the route it selects has ``require_https`` and the request
  arrived over plain HTTP: the client is redirected to the same URL over https (no backend, so
  no fallback, whatever the backends' state). This is checked before the route's filters;
- ``"redirect:<status>:<Location>"`` for a route with a ``request_redirect`` filter
  (:func:`redirect_target` computes the Location);
- ``"fixed:<status>"`` for a route with a ``fixed_response`` filter, and ``"fixed:500"`` for a
  weighted split whose weights are all 0;
- :data:`NOT_FOUND` (``"notfound"``) when no route matches and ``unmatched="not_found"``.

A backend name never holds ':', so the redirect and fixed outcomes never look like one;
``notfound`` is a legal backend name, though, so tests must not give a backend that name.

Besides the outcome, :func:`rewrite_effects` says what a ``url_rewrite`` filter does to the
request, :func:`header_edits` what a header modifier does to a header list, and
:func:`backend_filter` which header modifiers an entry of a weighted split adds (Gateway API's
filters on a backendRef) when the split picks it.
"""

from __future__ import annotations

import re

# The outcome "redirected to https" (a backend name never holds ':').
REDIRECT_HTTPS = "redirect:https"
# The outcome of an unmatched request with unmatched="not_found" (HAProxy answers 404).
NOT_FOUND = "notfound"

# The port a Location may leave out, per scheme.
WELL_KNOWN_PORTS = {"http": 80, "https": 443}


def request_path(target: str) -> str | None:
    """What HAProxy's ``path`` fetch returns for an origin-form request target: everything
    before the first '?'. Targets without a leading '/' (``*``, empty) have no path."""
    if not target.startswith("/"):
        return None
    return target.split("?", 1)[0]


def request_query(target: str) -> str | None:
    """The query string of a request target: everything after the first '?' (may be empty),
    or None when the target has no '?'."""
    if "?" not in target:
        return None
    return target.split("?", 1)[1]


# What ends a query parameter for HAProxy's ``url_param``: '&', and also ';' and '?' (its
# http_is_param_delimiter), so "a=1;b=2" holds two parameters and "a=1?b=2" too.
_PARAM_DELIMITERS = re.compile(r"[&;?]")


def query_params(target: str) -> list:
    """The query parameters as (name, value) pairs, in order, as HAProxy's ``url_param``
    reads them: the query split on '&', ';' and '?', each piece split at its first '='.
    Nothing is percent-decoded. A piece without '=' has no value: its value is None, which no
    condition matches (not even an empty one)."""
    query = request_query(target)
    if query is None:
        return []
    params = []
    for piece in _PARAM_DELIMITERS.split(query):
        name, sep, value = piece.partition("=")
        params.append((name, value if sep else None))
    return params


def _norm_prefix(path: str) -> str:
    return path[:-1] if path.endswith("/") and path != "/" else path


def _regex_fullmatch(pattern: str, value: str) -> bool:
    # As HAProxy's PCRE2 (no UTF) runs it: on the value's bytes, with ASCII-only \d \w \s
    # and '.' matching one byte. A str pattern would make them Unicode-aware.
    return re.fullmatch(pattern.encode("ascii"), value.encode("utf-8", "surrogateescape")) is not None


def path_matches(route: dict, path: str | None) -> bool:
    if path is None:
        return False
    match = route.get("match", "prefix")
    want = route["path"]
    if match == "exact":
        return path == want
    if match == "prefix":
        want = _norm_prefix(want)
        if want == "/":
            return True
        # path-element prefix: "/a" matches "/a" and "/a/..." only
        return path == want or path.startswith(want + "/")
    if match == "regex":
        return _regex_fullmatch(want, path)
    raise ValueError(match)


def host_matches(route: dict, host_header: str | None) -> bool:
    want = route.get("host")
    if want is None:
        return True
    if host_header is None:
        return False
    host = host_header.split(":", 1)[0].lower()
    want = want.lower()
    if want.startswith("*."):
        return host.endswith(want[1:])
    return host == want


def method_matches(route: dict, method: str) -> bool:
    methods = [m.upper() for m in route.get("methods") or []]
    return not methods or method in methods


def scheme_matches(route: dict, scheme: str) -> bool:
    want = route.get("scheme")
    return want is None or want == scheme


def _value_matches(condition: dict, value: str | None) -> bool:
    """One header or query condition against one occurrence's value."""
    if value is None:
        return False
    match = condition.get("match", "exact")
    if match == "exact":
        return value == condition["value"]
    if match == "regex":
        return _regex_fullmatch(condition["value"], value)
    raise ValueError(match)


def headers_match(route: dict, headers: list | None) -> bool:
    """Every header condition of the route holds. ``headers`` are the request's (name, value)
    pairs as the HTTP parser hands them over, one per header line, in order. A condition
    holds when any line with its name (compared without case) has a whole value, commas
    included, that matches."""
    headers = headers or []
    for condition in route.get("headers") or []:
        name = condition["name"].lower()
        if name == "host":
            # The compiler refuses it: the Host header is the `host` key's business.
            raise ValueError("a header condition on host")
        if not any(_value_matches(condition, v) for n, v in headers if n.lower() == name):
            return False
    return True


def query_matches(route: dict, target: str) -> bool:
    """Every query condition of the route holds: some parameter with exactly its name
    (case-sensitive) has a raw value that matches."""
    params = query_params(target)
    for condition in route.get("query") or []:
        if not any(_value_matches(condition, v) for n, v in params if n == condition["name"]):
            return False
    return True


def precedence(route: dict, index: int) -> tuple:
    host = route.get("host")
    if host is None:
        host_key = (2, 0)
    elif host.startswith("*."):
        host_key = (1, -len(host))
    else:
        host_key = (0, 0)
    match = route.get("match", "prefix")
    if match == "exact":
        path_key = (0, 0)
    elif match == "prefix":
        path_key = (1, -len(_norm_prefix(route["path"])))
    else:
        path_key = (2, 0)
    # Methods before scheme: a route with methods and no scheme outranks one with a scheme and
    # no methods (docs/routing.md, "Precedence"). Gateway API ranks header and query
    # conditions after the method, more conditions first; the scheme is ours and comes after
    # them, so every table written before headers and query existed keeps its order.
    return host_key + path_key + (
        0 if route.get("methods") else 1,
        -len(route.get("headers") or []),
        -len(route.get("query") or []),
        0 if route.get("scheme") else 1,
        0 if route.get("listener") else 1,
        index,
    )


def listener_admits(listeners: list | None, port: int, host: str | None) -> bool:
    """Whether a request that arrived on ``port`` may get a route at all: a listener with
    host names serves only those (exact, or ``*.suffix`` covering one or more labels); a
    request on its port for any other host gets no route, whatever other listeners' routes
    say."""
    for lst in listeners or []:
        if lst["port"] != port or not lst.get("hostnames"):
            continue
        value = None if host is None else host.split(":", 1)[0].lower()
        return value is not None and any(
            value == h.lower() or (h.startswith("*.") and value.endswith(h[1:].lower())) for h in lst["hostnames"])
    return True


def listener_matches(route: dict, listeners: list | None, port: int) -> bool:
    """A route bound to a listener matches only requests that arrived on its port."""
    name = route.get("listener")
    if name is None:
        return True
    return any(lst["name"] == name and lst["port"] == port for lst in listeners or [])


def select_route(routes: list, target: str, host: str | None = None, method: str = "GET",
                 scheme: str = "http", headers: list | None = None, port: int | None = None,
                 listeners: list | None = None) -> dict | None:
    """The route a request over ``scheme`` (``http`` or ``https``) matches, or None (no route:
    the unmatched outcome). ``headers`` are the request's (name, value) pairs, Host aside
    (it is ``host``); the query parameters come from ``target``. ``port``: the port it
    arrived on (80 for http, 443 for https when not given); ``listeners`` the compile
    argument ({name, port, hostnames})."""
    if scheme not in ("http", "https"):
        raise ValueError(scheme)
    port = WELL_KNOWN_PORTS[scheme] if port is None else port
    if not listener_admits(listeners, port, host):
        return None
    path = request_path(target)
    matching = [
        (precedence(r, i), i)
        for i, r in enumerate(routes)
        if path_matches(r, path) and host_matches(r, host) and method_matches(r, method)
        and scheme_matches(r, scheme) and headers_match(r, headers) and query_matches(r, target)
        and listener_matches(r, listeners, port)
    ]
    if not matching:
        return None
    return routes[min(matching)[1]]


def resolve_backend(name: str, backends: dict, up: set) -> str:
    """One-hop fallback: the backend if it has usable servers, else its fallback if that
    has, else the backend itself (which answers 503)."""
    if name in up:
        return name
    fallback = backends[name].get("fallback")
    if fallback and fallback in up:
        return fallback
    return name


def _filter(route: dict, kind: str) -> dict | None:
    for f in route.get("filters") or []:
        if f.get("type") == kind:
            return f
    return None


def persistence_cookie(name: str, backend: dict) -> str | None:
    """The cookie that pins a client to ``backend`` (called ``name``), or None when its
    persistence is not ``cookie``: ``cookie_name``, else ``LAY7_`` and the name upper-cased
    with anything but A-Z and 0-9 turned into '_'."""
    if backend.get("persistence") != "cookie":
        return None
    return backend.get("cookie_name") or "LAY7_" + re.sub(r"[^A-Z0-9]", "_", name.upper())


def weighted_ranges(split: list) -> list:
    """The ranges of a weighted ``backends`` list: (name, lo, hi) for each backend with a
    weight above 0, in the order listed, taking consecutive ranges [lo, hi) of [0, total).
    Weight-0 backends get no range, so never any traffic."""
    ranges = []
    lo = 0
    for entry in split:
        weight = int(entry["weight"])
        if weight > 0:
            ranges.append((entry["name"], lo, lo + weight))
            lo += weight
    return ranges


def pick_weighted(split: list, backends: dict, cookies: dict | None = None, pick=None) -> str | None:
    """The backend a weighted split sends the request to, before fallback, or None when all
    weights are 0 (the route answers 500).

    A client holding the persistence cookie (any value) of a split backend with a weight above
    0 stays there; the first such backend in list order wins. Otherwise ``pick(total)`` draws
    a number in [0, total) and the backend whose range holds it is chosen. HAProxy draws at
    random or by a hash of the client address; the reference takes the draw as given, so
    tests can walk every number. The default draws 0: the first backend with weight."""
    ranges = weighted_ranges(split)
    if not ranges:
        return None
    for name, _lo, _hi in ranges:
        cookie = persistence_cookie(name, backends[name])
        if cookie is not None and cookie in (cookies or {}):
            return name
    total = ranges[-1][2]
    drawn = 0 if pick is None else pick(total)
    for name, lo, hi in ranges:
        if lo <= drawn < hi:
            return name
    raise ValueError(f"pick({total}) returned {drawn!r}, outside [0, {total})")


def choose_backend(
    routes: list,
    backends: dict,
    default_backend: str,
    target: str,
    host: str | None = None,
    method: str = "GET",
    up: set | None = None,
    scheme: str = "http",
    headers: list | None = None,
    unmatched: str = "default",
    pick=None,
    cookies: dict | None = None,
    port: int | None = None,
    listeners: list | None = None,
) -> str:
    """The outcome of a request: the backend that answers it, or one of the outcome strings
    in the module docstring.

    ``port`` is the port the request arrived on (the listener's), 80 for http and 443 for
    https when not given; a request_redirect without scheme and port keeps it.

    ``unmatched`` is the compile argument: ``default`` sends requests no route selects to the
    default backend (with its fallback), ``not_found`` answers them 404 (:data:`NOT_FOUND`).
    ``cookies`` (name -> value, the request's Cookie header parsed) and ``pick`` only matter
    for a weighted route; see :func:`pick_weighted`."""
    if unmatched not in ("default", "not_found"):
        raise ValueError(unmatched)
    up = set(backends) if up is None else set(up)
    route = select_route(routes, target, host, method, scheme, headers, port, listeners)
    if route is None:
        if unmatched == "not_found":
            return NOT_FOUND
        return resolve_backend(default_backend, backends, up)
    # require_https comes before the filters: a plain HTTP request is first sent to https,
    # and only there gets the redirect or fixed response the route describes.
    if route.get("require_https") and scheme == "http":
        return REDIRECT_HTTPS
    redirect = _filter(route, "request_redirect")
    if redirect is not None:
        status = int(redirect.get("status") or 301)
        arrived = WELL_KNOWN_PORTS[scheme] if port is None else port
        return f"redirect:{status}:{redirect_target(route, target, host, scheme, arrived)}"
    fixed = _filter(route, "fixed_response")
    if fixed is not None:
        return f"fixed:{int(fixed.get('status') or 200)}"
    if "backends" in route:
        wanted = pick_weighted(route["backends"], backends, cookies, pick)
        if wanted is None:
            return "fixed:500"
    else:
        wanted = route["backend"]
    return resolve_backend(wanted, backends, up)


def _split_host_port(host_header: str | None) -> tuple:
    """The Host header's host (as sent, case kept) and its port (an int, or None). An IPv6
    literal keeps its brackets; an empty port (``a.example:``) is no port."""
    m = re.fullmatch(r"(.*?)(?::([0-9]*))?", host_header or "", re.DOTALL)
    port = m.group(2)
    return m.group(1), int(port) if port else None


def _replaced_path(route: dict, path: str, spec: dict | None) -> str:
    """The path after a filter's ``path`` (Gateway API ReplaceFullPath / ReplacePrefixMatch)."""
    if spec is None:
        return path
    if spec["type"] == "full":
        return spec["value"]
    if spec["type"] == "prefix":
        if route.get("match", "prefix") != "prefix":
            raise ValueError("a prefix replacement needs a prefix route")
        # The matched prefix without any trailing slash, so route "/" matches the empty
        # prefix and its whole path is the rest: "/x" becomes value + "/x".
        prefix = route["path"].rstrip("/")
        if not (path == prefix or path.startswith(prefix + "/")):
            raise ValueError(f"{path!r} is not under the route's prefix {prefix!r}")
        rest = path[len(prefix):]
        # rest is empty or starts with '/', so the value's trailing slashes would double it.
        return (spec["value"].rstrip("/") + rest) or "/"
    raise ValueError(spec["type"])


def _split_target(target: str) -> tuple:
    path = request_path(target)
    if path is None:
        raise ValueError(f"{target!r} has no path")
    return path, target[len(path):]  # the query, '?' included, as sent (or "")


def redirect_target(route: dict, target: str, host_header: str | None, scheme: str,
                    port: int | None = None) -> str:
    """The Location of the route's ``request_redirect``, as Gateway API's HTTPRoute
    RequestRedirect defines it.

    - scheme: the filter's, else the request's;
    - host: the filter's, else the Host header without its port (case kept; no header gives
      an empty host);
    - port: the filter's; else none if the filter gives a scheme (that scheme's well-known
      port); else ``port``, the port the request arrived on (Gateway API's "listener port";
      the Host header's port does not count), and when the caller gives none, the request
      scheme's well-known port. A port that is the resulting scheme's well-known one (80 http,
      443 https) is left out;
    - path: ``{type: full}`` replaces it, ``{type: prefix}`` replaces the route's matched
      prefix, no ``path`` keeps it; the query string, '?' included, is always kept as sent.
    """
    spec = _filter(route, "request_redirect")
    if spec is None:
        raise ValueError(f"route {route.get('name')!r} has no request_redirect")
    path, query = _split_target(target)
    new_scheme = spec.get("scheme") or scheme
    sent_host, _sent_port = _split_host_port(host_header)
    new_host = spec.get("host") or sent_host
    if spec.get("port") is not None:
        new_port = int(spec["port"])
    elif spec.get("scheme"):
        new_port = None
    else:
        new_port = port
    if new_port == WELL_KNOWN_PORTS.get(new_scheme):
        new_port = None
    authority = new_host if new_port is None else f"{new_host}:{new_port}"
    return f"{new_scheme}://{authority}{_replaced_path(route, path, spec.get('path'))}{query}"


def rewrite_effects(route: dict, target: str, host_header: str | None) -> tuple:
    """What the route's ``url_rewrite`` does to the request the backend receives:
    (the new Host header, or None when it stays as sent; the new request target). ``host``
    replaces the whole Host header with the value given (no port added); ``path`` is replaced
    as in :func:`redirect_target`; the query string is kept. No url_rewrite: (None, target)."""
    spec = _filter(route, "url_rewrite")
    if spec is None:
        return None, target
    path, query = _split_target(target)
    new_host = spec.get("host") or None
    return new_host, _replaced_path(route, path, spec.get("path")) + query


def header_edits(headers: list, modifier: dict) -> list:
    """The (name, value) header list after a request_ or response_header_modifier.

    Applied in the order of the HAProxy rules the compiler emits: every ``set``, then every
    ``add``, then every ``remove``, each list in its own order.

    - set: every line with the name (compared without case) goes, and one line with the
      user's spelling of the name and the value is appended at the end (HAProxy's
      set-header deletes then adds, so the header moves to the end even when it was there);
    - add: appends a new line (name, value). Gateway API says to append the value to an
      existing header with a comma; HAProxy's add-header adds a second line instead, which
      HTTP reads as the same list, so the reference follows HAProxy;
    - remove: deletes every line with the name (compared without case). Since it runs last,
      a name both set (or added) and removed ends up absent.
    """
    result = list(headers)
    for entry in modifier.get("set") or []:
        name = entry["name"].lower()
        result = [(n, v) for n, v in result if n.lower() != name]
        result.append((entry["name"], entry["value"]))
    for entry in modifier.get("add") or []:
        result.append((entry["name"], entry["value"]))
    for name in modifier.get("remove") or []:
        result = [(n, v) for n, v in result if n.lower() != name.lower()]
    return result


def backend_filter(route: dict, backend: str | None, kind: str) -> dict | None:
    """The ``kind`` filter (``request_header_modifier`` or ``response_header_modifier``) of the
    entry named ``backend`` in the route's weighted ``backends``, or None (no such filter, no
    such entry, no split, or ``backend`` None).

    ``backend`` is the entry the split picked, as :func:`pick_weighted` returns it: before
    fallback, so a fallback answering for it changes nothing (the picked entry's filters still
    apply, and the fallback's own entry, if it has one, does not count), and never a weight-0
    entry, whose filters therefore never apply. The entry's modifiers apply after the route's
    own filters: the request the backend receives is the route's ``request_header_modifier``
    and ``url_rewrite`` (:func:`header_edits`, :func:`rewrite_effects`), then this one's
    ``request_header_modifier``; the response is the route's ``response_header_modifier``,
    then this one's ``response_header_modifier``."""
    if backend is None:
        return None
    for entry in route.get("backends") or []:
        if entry["name"] == backend:
            return next((f for f in entry.get("filters") or [] if f.get("type") == kind), None)
    return None


def redirect_location(target: str, host_header: str, https_port: int = 443) -> str:
    """Where a REDIRECT_HTTPS outcome sends the client: https, the Host header as sent without
    its port (HAProxy keeps its case), the HTTPS listener's port unless 443, and the request
    target, query string included."""
    host = re.sub(r":[0-9]+$", "", host_header)
    return f"https://{host}{'' if https_port == 443 else f':{https_port}'}{target}"
