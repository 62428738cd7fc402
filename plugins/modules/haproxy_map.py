#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright: lay7.ha maintainers
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""The lay7.ha.haproxy_map module: replace a map's contents in a running HAProxy, atomically."""

from __future__ import annotations

DOCUMENTATION = r"""
module: haproxy_map
short_description: Replace the contents of a map in a running HAProxy at once, without a reload
version_added: 0.3.0
author: lay7.ha maintainers (@lay7)
description:
  - Makes the entries of a map loaded by a running HAProxy equal to O(content), through its admin socket
    (the runtime API), without a reload.
  - Atomic - the new entries are filled into a new version of the map (C(prepare map)), which requests do
    not see, and that version replaces the old one in one step (C(commit map)). A request is routed
    either by the whole old map or by the whole new one, never by a mix.
  - Order is kept - entries are added in the order of O(content), which matters to C(map_reg) and
    C(map_sub) lookups (first match wins).
  - Idempotent - compares the running map with O(content) (keys, values and order) and changes nothing
    when they are equal.
  - Changes only the running process. The haproxy_l7 role writes the same content to the map file, for
    the next start or reload; it uses this module only when haproxy.cfg itself is unchanged (a change
    of route table that only touches map entries).
options:
  socket:
    description: Path of HAProxy's admin socket (C(stats socket ... level admin)).
    type: path
    default: /run/haproxy/admin.sock
  path:
    description: The map as the configuration names it, its file path (for example C(/etc/haproxy/maps/lay7_routes_prefix.map)).
    type: str
    required: true
  content:
    description:
      - The map's new contents, in map-file syntax - one C(key value) per line; blank lines and lines
        starting with C(#) are skipped. An empty string empties the map.
    type: str
    required: true
  batch:
    description: Entries sent per command while the new version is filled (1-10000); HAProxy limits a command's size to its buffer.
    type: int
    default: 200
attributes:
  check_mode:
    support: full
    description: Compares and reports; the running map is not changed.
  diff_mode:
    support: full
    description: The running entries before and after, one C(key value) per line.
notes:
  - HAProxy 2.4 or later (versioned maps). The map must be loaded by the running configuration; a map the
    configuration does not use yet needs a reload, and the module fails saying so.
  - Needs read and write access to the admin socket (root, or a member of the socket's group).
seealso:
  - module: lay7.ha.haproxy_server
  - name: HAProxy management guide, prepare map / commit map
    description: The versioned map commands this module sends.
    link: https://docs.haproxy.org/2.6/management.html#9.3-prepare%20map
"""

EXAMPLES = r"""
- name: Route /shop to the shop backend in the running HAProxy (and nothing else changes)
  lay7.ha.haproxy_map:
    path: /etc/haproxy/maps/lay7_routes_prefix.map
    content: |
      /a/ 1:a_pool
      /shop/ 0:shop_pool
"""

RETURN = r"""
entries:
  description: Number of entries in the map after the task.
  returned: always
  type: int
version:
  description: The map version committed (absent when nothing changed).
  returned: changed and not check mode
  type: int
"""

import re

from ansible.module_utils.basic import AnsibleModule
from ansible_collections.lay7.ha.plugins.module_utils._haproxy_admin import (
    AdminError,
    AdminSocket,
    map_entries,
    parse_map,
)

NEW_VERSION = re.compile(r"New version created: (\d+)")


def _text(entries: list) -> str:
    return "".join(f"{key} {value}\n" for key, value in entries)


def main():
    module = AnsibleModule(
        argument_spec=dict(
            socket=dict(type="path", default="/run/haproxy/admin.sock"),
            path=dict(type="str", required=True),
            content=dict(type="str", required=True),
            batch=dict(type="int", default=200),
        ),
        supports_check_mode=True,
    )
    p = module.params
    if not 1 <= p["batch"] <= 10000:
        module.fail_json(msg=f"batch must be between 1 and 10000, got {p['batch']}")
    if any(c.isspace() for c in p["path"]) or ";" in p["path"]:
        module.fail_json(msg=f"path must be a map file path without blanks or ';', got {p['path']!r}")
    wanted = map_entries(p["content"])
    admin = AdminSocket(p["socket"])

    def show(ref: str) -> list:
        answer = admin.command(f"show map {ref}")
        if answer.startswith("Unknown map identifier"):
            module.fail_json(msg=(
                f"the running HAProxy has no map {p['path']} loaded (its configuration does not use it): "
                "a reload is needed to use it"))
        return parse_map(answer)

    try:
        current = show(p["path"])
    except AdminError as exc:
        module.fail_json(msg=str(exc))
    result = dict(changed=current != wanted, entries=len(wanted if current != wanted else current))
    if module._diff:
        result["diff"] = dict(before=_text(current), after=_text(wanted), before_header=p["path"], after_header=p["path"])
    if not result["changed"] or module.check_mode:
        module.exit_json(**result)

    try:
        answer = admin.command(f"prepare map {p['path']}")
        found = NEW_VERSION.search(answer)
        if not found:
            raise AdminError(f"HAProxy refused 'prepare map {p['path']}': {answer.strip()}")
        version = int(found.group(1))
        lines = [f"{key} {value}" for key, value in wanted]
        for start in range(0, len(lines), p["batch"]):
            answer = admin.command_with_payload(f"add map @{version} {p['path']}", lines[start:start + p["batch"]]).strip()
            if answer:
                raise AdminError(f"HAProxy refused entries of map {p['path']} (version {version}): {answer}")
        filled = parse_map(admin.command(f"show map @{version} {p['path']}"))
        if filled != wanted:
            # Not committed: the running map is untouched; the uncommitted version is dropped
            # by HAProxy at the next prepare or commit.
            raise AdminError(f"the new version of {p['path']} does not hold the wanted entries; not committed")
        admin.change(f"commit map @{version} {p['path']}")
        after = show(p["path"])
    except AdminError as exc:
        module.fail_json(msg=str(exc), changed=False)
    if after != wanted:
        module.fail_json(msg=f"after the commit, {p['path']} does not hold the wanted entries", changed=True)
    result["version"] = version
    module.exit_json(**result)


if __name__ == "__main__":
    main()
