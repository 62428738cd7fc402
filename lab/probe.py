"""An open-loop HTTP probe: what clients see while the lab injects faults.

Why open loop: a closed-loop client (send, wait, send the next) slows down exactly when the
service does, so it sends few requests during an outage and the outage looks short and rare
("coordinated omission"). Here requests are *started* on a fixed schedule (default every 5 ms)
whatever earlier requests are doing, and every latency is measured from the request's
*scheduled* start, as wrk2 does; a stall therefore shows up in every request it delayed.

Two kinds of client run side by side, each on its own schedule:

* ``new``: a fresh TCP connection per request (``Connection: close``). It sees what a new
  visitor sees: refused or unanswered connects while no node holds the address.
* ``keepalive``: K persistent connections ("lanes"); request i goes to lane i % K and waits
  for that lane if it is busy (its latency still counts from its schedule). It sees what pooled
  clients and proxies see: connections cut by a failover. A server that closes a connection
  cleanly after a complete response (or says ``Connection: close``) only costs a reconnect;
  an error on a reused connection is a failure and is not retried, because a strict client
  would report it.

The probe runs its asyncio loop in a background thread so the caller can inject faults (and
``mark()`` them) while it runs. It has hard bounds (``max_duration``, ``max_outstanding``) so no
fault can make it run or grow forever. Standard library only; no fault injection here.
"""

from __future__ import annotations

import asyncio
import math
import ssl
import threading
import time
from collections import Counter
from collections.abc import Container
from dataclasses import asdict, dataclass, field
from typing import Any, NamedTuple

KINDS = ("new", "keepalive")
MAX_HEADERS = 100


@dataclass(slots=True)
class Record:
    """One scheduled request. Offsets are seconds from probe start (monotonic clock)."""

    kind: str
    scheduled_s: float
    start_lag_s: float              # how late the loop started it: the probe's own health
    latency_s: float | None = None  # from the schedule; None when no response was read
    ok: bool = False
    status: int | None = None
    error: str | None = None
    served_by: str | None = None
    reused: bool = False            # sent on a connection that had already served a request


@dataclass(slots=True)
class Mark:
    """A caller's labelled event ("kill hap1"), on the same clock as the records."""

    offset_s: float
    label: str


class _Eof(EOFError):
    """The server closed before a complete response (http.client's RemoteDisconnected)."""


class _BadResponse(ValueError):
    """Bytes that are not an HTTP/1.x response; counted, never parsed further."""


class _Response(NamedTuple):
    status: int
    served_by: str | None
    reusable: bool


def _percentile(values: list[float], pct: float) -> float | None:
    """Nearest-rank percentile of sorted values: always a value that was really observed."""
    if not values:
        return None
    return values[max(0, math.ceil(pct / 100 * len(values)) - 1)]


def _rounded(obj: Any) -> Any:
    """Floats at 0.1 ms: finer digits are noise on a 2-core lab and bloat result files."""
    if isinstance(obj, float):
        return round(obj, 4)
    if isinstance(obj, dict):
        return {k: _rounded(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_rounded(v) for v in obj]
    return obj


def _error_name(exc: BaseException) -> str:
    """Short and stable so errors can be counted across runs."""
    if isinstance(exc, TimeoutError):
        return "timeout"
    if isinstance(exc, EOFError):        # includes asyncio.IncompleteReadError
        return "eof"
    if isinstance(exc, ValueError):      # includes over-long lines from StreamReader
        return "bad_response"
    return type(exc).__name__


@dataclass
class ProbeResult:
    """Everything a probe run saw; the summaries are computed, so records stay the truth."""

    records: list[Record]
    marks: list[Mark]
    interval: float
    timeout: float
    kinds: tuple[str, ...]
    duration_s: float = 0.0

    def summary(self, kind: str | None = None) -> dict[str, Any]:
        """Per-kind (or overall) figures for benchmarks.

        Latency percentiles take every successful request's latency plus, for every failed
        one, max(timeout, its latency): a failure is at least as bad as a timeout for the
        client, and dropping failures would make an outage look *faster*.
        """
        recs = [r for r in self.records if kind is None or r.kind == kind]
        failed = [r for r in recs if not r.ok]
        fail_at = sorted(r.scheduled_s for r in failed)
        lat = sorted([r.latency_s for r in recs if r.ok and r.latency_s is not None]
                     + [max(self.timeout, r.latency_s or 0.0) for r in failed])
        lags = sorted(r.start_lag_s for r in recs)
        return {
            "requests": len(recs),
            "failed": len(failed),
            "failure_window_s": fail_at[-1] - fail_at[0] if fail_at else 0.0,
            "first_failure_s": fail_at[0] if fail_at else None,
            "last_failure_s": fail_at[-1] if fail_at else None,
            "p50_latency_s": _percentile(lat, 50),
            "p99_latency_s": _percentile(lat, 99),
            "max_latency_s": lat[-1] if lat else None,
            "p99_start_lag_s": _percentile(lags, 99),
            "max_start_lag_s": lags[-1] if lags else None,
            "reused": sum(r.reused for r in recs),
            "errors": Counter(r.error for r in failed),
            "served_by": Counter(r.served_by for r in recs if r.served_by is not None),
        }

    def failures_between(self, t0: float, t1: float, kind: str | None = None) -> list[Record]:
        """Failed requests scheduled in [t0, t1): "did anything fail after the new node took over?"."""
        return [r for r in self.records if not r.ok and t0 <= r.scheduled_s < t1
                and (kind is None or r.kind == kind)]

    def to_json(self, records: bool = False) -> dict[str, Any]:
        """A plain dict for json.dump; records are optional because they are large."""
        out: dict[str, Any] = {
            "interval_s": self.interval,
            "timeout_s": self.timeout,
            "duration_s": self.duration_s,
            "summary": {k: self.summary(k) for k in self.kinds} | {"all": self.summary()},
            "marks": [asdict(m) for m in self.marks],
        }
        for s in out["summary"].values():
            s["errors"], s["served_by"] = dict(s["errors"]), dict(s["served_by"])
        if records:
            out["records"] = [asdict(r) for r in self.records]
        return _rounded(out)


@dataclass
class _Lane:
    """One persistent connection; the lock keeps its requests in schedule order (FIFO)."""

    lock: asyncio.Lock = field(default_factory=asyncio.Lock)
    reader: asyncio.StreamReader | None = None
    writer: asyncio.StreamWriter | None = None

    def drop(self, abort: bool = False) -> None:
        if self.writer is not None and abort:
            self.writer.transport.abort()
        elif self.writer is not None:
            self.writer.close()
        self.reader = self.writer = None


class Probe:
    """Start requests on a schedule in a background thread; ``stop()`` returns a ProbeResult."""

    def __init__(self, address: str = "127.0.0.1", port: int = 80, path: str = "/", *,
                 interval: float = 0.005, timeout: float = 1.0, keepalive_connections: int = 16,
                 kinds: tuple[str, ...] = KINDS, host_header: str | None = None,
                 served_by_header: str = "X-Served-By", accept: Container[int] = range(200, 400),
                 max_duration: float = 600.0, max_outstanding: int = 2000,
                 tls: ssl.SSLContext | None = None, server_name: str | None = None) -> None:
        if not kinds or set(kinds) - set(KINDS):
            raise ValueError(f"kinds must be a non-empty subset of {KINDS}, not {kinds!r}")
        if interval <= 0 or timeout <= 0 or keepalive_connections < 1 or max_outstanding < 1:
            raise ValueError("interval, timeout, keepalive_connections, max_outstanding must be > 0")
        self.address, self.port, self.path = address, port, path
        self.interval, self.timeout = interval, timeout
        self.keepalive_connections, self.kinds = keepalive_connections, tuple(kinds)
        host = f"[{address}]" if ":" in address else address
        default_port = 443 if tls is not None else 80
        self.host_header = host_header or (host if port == default_port else f"{host}:{port}")
        # HTTPS: every connection (new or a lane's) makes its own TLS handshake with this
        # context, sending server_name as SNI; the context decides what is trusted and whether
        # sessions are resumed.
        self.tls, self.server_name = tls, server_name
        self.served_by_header = served_by_header.lower()
        self.accept, self.max_duration, self.max_outstanding = accept, max_duration, max_outstanding
        self.result: ProbeResult | None = None
        self._records: list[Record] = []
        self._marks: list[Mark] = []
        self._marks_lock = threading.Lock()
        self._tasks: set[asyncio.Task] = set()
        self._lanes: list[_Lane] = []
        self._thread: threading.Thread | None = None
        self._started = threading.Event()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._stop_event: asyncio.Event | None = None
        self._drain = True
        self._t0 = 0.0
        self._duration = 0.0
        self._error: BaseException | None = None

    # -- caller side (any thread) ------------------------------------------------------------

    def start(self) -> Probe:
        """Return once the schedule runs, so a fault injected next is surely observed."""
        if self._thread is not None:
            raise RuntimeError("a Probe runs once; make a new one")
        self._thread = threading.Thread(target=self._run, name="lab-probe", daemon=True)
        self._thread.start()
        self._started.wait()
        if self._error is not None:
            raise RuntimeError("probe failed to start") from self._error
        return self

    def mark(self, label: str) -> float:
        """Record a labelled event at the current offset, so results can be read against faults."""
        offset = time.monotonic() - self._t0
        with self._marks_lock:
            self._marks.append(Mark(offset, label))
        return offset

    @property
    def running(self) -> bool:
        """False once stopped or once max_duration ran out and the tail was drained."""
        return self._thread is not None and self._thread.is_alive()

    def stop(self, drain: bool = True) -> ProbeResult:
        """Stop scheduling; with drain, wait (at most timeout + 0.5 s) for outstanding requests.

        Requests still outstanding after that are recorded as failed ("unfinished"): hiding
        them would hide exactly the requests a fault hung.
        """
        if self._thread is None:
            raise RuntimeError("probe was not started")
        if self._thread.is_alive() and self._loop is not None and self._stop_event is not None:
            self._drain = drain
            try:
                self._loop.call_soon_threadsafe(self._stop_event.set)
            except RuntimeError:        # loop closed meanwhile: it stopped by itself
                pass
        self._thread.join(self.timeout + 0.5 + 5.0)
        if self._error is not None:
            raise RuntimeError("probe failed") from self._error
        with self._marks_lock:
            marks = list(self._marks)
        self.result = ProbeResult(sorted(self._records, key=lambda r: r.scheduled_s), marks,
                                  self.interval, self.timeout, self.kinds, self._duration)
        return self.result

    def __enter__(self) -> Probe:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop(drain=True)

    # -- loop side (probe thread) ------------------------------------------------------------

    def _run(self) -> None:
        try:
            asyncio.run(self._main())
        except BaseException as exc:  # noqa: BLE001 - reported to the caller by start()/stop()
            self._error = exc
        finally:
            self._started.set()

    async def _main(self) -> None:
        self._loop = asyncio.get_running_loop()
        self._stop_event = asyncio.Event()
        self._lanes = [_Lane() for _ in range(self.keepalive_connections)]
        self._t0 = time.monotonic()
        # Kinds are phase-shifted by a fraction of the interval so they do not start in bursts.
        schedulers = [asyncio.create_task(self._schedule(kind, n * self.interval / len(self.kinds)))
                      for n, kind in enumerate(self.kinds)]
        self._started.set()
        stop_wait = asyncio.create_task(self._stop_event.wait())
        # Until stop() is called or every schedule ran out of max_duration.
        while not stop_wait.done() and not all(s.done() for s in schedulers):
            await asyncio.wait([stop_wait, *(s for s in schedulers if not s.done())],
                               return_when=asyncio.FIRST_COMPLETED)
        self._duration = min(time.monotonic() - self._t0, self.max_duration)
        for task in (*schedulers, stop_wait):
            task.cancel()
        for res in await asyncio.gather(*schedulers, stop_wait, return_exceptions=True):
            if isinstance(res, Exception):      # a bug in the probe: never report a silent half-run
                raise res
        if self._drain and self._tasks:
            await asyncio.wait(set(self._tasks), timeout=self.timeout + 0.5)
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        for lane in self._lanes:
            lane.drop(abort=True)

    async def _schedule(self, kind: str, phase: float) -> None:
        """Start request i at t0 + phase + i*interval; when late, catch up rather than skip."""
        i = 0
        while (offset := phase + i * self.interval) < self.max_duration:
            delay = self._t0 + offset - time.monotonic()
            if delay > 0:
                await asyncio.sleep(delay)
            if len(self._tasks) >= self.max_outstanding:
                lag = time.monotonic() - self._t0 - offset
                self._records.append(Record(kind, offset, lag, error="overload"))
            else:
                task = asyncio.create_task(self._request(kind, i, offset))
                self._tasks.add(task)
                task.add_done_callback(self._tasks.discard)
            i += 1

    async def _request(self, kind: str, i: int, offset: float) -> None:
        sched = self._t0 + offset
        rec = Record(kind, offset, time.monotonic() - sched)
        self._records.append(rec)
        try:
            if kind == "new":
                resp = await self._fetch_new()
            else:
                resp = await self._fetch_lane(self._lanes[i % self.keepalive_connections], rec)
        except asyncio.CancelledError:
            rec.error = "unfinished"
            raise
        except Exception as exc:  # noqa: BLE001 - every failure is data
            rec.error = _error_name(exc)
            return
        rec.latency_s = time.monotonic() - sched
        rec.status, rec.served_by = resp.status, resp.served_by
        rec.ok = resp.status in self.accept
        if not rec.ok:
            rec.error = f"status {resp.status}"

    async def _fetch_new(self) -> _Response:
        writer = None
        try:
            async with asyncio.timeout(self.timeout):
                reader, writer = await self._connect()
                resp = await self._exchange(reader, writer, close=True)
        except BaseException:
            if writer is not None:
                writer.transport.abort()
            raise
        writer.close()
        return resp

    async def _fetch_lane(self, lane: _Lane, rec: Record) -> _Response:
        """The timeout starts when the lane is ours: queueing is latency, not a failure."""
        async with lane.lock:
            if lane.reader is not None and (lane.reader.at_eof() or lane.writer.is_closing()):
                lane.drop()             # closed cleanly after its last response: just reconnect
            rec.reused = lane.writer is not None
            try:
                async with asyncio.timeout(self.timeout):
                    if lane.writer is None:
                        lane.reader, lane.writer = await self._connect()
                    resp = await self._exchange(lane.reader, lane.writer, close=False)
            except BaseException:
                lane.drop(abort=True)   # state unknown after an error: never reuse it
                raise
            if not resp.reusable:
                lane.drop()
            return resp

    async def _connect(self) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
        if self.tls is None:
            return await asyncio.open_connection(self.address, self.port)
        return await asyncio.open_connection(self.address, self.port, ssl=self.tls,
                                             server_hostname=self.server_name or self.address,
                                             ssl_handshake_timeout=self.timeout)

    async def _exchange(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter,
                        close: bool) -> _Response:
        """One GET and its full response; just enough HTTP/1.1 to know if the connection is reusable."""
        head = f"GET {self.path} HTTP/1.1\r\nHost: {self.host_header}\r\nUser-Agent: lay7-probe\r\n"
        writer.write((head + ("Connection: close\r\n" if close else "") + "\r\n").encode("latin-1"))
        await writer.drain()
        version, status, headers = await _read_head(reader)
        while 100 <= status < 200:      # interim responses (100 Continue) precede the real one
            version, status, headers = await _read_head(reader)
        framed = True
        if status in (204, 304):
            pass
        elif "chunked" in headers.get("transfer-encoding", "").lower():
            await _read_chunked(reader)
        elif "content-length" in headers:
            await _read_exactly(reader, int(headers["content-length"]))
        else:                           # delimited by EOF: the connection is used up
            while await reader.read(65536):
                pass
            framed = False
        conn = headers.get("connection", "").lower()
        keep = "close" not in conn if version == "HTTP/1.1" else "keep-alive" in conn
        return _Response(status, headers.get(self.served_by_header), framed and keep)


async def _read_line(reader: asyncio.StreamReader) -> bytes:
    line = await reader.readline()
    if not line.endswith(b"\n"):
        raise _Eof("connection closed before a complete response")
    return line


async def _read_head(reader: asyncio.StreamReader) -> tuple[str, int, dict[str, str]]:
    parts = (await _read_line(reader)).decode("latin-1").split(None, 2)
    if len(parts) < 2 or not parts[0].startswith("HTTP/1.") or not parts[1].isdigit():
        raise _BadResponse(f"bad status line {parts!r}")
    headers: dict[str, str] = {}
    for _ in range(MAX_HEADERS):
        line = await _read_line(reader)
        if line in (b"\r\n", b"\n"):
            return parts[0], int(parts[1]), headers
        name, sep, value = line.decode("latin-1").partition(":")
        if not sep:
            raise _BadResponse(f"bad header line {line!r}")
        headers[name.strip().lower()] = value.strip()
    raise _BadResponse("too many headers")


async def _read_exactly(reader: asyncio.StreamReader, n: int) -> None:
    if n < 0:
        raise _BadResponse("negative Content-Length")
    while n > 0:                        # in pieces: a large body must not be held in memory
        n -= len(await reader.readexactly(min(n, 65536)))


async def _read_chunked(reader: asyncio.StreamReader) -> None:
    while size := int((await _read_line(reader)).split(b";", 1)[0].strip(), 16):
        await _read_exactly(reader, size + 2)          # chunk data and its CRLF
    while (await _read_line(reader)) not in (b"\r\n", b"\n"):
        pass                                            # trailers


def run_probe(duration: float, **kwargs: Any) -> ProbeResult:
    """Probe for `duration` seconds (never beyond max_duration) and return the result."""
    with Probe(**kwargs) as probe:
        time.sleep(duration)
    assert probe.result is not None
    return probe.result
