# -*- coding: utf-8 -*-
# Copyright: lay7.ha maintainers
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Route table model, validation, precedence and HAProxy emitters (private).

The public entry point is :func:`compile_routes`; ``lay7.ha.route_compile`` is a thin
wrapper around it. Everything here is a pure function of its arguments: no Ansible
runtime state, no I/O, and the same input always yields byte-identical output, because
both HAProxy nodes must receive identical configurations.

Two compiled forms route identically (the unit and loopback tests prove it):

* ``acl``: one named ACL per condition and ``use_backend`` lines already sorted by
  precedence, since HAProxy evaluates ``use_backend`` in file order, first match wins.
* ``map``: routes without host or method conditions go into two map files, looked up
  once per request (``map_str`` for exact keys, ``map_beg`` for ``/prefix/`` keys, which
  HAProxy indexes as a longest-match prefix tree). Each map value is
  ``<rank>:<backend>`` where rank is the route's position in precedence order; the
  remaining (host, method, regex) routes are ACL rules that override the map result
  only when their rank is lower, so precedence is identical to the ``acl`` form.
"""

from __future__ import annotations

import difflib
import re
from dataclasses import dataclass

from ansible.errors import AnsibleFilterError

DEFAULT_MAP_DIR = "/etc/haproxy/maps"
# Above this many routes, mode=auto compiles to map files. Chosen from
# bench/bench_routes.py measurements, see docs/routing.md ("Choosing the threshold").
DEFAULT_MAP_THRESHOLD = 6

MATCH_TYPES = ("exact", "prefix", "regex")
MODES = ("auto", "acl", "map")
BALANCE_ALGORITHMS = ("roundrobin", "leastconn", "source", "first")
PERSISTENCE_MODES = ("none", "cookie", "source", "stick-table")

ROUTE_KEYS = ("name", "path", "match", "host", "methods", "backend")
BACKEND_KEYS = ("servers", "fallback", "balance", "persistence", "cookie_name", "check_path")
SERVER_KEYS = ("name", "address", "port", "weight", "backup")

EXACT_MAP_NAME = "lay7_routes_exact.map"
PREFIX_MAP_NAME = "lay7_routes_prefix.map"

# Variables used by the map form: the best candidate so far ("<rank>:<backend>")
# and the backend finally chosen.
VAR_HIT = "txn.lay7_hit"
VAR_BACKEND = "txn.lay7_be"

# Names end up in HAProxy identifiers (ACL, backend and server names).
_NAME_RE = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,62}")
# RFC 3986 path characters (pchar and "/"); "%" must start a percent-encoding.
_PATH_RE = re.compile(r"/(?:[A-Za-z0-9\-._~!$&'()*+,;=:@/]|%[0-9A-Fa-f]{2})*")
_CHECK_PATH_RE = re.compile(r"/(?:[A-Za-z0-9\-._~!$&'()*+,;=:@/?]|%[0-9A-Fa-f]{2})*")
_LABEL = r"[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?"
_HOST_RE = re.compile(rf"{_LABEL}(?:\.{_LABEL})*")
_METHOD_RE = re.compile(r"[A-Z][A-Z0-9_-]*")
_COOKIE_RE = re.compile(r"[A-Za-z0-9_.-]+")
_ADDRESS_RE = re.compile(r"[A-Za-z0-9_.:\[\]-]+")
# Characters HAProxy's configuration parser passes through unquoted.
_HAPROXY_BARE_RE = re.compile(r"[A-Za-z0-9/._~%!$&()*+,;=:@^-]+")


def _fail(msg: str) -> None:
    raise AnsibleFilterError(msg)


def _known(names) -> str:
    names = sorted(names)
    return ", ".join(names) if names else "(none)"


def _check_keys(where: str, data: dict, allowed: tuple) -> None:
    for key in sorted(map(str, data)):
        if key not in allowed:
            hint = difflib.get_close_matches(key, allowed, n=1)
            did_you_mean = f" (did you mean '{hint[0]}'?)" if hint else ""
            _fail(f"{where}: unknown key '{key}'{did_you_mean}; allowed: {', '.join(sorted(allowed))}")


def _as_int(where: str, field: str, value, lo: int, hi: int) -> int:
    if isinstance(value, bool):
        _fail(f"{where}: {field} must be an integer, got {value!r}")
    if isinstance(value, str) and re.fullmatch(r"[0-9]+", value.strip()):
        value = int(value.strip())
    if not isinstance(value, int):
        _fail(f"{where}: {field} must be an integer, got {value!r}")
    if not lo <= value <= hi:
        _fail(f"{where}: {field} {value!r} is out of range {lo}..{hi}")
    return int(value)


def _as_name(where: str, field: str, value) -> str:
    if not isinstance(value, str) or not _NAME_RE.fullmatch(value):
        _fail(
            f"{where}: {field} {value!r} is not a valid name "
            "(letters, digits, '_', '.', '-'; starting with a letter or digit; at most 63 characters)"
        )
    return str(value)


def hquote(word: str) -> str:
    """Quote one word for HAProxy's configuration parser (section 2.2 of its manual)."""
    if _HAPROXY_BARE_RE.fullmatch(word):
        return word
    # Strong quoting: nothing is interpreted inside '...'; a literal ' is written as '\''.
    return "'" + word.replace("'", "'\\''") + "'"


# --------------------------------------------------------------------------- model


@dataclass(frozen=True)
class Server:
    name: str
    id: int
    address: str
    port: int
    weight: int
    backup: bool

    def as_dict(self) -> dict:
        return {
            "name": self.name,
            "id": self.id,
            "address": self.address,
            "port": self.port,
            "weight": self.weight,
            "backup": self.backup,
        }


@dataclass(frozen=True)
class Backend:
    name: str
    balance: str
    fallback: str | None
    persistence: str
    cookie_name: str | None
    check_path: str | None
    servers: tuple

    def as_dict(self) -> dict:
        return {
            "name": self.name,
            "balance": self.balance,
            "fallback": self.fallback,
            "persistence": self.persistence,
            "cookie_name": self.cookie_name,
            "check_path": self.check_path,
            "servers": [s.as_dict() for s in self.servers],
        }


@dataclass(frozen=True)
class Route:
    name: str
    index: int
    match: str
    path: str
    host: str | None
    methods: tuple
    backend: str

    @property
    def where(self) -> str:
        return f"route '{self.name}' (index {self.index})"

    @property
    def host_class(self) -> int:
        """0 exact host, 1 wildcard host, 2 any host."""
        if self.host is None:
            return 2
        return 1 if self.host.startswith("*.") else 0

    @property
    def conditioned(self) -> bool:
        """True when the route cannot live in a path-only map."""
        return self.host is not None or bool(self.methods) or self.match == "regex"

    def precedence_key(self) -> tuple:
        """Gateway API order: host exact > wildcard (longer first) > none; exact path >
        prefix (longer first) > regex; with methods > without; then declaration order.
        Host and path strings break ties between routes that can never both match, so
        the emitted order does not depend on how users ordered disjoint routes."""
        host = self.host or ""
        path_class = MATCH_TYPES.index(self.match)  # exact 0, prefix 1, regex 2
        is_regex = self.match == "regex"
        return (
            self.host_class,
            -len(host),
            host,
            path_class,
            0 if is_regex else -len(self.path),
            "" if is_regex else self.path,
            0 if self.methods else 1,
            self.index,
        )

    def as_dict(self) -> dict:
        return {
            "name": self.name,
            "index": self.index,
            "match": self.match,
            "path": self.path,
            "host": self.host,
            "methods": list(self.methods),
            "backend": self.backend,
        }


# ---------------------------------------------------------------------- semantics


def prefix_matches(prefix: str, path: str) -> bool:
    """Path-element prefix match (Kubernetes Ingress / Gateway API ``PathPrefix``).

    ``prefix`` is normalised (no trailing slash unless it is ``/``)."""
    if prefix == "/":
        return path.startswith("/")
    return path == prefix or path.startswith(prefix + "/")


def _host_covers(outer: str | None, inner: str | None) -> bool:
    if outer is None:
        return True
    if inner is None:
        return False
    if outer == inner:
        return True
    if outer.startswith("*."):
        suffix = outer[1:]  # ".example.com"
        return inner.endswith(suffix) and len(inner) > len(suffix)
    return False


def _methods_cover(outer: tuple, inner: tuple) -> bool:
    if not outer:
        return True
    return bool(inner) and set(inner) <= set(outer)


def _path_covers(outer: Route, inner: Route) -> bool:
    if outer.match == "regex":
        return inner.match == "regex" and inner.path == outer.path
    if outer.match == "exact":
        return inner.match == "exact" and inner.path == outer.path
    if inner.match == "regex":
        return outer.path == "/"
    return prefix_matches(outer.path, inner.path)


def _prefix_ancestors(path: str) -> list:
    """Every normalised prefix that matches ``path`` (for the shadow check)."""
    out = ["/"]
    acc = ""
    for part in path.split("/")[1:]:
        if part == "":
            break
        acc += "/" + part
        out.append(acc)
    return out


# --------------------------------------------------------------------- validation


def _normalise_backends(backends) -> dict:
    if not isinstance(backends, dict):
        _fail(f"backends: expected a mapping of backend name to settings, got {type(backends).__name__}")
    if not backends:
        _fail("backends: at least one backend must be defined")
    out = {}
    for raw_name in sorted(backends, key=str):
        name = _as_name("backends", "backend name", raw_name)
        where = f"backend '{name}'"
        spec = backends[raw_name]
        if not isinstance(spec, dict):
            _fail(f"{where}: expected a mapping of settings, got {type(spec).__name__}")
        _check_keys(where, spec, BACKEND_KEYS)

        servers = spec.get("servers")
        if servers is None:
            _fail(f"{where}: servers is required (a non-empty list)")
        if not isinstance(servers, list):
            _fail(f"{where}: servers must be a list, got {type(servers).__name__}")
        if not servers:
            _fail(f"{where}: servers is empty; a backend needs at least one server")
        norm_servers = []
        seen = {}
        for sidx, server in enumerate(servers):
            swhere = f"{where} servers[{sidx}]"
            if not isinstance(server, dict):
                _fail(f"{swhere}: expected a mapping, got {type(server).__name__}")
            _check_keys(swhere, server, SERVER_KEYS)
            if "name" not in server:
                _fail(f"{swhere}: name is required")
            sname = _as_name(swhere, "name", server["name"])
            swhere = f"{where} server '{sname}' (index {sidx})"
            if sname in seen:
                _fail(f"{swhere}: name '{sname}' duplicates servers[{seen[sname]}]")
            seen[sname] = sidx
            address = server.get("address")
            if not isinstance(address, str) or not _ADDRESS_RE.fullmatch(address):
                _fail(f"{swhere}: address {address!r} must be an IP address or host name")
            port = _as_int(swhere, "port", server.get("port", 80), 1, 65535)
            weight = _as_int(swhere, "weight", server.get("weight", 100), 0, 256)
            backup = server.get("backup", False)
            if not isinstance(backup, bool):
                _fail(f"{swhere}: backup must be true or false, got {backup!r}")
            norm_servers.append(Server(sname, sidx + 1, str(address), port, weight, backup))

        balance = spec.get("balance", "roundrobin")
        if balance not in BALANCE_ALGORITHMS:
            _fail(f"{where}: balance {balance!r} is not one of {', '.join(BALANCE_ALGORITHMS)}")
        persistence = spec.get("persistence", "none")
        if persistence not in PERSISTENCE_MODES:
            _fail(f"{where}: persistence {persistence!r} is not one of {', '.join(PERSISTENCE_MODES)}")
        cookie_name = spec.get("cookie_name")
        if persistence == "cookie":
            if cookie_name is None:
                cookie_name = "LAY7_" + re.sub(r"[^A-Z0-9]", "_", name.upper())
            if not isinstance(cookie_name, str) or not _COOKIE_RE.fullmatch(cookie_name):
                _fail(f"{where}: cookie_name {cookie_name!r} must contain only letters, digits, '_', '.', '-'")
        elif cookie_name is not None:
            _fail(f"{where}: cookie_name {cookie_name!r} is set but persistence is {persistence!r}, not 'cookie'")
        check_path = spec.get("check_path")
        if check_path is not None and (not isinstance(check_path, str) or not _CHECK_PATH_RE.fullmatch(check_path)):
            _fail(f"{where}: check_path {check_path!r} must be a URI path starting with '/'")
        fallback = spec.get("fallback")
        if fallback is not None and not isinstance(fallback, str):
            _fail(f"{where}: fallback must be a backend name, got {fallback!r}")
        out[name] = Backend(
            name=name,
            balance=str(balance),
            fallback=None if fallback is None else str(fallback),
            persistence=str(persistence),
            cookie_name=None if cookie_name is None else str(cookie_name),
            check_path=None if check_path is None else str(check_path),
            servers=tuple(norm_servers),
        )

    for be in out.values():
        if be.fallback is None:
            continue
        if be.fallback == be.name:
            _fail(f"backend '{be.name}': fallback '{be.fallback}' names the backend itself (a fallback cycle)")
        if be.fallback not in out:
            _fail(f"backend '{be.name}': fallback '{be.fallback}' is not defined; known: {_known(out)}")
    return out


def _normalise_route(idx: int, raw, backends: dict) -> Route:
    where = f"route index {idx}"
    if not isinstance(raw, dict):
        _fail(f"{where}: expected a mapping, got {type(raw).__name__}")
    if "name" not in raw:
        _fail(f"{where}: name is required")
    name = _as_name(where, "name", raw["name"])
    where = f"route '{name}' (index {idx})"
    _check_keys(where, raw, ROUTE_KEYS)

    match = raw.get("match", "prefix")
    if match not in MATCH_TYPES:
        _fail(f"{where}: match {match!r} is not one of {', '.join(MATCH_TYPES)}")

    if "path" not in raw:
        _fail(f"{where}: path is required")
    path = raw["path"]
    if not isinstance(path, str) or not path.startswith("/"):
        _fail(f"{where}: path {path!r} must be a string starting with '/'")
    path = str(path)
    if match == "regex":
        if any(ord(c) < 0x21 or ord(c) > 0x7E for c in path):
            _fail(
                f"{where}: path {path!r} contains whitespace, control or non-ASCII characters; "
                "use escapes such as \\x20 in the regex"
            )
        try:
            re.compile(path)
        except re.error as exc:
            _fail(f"{where}: path {path!r} is not a valid regex: {exc}")
    else:
        if not path.isascii():
            _fail(f"{where}: path {path!r} contains non-ASCII characters; percent-encode them (UTF-8), e.g. /caf%C3%A9")
        if not _PATH_RE.fullmatch(path):
            _fail(
                f"{where}: path {path!r} contains characters not allowed in a URI path "
                "(no whitespace, '?', '#', quotes; '%' must start a %XX escape)"
            )
        if match == "prefix":
            if path.endswith("/") and path != "/":
                path = path[:-1]  # a trailing slash is ignored
            if path != "/" and "" in path.split("/")[1:]:
                _fail(f"{where}: path {raw['path']!r} contains an empty segment ('//')")
        if any(seg in (".", "..") for seg in path.split("/")[1:]):
            _fail(f"{where}: path {raw['path']!r} contains a '.' or '..' segment")

    host = raw.get("host")
    if host is not None:
        if not isinstance(host, str):
            _fail(f"{where}: host must be a string, got {host!r}")
        norm = host.lower()
        bare = norm[2:] if norm.startswith("*.") else norm
        if not _HOST_RE.fullmatch(bare) or len(bare) > 253 or ("." not in bare and norm.startswith("*.")):
            _fail(
                f"{where}: host {host!r} is not a host name or a '*.example.com' wildcard "
                "(no port, no scheme, '*' only as the whole first label)"
            )
        host = str(norm)

    methods = raw.get("methods", [])
    if methods is None:
        methods = []
    if not isinstance(methods, list):
        _fail(f"{where}: methods must be a list, got {methods!r}")
    norm_methods = set()
    for midx, method in enumerate(methods):
        if not isinstance(method, str) or not _METHOD_RE.fullmatch(method.upper()):
            _fail(f"{where}: methods[{midx}] {method!r} is not an HTTP method name")
        norm_methods.add(str(method).upper())

    if "backend" not in raw:
        _fail(f"{where}: backend is required")
    backend = raw["backend"]
    if not isinstance(backend, str) or backend not in backends:
        _fail(f"{where}: backend {backend!r} is not defined; known: {_known(backends)}")

    return Route(name, idx, str(match), path, host, tuple(sorted(norm_methods)), str(backend))


def _check_shadowing(ordered: list) -> None:
    """Reject routes that a higher-precedence route fully covers: they can never match."""
    position = {id(r): i for i, r in enumerate(ordered)}
    by_path = {}
    for r in ordered:
        by_path.setdefault((r.match, r.path), []).append(r)
    for inner in ordered:
        candidates = list(by_path.get((inner.match, inner.path), []))
        if inner.match == "regex":
            candidates += by_path.get(("prefix", "/"), [])
        else:
            for anc in _prefix_ancestors(inner.path):
                if inner.match == "prefix" and anc == inner.path:
                    continue  # already in the same-key candidates
                candidates += by_path.get(("prefix", anc), [])
        for outer in candidates:
            if outer is inner or position[id(outer)] > position[id(inner)]:
                continue
            if (
                _host_covers(outer.host, inner.host)
                and _methods_cover(outer.methods, inner.methods)
                and _path_covers(outer, inner)
            ):
                same = (outer.match, outer.path, outer.host, outer.methods) == (
                    inner.match,
                    inner.path,
                    inner.host,
                    inner.methods,
                )
                what = "duplicates" if same else "is fully shadowed by"
                _fail(
                    f"{inner.where}: path {inner.path!r} ({inner.match}"
                    f"{', host ' + inner.host if inner.host else ''}"
                    f"{', methods ' + ','.join(inner.methods) if inner.methods else ''}) "
                    f"{what} route '{outer.name}' (index {outer.index}, {outer.match} {outer.path!r}"
                    f"{', host ' + outer.host if outer.host else ''}"
                    f"{', methods ' + ','.join(outer.methods) if outer.methods else ''}), "
                    "which has higher precedence; it could never match"
                )


def normalise(routes, backends, default_backend) -> tuple:
    """Validate and normalise; return (routes in precedence order, backends by name)."""
    norm_backends = _normalise_backends(backends)
    if not isinstance(default_backend, str) or default_backend not in norm_backends:
        _fail(f"default_backend {default_backend!r} is not defined; known: {_known(norm_backends)}")
    if routes is None:
        routes = []
    if not isinstance(routes, list):
        _fail(f"routes: expected a list of route mappings, got {type(routes).__name__}")
    norm_routes = []
    names = {}
    for idx, raw in enumerate(routes):
        route = _normalise_route(idx, raw, norm_backends)
        if route.name in names:
            _fail(f"{route.where}: name '{route.name}' duplicates route index {names[route.name]}; route names must be unique")
        names[route.name] = idx
        norm_routes.append(route)
    ordered = sorted(norm_routes, key=Route.precedence_key)
    _check_shadowing(ordered)
    return ordered, norm_backends


# ----------------------------------------------------------------------- emitters


def _route_acls(route: Route) -> tuple:
    """ACL declaration lines for one route and the condition that combines them."""
    base = f"route_{route.name}"
    lines = []
    conds = []
    if route.host is not None:
        acl = f"{base}_host"
        fetch = "req.hdr(host),field(1,:),lower"
        if route.host.startswith("*."):
            lines.append(f"acl {acl} {fetch} -m end {hquote(route.host[1:])}")
        else:
            lines.append(f"acl {acl} {fetch} -m str {hquote(route.host)}")
        conds.append(acl)
    acl = f"{base}_path"
    if route.match == "exact":
        lines.append(f"acl {acl} path -m str {hquote(route.path)}")
    elif route.match == "prefix":
        if route.path == "/":
            lines.append(f"acl {acl} path -m beg /")
        else:
            lines.append(f"acl {acl} path -m str {hquote(route.path)}")
            lines.append(f"acl {acl} path -m beg {hquote(route.path + '/')}")
    else:
        # Always anchored: the whole path must match, never a substring.
        lines.append(f"acl {acl} path -m reg {hquote('^(?:' + route.path + ')$')}")
    conds.append(acl)
    if route.methods:
        acl = f"{base}_method"
        lines.append(f"acl {acl} method {' '.join(route.methods)}")
        conds.append(acl)
    return lines, " ".join(conds)


def _usable(backend: str) -> str:
    return f"{{ nbsrv({backend}) gt 0 }}"


def _default_lines(default: Backend) -> list:
    lines = []
    if default.fallback:
        lines.append(f"use_backend {default.fallback} if !{_usable(default.name)} {_usable(default.fallback)}")
    lines.append(f"default_backend {default.name}")
    return lines


def emit_acl(ordered: list, backends: dict, default_backend: str) -> list:
    lines = []
    for route in ordered:
        acls, cond = _route_acls(route)
        lines.extend(acls)
        be = backends[route.backend]
        if be.fallback:
            # Only when the backend has no usable server and its fallback has. The cheap
            # nbsrv() test comes first: while the backend is healthy the route's ACLs are
            # then evaluated once per request, not twice.
            lines.append(f"use_backend {be.fallback} if !{_usable(be.name)} {_usable(be.fallback)} {cond}")
        lines.append(f"use_backend {be.name} if {cond}")
    lines.extend(_default_lines(backends[default_backend]))
    return lines


def emit_map(ordered: list, backends: dict, default_backend: str, map_dir: str) -> tuple:
    exact = {}
    prefix = {}
    conditioned = []
    for rank, route in enumerate(ordered):
        value = f"{rank}:{route.backend}"
        if route.conditioned:
            conditioned.append((rank, route))
        elif route.match == "exact":
            exact.setdefault(route.path, value)
        elif route.path == "/":
            prefix.setdefault("/", value)
        else:
            # "/a" itself is an exact key; "/a/" a prefix key. Routes are visited in
            # precedence order, so an exact route for the same key keeps the key.
            exact.setdefault(route.path, value)
            prefix.setdefault(route.path + "/", value)
    exact_path = f"{map_dir.rstrip('/')}/{EXACT_MAP_NAME}"
    prefix_path = f"{map_dir.rstrip('/')}/{PREFIX_MAP_NAME}"
    sentinel = f"{len(ordered)}:{default_backend}"

    lines = [
        f"http-request set-var({VAR_HIT}) path,map_str({hquote(exact_path)})",
        f"http-request set-var({VAR_HIT}) path,map_beg({hquote(prefix_path)},{sentinel}) "
        f"if !{{ var({VAR_HIT}) -m found }}",
    ]
    rules = []
    for rank, route in conditioned:
        acls, cond = _route_acls(route)
        lines.extend(acls)
        rules.append(
            f"http-request set-var({VAR_HIT}) str({rank}:{route.backend}) if {cond} "
            f"{{ var({VAR_HIT}),field(1,:) -m int gt {rank} }}"
        )
    lines.extend(rules)
    lines.append(f"http-request set-var({VAR_BACKEND}) var({VAR_HIT}),field(2,:)")
    for be in backends.values():
        if be.fallback:
            lines.append(
                f"use_backend {be.fallback} if {{ var({VAR_BACKEND}) -m str {be.name} }} "
                f"!{_usable(be.name)} {_usable(be.fallback)}"
            )
    lines.append(f"use_backend %[var({VAR_BACKEND})] if {{ var({VAR_BACKEND}) -m found }}")
    lines.extend(_default_lines(backends[default_backend]))

    def content(entries: dict) -> str:
        return "".join(f"{key} {entries[key]}\n" for key in sorted(entries))

    maps = [
        {"name": EXACT_MAP_NAME, "path": exact_path, "content": content(exact)},
        {"name": PREFIX_MAP_NAME, "path": prefix_path, "content": content(prefix)},
    ]
    return lines, maps


def fallback_servers(backend: Backend, backends: dict) -> list:
    """The fallback backend's servers, to stand in this backend as backup servers.

    HAProxy cannot retry a request in another backend: the frontend only picks the
    fallback for requests that *arrive* once this backend has no usable server. A request
    already sent to a server that just died is retried (redispatched) within this
    backend, so the fallback's servers must be here too, as ``backup`` servers that
    take over once the dead server is marked down. They ``track`` the fallback's own
    servers: one health check per real server, one state. The template adds
    ``option allbackups`` so they share the load as the fallback's servers would.
    """
    if backend.fallback is None:
        return []
    taken = {s.name for s in backend.servers}
    next_id = max((s.id for s in backend.servers), default=0) + 1
    out = []
    # The fallback's own backup servers stay its business: only its active servers stand in.
    active = [srv for srv in backends[backend.fallback].servers if not srv.backup]
    for offset, srv in enumerate(active):
        name = f"fallback_{srv.name}"
        if name in taken:
            _fail(
                f"backend '{backend.name}': server name '{name}' is reserved for the server "
                f"'{srv.name}' of its fallback '{backend.fallback}'; rename it"
            )
        out.append({
            "name": name,
            "id": next_id + offset,
            "address": srv.address,
            "port": srv.port,
            "weight": srv.weight,
            "track": f"{backend.fallback}/{srv.name}",
        })
    return out


def compile_routes(
    routes,
    backends,
    default_backend,
    map_dir: str = DEFAULT_MAP_DIR,
    map_threshold: int = DEFAULT_MAP_THRESHOLD,
    mode: str = "auto",
) -> dict:
    """Validate a route table and compile it; see docs/development.md for the contract."""
    if mode not in MODES:
        _fail(f"mode {mode!r} is not one of {', '.join(MODES)}")
    map_threshold = _as_int("route_compile", "map_threshold", map_threshold, 0, 10**9)
    if not isinstance(map_dir, str) or not re.fullmatch(r"/[A-Za-z0-9_./-]*", map_dir) or "/../" in map_dir + "/":
        _fail(f"map_dir {map_dir!r} must be an absolute path of letters, digits, '_', '.', '-', '/'")
    map_dir = str(map_dir)

    ordered, norm_backends = normalise(routes, backends, default_backend)
    if mode == "auto":
        mode = "map" if len(ordered) > map_threshold else "acl"
    if mode == "map":
        frontend, maps = emit_map(ordered, norm_backends, default_backend, map_dir)
    else:
        frontend, maps = emit_acl(ordered, norm_backends, default_backend), []
    return {
        "mode": mode,
        "default_backend": str(default_backend),
        "frontend": frontend,
        "maps": maps,
        "backends": [
            dict(norm_backends[name].as_dict(), fallback_servers=fallback_servers(norm_backends[name], norm_backends))
            for name in sorted(norm_backends)
        ],
        "routes": [r.as_dict() for r in ordered],
    }
