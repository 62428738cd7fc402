#!/bin/sh
# Runs inside the freshly debootstrapped base image (chroot) once per recipe.
# Part of the recipe: editing this file changes the image hash and forces a rebuild.
# Environment: LAB_USER, LAB_DISABLED_UNITS (space separated), LAB_MIRROR, LAB_SUITE.
set -eu

# The Vagrant-like user Ansible connects as: passwordless sudo, key injected per host at boot.
id "$LAB_USER" >/dev/null 2>&1 || useradd --create-home --shell /bin/bash "$LAB_USER"
printf '%s ALL=(ALL) NOPASSWD: ALL\n' "$LAB_USER" >/etc/sudoers.d/lab-"$LAB_USER"
chmod 0440 /etc/sudoers.d/lab-"$LAB_USER"
install -d -m 0700 -o "$LAB_USER" -g "$LAB_USER" /home/"$LAB_USER"/.ssh

# Each host gets its own ed25519 host key at boot; the image carries none.
rm -f /etc/ssh/ssh_host_*
cat >/etc/ssh/sshd_config.d/lab.conf <<'CONF'
HostKey /etc/ssh/ssh_host_ed25519_key
PasswordAuthentication no
KbdInteractiveAuthentication no
UseDNS no
CONF

# The roles enable the daemons; the image must not start them on its own.
for unit in $LAB_DISABLED_UNITS; do
    systemctl disable "$unit" >/dev/null 2>&1 || true
    rm -f /etc/systemd/system/multi-user.target.wants/"$unit"
done
# Background apt jobs would take the dpkg lock in the middle of a converge; guests are offline.
for unit in apt-daily.timer apt-daily-upgrade.timer man-db.timer e2scrub_all.timer fstrim.timer; do
    systemctl disable "$unit" >/dev/null 2>&1 || true
done
systemctl mask getty@tty1.service systemd-networkd-wait-online.service >/dev/null 2>&1 || true

# Identity is per host (written into each host's overlay at boot).
: >/etc/machine-id
rm -f /var/lib/dbus/machine-id /etc/hostname
printf 'deb %s %s main\n' "$LAB_MIRROR" "$LAB_SUITE" >/etc/apt/sources.list

apt-get clean
rm -rf /var/log/apt/* /var/cache/debconf/*-old
