#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright: lay7.ha maintainers
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""The lay7.ha.haproxy_server module: a server's runtime state through HAProxy's admin socket."""

from __future__ import annotations

DOCUMENTATION = r"""
module: haproxy_server
short_description: Set a server ready, draining or in maintenance, and its weight, on a running HAProxy
version_added: 0.3.0
author: lay7.ha maintainers (@lay7)
description:
  - Changes a server's administrative state (C(ready), C(drain), C(maint)) and its weight in a running
    HAProxy through its admin socket (the runtime API), without a reload; optionally waits, with a bound,
    until the server has no sessions left (after C(drain) or C(maint)) or passes its health checks
    (after C(ready)).
  - Acts on the HAProxy of the host it runs on. Run it on every load balancer (the collection's
    playbooks do) so that a server is drained everywhere clients can reach it.
  - A server is chosen by name, by address (and port), or both, in every backend that has it, or only
    in O(backends). The same web server is often a server in several backends (its own pool and a
    spare pool); all of them are changed together. Servers that only C(track) a chosen server (the
    haproxy_l7 role's fallback stand-ins) follow its state by themselves and are not changed, but
    their sessions count when waiting.
  - Idempotent - a task reports C(changed) only when it changed the runtime state. Only the state an
    operator forces is compared; a server that is down because its checks fail, or that inherits
    maintenance from a server it tracks, is not "changed" by this module.
  - Why not community.general.haproxy - it has had long-standing bugs exactly where an operator
    drains servers. Draining with wait on a server that is already up could wait forever
    (community.general issue 12286, open); its guard for a server that is already down compared a
    tuple with a string and never worked (issue 8092, fixed in 2026); DRAIN could not be followed
    by MAINT (ansible issue 37591, community.general issue 1913). This module compares the forced
    state read from C(show servers state), counts sessions and queued requests from C(show stat),
    and is tested on those cases against the real HAProxy.
  - The runtime state lives in the running process. A reload starts a new process from the
    configuration, so a reload of HAProxy while a server is drained puts it back to the configured
    state.
options:
  socket:
    description: Path of HAProxy's admin socket (C(stats socket ... level admin)).
    type: path
    default: /run/haproxy/admin.sock
  name:
    description: The server's name in HAProxy's configuration. At least one of O(name) and O(address) is required.
    type: str
  address:
    description: The server's address, as HAProxy has it (an IP address). Chooses every server at that address.
    type: str
  port:
    description: With O(address), only the servers at this port.
    type: int
  backends:
    description: Only servers in these backends. Default is every backend.
    type: list
    elements: str
  state:
    description:
      - V(ready) takes traffic; V(drain) takes no new load-balanced traffic (sessions already open, and
        clients persisted to it, continue); V(maint) takes no traffic at all, and its health checks stop.
      - Left out, the state is not changed.
    type: str
    choices: [ready, drain, maint]
  weight:
    description:
      - The server's weight (0-256) in its backends. Left out, the weight is not changed.
      - Weight 0 stops new load-balanced traffic like V(drain), but stays after O(state=ready).
    type: int
  wait:
    description:
      - Wait, after any change, for what O(wait_for) names. The wait is bounded by O(wait_timeout);
        the task then fails, naming the servers it waited for (the state set stays set). Nothing is
        waited for in check mode.
    type: bool
    default: false
  wait_for:
    description:
      - V(sessions) - until no session is open and no request is queued on the chosen servers (and on
        servers tracking them). What a drain waits for before the server can be stopped.
      - V(health) - until every chosen server passes its health checks. Works while the server is
        drained (checks go on), so a server can be proven healthy before it takes traffic again; not
        in V(maint), where checks are stopped.
      - Default is V(health) when O(state=ready), else V(sessions).
      - With O(state=ready) and V(health), a server that is not ready yet is brought back safely - it
        is proven healthy while drained (a server in maintenance is drained first, so that its checks
        run) and made ready only then. If it does not become healthy in time, it is left drained.
    type: str
    choices: [sessions, health]
  wait_timeout:
    description: Seconds to wait, at most (1-86400).
    type: int
    default: 120
  wait_interval:
    description: Seconds between two looks at the sessions or health (0.1-10).
    type: float
    default: 0.5
attributes:
  check_mode:
    support: full
    description: Reports what would change; sends no change to HAProxy and does not wait.
  diff_mode:
    support: full
    description: Shows each chosen server's state and weight before and after.
notes:
  - Needs read and write access to the admin socket (root, or a member of the socket's group).
seealso:
  - name: HAProxy management guide, runtime API
    description: The commands this module sends (C(set server ... state), C(set weight), C(show stat), C(show servers state)).
    link: https://docs.haproxy.org/2.6/management.html#9.3
"""

EXAMPLES = r"""
- name: Drain web2 on this load balancer and wait until its sessions are done
  lay7.ha.haproxy_server:
    name: web2
    state: drain
    wait: true
    wait_timeout: 300

- name: Put the server at 192.168.56.12:80 back into service once its checks pass
  lay7.ha.haproxy_server:
    address: 192.168.56.12
    port: 80
    state: ready
    wait: true

- name: Give web3 a quarter of its usual traffic in one backend
  lay7.ha.haproxy_server:
    name: web3
    backends: [b_pool]
    weight: 25
"""

RETURN = r"""
servers:
  description: Every chosen server, after the change.
  returned: always
  type: list
  elements: dict
  contains:
    backend:
      description: Backend name.
      type: str
    server:
      description: Server name.
      type: str
    address:
      description: Address and port, C(address:port).
      type: str
    state_before:
      description: Forced state before the task (ready, drain or maint).
      type: str
    state:
      description: Forced state after the task (what it would be, in check mode).
      type: str
    weight_before:
      description: Weight before the task.
      type: int
    weight:
      description: Weight after the task.
      type: int
    status:
      description: HAProxy's status of the server at the end (C(UP), C(DOWN), C(DRAIN), C(MAINT), ...).
      type: str
    sessions:
      description: Sessions open plus requests queued on the server at the end.
      type: int
  sample:
    - backend: a_pool
      server: web2
      address: 192.168.56.12:80
      state_before: ready
      state: drain
      weight_before: 100
      weight: 100
      status: DRAIN
      sessions: 0
waited:
  description: Seconds spent waiting (0 when nothing was waited for).
  returned: always
  type: float
"""

import time

from ansible.module_utils.basic import AnsibleModule
from ansible_collections.lay7.ha.plugins.module_utils._haproxy_admin import (
    AdminError,
    AdminSocket,
    CONFIG_MAINT,
    forced_state,
    healthy,
    sessions,
)


def _key(row: dict) -> str:
    return f"{row['be_name']}/{row['srv_name']}"


def choose(states: list, stats: dict, name, address, port, backends) -> tuple:
    """The servers to change and, for waiting, every server that sends traffic to them."""
    def matches(row):
        return (
            (name is None or row["srv_name"] == name)
            and (address is None or row["srv_addr"] == address)
            and (port is None or str(row.get("srv_port")) == str(port))
            and (not backends or row["be_name"] in backends)
        )

    picked = [row for row in states if matches(row)]
    keys = {_key(row) for row in picked}
    # A server tracking a chosen one follows its state; changing it too would leave a
    # forced state behind on it.
    chosen = [row for row in picked if stats.get(_key(row), {}).get("tracked", "") not in keys]
    followers = [key for key, row in stats.items() if row.get("tracked", "") in keys]
    return chosen, sorted(keys | set(followers))


def _describe(row: dict, state: str, weight: int) -> str:
    return f"{_key(row)} ({row['srv_addr']}:{row.get('srv_port', '?')}): state={state} weight={weight}\n"


def main():
    module = AnsibleModule(
        argument_spec=dict(
            socket=dict(type="path", default="/run/haproxy/admin.sock"),
            name=dict(type="str"),
            address=dict(type="str"),
            port=dict(type="int"),
            backends=dict(type="list", elements="str"),
            state=dict(type="str", choices=["ready", "drain", "maint"]),
            weight=dict(type="int"),
            wait=dict(type="bool", default=False),
            wait_for=dict(type="str", choices=["sessions", "health"]),
            wait_timeout=dict(type="int", default=120),
            wait_interval=dict(type="float", default=0.5),
        ),
        required_one_of=[("name", "address")],
        required_by={"port": "address"},
        supports_check_mode=True,
    )
    p = module.params
    if p["weight"] is not None and not 0 <= p["weight"] <= 256:
        module.fail_json(msg=f"weight must be between 0 and 256, got {p['weight']}")
    if not 1 <= p["wait_timeout"] <= 86400:
        module.fail_json(msg=f"wait_timeout must be between 1 and 86400 seconds, got {p['wait_timeout']}")
    if not 0.1 <= p["wait_interval"] <= 10:
        module.fail_json(msg=f"wait_interval must be between 0.1 and 10 seconds, got {p['wait_interval']}")
    if p["state"] is None and p["weight"] is None and not p["wait"]:
        module.fail_json(msg="nothing to do: give state, weight or wait")
    wait_for = p["wait_for"] or ("health" if p["state"] == "ready" else "sessions")

    admin = AdminSocket(p["socket"])
    try:
        states = admin.servers_state()
        stats = {f"{row['pxname']}/{row['svname']}": row for row in admin.stat()}
    except AdminError as exc:
        module.fail_json(msg=str(exc))

    chosen, watched = choose(states, stats, p["name"], p["address"], p["port"], p["backends"])
    if not chosen:
        wanted = " ".join(
            f"{label} {value}" for label, value in
            (("name", p["name"]), ("address", p["address"]), ("port", p["port"]), ("in backends", p["backends"]))
            if value
        )
        module.fail_json(msg=f"no server with {wanted} in HAProxy (socket {p['socket']})")

    plan = []
    for row in chosen:
        before_state = forced_state(row["srv_admin_state"])
        before_weight = row["srv_uweight"]
        after_state = p["state"] or before_state
        after_weight = before_weight if p["weight"] is None else p["weight"]
        if after_state == "ready" and row["srv_admin_state"] & CONFIG_MAINT:
            module.fail_json(msg=f"{_key(row)} is disabled in HAProxy's configuration; it cannot be made ready at run time")
        weight_cmd = f"set weight {_key(row)} {after_weight}" if after_weight != before_weight else None
        state_cmd = f"set server {_key(row)} state {after_state}" if after_state != before_state else None
        # Weight first when the server comes back, state first when it leaves: it never
        # takes traffic at a weight it was not meant to have.
        commands = [c for c in ((weight_cmd, state_cmd) if after_state == "ready" else (state_cmd, weight_cmd)) if c]
        first, last = commands, []
        if p["wait"] and wait_for == "health":
            if after_state == "maint":
                module.fail_json(msg=f"cannot wait for the health of {_key(row)} in maintenance: its checks are stopped")
            if after_state == "ready" and before_state != "ready":
                # Coming back: proven healthy while still drained (from maintenance, drained
                # first so that checks run), then ready. A server that never gets healthy
                # is left drained, never ready and failing.
                first = [f"set server {_key(row)} state drain"] if before_state == "maint" else []
                last = commands
        plan.append((row, before_state, after_state, before_weight, after_weight, first, last))

    changed = any(first or last for *_ignored, first, last in plan)

    def send(step):
        try:
            for *_ignored, first, last in plan:
                for command in (first if step == 0 else last):
                    admin.change(command)
        except AdminError as exc:
            module.fail_json(msg=str(exc), changed=True)

    if not module.check_mode:
        send(0)

    waited = 0.0
    stats_now = stats
    failure = None
    if p["wait"] and not module.check_mode:
        started = time.monotonic()
        deadline = started + p["wait_timeout"]
        while True:
            try:
                stats_now = {f"{row['pxname']}/{row['svname']}": row for row in admin.stat()}
                op_states = {_key(row): row["srv_op_state"] for row in admin.servers_state()}
            except AdminError as exc:
                module.fail_json(msg=str(exc), changed=changed)
            if wait_for == "health":
                pending = [_key(row) for row in chosen if not healthy(stats_now.get(_key(row), {}), op_states.get(_key(row)))]
                what = "failing their health checks"
            else:
                pending = [f"{key} ({sessions(stats_now[key])})" for key in watched if key in stats_now and sessions(stats_now[key])]
                what = "with sessions or queued requests (count in brackets)"
            waited = round(time.monotonic() - started, 2)
            if not pending:
                break
            if time.monotonic() >= deadline:
                failure = f"still {what} after {p['wait_timeout']} s: {', '.join(pending)}"
                break
            time.sleep(p["wait_interval"])

    # Not brought back (its checks did not pass): what was sent stays, the rest never happens.
    held_back = failure is not None and not module.check_mode
    if held_back:
        changed = any(first for *_ignored, first, _last in plan)
    if failure is None and not module.check_mode and any(last for *_ignored, last in plan):
        send(1)
        try:
            stats_now = {f"{row['pxname']}/{row['svname']}": row for row in admin.stat()}
        except AdminError as exc:
            module.fail_json(msg=str(exc), changed=True)

    servers = []
    before_text = after_text = ""
    for row, before_state, after_state, before_weight, after_weight, first, last in plan:
        stat = stats_now.get(_key(row), {})
        if held_back and last:
            after_state = "drain" if first else before_state
            after_weight = before_weight
        servers.append({
            "backend": row["be_name"],
            "server": row["srv_name"],
            "address": f"{row['srv_addr']}:{row.get('srv_port', '')}",
            "state_before": before_state,
            "state": after_state,
            "weight_before": before_weight,
            "weight": after_weight,
            "status": stat.get("status", ""),
            "sessions": sessions(stat) if stat else 0,
        })
        before_text += _describe(row, before_state, before_weight)
        after_text += _describe(row, after_state, after_weight)

    result = dict(changed=changed, servers=servers, waited=waited)
    if module._diff:
        result["diff"] = dict(before=before_text, after=after_text, before_header="runtime state", after_header="runtime state")
    if failure:
        module.fail_json(msg=failure, **result)
    module.exit_json(**result)


if __name__ == "__main__":
    main()
