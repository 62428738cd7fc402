# -*- coding: utf-8 -*-
# Copyright: lay7.ha maintainers
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Route conditions and actions beyond path, host, method and scheme (private).

Header and query-parameter matches, the Gateway API HTTPRoute filters (request and response
header modifiers, URL rewrite, request redirect, plus a fixed response), weighted backends and
per-route timeouts: how each is validated, and the HAProxy lines that carry it out once the
route compiler (_routes.py) has chosen the route.

How a chosen route acts: the compiler's decision leaves ``<rank>:@<route>`` in ``txn.lay7_hit``
for a route with actions (``<rank>:<backend>`` for any other), so every line here is guarded by
``{ var(txn.lay7_be) -m str @<route> }``. ``http-request return`` and ``redirect`` end the
request there; the other actions edit it and finally put the real backend in ``txn.lay7_be``,
which the compiler's fallback and ``use_backend`` lines then use as for any route. Header and
query conditions are ACLs like the others (both forms keep such routes as rules).
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from ansible.errors import AnsibleFilterError
from ansible_collections.lay7.ha.plugins.plugin_utils._route_regex import RegexRejected, check_regex

FILTER_TYPES = (
    "request_header_modifier",
    "response_header_modifier",
    "url_rewrite",
    "request_redirect",
    "fixed_response",
)
# The filters a weighted backend may have of its own (HTTPRoute's backendRef filters).
BACKEND_FILTER_TYPES = ("request_header_modifier", "response_header_modifier")
MATCH_KINDS = ("exact", "regex")
REDIRECT_CODES = (301, 302, 303, 307, 308)
PATH_MODIFIER_TYPES = ("full", "prefix")
WELL_KNOWN_PORT = {"http": 80, "https": 443}

# Bounds that keep a route's lines short and a request's work small; far above what a
# hand-written route needs.
MAX_CONDITIONS = 16
MAX_VALUE_LENGTH = 1024
MAX_BODY_LENGTH = 16384
MAX_WEIGHT = 1000
MAX_BACKENDS = 16
# Gateway API's duration format: up to four number+unit pairs, "1h", "1m30s", "500ms".
_DURATION_RE = re.compile(r"(?:[0-9]{1,5}(?:h|m|s|ms)){1,4}")
_DURATION_PART_RE = re.compile(r"([0-9]{1,5})(ms|h|m|s)")
_UNIT_MS = {"h": 3600000, "m": 60000, "s": 1000, "ms": 1}
MAX_TIMEOUT_MS = 24 * 3600000

# Header names as real headers spell them. The whole RFC 9110 token alphabet would let quotes,
# '#', '$' and '%' into HAProxy words that are also log-format strings.
_HEADER_NAME_RE = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,63}")
# Headers that frame the message or the connection: editing them would let a route break
# HTTP itself (request smuggling, truncated responses), and HAProxy manages them.
FRAMING_HEADERS = ("connection", "content-length", "keep-alive", "proxy-connection", "te", "trailer",
                   "transfer-encoding", "upgrade")
# Query parameter names and values as sent (percent-encoded, never decoded): URI query
# characters without '&', ';' and '?', which all end a parameter for HAProxy's url_param (so
# a name or value holding one could never match); names also without '=', and without the
# quote, parentheses and comma, which would break the url_param(<name>) fetch's syntax.
_QUERY_NAME_RE = re.compile(r"(?:[A-Za-z0-9._~!$*+:@/-]|%[0-9A-F]{2}){1,64}")
_QUERY_VALUE_RE = re.compile(r"(?:[A-Za-z0-9._~!$'()*+,:@/=-]|%[0-9A-F]{2})+")
_PATH_RE = re.compile(r"/(?:[A-Za-z0-9\-._~!$&'()*+,;=:@/]|%[0-9A-F]{2})*")
_CONTENT_TYPE_RE = re.compile(r"[a-z0-9][a-z0-9.+-]*/[a-z0-9][a-z0-9.+-]*(?:; ?charset=[A-Za-z0-9_-]+)?")
_LABEL = r"[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?"
_HOST_RE = re.compile(rf"{_LABEL}(?:\.{_LABEL})*")

# Variables the action lines use: the route a response belongs to (for response header
# edits; txn.lay7_be holds the backend by then), the weighted pick, and the per-route timeout
# and retry choice the role's backends read.
VAR_ROUTE = "txn.lay7_route"
VAR_PICK = "txn.lay7_pick"
VAR_STICKY = "txn.lay7_sticky"
VAR_TIMEOUT = "txn.lay7_timeout"
VAR_NO_RETRY = "txn.lay7_no_retry"

# Lines every backend gets once any route has timeouts (the compiled ``backend_rules``): they
# come after the role's own timeout line, so a route's choice wins.
BACKEND_RULES = (
    f"http-request set-timeout server var({VAR_TIMEOUT}) if {{ var({VAR_TIMEOUT}) -m found }}",
    f"http-request disable-l7-retry if {{ var({VAR_NO_RETRY}) -m found }}",
)


def _fail(msg: str) -> None:
    raise AnsibleFilterError(msg)


def _show(value) -> str:
    # The same bounded repr as the compiler's messages (imported lazily: _routes imports us).
    from ansible_collections.lay7.ha.plugins.plugin_utils._routes import _show as show
    return show(value)


def _check_keys(where: str, data: dict, allowed: tuple) -> None:
    from ansible_collections.lay7.ha.plugins.plugin_utils._routes import _check_keys as check
    check(where, data, allowed)


def hquote(word: str) -> str:
    from ansible_collections.lay7.ha.plugins.plugin_utils._routes import hquote as quote
    return quote(word)


def lf(text: str) -> str:
    """Literal text inside a log-format string (redirect locations, set-header values, new
    paths): '%' starts an expression there, so a literal one is written '%%'."""
    return text.replace("%", "%%")


def dquote(text: str) -> str:
    """A double-quoted HAProxy word, for a fixed response body that may hold line breaks:
    inside double quotes HAProxy reads \\n, \\r, \\t, \\\\, \\" and expands $VARIABLES, so
    those are escaped."""
    out = []
    for c in text:
        if c == "\n":
            out.append("\\n")
        elif c == "\r":
            out.append("\\r")
        elif c == "\t":
            out.append("\\t")
        elif c in ('"', "\\", "$"):
            out.append("\\" + c)
        else:
            out.append(c)
    return '"' + "".join(out) + '"'


# --------------------------------------------------------------------------- model


@dataclass(frozen=True)
class Condition:
    """One header or query-parameter condition. ``name`` is lower-cased for headers (HAProxy
    compares header names without case) and kept as given for query parameters."""

    kind: str  # "header" or "query"
    name: str
    match: str  # "exact" or "regex"
    value: str

    def fetch(self) -> str:
        return f"req.fhdr({self.name})" if self.kind == "header" else f"url_param({self.name})"

    def acl(self, acl_name: str) -> str:
        # "--" ends the flags: a value starting with '-' is a pattern, not an option.
        if self.match == "exact":
            return f"acl {acl_name} {self.fetch()} -m str -- {hquote(self.value)}"
        return f"acl {acl_name} {self.fetch()} -m reg -- {hquote('^(?:' + self.value + ')$')}"

    def as_dict(self) -> dict:
        return {"name": self.name, "match": self.match, "value": self.value}


@dataclass(frozen=True)
class Split:
    backend: str
    weight: int
    # Header modifiers applied when the split picks this backend ((type, spec), ...): Gateway
    # API's filters on a backendRef.
    filters: tuple = ()


@dataclass(frozen=True)
class Actions:
    """What a route does once chosen, besides going to its one backend."""

    filters: tuple = ()  # ((type, normalised spec), ...) in FILTER_TYPES order
    split: tuple = ()  # Split, ... when the route has weighted backends
    timeout_ms: int | None = None  # server timeout for this route's requests
    no_retry: bool = False  # L7 retries off (a request timeout bounds the whole wait)

    def __bool__(self) -> bool:
        return bool(self.filters or self.split or self.timeout_ms is not None)

    def filter(self, kind: str):
        return dict(self.filters).get(kind)

    @property
    def answers_itself(self) -> bool:
        """A redirect or a fixed response: no backend."""
        return self.filter("request_redirect") is not None or self.filter("fixed_response") is not None

    def as_dict(self) -> dict:
        return {
            "filters": [dict(spec, type=kind) for kind, spec in self.filters],
            "backends": [{"name": s.backend, "weight": s.weight,
                          "filters": [dict(spec, type=kind) for kind, spec in s.filters]} for s in self.split],
            "timeout_ms": self.timeout_ms,
            "retries": not self.no_retry,
        }


# ---------------------------------------------------------------------- validation


def _text(where: str, field: str, value, allow_regex: bool = False, regex: bool = False) -> str:
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        _fail(f"{where}: {field} {_show(value)} must be a string, got a number (quote it in YAML)")
    if not isinstance(value, str) or not value:
        _fail(f"{where}: {field} must be a non-empty string, got {_show(value)}")
    if len(value) > MAX_VALUE_LENGTH:
        _fail(f"{where}: {field} is {len(value)} characters long; at most {MAX_VALUE_LENGTH} are allowed")
    if any(ord(c) < 0x20 or ord(c) > 0x7E for c in value):
        _fail(f"{where}: {field} {_show(value)} contains control or non-ASCII characters"
              + ("; use escapes such as \\x09 in the regex" if regex else ""))
    if value != value.strip(" "):
        _fail(f"{where}: {field} {_show(value)} starts or ends with a space (HTTP drops it from header values)")
    return str(value)


def _conditions(where: str, raw, kind: str) -> tuple:
    key = "headers" if kind == "header" else "query"
    if raw is None:
        return ()
    if not isinstance(raw, list):
        _fail(f"{where}: {key} must be a list of {{name, value, match}} mappings, got {_show(raw)}")
    if len(raw) > MAX_CONDITIONS:
        _fail(f"{where}: {key} has {len(raw)} entries; at most {MAX_CONDITIONS} are allowed")
    out, seen = [], {}
    for i, item in enumerate(raw):
        iwhere = f"{where}: {key}[{i}]"
        if not isinstance(item, dict):
            _fail(f"{iwhere}: expected a mapping with name and value, got {_show(item)}")
        _check_keys(iwhere, item, ("name", "value", "match"))
        name = item.get("name")
        if kind == "header":
            if not isinstance(name, str) or not _HEADER_NAME_RE.fullmatch(name):
                _fail(f"{iwhere}: name {_show(name)} is not a header name (letters, digits, '-', '_', '.'; at most 64)")
            name = name.lower()
            if name == "host":
                _fail(f"{iwhere}: the Host header is matched with the route's host key, not in headers")
        else:
            if not isinstance(name, str) or not _QUERY_NAME_RE.fullmatch(name):
                _fail(f"{iwhere}: name {_show(name)} is not a query parameter name as sent (URI characters "
                      "without '&', ';', '?', '=', '#', quotes, parentheses, commas or spaces; '%' starts an upper-case "
                      "%XX escape; at most 64)")
        if name in seen:
            _fail(f"{iwhere}: name {_show(item.get('name'))} is already matched by {key}[{seen[name]}]; "
                  "give one condition per name")
        seen[name] = i
        match = item.get("match", "exact")
        if match not in MATCH_KINDS:
            _fail(f"{iwhere}: match {_show(match)} is not one of {', '.join(MATCH_KINDS)}")
        if "value" not in item:
            _fail(f"{iwhere}: value is required")
        value = _text(iwhere, "value", item["value"], regex=match == "regex")
        if match == "regex":
            try:
                check_regex(value, path=False)
            except RegexRejected as exc:
                _fail(f"{iwhere}: value {_show(value)} is not a valid regex in the subset Python and HAProxy's "
                      f"PCRE2 read alike: {exc} (see docs/routing.md, 'Regex subset')")
        elif kind == "query" and not _QUERY_VALUE_RE.fullmatch(value):
            _fail(f"{iwhere}: value {_show(value)} is not a query value as sent (URI characters without '&', "
                  "';', '?', '#' or spaces, since HAProxy ends a parameter at '&', ';' and '?'; '%' starts an "
                  "upper-case %XX escape)")
        out.append(Condition(kind, str(name), str(match), value))
    return tuple(out)


def header_conditions(where: str, raw) -> tuple:
    return _conditions(where, raw, "header")


def query_conditions(where: str, raw) -> tuple:
    return _conditions(where, raw, "query")


def duration_ms(where: str, field: str, value) -> int:
    """A Gateway API duration ("10s", "500ms", "1m30s") in milliseconds."""
    if not isinstance(value, str) or not _DURATION_RE.fullmatch(value):
        _fail(f"{where}: {field} {_show(value)} is not a duration such as 10s, 500ms or 1m30s "
              "(numbers with h, m, s or ms)")
    ms = sum(int(n) * _UNIT_MS[unit] for n, unit in _DURATION_PART_RE.findall(value))
    if not 1 <= ms <= MAX_TIMEOUT_MS:
        _fail(f"{where}: {field} {_show(value)} must be between 1ms and 24h")
    return ms


def _header_list(where: str, raw, with_value: bool) -> list:
    if raw is None:
        return []
    if not isinstance(raw, list):
        _fail(f"{where} must be a list, got {_show(raw)}")
    out = []
    for i, item in enumerate(raw):
        iwhere = f"{where}[{i}]"
        if with_value:
            if not isinstance(item, dict):
                _fail(f"{iwhere}: expected a mapping with name and value, got {_show(item)}")
            _check_keys(iwhere, item, ("name", "value"))
            name = item.get("name")
        else:
            name = item
        if not isinstance(name, str) or not _HEADER_NAME_RE.fullmatch(name):
            _fail(f"{iwhere}: {_show(name)} is not a header name (letters, digits, '-', '_', '.'; at most 64)")
        if name.lower() in FRAMING_HEADERS:
            _fail(f"{iwhere}: {name} frames the HTTP message or connection; HAProxy manages it and a route may "
                  "not change it")
        if name.lower() == "host":
            _fail(f"{iwhere}: the Host header is changed with a url_rewrite filter's host (a request needs "
                  "exactly one Host header)")
        if with_value:
            if "value" not in item:
                _fail(f"{iwhere}: value is required")
            out.append((str(name), _text(iwhere, "value", item["value"])))
        else:
            out.append(str(name))
    return out


def _header_modifier(where: str, spec: dict) -> dict:
    _check_keys(where, spec, ("type", "set", "add", "remove"))
    out = {
        "set": _header_list(f"{where}: set", spec.get("set"), True),
        "add": _header_list(f"{where}: add", spec.get("add"), True),
        "remove": _header_list(f"{where}: remove", spec.get("remove"), False),
    }
    if not (out["set"] or out["add"] or out["remove"]):
        _fail(f"{where}: set, add or remove must list at least one header")
    # One operation per header name: with two, the outcome would depend on the order HAProxy
    # applies them in, which HTTPRoute leaves open.
    seen = {}
    for op in ("set", "add", "remove"):
        for item in out[op]:
            name = (item[0] if op != "remove" else item).lower()
            if name in seen:
                _fail(f"{where}: header {_show(item[0] if op != 'remove' else item)} appears in {seen[name]} and {op}; "
                      "give each header one operation")
            seen[name] = op
    return {op: [list(i) if op != "remove" else i for i in items] for op, items in out.items()}


def _path_modifier(where: str, raw, route_match: str) -> dict | None:
    if raw is None:
        return None
    if not isinstance(raw, dict):
        _fail(f"{where}: path must be a mapping {{type: full|prefix, value: /...}}, got {_show(raw)}")
    _check_keys(where + ": path", raw, ("type", "value"))
    kind = raw.get("type")
    if kind not in PATH_MODIFIER_TYPES:
        _fail(f"{where}: path type {_show(kind)} is not one of {', '.join(PATH_MODIFIER_TYPES)}")
    value = raw.get("value")
    if not isinstance(value, str) or not value.isascii() or not _PATH_RE.fullmatch(value):
        _fail(f"{where}: path value {_show(value)} must be a URI path starting with '/' (no spaces, '?', '#' or "
              "quotes; '%' starts an upper-case %XX escape)")
    if "//" in value or any(seg in (".", "..") for seg in value.split("/")[1:]):
        _fail(f"{where}: path value {_show(value)} must not contain '//', '.' or '..' segments")
    if kind == "prefix" and route_match != "prefix":
        _fail(f"{where}: path type prefix replaces the matched prefix, so the route must have match: prefix "
              f"(it has {route_match}); use type full")
    return {"type": str(kind), "value": str(value)}


def _host_value(where: str, raw) -> str | None:
    if raw is None:
        return None
    norm = raw.lower() if isinstance(raw, str) and raw.isascii() else None
    if norm is None or not _HOST_RE.fullmatch(norm) or len(norm) > 253:
        _fail(f"{where}: host {_show(raw)} must be a host name (ASCII letters, digits, '-', '.'; no port, no wildcard)")
    return str(norm)


def _filter(where: str, spec, route_match: str) -> tuple:
    if not isinstance(spec, dict):
        _fail(f"{where}: expected a mapping with a type, got {_show(spec)}")
    kind = spec.get("type")
    if kind not in FILTER_TYPES:
        _fail(f"{where}: type {_show(kind)} is not one of {', '.join(FILTER_TYPES)}")
    where = f"{where} ({kind})"
    if kind in ("request_header_modifier", "response_header_modifier"):
        return kind, _header_modifier(where, spec)
    if kind == "url_rewrite":
        _check_keys(where, spec, ("type", "host", "path"))
        out = {"host": _host_value(where, spec.get("host")), "path": _path_modifier(where, spec.get("path"), route_match)}
        if out["host"] is None and out["path"] is None:
            _fail(f"{where}: give host, path or both")
        return kind, out
    if kind == "request_redirect":
        _check_keys(where, spec, ("type", "scheme", "host", "port", "path", "status"))
        scheme = spec.get("scheme")
        # A tuple, not the dict: "in" a dict hashes the value, and a list or mapping would raise.
        if scheme is not None and scheme not in tuple(WELL_KNOWN_PORT):
            _fail(f"{where}: scheme {_show(scheme)} is not one of http, https")
        port = spec.get("port")
        if port is not None and (isinstance(port, bool) or not isinstance(port, int) or not 1 <= port <= 65535):
            _fail(f"{where}: port {_show(port)} must be an integer 1..65535")
        status = spec.get("status", 301)
        if status not in REDIRECT_CODES or isinstance(status, bool):
            _fail(f"{where}: status {_show(status)} is not one of {', '.join(map(str, REDIRECT_CODES))}")
        return kind, {
            "scheme": scheme,
            "host": _host_value(where, spec.get("host")),
            "port": port,
            "path": _path_modifier(where, spec.get("path"), route_match),
            "status": int(status),
        }
    # fixed_response
    _check_keys(where, spec, ("type", "status", "body", "content_type"))
    status = spec.get("status", 200)
    if isinstance(status, bool) or not isinstance(status, int) or not 200 <= status <= 599:
        _fail(f"{where}: status {_show(status)} must be an integer 200..599 (HAProxy answers these itself)")
    body = spec.get("body", "")
    if not isinstance(body, str):
        _fail(f"{where}: body must be a string, got {_show(body)}")
    if len(body) > MAX_BODY_LENGTH:
        _fail(f"{where}: body is {len(body)} characters long; at most {MAX_BODY_LENGTH} are allowed")
    if any((ord(c) < 0x20 and c not in "\n\t") or ord(c) > 0x7E for c in body):
        _fail(f"{where}: body contains control or non-ASCII characters (line breaks and tabs are fine); "
              "use HTML entities for anything else")
    if body and status in (204, 304):
        _fail(f"{where}: status {status} responses have no body; drop body")
    content_type = spec.get("content_type")
    if content_type is None and body:
        # Also when given as null: a body is sent with a content type.
        content_type = "text/plain"
    if content_type is not None and (not isinstance(content_type, str) or not _CONTENT_TYPE_RE.fullmatch(content_type)):
        _fail(f"{where}: content_type {_show(content_type)} must be a media type such as text/html or "
              "text/plain; charset=utf-8")
    if content_type is not None and not body:
        _fail(f"{where}: content_type is set but there is no body")
    return kind, {"status": int(status), "body": str(body), "content_type": content_type}


def route_actions(where: str, raw: dict, route_match: str, backends: dict) -> tuple:
    """Validate a raw route's filters, backends (weighted) and timeouts.

    Returns (its single backend or None, Actions)."""
    filters_raw = raw.get("filters")
    filters = {}
    if filters_raw is not None:
        if not isinstance(filters_raw, list):
            _fail(f"{where}: filters must be a list of {{type: ...}} mappings, got {_show(filters_raw)}")
        for i, spec in enumerate(filters_raw):
            kind, norm = _filter(f"{where}: filters[{i}]", spec, route_match)
            if kind in filters:
                _fail(f"{where}: filters[{i}]: a second {kind}; give each filter type once")
            filters[kind] = norm
    answers = [k for k in ("request_redirect", "fixed_response") if k in filters]
    if len(answers) == 2:
        _fail(f"{where}: filters: request_redirect and fixed_response both answer the request; keep one")
    if answers:
        others = [k for k in filters if k not in (answers[0], "response_header_modifier")]
        if answers[0] == "fixed_response" and others:
            _fail(f"{where}: filters: {', '.join(others)} cannot change a fixed_response (HAProxy answers it "
                  "before any request edit matters); keep response_header_modifier only")
        if answers[0] == "request_redirect" and others:
            _fail(f"{where}: filters: request_redirect cannot be combined with {', '.join(others)} "
                  "(the client is sent elsewhere; nothing reaches a backend)")

    has_backend, has_split = "backend" in raw, "backends" in raw
    backend, split = None, ()
    if answers:
        if has_backend or has_split:
            _fail(f"{where}: a route with {answers[0]} answers the request itself; drop "
                  f"{'backend' if has_backend else 'backends'}")
    elif has_backend and has_split:
        _fail(f"{where}: give backend (one) or backends (a weighted split), not both")
    elif not has_backend and not has_split:
        _fail(f"{where}: backend is required (or backends, a weighted split, or a request_redirect or "
              "fixed_response filter)")
    elif has_backend:
        backend = raw["backend"]
        if not isinstance(backend, str) or backend not in backends:
            _fail(f"{where}: backend {_show(backend)} is not defined; known: {', '.join(sorted(backends)) or '(none)'}")
        backend = str(backend)
    else:
        split = _split(where, raw["backends"], backends)

    timeout_ms, no_retry = None, False
    timeouts = raw.get("timeouts")
    if timeouts is not None:
        if not isinstance(timeouts, dict):
            _fail(f"{where}: timeouts must be a mapping {{request: 10s, backend: 2s}}, got {_show(timeouts)}")
        _check_keys(f"{where}: timeouts", timeouts, ("request", "backend"))
        if not timeouts:
            _fail(f"{where}: timeouts is empty; give request, backend or both")
        if answers:
            _fail(f"{where}: timeouts have no effect on a route with {answers[0]} (no backend is asked)")
        request = duration_ms(where, "timeouts.request", timeouts["request"]) if "request" in timeouts else None
        per_try = duration_ms(where, "timeouts.backend", timeouts["backend"]) if "backend" in timeouts else None
        if request is not None and per_try is not None and per_try > request:
            _fail(f"{where}: timeouts.backend {_show(timeouts['backend'])} is longer than timeouts.request "
                  f"{_show(timeouts['request'])}; a try cannot outlast the whole request")
        timeout_ms = per_try if per_try is not None else request
        # HAProxy has no timer for a whole request across retries: with a request timeout the
        # route's requests are tried once, so the wait is bounded by it.
        no_retry = request is not None
    order = {k: i for i, k in enumerate(FILTER_TYPES)}
    return backend, Actions(tuple(sorted(filters.items(), key=lambda kv: order[kv[0]])), split, timeout_ms, no_retry)


def _split(where: str, raw, backends: dict) -> tuple:
    if not isinstance(raw, list) or not raw:
        _fail(f"{where}: backends must be a non-empty list of {{name, weight}} mappings, got {_show(raw)}")
    if len(raw) > MAX_BACKENDS:
        _fail(f"{where}: backends lists {len(raw)}; at most {MAX_BACKENDS} are allowed")
    out, seen = [], {}
    for i, item in enumerate(raw):
        iwhere = f"{where}: backends[{i}]"
        if not isinstance(item, dict):
            _fail(f"{iwhere}: expected a mapping with name and weight, got {_show(item)}")
        _check_keys(iwhere, item, ("name", "weight", "filters"))
        name = item.get("name")
        if not isinstance(name, str) or name not in backends:
            _fail(f"{iwhere}: name {_show(name)} is not a defined backend; known: {', '.join(sorted(backends))}")
        if name in seen:
            _fail(f"{iwhere}: backend '{name}' is already listed at backends[{seen[name]}]")
        seen[name] = i
        weight = item.get("weight", 1)
        if isinstance(weight, bool) or not isinstance(weight, int) or not 0 <= weight <= MAX_WEIGHT:
            _fail(f"{iwhere}: weight {_show(weight)} must be an integer 0..{MAX_WEIGHT}")
        filters = {}
        raw_filters = item.get("filters")
        if raw_filters is not None:
            if not isinstance(raw_filters, list):
                _fail(f"{iwhere}: filters must be a list of {{type: ...}} mappings, got {_show(raw_filters)}")
            for j, spec in enumerate(raw_filters):
                fwhere = f"{iwhere}: filters[{j}]"
                if not isinstance(spec, dict) or spec.get("type") not in BACKEND_FILTER_TYPES:
                    _fail(f"{fwhere}: a backend's filter is one of {', '.join(BACKEND_FILTER_TYPES)} (the route's "
                          f"filters hold the others), got {_show(spec.get('type') if isinstance(spec, dict) else spec)}")
                kind, norm = _filter(fwhere, spec, "prefix")
                if kind in filters:
                    _fail(f"{fwhere}: a second {kind}; give each filter type once")
                filters[kind] = norm
        out.append(Split(str(name), int(weight), tuple(sorted(filters.items()))))
    return tuple(out)


# ------------------------------------------------------------------------ emitters


def cookie_name(backend) -> str | None:
    return backend.cookie_name if backend.persistence == "cookie" else None


def _location_lines(spec: dict, route, guard: str) -> list:
    """The redirect lines of a request_redirect: one per (scheme, port) case the request can
    be in, since a Location must name them literally (Gateway API: the request's scheme when
    none is given, the port the request arrived on when neither scheme nor port is given, and
    never a scheme's well-known port)."""
    path = spec["path"]
    code = spec["status"]
    # The Host header without its port; "h:" (an empty port, valid in a URI) loses the ':' too.
    host = lf(spec["host"]) if spec["host"] else "%[req.hdr(host),regsub(:[0-9]*$,)]"
    # Path and query: kept, replaced whole (query kept) or their matched prefix replaced.
    tails = []  # (extra condition, path-and-query text)
    if path is None:
        tails.append(("", "%[pathq]"))
    elif path["type"] == "full":
        tails.append(("", lf(path["value"]) + "%[pathq,regsub(^[^?]*,)]"))
    else:
        tails += _prefix_tails(route, path["value"], "pathq", query=True)
    lines = []
    schemes = [(spec["scheme"], "")] if spec["scheme"] else [("https", " { ssl_fc }"), ("http", " !{ ssl_fc }")]
    for scheme, scheme_cond in schemes:
        ports = []  # (extra condition, ":port" text)
        if spec["port"] is not None:
            ports.append(("", "" if spec["port"] == WELL_KNOWN_PORT[scheme] else f":{spec['port']}"))
        elif spec["scheme"]:
            ports.append(("", ""))
        else:
            known = WELL_KNOWN_PORT[scheme]
            ports += [(f" {{ dst_port {known} }}", ""), (f" !{{ dst_port {known} }}", ":%[dst_port]")]
        for port_cond, port in ports:
            for tail_cond, tail in tails:
                location = f"{scheme}://{host}{port}{tail}"
                lines.append(f"http-request redirect location {hquote(location)} code {code} if {guard}"
                             f"{scheme_cond}{port_cond}{tail_cond}")
    return lines


def _prefix_tails(route, value: str, fetch: str, query: bool) -> list:
    """ReplacePrefixMatch: the route's prefix replaced by ``value`` (the rest of the path, and
    with ``query`` the query, kept). ``fetch`` is pathq (redirects) or path (set-path, which
    keeps the query itself). The prefix is matched element-wise, so the path is the prefix
    itself or the prefix and '/...': the rest starts after len(prefix) characters."""
    stripped = value.rstrip("/")
    if route.path == "/":
        # Every path matches "/", and the rest is the whole path.
        return [("", lf(stripped) + f"%[{fetch}]")]
    rest = f"%[{fetch},regsub(^.{{{len(route.path)}}},)]"
    if stripped:
        return [("", lf(stripped) + rest)]
    # A replacement of "/" when the path is the prefix itself leaves nothing: the path is "/".
    exact_tail = "/" + ("%[pathq,regsub(^[^?]*,)]" if query else "")
    return [(f" {{ path -m str {hquote(route.path)} }}", exact_tail), (f" !{{ path -m str {hquote(route.path)} }}", rest)]


def _header_edit_lines(prefix: str, spec: dict, guard: str) -> list:
    lines = []
    for name, value in spec["set"]:
        lines.append(f"{prefix} set-header {name} {hquote(lf(value))} if {guard}")
    for name, value in spec["add"]:
        lines.append(f"{prefix} add-header {name} {hquote(lf(value))} if {guard}")
    for name in spec["remove"]:
        lines.append(f"{prefix} del-header {name} if {guard}")
    return lines


def action_lines(route, actions: Actions, backends: dict, var_backend: str) -> tuple:
    """(http-request lines, http-response lines) that carry out a chosen route's actions.

    ``route`` is the compiler's Route (name, match, path); ``backends`` the normalised
    backends; ``var_backend`` the variable holding ``@<route>`` while the route is chosen."""
    target = f"@{route.name}"
    guard = f"{{ var({var_backend}) -m str {target} }}"
    req, resp = [], []
    fixed = actions.filter("fixed_response")
    redirect = actions.filter("request_redirect")
    modifier = actions.filter("request_header_modifier")
    rewrite = actions.filter("url_rewrite")
    response = actions.filter("response_header_modifier")
    route_guard = f"{{ var({VAR_ROUTE}) -m str {route.name} }}"
    if response is not None or any(s.filters for s in actions.split):
        # Marked before anything ends the request (HAProxy's own answers, return and redirect,
        # go through http-after-response, the backend's through http-response), and before the
        # split replaces @<route> in txn.lay7_be with the backend it picks.
        req.append(f"http-request set-var({VAR_ROUTE}) str({route.name}) if {guard}")
    if response is not None:
        kind = "http-after-response" if (fixed is not None or redirect is not None) else "http-response"
        resp += _header_edit_lines(kind, response, route_guard)
    if fixed is not None:
        line = f"http-request return status {fixed['status']}"
        if fixed["body"]:
            line += f" content-type {hquote(fixed['content_type'])} string {dquote(fixed['body'])}"
        req.append(f"{line} if {guard}")
        return req, resp
    if redirect is not None:
        req += _location_lines(redirect, route, guard)
        return req, resp
    live = [s for s in actions.split if s.weight > 0]
    # A client that holds the persistence cookie of one of the split's live backends stays
    # there. Read before the route's own header edits: the client's cookies decide, even when
    # the route rewrites the Cookie header for the backend.
    for s in live:
        cookie = cookie_name(backends[s.backend])
        if cookie is not None:
            req.append(f"http-request set-var({VAR_STICKY}) str({s.backend}) if {guard} "
                       f"!{{ var({VAR_STICKY}) -m found }} {{ req.cook({cookie}) -m found }}")
    if modifier is not None:
        req += _header_edit_lines("http-request", modifier, guard)
    if rewrite is not None:
        if rewrite["host"] is not None:
            req.append(f"http-request set-header host {hquote(lf(rewrite['host']))} if {guard}")
        path = rewrite["path"]
        if path is not None and path["type"] == "full":
            req.append(f"http-request set-path {hquote(lf(path['value']))} if {guard}")
        elif path is not None:
            for cond, new in _prefix_tails(route, path["value"], "path", query=False):
                req.append(f"http-request set-path {hquote(new)} if {guard}{cond}")
    if actions.timeout_ms is not None:
        req.append(f"http-request set-var({VAR_TIMEOUT}) int({actions.timeout_ms}) if {guard}")
    if actions.no_retry:
        req.append(f"http-request set-var({VAR_NO_RETRY}) bool(1) if {guard}")
    if not actions.split:
        req.append(f"http-request set-var({var_backend}) str({route.backend}) if {guard}")
        return req, resp
    if not live:
        # Gateway API: a route whose backends all have weight 0 answers 500.
        req.append(f"http-request return status 500 if {guard}")
        return req, resp
    if any(cookie_name(backends[s.backend]) is not None for s in live):
        req.append(f"http-request set-var({var_backend}) var({VAR_STICKY}) if {guard} {{ var({VAR_STICKY}) -m found }}")
    total = sum(s.weight for s in live)
    if len(live) > 1:
        by_address = any(backends[s.backend].persistence in ("source", "stick-table") for s in live)
        # Persistence by client address: the same client must always land in the same
        # backend, so the pick is a hash of its address rather than a random number.
        pick = f"src,crc32(1),mod({total})" if by_address else f"rand({total})"
        req.append(f"http-request set-var({VAR_PICK}) {pick} if {guard}")
        upper = 0
        for s in live[:-1]:
            upper += s.weight
            req.append(f"http-request set-var({var_backend}) str({s.backend}) if {guard} {{ var({VAR_PICK}) -m int lt {upper} }}")
    req.append(f"http-request set-var({var_backend}) str({live[-1].backend}) if {guard}")
    # The picked backend's own header modifiers, after the route's: txn.lay7_be names it now.
    for s in live:
        picked = f"{route_guard} {{ var({var_backend}) -m str {s.backend} }}"
        spec = dict(s.filters)
        if "request_header_modifier" in spec:
            req += _header_edit_lines("http-request", spec["request_header_modifier"], picked)
        if "response_header_modifier" in spec:
            resp += _header_edit_lines("http-response", spec["response_header_modifier"], picked)
    return req, resp
