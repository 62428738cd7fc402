"""lay7.ha.haproxy_map run by Ansible against the real HAProxy on loopback.

A route table in the map form is changed only in plain path routes (added, removed,
re-pointed): the compiled frontend lines stay the same, so only the maps change, and the
module puts the new maps into the running HAProxy, which then routes by them without a
restart or reload (the same process answers before and after).
"""

from __future__ import annotations

from ansible_collections.lay7.ha.plugins.plugin_utils._routes import compile_routes
from loopback import running
from test_haproxy_server_module import run_module as _run

BACKENDS = {
    "main": {"servers": [{"name": "web1", "address": "127.0.0.1", "port": 80}]},
    "a_pool": {"servers": [{"name": "web2", "address": "127.0.0.1", "port": 80}]},
    "b_pool": {"servers": [{"name": "web3", "address": "127.0.0.1", "port": 80}]},
}
ROUTES = [
    {"name": "a", "path": "/a", "match": "prefix", "backend": "a_pool"},
    {"name": "b", "path": "/b", "match": "prefix", "backend": "b_pool"},
    {"name": "x", "path": "/x", "match": "exact", "backend": "b_pool"},
]
CHANGED = [
    {"name": "a", "path": "/a", "match": "prefix", "backend": "b_pool"},   # re-pointed
    {"name": "c", "path": "/c/d", "match": "prefix", "backend": "a_pool"},  # added
    {"name": "x", "path": "/x", "match": "exact", "backend": "b_pool"},     # /b removed
]


def compiled(routes, tmp_path):
    return compile_routes(routes, BACKENDS, "main", map_dir=str(tmp_path / "maps"), mode="map")


def run_map(proxy, tmp_path, **args):
    return _run(proxy, tmp_path, module="lay7.ha.haproxy_map", **args)


def test_path_route_changes_go_live_in_the_same_process(tmp_path):
    old, new = compiled(ROUTES, tmp_path), compiled(CHANGED, tmp_path)
    assert old["frontend"] == new["frontend"], "a path-only change must not change haproxy.cfg"
    with running(old, tmp_path) as (proxy, _backends):
        pid = proxy.proc.pid
        assert [proxy.request(p)[1] for p in ("/a/1", "/b/1", "/c/d/1", "/x")] == ["a_pool", "b_pool", "main", "b_pool"]
        new_maps = {m["path"]: m["content"] for m in new["maps"]}
        first = {m["path"]: run_map(proxy, tmp_path, path=m["path"], content=m["content"], check=True, diff=True)
                 for m in new["maps"]}
        assert any(r["changed"] for r in first.values()) and all(not r.get("failed") for r in first.values())
        assert proxy.request("/a/1")[1] == "a_pool", "check mode changed the running map"
        prefix = next(path for path in new_maps if path.endswith("_prefix.map"))
        assert "/c/d/ " in first[prefix]["diff"]["after"] and "/c/d/ " not in first[prefix]["diff"]["before"]
        # All maps of the table in one run (as the role does), in small batches.
        result = run_map(proxy, tmp_path, maps=[{"path": p, "content": c} for p, c in new_maps.items()], batch=1024,
                         via_ansible=True)
        assert result["changed"] and not result.get("failed"), result
        assert sorted(result["versions"]) == sorted(p for p in new_maps if p.endswith(("_exact.map", "_prefix.map")))
        assert [proxy.request(p)[1] for p in ("/a/1", "/b/1", "/c/d/1", "/c/e", "/x")] == ["b_pool", "main", "a_pool", "main", "b_pool"]
        assert proxy.proc.pid == pid and proxy.proc.poll() is None
        again = [run_map(proxy, tmp_path, path=path, content=content) for path, content in new_maps.items()]
        assert not any(r["changed"] for r in again), "a second run reported a change"


def test_a_map_the_running_configuration_does_not_use_is_refused(tmp_path):
    with running(compiled(ROUTES, tmp_path), tmp_path) as (proxy, _backends):
        result = run_map(proxy, tmp_path, path=str(tmp_path / "maps" / "other.map"), content="/q 0:a_pool\n")
        assert result.get("failed") and "a reload is needed" in result["msg"], result


def test_a_large_map_is_replaced_whole(tmp_path):
    """3,000 entries of about 100 bytes: far more than one command's buffer (16 kB) holds."""
    routes = [{"name": f"r{i}", "path": f"/r{i}/" + "x" * 90, "match": "prefix", "backend": "a_pool"} for i in range(3000)]
    with running(compiled(ROUTES, tmp_path), tmp_path) as (proxy, _backends):
        big = compiled(routes, tmp_path)
        prefix = next(m for m in big["maps"] if m["path"].endswith("_prefix.map"))
        result = run_map(proxy, tmp_path, path=prefix["path"], content=prefix["content"])
        assert result["changed"] and result["entries"] == 3000, result
        assert proxy.request("/r2999/" + "x" * 90 + "/y")[1] == "a_pool" and proxy.request("/a/1")[1] == "main"
