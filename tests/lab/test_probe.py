"""lab.probe against a tiny misbehaving HTTP server on 127.0.0.1 (no lab, no root, loopback only)."""

from __future__ import annotations

import asyncio
import json
import socket
import struct
import threading
import time

import pytest

from lab.probe import Probe, ProbeResult, Record, run_probe

INTERVAL = 0.005
K = 16


class Server:
    """An asyncio HTTP/1.1 server in its own thread whose misbehaviour the test picks.

    mode: "ok" (keep-alive), "close" (always `Connection: close`), "fin" (close cleanly after
    each complete response, no header), "drop_eof"/"drop_rst" (read the second request on a
    connection, then close without answering: FIN or RST). framing: "length", "chunked", "eof".
    """

    def __init__(self) -> None:
        self.mode, self.framing, self.status, self.delay = "ok", "length", 200, 0.0
        self.connections = 0            # all accepted connections
        self.keepalive_connections = 0  # those whose first request did not ask to close
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, daemon=True)
        self.thread.start()
        self.handlers: set[asyncio.Task] = set()
        self.server = self._call(asyncio.start_server(self._handle, "127.0.0.1", 0))
        self.port = self.server.sockets[0].getsockname()[1]

    def _call(self, coro, timeout: float = 5.0):
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result(timeout)

    def gap(self, seconds: float) -> None:
        """Stop accepting (connects are refused) for `seconds`; open connections stay up."""
        async def gap() -> None:
            # Stop accepting first and let accepts already under way finish: on 3.11 a connection
            # accepted in the same loop tick as Server.close() trips an assert and leaks its socket.
            for sock in self.server.sockets:
                self.loop.remove_reader(sock.fileno())
            for _attempt in range(3):
                await asyncio.sleep(0)
            self.server.close()
            await asyncio.sleep(seconds)
            self.server = await asyncio.start_server(self._handle, "127.0.0.1", self.port)
        self._call(gap())

    def close(self) -> None:
        async def shutdown() -> None:
            self.server.close()
            for task in self.handlers:
                task.cancel()
            await asyncio.gather(*self.handlers, return_exceptions=True)
        self._call(shutdown())
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(5)
        self.loop.close()

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.handlers.add(asyncio.current_task())
        self.connections += 1
        try:
            for n in range(1, 10_000):
                head = await reader.readuntil(b"\r\n\r\n")
                asked_close = b"connection: close" in head.lower()
                if n == 1 and not asked_close:
                    self.keepalive_connections += 1
                if n >= 2 and self.mode == "drop_rst":
                    writer.get_extra_info("socket").setsockopt(
                        socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
                    return
                if n >= 2 and self.mode == "drop_eof":
                    return
                if self.delay:
                    await asyncio.sleep(self.delay)
                close = asked_close or self.mode in ("close", "fin") or self.framing == "eof"
                lines = [f"HTTP/1.1 {self.status} X", "X-Served-By: srv"]
                if close and self.mode != "fin":
                    lines.append("Connection: close")
                if self.framing == "chunked":
                    body = b"3;ext=1\r\nok\n\r\n2\r\nhi\r\n0\r\nX-Trailer: t\r\n\r\n"
                    lines.append("Transfer-Encoding: chunked")
                elif self.framing == "length":
                    body = b"ok\n"
                    lines.append("Content-Length: 3")
                else:
                    body = b"ok, until EOF\n"
                writer.write(("\r\n".join(lines) + "\r\n\r\n").encode() + body)
                await writer.drain()
                if close:
                    return
        except (OSError, asyncio.IncompleteReadError, asyncio.CancelledError):  # shutdown too
            pass
        finally:
            writer.close()
            self.handlers.discard(asyncio.current_task())


@pytest.fixture
def server():
    srv = Server()
    yield srv
    srv.close()


def expected(duration: float) -> tuple[float, float]:
    """Bounds on the requests of one kind in a run of `duration` seconds. Pass the probe's own
    measured duration: on a loaded machine the caller's sleep, or the loop's handling of
    stop(), can overrun the nominal one, and the schedule rightly keeps going until then."""
    n = duration / INTERVAL
    return 0.85 * n, 1.15 * n + 1


def test_steady_server(server):
    result = run_probe(1.0, port=server.port, interval=INTERVAL, keepalive_connections=K)
    lo, hi = expected(result.duration_s)
    for kind in ("new", "keepalive"):
        s = result.summary(kind)
        assert lo <= s["requests"] <= hi, s
        assert s["failed"] == 0 and s["first_failure_s"] is None and s["failure_window_s"] == 0.0, s
        assert s["served_by"] == {"srv": s["requests"]}
        assert 0 < s["p50_latency_s"] <= s["p99_latency_s"] <= s["max_latency_s"] < 0.5
        assert s["max_start_lag_s"] is not None and s["max_start_lag_s"] >= 0
    new, ka = result.summary("new"), result.summary("keepalive")
    assert server.keepalive_connections == K                      # one per lane, not per request
    assert server.connections == new["requests"] + K
    assert ka["reused"] == ka["requests"] - K and new["reused"] == 0
    assert all(r.status == 200 and r.latency_s is not None for r in result.records)


def test_accept_gap_counts_failures(server):
    with Probe("127.0.0.1", server.port, interval=INTERVAL, keepalive_connections=K) as probe:
        time.sleep(0.2)
        down = probe.mark("close listener")
        server.gap(0.3)
        up = probe.mark("reopen listener")
        time.sleep(0.2)
    result = probe.result
    s = result.summary("new")
    assert s["failed"] > 20 and set(s["errors"]) <= {"ConnectionRefusedError", "ConnectionResetError"}, s
    assert 0.15 <= s["failure_window_s"] <= 0.5, s
    assert down - 0.15 <= s["first_failure_s"] <= down + 0.1   # a late start may fail too
    assert not result.failures_between(up + 0.1, 99, kind="new")
    assert result.summary("keepalive")["failed"] == 0              # open connections survive
    assert [m.label for m in result.marks] == ["close listener", "reopen listener"]


@pytest.mark.parametrize("mode", ["close", "fin"])
def test_server_closing_after_response_is_not_a_failure(server, mode):
    server.mode = mode
    result = run_probe(0.4, port=server.port, interval=INTERVAL, kinds=("keepalive",))
    s = result.summary("keepalive")
    assert s["requests"] > 50 and s["failed"] == 0, s
    if mode == "close":                 # told to close: never reused
        assert s["reused"] == 0 and server.connections == s["requests"]
    else:                               # FIN seen before the next request: reconnect
        assert s["reused"] <= 2


@pytest.mark.parametrize("mode, error", [("drop_eof", "eof"), ("drop_rst", "ConnectionResetError")])
def test_idle_connection_closed_on_next_request_fails(server, mode, error):
    server.mode = mode
    result = run_probe(0.5, port=server.port, interval=INTERVAL, kinds=("keepalive",))
    failed = [r for r in result.records if not r.ok]
    ok = [r for r in result.records if r.ok]
    assert len(failed) > 20 and len(ok) > 20
    assert all(r.reused and r.error == error and r.status is None for r in failed)
    assert not any(r.reused for r in ok)    # every success is on a fresh connection


def test_slow_server_times_out(server):
    server.delay = 0.5
    result = run_probe(0.2, port=server.port, interval=INTERVAL, timeout=0.15)
    assert result.records
    assert all(not r.ok and r.error == "timeout" and r.latency_s is None for r in result.records)
    s = result.summary()
    assert s["failed"] == s["requests"] and s["errors"] == {"timeout": s["requests"]}
    assert s["p50_latency_s"] >= 0.15               # failures count as the timeout


def test_scheduler_is_open_loop(server):
    server.delay = 0.2
    result = run_probe(0.5, port=server.port, interval=INTERVAL, kinds=("new",))
    lo, hi = expected(result.duration_s)
    assert result.duration_s >= 0.5
    s = result.summary("new")
    assert lo <= s["requests"] <= hi and s["failed"] == 0, s
    assert s["p50_latency_s"] >= 0.2


def test_max_duration_stops_by_itself(server):
    probe = Probe(port=server.port, interval=INTERVAL, max_duration=0.2).start()
    time.sleep(0.6)
    assert not probe.running
    result = probe.stop()
    lo, hi = expected(0.2)
    for kind in ("new", "keepalive"):
        s = result.summary(kind)
        assert lo <= s["requests"] <= hi and s["failed"] == 0, s
    assert max(r.scheduled_s for r in result.records) < 0.2
    assert result.duration_s <= 0.2


def test_503_is_a_failure(server):
    server.status = 503
    result = run_probe(0.2, port=server.port, interval=INTERVAL)
    s = result.summary()
    assert s["requests"] > 40 and s["failed"] == s["requests"]
    assert s["errors"] == {"status 503": s["requests"]}
    assert all(r.status == 503 and r.latency_s is not None for r in result.records)


@pytest.mark.parametrize("framing", ["chunked", "eof"])
def test_body_framing(server, framing):
    server.framing = framing
    result = run_probe(0.3, port=server.port, interval=INTERVAL)
    s = result.summary("keepalive")
    assert result.summary()["failed"] == 0 and s["requests"] > 40
    assert (s["reused"] > 0) if framing == "chunked" else (s["reused"] == 0)


def test_overload_cap(server):
    server.delay = 1.0
    result = run_probe(0.2, port=server.port, interval=INTERVAL, timeout=0.5, kinds=("new",),
                       max_outstanding=10)
    s = result.summary()
    assert s["errors"]["overload"] > 10 and s["errors"]["timeout"] == 10


def test_summary_and_json_from_records():
    recs = [Record("new", 0.0, 0.001, latency_s=0.010, ok=True, status=200, served_by="a"),
            Record("new", 1.0, 0.002, error="timeout"),
            Record("new", 1.5, 0.0, latency_s=0.003, status=503, error="status 503", served_by="b"),
            Record("keepalive", 2.0, 0.0, latency_s=0.020, ok=True, status=200, reused=True)]
    result = ProbeResult(recs, [], interval=0.005, timeout=1.0, kinds=("new", "keepalive"))
    s = result.summary("new")
    assert (s["requests"], s["failed"], s["first_failure_s"], s["last_failure_s"]) == (3, 2, 1.0, 1.5)
    assert s["failure_window_s"] == 0.5 and s["max_latency_s"] == 1.0 and s["p50_latency_s"] == 1.0
    assert s["errors"] == {"timeout": 1, "status 503": 1} and s["served_by"] == {"a": 1, "b": 1}
    assert result.summary("keepalive")["failure_window_s"] == 0.0
    assert [r.scheduled_s for r in result.failures_between(1.2, 2.0)] == [1.5]
    data = json.loads(json.dumps(result.to_json(records=True)))
    assert data["summary"]["all"]["requests"] == 4 and data["summary"]["new"]["p99_start_lag_s"] == 0.002
    assert len(data["records"]) == 4 and "records" not in result.to_json()
