#!/bin/bash
# `make vagrant-e2e`: the root Vagrantfile as its users run it, end to end, on this machine
# (libvirt provider, the locally built box, software emulation), then checked from this
# machine through the VIP. Leaves no VM, volume, network or bridge behind, on success and on
# failure. Run as root from the repository root with the venv on PATH (the Vagrantfile's
# Ansible provisioner runs ansible-playbook from PATH).
#
# Steps, each timed: Debian packages -> libvirtd/virtlogd (niced) -> box (cached by recipe
# hash) -> the lab CA's certificates -> take /run/lay7-lab.lock -> left-overs of an earlier
# run -> private bridge (vagrant/libvirt.sh net-up) -> `vagrant up` (the five VMs one after
# another; the Vagrantfile's Ansible provisioner, defined on the last of them, runs site.yml
# over all five) -> checks from this machine (vagrant/e2e.py check: the seed routing contract
# through the VIP over HTTP, HTTPS with the lab CA, one VIP holder) -> `vagrant destroy -f` ->
# what destroy must have removed is gone (domains, disks, machine ids, QEMU) ->
# `vagrant/libvirt.sh clean` (the bridge and networks net-up made) -> nothing of the run left,
# the guard routes and ip_forward as before.
#
# Results: build/vagrant-e2e.json (exit, total and per-step seconds, each VM's boot, site.yml's
# time and recap, the checks) and build/vagrant-e2e.log (Vagrant's and Ansible's output, each
# line stamped with the run's seconds).
#
# Environment: LAY7_VAGRANT_E2E_TIMEOUT (minutes for `vagrant up`, default 75: the first run here,
# 2026-11-29, booted the five VMs one after another in 12 min and then needed 45 min for
# site.yml - the provisioner runs it once from the last VM over all five, the load balancers one
# at a time - so 45 cut it short), LAY7_VAGRANT_DEADLINE
# and LAY7_LOCK_WAIT (as vagrant/test.sh).
set -euo pipefail
NAME=vagrant-e2e
# shellcheck source=vagrant/common.sh
source "$(dirname "${BASH_SOURCE[0]}")/common.sh"
TIMEOUT_MIN=${LAY7_VAGRANT_E2E_TIMEOUT:-75}
RESULTS=build/vagrant-e2e.json
CHECKS=build/vagrant-e2e.checks.json
VLOG=build/vagrant-e2e.log
BRIDGE=${LAY7_VAGRANT_BRIDGE:-lay7-vag0}
VIRSH=(virsh -q -c qemu:///system)
STARTED=$(date -Is)
STEP="" STEP_T0=0 CHILD="" LOCKED=0 BOX=""
STEPS=()

# step NAME: ends the running step (name, start and seconds into STEPS) and starts NAME.
step() {
    if [ -n "$STEP" ]; then STEPS+=("$STEP" "$((STEP_T0 - T0))" "$((SECONDS - STEP_T0))"); fi
    STEP=$1 STEP_T0=$SECONDS
    if [ -n "$STEP" ]; then log "$STEP"; fi
}

# Each line of stdin, stamped with the run's seconds, into $VLOG and on stderr.
stamp() {
    local line
    while IFS= read -r line || [ -n "$line" ]; do
        printf '[%5ds] %s\n' "$((SECONDS - T0))" "$line"
    done | tee -a "$VLOG" >&2
}

# run_logged MINUTES CMD...: CMD niced and bounded, its output stamped into $VLOG after a
# "### CMD" line. In the background, so that an interrupted run can stop it (CHILD): timeout
# puts itself in a process group of its own and signals all of it (vagrant, ansible, ssh).
run_logged() {
    local minutes=$1 rc=0 out stamper
    shift
    exec {out}> >(stamp)
    stamper=$!
    printf '### %s\n' "$*" >&"$out"
    timeout -k 60 "${minutes}m" nice -n 19 "$@" >&"$out" 2>&1 </dev/null &
    CHILD=$!
    exec {out}>&-
    wait "$CHILD" || rc=$?
    CHILD=""
    # The stamper ends once the last writer has gone; bounded, in case one lingers.
    for _ in $(seq 1 60); do kill -0 "$stamper" 2>/dev/null || break; sleep 0.5; done
    return "$rc"
}

ours_in_libvirt() {  # our domains, or machine ids Vagrant still holds for this directory
    [ -n "$("${VIRSH[@]}" list --all --name | grep '^lay7_' || true)" ] \
        || compgen -G '.vagrant/machines/*/libvirt/id' >/dev/null
}

# What `vagrant destroy` itself must remove: the domains and their disks (not the box's base
# volume, a cache like the box), the machine ids in .vagrant/, the QEMU processes. The private
# network and bridge are net-up's and stay (libvirt__always_destroy: false) until clean.
check_destroyed() {
    local rc=0 left
    left=$("${VIRSH[@]}" list --all --name | grep '^lay7_' || true)
    [ -z "$left" ] || { echo "$NAME: vagrant destroy left domains: $left" >&2; rc=1; }
    left=$("${VIRSH[@]}" vol-list default | awk '$1 ~ /^lay7_/ {print $1}' || true)
    [ -z "$left" ] || { echo "$NAME: vagrant destroy left volumes: $left" >&2; rc=1; }
    left=$(compgen -G '.vagrant/machines/*/libvirt/id' || true)
    [ -z "$left" ] || { echo "$NAME: vagrant destroy left machine ids: $left" >&2; rc=1; }
    left=$(pgrep -a -f 'qemu-system.*guest=lay7_' || true)
    [ -z "$left" ] || { echo "$NAME: QEMU still runs: $left" >&2; rc=1; }
    return "$rc"
}

# After clean: besides check_host_after (domains, guard route, ip_forward), no network,
# bridge, DHCP server or route of the run.
check_nothing_left() {
    local rc=0 net left
    check_host_after || rc=1
    for net in lay7-vagrant-mgmt "$LAY7_VAGRANT_LIBVIRT_NETWORK"; do
        if "${VIRSH[@]}" net-info "$net" >/dev/null 2>&1; then
            echo "$NAME: libvirt network $net left behind" >&2
            rc=1
        fi
    done
    if ip link show "$BRIDGE" >/dev/null 2>&1; then echo "$NAME: bridge $BRIDGE left behind" >&2; rc=1; fi
    left=$(pgrep -a -f 'dnsmasq.*/lay7-vagrant' || true)
    [ -z "$left" ] || { echo "$NAME: dnsmasq still runs: $left" >&2; rc=1; }
    left=$(ip -4 route show | grep -E '^192\.168\.(56|121)\.' || true)
    [ -z "$left" ] || { echo "$NAME: routes left behind: $left" >&2; rc=1; }
    return "$rc"
}

finish() {
    local rc=$? failed=""
    trap - EXIT INT TERM
    if [ -n "$CHILD" ]; then
        log "stopping the interrupted step ($STEP)"
        kill -TERM "$CHILD" 2>/dev/null || true
        wait "$CHILD" 2>/dev/null || true
        CHILD=""
    fi
    if [ "$rc" -ne 0 ]; then failed=$STEP; log "failed in step '$STEP' (exit $rc)"; fi
    # Only under the lock: before it, the lay7_ domains may be another run's (make test-vagrant).
    if [ "$LOCKED" = 1 ]; then
        step "vagrant destroy"
        if ! run_logged 10 vagrant destroy -f --no-color; then
            echo "$NAME: vagrant destroy failed" >&2
            rc=1 failed=${failed:-vagrant destroy}
        fi
        step "nothing left"
        check_destroyed || rc=1
        vagrant/libvirt.sh clean || rc=1
        check_nothing_left || rc=1
        [ "$rc" -eq 0 ] || failed=${failed:-nothing left}
        vagrant/libvirt.sh check >&2 || true
    fi
    step ""
    python vagrant/e2e.py report --out "$RESULTS" --log "$VLOG" --checks "$CHECKS" --exit "$rc" \
        --failed-step "$failed" --started "$STARTED" --total "$((SECONDS - T0))" --box "$BOX" \
        --steps "${STEPS[@]}" || echo "$NAME: could not write $RESULTS" >&2
    log "done, exit $rc, total $((SECONDS - T0)) s; results: $RESULTS, log: $VLOG"
    exit "$rc"
}

require_root
mkdir -p build
rm -f "$RESULTS" "$CHECKS"
: >"$VLOG"
trap finish EXIT
trap 'exit 130' INT TERM

step "packages"
install_packages
step "libvirt"
vagrant/libvirt.sh up
step "box"
BOX=$(nice -n 19 vagrant/box/build.sh)
step "certificates"
# The lab inventory's group_vars (the Vagrantfile links them) serve HTTPS with the lab CA's
# certificates; the Vagrantfile would make them too, this makes them before the lock.
python -m lab pki
note_host_state

step "lock"
take_lab_lock
apply_deadline 8  # checks, destroy and clean
export_vagrant_env
# No KVM here: the VMs are emulated, so the Vagrantfile gives the load balancers the slower
# VRRP timers of vagrant/inventory/vms.yml.
export LAY7_VAGRANT_EMULATED=1
LOCKED=1  # from here on, finish destroys and cleans up

step "left-overs"
if ours_in_libvirt; then
    log "removing the left-overs of an earlier run"
    run_logged 10 vagrant destroy -f --no-color || true
fi
vagrant/libvirt.sh clean

step "private network"
vagrant/libvirt.sh net-up

step "vagrant up"
log "box $BOX, bound ${TIMEOUT_MIN} min; the Vagrantfile provisions with site.yml once all five are up"
run_logged "$TIMEOUT_MIN" vagrant up --no-color

step "checks"
python vagrant/e2e.py check --out "$CHECKS"
