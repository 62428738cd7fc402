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
  - Atomic per map - the new entries are filled into a new version of the map (C(prepare map)), which
    requests do not see, and that version replaces the old one in one step (C(commit map)). A request is
    routed by the whole old map or the whole new one, never by a mix. Several maps given together (O(maps))
    are all filled first and committed by one command line, back to back.
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
    description:
      - The map as the configuration names it, its file path (for example C(/etc/haproxy/maps/lay7_routes_prefix.map)).
      - One map; or several with O(maps).
    type: str
  content:
    description:
      - The map's new contents, in map-file syntax - one C(key value) per line; blank lines and lines
        starting with C(#) are skipped. An empty string empties the map. Required with O(path).
    type: str
  maps:
    description:
      - Several maps that change together (the maps of one route table), each a dict with C(path) and
        C(content) as in O(path) and O(content); other keys are ignored, so the C(maps) that
        lay7.ha.route_compile returns can be passed as they are. All are filled first, then all
        committed by one command line, back to back.
    type: list
    elements: dict
  batch:
    description:
      - Bytes of entries sent per command while the new version is filled (1024-1048576). HAProxy reads a
        command into one buffer (C(tune.bufsize), 16384 bytes by default) and ignores a longer one.
    type: int
    default: 8192
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
  description: Number of entries in the maps after the task.
  returned: always
  type: int
versions:
  description: The version committed, per map path that changed.
  returned: changed and not check mode
  type: dict
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


def batches(lines: list, size: int) -> list:
    """Lines grouped so that each group's text stays under ``size`` bytes (a longer single
    line goes alone)."""
    out, current, length = [], [], 0
    for line in lines:
        cost = len(line.encode()) + 1
        if current and length + cost > size:
            out.append(current)
            current, length = [], 0
        current.append(line)
        length += cost
    if current:
        out.append(current)
    return out


def _text(entries: list) -> str:
    return "".join(f"{key} {value}\n" for key, value in entries)


def main():
    module = AnsibleModule(
        argument_spec=dict(
            socket=dict(type="path", default="/run/haproxy/admin.sock"),
            path=dict(type="str"),
            content=dict(type="str"),
            maps=dict(type="list", elements="dict"),
            batch=dict(type="int", default=8192),
        ),
        required_together=[("path", "content")],
        required_one_of=[("path", "maps")],
        mutually_exclusive=[("path", "maps")],
        supports_check_mode=True,
    )
    p = module.params
    if not 1024 <= p["batch"] <= 1048576:
        module.fail_json(msg=f"batch must be between 1024 and 1048576 bytes, got {p['batch']}")
    wanted_maps = p["maps"] if p["maps"] is not None else [{"path": p["path"], "content": p["content"]}]
    for item in wanted_maps:
        if not isinstance(item.get("path"), str) or not isinstance(item.get("content"), str):
            module.fail_json(msg=f"each entry of maps needs a path and a content (strings), got keys {sorted(item)}")
        if not item["path"] or any(c.isspace() for c in item["path"]) or ";" in item["path"]:
            module.fail_json(msg=f"a map path must be a file path without blanks or ';', got {item['path']!r}")
    admin = AdminSocket(p["socket"])

    def show(ref: str, path: str) -> list:
        answer = admin.command(f"show map {ref}")
        if answer.startswith("Unknown map identifier"):
            module.fail_json(msg=(
                f"the running HAProxy has no map {path} loaded (its configuration does not use it): "
                "a reload is needed to use it"))
        return parse_map(answer)

    plans = []
    try:
        for item in wanted_maps:
            wanted = map_entries(item["content"])
            plans.append((item["path"], show(item["path"], item["path"]), wanted))
    except AdminError as exc:
        module.fail_json(msg=str(exc))
    changing = [(path, current, wanted) for path, current, wanted in plans if current != wanted]
    result = dict(changed=bool(changing), entries=sum(len(wanted) for _path, _current, wanted in plans))
    if module._diff:
        diffs = [dict(before=_text(current), after=_text(wanted), before_header=path, after_header=path)
                 for path, current, wanted in plans]
        result["diff"] = diffs[0] if len(diffs) == 1 else diffs
    if not changing or module.check_mode:
        module.exit_json(**result)

    versions = {}
    try:
        # Every changed map is filled first, in a version requests do not see ...
        for path, _current, wanted in changing:
            answer = admin.command(f"prepare map {path}")
            found = NEW_VERSION.search(answer)
            if not found:
                raise AdminError(f"HAProxy refused 'prepare map {path}': {answer.strip()}")
            version = int(found.group(1))
            for chunk in batches([f"{key} {value}" for key, value in wanted], p["batch"]):
                answer = admin.command_with_payload(f"add map @{version} {path}", chunk).strip()
                if answer:
                    raise AdminError(f"HAProxy refused entries of map {path} (version {version}): {answer}")
            if parse_map(admin.command(f"show map @{version} {path}")) != wanted:
                # Nothing committed: the running maps are untouched; HAProxy drops an
                # uncommitted version at the next commit of its map.
                raise AdminError(f"the new version of {path} does not hold the wanted entries; nothing committed")
            versions[path] = version
        # ... then all are committed by one command line, back to back: the maps of one
        # route table change together (a request between two commits is the only one that
        # can see one map new and another old).
        answer = admin.commands([f"commit map @{versions[path]} {path}" for path, _c, _w in changing]).strip()
        if answer:
            raise AdminError(f"HAProxy refused to commit the new maps: {answer}")
        for path, _current, wanted in changing:
            if show(path, path) != wanted:
                module.fail_json(msg=f"after the commit, {path} does not hold the wanted entries", changed=True)
    except AdminError as exc:
        module.fail_json(msg=str(exc), changed=False)
    result["versions"] = versions
    module.exit_json(**result)


if __name__ == "__main__":
    main()
