#!/bin/bash
# `make test-vagrant`: molecule test -s vagrant on this machine with the libvirt provider,
# a locally built box and software emulation. Leaves no VM, volume, network or bridge
# behind, on success and on failure. Run from the repository root with the venv on PATH.
#
# Steps: Debian packages -> libvirtd/virtlogd (niced) -> box (cached by recipe hash) ->
# local community.vagrant -> topology check -> take /run/lay7-lab.lock (the nspawn lab
# uses 192.168.56.0/24 too) -> private bridge -> molecule test -> clean up -> check routes.
#
# Environment: LAY7_VAGRANT_TIMEOUT (minutes for `molecule test`, default 130: docs/vagrant.md, run 6),
# LAY7_VAGRANT_DEADLINE (optional wall-clock time, e.g. 15:00: the run is cut shorter so
# that it ends by then, cleanup included), LAY7_LOCK_WAIT (seconds to wait for the lab
# lock, default 1200).
set -euo pipefail

REPO=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$REPO"
PKGS="vagrant vagrant-libvirt libvirt-daemon-system libvirt-clients qemu-system-x86 qemu-utils dnsmasq-base"
LOCK=/run/lay7-lab.lock
TIMEOUT_MIN=${LAY7_VAGRANT_TIMEOUT:-130}
export LAY7_VAGRANT_CACHE=${LAY7_VAGRANT_CACHE:-/var/cache/lay7-vagrant}
export VAGRANT_HOME=${VAGRANT_HOME:-$LAY7_VAGRANT_CACHE/vagrant.d}
T0=$SECONDS

log() { printf '\n=== test-vagrant [%4ds]: %s\n' "$((SECONDS - T0))" "$*" >&2; }

[ "$(id -u)" -eq 0 ] || { echo "test-vagrant: must run as root (libvirt, bridges, debootstrap)" >&2; exit 1; }

missing=""
for p in $PKGS; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "ok installed" || missing="$missing $p"
done
if [ -n "$missing" ]; then
    log "installing:$missing"
    apt-get update -qq
    # No recommends: they would pull libvirt's NAT network and desktop bits.
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends $missing >/dev/null
fi

log "libvirt"
vagrant/libvirt.sh up
log "box"
BOX=$(nice -n 19 vagrant/box/build.sh)
log "community.vagrant (local collection) and topology check"
python vagrant/community_vagrant.py
python tools/check_topology.py
# The lab inventory's group_vars (linked by the scenario) serve HTTPS with the lab CA's certificates.
python -m lab pki

route_guard() { ip -4 route show type unreachable 192.168.56.0/24 | grep -q metric; }
route_guard || { echo "test-vagrant: the lab's 'unreachable 192.168.56.0/24' guard route is missing; run the lab once (python -m lab up/down) or add it" >&2; exit 1; }
FORWARD_BEFORE=$(cat /proc/sys/net/ipv4/ip_forward)

log "waiting for $LOCK (the nspawn lab shares 192.168.56.0/24)"
exec 9>"$LOCK"
flock -w "${LAY7_LOCK_WAIT:-1200}" 9 || { echo "test-vagrant: $LOCK still held after ${LAY7_LOCK_WAIT:-1200} s" >&2; exit 1; }
if ip -4 -o addr show | grep -v " ${LAY7_VAGRANT_BRIDGE:-lay7-vag0} " | grep -q ' 192\.168\.56\.1/'; then
    echo "test-vagrant: 192.168.56.1 is on another interface (is the nspawn lab up? python -m lab down)" >&2
    exit 1
fi

if [ -n "${LAY7_VAGRANT_DEADLINE:-}" ]; then
    left=$(( ($(date -d "$LAY7_VAGRANT_DEADLINE" +%s) - $(date +%s)) / 60 - 3 ))  # 3 min for cleanup
    [ "$left" -ge 10 ] || { echo "test-vagrant: only ${left} min left before $LAY7_VAGRANT_DEADLINE" >&2; exit 1; }
    [ "$left" -ge "$TIMEOUT_MIN" ] || TIMEOUT_MIN=$left
fi

export LAY7_VAGRANT_PROVIDER=libvirt LAY7_VAGRANT_BOX="$BOX" LAY7_VAGRANT_LIBVIRT_FORWARD=veryisolated
export LAY7_VAGRANT_LIBVIRT_NETWORK=${LAY7_VAGRANT_LIBVIRT_NETWORK:-lay7-vagrant}

cleanup() {
    local rc=$?
    trap - EXIT INT TERM
    log "cleanup (molecule exit $rc)"
    timeout 300 nice -n 19 molecule destroy -s vagrant >/dev/null 2>&1 || echo "molecule destroy failed; removing by name" >&2
    vagrant/libvirt.sh clean || true
    rm -f /tmp/lay7-vagrant-*
    local left
    left=$(virsh -q -c qemu:///system list --all --name | grep '^lay7_' || true)
    [ -z "$left" ] || { echo "test-vagrant: domains left behind: $left" >&2; rc=1; }
    route_guard || { echo "test-vagrant: the unreachable 192.168.56.0/24 guard route disappeared" >&2; rc=1; }
    [ "$(cat /proc/sys/net/ipv4/ip_forward)" = "$FORWARD_BEFORE" ] \
        || { echo "test-vagrant: net.ipv4.ip_forward changed" >&2; rc=1; }
    vagrant/libvirt.sh check >&2
    log "done, exit $rc"
    exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

log "private network"
vagrant/libvirt.sh net-up
# Every verification scenario, as it always ran here (LAY7_VERIFY in molecule/shared/tests/conftest.py).
export LAY7_VERIFY=${LAY7_VERIFY:-all}
log "molecule test -s vagrant (box $BOX, bound ${TIMEOUT_MIN} min, verification: $LAY7_VERIFY)"
# Not --foreground: on expiry timeout signals the whole process group (ansible, vagrant, ssh).
timeout -k 30 "${TIMEOUT_MIN}m" nice -n 19 molecule test -s vagrant
