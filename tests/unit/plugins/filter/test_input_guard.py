"""lay7.ha.input_guard with the three roles' real rules: every bad input is refused by name.

The rules are read from each role's vars/main.yml and their few template expressions
are rendered with the role's defaults, exactly as the preflight sees them. Each case
asserts that exactly the expected variable is refused (so a message can never blame
the wrong field) and that a secret's value never appears in a message.
"""

from __future__ import annotations

import copy
import functools
from pathlib import Path

import pytest
import yaml
from ansible.errors import AnsibleFilterError
from ansible_collections.lay7.ha.plugins.filter.input_guard import FilterModule, input_guard
from ansible_collections.lay7.ha.plugins.plugin_utils._guard import check_inputs, show
from jinja2.nativetypes import NativeEnvironment

ROOT = Path(__file__).resolve().parents[4]


def _load(path: Path) -> dict:
    return copy.deepcopy(_parse(path))


# Most cases read the same three role files: parsed once a process, not in every case (the
# parsing was nine tenths of this module's time, and make unit runs it on each core).
@functools.lru_cache(maxsize=None)
def _parse(path: Path) -> dict:
    return yaml.safe_load(path.read_text(encoding="utf-8")) or {}


def _render(value, context: dict):
    env = NativeEnvironment()
    if isinstance(value, str) and "{{" in value:
        return env.from_string(value).render(**context)
    if isinstance(value, dict):
        return {k: _render(v, context) for k, v in value.items()}
    if isinstance(value, list):
        return [_render(v, context) for v in value]
    return value


# Values a real deployment sets (the lab's), on top of the role defaults.
SET = {
    "haproxy_l7": {
        "haproxy_l7_frontend_address": "192.168.56.100",
        "haproxy_l7_stats_address": "192.168.56.21",
        "haproxy_l7_stats_user": "lay7stats",
        "haproxy_l7_stats_password": "k3Q-uv9_Zt41pLmx",
        "haproxy_l7_local_peer_name": "hap1",
        "haproxy_l7_peers": [{"name": "hap1", "address": "192.168.56.21"}, {"name": "hap2", "address": "192.168.56.22", "port": 10000}],
        "haproxy_l7_default_backend": "main",
    },
    "keepalived_vip": {
        "keepalived_vip_address": "192.168.56.100",
        "keepalived_vip_priority": 254,
        "keepalived_vip_peer_priorities": [253],
        "keepalived_vip_unicast_peers": ["192.168.56.22"],
        "keepalived_vip_watchdog_script": "/usr/bin/curl -fsS --max-time 1 -o /dev/null http://127.0.0.1:8405/lay7-alive",
        "keepalived_vip_release_hook": "/usr/local/sbin/lay7-haproxy-handover",
    },
    "apache_web": {
        "apache_web_server_name": "web1",
        "apache_web_served_by_value": "web1",
        "apache_web_trusted_proxies": ["192.168.56.21", "192.168.56.22"],
        "apache_web_http_allowed_sources": ["192.168.56.21", "192.168.56.22", "10.0.0.0/8"],
    },
}


def role_inputs(role: str) -> tuple[dict, dict]:
    """(values, rules) as the preflight of ``role`` sees them for a valid deployment."""
    defaults = _load(ROOT / "roles" / role / "defaults" / "main.yml")
    internals = _load(ROOT / "roles" / role / "vars" / "main.yml")
    values = {**defaults, **SET[role]}
    context = {**internals, **values, "inventory_hostname": "hap1"}
    values = {k: _render(v, context) for k, v in values.items()}
    context.update(values)
    rules = _render(internals[f"__{role}_input_rules"], context)
    return values, rules


def refused(role: str, **changes) -> list:
    values, _rules = role_inputs(role)
    values.update(changes)
    # Rules that read other inputs (parents, minimum length) see the changed values too.
    internals = _load(ROOT / "roles" / role / "vars" / "main.yml")
    rules = _render(internals[f"__{role}_input_rules"], {**internals, **values})
    return check_inputs(values, rules)


@pytest.mark.parametrize("role", sorted(SET))
def test_every_public_variable_has_a_rule(role):
    # Every input of argument_specs, required ones (which have no default) included.
    public = set(_load(ROOT / "roles" / role / "meta" / "argument_specs.yml")["argument_specs"]["main"]["options"])
    rules = set(_load(ROOT / "roles" / role / "vars" / "main.yml")[f"__{role}_input_rules"])
    assert public - rules == set(), f"{role}: variables without an input rule"
    assert rules - public == set(), f"{role}: rules for variables that do not exist"


@pytest.mark.parametrize("role", sorted(SET))
def test_a_valid_deployment_passes(role):
    values, rules = role_inputs(role)
    assert check_inputs(values, rules) == []
    assert input_guard(values, rules) == sorted(values)


# (role, variable, bad value, words the message must contain)
BAD = [
    # --- directive injection: a line break inside any value becomes a new directive ---
    ("haproxy_l7", "haproxy_l7_hard_stop_after", "5m\n    stats socket ipv4@0.0.0.0:9999 level admin", "control character \\n"),
    ("haproxy_l7", "haproxy_l7_log_facility", "local0\nlua-load /tmp/x.lua", "control character"),
    ("haproxy_l7", "haproxy_l7_stats_uri", "/stats\n    stats admin if TRUE", "control character"),
    ("haproxy_l7", "haproxy_l7_frontend_name", "lay7_http\n    bind 0.0.0.0:8080", "control character"),
    ("haproxy_l7", "haproxy_l7_health_check_host", "localhost\nbind :81", "control character"),
    ("haproxy_l7", "haproxy_l7_retry_on", ["conn-failure\n    bind :82"], "item 0"),
    ("haproxy_l7", "haproxy_l7_stick_table_expire", "30m\n    peer evil 203.0.113.9:10000", "control character"),
    ("haproxy_l7", "haproxy_l7_peers", [{"name": "hap1", "address": "192.168.56.21\n    peer evil 203.0.113.9:10000"}], "address"),
    ("haproxy_l7", "haproxy_l7_peers_section", "lay7_peers\nlua-load /tmp/x.lua", "control character"),
    ("haproxy_l7", "haproxy_l7_log_target", "/dev/log local0\nlua-load /tmp/x.lua", "control character"),
    ("haproxy_l7", "haproxy_l7_stats_refresh", "10s\r", "control character \\r"),
    ("haproxy_l7", "haproxy_l7_prometheus_path", "/metrics\n", "control character"),
    ("haproxy_l7", "haproxy_l7_error_503_title", "Down\nX-Injected: 1", "control character"),
    ("haproxy_l7", "haproxy_l7_error_503_message", "line1\u2028line2", "control character"),
    ("haproxy_l7", "haproxy_l7_retry_methods", ["GET\n"], "item 0"),
    ("haproxy_l7", "haproxy_l7_stats_user", "lay7stats\n", "control character"),
    ("haproxy_l7", "haproxy_l7_stats_user", "lay7 stats", "refused characters"),
    ("haproxy_l7", "haproxy_l7_health_check_path", "/healthz\n", "control character"),
    ("haproxy_l7", "haproxy_l7_local_peer_name", "hap1\n", "control character"),
    ("haproxy_l7", "haproxy_l7_packages", ["haproxy\n"], "control character"),
    ("haproxy_l7", "haproxy_l7_packages", ["haproxy", "socat; rm -rf /"], "Debian package"),
    ("haproxy_l7", "haproxy_l7_frontend_name", "lay7 http", "refused characters"),
    ("haproxy_l7", "haproxy_l7_frontend_name", "", "must not be empty"),
    ("haproxy_l7", "haproxy_l7_frontend_name", " lay7", "white space"),
    ("haproxy_l7", "haproxy_l7_frontend_name", "x" * 100, "characters long"),
    ("haproxy_l7", "haproxy_l7_health_check_host", "local host", "refused characters"),
    ("haproxy_l7", "haproxy_l7_health_check_host", "-bad-.example", "host name"),
    ("haproxy_l7", "haproxy_l7_retry_methods", ["get"], "upper case"),
    ("haproxy_l7", "haproxy_l7_retry_methods", ["GET", "GET"], "twice"),
    ("haproxy_l7", "haproxy_l7_retry_on", ["conn-failure", "999"], "item 1"),
    ("haproxy_l7", "haproxy_l7_retry_on", "conn-failure", "must be a list"),
    ("haproxy_l7", "haproxy_l7_routing_mode", "maps", "one of"),
    ("haproxy_l7", "haproxy_l7_http_reuse", "never\n    bind :82", "control character"),
    ("haproxy_l7", "haproxy_l7_http_reuse", "sometimes", "one of"),
    ("haproxy_l7", "haproxy_l7_log_facility", "local9", "one of"),
    # --- addresses, parsed ---
    ("haproxy_l7", "haproxy_l7_frontend_address", "0.0.0.0", "unspecified"),
    ("haproxy_l7", "haproxy_l7_frontend_address", "::", "unspecified"),
    # The same check as the route compiler's server addresses: deprecated IPv4-compatible IPv6.
    ("haproxy_l7", "haproxy_l7_frontend_address", "::c000:264", "IPv6 form of an IPv4 address"),
    ("haproxy_l7", "haproxy_l7_frontend_address", "*", "not an IP address"),
    ("haproxy_l7", "haproxy_l7_frontend_address", "192.168.56.100 ", "white space"),
    ("haproxy_l7", "haproxy_l7_frontend_address", "224.0.0.18", "multicast"),
    ("haproxy_l7", "haproxy_l7_frontend_address", "255.255.255.255", "broadcast"),
    ("haproxy_l7", "haproxy_l7_frontend_address", "192.168.056.100", "leading zeros"),
    ("haproxy_l7", "haproxy_l7_stats_address", "0", "not an IP address"),
    ("haproxy_l7", "haproxy_l7_stats_address", "::0", "canonical form"),
    ("haproxy_l7", "haproxy_l7_stats_address", "000.000.000.000", "not an IP address"),
    ("haproxy_l7", "haproxy_l7_stats_address", "192.168.056.021", "not an IP address"),
    ("haproxy_l7", "haproxy_l7_stats_address", "192.168.56.100", "same as haproxy_l7_frontend_address"),
    ("haproxy_l7", "haproxy_l7_stats_address", "fe80::1", "link-local"),
    ("haproxy_l7", "haproxy_l7_stats_address", "2001:DB8::1", "canonical form"),
    ("haproxy_l7", "haproxy_l7_stats_address", "192.168.56.21:8404", "not an IP address"),
    ("haproxy_l7", "haproxy_l7_monitor_address", "192.168.56.21", "loopback"),
    ("haproxy_l7", "haproxy_l7_monitor_address", "0.0.0.0", "unspecified"),
    ("haproxy_l7", "haproxy_l7_peers", [{"name": "hap1", "address": "0.0.0.0"}], "unspecified"),
    ("haproxy_l7", "haproxy_l7_peers", [{"name": "hap1", "address": "127.0.0.1"}], "loopback"),
    ("haproxy_l7", "haproxy_l7_peers", [{"name": "hap1", "address": "255.255.255.255"}], "broadcast"),
    ("haproxy_l7", "haproxy_l7_peers", [{"name": "hap1"}], "needs the key 'address'"),
    ("haproxy_l7", "haproxy_l7_peers", [{"name": "hap1", "address": "192.168.56.21", "prot": 1}], "unknown key"),
    ("haproxy_l7", "haproxy_l7_peers", [{"name": "hap1", "address": "192.168.56.21", "port": 70000}], "port"),
    ("haproxy_l7", "haproxy_l7_peers", [{"name": "hap 1", "address": "192.168.56.21"}], "name"),
    ("haproxy_l7", "haproxy_l7_log_target", "999.1.1.1:514", "not an IP address"),
    ("haproxy_l7", "haproxy_l7_log_target", "192.0.2.5:99999", "port"),
    ("haproxy_l7", "haproxy_l7_log_target", "/etc/passwd", "system path"),
    # --- numbers, durations, sizes ---
    ("haproxy_l7", "haproxy_l7_timeout_client", 30, "milliseconds"),
    ("haproxy_l7", "haproxy_l7_timeout_client", "30", "unit"),
    ("haproxy_l7", "haproxy_l7_timeout_client", "30 s", "unit"),
    ("haproxy_l7", "haproxy_l7_timeout_client", "30ms", "between 1s and 24h"),
    ("haproxy_l7", "haproxy_l7_timeout_server", "2d", "between"),
    ("haproxy_l7", "haproxy_l7_timeout_connect", "-1s", "unit"),
    ("haproxy_l7", "haproxy_l7_timeout_http_request", "1.5s", "unit"),
    ("haproxy_l7", "haproxy_l7_hard_stop_after", "forever", "unit"),
    ("haproxy_l7", "haproxy_l7_health_check_inter", "0ms", "between"),
    ("haproxy_l7", "haproxy_l7_stick_table_expire", "30d", "between"),
    ("haproxy_l7", "haproxy_l7_stick_table_size", "100 k", "whole number"),
    ("haproxy_l7", "haproxy_l7_stick_table_size", "0", "from 1"),
    ("haproxy_l7", "haproxy_l7_health_check_expect_status", 999, "100-599"),
    ("haproxy_l7", "haproxy_l7_health_check_expect_status", "2OO", "integer"),
    ("haproxy_l7", "haproxy_l7_frontend_port", "9" * 5000, "integer 1-65535"),
    ("haproxy_l7", "haproxy_l7_frontend_port", 0, "integer 1-65535"),
    ("haproxy_l7", "haproxy_l7_stats_port", True, "boolean"),
    ("haproxy_l7", "haproxy_l7_retries", 50, "0-10"),
    ("haproxy_l7", "haproxy_l7_maxconn", -1, "integer"),
    ("haproxy_l7", "haproxy_l7_handover_seconds", 60, "0-10"),
    ("haproxy_l7", "haproxy_l7_prometheus_enabled", "yes", "true or false"),
    ("haproxy_l7", "haproxy_l7_health_check_path", "healthz", "absolute URL path"),
    ("haproxy_l7", "haproxy_l7_health_check_path", "/health check", "refused characters"),
    ("haproxy_l7", "haproxy_l7_health_check_path", "/../etc/passwd", "'..'"),
    ("haproxy_l7", "haproxy_l7_health_check_path", "/%zz", "RFC 3986"),
    ("haproxy_l7", "haproxy_l7_stats_uri", "/", "must not be '/'"),
    ("haproxy_l7", "haproxy_l7_prometheus_path", "/stats", "same as haproxy_l7_stats_uri"),
    # --- paths the role owns ---
    ("haproxy_l7", "haproxy_l7_map_dir", "/", "system path"),
    ("haproxy_l7", "haproxy_l7_map_dir", "/etc", "system path"),
    ("haproxy_l7", "haproxy_l7_map_dir", "/etc/haproxy", "system path"),
    ("haproxy_l7", "haproxy_l7_map_dir", "/etc/haproxy/../ssl", "normalised"),
    ("haproxy_l7", "haproxy_l7_map_dir", "/etc/haproxy/maps/", "normalised"),
    ("haproxy_l7", "haproxy_l7_map_dir", "etc/haproxy/maps", "absolute"),
    ("haproxy_l7", "haproxy_l7_map_dir", "/etc/haproxy/my maps", "refused characters"),
    ("haproxy_l7", "haproxy_l7_errors_dir", "/tmp", "system path"),
    ("haproxy_l7", "haproxy_l7_errors_dir", "/var/tmp/errors", "must lie inside"),
    ("haproxy_l7", "haproxy_l7_config_file", "/etc/passwd", "system path"),
    ("haproxy_l7", "haproxy_l7_config_file", "/etc/haproxy/haproxy.conf", "must end in .cfg"),
    ("haproxy_l7", "haproxy_l7_admin_socket", "/tmp/admin.sock", "must lie inside"),
    ("haproxy_l7", "haproxy_l7_path_parents", ["/"], "system directory"),
    ("haproxy_l7", "haproxy_l7_path_parents", ["/etc"], "system directory"),
    ("haproxy_l7", "haproxy_l7_path_parents", [], "at least 1"),
    # --- keepalived ---
    ("keepalived_vip", "keepalived_vip_instance_name", "VI_LAY7\n}\nglobal_defs {\n script_user root", "control character"),
    ("keepalived_vip", "keepalived_vip_instance_name", "VI LAY7", "refused characters"),
    ("keepalived_vip", "keepalived_vip_track_script", '/usr/bin/true" \n"', "control character"),
    ("keepalived_vip", "keepalived_vip_track_script", '/bin/systemctl is-active "haproxy"', "refused characters"),
    ("keepalived_vip", "keepalived_vip_track_script", "systemctl is-active haproxy", "absolute"),
    ("keepalived_vip", "keepalived_vip_track_script", "/bin/sh -c true;reboot", "refused characters"),
    ("keepalived_vip", "keepalived_vip_watchdog_script", "/usr/bin/curl $(id)", "refused characters"),
    ("keepalived_vip", "keepalived_vip_watchdog_script", "/usr/bin/curl `id`", "refused characters"),
    ("keepalived_vip", "keepalived_vip_watchdog_script", "/usr/bin/curl  http://x", "two spaces"),
    ("keepalived_vip", "keepalived_vip_track_unit", "haproxy", "systemd service"),
    ("keepalived_vip", "keepalived_vip_track_unit", "haproxy.service\n", "control character"),
    ("keepalived_vip", "keepalived_vip_track_process_name", "haproxy-very-long-name", "15 characters"),
    ("keepalived_vip", "keepalived_vip_notify_log_tag", "lay7 tag", "syslog identifier"),
    ("keepalived_vip", "keepalived_vip_release_hook", "/tmp/hook", "must lie inside"),
    ("keepalived_vip", "keepalived_vip_release_hook", "/usr/local/sbin/../../../tmp/hook", "normalised"),
    ("keepalived_vip", "keepalived_vip_release_hook", "lay7-hook", "absolute"),
    ("keepalived_vip", "keepalived_vip_interface", "eth1\n", "control character"),
    ("keepalived_vip", "keepalived_vip_interface", "a-very-long-interface0", "characters long"),
    ("keepalived_vip", "keepalived_vip_address", "192.168.56.0", "network address"),
    ("keepalived_vip", "keepalived_vip_address", "192.168.56.255", "broadcast address"),
    ("keepalived_vip", "keepalived_vip_address", "0.0.0.0", "unspecified"),
    ("keepalived_vip", "keepalived_vip_address", "127.0.0.100", "loopback"),
    ("keepalived_vip", "keepalived_vip_address", "2001:db8::100", "IPv4"),
    ("keepalived_vip", "keepalived_vip_address", "192.168.56.100/24", "not an IP address"),
    ("keepalived_vip", "keepalived_vip_address", "192.168.56.100\n", "control character"),
    ("keepalived_vip", "keepalived_vip_prefix", 33, "1-32"),
    ("keepalived_vip", "keepalived_vip_unicast_peers", ["0.0.0.0"], "unspecified"),
    ("keepalived_vip", "keepalived_vip_unicast_peers", ["255.255.255.255"], "broadcast"),
    ("keepalived_vip", "keepalived_vip_unicast_peers", ["192.168.56.22", "192.168.56.22"], "twice"),
    ("keepalived_vip", "keepalived_vip_unicast_peers", ["192.168.56.022"], "not an IP address"),
    ("keepalived_vip", "keepalived_vip_unicast_peers", "192.168.56.22", "must be a list"),
    ("keepalived_vip", "keepalived_vip_vrrp_allowed_sources", ["192.168.56.0/24"], "not an IP address"),
    ("keepalived_vip", "keepalived_vip_unicast_src", "192.168.56.100", "same as keepalived_vip_address"),
    ("keepalived_vip", "keepalived_vip_router_id", 0, "1-255"),
    ("keepalived_vip", "keepalived_vip_reserved_router_ids", [51, 51], "twice"),
    ("keepalived_vip", "keepalived_vip_priority", 255, "1-254"),
    ("keepalived_vip", "keepalived_vip_vrrp_version", 4, "one of"),
    ("keepalived_vip", "keepalived_vip_advert_interval", 0, "0.01"),
    ("keepalived_vip", "keepalived_vip_advert_interval", "fast", "decimal number"),
    ("keepalived_vip", "keepalived_vip_vrrp_nice", -21, "-20-19"),
    ("keepalived_vip", "keepalived_vip_track_weight", 10, "-253-0"),
    ("keepalived_vip", "keepalived_vip_track_method", "proc", "one of"),
    ("keepalived_vip", "keepalived_vip_release_timeout", 600, "1-30"),
    ("keepalived_vip", "keepalived_vip_packages", ["keepalived", "curl\n"], "item 1"),
    # --- apache ---
    ("apache_web", "apache_web_error_log", '"|/bin/sh -c id"', "absolute"),
    ("apache_web", "apache_web_error_log", "|/bin/sh", "absolute"),
    ("apache_web", "apache_web_error_log", "/etc/shadow", "system path"),
    ("apache_web", "apache_web_error_log", "/var/log/apache2/lay7_access.log", "same as apache_web_access_log"),
    ("apache_web", "apache_web_access_log", "/var/log/apache2/access", "must end in .log"),
    ("apache_web", "apache_web_access_log", "syslog:local1", "absolute"),
    ("apache_web", "apache_web_access_log", "/var/log/apache2/x.log\nLoadModule evil /tmp/x.so", "control character"),
    ("apache_web", "apache_web_document_root", "/", "system path"),
    ("apache_web", "apache_web_document_root", "/var/www", "system path"),
    ("apache_web", "apache_web_document_root", "/var/www/../../etc", "normalised"),
    ("apache_web", "apache_web_document_root", "/etc/lay7", "must lie inside"),
    ("apache_web", "apache_web_document_root", "/var/www/lay7\n", "control character"),
    ("apache_web", "apache_web_document_root_parents", ["/"], "system directory"),
    ("apache_web", "apache_web_document_root_parents", ["/etc", "/var/www"], "system directory"),
    ("apache_web", "apache_web_served_by_value", "web1\r", "control character"),
    ("apache_web", "apache_web_served_by_value", 'web1"\nHeader set X', "control character"),
    ("apache_web", "apache_web_served_by_value", 'web1" early', "must not contain"),
    ("apache_web", "apache_web_served_by_value", "%{HOME}e", "must not contain"),
    ("apache_web", "apache_web_served_by_value", "wéb1", "ASCII"),
    ("apache_web", "apache_web_served_by_header_name", "X Served By", "header name"),
    ("apache_web", "apache_web_served_by_header_name", "X-Served-By:", "header name"),
    ("apache_web", "apache_web_remoteip_header", "X-Forwarded-For\n", "control character"),
    ("apache_web", "apache_web_server_name", "web1 evil", "refused characters"),
    ("apache_web", "apache_web_server_name", "192.0.2.11", "not an IP address"),
    ("apache_web", "apache_web_health_path", "healthz", "absolute"),
    ("apache_web", "apache_web_health_path", '/healthz" "/etc/passwd', "refused characters"),
    ("apache_web", "apache_web_listen_port", 65536, "1-65535"),
    ("apache_web", "apache_web_trusted_proxies", ["0.0.0.0/0"], "unspecified"),
    ("apache_web", "apache_web_trusted_proxies", ["0.0.0.0/1", "128.0.0.0/1"], "unspecified"),
    ("apache_web", "apache_web_trusted_proxies", ["1.0.0.0/1"], "host bits"),
    ("apache_web", "apache_web_trusted_proxies", ["10.0.0.0/7"], "together"),
    ("apache_web", "apache_web_trusted_proxies", ["64.0.0.0/2", "128.0.0.0/2"], "together"),
    ("apache_web", "apache_web_trusted_proxies", ["::/0"], "unspecified"),
    ("apache_web", "apache_web_trusted_proxies", ["4000::/3"], "together"),
    ("apache_web", "apache_web_trusted_proxies", ["lb.example.invalid"], "not an IP address"),
    ("apache_web", "apache_web_trusted_proxies", ["192.168.56.21/24"], "host bits"),
    ("apache_web", "apache_web_trusted_proxies", ["192.168.56.21", "192.168.56.21"], "twice"),
    ("apache_web", "apache_web_http_allowed_sources", ["0.0.0.0/1", "128.0.0.0/1"], "unspecified"),
    ("apache_web", "apache_web_http_allowed_sources", ["255.255.255.255"], "broadcast"),
    ("apache_web", "apache_web_http_allowed_sources", ["224.0.0.0/4"], "multicast"),
    ("apache_web", "apache_web_firewall_action", "accept", "one of"),
    ("apache_web", "apache_web_trusted_proxy_directive", "RemoteIPInternalProxy\nLoadModule", "control character"),
    ("apache_web", "apache_web_page_text", "Hi\n<script>", "control character"),
    # --- a second, independent hostile set (a red-team review of the first version) ---
    ("haproxy_l7", "haproxy_l7_frontend_port", 10**5000, "integer 1-65535"),
    ("keepalived_vip", "keepalived_vip_advert_interval", 10**5000, "0.01"),
    ("haproxy_l7", "haproxy_l7_stats_uri", "/st'ats", "refused characters"),
    ("haproxy_l7", "haproxy_l7_prometheus_path", "/met'rics", "refused characters"),
    ("haproxy_l7", "haproxy_l7_health_check_path", "/health'z", "refused characters"),
    ("haproxy_l7", "haproxy_l7_retry_methods", ["GET", "P'UT"], "HTTP method"),
    ("haproxy_l7", "haproxy_l7_retry_methods", ["GET", "#"], "HTTP method"),
    ("haproxy_l7", "haproxy_l7_frontend_address", "2001:db8::100%x:80 accept-proxy #", "zone"),
    ("haproxy_l7", "haproxy_l7_stats_address", "2001:db8::21%lo", "zone"),
    ("haproxy_l7", "haproxy_l7_peers", [{"name": "hap1", "address": "2001:db8::22%x y"}], "zone"),
    ("haproxy_l7", "haproxy_l7_health_check_host", "fe80::1%eth0", "zone"),
    ("haproxy_l7", "haproxy_l7_health_check_host", "0x7f000001", "numeric"),
    ("haproxy_l7", "haproxy_l7_log_target", "2001:db8::514", "brackets"),
    ("haproxy_l7", "haproxy_l7_log_target", "::1", "brackets"),
    ("haproxy_l7", "haproxy_l7_log_target", "/dev/shm/log", "must lie inside"),
    ("haproxy_l7", "haproxy_l7_log_target", "/run/systemd/notify", "must lie inside"),
    ("haproxy_l7", "haproxy_l7_log_target", "[::ffff:0:0]:514", "IPv6 form of an IPv4"),
    ("haproxy_l7", "haproxy_l7_health_check_expect_status", 200.0, "integer"),
    ("keepalived_vip", "keepalived_vip_router_id", 51.0, "integer"),
    ("keepalived_vip", "keepalived_vip_garp_master_refresh", 1e3, "integer"),
    ("apache_web", "apache_web_listen_port", 8080.0, "integer"),
    ("keepalived_vip", "keepalived_vip_advert_interval", "1_0", "decimal number"),
    ("keepalived_vip", "keepalived_vip_advert_interval", "1e-1", "decimal number"),
    ("keepalived_vip", "keepalived_vip_advert_interval", float("nan"), "must be a number"),
    ("apache_web", "apache_web_trusted_proxies", ["fe80::1%eth0"], "zone"),
    ("apache_web", "apache_web_trusted_proxies", ["::ffff:0:0/96"], "IPv6 form of IPv4"),
    ("apache_web", "apache_web_trusted_proxies", ["64:ff9b::/96"], "IPv6 form of IPv4"),
    ("apache_web", "apache_web_http_allowed_sources", ["2002::/16"], "IPv6 form of IPv4"),
    ("apache_web", "apache_web_http_allowed_sources", ["1.0.0.0/8", "3.0.0.0/8", "5.0.0.0/8"], "two /8 networks"),
    ("apache_web", "apache_web_served_by_header_name", "'X-Served-By", "header name"),
    ("apache_web", "apache_web_served_by_header_name", "Content-Length", "framing"),
    ("apache_web", "apache_web_served_by_header_name", "Set-Cookie", "framing"),
    ("apache_web", "apache_web_served_by_value", "${APACHE_RUN_DIR}", "must not contain"),
    ("keepalived_vip", "keepalived_vip_watchdog_script", None, "null"),
    ("keepalived_vip", "keepalived_vip_watchdog_script", "/tmp/x.sh", "must lie inside"),
    ("keepalived_vip", "keepalived_vip_track_script", "/dev/shm/x", "must lie inside"),
    ("keepalived_vip", "keepalived_vip_track_unit", "--help.service", "systemd service"),
    ("haproxy_l7", "haproxy_l7_stats_address", "::ffff:0:0", "IPv6 form of an IPv4"),
    ("haproxy_l7", "haproxy_l7_frontend_address", "::ffff:ffff:ffff", "IPv6 form of an IPv4"),
    ("haproxy_l7", "haproxy_l7_stats_address", "::ffff:c0a8:3864", "IPv6 form of an IPv4"),
    ("haproxy_l7", "haproxy_l7_peers", [{"name": "hap1", "address": "::ffff:0:0"}], "IPv6 form of an IPv4"),
    ("keepalived_vip", "keepalived_vip_unicast_peers", ["0.1.2.3"], "0.0.0.0/8"),
    ("keepalived_vip", "keepalived_vip_unicast_peers", ["240.0.0.1"], "reserved"),
    ("keepalived_vip", "keepalived_vip_unicast_src", "192.168.56.255", "broadcast address"),
    ("haproxy_l7", "haproxy_l7_path_parents", ["/etc/haproxy", "/etc/ssh"], "system directory"),
    ("haproxy_l7", "haproxy_l7_path_parents", ["/etc/haproxy", "/usr/local"], "system directory"),
    ("haproxy_l7", "haproxy_l7_path_parents", ["/etc/haproxy", "/etc/systemd"], "system directory"),
    ("apache_web", "apache_web_document_root_parents", ["/home/alice", "/var/www"], "system directory"),
    ("apache_web", "apache_web_document_root", "/var/www/.ssh", "hidden"),
    ("haproxy_l7", "haproxy_l7_map_dir", "/etc/haproxy/.maps", "hidden"),
    # --- a third set (a second review of the fixed version) ---
    ("apache_web", "apache_web_http_allowed_sources", ["fe80::/10"], "link-local"),
    ("haproxy_l7", "haproxy_l7_retry_on", [], "at least 1"),
    ("haproxy_l7", "haproxy_l7_retry_methods", [], "at least 1"),
    ("haproxy_l7", "haproxy_l7_frontend_name", "lay7_stats", "uses itself"),
    ("haproxy_l7", "haproxy_l7_frontend_name", "lay7_monitor", "uses itself"),
    ("apache_web", "apache_web_page_text", "Hi \ud800", "control character"),
    ("apache_web", "apache_web_page_text", "Hi \u202egnp.exe", "control character"),
    ("apache_web", "apache_web_served_by_value", "\ufeffweb1", "control character"),
    ("keepalived_vip", "keepalived_vip_unicast_peers", ["192.168.56.255"], "broadcast address"),
    ("apache_web", "apache_web_remoteip_header", "Host", "one of"),
    ("apache_web", "apache_web_remoteip_header", "X-Client-Spoofable", "one of"),
    ("apache_web", "apache_web_served_by_header_name", "Refresh", "X- header"),
    ("apache_web", "apache_web_served_by_header_name", "Access-Control-Allow-Origin", "X- header"),
    ("apache_web", "apache_web_document_root_parents", ["/etc/letsencrypt", "/var/www"], "lies in /etc"),
    ("apache_web", "apache_web_document_root_parents", ["/var/backups", "/var/www"], "system directory"),
    ("apache_web", "apache_web_document_root_parents", ["/var/lib/mysql", "/var/www"], "system directory"),
    ("haproxy_l7", "haproxy_l7_path_parents", ["/etc/haproxy", "/var/spool/cron"], "system directory"),
    ("haproxy_l7", "haproxy_l7_path_parents", ["/etc/haproxy", "/etc/cron.daily"], "lies in /etc"),
    ("haproxy_l7", "haproxy_l7_path_parents", ["/etc/haproxy", "/etc/logrotate.d"], "lies in /etc"),
    ("haproxy_l7", "haproxy_l7_admin_socket", "/var/lib/haproxy/log", "must end in .sock"),
    ("haproxy_l7", "haproxy_l7_frontend_address", "127.0.0.1", "loopback"),
    ("haproxy_l7", "haproxy_l7_health_check_path", "/h%41", "percent-encoded"),
    ("apache_web", "apache_web_health_path", "/h%41", "percent-encoded"),
    ("keepalived_vip", "keepalived_vip_interface", "-", "interface name"),
    ("keepalived_vip", "keepalived_vip_interface", "..", "interface name"),
    ("keepalived_vip", "keepalived_vip_router_id", "051", "integer"),
    ("haproxy_l7", "haproxy_l7_frontend_port", "080", "integer"),
    # --- a fourth set (an acceptance review) ---
    ("haproxy_l7", "haproxy_l7_maxconn", 1000000, "1-250000"),
    ("haproxy_l7", "haproxy_l7_admin_socket", "/run/haproxy/sub/admin.sock", "directly inside"),
    ("apache_web", "apache_web_access_log", "/var/log/apache2/lay7/access.log", "directly inside"),
    ("apache_web", "apache_web_error_log", "/var/log/apache2/lay7/error.log", "directly inside"),
    ("haproxy_l7", "haproxy_l7_timeout_server_retryable", "24h", "must not exceed haproxy_l7_timeout_server"),
    ("haproxy_l7", "haproxy_l7_health_check_host", "lb.example.com:8080", "without a port"),
    ("apache_web", "apache_web_server_name", "web1:80", "without a port"),
    ("haproxy_l7", "haproxy_l7_health_check_path", "/healthz?full=1", "query string"),
    ("apache_web", "apache_web_health_path", "/healthz#top", "fragment"),
]


@pytest.mark.parametrize(("role", "field", "value", "words"), BAD, ids=[f"{c[1]}={show(c[2])}"[:90] for c in BAD])
def test_bad_input_is_refused_by_name(role, field, value, words):
    problems = refused(role, **{field: value})
    assert [p[0] for p in problems] == [field], problems
    message = problems[0][1]
    assert message.startswith(f"{field}: "), message
    assert words in message, message
    # Control characters never reach the message unescaped (it goes to a terminal and logs).
    assert "\n" not in message and "\r" not in message, message


def test_the_battery_is_large_and_distinct():
    assert len({(c[1], show(c[2])) for c in BAD}) == len(BAD) >= 150


SECRETS = [
    " " * 12,
    "1234567890123",
    "lay7stats-2024",
    "\u200b" * 10 + "ab",
    "\u00a0" * 14,
    "lay7stats-lay7stats",
    "abcdefabcdef",
    "Password-Password",
    "P@ssw0rd2024",
    "x" * 600,
    "\u00fc" * 265,
    "aaaaaaaaaaaaaaa",
    "abababababababab",
    "password1234",
    "Password",
    "Admin!!!!!!!!",
    "short",
    "lay7stats",
    "correct horse\nbattery",
    "tab\tseparated-password",
]


@pytest.mark.parametrize("secret", SECRETS, ids=repr)
def test_weak_passwords_are_named_never_shown(secret):
    problems = refused("haproxy_l7", haproxy_l7_stats_password=secret)
    assert [p[0] for p in problems] == ["haproxy_l7_stats_password"], problems
    message = problems[0][1]
    assert "(secret, not shown)" in message
    assert secret not in message
    assert not secret.strip() or secret.strip() not in message


@pytest.mark.parametrize("secret", SECRETS[:6], ids=repr)
def test_weak_previous_passwords_are_named_never_shown(secret):
    """The rotation's previous password gets the same rules: a scraper may still use it."""
    problems = refused("haproxy_l7", haproxy_l7_stats_previous_password=secret)
    assert [p[0] for p in problems] == ["haproxy_l7_stats_previous_password"], problems
    assert secret not in problems[0][1] and "(secret, not shown)" in problems[0][1]


def test_previous_credentials_are_optional_and_checked_when_given():
    assert refused("haproxy_l7", haproxy_l7_stats_previous_user="", haproxy_l7_stats_previous_password="") == []
    assert refused("haproxy_l7", haproxy_l7_stats_previous_user="old.scraper", haproxy_l7_stats_previous_password="Vq8-mr2_Lx90kTjw") == []
    problems = refused("haproxy_l7", haproxy_l7_stats_previous_user="old user")
    assert [p[0] for p in problems] == ["haproxy_l7_stats_previous_user"], problems


@pytest.mark.parametrize(
    "bad_hash",
    [
        "plain-text-password",
        # HAProxy hashes on every stats request: 999,999,999 rounds kept `haproxy -c` busy for minutes.
        "$6$rounds=999999999$abcdefgh$" + "a" * 86,
        "$6$rounds=0999$abcdefgh$" + "a" * 86,
        "$6$abcdefgh$" + "a" * 43,
        "$y$jFT$abcdefgh$" + "a" * 43,
    ],
)
def test_password_hash_must_be_a_cheap_crypt_hash_and_is_not_shown(bad_hash):
    problems = refused("haproxy_l7", haproxy_l7_stats_password="", haproxy_l7_stats_password_hash=bad_hash)
    assert [p[0] for p in problems] == ["haproxy_l7_stats_password_hash"]
    assert bad_hash not in problems[0][1] and "(secret, not shown)" in problems[0][1]


def test_password_hash_accepted():
    good = "$6$e9e1610cb9031a48$z5C7fSl6q9RMizOQx8ibeS8jE3.cgRbuVw2uT/NUdnGpwGJf5rEp1jbDbdXyspedLUvGkcGtwkfO3mf0MVJ7K/"
    assert refused("haproxy_l7", haproxy_l7_stats_password="", haproxy_l7_stats_password_hash=good) == []


def test_ten_thousand_networks_are_checked_quickly():
    import time

    networks = [f"10.{i // 250}.{i % 250}.0/24" for i in range(10_000)]
    start = time.monotonic()
    assert refused("apache_web", apache_web_trusted_proxies=networks) == []
    assert time.monotonic() - start < 10  # measured 0.3 s; quadratic would take minutes


def test_every_problem_is_reported_at_once():
    problems = refused(
        "haproxy_l7",
        haproxy_l7_timeout_client=30,
        haproxy_l7_stats_uri="/stats\n",
        haproxy_l7_map_dir="/etc",
    )
    assert sorted(p[0] for p in problems) == ["haproxy_l7_map_dir", "haproxy_l7_stats_uri", "haproxy_l7_timeout_client"]


def test_filter_raises_one_error_listing_every_problem():
    values, rules = role_inputs("apache_web")
    values["apache_web_error_log"] = "|/bin/sh"
    values["apache_web_document_root"] = "/"
    with pytest.raises(AnsibleFilterError) as err:
        input_guard(values, rules)
    text = str(err.value)
    assert "2 input(s) refused before any host was changed" in text
    assert "apache_web_error_log: '|/bin/sh'" in text and "apache_web_document_root: '/'" in text


def test_a_value_without_rule_is_refused():
    values, rules = role_inputs("apache_web")
    values["apache_web_new_option"] = "x"
    problems = check_inputs(values, rules)
    assert problems == [("apache_web_new_option", "apache_web_new_option: no input rule is defined for it (a bug in the role, please report it)")]


def test_unknown_rule_kind_is_a_clear_filter_error():
    with pytest.raises(AnsibleFilterError, match="unknown rule kind 'ipv5'"):
        input_guard({"x": "1"}, {"x": {"kind": "ipv5"}})


def test_long_values_are_cut_in_messages():
    problems = refused("haproxy_l7", haproxy_l7_frontend_port="9" * 5000)
    assert len(problems[0][1]) < 300


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("haproxy_l7_monitor_address", "::1"),
        ("haproxy_l7_log_target", "[2001:db8::1]"),
        ("haproxy_l7_log_target", "[2001:db8::1]:514"),
        ("haproxy_l7_frontend_address", "2001:db8::100"),
        ("haproxy_l7_log_target", "192.0.2.5:514"),
        ("haproxy_l7_log_target", "stdout"),
        ("haproxy_l7_stick_table_size", "1m"),
        ("haproxy_l7_timeout_client", "90s"),
        ("haproxy_l7_health_check_host", "health.example.com"),
        ("haproxy_l7_stats_password", "correct horse battery staple"),
        ("haproxy_l7_map_dir", "/etc/haproxy/routes"),
    ],
)
def test_good_values_pass(field, value):
    assert refused("haproxy_l7", **{field: value}) == []


def test_filter_is_registered():
    assert FilterModule().filters()["input_guard"] is input_guard


def test_ipv6_loopback_and_private_ranges_are_fine_as_proxies():
    assert refused("apache_web", apache_web_trusted_proxies=["::1", "192.168.56.21", "fd12:3456::/32"]) == []
    assert refused("apache_web", apache_web_http_allowed_sources=["10.0.0.0/8", "172.16.0.0/12", "192.168.0.0/16"]) == []
