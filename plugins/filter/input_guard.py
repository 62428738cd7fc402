# -*- coding: utf-8 -*-
# Copyright: lay7.ha maintainers
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""The lay7.ha.input_guard filter: typed checks of role inputs before they reach a config."""

from __future__ import annotations

DOCUMENTATION = r"""
name: input_guard
short_description: Check role inputs by type before any of them reaches a configuration file
version_added: 0.2.0
author: lay7.ha maintainers
description:
  - Checks every value of O(_input) against the rule of the same name in O(rules) and fails
    with one message per problem, each naming the variable and showing its value (escaped)
    - except secrets, which are named but never shown.
  - Every string is first checked for control characters (a trailing newline from a YAML
    C(|) block included), because a line break inside a configuration value becomes a new
    directive. Addresses are parsed with Python's C(ipaddress) (canonical spelling only;
    wildcard, multicast, broadcast and loopback refused unless the rule allows it), networks
    that together cover more than a /8 (IPv4) or /16 (IPv6) are refused, durations need their
    unit, paths must be absolute, normalised, inside the directories the rule names and never
    a system path.
  - The three lay7.ha roles call it first in their preflight with the rules in their
    C(vars/main.yml); docs/security.md lists what each kind refuses.
  - A value in O(_input) without a rule is itself an error, so a new input cannot reach a
    template unchecked.
positional: rules
options:
  _input:
    description: The values to check, by variable name.
    type: dict
    required: true
  rules:
    description:
      - A rule per variable name. C(kind) selects the checker; the other keys are its options.
      - "Kinds: C(any) (checked elsewhere), C(bool), C(choice) (C(choices)), C(command), C(crypt_hash),
        C(dict) (C(keys): rules per key, C(required)), C(duration) (C(min), C(max) with units),
        C(header_name) (C(set_by_role), C(pattern)), C(hostname) (C(allow_ip)), C(int) (C(min), C(max)), C(interface), C(ip) (C(version), C(loopback):
        refuse/allow/require, C(differs_from), C(prefix_field)), C(ip_list) (C(min_items)),
        C(list) (C(items), C(unique), C(min_items)), C(log_target), C(name) (C(pattern), C(max_length)),
        C(network_list) (C(min_items)), C(number) (C(min), C(max)), C(path) (C(under), C(suffix)),
        C(port), C(secret) (C(min_length), C(min_distinct), C(weak)), C(size),
        C(systemd_unit), C(text) (C(forbid), C(ascii), C(max_length)),
        C(url_path) (C(allow_root), C(plain)); C(path) also takes C(direct), C(parent) and C(etc_allowed), C(name) C(reserved)."
      - Every kind takes C(allow_empty) (an empty value is accepted as "not set").
    type: dict
    required: true
"""

EXAMPLES = r"""
- name: Check the inputs (all problems at once, secrets never shown)
  ansible.builtin.set_fact:
    checked: >-
      {{ {'my_stats_address': my_stats_address, 'my_timeout': my_timeout}
         | lay7.ha.input_guard({'my_stats_address': {'kind': 'ip'},
                                'my_timeout': {'kind': 'duration', 'min': '1s', 'max': '1h'}}) }}
# my_timeout: 30 fails with
#   my_timeout: 30 is the bare number 30: HAProxy would read it as milliseconds; give the unit (e.g. 30s or 30ms)
"""

RETURN = r"""
_value:
  description: The names of the variables checked, sorted (never their values).
  type: list
  elements: str
"""

from ansible.errors import AnsibleFilterError

from ansible_collections.lay7.ha.plugins.plugin_utils._guard import check_inputs


def input_guard(values: dict, rules: dict) -> list:
    if not isinstance(values, dict) or not isinstance(rules, dict):
        raise AnsibleFilterError("input_guard: the input and the rules must both be mappings")
    try:
        problems = check_inputs(values, rules)
    except KeyError as exc:
        raise AnsibleFilterError(f"input_guard: bad rule: {exc}") from None
    if problems:
        count = len(problems)
        lines = "\n".join(f"  - {message}" for _field, message in problems)
        raise AnsibleFilterError(f"{count} input(s) refused before any host was changed:\n{lines}")
    return sorted(values)


class FilterModule:
    """lay7.ha.input_guard"""

    def filters(self) -> dict:
        return {"input_guard": input_guard}
