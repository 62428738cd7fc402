"""The master CLI client behind lay7.ha.haproxy_reload, against a fake master on a Unix socket.

The fake answers like HAProxy 2.6 (reload: no answer, outcome in show proc's counters) or 3.0
(reload: Success=1/0 and the startup messages); the real 2.6 is in
tests/integration/test_haproxy_reload_module.py and the real 3.0 on the lab's Debian 13 hosts."""

from __future__ import annotations

import socket
import threading

import pytest
from ansible_collections.lay7.ha.plugins.module_utils._haproxy_master import (
    MasterCLI,
    MasterError,
    parse_proc,
    parse_version,
)

PROC_26 = """#<PID>          <type>          <reloads>       <uptime>        <version>
26294           master          {reloads} [failed: {failed}]   0d00h01m57s     2.6.12-1+deb12u2
# workers
{worker}           worker          0               0d00h00m02s     2.6.12-1+deb12u2
# old workers
26296           worker          1               0d00h01m57s     2.6.12-1+deb12u2
# programs

"""

PROC_30 = PROC_26.replace("2.6.12-1+deb12u2", "3.0.11-1+deb13u4")

OK_LOG = """Success=1
--
[NOTICE]   (580) : haproxy version is 3.0.11-1+deb13u4
[NOTICE]   (580) : New worker (1036) forked
[NOTICE]   (580) : Loading success.
"""

FAIL_LOG = """Success=0
--
[NOTICE]   (580) : haproxy version is 3.0.11-1+deb13u4
[ALERT]    (580) : Binding [/etc/haproxy/haproxy.cfg:90] for frontend lay7_http: cannot bind socket (Address already in use) for [127.0.0.1:22]
[WARNING]  (580) : Loading failure!
"""


class FakeMaster:
    """A master CLI: 'show proc' from a template, 'reload' per the scenario."""

    def __init__(self, path, template, reload_answer="", on_reload=None):
        self.state = {"reloads": 0, "failed": 0, "worker": 1000}
        self.template = template
        self.reload_answer = reload_answer
        self.on_reload = on_reload or (lambda s: None)
        self.commands = []
        self.srv = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.srv.bind(str(path))
        self.srv.listen(8)
        threading.Thread(target=self._serve, daemon=True).start()

    def _serve(self):
        while True:
            try:
                conn, _ = self.srv.accept()
            except OSError:
                return
            with conn:
                line = conn.recv(1024).decode().strip()
                self.commands.append(line)
                if line == "show proc":
                    conn.sendall(self.template.format(**self.state).encode())
                elif line == "reload":
                    self.on_reload(self.state)
                    conn.sendall(self.reload_answer.encode())


def _cli(path, wait=2.0):
    return MasterCLI(str(path), timeout=1.0)


def test_parse_proc_reads_the_master_and_the_current_workers():
    got = parse_proc(PROC_26.format(reloads=3, failed=1, worker=4242))
    assert got == {"pid": 26294, "reloads": 3, "failed": 1, "version": "2.6.12-1+deb12u2",
                   "workers": [4242], "old_workers": [26296]}


def test_parse_proc_without_a_master_is_an_error():
    with pytest.raises(MasterError, match="no master line"):
        parse_proc("Unknown command\n")


@pytest.mark.parametrize(("text", "want"), [("3.0.11-1+deb13u4", (3, 0)), ("2.6.12-1+deb12u2", (2, 6)),
                                            ("2.10.1", (2, 10))])
def test_parse_version(text, want):
    assert parse_version(text) == want


def test_30_reload_uses_the_synchronous_answer(tmp_path):
    def reloaded(state):
        state["reloads"] += 1
        state["worker"] = 1036
    fake = FakeMaster(tmp_path / "m.sock", PROC_30, OK_LOG, reloaded)
    got = _cli(tmp_path / "m.sock").reload(2.0)
    assert got["method"] == "master CLI reload (synchronous)"
    assert got["workers"] == [1036] and got["previous_workers"] == [1000]
    assert got["version"].startswith("3.0.") and got["startup_messages"] == []
    assert fake.commands[:2] == ["show proc", "reload"]


def test_30_failed_reload_fails_with_haproxys_alert(tmp_path):
    FakeMaster(tmp_path / "m.sock", PROC_30, FAIL_LOG, lambda s: s.update(failed=1))
    with pytest.raises(MasterError) as err:
        _cli(tmp_path / "m.sock").reload(2.0)
    msg = str(err.value)
    assert msg.startswith("the new configuration did not load; HAProxy keeps serving with the old one")
    assert "cannot bind socket (Address already in use) for [127.0.0.1:22]" in msg


def test_26_reload_waits_for_the_reload_counter(tmp_path):
    def later(state):
        threading.Timer(0.3, lambda: state.update(reloads=1, worker=2000)).start()
    FakeMaster(tmp_path / "m.sock", PROC_26, "", later)
    got = _cli(tmp_path / "m.sock").reload(2.0)
    assert got["method"] == "master CLI reload, outcome read from show proc"
    assert got["reloads"] == 1 and got["workers"] == [2000]
    assert got["seconds"] >= 0.25


def test_26_failed_reload_is_seen_in_the_failed_counter(tmp_path):
    FakeMaster(tmp_path / "m.sock", PROC_26, "", lambda s: s.update(failed=1))
    with pytest.raises(MasterError, match=r"did not load.*failed reloads 0 -> 1.*journalctl -u haproxy"):
        _cli(tmp_path / "m.sock").reload(2.0)


def test_26_reload_that_never_shows_up_times_out(tmp_path):
    FakeMaster(tmp_path / "m.sock", PROC_26, "")
    with pytest.raises(MasterError, match=r"did not report the reload within 0.5 s"):
        _cli(tmp_path / "m.sock").reload(0.5)


def test_no_master_socket_names_the_path(tmp_path):
    with pytest.raises(MasterError, match=r"cannot use the HAProxy master CLI .*nothing.sock.*master-worker mode"):
        _cli(tmp_path / "nothing.sock").reload(1.0)
