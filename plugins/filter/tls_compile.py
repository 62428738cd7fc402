# -*- coding: utf-8 -*-
# Copyright: lay7.ha maintainers
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""The lay7.ha.tls_compile filter: certificates and keys -> HAProxy crt-list, checked first."""

from __future__ import annotations

DOCUMENTATION = r"""
name: tls_compile
short_description: Check TLS certificates and keys on the controller and compile HAProxy's crt-list
version_added: 0.2.0
author: lay7.ha maintainers
description:
  - The HTTPS preflight of the haproxy_l7 role. Every certificate, key and chain is parsed and
    checked on the controller, with the Python package C(cryptography) (never patterns over PEM
    text or a tool's output), before any host changes.
  - Per certificate it checks that the key is an unencrypted PEM private key (HAProxy cannot read a
    passphrase-protected key), an RSA key of at least 2048 bits or an EC key on P-256, P-384 or
    P-521, and that it belongs to the leaf certificate; that the leaf and every chain certificate is
    valid at O(now); that each certificate is issued by the next one (name and signature; leaf first,
    then the intermediate that signed it, and so on; a root may be last; a self-signed leaf alone is
    fine); that the leaf allows TLS server authentication when it has an extendedKeyUsage; that the
    leaf has a DNS name; and that every C(sni) name is covered by the certificate's names.
  - Across certificates it checks that names are unique, that exactly one certificate is the
    default (a single certificate is the default without saying so), and that every host in
    O(hosts), O(redirect_hosts) and O(hsts_hosts) is covered by some certificate.
  - Coverage follows browsers (RFC 6125) - C(*.example.com) covers exactly one more label
    (C(a.example.com), not C(example.com) nor C(a.b.example.com)); a wildcard host
    C(*.example.com) is covered only by the certificate name C(*.example.com). A certificate's
    names are its C(sni) list when given, else its DNS subjectAltNames (its subject common name
    only when it has no subjectAltName extension at all).
  - Error messages name the variable, the index, the certificate's name and subject, and what
    is wrong. They never show key material or PEM text.
  - The C(pem) of each returned certificate holds the private key in clear text - use the result
    only in tasks with C(no_log=true); C(summary) is safe to print.
  - The output is deterministic - certificates and keys are re-serialised by C(cryptography), so
    whitespace and line endings in the input do not matter.
requirements:
  - cryptography >= 42 (on the controller)
positional: hosts, redirect_hosts, hsts_hosts
options:
  _input:
    description:
      - The certificates, a list of mappings (may be empty; then O(hosts), O(redirect_hosts) and
        O(hsts_hosts) must be empty too, as HTTPS needs a certificate). Any other key is an error.
      - C(name) (required, unique; letters, digits, C(_), C(.), C(-), at most 63 characters) - the
        certificate is written as C(<name>.pem).
      - Exactly one of C(certificate) (PEM text - the leaf certificate first, then its
        intermediates in order; a root may be last) or C(certificate_file) (absolute path on the
        controller of such a file).
      - Exactly one of C(key) (PEM text of the private key, usually vault-encrypted in the
        inventory) or C(key_file) (absolute path on the controller of a plain PEM key file; for a
        vault-encrypted file use C(key) with the C(ansible.builtin.file) lookup, which decrypts).
      - C(default) (bool) - the certificate HAProxy offers when no SNI name matches; exactly one
        of several certificates has it.
      - C(sni) (list of host names or C(*.example.com) wildcards) - the names the certificate is
        offered for; each must be covered by the certificate's names. Default (or an empty list)
        - the certificate's own names.
    type: list
    elements: dict
    required: true
  hosts:
    description:
      - Host names routed over HTTPS (route hosts; C(*.example.com) wildcards allowed; null
        entries, routes without a host, are skipped). Each must be covered by a certificate.
    type: list
    elements: str
    default: []
  redirect_hosts:
    description:
      - Hosts whose plain HTTP requests are redirected to HTTPS - C(['*']) for every host, or host
        names and C(*.example.com) wildcards, each covered by a certificate.
    type: list
    elements: str
    default: []
  hsts_hosts:
    description:
      - Hosts whose HTTPS responses carry C(Strict-Transport-Security) - C(['*']) for every host,
        or host names and C(*.example.com) wildcards, each covered by a certificate.
    type: list
    elements: str
    default: []
  now:
    description:
      - The time certificates must be valid at - a datetime (naive means UTC) or an ISO 8601
        string. Default - the current UTC time.
    type: raw
  field:
    description: The variable name the messages give for the certificate list.
    type: str
    default: haproxy_l7_tls_certificates
"""

EXAMPLES = r"""
- name: Check the certificates and compile the crt-list (no_log - the result holds the keys)
  ansible.builtin.set_fact:
    __haproxy_l7_tls: >-
      {{ haproxy_l7_tls_certificates
         | lay7.ha.tls_compile(hosts=['www.example.com', 'api.example.com'],
                               redirect_hosts=['*'], hsts_hosts=['www.example.com']) }}
  no_log: true
  vars:
    haproxy_l7_tls_certificates:
      - name: www
        default: true
        certificate_file: /srv/pki/www.example.com.fullchain.pem
        key: "{{ vault_www_key }}"
      - name: api
        certificate: "{{ lookup('ansible.builtin.file', 'api.example.com.fullchain.pem') }}"
        key: "{{ lookup('ansible.builtin.file', 'api.example.com.key.vault') }}"
        sni: [api.example.com]
# __haproxy_l7_tls.crt_list == ['www.pem', 'api.pem api.example.com']
# __haproxy_l7_tls.redirect == {'all': true, 'exact': [], 'suffix': []}
# __haproxy_l7_tls.hsts == {'all': false, 'exact': ['www.example.com'], 'suffix': []}

- name: Show what will be deployed (safe to print)
  ansible.builtin.debug:
    var: __haproxy_l7_tls.summary

# A key that belongs to another certificate fails with
#   haproxy_l7_tls_certificates[1] 'api' (subject 'CN=api.example.com'): key does not belong to the
#   leaf certificate (the first one in certificate): their public keys differ
"""

RETURN = r"""
_value:
  description: The checked certificates and what the role writes from them.
  type: dict
  contains:
    certificates:
      description:
        - One entry per certificate, the default one first, then the others in input order
          (HAProxy takes the first line of a crt-list as the default certificate).
      type: list
      elements: dict
      contains:
        name: {description: The certificate's name., type: str}
        file: {description: "The file name HAProxy reads, C(<name>.pem).", type: str}
        default: {description: Whether it is the default certificate., type: bool}
        sni:
          description: The explicit C(sni) names, lower-cased, or an empty list when the certificate's own names are used.
          type: list
          elements: str
        names:
          description: The leaf certificate's DNS names, lower-cased, in certificate order.
          type: list
          elements: str
        subject: {description: The leaf's subject (RFC 4514)., type: str}
        issuer: {description: The leaf's issuer (RFC 4514)., type: str}
        not_after: {description: 'End of the leaf''s validity, ISO 8601 UTC (C(2026-01-31T12:00:00Z)).', type: str}
        fingerprint_sha256: {description: "SHA-256 fingerprint of the leaf, upper-case hex with colons.", type: str}
        key_type: {description: 'The key, C(RSA <bits>) or C(EC P-256) (P-384, P-521).', type: str}
        pem:
          description:
            - The file content - the leaf and its chain in input order, then the private key (PKCS#8,
              unencrypted), all PEM, ending with a newline. Secret - write it with C(no_log).
          type: str
    crt_list:
      description:
        - The lines of HAProxy's crt-list, in the same order - the file name, then the explicit
          sni names (C(api.pem api.example.com)).
      type: list
      elements: str
    redirect:
      description: Hosts redirected from HTTP to HTTPS.
      type: dict
      contains:
        all: {description: "Every host (C(redirect_hosts) was C(['*'])).", type: bool}
        exact: {description: "Host names, sorted.", type: list, elements: str}
        suffix: {description: "Suffixes C(.example.com) of the wildcards C(*.example.com), sorted.", type: list, elements: str}
    hsts:
      description: Hosts that get Strict-Transport-Security, in the same form as RV(_value.redirect).
      type: dict
    summary:
      description: One line per certificate (name, subject, key type, names, end of validity); safe to print.
      type: list
      elements: str
"""

from ansible.errors import AnsibleFilterError
from ansible_collections.lay7.ha.plugins.plugin_utils._tls import DEFAULT_FIELD, compile_tls


def tls_compile(
    certificates,
    hosts: list | None = None,
    redirect_hosts: list | None = None,
    hsts_hosts: list | None = None,
    now=None,
    field: str = DEFAULT_FIELD,
) -> dict:
    """Check certificates and compile the crt-list; see DOCUMENTATION."""
    try:
        return compile_tls(certificates, hosts=hosts, redirect_hosts=redirect_hosts,
                           hsts_hosts=hsts_hosts, now=now, field=field)
    except AnsibleFilterError:
        raise
    except (TypeError, ValueError) as exc:  # defensive: never a traceback, never the input
        raise AnsibleFilterError(f"tls_compile: {field}: unexpected {type(exc).__name__} while checking it") from None


class FilterModule:
    """lay7.ha TLS filters."""

    def filters(self) -> dict:
        return {"tls_compile": tls_compile}
