#!/bin/sh
# Build, once, a Vagrant box (libvirt provider) from the cached Debian 12 tree that the
# VM and deployment tests boot (scripts/vm-image.sh), and print its path. Nothing is
# downloaded from Vagrant Cloud: the box is this tree plus what Vagrant expects of a box:
#   - a "vagrant" user with passwordless sudo and Vagrant's well-known insecure key
#     (Vagrant swaps it for a key of its own at the first "vagrant up");
#   - systemd-networkd asking DHCP on eth0, the management network Vagrant finds the
#     machine on, and configuring the private networks Vagrant writes for it;
#   - Debian's kernel and initrd next to the disk: the image has no boot loader, so the
#     box's own Vagrantfile boots them with libvirt's kernel/initrd/cmdline settings.
# The box is cached next to the image it came from, keyed by this script's own hash too:
# <vm-image dir>/berth-debian12-<hash>.box (the image dir is keyed by vm-image.sh's recipe).
set -eu
script=$(readlink -f "$0")
cd "$(dirname "$script")/.."

say() { echo "vagrant-box: $*" >&2; }
die() { say "$*"; exit 1; }
[ "$(id -u)" = 0 ] || die "needs root (chroot, mkfs)"
for tool in vagrant qemu-img mkfs.ext4 tar chroot flock; do
  command -v "$tool" >/dev/null || die "$tool not found: run scripts/install.sh"
done
insecure=$(find /usr/share/rubygems-integration /usr/lib/ruby /opt/vagrant -name vagrant.pub \
  -path '*keys*' 2>/dev/null | head -n 1)
[ -n "$insecure" ] || die "Vagrant's insecure public key (keys/vagrant.pub) not found"

image=$(sh scripts/vm-image.sh)
key=$(sha256sum "$script" | cut -c1-12)
box=$image/berth-debian12-$key.box
if [ -f "$box" ]; then
  echo "$box"
  exit 0
fi
exec 9>"$image/.box.lock"
flock 9                    # another run may be building the same box
if [ -f "$box" ]; then
  echo "$box"
  exit 0
fi
work=$(mktemp -d "$image/box.XXXXXX")
root=$work/root
cleanup() {
  for m in "$root/proc" "$root/dev"; do
    if mountpoint -q "$m" 2>/dev/null; then umount -l "$m" || true; fi
  done
  rm -rf --one-file-system "$work"
}
trap cleanup EXIT
trap 'exit 1' INT TERM HUP
start=$(date +%s)
say "copying the tree"
cp -a "$image/tree" "$root"
in_root() { env -i PATH=/usr/sbin:/usr/bin:/sbin:/bin HOME=/root LANG=C.UTF-8 chroot "$root" "$@"; }

say "sudo and the vagrant user"
mount -t proc proc "$root/proc"
mount --bind /dev "$root/dev"
cp /etc/resolv.conf "$root/etc/resolv.conf"
in_root apt-get -qq update >"$work/apt.log" 2>&1 &&
  in_root env DEBIAN_FRONTEND=noninteractive apt-get -qq install -y --no-install-recommends \
    sudo >>"$work/apt.log" 2>&1 || { tail -n 20 "$work/apt.log" >&2; die "apt-get failed"; }
in_root apt-get -qq clean
: >"$root/etc/resolv.conf"
umount "$root/dev" "$root/proc"
rm -rf "$root"/var/lib/apt/lists/*
in_root useradd --create-home --shell /bin/bash vagrant
install -d -m 700 "$root/home/vagrant/.ssh"
install -m 600 "$insecure" "$root/home/vagrant/.ssh/authorized_keys"
in_root chown -R vagrant:vagrant /home/vagrant
echo 'vagrant ALL=(ALL) NOPASSWD: ALL' >"$root/etc/sudoers.d/vagrant"
chmod 440 "$root/etc/sudoers.d/vagrant"

say "networking"
# The client id is the MAC, and the lease stays across the restarts of networkd Vagrant
# makes (hostname, private networks): vagrant-libvirt finds the machine by its lease, and a
# machine whose lease vanished for a moment reads as "inaccessible".
cat >"$root/etc/systemd/network/10-mgmt.network" <<'EOF'
[Match]
Name=eth0

[Network]
DHCP=ipv4
KeepConfiguration=dhcp

[DHCPv4]
ClientIdentifier=mac
SendRelease=no
EOF
in_root systemctl enable -q systemd-networkd.service
echo berth-box >"$root/etc/hostname"
# Every machine made from the box gets a machine id of its own at its first boot (the
# tree's one, shared, would give the three the same DHCP DUID and journal).
: >"$root/etc/machine-id"
ln -sf /etc/machine-id "$root/var/lib/dbus/machine-id"

say "disk and box"
mkdir "$work/box"
size=$(du -sm "$root" | cut -f1)
truncate -s "$(( (size * 3 / 2 + 2048) / 1024 + 1 ))G" "$work/root.ext4"
mkfs.ext4 -q -F -L berthroot -d "$root" "$work/root.ext4"
qemu-img convert -O qcow2 "$work/root.ext4" "$work/box/box.img"
rm -f "$work/root.ext4"
cp "$image/vmlinuz" "$image/initrd.img" "$work/box/"
virtual=$(qemu-img info --output=json "$work/box/box.img" |
  sed -n 's/.*"virtual-size": *\([0-9]*\).*/\1/p')
printf '{"provider": "libvirt", "format": "qcow2", "virtual_size": %s}\n' \
  "$(( virtual / 1073741824 + 1 ))" >"$work/box/metadata.json"
cat >"$work/box/Vagrantfile" <<'EOF'
# The box's own settings: no boot loader on the disk, so libvirt boots the kernel and
# initrd shipped beside it.
Vagrant.configure("2") do |config|
  config.vm.provider :libvirt do |lv|
    dir = File.dirname(__FILE__)
    lv.kernel = File.join(dir, "vmlinuz")
    lv.initrd = File.join(dir, "initrd.img")
    lv.cmd_line = "root=/dev/vda rw console=ttyS0 net.ifnames=0 quiet"
    lv.disk_bus = "virtio"
  end
end
EOF
tar -C "$work/box" -cf "$work/berth-debian12.box" metadata.json Vagrantfile box.img \
  vmlinuz initrd.img
mv "$work/berth-debian12.box" "$box"
rm -f "$image"/berth-debian12-*.box.old
for old in "$image"/berth-debian12-*.box; do      # boxes of older versions of this script
  [ "$old" = "$box" ] || rm -f "$old"
done
say "built $box in $(($(date +%s) - start))s"
echo "$box"
