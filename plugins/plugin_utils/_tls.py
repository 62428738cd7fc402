# -*- coding: utf-8 -*-
# Copyright: lay7.ha maintainers
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""HTTPS preflight: certificates, keys and chains checked on the controller (private).

The public entry point is :func:`compile_tls`; ``lay7.ha.tls_compile`` is a thin wrapper
around it. Certificates and keys are parsed with ``cryptography`` only (never a pattern over
PEM text or a tool's output) and re-serialised by it, so the files HAProxy gets do not depend
on the whitespace or line endings of the inventory.

Nothing here ever puts key material or PEM text into a message: a message names the field,
the index, the certificate's name and subject, and what is wrong.
"""

from __future__ import annotations

import datetime
import ipaddress
import os
import posixpath

from ansible.errors import AnsibleFilterError
from ansible_collections.lay7.ha.plugins.plugin_utils._routes import _NAME_RE, _check_keys, _show, host_shaped, normalise_host

try:
    import cryptography
    from cryptography import x509
    from cryptography.exceptions import InvalidSignature, UnsupportedAlgorithm
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec, rsa
    from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID
except ImportError:  # pragma: no cover - reported by compile_tls, never at import (ansible-doc must work)
    cryptography = None

# A vault-encrypted inventory value reaches a filter as an EncryptedString from ansible-core 2.19
# on, before that as an AnsibleVaultEncryptedUnicode (a Sequence, not a str); str() decrypts
# either. 2.19 still has the old name, as a factory that is no type to compare with.
try:
    from ansible.parsing.vault import EncryptedString as VAULTED
except ImportError:  # ansible-core before 2.19
    from ansible.parsing.yaml.objects import AnsibleVaultEncryptedUnicode as VAULTED

DEFAULT_FIELD = "haproxy_l7_tls_certificates"
CERT_KEYS = ("name", "certificate", "certificate_file", "key", "key_file", "default", "sni")
# cryptography 42 added the timezone-aware validity accessors (not_valid_*_utc); 40 added
# Certificate.verify_directly_issued_by.
MIN_CRYPTOGRAPHY = (42, 0)
MIN_RSA_BITS = 2048
# The curves every TLS client offers (RFC 8446, 4.2.7); HAProxy serves each of them.
EC_CURVES = {"secp256r1": "P-256", "secp384r1": "P-384", "secp521r1": "P-521"}
# A certificate or key file is a few kilobytes; anything far larger is the wrong file.
MAX_FILE_BYTES = 1024 * 1024
VAULT_HEADER = b"$ANSIBLE_VAULT;"
DATE_FORMAT = "%Y-%m-%dT%H:%M:%SZ"


def _fail(msg: str) -> None:
    raise AnsibleFilterError(msg)


def _printable(text: str) -> str:
    """Text from a certificate (a subject, a DNS name) as it may appear in a message or the
    summary: every character that is not printable escaped, so a name cannot break a line."""
    return "".join(c if c.isprintable() else c.encode("unicode_escape").decode("ascii") for c in text)


def _kind(value) -> str:
    """The type of a value, for messages about values that may hold PEM text or a key: the
    value itself is never shown."""
    return "null" if value is None else f"a {type(value).__name__}"


def _date(value: datetime.datetime) -> str:
    return value.astimezone(datetime.timezone.utc).strftime(DATE_FORMAT)


def _require_cryptography() -> None:
    if cryptography is None:
        _fail("tls_compile needs the Python package 'cryptography' (42 or later) on the controller")
    version = tuple(int(part) for part in cryptography.__version__.split(".")[:2] if part.isdigit())
    if version < MIN_CRYPTOGRAPHY:
        _fail(
            f"tls_compile needs the Python package 'cryptography' 42 or later on the controller; "
            f"found {cryptography.__version__}"
        )


def _now(value) -> datetime.datetime:
    """``now`` as an aware UTC datetime: None (the current time), a datetime (naive means
    UTC) or an ISO 8601 string."""
    if value is None:
        return datetime.datetime.now(datetime.timezone.utc)
    if isinstance(value, str):
        try:
            value = datetime.datetime.fromisoformat(value)
        except ValueError:
            _fail(f"now {_show(value)} is not an ISO 8601 date and time (e.g. 2025-01-31T12:00:00Z)")
    if not isinstance(value, datetime.datetime):
        _fail(f"now must be a datetime, an ISO 8601 string or null, got {_show(value)}")
    if value.tzinfo is None:
        value = value.replace(tzinfo=datetime.timezone.utc)
    return value.astimezone(datetime.timezone.utc)


# ------------------------------------------------------------------ host names


def _valid_name(value: str) -> str | None:
    """A DNS name from a certificate, lower-cased, or None when it is no host name or
    wildcard (a partial wildcard such as 'w*.example.com', an IP address written as a name:
    clients match addresses only against IP entries, which SNI never carries)."""
    norm = value.lower() if value.isascii() else ""
    if not host_shaped(norm):
        return None
    try:
        ipaddress.ip_address(norm)
    except ValueError:
        return norm
    return None


def covers(name: str, host: str) -> bool:
    """Whether a certificate name covers a host, as browsers decide (RFC 6125, 6.4.3).

    ``*.example.com`` covers exactly one more label: ``a.example.com``, not ``example.com`` nor
    ``a.b.example.com``. A wildcard host (a route for ``*.example.com``) is covered only by the
    same wildcard, because only it covers every name the route accepts."""
    if name == host:
        return True
    if host.startswith("*.") or not name.startswith("*."):
        return False
    parent = host.partition(".")[2]
    return bool(parent) and parent == name[2:]


# ------------------------------------------------------------------ reading inputs


def _text(where: str, field: str, value) -> str:
    """PEM text from the inventory, vault-encrypted or not (VAULTED)."""
    if isinstance(value, (str, VAULTED)):
        return str(value)
    _fail(f"{where}: {field} must be PEM text (a string), got a {type(value).__name__}")


def _read_file(where: str, field: str, value, what: str) -> bytes:
    if not isinstance(value, str) or not value:
        _fail(f"{where}: {field} must be an absolute path on the controller (a non-empty string), got {_kind(value)}")
    path = str(value)
    # PEM text given as a path is not shown: it may be the key itself.
    if "-----" in path or any(not c.isprintable() for c in path):
        text_key = field.replace("_file", "")
        _fail(f"{where}: {field} is not a path (it holds line breaks, control characters or PEM armour); "
              f"PEM text belongs in {text_key}")
    if not path.startswith("/") or posixpath.normpath(path) != path:
        _fail(f"{where}: {field} {_show(path)} must be an absolute, normalised path on the controller")
    try:
        with open(path, "rb") as handle:
            data = handle.read(MAX_FILE_BYTES + 1)
    except OSError as exc:
        _fail(f"{where}: {field} {_show(path)} cannot be read on the controller: {exc.strerror or type(exc).__name__}")
    if len(data) > MAX_FILE_BYTES:
        _fail(f"{where}: {field} {_show(path)} is larger than {MAX_FILE_BYTES // 1024} KiB; it is not {what}")
    if data.lstrip().startswith(VAULT_HEADER):
        _fail(
            f"{where}: {field} {_show(path)} is vault-encrypted and a filter cannot decrypt files; "
            f"pass its content instead, e.g. {field.replace('_file', '')}: "
            f"\"{{{{ lookup('ansible.builtin.file', '{os.path.basename(path)}') }}}}\" (the file lookup decrypts it)"
        )
    return data


def _source(where: str, raw: dict, text_key: str, file_key: str, what: str) -> bytes:
    has_text, has_file = text_key in raw, file_key in raw
    if has_text == has_file:
        state = "both" if has_text else "neither"
        _fail(f"{where}: exactly one of {text_key} (PEM text) or {file_key} (a path on the controller) is required; got {state}")
    if has_file:
        return _read_file(where, file_key, raw[file_key], what)
    return _text(where, text_key, raw[text_key]).encode("utf-8", "surrogateescape")


# ------------------------------------------------------------------ certificates and keys


def _subject(cert) -> str:
    return _printable(cert.subject.rfc4514_string())


def _cert_names(cert) -> list:
    """The certificate's DNS names: its subjectAltName DNS entries, or, only when it has no
    subjectAltName extension at all, its subject common name(s). Lower-cased, in certificate
    order, without duplicates; entries that are no host name or wildcard are left out."""
    try:
        san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
        raw = san.get_values_for_type(x509.DNSName)
    except x509.ExtensionNotFound:
        raw = [attr.value for attr in cert.subject.get_attributes_for_oid(NameOID.COMMON_NAME)
               if isinstance(attr.value, str)]
    names: list = []
    for value in raw:
        name = _valid_name(value)
        if name is not None and name not in names:
            names.append(name)
    return names


def _check_validity(where: str, position: str, cert, now: datetime.datetime) -> None:
    before, after = cert.not_valid_before_utc, cert.not_valid_after_utc
    if now < before:
        _fail(f"{where}: {position} (subject '{_subject(cert)}') is not valid before {_date(before)} (now {_date(now)})")
    if now >= after:
        _fail(f"{where}: {position} (subject '{_subject(cert)}') expired on {_date(after)} (now {_date(now)})")


def _position(index: int) -> str:
    return "the leaf certificate (position 1)" if index == 0 else f"the chain certificate at position {index + 1}"


def _check_chain(where: str, chain: list) -> None:
    """Certificate i must be issued by certificate i + 1: the issuer name is the next one's
    subject and its signature verifies with the next one's public key."""
    hint = ("order the PEM text leaf first, then the intermediate that signed it, then the one that "
            "signed that intermediate, and so on (a root may be last)")
    seen: dict = {}
    for index, cert in enumerate(chain):
        der = cert.public_bytes(serialization.Encoding.DER)
        if der in seen:
            _fail(f"{where}: {_position(index)} (subject '{_subject(cert)}') repeats position {seen[der] + 1}; "
                  "list each certificate once")
        seen[der] = index
    for index in range(len(chain) - 1):
        cert, issuer = chain[index], chain[index + 1]
        problem = None
        if cert.issuer != issuer.subject:
            problem = f"its issuer is '{_printable(cert.issuer.rfc4514_string())}'"
        else:
            try:
                cert.verify_directly_issued_by(issuer)
            except InvalidSignature:
                problem = "the issuer names match but its signature does not verify with that certificate's key"
            except (ValueError, TypeError, UnsupportedAlgorithm) as exc:
                problem = f"its signature cannot be checked against that certificate ({type(exc).__name__})"
        if problem:
            _fail(
                f"{where}: {_position(index)} (subject '{_subject(cert)}') was not issued by the certificate "
                f"after it, position {index + 2} (subject '{_subject(issuer)}'): {problem}; {hint}"
            )


def _key_kind(key) -> str | None:
    """'RSA 2048', 'EC P-256', ... for keys HAProxy serves to every client, else None."""
    if isinstance(key, rsa.RSAPrivateKey):
        return f"RSA {key.key_size}" if key.key_size >= MIN_RSA_BITS else None
    if isinstance(key, ec.EllipticCurvePrivateKey):
        curve = EC_CURVES.get(key.curve.name)
        return f"EC {curve}" if curve else None
    return None


def _describe_key(key) -> str:
    if isinstance(key, rsa.RSAPrivateKey):
        return f"an RSA key of {key.key_size} bits"
    if isinstance(key, ec.EllipticCurvePrivateKey):
        return f"an EC key on curve {key.curve.name}"
    return f"a {type(key).__name__.lstrip('_')}"


def _load_key(where: str, key_field: str, data: bytes):
    try:
        return serialization.load_pem_private_key(data, password=None)
    except TypeError:
        _fail(
            f"{where}: {key_field} is protected by a passphrase, and HAProxy cannot read a passphrase-protected key "
            "(it would ask for it on start); store the key unencrypted in PEM and protect it with ansible-vault instead"
        )
    except (ValueError, UnsupportedAlgorithm):
        _fail(f"{where}: {key_field} is not a PEM private key that can be read (PKCS#8, PKCS#1 or SEC 1 in PEM)")


def _spki(public_key) -> bytes:
    return public_key.public_bytes(serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)


def _contains_key(data: bytes) -> bool:
    """Whether PEM text holds a private key (encrypted or not), found by parsing it."""
    try:
        serialization.load_pem_private_key(data, password=None)
    except TypeError:
        return True
    except (ValueError, UnsupportedAlgorithm):
        return False
    return True


def _server_auth(cert) -> bool:
    """A certificate restricted by extendedKeyUsage must allow TLS server authentication."""
    try:
        usages = cert.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value
    except x509.ExtensionNotFound:
        return True
    return ExtendedKeyUsageOID.SERVER_AUTH in usages or ExtendedKeyUsageOID.ANY_EXTENDED_KEY_USAGE in usages


def _compile_one(field: str, index: int, raw: dict, now: datetime.datetime) -> dict:
    name = raw["name"]
    where = f"{field}[{index}] '{name}'"
    cert_field = "certificate_file" if "certificate_file" in raw else "certificate"
    key_field = "key_file" if "key_file" in raw else "key"

    cert_data = _source(where, raw, "certificate", "certificate_file", "a PEM certificate")
    try:
        chain = x509.load_pem_x509_certificates(cert_data)
    except ValueError:
        chain = []
    if not chain:
        _fail(f"{where}: {cert_field} holds no PEM certificate that can be read (PEM text, leaf first; DER is not read)")
    if _contains_key(cert_data):
        _fail(f"{where}: {cert_field} also holds a private key; give the key only in key or key_file "
              "(vault-encrypted), so it is never stored in clear text with the certificate")
    leaf = chain[0]
    subject = _subject(leaf)
    where = f"{where} (subject '{subject}')"

    key = _load_key(where, key_field, _source(where, raw, "key", "key_file", "a PEM private key"))
    kind = _key_kind(key)
    if kind is None:
        _fail(f"{where}: {key_field} is {_describe_key(key)}; use an RSA key of at least {MIN_RSA_BITS} bits "
              "or an EC key on P-256, P-384 or P-521")
    if _spki(key.public_key()) != _spki(leaf.public_key()):
        # The key's own certificate further down: the usual mistake of a chain pasted in the
        # wrong order (intermediate or root first).
        for position, cert in enumerate(chain[1:], start=1):
            if _spki(key.public_key()) == _spki(cert.public_key()):
                _fail(f"{where}: the chain in {cert_field} is in the wrong order: the certificate of {key_field} "
                      f"('{_subject(cert)}') is at position {position + 1}; put the leaf first, then the "
                      "intermediate that signed it, and so on")
        _fail(f"{where}: {key_field} does not belong to the leaf certificate (the first one in {cert_field}): "
              "their public keys differ")

    for position, cert in enumerate(chain):
        _check_validity(where, _position(position), cert, now)
    _check_chain(where, chain)
    if not _server_auth(leaf):
        _fail(f"{where}: the leaf certificate's extendedKeyUsage does not allow TLS server authentication (serverAuth)")

    names = _cert_names(leaf)
    if not names:
        _fail(f"{where}: the leaf certificate has no DNS name (no DNS entry in its subjectAltName, "
              "or, without that extension, no host name as common name); clients would refuse it")

    sni_raw = raw.get("sni")
    if sni_raw is None:
        sni_raw = []
    if not isinstance(sni_raw, list):
        _fail(f"{where}: sni must be a list of host names, got {_show(sni_raw)}")
    sni: list = []
    for sidx, value in enumerate(sni_raw):
        host = normalise_host(f"{where}: sni[{sidx}]", value)
        if host in sni:
            _fail(f"{where}: sni[{sidx}] '{host}' is listed twice")
        if not any(covers(cert_name, host) for cert_name in names):
            _fail(f"{where}: sni[{sidx}] '{host}' is not covered by the certificate's names: {', '.join(names)}")
        sni.append(host)

    default = raw.get("default", False)
    if not isinstance(default, bool):
        _fail(f"{where}: default must be true or false, got {_show(default)}")

    pem = b"".join(cert.public_bytes(serialization.Encoding.PEM) for cert in chain)
    pem += key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                             serialization.NoEncryption())
    return {
        "name": name,
        "file": f"{name}.pem",
        "default": default,
        "sni": sni,
        "names": names,
        "subject": subject,
        "issuer": _printable(leaf.issuer.rfc4514_string()),
        "not_after": _date(leaf.not_valid_after_utc),
        "fingerprint_sha256": leaf.fingerprint(hashes.SHA256()).hex(":").upper(),
        "key_type": kind,
        "pem": pem.decode("ascii"),
    }


# ------------------------------------------------------------------ host lists


def _host_list(label: str, value, allow_all: bool) -> tuple:
    """(all, hosts) of a host list; None is an empty list, null entries are skipped (a route
    without a host)."""
    if value is None:
        return False, {}
    if not isinstance(value, list):
        _fail(f"{label} must be a list of host names, got {_show(value)}")
    if allow_all and "*" in value:
        if len(value) > 1:
            _fail(f"{label}: '*' means every host and stands alone; drop the other entries or the '*'")
        return True, {}
    hosts: dict = {}  # host -> index of its first entry
    for idx, item in enumerate(value):
        if item is None and not allow_all:
            continue
        hosts.setdefault(normalise_host(f"{label}[{idx}]", item), idx)
    return False, hosts


def _split(hosts: dict) -> dict:
    return {
        "exact": sorted(h for h in hosts if not h.startswith("*.")),
        "suffix": sorted(h[1:] for h in hosts if h.startswith("*.")),
    }


# ------------------------------------------------------------------ entry point


def compile_tls(certificates, hosts=None, redirect_hosts=None, hsts_hosts=None, now=None,
                field: str = DEFAULT_FIELD) -> dict:
    """Check certificates, keys and host coverage; return what the role writes (see
    ``lay7.ha.tls_compile``'s DOCUMENTATION)."""
    if not isinstance(field, str) or not field:
        _fail(f"tls_compile: field must be the variable's name (a string), got {_show(field)}")
    if not isinstance(certificates, list):
        _fail(f"{field} must be a list of certificates, got {_kind(certificates)}")
    when = _now(now)
    if certificates:
        _require_cryptography()

    compiled: list = []
    seen: dict = {}
    for index, raw in enumerate(certificates):
        where = f"{field}[{index}]"
        if not isinstance(raw, dict):
            _fail(f"{where}: expected a mapping (name, certificate or certificate_file, key or key_file), "
                  f"got {_kind(raw)}")
        if "name" not in raw:
            _fail(f"{where}: name is required")
        name = raw["name"]
        if not isinstance(name, str) or not _NAME_RE.fullmatch(name):
            _fail(f"{where}: name {_show(name)} is not a valid name (letters, digits, '_', '.', '-'; "
                  "starting with a letter or digit; at most 63 characters; it becomes the file <name>.pem)")
        name = str(name)
        _check_keys(f"{where} '{name}'", raw, CERT_KEYS)
        if name in seen:
            _fail(f"{where} '{name}': name '{name}' is already used by {field}[{seen[name]}]")
        seen[name] = index
        compiled.append(_compile_one(field, index, raw, when))

    if len(compiled) == 1:
        compiled[0]["default"] = True
    elif compiled:
        defaults = [c["name"] for c in compiled if c["default"]]
        if not defaults:
            _fail(f"{field}: missing default certificate: with several certificates exactly one needs "
                  f"default: true (the one HAProxy offers to clients whose SNI matches none); names: "
                  f"{', '.join(c['name'] for c in compiled)}")
        if len(defaults) > 1:
            _fail(f"{field}: missing default certificate: exactly one needs default: true, "
                  f"but {len(defaults)} have it: {', '.join(defaults)}")
    ordered = [c for c in compiled if c["default"]] + [c for c in compiled if not c["default"]]

    lists = {}
    _all, route_hosts = _host_list("hosts", hosts, allow_all=False)
    for label, value in (("redirect_hosts", redirect_hosts), ("hsts_hosts", hsts_hosts)):
        lists[label] = _host_list(label, value, allow_all=True)

    available = "; ".join(f"{c['name']}: {', '.join(c['sni'] or c['names'])}" for c in ordered)
    for label, (every, names) in (("hosts", (False, route_hosts)), *lists.items()):
        if not ordered and (every or names):
            shown = "'*'" if every else ", ".join(f"'{h}'" for h in names)
            _fail(f"{label} names {shown} but {field} is empty: HTTPS needs a certificate")
        for host, idx in names.items():
            if not any(covers(n, host) for c in ordered for n in (c["sni"] or c["names"])):
                hint = (" (a wildcard host is covered only by the same wildcard certificate name)"
                        if host.startswith("*.") else "")
                _fail(f"{label}[{idx}]: host '{host}' is not covered by any certificate in {field}{hint}; "
                      f"certificate names: {available}")

    redirect_all, redirect = lists["redirect_hosts"]
    hsts_all, hsts = lists["hsts_hosts"]
    summary = [
        f"{c['name']}: {c['subject']}, names {', '.join(c['names'])}"
        f"{', offered for ' + ', '.join(c['sni']) if c['sni'] else ''}, valid until {c['not_after']}, "
        f"{c['key_type']}{', default' if c['default'] else ''}"
        for c in ordered
    ]
    return {
        "certificates": ordered,
        "crt_list": [" ".join([c["file"], *c["sni"]]) for c in ordered],
        "redirect": {"all": redirect_all, **_split(redirect)},
        "hsts": {"all": hsts_all, **_split(hsts)},
        "summary": summary,
    }
