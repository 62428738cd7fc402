"""lay7.ha.tls_compile: the HTTPS preflight, on certificates the tests make themselves.

A small PKI is made once per module with ``cryptography``: a root CA, an intermediate, leaf
certificates on RSA 2048 and EC P-256 keys, a wildcard, a self-signed one, expired and
not-yet-valid ones. Every refusal must name the field, the index and the certificate's name
(and, once the certificate is read, its subject) and never show key material or PEM text.
"""

from __future__ import annotations

import datetime
import inspect
import ipaddress
import json
import re
import textwrap

import pytest
import yaml
from ansible.errors import AnsibleFilterError
from ansible.parsing import vault
from ansible.parsing.dataloader import DataLoader
from ansible_collections.lay7.ha.plugins.filter import tls_compile as plugin
from ansible_collections.lay7.ha.plugins.plugin_utils._tls import compile_tls, covers
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, rsa
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

UTC = datetime.timezone.utc
NOW = datetime.datetime(2025, 6, 1, 12, 0, tzinfo=UTC)
DAY = datetime.timedelta(days=1)
FIELD = "haproxy_l7_tls_certificates"


# ------------------------------------------------------------------ a test PKI


def rsa_key(bits: int = 2048):
    return rsa.generate_private_key(public_exponent=65537, key_size=bits)


def ec_key(curve=None):
    return ec.generate_private_key(curve or ec.SECP256R1())


def make_cert(cn, key, issuer=None, issuer_key=None, dns=(), ips=(), ca=False, san=True,
              not_before=NOW - 30 * DAY, not_after=NOW + 365 * DAY, eku=None, serial=None, org=None):
    """A certificate for ``key``; self-signed unless ``issuer``/``issuer_key`` are given."""
    attrs = [x509.NameAttribute(NameOID.COMMON_NAME, cn)]
    if org:
        attrs.insert(0, x509.NameAttribute(NameOID.ORGANIZATION_NAME, org))
    name = x509.Name(attrs)
    builder = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(issuer.subject if issuer is not None else name)
        .public_key(key.public_key())
        .serial_number(serial or x509.random_serial_number())
        .not_valid_before(not_before)
        .not_valid_after(not_after)
        .add_extension(x509.BasicConstraints(ca=ca, path_length=None), critical=True)
    )
    if san and (dns or ips):
        entries = [x509.DNSName(d) for d in dns] + [x509.IPAddress(ipaddress.ip_address(i)) for i in ips]
        builder = builder.add_extension(x509.SubjectAlternativeName(entries), critical=False)
    if eku is not None:
        builder = builder.add_extension(x509.ExtendedKeyUsage(eku), critical=False)
    algorithm = None if isinstance(issuer_key or key, ed25519.Ed25519PrivateKey) else hashes.SHA256()
    return builder.sign(issuer_key or key, algorithm)


def cert_pem(*certs) -> str:
    return "".join(c.public_bytes(serialization.Encoding.PEM).decode("ascii") for c in certs)


def key_pem(key, password: bytes | None = None, fmt=serialization.PrivateFormat.PKCS8) -> str:
    encryption = (serialization.BestAvailableEncryption(password) if password
                  else serialization.NoEncryption())
    return key.private_bytes(serialization.Encoding.PEM, fmt, encryption).decode("ascii")


class Pki:
    """Every key and certificate the tests use, made once."""

    def __init__(self) -> None:
        self.root_key = ec_key(ec.SECP384R1())
        self.root = make_cert("Lay7 Test Root", self.root_key, ca=True, org="Lay7 Test",
                              not_before=NOW - 3650 * DAY, not_after=NOW + 3650 * DAY)
        self.inter_key = ec_key(ec.SECP384R1())
        self.inter = make_cert("Lay7 Test Intermediate", self.inter_key, self.root, self.root_key, ca=True,
                               org="Lay7 Test", not_before=NOW - 365 * DAY, not_after=NOW + 1000 * DAY)
        # An intermediate with the same name but another key: its issuer name matches, its signature does not.
        self.forged_inter_key = ec_key()
        self.forged_inter = make_cert("Lay7 Test Intermediate", self.forged_inter_key, self.root, self.root_key,
                                      ca=True, org="Lay7 Test")
        self.expired_inter = make_cert("Lay7 Old Intermediate", self.inter_key, self.root, self.root_key, ca=True,
                                       not_before=NOW - 800 * DAY, not_after=NOW - 10 * DAY)

        self.www_key = rsa_key()
        self.www = make_cert("www.example.com", self.www_key, self.inter, self.inter_key,
                             dns=("www.example.com", "example.com"),
                             eku=[ExtendedKeyUsageOID.SERVER_AUTH],
                             not_after=datetime.datetime(2026, 1, 31, 12, 0, tzinfo=UTC))
        self.api_key = ec_key()
        self.api = make_cert("api.example.com", self.api_key, self.inter, self.inter_key,
                             dns=("api.example.com", "*.apps.example.com"))
        self.wild_key = ec_key()
        self.wild = make_cert("*.example.com", self.wild_key, self.inter, self.inter_key,
                              dns=("*.example.com", "Example.COM"))
        self.self_key = ec_key()
        self.self_signed = make_cert("self.example.net", self.self_key, dns=("self.example.net",))
        self.cn_only = make_cert("legacy.example.org", self.self_key, san=False)
        self.ip_only = make_cert("192.0.2.10", self.self_key, ips=("192.0.2.10",))
        self.ip_as_name = make_cert("192.0.2.11", self.self_key, dns=("192.0.2.11",))
        self.client_only = make_cert("client.example.com", self.self_key, dns=("client.example.com",),
                                     eku=[ExtendedKeyUsageOID.CLIENT_AUTH])
        self.expired = make_cert("old.example.com", self.self_key, dns=("old.example.com",),
                                 not_before=NOW - 400 * DAY, not_after=NOW - DAY)
        self.future = make_cert("new.example.com", self.self_key, dns=("new.example.com",),
                                not_before=NOW + DAY, not_after=NOW + 400 * DAY)
        self.leaf_of_expired_inter = make_cert("late.example.com", self.self_key, self.expired_inter,
                                               self.inter_key, dns=("late.example.com",))
        self.small_key = rsa_key(1024)
        self.small = make_cert("small.example.com", self.small_key, dns=("small.example.com",))
        self.k1_key = ec_key(ec.SECP256K1())
        self.k1 = make_cert("k1.example.com", self.k1_key, dns=("k1.example.com",))
        self.ed_key = ed25519.Ed25519PrivateKey.generate()
        self.ed = make_cert("ed.example.com", self.ed_key, dns=("ed.example.com",))
        self.every_key = [self.root_key, self.inter_key, self.forged_inter_key, self.www_key, self.api_key,
                          self.wild_key, self.self_key, self.small_key, self.k1_key, self.ed_key]

    def www_entry(self, **extra) -> dict:
        return {"name": "www", "certificate": cert_pem(self.www, self.inter), "key": key_pem(self.www_key), **extra}

    def api_entry(self, **extra) -> dict:
        return {"name": "api", "certificate": cert_pem(self.api, self.inter, self.root),
                "key": key_pem(self.api_key), **extra}

    def wild_entry(self, **extra) -> dict:
        return {"name": "wild", "certificate": cert_pem(self.wild, self.inter), "key": key_pem(self.wild_key), **extra}

    def self_entry(self, cert=None, **extra) -> dict:
        return {"name": "self", "certificate": cert_pem(cert or self.self_signed), "key": key_pem(self.self_key),
                **extra}


@pytest.fixture(scope="module")
def pki() -> Pki:
    return Pki()


def run(certificates, **kwargs):
    kwargs.setdefault("now", NOW)
    return compile_tls(certificates, **kwargs)


# ------------------------------------------------------------------ good inputs


def test_single_certificate_is_the_default_and_fully_described(pki):
    out = run([pki.www_entry()], hosts=["www.example.com", "example.com"])
    (cert,) = out["certificates"]
    pem = cert.pop("pem")
    assert cert == {
        "name": "www",
        "file": "www.pem",
        "default": True,
        "sni": [],
        "names": ["www.example.com", "example.com"],
        "subject": "CN=www.example.com",
        "issuer": "CN=Lay7 Test Intermediate,O=Lay7 Test",
        "not_after": "2026-01-31T12:00:00Z",
        "fingerprint_sha256": pki.www.fingerprint(hashes.SHA256()).hex(":").upper(),
        "key_type": "RSA 2048",
    }
    assert pem == cert_pem(pki.www, pki.inter) + key_pem(pki.www_key)
    assert pem.endswith("-----END PRIVATE KEY-----\n")
    loaded = x509.load_pem_x509_certificates(pem.encode())
    assert loaded == [pki.www, pki.inter]
    assert out["crt_list"] == ["www.pem"]
    assert out["redirect"] == out["hsts"] == {"all": False, "exact": [], "suffix": []}
    assert out["summary"] == [
        "www: CN=www.example.com, names www.example.com, example.com, valid until 2026-01-31T12:00:00Z, "
        "RSA 2048, default"
    ]


def test_default_certificate_comes_first_then_input_order(pki):
    certificates = [pki.www_entry(), pki.api_entry(sni=["api.example.com"]), pki.wild_entry(default=True)]
    out = run(certificates)
    assert [c["name"] for c in out["certificates"]] == ["wild", "www", "api"]
    assert [c["default"] for c in out["certificates"]] == [True, False, False]
    assert out["crt_list"] == ["wild.pem", "www.pem", "api.pem api.example.com"]
    assert [line.split(":")[0] for line in out["summary"]] == ["wild", "www", "api"]
    assert [line.endswith(", default") for line in out["summary"]] == [True, False, False]


def test_ec_key_chain_with_root_and_wildcard_names(pki):
    out = run([pki.api_entry(sni=["API.example.com", "x.apps.example.com", "*.apps.example.com"])])
    (cert,) = out["certificates"]
    assert cert["key_type"] == "EC P-256"
    assert cert["names"] == ["api.example.com", "*.apps.example.com"]
    assert cert["sni"] == ["api.example.com", "x.apps.example.com", "*.apps.example.com"]
    assert out["crt_list"] == ["api.pem api.example.com x.apps.example.com *.apps.example.com"]
    assert x509.load_pem_x509_certificates(cert["pem"].encode()) == [pki.api, pki.inter, pki.root]
    assert out["summary"] == [
        "api: CN=api.example.com, names api.example.com, *.apps.example.com, offered for api.example.com, "
        "x.apps.example.com, *.apps.example.com, valid until 2026-06-01T12:00:00Z, EC P-256, default"
    ]


def test_self_signed_leaf_alone_and_subject_cn_fallback(pki):
    assert run([pki.self_entry()])["certificates"][0]["names"] == ["self.example.net"]
    out = run([pki.self_entry(cert=pki.cn_only)], hosts=["legacy.example.org"])
    assert out["certificates"][0]["names"] == ["legacy.example.org"]


def test_names_are_lower_cased_and_deduplicated(pki):
    assert run([pki.wild_entry()])["certificates"][0]["names"] == ["*.example.com", "example.com"]


@pytest.mark.parametrize(
    ("redirect_hosts", "hsts_hosts", "redirect", "hsts"),
    [
        (None, None, {"all": False, "exact": [], "suffix": []}, {"all": False, "exact": [], "suffix": []}),
        (["*"], [], {"all": True, "exact": [], "suffix": []}, {"all": False, "exact": [], "suffix": []}),
        (["*"], ["*"], {"all": True, "exact": [], "suffix": []}, {"all": True, "exact": [], "suffix": []}),
        (["WWW.example.com", "example.com", "www.example.com"], ["*.example.com"],
         {"all": False, "exact": ["example.com", "www.example.com"], "suffix": []},
         {"all": False, "exact": [], "suffix": [".example.com"]}),
        (["a.example.com", "*.example.com"], ["example.com", "b.example.com"],
         {"all": False, "exact": ["a.example.com"], "suffix": [".example.com"]},
         {"all": False, "exact": ["b.example.com", "example.com"], "suffix": []}),
    ],
)
def test_redirect_and_hsts_host_lists(pki, redirect_hosts, hsts_hosts, redirect, hsts):
    out = run([pki.wild_entry()], redirect_hosts=redirect_hosts, hsts_hosts=hsts_hosts)
    assert (out["redirect"], out["hsts"]) == (redirect, hsts)


def test_route_hosts_skip_routes_without_a_host(pki):
    out = run([pki.www_entry(default=True), pki.wild_entry()],
              hosts=[None, "www.example.com", "shop.example.com", "*.example.com", "EXAMPLE.com"])
    assert out["crt_list"] == ["www.pem", "wild.pem"]


def test_empty_certificate_list(pki):
    assert run([]) == {"certificates": [], "crt_list": [], "redirect": {"all": False, "exact": [], "suffix": []},
                       "hsts": {"all": False, "exact": [], "suffix": []}, "summary": []}
    assert run([], hosts=[None], redirect_hosts=[], hsts_hosts=None)["crt_list"] == []


def test_files_on_the_controller_give_the_same_result_as_text(pki, tmp_path):
    chain = tmp_path / "www.fullchain.pem"
    chain.write_text(cert_pem(pki.www, pki.inter))
    key = tmp_path / "www.key"
    key.write_text(key_pem(pki.www_key, fmt=serialization.PrivateFormat.TraditionalOpenSSL))
    from_files = run([{"name": "www", "certificate_file": str(chain), "key_file": str(key)}])
    assert from_files == run([pki.www_entry()])
    mixed = run([{"name": "www", "certificate_file": str(chain), "key": key_pem(pki.www_key)}])
    assert mixed == from_files


def test_whitespace_and_crlf_do_not_change_the_output(pki):
    entry = pki.www_entry()
    messy = {
        "name": "www",
        "certificate": "\n  " + entry["certificate"].replace("\n", "\r\n") + "\r\n\r\n",
        "key": "\n" + key_pem(pki.www_key, fmt=serialization.PrivateFormat.TraditionalOpenSSL).replace("\n", "\r\n"),
    }
    assert json.dumps(run([messy])) == json.dumps(run([entry]))


def test_output_is_deterministic(pki):
    certificates = [pki.www_entry(), pki.api_entry(default=True), pki.wild_entry(sni=["shop.example.com"])]
    first = json.dumps(run(certificates, hosts=["api.example.com"], redirect_hosts=["*"]), sort_keys=False)
    for _attempt in range(3):
        assert json.dumps(run(certificates, hosts=["api.example.com"], redirect_hosts=["*"])) == first


def vaulted(plaintext: str, monkeypatch):
    """``plaintext`` as a ``!vault`` inventory value reaches a filter on the ansible-core running
    the tests: read by its YAML loader, with the vault secret where that core's CLI puts it."""
    secrets = [("default", vault.VaultSecret(b"test-vault-password"))]
    if hasattr(vault, "VaultSecretsContext"):  # ansible-core 2.19 and later decrypt through it
        monkeypatch.setattr(vault.VaultSecretsContext, "_current", vault.VaultSecretsContext(secrets=secrets))
    ciphertext = vault.VaultLib(secrets).encrypt(plaintext).decode("ascii")
    loader = DataLoader()
    loader.set_vault_secrets(secrets)
    return loader.load("key: !vault |\n" + textwrap.indent(ciphertext, "  "))["key"]


def test_vaulted_key_values_are_read_as_text(pki, monkeypatch):
    encrypted = vaulted(key_pem(pki.www_key), monkeypatch)
    # Neither core hands the filter a str (2.16: AnsibleVaultEncryptedUnicode, 2.19: EncryptedString).
    assert not isinstance(encrypted, str)
    assert run([pki.www_entry(key=encrypted)]) == run([pki.www_entry()])


@pytest.mark.parametrize(
    ("now", "ok"),
    [
        ("2025-06-01T12:00:00Z", True),
        ("2025-06-01T14:00:00+02:00", True),
        (datetime.datetime(2025, 6, 1, 12, 0), True),  # naive: UTC
        ("2026-01-31T11:59:59Z", True),
        ("2026-01-31T12:00:00Z", False),  # not_valid_after is the first invalid instant
        ("2025-05-02T11:59:59Z", False),
    ],
)
def test_now_forms_and_validity_bounds(pki, now, ok):
    if ok:
        assert run([pki.www_entry()], now=now)["certificates"][0]["name"] == "www"
    else:
        with pytest.raises(AnsibleFilterError, match=r"expired on|not valid before"):
            run([pki.www_entry()], now=now)


def test_now_defaults_to_the_current_time(pki):
    current = datetime.datetime.now(UTC)
    valid_now = make_cert("now.example.com", pki.self_key, dns=("now.example.com",),
                          not_before=current - DAY, not_after=current + DAY)
    assert compile_tls([pki.self_entry(cert=valid_now)])["certificates"][0]["names"] == ["now.example.com"]
    with pytest.raises(AnsibleFilterError, match=r"expired on"):
        compile_tls([pki.self_entry(cert=pki.expired)])


# ------------------------------------------------------------------ wildcard coverage


@pytest.mark.parametrize(
    ("name", "host", "covered"),
    [
        ("www.example.com", "www.example.com", True),
        ("www.example.com", "example.com", False),
        ("*.example.com", "a.example.com", True),
        ("*.example.com", "example.com", False),
        ("*.example.com", "a.b.example.com", False),
        ("*.example.com", "a.example.org", False),
        ("*.example.com", "aexample.com", False),
        ("*.example.com", "*.example.com", True),
        ("a.example.com", "*.example.com", False),
        ("*.example.com", "*.a.example.com", False),
        ("*.a.example.com", "*.example.com", False),
        ("*.b.example.com", "a.b.example.com", True),
        ("example.com", "*.example.com", False),
    ],
)
def test_wildcard_coverage(name, host, covered):
    assert covers(name, host) is covered


@pytest.mark.parametrize(
    ("hosts", "covered"),
    [
        (["example.com"], True),
        (["shop.example.com"], True),
        (["*.example.com"], True),
        (["a.shop.example.com"], False),
        (["example.org"], False),
        (["*.shop.example.com"], False),
    ],
)
def test_route_hosts_coverage_through_the_filter(pki, hosts, covered):
    if covered:
        run([pki.wild_entry()], hosts=hosts)
    else:
        with pytest.raises(AnsibleFilterError, match=rf"hosts\[0\]: host '{re.escape(hosts[0])}' is not covered"):
            run([pki.wild_entry()], hosts=hosts)


def test_explicit_sni_limits_coverage(pki):
    run([pki.wild_entry(sni=["shop.example.com"])], hosts=["shop.example.com"])
    with pytest.raises(AnsibleFilterError, match=r"hosts\[0\]: host 'blog.example.com' is not covered .* "
                                                 r"certificate names: wild: shop\.example\.com$"):
        run([pki.wild_entry(sni=["shop.example.com"])], hosts=["blog.example.com"])


# ------------------------------------------------------------------ refusals


def _bad_cases():
    """(id, certificates(pki), kwargs, message regex, index, name, subject) - index/name/subject
    None when the message is not about one certificate or comes before it is read."""
    www_subject = "CN=www.example.com"
    return [
        ("not-a-list", lambda p: {"name": "www"}, {}, rf"^{FIELD} must be a list of certificates", None, None, None),
        ("none", lambda p: None, {}, rf"^{FIELD} must be a list of certificates, got null$", None, None, None),
        ("dict-holding-a-key", lambda p: {"name": "www", "key": key_pem(p.www_key)}, {},
         rf"^{FIELD} must be a list of certificates, got a dict$", None, None, None),
        ("entry-not-mapping", lambda p: ["www"], {}, rf"^{FIELD}\[0\]: expected a mapping", 0, None, None),
        ("entry-is-key-text", lambda p: [key_pem(p.www_key)], {},
         rf"^{FIELD}\[0\]: expected a mapping \(name, certificate or certificate_file, key or key_file\), got a str$",
         0, None, None),
        ("key-text-as-key-file", lambda p: [{"name": "www", "certificate": cert_pem(p.www), "key_file": key_pem(p.www_key)}],
         {}, r"key_file is not a path \(it holds line breaks, control characters or PEM armour\); PEM text belongs in key$",
         0, "www", "CN=www.example.com"),
        ("one-line-key-as-key-file",
         lambda p: [{"name": "www", "certificate": cert_pem(p.www), "key_file": key_pem(p.www_key).replace("\n", "")}],
         {}, r"key_file is not a path", 0, "www", "CN=www.example.com"),
        ("certificate-text-as-file", lambda p: [{"name": "www", "certificate_file": cert_pem(p.www), "key": "k"}], {},
         r"certificate_file is not a path .* PEM text belongs in certificate$", 0, "www", None),
        ("missing-name", lambda p: [{"certificate": "x", "key": "y"}], {}, rf"^{FIELD}\[0\]: name is required", 0, None, None),
        ("bad-name", lambda p: [p.www_entry(name="a b")], {}, r"name 'a b' is not a valid name", 0, None, None),
        ("dotdot-name", lambda p: [p.www_entry(name="../x")], {}, r"name '\.\./x' is not a valid name", 0, None, None),
        ("long-name", lambda p: [p.www_entry(name="x" * 64)], {}, r"at most 63 characters", 0, None, None),
        ("int-name", lambda p: [p.www_entry(name=7)], {}, r"name 7 is not a valid name", 0, None, None),
        ("duplicate-name", lambda p: [p.www_entry(default=True), p.api_entry(name="www")], {},
         rf"name 'www' is already used by {FIELD}\[0\]", 1, "www", None),
        ("unknown-key", lambda p: [p.www_entry(certficate="x")], {},
         r"unknown key 'certficate' \(did you mean 'certificate'\?\)", 0, "www", None),
        ("both-certificate-sources", lambda p: [p.www_entry(certificate_file="/x.pem")], {},
         r"exactly one of certificate \(PEM text\) or certificate_file .* got both", 0, "www", None),
        ("no-certificate", lambda p: [{"name": "www", "key": key_pem(p.www_key)}], {},
         r"exactly one of certificate .* got neither", 0, "www", None),
        ("certificate-not-text", lambda p: [p.www_entry(certificate=42)], {},
         r"certificate must be PEM text \(a string\), got a int", 0, "www", None),
        ("certificate-garbage", lambda p: [p.www_entry(certificate="not a certificate")], {},
         r"certificate holds no PEM certificate", 0, "www", None),
        ("certificate-is-a-key", lambda p: [p.www_entry(certificate=key_pem(p.www_key))], {},
         r"certificate holds no PEM certificate", 0, "www", None),
        ("certificate-with-key", lambda p: [p.www_entry(certificate=cert_pem(p.www) + key_pem(p.www_key))], {},
         r"certificate also holds a private key; give the key only in key or key_file", 0, "www", None),
        ("certificate-with-encrypted-key",
         lambda p: [p.www_entry(certificate=cert_pem(p.www) + key_pem(p.www_key, b"pw"))], {},
         r"certificate also holds a private key", 0, "www", None),
        ("both-key-sources", lambda p: [p.www_entry(key_file="/k.pem")], {},
         r"exactly one of key \(PEM text\) or key_file .* got both", 0, "www", www_subject),
        ("no-key", lambda p: [{"name": "www", "certificate": cert_pem(p.www, p.inter)}], {},
         r"exactly one of key .* got neither", 0, "www", www_subject),
        ("key-not-text", lambda p: [p.www_entry(key=["k"])], {}, r"key must be PEM text \(a string\), got a list",
         0, "www", www_subject),
        ("key-garbage", lambda p: [p.www_entry(key="-----BEGIN NOTHING-----\nAAAA\n-----END NOTHING-----\n")], {},
         r"key is not a PEM private key", 0, "www", www_subject),
        ("key-is-a-certificate", lambda p: [p.www_entry(key=cert_pem(p.www))], {},
         r"key is not a PEM private key", 0, "www", www_subject),
        ("encrypted-pkcs8-key", lambda p: [p.www_entry(key=key_pem(p.www_key, b"secret"))], {},
         r"key is protected by a passphrase, and HAProxy cannot read a passphrase-protected key", 0, "www",
         www_subject),
        ("encrypted-traditional-key",
         lambda p: [p.www_entry(key=key_pem(p.www_key, b"secret", serialization.PrivateFormat.TraditionalOpenSSL))],
         {}, r"HAProxy cannot read a passphrase-protected key", 0, "www", www_subject),
        ("key-of-another-certificate", lambda p: [p.www_entry(key=key_pem(p.api_key))], {},
         r"key does not belong to the leaf certificate \(the first one in certificate\): their public keys differ",
         0, "www", www_subject),
        ("intermediate-alone", lambda p: [p.www_entry(certificate=cert_pem(p.inter))], {},
         r"key does not belong to the leaf certificate", 0, "www", "CN=Lay7 Test Intermediate,O=Lay7 Test"),
        ("rsa-1024", lambda p: [{"name": "small", "certificate": cert_pem(p.small), "key": key_pem(p.small_key)}], {},
         r"key is an RSA key of 1024 bits; use an RSA key of at least 2048 bits or an EC key on P-256, P-384 or P-521",
         0, "small", "CN=small.example.com"),
        ("ec-secp256k1", lambda p: [{"name": "k1", "certificate": cert_pem(p.k1), "key": key_pem(p.k1_key)}], {},
         r"key is an EC key on curve secp256k1; use", 0, "k1", "CN=k1.example.com"),
        ("ed25519", lambda p: [{"name": "ed", "certificate": cert_pem(p.ed), "key": key_pem(p.ed_key)}], {},
         r"key is a Ed25519PrivateKey; use an RSA key", 0, "ed", "CN=ed.example.com"),
        ("expired-leaf", lambda p: [p.self_entry(cert=p.expired)], {},
         r"the leaf certificate \(position 1\) \(subject 'CN=old.example.com'\) expired on 2025-05-31T12:00:00Z "
         r"\(now 2025-06-01T12:00:00Z\)", 0, "self", "CN=old.example.com"),
        ("future-leaf", lambda p: [p.self_entry(cert=p.future)], {},
         r"\(subject 'CN=new.example.com'\) is not valid before 2025-06-02T12:00:00Z", 0, "self", "CN=new.example.com"),
        ("expired-intermediate",
         lambda p: [p.self_entry(certificate=cert_pem(p.leaf_of_expired_inter, p.expired_inter))], {},
         r"the chain certificate at position 2 \(subject 'CN=Lay7 Old Intermediate'\) expired on 2025-05-22",
         0, "self", "CN=late.example.com"),
        ("root-before-intermediate", lambda p: [p.www_entry(certificate=cert_pem(p.www, p.root, p.inter))], {},
         r"the leaf certificate \(position 1\) \(subject 'CN=www.example.com'\) was not issued by the certificate "
         r"after it, position 2 \(subject 'CN=Lay7 Test Root,O=Lay7 Test'\): its issuer is "
         r"'CN=Lay7 Test Intermediate,O=Lay7 Test'; order the PEM text leaf first, then the intermediate that "
         r"signed it", 0, "www", www_subject),
        # The key's certificate after the intermediate: pasted in the wrong order.
        ("intermediate-before-leaf", lambda p: [p.www_entry(certificate=cert_pem(p.inter, p.www))], {},
         r"the chain in certificate is in the wrong order: the certificate of key \('CN=www.example.com'\) is at "
         r"position 2; put the leaf first", 0, "www", "CN=Lay7 Test Intermediate,O=Lay7 Test"),
        ("intermediate-missing-between", lambda p: [p.www_entry(certificate=cert_pem(p.www, p.root))], {},
         r"position 1\) .* was not issued by .* position 2", 0, "www", www_subject),
        ("forged-intermediate", lambda p: [p.www_entry(certificate=cert_pem(p.www, p.forged_inter))], {},
         r"the issuer names match but its signature does not verify", 0, "www", www_subject),
        ("repeated-certificate", lambda p: [p.www_entry(certificate=cert_pem(p.www, p.inter, p.inter))], {},
         r"the chain certificate at position 3 .* repeats position 2", 0, "www", www_subject),
        ("unrelated-self-signed-after-leaf",
         lambda p: [p.self_entry(certificate=cert_pem(p.self_signed, p.cn_only))], {},
         r"position 1\) .* was not issued by the certificate after it, position 2 \(subject 'CN=legacy\.example\.org'\)",
         0, "self", "CN=self.example.net"),
        ("client-auth-only", lambda p: [p.self_entry(cert=p.client_only)], {},
         r"extendedKeyUsage does not allow TLS server authentication", 0, "self", "CN=client.example.com"),
        ("no-dns-name", lambda p: [p.self_entry(cert=p.ip_only)], {},
         r"the leaf certificate has no DNS name", 0, "self", "CN=192.0.2.10"),
        ("ip-as-dns-name", lambda p: [p.self_entry(cert=p.ip_as_name)], {},
         r"the leaf certificate has no DNS name", 0, "self", "CN=192.0.2.11"),
        ("sni-not-list", lambda p: [p.www_entry(sni="www.example.com")], {},
         r"sni must be a list of host names, got 'www.example.com'", 0, "www", www_subject),
        ("sni-bad-host", lambda p: [p.www_entry(sni=["www.example.com:443"])], {},
         r"sni\[0\] 'www.example.com:443' is not a host name", 0, "www", www_subject),
        ("sni-unicode", lambda p: [p.www_entry(sni=["www.ex\u212aample.com"])], {},
         r"sni\[0\] .* is not a host name", 0, "www", www_subject),
        ("sni-newline", lambda p: [p.www_entry(sni=["www.example.com\n"])], {},
         r"sni\[0\] 'www.example.com\\n' is not a host name", 0, "www", www_subject),
        ("sni-not-covered", lambda p: [p.www_entry(sni=["api.example.com"])], {},
         r"sni\[0\] 'api.example.com' is not covered by the certificate's names: www.example.com, example.com",
         0, "www", www_subject),
        ("sni-wildcard-not-covered", lambda p: [p.www_entry(sni=["*.example.com"])], {},
         r"sni\[0\] '\*.example.com' is not covered", 0, "www", www_subject),
        ("sni-two-labels-under-wildcard", lambda p: [p.wild_entry(sni=["a.b.example.com"])], {},
         r"sni\[0\] 'a.b.example.com' is not covered by the certificate's names: \*.example.com, example.com",
         0, "wild", "CN=*.example.com"),
        ("sni-twice", lambda p: [p.www_entry(sni=["example.com", "EXAMPLE.com"])], {},
         r"sni\[1\] 'example.com' is listed twice", 0, "www", www_subject),
        ("default-not-bool", lambda p: [p.www_entry(default="yes")], {},
         r"default must be true or false, got 'yes'", 0, "www", www_subject),
        ("no-default", lambda p: [p.www_entry(), p.api_entry()], {},
         rf"^{FIELD}: missing default certificate: .* names: www, api$", None, None, None),
        ("two-defaults", lambda p: [p.www_entry(default=True), p.api_entry(default=True)], {},
         rf"^{FIELD}: missing default certificate: exactly one needs default: true, but 2 have it: www, api$",
         None, None, None),
        ("route-host-not-covered", lambda p: [p.www_entry()], {"hosts": ["www.example.com", "api.example.com"]},
         rf"^hosts\[1\]: host 'api.example.com' is not covered by any certificate in {FIELD}; "
         r"certificate names: www: www.example.com, example.com$", None, None, None),
        ("wildcard-route-host", lambda p: [p.www_entry()], {"hosts": ["*.example.com"]},
         r"^hosts\[0\]: host '\*.example.com' is not covered .* \(a wildcard host is covered only by the same "
         r"wildcard certificate name\)", None, None, None),
        ("redirect-host-not-covered", lambda p: [p.www_entry(default=True), p.api_entry()],
         {"redirect_hosts": ["example.com", "shop.example.com"]},
         r"^redirect_hosts\[1\]: host 'shop.example.com' is not covered .* certificate names: "
         r"www: www.example.com, example.com; api: api.example.com, \*.apps.example.com$", None, None, None),
        ("hsts-host-not-covered", lambda p: [p.api_entry()], {"hsts_hosts": ["a.b.apps.example.com"]},
         r"^hsts_hosts\[0\]: host 'a.b.apps.example.com' is not covered", None, None, None),
        ("redirect-star-mixed", lambda p: [p.www_entry()], {"redirect_hosts": ["*", "www.example.com"]},
         r"^redirect_hosts: '\*' means every host and stands alone", None, None, None),
        ("hsts-with-port", lambda p: [p.www_entry()], {"hsts_hosts": ["www.example.com:443"]},
         r"^hsts_hosts\[0\] 'www.example.com:443' is not a host name", None, None, None),
        ("hsts-null", lambda p: [p.www_entry()], {"hsts_hosts": [None]},
         r"^hsts_hosts\[0\] None must be a host name", None, None, None),
        ("redirect-not-list", lambda p: [p.www_entry()], {"redirect_hosts": "*"},
         r"^redirect_hosts must be a list of host names, got '\*'", None, None, None),
        ("route-host-scheme", lambda p: [p.www_entry()], {"hosts": ["https://www.example.com"]},
         r"^hosts\[0\] 'https://www.example.com' is not a host name", None, None, None),
        ("bare-tld-wildcard", lambda p: [p.www_entry()], {"hosts": ["*.com"]},
         r"^hosts\[0\] '\*.com' is not a host name", None, None, None),
        ("empty-list-with-redirect", lambda p: [], {"redirect_hosts": ["*"]},
         rf"^redirect_hosts names '\*' but {FIELD} is empty: HTTPS needs a certificate$", None, None, None),
        ("empty-list-with-hsts", lambda p: [], {"hsts_hosts": ["www.example.com"]},
         rf"^hsts_hosts names 'www.example.com' but {FIELD} is empty: HTTPS needs a certificate$", None, None, None),
        ("empty-list-with-route-hosts", lambda p: [], {"hosts": ["www.example.com"]},
         r"^hosts names 'www.example.com' but .* HTTPS needs a certificate$", None, None, None),
        ("bad-now", lambda p: [p.www_entry()], {"now": "yesterday"},
         r"^now 'yesterday' is not an ISO 8601 date and time", None, None, None),
        ("now-wrong-type", lambda p: [p.www_entry()], {"now": 1717243200},
         r"^now must be a datetime, an ISO 8601 string or null, got 1717243200", None, None, None),
        ("custom-field", lambda p: [p.www_entry(), p.api_entry()], {"field": "my_certs"},
         r"^my_certs: missing default certificate", None, None, None),
    ]


BAD = _bad_cases()


def _secrets(pki: Pki) -> list:
    """Lines of every key's PEM body (and of a PEM certificate body): none may reach a message."""
    lines = []
    for key in pki.every_key:
        formats = [serialization.PrivateFormat.PKCS8]
        if not isinstance(key, ed25519.Ed25519PrivateKey):
            formats.append(serialization.PrivateFormat.TraditionalOpenSSL)
        for fmt in formats:
            lines += [line for line in key_pem(key, fmt=fmt).splitlines() if not line.startswith("-----")]
    lines += [line for line in cert_pem(pki.www).splitlines() if not line.startswith("-----")]
    return [line[:24] for line in lines if len(line) >= 24]


@pytest.mark.parametrize(("certificates", "kwargs", "message", "index", "name", "subject"),
                         [pytest.param(*case[1:], id=case[0]) for case in BAD])
def test_refusals_name_the_certificate_and_never_show_keys(pki, certificates, kwargs, message, index, name, subject):
    with pytest.raises(AnsibleFilterError) as info:
        run(certificates(pki), **kwargs)
    text = str(info.value.message)
    assert info.match(message), text
    if index is not None:
        assert text.startswith(f"{FIELD}[{index}]"), text
    if name is not None:
        assert text.startswith(f"{FIELD}[{index}] '{name}'"), text
    if subject is not None:
        assert text.startswith(f"{FIELD}[{index}] '{name}' (subject '{subject}'):"), text
    assert "PRIVATE KEY" not in text and "BEGIN CERTIFICATE" not in text
    assert not [line for line in _secrets(pki) if line in text], text
    assert "\n" not in text


def test_refusal_case_ids_are_unique():
    # Every refusal case has a unique id, so a failure names it.
    ids = [case[0] for case in BAD]
    assert len(ids) == len(set(ids))


# ------------------------------------------------------------------ file inputs


def test_file_refusals(pki, tmp_path):
    key = tmp_path / "www.key"
    key.write_text(key_pem(pki.www_key))
    chain = tmp_path / "chain.pem"
    chain.write_text(cert_pem(pki.www, pki.inter))
    vaulted = tmp_path / "vaulted.key"
    vaulted.write_bytes(b"$ANSIBLE_VAULT;1.1;AES256\n6162636465\n")
    huge = tmp_path / "huge.pem"
    huge.write_bytes(b"#" * (1024 * 1024 + 1))
    cases = [
        ({"certificate_file": "certs/www.pem"}, r"certificate_file 'certs/www.pem' must be an absolute, normalised path"),
        ({"certificate_file": str(tmp_path / "x" / ".." / "chain.pem")}, r"must be an absolute, normalised path"),
        ({"certificate_file": str(tmp_path / "missing.pem")}, r"missing.pem' cannot be read on the controller: No such file"),
        ({"certificate_file": str(tmp_path)}, r"cannot be read on the controller: Is a directory"),
        ({"certificate_file": ""}, r"certificate_file must be an absolute path on the controller"),
        ({"certificate_file": str(huge)}, r"huge.pem' is larger than 1024 KiB; it is not a PEM certificate"),
        ({"certificate_file": str(chain) + "\n"}, r"certificate_file is not a path \(it holds line breaks"),
        ({"certificate_file": str(chain), "key_file": str(vaulted)},
         r"key_file '.*vaulted.key' is vault-encrypted and a filter cannot decrypt files; pass its content instead, "
         r"e.g. key: \"\{\{ lookup\('ansible.builtin.file', 'vaulted.key'\) \}\}\""),
        ({"certificate_file": str(chain), "key_file": str(chain)}, r"key_file is not a PEM private key"),
        ({"certificate_file": str(key), "key_file": str(key)}, r"certificate_file holds no PEM certificate"),
    ]
    for extra, message in cases:
        entry = {"name": "www", **extra}
        if "key_file" not in entry:
            entry["key"] = key_pem(pki.www_key)
        with pytest.raises(AnsibleFilterError, match=rf"^{FIELD}\[0\] 'www'.*{message}") as info:
            run([entry])
        assert "PRIVATE KEY" not in str(info.value.message)


def test_combined_key_file_with_certificate_is_read(pki, tmp_path):
    combined = tmp_path / "www.combined.pem"
    combined.write_text(cert_pem(pki.www, pki.inter) + key_pem(pki.www_key))
    out = run([{"name": "www", "certificate": cert_pem(pki.www, pki.inter), "key_file": str(combined)}])
    assert out == run([pki.www_entry()])


# ------------------------------------------------------------------ plugin


def test_filter_plugin_exposes_tls_compile(pki):
    filters = plugin.FilterModule().filters()
    assert list(filters) == ["tls_compile"]
    assert filters["tls_compile"]([pki.www_entry()], ["www.example.com"], now=NOW) == run([pki.www_entry()])
    with pytest.raises(AnsibleFilterError, match=r"key does not belong"):
        filters["tls_compile"]([pki.www_entry(key=key_pem(pki.api_key))], now=NOW)


def test_documentation_options_match_the_signature():
    doc = yaml.safe_load(plugin.DOCUMENTATION)
    params = list(inspect.signature(plugin.tls_compile).parameters)
    assert set(doc["options"]) == {"_input", *params[1:]}
    assert doc["positional"] == ", ".join(params[1:4])
    yaml.safe_load(plugin.EXAMPLES)
    returned = yaml.safe_load(plugin.RETURN)["_value"]["contains"]
    assert set(returned) == {"certificates", "crt_list", "redirect", "hsts", "summary"}
