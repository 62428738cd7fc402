"""Reference semantics of a lay7.ha route table, written independently of the compiler.

It works on the raw, user-facing route table (not the compiler's normalised output) and
implements docs/routing.md directly: match types, host, method and scheme conditions, Gateway
API precedence, require_https redirects and one-hop fallback. Tests compare what the compiled
HAProxy rules do (simulated in haproxy_sim.py, and for real in tests/integration) with what
this module says.

The outcome of a request is a backend name, or :data:`REDIRECT_HTTPS` when the route it
selects has ``require_https`` and it arrived over plain HTTP: the client is redirected to the
same URL over https (no backend, so no fallback, whatever the backends' state).
"""

from __future__ import annotations

import re

# The outcome "redirected to https" (a backend name never holds ':').
REDIRECT_HTTPS = "redirect:https"


def request_path(target: str) -> str | None:
    """What HAProxy's ``path`` fetch returns for an origin-form request target: everything
    before the first '?'. Targets without a leading '/' (``*``, empty) have no path."""
    if not target.startswith("/"):
        return None
    return target.split("?", 1)[0]


def _norm_prefix(path: str) -> str:
    return path[:-1] if path.endswith("/") and path != "/" else path


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
        # As HAProxy's PCRE2 (no UTF) runs it: on the path's bytes, with ASCII-only \d \w \s
        # and '.' matching one byte. A str pattern would make them Unicode-aware.
        return re.fullmatch(want.encode("ascii"), path.encode("utf-8", "surrogateescape")) is not None
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
    # no methods (docs/routing.md, "Precedence").
    return host_key + path_key + (0 if route.get("methods") else 1, 0 if route.get("scheme") else 1, index)


def select_route(routes: list, target: str, host: str | None = None, method: str = "GET",
                 scheme: str = "http") -> dict | None:
    """The route a request over ``scheme`` (``http`` or ``https``) matches, or None (default
    backend)."""
    if scheme not in ("http", "https"):
        raise ValueError(scheme)
    path = request_path(target)
    matching = [
        (precedence(r, i), i)
        for i, r in enumerate(routes)
        if path_matches(r, path) and host_matches(r, host) and method_matches(r, method) and scheme_matches(r, scheme)
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


def choose_backend(
    routes: list,
    backends: dict,
    default_backend: str,
    target: str,
    host: str | None = None,
    method: str = "GET",
    up: set | None = None,
    scheme: str = "http",
) -> str:
    """The backend that answers the request, or REDIRECT_HTTPS."""
    up = set(backends) if up is None else set(up)
    route = select_route(routes, target, host, method, scheme)
    if route is not None and route.get("require_https") and scheme == "http":
        return REDIRECT_HTTPS
    wanted = default_backend if route is None else route["backend"]
    return resolve_backend(wanted, backends, up)


def redirect_location(target: str, host_header: str, https_port: int = 443) -> str:
    """Where a REDIRECT_HTTPS outcome sends the client: https, the Host header as sent without
    its port (HAProxy keeps its case), the HTTPS listener's port unless 443, and the request
    target, query string included."""
    host = re.sub(r":[0-9]+$", "", host_header)
    return f"https://{host}{'' if https_port == 443 else f':{https_port}'}{target}"
