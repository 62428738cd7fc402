"""The forged adverts must be ones keepalived would accept if they reached it: a valid
VRRPv3 checksum over the IPv4 pseudo-header, and the sender program building the same bytes."""

import socket
import struct
import subprocess
import sys

import pytest

from lab.vrrp import SENDER, _checksum, advert


def test_advert_layout_and_checksum_verifies():
    pkt = advert(51, 254, ["192.0.2.100"], "192.0.2.11", "192.0.2.21")
    ver_type, vrid, prio, count, interval = struct.unpack("!BBBBH", pkt[:6])
    assert (ver_type, vrid, prio, count, interval) == (0x31, 51, 254, 1, 10)
    assert socket.inet_ntoa(pkt[8:12]) == "192.0.2.100"
    pseudo = socket.inet_aton("192.0.2.11") + socket.inet_aton("192.0.2.21") + struct.pack("!BBH", 0, 112, len(pkt))
    assert _checksum(pseudo + pkt) == 0          # a correct checksum sums to zero


def test_checksum_depends_on_the_destination():
    a = advert(51, 254, ["192.0.2.100"], "192.0.2.11", "192.0.2.21")
    b = advert(51, 254, ["192.0.2.100"], "192.0.2.11", "224.0.0.18")
    assert a[:6] == b[:6] and a[6:8] != b[6:8]


@pytest.mark.parametrize(("vrid", "prio"), [(0, 100), (256, 100), (51, 256)])
def test_out_of_range_values_are_refused(vrid, prio):
    with pytest.raises(ValueError):
        advert(vrid, prio, ["192.0.2.100"], "192.0.2.11", "192.0.2.21")


def test_sender_program_builds_the_same_bytes():
    """Run the remote program's packet builder locally (no socket is opened)."""
    builder = SENDER.split("s = socket.socket")[0]
    code = builder + "\nsys.stdout.write(advert(sys.argv[7]).hex())\n"
    out = subprocess.run([sys.executable, "-c", code, "192.0.2.11", "51", "254", "1", "0.1", "192.0.2.100",
                          "192.0.2.21"], capture_output=True, text=True, check=True).stdout
    assert bytes.fromhex(out) == advert(51, 254, ["192.0.2.100"], "192.0.2.11", "192.0.2.21", 10)
