#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright: lay7.ha maintainers
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""The lay7.ha.haproxy_reload module: reload HAProxy and fail when the new configuration did not load."""

from __future__ import annotations

DOCUMENTATION = r"""
module: haproxy_reload
short_description: Reload a master-worker HAProxy and report whether the new configuration took over
version_added: 0.4.0
author: lay7.ha maintainers (@lay7)
description:
  - Reloads HAProxy through its master CLI (the socket of C(-S), which Debian's haproxy.service
    opens at C(/run/haproxy-master.sock)) - the same hitless reload as C(systemctl reload), with new
    workers on the same listening sockets and old ones finishing their connections.
  - Unlike C(systemctl reload), which only sends a signal, it waits for the outcome and fails when
    the new configuration did not load (a port another process holds, a file that cannot be read -
    what C(haproxy -c) cannot see). HAProxy then keeps serving with the old configuration, and the
    task's failure says so instead of the run reporting a change that did not happen.
  - How the outcome is learnt depends on the running HAProxy, read from the master's C(show proc).
    From HAProxy 2.7 (Debian 13 ships 3.0) the master CLI's C(reload) answers C(Success=1) or
    C(Success=0) with the new process's startup messages, which a failure shows. HAProxy 2.6
    (Debian 12) answers nothing, so the module polls C(show proc) until the master's reload counter
    or its failed-reload counter moves; the messages of a failure are then in the service's journal.
options:
  master_socket:
    description: Path of HAProxy's master CLI socket.
    type: path
    default: /run/haproxy-master.sock
  timeout:
    description:
      - Seconds to wait for the outcome (parsing the configuration, loading certificates, forking
        the workers). The task fails when it is not known by then.
    type: int
    default: 60
attributes:
  check_mode:
    support: full
    description: Reads the master's state and reports a change without reloading.
  diff_mode:
    support: none
    description: A reload changes no file.
notes:
  - Needs access to the master CLI socket (root).
  - Always reloads (C(changed=true)); notify it from the tasks that change the configuration.
seealso:
  - name: HAProxy management guide, the master CLI
    description: The C(reload) and C(show proc) commands.
    link: https://docs.haproxy.org/3.0/management.html#9.4
"""

EXAMPLES = r"""
- name: Reload haproxy
  lay7.ha.haproxy_reload:
    master_socket: /run/haproxy-master.sock
    timeout: 60
"""

RETURN = r"""
method:
  description: How the outcome was learnt - the synchronous C(reload) answer (2.7 and later) or C(show proc) polling (2.6).
  returned: success
  type: str
version:
  description: The HAProxy version running after the reload.
  returned: always
  type: str
reloads:
  description: The master's reload counter after the reload.
  returned: success
  type: int
failed_reloads:
  description: The master's failed-reload counter after the reload.
  returned: success
  type: int
workers:
  description: PIDs of the current workers after the reload.
  returned: success
  type: list
  elements: int
previous_workers:
  description: PIDs of the workers before the reload (now finishing their connections).
  returned: success
  type: list
  elements: int
startup_messages:
  description: The warnings and alerts of the new process's start (2.7 and later; empty on 2.6).
  returned: success
  type: list
  elements: str
seconds:
  description: How long the reload took, in seconds.
  returned: success
  type: float
"""

from ansible.module_utils.basic import AnsibleModule
from ansible_collections.lay7.ha.plugins.module_utils._haproxy_master import MasterCLI, MasterError


def main():
    module = AnsibleModule(
        argument_spec=dict(
            master_socket=dict(type="path", default="/run/haproxy-master.sock"),
            timeout=dict(type="int", default=60),
        ),
        supports_check_mode=True,
    )
    if module.params["timeout"] < 1:
        module.fail_json(msg=f"timeout: {module.params['timeout']} must be at least 1 second")
    master = MasterCLI(module.params["master_socket"])
    try:
        if module.check_mode:
            state = master.proc()
            module.exit_json(changed=True, version=state["version"])
        result = master.reload(float(module.params["timeout"]))
    except MasterError as exc:
        module.fail_json(msg=str(exc))
    module.exit_json(changed=True, **result)


if __name__ == "__main__":
    main()
