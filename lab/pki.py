"""The lab's private certificate authority and the certificates its load balancers serve.

Generated on first use (``python -m lab pki``, also run by ``python -m lab up``) into the
lab inventory's git-ignored secrets directory, never committed: every clone gets its own CA, so
a key that leaked from one machine is trusted nowhere else. Nothing here is product code: the
collection takes any certificate; this only gives the lab and its tests one to serve and a CA
to trust.

Files in ``inventory/lab/.secrets/tls/``:

* ``ca.crt`` / ``ca.key``: the CA (EC P-256, five years), what clients trust (``curl --cacert``,
  the browser test's NSS database);
* ``www.crt`` / ``www.key``: the default certificate, for ``www.lay7.test`` and ``lay7.test``;
* ``api.crt`` / ``api.key``: a second certificate, for ``api.lay7.test`` (the SNI checks).

Each ``.crt`` holds the leaf only: the CA signs the leaves directly, and a client that trusts
the CA needs nothing else.
"""

from __future__ import annotations

import datetime
import os
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

ROOT = Path(__file__).resolve().parents[1]
TLS_DIR = ROOT / "inventory" / "lab" / ".secrets" / "tls"

# The names the lab serves, and the certificate each is in.
DOMAIN = "lay7.test"
LEAVES = {
    "www": [f"www.{DOMAIN}", DOMAIN],
    "api": [f"api.{DOMAIN}"],
}
CA_DAYS = 5 * 365
# Short-lived, as an ACME CA issues them; `ensure` renews a leaf with less than 30 days left.
LEAF_DAYS = 90


@dataclass(frozen=True)
class Issued:
    cert: Path
    key: Path


def _now() -> datetime.datetime:
    return datetime.datetime.now(datetime.timezone.utc)


def _write(path: Path, data: bytes, mode: int) -> None:
    """Write through a temporary file so a half-written key or certificate is never read."""
    tmp = path.with_suffix(path.suffix + ".tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, mode)
    with os.fdopen(fd, "wb") as f:
        f.write(data)
    os.replace(tmp, path)


def _key_pem(key: ec.EllipticCurvePrivateKey) -> bytes:
    return key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                             serialization.NoEncryption())


def _load_ca(tls_dir: Path) -> tuple[x509.Certificate, ec.EllipticCurvePrivateKey]:
    cert = x509.load_pem_x509_certificate((tls_dir / "ca.crt").read_bytes())
    key = serialization.load_pem_private_key((tls_dir / "ca.key").read_bytes(), password=None)
    return cert, key  # type: ignore[return-value]


def _make_ca(tls_dir: Path) -> None:
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.ORGANIZATION_NAME, "lay7.ha lab"),
                      x509.NameAttribute(NameOID.COMMON_NAME, f"lay7.ha lab CA {_now():%Y-%m-%d}")])
    now = _now()
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=CA_DAYS))
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(x509.KeyUsage(digital_signature=False, content_commitment=False, key_encipherment=False,
                                     data_encipherment=False, key_agreement=False, key_cert_sign=True,
                                     crl_sign=True, encipher_only=False, decipher_only=False), critical=True)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
        .sign(key, hashes.SHA256())
    )
    _write(tls_dir / "ca.key", _key_pem(key), 0o600)
    _write(tls_dir / "ca.crt", cert.public_bytes(serialization.Encoding.PEM), 0o644)


def issue(name: str, names: list[str], out_dir: Path, tls_dir: Path = TLS_DIR, days: int = LEAF_DAYS,
          not_before: datetime.datetime | None = None) -> Issued:
    """A leaf certificate for ``names`` signed by the lab CA, written to ``out_dir/<name>.crt``
    and ``.key`` (a new key each time). Tests use it to rotate or to make a bad certificate."""
    ca_cert, ca_key = _load_ca(tls_dir)
    key = ec.generate_private_key(ec.SECP256R1())
    start = not_before or (_now() - datetime.timedelta(minutes=5))
    cert = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, names[0])]))
        .issuer_name(ca_cert.subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(start)
        .not_valid_after(start + datetime.timedelta(days=days))
        .add_extension(x509.SubjectAlternativeName([x509.DNSName(n) for n in names]), critical=False)
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(x509.KeyUsage(digital_signature=True, content_commitment=False, key_encipherment=False,
                                     data_encipherment=False, key_agreement=False, key_cert_sign=False,
                                     crl_sign=False, encipher_only=False, decipher_only=False), critical=True)
        .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
        .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_key.public_key()), critical=False)
        .sign(ca_key, hashes.SHA256())
    )
    out_dir.mkdir(parents=True, exist_ok=True)
    issued = Issued(out_dir / f"{name}.crt", out_dir / f"{name}.key")
    _write(issued.key, _key_pem(key), 0o600)
    _write(issued.cert, cert.public_bytes(serialization.Encoding.PEM), 0o644)
    return issued


def _valid_for(path: Path, days: int) -> bool:
    try:
        cert = x509.load_pem_x509_certificate(path.read_bytes())
    except (OSError, ValueError):
        return False
    return cert.not_valid_after_utc > _now() + datetime.timedelta(days=days)


def ensure(tls_dir: Path = TLS_DIR, log=None) -> Path:
    """Create the CA and the leaves when missing (or about to expire); return the directory."""
    tls_dir.mkdir(parents=True, exist_ok=True)
    os.chmod(tls_dir, 0o700)
    made = []
    if not ((tls_dir / "ca.key").exists() and _valid_for(tls_dir / "ca.crt", LEAF_DAYS)):
        _make_ca(tls_dir)
        made.append("ca")
        # Leaves of an earlier CA would no longer verify.
        for name in LEAVES:
            (tls_dir / f"{name}.crt").unlink(missing_ok=True)
    for name, names in LEAVES.items():
        if not ((tls_dir / f"{name}.key").exists() and _valid_for(tls_dir / f"{name}.crt", 30)):
            issue(name, names, tls_dir, tls_dir)
            made.append(name)
    if made and log:
        log(f"lab CA and certificates in {tls_dir}: generated {', '.join(made)}")
    return tls_dir
