"""HTTPS at the VIP, as clients see it: routing over HTTP/1.1 and HTTP/2, certificates chosen by
SNI, the TLS versions and ciphers offered, redirects to HTTPS, HSTS per host, the scheme the
web servers are told, key files on the load balancers, a certificate rotation under load, an
independent scanner and a real browser.

The lab inventory serves www.lay7.test and lay7.test with its default certificate and
api.lay7.test with a second one, both from the lab's private CA (lab/pki.py). Names are
resolved to the VIP by the clients themselves (curl --resolve, the browser's resolver rules),
so no DNS is involved and nothing but lab addresses is contacted.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
import socket
import ssl
import subprocess
import time
import uuid
from pathlib import Path

import pytest
import yaml
from cryptography import x509
from cryptography.hazmat.primitives import serialization

from conftest import EXPECTED_ROUTES, PROBE_INTERVAL, PROBE_TIMEOUT, ROOT, SITE_RUN_BOUND, inventory_path, wait_for
from lab import pki, site
from lab.probe import Probe
from test_haproxy_stats import _credentials
from test_web_access import _field, _log_line

CA = pki.TLS_DIR / "ca.crt"
DEFAULT_NAMES = {"www.lay7.test", "lay7.test"}
API_NAME = "api.lay7.test"
HTTPS = 443
# Where the browser test writes its screenshots (docs/images holds copies from a lab run).
SCREENSHOTS = Path(os.environ.get("LAY7_SCREENSHOT_DIR", ROOT / "build" / "screenshots"))
# The TLS scanner, in a virtualenv of its own (`make scan-tools`): its pinned cryptography
# must not replace the one ansible-core uses.
SSLYZE = ROOT / "build" / "scan-venv" / "bin" / "sslyze"
LB_VARS = yaml.safe_load((ROOT / "inventory" / "lab" / "group_vars" / "loadbalancers.yml").read_text())
CERT_DIR = "/etc/haproxy/lay7-tls"
# The HTTPS probe's schedule per client kind: 40 requests/s (the lab) - see _rotate_under_probes.
HTTPS_PROBE_INTERVAL = max(PROBE_INTERVAL * 5, 0.025)


# --------------------------------------------------------------------------- clients
def curl(vip: str, url: str, *options: str, timeout: float = 5.0) -> tuple[int, dict[str, str], str, str]:
    """One request with curl (HTTP/2 capable), the URL's host resolved to the VIP; returns
    (status, headers, HTTP version, body)."""
    host = re.match(r"https?://([^/:]+)", url).group(1)
    out = subprocess.run(
        ["curl", "-sS", "--max-time", str(timeout), "--cacert", str(CA),
         "--resolve", f"{host}:443:{vip}", "--resolve", f"{host}:80:{vip}",
         "-D", "-", "-w", "\n%{http_version}", *options, url],
        capture_output=True, text=True, timeout=timeout + 5, check=False)
    assert out.returncode == 0, f"curl {url} {options}: {out.stderr.strip()}"
    # Text mode: the header lines' CRLF arrive as "\n".
    head, _, rest = out.stdout.partition("\n\n")
    body, _, version = rest.rpartition("\n")
    lines = head.split("\n")
    status = int(lines[0].split()[1])
    headers = {k.strip().lower(): v.strip() for k, _, v in (line.partition(":") for line in lines[1:])}
    return status, headers, version.strip(), body


def context(**kwargs) -> ssl.SSLContext:
    """A client context trusting only the lab CA (kwargs: SSLContext attributes to set)."""
    ctx = ssl.create_default_context(cafile=str(CA))
    for name, value in kwargs.items():
        setattr(ctx, name, value)
    return ctx


def handshake(vip: str, server_name: str | None, ctx: ssl.SSLContext | None = None) -> tuple[x509.Certificate, str, str | None]:
    """TLS handshake with the VIP: (the certificate served, TLS version, ALPN protocol)."""
    if ctx is None:
        ctx = context()
    if server_name is None:         # no SNI: nothing to check the name against
        ctx.check_hostname = False
    with socket.create_connection((vip, HTTPS), timeout=3) as raw:
        with ctx.wrap_socket(raw, server_hostname=server_name) as tls:
            der = tls.getpeercert(binary_form=True)
            return x509.load_der_x509_certificate(der), tls.version(), tls.selected_alpn_protocol()


def dns_names(cert: x509.Certificate) -> set[str]:
    return set(cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value.get_values_for_type(x509.DNSName))


def fingerprint(cert: x509.Certificate) -> str:
    return hashlib.sha256(cert.public_bytes(serialization.Encoding.DER)).hexdigest()


# --------------------------------------------------------------------------- routing
@pytest.mark.parametrize("http", ["--http1.1", "--http2"])
@pytest.mark.parametrize(("path", "expected"), sorted(EXPECTED_ROUTES.items()))
def test_https_routes_like_http(inventory, vip, http, path, expected):
    """Every path of the routing contract reaches the same web server over HTTPS as over HTTP,
    with HTTP/1.1 and with HTTP/2 (negotiated by ALPN)."""
    status, headers, version, _ = curl(inventory.vip, f"https://www.lay7.test{path}", http)
    assert status == 200 and headers.get("x-served-by") == expected, f"https {path}: {status} {headers}"
    assert version == ("2" if http == "--http2" else "1.1"), f"{http} negotiated HTTP/{version}"
    assert vip.get(path).served_by == expected


def test_query_string_does_not_change_the_route_over_https(inventory):
    status, headers, _, _ = curl(inventory.vip, "https://www.lay7.test/a/x?b=1&path=/b")
    assert status == 200 and headers.get("x-served-by") == "web2"


# --------------------------------------------------------------------------- certificates
@pytest.mark.parametrize(("server_name", "names"), [
    ("www.lay7.test", DEFAULT_NAMES),
    ("lay7.test", DEFAULT_NAMES),
    (API_NAME, {API_NAME}),
    # A name no certificate has, and no name at all: the default certificate.
    ("other.lay7.test", DEFAULT_NAMES),
    (None, DEFAULT_NAMES),
])
def test_sni_selects_the_certificate(inventory, server_name, names):
    ctx = context()
    if server_name == "other.lay7.test":
        ctx.check_hostname = False   # the default certificate does not cover it, by design
    cert, _, _ = handshake(inventory.vip, server_name, ctx)
    assert dns_names(cert) == names, f"SNI {server_name!r} got a certificate for {dns_names(cert)}"


def test_both_names_route_over_https(inventory):
    """Routing does not depend on the certificate: api.lay7.test routes like www."""
    for host in ("api.lay7.test", "www.lay7.test"):
        status, headers, _, _ = curl(inventory.vip, f"https://{host}/b/")
        assert status == 200 and headers.get("x-served-by") == "web3", f"{host}: {status} {headers}"


# The client offers versions Python deprecates, on purpose.
@pytest.mark.filterwarnings("ignore:ssl.TLSVersion:DeprecationWarning")
@pytest.mark.parametrize(("version", "accepted"), [
    (ssl.TLSVersion.TLSv1, False),
    (ssl.TLSVersion.TLSv1_1, False),
    (ssl.TLSVersion.TLSv1_2, True),
    (ssl.TLSVersion.TLSv1_3, True),
])
def test_only_tls_1_2_and_1_3_are_accepted(inventory, version, accepted):
    ctx = context(minimum_version=version, maximum_version=version)
    if version < ssl.TLSVersion.TLSv1_2:
        ctx.set_ciphers("ALL:@SECLEVEL=0")   # let the client offer what it would refuse itself
    if accepted:
        _, negotiated, _ = handshake(inventory.vip, "www.lay7.test", ctx)
        assert negotiated == version.name.replace("_", ".")
    else:
        with pytest.raises((ssl.SSLError, ConnectionResetError)):
            handshake(inventory.vip, "www.lay7.test", ctx)


def test_tls_1_2_offers_only_forward_secret_aead_ciphers(inventory):
    with socket.create_connection((inventory.vip, HTTPS), timeout=3) as raw:
        ctx = context(maximum_version=ssl.TLSVersion.TLSv1_2)
        with ctx.wrap_socket(raw, server_hostname="www.lay7.test") as tls:
            name, _, _ = tls.cipher()
    assert name.startswith("ECDHE-") and ("GCM" in name or "CHACHA20" in name), name
    # CBC and non-forward-secret suites a client can still offer (sslyze enumerates them all).
    for weak in ("AES128-SHA", "AES256-GCM-SHA384", "ECDHE-ECDSA-AES128-SHA", "ECDHE-ECDSA-AES128-SHA256"):
        ctx = context(maximum_version=ssl.TLSVersion.TLSv1_2)
        ctx.set_ciphers(weak + ":@SECLEVEL=0")
        with pytest.raises((ssl.SSLError, ConnectionResetError)):
            handshake(inventory.vip, "www.lay7.test", ctx)


def test_alpn_negotiates_http2(inventory):
    ctx = context()
    ctx.set_alpn_protocols(["h2", "http/1.1"])
    _, _, alpn = handshake(inventory.vip, "www.lay7.test", ctx)
    assert alpn == "h2"


def test_key_files_are_private_and_identical_on_both_load_balancers(nodes, inventory):
    sums = {}
    for lb in inventory.loadbalancers:
        node = nodes[lb]
        listing = node.check_output(f"stat -c '%n %a %U %G' {CERT_DIR}/*.pem {CERT_DIR}/lay7.crt-list")
        for line in listing.splitlines():
            name, mode, owner, group = line.split()
            assert (mode, owner, group) == ("640", "root", "haproxy"), f"{lb}: {line}"
        assert node.check_output(f"stat -c '%a %U %G' {CERT_DIR}") == "750 root haproxy"
        sums[lb] = node.check_output(f"cd {CERT_DIR} && sha256sum *.pem lay7.crt-list")
        # The crt-list: the default certificate first.
        assert node.check_output(f"head -n 1 {CERT_DIR}/lay7.crt-list").split()[0] == "www.pem"
    assert len(set(sums.values())) == 1, f"certificate files differ between load balancers: {sums}"


# --------------------------------------------------------------------------- HTTP semantics
def test_plain_http_to_a_redirected_host_gets_a_permanent_redirect(inventory):
    """lay7.test is in haproxy_l7_https_redirect_hosts: path and query are kept."""
    status, headers, _, _ = curl(inventory.vip, "http://lay7.test/a/x?q=1&r=%2F")
    assert status == LB_VARS.get("haproxy_l7_https_redirect_code", 301)
    assert headers.get("location") == "https://lay7.test/a/x?q=1&r=%2F"
    # Other names and the bare VIP keep plain HTTP.
    status, headers, _, _ = curl(inventory.vip, "http://www.lay7.test/a/x")
    assert status == 200 and headers.get("x-served-by") == "web2"


def test_hsts_only_on_https_and_only_for_its_hosts(inventory):
    want = "max-age=31536000"
    for host in ("www.lay7.test", "lay7.test"):
        _, headers, _, _ = curl(inventory.vip, f"https://{host}/")
        assert headers.get("strict-transport-security") == want, f"{host}: {headers}"
    _, headers, _, _ = curl(inventory.vip, f"https://{API_NAME}/")
    assert "strict-transport-security" not in headers, f"{API_NAME} is not an HSTS host: {headers}"
    _, headers, _, _ = curl(inventory.vip, "http://www.lay7.test/")
    assert "strict-transport-security" not in headers, "HSTS over plain HTTP"


@pytest.mark.parametrize("scheme", ["https", "http"])
def test_web_server_sees_the_scheme_the_client_used(inventory, nodes, scheme):
    """The web server logs the client's scheme (and HTTPS=on in its environment for TLS) and a
    Forwarded header set by the load balancer; the headers a client forges are replaced."""
    marker = f"/tlscheck-{uuid.uuid4().hex}"
    forged = "http" if scheme == "https" else "https"
    status, _, _, _ = curl(inventory.vip, f"{scheme}://www.lay7.test{marker}",
                           "-H", f"X-Forwarded-Proto: {forged}", "-H", f"Forwarded: for=203.0.113.9;proto={forged}")
    assert status == 200
    line = _log_line(nodes["web1"], marker)
    assert _field(line, "scheme") == scheme, line
    assert f'fwd="for={inventory.control};proto={scheme}"' in line, line
    assert "203.0.113.9" not in line, f"a forged Forwarded header reached the web server: {line}"


# --------------------------------------------------------------------------- rotation
def _certificates_with_www(cert: Path, key: Path) -> list[dict]:
    """The inventory's certificate list with www's files replaced (paths on this controller)."""
    out = []
    for entry in LB_VARS["haproxy_l7_tls_certificates"]:
        entry = dict(entry)
        name = entry["name"]
        if name == "www":
            entry.update(certificate_file=str(cert), key_file=str(key))
        else:
            entry.update(certificate_file=str(pki.TLS_DIR / f"{name}.crt"), key_file=str(pki.TLS_DIR / f"{name}.key"))
        out.append(entry)
    return out


def _deploy_certificates(extra: dict) -> subprocess.CompletedProcess:
    # --diff: what an operator sees; the keys must not be in it.
    # Only the role's configuration tasks (its checks run first anyway, tagged always).
    out = site.run_playbook(inventory_path(), str(ROOT / "site.yml"), extra, tags="haproxy_l7_configure",
                            limit="loadbalancers", timeout=SITE_RUN_BOUND, options=("--diff",))
    assert out.returncode == 0, out.stdout[-3000:] + out.stderr[-2000:]
    assert "PRIVATE KEY" not in out.stdout + out.stderr, "a private key was shown in the run's output"
    return out


def _served(vip: str) -> str:
    cert, _, _ = handshake(vip, "www.lay7.test")
    return fingerprint(cert)


def _rotate_under_probes(inventory, extra: dict) -> dict:
    """Deploy while HTTPS (new-connection and keep-alive, TLS each) and HTTP clients run;
    return each probe's summary."""
    tls_ctx = context()
    probes = {
        # A full TLS handshake costs the Python client about as much CPU as HAProxy: at the
        # HTTP probe's rate it would starve itself (and the machine the lab runs on).
        "https": Probe(inventory.vip, HTTPS, "/", interval=HTTPS_PROBE_INTERVAL, timeout=PROBE_TIMEOUT,
                       max_duration=SITE_RUN_BOUND + 60, tls=tls_ctx, server_name="www.lay7.test",
                       host_header="www.lay7.test").start(),
        "http": Probe(inventory.vip, 80, "/a/rotation", interval=PROBE_INTERVAL * 2, timeout=PROBE_TIMEOUT,
                      max_duration=SITE_RUN_BOUND + 60).start(),
    }
    try:
        time.sleep(1.0)
        _deploy_certificates(extra)
        time.sleep(1.0)
    finally:
        results = {name: probe.stop() for name, probe in probes.items()}
    return {name: {kind: result.summary(kind) for kind in ("new", "keepalive")} for name, result in results.items()}


def test_certificate_rotation_costs_no_request(inventory, nodes, tmp_path):
    """Replace the default certificate (a new key too) through the role under load: 0 failed
    requests over HTTPS and HTTP, new connections get the new certificate as soon as the run
    ends, and both load balancers hold the same files. The inventory's certificate is put back
    afterwards on the hosts themselves (the file copied aside before, and a reload), so the key
    never leaves them and the next run of the role finds nothing to change."""
    before = _served(inventory.vip)
    new = pki.issue("www", sorted(DEFAULT_NAMES, key=len, reverse=True), tmp_path)
    new_fp = fingerprint(x509.load_pem_x509_certificate(new.cert.read_bytes()))
    lbs = [nodes[lb] for lb in inventory.loadbalancers]
    for node in lbs:
        node.check_output(f"cp -p {CERT_DIR}/www.pem /root/lay7-test-www.pem")
    try:
        report = _rotate_under_probes(inventory, {"haproxy_l7_tls_certificates": _certificates_with_www(new.cert, new.key)})
        assert _served(inventory.vip) == new_fp, "the new certificate is not served right after the run"
        sums = {lb: nodes[lb].check_output(f"sha256sum {CERT_DIR}/www.pem").split()[0] for lb in inventory.loadbalancers}
        assert len(set(sums.values())) == 1, sums
    finally:
        for node in lbs:
            node.check_output(f"mv /root/lay7-test-www.pem {CERT_DIR}/www.pem && systemctl reload haproxy")
    # `systemctl reload` returns once HAProxy's master has the signal; its new worker takes
    # over a moment later (a handshake just after the reload met the old one in CI).
    wait_for(lambda: _served(inventory.vip) == before, 10, "the inventory's certificate served again")
    (ROOT / "build").mkdir(exist_ok=True)
    (ROOT / "build" / "tls-rotation.json").write_text(json.dumps(report, indent=2))
    for name, kinds in report.items():
        for kind, summary in kinds.items():
            assert summary["requests"] > 200, f"{name} {kind}: too few requests ({summary})"
            assert summary["p99_start_lag_s"] < 0.2, f"{name} {kind}: the probe itself fell behind ({summary})"
            assert summary["failed"] == 0, f"{name} {kind} clients saw failures during the rotation: {summary}"


# --------------------------------------------------------------------------- independent tools
def test_tls_scanner_finds_nothing(inventory, tmp_path):
    """sslyze (an independent TLS scanner) against the VIP: compliant with Mozilla's
    intermediate profile (protocols, ciphers, curves, certificate lifetime and chain against
    the lab CA) and no vulnerability it tests for (Heartbleed, ROBOT, CCS injection, insecure
    renegotiation, compression, downgrade)."""
    if not SSLYZE.exists():
        pytest.fail(f"{SSLYZE} is missing: run `make scan-tools` (make test does)")
    report = tmp_path / "sslyze.json"
    for name in ("www.lay7.test", API_NAME):
        out = subprocess.run([str(SSLYZE), "--mozilla_config=intermediate", f"--certinfo_ca_file={CA}",
                              f"--json_out={report}", f"{name}:443{{{inventory.vip}}}"],
                             capture_output=True, text=True, timeout=120, check=False)
        assert out.returncode == 0, f"sslyze {name}: {out.stdout[-3000:]}{out.stderr[-1000:]}"
        result = json.loads(report.read_text())["server_scan_results"][0]["scan_result"]

        def value(command: str, field: str):
            return result[command]["result"][field]
        assert value("heartbleed", "is_vulnerable_to_heartbleed") is False
        assert value("openssl_ccs_injection", "is_vulnerable_to_ccs_injection") is False
        assert value("robot", "robot_result") in ("NOT_VULNERABLE_NO_ORACLE", "NOT_VULNERABLE_RSA_NOT_SUPPORTED")
        assert value("session_renegotiation", "is_vulnerable_to_client_renegotiation_dos") is False
        assert value("session_renegotiation", "supports_secure_renegotiation") is True
        assert value("tls_compression", "supports_compression") is False
        assert value("tls_fallback_scsv", "supports_fallback_scsv") is True
        for old in ("ssl_2_0_cipher_suites", "ssl_3_0_cipher_suites", "tls_1_0_cipher_suites", "tls_1_1_cipher_suites"):
            assert value(old, "accepted_cipher_suites") == [], f"{name}: {old} accepted"


def _chromium() -> str:
    binary = shutil.which("chromium")
    if binary is None:
        pytest.fail("chromium is missing: make deps installs it")
    return binary


def _browser_home(tmp_path: Path) -> Path:
    """A profile whose NSS database trusts the lab CA, as a user who imported it would."""
    home = tmp_path / "home"
    nssdb = home / ".pki" / "nssdb"
    nssdb.mkdir(parents=True)
    subprocess.run(["certutil", "-d", f"sql:{nssdb}", "-N", "--empty-password"], check=True, capture_output=True)
    subprocess.run(["certutil", "-d", f"sql:{nssdb}", "-A", "-t", "C,,", "-n", "lay7 lab CA", "-i", str(CA)],
                   check=True, capture_output=True)
    return home


def _browse(tmp_path: Path, url: str, screenshot: Path, vip: str) -> list[dict]:
    home = _browser_home(tmp_path)
    netlog = tmp_path / f"{screenshot.stem}.netlog.json"
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    screenshot.unlink(missing_ok=True)
    out = subprocess.run(
        [_chromium(), "--headless", "--no-sandbox", "--disable-gpu", "--no-first-run", "--disable-extensions",
         f"--host-resolver-rules=MAP *.lay7.test {vip}, EXCLUDE localhost",
         "--window-size=1100,700", f"--screenshot={screenshot}", f"--log-net-log={netlog}", url],
        env=dict(os.environ, HOME=str(home)), capture_output=True, text=True, timeout=90, check=False)
    assert screenshot.exists() and screenshot.stat().st_size > 5000, (
        f"no screenshot of {url}: rc={out.returncode} {out.stderr[-2000:]}")
    return json.loads(netlog.read_text(errors="replace"))["events"]


def test_browser_loads_a_routed_page_over_https_with_http2(inventory, tmp_path):
    """Headless Chromium, trusting the lab CA like a user who imported it (no certificate
    errors ignored), loads /a/ through the VIP over HTTPS; its network log shows the
    certificate verified and HTTP/2 negotiated."""
    events = _browse(tmp_path, "https://www.lay7.test/a/", SCREENSHOTS / "tls-routed-page.png", inventory.vip)
    text = json.dumps(events)
    assert '"negotiated_protocol": "h2"' in text or '"next_proto": "h2"' in text, "HTTP/2 was not negotiated"
    assert "ERR_CERT" not in text, "the browser rejected the certificate"


def test_browser_loads_the_stats_page(inventory, nodes, tmp_path):
    """The HAProxy stats page of the first load balancer, with the stats credentials."""
    user, password = _credentials(nodes[inventory.loadbalancers[0]])
    address = inventory.addresses[inventory.loadbalancers[0]]
    _browse(tmp_path, f"http://{user}:{password}@{address}:8404/stats", SCREENSHOTS / "tls-stats-page.png",
            inventory.vip)
