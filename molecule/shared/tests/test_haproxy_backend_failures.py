"""Backend failures seen through the VIP (issue 4, item 5).

Stop web2: /a is served by a_pool's fallback (main, web1). Stop all three web servers:
every path gets HAProxy's custom 503 page. Start them: routing is back to normal. The
`faults` fixture starts every stopped service again and waits for the healthy topology,
also when an assertion fails. Every wait is bounded.
"""

from __future__ import annotations

from conftest import EXPECTED_ROUTES, HttpClient, wait_for

APACHE = "apache2"
MARK_DOWN_TIMEOUT = 15.0  # checks every 1 s, fastinter 250 ms, fall 2: DOWN in ~1.5 s
PAGE_503_MARKER = "lay7.ha: no-server-available"


def _served(vip: HttpClient, path: str, by: str) -> bool:
    reply = vip.try_get(path)
    return reply is not None and reply.status == 200 and reply.served_by == by


def test_stopped_web2_sends_a_to_the_fallback(faults, vip: HttpClient, timings):
    faults.stop_service("web2", APACHE)
    took = wait_for(lambda: _served(vip, "/a", "web1"), MARK_DOWN_TIMEOUT, "/a served by the fallback (web1)")
    timings["backend_fallback_s"] = round(took, 2)
    for path in ("/a", "/a/", "/a/inanzzz"):
        assert _served(vip, path, "web1"), path
    # Routes of other pools are untouched.
    for path, want in EXPECTED_ROUTES.items():
        if want != "web2":
            assert _served(vip, path, want), path

    faults.start_service("web2", APACHE)
    took = wait_for(lambda: _served(vip, "/a", "web2"), MARK_DOWN_TIMEOUT, "/a back on web2")
    timings["backend_recovery_s"] = round(took, 2)
    assert vip.routes_ok()


def test_all_web_servers_stopped_gives_the_custom_503(faults, inventory, vip: HttpClient, timings):
    for web in inventory.webservers:
        faults.stop_service(web, APACHE)

    def all_503() -> bool:
        replies = [vip.try_get(path) for path in ("/", "/a", "/b")]
        return all(r is not None and r.status == 503 for r in replies)

    took = wait_for(all_503, MARK_DOWN_TIMEOUT, "503 on every path")
    timings["backend_all_down_503_s"] = round(took, 2)
    for path in ("/", "/a/x", "/b/", "/hello"):
        reply = vip.get(path)
        assert reply.status == 503, path
        assert PAGE_503_MARKER in reply.body, reply.body[:300]
        assert reply.headers.get("x-lay7-error") == "no-server-available"
        assert reply.served_by is None

    for web in inventory.webservers:
        faults.start_service(web, APACHE)
    wait_for(vip.routes_ok, 30, "normal routing after the web servers started")
