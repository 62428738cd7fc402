"""The shipped Prometheus alerting rules (roles/haproxy_l7/files/prometheus/lay7-ha-alerts.yml),
checked by promtool: the file is valid, and the unit tests in prometheus/ (synthetic series, as
HAProxy's exporter writes them) show each alert firing when it should, only after its `for:`, and
not on a healthy topology or the role's backends without servers by design. `make prometheus`
installs promtool (Debian's prometheus package). test_vip_metric_loopback.py runs the same rules on
the series of real HAProxies.
"""

from __future__ import annotations

import pathlib
import shutil
import subprocess

import pytest
import yaml
from ansible_collections.lay7.ha.plugins.plugin_utils._routes import HTTPS_REDIRECT_BACKEND

REPO = pathlib.Path(__file__).resolve().parents[2]
RULES = REPO / "roles" / "haproxy_l7" / "files" / "prometheus" / "lay7-ha-alerts.yml"
TESTS = sorted((pathlib.Path(__file__).parent / "prometheus").glob("*.yml"))


def promtool(*args: str, cwd: pathlib.Path = REPO) -> str:
    binary = shutil.which("promtool")
    if binary is None:
        pytest.fail("promtool is not installed: `make prometheus` installs it (Debian's prometheus package)")
    result = subprocess.run([binary, *args], cwd=cwd, capture_output=True, text=True, timeout=120, check=False)
    assert result.returncode == 0, f"promtool {' '.join(args)}:\n{result.stdout}{result.stderr}"
    return result.stdout + result.stderr


def _alerts() -> list[dict]:
    return [rule for group in yaml.safe_load(RULES.read_text())["groups"] for rule in group["rules"] if "alert" in rule]


def test_the_rules_file_is_valid():
    out = promtool("check", "rules", str(RULES))
    assert f"SUCCESS: {len(_alerts())} rules found" in out, out


@pytest.mark.parametrize("tests", TESTS, ids=[path.name for path in TESTS])
def test_the_rules_pass_their_unit_tests(tests):
    # promtool reads rule_files relative to the test file.
    out = promtool("test", "rules", tests.name, cwd=tests.parent)
    assert "SUCCESS" in out, out


def test_every_alert_is_tested_firing_and_quiet():
    """Each alert (each rule of it, by severity) has a case where it fires and one where it must not."""
    fired, quiet = set(), set()
    for path in TESTS:
        for case in yaml.safe_load(path.read_text())["tests"]:
            for check in case.get("alert_rule_test", []):
                if check["exp_alerts"]:
                    fired |= {(check["alertname"], alert["exp_labels"]["severity"]) for alert in check["exp_alerts"]}
                else:
                    quiet.add(check["alertname"])
    rules = {(rule["alert"], rule["labels"]["severity"]) for rule in _alerts()}
    assert rules - fired == set(), f"never seen firing: {sorted(rules - fired)}"
    assert {name for name, _severity in rules} - quiet == set(), "never checked quiet"


# What each alert's summary and description name: the VIP (the server of lay7_vip), the backend
# (proxy), the server and the load balancer (instance) it concerns.
PLACES = {
    "Lay7VipNotHeld": {"server"},
    "Lay7VipSplitBrain": {"server", "instance"},
    "Lay7BackendNoServerUp": {"proxy", "instance"},
    "Lay7ServerFlapping": {"proxy", "server", "instance"},
    "Lay7BackendHigh5xxRatio": {"proxy", "instance"},
}


def test_every_alert_says_what_and_where():
    assert {rule["alert"] for rule in _alerts()} == set(PLACES)
    for rule in _alerts():
        assert rule["labels"]["severity"] in ("critical", "warning"), rule["alert"]
        assert set(rule["annotations"]) == {"summary", "description"}, rule["alert"]
        assert rule.get("for"), f"{rule['alert']}: no `for:`"
        for label in PLACES[rule["alert"]]:
            for kind, text in rule["annotations"].items():
                assert f"$labels.{label}" in text, f"{rule['alert']}: its {kind} does not name the {label}"


def test_the_rules_name_the_roles_own_backends():
    """The backends the rules leave out (or read) are the ones the role defines: a rename in the
    role would otherwise make the rules fire on a healthy topology, or never."""
    role_vars = yaml.safe_load((REPO / "roles" / "haproxy_l7" / "vars" / "main.yml").read_text())
    vip_backend = role_vars["__haproxy_l7_vip_check_backend"]
    text = RULES.read_text()
    assert f'proxy="{vip_backend}"' in text and f'proxy!="{vip_backend}"' in text
    assert f'proxy!~"{vip_backend}|{HTTPS_REDIRECT_BACKEND}"' in text
