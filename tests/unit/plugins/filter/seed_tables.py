"""The seed topology's route table (addresses in the documentation range), shared by the
unit tests and the loopback integration test, which points every server at a loopback port."""

LONG = "x" * 6000


def server(name: str, last: int) -> dict:
    return {"name": name, "address": f"192.0.2.{last}", "port": 80}


SEED_BACKENDS = {
    "main": {"servers": [server("web1", 11)], "fallback": "a_pool"},
    "a_pool": {"servers": [server("web2", 12)], "fallback": "main"},
    "b_pool": {"servers": [server("web3", 13)], "fallback": "main"},
}
SEED_ROUTES = [
    {"name": "a", "path": "/a", "match": "prefix", "backend": "a_pool"},
    {"name": "b", "path": "/b", "match": "prefix", "backend": "b_pool"},
]
