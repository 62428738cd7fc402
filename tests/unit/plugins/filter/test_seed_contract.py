"""The seed contract (molecule/shared/seed_contract.yml: path -> web server) against the lab
inventory's own route table, compiled by lay7.ha.route_compile and run by the HAProxy
simulator in both compiled forms. The verifier checks the same contract on deployed hosts;
here a contract that the inventory cannot satisfy fails without booting anything. The unit
tests' seed table (seed_tables.SEED_ROUTES) must be that inventory's route table, too."""

from pathlib import Path

import haproxy_sim
import pytest
import yaml
from seed_tables import SEED_ROUTES
from ansible_collections.lay7.ha.plugins.plugin_utils._routes import compile_routes

ROOT = Path(__file__).resolve().parents[4]
CONTRACT = yaml.safe_load((ROOT / "molecule" / "shared" / "seed_contract.yml").read_text())["routes"]
INVENTORY = yaml.safe_load((ROOT / "inventory" / "lab" / "group_vars" / "loadbalancers.yml").read_text())


def _backends() -> dict:
    """The inventory's backends, each server's templated address replaced by a literal one."""
    backends = {}
    for name, backend in INVENTORY["haproxy_l7_backends"].items():
        servers = [dict(s, address=f"192.0.2.{10 + int(s['name'].removeprefix('web'))}") for s in backend["servers"]]
        backends[name] = dict(backend, servers=servers)
    return backends


@pytest.mark.parametrize("mode", ["acl", "map"])
@pytest.mark.parametrize(("path", "server"), sorted(CONTRACT.items()))
def test_contract_holds_for_the_lab_inventory(mode, path, server):
    backends = _backends()
    compiled = compile_routes(INVENTORY["haproxy_l7_routes"], backends, INVENTORY["haproxy_l7_default_backend"], mode=mode)
    backend = haproxy_sim.Frontend(compiled["frontend"], compiled["maps"]).route(path, None, "GET", set(backends))
    first = [s["name"] for s in backends[backend]["servers"] if not s.get("backup")][0]
    assert first == server, f"{path} -> {backend} ({first}), the contract says {server}"


# Beyond the seed, the lab inventory shows route features under /features (a random split, a
# redirect, a rewrite): the verifier checks those itself (test_route_features.py), not by a
# fixed path -> server contract.
SEED_INVENTORY_ROUTES = [r for r in INVENTORY["haproxy_l7_routes"] if not r["path"].startswith("/features")]


def test_contract_covers_every_server_and_route():
    assert set(CONTRACT.values()) == {"web1", "web2", "web3"}
    for route in SEED_INVENTORY_ROUTES:
        prefix = route["path"]
        assert {prefix, prefix + "/", prefix + "/inanzzz"} <= set(CONTRACT), f"the contract does not test {prefix}"
    # Whole path elements: /ab is not under /a.
    assert CONTRACT["/ab"] != CONTRACT["/a"]


def test_unit_seed_table_is_the_lab_inventorys():
    assert SEED_ROUTES == SEED_INVENTORY_ROUTES
    # The contract never reaches the feature routes, whose paths are all under /features.
    assert not any(path.startswith("/features") for path in CONTRACT)
