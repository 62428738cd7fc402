# -*- coding: utf-8 -*-
# Copyright: lay7.ha maintainers
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""The lay7.ha.route_compile filter: route table -> HAProxy frontend rules and maps."""

from __future__ import annotations

DOCUMENTATION = r"""
name: route_compile
short_description: Compile a route table into HAProxy routing rules
version_added: 0.1.0
author: lay7.ha maintainers
description:
  - Validates a route table and its backends and compiles them into the lines of an HAProxy
    C(frontend) section (ACLs, C(use_backend) rules, fallback and default backend handling)
    and, for large tables, HAProxy map files.
  - Match types are C(exact), C(prefix) and C(regex). C(prefix) is a path-element prefix as in
    Kubernetes Ingress and Gateway API, so C(/a) matches C(/a), C(/a/) and C(/a/x) but not
    C(/ab) or C(/x/a/). A trailing slash in a prefix is ignored. Regexes must match the whole
    path. Matching is case-sensitive and ignores the query string.
  - Routes are emitted in Gateway API precedence order, whatever order they are written in -
    exact host, then wildcard host, then no host; exact path, then longer prefix, then shorter
    prefix, then regex; routes with methods before routes without; then routes with more header
    matches, then more query-parameter matches; then routes with a C(scheme) before routes
    without; remaining ties in declaration order.
  - Besides path, host, methods and scheme, a route may match request headers and query
    parameters (C(headers), C(query) - exact or regex values, all must match), act on the request
    with Gateway API HTTPRoute filters (C(request_header_modifier), C(response_header_modifier),
    C(url_rewrite), C(request_redirect), and C(fixed_response) for maintenance pages), split its
    traffic across weighted C(backends), and set its own C(timeouts). Requests no route selects
    go to the default backend, or get a 404 with O(unmatched=not_found).
  - HTTP and HTTPS share one frontend (an C(ssl) bind next to the plain one), so one route table
    serves both. A route with C(scheme) applies only to requests that arrived on that scheme
    (C({ ssl_fc }) / C(!{ ssl_fc })). A route with C(require_https) answers a plain HTTP request
    it selects with a redirect to the same URL over https (path and query kept) through the
    reserved backend C(lay7_https_redirect), which the template defines when the result's
    C(https_redirect_backend) is set; over HTTPS the route goes to its backend. It keeps its
    place in precedence order, so a more specific route without it still wins over HTTP.
  - A backend may name a C(fallback) backend. When the backend has no usable server its
    traffic goes to the fallback (one hop, never chained); when neither has a usable server the
    original backend answers, so clients get a 503.
  - The output is deterministic, so every HAProxy node gets a byte-identical configuration.
  - Any invalid input raises an error naming the route (name and index) or backend, the field
    and the bad value, before anything is deployed. Unknown keys, duplicate route names, routes
    shadowed by higher-precedence routes, invalid regexes, paths not starting with C(/),
    undefined backends or fallbacks, a fallback naming its own backend, empty server lists,
    unknown match types, a C(scheme) other than C(http) or C(https), a C(require_https) that is
    not a boolean or comes with a C(scheme), and a backend named C(lay7_https_redirect) are all
    rejected.
  - Regexes must stay within a subset that Python's C(re) and HAProxy's PCRE2 read alike
    (literals, escaped punctuation, C(\xHH), C(.), ASCII C(\d \w \s) and their negations,
    classes, groups, alternation, greedy and lazy repetition up to 1000); their matches must
    start with C(/) and never be empty; at most 1000 characters; no group repeated more than
    once may hold a variable repetition, such as "(a+)+". See C(docs/routing.md), "Regex subset".
  - Server addresses are IPv4/IPv6 literals or RFC 1123 host names without a port; wildcard,
    multicast and broadcast addresses are rejected.
  - A C(host) is compared with the whole C(Host) header, port removed, lower-cased; a malformed
    header (a comma list, a trailing dot, an IPv6 literal) matches no host route, in both forms.
  - A compiled table has at most 8000 frontend lines, so C(haproxy -c) stays well under 2 s;
    O(mode=auto) then uses maps, O(mode=acl) is refused, and a map form whose rules (wildcard-host
    routes, regex routes with methods, routes with C(scheme) or C(require_https)) exceed it is
    refused.
  - See C(docs/routing.md) in the collection for the model in depth.
positional: backends, default_backend
options:
  _input:
    description:
      - The route table, a list of routes. Keys are C(name) (required, unique; letters, digits,
        C(_), C(.), C(-)), C(path) (required, starts with C(/)), C(match) (C(exact), C(prefix) or
        C(regex); default C(prefix)), C(host) (a host name or C(*.example.com)), C(methods) (a list
        of HTTP methods), C(headers), C(query), C(scheme), C(listener), C(require_https), C(backend),
        C(backends), C(filters) and C(timeouts). Any other key is an error.
      - C(backend) names one backend. C(backends) instead splits the route's traffic, a list of
        C({name, weight, filters}) (weight 0-1000, 0 for no traffic; all 0 answers 500); a client
        holding the persistence cookie of one of them stays there, and under source or stick-table
        persistence the pick is a hash of the client address. An entry's optional C(filters) (Gateway
        API's filters on a backendRef) are at most one C(request_header_modifier) and one
        C(response_header_modifier), written as the route's; they apply after the route's own
        filters, only when the split picks that entry (never for weight 0; a fallback answering for
        it keeps them), and any other filter type there is refused. A route with a
        C(request_redirect) or C(fixed_response) filter has neither.
      - C(headers) and C(query) are lists of C({name, value, match}) with C(match) C(exact) (the
        default) or C(regex) (the whole value must match). Header names are compared without case,
        values with case; any occurrence of a repeated header or parameter may match. Query values
        are compared as sent, not percent-decoded.
      - C(filters) is a list of at most one of each type. C(request_header_modifier) and
        C(response_header_modifier) take C(set) and C(add) (lists of C({name, value})) and C(remove)
        (a list of names). C(url_rewrite) takes C(host) and C(path) (C({type, value}), C(type)
        C(full) or C(prefix), the latter replacing the matched prefix). C(request_redirect) takes
        C(scheme), C(host), C(port), C(path) and C(status) (301, 302, 303, 307 or 308; default 301).
        C(fixed_response) takes C(status), C(body) and C(content_type).
      - C(listener) names one of O(listeners); the route then applies only to requests that arrived
        on its port, and its C(host) must be one the listener serves.
      - C(timeouts) is C({request, backend}) with Gateway API durations (C(10s), C(500ms),
        C(1m30s)); C(backend) bounds each try, C(request) the whole wait (the route's requests are
        then not retried).
      - C(scheme) is C(http) or C(https); the route then applies only to requests that arrived on
        that scheme. Without it (or null), the route applies to both.
      - C(require_https) (boolean, default false) redirects a plain HTTP request the route selects to
        the same URL over https (code set by the template); over HTTPS the route goes to its
        backend. Refused together with a C(scheme) (with C(http) it contradicts itself, with
        C(https) it could never redirect).
    type: list
    elements: dict
    required: true
  backends:
    description:
      - Mapping of backend name to settings. Keys are C(servers) (required, non-empty list),
        C(fallback), C(balance) (C(roundrobin), C(leastconn), C(source), C(first)),
        C(persistence) (C(none), C(cookie), C(source), C(stick-table)), C(cookie_name),
        C(check_path) and C(protocol) (C(http1), the default, or C(h2c) - HTTP/2 without TLS to
        the servers and their health checks, as gRPC services speak it).
      - Each server has C(name) (required, unique in the backend), C(address) (required),
        C(port) (default 80), C(weight) (default 100) and C(backup) (default false).
    type: dict
    required: true
  default_backend:
    description: The backend that receives requests no route matches. Its fallback applies too.
    type: str
    required: true
  map_dir:
    description: Directory where the role writes the map files (absolute path).
    type: path
    default: /etc/haproxy/maps
  map_threshold:
    description:
      - With O(mode=auto), tables with more routes than this compile to map files (and so does
        any table whose acl form would exceed 8000 frontend lines).
      - The default comes from measurements (C(bench/bench_routes.py)) - above about 6 routes the
        map form costs HAProxy less CPU per request than the ACL form; see C(docs/routing.md).
    type: int
    default: 6
  mode:
    description:
      - C(acl) emits named ACLs and C(use_backend) lines; C(map) puts every route without a
        wildcard host into map files (keyed by path, host and path, or method, host and path;
        regex routes without methods into C(map_reg) files in precedence order) looked up once
        per request, leaving only wildcard-host routes, regex routes with methods and routes
        with C(scheme) or C(require_https) as ACL rules; C(auto) chooses by O(map_threshold).
      - Both forms route every request identically.
    type: str
    choices: [auto, acl, map]
    default: auto
  listeners:
    description:
      - The ports the frontend listens on, as routes may name them - a list of C({name, port,
        hostnames, tls, builtin}). With C(hostnames) (host names or C(*.example.com) wildcards), a
        request arriving on that port whose C(Host) is none of them gets no route, whatever another
        listener's routes would match. C(tls) and C(builtin) are for the role (bind with TLS; the
        port is already bound by its HTTP or HTTPS bind line) and do not change routing.
      - Without it (or null), routes cannot name a listener.
    type: list
    elements: dict
  unmatched:
    description:
      - What requests that no route selects get - C(default) sends them to O(default_backend),
        C(not_found) answers them with a 404 from HAProxy.
    type: str
    choices: [default, not_found]
    default: default
"""

EXAMPLES = r"""
- name: Compile the route table of the seed topology
  ansible.builtin.set_fact:
    compiled: "{{ routes | lay7.ha.route_compile(backends, 'main') }}"
  vars:
    backends:
      main: {servers: [{name: web1, address: 192.0.2.11, port: 80}], fallback: a_pool}
      a_pool: {servers: [{name: web2, address: 192.0.2.12, port: 80}], fallback: main}
      b_pool: {servers: [{name: web3, address: 192.0.2.13, port: 80}], fallback: main}
    routes:
      - {name: a, path: /a, match: prefix, backend: a_pool}
      - {name: b, path: /b, match: prefix, backend: b_pool}
# compiled.frontend ==
#   - acl route_a_path path -m str /a
#   - acl route_a_path path -m beg /a/
#   - use_backend main if !{ nbsrv(a_pool) gt 0 } { nbsrv(main) gt 0 } route_a_path
#   - use_backend a_pool if route_a_path
#   - (the same for route b)
#   - use_backend a_pool if !{ nbsrv(main) gt 0 } { nbsrv(a_pool) gt 0 }
#   - default_backend main

- name: Host, method and regex routes, forced into map form
  ansible.builtin.debug:
    msg: >-
      {{ routes | lay7.ha.route_compile(backends, 'main', mode='map',
                                        map_dir='/etc/haproxy/maps') }}
  vars:
    backends:
      main: {servers: [{name: web1, address: 192.0.2.11}]}
      api: {servers: [{name: api1, address: 192.0.2.21, port: 8080, weight: 50}]}
    routes:
      - {name: api, host: api.example.com, path: /, backend: api}
      - {name: tenants, host: '*.example.com', path: /v1, backend: api}
      - {name: upload, path: /upload, methods: [POST, PUT], backend: api}
      - {name: health, path: /healthz, match: exact, backend: main}
      - {name: reports, path: '/reports/[0-9]+', match: regex, backend: api}

- name: HTTPS-only admin area with a public part, and a route for HTTPS requests only
  ansible.builtin.set_fact:
    compiled: "{{ routes | lay7.ha.route_compile(backends, 'main') }}"
  vars:
    backends:
      main: {servers: [{name: web1, address: 192.0.2.11}]}
      admin: {servers: [{name: adm1, address: 192.0.2.31}]}
    routes:
      # http://.../admin/x is redirected to https://.../admin/x; https goes to admin
      - {name: admin, path: /admin, require_https: true, backend: admin}
      # more specific, without require_https: served over both schemes
      - {name: admin_status, path: /admin/status, match: exact, backend: main}
      # only for requests over https; over http /api goes to the default backend
      - {name: api, path: /api, scheme: https, backend: admin}
# compiled.https_redirect_backend == 'lay7_https_redirect' (the template defines that backend)
# compiled.frontend (acl form) includes, at route admin's position:
#   - use_backend lay7_https_redirect if !{ ssl_fc } route_admin_path
#   - use_backend admin if route_admin_path

- name: A canary by weight and by header, a moved path, a maintenance page; 404 when nothing matches
  ansible.builtin.set_fact:
    compiled: "{{ routes | lay7.ha.route_compile(backends, 'main', unmatched='not_found') }}"
  vars:
    backends:
      main: {servers: [{name: web1, address: 192.0.2.11}]}
      stable: {servers: [{name: app1, address: 192.0.2.21}]}
      canary: {servers: [{name: app2, address: 192.0.2.22}]}
    routes:
      - name: app
        path: /app
        backends: [{name: stable, weight: 90}, {name: canary, weight: 10}]
        timeouts: {backend: 5s}
      - name: app_testers
        path: /app
        headers: [{name: X-Canary, value: always}]
        backend: canary
        filters:
          - {type: response_header_modifier, set: [{name: X-Served-By, value: canary}]}
      - name: old_docs
        path: /docs/v1
        filters: [{type: request_redirect, path: {type: prefix, value: /docs/v2}, status: 308}]
      - name: billing
        path: /billing
        filters: [{type: fixed_response, status: 503, body: "Billing is down for maintenance.\n"}]

- name: Write the map files, then the configuration (what the haproxy_l7 role does)
  ansible.builtin.copy:
    dest: "{{ item.path }}"
    content: "{{ item.content }}"
    mode: "0644"
  loop: "{{ compiled.maps }}"
"""

RETURN = r"""
_value:
  description: The compiled route table.
  type: dict
  contains:
    mode:
      description: The form compiled, C(acl) or C(map).
      type: str
    default_backend:
      description: The default backend's name.
      type: str
    frontend:
      description:
        - Lines to emit verbatim, in order, inside the HAProxy frontend section. They include
          fallback handling and the C(default_backend) line; the template adds nothing.
      type: list
      elements: str
    maps:
      description: Map files to write before validating the configuration (empty in acl form).
      type: list
      elements: dict
      contains:
        name:
          description: File name.
          type: str
        path:
          description: Absolute path (O(map_dir)/name).
          type: str
        content:
          description: File content, sorted by key.
          type: str
    backends:
      description: Normalised backends sorted by name, with defaults filled in.
      type: list
      elements: dict
      contains:
        name: {description: Backend name., type: str}
        balance: {description: Balance algorithm., type: str}
        fallback: {description: Fallback backend or null., type: str}
        persistence: {description: Persistence mode., type: str}
        cookie_name: {description: "Cookie name when persistence is cookie, else null.", type: str}
        check_path: {description: Health check path or null (role default)., type: str}
        protocol: {description: C(http1) or C(h2c) (the servers get C(proto h2 check-proto h2))., type: str}
        servers:
          description: Servers in the order given, with id (1-based position), port, weight and backup filled in.
          type: list
          elements: dict
        fallback_servers:
          description:
            - The fallback backend's active servers as stand-ins (backup servers) for this backend, so a
              request retried after its server died is answered by the fallback. Named
              C(fallback_<server>), ids after this backend's own, C(track) naming the fallback's
              server (C(<backend>/<server>)). Empty without a fallback.
          type: list
          elements: dict
    servers:
      description:
        - Every server of every backend (stand-ins left out), flat, in backend then server order - what the
          haproxy_l7 role compares with the running HAProxy to find servers a deploy adds or removes.
      type: list
      elements: dict
      contains:
        key: {description: C(<backend>/<server>)., type: str}
        backend: {description: Backend name., type: str}
        name: {description: Server name., type: str}
        address: {description: Server address., type: str}
        port: {description: Server port., type: int}
        check_path: {description: The backend's health check path or null (role default)., type: str}
    routes:
      description:
        - Normalised routes in precedence order (index is the declaration index), each with
          name, index, match, path, host, methods, scheme (C(http), C(https) or null),
          require_https, backend (null for a weighted split or a route that answers itself),
          headers and query (lists of name, match, value; header names lower-cased), filters (as
          given, normalised, each with its type), listener (a name or null), backends (the
          weighted split, each entry with name, weight and filters, its header modifiers
          normalised as the route's),
          timeout_ms (the server timeout of the route's requests, or null) and retries (false when
          a request timeout turns retries off).
      type: list
      elements: dict
    https_redirect_backend:
      description:
        - C(lay7_https_redirect) when any route has C(require_https), else null. The frontend
          lines send plain HTTP requests that such a route selects to this backend, so the
          template must then define it without servers, answering
          C(http-request redirect scheme https code <301|308>), and bind an C(ssl) listener in
          the same frontend.
      type: str
    unmatched:
      description: O(unmatched), as given.
      type: str
    listeners:
      description: O(listeners), normalised (host names lower-cased, defaults filled in).
      type: list
      elements: dict
    backend_rules:
      description:
        - Lines every backend section must get after its own C(set-timeout) rules (the route's
          timeouts and retry choice arrive through variables). Empty when no route has timeouts.
      type: list
      elements: str
"""

from ansible.errors import AnsibleFilterError
from ansible_collections.lay7.ha.plugins.plugin_utils._routes import (
    DEFAULT_MAP_DIR,
    DEFAULT_MAP_THRESHOLD,
    compile_routes,
)


def route_compile(
    routes,
    backends,
    default_backend,
    map_dir: str = DEFAULT_MAP_DIR,
    map_threshold: int = DEFAULT_MAP_THRESHOLD,
    mode: str = "auto",
    unmatched: str = "default",
    listeners=None,
) -> dict:
    """Compile a route table; see DOCUMENTATION."""
    try:
        return compile_routes(
            routes,
            backends,
            default_backend,
            map_dir=map_dir,
            map_threshold=map_threshold,
            mode=mode,
            unmatched=unmatched,
            listeners=listeners,
        )
    except AnsibleFilterError:
        raise
    except (TypeError, ValueError) as exc:  # defensive: never leak a traceback to users
        raise AnsibleFilterError(f"route_compile: {exc}") from exc


class FilterModule:
    """lay7.ha route filters."""

    def filters(self) -> dict:
        return {"route_compile": route_compile}
