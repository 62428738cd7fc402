"""`make demo`: boot the lab, deploy site.yml, and print the proof that it works.

Run as root from the repository root: `python -m lab.demo`. Every request goes to the
VIP or a load balancer's own address inside the lab; nothing leaves this machine.
The lab is left running so you can look around; `python -m lab down` removes it.
"""

from __future__ import annotations

import http.client
import os
import socket
import ssl
import subprocess
import sys
import time
from pathlib import Path

from . import observe, pki
from .core import Lab
from .errors import LabError
from .site import seed_contract

ROOT = Path(__file__).resolve().parents[1]
INVENTORY = ROOT / "inventory" / "lab"
SECRET = INVENTORY / ".secrets" / "stats_password"

# The seed's routing contract: path -> the web server that must answer it (the same file
# the Molecule verifier checks).
SEED_ROUTES = list(seed_contract().items())
FAILOVER_BOUND = 30.0


def say(text: str = "") -> None:
    print(text, flush=True)


def get(address: str, path: str, port: int = 80, timeout: float = 3.0) -> tuple[int, str]:
    """One GET; returns (status, X-Served-By) — (0, error) when the request fails."""
    conn = http.client.HTTPConnection(address, port, timeout=timeout)
    try:
        conn.request("GET", path, headers={"Connection": "close"})
        resp = conn.getresponse()
        resp.read()
        return resp.status, resp.getheader("X-Served-By", "-")
    except OSError as exc:
        return 0, type(exc).__name__
    finally:
        conn.close()


def vip_holder(lab: Lab) -> str | None:
    held = observe.vip_holders(lab, list(lab.topo.groups["loadbalancers"]), str(lab.topo.vip), lab.topo.interface)
    return held[0] if held else None


def wait(predicate, bound: float, interval: float = 0.1) -> float | None:
    t0 = time.monotonic()
    while time.monotonic() - t0 < bound:
        if predicate():
            return time.monotonic() - t0
        time.sleep(interval)
    return None


def deploy() -> None:
    env = dict(os.environ, ANSIBLE_CONFIG=str(ROOT / "ansible.cfg"))
    cmd = [str(Path(sys.executable).parent / "ansible-playbook"), "-i", str(INVENTORY), str(ROOT / "site.yml")]
    say("==> deploying: " + " ".join(cmd[1:]))
    subprocess.run(cmd, cwd=ROOT, env=env, check=True)


def prove_routing(vip: str) -> bool:
    say(f"\n==> routing through the VIP {vip} (X-Served-By names the web server that answered)")
    say(f"    {'path':14} {'status':6} {'served by':10} expected")
    ok = True
    for path, expected in SEED_ROUTES:
        status, served = get(vip, path)
        good = status == 200 and served == expected
        ok &= good
        say(f"    {path:14} {status:<6} {served:10} {expected:8} {'ok' if good else 'WRONG'}")
    return ok


def _https_get(vip: str, name: str, path: str, timeout: float = 3.0) -> tuple[int, str, str, str, str]:
    """GET https://<name><path> at the VIP, trusting only the lab CA: (status, X-Served-By,
    TLS version, the ALPN protocol an HTTP/2 client gets, the certificate's names)."""
    def connect(alpn: list[str]) -> ssl.SSLSocket:
        ctx = ssl.create_default_context(cafile=str(pki.TLS_DIR / "ca.crt"))
        ctx.set_alpn_protocols(alpn)
        return ctx.wrap_socket(socket.create_connection((vip, 443), timeout=timeout), server_hostname=name)

    # What an HTTP/2 client would get (one handshake, nothing sent)...
    with connect(["h2", "http/1.1"]) as tls:
        alpn = tls.selected_alpn_protocol() or "-"
        names = ",".join(v for _, v in tls.getpeercert()["subjectAltName"])
    # ...and a request over HTTP/1.1, which the standard library speaks.
    with connect(["http/1.1"]) as tls:
        tls.sendall(f"GET {path} HTTP/1.1\r\nHost: {name}\r\nConnection: close\r\n\r\n".encode())
        resp = http.client.HTTPResponse(tls)
        resp.begin()
        resp.read()
        return resp.status, resp.getheader("X-Served-By", "-"), tls.version(), alpn, names


def prove_https(vip: str) -> bool:
    say(f"\n==> HTTPS through the VIP (lab CA: {pki.TLS_DIR.relative_to(ROOT)}/ca.crt; names resolved to the VIP by the client)")
    ok = True
    for name, path, expected in (("www.lay7.test", "/a/x", "web2"), ("api.lay7.test", "/b", "web3"),
                                 ("lay7.test", "/", "web1")):
        try:
            status, served, version, alpn, names = _https_get(vip, name, path)
        except (OSError, ssl.SSLError) as exc:
            say(f"    https://{name}{path}: {type(exc).__name__}: {exc}")
            ok = False
            continue
        good = status == 200 and served == expected and alpn == "h2"
        ok &= good
        say(f"    https://{name}{path:6} {status} from {served:5} {version}, ALPN {alpn}, certificate for {names}"
            f" {'ok' if good else 'WRONG'}")
    redirect = http.client.HTTPConnection(vip, 80, timeout=3)
    try:
        redirect.request("GET", "/a/x?q=1", headers={"Host": "lay7.test", "Connection": "close"})
        resp = redirect.getresponse()
        location = resp.getheader("Location", "-")
        good = resp.status in (301, 308) and location == "https://lay7.test/a/x?q=1"
    except OSError as exc:
        good, location = False, type(exc).__name__
        resp = None
    finally:
        redirect.close()
    ok &= good
    say(f"    http://lay7.test/a/x?q=1 -> {resp.status if resp else '-'} {location} {'ok' if good else 'WRONG'}")
    return ok


def prove_failover(lab: Lab) -> bool:
    vip = str(lab.topo.vip)
    # nopreempt: whichever load balancer took the VIP first keeps it; the demo waits only
    # until the other one is ready to take over (BACKUP).
    wait(lambda: vip_holder(lab) is not None, FAILOVER_BOUND)
    holder = vip_holder(lab)
    others = [n for n in lab.topo.groups["loadbalancers"] if n != holder]
    wait(lambda: all(observe.vrrp_state(lab, n) == "BACKUP" for n in others), FAILOVER_BOUND)
    say(f"\n==> VIP {vip} held by {holder}")
    if holder is None or not others:
        say("    no load balancer holds the VIP")
        return False
    say(f"==> planned failover: systemctl stop haproxy on {holder} (connections turned over, VIP handed on, then stop)")
    t0 = time.monotonic()
    lab.exec(holder, ["systemctl", "stop", "haproxy"], check=True)
    try:
        moved = wait(lambda: vip_holder(lab) in others, FAILOVER_BOUND, 0.02)
        status, served = get(vip, "/")
        say(f"    stopped after {time.monotonic() - t0:.1f} s, VIP on {vip_holder(lab)}; GET / -> {status} from {served}"
            if moved is not None else f"    VIP did not move within {FAILOVER_BOUND:.0f} s")
        return moved is not None and status == 200
    finally:
        lab.exec(holder, ["systemctl", "start", "haproxy"], check=True)
        ready = wait(lambda: observe.vrrp_state(lab, holder) == "BACKUP", FAILOVER_BOUND)
        say(f"    haproxy started again on {holder}; "
            + (f"{holder} ready to take over again (BACKUP) after {ready:.1f} s" if ready is not None
               else f"{holder} not back in BACKUP within {FAILOVER_BOUND:.0f} s")
            + f"; the VIP stays on {vip_holder(lab)} (nopreempt: every move resets open keep-alive connections)")


def main() -> int:
    lab = Lab(log=lambda m: say(f"lab: {m}"))
    try:
        if lab.is_up() and all(lab.is_running(h.name) for h in lab.topo.hosts):
            say("==> the lab is already up; deploying onto it")
        else:
            if lab.is_up():
                say("==> a partial lab exists; removing it first")
                lab.down()
            say("==> booting the lab (the base image is built on first use)")
            lab.up()
        deploy()
        vip = str(lab.topo.vip)
        # Health checks need a moment after a fresh deploy before every server is UP.
        one_per_server = list(dict((w, p) for p, w in reversed(SEED_ROUTES)).items())
        wait(lambda: all(get(vip, p)[1] == w for w, p in one_per_server), FAILOVER_BOUND)
        routing_ok = prove_routing(vip)
        https_ok = prove_https(vip)
        failover_ok = prove_failover(lab)
    except (LabError, subprocess.CalledProcessError) as exc:
        say(f"demo failed: {exc}")
        return 1
    lbs = lab.topo.groups["loadbalancers"]
    say("\n==> stats (HAProxy status page and Prometheus metrics, on each load balancer's own address)")
    for name in lbs:
        say(f"    http://{lab.host(name).address}:8404/stats    http://{lab.host(name).address}:8404/metrics")
    say(f"    user: lay7stats   password: cat {SECRET.relative_to(ROOT)}")
    say("\n==> explore: python -m lab status | python -m lab exec hap1 -- journalctl -u keepalived"
        " | curl -si http://192.168.56.100/a")
    say(f"    curl --cacert {(pki.TLS_DIR / 'ca.crt').relative_to(ROOT)} --resolve www.lay7.test:443:{lab.topo.vip}"
        " https://www.lay7.test/a")
    say("    tear down: python -m lab down")
    verdict = routing_ok and https_ok and failover_ok
    say(f"\nPROOF: routing {'ok' if routing_ok else 'FAILED'}, HTTPS {'ok' if https_ok else 'FAILED'}, "
        f"failover {'ok' if failover_ok else 'FAILED'}")
    return 0 if verdict else 1


if __name__ == "__main__":
    sys.exit(main())
