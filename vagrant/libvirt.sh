#!/bin/bash
# libvirt plumbing for the Vagrant scenario on this kind of machine (root, PID 1 is not
# systemd, no usable KVM): start the daemons by hand, and clean up everything the
# scenario creates. Used by `make test-vagrant`; safe to run by hand.
#
#   vagrant/libvirt.sh up       start virtlogd + libvirtd if not running (niced), prepare
#                               the storage pool, keep libvirt's NAT network off
#   vagrant/libvirt.sh net-up   create the private network: bridge $PRIVATE_BRIDGE with the
#                               control node's address + libvirt network $PRIVATE_NET
#   vagrant/libvirt.sh clean    remove our domains, their volumes and our networks
#   vagrant/libvirt.sh check    print the host's routes and ip_forward (the safety check)
#
# Only names this scenario creates are touched: domains and volumes whose names start
# with $LAY7_VAGRANT_PREFIX (vagrant-libvirt names them <project dir>_<machine>), and the
# networks lay7-vagrant (192.168.56.0/24, bridge lay7-vag0) and lay7-vagrant-mgmt.
set -euo pipefail

VIRSH=(virsh --quiet -c qemu:///system)
# Network names the Vagrantfiles and the box use (kept in step by hand; grep for them).
NETWORKS=(lay7-vagrant-mgmt)
# lay7-vagrant-mgmt is 192.168.121.0/24 (vagrant/box/Vagrantfile.box). Its guard route
# covers it (/23) rather than equals it: libvirt refuses to start a network whose exact
# prefix already has a route ("Network is already in use by interface *").
MGMT_GUARD=192.168.120.0/23
# The topology's private network. libvirt cannot own it here (same refusal: the lab's
# permanent `unreachable 192.168.56.0/24` route), so it is a plain bridge we create with
# the control node's address, wrapped in a libvirt network in bridge mode (no <ip>, no
# DHCP, no NAT). The Vagrantfiles attach to it with libvirt__forward_mode=veryisolated.
PRIVATE_NET=${LAY7_VAGRANT_LIBVIRT_NETWORK:-lay7-vagrant}
PRIVATE_BRIDGE=${LAY7_VAGRANT_BRIDGE:-lay7-vag0}
PRIVATE_HOST_CIDR=${LAY7_VAGRANT_HOST_CIDR:-192.168.56.1/24}
PREFIXES=(${LAY7_VAGRANT_PREFIX:-vagrant_ lay7_})

log() { printf 'libvirt.sh: %s\n' "$*" >&2; }

# Start a daemon niced and without our open file descriptors: a caller's lock
# (`flock /run/lay7-lab.lock vagrant/libvirt.sh up`) inherited by a daemon would be held
# for as long as the daemon lives.
start_daemon() {
    (
        for fd in /proc/$BASHPID/fd/*; do
            fd=${fd##*/}
            [ "$fd" -gt 2 ] && eval "exec $fd>&-"
        done
        exec nice -n 19 "$@"
    )
}

daemon_running() { pgrep -x "$1" >/dev/null; }

up() {
    [ "$(id -u)" -eq 0 ] || { log "must run as root"; exit 1; }
    command -v libvirtd >/dev/null || { log "libvirtd missing: install libvirt-daemon-system"; exit 1; }
    # Debian's normal /dev/kvm permissions. With root-only 0600 libvirt re-probes QEMU's
    # capabilities on every domain definition (53 s instead of 144 s per VM here).
    # KVM itself is not used: nested KVM hangs on this machine, the box sets driver=qemu.
    if [ -c /dev/kvm ] && getent group kvm >/dev/null; then
        chgrp kvm /dev/kvm && chmod 0660 /dev/kvm
    fi
    # No cgroup controllers: PID 1 is not systemd, libvirt cannot place QEMU in cgroups.
    if ! grep -q '^cgroup_controllers' /etc/libvirt/qemu.conf; then
        printf '\n# lay7.ha vagrant/libvirt.sh: PID 1 is not systemd here\ncgroup_controllers = [ ]\n' \
            >>/etc/libvirt/qemu.conf
    fi
    mkdir -p /run/libvirt /var/lib/libvirt/images
    # Niced: QEMU processes inherit libvirtd's priority, so software emulation yields
    # the CPU to everything else on the machine (others run timing-sensitive tests).
    daemon_running virtlogd || start_daemon virtlogd -d
    daemon_running libvirtd || start_daemon libvirtd -d
    # Also when something else started them (a package's postinst): QEMU forks from libvirtd.
    renice -n 19 -p $(pgrep -x libvirtd) $(pgrep -x virtlogd) $(pgrep -f '^/usr/bin/qemu-system' || true) >/dev/null
    for _ in $(seq 1 50); do
        "${VIRSH[@]}" version >/dev/null 2>&1 && break
        sleep 0.2
    done
    "${VIRSH[@]}" version >/dev/null || { log "libvirtd does not answer on qemu:///system"; exit 1; }
    # libvirt's stock 'default' network NATs to the outside and turns on ip_forward: never start it.
    if "${VIRSH[@]}" net-info default >/dev/null 2>&1; then
        "${VIRSH[@]}" net-autostart --disable default >/dev/null 2>&1 || true
    fi
    if ! "${VIRSH[@]}" pool-info default >/dev/null 2>&1; then
        "${VIRSH[@]}" pool-define-as default dir --target /var/lib/libvirt/images >/dev/null
    fi
    "${VIRSH[@]}" pool-autostart default >/dev/null 2>&1 || true
    if [ "$("${VIRSH[@]}" pool-info default | awk '/^State:/ {print $2}')" != running ]; then
        "${VIRSH[@]}" pool-start default >/dev/null
    fi
    "${VIRSH[@]}" pool-refresh default >/dev/null
    # Like the lab's 192.168.56.0/24 guard: a packet for the management range can never
    # leave through the default route, also when the network does not exist. Permanent.
    ip -4 route show type unreachable | grep -q "^unreachable $MGMT_GUARD " \
        || ip -4 route add unreachable "$MGMT_GUARD" metric 4242
    log "libvirtd ready (niced), pool 'default' at /var/lib/libvirt/images"
}

net_up() {
    # The nspawn lab uses the same addresses (its control link lay7-ctl): never both at once.
    if ip link show lay7-ctl >/dev/null 2>&1 || [ -e /run/netns/lay7-br ]; then
        echo "libvirt.sh: the nspawn lab is up (lay7-ctl / netns lay7-br) on the same subnet;" \
             "run \`python -m lab down\` first (hold /run/lay7-lab.lock)" >&2
        exit 1
    fi
    # The bridge carries the control node's address: the kernel's route for it is
    # more specific (metric 0) than the permanent unreachable guard while it exists.
    if ! ip link show "$PRIVATE_BRIDGE" >/dev/null 2>&1; then
        ip link add "$PRIVATE_BRIDGE" type bridge stp_state 0 forward_delay 0 mcast_snooping 0
    fi
    sysctl -qw "net.ipv6.conf.$PRIVATE_BRIDGE.disable_ipv6=1"
    ip -4 addr show dev "$PRIVATE_BRIDGE" | grep -q " ${PRIVATE_HOST_CIDR} " \
        || ip addr add "$PRIVATE_HOST_CIDR" dev "$PRIVATE_BRIDGE"
    ip link set "$PRIVATE_BRIDGE" up
    # A network of that name on another bridge (e.g. one vagrant-libvirt made itself) is replaced.
    if "${VIRSH[@]}" net-info "$PRIVATE_NET" >/dev/null 2>&1 \
        && ! "${VIRSH[@]}" net-info "$PRIVATE_NET" | grep -q "^Bridge: *$PRIVATE_BRIDGE\$"; then
        log "replacing network $PRIVATE_NET (not on bridge $PRIVATE_BRIDGE)"
        "${VIRSH[@]}" net-destroy "$PRIVATE_NET" >/dev/null 2>&1 || true
        "${VIRSH[@]}" net-undefine "$PRIVATE_NET" >/dev/null
    fi
    if ! "${VIRSH[@]}" net-info "$PRIVATE_NET" >/dev/null 2>&1; then
        local xml
        xml=$(mktemp)
        printf "<network><name>%s</name><forward mode='bridge'/><bridge name='%s'/></network>\n" \
            "$PRIVATE_NET" "$PRIVATE_BRIDGE" >"$xml"
        "${VIRSH[@]}" net-define "$xml" >/dev/null
        rm -f "$xml"
    fi
    "${VIRSH[@]}" net-info "$PRIVATE_NET" | grep -q '^Active: *yes' || "${VIRSH[@]}" net-start "$PRIVATE_NET" >/dev/null
    log "network $PRIVATE_NET on bridge $PRIVATE_BRIDGE ($PRIVATE_HOST_CIDR) ready"
}

ours() {  # name -> 0 when one of our prefixes starts it
    local p
    for p in "${PREFIXES[@]}"; do [[ "$1" == "$p"* ]] && return 0; done
    return 1
}

clean() {
    daemon_running libvirtd || { log "libvirtd not running: nothing to clean"; return 0; }
    local dom vol net
    while read -r dom; do
        [ -n "$dom" ] && ours "$dom" || continue
        log "removing domain $dom"
        "${VIRSH[@]}" destroy "$dom" >/dev/null 2>&1 || true
        "${VIRSH[@]}" undefine "$dom" --nvram >/dev/null 2>&1 || "${VIRSH[@]}" undefine "$dom" >/dev/null 2>&1 || true
    done < <("${VIRSH[@]}" list --all --name)
    # VM disks only: the box's base volume (<box>_vagrant_box_image_*) is a cache like the box.
    if "${VIRSH[@]}" pool-info default >/dev/null 2>&1; then
        "${VIRSH[@]}" pool-refresh default >/dev/null 2>&1 || true
        while read -r vol _; do
            [ -n "$vol" ] && ours "$vol" || continue
            [[ "$vol" == *_vagrant_box_image_* ]] && continue
            log "removing volume $vol"
            "${VIRSH[@]}" vol-delete --pool default "$vol" >/dev/null 2>&1 || true
        done < <("${VIRSH[@]}" vol-list default | awk 'NR>0 {print $1}')
    fi
    for net in "${NETWORKS[@]}" "$PRIVATE_NET"; do
        if "${VIRSH[@]}" net-info "$net" >/dev/null 2>&1; then
            log "removing network $net"
            "${VIRSH[@]}" net-destroy "$net" >/dev/null 2>&1 || true
            "${VIRSH[@]}" net-undefine "$net" >/dev/null 2>&1 || true
        fi
    done
    # A partition the fault tests left (lay7_vagrant_lab.py, PARTITION_TABLE).
    if nft list table bridge lay7_vagrant_partition >/dev/null 2>&1; then
        log "removing nftables table bridge lay7_vagrant_partition"
        nft delete table bridge lay7_vagrant_partition
    fi
    if ip link show "$PRIVATE_BRIDGE" >/dev/null 2>&1; then
        log "removing bridge $PRIVATE_BRIDGE"
        ip link del "$PRIVATE_BRIDGE"
    fi
}

check() {
    ip -4 route show table main
    printf 'net.ipv4.ip_forward = %s\n' "$(cat /proc/sys/net/ipv4/ip_forward)"
}

case "${1:-}" in
    up) up ;;
    net-up) net_up ;;
    clean) clean ;;
    check) check ;;
    *) echo "usage: $0 up|net-up|clean|check" >&2; exit 2 ;;
esac
