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
