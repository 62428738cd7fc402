#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright: lay7.ha maintainers
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""The lay7.ha.haproxy_server_info module: the servers a running HAProxy has, and their state."""

from __future__ import annotations

DOCUMENTATION = r"""
module: haproxy_server_info
short_description: List the servers of a running HAProxy with their state, weight and sessions
version_added: 0.3.0
author: lay7.ha maintainers (@lay7)
description:
  - Reads every server of every backend from HAProxy's admin socket (C(show servers state) and
    C(show stat)) - what the running process has, which after a configuration change and before the
    reload differs from the file.
  - The haproxy_l7 role uses it to find the servers a deploy adds (checked for health from the load
    balancer before the reload) and removes (drained before the reload).
  - Changes nothing.
options:
  socket:
    description: Path of HAProxy's admin socket.
    type: path
    default: /run/haproxy/admin.sock
  missing_ok:
    description:
      - When nothing listens on the socket (no socket file, connection refused - HAProxy not running),
        return no servers and RV(running=false) instead of failing. Any other error still fails.
    type: bool
    default: false
attributes:
  check_mode:
    support: full
    description: Reads the same way.
  diff_mode:
    support: none
    description: Nothing changes, so there is nothing to show.
notes:
  - Needs read and write access to the admin socket (root, or a member of the socket's group).
seealso:
  - module: lay7.ha.haproxy_server
"""

EXAMPLES = r"""
- name: Read the running servers
  lay7.ha.haproxy_server_info:
  register: running

- name: Show the servers that are not up
  ansible.builtin.debug:
    msg: "{{ running.servers | rejectattr('status', 'match', 'UP') | map(attribute='key') }}"
"""

RETURN = r"""
running:
  description: Whether HAProxy answered on the socket.
  returned: always
  type: bool
servers:
  description: Every server, in HAProxy's order.
  returned: always
  type: list
  elements: dict
  contains:
    key:
      description: C(<backend>/<server>).
      type: str
    backend:
      description: Backend name.
      type: str
    name:
      description: Server name.
      type: str
    address:
      description: Address.
      type: str
    port:
      description: Port.
      type: int
    state:
      description: Forced state - ready, drain or maint.
      type: str
    status:
      description: HAProxy's status - C(UP), C(DOWN), C(DRAIN), C(MAINT) and so on.
      type: str
    weight:
      description: Weight.
      type: int
    sessions:
      description: Sessions open plus requests queued.
      type: int
    tracked:
      description: The server it tracks, C(<backend>/<server>); empty when none.
      type: str
"""

from ansible.module_utils.basic import AnsibleModule
from ansible_collections.lay7.ha.plugins.module_utils._haproxy_admin import (
    AdminError,
    AdminSocket,
    forced_state,
    sessions,
)


def main():
    module = AnsibleModule(
        argument_spec=dict(
            socket=dict(type="path", default="/run/haproxy/admin.sock"),
            missing_ok=dict(type="bool", default=False),
        ),
        supports_check_mode=True,
    )
    admin = AdminSocket(module.params["socket"])
    try:
        states = admin.servers_state()
        stats = {f"{row['pxname']}/{row['svname']}": row for row in admin.stat()}
    except AdminError as exc:
        if module.params["missing_ok"] and exc.absent:
            module.exit_json(changed=False, running=False, servers=[])
        module.fail_json(msg=str(exc))
    servers = []
    for row in states:
        key = f"{row['be_name']}/{row['srv_name']}"
        stat = stats.get(key, {})
        servers.append({
            "key": key,
            "backend": row["be_name"],
            "name": row["srv_name"],
            "address": row["srv_addr"],
            "port": int(row.get("srv_port") or 0),
            "state": forced_state(row["srv_admin_state"]),
            "status": stat.get("status", ""),
            "weight": row["srv_uweight"],
            "sessions": sessions(stat) if stat else 0,
            "tracked": stat.get("tracked", ""),
        })
    module.exit_json(changed=False, running=True, servers=servers)


if __name__ == "__main__":
    main()
