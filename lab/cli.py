"""`python -m lab <command>`: the command line of the lab."""

from __future__ import annotations

import argparse
import json
import os
import sys

from . import pki
from .core import Lab
from .errors import LabError
from .ssh import SSH_TIMEOUT, ssh_options
from .topology import TopologyError, load


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m lab", description="Boot and disturb the lay7.ha lab hosts.")
    p.add_argument("--topology", help="topology file (default: lab/topology.yml)")
    sub = p.add_subparsers(dest="cmd", required=True, metavar="COMMAND")
    up = sub.add_parser("up", help="build the image if needed, boot every host, wait for SSH")
    up.add_argument("--ssh-timeout", type=int, default=SSH_TIMEOUT)
    up.add_argument("--release", help="the Debian release the hosts boot: one of the topology's "
                    "image.suites, or 'mixed' (default: $LAY7_LAB_RELEASE, else the first suite)")
    sub.add_parser("down", help="power off and remove everything (the safety route stays)")
    st = sub.add_parser("status", help="hosts, links, partitions, leftovers")
    st.add_argument("--json", action="store_true")
    ex = sub.add_parser("exec", help="run a command inside a host: exec HOST -- CMD...")
    ex.add_argument("host")
    ex.add_argument("argv", nargs=argparse.REMAINDER)
    for name, text in (("kill", "power off a host (SIGKILL its PID 1)"),
                       ("cut", "take a host's link down (no carrier)"),
                       ("heal", "bring a host's link back up")):
        sub.add_parser(name, help=text).add_argument("host")
    bt = sub.add_parser("boot", help="power a host back on and wait for SSH")
    bt.add_argument("host")
    bt.add_argument("--no-wait", action="store_true")
    ws = sub.add_parser("wait-ssh", help="wait until a host answers SSH")
    ws.add_argument("host")
    ws.add_argument("--timeout", type=int, default=SSH_TIMEOUT)
    pt = sub.add_parser("partition", help="drop traffic between two hosts only")
    pt.add_argument("a")
    pt.add_argument("b")
    sub.add_parser("unpartition", help="remove every partition")
    sub.add_parser("ssh-config", help="print the ssh options to reach the hosts")
    sub.add_parser("pki", help="create the lab CA and certificates if missing; print their directory")
    sub.add_parser("instances", help="print Molecule's instance config (JSON) for the hosts")
    return p


def _log(msg: str) -> None:
    print(f"lab: {msg}", file=sys.stderr, flush=True)


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    try:
        release = getattr(args, "release", None)
        lab = Lab(load(args.topology, release) if release else args.topology, log=_log)
        if args.cmd == "up":
            lab.up(ssh_timeout=args.ssh_timeout)
        elif args.cmd == "down":
            lab.down()
            _log("lab down")
        elif args.cmd == "status":
            st = lab.status()
            if args.json:
                print(json.dumps(st, indent=2))
            else:
                print(f"lab: {'up' if st['up'] else 'down'}; safety route "
                      f"{'present' if st['safety_route'] else 'MISSING'}")
                for name, h in st["hosts"].items():
                    state = "running" if h["running"] else "off"
                    print(f"  {name:6} {h['address']:15} {state:8} link {h['link'] or '-'}")
                for a, b in st["partitions"]:
                    print(f"  partition {a} <-/-> {b}")
                for item in st["leftovers"]:
                    print(f"  leftover: {item}")
            return 0 if st["up"] or not st["leftovers"] else 1
        elif args.cmd == "exec":
            cmd = args.argv[1:] if args.argv[:1] == ["--"] else args.argv
            if not cmd:
                raise LabError("exec: give a command, e.g. `python -m lab exec web1 -- systemctl is-system-running`")
            proc = lab.exec(args.host, cmd, timeout=None)
            sys.stdout.write(proc.stdout)
            sys.stderr.write(proc.stderr)
            return proc.returncode
        elif args.cmd == "kill":
            lab.kill(args.host)
        elif args.cmd == "boot":
            lab.boot(args.host, wait=not args.no_wait)
        elif args.cmd == "cut":
            lab.cut(args.host)
        elif args.cmd == "heal":
            lab.heal(args.host)
        elif args.cmd == "wait-ssh":
            took = lab.wait_ssh(args.host, args.timeout)
            _log(f"{args.host} answers SSH ({took:.1f}s)")
        elif args.cmd == "partition":
            lab.partition(args.a, args.b)
        elif args.cmd == "unpartition":
            lab.unpartition()
        elif args.cmd == "instances":
            print(json.dumps(lab.molecule_instances(), indent=2))
        elif args.cmd == "pki":
            print(pki.ensure(log=_log))
        elif args.cmd == "ssh-config":
            print(" ".join(ssh_options(lab.topo)))
        return 0
    except (LabError, TopologyError) as exc:
        print(f"lab: error: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":  # pragma: no cover
    os._exit(main())
