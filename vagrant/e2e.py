"""`make vagrant-e2e` (vagrant/e2e.sh): the checks after `vagrant up` of the root Vagrantfile,
and the run's results file. Test infrastructure, not shipped.

    python vagrant/e2e.py check --out build/vagrant-e2e.checks.json
    python vagrant/e2e.py report --out build/vagrant-e2e.json --log build/vagrant-e2e.log ...

`check` sends `make demo`'s proof from this machine to the VIP on the private bridge
(lab/demo.py: the seed routing contract of molecule/shared/seed_contract.yml over HTTP, each
answer's X-Served-By naming the web server; HTTPS per SNI name with the lab CA, ALPN h2, and the
plain-HTTP redirect), then reads which load balancer holds the VIP and the other's VRRP state
(lab/observe.py, as the verify suite does) over SSH with the config `vagrant ssh-config` prints.

`report` turns e2e.sh's step times and the stamped log of Vagrant's output into
build/vagrant-e2e.json: the total, every step, each VM's boot, site.yml's time and recap, the
checks; and prints the lines docs/vagrant.md records.
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import re
import shlex
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from lab import demo, observe  # noqa: E402  (the repository root is on sys.path only from here)
from lab.topology import load  # noqa: E402

# After site.yml, HAProxy's health checks mark every server UP within seconds on the lab; the
# emulated VMs are slower, and the last load balancer was reloaded moments ago.
READY_BOUND = 300.0
VIP_SETTLE_BOUND = 60.0
SSH_CONFIG = ROOT / "build" / "vagrant-e2e.ssh_config"


# --------------------------------------------------------------------------- check
class VagrantSsh:
    """The two verbs of lab.substrate.Substrate that lab/observe.py's readings use, over SSH to
    the root Vagrantfile's machines (management network, the box's key), as root via sudo."""

    def __init__(self, config: Path) -> None:
        self.config = config

    def is_running(self, name: str) -> bool:  # noqa: ARG002 - the checks run only after `vagrant up` succeeded
        return True

    def exec(self, name: str, argv: list[str], check: bool = False, timeout: float | None = 60,
             input: str | None = None) -> subprocess.CompletedProcess:  # noqa: A002 - Substrate's signature
        # An emulated VM takes seconds to start a process; never less than a minute.
        return subprocess.run(["ssh", "-F", str(self.config), "-o", "BatchMode=yes", "-o", "ConnectTimeout=30",
                               name, "sudo -n " + shlex.join(argv)],
                              capture_output=True, text=True, timeout=max(timeout or 60.0, 60.0), check=check,
                              input=input, stdin=None if input is not None else subprocess.DEVNULL)


def prove_vip(loadbalancers: list[str], vip: str, interface: str) -> tuple[bool, dict]:
    demo.say(f"\n==> the VIP {vip} on the load balancers (over SSH, `vagrant ssh-config`)")
    proc = subprocess.run(["vagrant", "ssh-config", *loadbalancers], cwd=ROOT, capture_output=True, text=True,
                          timeout=300, stdin=subprocess.DEVNULL, check=False)
    if proc.returncode != 0:
        demo.say(f"    vagrant ssh-config failed ({proc.returncode}): {proc.stderr.strip()[-500:]}")
        return False, {}
    SSH_CONFIG.parent.mkdir(parents=True, exist_ok=True)
    SSH_CONFIG.write_text(proc.stdout, encoding="utf-8")
    ssh = VagrantSsh(SSH_CONFIG)
    t0 = time.monotonic()
    while True:
        try:
            held = observe.vip_holders(ssh, loadbalancers, vip, interface)
            states = {name: observe.vrrp_state(ssh, name) for name in loadbalancers}
        except (OSError, subprocess.SubprocessError, ValueError) as exc:
            demo.say(f"    reading the load balancers failed: {type(exc).__name__}: {exc}")
            return False, {}
        ok = (len(held) == 1 and states[held[0]] == "MASTER"
              and all(state == "BACKUP" for name, state in states.items() if name not in held))
        # The VIP holder was deployed last, moments ago: a reading taken while it settles is
        # read again, within VIP_SETTLE_BOUND.
        if ok or time.monotonic() - t0 > VIP_SETTLE_BOUND:
            break
        demo.say(f"    held by {', '.join(held) or 'nobody'}, states {states}; reading again")
        time.sleep(10)
    try:
        # How often a load balancer became MASTER since it booted: the VIP's moves while
        # site.yml ran (keepalived's first MASTER included).
        masters = observe.masters_since(ssh, loadbalancers, 0.0)
    except (OSError, subprocess.SubprocessError, ValueError) as exc:
        demo.say(f"    reading the transitions failed: {type(exc).__name__}: {exc}")
        masters = None
    demo.say(f"    held by {', '.join(held) or 'nobody'}; VRRP states "
             + ", ".join(f"{name} {state}" for name, state in states.items())
             + f"; {masters} MASTER transitions since boot {'ok' if ok else 'WRONG'}")
    return ok, {"vip_holders": held, "vrrp_states": states, "master_transitions_since_boot": masters}


def check(out: Path) -> int:
    topo = load()
    vip = str(topo.vip)
    loadbalancers = list(topo.groups["loadbalancers"])
    # One path per web server, waited for: health checks need a moment after a fresh deploy.
    one_per_server = {server: path for path, server in reversed(demo.SEED_ROUTES)}
    servers = ", ".join(sorted(one_per_server))
    demo.say(f"==> waiting (at most {READY_BOUND:.0f} s) until {servers} answer through the VIP")
    ready = demo.wait(lambda: all(demo.get(vip, path)[1] == server for server, path in one_per_server.items()),
                      READY_BOUND, 1.0)
    demo.say(f"    ready after {ready:.1f} s" if ready is not None else f"    not within {READY_BOUND:.0f} s")
    routing = demo.prove_routing(vip)
    https = demo.prove_https(vip)
    vip_ok, vip_facts = prove_vip(loadbalancers, vip, topo.interface)
    result = {"ready_after_s": None if ready is None else round(ready, 1), "routing": routing, "https": https,
              "vip": vip_ok, **vip_facts}
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=2) + "\n", encoding="utf-8")
    demo.say(f"\nCHECKS: routing {'ok' if routing else 'FAILED'}, HTTPS {'ok' if https else 'FAILED'}, "
             f"VIP {'ok' if vip_ok else 'FAILED'}")
    return 0 if routing and https and vip_ok else 1


# --------------------------------------------------------------------------- report
STAMPED = re.compile(r"^\[\s*(\d+)s\] (.*)$")
COMMAND = re.compile(r"^### (.*)$")
BRINGING = re.compile(r"^Bringing machine '([^']+)' up with '([^']+)' provider")
MACHINE_LINE = re.compile(r"^==> ([^:\s]+): (.*)$")
# Searched, not matched: Vagrant may prefix the provisioner's lines ("    web3: ").
RECAP = re.compile(r"(\S+)\s+: ok=(\d+)\s+changed=(\d+)\s+unreachable=(\d+)\s+failed=(\d+)\s+skipped=(\d+)"
                   r"\s+rescued=(\d+)\s+ignored=(\d+)")
RECAP_FIELDS = ("ok", "changed", "unreachable", "failed", "skipped", "rescued", "ignored")


def sections(log: str) -> list[tuple[str, list[tuple[int, str]]]]:
    """The stamped log cut at each "### <command>" line e2e.sh writes: (command, [(second, line)])."""
    found: list[tuple[str, list[tuple[int, str]]]] = []
    for raw in log.splitlines():
        stamped = STAMPED.match(raw)
        if not stamped:
            continue
        second, line = int(stamped.group(1)), stamped.group(2)
        command = COMMAND.match(line)
        if command:
            found.append((command.group(1), []))
        elif found:
            found[-1][1].append((second, line))
    return found


def vagrant_up(lines: list[tuple[int, str]], end: int | None) -> dict:
    """What `vagrant up`'s output says about its time. The machines come up one after another
    (VAGRANT_NO_PARALLEL), each in one run of "==> <machine>: " lines (the unprefixed lines in
    between, e.g. Ansible's, belong to the run before them): per machine, where its run starts,
    SSH ready after, and its seconds until the next machine's run (the last: until the Ansible
    provisioner starts); the five VMs from the first run to the provisioner's start; site.yml
    from there to `end`, when `vagrant up` returned; the PLAY RECAP."""
    providers: dict[str, str] = {}
    runs: list[list] = []  # [machine, start]
    ready: dict[str, int] = {}
    ansible_start = None
    recap: dict[str, dict[str, int]] = {}
    for second, line in lines:
        bringing = BRINGING.match(line)
        if bringing:
            providers[bringing.group(1)] = bringing.group(2)
        machine = MACHINE_LINE.match(line)
        if machine:
            name, text = machine.groups()
            if not runs or runs[-1][0] != name:
                runs.append([name, second])
            if text.startswith("Machine booted and ready"):
                ready[name] = second
            if text.startswith("Running provisioner: ansible") and ansible_start is None:
                ansible_start = second
        summary = RECAP.search(line)
        if summary:
            recap[summary.group(1)] = dict(zip(RECAP_FIELDS, map(int, summary.groups()[1:])))
    machines: dict[str, dict] = {}
    for index, (name, start) in enumerate(runs):
        if name not in ready or not start <= ready[name]:
            continue
        if index + 1 < len(runs) and runs[index + 1][1] < ready[name]:
            continue  # a stray early line, not the run that booted it
        until = runs[index + 1][1] if index + 1 < len(runs) else ansible_start
        machines[name] = {"start_s": start, "boot_s": ready[name] - start,
                          "up_s": until - start if until is not None else None}
    first = min((m["start_s"] for m in machines.values()), default=None)
    boot = ansible_start - first if first is not None and ansible_start is not None else None
    site = end - ansible_start if end is not None and ansible_start is not None else None
    return {"providers": providers, "machines": machines, "five_vms_s": boot, "site_yml_s": site, "recap": recap}


def minutes(seconds: int | None) -> str:
    if seconds is None:
        return "-"
    return f"{seconds // 60} min {seconds % 60} s" if seconds >= 60 else f"{seconds} s"


def report(args: argparse.Namespace) -> int:
    if len(args.steps) % 3:
        raise SystemExit(f"--steps takes triples (name, start, seconds), got {len(args.steps)} values")
    steps = [{"step": args.steps[i], "start_s": int(args.steps[i + 1]), "seconds": int(args.steps[i + 2])}
             for i in range(0, len(args.steps), 3)]
    log = Path(args.log).read_text(encoding="utf-8", errors="replace") if Path(args.log).exists() else ""
    up_step = next((s for s in steps if s["step"] == "vagrant up"), None)
    up_lines = next((lines for command, lines in sections(log) if command.startswith("vagrant up")), [])
    up = vagrant_up(up_lines, up_step["start_s"] + up_step["seconds"] if up_step else None)
    checks_file = Path(args.checks)
    checks = json.loads(checks_file.read_text(encoding="utf-8")) if checks_file.exists() else None
    result = {
        "target": "make vagrant-e2e",
        "started": args.started,
        "finished": datetime.datetime.now().astimezone().isoformat(timespec="seconds"),
        "exit": args.exit,
        "passed": args.exit == 0,
        "failed_step": args.failed_step or None,
        "total_s": args.total,
        "total": minutes(args.total),
        "box": args.box or None,
        "host": {"cores": os.cpu_count(), "loadavg_at_end": [round(x, 2) for x in os.getloadavg()]},
        "steps": steps,
        "vagrant_up": up,
        "checks": checks,
    }
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=2) + "\n", encoding="utf-8")
    verdict = "passed" if args.exit == 0 else f"FAILED (exit {args.exit}, step {args.failed_step or '-'})"
    print(f"\nvagrant-e2e: {verdict} in {minutes(args.total)} (started {args.started})")
    print("  steps: " + ", ".join(f"{s['step']} {minutes(s['seconds'])}" for s in steps))
    if up["machines"]:
        print(f"  vagrant up: the VMs one after another {minutes(up['five_vms_s'])}, then site.yml "
              f"{minutes(up['site_yml_s'])}")
        for name, m in up["machines"].items():
            print(f"    {name}: SSH after {minutes(m['boot_s'])}, done after {minutes(m['up_s'])}")
    for host, counts in up["recap"].items():
        print(f"  recap {host}: " + " ".join(f"{k}={v}" for k, v in counts.items()))
    print(f"  results: {out}")
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", required=True)
    c = sub.add_parser("check", help="the checks through the VIP and on the load balancers")
    c.add_argument("--out", default=str(ROOT / "build" / "vagrant-e2e.checks.json"))
    r = sub.add_parser("report", help="write the results file")
    r.add_argument("--out", required=True)
    r.add_argument("--log", required=True)
    r.add_argument("--checks", required=True)
    r.add_argument("--exit", type=int, required=True)
    r.add_argument("--failed-step", default="")
    r.add_argument("--started", required=True)
    r.add_argument("--total", type=int, required=True)
    r.add_argument("--box", default="")
    r.add_argument("--steps", nargs="*", default=[], help="name start seconds, repeated")
    args = parser.parse_args(argv)
    if args.command == "check":
        return check(Path(args.out))
    return report(args)


if __name__ == "__main__":
    sys.exit(main())
