#!/bin/bash
# Build (once per recipe) the local Debian 12 libvirt box the Vagrant scenario boots on
# machines without Vagrant Cloud, and add it to Vagrant. Prints the box name on stdout.
#
#   vagrant/box/build.sh            build if needed, add to Vagrant, print the box name
#   vagrant/box/build.sh --name     print the box name for the current recipe, build nothing
#
# The recipe is guest-setup.sh, Vagrantfile.box, ../guest/* (files installed into every
# guest, shared with the root Vagrantfile) and BUILD_VERSION, plus the package list of the lab image
# (lab/topology.yml image.packages: every package the roles install, guests are offline)
# plus the box-only packages below. Its hash names the box (lay7/bookworm-<hash>), the
# cache directory and the libvirt base volume, so a changed recipe can never reuse a
# stale image. Everything lives under $LAY7_VAGRANT_CACHE (default /var/cache/lay7-vagrant):
#   <hash>/lay7-bookworm.box     the box (tar: disk, kernel, initrd, key, Vagrantfile)
#   <hash>/build.log             debootstrap and image build log
#   vagrant.d/                   VAGRANT_HOME used by `make test-vagrant`
set -euo pipefail

HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
REPO=$(cd "$HERE/../.." && pwd)
GUEST=$REPO/vagrant/guest
CACHE=${LAY7_VAGRANT_CACHE:-/var/cache/lay7-vagrant}
PYTHON=${PYTHON:-$REPO/.venv/bin/python}
SUITE=bookworm
MIRROR=${LAY7_VAGRANT_MIRROR:-http://deb.debian.org/debian}
DISK_GB=4
# Box-only packages on top of the lab image's: a kernel to boot, ifupdown + DHCP for
# Vagrant's Debian guest support (it writes eth1 into /etc/network/interfaces), udev.
BOX_PACKAGES="linux-image-cloud-amd64 initramfs-tools ifupdown isc-dhcp-client udev kmod"
# Bump when build_box below changes (this file is not hashed, so other edits of it
# do not force a rebuild).
BUILD_VERSION=1

log() { printf 'build.sh: %s\n' "$*" >&2; }
die() { log "ERROR: $*"; exit 1; }

read_lab_image() {  # prints "packages<TAB>disabled units" from lab/topology.yml
    "$PYTHON" - "$REPO/lab/topology.yml" <<'PY'
import sys, yaml
img = yaml.safe_load(open(sys.argv[1]))["image"]
print(" ".join(sorted(img["packages"])) + "\t" + " ".join(sorted(img.get("disabled_units", []))))
PY
}

IFS=$'\t' read -r LAB_PACKAGES DISABLED_UNITS < <(read_lab_image) || die "cannot read lab/topology.yml with $PYTHON"
PACKAGES=$(printf '%s\n' $LAB_PACKAGES $BOX_PACKAGES | sort -u | paste -sd, -)
HASH=$({
    printf 'build_version=%s suite=%s mirror=%s disk=%s\npackages=%s\ndisabled=%s\n' \
        "$BUILD_VERSION" "$SUITE" "$MIRROR" "$DISK_GB" "$PACKAGES" "$DISABLED_UNITS"
    cat "$HERE/guest-setup.sh" "$HERE/Vagrantfile.box" "$GUEST"/*
} | sha256sum | cut -c1-12)
BOX_NAME="lay7/bookworm-$HASH"
DIR="$CACHE/$HASH"
BOX_FILE="$DIR/lay7-bookworm.box"

if [ "${1:-}" = "--name" ]; then
    echo "$BOX_NAME"
    exit 0
fi

[ "$(id -u)" -eq 0 ] || die "must run as root (debootstrap, chroot)"
for tool in debootstrap mkfs.ext4 qemu-img ssh-keygen vagrant; do
    command -v "$tool" >/dev/null || die "$tool not found (make test-vagrant installs it)"
done
export VAGRANT_HOME=${VAGRANT_HOME:-$CACHE/vagrant.d}
# libvirt's QEMU user must traverse to the box's kernel and disk.
mkdir -p "$CACHE" "$VAGRANT_HOME"
chmod 0755 "$CACHE" "$VAGRANT_HOME"

build_box() {
    local work="$DIR/work" root="$DIR/work/root" buildlog="$DIR/build.log" t0=$SECONDS
    rm -rf "$work" && mkdir -p "$root"
    log "building $BOX_NAME (debootstrap $SUITE, log: $buildlog)"
    if ! debootstrap --variant=minbase --include="$PACKAGES" "$SUITE" "$root" "$MIRROR" >"$buildlog" 2>&1; then
        tail -n 25 "$root/debootstrap/debootstrap.log" 2>/dev/null || tail -n 25 "$buildlog"
        die "debootstrap failed (mirror $MIRROR); full log: $buildlog"
    fi
    ssh-keygen -q -t ed25519 -N "" -C "lay7 vagrant box $HASH" -f "$work/vagrant_ed25519"
    cp "$HERE/guest-setup.sh" "$root/tmp/guest-setup.sh"
    install -d "$root/etc/systemd/system/ifup@.service.d"
    install -m 0644 "$GUEST/ifup-unconfigured.conf" "$root/etc/systemd/system/ifup@.service.d/lay7-unconfigured.conf"
    mount -t proc proc "$root/proc"
    local rc=0
    chroot "$root" env -i PATH=/usr/sbin:/usr/bin:/sbin:/bin BOX_USER=vagrant \
        BOX_PUBKEY="$(cat "$work/vagrant_ed25519.pub")" BOX_DISABLED_UNITS="$DISABLED_UNITS" \
        BOX_MIRROR="$MIRROR" BOX_SUITE="$SUITE" /bin/sh /tmp/guest-setup.sh >>"$buildlog" 2>&1 || rc=$?
    umount "$root/proc"
    rm -f "$root/tmp/guest-setup.sh"
    [ "$rc" -eq 0 ] || { tail -n 25 "$buildlog"; die "guest-setup.sh failed ($rc); full log: $buildlog"; }

    # Direct kernel boot: kernel and initrd travel next to the disk in the box.
    cp -L "$root/vmlinuz" "$work/vmlinuz"
    cp -L "$root/initrd.img" "$work/initrd.img"
    mkfs.ext4 -q -F -L root -d "$root" "$work/disk.raw" "${DISK_GB}G" >>"$buildlog" 2>&1 \
        || die "mkfs.ext4 -d failed; full log: $buildlog"
    qemu-img convert -O qcow2 "$work/disk.raw" "$work/box.img"
    rm -f "$work/disk.raw"
    printf '{"provider": "libvirt", "format": "qcow2", "virtual_size": %s}\n' "$DISK_GB" >"$work/metadata.json"
    cp "$HERE/Vagrantfile.box" "$work/Vagrantfile"
    printf '%s\n' "$HASH" >"$work/recipe"
    tar -C "$work" -cf "$BOX_FILE.tmp" metadata.json Vagrantfile box.img vmlinuz initrd.img \
        vagrant_ed25519 vagrant_ed25519.pub recipe
    mv "$BOX_FILE.tmp" "$BOX_FILE"
    rm -rf "$work"
    log "built $BOX_FILE in $((SECONDS - t0)) s ($(du -h "$BOX_FILE" | cut -f1))"
}

[ -f "$BOX_FILE" ] || build_box

if ! vagrant box list 2>/dev/null | grep -q "^$BOX_NAME "; then
    log "adding $BOX_NAME to Vagrant (VAGRANT_HOME=$VAGRANT_HOME)"
    vagrant box add --force --name "$BOX_NAME" "$BOX_FILE" >&2
fi
chmod 0600 "$VAGRANT_HOME/boxes/${BOX_NAME//\//-VAGRANTSLASH-}"/0/libvirt/vagrant_ed25519

# Older recipes: drop their boxes, cache directories and libvirt base volumes.
for old in $(vagrant box list 2>/dev/null | awk '$1 ~ /^lay7\/bookworm-/ {print $1}'); do
    if [ "$old" != "$BOX_NAME" ]; then
        log "removing outdated box $old"
        vagrant box remove --force --all "$old" >&2 || true
    fi
done
for old in "$CACHE"/*/lay7-bookworm.box; do
    if [ -e "$old" ] && [ "$old" != "$BOX_FILE" ]; then
        rm -rf "$(dirname "$old")"
    fi
done
if virsh -c qemu:///system pool-info default >/dev/null 2>&1; then
    for vol in $(virsh -q -c qemu:///system vol-list default | awk '{print $1}'); do
        if [[ "$vol" == lay7-VAGRANTSLASH-bookworm-*_vagrant_box_image_* \
              && "$vol" != "lay7-VAGRANTSLASH-bookworm-${HASH}_"* ]]; then
            log "removing outdated base volume $vol"
            virsh -q -c qemu:///system vol-delete --pool default "$vol" >/dev/null || true
        fi
    done
fi
echo "$BOX_NAME"
