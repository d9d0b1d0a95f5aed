#!/bin/sh
# Build, once, the Debian 12 (bookworm, amd64) machine the VM and deployment tests boot,
# and print the directory that holds it. Run as root after scripts/install.sh.
#
# One debootstrap tree serves both kinds of test machine: systemd-nspawn boots the
# directory itself (tests/deploy/, through a per-machine overlay), and qemu boots an ext4
# image made from the same tree with `mkfs.ext4 -d` (tests/vm/). The directory,
# /var/cache/berth/vm/<key>/, holds:
#   tree/          the root filesystem as a directory (never written: nspawn machines get an
#                  overlayfs on top of it)
#   rootfs.qcow2   the same tree as an ext4 filesystem, no partition table (root=/dev/vda);
#                  tests boot copy-on-write overlays of it, never the image itself
#   vmlinuz, initrd.img   Debian's kernel and initramfs, for qemu -kernel/-initrd
#   id_ed25519     the root SSH key the machines trust (made here; no password login)
#   ready          written last: the tree and image are complete
# <key> hashes this script and the Python requirements baked in, so a second run prints
# the cached directory at once, and a change to either (the recipe) builds anew.
#
# Inside: systemd, dbus, openssh-server, python3 (with python3-apt for Ansible's apt
# module) and a venv at /opt/berth/venv holding berth's runtime requirements and its
# pytest plugins (the machines have no network: the wheels are fetched here, on the host,
# with pip), iproute2, busybox-static, tcpdump, kmod, and every Debian package the Ansible
# roles (ansible/) install: etcd-server, etcd-client, runc, conmon, nftables, iptables.
# The machines have no route out, so the roles' apt tasks must find them present. etcd is
# installed but not enabled: the etcd role configures and starts it (a fresh Debian machine
# runs a default etcd after the install; the role copes with both). The kernel is Debian's,
# with every module (8021q, macvlan, vxlan, ...). At boot, berth-net.service gives each NIC
# the address the kernel command line names (berth.eth0=10.231.0.11/24; berth.eth1=up for
# no address), or, in an nspawn machine that shares this host's kernel command line, the
# same words in /etc/berth-net.conf: no DHCP, no route out.
set -eu
script=$(readlink -f "$0")
cd "$(dirname "$script")/.."

CACHE=${BERTH_VM_CACHE:-/var/cache/berth/vm}
MIRROR=${BERTH_VM_MIRROR:-http://deb.debian.org/debian}
PY=.venv/bin/python
# What the roles install (ansible/roles/common and etcd) is listed here too: see above.
INCLUDE=systemd-sysv,udev,kmod,initramfs-tools,linux-image-amd64,openssh-server,dbus,\
python3,python3-venv,python3-apt,iproute2,busybox-static,tcpdump,procps,\
etcd-server,etcd-client,runc,conmon,nftables,iptables

say() { echo "vm-image: $*" >&2; }
die() { say "$*"; exit 1; }

[ "$(id -u)" = 0 ] || die "needs root (debootstrap, chroot)"
for tool in debootstrap qemu-img mkfs.ext4 ssh-keygen flock chroot; do
  command -v "$tool" >/dev/null || die "$tool not found: run scripts/install.sh"
done
[ -x "$PY" ] || die "$PY not found: run scripts/install.sh first"
# The wheels are fetched for this Python and installed into bookworm's python3 (3.11).
"$PY" -c 'import sys; sys.exit(sys.version_info[:2] != (3, 11))' ||
  die "$PY is not Python 3.11 (bookworm's), so its wheels would not fit the VM"

# berth's runtime requirements and the test runner with its plugins, from pyproject.toml.
reqs=$("$PY" - <<'EOF'
import tomllib
with open("pyproject.toml", "rb") as f:
    project = tomllib.load(f)["project"]
runner = ("pytest", "pytest-asyncio", "pytest-timeout", "hypothesis")
dev = [r for r in project["optional-dependencies"]["dev"]
       if r.split(">")[0].split("=")[0].split("<")[0].strip() in runner]
print("\n".join(sorted(project["dependencies"] + dev)))
EOF
)
key=$({ cat "$script"; printf '%s\n' "$reqs"; } | sha256sum | cut -c1-16)
out=$CACHE/$key
if [ -f "$out/ready" ]; then
  touch "$out/ready"       # in use: see the pruning below
  echo "$out"
  exit 0
fi

mkdir -p "$CACHE"
chmod 700 "$CACHE"
exec 9>"$CACHE/.lock"
flock 9                    # another run may be building the same image
if [ -f "$out/ready" ]; then
  echo "$out"
  exit 0
fi

work=$(mktemp -d "$CACHE/build.XXXXXX")
root=$work/root
cleanup() {
  for m in "$root/dev/pts" "$root/proc" "$root/sys"; do
    if mountpoint -q "$m" 2>/dev/null; then umount -l "$m" || true; fi
  done
  rm -rf --one-file-system "$work"
}
trap cleanup EXIT
trap 'exit 1' INT TERM HUP
in_root() { env -i PATH=/usr/sbin:/usr/bin:/sbin:/bin HOME=/root LANG=C.UTF-8 chroot "$root" "$@"; }

start=$(date +%s)
say "building $out (debootstrap from $MIRROR; a few minutes)"
mkdir -p "$root"
if ! debootstrap --variant=minbase --arch=amd64 --include="$INCLUDE" bookworm "$root" \
    "$MIRROR" >"$work/debootstrap.log" 2>&1; then
  tail -n 30 "$work/debootstrap.log" >&2
  die "debootstrap failed (log above)"
fi

say "python requirements"
printf '%s\n' "$reqs" >"$work/requirements.txt"
if ! "$PY" -m pip download -q --disable-pip-version-check --only-binary=:all: \
    -d "$root/tmp/wheels" -r "$work/requirements.txt" >"$work/pip.log" 2>&1; then
  tail -n 30 "$work/pip.log" >&2
  die "pip download failed (log above)"
fi
cp "$work/requirements.txt" "$root/tmp/wheels/requirements.txt"
mount -t proc proc "$root/proc"
in_root python3 -m venv /opt/berth/venv
in_root /opt/berth/venv/bin/pip install -q --no-cache-dir --disable-pip-version-check \
  --no-index --find-links /tmp/wheels -r /tmp/wheels/requirements.txt
umount "$root/proc"
rm -rf "$root/tmp/wheels"

say "configuration"
echo berth-vm >"$root/etc/hostname"
printf '127.0.0.1 localhost\n::1 localhost ip6-localhost ip6-loopback\n' >"$root/etc/hosts"
echo '/dev/vda / ext4 rw,relatime 0 0' >"$root/etc/fstab"
ssh-keygen -q -t ed25519 -N '' -C berth-vm -f "$work/id_ed25519"
install -d -m 700 "$root/root/.ssh"
install -m 600 "$work/id_ed25519.pub" "$root/root/.ssh/authorized_keys"
cat >"$root/etc/ssh/sshd_config.d/berth.conf" <<'EOF'
PermitRootLogin prohibit-password
PasswordAuthentication no
UseDNS no
EOF
cat >"$root/usr/local/sbin/berth-net" <<'EOF'
#!/bin/sh
# NIC addresses from the kernel command line: berth.eth0=10.231.0.11/24, berth.eth1=up;
# an nspawn machine shares the host's command line, so it reads /etc/berth-net.conf.
ip link set lo up
for word in $(cat /proc/cmdline /etc/berth-net.conf 2>/dev/null); do
  case $word in
    berth.eth*=*) ;;
    *) continue ;;
  esac
  spec=${word#berth.}; dev=${spec%%=*}; addr=${spec#*=}
  n=0
  while [ ! -e "/sys/class/net/$dev" ] && [ $n -lt 120 ]; do sleep 0.5; n=$((n + 1)); done
  ip link set "$dev" up
  [ "$addr" = up ] || ip addr add "$addr" dev "$dev"
done
EOF
chmod 755 "$root/usr/local/sbin/berth-net"
cat >"$root/etc/systemd/system/berth-net.service" <<'EOF'
[Unit]
Description=NIC addresses from the kernel command line (berth VM tests)
Before=network.target ssh.service
Wants=network.target

[Service]
Type=oneshot
RemainAfterExit=yes
ExecStart=/usr/local/sbin/berth-net

[Install]
WantedBy=multi-user.target
EOF
in_root systemctl enable -q berth-net.service
# The etcd role writes /etc/default/etcd and starts etcd; a default single-member etcd at
# boot would only cost time (much of it under TCG).
in_root systemctl disable -q etcd.service
# Nothing to do in a test VM; under TCG every unit costs seconds.
in_root systemctl mask -q apt-daily.timer apt-daily-upgrade.timer getty@tty1.service \
  getty-static.service e2scrub_all.timer e2scrub_reap.service fstrim.timer 2>/dev/null || true
# Debian's initramfs holds most modules (37 MB) and TCG unpacks it slowly: the VM needs
# only its disk's.
echo MODULES=list >"$root/etc/initramfs-tools/conf.d/berth"
printf '%s\n' virtio_pci virtio_blk ext4 crc32c_generic >>"$root/etc/initramfs-tools/modules"
mount -t proc proc "$root/proc"
in_root update-initramfs -u -k all >"$work/initramfs.log" 2>&1 || {
  tail -n 20 "$work/initramfs.log" >&2; die "update-initramfs failed (log above)"; }
umount "$root/proc"
rm -f "$root"/var/cache/apt/archives/*.deb
rm -rf "$root"/var/lib/apt/lists/*

say "kernel, initrd and root filesystem"
kernel=$(ls "$root"/boot/vmlinuz-* | tail -n 1)
initrd=$(ls "$root"/boot/initrd.img-* | tail -n 1)
mkdir "$work/image"
cp "$kernel" "$work/image/vmlinuz"
cp "$initrd" "$work/image/initrd.img"
truncate -s 4G "$work/rootfs.raw"
mkfs.ext4 -q -F -L berth-root -d "$root" "$work/rootfs.raw"
qemu-img convert -f raw -O qcow2 "$work/rootfs.raw" "$work/image/rootfs.qcow2"
rm -f "$work/rootfs.raw"
mv "$root" "$work/image/tree"     # the same tree, for nspawn
mv "$work/id_ed25519" "$work/id_ed25519.pub" "$work/image/"
printf 'key %s\nkernel %s\nbuilt %s in %ss\n' "$key" "$(basename "$kernel")" \
  "$(date -u +%Y-%m-%dT%H:%M:%SZ)" "$(($(date +%s) - start))" >"$work/image/ready"
rm -rf "$out"
mv "$work/image" "$out"
# Images of other versions of this script nobody used for two weeks (about 2 GB each: the tree and its image),
# and what killed builds left.
find "$CACHE" -mindepth 2 -maxdepth 2 -name ready -mtime +14 | while read -r old; do
  rm -rf "$(dirname "$old")"
done
find "$CACHE" -mindepth 1 -maxdepth 1 -name 'build.*' -mtime +1 -exec rm -rf --one-file-system {} +
say "built in $(($(date +%s) - start))s"
echo "$out"
