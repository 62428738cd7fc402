"""lay7.ha.lb_cluster: priorities, peers, router ids and rollout order from the inventory."""

import pytest
from ansible.errors import AnsibleFilterError
from ansible_collections.lay7.ha.plugins.filter.lb_cluster import FilterModule, lb_cluster

VIP = "192.168.56.100"


def _lab(**extra):
    """The lab's two load balancers sharing one VIP; extra: host -> variables to add."""
    hostvars = {
        "hap1": {"lay7_node_address": "192.168.56.21", "keepalived_vip_address": VIP, "keepalived_vip_router_id": 51},
        "hap2": {"lay7_node_address": "192.168.56.22", "keepalived_vip_address": VIP, "keepalived_vip_router_id": 51},
    }
    for host, variables in extra.items():
        hostvars.setdefault(host, {}).update(variables)
    return hostvars


def test_the_lab_pair():
    cluster = lb_cluster(["hap1", "hap2"], _lab())
    assert cluster["addresses"] == ["192.168.56.21", "192.168.56.22"]
    assert cluster["nodes"]["hap1"] == {
        "address": "192.168.56.21", "vip": VIP, "priority": 254,
        "peers": ["hap2"], "peer_addresses": ["192.168.56.22"], "peer_priorities": [253],
        "foreign_router_ids": [], "rollout_rank": "001",
        "haproxy_peers": [{"name": "hap1", "address": "192.168.56.21"}, {"name": "hap2", "address": "192.168.56.22"}],
    }
    hap2 = cluster["nodes"]["hap2"]
    assert (hap2["priority"], hap2["peers"], hap2["peer_priorities"], hap2["rollout_rank"]) == (253, ["hap1"], [254], "000")
    # Both sides write the same HAProxy peers section.
    assert hap2["haproxy_peers"] == cluster["nodes"]["hap1"]["haproxy_peers"]


def test_host_order_decides_the_default_priorities():
    cluster = lb_cluster(["hap2", "hap1"], _lab())
    assert cluster["nodes"]["hap2"]["priority"] == 254
    assert cluster["nodes"]["hap1"]["priority"] == 253
    assert cluster["addresses"] == ["192.168.56.22", "192.168.56.21"]


def test_inventory_priorities_win_and_set_the_rollout_order():
    hostvars = _lab(hap1={"keepalived_vip_priority": "100"}, hap2={"keepalived_vip_priority": 200},
                    hap3={"lay7_node_address": "192.168.56.23", "keepalived_vip_address": VIP})
    cluster = lb_cluster(["hap1", "hap2", "hap3"], hostvars)
    nodes = cluster["nodes"]
    assert [nodes[h]["priority"] for h in ("hap1", "hap2", "hap3")] == [100, 200, 252]
    # Backups first: ascending priority.
    assert sorted(nodes, key=lambda h: nodes[h]["rollout_rank"]) == ["hap1", "hap2", "hap3"]
    assert nodes["hap2"]["peers"] == ["hap1", "hap3"]
    assert nodes["hap2"]["peer_priorities"] == [100, 252]


def test_equal_priorities_keep_host_order_in_the_rollout():
    hostvars = _lab(hap1={"keepalived_vip_priority": 150}, hap2={"keepalived_vip_priority": 150})
    nodes = lb_cluster(["hap1", "hap2"], hostvars)["nodes"]
    assert (nodes["hap1"]["rollout_rank"], nodes["hap2"]["rollout_rank"]) == ("000", "001")


def test_rollout_ranks_sort_as_text_beyond_ten_hosts():
    hostvars = {f"lb{i}": {"lay7_node_address": f"10.0.0.{i + 1}", "keepalived_vip_address": "10.0.0.200"} for i in range(12)}
    nodes = lb_cluster(list(hostvars), hostvars)["nodes"]
    by_text = sorted(nodes, key=lambda h: nodes[h]["rollout_rank"])
    by_priority = sorted(nodes, key=lambda h: nodes[h]["priority"])
    assert by_text == by_priority
    assert by_text[-1] == "lb0"


def test_two_vips_on_one_segment_are_two_clusters():
    hostvars = _lab(
        lb3={"lay7_node_address": "192.168.56.31", "keepalived_vip_address": "192.168.56.200", "keepalived_vip_router_id": "61"},
        lb4={"lay7_node_address": "192.168.56.32", "keepalived_vip_address": "192.168.56.200", "keepalived_vip_router_id": 62},
    )
    nodes = lb_cluster(["hap1", "hap2", "lb3", "lb4"], hostvars)["nodes"]
    assert nodes["hap1"]["peers"] == ["hap2"]
    assert nodes["lb3"]["peers"] == ["lb4"]
    assert nodes["lb3"]["peer_addresses"] == ["192.168.56.32"]
    # Each cluster learns the router ids of the other, never its own.
    assert nodes["hap1"]["foreign_router_ids"] == [61, 62]
    assert nodes["lb3"]["foreign_router_ids"] == [51]
    assert [p["name"] for p in nodes["lb4"]["haproxy_peers"]] == ["lb3", "lb4"]


def test_a_load_balancer_without_a_vip_has_no_peers():
    hostvars = _lab(hap3={"lay7_node_address": "192.168.56.23"})
    nodes = lb_cluster(["hap1", "hap2", "hap3"], hostvars)["nodes"]
    assert nodes["hap3"]["vip"] == ""
    assert nodes["hap3"]["peers"] == []
    assert nodes["hap3"]["haproxy_peers"] == [{"name": "hap3", "address": "192.168.56.23"}]
    assert "hap3" not in nodes["hap1"]["peers"]
    # Its router ids are the VIPs it does not serve: the lab's.
    assert nodes["hap3"]["foreign_router_ids"] == [51]


def test_no_load_balancers():
    assert lb_cluster([], {}) == {"addresses": [], "nodes": {}}


def test_missing_address_names_the_host_and_the_variable():
    hostvars = _lab()
    del hostvars["hap2"]["lay7_node_address"]
    with pytest.raises(AnsibleFilterError, match=r"load balancer 'hap2' has no lay7_node_address"):
        lb_cluster(["hap1", "hap2"], hostvars)


@pytest.mark.parametrize(("value", "why"), [
    ("192.168.56.021", "not an IP address"),
    ("hap2.example", "not an IP address"),
    ("2001:db8::1", "must be an IPv4 address"),
    ("127.0.0.1", "loopback"),
    ("0.0.0.0", "unspecified"),
    ("", "not an IP address|empty"),
])
def test_bad_address_is_refused_with_the_variable(value, why):
    with pytest.raises(AnsibleFilterError, match=rf"'hap2': lay7_node_address = .*({why})"):
        lb_cluster(["hap1", "hap2"], _lab(hap2={"lay7_node_address": value}))


def test_two_hosts_with_one_address_are_refused():
    with pytest.raises(AnsibleFilterError, match=r"'hap2': lay7_node_address = .* is also 'hap1'"):
        lb_cluster(["hap1", "hap2"], _lab(hap2={"lay7_node_address": "192.168.56.21"}))


@pytest.mark.parametrize("name", ["keepalived_vip_priority", "keepalived_vip_router_id"])
@pytest.mark.parametrize("value", ["high", 1.5, True, ["1"], "1 0", " 7", "7\n", "-1", 0])
def test_non_integers_are_refused(name, value):
    with pytest.raises(AnsibleFilterError, match=rf"'hap1': {name} = .* must be an integer 1-25[45]"):
        lb_cluster(["hap1", "hap2"], _lab(hap1={name: value}))


@pytest.mark.parametrize(("name", "value", "ok"), [
    ("keepalived_vip_priority", 254, True), ("keepalived_vip_priority", "1", True),
    ("keepalived_vip_priority", 255, False), ("keepalived_vip_router_id", 255, True),
    ("keepalived_vip_router_id", "256", False),
])
def test_integer_ranges_are_the_roles(name, value, ok):
    variables = _lab(hap1={name: value})
    if ok:
        node = lb_cluster(["hap1", "hap2"], variables)["nodes"]["hap1"]
        assert node["priority"] == (int(value) if name == "keepalived_vip_priority" else 254)
    else:
        with pytest.raises(AnsibleFilterError, match=rf"'hap1': {name} = .* must be an integer 1-25[45]"):
            lb_cluster(["hap1", "hap2"], variables)


@pytest.mark.parametrize(("hosts", "hostvars", "message"), [
    ("hap1", _lab(), "expected a list of host names"),
    (["hap1", "hap2"], ["hap1"], "expected hostvars"),
    (["hap1", "hap1"], _lab(), "listed twice"),
    (["hap1", "hap9"], _lab(), "'hap9' is not in hostvars"),
])
def test_bad_arguments(hosts, hostvars, message):
    with pytest.raises(AnsibleFilterError, match=message):
        lb_cluster(hosts, hostvars)


def test_registered_under_its_name():
    assert FilterModule().filters() == {"lb_cluster": lb_cluster}
