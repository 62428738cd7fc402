# -*- coding: utf-8 -*-
# Copyright: lay7.ha maintainers
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""HAProxy's master CLI (master-worker mode, `-S <socket>`): reloads whose outcome is known.
Internal, for lay7.ha.haproxy_reload.

A reload (SIGUSR2, or the master CLI's "reload") makes the master re-execute itself, parse the
configuration again and fork new workers. If that fails - a port another process holds, a
certificate that cannot be loaded, anything `haproxy -c` does not catch - the old workers go on
serving the old configuration and nothing tells the sender. Two ways to learn the outcome,
chosen by the running version:

- HAProxy 2.7 and later answer the master CLI's "reload" once it is done: "Success=1" or
  "Success=0", then "--" and the new process's startup messages (Debian 13 ships 3.0).
- HAProxy 2.6 (Debian 12) answers nothing and closes the connection. The outcome is then read
  from "show proc": the master's reload counter moves on when the new process has taken over,
  its "failed" counter when the new configuration did not load.
"""

from __future__ import annotations

import re
import socket
import time

from ansible_collections.lay7.ha.plugins.module_utils._haproxy_admin import exchange

# The first version whose "reload" answers with the outcome (doc/management.txt, "reload").
SYNC_RELOAD_VERSION = (2, 7)

_MASTER_RE = re.compile(r"^(?P<pid>\d+)\s+master\s+(?P<reloads>\d+)\s+\[failed:\s*(?P<failed>\d+)\]\s+\S+\s+(?P<version>\S+)")
_WORKER_RE = re.compile(r"^(?P<pid>\d+)\s+worker\s+(?P<reloads>\d+)\s+\S+\s+(?P<version>\S+)")


class MasterError(Exception):
    """The master CLI could not be used, or a reload failed (the message says which)."""


def parse_version(text: str) -> tuple:
    """(major, minor) of a HAProxy version string such as '3.0.11-1+deb13u4' or '2.6.12-1+deb12u2'."""
    m = re.match(r"^(\d+)\.(\d+)", text or "")
    if not m:
        raise MasterError(f"cannot read a HAProxy version from {text!r}")
    return int(m.group(1)), int(m.group(2))


def parse_proc(text: str) -> dict:
    """The master CLI's "show proc": the master's pid, reload and failed-reload counters and
    version, and the current workers (old workers, still finishing, are listed apart)."""
    master = None
    workers = []
    old_workers = []
    section = "workers"
    for line in text.splitlines():
        stripped = line.strip()
        if stripped.startswith("#"):
            if "old workers" in stripped:
                section = "old"
            elif "workers" in stripped:
                section = "workers"
            elif "programs" in stripped:
                section = "programs"
            continue
        m = _MASTER_RE.match(stripped)
        if m:
            master = {"pid": int(m["pid"]), "reloads": int(m["reloads"]), "failed": int(m["failed"]),
                      "version": m["version"]}
            continue
        w = _WORKER_RE.match(stripped)
        if w and section in ("workers", "old"):
            (workers if section == "workers" else old_workers).append(int(w["pid"]))
    if master is None:
        raise MasterError(f"no master line in the master CLI's 'show proc' answer: {text.strip()[:200]!r}")
    return {**master, "workers": workers, "old_workers": old_workers}


def startup_problems(log: str) -> list:
    """The ALERT and WARNING lines of a reload's startup messages."""
    return [ln.strip() for ln in log.splitlines() if "[ALERT]" in ln or "[WARNING]" in ln]


class MasterCLI:
    """One HAProxy master process, through its master CLI socket."""

    def __init__(self, path: str, timeout: float = 5.0, clock=time.monotonic, sleep=time.sleep):
        self.path = path
        self.timeout = timeout
        self.clock = clock
        self.sleep = sleep

    def send(self, line: str, timeout: float | None = None) -> str:
        """Send one command, return everything the master writes before it closes."""
        try:
            return exchange(self.path, line + "\n", timeout or self.timeout, half_close=True)
        except socket.timeout:
            raise MasterError(f"the HAProxy master on {self.path} did not answer '{line}' within "
                              f"{timeout or self.timeout:g} s") from None
        except OSError as exc:
            raise MasterError(f"cannot use the HAProxy master CLI {self.path}: {exc} (is HAProxy running "
                              "in master-worker mode with -S on that socket?)") from exc

    def proc(self) -> dict:
        return parse_proc(self.send("show proc"))

    def _proc_when_back(self, deadline: float) -> dict:
        """'show proc' once the master answers again (it re-executes itself on a reload)."""
        last = None
        while True:
            try:
                return self.proc()
            except MasterError as exc:
                last = exc
            if self.clock() >= deadline:
                raise MasterError(f"the HAProxy master did not come back after the reload: {last}")
            self.sleep(0.1)

    def reload(self, wait: float) -> dict:
        """Reload and return what happened; raise MasterError when the new configuration did not
        load (the old workers keep serving) or the outcome is not known within `wait` seconds."""
        start = self.clock()
        deadline = start + wait
        before = self.proc()
        if parse_version(before["version"]) >= SYNC_RELOAD_VERSION:
            answer = self.send("reload", timeout=wait)
            status, _sep, log = answer.partition("--")  # not "_", a name ansible-test 2.16 refuses
            status = status.strip()
            if status not in ("Success=1", "Success=0"):
                raise MasterError(f"unexpected answer to 'reload' from the HAProxy master: {answer.strip()[:300]!r}")
            method = "master CLI reload (synchronous)"
            after = self._proc_when_back(deadline)
            if status == "Success=0":
                problems = startup_problems(log) or [log.strip()[:500] or "(no startup messages)"]
                raise MasterError("the new configuration did not load; HAProxy keeps serving with the old one: "
                                  + " | ".join(problems))
        else:
            self.send("reload")  # no answer: the master closes the connection and re-executes
            method = "master CLI reload, outcome read from show proc"
            log = ""
            while True:
                after = self._proc_when_back(deadline)
                if after["failed"] > before["failed"]:
                    raise MasterError(
                        "the new configuration did not load; HAProxy keeps serving with the old one "
                        f"(failed reloads {before['failed']} -> {after['failed']}; its messages are in the "
                        "service's journal: journalctl -u haproxy)")
                if after["reloads"] > before["reloads"] or after["pid"] != before["pid"]:
                    break
                if self.clock() >= deadline:
                    raise MasterError(f"the HAProxy master did not report the reload within {wait:g} s "
                                      f"(reloads still {after['reloads']})")
                self.sleep(0.1)
        return {
            "method": method,
            "version": after["version"],
            "reloads": after["reloads"],
            "failed_reloads": after["failed"],
            "workers": after["workers"],
            "previous_workers": before["workers"],
            "startup_messages": startup_problems(log),
            "seconds": round(self.clock() - start, 3),
        }
