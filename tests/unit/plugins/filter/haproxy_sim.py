"""A strict interpreter for the subset of HAProxy frontend configuration route_compile emits.

It lets unit tests run the *compiled* rules (ACL and map form) against requests without a
real HAProxy, following HAProxy 2.6 semantics: ``http-request`` rules run in order before any
``use_backend``; ``use_backend`` rules are evaluated in file order, first match wins, then
``default_backend``; ``-m reg`` searches (it is not implicitly anchored) the path's bytes, as
PCRE2 without UTF does; ``map_beg`` returns the longest matching key, ``map_reg`` the first
key (a regex) in file order that matches; ``req.fhdr(host)`` is the
whole Host header (one value: HAProxy refuses differing duplicates); ``concat`` appends
nothing for a variable that is not set; ``sub(<var>)`` fails when the variable is not set;
``method`` is the request method as sent (HAProxy compares it case-sensitively); ``ssl_fc``
is true for a request that arrived on the TLS bind (``scheme="https"``), and the redirect
backend named by the compiled ``https_redirect_backend`` answers with a redirect to https
(:data:`REDIRECT_HTTPS`, the reference matcher's outcome). Anything outside the known subset raises, so an emitter change
cannot slip past the tests by being silently ignored. tests/integration checks the same
behaviour against the real binary.
"""

from __future__ import annotations

import re


HOST_FETCH = "req.fhdr(host),field(1,:),lower"


# What a request routed to the redirect backend gets (the reference matcher's outcome).
REDIRECT_HTTPS = "redirect:https"


class Unsupported(Exception):
    pass


def _host_value(req) -> str | None:
    """``req.fhdr(host),field(1,:),lower``: the Host header up to its first ':', lower-cased."""
    if req.host is None:
        return None
    return req.host.split(":", 1)[0].lower()


def split_words(line: str) -> list:
    """HAProxy configuration word splitting: '...' strong quotes, \\ escapes outside them."""
    words, cur, i, in_word = [], [], 0, False
    while i < len(line):
        c = line[i]
        if c == "'":
            j = line.index("'", i + 1)
            cur.append(line[i + 1 : j])
            i, in_word = j + 1, True
            continue
        if c == "\\":
            cur.append(line[i + 1])
            i, in_word = i + 2, True
            continue
        if c == '"' or c == "#":
            raise Unsupported(f"unexpected {c!r} in {line!r}")
        if c in " \t":
            if in_word:
                words.append("".join(cur))
                cur, in_word = [], False
            i += 1
            continue
        cur.append(c)
        in_word = True
        i += 1
    if in_word:
        words.append("".join(cur))
    return words


def parse_map(content: str) -> dict:
    out = {}
    for line in content.splitlines():
        if not line or line.startswith("#"):
            continue
        key, value = line.split(None, 1)
        out.setdefault(key, value.strip())
    return out


class Request:
    def __init__(self, target: str, host: str | None, method: str, scheme: str = "http"):
        if scheme not in ("http", "https"):
            raise Unsupported(f"scheme {scheme!r}")
        self.path = target.split("?", 1)[0] if target.startswith("/") else None
        self.host = host
        self.method = method
        self.ssl = scheme == "https"


class Frontend:
    def __init__(self, lines: list, maps: list, https_redirect_backend: str | None = None):
        self.https_redirect_backend = https_redirect_backend
        self.maps = {m["path"]: parse_map(m["content"]) for m in maps}
        self.acls = {}  # name -> list of (fetch, match, patterns)
        self.http_rules = []  # (var, expr, cond)
        self.use_rules = []  # (backend_expr, cond)
        self.default = None
        for line in lines:
            self._parse(split_words(line))

    # -- parsing
    def _parse(self, w: list) -> None:
        if w[0] == "acl":
            name, fetch = w[1], w[2]
            if fetch == "method":
                match, patterns = "str", w[3:]
            else:
                if w[3] != "-m":
                    raise Unsupported(w)
                match, patterns = w[4], w[5:]
            if fetch not in ("path", "method", HOST_FETCH):
                raise Unsupported(f"fetch {fetch}")
            if match not in ("str", "beg", "end", "reg"):
                raise Unsupported(f"match {match}")
            self.acls.setdefault(name, []).append((fetch, match, patterns))
        elif w[0] == "http-request" and w[1].startswith("set-var("):
            var = w[1][len("set-var(") : -1]
            cond = self._cond(w[3:]) if len(w) > 3 else []
            self.http_rules.append((var, w[2], cond))
        elif w[0] == "use_backend":
            self.use_rules.append((w[1], self._cond(w[2:])))
        elif w[0] == "default_backend" and len(w) == 2:
            self.default = w[1]
        else:
            raise Unsupported(w)

    def _cond(self, w: list) -> list:
        if not w or w[0] != "if":
            raise Unsupported(w)
        terms, i = [], 1
        while i < len(w):
            neg = False
            tok = w[i]
            if tok == "||":
                raise Unsupported("|| is not emitted")
            if tok.startswith("!"):
                neg, tok = True, tok[1:]
            if tok == "{":
                j = w.index("}", i)
                terms.append((neg, ("anon", tuple(w[i + 1 : j]))))
                i = j + 1
            else:
                if tok not in self.acls:
                    raise Unsupported(f"undeclared acl {tok}")
                terms.append((neg, ("acl", tok)))
                i += 1
        return terms

    # -- evaluation
    def _fetch(self, fetch: str, req: Request):
        if fetch == "path":
            return req.path
        if fetch == "method":
            return req.method
        return _host_value(req)

    @staticmethod
    def _match(value, match: str, patterns: list) -> bool:
        if value is None:
            return False
        for p in patterns:
            if match == "str" and value == p:
                return True
            if match == "beg" and value.startswith(p):
                return True
            if match == "end" and value.endswith(p):
                return True
            if match == "reg" and re.search(p.encode("ascii"), value.encode("utf-8", "surrogateescape")):
                return True
        return False

    def _anon(self, words: tuple, req: Request, vars_: dict, up: set) -> bool:
        if words == ("ssl_fc",):
            return req.ssl
        m = re.fullmatch(r"nbsrv\(([^)]+)\)", words[0])
        if m and words[1:] == ("gt", "0"):
            return m.group(1) in up
        m = re.fullmatch(r"var\(([^)]+)\)", words[0])
        if m:
            value = vars_.get(m.group(1))
            if words[1:] == ("-m", "found"):
                return value is not None
            if words[1] == "-m" and words[2] == "str" and len(words) == 4:
                return value == words[3]
        m = re.fullmatch(r"var\(([^)]+)\),field\(1,:\),sub\(([^)]+)\)", words[0])
        if m and words[1:] == ("-m", "int", "lt", "0"):
            # sub(<var>): an unset variable makes the converter, and so the condition, fail.
            value, other = vars_.get(m.group(1)), vars_.get(m.group(2))
            return value is not None and other is not None and int(value.split(":")[0]) - int(other) < 0
        m = re.fullmatch(r"var\(([^)]+)\),field\(1,:\)", words[0])
        if m and words[1:3] == ("-m", "int") and words[3] == "gt":
            value = vars_.get(m.group(1))
            return value is not None and int(value.split(":")[0]) > int(words[4])
        raise Unsupported(words)

    def _eval(self, cond: list, req: Request, vars_: dict, up: set) -> bool:
        for neg, (kind, arg) in cond:
            if kind == "acl":
                ok = any(self._match(self._fetch(f, req), m, p) for f, m, p in self.acls[arg])
            else:
                ok = self._anon(arg, req, vars_, up)
            if ok == neg:
                return False
        return True

    def _expr(self, expr: str, req: Request, vars_: dict):
        if expr == "path":
            return req.path
        m = re.fullmatch(re.escape(HOST_FETCH) + r",concat\(:,([^)]+)\)", expr)
        if m:
            host = _host_value(req)
            return None if host is None else host + ":" + vars_.get(m.group(1), "")
        m = re.fullmatch(r"(path|var\([^)]+\)),map_str\(([^,)]+)\)", expr)
        if m:
            key = self._source(m.group(1), req, vars_)
            return None if key is None else self.maps[m.group(2)].get(key)
        m = re.fullmatch(r"(path|var\([^)]+\)),map_reg\(([^,)]+)\)", expr)
        if m:
            # Keys are regexes tried in file order (HAProxy keeps them in a list), first match wins.
            key = self._source(m.group(1), req, vars_)
            if key is None:
                return None
            subject = key.encode("utf-8", "surrogateescape")
            return next((v for k, v in self.maps[m.group(2)].items() if re.search(k.encode("ascii"), subject)), None)
        m = re.fullmatch(r"(path|var\([^)]+\)),map_beg\(([^,)]+)(?:,([^)]*))?\)", expr)
        if m:
            key = self._source(m.group(1), req, vars_)
            if key is None:
                return None
            keys = [k for k in self.maps[m.group(2)] if key.startswith(k)]
            if keys:
                return self.maps[m.group(2)][max(keys, key=len)]
            return m.group(3)
        m = re.fullmatch(r"method,concat\((::?),([^)]+)\)", expr)
        if m:
            return req.method + m.group(1) + vars_.get(m.group(2), "")
        m = re.fullmatch(r"var\(([^)]+)\)", expr)
        if m:
            return vars_.get(m.group(1))
        m = re.fullmatch(r"var\(([^)]+)\),field\(1,:\)", expr)
        if m:
            value = vars_.get(m.group(1))
            return None if value is None else value.split(":")[0]
        m = re.fullmatch(r"str\(([^)]*)\)", expr)
        if m:
            return m.group(1)
        m = re.fullmatch(r"var\(([^)]+)\),field\(2,:\)", expr)
        if m:
            value = vars_.get(m.group(1))
            return None if value is None else value.split(":")[1]
        raise Unsupported(expr)

    @staticmethod
    def _source(source: str, req: Request, vars_: dict):
        if source == "path":
            return req.path
        return vars_.get(source[len("var(") : -1])

    def route(self, target: str, host: str | None = None, method: str = "GET", up: set | None = None,
              scheme: str = "http") -> str:
        """The backend that answers, or REDIRECT_HTTPS when the rules pick the redirect backend."""
        backend = self._backend(Request(target, host, method, scheme), up)
        if backend is not None and backend == self.https_redirect_backend:
            return REDIRECT_HTTPS
        return backend

    def _backend(self, req: Request, up: set | None) -> str:
        up = set() if up is None else up
        vars_ = {}
        for var, expr, cond in self.http_rules:
            if self._eval(cond, req, vars_, up):
                value = self._expr(expr, req, vars_)
                if value is not None:
                    vars_[var] = value
        for backend, cond in self.use_rules:
            if self._eval(cond, req, vars_, up):
                m = re.fullmatch(r"%\[var\(([^)]+)\)\]", backend)
                return vars_[m.group(1)] if m else backend
        if self.default is None:
            raise Unsupported("no default_backend")
        return self.default
