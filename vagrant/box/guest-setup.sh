#!/bin/sh
# Runs inside the freshly debootstrapped box root (chroot), once per recipe.
# Part of the recipe: editing this file changes the box hash and forces a rebuild.
# Environment: BOX_USER, BOX_PUBKEY (the generated key's public half),
# BOX_DISABLED_UNITS (space separated), BOX_MIRROR, BOX_SUITE.
set -eu

# The user Vagrant and Ansible log in as: passwordless sudo, the box's generated key.
id "$BOX_USER" >/dev/null 2>&1 || useradd --create-home --shell /bin/bash "$BOX_USER"
printf '%s ALL=(ALL) NOPASSWD: ALL\n' "$BOX_USER" >/etc/sudoers.d/vagrant
chmod 0440 /etc/sudoers.d/vagrant
install -d -m 0700 -o "$BOX_USER" -g "$BOX_USER" /home/"$BOX_USER"/.ssh
printf '%s\n' "$BOX_PUBKEY" >/home/"$BOX_USER"/.ssh/authorized_keys
chown "$BOX_USER:$BOX_USER" /home/"$BOX_USER"/.ssh/authorized_keys
chmod 0600 /home/"$BOX_USER"/.ssh/authorized_keys

# Root filesystem is the whole virtio disk (direct kernel boot, no partition table).
printf '/dev/vda / ext4 rw,errors=remount-ro 0 1\n' >/etc/fstab

# eth0: Vagrant's management network (DHCP, no router offered: guests get no default
# route). eth1 is written by Vagrant itself between its #VAGRANT-BEGIN/END markers.
cat >/etc/network/interfaces <<'IFACES'
source /etc/network/interfaces.d/*

auto lo
iface lo inet loopback

auto eth0
iface eth0 inet dhcp
IFACES

# One ed25519 host key per VM, made on first boot (RSA keygen under software emulation
# costs seconds). Vagrant's Debian guest support expects a normal sshd.
rm -f /etc/ssh/ssh_host_*
cat >/etc/ssh/sshd_config.d/box.conf <<'CONF'
HostKey /etc/ssh/ssh_host_ed25519_key
PasswordAuthentication no
KbdInteractiveAuthentication no
UseDNS no
CONF
cat >/etc/systemd/system/ssh-hostkey.service <<'UNIT'
[Unit]
Description=Generate this VM's SSH host key
ConditionPathExists=!/etc/ssh/ssh_host_ed25519_key
Before=ssh.service

[Service]
Type=oneshot
ExecStart=/usr/bin/ssh-keygen -q -t ed25519 -N "" -f /etc/ssh/ssh_host_ed25519_key

[Install]
WantedBy=multi-user.target
UNIT
systemctl enable ssh-hostkey.service ssh.service >/dev/null 2>&1

# The roles enable the daemons; the box must not start them on its own.
for unit in $BOX_DISABLED_UNITS; do
    systemctl disable "$unit" >/dev/null 2>&1 || true
    rm -f /etc/systemd/system/multi-user.target.wants/"$unit"
done
# Background jobs would take the dpkg lock mid-converge or burn emulated CPU; guests are offline.
for unit in apt-daily.timer apt-daily-upgrade.timer man-db.timer e2scrub_all.timer fstrim.timer \
            e2scrub_reap.service; do
    systemctl disable "$unit" >/dev/null 2>&1 || true
done
systemctl mask getty@tty1.service systemd-networkd-wait-online.service >/dev/null 2>&1 || true

# The initramfs must find the virtio disk; the cloud kernel builds virtio as modules.
printf 'virtio_pci\nvirtio_blk\nvirtio_net\next4\n' >>/etc/initramfs-tools/modules
update-initramfs -u -k all >/dev/null

# Identity is per VM: machine-id generated on first boot, hostname set by Vagrant.
: >/etc/machine-id
rm -f /var/lib/dbus/machine-id
printf 'localhost\n' >/etc/hostname
printf 'deb %s %s main\n' "$BOX_MIRROR" "$BOX_SUITE" >/etc/apt/sources.list

apt-get clean
rm -rf /var/log/apt/* /var/cache/debconf/*-old
