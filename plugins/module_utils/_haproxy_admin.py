# -*- coding: utf-8 -*-
# Copyright: lay7.ha maintainers
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""HAProxy's admin socket (the runtime API), for the lay7.ha modules. Internal.

One connection per command (the socket's non-interactive mode): HAProxy answers and
closes. Success of a "set" command is an empty answer; anything else is HAProxy's
error text, raised as AdminError so a typo never passes as a change.
"""

from __future__ import annotations

import csv
import socket

# srv_admin_state bits of "show servers state" (HAProxy's enum srv_admin): what an
# operator forced, what a tracked server passed down, what the configuration says.
FORCED_MAINT = 0x01
INHERITED_MAINT = 0x02
CONFIG_MAINT = 0x04
FORCED_DRAIN = 0x08
INHERITED_DRAIN = 0x10
# srv_op_state: 0 stopped (down), 1 starting, 2 running (up), 3 stopping.
OP_RUNNING = 2


def exchange(path: str, text: str, timeout: float, half_close: bool = False) -> str:
    """Send text on a new connection to the Unix socket `path`, return all HAProxy writes before
    it closes. half_close: close our sending side after the text, which the master CLI waits for
    before it answers (it keeps a connection open for more commands, as `echo ... | socat`
    shows). Socket errors (timeouts included) are raised as they are, for the caller to word."""
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as conn:
        conn.settimeout(timeout)
        conn.connect(path)
        conn.sendall(text.encode())
        if half_close:
            conn.shutdown(socket.SHUT_WR)
        chunks = []
        while True:
            chunk = conn.recv(65536)
            if not chunk:
                break
            chunks.append(chunk)
    return b"".join(chunks).decode("utf-8", errors="replace")


class AdminError(Exception):
    """HAProxy refused a command, or the socket could not be used.

    ``absent`` is true when nothing listens on the socket (no file, connection refused):
    HAProxy is not running, which callers may accept; any other error they may not."""

    def __init__(self, message: str, absent: bool = False):
        super().__init__(message)
        self.absent = absent


class AdminSocket:
    """Send commands to one HAProxy process through its admin socket."""

    def __init__(self, path: str, timeout: float = 5.0):
        self.path = path
        self.timeout = timeout

    def command(self, line: str) -> str:
        if "\n" in line or ";" in line:
            # One command per call: a ';' would chain further commands past the caller's checks.
            raise AdminError(f"refusing a command with a newline or ';': {line!r}")
        return self._send(line + "\n")

    def _send(self, text: str) -> str:
        try:
            return exchange(self.path, text, self.timeout)
        except OSError as exc:
            absent = isinstance(exc, (FileNotFoundError, ConnectionRefusedError))
            raise AdminError(f"cannot use the HAProxy admin socket {self.path}: {exc}", absent=absent) from exc

    def commands(self, lines: list) -> str:
        """Several commands on one line (';' between them), run one after the other by
        HAProxy in a single pass; each line is checked like command()'s."""
        for line in lines:
            if "\n" in line or ";" in line:
                raise AdminError(f"refusing a command with a newline or ';': {line!r}")
        return self._send(";".join(lines) + "\n")

    def command_with_payload(self, line: str, payload: list) -> str:
        """A command followed by lines of payload ("<<", the lines, an empty line)."""
        if "\n" in line or ";" in line or any("\n" in item or not item.strip() for item in payload):
            raise AdminError(f"refusing a payload with an empty line or a newline inside a line: {line!r}")
        return self._send(line + " <<\n" + "".join(item + "\n" for item in payload) + "\n")

    def change(self, line: str) -> None:
        """A command that answers nothing when it worked."""
        answer = self.command(line).strip()
        if answer:
            raise AdminError(f"HAProxy refused '{line}': {answer}")

    def servers_state(self) -> list:
        return parse_servers_state(self.command("show servers state"))

    def stat(self) -> list:
        return parse_stat(self.command("show stat"))


def parse_servers_state(text: str) -> list:
    """Rows of "show servers state" (format version 1) as dicts keyed by its header."""
    header = None
    rows = []
    for line in text.splitlines():
        if line.startswith("# "):
            header = line[2:].split()
            continue
        if not line.strip() or header is None:
            continue  # the format version line, blank separators
        fields = line.split()
        rec = dict(zip(header, fields))
        for key in ("srv_op_state", "srv_admin_state", "srv_uweight", "srv_iweight"):
            rec[key] = int(rec[key])
        rows.append(rec)
    if header is None and text.strip() not in ("", "1"):
        raise AdminError(f"unexpected answer to 'show servers state': {text.strip()[:200]}")
    return rows


def parse_stat(text: str) -> list:
    """The server rows of "show stat" (CSV) as dicts, FRONTEND/BACKEND rows left out."""
    lines = text.splitlines()
    if not lines or not lines[0].startswith("# "):
        raise AdminError(f"unexpected answer to 'show stat': {text.strip()[:200]}")
    header = lines[0][2:].split(",")
    rows = []
    # HAProxy quotes fields that hold commas (a check's reason phrase): a CSV reader, never split(",").
    for fields in csv.reader(line for line in lines[1:] if line):
        rec = dict(zip(header, fields))
        if rec.get("svname") in ("FRONTEND", "BACKEND"):
            continue
        rows.append(rec)
    return rows


def forced_state(admin_state: int) -> str:
    """What an operator set: maint, drain or ready (inherited and configured states aside)."""
    if admin_state & FORCED_MAINT:
        return "maint"
    if admin_state & FORCED_DRAIN:
        return "drain"
    return "ready"


def sessions(row: dict) -> int:
    """Sessions on a server plus requests queued for it (both must end before it is idle)."""
    return int(row.get("scur") or 0) + int(row.get("qcur") or 0)


def healthy(stat_row: dict, op_state: int) -> bool:
    """Checks pass, counted the way HAProxy counts them.

    A server leaving maintenance is taken as up at once, with its check health set to
    "rise" and a check due ("start OK but check immediately" in HAProxy's server.c), so
    "running" alone would call a dead server healthy. Full health is rise + fall - 1,
    reached only after a check has passed since then (when fall is above 1)."""
    if op_state != OP_RUNNING:
        return False
    try:
        rise, fall, health = (int(stat_row[k]) for k in ("check_rise", "check_fall", "check_health"))
    except (KeyError, ValueError):
        return True  # not checked: up is up
    return health >= rise + fall - 1


def parse_map(text: str) -> list:
    """(key, value) pairs of "show map <map>" in HAProxy's order (each line: "<ref> <key> <value>")."""
    entries = []
    for line in text.splitlines():
        if not line.strip():
            continue
        fields = line.split(None, 2)
        if len(fields) < 2 or not fields[0].startswith("0x"):
            raise AdminError(f"unexpected answer to 'show map': {text.strip()[:200]}")
        entries.append((fields[1], fields[2] if len(fields) > 2 else ""))
    return entries


def map_entries(content: str) -> list:
    """(key, value) pairs of a map file's text, as HAProxy reads it: blank lines and
    '#' comments skipped, the key up to the first blank, the value the rest."""
    entries = []
    for line in content.splitlines():
        stripped = line.strip()
        if not stripped or stripped.startswith("#"):
            continue
        fields = stripped.split(None, 1)
        entries.append((fields[0], fields[1].strip() if len(fields) > 1 else ""))
    return entries
