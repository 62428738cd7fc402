"""What the verification suite (molecule/shared/tests) and the VRRP observations (lab/observe.py)
need from the machines they run against: one interface, two substrates.

- `lab.Lab`: the nspawn lab (`molecule test -s lab`, `make demo`, the benchmark);
- `VagrantLab` in vagrant/lay7_vagrant_lab.py: the Vagrant VMs (`molecule test -s vagrant`),
  selected by LAY7_SUBSTRATE=vagrant.

tests/lab/test_substrate.py checks that both classes offer every verb below with the same
parameters, so the two cannot drift apart. A default written `...` here may differ between
substrates (a VM boots slower than a container); any other default must be the same.

Creating and destroying the machines is not part of it: each Molecule scenario owns that step
(molecule/lab/create.yml and destroy.yml call `python -m lab up` / `down`; the Vagrant
scenario's driver runs `vagrant up` / `destroy`), and the suite only ever meets machines that
exist. A verb here is one the suite or the VRRP observations call on both substrates.
"""

from __future__ import annotations

import subprocess
from typing import Protocol, runtime_checkable


@runtime_checkable
class Substrate(Protocol):
    def is_up(self) -> bool:
        """The substrate's machines exist (the verify suite skips when they do not)."""

    def is_running(self, name: str) -> bool:
        """The host is powered on."""

    def kill(self, name: str) -> None:
        """Power the host off at once, no shutdown (like pulling the plug); its disk is kept."""

    def boot(self, name: str, wait: bool = True, ssh_timeout: float = ...) -> None:
        """Power the host on; with wait, block until it answers SSH."""

    def wait_ssh(self, name: str, timeout: float = ...) -> float:
        """Block until the host runs a command over SSH; return the seconds it took."""

    def cut(self, name: str) -> None:
        """Pull the host's cable on the lab network: its eth1 loses carrier."""

    def heal(self, name: str) -> None:
        """Plug the cable back in."""

    def partition(self, a: str, b: str) -> None:
        """Drop every frame between hosts a and b on the lab network, both ways; each still
        reaches everyone else (e.g. the two load balancers stop hearing each other)."""

    def unpartition(self) -> None:
        """Remove every partition."""

    def partitions(self) -> list[tuple[str, str]]:
        """The partitioned pairs, in the order they were made."""

    def exec(self, name: str, argv: list[str], check: bool = False, timeout: float | None = 60,
             input: str | None = None) -> subprocess.CompletedProcess:
        """Run argv as root on the host, also while its cable is cut."""

