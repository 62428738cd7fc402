# -*- coding: utf-8 -*-
# Copyright: lay7.ha maintainers
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""The lay7.ha.sha512_crypt filter: a password as a crypt(3) SHA-512 hash."""

from __future__ import annotations

DOCUMENTATION = r"""
name: sha512_crypt
short_description: Hash a password with crypt(3) SHA-512 ("$6$"), with a salt you choose
version_added: 0.2.0
author: lay7.ha maintainers
description:
  - Returns the SHA-512 crypt hash (the "$6$" scheme of glibc and libxcrypt, as written by
    C(mkpasswd -m sha-512)) of O(_input) with the given O(salt), computed in pure Python.
  - The haproxy_l7 role writes the stats password into haproxy.cfg only as this hash, so the
    file, C(--diff) and AWX "show changes" never contain the password itself.
  - ansible.builtin.password_hash needs passlib (unmaintained, not installed with ansible-core)
    and Python's C(crypt) module is gone in Python 3.13; this has no dependency.
  - The same password and salt always give the same hash, so a rerun changes nothing and
    every load balancer gets an identical file. The salt is not secret; it should differ
    between deployments so that one precomputed table does not serve them all.
positional: salt, rounds
options:
  _input:
    description: The password.
    type: str
    required: true
  salt:
    description: Up to 16 characters of C([./0-9A-Za-z]); longer salts are cut to 16, as crypt(3) does.
    type: str
    required: true
  rounds:
    description: Number of rounds (1000 to 999999999); 5000 is the scheme's default and is then not written into the hash.
    type: int
    default: 5000
"""

EXAMPLES = r"""
- name: Hash the stats password (salt from non-secret inputs, stable across runs)
  ansible.builtin.set_fact:
    stats_hash: "{{ stats_password | lay7.ha.sha512_crypt(('lay7' ~ stats_user) | hash('sha256') | truncate(16, True, '')) }}"
"""

RETURN = r"""
_value:
  description: The hash, C($6$<salt>$<86 characters>) (C($6$rounds=N$...) when O(rounds) is not 5000).
  type: str
"""

import hashlib
import re

from ansible.errors import AnsibleFilterError

_ALPHABET = "./0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz"
# Byte order of the final digest in the encoded hash (from the SHA-crypt specification).
_ORDER = (
    (0, 21, 42), (22, 43, 1), (44, 2, 23), (3, 24, 45), (25, 46, 4), (47, 5, 26), (6, 27, 48),
    (28, 49, 7), (50, 8, 29), (9, 30, 51), (31, 52, 10), (53, 11, 32), (12, 33, 54), (34, 55, 13),
    (56, 14, 35), (15, 36, 57), (37, 58, 16), (59, 17, 38), (18, 39, 60), (40, 61, 19), (62, 20, 41),
)


def _b64(b2: int, b1: int, b0: int, count: int) -> str:
    word = (b2 << 16) | (b1 << 8) | b0
    chars = []
    for _index in range(count):
        chars.append(_ALPHABET[word & 0x3F])
        word >>= 6
    return "".join(chars)


def _repeat(digest: bytes, length: int) -> bytes:
    return (digest * (length // len(digest) + 1))[:length]


def sha512_crypt(password: str, salt: str, rounds: int = 5000) -> str:
    """Ulrich Drepper's SHA-512 crypt, https://www.akkadia.org/drepper/SHA-crypt.txt."""
    if not isinstance(password, str) or not isinstance(salt, str):
        raise AnsibleFilterError("sha512_crypt: the password and the salt must be strings")
    salt = salt[:16]
    if not re.fullmatch(r"[./0-9A-Za-z]{1,16}", salt):
        raise AnsibleFilterError("sha512_crypt: the salt must be 1-16 characters of [./0-9A-Za-z]")
    if isinstance(rounds, bool) or not isinstance(rounds, int) or not 1000 <= rounds <= 999_999_999:
        raise AnsibleFilterError("sha512_crypt: rounds must be an integer from 1000 to 999999999")
    pw, sb = password.encode("utf-8"), salt.encode("ascii")

    alternate = hashlib.sha512(pw + sb + pw).digest()
    context = hashlib.sha512(pw + sb)
    context.update(_repeat(alternate, len(pw)))
    length = len(pw)
    while length:
        context.update(alternate if length & 1 else pw)
        length >>= 1
    digest_a = context.digest()

    p_bytes = _repeat(hashlib.sha512(pw * len(pw)).digest(), len(pw))
    s_bytes = _repeat(hashlib.sha512(sb * (16 + digest_a[0])).digest(), len(sb))

    current = digest_a
    for index in range(rounds):
        context = hashlib.sha512(p_bytes if index & 1 else current)
        if index % 3:
            context.update(s_bytes)
        if index % 7:
            context.update(p_bytes)
        context.update(current if index & 1 else p_bytes)
        current = context.digest()

    encoded = "".join(_b64(current[a], current[b], current[c], 4) for a, b, c in _ORDER)
    encoded += _b64(0, 0, current[63], 2)
    rounds_part = "" if rounds == 5000 else f"rounds={rounds}$"
    return f"$6${rounds_part}{salt}${encoded}"


class FilterModule:
    """lay7.ha.sha512_crypt"""

    def filters(self) -> dict:
        return {"sha512_crypt": sha512_crypt}
