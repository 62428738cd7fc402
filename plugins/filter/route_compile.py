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
    prefix, then regex; routes with methods before routes without; then routes with a
    C(scheme) before routes without; remaining ties in declaration order.
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
        of HTTP methods), C(scheme), C(require_https) and C(backend) (required). Any other key is
        an error.
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
        C(persistence) (C(none), C(cookie), C(source), C(stick-table)), C(cookie_name) and
        C(check_path).
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
        cookie_name: {description: Cookie name when persistence is cookie, else null., type: str}
        check_path: {description: Health check path or null (role default)., type: str}
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
          require_https and backend.
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
        )
    except AnsibleFilterError:
        raise
    except (TypeError, ValueError) as exc:  # defensive: never leak a traceback to users
        raise AnsibleFilterError(f"route_compile: {exc}") from exc


class FilterModule:
    """lay7.ha route filters."""

    def filters(self) -> dict:
        return {"route_compile": route_compile}
