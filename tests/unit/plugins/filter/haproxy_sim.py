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
    """HAProxy configuration word splitting: '...' strong quotes, "..." weak quotes (with \\n,
    \\r, \\t and \\ escapes; a '$' must be escaped, since HAProxy would expand it), \\
    escapes outside them."""
    words, cur, i, in_word = [], [], 0, False
    escapes = {"n": "\n", "r": "\r", "t": "\t", "\\": "\\", '"': '"', "$": "$"}
    while i < len(line):
        c = line[i]
        if c == "'":
            j = line.index("'", i + 1)
            cur.append(line[i + 1 : j])
            i, in_word = j + 1, True
            continue
        if c == '"':
            i += 1
            while line[i] != '"':
                if line[i] == "\\":
                    cur.append(escapes[line[i + 1]])
                    i += 2
                    continue
                if line[i] == "$":
                    raise Unsupported(f"unescaped $ (an environment variable) in {line!r}")
                cur.append(line[i])
                i += 1
            i, in_word = i + 1, True
            continue
        if c == "\\":
            cur.append(line[i + 1])
            i, in_word = i + 2, True
            continue
        if c == "#":
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
    """One request as HAProxy sees it. ``headers``: (name, value) pairs besides Host, as sent;
    ``port``: the port it arrived on (dst_port; default 80 for http, 443 for https)."""

    def __init__(self, target: str, host: str | None, method: str, scheme: str = "http",
                 headers: list | None = None, port: int | None = None):
        if scheme not in ("http", "https"):
            raise Unsupported(f"scheme {scheme!r}")
        self.target = target
        self.path = target.split("?", 1)[0] if target.startswith("/") else None
        self.host = host
        self.method = method
        self.ssl = scheme == "https"
        self.port = port if port is not None else (443 if self.ssl else 80)
        self.headers = [] if host is None else [("Host", host)]
        self.headers += list(headers or [])

    def header_values(self, name: str) -> list:
        """Every occurrence's whole value (req.fhdr in an ACL iterates over them)."""
        return [v for n, v in self.headers if n.lower() == name.lower()]

    def url_params(self, name: str) -> list:
        """url_param(<name>): the raw value of each ``name=value`` in the query string, which
        starts after the first '?'; '&', ';' and '?' all end a parameter (HAProxy's
        http_is_param_delimiter)."""
        if "?" not in self.target:
            return []
        out = []
        for piece in re.split(r"[&;?]", self.target.split("?", 1)[1]):
            key, eq, value = piece.partition("=")
            if eq and key == name:
                out.append(value)
        return out

    def cookie(self, name: str) -> str | None:
        for value in self.header_values("cookie"):
            for piece in value.split(";"):
                key, eq, val = piece.strip().partition("=")
                if eq and key == name:
                    return val
        return None

    @property
    def pathq(self) -> str | None:
        return self.target if self.target.startswith("/") else None


class Result:
    """What happened to a request: ``outcome`` (a backend name, REDIRECT_HTTPS, ``redirect:<code>:
    <location>``, ``fixed:<status>`` or ``notfound``), the request target and headers the backend
    would receive, and the response header edits (kind, name, value) of the chosen route."""

    def __init__(self, outcome: str, target: str, headers: list, response_edits: list, body: str | None = None):
        self.outcome = outcome
        self.target = target
        self.headers = headers
        self.response_edits = response_edits
        self.body = body


# The body of the 404 the compiler emits for requests no route selects (unmatched: not_found).
NOT_FOUND_BODY = "no route for this request\n"

_HEADER_OPS = ("set-header", "add-header", "del-header")


class Frontend:
    def __init__(self, lines: list, maps: list, https_redirect_backend: str | None = None):
        self.https_redirect_backend = https_redirect_backend
        self.maps = {m["path"]: parse_map(m["content"]) for m in maps}
        self.acls = {}  # name -> list of (fetch, match, patterns)
        self.http_rules = []  # (action, args, cond) in file order
        self.response_rules = []  # (http-response or http-after-response, op, name, value, cond)
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
                if patterns[:1] == ["--"]:
                    patterns = patterns[1:]
            if fetch not in ("path", "method", HOST_FETCH) and not re.fullmatch(r"(req\.fhdr|url_param)\([^),]+\)", fetch):
                raise Unsupported(f"fetch {fetch}")
            if match not in ("str", "beg", "end", "reg"):
                raise Unsupported(f"match {match}")
            self.acls.setdefault(name, []).append((fetch, match, patterns))
        elif w[0] == "http-request" and w[1].startswith("set-var("):
            var = w[1][len("set-var(") : -1]
            cond = self._cond(w[3:]) if len(w) > 3 else []
            self.http_rules.append(("set-var", (var, w[2]), cond))
        elif w[0] == "http-request" and w[1] == "return":
            i = w.index("if")
            opts = w[2:i]
            args = {"status": None, "content-type": None, "string": None}
            while opts:
                if opts[0] not in args or len(opts) < 2:
                    raise Unsupported(w)
                args[opts[0]] = opts[1]
                opts = opts[2:]
            self.http_rules.append(("return", args, self._cond(w[i:])))
        elif w[0] == "http-request" and w[1] == "redirect" and w[2] == "location" and w[4] == "code":
            self.http_rules.append(("redirect", (w[3], w[5]), self._cond(w[6:])))
        elif w[0] == "http-request" and w[1] in ("set-header", "add-header"):
            self.http_rules.append((w[1], (w[2], w[3]), self._cond(w[4:])))
        elif w[0] == "http-request" and w[1] in ("del-header", "set-path"):
            self.http_rules.append((w[1], (w[2],), self._cond(w[3:])))
        elif w[0] in ("http-response", "http-after-response") and w[1] in _HEADER_OPS:
            value = None if w[1] == "del-header" else w[3]
            cond = self._cond(w[3:] if w[1] == "del-header" else w[4:])
            self.response_rules.append((w[0], w[1], w[2], value, cond))
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
    def _fetch_all(self, fetch: str, req: Request) -> list:
        """Every value an ACL tries (HAProxy iterates over header and parameter occurrences)."""
        if fetch == "path":
            return [req.path]
        if fetch == "method":
            return [req.method]
        if fetch == HOST_FETCH:
            return [_host_value(req)]
        m = re.fullmatch(r"req\.fhdr\(([^)]+)\)", fetch)
        if m:
            return req.header_values(m.group(1))
        m = re.fullmatch(r"url_param\(([^)]+)\)", fetch)
        return req.url_params(m.group(1))

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
        if len(words) == 2 and words[0] == "dst_port":
            return req.port == int(words[1])
        if words[0] == "path" and words[1:3] == ("-m", "str") and len(words) == 4:
            return req.path == words[3]
        m = re.fullmatch(r"req\.cook\(([^)]+)\)", words[0])
        if m and words[1:] == ("-m", "found"):
            return req.cookie(m.group(1)) is not None
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
            if words[1:4] == ("-m", "int", "lt") and len(words) == 5:
                return value is not None and int(value) < int(words[4])
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
                ok = any(self._match(v, m, p) for f, m, p in self.acls[arg] for v in self._fetch_all(f, req))
            else:
                ok = self._anon(arg, req, vars_, up)
            if ok == neg:
                return False
        return True

    def _expr(self, expr: str, req: Request, vars_: dict, pick):
        if expr == "path":
            return req.path
        m = re.fullmatch(r"rand\(([0-9]+)\)|src,crc32\(1\),mod\(([0-9]+)\)", expr)
        if m:
            # A random number, or a hash of the client address: the caller chooses (pick).
            total = int(m.group(1) or m.group(2))
            value = pick(total)
            if not 0 <= value < total:
                raise ValueError(f"pick({total}) returned {value}")
            return str(value)
        m = re.fullmatch(r"int\(([0-9]+)\)|bool\(1\)", expr)
        if m:
            return m.group(1) or "1"
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

    @staticmethod
    def _log_format(fmt: str, req: Request) -> str:
        """The log-format expressions the compiler writes into locations, new paths and header
        values: %% and a fixed set of %[...] samples."""
        out, i = [], 0
        while i < len(fmt):
            if fmt.startswith("%%", i):
                out.append("%")
                i += 2
                continue
            if fmt.startswith("%[", i):
                # HAProxy parses the whole sample expression, so a ']' inside a converter's
                # arguments ("regsub(:[0-9]*$,)") does not end it: the first one outside
                # parentheses does.
                j, depth = i + 2, 0
                while fmt[j] != "]" or depth:
                    depth += {"(": 1, ")": -1}.get(fmt[j], 0)
                    j += 1
                out.append(Frontend._sample(fmt[i + 2 : j], req))
                i = j + 1
                continue
            if fmt[i] == "%":
                raise Unsupported(f"bare % in log-format {fmt!r}")
            out.append(fmt[i])
            i += 1
        return "".join(out)

    @staticmethod
    def _sample(expr: str, req: Request) -> str:
        m = re.fullmatch(r"(pathq|path|req\.hdr\(host\)|dst_port)(?:,regsub\(([^,]*),\))?", expr)
        if not m:
            raise Unsupported(f"sample {expr!r}")
        value = {"pathq": req.pathq, "path": req.path, "dst_port": str(req.port),
                 "req.hdr(host)": (req.header_values("host") or [""])[-1]}[m.group(1)]
        if m.group(2) is not None:
            value = re.sub(m.group(2), "", value, count=1)
        return value

    def route(self, target: str, host: str | None = None, method: str = "GET", up: set | None = None,
              scheme: str = "http", headers: list | None = None, pick=None, port: int | None = None) -> str:
        """The backend that answers, REDIRECT_HTTPS when the rules pick the redirect backend, or
        what HAProxy answers itself (see Result)."""
        return self.run(target, host, method, up, scheme, headers, pick, port).outcome

    def run(self, target: str, host: str | None = None, method: str = "GET", up: set | None = None,
            scheme: str = "http", headers: list | None = None, pick=None, port: int | None = None) -> Result:
        """Run the rules on one request; ``pick(total)`` stands for rand() and the address hash."""
        req = Request(target, host, method, scheme, headers, port)
        up = set() if up is None else up
        pick = pick or (lambda total: 0)
        vars_ = {}
        for action, args, cond in self.http_rules:
            if not self._eval(cond, req, vars_, up):
                continue
            if action == "set-var":
                value = self._expr(args[1], req, vars_, pick)
                if value is not None:
                    vars_[args[0]] = value
            elif action == "return":
                status = args["status"]
                outcome = "notfound" if status == "404" and args["string"] == NOT_FOUND_BODY else f"fixed:{status}"
                return Result(outcome, req.target, req.headers, self._response_edits(req, vars_, up, True), args["string"])
            elif action == "redirect":
                outcome = f"redirect:{args[1]}:{self._log_format(args[0], req)}"
                return Result(outcome, req.target, req.headers, self._response_edits(req, vars_, up, True))
            elif action == "set-path":
                query = req.target[len(req.path):] if req.path is not None else ""
                req.target = self._log_format(args[0], req) + query
                req.path = req.target.split("?", 1)[0]
            elif action == "del-header":
                req.headers = [(n, v) for n, v in req.headers if n.lower() != args[0].lower()]
            elif action == "set-header":
                value = self._log_format(args[1], req)
                req.headers = [(n, v) for n, v in req.headers if n.lower() != args[0].lower()] + [(args[0], value)]
            elif action == "add-header":
                req.headers = req.headers + [(args[0], self._log_format(args[1], req))]
        backend = self._backend(req, vars_, up)
        if backend is not None and backend == self.https_redirect_backend:
            # The redirect backend answers itself: only http-after-response rules see it.
            return Result(REDIRECT_HTTPS, req.target, req.headers, self._response_edits(req, vars_, up, True))
        return Result(backend, req.target, req.headers, self._response_edits(req, vars_, up, False))

    def _response_edits(self, req: Request, vars_: dict, up: set, own_answer: bool) -> list:
        """The response header edits (op, name, value) whose condition holds. HAProxy runs
        http-response rules only on a server's response; an answer of its own (return,
        redirect) goes through http-after-response alone."""
        return [(op, name, None if value is None else self._log_format(value, req))
                for kind, op, name, value, cond in self.response_rules
                if not (own_answer and kind == "http-response") and self._eval(cond, req, vars_, up)]

    def _backend(self, req: Request, vars_: dict, up: set) -> str:
        for backend, cond in self.use_rules:
            if self._eval(cond, req, vars_, up):
                m = re.fullmatch(r"%\[var\(([^)]+)\)\]", backend)
                return vars_[m.group(1)] if m else backend
        if self.default is None:
            raise Unsupported("no default_backend")
        return self.default
