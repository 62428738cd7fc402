"""What lay7.ha.haproxy_server and lay7.ha.vip_state read from HAProxy, ip and the journal."""

import pytest
from ansible_collections.lay7.ha.plugins.module_utils._haproxy_admin import (
    AdminError,
    AdminSocket,
    forced_state,
    healthy,
    parse_servers_state,
    parse_stat,
)
from ansible_collections.lay7.ha.plugins.modules.haproxy_server import choose
from ansible_collections.lay7.ha.plugins.modules.vip_state import gratuitous_arp, holder_interface, last_state

# HAProxy 2.6's answers on the lab (trimmed to the columns that matter, header kept whole).
SERVERS_STATE = """1
# be_id be_name srv_id srv_name srv_addr srv_op_state srv_admin_state srv_uweight srv_iweight srv_time_since_last_change srv_check_status srv_check_result srv_check_health srv_check_state srv_agent_state bk_f_forced_id srv_f_forced_id srv_fqdn srv_port srvrecord srv_use_ssl srv_check_port srv_check_addr srv_agent_addr srv_agent_port
3 a_pool 1 web2 192.168.56.12 2 8 100 100 5 15 3 3 6 0 0 1 - 80 - 0 0 - - 0
3 a_pool 2 fallback_web1 192.168.56.11 2 0 100 100 5 1 0 1 0 0 0 1 - 80 - 0 0 - - 0
4 main 3 fallback_web2 192.168.56.12 2 16 100 100 5 1 0 1 0 0 0 1 - 80 - 0 0 - - 0
5 spare_pool 1 web2 192.168.56.12 0 1 50 100 5 15 3 0 6 0 0 1 - 80 - 0 0 - - 0

"""
STAT = (
    "# pxname,svname,qcur,scur,status,tracked,check_rise,check_fall,check_health\n"
    "a_pool,FRONTEND,0,5,OPEN,,,,\n"
    "a_pool,web2,1,2,DRAIN,,2,2,3\n"
    "a_pool,fallback_web1,0,0,UP,main/web1,,,\n"
    "main,fallback_web2,0,4,DRAIN,spare_pool/web2,,,\n"
    "spare_pool,web2,0,0,MAINT,,2,2,0\n"
    "a_pool,BACKEND,0,5,UP,,,,\n"
)


def test_servers_state_rows_and_forced_states():
    rows = parse_servers_state(SERVERS_STATE)
    assert [(r["be_name"], r["srv_name"]) for r in rows][0] == ("a_pool", "web2")
    assert [forced_state(r["srv_admin_state"]) for r in rows] == ["drain", "ready", "ready", "maint"]
    assert rows[3]["srv_uweight"] == 50


def test_stat_fields_with_commas_do_not_shift_the_columns():
    """HAProxy quotes a field holding a comma (a check's reason phrase, last_chk)."""
    text = ("# pxname,svname,last_chk,check_rise,check_fall,check_health\n"
            'a_pool,web2,"Bad, really",2,2,0\n')
    row = parse_stat(text)[0]
    assert row["check_rise"] == "2" and row["check_health"] == "0"
    assert not healthy(row, 2)


def test_stat_keeps_server_rows_only():
    rows = parse_stat(STAT)
    assert [r["svname"] for r in rows] == ["web2", "fallback_web1", "fallback_web2", "web2"]


@pytest.mark.parametrize("answer", ["Unknown command.\n", "Permission denied\n"])
def test_an_error_answer_is_not_taken_for_data(answer):
    with pytest.raises(AdminError):
        parse_stat(answer)
    with pytest.raises(AdminError):
        parse_servers_state(answer)


def test_a_command_cannot_chain_another():
    with pytest.raises(AdminError, match="newline or ';'"):
        AdminSocket("/nonexistent").command("set server a/b state ready; shutdown sessions server a/b")


def test_health_needs_a_check_passed_since_maintenance():
    # Just out of maintenance: running, health == rise (2 of rise + fall - 1 = 3): not yet.
    assert not healthy({"check_rise": "2", "check_fall": "2", "check_health": "2"}, 2)
    assert healthy({"check_rise": "2", "check_fall": "2", "check_health": "3"}, 2)
    assert not healthy({"check_rise": "2", "check_fall": "2", "check_health": "3"}, 0)
    assert healthy({"check_rise": "", "check_fall": "", "check_health": ""}, 2)  # not checked


def test_choose_by_name_skips_trackers_but_waits_for_them():
    states = parse_servers_state(SERVERS_STATE)
    stats = {f"{r['pxname']}/{r['svname']}": r for r in parse_stat(STAT)}
    chosen, watched = choose(states, stats, "web2", None, None, None)
    assert [f"{r['be_name']}/{r['srv_name']}" for r in chosen] == ["a_pool/web2", "spare_pool/web2"]
    assert watched == ["a_pool/web2", "main/fallback_web2", "spare_pool/web2"]


def test_choose_by_address_takes_a_tracker_whose_server_is_not_chosen():
    states = parse_servers_state(SERVERS_STATE)
    stats = {f"{r['pxname']}/{r['svname']}": r for r in parse_stat(STAT)}
    chosen, _watched = choose(states, stats, None, "192.168.56.12", 80, ["main"])
    assert [f"{r['be_name']}/{r['srv_name']}" for r in chosen] == ["main/fallback_web2"]


IP_ADDR = """1: lo    inet 127.0.0.1/8 scope host lo\\       valid_lft forever preferred_lft forever
1: lo    inet 192.168.56.100/32 scope global lo\\       valid_lft forever preferred_lft forever
2: eth1    inet 192.168.56.21/24 brd 192.168.56.255 scope global eth1\\       valid_lft forever preferred_lft forever
"""


def test_the_vip_on_lo_is_not_held_and_the_holding_interface_is_named():
    assert holder_interface(IP_ADDR, "192.168.56.100") == ""
    assert holder_interface(IP_ADDR + "2: eth1    inet 192.168.56.100/24 scope global secondary eth1\n", "192.168.56.100") == "eth1"
    assert holder_interface(IP_ADDR, "192.168.56.10") == ""


def test_gratuitous_arp_is_the_frame_keepalived_sends():
    mac = bytes.fromhex("f2eb9c64575a")
    frame = gratuitous_arp(mac, "192.168.56.100")
    vip = bytes([192, 168, 56, 100])
    assert len(frame) == 60 and frame[42:] == bytes(18)          # padded to the Ethernet minimum
    assert frame[:6] == b"\xff" * 6 and frame[6:12] == mac        # broadcast, from this node
    assert frame[12:14] == b"\x08\x06"                             # ARP
    assert frame[14:22] == bytes.fromhex("0001080006040001")     # Ethernet/IPv4, a request
    # Sender and target protocol address both the VIP: receivers treat it as gratuitous and
    # override their entry whatever its age.
    assert frame[22:28] == mac and frame[28:32] == vip
    assert frame[32:38] == b"\xff" * 6 and frame[38:42] == vip
    with pytest.raises(ValueError):
        gratuitous_arp(b"\x00" * 5, "192.168.56.100")


def test_last_state_is_the_newest_transition():
    journal = "(VI_LAY7) Entering MASTER STATE\n(VI_LAY7) Entering BACKUP STATE\n"
    assert last_state(journal) == "MASTER"
    assert last_state("") == "UNKNOWN"
