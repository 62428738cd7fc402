# -*- coding: utf-8 -*-
# Copyright: lay7.ha maintainers
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""The lay7.ha.platform_check filter: is this host a platform the collection is tested on?"""

from __future__ import annotations

DOCUMENTATION = r"""
name: platform_check
short_description: Whether a host runs an operating system release lay7.ha is tested on
version_added: 0.1.0
author: lay7.ha maintainers
description:
  - Reads Ansible's facts and tells whether the host runs one of the releases every role of the
    collection is converged and verified on (the lab's C(make test) runs each of them).
  - The roles' preflight refuses any other host before changing anything, with a message that
    names what the host runs and lists the tested platforms. Debian derivatives (Ubuntu,
    Raspberry Pi OS...) and other Debian releases are refused too, although they may work -
    their HAProxy, keepalived and Apache versions and unit files differ in ways nothing here has
    checked.
  - The tested platforms are Debian 12 (bookworm) and Debian 13 (trixie). Debian 13's Python 3.13
    is a supported target only from ansible-core 2.18 (2.16 and 2.17 end at Python 3.12), so with
    an older core a Debian 13 host is refused too, naming the core needed.
positional: role, ansible_version
options:
  _input:
    description: The host's facts, C(ansible_facts) (the C(distribution) facts of the default subset).
    type: dict
    required: true
  role:
    description: The role asking, named in the message.
    type: str
    required: true
  ansible_version:
    description:
      - The running ansible-core version, C(ansible_version.full); when given, a release that needs a
        newer core is refused.
    type: str
"""

EXAMPLES = r"""
- name: Check the platform
  ansible.builtin.assert:
    that:
      - __platform.tested
    fail_msg: "{{ __platform.message }}"
  vars:
    __platform: "{{ ansible_facts | lay7.ha.platform_check('lay7.ha.haproxy_l7', ansible_version.full) }}"
"""

RETURN = r"""
_value:
  description: The verdict.
  type: dict
  contains:
    tested:
      description: Whether the host runs a tested platform.
      type: bool
    platform:
      description: What the host runs, for example C(Debian 13); C(unknown) without facts.
      type: str
    release:
      description: The Debian release's code name when tested (C(bookworm), C(trixie)), else empty.
      type: str
    message:
      description: >-
        Empty when tested; otherwise why the role refuses the host, naming what it runs and
        listing the tested platforms.
      type: str
"""

from ansible.errors import AnsibleFilterError

# (distribution, major version) -> release code name. Add a platform here only together with a
# lab image of it that make test converges and verifies (lab/topology.yml image.suites).
TESTED = {
    ("Debian", "12"): "bookworm",
    ("Debian", "13"): "trixie",
}
# The oldest ansible-core that supports the release's Python on a target (ansible-core's
# support matrix: Python 3.13, Debian 13's, from 2.18).
MIN_CORE = {
    ("Debian", "13"): (2, 18),
}


def tested_list() -> str:
    return ", ".join(f"{dist} {major} ({name})" for (dist, major), name in TESTED.items())


def _core(version) -> tuple:
    parts = str(version).split(".")
    try:
        return int(parts[0]), int(parts[1])
    except (IndexError, ValueError):
        raise AnsibleFilterError(f"platform_check: ansible_version {version!r} is not a version") from None


def platform_check(facts, role, ansible_version=None) -> dict:
    """The verdict on the host's platform; see DOCUMENTATION."""
    if not isinstance(facts, dict):
        raise AnsibleFilterError(f"platform_check: expected ansible_facts (a dict), got {type(facts).__name__}")
    dist = str(facts.get("distribution") or "")
    major = str(facts.get("distribution_major_version") or "")
    if not dist:
        platform = "unknown (gather facts first)"
    else:
        platform = f"{dist} {major}".strip()
    release = TESTED.get((dist, major), "")
    message = "" if release else (
        f"{role} is tested on {tested_list()}; this host runs {platform}. Use a tested release "
        "(the lab converges and verifies every role on each of them)."
    )
    core = _core(ansible_version) if ansible_version is not None else None
    needed = MIN_CORE.get((dist, major))
    if release and needed and core is not None and core < needed:
        message = (f"{role}: this host runs {platform}, whose Python ansible-core {ansible_version} does not "
                   f"support on a target; use ansible-core {needed[0]}.{needed[1]} or later for {platform}")
        release = ""
    return {"tested": bool(release), "platform": platform, "release": release, "message": message}


class FilterModule:
    def filters(self):
        return {"platform_check": platform_check}
