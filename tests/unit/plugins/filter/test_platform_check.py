"""lay7.ha.platform_check: the roles refuse hosts on platforms the lab does not test."""

import pytest
from ansible.errors import AnsibleFilterError
from ansible_collections.lay7.ha.plugins.filter.platform_check import FilterModule, platform_check


@pytest.mark.parametrize(("major", "release"), [("12", "bookworm"), ("13", "trixie")])
def test_tested_debian_releases_pass(major, release):
    got = platform_check({"distribution": "Debian", "distribution_major_version": major}, "lay7.ha.x")
    assert got == {"tested": True, "platform": f"Debian {major}", "release": release, "message": ""}


@pytest.mark.parametrize(("facts", "platform"), [
    ({"distribution": "Debian", "distribution_major_version": "11"}, "Debian 11"),
    ({"distribution": "Debian", "distribution_major_version": "14"}, "Debian 14"),
    ({"distribution": "Ubuntu", "distribution_major_version": "24"}, "Ubuntu 24"),
    ({"distribution": "Debian", "distribution_major_version": "n/a"}, "Debian n/a"),  # testing/sid
    ({}, "unknown (gather facts first)"),
])
def test_other_platforms_are_refused_with_the_tested_list(facts, platform):
    got = platform_check(facts, "lay7.ha.keepalived_vip")
    assert got["tested"] is False and got["release"] == ""
    assert got["platform"] == platform
    assert got["message"].startswith(
        "lay7.ha.keepalived_vip is tested on Debian 12 (bookworm), Debian 13 (trixie); "
        f"this host runs {platform}.")


def test_not_facts_is_an_error():
    with pytest.raises(AnsibleFilterError, match="platform_check: expected ansible_facts"):
        platform_check("Debian", "r")


def test_registered():
    assert FilterModule().filters()["platform_check"] is platform_check


@pytest.mark.parametrize(("core", "tested"), [("2.16.19", False), ("2.17.0", False), ("2.18.1", True),
                                              ("2.19.14", True)])
def test_debian_13_needs_a_core_that_supports_its_python(core, tested):
    got = platform_check({"distribution": "Debian", "distribution_major_version": "13"}, "lay7.ha.x", core)
    assert got["tested"] is tested
    if not tested:
        assert got["message"] == (f"lay7.ha.x: this host runs Debian 13, whose Python ansible-core {core} does not "
                                  "support on a target; use ansible-core 2.18 or later for Debian 13")


def test_debian_12_works_with_every_supported_core():
    facts = {"distribution": "Debian", "distribution_major_version": "12"}
    assert platform_check(facts, "r", "2.16.0")["tested"] is True


def test_a_bad_core_version_is_an_error():
    with pytest.raises(AnsibleFilterError, match="ansible_version 'x' is not a version"):
        platform_check({"distribution": "Debian", "distribution_major_version": "12"}, "r", "x")
