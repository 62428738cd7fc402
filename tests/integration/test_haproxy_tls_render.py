"""lay7.ha.haproxy_l7 with HTTPS, rendered offline and checked with the real HAProxy.

Certificates come from a throw-away CA made in the test's temporary directory (the lab's
lab/pki.py, pointed elsewhere). Covered: the TLS settings HAProxy accepts without warnings,
key files private and never in the output (--diff and -v included), the preflight stopping on
bad certificates before anything is written, rejected certificate changes leaving the previous
files in place, and HTTPS switched off removing them.
"""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest
from test_haproxy_role_render import HAPROXY, base_vars, haproxy_check, run_role

from lab import pki

pytestmark = pytest.mark.skipif(not Path(HAPROXY).exists(), reason="haproxy binary not installed (make deps)")


@pytest.fixture(scope="module")
def ca(tmp_path_factory) -> Path:
    """A CA with the lab's www and api certificates (lab/pki.py's layout)."""
    return pki.ensure(tmp_path_factory.mktemp("pki"))


def https_vars(tmp: Path, ca: Path) -> dict:
    extra = base_vars(tmp)
    extra.update(
        haproxy_l7_https_enabled=True,
        haproxy_l7_tls_certificates=[
            {"name": "www", "certificate_file": str(ca / "www.crt"), "key_file": str(ca / "www.key"), "default": True},
            # Inline PEM, as a vaulted inventory value arrives.
            {"name": "api", "certificate": (ca / "api.crt").read_text(), "key": (ca / "api.key").read_text()},
        ],
        haproxy_l7_https_redirect_hosts=["lay7.test"],
        haproxy_l7_hsts_hosts=["*"],
    )
    extra["haproxy_l7_routes"] = extra["haproxy_l7_routes"] + [
        {"name": "api", "host": "api.lay7.test", "path": "/", "match": "prefix", "backend": "b_pool"},
        {"name": "secure", "path": "/secure", "match": "prefix", "backend": "a_pool", "require_https": True},
    ]
    return extra


def key_bodies(ca: Path) -> list[str]:
    """A line of base64 from each private key: none may appear in any output."""
    return [(ca / f"{name}.key").read_text().splitlines()[1] for name in ("www", "api")]


def test_https_renders_changes_and_switches_off(tmp_path, ca):
    """One lifecycle, one role run per step (each run costs seconds): the first deploy, a
    certificate change HAProxy's check rejects (the previous files stay), one OpenSSL refuses
    by itself, and HTTPS switched off (the certificates go). The map form: the loopback tests render the
    acl form of the same rules."""
    extra = https_vars(tmp_path, ca)
    extra["haproxy_l7_routing_mode"] = "map"
    result = run_role(tmp_path, extra, options=("--diff", "-v"))
    output = result.stdout + result.stderr
    assert result.returncode == 0, output
    assert "PRIVATE KEY" not in output
    for body in key_bodies(ca):
        assert body not in output, "a private key was shown in the run's output"

    cfg = tmp_path / "haproxy.cfg"
    check = haproxy_check(cfg)
    assert check.returncode == 0, check.stdout + check.stderr
    assert "[WARNING]" not in check.stdout + check.stderr, check.stdout + check.stderr
    text = cfg.read_text()
    certs = tmp_path / "certs"
    assert f"bind 192.168.56.100:443 ssl crt-list {certs}/lay7.crt-list alpn h2,http/1.1" in text
    assert "bind 192.168.56.100:80" in text
    assert "ssl-default-bind-options ssl-min-ver TLSv1.2 no-tls-tickets" in text
    location = "https://%[req.hdr(host),regsub(:[0-9]+$,)]%[pathq]"
    assert f"backend lay7_https_redirect\n    http-request redirect location {location} code 301" in text
    assert f"http-request redirect location {location} code 301 if !{{ ssl_fc }} {{ var(txn.lay7_host) -m str lay7.test }}" in text
    assert 'http-after-response set-header Strict-Transport-Security "max-age=31536000" if { ssl_fc }' in text

    assert (certs / "lay7.crt-list").read_text().splitlines() == ["www.pem", "api.pem"]
    for pem in ("www.pem", "api.pem", "lay7.crt-list"):
        assert oct((certs / pem).stat().st_mode & 0o777) == "0o640", pem
    assert oct(certs.stat().st_mode & 0o777) == "0o750"
    www = (certs / "www.pem").read_text()
    assert www.index("BEGIN CERTIFICATE") < www.index("BEGIN PRIVATE KEY"), "certificate first, then its key"

    # (A second run changing nothing: molecule's idempotence step, with HTTPS, on the lab.)

    # A new certificate together with a value only HAProxy can reject (a server host name
    # that does not resolve): the previous certificates and haproxy.cfg stay.
    before = {p.name: p.read_bytes() for p in certs.iterdir()}
    cfg_before = cfg.read_text()
    new = pki.issue("www2", ["www.lay7.test", "lay7.test"], tmp_path / "new", tls_dir=ca)
    rejected = https_vars(tmp_path, ca)
    rejected["haproxy_l7_tls_certificates"][0].update(certificate_file=str(new.cert), key_file=str(new.key))
    rejected["haproxy_l7_backends"]["b_pool"]["servers"][0]["address"] = "web3.lay7-unresolvable.invalid"
    # -v: the rescue and cleanup tasks loop over the replaced files (their backups hold keys).
    result = run_role(tmp_path, rejected, options=("-v",))
    output = result.stdout + result.stderr
    assert result.returncode != 0
    assert "rejected by" in output
    assert "PRIVATE KEY" not in output and all(body not in output for body in key_bodies(ca))
    new_body = new.key.read_text().splitlines()[1]
    assert new_body not in output, "the new key was shown in the run's output"
    assert cfg.read_text() == cfg_before
    assert {p.name: p.read_bytes() for p in certs.iterdir()} == before

    # A change of certificates alone that OpenSSL refuses (a SHA-1 signature, which the
    # preflight does not judge): haproxy.cfg is unchanged, the certificates are checked anyway.
    sha1 = https_vars(tmp_path, ca)
    sha1["haproxy_l7_tls_certificates"][0].update(_sha1_signed(ca, tmp_path))
    result = run_role(tmp_path, sha1)
    assert result.returncode != 0, result.stdout
    assert "rejected by" in result.stdout + result.stderr
    assert {p.name: p.read_bytes() for p in certs.iterdir()} == before

    result = run_role(tmp_path, base_vars(tmp_path))
    assert result.returncode == 0, result.stdout + result.stderr
    assert not certs.exists()
    assert ":443" not in cfg.read_text()


def _sha1_signed(ca: Path, tmp: Path) -> dict:
    """The lab's www names, signed by the CA with SHA-1 (OpenSSL at security level 2 refuses to
    load it). cryptography will not sign with SHA-1 any more: the openssl command does."""
    key = tmp / "sha1.key"
    subprocess.run(["openssl", "req", "-new", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes",
                    "-keyout", str(key), "-subj", "/CN=www.lay7.test", "-out", str(tmp / "sha1.csr")],
                   check=True, capture_output=True)
    (tmp / "sha1.ext").write_text("subjectAltName=DNS:www.lay7.test,DNS:lay7.test\n")
    subprocess.run(["openssl", "x509", "-req", "-in", str(tmp / "sha1.csr"), "-CA", str(ca / "ca.crt"),
                    "-CAkey", str(ca / "ca.key"), "-CAcreateserial", "-sha1", "-days", "30",
                    "-extfile", str(tmp / "sha1.ext"), "-out", str(tmp / "sha1.crt")],
                   check=True, capture_output=True)
    return {"certificate_file": str(tmp / "sha1.crt"), "key_file": str(key)}


def _chain_reversed(ca: Path, tmp: Path) -> dict:
    bundle = tmp / "reversed.crt"
    bundle.write_text((ca / "ca.crt").read_text() + (ca / "www.crt").read_text())
    return {"certificate_file": str(bundle), "key_file": str(ca / "www.key")}


# Each refusal of lay7.ha.tls_compile has its unit test (tests/unit/plugins/filter/
# test_tls_compile.py); these prove the role stops on them before writing (a role run costs
# seconds, so two).
BAD_CERTIFICATES = {
    "key of another certificate": (lambda ca, tmp: {"key_file": str(ca / "api.key")}, "does not belong to the leaf"),
    "chain in the wrong order": (_chain_reversed, "wrong order"),
}


@pytest.mark.parametrize("case", sorted(BAD_CERTIFICATES))
def test_preflight_refuses_a_bad_certificate_before_writing(tmp_path, ca, case):
    change, words = BAD_CERTIFICATES[case]
    extra = https_vars(tmp_path, ca)
    extra["haproxy_l7_tls_certificates"][0].update(change(ca, tmp_path))
    result = run_role(tmp_path, extra)
    output = result.stdout + result.stderr
    assert result.returncode != 0, output
    assert "haproxy_l7_tls_certificates[0] 'www'" in output, output
    assert words in output, output
    assert "PRIVATE KEY" not in output
    assert not (tmp_path / "haproxy.cfg").exists() and not (tmp_path / "certs").exists()


def test_preflight_refuses_a_routed_host_no_certificate_covers(tmp_path, ca):
    extra = https_vars(tmp_path, ca)
    extra["haproxy_l7_routes"].append({"name": "other", "host": "other.example.com", "path": "/", "backend": "main"})
    result = run_role(tmp_path, extra)
    output = result.stdout + result.stderr
    assert result.returncode != 0, output
    assert "other.example.com" in output and "haproxy_l7_tls_certificates" in output, output
    assert not (tmp_path / "haproxy.cfg").exists() and not (tmp_path / "certs").exists()
