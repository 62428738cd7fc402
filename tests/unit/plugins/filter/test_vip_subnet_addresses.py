"""lay7.ha.vip_subnet_addresses: which of a host's addresses share the VIP's subnet."""

import re

import pytest
from ansible.errors import AnsibleFilterError
from ansible_collections.lay7.ha.plugins.filter.vip_subnet_addresses import FilterModule, vip_subnet_addresses


def _facts(**interfaces):
    """interfaces: name -> list of 'address/prefix' (first is primary)."""
    facts = {"interfaces": list(interfaces)}
    for name, addrs in interfaces.items():
        entries = [{"address": a.split("/")[0], "prefix": a.split("/")[1]} for a in addrs]
        key = name.replace("-", "_").replace(".", "_")
        facts[key] = {"device": name}
        if entries:
            facts[key]["ipv4"] = entries[0]
            facts[key]["ipv4_secondaries"] = entries[1:]
    return facts


def test_lab_host_picks_the_private_interface_not_management():
    facts = _facts(lo=["127.0.0.1/8"], eth0=["192.168.121.7/24"], eth1=["192.168.56.21/24"])
    assert vip_subnet_addresses(facts, "192.168.56.100", 24) == [
        {"interface": "eth1", "address": "192.168.56.21", "prefix": 24}]


def test_vip_already_held_is_skipped_and_primary_comes_first():
    facts = _facts(eth1=["192.168.56.21/24", "192.168.56.100/24", "192.168.56.30/24"])
    assert [a["address"] for a in vip_subnet_addresses(facts, "192.168.56.100", 24)] == ["192.168.56.21", "192.168.56.30"]


@pytest.mark.parametrize(("address", "vip", "prefix", "inside"), [
    ("10.0.0.5/24", "10.0.0.200", 24, True),
    ("10.0.1.5/24", "10.0.0.200", 24, False),
    ("10.0.0.5/16", "10.0.7.1", 24, False),   # the VIP's longer prefix decides
    ("10.0.0.5/30", "10.0.0.9", 24, False),   # the address's longer prefix decides
    ("10.0.0.5/30", "10.0.0.6", 24, True),
    ("10.0.0.5/32", "10.0.0.5", 32, False),   # that is the VIP itself
    ("192.0.2.1/1", "200.0.0.1", 1, True),
    ("192.0.2.1/1", "100.0.0.1", 1, False),
])
def test_subnet_is_the_longer_of_both_prefixes(address, vip, prefix, inside):
    found = vip_subnet_addresses(_facts(eth1=[address]), vip, prefix)
    assert bool(found) is inside


def test_interface_names_with_dots_and_dashes_and_stable_order():
    facts = _facts(**{"br-lan": ["172.16.0.2/24"], "eth0.10": ["172.16.0.3/24"], "eth9": []})
    assert [a["interface"] for a in vip_subnet_addresses(facts, "172.16.0.1", 24)] == ["br-lan", "eth0.10"]


def test_no_interface_in_the_subnet_gives_an_empty_list():
    assert vip_subnet_addresses(_facts(eth0=["192.0.2.5/24"]), "198.51.100.1", 24) == []
    assert vip_subnet_addresses({"interfaces": []}, "198.51.100.1", 24) == []


@pytest.mark.parametrize(("facts", "vip", "prefix", "message"), [
    ({}, "300.1.1.1", 24, "vip '300.1.1.1' is not an IPv4 address"),
    ({}, "10.0.0.1", "x", "prefix 'x' is not an integer"),
    ({}, "10.0.0.1", 33, "prefix 33 is outside 1-32"),
    ([], "10.0.0.1", 24, "expected ansible_facts (a dict), got list"),
    ({"interfaces": ["eth0"], "eth0": {"ipv4": {"address": "nope", "prefix": "24"}}}, "10.0.0.1", 24,
     "interface eth0 address 'nope' is not an IPv4 address"),
])
def test_bad_input_is_a_clear_error(facts, vip, prefix, message):
    with pytest.raises(AnsibleFilterError, match=re.escape(message)):
        vip_subnet_addresses(facts, vip, prefix)


def test_registered_under_its_name():
    assert FilterModule().filters() == {"vip_subnet_addresses": vip_subnet_addresses}
