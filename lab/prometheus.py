"""A Prometheus server for the tests: what an operator's Prometheus would see of the load balancers.

It runs the host's own ``prometheus`` binary (Debian's package, installed by ``make prometheus``),
never the system service: a configuration generated here (the load balancers' metrics endpoints as
targets, with the stats credentials; the alerting rules the collection ships), a scrape and rule
evaluation interval of 1 s so tests wait seconds rather than minutes, storage in a directory of the
caller's, and the web API on 127.0.0.1 only. ``stop()`` ends it (the context manager does too);
nothing outlives a test session.

The tests read it through the HTTP API: ``query`` (an instant query, /api/v1/query), ``alerts``
(/api/v1/alerts: pending and firing ones) and ``targets`` (/api/v1/targets). Shared by the loopback
integration test (tests/integration/test_vip_metric_loopback.py) and the lab's verification
(molecule/shared/tests/test_monitoring.py). Standard library only.
"""

from __future__ import annotations

import contextlib
import http.client
import json
import pathlib
import shutil
import socket
import subprocess
import time
import urllib.parse
from dataclasses import dataclass, field

ROOT = pathlib.Path(__file__).resolve().parents[1]
# The collection's alerting rules (docs/monitoring.md).
RULES = ROOT / "roles" / "haproxy_l7" / "files" / "prometheus" / "lay7-ha-alerts.yml"
LISTEN = "127.0.0.1"


class PrometheusError(RuntimeError):
    """The server did not start, or its API answered with an error."""


def binary() -> str:
    """The prometheus binary, or an error that says how to install it."""
    found = shutil.which("prometheus")
    if not found:
        raise PrometheusError("no prometheus binary on PATH: `make prometheus` installs Debian's package "
                              "(promtool and the server; prometheus.service is left stopped and disabled)")
    return found


def _free_port() -> int:
    with socket.socket() as s:
        s.bind((LISTEN, 0))
        return s.getsockname()[1]


def render_config(targets: list[str], rule_files: list[pathlib.Path], password_file: pathlib.Path | None,
                  user: str | None, metrics_path: str, interval: str, job: str) -> str:
    """prometheus.yml as JSON (a subset of YAML): one job scraping ``targets`` (host:port) at
    ``metrics_path`` with basic auth when ``user`` is given, the rules loaded, both intervals
    ``interval``. The password stays in its own file (password_file), never in this one."""
    scrape = {"job_name": job, "metrics_path": metrics_path, "scheme": "http",
              # A scrape must end before the next one starts.
              "scrape_timeout": interval, "static_configs": [{"targets": list(targets)}]}
    if user is not None:
        scrape["basic_auth"] = {"username": user, "password_file": str(password_file)}
    config = {"global": {"scrape_interval": interval, "evaluation_interval": interval},
              "rule_files": [str(p) for p in rule_files], "scrape_configs": [scrape]}
    return json.dumps(config, indent=2) + "\n"


@dataclass
class PrometheusServer:
    """``targets``: the load balancers' stats listeners (``address:port``); ``auth``: (user,
    password) of the stats listener, or None; ``workdir``: where the configuration, the password
    file, the log and the storage go (the caller's temporary directory)."""

    targets: list[str]
    workdir: pathlib.Path
    auth: tuple[str, str] | None = None
    metrics_path: str = "/metrics"
    rule_files: list[pathlib.Path] = field(default_factory=lambda: [RULES])
    interval: str = "1s"
    job: str = "lay7"
    port: int = 0
    proc: subprocess.Popen | None = None

    def start(self, timeout: float = 30.0) -> PrometheusServer:
        self.workdir = pathlib.Path(self.workdir)
        self.workdir.mkdir(parents=True, exist_ok=True)
        password_file = None
        if self.auth is not None:
            password_file = self.workdir / "stats_password"
            password_file.touch(mode=0o600)
            password_file.write_text(self.auth[1])
        config = self.workdir / "prometheus.yml"
        config.write_text(render_config(self.targets, self.rule_files, password_file,
                                        self.auth[0] if self.auth else None, self.metrics_path, self.interval, self.job))
        self.port = self.port or _free_port()
        self.log = self.workdir / "prometheus.log"
        with self.log.open("w") as log:
            self.proc = subprocess.Popen(
                [binary(), f"--config.file={config}", f"--storage.tsdb.path={self.workdir / 'data'}",
                 f"--web.listen-address={LISTEN}:{self.port}", "--log.level=warn"],
                stdout=log, stderr=subprocess.STDOUT, cwd=self.workdir)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise PrometheusError(f"prometheus exited ({self.proc.returncode}): {self.log.read_text()[-2000:]}")
            with contextlib.suppress(OSError, http.client.HTTPException):
                if self._get("/-/ready")[0] == 200:
                    return self
            time.sleep(0.1)
        self.stop()
        raise PrometheusError(f"prometheus not ready within {timeout:.0f} s: {self.log.read_text()[-2000:]}")

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(timeout=10)
        self.proc = None

    def __enter__(self) -> PrometheusServer:
        return self.start() if self.proc is None else self

    def __exit__(self, *exc) -> None:
        self.stop()

    # ------------------------------------------------------------------ the HTTP API
    def _get(self, path: str) -> tuple[int, bytes]:
        # http.client, not urllib: no proxy from the environment between the test and 127.0.0.1.
        conn = http.client.HTTPConnection(LISTEN, self.port, timeout=10)
        try:
            conn.request("GET", path)
            resp = conn.getresponse()
            return resp.status, resp.read()
        finally:
            conn.close()

    def api(self, path: str, **params: str):
        """The ``data`` of an API answer; an error answer raises, naming it."""
        query = ("?" + urllib.parse.urlencode(params)) if params else ""
        status, body = self._get(f"/api/v1/{path}{query}")
        try:
            answer = json.loads(body)
        except ValueError as exc:
            raise PrometheusError(f"/api/v1/{path}: HTTP {status}, not JSON: {body[:300]!r}") from exc
        if status != 200 or answer.get("status") != "success":
            raise PrometheusError(f"/api/v1/{path}{query}: HTTP {status}: {answer.get('error', answer)}")
        return answer["data"]

    def query(self, expr: str) -> list[tuple[dict, float]]:
        """An instant query's vector: (labels, value) per series."""
        data = self.api("query", query=expr)
        if data["resultType"] != "vector":
            raise PrometheusError(f"{expr!r}: a {data['resultType']}, not a vector")
        return [(item["metric"], float(item["value"][1])) for item in data["result"]]

    def alerts(self) -> list[dict]:
        """Every active alert (state pending or firing), each with its labels and activeAt."""
        return self.api("alerts")["alerts"]

    def targets_health(self) -> dict[str, str]:
        """Each target (its instance label) and the health of its last scrape (up, down, unknown),
        with the last error when down."""
        out = {}
        for target in self.api("targets", state="active")["activeTargets"]:
            health = target["health"]
            out[target["labels"]["instance"]] = health + (f" ({target['lastError']})" if target.get("lastError") else "")
        return out

    def evaluations(self) -> int:
        """How many times the rule groups have been evaluated so far (Prometheus's own counter,
        prometheus_rule_group_iterations_total, from its /metrics): a test that waits for two more
        knows every rule has seen the samples scraped before."""
        status, body = self._get("/metrics")
        if status != 200:
            raise PrometheusError(f"/metrics: HTTP {status}")
        total = 0.0
        for line in body.decode().splitlines():
            if line.startswith("prometheus_rule_group_iterations_total{"):
                total += float(line.rsplit(" ", 1)[1])
        return int(total)
