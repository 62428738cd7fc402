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
* ``map``: routes without a wildcard host go into map files, looked up once per request:
  exact and prefix routes with ``map_str`` for exact keys and ``map_beg`` for ``/prefix/``
  keys (HAProxy indexes them as a longest-match prefix tree), regex routes without methods
  with ``map_reg`` (keys are regexes tried in file order, first match wins; the file is in
  rank order). Host-less routes are keyed by path; routes with an exact host by
  ``<host>:<path>`` (a regex key: the escaped host, ``:`` and the anchored regex), looked up
  on the same host value the acl form compares (the ``Host`` header, port removed,
  lower-cased) joined to the path by ``:``; exact and prefix routes with methods by
  ``<METHOD>:<host>:<path>`` (empty host for host-less routes, one key per method), looked
  up with the request method prepended. A method name and a host never hold a ``:`` once
  the port is removed, and a route regex only matches text starting with ``/``, so a key
  matches only its own method and host. Each map value is ``<rank>:<backend>`` where rank
  is the route's position in precedence order, and a lower rank wins everywhere. Exact
  hosts come first in that order, so among method-less exact and prefix routes a host map
  hit outranks any path map hit and the host maps are looked up first; the method and regex
  maps and the remaining (wildcard host, regex with methods) routes, which are ACL rules,
  then override that result only when their rank is lower, so precedence is identical to
  the ``acl`` form.

A route may be limited to one ``scheme`` (``{ ssl_fc }`` or ``!{ ssl_fc }``: an https bind
and an http bind share the frontend), and ``require_https`` sends a plain HTTP request the
route selects to the reserved backend ``lay7_https_redirect`` (the template defines it: a
redirect to the same URL over https) at the route's position in precedence order, so a more
specific route without it still wins. No map key can express either, so such routes stay
rules in the ``map`` form, like wildcard-host routes.
"""

from __future__ import annotations

import difflib
import ipaddress
import re
from dataclasses import dataclass

from ansible.errors import AnsibleFilterError
from ansible_collections.lay7.ha.plugins.plugin_utils import _guard
from ansible_collections.lay7.ha.plugins.plugin_utils import _route_actions as _actions
from ansible_collections.lay7.ha.plugins.plugin_utils._route_regex import RegexRejected, check_regex

DEFAULT_MAP_DIR = "/etc/haproxy/maps"
# Above this many routes, mode=auto compiles to map files. Chosen from
# bench/bench_routes.py measurements, see docs/routing.md ("Choosing the threshold").
DEFAULT_MAP_THRESHOLD = 6
# Most frontend lines (ACLs and rules) a compiled table may have. HAProxy's configuration
# check (haproxy -c, which the role runs before every reload) slows down faster than
# quadratically with them: on the development machine 0.32 s at 7,300 lines, 1.3 s at 12,000,
# 3.1 s at 18,300 and 22 s at 36,600 (bench/results/routes-compile.json). At 8,000 the
# costliest shape measured (host + methods + prefix with fallbacks) stays near 0.6 s, more
# than three times under the 2 s budget; see docs/routing.md ("Limits").
MAX_FRONTEND_LINES = 8000

MATCH_TYPES = ("exact", "prefix", "regex")
MODES = ("auto", "acl", "map")
BALANCE_ALGORITHMS = ("roundrobin", "leastconn", "source", "first")
PERSISTENCE_MODES = ("none", "cookie", "source", "stick-table")

SCHEMES = ("http", "https")
ROUTE_KEYS = ("name", "path", "match", "host", "methods", "headers", "query", "scheme", "listener", "require_https",
              "backend", "backends", "filters", "timeouts")
LISTENER_KEYS = ("name", "port", "hostnames", "tls", "builtin")
# What requests no route selects get: the default backend, or a 404 from HAProxy.
UNMATCHED = ("default", "not_found")
NOT_FOUND_BODY = "no route for this request\n"
BACKEND_KEYS = ("servers", "fallback", "balance", "persistence", "cookie_name", "check_path", "protocol")
# How HAProxy speaks to a backend's servers: HTTP/1.1, or HTTP/2 without TLS (h2c, prior
# knowledge: "proto h2" on the server line, health checks too).
PROTOCOLS = ("http1", "h2c")
SERVER_KEYS = ("name", "address", "port", "weight", "backup")

# The backend a request over plain HTTP goes to when the route it selects has require_https:
# the role's template defines it (no servers, a redirect to the same URL over https). Reserved:
# a user backend of this name is refused.
HTTPS_REDIRECT_BACKEND = "lay7_https_redirect"
# The condition "the request arrived over TLS" (a bind with "ssl" in the same frontend).
SSL_FC = "{ ssl_fc }"

EXACT_MAP_NAME = "lay7_routes_exact.map"
PREFIX_MAP_NAME = "lay7_routes_prefix.map"
HOST_EXACT_MAP_NAME = "lay7_routes_host_exact.map"
HOST_PREFIX_MAP_NAME = "lay7_routes_host_prefix.map"
METHOD_EXACT_MAP_NAME = "lay7_routes_method_exact.map"
METHOD_PREFIX_MAP_NAME = "lay7_routes_method_prefix.map"
REGEX_MAP_NAME = "lay7_routes_regex.map"
HOST_REGEX_MAP_NAME = "lay7_routes_host_regex.map"

# Variables used by the map form: the best candidate so far ("<rank>:<backend>"), the
# backend finally chosen, and for host maps the path and the "<host>:<path>" lookup key; for
# method maps the "<METHOD>:<host>:<path>" and "<METHOD>::<path>" lookup keys, the rank of the
# best candidate so far and the candidate a method map lookup found.
VAR_HIT = "txn.lay7_hit"
VAR_BACKEND = "txn.lay7_be"
VAR_PATH = "txn.lay7_path"
VAR_HOST_KEY = "txn.lay7_hostpath"
VAR_METHOD_HOST_KEY = "txn.lay7_mhostpath"
VAR_METHOD_KEY = "txn.lay7_mpath"
VAR_RANK = "txn.lay7_rank"
# The rank of "no route matched" in the map form; route ranks are their positions (0, 1, ...),
# and a table is far below a billion routes (HAProxy compares ranks as 64-bit integers).
NO_ROUTE_RANK = 999999999
VAR_CANDIDATE = "txn.lay7_cand"

# The host value routes compare (both forms): the whole Host header (req.fhdr; req.hdr would
# split "a.example.com,b.example.com" into two values, which an ACL tries one by one but a
# variable cannot hold), the port removed, lower-cased. HAProxy refuses two different Host
# headers (400) and merges identical ones, so there is one value.
HOST_FETCH = "req.fhdr(host),field(1,:),lower"

# Names end up in HAProxy identifiers (ACL, backend and server names).
_NAME_RE = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,62}")
# RFC 3986 path characters (pchar and "/"); "%" must start a percent-encoding.
_PATH_RE = re.compile(r"/(?:[A-Za-z0-9\-._~!$&'()*+,;=:@/]|%[0-9A-Fa-f]{2})*")
# Without the single quote (legal in RFC 3986): it is HAProxy's quoting character.
_CHECK_PATH_RE = re.compile(r"/(?:[A-Za-z0-9\-._~!$&()*+,;=:@/?]|%[0-9A-Fa-f]{2})*")
_LABEL = r"[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?"
_HOST_RE = re.compile(rf"{_LABEL}(?:\.{_LABEL})*")
_METHOD_RE = re.compile(r"[A-Z][A-Z0-9_-]*")
# Sent in a Set-Cookie on every response: a short token starting with a letter.
_COOKIE_RE = re.compile(r"[A-Za-z][A-Za-z0-9_.-]{0,63}")
# RFC 1123 host name label (letters, digits, '-'; not starting or ending with '-').
_HOST_LABEL_RE = re.compile(r"[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?")
# Characters HAProxy's configuration parser passes through unquoted.
_HAPROXY_BARE_RE = re.compile(r"[A-Za-z0-9/._~%!$&()*+,;=:@^-]+")


def _fail(msg: str) -> None:
    raise AnsibleFilterError(msg)


# Longer values are cut in messages: a 100,000-character regex must not become the message.
_SHOW_MAX = 80


def _show(value) -> str:
    """repr() of a value for an error message, bounded in length and never raising (Python
    refuses to print an int of more than 4,300 digits, and a hostile object's repr may fail)."""
    if isinstance(value, int) and not isinstance(value, bool) and value.bit_length() > 64:
        return f"an integer of about {int(value.bit_length() * 0.30103) + 1} digits"
    try:
        text = repr(value)
    except Exception:  # noqa: BLE001 - any failure of a foreign __repr__ must not crash the filter
        return f"a value of type {type(value).__name__}"
    if len(text) > _SHOW_MAX:
        length = f" ({len(value)} characters)" if isinstance(value, str) else ""
        return f"{text[:_SHOW_MAX - 20]}...{text[-12:]}{length}"
    return text


def _known(names) -> str:
    names = sorted(names)
    return ", ".join(names) if names else "(none)"


def _sort_key(key) -> str:
    """Order keys of any type (YAML allows int or null keys) without str(), which raises for
    an int of more than 4,300 digits."""
    return key if isinstance(key, str) else _show(key)


def _check_keys(where: str, data: dict, allowed: tuple) -> None:
    for key in sorted(data, key=_sort_key):
        if key not in allowed:
            hint = difflib.get_close_matches(key, allowed, n=1) if isinstance(key, str) else []
            did_you_mean = f" (did you mean '{hint[0]}'?)" if hint else ""
            _fail(f"{where}: unknown key {_show(key)}{did_you_mean}; allowed: {', '.join(sorted(allowed))}")


def _as_int(where: str, field: str, value, lo: int, hi: int) -> int:
    if isinstance(value, bool):
        _fail(f"{where}: {field} must be an integer, got {_show(value)}")
    # Digit strings come from YAML/Jinja ("8080"). Only plain ASCII digits, no sign, space or
    # newline, and no more than the largest bound needs: int() of a 5,000-digit string raises
    # a ValueError that names nothing, and its value would be out of range anyway.
    if isinstance(value, str) and value.isascii() and value.isdigit() and len(value) <= len(str(hi)):
        value = int(value)
    if not isinstance(value, int):
        _fail(f"{where}: {field} must be an integer {lo}..{hi}, got {_show(value)}")
    if not lo <= value <= hi:
        _fail(f"{where}: {field} {_show(value)} is out of range {lo}..{hi}")
    return int(value)


def _as_name(where: str, field: str, value) -> str:
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        _fail(f"{where}: {field} {_show(value)} must be a string, got a number (quote it in YAML)")
    if not isinstance(value, str) or not _NAME_RE.fullmatch(value):
        _fail(
            f"{where}: {field} {_show(value)} is not a valid name "
            "(letters, digits, '_', '.', '-'; starting with a letter or digit; at most 63 characters)"
        )
    return str(value)


def _server_address(where: str, value) -> str:
    """A server address: an IPv4/IPv6 literal (parsed by ``ipaddress``, never matched by a
    pattern) or an RFC 1123 host name, without a port. Returns the address as HAProxy gets it."""
    field = f"address {_show(value)}"
    if not isinstance(value, str) or not value:
        _fail(f"{where}: {field} must be an IP address or host name (a non-empty string)")
    # Checked first, so a newline (a YAML '|' block adds one) never reaches a config line.
    if any(ord(c) < 0x21 or ord(c) > 0x7E for c in value):
        _fail(f"{where}: {field} contains whitespace, control or non-ASCII characters")
    try:
        ip = ipaddress.ip_address(value)
    except ValueError:
        ip = None
    if ip is not None:
        if "%" in value:
            _fail(f"{where}: {field} has an IPv6 zone index ('%'); HAProxy cannot use it in a server address")
        try:
            # Loopback servers are fine (a local service); link-local ones need a zone HAProxy cannot take.
            _guard.ip_fit(ip, {"loopback": "allow", "link_local": False})
        except _guard.InputError as exc:
            _fail(f"{where}: {field} {exc}")
        return str(ip)
    if value.startswith("[") or value.endswith("]"):
        _fail(f"{where}: {field} must be a bare IPv6 address without brackets (the port goes in 'port')")
    host, sep, port = value.rpartition(":")
    if sep and port.isdigit() and host and ":" not in host:
        _fail(f"{where}: {field} includes a port; give the address alone and the port in 'port'")
    if ":" in value:
        _fail(f"{where}: {field} is not a valid IPv6 address")
    labels = value[:-1].split(".") if value.endswith(".") else value.split(".")
    if len(labels) <= 4 and all(re.fullmatch(r"0[xX][0-9A-Fa-f]*|[0-9]+", label) for label in labels):
        # 0x0, 0x7f000001, 127.1: the C resolver (inet_aton) reads these as IPv4 addresses.
        _fail(f"{where}: {field} is a numeric (hex, octal or short) IPv4 spelling, not a valid IPv4 address or host name")
    if labels[-1].isdigit():
        # An all-numeric last label is an IPv4 address (or a typo of one), never a host name:
        # 999.999.999.999, 192.000.002.031 (leading zeros read as octal by some resolvers), 0.
        _fail(f"{where}: {field} is not a valid IPv4 address (four numbers 0-255 without leading zeros)")
    if len(value) > 253 or not all(_HOST_LABEL_RE.fullmatch(label) for label in labels):
        _fail(
            f"{where}: {field} is neither an IP address nor an RFC 1123 host name "
            "(labels of letters, digits and '-', at most 63 characters each, 253 in all)"
        )
    return value


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
    protocol: str = "http1"

    def as_dict(self) -> dict:
        return {
            "name": self.name,
            "balance": self.balance,
            "fallback": self.fallback,
            "persistence": self.persistence,
            "cookie_name": self.cookie_name,
            "check_path": self.check_path,
            "protocol": self.protocol,
            "servers": [s.as_dict() for s in self.servers],
        }


@dataclass(frozen=True)
class Listener:
    """A port the frontend listens on, and optionally the host names it serves. ``tls`` and
    ``builtin`` are for the role (whether it binds the port with TLS, whether it binds it
    already as its HTTP or HTTPS port); routing only uses the port and the names."""

    name: str
    port: int
    hostnames: tuple = ()
    tls: bool = False
    builtin: bool = False

    def covers(self, host: str | None) -> bool:
        """True when a route with ``host`` can match a request this listener accepts."""
        if not self.hostnames or host is None:
            return True
        for name in self.hostnames:
            if _host_covers(name, host) or _host_covers(host, name):
                return True
        return False

    def as_dict(self) -> dict:
        return {"name": self.name, "port": self.port, "hostnames": list(self.hostnames), "tls": self.tls,
                "builtin": self.builtin}


@dataclass(frozen=True)
class Route:
    name: str
    index: int
    match: str
    path: str
    host: str | None
    methods: tuple
    backend: str | None
    scheme: str | None = None
    require_https: bool = False
    listener: Listener | None = None
    headers: tuple = ()  # _route_actions.Condition, the header matches
    query: tuple = ()  # _route_actions.Condition, the query-parameter matches
    actions: _actions.Actions = _actions.Actions()

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
    def target(self) -> str:
        """What the route's decision names: its backend, or ``@<name>`` when the route has
        actions (filters, a weighted split, timeouts) that run once it is chosen."""
        return f"@{self.name}" if self.actions else self.backend

    @property
    def matched_conditions(self) -> frozenset:
        """The header and query conditions, for the shadow check (all must match)."""
        return frozenset(self.headers) | frozenset(self.query)

    @property
    def scheme_bound(self) -> bool:
        """True when what the route does depends on the scheme (a scheme condition or
        require_https) or on the listener the request arrived on: no map key can say that, so
        the route stays a rule in the map form."""
        return self.scheme is not None or self.require_https or self.listener is not None

    @property
    def conditioned(self) -> bool:
        """True when the route cannot live in a path-only map."""
        return (self.host is not None or bool(self.methods) or self.match == "regex" or self.scheme_bound
                or bool(self.headers or self.query))

    @property
    def host_mapped(self) -> bool:
        """True when the map form looks the route up in a host map (exact host, no methods,
        exact or prefix path, not scheme-bound)."""
        return (self.host_class == 0 and not self.methods and self.match != "regex" and not self.scheme_bound
                and not (self.headers or self.query))

    @property
    def method_mapped(self) -> bool:
        """True when the map form looks the route up in the method maps (methods, an exact
        host or none, exact or prefix path, not scheme-bound)."""
        return (bool(self.methods) and self.host_class != 1 and self.match != "regex" and not self.scheme_bound
                and not (self.headers or self.query))

    @property
    def regex_mapped(self) -> bool:
        """True when the map form looks the route up in a regex map (a regex, an exact host or
        none, no methods, not scheme-bound)."""
        return (self.match == "regex" and not self.methods and self.host_class != 1 and not self.scheme_bound
                and not (self.headers or self.query))

    @property
    def ruled(self) -> bool:
        """True when the route stays an ACL rule in the map form."""
        return self.conditioned and not (self.host_mapped or self.method_mapped or self.regex_mapped)

    def precedence_key(self) -> tuple:
        """Gateway API order: host exact > wildcard (longer first) > none; exact path >
        prefix (longer first) > regex; with methods > without; more header matches first,
        then more query-parameter matches; with a scheme > without; then declaration order. Host and path strings, and the scheme, break ties between
        routes that can never both match, so the emitted order does not depend on how users
        ordered disjoint routes. require_https is an action, not a condition: it does not
        change the order."""
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
            -len(self.headers),
            -len(self.query),
            0 if self.scheme else 1,
            self.scheme or "",
            0 if self.listener else 1,
            self.listener.name if self.listener else "",
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
            "scheme": self.scheme,
            "require_https": self.require_https,
            "backend": self.backend,
            "listener": self.listener.name if self.listener else None,
            "headers": [c.as_dict() for c in self.headers],
            "query": [c.as_dict() for c in self.query],
            **self.actions.as_dict(),
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
    for raw_name in sorted(backends, key=_sort_key):
        name = _as_name("backends", "backend name", raw_name)
        if name == HTTPS_REDIRECT_BACKEND:
            _fail(
                f"backends: backend name '{name}' is reserved for the redirect of require_https routes "
                "(the role defines that backend); choose another name"
            )
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
            address = _server_address(swhere, server.get("address"))
            port = _as_int(swhere, "port", server.get("port", 80), 1, 65535)
            weight = _as_int(swhere, "weight", server.get("weight", 100), 0, 256)
            backup = server.get("backup", False)
            if not isinstance(backup, bool):
                _fail(f"{swhere}: backup must be true or false, got {_show(backup)}")
            norm_servers.append(Server(sname, sidx + 1, str(address), port, weight, backup))

        balance = spec.get("balance", "roundrobin")
        if balance not in BALANCE_ALGORITHMS:
            _fail(f"{where}: balance {_show(balance)} is not one of {', '.join(BALANCE_ALGORITHMS)}")
        persistence = spec.get("persistence", "none")
        if persistence not in PERSISTENCE_MODES:
            _fail(f"{where}: persistence {_show(persistence)} is not one of {', '.join(PERSISTENCE_MODES)}")
        cookie_name = spec.get("cookie_name")
        if persistence == "cookie":
            if cookie_name is None:
                cookie_name = "LAY7_" + re.sub(r"[^A-Z0-9]", "_", name.upper())
            if not isinstance(cookie_name, str) or not _COOKIE_RE.fullmatch(cookie_name):
                _fail(
                    f"{where}: cookie_name {_show(cookie_name)} must start with a letter and contain only letters, digits,"
                    " '_', '.', '-' (at most 64 characters)"
                )
        elif cookie_name is not None:
            _fail(f"{where}: cookie_name {_show(cookie_name)} is set but persistence is {_show(persistence)}, not 'cookie'")
        check_path = spec.get("check_path")
        if check_path is not None and (not isinstance(check_path, str) or not _CHECK_PATH_RE.fullmatch(check_path)):
            _fail(f"{where}: check_path {_show(check_path)} must be a URI path starting with '/'")
        # The same path rules as the role's own health_check_path: no empty, '.' or '..'
        # segments (a '//host' path reads as a network path to some servers), no encoding.
        if check_path is not None and ("//" in check_path or "%" in check_path or any(
                seg in (".", "..") for seg in check_path.split("?", 1)[0].split("/"))):
            _fail(f"{where}: check_path {_show(check_path)} must not contain '//', '.', '..' segments or percent-encoding")
        fallback = spec.get("fallback")
        if fallback is not None and not isinstance(fallback, str):
            _fail(f"{where}: fallback must be a backend name, got {_show(fallback)}")
        protocol = spec.get("protocol", "http1")
        if not isinstance(protocol, str) or protocol not in PROTOCOLS:
            _fail(f"{where}: protocol {_show(protocol)} is not one of {', '.join(PROTOCOLS)}")
        out[name] = Backend(
            name=name,
            balance=str(balance),
            fallback=None if fallback is None else str(fallback),
            persistence=str(persistence),
            cookie_name=None if cookie_name is None else str(cookie_name),
            check_path=None if check_path is None else str(check_path),
            servers=tuple(norm_servers),
            protocol=str(protocol),
        )

    for be in out.values():
        if be.fallback is None:
            continue
        if be.fallback == be.name:
            _fail(f"backend '{be.name}': fallback '{be.fallback}' names the backend itself (a fallback cycle)")
        if be.fallback not in out:
            _fail(f"backend '{be.name}': fallback {_show(be.fallback)} is not defined; known: {_known(out)}")
    return out


def host_shaped(norm: str) -> bool:
    """A lower-case host name or a '*.example.com' wildcard ('*' only as the whole first
    label, at least two labels after it), at most 253 characters."""
    bare = norm[2:] if norm.startswith("*.") else norm
    return bool(_HOST_RE.fullmatch(bare)) and len(bare) <= 253 and not ("." not in bare and norm.startswith("*."))


def normalise_host(where: str, value) -> str:
    """A host name or ``*.example.com`` wildcard, lower-cased: ASCII, no port, no scheme, no
    trailing dot. Route hosts and the TLS host lists (certificates, redirects, HSTS) alike."""
    if not isinstance(value, str):
        _fail(f"{where} {_show(value)} must be a host name (a string)")
    # ASCII first: str.lower() maps some non-ASCII letters to ASCII ('\u212a', the Kelvin
    # sign, becomes 'k'), so a lookalike host would be accepted as another name.
    norm = value.lower() if value.isascii() else "\x00"
    if not host_shaped(norm):
        _fail(
            f"{where} {_show(value)} is not a host name or a '*.example.com' wildcard "
            "(ASCII, no port, no scheme, '*' only as the whole first label)"
        )
    return str(norm)


def _normalise_listeners(raw) -> dict:
    """Listeners by name, from the compile argument (None: no listeners, routes cannot name one)."""
    if raw is None:
        return {}
    if not isinstance(raw, list):
        _fail(f"listeners: expected a list of {{name, port, hostnames}} mappings, got {_show(raw)}")
    out, ports = {}, {}
    for i, item in enumerate(raw):
        where = f"listeners[{i}]"
        if not isinstance(item, dict):
            _fail(f"{where}: expected a mapping, got {type(item).__name__}")
        _check_keys(where, item, LISTENER_KEYS)
        name = _as_name(where, "name", item.get("name"))
        where = f"listener '{name}' (listeners[{i}])"
        if name in out:
            _fail(f"{where}: name '{name}' is already used by another listener")
        port = _as_int(where, "port", item.get("port"), 1, 65535)
        if port in ports:
            _fail(f"{where}: port {port} is already the port of listener '{ports[port]}'")
        ports[port] = name
        hostnames = item.get("hostnames") or []
        if not isinstance(hostnames, list):
            _fail(f"{where}: hostnames must be a list of host names, got {_show(hostnames)}")
        norm = []
        for j, host in enumerate(hostnames):
            host = normalise_host(f"{where}: hostnames[{j}]", host)
            if host in norm:
                _fail(f"{where}: hostnames[{j}] {host} is listed twice")
            norm.append(host)
        flags = {}
        for flag in ("tls", "builtin"):
            value = item.get(flag, False)
            if not isinstance(value, bool):
                _fail(f"{where}: {flag} must be true or false, got {_show(value)}")
            flags[flag] = value
        out[name] = Listener(name, port, tuple(norm), flags["tls"], flags["builtin"])
    return out


def _listener_guard(listeners: dict, no_route: str) -> list:
    """A request on a listener with host names that it does not serve gets no route at all,
    whatever other listeners' routes would match (Gateway API): the decision is overwritten
    with "no route"."""
    lines = []
    for lst in listeners.values():
        if not lst.hostnames:
            continue
        acl = f"listener_{lst.name}_host"
        exact = [h for h in lst.hostnames if not h.startswith("*.")]
        suffixes = [h[1:] for h in lst.hostnames if h.startswith("*.")]
        if exact:
            lines.append(f"acl {acl} {HOST_FETCH} -m str {' '.join(hquote(h) for h in exact)}")
        if suffixes:
            lines.append(f"acl {acl} {HOST_FETCH} -m end {' '.join(hquote(h) for h in suffixes)}")
        lines.append(f"http-request set-var({VAR_HIT}) str({no_route}) if {{ dst_port {lst.port} }} !{acl}")
    return lines


def _normalise_route(idx: int, raw, backends: dict, listeners: dict | None = None) -> Route:
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
        _fail(f"{where}: match {_show(match)} is not one of {', '.join(MATCH_TYPES)}")

    if "path" not in raw:
        _fail(f"{where}: path is required")
    path = raw["path"]
    if match == "regex" and isinstance(path, str) and path.startswith("^"):
        _fail(f"{where}: path {_show(path)} starts with '^': regex routes are anchored by the compiler "
              "(the whole path must match); drop the '^'")
    # A regex may open with a group, "(/v1|/v2)/users"; check_regex proves every match starts with '/'.
    if not isinstance(path, str) or not path.startswith(("/", "(") if match == "regex" else "/"):
        _fail(f"{where}: path {_show(path)} must be a string starting with '/'" + (" (or '(' for a regex)" if match == "regex" else ""))
    path = str(path)
    if match == "regex":
        if any(ord(c) < 0x21 or ord(c) > 0x7E for c in path):
            _fail(
                f"{where}: path {_show(path)} contains whitespace, control or non-ASCII characters; "
                "use escapes such as \\x20 in the regex"
            )
        try:
            check_regex(path)
        except RegexRejected as exc:
            _fail(
                f"{where}: path {_show(path)} is not a valid regex in the subset Python and HAProxy's PCRE2 "
                f"read alike: {exc} (see docs/routing.md, 'Regex subset')"
            )
    else:
        if not path.isascii():
            _fail(f"{where}: path {_show(path)} contains non-ASCII characters; percent-encode them (UTF-8), e.g. /caf%C3%A9")
        if not _PATH_RE.fullmatch(path):
            _fail(
                f"{where}: path {_show(path)} contains characters not allowed in a URI path "
                "(no whitespace, '?', '#', quotes; '%' must start a %XX escape)"
            )
        # HAProxy compares the path as the client wrote it, and clients write escapes in upper
        # case (RFC 3986, 2.1): a route with %c3%a9 would never match.
        if re.search(r"%(?:[0-9A-F][a-f]|[a-f][0-9A-Fa-f])", path):
            _fail(f"{where}: path {_show(path)} has a lower-case percent-encoding; write it in upper case "
                  "(e.g. %C3%A9), as clients send it")
        if match == "prefix":
            if path.endswith("/") and path != "/":
                path = path[:-1]  # a trailing slash is ignored
            if path != "/" and "" in path.split("/")[1:]:
                _fail(f"{where}: path {_show(raw['path'])} contains an empty segment ('//')")
        if any(seg in (".", "..") for seg in path.split("/")[1:]):
            _fail(f"{where}: path {_show(raw['path'])} contains a '.' or '..' segment")

    host = raw.get("host")
    if host is not None:
        host = normalise_host(f"{where}: host", host)

    methods = raw.get("methods", [])
    if methods is None:
        methods = []
    if not isinstance(methods, list):
        _fail(f"{where}: methods must be a list, got {_show(methods)}")
    norm_methods = set()
    for midx, method in enumerate(methods):
        if not isinstance(method, str) or not method.isascii() or not _METHOD_RE.fullmatch(method.upper()):
            _fail(f"{where}: methods[{midx}] {_show(method)} is not an HTTP method name")
        norm_methods.add(str(method).upper())

    scheme = raw.get("scheme")
    if scheme is not None and (not isinstance(scheme, str) or scheme not in SCHEMES):
        _fail(f"{where}: scheme {_show(scheme)} is not one of {', '.join(SCHEMES)} (leave it out for both)")
    require_https = raw.get("require_https", False)
    if not isinstance(require_https, bool):
        _fail(f"{where}: require_https must be true or false, got {_show(require_https)}")
    if require_https and scheme == "http":
        _fail(f"{where}: require_https is true but scheme is 'http': the route would redirect every request it "
              "matches; drop one of them")
    if require_https and scheme == "https":
        _fail(f"{where}: require_https is true but scheme is 'https': the route never sees a plain HTTP request, so "
              "it would never redirect; drop scheme to redirect HTTP requests (or require_https to only match HTTPS)")

    listener = None
    if raw.get("listener") is not None:
        name_ = raw["listener"]
        if not isinstance(name_, str) or name_ not in (listeners or {}):
            _fail(f"{where}: listener {_show(name_)} is not defined; known: {_known(listeners or {})}")
        listener = listeners[name_]
        if not listener.covers(host):
            _fail(f"{where}: host {host} is none of the hostnames of listener '{listener.name}' "
                  f"({', '.join(listener.hostnames)}); the route could never match")

    headers = _actions.header_conditions(where, raw.get("headers"))
    query = _actions.query_conditions(where, raw.get("query"))
    backend, actions = _actions.route_actions(where, raw, str(match), backends)
    if require_https and actions.answers_itself:
        _fail(f"{where}: require_https is true but the route answers every request itself (a request_redirect or "
              "fixed_response filter); drop require_https, or set the redirect's scheme to https")

    return Route(name, idx, str(match), path, host, tuple(sorted(norm_methods)), backend,
                 None if scheme is None else str(scheme), require_https, listener, headers, query, actions)


def _host_candidates(host: str | None) -> list:
    """Every host value a route can have and cover a route with ``host`` (see _host_covers):
    no host, the same host, or a wildcard of one of its parent domains."""
    if host is None:
        return [None]
    out = [None, host]
    labels = host.split(".")
    for i in range(1, len(labels)):
        wildcard = "*." + ".".join(labels[i:])
        if wildcard != host:
            out.append(wildcard)
    return out


class _Bucket:
    """Routes with the same match, path, host and scheme, which differ only in methods, header
    and query conditions (and index)."""

    __slots__ = ("any_method", "conditioned", "by_method")

    def __init__(self) -> None:
        self.any_method = None  # (position, route) of the first route without methods or conditions
        self.conditioned = []  # [(position, route)] without methods, with header/query conditions
        self.by_method = {}  # method -> [(position, route)] in precedence order

    def add(self, pos: int, route: Route) -> None:
        if not route.methods:
            if route.matched_conditions:
                self.conditioned.append((pos, route))
            elif self.any_method is None:
                self.any_method = (pos, route)
            return
        for method in route.methods:
            self.by_method.setdefault(method, []).append((pos, route))

    def first_cover(self, pos: int, inner: Route):
        """(position, route) of the first route before ``pos`` whose methods and header and
        query conditions cover inner's (a route with fewer conditions matches more requests)."""
        best = self.any_method if self.any_method is not None and self.any_method[0] < pos else None
        conds = inner.matched_conditions
        for opos, outer in self.conditioned:
            if opos >= pos or (best is not None and opos > best[0]):
                break
            if outer.matched_conditions <= conds:
                best = (opos, outer)
                break
        if inner.methods:
            # A covering route has every one of inner's methods: look only among the routes
            # that have its least common one.
            lists = [self.by_method.get(m, []) for m in inner.methods]
            wanted = set(inner.methods)
            for opos, outer in min(lists, key=len):
                if opos >= pos or (best is not None and opos > best[0]):
                    break
                if wanted <= set(outer.methods) and outer.matched_conditions <= conds:
                    best = (opos, outer)
                    break
        return best


def _conditions(route: Route) -> str:
    """A route's conditions besides its path, for a message: ", host h, methods M, scheme s"."""
    return (
        (f", host {route.host}" if route.host else "")
        + (f", methods {','.join(route.methods)}" if route.methods else "")
        + "".join(f", {c.kind} {c.name} {c.match} {_show(c.value)}" for c in route.headers + route.query)
        + (f", scheme {route.scheme}" if route.scheme else "")
        + (f", listener {route.listener.name}" if route.listener else "")
    )


def _check_shadowing(ordered: list) -> None:
    """Reject routes that a higher-precedence route fully covers: they can never match.

    Near-linear: routes are indexed by (match, path, host, scheme), and each route only looks
    up the few keys that could cover it (its own, its path's prefix ancestors, its host's
    wildcard parents and "no host", its scheme and "no scheme"), instead of comparing every
    pair (24 s for 10,000 host routes). A route without a scheme covers one with; an http
    route never covers an https one or the reverse. require_https does not take part: it
    changes what a route does over HTTP, not which requests it matches."""
    buckets = {}
    for pos, r in enumerate(ordered):
        buckets.setdefault((r.match, r.path, r.host, r.scheme, r.listener), _Bucket()).add(pos, r)
    for pos, inner in enumerate(ordered):
        paths = [(inner.match, inner.path)]
        if inner.match == "regex":
            paths.append(("prefix", "/"))
        else:
            paths += [("prefix", anc) for anc in _prefix_ancestors(inner.path) if (inner.match, anc) != ("prefix", inner.path)]
        schemes = [None] if inner.scheme is None else [None, inner.scheme]
        listeners = [None] if inner.listener is None else [None, inner.listener]
        found = None
        for match, path in paths:
            for host in _host_candidates(inner.host):
                for scheme in schemes:
                    for listener in listeners:
                        bucket = buckets.get((match, path, host, scheme, listener))
                        hit = bucket.first_cover(pos, inner) if bucket is not None else None
                        if hit is not None and (found is None or hit[0] < found[0]):
                            found = hit
        if found is not None:
            outer = found[1]
            if (
                _host_covers(outer.host, inner.host)
                and _methods_cover(outer.methods, inner.methods)
                and _path_covers(outer, inner)
                and outer.scheme in (None, inner.scheme)
                and outer.listener in (None, inner.listener)
                and outer.matched_conditions <= inner.matched_conditions
            ):
                same = (outer.match, outer.path, outer.host, outer.methods, outer.scheme, outer.listener,
                        outer.matched_conditions) == (
                    inner.match,
                    inner.path,
                    inner.host,
                    inner.methods,
                    inner.scheme,
                    inner.listener,
                    inner.matched_conditions,
                )
                what = "duplicates" if same else "is fully shadowed by"
                _fail(
                    f"{inner.where}: path {_show(inner.path)} ({inner.match}{_conditions(inner)}) "
                    f"{what} route '{outer.name}' (index {outer.index}, {outer.match} {_show(outer.path)}"
                    f"{_conditions(outer)}), which has higher precedence; it could never match"
                )


def normalise(routes, backends, default_backend, listeners: dict | None = None) -> tuple:
    """Validate and normalise; return (routes in precedence order, backends by name).
    ``listeners``: normalised listeners by name (see _normalise_listeners)."""
    norm_backends = _normalise_backends(backends)
    if not isinstance(default_backend, str) or default_backend not in norm_backends:
        _fail(f"default_backend {_show(default_backend)} is not defined; known: {_known(norm_backends)}")
    if routes is None:
        routes = []
    if not isinstance(routes, list):
        _fail(f"routes: expected a list of route mappings, got {type(routes).__name__}")
    norm_routes = []
    names = {}
    for idx, raw in enumerate(routes):
        route = _normalise_route(idx, raw, norm_backends, listeners)
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
    # The scheme first: ssl_fc is the cheapest test, and a request of the other scheme then
    # skips the route's other ACLs.
    conds = []
    if route.listener is not None:
        conds.append(f"{{ dst_port {route.listener.port} }}")
    if route.scheme == "https":
        conds.append(SSL_FC)
    elif route.scheme == "http":
        conds.append("!" + SSL_FC)
    if route.host is not None:
        acl = f"{base}_host"
        fetch = HOST_FETCH
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
    for i, cond in enumerate(route.headers):
        acl = f"{base}_hdr{i}"
        lines.append(cond.acl(acl))
        conds.append(acl)
    for i, cond in enumerate(route.query):
        acl = f"{base}_query{i}"
        lines.append(cond.acl(acl))
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


def _no_route(default_backend: str, unmatched: str) -> str:
    """The decision "no route matched": the default backend, or ``@`` (a 404 from HAProxy)."""
    return f"{NO_ROUTE_RANK}:{default_backend if unmatched == 'default' else '@'}"


def _dispatched(ordered: list, unmatched: str, listeners: dict | None = None) -> bool:
    """True when a chosen route must act before its backend is known (filters, a weighted
    split, timeouts) or unmatched requests get a 404: the decision is then a variable in both
    forms, and the actions read it."""
    return (unmatched != "default" or any(route.actions for route in ordered)
            or any(lst.hostnames for lst in (listeners or {}).values()))


def _dispatch(ordered: list, backends: dict, default_backend: str, unmatched: str, listeners: dict | None = None) -> list:
    """The lines after the decision (``txn.lay7_hit`` holds ``<rank>:<target>``): the guard of
    listeners with host names, the 404 for unmatched requests, each chosen route's actions, the
    fallback of the backend chosen, and the backend."""
    lines = _listener_guard(listeners or {}, _no_route(default_backend, unmatched))
    if unmatched != "default":
        # A request without a path (OPTIONS *, an absolute URI without one) leaves the map
        # lookups without a result: it too has no route.
        lines.append(f"http-request set-var({VAR_HIT}) str({_no_route(default_backend, unmatched)}) "
                     f"if !{{ var({VAR_HIT}) -m found }}")
    lines.append(f"http-request set-var({VAR_BACKEND}) var({VAR_HIT}),field(2,:)")
    if unmatched == "not_found":
        lines.append(
            f"http-request return status 404 content-type text/plain string {_actions.dquote(NOT_FOUND_BODY)} "
            f"if {{ var({VAR_BACKEND}) -m str @ }}"
        )
    response = []
    for route in ordered:
        if route.actions:
            req, resp = _actions.action_lines(route, route.actions, backends, VAR_BACKEND)
            lines += req
            response += resp
    # Response rules after every request rule, before use_backend (HAProxy warns otherwise).
    lines += response
    for be in backends.values():
        if be.fallback:
            lines.append(
                f"use_backend {be.fallback} if {{ var({VAR_BACKEND}) -m str {be.name} }} "
                f"!{_usable(be.name)} {_usable(be.fallback)}"
            )
    lines.append(f"use_backend %[var({VAR_BACKEND})] if {{ var({VAR_BACKEND}) -m found }}")
    lines.extend(_default_lines(backends[default_backend]))
    return lines


def emit_acl(ordered: list, backends: dict, default_backend: str, unmatched: str = "default",
             listeners: dict | None = None) -> list:
    if _dispatched(ordered, unmatched, listeners):
        return _emit_acl_dispatched(ordered, backends, default_backend, unmatched, listeners)
    lines = []
    for route in ordered:
        acls, cond = _route_acls(route)
        lines.extend(acls)
        if route.require_https:
            # At the route's position, before its own lines (the fallback's included): over
            # plain HTTP the route redirects whatever the state of its backend; over HTTPS
            # this line never matches and the route's lines below pick its backend.
            lines.append(f"use_backend {HTTPS_REDIRECT_BACKEND} if !{SSL_FC} {cond}")
        be = backends[route.backend]
        if be.fallback:
            # Only when the backend has no usable server and its fallback has. The cheap
            # nbsrv() test comes first: while the backend is healthy the route's ACLs are
            # then evaluated once per request, not twice.
            lines.append(f"use_backend {be.fallback} if !{_usable(be.name)} {_usable(be.fallback)} {cond}")
        lines.append(f"use_backend {be.name} if {cond}")
    lines.extend(_default_lines(backends[default_backend]))
    return lines


def _emit_acl_dispatched(ordered: list, backends: dict, default_backend: str, unmatched: str,
                         listeners: dict | None = None) -> list:
    """The acl form when routes act (see _dispatched): HAProxy runs every http-request rule
    before any use_backend, so an action cannot follow a use_backend line. The routes set the
    decision variable instead, in precedence order, the first match only; then _dispatch."""
    lines = []
    first = f"!{{ var({VAR_HIT}) -m found }}"
    for rank, route in enumerate(ordered):
        acls, cond = _route_acls(route)
        lines.extend(acls)
        if route.require_https:
            lines.append(f"http-request set-var({VAR_HIT}) str({rank}:{HTTPS_REDIRECT_BACKEND}) if {first} !{SSL_FC} {cond}")
        lines.append(f"http-request set-var({VAR_HIT}) str({rank}:{route.target}) if {first} {cond}")
    # No route: txn.lay7_hit stays unset (_dispatch then applies unmatched).
    return lines + _dispatch(ordered, backends, default_backend, unmatched, listeners)


def _add_path_keys(exact: dict, prefix: dict, key_prefix: str, route: Route, value: str) -> None:
    """Map keys of an exact or prefix route: ``key_prefix`` (``""`` or ``"<host>:"``) then
    the path. Routes are visited in precedence order, so the first route to claim a key
    keeps it (an exact route keeps "/a" from a prefix route "/a")."""
    if route.match == "exact":
        exact.setdefault(key_prefix + route.path, value)
    elif route.path == "/":
        prefix.setdefault(key_prefix + "/", value)
    else:
        # "/a" itself is an exact key; "/a/" a prefix key.
        exact.setdefault(key_prefix + route.path, value)
        prefix.setdefault(key_prefix + route.path + "/", value)


def emit_map(ordered: list, backends: dict, default_backend: str, map_dir: str, unmatched: str = "default",
             listeners: dict | None = None) -> tuple:
    exact = {}
    prefix = {}
    host_exact = {}
    host_prefix = {}
    method_exact = {}
    method_prefix = {}
    method_hosts = set()  # which method lookups are needed: with the host (True), without (False)
    regex = {}  # in rank order: map_reg tries its keys in file order, first match wins
    host_regex = {}
    ruled = []
    for rank, route in enumerate(ordered):
        value = f"{rank}:{route.target}"
        if route.host_mapped:
            # The host holds no ':' (validated), and neither does the looked-up host once
            # field(1,:) removed the port: the first ':' ends the host in key and value alike.
            _add_path_keys(host_exact, host_prefix, route.host + ":", route, value)
        elif route.method_mapped:
            # A method name holds no ':' (validated) either: "<METHOD>:<host>:" with an empty
            # host for host-less routes, one key per method.
            method_hosts.add(route.host is not None)
            for method in route.methods:
                _add_path_keys(method_exact, method_prefix, f"{method}:{route.host or ''}:", route, value)
        elif route.regex_mapped:
            # Anchored as in the acl form. A route regex only matches text starting with '/'
            # (check_regex proves it), so a host-less key never matches "<host>:<path>"; a host
            # key starts with its host, escaped, and the ':' that ends it.
            if route.host is None:
                regex.setdefault(f"^(?:{route.path})$", value)
            else:
                escaped_host = route.host.replace(".", "\\.")  # letters, digits, '-' and '.' (validated)
                host_regex.setdefault(f"^{escaped_host}:(?:{route.path})$", value)
        elif route.ruled:
            ruled.append((rank, route))
        else:
            _add_path_keys(exact, prefix, "", route, value)

    def map_path(name: str) -> str:
        return f"{map_dir.rstrip('/')}/{name}"

    # "No route matched": a rank above any route's, and the same whatever the number of
    # routes, so that adding or removing a plain path route changes only map files, never
    # haproxy.cfg (the role then applies it to the running HAProxy without a reload).
    sentinel = _no_route(default_backend, unmatched)
    not_found = f"!{{ var({VAR_HIT}) -m found }}"
    has_host = bool(host_exact or host_prefix or True in method_hosts or host_regex)
    path_found = f"if {{ var({VAR_PATH}) -m found }}"
    lines = []
    if has_host or method_hosts or regex:
        lines.append(f"http-request set-var({VAR_PATH}) path")
    if has_host:
        lines.append(f"http-request set-var({VAR_HOST_KEY}) {HOST_FETCH},concat(:,{VAR_PATH}) {path_found}")
    if host_exact or host_prefix:
        # Exact hosts rank before every other route, so a host map hit is the best method-less
        # map result: the path maps are looked up only when the host maps found nothing.
        lines += [
            f"http-request set-var({VAR_HIT}) var({VAR_HOST_KEY}),map_str({hquote(map_path(HOST_EXACT_MAP_NAME))})",
            f"http-request set-var({VAR_HIT}) var({VAR_HOST_KEY}),map_beg({hquote(map_path(HOST_PREFIX_MAP_NAME))}) if {not_found}",
            f"http-request set-var({VAR_HIT}) path,map_str({hquote(map_path(EXACT_MAP_NAME))}) if {not_found}",
        ]
    else:
        lines.append(f"http-request set-var({VAR_HIT}) path,map_str({hquote(map_path(EXACT_MAP_NAME))})")
    lines.append(f"http-request set-var({VAR_HIT}) path,map_beg({hquote(map_path(PREFIX_MAP_NAME))},{sentinel}) if {not_found}")
    # Each method or regex map lookup yields the best route of its kind (an exact key, the
    # longest prefix key, which ranks first among the prefixes of one method and host, or the
    # first matching regex in rank order); it replaces the best candidate so far only when its
    # rank is lower. A lookup that finds nothing leaves the previous candidate in place, whose
    # rank is not lower: no change.
    lookups = []
    if True in method_hosts:
        lines.append(f"http-request set-var({VAR_METHOD_HOST_KEY}) method,concat(:,{VAR_HOST_KEY}) if {{ var({VAR_HOST_KEY}) -m found }}")
        lookups += [(VAR_METHOD_HOST_KEY, "map_str", METHOD_EXACT_MAP_NAME), (VAR_METHOD_HOST_KEY, "map_beg", METHOD_PREFIX_MAP_NAME)]
    if False in method_hosts:
        lines.append(f"http-request set-var({VAR_METHOD_KEY}) method,concat(::,{VAR_PATH}) {path_found}")
        lookups += [(VAR_METHOD_KEY, "map_str", METHOD_EXACT_MAP_NAME), (VAR_METHOD_KEY, "map_beg", METHOD_PREFIX_MAP_NAME)]
    if host_regex:
        lookups.append((VAR_HOST_KEY, "map_reg", HOST_REGEX_MAP_NAME))
    if regex:
        lookups.append((VAR_PATH, "map_reg", REGEX_MAP_NAME))
    for key_var, conv, name in lookups:
        lines += [
            f"http-request set-var({VAR_RANK}) var({VAR_HIT}),field(1,:)",
            f"http-request set-var({VAR_CANDIDATE}) var({key_var}),{conv}({hquote(map_path(name))})",
            f"http-request set-var({VAR_HIT}) var({VAR_CANDIDATE}) if {{ var({VAR_CANDIDATE}),field(1,:),sub({VAR_RANK}) -m int lt 0 }}",
        ]
    rules = []
    for rank, route in ruled:
        acls, cond = _route_acls(route)
        lines.extend(acls)
        better = f"{{ var({VAR_HIT}),field(1,:) -m int gt {rank} }}"
        if route.require_https:
            # Over plain HTTP the route's candidate is the redirect backend, at the route's rank;
            # the rule below then finds the rank no longer greater and leaves it.
            rules.append(
                f"http-request set-var({VAR_HIT}) str({rank}:{HTTPS_REDIRECT_BACKEND}) if !{SSL_FC} {cond} {better}"
            )
        rules.append(f"http-request set-var({VAR_HIT}) str({rank}:{route.target}) if {cond} {better}")
    lines.extend(rules)
    lines.extend(_dispatch(ordered, backends, default_backend, unmatched, listeners))

    def content(entries: dict) -> str:
        return "".join(f"{key} {entries[key]}\n" for key in sorted(entries))

    maps = [
        {"name": EXACT_MAP_NAME, "path": map_path(EXACT_MAP_NAME), "content": content(exact)},
        {"name": PREFIX_MAP_NAME, "path": map_path(PREFIX_MAP_NAME), "content": content(prefix)},
    ]
    if host_exact or host_prefix:
        maps += [
            {"name": HOST_EXACT_MAP_NAME, "path": map_path(HOST_EXACT_MAP_NAME), "content": content(host_exact)},
            {"name": HOST_PREFIX_MAP_NAME, "path": map_path(HOST_PREFIX_MAP_NAME), "content": content(host_prefix)},
        ]
    if method_hosts:
        maps += [
            {"name": METHOD_EXACT_MAP_NAME, "path": map_path(METHOD_EXACT_MAP_NAME), "content": content(method_exact)},
            {"name": METHOD_PREFIX_MAP_NAME, "path": map_path(METHOD_PREFIX_MAP_NAME), "content": content(method_prefix)},
        ]
    # Regex maps keep rank order (not sorted): first match wins.
    for name, entries in ((REGEX_MAP_NAME, regex), (HOST_REGEX_MAP_NAME, host_regex)):
        if entries:
            maps.append({"name": name, "path": map_path(name), "content": "".join(f"{key} {value}\n" for key, value in entries.items())})
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
            # A stand-in speaks its real server's protocol.
            "protocol": backends[backend.fallback].protocol,
        })
    return out


def compile_routes(
    routes,
    backends,
    default_backend,
    map_dir: str = DEFAULT_MAP_DIR,
    map_threshold: int = DEFAULT_MAP_THRESHOLD,
    mode: str = "auto",
    unmatched: str = "default",
    listeners=None,
) -> dict:
    """Validate a route table and compile it; see docs/development.md for the contract."""
    if mode not in MODES:
        _fail(f"mode {_show(mode)} is not one of {', '.join(MODES)}")
    if unmatched not in UNMATCHED:
        _fail(f"unmatched {_show(unmatched)} is not one of {', '.join(UNMATCHED)}")
    map_threshold = _as_int("route_compile", "map_threshold", map_threshold, 0, 10**9)
    if not isinstance(map_dir, str) or not re.fullmatch(r"/[A-Za-z0-9_./-]*", map_dir) or "/../" in map_dir + "/":
        _fail(f"map_dir {_show(map_dir)} must be an absolute path of letters, digits, '_', '.', '-', '/'")
    map_dir = str(map_dir)

    norm_listeners = _normalise_listeners(listeners)
    ordered, norm_backends = normalise(routes, backends, default_backend, norm_listeners)
    frontend, maps = [], []
    if mode in ("auto", "acl") and (mode == "acl" or len(ordered) <= map_threshold):
        frontend = emit_acl(ordered, norm_backends, default_backend, unmatched, norm_listeners)
        if len(frontend) <= MAX_FRONTEND_LINES:
            mode = "acl"
        elif mode == "acl":
            _fail(
                f"mode 'acl': {len(ordered)} routes compile to {len(frontend)} frontend lines in the acl form, "
                f"more than {MAX_FRONTEND_LINES}; HAProxy's configuration check then takes seconds (see "
                "docs/routing.md, 'Limits'); use mode 'map' or 'auto'"
            )
        else:
            mode = "map"  # a map_threshold above the limit must not produce an acl form over it
    else:
        mode = "map"
    if mode == "map":
        frontend, maps = emit_map(ordered, norm_backends, default_backend, map_dir, unmatched, norm_listeners)
        if len(frontend) > MAX_FRONTEND_LINES:
            ruled = sum(1 for r in ordered if r.ruled)
            _fail(
                f"route table: {ruled} of {len(ordered)} routes have a wildcard host, a regex with methods, a scheme, "
                f"require_https, a listener or header or query matches, which stay HAProxy rules even in the map form (and routes "
                f"with filters, weighted backends or timeouts add lines of their own): {len(frontend)} frontend lines, "
                f"more than {MAX_FRONTEND_LINES}; HAProxy's configuration check then takes seconds (see "
                "docs/routing.md, 'Limits'); give fewer routes a wildcard host, a regex with methods, a scheme, "
                "require_https, a listener or header or query matches (any other route, with an exact host or none, costs nothing in the map form)"
            )
    backends_out = [
        dict(norm_backends[name].as_dict(), fallback_servers=fallback_servers(norm_backends[name], norm_backends))
        for name in sorted(norm_backends)
    ]
    return {
        "mode": mode,
        "default_backend": str(default_backend),
        "frontend": frontend,
        "maps": maps,
        "backends": backends_out,
        # Every checked server once per backend, flat: what a deploy adds or removes is compared
        # with the running HAProxy's servers by "<backend>/<server>" (fallback stand-ins follow
        # the servers they track and are left out).
        "servers": [
            {"key": f"{be['name']}/{srv['name']}", "backend": be["name"], "name": srv["name"],
             "address": srv["address"], "port": srv["port"], "check_path": be["check_path"]}
            for be in backends_out for srv in be["servers"]
        ],
        "routes": [r.as_dict() for r in ordered],
        # The backend require_https routes send plain HTTP requests to, which the template must
        # define (a redirect to the same URL over https); None when no route requires HTTPS.
        "https_redirect_backend": HTTPS_REDIRECT_BACKEND if any(r.require_https for r in ordered) else None,
        "unmatched": unmatched,
        "listeners": [lst.as_dict() for lst in norm_listeners.values()],
        # Lines every backend section gets (after the role's own timeout rule): a route's
        # timeouts reach the backend through variables. Empty when no route has timeouts.
        "backend_rules": list(_actions.BACKEND_RULES) if any(r.actions.timeout_ms is not None for r in ordered) else [],
    }
