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
NAME=test-vagrant
# shellcheck source=vagrant/common.sh
source "$(dirname "${BASH_SOURCE[0]}")/common.sh"
TIMEOUT_MIN=${LAY7_VAGRANT_TIMEOUT:-130}

require_root
install_packages

log "libvirt"
vagrant/libvirt.sh up
log "box"
BOX=$(nice -n 19 vagrant/box/build.sh)
log "community.vagrant (local collection) and topology check"
python vagrant/community_vagrant.py
python tools/check_topology.py
# The lab inventory's group_vars (linked by the scenario) serve HTTPS with the lab CA's certificates.
python -m lab pki

note_host_state
take_lab_lock
apply_deadline 3  # 3 min for cleanup
export_vagrant_env

cleanup() {
    local rc=$?
    trap - EXIT INT TERM
    log "cleanup (molecule exit $rc)"
    timeout 300 nice -n 19 molecule destroy -s vagrant >/dev/null 2>&1 || echo "molecule destroy failed; removing by name" >&2
    vagrant/libvirt.sh clean || true
    rm -f /tmp/lay7-vagrant-*
    check_host_after || rc=1
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
