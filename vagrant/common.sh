# Sourced, not run: the steps vagrant/test.sh (`make test-vagrant`) and vagrant/e2e.sh
# (`make vagrant-e2e`) share around their VMs on this machine (root, libvirt, the local box,
# the nspawn lab's subnet). The caller sets NAME (its name in messages) and
# `set -euo pipefail` before sourcing; sourcing changes to the repository root.
# shellcheck shell=bash

REPO=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$REPO" || exit 1
PKGS="vagrant vagrant-libvirt libvirt-daemon-system libvirt-clients qemu-system-x86 qemu-utils dnsmasq-base"
LOCK=/run/lay7-lab.lock
export LAY7_VAGRANT_CACHE=${LAY7_VAGRANT_CACHE:-/var/cache/lay7-vagrant}
export VAGRANT_HOME=${VAGRANT_HOME:-$LAY7_VAGRANT_CACHE/vagrant.d}
T0=$SECONDS

log() { printf '\n=== %s [%4ds]: %s\n' "$NAME" "$((SECONDS - T0))" "$*" >&2; }
die() { echo "$NAME: $*" >&2; exit 1; }

require_root() {
    [ "$(id -u)" -eq 0 ] || die "must run as root (libvirt, bridges, debootstrap)"
}

# The Debian packages, when one is missing. No recommends: they would pull libvirt's NAT
# network and desktop bits.
install_packages() {
    local missing="" p
    for p in $PKGS; do
        dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "ok installed" || missing="$missing $p"
    done
    if [ -n "$missing" ]; then
        log "installing:$missing"
        apt-get update -qq
        # shellcheck disable=SC2086  # a list of package names
        DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends $missing >/dev/null
    fi
}

# The nspawn lab's permanent `unreachable 192.168.56.0/24` route: while the private bridge
# exists its own route wins; without it, nothing for the subnet leaves through the default route.
route_guard() { ip -4 route show type unreachable 192.168.56.0/24 | grep -q metric; }

# Before any VM: the guard must be there; ip_forward is noted to compare afterwards.
note_host_state() {
    route_guard || die "the lab's 'unreachable 192.168.56.0/24' guard route is missing; run the lab once (python -m lab up/down) or add it"
    FORWARD_BEFORE=$(cat /proc/sys/net/ipv4/ip_forward)
}

# The lab lock on fd 9, held until the caller exits: the nspawn lab, `make test-vagrant` and
# `make vagrant-e2e` all use 192.168.56.0/24 and .1 (and the last two the same domain names).
take_lab_lock() {
    log "waiting for $LOCK (the nspawn lab shares 192.168.56.0/24)"
    exec 9>"$LOCK"
    flock -w "${LAY7_LOCK_WAIT:-1200}" 9 || die "$LOCK still held after ${LAY7_LOCK_WAIT:-1200} s"
    if ip -4 -o addr show | grep -v " ${LAY7_VAGRANT_BRIDGE:-lay7-vag0} " | grep -q ' 192\.168\.56\.1/'; then
        die "192.168.56.1 is on another interface (is the nspawn lab up? python -m lab down)"
    fi
}

# LAY7_VAGRANT_DEADLINE (a wall-clock time, e.g. 15:00): cut TIMEOUT_MIN so that the run ends
# by then, $1 minutes for what follows the bounded step (cleanup) included.
apply_deadline() {
    [ -n "${LAY7_VAGRANT_DEADLINE:-}" ] || return 0
    local left
    left=$(( ($(date -d "$LAY7_VAGRANT_DEADLINE" +%s) - $(date +%s)) / 60 - $1 ))
    [ "$left" -ge 10 ] || die "only ${left} min left before $LAY7_VAGRANT_DEADLINE"
    [ "$left" -ge "$TIMEOUT_MIN" ] || TIMEOUT_MIN=$left
}

# What the Vagrantfiles read: libvirt, the local box ($BOX), the private network made by
# `vagrant/libvirt.sh net-up` (attached to by name, never made by vagrant-libvirt).
export_vagrant_env() {
    export LAY7_VAGRANT_PROVIDER=libvirt LAY7_VAGRANT_BOX="$BOX" LAY7_VAGRANT_LIBVIRT_FORWARD=veryisolated
    export LAY7_VAGRANT_LIBVIRT_NETWORK=${LAY7_VAGRANT_LIBVIRT_NETWORK:-lay7-vagrant}
}

# After `vagrant/libvirt.sh clean`: no domain of ours, the guard route still there,
# ip_forward as noted. Prints what is wrong; returns 1 if anything is.
check_host_after() {
    local rc=0 left
    left=$(virsh -q -c qemu:///system list --all --name | grep '^lay7_' || true)
    [ -z "$left" ] || { echo "$NAME: domains left behind: $left" >&2; rc=1; }
    route_guard || { echo "$NAME: the unreachable 192.168.56.0/24 guard route disappeared" >&2; rc=1; }
    [ "$(cat /proc/sys/net/ipv4/ip_forward)" = "$FORWARD_BEFORE" ] \
        || { echo "$NAME: net.ipv4.ip_forward changed" >&2; rc=1; }
    return "$rc"
}
